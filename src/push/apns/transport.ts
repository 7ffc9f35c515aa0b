import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { ClientHttp2Session } from 'node:http2';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import type * as Apn from '@parse/node-apn';
import { type Spec, type Validation, validate } from '../../config/schema.js';
import { NotifyError, errorMessage } from '../../errors.js';
import type { Logger } from '../../obs/log.js';
import type { Telemetry } from '../../obs/metrics.js';
import { type TransportTargets, countNow } from '../targets.js';
import type { DeliveryResult, Message, Uid } from '../../types.js';
import { type ApnResult, classifyApnsResult, toApnsNotification } from './payload.js';
import type { TransportContext, TransportType } from '../kinds.js';
import type { RetryQueue } from '../../store/retry-queue.js';
import {
  InFlight,
  MAX_QUEUED_DEFAULT,
  type RetryPolicy,
  type Verdict,
  maxQueuedSpec,
  parseRetryAfter,
  resumeWhenDue,
  retrySpec,
  runWithRetries,
  sendToEach,
} from '../retry.js';
import type { PendingRetry, Transport, TransportHealth } from '../transport.js';
import { ApnSession, type BuiltNotification, buildNotification } from './node-apn-session.js';
import { StreamWindow } from './stream-window.js';
import { STOP_GRACE_DEFAULT_MS } from '../provider-client.js';

// node-apn is CommonJS and pulls in node-forge and jsonwebtoken: load it only when an APNs
// transport is built, so CLI commands that never use it start fast.
const require = createRequire(import.meta.url);
const loadApn = (): typeof Apn => require('@parse/node-apn') as typeof Apn;

/** Settings of a `type: apns` transport, as validated (paths absolute). */
export interface ApnsSettings {
  /** The app's bundle id: `apns-topic`. */
  topic: string;
  /** Apple's production environment; false = sandbox. @default false */
  production: boolean;
  /** Token auth: the .p8 key file, its 10-character Key ID, and the Team ID. */
  token?: { key: string; keyId: string; teamId: string };
  /** Certificate auth: PEM certificate and key files, or a .p12 file and its passphrase. */
  cert?: string;
  key?: string;
  pfx?: string;
  passphrase?: string;
  /** Another APNs endpoint (a private relay, a test server): host name, port, and a CA file to trust. */
  address?: string;
  port?: number;
  ca?: string;
  /** Requests in flight on the connection at most (also bounded by the server's SETTINGS; fewer while answers queue, see stream-window.ts). @default 500 */
  maxConcurrentStreams: number;
  /** How long one request may take. @default 3000 */
  requestTimeoutMs: number;
  /** Requests waiting for a stream at most; one more fails at once ("queue full"). @default 10000 */
  maxQueued: number;
  retry: RetryPolicy;
}

const ID10 = /^[A-Z0-9]{10}$/i;

const tokenSpec: Spec = {
  type: 'section',
  keys: {
    key: { type: 'string', required: true },
    keyId: { type: 'string', required: true, check: (v) => (ID10.test(v) ? undefined : 'must be the 10-character Key ID from Apple') },
    teamId: { type: 'string', required: true, check: (v) => (ID10.test(v) ? undefined : 'must be the 10-character Team ID from Apple') },
  },
};

const settingsSection: Spec = {
  type: 'section',
  keys: {
    topic: { type: 'string', required: true },
    production: { type: 'boolean', default: false },
    token: { type: 'custom', validate: (v, path, ctx) => (v === undefined || v === null ? undefined : validate(tokenSpec, v, path, ctx)) },
    cert: { type: 'string' },
    key: { type: 'string' },
    pfx: { type: 'string' },
    passphrase: { type: 'string' },
    address: { type: 'string', check: (v) => (/^[A-Za-z0-9.-]+$/.test(v) ? undefined : 'must be a host name only (no scheme or port; the port goes in "port")') },
    port: { type: 'integer', min: 1, max: 65535 },
    ca: { type: 'string' },
    maxConcurrentStreams: { type: 'integer', min: 1, max: 10_000, default: 500 },
    requestTimeoutMs: { type: 'integer', min: 1, default: 3000 },
    maxQueued: maxQueuedSpec,
    retry: retrySpec,
  },
};

function readable(ctx: Validation, path: string[], file: string): Buffer | undefined {
  const abs = resolve(ctx.baseDir, file);
  try {
    return readFileSync(abs);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a folder' : errorMessage(err);
    ctx.fail(path, `${path.join('.')}: cannot read ${abs}: ${why}`);
    return undefined;
  }
}

/** Validates the settings of one APNs transport: keys, auth (exactly one kind), readable files of the right kind. */
function validateSettings(value: unknown, path: string[], ctx: Validation): ApnsSettings {
  const s = validate(settingsSection, value, path, ctx) as ApnsSettings;
  const name = path.join('.');
  const certAuth = s.cert !== undefined || s.key !== undefined || s.pfx !== undefined;
  if (s.token && certAuth) {
    ctx.fail(path, `${name}: give token auth (token: {key, keyId, teamId}) or certificate auth (cert + key, or pfx), not both`);
  } else if (!s.token && !certAuth) {
    ctx.fail(path, `${name}: needs token auth (token: {key: AuthKey.p8, keyId, teamId}) or certificate auth (cert + key, or pfx + passphrase)`);
  }
  const at = (k: string) => [...path, k];
  const abs = (f: string) => resolve(ctx.baseDir, f);
  if (s.token?.key !== undefined) {
    const pem = readable(ctx, [...path, 'token', 'key'], s.token.key);
    if (pem) {
      try {
        const k = createPrivateKey(pem);
        const curve = k.asymmetricKeyDetails?.namedCurve;
        if (k.asymmetricKeyType !== 'ec' || curve !== 'prime256v1') {
          ctx.fail([...path, 'token', 'key'], `${name}.token.key: ${abs(s.token.key)} is not an EC P-256 private key (it is ${k.asymmetricKeyType ?? 'unknown'}${curve ? ` ${curve}` : ''}); use the .p8 file from Apple`);
        }
      } catch {
        ctx.fail([...path, 'token', 'key'], `${name}.token.key: ${abs(s.token.key)} is not a PEM private key; use the .p8 file from Apple`);
      }
      s.token = Object.assign({}, s.token, { key: abs(s.token.key) });
    }
  }
  if (!s.token && certAuth) {
    if (s.pfx !== undefined) {
      if (s.cert !== undefined || s.key !== undefined) ctx.fail(path, `${name}: give cert + key, or pfx, not both`);
      if (readable(ctx, at('pfx'), s.pfx)) s.pfx = abs(s.pfx);
    } else if (s.cert === undefined || s.key === undefined) {
      ctx.fail(path, `${name}: certificate auth needs both cert and key (PEM files), or pfx`);
    } else {
      const cert = readable(ctx, at('cert'), s.cert);
      const key = readable(ctx, at('key'), s.key);
      if (cert) {
        try {
          new X509Certificate(cert);
        } catch {
          ctx.fail(at('cert'), `${name}.cert: ${abs(s.cert)} is not a PEM certificate`);
        }
        s.cert = abs(s.cert);
      }
      if (key) {
        try {
          createPrivateKey({ key, ...(s.passphrase ? { passphrase: s.passphrase } : {}) });
        } catch {
          ctx.fail(at('key'), `${name}.key: ${abs(s.key)} is not a PEM private key (or the passphrase is wrong)`);
        }
        s.key = abs(s.key);
      }
    }
  }
  if (s.ca !== undefined && readable(ctx, at('ca'), s.ca)) s.ca = abs(s.ca);
  return s;
}

/** APNs device tokens: hex, 64 characters today (Apple says not to assume a fixed length). */
export function checkApnsToken(token: string): string | undefined {
  if (/^[0-9a-fA-F]+$/.test(token) && token.length >= 64 && token.length <= 200 && token.length % 2 === 0) return undefined;
  const shown = token.length > 24 ? `${token.slice(0, 24)}…` : token;
  return `an APNs device token is hex, 64 characters or more (an even number); got ${JSON.stringify(shown)} (${token.length} characters)`;
}

export const apnsType: TransportType = {
  settings: { type: 'custom', validate: validateSettings },
  checkTarget: checkApnsToken,
  normalizeTarget: (t) => t.toLowerCase(),
  create: (settings, ctx) => new ApnsTransport(settings as unknown as ApnsSettings, ctx),
};

interface Job {
  token: string;
  note: BuiltNotification;
  signal: AbortSignal;
  resolve(r: ApnResult | undefined): void;
}

/** How long stop() gives node-apn's shutdown (its callback never fires after some TLS errors, reference B.4). */
const SHUTDOWN_GRACE_MS = 1000;

/**
 * iOS delivery through `@parse/node-apn` (stage 1 of a push: our provider to APNs).
 *
 * The library is wrapped so its known pitfalls never reach users
 * (see the README's APNs section and the reference's node-apn notes):
 * - Concurrency: node-apn opens one stream per token at once. Here requests go through a queue
 *   (at most `maxQueued` waiting): one at a time on a fresh connection (APNs allows a single
 *   stream until a request with a valid JWT succeeds), then as many as the round trip needs
 *   (StreamWindow: from 16, doubling while answers come back without queueing, shrinking when
 *   they queue), never more than min(maxConcurrentStreams, the server's SETTINGS).
 * - Retries: node-apn's own are turned off (they are immediate and ignore Retry-After, whose
 *   header it reads in the wrong case). The shared retry loop (`runWithRetries`) retries 429,
 *   5xx and connection-level failures (refused streams, GOAWAY) with exponential backoff and
 *   jitter, honouring Retry-After (read from the response headers on the session), a bounded
 *   number of times.
 * - ExpiredProviderToken: node-apn makes a fresh JWT; the request is retried once.
 * - Dead tokens (410 Unregistered, BadDeviceToken, DeviceTokenNotForTopic) are retired.
 * - Shutdown: queued requests are handed over through the retry queue unsent; requests in
 *   flight get shutdown.graceMs, then node-apn is shut down with a time limit (its callback
 *   never fires after some TLS errors).
 */
export class ApnsTransport implements Transport {
  readonly name: string;
  readonly #settings: ApnsSettings;
  readonly #targets: TransportTargets;
  readonly #log: Logger;
  readonly #retire: (target: string, reason: string, messageId?: string) => void;
  readonly #provider: Apn.Provider;
  readonly #session: ApnSession;
  /** Waiting requests; `#head` is the next one (a deque without O(n) shifts). */
  #queue: (Job | undefined)[] = [];
  #head = 0;
  readonly #active = new InFlight();
  /** Whether a request succeeded on the current session. */
  #warm = false;
  /** Requests to keep in flight on the warm session: as many as its round trip needs (stream-window.ts). */
  readonly #window: StreamWindow;
  /** Retry-After of the latest answer per token, read off the session. */
  readonly #retryAfter = new Map<string, number>();
  /** When APNs last answered a request (on any session): silence for longer means a stalled connection. */
  #answeredAt = 0;
  readonly #stopping = new AbortController();
  readonly #retries: RetryQueue | undefined;
  readonly #ticket: TransportContext['ticket'];
  readonly #maxQueued: number;
  readonly #telemetry: Telemetry;
  readonly #stopGraceMs: number;
  #state: 'running' | 'closing' | 'closed' = 'running';
  #sent = 0;
  #failed = 0;

  constructor(settings: ApnsSettings, ctx: TransportContext) {
    this.name = ctx.name;
    this.#settings = settings;
    this.#targets = ctx.targets;
    this.#log = ctx.log;
    this.#retire = ctx.retire;
    this.#retries = ctx.retries;
    this.#ticket = ctx.ticket;
    this.#maxQueued = settings.maxQueued ?? MAX_QUEUED_DEFAULT;
    this.#telemetry = ctx.telemetry;
    this.#stopGraceMs = ctx.stopGraceMs ?? STOP_GRACE_DEFAULT_MS;
    this.#window = new StreamWindow(settings.maxConcurrentStreams);
    const apn = loadApn();
    const s = settings;
    const options: Apn.ProviderOptions = {
      production: s.production,
      connectionRetryLimit: 0,
      requestTimeout: s.requestTimeoutMs,
      ...(s.token ? { token: { key: readFileSync(s.token.key), keyId: s.token.keyId, teamId: s.token.teamId } } : {}),
      ...(s.cert !== undefined ? { cert: readFileSync(s.cert) } : {}),
      ...(s.key !== undefined ? { key: readFileSync(s.key) } : {}),
      ...(s.pfx !== undefined ? { pfx: readFileSync(s.pfx) } : {}),
      ...(s.passphrase !== undefined ? { passphrase: s.passphrase } : {}),
      ...(s.address !== undefined ? { address: s.address } : {}),
      ...(s.port !== undefined ? { port: s.port } : {}),
      ...(s.ca !== undefined ? { ca: [readFileSync(s.ca)] } : {}),
    } as Apn.ProviderOptions;
    try {
      this.#provider = new apn.Provider(options);
    } catch (err) {
      throw new NotifyError('NOTIFY_ERR_CONFIG', `transports.${ctx.name}: APNs credentials rejected: ${errorMessage(err)}`, { cause: err });
    }
    this.#session = new ApnSession(this.#provider, (path, headers) => {
      this.#answeredAt = Date.now();
      const ms = parseRetryAfter(headers['retry-after']);
      if (ms !== undefined) this.#retryAfter.set(path.replace('/3/device/', ''), ms);
    });
  }

  async start(): Promise<void> {}

  canReach(uid: Uid): boolean | Promise<boolean> {
    return this.#targets.has(uid);
  }

  health(): TransportHealth {
    const session = this.#session.current();
    return {
      state: this.#state,
      connection: session ? (this.#warm ? 'ready' : 'warming up') : 'idle',
      inflight: this.#active.count,
      queued: this.#queued,
      sent: this.#sent,
      failed: this.#failed,
      ...countNow(this.#targets),
    };
  }

  async deliver(uid: Uid, msg: Message, signal: AbortSignal): Promise<DeliveryResult[]> {
    if (this.#state !== 'running') throw new NotifyError('NOTIFY_ERR_CLOSED', `${this.name}: APNs transport is stopped`);
    const tokens = await this.#targets.targets(uid);
    const note = this.#notification(msg);
    if (typeof note === 'string') return tokens.map((target) => ({ transport: this.name, target, status: 'rejected', reason: note }));

    return sendToEach(this.name, tokens, {
      concurrency: this.#settings.maxConcurrentStreams,
      signal,
      running: () => this.#state === 'running',
      send: (token, noteReason) => this.#deliverToken(uid, token, msg, note, undefined, noteReason),
    });
  }

  /**
   * The message as a node-apn Notification built for the wire (headers and JSON), or why it
   * cannot be one. Once per message, not per token (reference B.2).
   */
  #notification(msg: Message): BuiltNotification | string {
    const pkg = toApnsNotification(msg);
    if ('error' in pkg) return pkg.error;
    const note = new (loadApn().Notification)();
    note.rawPayload = pkg.payload;
    note.topic = this.#settings.topic;
    note.pushType = pkg.pushType;
    note.priority = pkg.priority;
    return buildNotification(note);
  }

  /** Sends to one token through the shared retry loop, until it is sent or given up, or notify stops. */
  async #deliverToken(
    uid: Uid,
    token: string,
    msg: Message,
    note: BuiltNotification,
    resumed: PendingRetry | undefined,
    noteReason: (r: string) => void,
  ): Promise<DeliveryResult> {
    const stop = this.#stopping.signal;
    let made: { verdict: Verdict | undefined } | undefined;
    if (resumed === undefined) {
      // Most tokens are sent at the first attempt: that case ends here, without the retry loop's
      // ticket and closures; any other verdict goes on in the loop as its first attempt.
      const verdict = await this.#attempt(token, note, stop);
      if (verdict?.kind === 'sent') {
        this.#sent++;
        return verdict.id === undefined
          ? { transport: this.name, target: token, status: 'sent' }
          : { transport: this.name, target: token, status: 'sent', id: verdict.id };
      }
      made = { verdict };
    }
    const out = await runWithRetries(() => this.#attempt(token, note, stop), {
      transport: this.name,
      target: token,
      policy: this.#settings.retry,
      ticket: this.#ticket({ transport: this.name, uid, target: token, msg }, resumed?.key),
      ...(resumed ? { attempts: resumed.attempts } : {}),
      stop,
      log: this.#log,
      provider: 'APNs',
      retire: this.#retire,
      onRetry: noteReason,
      retried: () => this.#telemetry.retried(this.name),
      ...(made ? { made } : {}),
    });
    if (!out.stopped) {
      if (out.status === 'sent') this.#sent++;
      else this.#failed++;
    }
    return {
      transport: this.name,
      target: token,
      status: out.status,
      ...(out.reason !== undefined ? { reason: out.reason } : {}),
      ...(out.id !== undefined ? { id: out.id } : {}),
    };
  }

  /** One request for `token`, judged; undefined when notify stopped before an answer. */
  async #attempt(token: string, note: BuiltNotification, stop: AbortSignal): Promise<Verdict | undefined> {
    if (this.#queued >= this.#maxQueued) {
      return { kind: 'failed', reason: `queue full (${this.#queued} waiting; transports.${this.name}.maxQueued)` };
    }
    const r = await this.#enqueue(token, note, stop);
    if (r === undefined) return undefined;
    let retryAfterMs: number | undefined;
    if (this.#retryAfter.size > 0) {
      retryAfterMs = this.#retryAfter.get(token);
      this.#retryAfter.delete(token);
    }
    const o = classifyApnsResult(r);
    switch (o.kind) {
      case 'sent':
        return o.apnsId ? { kind: 'sent', id: o.apnsId } : { kind: 'sent' };
      case 'rejected':
        return { kind: 'rejected', reason: o.reason, ...(o.prune ? { prune: true } : {}) };
      case 'failed':
        return { kind: 'failed', reason: o.reason };
      case 'retry':
        return {
          kind: 'retry',
          reason: o.reason,
          ...(o.freshToken ? { freshRetry: "again with a fresh provider token: check the key, keyId, teamId and this machine's clock" } : {}),
          ...(retryAfterMs !== undefined && !o.freshToken ? { retryAfterMs } : {}),
        };
    }
  }

  resume(p: PendingRetry): void {
    const note = this.#notification(p.msg);
    if (typeof note === 'string') {
      void this.#retries?.release(p.key);
      return;
    }
    void resumeWhenDue(p, this.name, this.#stopping.signal, this.#log, () => this.#deliverToken(p.uid, p.target, p.msg, note, p, () => {}));
  }

  /** Requests waiting in the queue. */
  get #queued(): number {
    return this.#queue.length - this.#head;
  }

  /** Queues one request; resolves with node-apn's result, or undefined if aborted before it was sent. */
  #enqueue(token: string, note: BuiltNotification, signal: AbortSignal): Promise<ApnResult | undefined> {
    return new Promise((resolve) => {
      this.#queue.push({ token, note, signal, resolve });
      this.#pump();
    });
  }

  /** How many requests may be in flight now. */
  #limit(): number {
    const s = this.#session.current();
    if (!this.#warm || !s || !this.#session.isWatched(s)) return 1;
    const remote = s.remoteSettings?.maxConcurrentStreams;
    return Math.max(1, Math.min(this.#window.size, remote ?? this.#settings.maxConcurrentStreams));
  }

  #pump(): void {
    while (this.#head < this.#queue.length && this.#active.count < this.#limit()) {
      const job = this.#queue[this.#head] as Job;
      this.#queue[this.#head++] = undefined;
      if (job.signal.aborted) {
        job.resolve(undefined);
        continue;
      }
      this.#active.begin();
      void this.#run(job);
    }
    if (this.#head === this.#queue.length) {
      this.#queue = [];
      this.#head = 0;
    }
  }

  /** Sends a job taken off the queue, hands it its result, and lets the next one go. */
  async #run(job: Job): Promise<void> {
    let r: ApnResult;
    try {
      r = await this.#send(job);
    } catch (err) {
      r = { device: job.token, error: err instanceof Error ? err : new Error(String(err)) };
    }
    job.resolve(r);
    this.#active.end();
    this.#pump();
  }

  /** One request on the current connection (opened first if need be), judged for the connection's sake. */
  #send(job: Job): Promise<ApnResult> {
    const session = this.#session.ready();
    return session !== undefined ? this.#sendOn(session, job) : this.#openAndSend(job);
  }

  async #openAndSend(job: Job): Promise<ApnResult> {
    const opened = await this.#session.open();
    if (opened.fresh) {
      this.#warm = false;
      this.#window.reset();
    }
    return this.#sendOn(opened.session, job);
  }

  #sendOn(session: ClientHttp2Session | undefined, job: Job): Promise<ApnResult> {
    const sentAt = Date.now();
    const startedAt = performance.now();
    return this.#session.send(job.note, job.token).then((r) => {
      // No answer for this request, and none for any other since it was sent: the connection is
      // stalled (no TLS, or streams never answered). Tear it down so the retry gets a new one
      // instead of waiting on it again.
      if (r.status === undefined && r.error !== undefined && this.#answeredAt < sentAt) this.#session.abandon(session);
      // A request that APNs answered (other than an auth failure) proves the connection: open it up.
      const status = r.status === undefined ? (r.error ? undefined : 200) : Number(r.status);
      if (status !== undefined && status !== 403 && session !== undefined && session === this.#session.current()) {
        if (this.#warm) this.#window.sample(performance.now() - startedAt);
        this.#warm = true;
      }
      return r;
    });
  }

  async stop(): Promise<void> {
    if (this.#state !== 'running') return;
    this.#state = 'closing';
    this.#stopping.abort();
    for (let i = this.#head; i < this.#queue.length; i++) this.#queue[i]?.resolve(undefined);
    this.#queue = [];
    this.#head = 0;
    // Queued requests are handed over (the retry loop holds them, due now); those on the wire
    // get shutdown.graceMs.
    await this.#active.idle(this.#stopGraceMs);
    // node-apn's shutdown callback never fires after some TLS errors (reference B.4): bound it.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((r) => this.#provider.shutdown(() => r())),
      new Promise<void>((r) => (timer = setTimeout(r, SHUTDOWN_GRACE_MS))),
    ]);
    clearTimeout(timer);
    this.#state = 'closed';
  }
}
