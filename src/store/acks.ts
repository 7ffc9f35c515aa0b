import type { Uid } from '../types.js';

/**
 * One publish's wait for acks of its message, made with `AckRelay.expect` before the message
 * can reach any session.
 */
export interface AckWait {
  /**
   * Resolves with those of `uids` whose ack of the message arrived since `expect` (early, once
   * every one of them has; at the latest `timeoutMs` after this call), and ends the wait. Call it
   * once. It never rejects: a relay that fails counts as no ack, so live-first falls back to
   * push (at least once, never silence).
   */
  until(uids: ReadonlySet<Uid>, timeoutMs: number): Promise<Set<Uid>>;
  /** Ends the wait without waiting (nobody to wait for, or the publish failed). Idempotent. */
  end(): void;
}

/**
 * The ack relay: acks of the resume protocol (`{"type":"ack","id":…}` from a session) reach the
 * publish that waits for them, whichever node each is on.
 *
 * Contract:
 * - `expect(id, timeoutMs)` starts a wait for acks of message `id`: from then on, an ack of `id`
 *   from any uid counts for it, wherever it is sent. A publish expects its acks **before** its
 *   message goes out, so an ack can never overtake its wait (across nodes, the message reaches
 *   a session on node B by pub/sub while node A is still delivering it; B's ack must find A's
 *   wait). `timeoutMs` is the wait's expected length: how long its registration lasts at least.
 *   The wait ends with `until` (the uids it needs, and how long to wait for them) or `end`.
 * - `wait(id, uids, timeoutMs)` is `expect(id, timeoutMs).until(uids, timeoutMs)`.
 * - `ack(id, uid)` counts for every wait of `id` under way (expected, not ended); an ack for a
 *   message nobody waits for is dropped (acks are not stored, so a client cannot make the relay
 *   keep anything: what it holds is bounded by the publishes in flight).
 * - Waits are bounded by the publishes in flight; each ends by `until`'s timeout or `end`.
 *
 * Redis (acks-redis.ts): the waiting node registers in `<prefix>:ackwait:<id>` (on the command
 * connection, ahead of the publish that sends the message); an ack PUBLISHes to each registered
 * node's own channel `<prefix>:ack:<node>`, subscribed once per node.
 */
export interface AckRelay {
  expect(id: string, timeoutMs: number): AckWait;
  wait(id: string, uids: ReadonlySet<Uid>, timeoutMs: number): Promise<Set<Uid>>;
  ack(id: string, uid: Uid): void | Promise<void>;
}

interface Wait {
  /** The uids it needs (undefined until `until`: then it keeps every uid that acks). */
  uids: ReadonlySet<Uid> | undefined;
  /** The uids that acked; once `uids` is known, only those of `uids` (so it is done when the sizes match). */
  acked: Set<Uid>;
  timer: NodeJS.Timeout | undefined;
  resolve: ((acked: Set<Uid>) => void) | undefined;
  ended: boolean;
}

/**
 * The waits of one process by message id, and how acks count for them: shared by the relays
 * (memory and Redis). `onFirst`/`onLast` run when a message gets its first wait here and when its
 * last one ends (the Redis relay registers and unregisters the node there).
 */
export class AckWaits {
  readonly #waits = new Map<string, Set<Wait>>();

  constructor(private readonly hooks: { onFirst?: (id: string, timeoutMs: number) => void; onUntil?: (id: string, timeoutMs: number) => void; onLast?: (id: string) => void } = {}) {}

  expect(id: string, timeoutMs: number): AckWait {
    const w: Wait = { uids: undefined, acked: new Set(), timer: undefined, resolve: undefined, ended: false };
    let waits = this.#waits.get(id);
    if (waits === undefined) {
      this.#waits.set(id, (waits = new Set()));
      waits.add(w);
      this.hooks.onFirst?.(id, timeoutMs);
    } else waits.add(w);
    const finish = () => this.#end(id, w);
    return {
      until: (uids, timeoutMs) =>
        new Promise<Set<Uid>>((resolve) => {
          if (w.ended || w.uids !== undefined) {
            resolve(new Set());
            return;
          }
          w.uids = uids;
          w.resolve = resolve;
          for (const u of w.acked) if (!uids.has(u)) w.acked.delete(u);
          if (w.acked.size === uids.size) {
            finish();
            return;
          }
          this.hooks.onUntil?.(id, timeoutMs);
          w.timer = setTimeout(finish, timeoutMs);
        }),
      end: finish,
    };
  }

  /** An ack of `uid` for message `id` counts for each wait of it under way here. */
  count(id: string, uid: Uid): void {
    const waits = this.#waits.get(id);
    if (waits === undefined) return;
    for (const w of [...waits]) {
      if (w.uids !== undefined && !w.uids.has(uid)) continue;
      w.acked.add(uid);
      if (w.uids !== undefined && w.acked.size === w.uids.size) this.#end(id, w);
    }
  }

  #end(id: string, w: Wait): void {
    if (w.ended) return;
    w.ended = true;
    clearTimeout(w.timer);
    const all = this.#waits.get(id);
    if (all?.delete(w) && all.size === 0) {
      this.#waits.delete(id);
      this.hooks.onLast?.(id);
    }
    w.resolve?.(w.uids === undefined ? new Set() : w.acked);
  }

  /** Ends every wait now, with the acks it has. */
  endAll(): void {
    for (const [id, waits] of [...this.#waits]) for (const w of [...waits]) this.#end(id, w);
  }

  /** Waits that know their uids and wait for their acks now (`until` called, not ended). */
  get waiting(): number {
    let n = 0;
    for (const waits of this.#waits.values()) for (const w of waits) if (w.uids !== undefined) n++;
    return n;
  }

  /** Waits under way, `until` called or not. */
  get expected(): number {
    let n = 0;
    for (const waits of this.#waits.values()) n += waits.size;
    return n;
  }
}
