import type { Uid } from '../types.js';

/** One delivery that ended without reaching its target. */
export interface FinalFailure {
  /** When it ended, ISO 8601. */
  at: string;
  /** The message id. */
  id: string;
  uid: Uid;
  transport: string;
  /** The device token or registration id. */
  target: string;
  /** `rejected`: refused for good (a dead token); `failed`: given up (retries spent, queue full). */
  status: 'rejected' | 'failed';
  reason?: string;
  /** Attempts made. */
  attempts: number;
}

/** How many final failures GET /v1/failures keeps. @default 200 */
export const FAILURES_KEPT = 200;

/**
 * The last `capacity` final failures of this node's provider deliveries, in memory, for
 * GET /v1/failures and the operator console. A ring: recording is O(1) and memory stays bounded
 * whatever the failure rate. Lost on restart; the whole history is the log's (and the journal's).
 */
export class FailureRing {
  readonly #items: (FinalFailure | undefined)[];
  #next = 0;
  #count = 0;

  constructor(readonly capacity = FAILURES_KEPT) {
    if (!Number.isInteger(capacity) || capacity <= 0) throw new RangeError('capacity must be a positive integer');
    this.#items = new Array(capacity);
  }

  record(f: FinalFailure): void {
    this.#items[this.#next] = f;
    this.#next = (this.#next + 1) % this.capacity;
    if (this.#count < this.capacity) this.#count++;
  }

  /** The latest `limit` (at most), newest first. */
  recent(limit = this.capacity): FinalFailure[] {
    const n = Math.min(Math.max(0, limit), this.#count);
    const out: FinalFailure[] = [];
    for (let k = 1; k <= n; k++) out.push(this.#items[(this.#next - k + this.capacity) % this.capacity] as FinalFailure);
    return out;
  }

  get size(): number {
    return this.#count;
  }
}
