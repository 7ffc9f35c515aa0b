import type { Claim, Dedupe } from './dedupe.js';
import type { GroupCommit, StateDb } from './sqlite.js';

/**
 * Publisher-id dedupe in the state database. A claim is written in the same group commit as the
 * message it belongs to (the publisher awaits both), so a publisher's retry after a crash finds
 * it. Claims not yet committed are looked up in memory (no flush on the hot path); memory holds
 * only those, the answers live in the table for their window.
 */
export class SqliteDedupe implements Dedupe {
  readonly #commit: GroupCommit;
  readonly #now: () => number;
  readonly #stmt;
  /** Claims queued in the current group commit, with their answers so far. */
  readonly #queued = new Map<string, string | undefined>();
  readonly #sweeper: NodeJS.Timeout;

  constructor(db: StateDb, commit: GroupCommit, opts: { now?: () => number; windowMs: number }) {
    this.#commit = commit;
    this.#now = opts.now ?? Date.now;
    this.#stmt = {
      get: db.prepare<[string, number], { report: string }>('SELECT report FROM answers WHERE id = ? AND at > ?'),
      put: db.prepare('INSERT INTO answers (id, at, report) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET at = excluded.at, report = excluded.report'),
      set: db.prepare('UPDATE answers SET report = ? WHERE id = ?'),
      expire: db.prepare('DELETE FROM answers WHERE at <= ?'),
    };
    this.#sweeper = setInterval(() => this.sweep(opts.windowMs), Math.min(60_000, Math.max(1000, opts.windowMs / 10)));
    this.#sweeper.unref();
  }

  claim(id: string, windowMs: number): Claim {
    if (this.#queued.has(id)) return { first: false, answer: this.#queued.get(id) };
    const now = this.#now();
    const row = this.#stmt.get.get(id, now - windowMs);
    if (row !== undefined) return { first: false, answer: row.report === '' ? undefined : row.report };
    this.#queued.set(id, undefined);
    const done = () => this.#queued.delete(id);
    this.#commit.queue(() => {
      this.#stmt.put.run(id, now, this.#queued.get(id) ?? '');
      queueMicrotask(done);
    }, done);
    return { first: true };
  }

  record(id: string, answer: string): void {
    if (this.#queued.has(id)) this.#queued.set(id, answer);
    this.#commit.queue(() => this.#stmt.set.run(answer, id));
  }

  /** Drops answers older than the window. */
  sweep(windowMs: number): void {
    this.#commit.queue(() => this.#stmt.expire.run(this.#now() - windowMs));
    this.#commit.flush();
  }

  close(): void {
    clearInterval(this.#sweeper);
  }
}
