import { type JournalEvent, TRACE_LIMITS, type TokenOutcome, type TraceStore, recordsOf, tokenOutcomes } from './trace.js';

export interface MemoryTraceOptions {
  /** How long a record is kept after its first event (history.ttl). */
  ttlMs: number;
  /** Records kept at most, oldest dropped first (history.maxMessages). */
  maxMessages: number;
  /** Device tokens whose last outcome is kept at most. @default 100000 */
  maxTokens?: number;
  now?: () => number;
}

interface Rec {
  at: number;
  events: JournalEvent[];
  dropped: number;
}

/**
 * Traces in this process's memory (a node without a state database: `notify send --direct`,
 * tests). Records in insertion order, so the oldest go first by ttl or by count.
 */
export class MemoryTraceStore implements TraceStore {
  readonly #recs = new Map<string, Rec>();
  readonly #last = new Map<string, TokenOutcome>();
  readonly #o: Required<MemoryTraceOptions>;

  constructor(opts: MemoryTraceOptions) {
    this.#o = { maxTokens: 100_000, now: Date.now, ...opts };
  }

  append(e: JournalEvent): void {
    for (const id of recordsOf(e)) {
      let rec = this.#recs.get(id);
      if (rec === undefined) {
        if (e.type !== 'published' && e.type !== 'duplicate' && e.type !== 'retired') {
          // Only news of a message this store has: an ack or a late outcome of one it no longer keeps is dropped.
          rec = undefined;
        } else {
          rec = { at: e.at, events: [], dropped: 0 };
          this.#recs.set(id, rec);
          this.#prune();
        }
      }
      if (rec !== undefined) {
        if (rec.events.length < TRACE_LIMITS.events) rec.events.push(e);
        else rec.dropped++;
      }
    }
    for (const t of tokenOutcomes(e)) {
      const k = `${t.transport}\u0000${t.token}`;
      this.#last.delete(k);
      this.#last.set(k, t.outcome);
      if (this.#last.size > this.#o.maxTokens) this.#last.delete(this.#last.keys().next().value as string);
    }
  }

  #prune(): void {
    const horizon = this.#o.now() - this.#o.ttlMs;
    for (const [id, rec] of this.#recs) {
      if (this.#recs.size <= this.#o.maxMessages && rec.at > horizon) break;
      this.#recs.delete(id);
    }
  }

  events(id: string): { events: JournalEvent[]; dropped: number } {
    const rec = this.#recs.get(id);
    if (rec === undefined || rec.at <= this.#o.now() - this.#o.ttlMs) return { events: [], dropped: 0 };
    return { events: [...rec.events], dropped: rec.dropped };
  }

  lastOutcome(transport: string, tokens: readonly string[]): (TokenOutcome | undefined)[] {
    return tokens.map((t) => this.#last.get(`${transport}\u0000${t}`));
  }

  flush(): void {}

  close(): void {
    this.#recs.clear();
    this.#last.clear();
  }
}
