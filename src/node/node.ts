import { hostname } from 'node:os';
import type { Config, TransportSettings } from '../config/load.js';
import { DeviceStore } from '../store/devices.js';
import { Dispatcher } from '../delivery/dispatcher.js';
import { History } from '../store/history-sqlite.js';
import type { Logger } from '../obs/log.js';
import { type Telemetry, noTelemetry } from '../obs/metrics.js';
import { Publisher } from '../delivery/publisher.js';
import { MemoryRegistry, type Registry } from '../store/registry.js';
import { SqliteRetryQueue } from '../store/retry-queue-sqlite.js';
import { type StateDb, openState } from '../store/sqlite.js';
import { TRANSPORT_TYPES } from '../push/kinds.js';
import { RETRY_LEASE_MS } from '../push/retry.js';
import type { Transport } from '../push/transport.js';
import { WebSocketTransport } from '../live/websocket.js';

/** How `resumePending` claims waiting retries: in batches of `limit`, each leased past its due time. */
const RESUME_CLAIM = { limit: 500, leaseMs: RETRY_LEASE_MS };

/** What both the daemon and `notify send --direct` deliver with. */
export interface Core {
  registry: Registry;
  devices: DeviceStore;
  /** The WebSocket transport first (when live), then the configured ones in config order. */
  transports: Transport[];
  websocket: WebSocketTransport | undefined;
  dispatcher: Dispatcher;
  /** The message store, unless history.enabled is false. */
  history: History | undefined;
  retries: SqliteRetryQueue;
  /** This node's name (`HOST-PID`): the owner of the retries its transports hold. */
  node: string;
  publisher: Publisher;
  db: StateDb;
  /**
   * Claims deliveries left waiting for a retry (by the previous process, or by a transport that a
   * reload replaced) and hands them to their transports; only those of `names` when given.
   */
  resumePending(names?: readonly string[]): number;
  /**
   * Applies a reloaded config's push transports (new, changed, removed; unchanged ones keep
   * running), devices, routes and limits. Live sessions are untouched. Rejects, changing
   * nothing, when a new transport cannot be built.
   */
  reload(next: Config): Promise<{ added: string[]; changed: string[]; removed: string[] }>;
  /** Closes the store (after the transports have stopped). */
  close(): void;
}

/**
 * Builds the registry, the state database, the device store, the message store, the
 * transports, the dispatcher and the publisher from a config. `live: false` leaves out the
 * WebSocket transport (no listener): for delivering in-process through the push providers alone.
 */
export function buildCore(config: Config, opts: { log: Logger; live: boolean; telemetry?: Telemetry }): Core {
  const { log } = opts;
  const telemetry = opts.telemetry ?? noTelemetry;
  const registry = new MemoryRegistry();
  const db = openState(config.state.dir);
  try {
    const devices = new DeviceStore({ db, registry, config, log });
    devices.load();
    const h = config.history;
    const history = h.enabled ? new History(db, { size: h.size, ttlMs: h.ttl, maxMessages: h.maxMessages, dedupeWindowMs: h.dedupeWindow, log }) : undefined;
    const node = `${hostname()}-${process.pid}`;
    // The daemon (live) owns the state directory: retries of another owner are a dead process's.
    const retries = new SqliteRetryQueue(db, { exclusive: opts.live });
    const ws = config.ws;
    const websocket = opts.live
      ? new WebSocketTransport({
          listen: ws.listen,
          maxPayloadBytes: ws.maxPayloadBytes,
          maxBufferedBytes: ws.maxBufferedBytes,
          heartbeatIntervalMs: ws.heartbeatIntervalMs,
          auth: { mode: ws.auth, secret: ws.secret },
          bindTimeoutMs: ws.bindTimeout,
          behindProxy: ws.behindProxy,
          limits: config.limits,
          telemetry,
          index: registry.index('websocket'),
          log,
          replay: history ? (uid, since) => history.replay(uid, since) : undefined,
        })
      : undefined;
    const make = (name: string, settings: TransportSettings): Transport => {
      const kind = TRANSPORT_TYPES[settings.type];
      if (!kind) throw new TypeError(`transports.${name}: unknown type ${settings.type}`);
      const retire = (target: string, reason: string) => devices.retire(name, target, reason);
      return kind.create(settings, { name, node, registry, log, retire, retries, telemetry });
    };
    const transports: Transport[] = websocket ? [websocket] : [];
    for (const [name, settings] of Object.entries(config.transports)) transports.push(make(name, settings));
    let current = config;
    const dispatcher = new Dispatcher({
      transports,
      registry,
      deliverTimeoutMs: config.dispatch.deliverTimeoutMs,
      log,
      telemetry,
    });
    const publisher = new Publisher({
      dispatcher,
      registry,
      history,
      acks: websocket,
      route: config.dispatch.route,
      ackTimeoutMs: config.dispatch.ackTimeout,
      dedupeWindowMs: h.dedupeWindow,
      uidsPerMessage: config.limits.uidsPerMessage,
      telemetry,
      log,
    });
    return {
      registry,
      devices,
      transports,
      websocket,
      dispatcher,
      history,
      retries,
      node,
      publisher,
      db,
      resumePending(names) {
        let n = 0;
        const kept = new Map<string, number>();
        // Claimed entries of other transports stay leased to this node: the transports carrying
        // them in memory go on, and those of a transport no longer configured are kept.
        for (let batch = retries.claim(node, RESUME_CLAIM); batch.length > 0; batch = retries.claim(node, RESUME_CLAIM)) {
          for (const p of batch) {
            if (names && !names.includes(p.transport)) continue;
            const t = transports.find((x) => x.name === p.transport);
            if (!t?.resume) {
              kept.set(p.transport, (kept.get(p.transport) ?? 0) + 1);
              continue;
            }
            t.resume(p);
            n++;
          }
        }
        for (const [transport, count] of kept) {
          log.warn('deliveries waiting for a retry belong to a transport that is no longer configured; kept', { transport, count });
        }
        if (n > 0) log.info('resuming deliveries that were waiting for a retry', { count: n });
        return n;
      },
      async reload(next) {
        const was = new Map(transports.filter((t) => t !== websocket).map((t) => [t.name, t]));
        const list: Transport[] = websocket ? [websocket] : [];
        const fresh: Transport[] = [];
        const added: string[] = [];
        const changed: string[] = [];
        try {
          for (const [name, settings] of Object.entries(next.transports)) {
            const old = was.get(name);
            if (old && JSON.stringify(current.transports[name]) === JSON.stringify(settings)) {
              list.push(old);
              was.delete(name);
              continue;
            }
            const t = make(name, settings);
            fresh.push(t);
            list.push(t);
            (old ? changed : added).push(name);
          }
          for (const t of fresh) await t.start();
        } catch (err) {
          for (const t of fresh) await t.stop();
          throw err;
        }
        const removed = [...was.keys()].filter((n) => !(n in next.transports));
        dispatcher.setTransports(list);
        dispatcher.setDeliverTimeout(next.dispatch.deliverTimeoutMs);
        transports.splice(0, transports.length, ...list);
        devices.reload(next);
        publisher.configure({ route: next.dispatch.route, ackTimeoutMs: next.dispatch.ackTimeout, uidsPerMessage: next.limits.uidsPerMessage });
        current = next;
        // Replaced and removed transports finish what they have in flight, then stop; what the
        // replaced ones left waiting for a retry goes on in their successors.
        for (const t of was.values()) await t.stop();
        retries.handBack(node);
        this.resumePending(changed);
        return { added, changed, removed };
      },
      close() {
        retries.handBack(node);
        history?.close();
        db.close();
      },
    };
  } catch (err) {
    db.close();
    throw err;
  }
}
