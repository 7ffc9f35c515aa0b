import { NotifyError } from '../errors.js';
import type { StateDb } from './sqlite.js';
import type { PendingRetry, RetryEntry, RetryQueue } from './retry-queue.js';
import type { Message } from '../types.js';

export type { PendingRetry, RetryEntry, RetryQueue };

/** Options of a SqliteRetryQueue. */
export interface SqliteRetryQueueOptions {
  /**
   * This process alone uses the state directory (the daemon): an entry owned by another owner
   * is an orphan of a process that died, and `claim` takes it at once, whatever its lease.
   * @default false
   */
  exclusive?: boolean;
  /** Entries held at most; `hold` throws NOTIFY_ERR_STORE beyond. @default 100000 */
  maxEntries?: number;
}

const DEFAULTS: Required<SqliteRetryQueueOptions> = { exclusive: false, maxEntries: 100_000 };

interface Row {
  seq: number;
  transport: string;
  uid: string;
  target: string;
  message: string;
  attempt: number;
  due_at: number;
  reason: string;
}

/**
 * The retry queue in the state database (table `retries`). Writes are immediate (not
 * group-committed): retries are rare, and an entry must be durable before the wait it describes
 * begins. Keys are the row ids, as strings.
 */
export class SqliteRetryQueue implements RetryQueue {
  readonly #exclusive: boolean;
  readonly #maxEntries: number;
  readonly #hold;
  readonly #claim;
  readonly #stmt;

  constructor(db: StateDb, options: SqliteRetryQueueOptions = {}) {
    const o = Object.assign({}, DEFAULTS, options);
    if (!Number.isInteger(o.maxEntries) || o.maxEntries < 1) throw new RangeError('maxEntries must be a positive integer');
    this.#exclusive = o.exclusive;
    this.#maxEntries = o.maxEntries;
    this.#stmt = {
      count: db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM retries'),
      hold: db.prepare(
        'INSERT INTO retries (transport, uid, target, message, attempt, due_at, reason, owner, lease_until) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)',
      ),
      update: db.prepare('UPDATE retries SET attempt = ?, due_at = ?, reason = ?, lease_until = ? WHERE seq = ?'),
      release: db.prepare('DELETE FROM retries WHERE seq = ?'),
      expired: db.prepare<[number, number], Row>(
        'SELECT seq, transport, uid, target, message, attempt, due_at, reason FROM retries WHERE lease_until <= ? ORDER BY due_at, seq LIMIT ?',
      ),
      expiredOrOrphaned: db.prepare<[number, string, number], Row>(
        'SELECT seq, transport, uid, target, message, attempt, due_at, reason FROM retries WHERE lease_until <= ? OR owner <> ? ORDER BY due_at, seq LIMIT ?',
      ),
      lease: db.prepare('UPDATE retries SET owner = ?, lease_until = ? WHERE seq = ?'),
      handBack: db.prepare('UPDATE retries SET lease_until = 0 WHERE owner = ?'),
    };
    this.#hold = db
      .transaction((e: RetryEntry, owner: string, leaseMs: number): string => {
        const held = this.#stmt.count.get()?.n ?? 0;
        if (held >= this.#maxEntries) {
          throw new NotifyError(
            'NOTIFY_ERR_STORE',
            `the retry queue is full: ${held} deliveries already wait for a retry (at most ${this.#maxEntries}); this one is not retried`,
          );
        }
        const r = this.#stmt.hold.run(e.transport, e.uid, e.target, JSON.stringify(e.msg), e.attempts, e.dueAt, e.reason, owner, e.dueAt + leaseMs);
        return String(r.lastInsertRowid);
      });
    this.#claim = db
      .transaction((owner: string, limit: number, leaseMs: number, now: number): PendingRetry[] => {
        const rows = this.#exclusive ? this.#stmt.expiredOrOrphaned.all(now, owner, limit) : this.#stmt.expired.all(now, limit);
        return rows.map((r) => {
          this.#stmt.lease.run(owner, Math.max(r.due_at, now) + leaseMs, r.seq);
          return {
            key: String(r.seq),
            transport: r.transport,
            uid: r.uid,
            target: r.target,
            msg: JSON.parse(r.message) as Message,
            attempts: r.attempt,
            dueAt: r.due_at,
            reason: r.reason,
          };
        });
      });
  }

  hold(entry: RetryEntry, owner: string, leaseMs: number): string {
    return this.#hold.immediate(entry, owner, leaseMs);
  }

  update(key: string, attempts: number, dueAt: number, reason: string, leaseMs: number): void {
    this.#stmt.update.run(attempts, dueAt, reason, dueAt + leaseMs, Number(key));
  }

  release(key: string): void {
    this.#stmt.release.run(Number(key));
  }

  claim(owner: string, opts: { limit: number; leaseMs: number; now?: number }): PendingRetry[] {
    if (!Number.isInteger(opts.limit) || opts.limit < 1) throw new RangeError('limit must be a positive integer');
    return this.#claim.immediate(owner, opts.limit, opts.leaseMs, opts.now ?? Date.now());
  }

  handBack(owner: string): void {
    this.#stmt.handBack.run(owner);
  }

  /** Entries held now (by every owner). */
  get size(): number {
    return this.#stmt.count.get()?.n ?? 0;
  }
}
