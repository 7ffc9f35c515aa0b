import type { Spec } from '../config/schema.js';
import type { Logger } from '../obs/log.js';
import type { PendingRetry } from './transport.js';

/** How a transport retries transient failures (429, 5xx, connection resets). */
export interface RetryPolicy {
  /** Retries after the first attempt. @default 3 */
  limit: number;
  /** First backoff; doubles each retry. @default 200 */
  baseDelayMs: number;
  /** Longest backoff, and longest Retry-After honoured. @default 10000 */
  maxDelayMs: number;
}

export const RETRY_DEFAULTS: RetryPolicy = { limit: 3, baseDelayMs: 200, maxDelayMs: 10_000 };

/** The `retry:` section of a provider transport's settings. */
export const retrySpec: Spec = {
  type: 'section',
  keys: {
    limit: { type: 'integer', min: 0, max: 20, default: RETRY_DEFAULTS.limit },
    baseDelayMs: { type: 'integer', min: 1, default: RETRY_DEFAULTS.baseDelayMs },
    maxDelayMs: { type: 'integer', min: 1, default: RETRY_DEFAULTS.maxDelayMs },
  },
};

/**
 * Delay before retry number `retry` (1-based): exponential, capped at maxDelayMs, with "equal
 * jitter" (half fixed, half random) so that a burst of failures does not come back in lockstep.
 * A server's Retry-After, when given, is the delay instead: never retry sooner than it asks
 * (callers give up when it is longer than they are willing to wait).
 */
export function backoffMs(retry: number, policy: RetryPolicy, retryAfterMs?: number, random = Math.random): number {
  if (retryAfterMs !== undefined) return Math.max(0, retryAfterMs);
  const exp = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** (retry - 1));
  return Math.round(exp / 2 + random() * (exp / 2));
}

/** Parses a Retry-After header value (delta seconds or an HTTP date) into milliseconds. */
export function parseRetryAfter(value: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = Array.isArray(value) ? value[0] : value;
  if (v === undefined || v.trim() === '') return undefined;
  if (/^\s*\d+(\.\d+)?\s*$/.test(v)) return Math.round(Number(v) * 1000);
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

/** Waits `ms`; resolves false early if `signal` aborts first. */
export function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (ok: boolean) => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
      resolve(ok);
    };
    const onAbort = () => done(false);
    const timer = setTimeout(() => done(true), ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** Resolves when `signal` aborts (never, if it does not); `dispose()` removes the listener. */
export function whenAborted(signal: AbortSignal): { promise: Promise<void>; dispose(): void } {
  let onAbort: () => void = () => {};
  const promise = new Promise<void>((resolve) => {
    onAbort = () => resolve();
    if (signal.aborted) resolve();
    else signal.addEventListener('abort', onAbort, { once: true });
  });
  return { promise, dispose: () => signal.removeEventListener('abort', onAbort) };
}

/**
 * Waits for every promise, or until `signal` aborts, whichever is first; unsettled ones are
 * undefined in the result (they go on in the background).
 */
export async function settleBy<T>(promises: readonly Promise<T>[], signal: AbortSignal): Promise<(T | undefined)[]> {
  const out: (T | undefined)[] = new Array(promises.length);
  const all = Promise.all(promises.map((p, i) => p.then((v) => void (out[i] = v))));
  const deadline = whenAborted(signal);
  try {
    await Promise.race([all, deadline.promise]);
  } finally {
    deadline.dispose();
  }
  return out;
}

/**
 * Takes up a delivery held over from before a restart: waits until it is due (or notify stops),
 * runs it, and logs how it ended.
 */
export async function resumeWhenDue(
  p: PendingRetry,
  transport: string,
  stop: AbortSignal,
  log: Logger,
  run: () => Promise<{ status: string; reason?: string | undefined }>,
): Promise<void> {
  if (!(await sleep(Math.max(0, p.dueAt - Date.now()), stop))) return;
  const out = await run();
  log[out.status === 'sent' ? 'info' : 'warn']('resumed delivery ended', {
    transport,
    uid: p.uid,
    target: p.target,
    id: p.msg.id,
    status: out.status,
    reason: out.reason,
  });
}
