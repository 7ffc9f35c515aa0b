/** Something waiting on a deadline: told when its time is up. */
export interface Expirable {
  expire(): void;
}

/** One window of deadlines: every call started in it shares the signal and the timer. */
export interface DeadlineWindow {
  readonly signal: AbortSignal;
  /** Registers `w` to be expired when the window's deadline passes. */
  add(w: Expirable): void;
  /** Unregisters `w` (it finished in time). */
  delete(w: Expirable): void;
}

class Window implements DeadlineWindow {
  readonly #controller = new AbortController();
  readonly #waiting = new Set<Expirable>();
  readonly #timer: NodeJS.Timeout;
  readonly closesAt: number;

  constructor(closesAt: number, fireInMs: number) {
    this.closesAt = closesAt;
    // The timer keeps the process alive only while someone waits on it.
    this.#timer = setTimeout(() => this.#fire(), fireInMs).unref();
  }

  get signal(): AbortSignal {
    return this.#controller.signal;
  }

  add(w: Expirable): void {
    this.#waiting.add(w);
    if (this.#waiting.size === 1) this.#timer.ref();
  }

  delete(w: Expirable): void {
    if (this.#waiting.delete(w) && this.#waiting.size === 0) this.#timer.unref();
  }

  #fire(): void {
    if (this.#waiting.size === 0) return;
    // Abort first: a transport that honours the signal answers with what it has (its partial
    // results settle in microtasks); one turn later, whoever is still waiting is expired.
    this.#controller.abort(new Error('deadline passed'));
    setImmediate(() => {
      for (const w of this.#waiting) w.expire();
      this.#waiting.clear();
    });
  }
}

/**
 * Timeouts for a stream of short operations without a timer, an AbortController and an
 * abort (which builds a DOMException) for each: operations started within the same window of
 * `granularityMs` share one AbortSignal and one timer, which fires between `timeoutMs` and
 * `timeoutMs + granularityMs` after each of them started (the coalescing of Go's runtime
 * timers and Netty's HashedWheelTimer). Operations that finish in time leave their window and
 * cost a Set add and delete.
 */
export class Deadlines {
  readonly #timeoutMs: number;
  readonly #granularityMs: number;
  #current: Window | undefined;

  constructor(timeoutMs: number, granularityMs = Math.max(1, Math.ceil(timeoutMs / 50))) {
    if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) throw new RangeError('timeoutMs must be a positive integer');
    this.#timeoutMs = timeoutMs;
    this.#granularityMs = granularityMs;
  }

  /** The window an operation starting now belongs to. */
  current(): DeadlineWindow {
    const now = performance.now();
    const cur = this.#current;
    if (cur !== undefined && now < cur.closesAt) return cur;
    const closesAt = now + this.#granularityMs;
    this.#current = new Window(closesAt, this.#granularityMs + this.#timeoutMs);
    return this.#current;
  }
}
