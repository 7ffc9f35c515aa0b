import { Redis, type RedisOptions } from 'ioredis';
import { NotifyError, errorMessage } from '../errors.js';
import type { Logger } from '../obs/log.js';

/**
 * Where the cluster's Redis is, read from a `cluster.redis` URL:
 * - `redis://[user:pass@]host[:port][/db]` (port 6379, db 0 by default)
 * - `rediss://…` the same over TLS
 * - `redis+sentinel://[user:pass@]host[:port][,host[:port]…]/MASTERNAME[/db]` (port 26379): the
 *   sentinels to ask for MASTERNAME's primary; the credentials are the primary's.
 */
export interface RedisTarget {
  /** The URL without its credentials: what logs, errors and /healthz show. */
  display: string;
  /** Connection options for ioredis (host/port or sentinels/name, db, credentials, tls). */
  options: RedisOptions;
  sentinel: boolean;
}

const FORMS = 'redis://[user:pass@]host:port[/db], rediss://… (TLS) or redis+sentinel://host:26379[,host2:26379]/MASTERNAME';

/** Parses a `cluster.redis` URL; throws an Error whose message says what is wrong (never the password). */
export function parseRedisUrl(url: string): RedisTarget {
  const m = /^(redis|rediss|redis\+sentinel):\/\/(.*)$/.exec(url);
  if (m === null) throw new Error(`expected ${FORMS}; got ${JSON.stringify(withoutPassword(url))}`);
  const scheme = m[1] as 'redis' | 'rediss' | 'redis+sentinel';
  let rest = m[2] as string;
  if (/[?#]/.test(rest)) throw new Error(`query strings and fragments are not supported in a Redis URL (${FORMS})`);
  let username: string | undefined;
  let password: string | undefined;
  const slash = rest.indexOf('/');
  const at = rest.lastIndexOf('@', slash === -1 ? rest.length : slash);
  if (at !== -1) {
    const userinfo = rest.slice(0, at);
    rest = rest.slice(at + 1);
    const colon = userinfo.indexOf(':');
    username = decode(colon === -1 ? userinfo : userinfo.slice(0, colon), 'user name') || undefined;
    password = colon === -1 ? undefined : decode(userinfo.slice(colon + 1), 'password');
  }
  const cut = rest.indexOf('/');
  const hostPart = cut === -1 ? rest : rest.slice(0, cut);
  const path = cut === -1 ? [] : rest.slice(cut + 1).split('/').filter((p, i, all) => p !== '' || i < all.length - 1);
  const sentinel = scheme === 'redis+sentinel';
  const hosts = hostPart.split(',').map((h) => parseHost(h, sentinel ? 26379 : 6379));
  if (!sentinel && hosts.length > 1) throw new Error(`one host in a ${scheme}:// URL; several are for redis+sentinel://`);
  let name: string | undefined;
  if (sentinel) {
    name = path.shift();
    if (name === undefined || name === '') throw new Error('a redis+sentinel:// URL names the primary after the hosts: redis+sentinel://host:26379/MASTERNAME');
    name = decode(name, 'primary name');
  }
  let db = 0;
  const dbText = path.shift();
  if (dbText !== undefined) {
    if (!/^\d{1,5}$/.test(dbText)) throw new Error(`the database after the ${sentinel ? 'primary name' : 'port'} must be a number (e.g. /0); got "${dbText}"`);
    db = Number(dbText);
  }
  if (path.length > 0) throw new Error(`unexpected "/${path.join('/')}" at the end of the Redis URL (${FORMS})`);
  const creds = { ...(username !== undefined ? { username } : {}), ...(password !== undefined ? { password } : {}) };
  const where = hosts.map((h) => `${h.host.includes(':') ? `[${h.host}]` : h.host}:${h.port}`).join(',');
  const display = `${scheme}://${where}${sentinel ? `/${name}` : ''}${db !== 0 ? `/${db}` : ''}`;
  const first = hosts[0] as { host: string; port: number };
  const options: RedisOptions = sentinel
    ? { sentinels: hosts, name, db, ...creds, failoverDetector: true }
    : { host: first.host, port: first.port, db, ...creds, ...(scheme === 'rediss' ? { tls: { servername: first.host } } : {}) };
  return { display, options, sentinel };
}

function parseHost(text: string, defaultPort: number): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+)(?::(\d{1,5}))?$/.exec(text);
  if (m === null) throw new Error(`"${text}" is not a host[:port]`);
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (port < 1 || port > 65535) throw new Error(`port ${port} is out of range (1-65535)`);
  return { host: (m[1] as string).replace(/^\[|\]$/g, ''), port };
}

function decode(text: string, what: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new Error(`the ${what} in the Redis URL is not valid percent-encoding`);
  }
}

/** The URL with any password replaced, for error messages about a URL that did not parse. */
export function withoutPassword(url: string): string {
  return url.replace(/^([a-z+]+:\/\/[^:/@]*:)[^@/]*@/i, '$1[redacted]@');
}

export interface OpenRedisOptions {
  log: Logger;
  /** What this connection is for, in logs (e.g. "commands", "subscriber"). */
  role?: string;
  /** How long the first connection may take before start fails. @default 5000 */
  startTimeoutMs?: number;
  /** How long one command may take before it fails. @default 2000 */
  commandTimeoutMs?: number;
}

/** The Redis version the cluster backends need at least (XADD/XRANGE with exclusive ranges, GETDEL). */
const MIN_VERSION = [6, 2];

/**
 * Connects to the cluster's Redis and checks that notify can keep its state there: reachable,
 * version 6.2 or later, and `maxmemory-policy noeviction` (a Redis that evicts keys would drop
 * streams, device tokens and retries behind notify's back). Fails with a NOTIFY_ERR_CONFIG that
 * says what to fix.
 *
 * The connection never queues commands while Redis is away (`enableOfflineQueue: false`, one
 * retry per command, a command timeout): a publish then fails at once with an error instead of
 * waiting in memory. It reconnects by itself (ioredis's backoff, at most 2 s apart), follows
 * a Sentinel failover (`failoverDetector`), and logs a lost connection once per outage.
 */
export async function openRedis(target: RedisTarget, o: OpenRedisOptions): Promise<Redis> {
  const role = o.role ?? 'commands';
  const client = new Redis({
    ...target.options,
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    commandTimeout: o.commandTimeoutMs ?? 2000,
    connectTimeout: 2000,
    retryStrategy: (times) => Math.min(times * 100, 2000),
    connectionName: `notify-${role}`,
  });
  // One warning when a working connection is lost, one line when it is back; the errors of
  // each reconnect attempt in between are kept (the last one is the reason a start failed).
  let up = false;
  let lastError: Error | undefined;
  client.on('error', (err: Error) => {
    lastError = err;
  });
  client.on('close', () => {
    if (!up) return;
    up = false;
    o.log.warn('redis connection lost; reconnecting (publishes fail until it is back)', { redis: target.display, role, ...(lastError ? { error: errorMessage(lastError) } : {}) });
  });
  let connected = false;
  client.on('ready', () => {
    up = true;
    lastError = undefined;
    if (connected) o.log.info('redis connection back', { redis: target.display, role });
    connected = true;
  });
  const timeoutMs = o.startTimeoutMs ?? 5000;
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      client.connect(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      }),
    ]);
  } catch (err) {
    const reason = errorMessage(lastError ?? err);
    await closeRedis(client);
    throw new NotifyError('NOTIFY_ERR_CONFIG', `cannot reach Redis at ${target.display} (cluster.redis): ${reason}`, { cause: lastError ?? err });
  } finally {
    clearTimeout(timer);
  }
  try {
    await checkServer(client, target);
  } catch (err) {
    await closeRedis(client);
    throw err;
  }
  return client;
}

/** Closes a connection for good and waits until its socket is gone. */
export async function closeRedis(client: Redis): Promise<void> {
  if (client.status === 'end') return;
  const ended = new Promise<void>((resolve) => client.once('end', () => resolve()));
  client.disconnect();
  await ended;
}

async function checkServer(client: Redis, target: RedisTarget): Promise<void> {
  const info = await client.info();
  const field = (name: string) => new RegExp(`^${name}:(.*?)\\r?$`, 'm').exec(info)?.[1];
  const version = field('redis_version') ?? '0';
  const [major = 0, minor = 0] = version.split('.').map(Number);
  if (major < (MIN_VERSION[0] as number) || (major === MIN_VERSION[0] && minor < (MIN_VERSION[1] as number))) {
    throw new NotifyError('NOTIFY_ERR_CONFIG', `Redis at ${target.display} is version ${version}; notify needs ${MIN_VERSION.join('.')} or later`);
  }
  const policy = field('maxmemory_policy');
  if (policy !== undefined && policy !== 'noeviction') {
    throw new NotifyError(
      'NOTIFY_ERR_CONFIG',
      `Redis at ${target.display} has maxmemory-policy ${policy}, which evicts keys notify needs (message streams, device tokens, retries): ` +
        'set maxmemory-policy noeviction (CONFIG SET maxmemory-policy noeviction, and in redis.conf)',
    );
  }
}
