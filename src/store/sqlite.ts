import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { NotifyError, errorMessage, storeError } from '../errors.js';
import type { Logger } from '../obs/log.js';

export type StateDb = Database.Database;

/**
 * Schema migrations, in order; `PRAGMA user_version` records how many have run. Append only:
 * a shipped migration is never edited.
 */
export const MIGRATIONS: readonly string[] = [
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
  // Message streams: one per uid ('u:<uid>') plus the broadcast stream ('b:*'), each with its own
  // offsets (pos, from 1). The log keeps its order (seq); which rows belong to a stream is still
  // kept in memory. The database's epoch marks every position it hands out: a new database
  // (state.dir deleted) is a new epoch, so an old position is never reused silently.
  `CREATE TABLE publications (
     seq        INTEGER PRIMARY KEY,
     stream     TEXT NOT NULL,
     pos        INTEGER NOT NULL,
     id         TEXT NOT NULL,
     expires_at INTEGER NOT NULL,
     frame      TEXT NOT NULL,
     json       INTEGER NOT NULL
   );
   INSERT INTO publications (seq, stream, pos, id, expires_at, frame, json)
     SELECT seq, CASE uid WHEN '*' THEN 'b:*' ELSE 'u:' || uid END,
            row_number() OVER (PARTITION BY uid ORDER BY seq), id, expires_at, frame, json
     FROM messages;
   DROP TABLE messages;
   CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
   INSERT INTO meta (key, value) VALUES ('epoch', lower(hex(randomblob(8))));`,
  // Leases on retries (store/retry-queue.ts): the node that carries each entry, and until when.
  // Rows from before are unowned and their lease has run out: the next claim takes them.
  `ALTER TABLE retries ADD COLUMN owner TEXT NOT NULL DEFAULT '';
   ALTER TABLE retries ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
   CREATE INDEX retries_lease_until ON retries (lease_until);`,
  // A message's body once, not once per stream: a publish to more than one stream stores its
  // frame in `bodies` (id: the seq of its first publication) and its rows point at it (frame
  // NULL); a publish to one stream keeps its frame inline (one INSERT). `bytes`: the frame bytes
  // a row accounts for (history.maxBytes): an inline frame's, a shared body's on the last row of
  // its publish (the body goes when that row goes), 0 on the others. A publish's rows have
  // consecutive seqs, so a body is referenced by one run of seqs only. Existing rows: a run of
  // consecutive seqs with the same id, json and frame (one publish) becomes one body.
  `CREATE TABLE bodies (
     id    INTEGER PRIMARY KEY,
     frame TEXT NOT NULL
   );
   CREATE TABLE publications_v5 (
     seq        INTEGER PRIMARY KEY,
     stream     TEXT NOT NULL,
     pos        INTEGER NOT NULL,
     id         TEXT NOT NULL,
     expires_at INTEGER NOT NULL,
     json       INTEGER NOT NULL,
     frame      TEXT,
     body       INTEGER,
     bytes      INTEGER NOT NULL
   );
   CREATE TEMP TABLE runs AS
     SELECT seq, min(seq) OVER w AS first, max(seq) OVER w AS last, count(*) OVER w AS n
     FROM (SELECT seq, id, json, frame, seq - row_number() OVER (PARTITION BY id, json, frame ORDER BY seq) AS run FROM publications)
     WINDOW w AS (PARTITION BY id, json, frame, run);
   INSERT INTO bodies (id, frame)
     SELECT p.seq, p.frame FROM publications p JOIN temp.runs r ON r.seq = p.seq WHERE r.n > 1 AND r.seq = r.first;
   INSERT INTO publications_v5 (seq, stream, pos, id, expires_at, json, frame, body, bytes)
     SELECT p.seq, p.stream, p.pos, p.id, p.expires_at, p.json,
            CASE WHEN r.n > 1 THEN NULL ELSE p.frame END,
            CASE WHEN r.n > 1 THEN r.first END,
            CASE WHEN r.seq = r.last THEN length(CAST(p.frame AS BLOB)) ELSE 0 END
     FROM publications p JOIN temp.runs r ON r.seq = p.seq ORDER BY p.seq;
   DROP TABLE temp.runs;
   DROP TABLE publications;
   ALTER TABLE publications_v5 RENAME TO publications;`,
  // The delivery journal (store/trace.ts): each message's events (a JSON array per row: those of
  // one batch), appended in the group commit (seq order is time order: old rows go by range, as
  // publications do); the index on id is mostly appended to (ULIDs grow with time). And each
  // device token's last outcome.
  `CREATE TABLE trace_events (
     seq   INTEGER PRIMARY KEY,
     id    TEXT NOT NULL,
     event TEXT NOT NULL
   );
   CREATE INDEX trace_events_id ON trace_events (id);
   CREATE TABLE token_outcomes (
     transport TEXT NOT NULL,
     token     TEXT NOT NULL,
     at        INTEGER NOT NULL,
     outcome   TEXT NOT NULL,
     PRIMARY KEY (transport, token)
   ) WITHOUT ROWID;`,
];

/**
 * Opens (creating if needed) the daemon's SQLite database `notify.db` in `dir` and brings its
 * schema up to date. WAL mode, so a `notify send --direct` process can use it while the daemon runs.
 */
export function openState(dir: string): StateDb {
  let db: StateDb;
  const file = join(dir, 'notify.db');
  try {
    mkdirSync(dir, { recursive: true });
    db = new Database(file);
  } catch (err) {
    throw new NotifyError('NOTIFY_ERR_CONFIG', `cannot open the state directory ${dir} (state.dir): ${errorMessage(err)}`, { cause: err });
  }
  try {
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    // Short: a write lock held elsewhere fails a commit fast (the publish is answered with an
    // error) instead of freezing the event loop, and every session with it, for seconds.
    db.pragma('busy_timeout = 100');
    // The WAL is cut back to this after a checkpoint instead of staying at its largest size.
    db.pragma(`journal_size_limit = ${64 * 1024 * 1024}`);
    // SQLite's own default page cache (2 MB; better-sqlite3 raises it to 16 MB): the store is an
    // append-only log whose writes touch its last pages, and a full cache is RSS for good.
    db.pragma('cache_size = -2000');
    const version = db.pragma('user_version', { simple: true }) as number;
    if (version > MIGRATIONS.length) {
      throw new NotifyError('NOTIFY_ERR_CONFIG', `${file} was written by a newer notify (schema ${version}); upgrade notify`);
    }
    for (let v = version; v < MIGRATIONS.length; v++) {
      db.transaction(() => {
        db.exec(MIGRATIONS[v] as string);
        db.pragma(`user_version = ${v + 1}`);
      })();
    }
    const check = db.pragma('quick_check', { simple: true });
    if (check !== 'ok') throw Object.assign(new Error(String(check)), { code: 'SQLITE_CORRUPT' });
  } catch (err) {
    db.close();
    if (err instanceof NotifyError) throw err;
    const code = (err as { code?: string }).code ?? '';
    if (code === 'SQLITE_NOTADB' || code.startsWith('SQLITE_CORRUPT')) {
      throw new NotifyError(
        'NOTIFY_ERR_CONFIG',
        `${file} is damaged or not a notify database (${errorMessage(err)}): stop notify, move it (and ${file}-wal) aside to start with an empty store, or restore it from a backup`,
        { cause: err },
      );
    }
    throw new NotifyError('NOTIFY_ERR_CONFIG', `cannot open ${file}: ${errorMessage(err)}`, { cause: err });
  }
  return db;
}

export { storeError } from '../errors.js';

/** Whether the store's writes work: shown in /healthz; a failure is logged once per burst. */
export class StoreHealth {
  #failing: { since: number; error: string; count: number } | undefined;
  readonly #log: Logger;

  constructor(log: Logger) {
    this.#log = log;
  }

  failed(err: unknown): void {
    const error = errorMessage(err);
    if (this.#failing === undefined) {
      this.#failing = { since: Date.now(), error, count: 1 };
      this.#log.error('store unavailable: writes fail; publishes are answered with an error until it recovers', { error });
    } else {
      this.#failing.count++;
      this.#failing.error = error;
    }
  }

  ok(): void {
    const f = this.#failing;
    if (f === undefined) return;
    this.#failing = undefined;
    this.#log.info('store recovered', { failedWrites: f.count, downMs: Date.now() - f.since });
  }

  /** `{state: 'ok'}`, or since when and why it fails. */
  report(): { state: 'ok' } | { state: 'unavailable'; since: string; error: string; failedWrites: number } {
    const f = this.#failing;
    return f === undefined ? { state: 'ok' } : { state: 'unavailable', since: new Date(f.since).toISOString(), error: f.error, failedWrites: f.count };
  }
}

/**
 * Group commit for one SQLite database: writes queued during one turn of the event loop (every
 * connection that had data in one poll) go in one transaction at the end of it (setImmediate),
 * and `committed()` settles once they are durable (WAL: they survive the process being killed)
 * or rejects (NOTIFY_ERR_STORE) when the transaction failed, in which case none of them happened.
 */
export class GroupCommit {
  #writes: (() => void)[] = [];
  /** Writes that go with the next transaction, whenever one runs (`ride`); they never cause one. */
  #riders: (() => void)[] = [];
  #onFail: (() => void)[] = [];
  #scheduled: NodeJS.Immediate | undefined;
  #waiter: { promise: Promise<void>; resolve: () => void; reject: (err: unknown) => void } | undefined;
  readonly #flushNow = () => this.flush();
  readonly #health: StoreHealth | undefined;
  /** One transaction function for every flush (better-sqlite3 wraps it once). */
  readonly #run: (writes: (() => void)[]) => void;

  constructor(db: StateDb, health?: StoreHealth) {
    this.#health = health;
    this.#run = db.transaction((writes: (() => void)[]) => {
      for (const w of writes) w();
    });
  }

  /** Queues `write` for the next transaction; `undo` runs if that transaction fails. */
  queue(write: () => void, undo?: () => void): void {
    this.#writes.push(write);
    if (undo) this.#onFail.push(undo);
    if (this.#scheduled !== undefined) return;
    // At the end of this turn of the event loop, after every socket that was readable has been
    // read: the lines of all Text connections in one transaction, and no reply waits a turn more.
    this.#scheduled = setImmediate(this.#flushNow);
  }

  /**
   * Adds `write` to the next transaction without causing one: it goes with the next `queue`d
   * write's (the caller bounds the wait with a timer of its own that queues one). For writes that
   * need not be durable before anything is answered (the delivery journal): they cost no
   * transaction of their own. `write` must not throw (it would fail the writes it rides with).
   */
  ride(write: () => void): void {
    this.#riders.push(write);
  }

  /** Settles when everything queued so far is committed (or failed). */
  committed(): Promise<void> {
    if (this.#writes.length === 0) return Promise.resolve();
    if (this.#waiter === undefined) {
      let resolve!: () => void;
      let reject!: (err: unknown) => void;
      const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      this.#waiter = { promise, resolve, reject };
    }
    return this.#waiter.promise;
  }

  /** Commits every queued write now, in one transaction. */
  flush(): void {
    if (this.#scheduled !== undefined) {
      clearImmediate(this.#scheduled);
      this.#scheduled = undefined;
    }
    if (this.#writes.length === 0) return;
    const writes = this.#riders.length === 0 ? this.#writes : [...this.#writes, ...this.#riders];
    this.#riders = [];
    const undo = this.#onFail;
    const waiter = this.#waiter;
    this.#writes = [];
    this.#onFail = [];
    this.#waiter = undefined;
    try {
      this.#run(writes);
    } catch (err) {
      for (const u of undo) u();
      this.#health?.failed(err);
      waiter?.reject(storeError(err));
      return;
    }
    this.#health?.ok();
    waiter?.resolve();
  }
}
