import { errorMessage } from '../errors.js';
import type { Logger } from '../log.js';
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

/**
 * Sends requests to one push provider: at most `maxConcurrentRequests` at once, each bounded by
 * `requestTimeoutMs`, retried with exponential backoff and jitter while the verdict says so
 * (no sooner than Retry-After), a bounded number of times; a rate-limit pause holds every
 * request of the transport. Every reason it returns is scrubbed of the configured secrets.
 */
export class ProviderClient {
  readonly #o: ProviderClientOptions;
  readonly #secrets: string[];
  #active = 0;
  readonly #waiting: (() => void)[] = [];
  #pausedUntil = 0;
  readonly #stopping = new AbortController();
  #inflight = 0;

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

  get inflight(): number {
    return this.#inflight;
  }

  /** Milliseconds until the rate-limit pause ends (0 when not paused). */
  get pausedForMs(): number {
    return Math.max(0, this.#pausedUntil - Date.now());
  }

  /** Sends `req` until the verdict is final, retries run out, or `signal` aborts. */
  async send(req: ProviderRequest, signal: AbortSignal, judge: (res: ProviderResponse) => Verdict): Promise<SendOutcome> {
    const stop = AbortSignal.any([signal, this.#stopping.signal]);
    const policy = this.#o.retry;
    this.#inflight++;
    try {
      for (let retries = 0; ; retries++) {
        const verdict = await this.#attempt(req, stop, judge);
        if (verdict === undefined) return { status: 'failed', reason: this.#stopping.signal.aborted ? 'notify is shutting down' : 'delivery deadline passed' };
        if (verdict.kind === 'sent') return { status: 'sent', ...(verdict.id !== undefined ? { id: verdict.id } : {}) };
        const reason = this.scrub(verdict.reason);
        if (verdict.kind === 'rejected') return { status: 'rejected', reason };
        if (retries >= policy.limit) return { status: 'failed', reason: `${reason} (gave up after ${retries + 1} attempts)` };
        if (verdict.retryAfterMs !== undefined && verdict.retryAfterMs > policy.maxDelayMs) {
          return { status: 'failed', reason: `${reason}; the provider asked to retry after ${Math.ceil(verdict.retryAfterMs / 1000)} s, longer than retry.maxDelayMs` };
        }
        const delay = backoffMs(retries + 1, policy, verdict.retryAfterMs);
        this.#o.log.debug('provider retry', { transport: this.#o.name, reason, retry: retries + 1, delayMs: delay });
        if (!(await sleep(delay, stop))) {
          return { status: 'failed', reason: `${reason}; retry abandoned: ${this.#stopping.signal.aborted ? 'notify is shutting down' : 'delivery deadline passed'}` };
        }
      }
    } finally {
      this.#inflight--;
    }
  }

  /** One attempt; undefined when aborted before an answer. */
  async #attempt(req: ProviderRequest, stop: AbortSignal, judge: (res: ProviderResponse) => Verdict): Promise<Verdict | undefined> {
    const paused = this.#pausedUntil - Date.now();
    if (paused > 0 && !(await sleep(paused, stop))) return undefined;
    if (!(await this.#acquire(stop))) return undefined;
    try {
      const timeout = AbortSignal.timeout(this.#o.requestTimeoutMs);
      let res: Response;
      try {
        res = await fetch(req.url, {
          method: req.method,
          headers: req.headers,
          ...(req.body !== undefined ? { body: req.body } : {}),
          signal: AbortSignal.any([stop, timeout]),
          redirect: 'manual',
        });
      } catch (err) {
        if (stop.aborted) return undefined;
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
        if (stop.aborted) return undefined;
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
      this.#release();
    }
  }

  #acquire(stop: AbortSignal): Promise<boolean> {
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

  /** Aborts what is waiting or in flight and waits (briefly) for attempts to unwind. */
  async stop(): Promise<void> {
    this.#stopping.abort();
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
