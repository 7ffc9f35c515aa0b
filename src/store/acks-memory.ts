import type { Uid } from '../types.js';
import type { AckRelay } from './acks.js';

interface Wait {
  uids: ReadonlySet<Uid>;
  acked: Set<Uid>;
  done: () => void;
}

/** The ack relay of a single process: acks and the publishes waiting for them meet in memory. */
export class MemoryAckRelay implements AckRelay {
  /** Waiters by message id: an ack counts for each of them. */
  readonly #waits = new Map<string, Set<Wait>>();

  wait(id: string, uids: ReadonlySet<Uid>, timeoutMs: number): Promise<Set<Uid>> {
    return new Promise((resolve) => {
      const acked = new Set<Uid>();
      const done = () => {
        clearTimeout(timer);
        const waits = this.#waits.get(id);
        waits?.delete(wait);
        if (waits?.size === 0) this.#waits.delete(id);
        resolve(acked);
      };
      const wait: Wait = { uids, acked, done };
      const timer = setTimeout(done, timeoutMs);
      let waits = this.#waits.get(id);
      if (waits === undefined) this.#waits.set(id, (waits = new Set()));
      waits.add(wait);
    });
  }

  ack(id: string, uid: Uid): void {
    const waits = this.#waits.get(id);
    if (waits === undefined) return;
    for (const wait of [...waits]) {
      if (!wait.uids.has(uid)) continue;
      wait.acked.add(uid);
      if (wait.acked.size === wait.uids.size) wait.done();
    }
  }

  /** Publishes waiting for acks now. */
  get waiting(): number {
    let n = 0;
    for (const waits of this.#waits.values()) n += waits.size;
    return n;
  }
}
