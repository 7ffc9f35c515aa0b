import type { Config } from './config.js';
import { DeviceStore } from './devices.js';
import { Dispatcher } from './dispatcher.js';
import type { Logger } from './log.js';
import { MemoryRegistry, type Registry } from './registry.js';
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
  db: StateDb;
}

/**
 * Builds the registry, the state database, the device store, the transports and the
 * dispatcher from a config. `live: false` leaves out the WebSocket transport (no listener):
 * for delivering in-process through the push providers alone.
 */
export function buildCore(config: Config, opts: { log: Logger; live: boolean }): Core {
  const { log } = opts;
  const registry = new MemoryRegistry();
  const db = openState(config.state.dir);
  try {
    const devices = new DeviceStore({ db, registry, config, log });
    devices.load();
    const websocket = opts.live ? new WebSocketTransport({ ...config.ws, index: registry.index('websocket'), log }) : undefined;
    const transports: Transport[] = websocket ? [websocket] : [];
    for (const [name, settings] of Object.entries(config.transports)) {
      const kind = TRANSPORT_TYPES[settings.type];
      if (!kind) throw new TypeError(`transports.${name}: unknown type ${settings.type}`);
      const retire = (target: string, reason: string) => devices.retire(name, target, reason);
      transports.push(kind.create(settings, { name, registry, log, retire }));
    }
    const dispatcher = new Dispatcher({
      transports,
      registry,
      deliverTimeoutMs: config.dispatch.deliverTimeoutMs,
      log,
      onPrune: (transport, target, reason) => devices.retire(transport, target, reason ?? 'pruned'),
    });
    return { registry, devices, transports, websocket, dispatcher, db };
  } catch (err) {
    db.close();
    throw err;
  }
}
