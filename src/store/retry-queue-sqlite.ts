import type { StateDb } from './sqlite.js';
import type { PendingRetry } from '../push/transport.js';
import type { Message, Uid } from '../types.js';

export type { PendingRetry };

/**
 * Provider deliveries waiting for a retry, kept in the state database so that a restart (or a
 * crash) does not lose them: a transport holds an entry before it waits, updates it on each
 * further failure, and releases it when the delivery ends (sent, or given up). Entries left
 * over at start are handed back to their transports (`Transport.resume`).
 *
 * Writes are immediate (not group-committed): retries are rare, and an entry must be durable
 * before the wait it describes begins.
 */
export class RetryLedger {
  readonly #stmt;

  constructor(db: StateDb) {
    this.#stmt = {
      hold: db.prepare(
        'INSERT INTO retries (transport, uid, target, message, attempt, due_at, reason) VALUES (?, ?, ?, ?, ?, ?, ?)',
      ),
      update: db.prepare('UPDATE retries SET attempt = ?, due_at = ?, reason = ? WHERE seq = ?'),
      release: db.prepare('DELETE FROM retries WHERE seq = ?'),
      all: db.prepare<[], { seq: number; transport: string; uid: string; target: string; message: string; attempt: number; due_at: number; reason: string }>(
        'SELECT seq, transport, uid, target, message, attempt, due_at, reason FROM retries ORDER BY due_at',
      ),
    };
  }

  hold(transport: string, e: { uid: Uid; target: string; msg: Message; attempts: number; dueAt: number; reason: string }): number {
    const r = this.#stmt.hold.run(transport, e.uid, e.target, JSON.stringify(e.msg), e.attempts, e.dueAt, e.reason);
    return Number(r.lastInsertRowid);
  }

  update(key: number, attempts: number, dueAt: number, reason: string): void {
    this.#stmt.update.run(attempts, dueAt, reason, key);
  }

  release(key: number): void {
    this.#stmt.release.run(key);
  }

  /** Every entry, by transport name, soonest first. */
  pending(): Map<string, PendingRetry[]> {
    const out = new Map<string, PendingRetry[]>();
    for (const r of this.#stmt.all.all()) {
      const list = out.get(r.transport) ?? [];
      list.push({ key: r.seq, uid: r.uid, target: r.target, msg: JSON.parse(r.message) as Message, attempts: r.attempt, dueAt: r.due_at, reason: r.reason });
      out.set(r.transport, list);
    }
    return out;
  }
}

/**
 * A delivery's place in the ledger: held while it waits for a retry, released when it ends.
 * Transports drive one per target through their retry loop.
 */
export class RetryTicket {
  #key: number | undefined;

  constructor(
    private readonly ledger: RetryLedger | undefined,
    private readonly transport: string,
    private readonly what: { uid: Uid; target: string; msg: Message },
    key?: number,
  ) {
    this.#key = key;
  }

  /** Records (or updates) that the next attempt, after `attempts` so far, is due at `dueAt`. */
  waiting(attempts: number, dueAt: number, reason: string): void {
    if (!this.ledger) return;
    if (this.#key === undefined) this.#key = this.ledger.hold(this.transport, { ...this.what, attempts, dueAt, reason });
    else this.ledger.update(this.#key, attempts, dueAt, reason);
  }

  /** The delivery has ended: nothing left to retry. */
  done(): void {
    if (this.ledger && this.#key !== undefined) this.ledger.release(this.#key);
    this.#key = undefined;
  }
}
