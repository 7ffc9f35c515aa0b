import type { Uid } from '../types.js';

/**
 * The ack relay: acks of the resume protocol (`{"type":"ack","id":…}` from a session) reach the
 * publish that waits for them, whichever node each is on.
 *
 * Contract:
 * - `wait(id, uids, timeoutMs)` resolves with those of `uids` that acked message `id` within
 *   `timeoutMs` (early, once every one of them has). It never rejects: a relay that fails
 *   counts as no ack, so live-first falls back to push (at least once, never silence).
 * - `ack(id, uid)` counts for every current waiter of `id` that waits for `uid`; an ack for a
 *   message nobody waits for is dropped (acks are not stored).
 * - Waiters are bounded by the publishes in flight; each ends by its timeout.
 *
 * Redis (acks-redis.ts): the waiting node registers in `<prefix>:ackwait:<id>`; an ack PUBLISHes to
 * each registered node's own channel `<prefix>:ack:<node>`, subscribed once per node.
 */
export interface AckRelay {
  wait(id: string, uids: ReadonlySet<Uid>, timeoutMs: number): Promise<Set<Uid>>;
  ack(id: string, uid: Uid): void | Promise<void>;
}
