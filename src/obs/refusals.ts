import type { LogFields, Logger } from './log.js';

/**
 * Log lines for refused connections and publishes (auth, limits, allow lists, 401s), at info,
 * rate-limited per kind: a peer can trigger them in a flood, and must not fill the disk. Per kind,
 * at most one line per `windowMs`; the refusals left out meanwhile are counted, and the next
 * line of that kind says how many (`suppressed`).
 */
export class RefusalLog {
  readonly #log: Logger;
  readonly #windowMs: number;
  readonly #now: () => number;
  readonly #kinds = new Map<string, { last: number; suppressed: number }>();

  constructor(log: Logger, opts: { windowMs?: number; now?: () => number } = {}) {
    this.#log = log;
    this.#windowMs = opts.windowMs ?? 1000;
    this.#now = opts.now ?? Date.now;
  }

  /**
   * One refusal: `kind` is what the rate limit counts by (`auth`, `sessionsPerUid`, `http401`…),
   * `msg` the line, `fields` the reason and what it was about (never a secret).
   */
  refused(kind: string, msg: string, fields: LogFields): void {
    const now = this.#now();
    const k = this.#kinds.get(kind);
    if (k !== undefined && now - k.last < this.#windowMs) {
      k.suppressed++;
      return;
    }
    const suppressed = k?.suppressed ?? 0;
    this.#kinds.set(kind, { last: now, suppressed: 0 });
    this.#log.info(msg, { refused: kind, ...fields, ...(suppressed > 0 ? { suppressed } : {}) });
  }
}
