import { Redis } from 'ioredis';
import { NotifyError, errorMessage } from '../errors.js';
import type { Logger } from '../obs/log.js';
import type { RedisTarget } from './redis-url.js';

export { parseRedisUrl, withoutPassword, type RedisTarget } from './redis-url.js';

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
  const client = new Redis(
    Object.assign({}, target.options, {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      commandTimeout: o.commandTimeoutMs ?? 2000,
      connectTimeout: 2000,
      retryStrategy: (times: number) => Math.min(times * 100, 2000),
      connectionName: `notify-${role}`,
    }),
  );
  // One warning when a working connection is lost, one line when it is back; the errors of
  // each reconnect attempt in between are kept (the last one is the reason a start failed).
  let up = false;
  let lastError: Error | undefined;
  client.on('error', (err: Error) => {
    lastError = err;
  });
  client.on('close', () => {
    if (!up || closing.has(client)) return;
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

/** Connections being closed on purpose: their close is not an outage. */
const closing = new WeakSet<Redis>();

/** Closes a connection for good and waits until its socket is gone. */
export async function closeRedis(client: Redis): Promise<void> {
  if (client.status === 'end') return;
  closing.add(client);
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
