/**
 * Publisher-id dedupe: the first publish with a publisher's own id is delivered; a repeat within
 * the window gets the first one's answer and is not delivered again.
 *
 * Contract:
 * - `claim(id)` is atomic across every node sharing the backend: exactly one caller gets
 *   `{ first: true }` for an id within `windowMs`; the others get `{ first: false }` with the
 *   answer recorded so far (`answer` undefined while the first publish has none yet).
 * - A claim is durable no later than the message it belongs to: the embedded backend commits
 *   it in the same transaction as the message, so a crash after an `ok` cannot let the
 *   publisher's retry deliver the message twice.
 * - `record` stores the (final, or a provisional) answer for a claimed id; the latest wins.
 * - Memory is bounded: answers live in the backend with their window as TTL, not in a
 *   process-wide map.
 * - A failing backend rejects `claim`; the publish is then answered with an error, never sent.
 *
 * Redis: `SET key answer NX PX window` for the claim, `SET key answer XX KEEPTTL` to record.
 */
export interface Dedupe {
  claim(id: string, windowMs: number): Claim | Promise<Claim>;
  record(id: string, answer: string): void | Promise<void>;
}

export type Claim = { first: true } | { first: false; answer: string | undefined };
