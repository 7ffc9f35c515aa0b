import type { Uid } from '../types.js';
import type { AckRelay } from './acks.js';

interface Wait {
  uids: ReadonlySet<Uid>;
  acked: Set<Uid>;
  done: () => void;
}

/** The ack relay of a single process: acks and the publishes waiting for them meet in memory. */
export class MemoryAckRelay implements AckRelay {
  /** Waiters by message id (several publishes may share an id only in tests; the latest wins). */
  readonly #waits = new Map<string, Wait>();

  wait(id: string, uids: ReadonlySet<Uid>, timeoutMs: number): Promise<Set<Uid>> {
    return new Promise((resolve) => {
      const acked = new Set<Uid>();
      const done = () => {
        clearTimeout(timer);
        if (this.#waits.get(id) === wait) this.#waits.delete(id);
        resolve(acked);
      };
      const wait: Wait = { uids, acked, done };
      const timer = setTimeout(done, timeoutMs);
      this.#waits.set(id, wait);
    });
  }

  ack(id: string, uid: Uid): void {
    const wait = this.#waits.get(id);
    if (wait === undefined || !wait.uids.has(uid)) return;
    wait.acked.add(uid);
    if (wait.acked.size === wait.uids.size) wait.done();
  }

  /** Publishes waiting for acks now. */
  get waiting(): number {
    return this.#waits.size;
  }
}
