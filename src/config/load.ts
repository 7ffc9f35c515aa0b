import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { type Document, LineCounter, isMap, isPair, isScalar, parse as parseYaml, parseDocument, visit } from 'yaml';
import { type Problem, type Spec, Validation, formatPath, validate } from './schema.js';
import { isLoopback } from '../net/listen.js';
import { NotifyError } from '../errors.js';
import { LOG_LEVELS, type LogLevel, isSecretKey } from '../obs/log.js';
import { TRANSPORT_TYPES } from '../push/kinds.js';
import type { Route } from '../types.js';
import { parseCidr } from '../net/allow.js';

/** Caps on what clients and publishers may use; each refusal is counted (notify_limit_refusals_total). */
export interface Limits {
  connections: number;
  connectionsPerIp: number;
  connectRatePerIp: number;
  uidsPerMessage: number;
  sessionsPerUid: number;
}

export { parseListen, formatListen } from './schema.js';

/** Every key with its default. Units are in the names. */
export const DEFAULTS = {
  ws: {
    /** WebSocket sessions and the demo page. */
    listen: '127.0.0.1:1234',
    /** Largest frame a client may send. */
    maxPayloadBytes: 64 * 1024,
    /** Unsent data a session may hold before it counts as a slow consumer and is dropped. */
    maxBufferedBytes: 1024 * 1024,
    /** Ping every session this often; one that has not answered the previous ping is dropped. */
    heartbeatIntervalMs: 30_000,
    /** `none`: any page may bind any uid (the original protocol). `token`: binding needs a token from `notify token`. */
    auth: 'none' as 'none' | 'token',
    /** The HMAC key for connection tokens (at least 32 characters); required with auth: token. */
    secret: null as string | null,
    /** A connection that has not bound a uid this long after connecting is closed (4408). */
    bindTimeout: '10s',
    /**
     * A reverse proxy on this machine forwards the connections: for the per-address limits, a
     * connection from loopback counts as the last address in its X-Forwarded-For header.
     */
    behindProxy: false,
  },
  text: {
    /** Line-based TCP ingress of the original protocol. */
    listen: '127.0.0.1:5678',
    /** Longest request line. */
    maxLineBytes: 64 * 1024,
    /** Lines of one connection being delivered at once before it stops reading. */
    maxPipelinedLines: 1024,
    /** Peers allowed besides loopback, as CIDRs ("10.0.0.0/8", "fd00::/8") or addresses. */
    allow: [] as string[],
  },
  http: {
    /** Publisher HTTP API. */
    listen: '127.0.0.1:5680',
    /** When set, /v1/* needs `Authorization: Bearer <token>`. */
    token: null as string | null,
    /** Largest request body. */
    maxBodyBytes: 1024 * 1024,
    /** Allow a non-loopback http.listen without a token (otherwise notify refuses to start). */
    insecure: false,
  },
  limits: {
    /** WebSocket connections at once, in all. */
    connections: 100_000,
    /** WebSocket connections at once from one IP address. */
    connectionsPerIp: 1_000,
    /** New WebSocket connections per second from one IP address (a burst of as many is allowed). */
    connectRatePerIp: 100,
    /** Uids one publish may address. */
    uidsPerMessage: 1_000,
    /** Live sessions one uid may have; a further bind is refused (4429). */
    sessionsPerUid: 100,
  },
  dispatch: {
    /** How long one transport may take to deliver to one uid. */
    deliverTimeoutMs: 5_000,
    /** `all`: every transport at once; `live-first`: push transports only when no live session took it. */
    route: 'all' as Route,
    /** With live-first: how long a resuming session has to ack before the push transports are used. */
    ackTimeout: '2s',
  },
  history: {
    /** Keep messages for sessions that resume, and answers to publisher ids (the store). */
    enabled: true,
    /** Messages kept per uid. */
    size: 100,
    /** How long a message is kept at most (a message's own ttl may be shorter). */
    ttl: '24h',
    /** Stored rows in all (one per uid a message was for): the bound on disk and memory. */
    maxMessages: 1_000_000,
    /** How long a publisher's message id is remembered: a repeat gets the first answer. */
    dedupeWindow: '1h',
  },
  shutdown: {
    /** How long a stop waits for deliveries in flight before it closes everything anyway. */
    timeoutMs: 10_000,
  },
  state: {
    /** Where the daemon keeps what must survive a restart (device registrations, retired tokens). */
    dir: './notify-data',
  },
  log: {
    level: 'info' as LogLevel,
  },
} as const;

export interface TransportSettings {
  type: string;
  [key: string]: unknown;
}

export interface Config {
  /** `bindTimeout` in milliseconds. */
  ws: {
    listen: string;
    maxPayloadBytes: number;
    maxBufferedBytes: number;
    heartbeatIntervalMs: number;
    auth: 'none' | 'token';
    secret: string | null;
    bindTimeout: number;
    behindProxy: boolean;
  };
  text: { listen: string; maxLineBytes: number; maxPipelinedLines: number; allow: string[] };
  http: { listen: string; token: string | null; maxBodyBytes: number; insecure: boolean };
  limits: Limits;
  /** `ackTimeout` in milliseconds. */
  dispatch: { deliverTimeoutMs: number; route: Route; ackTimeout: number };
  /** `ttl` and `dedupeWindow` in milliseconds. */
  history: { enabled: boolean; size: number; ttl: number; maxMessages: number; dedupeWindow: number };
  shutdown: { timeoutMs: number };
  /** `dir` is absolute: resolved against the config file's folder (or the working directory). */
  state: { dir: string };
  log: { level: LogLevel };
  /** Configured transports by name (APNs, HTTP push); the WebSocket transport is always on. */
  transports: Record<string, TransportSettings>;
  /** Device tokens: uid -> transport name -> tokens. */
  devices: Record<string, Record<string, string[]>>;
}

const KiB = 1024;
const MiB = 1024 * KiB;

const transportsSpec: Spec = {
  type: 'custom',
  validate(value, path, ctx) {
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
  },
};

const SCHEMA: Spec = {
  type: 'section',
  keys: {
    ws: {
      type: 'section',
      keys: {
        listen: { type: 'listen', default: DEFAULTS.ws.listen },
        maxPayloadBytes: { type: 'integer', min: 16, max: 100 * MiB, default: DEFAULTS.ws.maxPayloadBytes },
        maxBufferedBytes: { type: 'integer', min: KiB, default: DEFAULTS.ws.maxBufferedBytes },
        heartbeatIntervalMs: { type: 'integer', min: 10, default: DEFAULTS.ws.heartbeatIntervalMs },
        auth: { type: 'enum', values: ['none', 'token'], default: DEFAULTS.ws.auth },
        secret: { type: 'string', default: null, check: (v) => (v.length < 32 ? 'must be at least 32 characters' : undefined) },
        bindTimeout: { type: 'duration', default: DEFAULTS.ws.bindTimeout, minMs: 10 },
        behindProxy: { type: 'boolean', default: DEFAULTS.ws.behindProxy },
      },
    },
    text: {
      type: 'section',
      keys: {
        listen: { type: 'listen', default: DEFAULTS.text.listen },
        maxLineBytes: { type: 'integer', min: 64, max: 100 * MiB, default: DEFAULTS.text.maxLineBytes },
        maxPipelinedLines: { type: 'integer', min: 1, default: DEFAULTS.text.maxPipelinedLines },
        allow: {
          type: 'list',
          of: { type: 'string', check: (v) => (parseCidr(v) ? undefined : 'must be an IP address or a CIDR such as 10.0.0.0/8') },
        },
      },
    },
    http: {
      type: 'section',
      keys: {
        listen: { type: 'listen', default: DEFAULTS.http.listen },
        token: { type: 'string', default: null, check: (v) => (v.length < 16 ? 'must be at least 16 characters' : undefined) },
        maxBodyBytes: { type: 'integer', min: KiB, max: 100 * MiB, default: DEFAULTS.http.maxBodyBytes },
        insecure: { type: 'boolean', default: DEFAULTS.http.insecure },
      },
    },
    limits: {
      type: 'section',
      keys: {
        connections: { type: 'integer', min: 1, default: DEFAULTS.limits.connections },
        connectionsPerIp: { type: 'integer', min: 1, default: DEFAULTS.limits.connectionsPerIp },
        connectRatePerIp: { type: 'integer', min: 1, default: DEFAULTS.limits.connectRatePerIp },
        uidsPerMessage: { type: 'integer', min: 1, default: DEFAULTS.limits.uidsPerMessage },
        sessionsPerUid: { type: 'integer', min: 1, default: DEFAULTS.limits.sessionsPerUid },
      },
    },
    dispatch: {
      type: 'section',
      keys: {
        deliverTimeoutMs: { type: 'integer', min: 1, default: DEFAULTS.dispatch.deliverTimeoutMs },
        route: { type: 'enum', values: ['all', 'live-first'], default: DEFAULTS.dispatch.route },
        ackTimeout: { type: 'duration', default: DEFAULTS.dispatch.ackTimeout, minMs: 1 },
      },
    },
    history: {
      type: 'section',
      keys: {
        enabled: { type: 'boolean', default: DEFAULTS.history.enabled },
        size: { type: 'integer', min: 1, max: 100_000, default: DEFAULTS.history.size },
        ttl: { type: 'duration', default: DEFAULTS.history.ttl, minMs: 1000 },
        maxMessages: { type: 'integer', min: 1, max: 1_000_000_000, default: DEFAULTS.history.maxMessages },
        dedupeWindow: { type: 'duration', default: DEFAULTS.history.dedupeWindow, minMs: 0 },
      },
    },
    shutdown: {
      type: 'section',
      keys: { timeoutMs: { type: 'integer', min: 0, default: DEFAULTS.shutdown.timeoutMs } },
    },
    state: {
      type: 'section',
      keys: {
        dir: {
          type: 'custom',
          validate: (v, path, ctx) => {
            if (v === undefined || v === null) return resolve(ctx.baseDir, DEFAULTS.state.dir);
            if (typeof v !== 'string' || v === '') {
              ctx.fail(path, 'state.dir must be a folder path');
              return resolve(ctx.baseDir, DEFAULTS.state.dir);
            }
            return resolve(ctx.baseDir, v);
          },
        },
      },
    },
    log: {
      type: 'section',
      keys: { level: { type: 'enum', values: LOG_LEVELS, default: DEFAULTS.log.level } },
    },
    transports: transportsSpec,
    devices: {
      type: 'map',
      checkKey: (uid) => (uid.length === 0 ? 'a uid must not be empty' : undefined),
      of: { type: 'map', of: { type: 'list', of: { type: 'string' } } },
    },
  },
};

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

/** A config that failed validation; `problems` has every one, `message` the first. */
export class ConfigError extends NotifyError {
  readonly problems: readonly string[];
  constructor(problems: string[]) {
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more problem${problems.length > 2 ? 's' : ''})` : '';
    super('NOTIFY_ERR_CONFIG', `${problems[0]}${more}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

function formatProblem(source: string, p: Problem): string {
  const where = p.line === undefined ? source : `${source}:${p.line}:${p.col}`;
  const text = p.message.startsWith(`${p.path}`) || !p.path ? p.message : `${p.path}: ${p.message}`;
  return `${where}: ${text}`;
}

function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const k of Object.keys(v)) deepFreeze((v as Record<string, unknown>)[k]);
  }
  return v;
}

const ENV_REF = /\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g;

/**
 * Replaces `${NAME}` in every string value with the environment variable NAME (`${NAME:-x}`:
 * x when NAME is unset or empty; `$${NAME}`: the literal text). A value that is exactly one
 * unquoted `${NAME}` takes the variable's YAML type, so `port: ${PORT}` is a number. An unset
 * variable is a problem at its line.
 */
function substituteEnv(doc: Document, env: NodeJS.ProcessEnv, fail: (path: string[], offset: number, message: string) => void): void {
  visit(doc, {
    Scalar(key, node, ancestors) {
      if (key === 'key' || typeof node.value !== 'string' || !node.value.includes('${')) return;
      const text = node.value;
      const path = ancestors.filter(isPair).map((p) => (isScalar(p.key) ? String(p.key.value) : '?'));
      const missing: string[] = [];
      const out = text.replace(ENV_REF, (_m, escaped: string, name: string, fallback: string | undefined) => {
        if (escaped) return `\${${name}${fallback !== undefined ? `:-${fallback}` : ''}}`;
        const value = env[name];
        if (value !== undefined && (value !== '' || fallback === undefined)) return value;
        if (fallback !== undefined) return fallback;
        missing.push(name);
        return '';
      });
      for (const name of missing) fail(path, node.range?.[0] ?? 0, `\${${name}} is not set in the environment`);
      const whole = /^\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}$/.test(text);
      if (whole && node.type === 'PLAIN' && missing.length === 0) {
        const typed: unknown = parseYaml(out);
        node.value = typed === null || ['number', 'boolean'].includes(typeof typed) ? typed : out;
      } else {
        node.value = out;
      }
    },
  });
}

/** The dotted path of the mapping key that starts at `offset`, if any. */
function keyPathAt(node: unknown, offset: number, prefix: string[] = []): string | undefined {
  if (!isMap(node)) return undefined;
  for (const pair of node.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : '?';
    if (isScalar(pair.key) && pair.key.range?.[0] === offset) return [...prefix, key].join('.');
    const found = keyPathAt(pair.value, offset, [...prefix, key]);
    if (found) return found;
  }
  return undefined;
}

/**
 * Parses and validates YAML config text. `source` names it in errors (`config.yaml:3:5: ...`).
 * Throws ConfigError listing every problem; returns a frozen config with defaults filled in.
 */
export function parseConfig(text: string, source = 'config', baseDir = process.cwd(), env: NodeJS.ProcessEnv = process.env): Config {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => {
        const pos = e.linePos?.[0];
        let msg = e.message.split(/ at line \d+|:\n/)[0] ?? e.message;
        if (e.code === 'DUPLICATE_KEY') {
          const path = keyPathAt(doc.contents, e.pos[0]);
          if (path) msg = `${path}: duplicate key (each key may appear once in a mapping)`;
        }
        return pos ? `${source}:${pos.line}:${pos.col}: ${msg}` : `${source}: ${msg}`;
      }),
    );
  }
  const envProblems: string[] = [];
  substituteEnv(doc, env, (path, offset, message) => {
    const pos = lines.linePos(offset);
    envProblems.push(`${source}:${pos.line}:${pos.col}: ${formatPath(path)}: ${message}`);
  });
  if (envProblems.length > 0) throw new ConfigError(envProblems);
  const ctx = new Validation(doc, lines, baseDir);
  const cfg = validate(SCHEMA, doc.toJS({ maxAliasCount: 100 }), [], ctx) as Config;
  if (ctx.problems.length === 0) checkDevices(cfg, ctx);
  if (ctx.problems.length === 0 && !cfg.http.token && !cfg.http.insecure && !isLoopback(cfg.http.listen)) {
    ctx.fail(
      ['http', 'listen'],
      `http.listen is ${cfg.http.listen}, reachable from other hosts, so the API needs http.token (or http.insecure: true to run it open)`,
    );
  }
  if (ctx.problems.length === 0 && cfg.ws.auth === 'token' && !cfg.ws.secret) {
    ctx.fail(['ws', 'auth'], 'ws.secret is required when ws.auth is token (at least 32 characters; keep it in the environment: secret: ${NOTIFY_WS_SECRET})');
  }
  if (ctx.problems.length > 0) throw new ConfigError(ctx.problems.map((p) => formatProblem(source, p)));
  return deepFreeze(cfg);
}

/** The embedded default config: what `notify serve` runs with when given no file. */
export function defaultConfig(): Config {
  return parseConfig('', 'defaults');
}

/** Reads and validates a YAML config file. */
export function loadConfig(path: string): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (code ?? String(err));
    throw new ConfigError([`cannot read config file ${path}: ${why}`]);
  }
  return parseConfig(text, path, dirname(resolve(path)));
}

/** A URL with the values of secret-looking query parameters (token=, key=) redacted. */
function redactUrl(text: string): string {
  if (!/^https?:\/\/.*\?/.test(text)) return text;
  return text.replace(/([?&])([^=&#]+)=([^&#]*)/g, (m, sep: string, name: string) => (isSecretKey(name) ? `${sep}${name}=[redacted]` : m));
}

/** A deep copy safe to print: every value under a secret-looking key becomes "[redacted]". */
export function redact<T>(value: T): T {
  if (Array.isArray(value)) return value.map(redact) as T;
  if (typeof value === 'string') return redactUrl(value) as T;
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    out[k] = isSecretKey(k) && v !== null && v !== undefined && typeof v !== 'object' ? '[redacted]' : redact(v);
  }
  return out as T;
}
