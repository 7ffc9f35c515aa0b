import { type JournalEvent, TRACE_LIMITS, type TokenOutcome, type TraceStore, KeyQueue, eachTokenOutcome, packEvent, recordsOf, unpackEvent } from './trace.js';

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
  /** Each event as `packEvent`'s text: a few strings per message for the garbage collector to walk, not a tree of objects. */
  events: string[];
  dropped: number;
}

/**
 * Traces in this process's memory (a node without a state database: `notify send --direct`,
 * tests). Records in insertion order, so the oldest go first by ttl or by count.
 */
export class MemoryTraceStore implements TraceStore {
  readonly #recs = new Map<string, Rec>();
  readonly #order = new KeyQueue();
  readonly #last = new Map<string, TokenOutcome>();
  readonly #lastOrder = new KeyQueue();
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
          this.#order.push(id);
          this.#prune(e.at);
        }
      }
      if (rec !== undefined) {
        if (rec.events.length < TRACE_LIMITS.events) rec.events.push(packEvent(e));
        else rec.dropped++;
      }
    }
    eachTokenOutcome(e, (transport, token, outcome) => {
      const k = `${transport}\u0000${token}`;
      if (!this.#last.has(k)) this.#lastOrder.push(k);
      this.#last.set(k, outcome);
      if (this.#last.size > this.#o.maxTokens) this.#last.delete(this.#lastOrder.shift() as string);
    });
  }

  /** Drops the oldest records: past the ttl, or beyond maxMessages. */
  #prune(now: number): void {
    const horizon = Math.min(now, this.#o.now()) - this.#o.ttlMs;
    for (let id = this.#order.peek(); id !== undefined; id = this.#order.peek()) {
      const rec = this.#recs.get(id);
      if (rec !== undefined && this.#recs.size <= this.#o.maxMessages && rec.at > horizon) break;
      this.#order.shift();
      this.#recs.delete(id);
    }
  }

  events(id: string): { events: JournalEvent[]; dropped: number } {
    const rec = this.#recs.get(id);
    if (rec === undefined || rec.at <= this.#o.now() - this.#o.ttlMs) return { events: [], dropped: 0 };
    return { events: rec.events.map((t) => unpackEvent(JSON.parse(t), id)), dropped: rec.dropped };
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
