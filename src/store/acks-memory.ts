import type { Uid } from '../types.js';
import { type AckRelay, type AckWait, AckWaits } from './acks.js';

/** The ack relay of a single process: acks and the publishes waiting for them meet in memory. */
export class MemoryAckRelay implements AckRelay {
  readonly #waits = new AckWaits();

  expect(id: string, timeoutMs: number): AckWait {
    return this.#waits.expect(id, timeoutMs);
  }

  wait(id: string, uids: ReadonlySet<Uid>, timeoutMs: number): Promise<Set<Uid>> {
    return this.expect(id, timeoutMs).until(uids, timeoutMs);
  }

  ack(id: string, uid: Uid): void {
    this.#waits.count(id, uid);
  }

  /** Publishes waiting for acks now (that know which uids they need). */
  get waiting(): number {
    return this.#waits.waiting;
  }

  /** Publishes whose acks count from now on, waiting or not yet. */
  get expected(): number {
    return this.#waits.expected;
  }
}
