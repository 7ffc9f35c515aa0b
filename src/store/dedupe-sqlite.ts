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
  /** Claims queued in the current group commit: when they were made, and their answers so far. */
  readonly #queued = new Map<string, { at: number; answer: string | undefined }>();
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
    const now = this.#now();
    const queued = this.#queued.get(id);
    if (queued !== undefined && queued.at > now - windowMs) return { first: false, answer: queued.answer };
    const row = queued === undefined ? this.#stmt.get.get(id, now - windowMs) : undefined;
    if (row !== undefined) return { first: false, answer: row.report === '' ? undefined : row.report };
    const claim = { at: now, answer: undefined };
    this.#queued.set(id, claim);
    const done = () => {
      if (this.#queued.get(id) === claim) this.#queued.delete(id);
    };
    this.#commit.queue(() => {
      this.#stmt.put.run(id, claim.at, (this.#queued.get(id) ?? claim).answer ?? '');
      queueMicrotask(done);
    }, done);
    return { first: true };
  }

  record(id: string, answer: string): void {
    const queued = this.#queued.get(id);
    if (queued !== undefined) queued.answer = answer;
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
