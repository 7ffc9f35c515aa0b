import type { Config } from '../config/load.js';
import { NotifyError } from '../errors.js';
import type { Logger } from '../obs/log.js';
import { RedisAckRelay } from './acks-redis.js';
import type { Backends } from './embedded.js';
import { RedisDedupe } from './dedupe-redis.js';
import { RedisDevices } from './devices-redis.js';
import { RedisPresence } from './presence-redis.js';
import { closeRedis, openRedis, parseRedisUrl } from './redis.js';
import { RedisRetryQueue } from './retry-queue-redis.js';
import { RedisStreams } from './stream-redis.js';
import { uidOfStream } from './stream.js';
import { MemoryTargetIndex } from './target-index.js';
import { RedisTraceStore } from './trace-redis.js';

/**
 * The cluster's backends (cluster.redis): every piece of state another node needs lives in
 * Redis (message streams and their fan-out, presence, publisher-id dedupe, device tokens and the
 * retired list, the retry queue with leases, acks); this process keeps only its own sessions'
 * index. Two connections: one for commands, one for subscriptions (streams of the uids this node
 * has sessions of, and acks for this node). Rejects with NOTIFY_ERR_CONFIG when Redis cannot be
 * reached or would evict keys (store/redis.ts checks it).
 */
export async function redisBackends(config: Config, opts: { node: string; log: Logger }): Promise<Backends> {
  const { log, node } = opts;
  if (!config.history.enabled) {
    throw new NotifyError('NOTIFY_ERR_CONFIG', 'cluster.redis needs history.enabled: true (the message streams carry each message to the nodes that have its sessions)');
  }
  if (node.includes(':')) throw new NotifyError('NOTIFY_ERR_CONFIG', `cluster.node "${node}" must not contain ":"`);
  const target = parseRedisUrl(config.cluster.redis as string);
  const prefix = config.cluster.prefix;
  const client = await openRedis(target, { log, role: 'commands' });
  let subscriber;
  try {
    subscriber = await openRedis(target, { log, role: 'subscriber' });
  } catch (err) {
    await closeRedis(client);
    throw err;
  }
  const h = config.history;
  // A node that stops touching its sessions (killed) drops out after three heartbeats.
  const presence = new RedisPresence(client, { node, prefix, ttlMs: 3 * config.ws.heartbeatIntervalMs });
  // A publish reads its uid's sessions too: the report names them without a round trip of its own.
  const sessionsKey = (stream: string) => {
    const uid = uidOfStream(stream);
    return uid === undefined ? undefined : presence.key(uid);
  };
  const streams = new RedisStreams(client, subscriber, { size: h.size, ttlMs: h.ttl, prefix, node, sessionsKey });
  const acks = new RedisAckRelay(client, subscriber, { node, prefix });
  try {
    await acks.start();
  } catch (err) {
    await Promise.all([closeRedis(client), closeRedis(subscriber)]);
    throw new NotifyError('NOTIFY_ERR_CONFIG', `cannot subscribe on Redis at ${target.display} (cluster.redis): ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
  const dedupe = new RedisDedupe(client, { prefix });
  const devices = new RedisDevices(client, { prefix });
  const retries = new RedisRetryQueue(client, { prefix });
  const trace = new RedisTraceStore(client, { prefix, ttlMs: h.ttl, log });
  return {
    streams,
    presence,
    sessions: new MemoryTargetIndex(),
    dedupe,
    devices,
    retries,
    acks,
    trace,
    shared: true,
    health() {
      const down = [client, subscriber].filter((c) => c.status !== 'ready');
      return down.length === 0 ? { state: 'ok', redis: target.display, node } : { state: 'unavailable', error: 'redis connection lost; reconnecting', redis: target.display, node };
    },
    async close() {
      streams.close();
      await trace.close().catch(() => {});
      await acks.close().catch(() => {});
      // This node's sessions leave presence at once (a graceful stop), not after their expiry.
      await presence.close().catch(() => {});
      await Promise.all([closeRedis(client), closeRedis(subscriber)]);
    },
  };
}
