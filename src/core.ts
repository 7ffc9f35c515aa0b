import type { Config } from './config.js';
import { DeviceStore } from './devices.js';
import { Dispatcher } from './dispatcher.js';
import { History } from './history.js';
import type { Logger } from './log.js';
import { Publisher } from './publisher.js';
import { MemoryRegistry, type Registry } from './registry.js';
import { RetryLedger } from './retries.js';
import { type StateDb, openState } from './state.js';
import { TRANSPORT_TYPES } from './transports/index.js';
import type { Transport } from './transports/transport.js';
import { WebSocketTransport } from './transports/websocket.js';

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
  retries: RetryLedger;
  publisher: Publisher;
  db: StateDb;
  /** Hands deliveries left waiting for a retry by the previous process back to their transports. */
  resumePending(): number;
  /** Closes the store (after the transports have stopped). */
  close(): void;
}

/**
 * Builds the registry, the state database, the device store, the message store, the
 * transports, the dispatcher and the publisher from a config. `live: false` leaves out the
 * WebSocket transport (no listener): for delivering in-process through the push providers alone.
 */
export function buildCore(config: Config, opts: { log: Logger; live: boolean }): Core {
  const { log } = opts;
  const registry = new MemoryRegistry();
  const db = openState(config.state.dir);
  try {
    const devices = new DeviceStore({ db, registry, config, log });
    devices.load();
    const h = config.history;
    const history = h.enabled ? new History(db, { size: h.size, ttlMs: h.ttl, maxMessages: h.maxMessages, dedupeWindowMs: h.dedupeWindow, log }) : undefined;
    const retries = new RetryLedger(db);
    const websocket = opts.live
      ? new WebSocketTransport({
          ...config.ws,
          index: registry.index('websocket'),
          log,
          replay: history ? (uid, since) => history.replay(uid, since) : undefined,
        })
      : undefined;
    const transports: Transport[] = websocket ? [websocket] : [];
    for (const [name, settings] of Object.entries(config.transports)) {
      const kind = TRANSPORT_TYPES[settings.type];
      if (!kind) throw new TypeError(`transports.${name}: unknown type ${settings.type}`);
      const retire = (target: string, reason: string) => devices.retire(name, target, reason);
      transports.push(kind.create(settings, { name, registry, log, retire, retries }));
    }
    const dispatcher = new Dispatcher({
      transports,
      registry,
      deliverTimeoutMs: config.dispatch.deliverTimeoutMs,
      log,
      onPrune: (transport, target, reason) => devices.retire(transport, target, reason ?? 'pruned'),
    });
    const publisher = new Publisher({
      dispatcher,
      registry,
      history,
      acks: websocket,
      route: config.dispatch.route,
      ackTimeoutMs: config.dispatch.ackTimeout,
      dedupeWindowMs: h.dedupeWindow,
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
      publisher,
      db,
      resumePending() {
        let n = 0;
        for (const [name, pending] of retries.pending()) {
          const t = transports.find((x) => x.name === name);
          if (!t?.resume) {
            log.warn('deliveries waiting for a retry belong to a transport that is no longer configured; kept', { transport: name, count: pending.length });
            continue;
          }
          for (const p of pending) t.resume(p);
          n += pending.length;
        }
        if (n > 0) log.info('resuming deliveries that were waiting for a retry', { count: n });
        return n;
      },
      close() {
        history?.close();
        db.close();
      },
    };
  } catch (err) {
    db.close();
    throw err;
  }
}
