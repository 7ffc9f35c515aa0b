import { MemoryPresence } from '../../src/store/presence-memory.js';
import { RedisPresence } from '../../src/store/presence-redis.js';
import { MemoryTargetIndex } from '../../src/store/target-index.js';
import { SKIP_REDIS, startRedis } from '../helpers/redis.js';
import { redisClient } from '../helpers/redis-client.js';
import { presenceContract } from './presence.contract.js';

presenceContract('MemoryPresence', (_t, node) => new MemoryPresence(new MemoryTargetIndex(), node));

presenceContract('RedisPresence', async (t, node) => new RedisPresence(await redisClient(t, await startRedis(t)), { node }), { skip: SKIP_REDIS });
