import type { Config } from '../config/load.js';
import type { Dispatcher } from '../delivery/dispatcher.js';
import type { Publisher } from '../delivery/publisher.js';
import { HttpIngress } from '../ingress/http.js';
import { TextIngress } from '../ingress/text.js';
import type { WebSocketTransport } from '../live/websocket.js';
import { raiseFileLimit } from '../net/fd-limit.js';
import { isLoopback } from '../net/listen.js';
import { type TlsMaterial, describeTls, readTls } from '../net/tls.js';
import { errorMessage } from '../errors.js';
import { type Logger, silentLogger } from '../obs/log.js';
import { Metrics } from '../obs/metrics.js';
import type { DeviceService } from '../push/devices.js';
import type { MessageStreams } from '../store/stream.js';
import type { Registry } from '../store/target-index.js';
import { VERSION } from '../version.js';
import { lookupOf } from './lookup.js';
import { type NodeOptions, type NotifyNode, type ReloadResult, buildNode } from './node.js';
import { RefusalLog } from '../obs/refusals.js';

export type { ReloadResult };

export interface Addresses {
  /** WebSocket sessions and the demo page, "host:port". */
  ws: string;
  /** Text ingress. */
  text: string;
  /** HTTP API. */
  http: string;
}

export interface Daemon {
  /** Starts the node (transports), then the ingresses. Rejects (having stopped what started) when a listener fails. */
  start(): Promise<void>;
  /**
   * Stops accepting, answers what was accepted, then closes sessions with 1001 and stops the
   * transports, which hand what they still hold to the retry queue for the next start (requests
   * on the wire get `shutdown.graceMs`). Idempotent; bounded by `shutdown.timeoutMs` plus
   * `shutdown.graceMs`.
   */
  stop(): Promise<void>;
  /**
   * Applies a new config without dropping a session (the node's reload). Settings that need a
   * restart are listed, not applied.
   */
  reload(next: Config): Promise<ReloadResult>;
  /** The bound addresses (real ports when 0 was configured). */
  addresses(): Addresses;
  readonly node: NotifyNode;
  readonly dispatcher: Dispatcher;
  readonly publisher: Publisher;
  /** This node's local indexes: its sessions (`websocket`) and each push transport's devices. */
  readonly registry: Registry;
  readonly devices: DeviceService;
  /** The message streams (undefined when history is off). */
  readonly streams: MessageStreams | undefined;
  readonly metrics: Metrics;
}

interface Startable {
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** A node with its listeners: the WebSocket port (the node's live transport), the Text ingress and the HTTP API. */
export async function createDaemon(config: Config, opts: { log?: Logger; backends?: NodeOptions['backends']; name?: string } = {}): Promise<Daemon> {
  const log = opts.log ?? silentLogger;
  const gauges = {
    sessions: () => node.backends.sessions.targetCount,
    uids: () => node.backends.sessions.uidCount,
    storeRows: () => node.backends.streams?.size ?? 0,
  };
  const metrics = new Metrics(gauges);
  // The certificates first: a file that is wrong stops the start before the store is opened.
  const wsTls = config.ws.tls ? readTls(config.ws.tls, 'ws.tls') : undefined;
  const httpTls = config.http.tls ? readTls(config.http.tls, 'http.tls') : undefined;
  const refusals = new RefusalLog(log);
  const node = await buildNode(config, {
    log,
    refusals,
    live: true,
    telemetry: metrics,
    ...(opts.backends ? { backends: opts.backends } : {}),
    ...(opts.name !== undefined ? { name: opts.name } : {}),
    ...(wsTls ? { wsTls } : {}),
  });
  const { transports, dispatcher, publisher } = node;
  const ws = node.websocket as WebSocketTransport;
  const closeTimeoutMs = config.shutdown.timeoutMs;
  const telemetry = metrics;
  const text = new TextIngress({ ...config.text, publisher, telemetry, log, closeTimeoutMs, refusals });
  const startedAt = Date.now();
  const health = () => ({
    store: node.backends.health(),
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
    history: node.backends.streams ? { rows: node.backends.streams.size } : { enabled: false },
    wsAuth: config.ws.auth,
    // Where pages connect (the console's token generator builds the URL from these).
    wsTls: wsTls !== undefined,
    wsBehindProxy: config.ws.behindProxy,
    ...health(),
  });
  const { tls: _httpTlsFiles, ...httpSettings } = config.http;
  const http = new HttpIngress({
    ...httpSettings,
    publisher,
    devices: node.devices,
    health,
    status,
    metrics,
    telemetry,
    log,
    closeTimeoutMs,
    wsAuth: { mode: config.ws.auth, secret: config.ws.secret },
    failures: node.failures,
    limits: { connections: config.limits.connections, connectionsPerIp: config.limits.connectionsPerIp, silentTimeout: config.limits.silentTimeout },
    ...(httpTls ? { tls: httpTls } : {}),
    lookup: lookupOf({ journal: node.journal, presence: node.backends.presence, devices: node.devices, streams: node.backends.streams, local: { node: node.name, describe: (sid) => ws.describe(sid) } }),
    refusals,
  });
  for (const m of [wsTls, httpTls]) {
    if (m === undefined) continue;
    for (const w of m.warnings) log.warn(w, { listener: m.configKey.split('.')[0] });
  }

  /**
   * A reload rereads the certificate files of a listener that serves TLS (the same paths or new
   * ones): new connections get the new certificate, open ones keep theirs. A file that is wrong
   * keeps the running certificate and says why.
   */
  function reloadTls(next: Config): void {
    const listeners = [
      { key: 'ws.tls', files: next.ws.tls, running: wsTls !== undefined, set: (m: TlsMaterial) => ws.setTls(m) },
      { key: 'http.tls', files: next.http.tls, running: httpTls !== undefined, set: (m: TlsMaterial) => http.setTls(m) },
    ];
    for (const l of listeners) {
      if (!l.running || !l.files) continue;
      let m: TlsMaterial;
      try {
        m = readTls(l.files, l.key);
        l.set(m);
      } catch (err) {
        log.error(`${l.key}: keeping the running certificate: ${errorMessage(err)}`, { listener: l.key.split('.')[0] });
        continue;
      }
      log.info(`${l.key}: certificate reloaded; new connections get it, open ones keep theirs`, { listener: l.key.split('.')[0], ...describeTls(m) });
      for (const w of m.warnings) log.warn(w, { listener: l.key.split('.')[0] });
    }
  }
  const ingresses: Startable[] = [text, http];

  let state: 'new' | 'starting' | 'running' | 'stopping' | 'stopped' = 'new';
  let stopping: Promise<void> | undefined;
  const started: Startable[] = [];

  async function stopAll(): Promise<void> {
    state = 'stopping';
    const work = (async () => {
      await Promise.all(started.map((s) => s.stop()));
      await node.stop();
    })();
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<'timeout'>((resolve) => {
      // The transports' grace comes on top: a stop cut short before they hand over what they
      // hold would lose it.
      timer = setTimeout(() => resolve('timeout'), closeTimeoutMs + config.shutdown.graceMs + 1000);
    });
    if ((await Promise.race([work, deadline])) === 'timeout') {
      log.warn('shutdown timed out; closing anyway', { timeoutMs: closeTimeoutMs });
    }
    clearTimeout(timer);
    state = 'stopped';
  }

  const daemon: Daemon = {
    node,
    dispatcher,
    publisher,
    registry: node.registry,
    devices: node.devices,
    streams: node.backends.streams,
    metrics,
    async start() {
      if (state !== 'new') return;
      state = 'starting';
      try {
        await node.start();
        for (const part of ingresses) {
          await part.start();
          started.push(part);
        }
      } catch (err) {
        await stopAll();
        throw err;
      }
      state = 'running';
      const fds = raiseFileLimit();
      if (fds !== undefined) {
        const note = fds.raisedFrom !== undefined ? ` (raised from ${fds.raisedFrom})` : fds.soft < fds.hard ? ' (could not raise it to the hard limit)' : '';
        log.info(`open files: at most ${fds.soft}${note}; each session is one`, { fdSoft: fds.soft, fdHard: fds.hard });
      }
      const a = daemon.addresses();
      const [wsScheme, pageScheme] = wsTls ? ['wss', 'https'] : ['ws', 'http'];
      log.info(`websocket sessions on ${wsScheme}://${a.ws}/ (demo page: ${pageScheme}://${a.ws}/)`, { listener: 'ws', address: a.ws, ...(wsTls ? describeTls(wsTls) : {}) });
      log.info(`text ingress on tcp://${a.text}`, { listener: 'text', address: a.text });
      log.info(`http api on ${httpTls ? 'https' : 'http'}://${a.http}/v1/send`, { listener: 'http', address: a.http, ...(httpTls ? describeTls(httpTls) : {}) });
      if (config.ws.auth === 'none' && !isLoopback(config.ws.listen)) {
        log.warn(`ws.listen ${config.ws.listen} is reachable from other hosts and ws.auth is none: any page can bind any uid; set ws.auth: token`, {
          listener: 'ws',
        });
      }
      for (const t of transports) {
        if (t !== ws) log.info(`transport ${t.name} ready`, { transport: t.name, devices: node.registry.index(t.name).targetCount });
      }
    },
    async reload(next) {
      if (state !== 'running') throw new Error('notify is not running');
      const result = await node.reload(next);
      reloadTls(next);
      http.setLimits({ connections: next.limits.connections, connectionsPerIp: next.limits.connectionsPerIp, silentTimeout: next.limits.silentTimeout });
      return result;
    },
    stop() {
      stopping ??= state === 'new' ? node.stop() : stopAll();
      return stopping;
    },
    addresses() {
      return { ws: ws.address, text: text.addresses().text ?? '', http: http.addresses().http ?? '' };
    },
  };
  return daemon;
}
