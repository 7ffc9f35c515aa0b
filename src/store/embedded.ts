import type { Config } from '../config/load.js';
import type { Logger } from '../obs/log.js';
import type { AckRelay } from './acks.js';
import { MemoryAckRelay } from './acks-memory.js';
import type { Dedupe } from './dedupe.js';
import { SqliteDedupe } from './dedupe-sqlite.js';
import type { DeviceDirectory } from './devices.js';
import { SqliteDevices } from './devices-sqlite.js';
import type { Presence } from './presence.js';
import { MemoryPresence } from './presence-memory.js';
import type { RetryQueue } from './retry-queue.js';
import { SqliteRetryQueue } from './retry-queue-sqlite.js';
import { lockStateDir } from './lock.js';
import { GroupCommit, type StateDb, StoreHealth, openState } from './sqlite.js';
import type { MessageStreams } from './stream.js';
import { SqliteStreams } from './stream-sqlite.js';
import { MemoryTargetIndex, type Registry, type TargetIndex } from './target-index.js';
import type { TraceStore } from './trace.js';
import { MemoryTraceStore } from './trace-memory.js';
import { SqliteTraceStore } from './trace-sqlite.js';

/** Traces kept in memory when history is off. */
const MEMORY_TRACES = 1000;

/**
 * The state a node keeps, each piece behind its interface. The embedded set (one process, the
 * SQLite file in state.dir plus memory) is the default; the cluster's Redis set will be a
 * sibling of it, chosen by the composition root from the config.
 */
export interface Backends {
  /** Undefined when history is off. */
  streams: MessageStreams | undefined;
  presence: Presence;
  /** This node's own sessions by uid (the live hub's index; process-local, synchronous). */
  sessions: TargetIndex;
  dedupe: Dedupe;
  devices: DeviceDirectory;
  /** Where the device directory is held in this process: its indexes, for diagnostics and tests. */
  deviceIndexes?: Registry;
  retries: RetryQueue;
  acks: AckRelay;
  /** Each message's journal (GET /v1/messages/{id}); a memory one when absent. */
  trace?: TraceStore;
  /**
   * Shared with other nodes (the cluster's Redis): a uid's sessions may be elsewhere, and
   * messages reach them through `streams`. @default false
   */
  shared?: boolean;
  /** Whether the backends work now, for /healthz. */
  health(): { state: 'ok'; [key: string]: unknown } | { state: 'unavailable'; [key: string]: unknown };
  /** Closes every backend (after the transports have stopped). */
  close(): void | Promise<void>;
}

/** The embedded backends: SQLite in `config.state.dir`, and this process's memory. */
export function embeddedBackends(config: Config, opts: { node: string; log: Logger }): Backends {
  // One state directory, one process: the SQLite file is this process's alone.
  const unlock = lockStateDir(config.state.dir);
  let db: StateDb;
  try {
    db = openState(config.state.dir);
  } catch (err) {
    unlock();
    throw err;
  }
  try {
    const storeHealth = new StoreHealth(opts.log);
    const commit = new GroupCommit(db, storeHealth);
    const h = config.history;
    const streams = h.enabled ? new SqliteStreams(db, commit, { size: h.size, ttlMs: h.ttl, maxMessages: h.maxMessages, maxBytes: h.maxBytes, log: opts.log }) : undefined;
    const sessions = new MemoryTargetIndex();
    const dedupe = new SqliteDedupe(db, commit, { windowMs: h.dedupeWindow });
    const devices = new SqliteDevices(db);
    // Traces live as long as their message is in history: with history off, a few in memory
    // (the newest 1,000, for a look right after a publish) and no write on the hot path.
    const trace = h.enabled ? new SqliteTraceStore(db, commit, { ttlMs: h.ttl, maxMessages: h.maxMessages, log: opts.log }) : new MemoryTraceStore({ ttlMs: h.ttl, maxMessages: MEMORY_TRACES });
    return {
      streams,
      presence: new MemoryPresence(sessions, opts.node),
      sessions,
      dedupe,
      devices,
      deviceIndexes: devices.registry,
      // This process holds the state directory's lock: retries of another owner are a dead process's.
      retries: new SqliteRetryQueue(db, { exclusive: true }),
      acks: new MemoryAckRelay(),
      trace,
      health: () => storeHealth.report(),
      close() {
        streams?.close();
        dedupe.close();
        trace.close();
        commit.flush();
        db.close();
        unlock();
      },
    };
  } catch (err) {
    db.close();
    unlock();
    throw err;
  }
}
