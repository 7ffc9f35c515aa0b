import type { Spec } from '../config/schema.js';
import { errorMessage } from '../errors.js';
import { type Logger, shortToken } from '../obs/log.js';
import type { PendingRetry, RetryQueue } from '../store/retry-queue.js';
import type { TargetOutcome } from '../store/trace.js';
import type { DeliveryResult, Message, Uid } from '../types.js';

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

/** Default bound of a provider transport's waiting requests (`maxQueued`). */
export const MAX_QUEUED_DEFAULT = 10_000;

/** The `maxQueued` setting of a provider transport: requests waiting to be sent, at most. */
export const maxQueuedSpec: Spec = { type: 'integer', min: 1, max: 1_000_000, default: MAX_QUEUED_DEFAULT };

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

/**
 * How long past its due time a delivery waiting for a retry stays leased to the node that holds
 * it: time for the attempt itself (queueing, requestTimeoutMs) with a wide margin. After it, and
 * at once after a graceful stop, another node may claim it.
 */
export const RETRY_LEASE_MS = 60_000;

/** A provider's answer to one attempt, as a transport judges it. */
export type Verdict =
  | { kind: 'sent'; id?: string }
  /** Permanent: do not retry. `prune`: the target is gone for good; it is retired. */
  | { kind: 'rejected'; reason: string; prune?: boolean }
  /**
   * Transient: retry, no sooner than `retryAfterMs` when given. With `freshRetry`, the attempt
   * renewed what failed (APNs ExpiredProviderToken: node-apn made a new JWT): retry at once, once,
   * not counted against retry.limit; if it fails the same way again, `freshRetry` explains why.
   */
  | { kind: 'retry'; reason: string; retryAfterMs?: number; freshRetry?: string }
  /** Failed, and retrying cannot help now (the client is shut down, the queue is full). */
  | { kind: 'failed'; reason: string };

/** How a delivery ended. */
export interface RetryOutcome {
  status: 'sent' | 'rejected' | 'failed';
  reason?: string;
  id?: string;
  /**
   * The transport stopped (notify stops, or a reload replaced it) first: the delivery did not end
   * here. When a retry queue is given, it holds the delivery, and the next process or the
   * successor transport sends it; `reason` says so.
   */
  stopped?: true;
}

/** What a delivery is, as the retry queue keeps it. */
export type RetrySubject = { transport: string; uid: Uid; target: string; msg: Message };

/** Where a ticket tells the delivery's news (the delivery journal's `target`). */
export type TicketNews = (id: string, o: TargetOutcome) => void;

/**
 * A delivery's place in the retry queue: held while it waits for a retry, released when it ends.
 * Without a queue (undefined) it does nothing. It also tells the delivery journal (`news`) when
 * the delivery waits for a retry and how it ended.
 */
export class RetryTicket {
  #key: string | undefined;
  readonly #news: TicketNews | undefined;

  constructor(
    private readonly queue: RetryQueue | undefined,
    private readonly owner: string,
    private readonly subject: RetrySubject,
    key?: string,
    private readonly leaseMs = RETRY_LEASE_MS,
    news?: TicketNews,
  ) {
    this.#key = key;
    this.#news = news;
  }

  /** The id of the message being delivered. */
  get messageId(): string {
    return this.subject.msg.id;
  }

  /** Tells the journal where the delivery stands: never throws. */
  note(status: TargetOutcome['status'] | 'rejected-retired', attempts: number, reason?: string, nextAttemptAt?: number): void {
    if (this.#news === undefined) return;
    const { uid, transport, target } = this.subject;
    const o: TargetOutcome = { uid, transport, target, status: status === 'rejected-retired' ? 'rejected' : status, attempts };
    if (status === 'rejected-retired') o.retires = true;
    if (reason !== undefined) o.reason = reason;
    if (nextAttemptAt !== undefined) o.nextAttemptAt = nextAttemptAt;
    try {
      this.#news(this.subject.msg.id, o);
    } catch {
      // The journal logs its own failures; a delivery goes on regardless.
    }
  }

  /** Records (or updates) that the next attempt, after `attempts` so far, is due at `dueAt`. Throws NOTIFY_ERR_STORE when the queue is full. */
  async waiting(attempts: number, dueAt: number, reason: string): Promise<void> {
    if (!this.queue) return;
    if (this.#key === undefined) this.#key = await this.queue.hold(Object.assign({}, this.subject, { attempts, dueAt, reason }), this.owner, this.leaseMs);
    else await this.queue.update(this.#key, attempts, dueAt, reason, this.leaseMs);
  }

  /** Whether a queue keeps the delivery across a stop (false: in memory only). */
  get keeps(): boolean {
    return this.queue !== undefined;
  }

  /** Whether the queue holds the delivery now. */
  get held(): boolean {
    return this.#key !== undefined;
  }

  /** The delivery has ended: nothing left to retry. */
  async done(): Promise<void> {
    const key = this.#key;
    this.#key = undefined;
    if (this.queue && key !== undefined) await this.queue.release(key);
  }
}

/** One delivery through `runWithRetries`. */
export interface RetryRun {
  /** The transport's name and the target, for logs and retirement. */
  transport: string;
  target: string;
  policy: RetryPolicy;
  ticket: RetryTicket;
  /** Attempts made before (a delivery resumed after a restart). @default 0 */
  attempts?: number;
  /** Ends the waits between attempts (notify stops); the ticket then stays held. */
  stop: AbortSignal;
  log: Logger;
  /** Who asks for a Retry-After, in reasons: `APNs`, `the provider`. */
  provider: string;
  /** Takes a target out of service for good: called for a verdict with `prune` (with the message's id). */
  retire: ((target: string, reason: string, messageId?: string) => void) | undefined;
  /** Told each transient failure that will be retried, for a report that is due before the delivery ends. */
  onRetry?: (reason: string) => void;
  /** Told each retry after a backoff (for /metrics). */
  retried?: () => void;
  /**
   * The first attempt, when the caller made it already (a fast path that ends a first-attempt
   * success without the loop): its verdict, undefined when the transport stopped before an answer.
   */
  made?: { verdict: Verdict | undefined };
}

/**
 * The one retry loop of the provider transports: runs `attempt` (undefined: the transport
 * stopped before an answer) until its verdict is final, retrying transient failures with exponential
 * backoff and jitter (no sooner than Retry-After) at most retry.limit times; a Retry-After longer
 * than retry.maxDelayMs gives up. While it waits, the delivery is held in the retry queue (a
 * stop leaves it there for the next start); when it ends, it is released. A delivery the stop
 * catches before an answer (queued, or cut off on the wire) is held too, due at once: the next
 * process, or the transport that replaces this one, sends it. A rejection with
 * `prune` retires the target, here and nowhere else.
 */
export async function runWithRetries(attempt: () => Promise<Verdict | undefined>, run: RetryRun): Promise<RetryOutcome> {
  const { policy, ticket, log } = run;
  let attempts = run.attempts ?? 0;
  let freshUsed = false;
  const end = async (out: RetryOutcome): Promise<RetryOutcome> => {
    // Most deliveries end at the first attempt, never held: nothing to release, no await.
    if (ticket.held) {
      try {
        await ticket.done();
      } catch (err) {
        log.error('releasing a retry failed', { transport: run.transport, target: shortToken(run.target), error: errorMessage(err) });
      }
    }
    return out;
  };
  const failed = (reason: string) => {
    ticket.note('gave-up', attempts, reason);
    return end({ status: 'failed', reason });
  };
  // The transport stopped before the delivery ended: it is handed over through the retry queue,
  // due now when it was not waiting for a retry (queued, or cut off on the wire: the provider
  // may have it, so this is at least once), at its retry time when it was.
  const stopped = async (last?: string): Promise<RetryOutcome> => {
    const was = last ?? 'not sent';
    if (!ticket.keeps) {
      ticket.note('gave-up', attempts, `${was}: notify is shutting down`);
      return { status: 'failed', reason: `${was}: notify is shutting down`, stopped: true };
    }
    if (!ticket.held) {
      try {
        await ticket.waiting(attempts, Date.now(), `${was}: handed over at a stop or reload`);
      } catch (err) {
        log.warn('delivery not handed over', { transport: run.transport, target: shortToken(run.target), error: errorMessage(err) });
        ticket.note('gave-up', attempts, `${was}: notify is shutting down; not kept for a retry: ${errorMessage(err)}`);
        return { status: 'failed', reason: `${was}: notify is shutting down; not kept for a retry: ${errorMessage(err)}`, stopped: true };
      }
    }
    ticket.note('retrying', attempts, `${was}; handed to the next transport or process (retry queue)`, Date.now());
    return { status: 'failed', reason: `${was}; handed to the next transport or process (retry queue): it will be sent`, stopped: true };
  };
  let made = run.made;
  for (;;) {
    let v: Verdict | undefined;
    if (made !== undefined) {
      v = made.verdict;
      made = undefined;
    } else {
      v = await attempt();
    }
    if (v === undefined) return stopped();
    attempts++;
    if (v.kind === 'sent') {
      ticket.note('sent', attempts);
      return end({ status: 'sent', ...(v.id !== undefined ? { id: v.id } : {}) });
    }
    if (v.kind === 'failed') return failed(v.reason);
    if (v.kind === 'rejected') {
      ticket.note(v.prune ? 'rejected-retired' : 'rejected', attempts, v.reason);
      if (v.prune) retireOnce(run, v.reason);
      return end({ status: 'rejected', reason: v.reason });
    }
    run.onRetry?.(v.reason);
    if (v.freshRetry !== undefined) {
      if (freshUsed) return failed(`${v.reason} (${v.freshRetry})`);
      freshUsed = true;
      attempts--;
      continue;
    }
    if (attempts > policy.limit) return failed(`${v.reason} (gave up after ${attempts} attempts)`);
    if (v.retryAfterMs !== undefined && v.retryAfterMs > policy.maxDelayMs) {
      return failed(`${v.reason}; ${run.provider} asked to retry after ${Math.ceil(v.retryAfterMs / 1000)} s, longer than retry.maxDelayMs`);
    }
    const delay = backoffMs(attempts, policy, v.retryAfterMs);
    ticket.note('retrying', attempts, v.reason, Date.now() + delay);
    try {
      await ticket.waiting(attempts, Date.now() + delay, v.reason);
    } catch (err) {
      log.warn('retry not kept', { transport: run.transport, target: shortToken(run.target), reason: v.reason, error: errorMessage(err) });
      return failed(`${v.reason}; not retried: ${errorMessage(err)}`);
    }
    run.retried?.();
    log.debug('provider retry', { transport: run.transport, target: shortToken(run.target), reason: v.reason, attempt: attempts + 1, delayMs: delay });
    if (!(await sleep(delay, run.stop))) return stopped(v.reason);
  }
}

function retireOnce(run: RetryRun, reason: string): void {
  try {
    run.retire?.(run.target, reason, run.ticket.messageId);
  } catch (err) {
    run.log.error('recording a retired target failed', { transport: run.transport, target: shortToken(run.target), error: errorMessage(err) });
  }
}

/**
 * How a report's entry begins for a delivery the deadline caught under way (it goes on: queued,
 * on the wire, or waiting for a retry); the journal shows it `pending` until the retry loop says more.
 */
export const STILL_TRYING = 'not delivered by the deadline; still trying';

/** A count of things under way, and a promise for when none is. */
export class InFlight {
  #count = 0;
  readonly #idle = new Set<() => void>();

  get count(): number {
    return this.#count;
  }

  begin(): void {
    this.#count++;
  }

  end(): void {
    if (--this.#count > 0) return;
    for (const wake of [...this.#idle]) wake();
  }

  /** Resolves true as soon as none is under way, or false after `graceMs` if some still are. */
  idle(graceMs: number): Promise<boolean> {
    if (this.#count === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const settle = (ok: boolean) => {
        clearTimeout(timer);
        this.#idle.delete(wake);
        resolve(ok);
      };
      const wake = () => settle(true);
      const timer = setTimeout(() => settle(false), graceMs);
      this.#idle.add(wake);
    });
  }
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
 * Sends to each of a uid's targets through a pool of at most `concurrency` workers that take the
 * targets in order, so memory stays proportional to the requests in flight, not to the uid's
 * number of devices. The pool carries every target to its end, also after the report is due
 * (only `running()` turning false stops it early); at the deadline (`signal`) the report is made
 * with what has ended, and the others are `failed` with their latest reason.
 */
export async function sendToEach(
  transport: string,
  targets: readonly string[],
  o: {
    concurrency: number;
    signal: AbortSignal;
    running: () => boolean;
    /** Sends to one target; `note` records the reason of an attempt that will be retried. */
    send: (target: string, note: (reason: string) => void) => Promise<Omit<DeliveryResult, 'transport' | 'target'>>;
  },
): Promise<DeliveryResult[]> {
  const results: (Omit<DeliveryResult, 'transport' | 'target'> | undefined)[] = new Array(targets.length);
  const lastReason: (string | undefined)[] = new Array(targets.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < targets.length && o.running()) {
      const i = next++;
      results[i] = await o.send(targets[i] as string, (r) => (lastReason[i] = r));
    }
  };
  const workers = Math.min(targets.length, o.concurrency);
  await settleBy([Promise.all(Array.from({ length: workers }, worker))], o.signal);
  return targets.map((target, i) => {
    const r = results[i];
    if (r !== undefined) return Object.assign({}, r, { transport, target });
    const last = lastReason[i];
    return { transport, target, status: 'failed', reason: `${STILL_TRYING}${last ? ` (last: ${last})` : ''}` };
  });
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
