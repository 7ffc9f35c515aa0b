import { silentLogger } from '../../src/obs/log.js';
import { closeRedis, openRedis, parseRedisUrl } from '../../src/store/redis.js';
import { GroupCommit, openState } from '../../src/store/sqlite.js';
import { MemoryStreams } from '../../src/store/stream-memory.js';
import { RedisStreams } from '../../src/store/stream-redis.js';
import { SqliteStreams } from '../../src/store/stream-sqlite.js';
import { tempDir } from '../helpers/daemon.js';
import { SKIP_REDIS, startRedis } from '../helpers/redis.js';
import { streamsContract } from './streams.contract.js';

streamsContract('MemoryStreams', (_t, o) => new MemoryStreams({ size: o.size, ttlMs: o.ttlMs, now: o.now }));

streamsContract('SqliteStreams', (t, o) => {
  const db = openState(tempDir(t, 'notify-streams-'));
  const streams = new SqliteStreams(db, new GroupCommit(db), { size: o.size, ttlMs: o.ttlMs, maxMessages: 1_000_000, log: silentLogger, now: o.now });
  t.after(() => {
    streams.close();
    db.close();
  });
  return streams;
});

streamsContract(
  'RedisStreams',
  async (t, o) => {
    const redis = await startRedis(t);
    const target = parseRedisUrl(redis.url);
    const client = await openRedis(target, { log: silentLogger });
    const subscriber = await openRedis(target, { log: silentLogger, role: 'subscriber' });
    t.after(() => Promise.all([closeRedis(client), closeRedis(subscriber)]));
    return new RedisStreams(client, subscriber, { size: o.size, ttlMs: o.ttlMs, now: o.now });
  },
  { skip: SKIP_REDIS },
);
