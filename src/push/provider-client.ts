import { errorMessage } from '../errors.js';
import type { Logger } from '../obs/log.js';
import type { RetryTicket } from '../store/retry-queue-sqlite.js';
import { type RetryPolicy, backoffMs, parseRetryAfter, sleep } from './retry.js';

/** One HTTP request to a push provider. */
export interface ProviderRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  body?: string;
}

/** What came back (the body read up to a limit). */
export interface ProviderResponse {
  status: number;
  headers: Headers;
  body: string;
}

/** A provider's answer, judged by the transport. */
export type Verdict =
  | { kind: 'sent'; id?: string }
  /** Permanent: do not retry. */
  | { kind: 'rejected'; reason: string }
  /** Transient: retry, no sooner than `retryAfterMs` when given. */
  | { kind: 'retry'; reason: string; retryAfterMs?: number };

export interface SendOutcome {
  status: 'sent' | 'rejected' | 'failed';
  reason?: string;
  id?: string;
}

export interface ProviderClientOptions {
  /** The transport's name, for logs. */
  name: string;
  requestTimeoutMs: number;
  maxConcurrentRequests: number;
  retry: RetryPolicy;
  /** Credentials and other values that must never appear in reports, errors or logs. */
  secrets: readonly string[];
  log: Logger;
  /**
   * Reads rate-limit headers of any response: milliseconds the provider wants no requests for
   * (the whole transport pauses), or undefined.
   */
  pauseAfter?: (res: ProviderResponse) => number | undefined;
  /** Told of each retry (for /metrics). */
  onRetry?: () => void;
}

const MAX_BODY_BYTES = 64 * 1024;
const EXCERPT_CHARS = 200;

/** A short, single-line excerpt of a response body for a report. */
export function excerpt(body: string): string {
  const flat = body.replace(/\s+/g, ' ').trim();
  return flat.length > EXCERPT_CHARS ? `${flat.slice(0, EXCERPT_CHARS)}…` : flat;
}

/**
 * The default verdict for an HTTP push provider: a success status is sent; 408, 429 and 5xx are
 * retried (honouring Retry-After); any other status is rejected. Failures carry the status and
 * an excerpt of the body.
 */
export function httpVerdict(res: ProviderResponse, isSuccess: (status: number) => boolean): Verdict {
  if (isSuccess(res.status)) return { kind: 'sent' };
  const reason = `HTTP ${res.status}${res.body ? `: ${excerpt(res.body)}` : ''}`;
  if (res.status === 408 || res.status === 429 || res.status >= 500) {
    const retryAfterMs = parseRetryAfter(res.headers.get('retry-after') ?? undefined);
    return retryAfterMs === undefined ? { kind: 'retry', reason } : { kind: 'retry', reason, retryAfterMs };
  }
  return { kind: 'rejected', reason };
}

/** How one delivery goes through `send`: its ledger ticket and where it stands. */
export interface Delivery {
  ticket: RetryTicket;
  /** Attempts made before this call (a delivery resumed after a restart). @default 0 */
  attempts?: number;
  /** Told each transient failure, for a report that is due before the delivery ends. */
  onRetry?: (reason: string) => void;
}

/**
 * Sends requests to one push provider: at most `maxConcurrentRequests` at once, each bounded by
 * `requestTimeoutMs`, retried with exponential backoff and jitter while the verdict says so
 * (no sooner than Retry-After), a bounded number of times; a rate-limit pause holds every
 * request of the transport. Every reason it returns is scrubbed of the configured secrets.
 *
 * A delivery is carried to its end whatever the caller's deadline: waiting for a retry, it is
 * held in the retry ledger, so a stop (or a crash) leaves it for the next start.
 */
export class ProviderClient {
  readonly #o: ProviderClientOptions;
  readonly #secrets: string[];
  #active = 0;
  readonly #waiting: (() => void)[] = [];
  #pausedUntil = 0;
  /** Aborts waits (backoff, rate-limit pauses, queueing) at stop. */
  readonly #stopWaits = new AbortController();
  /** Aborts requests in flight, after a grace period at stop. */
  readonly #stopRequests = new AbortController();
  #inflight = 0;
  #requests = 0;

  constructor(opts: ProviderClientOptions) {
    this.#o = opts;
    // Longest first, so a secret that contains another is replaced whole.
    this.#secrets = [...new Set(opts.secrets.filter((s) => s.length >= 4))].sort((a, b) => b.length - a.length);
  }

  /** Replaces every configured secret in `text` with [redacted]. */
  scrub(text: string): string {
    let out = text;
    for (const s of this.#secrets) out = out.split(s).join('[redacted]');
    return out;
  }

  /** Deliveries under way (sending or waiting to retry). */
  get inflight(): number {
    return this.#inflight;
  }

  /** Milliseconds until the rate-limit pause ends (0 when not paused). */
  get pausedForMs(): number {
    return Math.max(0, this.#pausedUntil - Date.now());
  }

  /** Sends `req` until the verdict is final or retries run out (or notify stops). */
  async send(req: ProviderRequest, judge: (res: ProviderResponse) => Verdict, d: Delivery): Promise<SendOutcome> {
    const policy = this.#o.retry;
    const stop = this.#stopWaits.signal;
    const stopped = (reason?: string): SendOutcome => ({
      status: 'failed',
      reason: reason ? `${reason}; notify is shutting down, the retry is kept for its next start` : 'notify is shutting down',
    });
    this.#inflight++;
    try {
      for (let attempts = d.attempts ?? 0; ; ) {
        const verdict = await this.#attempt(req, judge);
        attempts++;
        if (verdict === undefined) return stopped();
        if (verdict.kind === 'sent') {
          d.ticket.done();
          return { status: 'sent', ...(verdict.id !== undefined ? { id: verdict.id } : {}) };
        }
        const reason = this.scrub(verdict.reason);
        const end = (outcome: SendOutcome): SendOutcome => {
          d.ticket.done();
          return outcome;
        };
        if (verdict.kind === 'rejected') return end({ status: 'rejected', reason });
        if (attempts > policy.limit) return end({ status: 'failed', reason: `${reason} (gave up after ${attempts} attempts)` });
        if (verdict.retryAfterMs !== undefined && verdict.retryAfterMs > policy.maxDelayMs) {
          return end({ status: 'failed', reason: `${reason}; the provider asked to retry after ${Math.ceil(verdict.retryAfterMs / 1000)} s, longer than retry.maxDelayMs` });
        }
        const delay = backoffMs(attempts, policy, verdict.retryAfterMs);
        d.onRetry?.(reason);
        this.#o.onRetry?.();
        d.ticket.waiting(attempts, Date.now() + delay, reason);
        this.#o.log.debug('provider retry', { transport: this.#o.name, reason, attempt: attempts + 1, delayMs: delay });
        if (!(await sleep(delay, stop))) return stopped(reason);
      }
    } finally {
      this.#inflight--;
    }
  }

  /** One attempt; undefined when notify stopped before an answer. */
  async #attempt(req: ProviderRequest, judge: (res: ProviderResponse) => Verdict): Promise<Verdict | undefined> {
    const stop = this.#stopWaits.signal;
    const paused = this.#pausedUntil - Date.now();
    if (paused > 0 && !(await sleep(paused, stop))) return undefined;
    if (!(await this.#acquire(stop))) return undefined;
    this.#requests++;
    const hardStop = this.#stopRequests.signal;
    try {
      const timeout = AbortSignal.timeout(this.#o.requestTimeoutMs);
      let res: Response;
      try {
        res = await fetch(req.url, {
          method: req.method,
          headers: req.headers,
          ...(req.body !== undefined ? { body: req.body } : {}),
          signal: AbortSignal.any([hardStop, timeout]),
          redirect: 'manual',
        });
      } catch (err) {
        if (hardStop.aborted) return undefined;
        if (timeout.aborted) return { kind: 'retry', reason: `no answer within ${this.#o.requestTimeoutMs} ms (requestTimeoutMs)` };
        const cause = (err as { cause?: { code?: string; message?: string } }).cause;
        return { kind: 'retry', reason: `request failed: ${cause?.code ?? cause?.message ?? errorMessage(err)}` };
      }
      let body: string;
      try {
        // Scrubbed before anything is cut or judged: a provider that echoes a credential must
        // not leak even part of it into a reason.
        body = this.scrub(await readLimited(res));
      } catch (err) {
        if (hardStop.aborted) return undefined;
        return { kind: 'retry', reason: timeout.aborted ? `no complete answer within ${this.#o.requestTimeoutMs} ms` : `answer cut off: ${errorMessage(err)}` };
      }
      const response = { status: res.status, headers: res.headers, body };
      const pause = this.#o.pauseAfter?.(response);
      if (pause !== undefined && pause > 0) {
        this.#pausedUntil = Math.max(this.#pausedUntil, Date.now() + pause);
        this.#o.log.info('provider rate limit: pausing', { transport: this.#o.name, pauseMs: pause });
      }
      const verdict = judge(response);
      if (verdict.kind === 'retry' && res.status === 429 && verdict.retryAfterMs !== undefined) {
        this.#pausedUntil = Math.max(this.#pausedUntil, Date.now() + verdict.retryAfterMs);
      }
      return verdict;
    } finally {
      this.#requests--;
      this.#release();
    }
  }

  #acquire(stop: AbortSignal): Promise<boolean> {
    if (stop.aborted) return Promise.resolve(false);
    if (this.#active < this.#o.maxConcurrentRequests) {
      this.#active++;
      return Promise.resolve(true);
    }
    return new Promise((resolve) => {
      const onAbort = () => {
        const i = this.#waiting.indexOf(grant);
        if (i >= 0) this.#waiting.splice(i, 1);
        resolve(false);
      };
      const grant = () => {
        stop.removeEventListener('abort', onAbort);
        this.#active++;
        resolve(true);
      };
      this.#waiting.push(grant);
      stop.addEventListener('abort', onAbort, { once: true });
    });
  }

  #release(): void {
    this.#active--;
    this.#waiting.shift()?.();
  }

  /**
   * Stops: waits are cut short at once (deliveries waiting for a retry stay in the ledger);
   * requests in flight get up to requestTimeoutMs to finish, then are aborted.
   */
  async stop(): Promise<void> {
    this.#stopWaits.abort();
    const grace = Date.now() + this.#o.requestTimeoutMs;
    while (this.#requests > 0 && Date.now() < grace) await new Promise((r) => setTimeout(r, 5));
    this.#stopRequests.abort();
    const deadline = Date.now() + 1000;
    while (this.#inflight > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
  }
}

/** Reads a response body as text, at most MAX_BODY_BYTES (a provider's error page can be large). */
async function readLimited(res: Response): Promise<string> {
  if (!res.body) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = res.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.length;
    if (size >= MAX_BODY_BYTES) {
      await reader.cancel();
      break;
    }
  }
  return Buffer.concat(chunks).toString('utf8', 0, Math.min(size, MAX_BODY_BYTES));
}
