import { Agent as HttpAgent, type IncomingMessage, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { createSecureContext, rootCertificates } from 'node:tls';
import { Readable } from 'node:stream';
import { errorMessage } from '../errors.js';
import type { Logger } from '../obs/log.js';
import type { TransportContext } from './kinds.js';
import { InFlight, MAX_QUEUED_DEFAULT, type RetryPolicy, type RetryTicket, type Verdict, parseRetryAfter, runWithRetries, sleep } from './retry.js';

export type { Verdict };

/** One HTTP request to a push provider. */
export interface ProviderRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  body?: string | Uint8Array;
}

/**
 * A request, or how to make one for each attempt (a provider whose credentials expire builds
 * the request anew, e.g. with a fresh bearer token). The builder may answer with a verdict
 * instead (the credentials cannot be had: a configuration error, or a transient failure), or
 * undefined when notify stopped first.
 */
export type RequestSource = ProviderRequest | (() => Promise<ProviderRequest | Verdict | undefined>);

/** What came back (the body read up to a limit). */
export interface ProviderResponse {
  status: number;
  headers: Headers;
  body: string;
}

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
  /** Requests waiting for one of the maxConcurrentRequests at most; beyond, a delivery fails at once. */
  maxQueued: number;
  retry: RetryPolicy;
  /** Credentials and other values that must never appear in reports, errors or logs. */
  secrets: readonly string[];
  log: Logger;
  /** Takes a target out of service for good (a verdict with `prune`). */
  retire?: (target: string, reason: string, messageId?: string) => void;
  /**
   * Reads rate-limit headers of any response: milliseconds the provider wants no requests for
   * (the whole transport pauses), or undefined.
   */
  pauseAfter?: (res: ProviderResponse) => number | undefined;
  /** Told of each retry (for /metrics). */
  onRetry?: () => void;
  /**
   * What a rate-limit pause (a 429 with Retry-After, or `pauseAfter`) holds back: every request
   * of the transport (one provider behind it), or only those to the same origin (a transport that
   * talks to many services, as Web Push does: one push service asking to slow down must not stop
   * the others). @default 'transport'
   */
  pauseScope?: 'transport' | 'origin';
  /**
   * How long stop() lets requests on the wire finish before it cuts them off (they are then
   * handed over through the retry queue, like those still queued). @default 5000 (shutdown.graceMs)
   */
  stopGraceMs?: number;
  /**
   * PEM certificates to trust besides the system's (a private CA, a test server). Requests then
   * go through node:https with keep-alive agents that share one TLS context (global fetch takes
   * no CA per request; an agent given `ca` itself would build a context per connection).
   */
  ca?: string;
}

/** The settings every provider transport has (`transports.NAME.*`). */
export interface ProviderSettings {
  requestTimeoutMs: number;
  maxConcurrentRequests: number;
  maxQueued?: number | undefined;
  retry: RetryPolicy;
}

/**
 * The ProviderClient of a configured transport: its settings, and from the transport context
 * its name, retire, log, retry counter and shutdown.graceMs; `more` adds the transport's own
 * (secrets, a CA, a rate-limit reader).
 */
export function providerClientFor(
  ctx: Pick<TransportContext, 'name' | 'retire' | 'log' | 'telemetry' | 'stopGraceMs'>,
  settings: ProviderSettings,
  more: Pick<ProviderClientOptions, 'secrets'> & Partial<Pick<ProviderClientOptions, 'ca' | 'pauseAfter' | 'pauseScope'>>,
): ProviderClient {
  return new ProviderClient({
    name: ctx.name,
    requestTimeoutMs: settings.requestTimeoutMs,
    maxConcurrentRequests: settings.maxConcurrentRequests,
    maxQueued: settings.maxQueued ?? MAX_QUEUED_DEFAULT,
    retry: settings.retry,
    retire: ctx.retire,
    log: ctx.log,
    onRetry: () => ctx.telemetry.retried(ctx.name),
    ...(ctx.stopGraceMs !== undefined ? { stopGraceMs: ctx.stopGraceMs } : {}),
    ...more,
  });
}

/** Default of `stopGraceMs` (shutdown.graceMs). */
export const STOP_GRACE_DEFAULT_MS = 5000;

const MAX_BODY_BYTES = 64 * 1024;
/** Origins with a rate-limit pause remembered at once, at most. */
const MAX_PAUSES = 1024;
/** Run-time secrets (access tokens) kept for scrubbing; older ones have long expired. */
const MAX_RUNTIME_SECRETS = 16;
/** How long stop() waits for deliveries to wind up (hand themselves over) once their requests are aborted. */
const STOP_SETTLE_MS = 1000;
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

/** How one delivery goes through `send`: its target, its retry-queue ticket and where it stands. */
export interface Delivery {
  target: string;
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
 * A delivery is carried to its end whatever the caller's deadline (`runWithRetries`): waiting
 * for a retry, it is held in the retry queue, so a stop (or a crash) leaves it for the next start.
 * At most `maxQueued` requests wait for a free slot; one more fails at once.
 */
export class ProviderClient {
  readonly #o: ProviderClientOptions;
  readonly #secrets: string[];
  #active = 0;
  readonly #waiting: (() => void)[] = [];
  /** Rate-limit pauses: until when, by scope ('' for the whole transport, else an origin). */
  readonly #pausedUntil = new Map<string, number>();
  /** Aborts waits (backoff, rate-limit pauses, queueing) at stop. */
  readonly #stopWaits = new AbortController();
  /** Aborts requests in flight, after a grace period at stop. */
  readonly #stopRequests = new AbortController();
  /** Deliveries under way (sending or waiting to retry). */
  readonly #inflight = new InFlight();
  /** Requests on the wire. */
  readonly #requests = new InFlight();

  /** Secrets learnt at run time (access tokens), the latest MAX_RUNTIME_SECRETS. */
  readonly #runtimeSecrets: string[] = [];
  /** With `ca`: keep-alive agents trusting it; requests go through node:http(s) instead of fetch. */
  readonly #agents: { http: HttpAgent; https: HttpsAgent } | undefined;

  constructor(opts: ProviderClientOptions) {
    this.#o = opts;
    // Longest first, so a secret that contains another is replaced whole.
    this.#secrets = [...new Set(opts.secrets.filter((s) => s.length >= 4))].sort((a, b) => b.length - a.length);
    if (opts.ca !== undefined) {
      const sockets = { keepAlive: true, maxSockets: opts.maxConcurrentRequests + 1 };
      const secureContext = createSecureContext({ ca: [...rootCertificates, opts.ca] });
      this.#agents = { http: new HttpAgent(sockets), https: new HttpsAgent({ secureContext, ...sockets }) };
    }
  }

  /** Replaces every configured secret (and every one added since) in `text` with [redacted]. */
  scrub(text: string): string {
    let out = text;
    for (const s of this.#secrets) out = out.split(s).join('[redacted]');
    for (const s of this.#runtimeSecrets) out = out.split(s).join('[redacted]');
    return out;
  }

  /** Adds a secret learnt at run time (an access token) to what `scrub` removes; the oldest are forgotten. */
  addSecret(secret: string): void {
    if (secret.length < 4 || this.#runtimeSecrets.includes(secret)) return;
    this.#runtimeSecrets.push(secret);
    if (this.#runtimeSecrets.length > MAX_RUNTIME_SECRETS) this.#runtimeSecrets.shift();
  }

  /**
   * One request outside the delivery queue and the retry loop (an OAuth token request), bounded
   * by requestTimeoutMs and cut off at stop. The body comes back scrubbed; a network failure
   * or timeout rejects with a short reason.
   */
  async request(req: ProviderRequest): Promise<ProviderResponse> {
    const timeout = AbortSignal.timeout(this.#o.requestTimeoutMs);
    const signal = AbortSignal.any([this.#stopRequests.signal, timeout]);
    this.#requests.begin();
    try {
      try {
        const res = await this.#fetch(req, signal);
        const body = this.scrub(await readLimited(res));
        return { status: res.status, headers: res.headers, body };
      } catch (err) {
        if (timeout.aborted) throw new Error(`no complete answer within ${this.#o.requestTimeoutMs} ms (requestTimeoutMs)`);
        throw new Error(`request failed: ${failureOf(err)}`);
      }
    } finally {
      this.#requests.end();
    }
  }

  /** fetch, or with `ca`, node:http(s) through the client's keep-alive agents. */
  #fetch(req: ProviderRequest, signal: AbortSignal): Promise<Response> {
    if (this.#agents === undefined) {
      return fetch(req.url, {
        method: req.method,
        headers: req.headers,
        ...(req.body !== undefined ? { body: req.body } : {}),
        signal,
        redirect: 'manual',
      });
    }
    return agentFetch(req, this.#agents, signal);
  }

  /** Deliveries under way (sending or waiting to retry). */
  get inflight(): number {
    return this.#inflight.count;
  }

  /** Milliseconds until the rate-limit pause ends (0 when not paused). */
  get pausedForMs(): number {
    let until = 0;
    for (const u of this.#pausedUntil.values()) until = Math.max(until, u);
    return Math.max(0, until - Date.now());
  }

  /** The pause a request waits for: the transport's, or its origin's. */
  #scopeOf(req: ProviderRequest): string {
    if (this.#o.pauseScope !== 'origin') return '';
    try {
      return new URL(req.url).origin;
    } catch {
      return '';
    }
  }

  #pause(scope: string, ms: number): void {
    const now = Date.now();
    if (this.#pausedUntil.size >= MAX_PAUSES) {
      // Bounded: pauses that are over go first; if all still run, the oldest.
      for (const [k, until] of this.#pausedUntil) if (until <= now) this.#pausedUntil.delete(k);
      if (this.#pausedUntil.size >= MAX_PAUSES) this.#pausedUntil.delete(this.#pausedUntil.keys().next().value as string);
    }
    this.#pausedUntil.set(scope, Math.max(this.#pausedUntil.get(scope) ?? 0, now + ms));
  }

  /** Sends `req` until the verdict is final or retries run out (or notify stops). */
  async send(req: RequestSource, judge: (res: ProviderResponse) => Verdict, d: Delivery): Promise<SendOutcome> {
    this.#inflight.begin();
    try {
      const out = await runWithRetries(
        async () => {
          const v = await this.#attempt(req, judge);
          return v === undefined || v.kind === 'sent' ? v : Object.assign({}, v, { reason: this.scrub(v.reason) });
        },
        {
          transport: this.#o.name,
          target: d.target,
          policy: this.#o.retry,
          ticket: d.ticket,
          ...(d.attempts !== undefined ? { attempts: d.attempts } : {}),
          stop: this.#stopWaits.signal,
          log: this.#o.log,
          provider: 'the provider',
          retire: this.#o.retire,
          ...(d.onRetry ? { onRetry: d.onRetry } : {}),
          ...(this.#o.onRetry ? { retried: this.#o.onRetry } : {}),
        },
      );
      return { status: out.status, ...(out.reason !== undefined ? { reason: out.reason } : {}), ...(out.id !== undefined ? { id: out.id } : {}) };
    } finally {
      this.#inflight.end();
    }
  }

  /** One attempt; undefined when notify stopped before an answer. */
  async #attempt(source: RequestSource, judge: (res: ProviderResponse) => Verdict): Promise<Verdict | undefined> {
    const stop = this.#stopWaits.signal;
    const transportPause = (this.#pausedUntil.get('') ?? 0) - Date.now();
    if (transportPause > 0 && !(await sleep(transportPause, stop))) return undefined;
    let req: ProviderRequest;
    if (typeof source === 'function') {
      let built: ProviderRequest | Verdict | undefined;
      try {
        built = await source();
      } catch (err) {
        built = { kind: 'retry', reason: errorMessage(err) };
      }
      if (built === undefined || stop.aborted) return undefined;
      if ('kind' in built) return built;
      req = built;
    } else {
      req = source;
    }
    const scope = this.#scopeOf(req);
    if (scope !== '') {
      const paused = (this.#pausedUntil.get(scope) ?? 0) - Date.now();
      if (paused > 0 && !(await sleep(paused, stop))) return undefined;
    }
    const slot = await this.#acquire(stop);
    if (slot === 'full') {
      return { kind: 'failed', reason: `queue full (${this.#waiting.length} waiting; transports.${this.#o.name}.maxQueued)` };
    }
    if (!slot) return undefined;
    this.#requests.begin();
    const hardStop = this.#stopRequests.signal;
    try {
      const timeout = AbortSignal.timeout(this.#o.requestTimeoutMs);
      let res: Response;
      try {
        res = await this.#fetch(req, AbortSignal.any([hardStop, timeout]));
      } catch (err) {
        if (hardStop.aborted) return undefined;
        if (timeout.aborted) return { kind: 'retry', reason: `no answer within ${this.#o.requestTimeoutMs} ms (requestTimeoutMs)` };
        return { kind: 'retry', reason: `request failed: ${failureOf(err)}` };
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
        this.#pause(scope, pause);
        this.#o.log.info('provider rate limit: pausing', { transport: this.#o.name, pauseMs: pause, ...(scope ? { origin: scope } : {}) });
      }
      const verdict = judge(response);
      if (verdict.kind === 'retry' && res.status === 429 && verdict.retryAfterMs !== undefined) {
        this.#pause(scope, verdict.retryAfterMs);
      }
      return verdict;
    } finally {
      this.#requests.end();
      this.#release();
    }
  }

  /** A request slot: true when granted, false when notify stopped first, 'full' when too many wait. */
  #acquire(stop: AbortSignal): Promise<boolean | 'full'> {
    if (stop.aborted) return Promise.resolve(false);
    if (this.#active < this.#o.maxConcurrentRequests) {
      this.#active++;
      return Promise.resolve(true);
    }
    if (this.#waiting.length >= this.#o.maxQueued) return Promise.resolve('full');
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
   * Stops: waits are cut short at once, so deliveries queued for a slot (or paused, or waiting
   * for a retry) are handed over through the retry queue without being sent; requests on the
   * wire get `stopGraceMs` to finish, then are aborted and handed over likewise (the provider may
   * have them: at least once); then it waits (at most a second) for the deliveries to wind up.
   */
  async stop(): Promise<void> {
    this.#stopWaits.abort();
    const grace = this.#o.stopGraceMs ?? STOP_GRACE_DEFAULT_MS;
    if (!(await this.#requests.idle(grace))) {
      this.#o.log.warn('provider requests cut off at stop; handed over', { transport: this.#o.name, requests: this.#requests.count, graceMs: grace });
    }
    this.#stopRequests.abort();
    await this.#inflight.idle(STOP_SETTLE_MS);
    this.#agents?.http.destroy();
    this.#agents?.https.destroy();
  }
}

/** A failed request's reason: the system error code where there is one (ECONNREFUSED), else the message. */
function failureOf(err: unknown): string {
  const e = err as { code?: unknown; cause?: { code?: string; message?: string } };
  if (e.cause !== undefined) return e.cause.code ?? e.cause.message ?? errorMessage(err);
  return typeof e.code === 'string' ? e.code : errorMessage(err);
}

/** Statuses whose Response must have no body (the Response constructor refuses one). */
const NULL_BODY = new Set([101, 103, 204, 205, 304]);

/**
 * One request through node:http(s) with the given keep-alive agents, answered as a fetch
 * Response (so reading and judging are the same as with fetch). Redirects are not followed.
 */
function agentFetch(req: ProviderRequest, agents: { http: HttpAgent; https: HttpsAgent }, signal: AbortSignal): Promise<Response> {
  return new Promise((resolve, reject) => {
    const url = new URL(req.url);
    const tls = url.protocol === 'https:';
    const headers: Record<string, string> = { ...req.headers };
    if (req.body !== undefined) headers['content-length'] = String(Buffer.byteLength(req.body));
    const r = (tls ? httpsRequest : httpRequest)(url, { method: req.method, headers, agent: tls ? agents.https : agents.http, signal }, (res: IncomingMessage) => {
      const h = new Headers();
      for (const [k, v] of Object.entries(res.headers)) {
        if (Array.isArray(v)) for (const one of v) h.append(k, one);
        else if (v !== undefined) h.set(k, v);
      }
      const status = res.statusCode ?? 0;
      if (NULL_BODY.has(status) || status < 200 || status > 599) {
        res.resume();
        resolve(new Response(null, { status: status >= 200 && status <= 599 ? status : 502, headers: h }));
        return;
      }
      resolve(new Response(Readable.toWeb(res) as ReadableStream<Uint8Array>, { status, headers: h }));
    });
    r.on('error', reject);
    r.end(req.body);
  });
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
