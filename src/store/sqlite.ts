import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { NotifyError, errorMessage } from '../errors.js';

export type StateDb = Database.Database;

/**
 * Schema migrations, in order; `PRAGMA user_version` records how many have run. Append only:
 * a shipped migration is never edited.
 */
const MIGRATIONS: readonly string[] = [
  `CREATE TABLE device_registrations (
     transport  TEXT NOT NULL,
     token      TEXT NOT NULL,
     uid        TEXT NOT NULL,
     created_at INTEGER NOT NULL,
     PRIMARY KEY (transport, token)
   ) WITHOUT ROWID;
   CREATE TABLE retired_tokens (
     transport  TEXT NOT NULL,
     token      TEXT NOT NULL,
     reason     TEXT NOT NULL,
     retired_at INTEGER NOT NULL,
     PRIMARY KEY (transport, token)
   ) WITHOUT ROWID;`,
  // Message history, an append-only log: one row per uid a message was for ('*' for a
  // broadcast). No secondary index: the per-uid index lives in memory (rebuilt at start), so an
  // insert appends to the end of one B-tree instead of dirtying a random index page.
  // Also: the first answer to each publisher-given id; provider deliveries waiting for a retry.
  `CREATE TABLE messages (
     seq        INTEGER PRIMARY KEY,
     id         TEXT NOT NULL,
     uid        TEXT NOT NULL,
     expires_at INTEGER NOT NULL,
     frame      TEXT NOT NULL,
     json       INTEGER NOT NULL
   );
   CREATE TABLE answers (
     id     TEXT PRIMARY KEY,
     at     INTEGER NOT NULL,
     report TEXT NOT NULL
   ) WITHOUT ROWID;
   CREATE TABLE retries (
     seq       INTEGER PRIMARY KEY,
     transport TEXT NOT NULL,
     uid       TEXT NOT NULL,
     target    TEXT NOT NULL,
     message   TEXT NOT NULL,
     attempt   INTEGER NOT NULL,
     due_at    INTEGER NOT NULL,
     reason    TEXT NOT NULL
   );`,
  // Leases on retries (store/retry-queue.ts): the node that carries each entry, and until when.
  // Rows from before are unowned and their lease has run out: the next claim takes them.
  `ALTER TABLE retries ADD COLUMN owner TEXT NOT NULL DEFAULT '';
   ALTER TABLE retries ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
   CREATE INDEX retries_lease_until ON retries (lease_until);`,
];

/**
 * Opens (creating if needed) the daemon's SQLite database `notify.db` in `dir` and brings its
 * schema up to date. WAL mode, so a `notify send --direct` process can use it while the daemon runs.
 */
export function openState(dir: string): StateDb {
  let db: StateDb;
  try {
    mkdirSync(dir, { recursive: true });
    db = new Database(join(dir, 'notify.db'));
  } catch (err) {
    throw new NotifyError('NOTIFY_ERR_CONFIG', `cannot open the state directory ${dir} (state.dir): ${errorMessage(err)}`, { cause: err });
  }
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  db.pragma('busy_timeout = 5000');
  const version = db.pragma('user_version', { simple: true }) as number;
  if (version > MIGRATIONS.length) {
    db.close();
    throw new NotifyError('NOTIFY_ERR_CONFIG', `${join(dir, 'notify.db')} was written by a newer notify (schema ${version}); upgrade notify`);
  }
  for (let v = version; v < MIGRATIONS.length; v++) {
    db.transaction(() => {
      db.exec(MIGRATIONS[v] as string);
      db.pragma(`user_version = ${v + 1}`);
    })();
  }
  return db;
}
