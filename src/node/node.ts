import { errorMessage } from '../errors.js';
import { hostname } from 'node:os';
import type { Config, TransportSettings } from '../config/load.js';
import { Dispatcher } from '../delivery/dispatcher.js';
import { Journal } from '../delivery/journal.js';
import { Publisher } from '../delivery/publisher.js';
import { WebSocketTransport } from '../live/websocket.js';
import { FailureRing } from '../obs/failures.js';
import type { Logger } from '../obs/log.js';
import type { RefusalLog } from '../obs/refusals.js';
import { type Telemetry, noTelemetry } from '../obs/metrics.js';
import { DeviceService } from '../push/devices.js';
import { TRANSPORT_TYPES } from '../push/kinds.js';
import { targetsOf } from '../push/targets.js';
import { pagePush } from '../push/webpush/page.js';
import type { Transport } from '../push/transport.js';
import { type RetryOutcome, type RetrySubject, RetryTicket } from '../push/retry.js';
import { type Backends, type BackendFactory, backendsFor } from '../store/backends.js';
import { MemoryRegistry, type Registry, type TargetIndex } from '../store/target-index.js';
import { MemoryTraceStore } from '../store/trace-memory.js';
import type { Uid } from '../types.js';
import type { TlsMaterial } from '../net/tls.js';


/** The config sections a running node cannot apply: a reload lists their changes as needing a restart. */
export const RESTART_SECTIONS = ['ws', 'text', 'http', 'state', 'history', 'shutdown'] as const;

/**
 * A restart-only section as a reload compares it: a listener's `tls` files are reread at every
 * reload (new paths too), so only turning TLS on or off takes a restart.
 */
function restartView(section: object): object {
  return 'tls' in section ? { ...section, tls: section.tls !== null } : section;
}

/** `running` with the tls files of `next` when both serve TLS (a reload rereads them). */
function withTls<S extends { tls: unknown }>(running: S, next: S): S {
  return running.tls !== null && next.tls !== null ? { ...running, tls: next.tls } : running;
}

/** What a reload did. */
export interface ReloadResult {
  /** Push transports built anew, by what happened to them. */
  added: string[];
  changed: string[];
  removed: string[];
  /** Settings that changed but take a restart to apply (listeners, the store, ...). */
  restartNeeded: string[];
}

export interface NodeOptions {
  log: Logger;
  /** With live sessions (the WebSocket transport and its listener); false for `notify send --direct`. */
  live: boolean;
  telemetry?: Telemetry;
  /** The state backends; the set the config asks for (store/backends.ts) when absent. */
  backends?: BackendFactory;
  /** This node's name. @default hostname-pid */
  name?: string;
  /** The certificate of ws.tls, read and checked (net/tls.ts readTls); the daemon reloads it. */
  wsTls?: TlsMaterial;
  /** Where refused binds and connections are logged (rate-limited). */
  refusals?: RefusalLog;
}

/**
 * One notify node: the state backends, the transports, the dispatcher and the publisher, built
 * from a config. The composition root: the daemon adds listeners on top, `notify send --direct`
 * uses it as it is. The config it runs is `config`; reload is applied here and nowhere else.
 */
export interface NotifyNode {
  readonly name: string;
  /** The config in force (a reload's applied settings; restart-only sections as started). */
  readonly config: Config;
  readonly backends: Backends;
  readonly devices: DeviceService;
  /** The WebSocket transport first (when live), then the configured ones in config order. */
  readonly transports: readonly Transport[];
  readonly websocket: WebSocketTransport | undefined;
  readonly dispatcher: Dispatcher;
  readonly publisher: Publisher;
  /** Where every fact about a message's fate is told: the trace store and the log. */
  readonly journal: Journal;
  /** This node's local indexes: its sessions (`websocket`) and each push transport's devices. */
  readonly registry: Registry;
  /** The latest provider deliveries that ended without reaching their target (GET /v1/failures). */
  readonly failures: FailureRing;
  /** Seeds the device directory, starts the transports, then takes up deliveries left waiting for a retry. */
  start(): Promise<void>;
  /**
   * Applies a new config without dropping a session: push transports (new, changed, removed;
   * unchanged ones keep running), devices, routes, limits, the delivery timeout. Rejects,
   * changing nothing, when a new transport cannot be built.
   */
  reload(next: Config): Promise<ReloadResult>;
  /**
   * Refuses new messages, lets those in flight finish, stops the transports (requests on the wire
   * get shutdown.graceMs; what is still queued, or cut off, is kept in the retry queue for the
   * next start), closes the store.
   */
  stop(): Promise<void>;
}

export function defaultNodeName(): string {
  return `${hostname()}-${process.pid}`;
}

/**
 * Builds a node (nothing runs until `start()`): opens its state backends (for a cluster: connects
 * to Redis and checks it). Rejects with NOTIFY_ERR_CONFIG when the store cannot be opened or a
 * transport built.
 */
export async function buildNode(config: Config, opts: NodeOptions): Promise<NotifyNode> {
  const { log } = opts;
  const telemetry = opts.telemetry ?? noTelemetry;
  const name = opts.name ?? config.cluster.node ?? defaultNodeName();
  const backends = await (opts.backends ?? backendsFor(config))(config, { node: name, log });
  try {
    // A backend set without a trace store (tests, `send --direct`): the newest few in memory.
    const trace = backends.trace ?? new MemoryTraceStore({ ttlMs: config.history.ttl, maxMessages: 1000 });
    const journal = new Journal({ trace, log, node: name, failures: new FailureRing() });
    const devices = new DeviceService({ directory: backends.devices, config, log, journal });
    return assemble(config, opts, name, telemetry, backends, devices, journal);
  } catch (err) {
    const closed = backends.close();
    if (closed instanceof Promise) closed.catch(() => {});
    throw err;
  }
}

function assemble(config: Config, opts: NodeOptions, name: string, telemetry: Telemetry, backends: Backends, devices: DeviceService, journal: Journal): NotifyNode {
  const { log } = opts;
  // A held retry's lease past its due time (cluster.retryLease; one process: a restart's takeover).
  const leaseMs = config.cluster.retryLease;
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
        ...(opts.wsTls ? { tls: opts.wsTls } : {}),
        limits: config.limits,
        telemetry,
        index: backends.sessions,
        presence: backends.presence,
        node: name,
        acks: backends.acks,
        log,
        streams: backends.streams,
        replayLimit: config.history.size,
        cluster: backends.shared === true,
        // Pages register Web Push subscriptions with the config in force (a reload applies).
        push: pagePush({ config: () => current, devices }),
        journal,
        ...(opts.refusals ? { refusals: opts.refusals } : {}),
      })
    : undefined;
  // Only a backend that keeps the device directory in this process has indexes to show.
  const devicesHere = backends.deviceIndexes ?? new MemoryRegistry();
  const registry: Registry = {
    index: (t: string): TargetIndex => (t === 'websocket' ? backends.sessions : devicesHere.index(t)),
    where: (uid) => ({ ...(backends.sessions.has(uid) ? { websocket: backends.sessions.targets(uid) } : {}), ...devicesHere.where(uid) }),
    uids: () => new Set([...backends.sessions.uids(), ...devicesHere.uids()]),
  };
  const make = (tname: string, settings: TransportSettings): Transport => {
    const kind = TRANSPORT_TYPES[settings.type];
    if (!kind) throw new TypeError(`transports.${tname}: unknown type ${settings.type}`);
    const retire = (target: string, reason: string, messageId?: string) => void devices.retire(tname, target, reason, messageId);
    const news = (id: string, o: Parameters<Journal['target']>[1]) => journal.target(id, o);
    return kind.create(settings, {
      name: tname,
      node: name,
      targets: targetsOf(backends.devices, tname),
      log,
      retire,
      retries: backends.retries,
      ticket: (subject, key) => new RetryTicket(backends.retries, name, subject, key, leaseMs, news),
      telemetry,
      // shutdown is a restart section: the value this node started with.
      stopGraceMs: config.shutdown.graceMs,
    });
  };
  const transports: Transport[] = websocket ? [websocket] : [];
  for (const [tname, settings] of Object.entries(config.transports)) transports.push(make(tname, settings));

  /** Every uid some transport can reach: those with sessions (presence), plus each push transport's devices. */
  const everyone = (): readonly Uid[] | Promise<readonly Uid[]> => {
    const sources: (readonly Uid[] | Promise<readonly Uid[]>)[] = [];
    if (websocket) sources.push(backends.presence.uids());
    for (const t of transports) {
      if (t === websocket) continue;
      const list = backends.devices.list(t.name);
      sources.push(list instanceof Promise ? list.then((l) => l.map((e) => e.uid)) : list.map((e) => e.uid));
    }
    const union = (lists: readonly (readonly Uid[])[]) => [...new Set(lists.flat())];
    return sources.some((x) => x instanceof Promise) ? Promise.all(sources).then(union) : union(sources as (readonly Uid[])[]);
  };
  const dispatcher = new Dispatcher({
    transports,
    everyone,
    deliverTimeoutMs: config.dispatch.deliverTimeoutMs,
    log,
    telemetry,
  });
  const publisher = new Publisher({
    dispatcher,
    streams: backends.streams,
    dedupe: backends.dedupe,
    acks: backends.acks,
    route: config.dispatch.route,
    ackTimeoutMs: config.dispatch.ackTimeout,
    dedupeWindowMs: config.history.dedupeWindow,
    uidsPerMessage: config.limits.uidsPerMessage,
    telemetry,
    log,
    journal,
  });

  let current = config;
  const started = new Set<Transport>();
  let stopping: Promise<void> | undefined;
  let claimer: NodeJS.Timeout | undefined;

  /**
   * Claims deliveries left waiting for a retry (by the previous process, or by a transport that a
   * reload replaced) and hands them to their transports; only those of `names` when given.
   */
  const resumePending = async (names?: readonly string[], quiet = false): Promise<number> => {
    const retries = backends.retries;
    let n = 0;
    const kept = new Map<string, number>();
    // Claimed entries of other transports stay leased to this node: the transports carrying
    // them in memory go on, and those of a transport no longer configured are kept.
    // In batches, each claimed entry leased to this node past its due time.
    const claim = { limit: 500, leaseMs };
    for (let batch = await retries.claim(name, claim); batch.length > 0; batch = await retries.claim(name, claim)) {
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
      log[quiet ? 'debug' : 'warn']('deliveries waiting for a retry belong to a transport that is no longer configured; kept', { transport, count });
    }
    if (n > 0) log.info('resuming deliveries that were waiting for a retry', { count: n });
    return n;
  };

  const node: NotifyNode = {
    name,
    get config() {
      return current;
    },
    backends,
    devices,
    transports,
    websocket,
    dispatcher,
    publisher,
    journal,
    registry,
    failures: journal.failures,
    async start() {
      await devices.load();
      for (const t of transports) {
        await t.start();
        started.add(t);
      }
      await resumePending();
      if (backends.shared) {
        // A shared queue: deliveries of a node that died (its leases ran out) are taken up by
        // whichever node claims them first, checked every half lease.
        claimer = setInterval(() => {
          resumePending(undefined, true).catch((err: unknown) => log.warn('claiming deliveries waiting for a retry failed', { error: errorMessage(err) }));
        }, leaseMs / 2);
        claimer.unref();
      }
    },
    async reload(next) {
      const restartNeeded = RESTART_SECTIONS.filter((k) => JSON.stringify(restartView(current[k])) !== JSON.stringify(restartView(next[k]))).map(String);
      const was = new Map(transports.filter((t) => t !== websocket).map((t) => [t.name, t]));
      const list: Transport[] = websocket ? [websocket] : [];
      const fresh: Transport[] = [];
      const added: string[] = [];
      const changed: string[] = [];
      try {
        for (const [tname, settings] of Object.entries(next.transports)) {
          const old = was.get(tname);
          if (old && JSON.stringify(current.transports[tname]) === JSON.stringify(settings)) {
            list.push(old);
            was.delete(tname);
            continue;
          }
          const t = make(tname, settings);
          fresh.push(t);
          list.push(t);
          (old ? changed : added).push(tname);
        }
        for (const t of fresh) {
          await t.start();
          started.add(t);
        }
      } catch (err) {
        for (const t of fresh) {
          await t.stop();
          started.delete(t);
        }
        throw err;
      }
      const removed = [...was.keys()].filter((n) => !(n in next.transports));
      dispatcher.setTransports(list);
      dispatcher.setDeliverTimeout(next.dispatch.deliverTimeoutMs);
      transports.splice(0, transports.length, ...list);
      await devices.load(next);
      publisher.configure({ route: next.dispatch.route, ackTimeoutMs: next.dispatch.ackTimeout, uidsPerMessage: next.limits.uidsPerMessage });
      websocket?.setLimits(next.limits);
      // What runs: the new applied settings, and the old values of what needs a restart.
      // (A tls section's files are the daemon's to reread: the paths in force are the new ones.)
      current = { ...next, ws: withTls(current.ws, next.ws), text: current.text, http: withTls(current.http, next.http), state: current.state, history: current.history, shutdown: current.shutdown };
      // Replaced and removed transports let requests on the wire finish (shutdown.graceMs) and
      // hand everything else (queued, waiting for a retry, cut off) to the retry queue as they
      // stop; the successors of the replaced ones claim it at once and send it.
      for (const t of was.values()) {
        await t.stop();
        started.delete(t);
      }
      await backends.retries.handBack(name);
      await resumePending(changed);
      return { added, changed, removed, restartNeeded };
    },
    stop() {
      stopping ??= (async () => {
        clearInterval(claimer);
        await dispatcher.close();
        for (const t of [...transports].reverse()) if (started.has(t)) await t.stop();
        try {
          await backends.retries.handBack(name);
        } catch (err) {
          // A shared queue that cannot be reached now: this node's leases run out and another
          // node (or the next start) takes the deliveries up then.
          log.warn('could not hand back the retry queue; its deliveries are taken up when their leases end', { error: errorMessage(err) });
        }
        const held = backends.retries.size;
        if (held) log.info('deliveries kept in the retry queue for the next start', { count: held });
        await backends.close();
      })();
      return stopping;
    },
  };
  return node;
}
