import type { TestContext } from 'node:test';
import type { Redis } from 'ioredis';
import { silentLogger } from '../../src/obs/log.js';
import { closeRedis, openRedis, parseRedisUrl } from '../../src/store/redis.js';
import type { RedisServer } from './redis.js';

/**
 * A client of `server` as a node opens it (openRedis: no offline queue, short command timeout),
 * closed when the test ends.
 */
export async function redisClient(t: TestContext, server: RedisServer, role = 'commands'): Promise<Redis> {
  const client = await openRedis(parseRedisUrl(server.url), { log: silentLogger, role });
  t.after(() => closeRedis(client));
  return client;
}

/** Resolves once `client` is connected and ready again (after a Redis restart). */
export function ready(client: Redis): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve) => client.once('ready', () => resolve()));
}
