import { join } from 'node:path';
import { silentLogger } from '../../src/obs/log.js';
import { RedisDevices } from '../../src/store/devices-redis.js';
import { SqliteDevices } from '../../src/store/devices-sqlite.js';
import { closeRedis, openRedis, parseRedisUrl } from '../../src/store/redis.js';
import { openState } from '../../src/store/sqlite.js';
import { tempDir } from '../helpers/daemon.js';
import { SKIP_REDIS, startRedis } from '../helpers/redis.js';
import { devicesContract } from './devices.contract.js';

devicesContract('SqliteDevices', (t) => {
  const dir = join(tempDir(t, 'notify-devices-'), 'state');
  const first = openState(dir);
  let open = true;
  t.after(() => void (open && first.close()));
  return {
    directory: new SqliteDevices(first),
    async reopen() {
      first.close();
      open = false;
      const db = openState(dir);
      t.after(() => db.close());
      return new SqliteDevices(db);
    },
  };
});

devicesContract(
  'RedisDevices',
  async (t) => {
    const redis = await startRedis(t);
    const connect = async () => {
      const client = await openRedis(parseRedisUrl(redis.url), { log: silentLogger });
      t.after(() => closeRedis(client));
      return client;
    };
    const first = await connect();
    return {
      directory: new RedisDevices(first),
      async reopen() {
        await closeRedis(first);
        return new RedisDevices(await connect());
      },
    };
  },
  { skip: SKIP_REDIS },
);
