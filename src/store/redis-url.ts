import type { RedisOptions } from 'ioredis';

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
  // An "@" after the first "/" means a "/" in the user name or password (a path here is only
  // /MASTERNAME and /db): say so rather than quote a piece of the password as a host.
  if (slash !== -1 && rest.includes('@', slash)) {
    throw new Error('the user name or password in the Redis URL holds a "/": percent-encode it ("/" is %2F, "@" is %40)');
  }
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
  const creds = Object.assign(username !== undefined ? { username } : {}, password !== undefined ? { password } : {});
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
