import { randomBytes } from 'node:crypto';

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/**
 * Monotonic ULIDs (github.com/ulid/spec): 26 characters, 48 bits of milliseconds then 80 random
 * bits, Crockford base32. They sort by time as plain strings; within one millisecond each id is
 * the previous one plus one, so ids made by one process are strictly increasing.
 */
export class UlidGenerator {
  #lastMs = -1;
  /** The 16 random characters of the last id, as digit values. */
  readonly #random = new Uint8Array(16);
  readonly #now: () => number;

  constructor(now: () => number = Date.now) {
    this.#now = now;
  }

  /** The id without its last character (time and 15 random characters), while they stay the same. */
  #head = '';

  next(): string {
    const ms = this.#now();
    if (ms <= this.#lastMs) {
      // Within one millisecond (or a clock that went back): the previous id plus one.
      if (this.#increment()) this.#head = this.#time(this.#lastMs) + this.#digits(15);
    } else {
      this.#lastMs = ms;
      const bytes = randomBytes(16);
      // 5 bits per character; the top character is kept below 16 so an increment never overflows.
      for (let i = 0; i < 16; i++) this.#random[i] = (bytes[i] as number) & 31;
      this.#random[0] = (this.#random[0] as number) & 15;
      this.#head = this.#time(ms) + this.#digits(15);
    }
    return this.#head + (CROCKFORD[this.#random[15] as number] as string);
  }

  #time(ms: number): string {
    let time = '';
    for (let i = 9, t = ms; i >= 0; i--, t = Math.floor(t / 32)) time = (CROCKFORD[t % 32] as string) + time;
    return time;
  }

  /** The first `n` random characters. */
  #digits(n: number): string {
    let out = '';
    for (let i = 0; i < n; i++) out += CROCKFORD[this.#random[i] as number];
    return out;
  }

  /** Adds one to the random part; true when a carry changed more than the last character. */
  #increment(): boolean {
    for (let i = 15; i >= 0; i--) {
      const d = (this.#random[i] as number) + 1;
      if (d < 32) {
        this.#random[i] = d;
        return i < 15;
      }
      this.#random[i] = 0;
    }
    return true;
  }
}

/** The longest message id a publisher may give. */
export const MAX_ID_LENGTH = 128;
const ID_PATTERN = /^[A-Za-z0-9._:~-]+$/;

/** Checks a publisher's own message id; a problem or undefined. */
export function checkMessageId(id: unknown): string | undefined {
  if (typeof id !== 'string' || id.length === 0) return '"id" must be a non-empty string';
  if (id.length > MAX_ID_LENGTH) return `"id" is longer than ${MAX_ID_LENGTH} characters`;
  if (!ID_PATTERN.test(id)) return '"id" may use letters, digits and . _ : ~ - only';
  return undefined;
}
