import type { Config } from '../config/load.js';
import { buildCore } from './node.js';
import type { DeviceStore } from '../store/devices.js';
import type { Dispatcher } from '../delivery/dispatcher.js';
import type { History } from '../store/history-sqlite.js';
import { HttpIngress } from '../ingress/http.js';
import { TextIngress } from '../ingress/text.js';
import { isLoopback } from '../net/listen.js';
import { type Logger, silentLogger } from '../obs/log.js';
import { Metrics } from '../obs/metrics.js';
import type { Publisher } from '../delivery/publisher.js';
import type { Registry } from '../store/registry.js';
import type { WebSocketTransport } from '../live/websocket.js';
import { VERSION } from '../version.js';

export interface Addresses {
  /** WebSocket sessions and the demo page, "host:port". */
  ws: string;
  /** Text ingress. */
  text: string;
  /** HTTP API. */
  http: string;
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

export interface Daemon {
  /** Starts transports, then ingresses. Rejects (having stopped what started) when a listener fails. */
  start(): Promise<void>;
  /**
   * Stops accepting, answers what was accepted, then closes sessions with 1001 and stops the
   * transports. Idempotent; bounded by `shutdown.timeoutMs`.
   */
  stop(): Promise<void>;
  /**
   * Applies a new config without dropping a session: push transports and devices, routes,
   * limits. Settings that need a restart are listed, not applied.
   */
  reload(next: Config): Promise<ReloadResult>;
  /** The bound addresses (real ports when 0 was configured). */
  addresses(): Addresses;
  readonly dispatcher: Dispatcher;
  readonly publisher: Publisher;
  readonly registry: Registry;
  readonly devices: DeviceStore;
  /** The message store (undefined when history is off). */
  readonly history: History | undefined;
  readonly metrics: Metrics;
}

interface Startable {
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** The sections whose changes a running daemon cannot apply. */
const RESTART_SECTIONS = ['ws', 'text', 'http', 'state', 'history', 'shutdown'] as const;

/** The composition root: builds every part from the config and owns their lifecycle. */
export function createDaemon(config: Config, opts: { log?: Logger } = {}): Daemon {
  const log = opts.log ?? silentLogger;
  const gauges = {
    sessions: () => core.registry.index('websocket').targetCount,
    uids: () => core.registry.index('websocket').uidCount,
    storeRows: () => core.history?.rows ?? 0,
  };
  const metrics = new Metrics(gauges);
  const core = buildCore(config, { log, live: true, telemetry: metrics });
  const { registry, devices, transports, websocket, dispatcher, publisher } = core;
  const ws = websocket as WebSocketTransport;
  const closeTimeoutMs = config.shutdown.timeoutMs;
  const telemetry = metrics;
  const text = new TextIngress({ ...config.text, publisher, telemetry, log, closeTimeoutMs });
  const startedAt = Date.now();
  let current = config;
  const health = () => ({
    transports: Object.fromEntries(transports.map((t) => [t.name, t.health?.() ?? { state: 'running' }])),
  });
  const status = () => ({
    version: VERSION,
    startedAt: new Date(startedAt).toISOString(),
    uptimeS: Math.round((Date.now() - startedAt) / 1000),
    listeners: daemon.addresses(),
    sessions: gauges.sessions(),
    uids: gauges.uids(),
    connections: (ws.health().connections as number) ?? 0,
    history: core.history ? { rows: core.history.rows } : { enabled: false },
    ...health(),
  });
  const http = new HttpIngress({ ...config.http, publisher, devices, health, status, metrics, telemetry, log, closeTimeoutMs });
  const ingresses: Startable[] = [text, http];

  let state: 'new' | 'starting' | 'running' | 'stopping' | 'stopped' = 'new';
  let stopping: Promise<void> | undefined;
  const started: Startable[] = [];

  async function stopAll(): Promise<void> {
    state = 'stopping';
    const ins = started.filter((s) => ingresses.includes(s));
    const outs = transports.filter((t) => started.includes(t)).reverse();
    const work = (async () => {
      await Promise.all(ins.map((s) => s.stop()));
      await dispatcher.close();
      for (const t of outs) await t.stop();
    })();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), closeTimeoutMs + 1000);
    });
    if ((await Promise.race([work, deadline])) === 'timeout') {
      log.warn('shutdown timed out; closing anyway', { timeoutMs: closeTimeoutMs });
    }
    clearTimeout(timer);
    core.close();
    state = 'stopped';
  }

  const daemon: Daemon = {
    dispatcher,
    publisher,
    registry,
    devices,
    history: core.history,
    metrics,
    async start() {
      if (state !== 'new') return;
      state = 'starting';
      try {
        for (const part of [...transports, ...ingresses]) {
          await part.start();
          started.push(part);
        }
      } catch (err) {
        await stopAll();
        throw err;
      }
      state = 'running';
      const a = daemon.addresses();
      log.info(`websocket sessions on ws://${a.ws}/ (demo page: http://${a.ws}/)`, { listener: 'ws', address: a.ws });
      log.info(`text ingress on tcp://${a.text}`, { listener: 'text', address: a.text });
      log.info(`http api on http://${a.http}/v1/send`, { listener: 'http', address: a.http });
      if (config.ws.auth === 'none' && !isLoopback(config.ws.listen)) {
        log.warn(`ws.listen ${config.ws.listen} is reachable from other hosts and ws.auth is none: any page can bind any uid; set ws.auth: token`, {
          listener: 'ws',
        });
      }
      for (const t of transports) {
        if (t !== ws) log.info(`transport ${t.name} ready`, { transport: t.name, devices: registry.index(t.name).targetCount });
      }
      core.resumePending();
    },
    async reload(next) {
      if (state !== 'running') throw new Error('notify is not running');
      const restartNeeded = RESTART_SECTIONS.filter((k) => JSON.stringify(current[k]) !== JSON.stringify(next[k])).map(String);
      const result = await core.reload(next);
      // Transports built by the reload are part of what a stop stops.
      for (const t of transports) if (!started.includes(t)) started.push(t);
      ws.setLimits(next.limits);
      // What runs: the new applied settings, and the old values of what needs a restart.
      current = { ...next, ws: current.ws, text: current.text, http: current.http, state: current.state, history: current.history, shutdown: current.shutdown };
      return { ...result, restartNeeded };
    },
    stop() {
      stopping ??= state === 'new' ? (core.close(), Promise.resolve()) : stopAll();
      return stopping;
    },
    addresses() {
      return { ws: ws.addresses().ws ?? '', text: text.addresses().text ?? '', http: http.addresses().http ?? '' };
    },
  };
  return daemon;
}
