import { silentLogger } from '../../src/obs/log.js';
import { closeRedis, openRedis, parseRedisUrl } from '../../src/store/redis.js';
import { RedisRetryQueue } from '../../src/store/retry-queue-redis.js';
import { SqliteRetryQueue } from '../../src/store/retry-queue-sqlite.js';
import { openState } from '../../src/store/sqlite.js';
import { tempDir } from '../helpers/daemon.js';
import { SKIP_REDIS, startRedis } from '../helpers/redis.js';
import { retryQueueContract } from './retry-queue.contract.js';

retryQueueContract('SqliteRetryQueue', (t, o) => {
  const db = openState(tempDir(t, 'notify-retries-'));
  t.after(() => db.close());
  return new SqliteRetryQueue(db, o);
});

retryQueueContract(
  'RedisRetryQueue',
  async (t, o) => {
    const redis = await startRedis(t);
    const client = await openRedis(parseRedisUrl(redis.url), { log: silentLogger });
    t.after(() => closeRedis(client));
    return new RedisRetryQueue(client, o);
  },
  { skip: SKIP_REDIS },
);
