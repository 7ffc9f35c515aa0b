/**
 * How many requests to keep in flight on a warm APNs connection: enough to cover the round trip,
 * no more. Requests beyond that do not go out faster; they wait in the server's queue, each
 * holding a stream, its buffers and its promises for longer (memory, garbage that outlives the
 * young generation, CPU). Over a long round trip (Apple across the internet) the window grows
 * to maxConcurrentStreams; to a server that queues (a nearby relay, a busy endpoint) it stays
 * as small as keeps the server busy.
 *
 * The idea of TCP Vegas and of Netflix's concurrency-limits (VegasLimit, Gradient2Limit):
 * compare the latency of the requests with the lowest seen. Per round (as many answers as the
 * window): when the round's mean latency is within the allowance of the lowest (twice it, and
 * at least TOLERANCE_MS over it), nothing is queueing: the window doubles in the first rounds
 * (slow start), later grows by its square root. Otherwise it shrinks in proportion to
 * allowance / mean, not below MIN_WINDOW. Each new connection learns its lowest latency afresh.
 * https://github.com/Netflix/concurrency-limits
 */
export class StreamWindow {
  /** Requests in flight at most, whatever the latencies: maxConcurrentStreams. */
  readonly #max: number;
  #size: number;
  #slowStart = true;
  #minRttMs = Infinity;
  #roundMinMs = Infinity;
  #roundSumMs = 0;
  #roundCount = 0;

  constructor(max: number) {
    if (!Number.isInteger(max) || max < 1) throw new RangeError('max must be a positive integer');
    this.#max = max;
    this.#size = Math.min(max, INITIAL_WINDOW);
  }

  /** Requests to keep in flight now. */
  get size(): number {
    return this.#size;
  }

  /** A new connection: start again from the initial window, and learn its latency afresh. */
  reset(): void {
    this.#size = Math.min(this.#max, INITIAL_WINDOW);
    this.#slowStart = true;
    this.#minRttMs = Infinity;
    this.#roundMinMs = Infinity;
    this.#roundSumMs = 0;
    this.#roundCount = 0;
  }

  /** One answered request took `latencyMs` (from the request to its answer). */
  sample(latencyMs: number): void {
    if (latencyMs < this.#roundMinMs) this.#roundMinMs = latencyMs;
    this.#roundSumMs += latencyMs;
    if (++this.#roundCount < this.#size) return;
    const mean = this.#roundSumMs / this.#roundCount;
    if (this.#roundMinMs < this.#minRttMs) this.#minRttMs = this.#roundMinMs;
    this.#roundMinMs = Infinity;
    this.#roundSumMs = 0;
    this.#roundCount = 0;
    const allowance = Math.max(2 * this.#minRttMs, this.#minRttMs + TOLERANCE_MS);
    if (mean <= allowance) {
      const grown = this.#slowStart ? this.#size * 2 : this.#size + Math.ceil(Math.sqrt(this.#size));
      this.#size = Math.min(this.#max, grown);
    } else {
      this.#slowStart = false;
      this.#size = Math.max(Math.min(this.#max, MIN_WINDOW), Math.floor((this.#size * allowance) / mean));
    }
  }
}

/** The window of a connection just warmed up. */
const INITIAL_WINDOW = 16;
/** The window never shrinks below this (enough to keep a nearby server busy). */
const MIN_WINDOW = 8;
/** Latency over the lowest that never counts as queueing (event-loop turns, scheduling). */
const TOLERANCE_MS = 5;
