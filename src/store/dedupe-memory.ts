import type { Claim, Dedupe } from './dedupe.js';

/**
 * Publisher-id dedupe in this process's memory, for a node without a database: at most
 * `maxEntries` ids (the oldest go first), each for its window.
 */
export class MemoryDedupe implements Dedupe {
  readonly #ids = new Map<string, { until: number; answer: string | undefined }>();
  readonly #max: number;
  readonly #now: () => number;

  constructor(opts: { maxEntries?: number; now?: () => number } = {}) {
    this.#max = opts.maxEntries ?? 100_000;
    this.#now = opts.now ?? Date.now;
  }

  claim(id: string, windowMs: number): Claim {
    const now = this.#now();
    const e = this.#ids.get(id);
    if (e !== undefined && e.until > now) return { first: false, answer: e.answer };
    this.#ids.delete(id);
    this.#ids.set(id, { until: now + windowMs, answer: undefined });
    for (const [key, v] of this.#ids) {
      if (this.#ids.size <= this.#max && v.until > now) break;
      this.#ids.delete(key);
    }
    return { first: true };
  }

  record(id: string, answer: string): void {
    const e = this.#ids.get(id);
    if (e !== undefined) e.answer = answer;
  }
}
