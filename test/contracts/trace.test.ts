import { silentLogger } from '../../src/obs/log.js';
import { GroupCommit, openState } from '../../src/store/sqlite.js';
import { MemoryTraceStore } from '../../src/store/trace-memory.js';
import { RedisTraceStore } from '../../src/store/trace-redis.js';
import { SqliteTraceStore } from '../../src/store/trace-sqlite.js';
import { tempDir } from '../helpers/daemon.js';
import { SKIP_REDIS, startRedis } from '../helpers/redis.js';
import { redisClient } from '../helpers/redis-client.js';
import { traceContract } from './trace.contract.js';

traceContract('MemoryTraceStore', (_t, o) => new MemoryTraceStore(o));

traceContract('SqliteTraceStore', (t, o) => {
  const db = openState(tempDir(t, 'notify-trace-'));
  const trace = new SqliteTraceStore(db, new GroupCommit(db), { ...o, log: silentLogger });
  t.after(() => {
    trace.close();
    db.close();
  });
  return trace;
});

traceContract(
  'RedisTraceStore',
  async (t, o) => {
    const trace = new RedisTraceStore(await redisClient(t, await startRedis(t)), { ttlMs: o.ttlMs, log: silentLogger });
    t.after(() => trace.close());
    return trace;
  },
  { skip: SKIP_REDIS },
);
