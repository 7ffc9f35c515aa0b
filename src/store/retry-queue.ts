import type { Message, Uid } from '../types.js';

/** A provider delivery waiting for a retry, as the queue keeps it. */
export interface PendingRetry {
  /** The queue's key for it. */
  key: string;
  transport: string;
  uid: Uid;
  target: string;
  msg: Message;
  /** Attempts made so far. */
  attempts: number;
  /** When the next attempt is due (ms since the epoch). */
  dueAt: number;
  reason: string;
}

export type RetryEntry = Omit<PendingRetry, 'key'>;

/**
 * Provider deliveries waiting for a retry, kept so that a stop, a crash or a reload does not
 * lose them, with leases so that two nodes never send the same one.
 *
 * Contract:
 * - `hold` records an entry owned by `owner` and leased until `dueAt + leaseMs`; `update`
 *   moves it (next attempt, new lease). Both are durable when they return (or resolve).
 * - `release` ends an entry (sent, or given up); releasing twice is a no-op.
 * - `claim(owner, …)` hands over up to `limit` entries whose lease has run out (their owner
 *   stopped, crashed or handed them back), soonest due first, leasing each to `owner` for
 *   `leaseMs` past its due time. An entry is handed to one claimer only (atomic claim).
 * - `handBack(owner)` ends the leases of `owner`'s entries at once (a graceful stop or a
 *   reload): the next claimer takes them without waiting.
 * - Bounded: `hold` rejects (NOTIFY_ERR_STORE) when the queue is full; the delivery is then
 *   reported failed, not kept in memory.
 *
 * Redis: a ZSET by lease expiry plus a HASH per entry, claimed by a Lua script (BullMQ's
 * delayed-job pattern).
 */
export interface RetryQueue {
  hold(entry: RetryEntry, owner: string, leaseMs: number): string | Promise<string>;
  update(key: string, attempts: number, dueAt: number, reason: string, leaseMs: number): void | Promise<void>;
  release(key: string): void | Promise<void>;
  claim(owner: string, opts: { limit: number; leaseMs: number; now?: number }): PendingRetry[] | Promise<PendingRetry[]>;
  handBack(owner: string): void | Promise<void>;
  readonly size: number | undefined;
}
