import { resolve } from 'node:path';
import { isLoopback } from '../net/listen.js';
import { LOG_LEVELS } from '../obs/log.js';
import { TRANSPORT_TYPES } from '../push/kinds.js';
import { type Infer, type Validation, boolean, custom, defaultsOf, deepFreeze, duration, formatPath, integer, listOf, listen, mapOf, oneOf, section, string, validate } from './schema.js';
import { parseCidr } from '../net/allow.js';
import { errorMessage } from '../errors.js';
import { parseRedisUrl } from '../store/redis-url.js';

const KiB = 1024;
const MiB = 1024 * KiB;

const BYTE_UNITS: Readonly<Record<string, number>> = {
  b: 1,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  tb: 1000 ** 4,
  kib: KiB,
  mib: MiB,
  gib: 1024 * MiB,
  tib: 1024 * 1024 * MiB,
};

/**
 * A byte size written "1GiB", "512MiB", "500MB" (KiB, MiB, GiB, TiB are powers of 1024; KB,
 * MB, GB, TB of 1000) or a bare number of bytes; the value is in bytes.
 */
function byteSize<const D extends string>(o: { default: D; min: number }) {
  const parse = (v: unknown): number | undefined => {
    if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : undefined;
    if (typeof v !== 'string') return undefined;
    const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(v);
    const unit = m === null ? undefined : BYTE_UNITS[(m[2] as string).toLowerCase() || 'b'];
    return m === null || unit === undefined ? undefined : Math.round(Number(m[1]) * unit);
  };
  return custom(
    (value, path, ctx) => {
      const bytes = parse(value);
      const name = path.join('.');
      if (bytes === undefined) ctx.fail(path, `${name} must be a byte size such as "1GiB", "512MiB" or "500MB" (a bare number is bytes), got ${JSON.stringify(value)}`);
      else if (bytes < o.min) ctx.fail(path, `${name} must be at least ${o.min} bytes, got ${JSON.stringify(value)}`);
      else return bytes;
      return parse(o.default) as number;
    },
    { default: o.default },
  );
}

/**
 * One device token under `devices.UID.NAME`: a string (an APNs token, a registration id), or a
 * mapping (a Web Push subscription `{endpoint, keys: {p256dh, auth}}`), kept as its JSON text.
 * The transport's kind checks it (checkDevices).
 */
const deviceToken = custom<string>((value, path, ctx) => {
  if (typeof value === 'string') return value;
  if (value !== null && typeof value === 'object' && !Array.isArray(value)) return JSON.stringify(value);
  ctx.fail(path, `${formatPath(path)} must be a device token (a string) or a Web Push subscription (a mapping {endpoint, keys: {p256dh, auth}})`);
  return '';
});

/** One entry under `transports:`: its `type` and that type's validated settings. */
export interface TransportSettings {
  type: string;
  [key: string]: unknown;
}

/** `transports:` name -> settings, each validated by the spec of its `type` (push/kinds.ts). */
const transports = custom<Record<string, TransportSettings>>((value, path, ctx) => {
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    ctx.fail(path, 'transports must be a mapping of name -> settings');
    return {};
  }
  const out: Record<string, TransportSettings> = {};
  for (const [name, raw] of Object.entries(value as Record<string, unknown>)) {
    const here = [...path, name];
    if (name === 'websocket') ctx.fail(here, 'transports.websocket: the name "websocket" is taken by the built-in WebSocket transport (configure it under ws)', true);
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
      ctx.fail(here, `${here.join('.')} must be a mapping with a "type"`);
      continue;
    }
    const { type = name, ...settings } = raw as Record<string, unknown>;
    const kind = typeof type === 'string' ? TRANSPORT_TYPES[type] : undefined;
    if (!kind) {
      const known = Object.keys(TRANSPORT_TYPES).join(', ') || 'none yet';
      ctx.fail([...here, 'type'], `${here.join('.')}.type: unknown transport type ${JSON.stringify(type)} (known: ${known})`);
      continue;
    }
    out[name] = { type: type as string, ...(validate(kind.settings, settings, here, ctx) as object) };
  }
  return out;
});

/**
 * `ws.tls` / `http.tls`: `{cert, key}` PEM file paths (resolved against the config file's folder),
 * or null (plain ws:// and http://). The files themselves are read and checked when the daemon
 * starts and at every SIGHUP (net/tls.ts).
 */
const tlsFiles = custom<{ cert: string; key: string } | null, null>(
  (v, path, ctx) => {
    const name = path.join('.');
    if (v === undefined || v === null) return null;
    if (typeof v !== 'object' || Array.isArray(v)) {
      ctx.fail(path, `${name} must be a mapping {cert, key} of PEM file paths`);
      return null;
    }
    const obj = v as Record<string, unknown>;
    for (const k of Object.keys(obj)) {
      if (k !== 'cert' && k !== 'key') ctx.fail([...path, k], `unknown key "${k}" in ${name}; expected one of: cert, key (put intermediates after the certificate in the cert file)`, true);
    }
    const out: Record<string, string> = {};
    for (const k of ['cert', 'key'] as const) {
      const f = obj[k];
      if (typeof f !== 'string' || f === '') ctx.fail([...path, k], `${name}.${k} must be a file path${f === undefined ? ` (${name} needs both cert and key)` : ''}`);
      else out[k] = resolve(ctx.baseDir, f);
    }
    return out.cert !== undefined && out.key !== undefined ? { cert: out.cert, key: out.key } : null;
  },
  { default: null },
);

/**
 * The notify config: every key, its type, range and default. `Config` is inferred from it and
 * `DEFAULTS` read from it. Units are in the names; durations are written "10s" and read as ms.
 */
export const CONFIG_SPEC = section({
  ws: section({
    /** WebSocket sessions and the demo page. */
    listen: listen({ default: '127.0.0.1:1234' }),
    /** Largest frame a client may send. */
    maxPayloadBytes: integer({ min: 16, max: 100 * MiB, default: 64 * KiB }),
    /** Unsent data a session may hold before it counts as a slow consumer and is dropped. */
    maxBufferedBytes: integer({ min: KiB, default: 1 * MiB }),
    /** Ping every session this often; one that has not answered the previous ping is dropped. */
    heartbeatIntervalMs: integer({ min: 10, default: 30_000 }),
    /** `none`: any page may bind any uid (the original protocol). `token`: binding needs a token from `notify token`. */
    auth: oneOf(['none', 'token'], { default: 'none' }),
    /** The HMAC key for connection tokens (at least 32 characters); required with auth: token. */
    secret: string({ default: null, check: (v) => (v.length < 32 ? 'must be at least 32 characters' : undefined) }),
    /** A connection that has not bound a uid this long after connecting is closed (4408). In ms once read. */
    bindTimeout: duration({ default: '10s', minMs: 10 }),
    /**
     * A reverse proxy on this machine forwards the connections: for the per-address limits, a
     * connection from loopback counts as the last address in its X-Forwarded-For header.
     */
    behindProxy: boolean({ default: false }),
    /** Serve wss:// and https:// (demo page, client script, service worker): `{cert, key}` PEM files, reread on SIGHUP. */
    tls: tlsFiles,
  }),
  text: section({
    /** Line-based TCP ingress of the original protocol. */
    listen: listen({ default: '127.0.0.1:5678' }),
    /** Longest request line. */
    maxLineBytes: integer({ min: 64, max: 100 * MiB, default: 64 * KiB }),
    /** Lines of one connection being delivered at once before it stops reading. */
    maxPipelinedLines: integer({ min: 1, default: 1024 }),
    /** Peers allowed besides loopback, as CIDRs ("10.0.0.0/8", "fd00::/8") or addresses. */
    allow: listOf(string({ check: (v) => (parseCidr(v) ? undefined : 'must be an IP address or a CIDR such as 10.0.0.0/8') })),
  }),
  http: section({
    /** Publisher HTTP API. */
    listen: listen({ default: '127.0.0.1:5680' }),
    /** When set, /v1/* needs `Authorization: Bearer <token>`. */
    token: string({ default: null, check: (v) => (v.length < 16 ? 'must be at least 16 characters' : undefined) }),
    /** Largest request body. */
    maxBodyBytes: integer({ min: KiB, max: 100 * MiB, default: 1 * MiB }),
    /** Allow a non-loopback http.listen without a token (otherwise notify refuses to start). */
    insecure: boolean({ default: false }),
    /**
     * A reverse proxy on this machine forwards the API: connections from loopback are not
     * counted per address (limits.connectionsPerIp), as each carries requests of many clients;
     * they still count toward limits.connections. A loopback API without a token then answers
     * any Host name (else only loopback names: DNS rebinding).
     */
    behindProxy: boolean({ default: false }),
    /** Serve the API over https://: `{cert, key}` PEM files, reread on SIGHUP. */
    tls: tlsFiles,
  }),
  /** Caps on what clients and publishers may use; each refusal is counted (notify_limit_refusals_total). */
  limits: section({
    /** WebSocket connections at once, in all. */
    connections: integer({ min: 1, default: 100_000 }),
    /** WebSocket connections at once from one IP address. */
    connectionsPerIp: integer({ min: 1, default: 1_000 }),
    /** New WebSocket connections per second from one IP address (a burst of as many is allowed). */
    connectRatePerIp: integer({ min: 1, default: 100 }),
    /** Uids one publish may address. */
    uidsPerMessage: integer({ min: 1, default: 1_000 }),
    /** Live sessions one uid may have; a further bind is refused (4429). */
    sessionsPerUid: integer({ min: 1, default: 100 }),
    /**
     * A connection to the WebSocket or HTTP port that has not sent a complete request (the
     * handshake, an API request) within this is closed: silent connections hold no descriptor
     * for long.
     */
    silentTimeout: duration({ default: '10s', minMs: 10 }),
  }),
  dispatch: section({
    /** How long one transport may take to deliver to one uid. */
    deliverTimeoutMs: integer({ min: 1, default: 5_000 }),
    /** `all`: every transport at once; `live-first`: push transports only when no live session took it. */
    route: oneOf(['all', 'live-first'], { default: 'all' }),
    /** With live-first: how long a resuming session has to ack before the push transports are used. In ms once read. */
    ackTimeout: duration({ default: '2s', minMs: 1 }),
  }),
  history: section({
    /** Keep messages for sessions that resume, and answers to publisher ids (the store). */
    enabled: boolean({ default: true }),
    /** Messages kept per uid. */
    size: integer({ min: 1, max: 100_000, default: 100 }),
    /** How long a message is kept at most (a message's own ttl may be shorter). In ms once read. */
    ttl: duration({ default: '24h', minMs: 1000 }),
    /** Stored rows in all (one per uid a message was for): the bound on disk and memory. */
    maxMessages: integer({ min: 1, max: 1_000_000_000, default: 1_000_000 }),
    /**
     * Message bytes stored in all (a message to many uids counts once): the bound on disk. The
     * oldest go first. Written "1GiB", "512MiB"; in bytes once read.
     */
    maxBytes: byteSize({ min: MiB, default: '1GiB' }),
    /** How long a publisher's message id is remembered: a repeat gets the first answer. In ms once read. */
    dedupeWindow: duration({ default: '1h', minMs: 0 }),
  }),
  shutdown: section({
    /** How long a stop waits for deliveries in flight before it closes everything anyway. */
    timeoutMs: integer({ min: 0, default: 10_000 }),
    /**
     * How long a stopping (or, at a reload, replaced) push transport lets provider requests on the
     * wire finish. Deliveries still queued, and requests cut off after it, go to the retry queue
     * for the next process (or the successor transport) to send: at least once, never dropped.
     */
    graceMs: duration({ default: '5s', minMs: 0 }),
  }),
  cluster: section({
    /**
     * The Redis that several notify processes share (every piece of state lives there):
     * redis://[user:pass@]host:port[/db], rediss://… (TLS), or
     * redis+sentinel://host:26379[,host2:26379]/MASTERNAME. Unset: one process on the embedded
     * store in state.dir.
     */
    redis: custom(
      (v, path, ctx) => {
        if (v === undefined || v === null || v === '') return null;
        if (typeof v !== 'string') {
          ctx.fail(path, 'cluster.redis must be a Redis URL (a string)');
          return null;
        }
        try {
          parseRedisUrl(v);
        } catch (err) {
          ctx.fail(path, `cluster.redis: ${errorMessage(err)}`);
        }
        return v;
      },
      { default: null },
    ),
    /** This process's name in the cluster (presence, leases, reports). Default: HOSTNAME-PID. */
    node: string({ default: null, check: (v) => (/^[A-Za-z0-9._-]{1,64}$/.test(v) ? undefined : 'must be 1-64 letters, digits, dots, dashes or underscores') }),
    /**
     * How long a node holds a delivery waiting for a retry past its due time before another node
     * may take it up (a node that died: its deliveries are completed by another, once). In ms
     * once read.
     */
    retryLease: duration({ default: '60s', minMs: 100 }),
    /** The prefix of every Redis key and channel notify uses, so several deployments can share one Redis. */
    prefix: string({ default: 'notify', check: (v) => (/^[A-Za-z0-9._-]{1,32}$/.test(v) ? undefined : 'must be 1-32 letters, digits, dots, dashes or underscores') }),
  }),
  state: section({
    /**
     * Where the daemon keeps what must survive a restart (device registrations, retired tokens).
     * Absolute once read: resolved against the config file's folder (or the working directory).
     */
    dir: custom(
      (v, path, ctx) => {
        if (typeof v !== 'string' || v === '') {
          ctx.fail(path, 'state.dir must be a folder path');
          return '';
        }
        return resolve(ctx.baseDir, v);
      },
      { default: './notify-data' },
    ),
  }),
  log: section({
    level: oneOf(LOG_LEVELS, { default: 'info' }),
  }),
  /** Configured transports by name (APNs, HTTP push); the WebSocket transport is always on. */
  transports,
  /** Device tokens: uid -> transport name -> tokens. */
  devices: mapOf(mapOf(listOf(deviceToken)), { checkKey: (uid) => (uid.length === 0 ? 'a uid must not be empty' : undefined) }),
});

/** A validated config: what `parseConfig` returns (frozen). */
export type Config = Infer<typeof CONFIG_SPEC>;
/** Caps on what clients and publishers may use. */
export type Limits = Config['limits'];

/** Every key with its default as written in the YAML. Units are in the names. */
export const DEFAULTS = deepFreeze(defaultsOf(CONFIG_SPEC));

/** Checks across keys, once each key is valid on its own. */
export function checkConfig(cfg: Config, ctx: Validation): void {
  if (ctx.problems.length > 0) return;
  checkDevices(cfg, ctx);
  if (ctx.problems.length === 0 && !cfg.http.token && !cfg.http.insecure && !isLoopback(cfg.http.listen)) {
    ctx.fail(
      ['http', 'listen'],
      `http.listen is ${cfg.http.listen}, reachable from other hosts, so the API needs http.token (or http.insecure: true to run it open)`,
    );
  }
  if (ctx.problems.length === 0 && cfg.ws.auth === 'token' && !cfg.ws.secret) {
    ctx.fail(['ws', 'auth'], 'ws.secret is required when ws.auth is token (at least 32 characters; keep it in the environment: secret: ${NOTIFY_WS_SECRET})');
  }
}

/** Cross-checks `devices` against `transports`: each list names a configured transport and holds valid tokens. */
function checkDevices(cfg: Config, ctx: Validation): void {
  const owner = new Map<string, string>();
  for (const [uid, byTransport] of Object.entries(cfg.devices)) {
    for (const [name, tokens] of Object.entries(byTransport)) {
      const path = ['devices', uid, name];
      const settings = cfg.transports[name];
      if (!settings) {
        const known = Object.keys(cfg.transports).join(', ') || 'none configured';
        ctx.fail(path, `no transport named "${name}" (transports: ${known})`, true);
        continue;
      }
      const type = TRANSPORT_TYPES[settings.type];
      tokens.forEach((token, i) => {
        const here = [...path, String(i)];
        const bad = type?.checkTarget?.(token);
        if (bad) {
          ctx.fail(here, bad);
          return;
        }
        const key = `${name}\0${type?.normalizeTarget ? type.normalizeTarget(token) : token}`;
        const other = owner.get(key);
        if (other !== undefined && other !== uid) {
          ctx.fail(here, `this token is also listed under devices.${other}.${name}; a device belongs to one uid`);
        }
        owner.set(key, uid);
      });
    }
  }
}
