import { join } from 'node:path';
import { SqliteDevices } from '../../src/store/devices-sqlite.js';
import { openState } from '../../src/store/sqlite.js';
import { tempDir } from '../helpers/daemon.js';
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
