import type { Config } from './config.js';
import { buildCore } from './core.js';
import type { DeviceStore } from './devices.js';
import type { Dispatcher } from './dispatcher.js';
import type { History } from './history.js';
import type { Publisher } from './publisher.js';
import { HttpIngress } from './ingress/http.js';
import { TextIngress } from './ingress/text.js';
import { type Logger, silentLogger } from './log.js';
import type { Registry } from './registry.js';
import type { WebSocketTransport } from './transports/websocket.js';

export interface Addresses {
  /** WebSocket sessions and the demo page, "host:port". */
  ws: string;
  /** Text ingress. */
  text: string;
  /** HTTP API. */
  http: string;
}

export interface Daemon {
  /** Starts transports, then ingresses. Rejects (having stopped what started) when a listener fails. */
  start(): Promise<void>;
  /**
   * Stops accepting, answers what was accepted, then closes sessions with 1001 and stops the
   * transports. Idempotent; bounded by `shutdown.timeoutMs`.
   */
  stop(): Promise<void>;
  /** The bound addresses (real ports when 0 was configured). */
  addresses(): Addresses;
  readonly dispatcher: Dispatcher;
  readonly publisher: Publisher;
  readonly registry: Registry;
  readonly devices: DeviceStore;
  /** The message store (undefined when history is off). */
  readonly history: History | undefined;
}

interface Startable {
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** The composition root: builds every part from the config and owns their lifecycle. */
export function createDaemon(config: Config, opts: { log?: Logger } = {}): Daemon {
  const log = opts.log ?? silentLogger;
  const core = buildCore(config, { log, live: true });
  const { registry, devices, transports, websocket, dispatcher, publisher } = core;
  const ws = websocket as WebSocketTransport;
  const closeTimeoutMs = config.shutdown.timeoutMs;
  const text = new TextIngress({ ...config.text, publisher, log, closeTimeoutMs });
  const health = () => ({
    transports: Object.fromEntries(transports.map((t) => [t.name, t.health?.() ?? { state: 'running' }])),
  });
  const http = new HttpIngress({ ...config.http, publisher, devices, health, log, closeTimeoutMs });
  const ingresses: Startable[] = [text, http];

  let state: 'new' | 'starting' | 'running' | 'stopping' | 'stopped' = 'new';
  let stopping: Promise<void> | undefined;
  const started: Startable[] = [];

  async function stopAll(): Promise<void> {
    state = 'stopping';
    const ins = started.filter((s) => ingresses.includes(s));
    const outs = started.filter((s) => !ingresses.includes(s)).reverse();
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

  return {
    dispatcher,
    publisher,
    registry,
    devices,
    history: core.history,
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
      const a = this.addresses();
      log.info(`websocket sessions on ws://${a.ws}/ (demo page: http://${a.ws}/)`, { listener: 'ws', address: a.ws });
      log.info(`text ingress on tcp://${a.text}`, { listener: 'text', address: a.text });
      log.info(`http api on http://${a.http}/v1/send`, { listener: 'http', address: a.http });
      for (const t of transports) {
        if (t !== ws) log.info(`transport ${t.name} ready`, { transport: t.name, devices: registry.index(t.name).targetCount });
      }
      core.resumePending();
    },
    stop() {
      stopping ??= state === 'new' ? (core.close(), Promise.resolve()) : stopAll();
      return stopping;
    },
    addresses() {
      return { ws: ws.addresses().ws ?? '', text: text.addresses().text ?? '', http: http.addresses().http ?? '' };
    },
  };
}
