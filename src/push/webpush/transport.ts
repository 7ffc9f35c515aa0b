import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { type Spec, type Validation, formatPath, validate } from '../../config/schema.js';
import { NotifyError, errorMessage } from '../../errors.js';
import type { Logger } from '../../obs/log.js';
import type { RetryQueue } from '../../store/retry-queue.js';
import type { DeliveryResult, Message, Uid } from '../../types.js';
import type { TransportContext, TransportType } from '../kinds.js';
import { type ProviderRequest, type ProviderResponse, ProviderClient, type SendOutcome, excerpt, httpVerdict, providerClientFor } from '../provider-client.js';
import { type RetryPolicy, type Verdict, maxQueuedSpec, resumeWhenDue, retrySpec, sendToEach } from '../retry.js';
import { type TransportTargets, countNow } from '../targets.js';
import type { PendingRetry, Transport, TransportHealth } from '../transport.js';
import { type WebPushPackage, toWebPushPayload, ttlSeconds } from './payload.js';
import { type WebPushSubscription, audienceOf, checkSubscription, normalizeSubscription } from './subscription.js';
import { VapidSigner, checkVapidPrivateKey, checkVapidPublicKey, checkVapidSubject, loadWebPush, vapidKeysMatch } from './vapid.js';

export type Urgency = 'very-low' | 'low' | 'normal' | 'high';

/** Settings of a `type: webpush` transport, as validated (`ca` absolute). */
export interface WebPushSettings {
  /** The VAPID identity (RFC 8292): a contact URL and the key pair from `notify vapid`. */
  vapid: { subject: string; publicKey: string; privateKey: string };
  /** How long a push service keeps a message for a browser that is offline (the TTL header); in ms once read. @default 24h */
  ttl: number;
  /** The Urgency header (RFC 8030 section 5.3). @default normal */
  urgency: Urgency;
  /** A PEM file of CA certificates to trust besides the system's (a private push service, a test server). */
  ca?: string;
  /** How long one request may take. @default 10000 */
  requestTimeoutMs: number;
  /** Requests in flight at once (also the sockets kept open per push service). @default 100 */
  maxConcurrentRequests: number;
  /** Requests waiting for a free slot at most; one more fails at once ("queue full"). @default 10000 */
  maxQueued: number;
  /** Subscriptions a uid may have through pages (the session's push-subscribe frame); one more is refused. @default 20 */
  subscriptionsPerUid: number;
  retry: RetryPolicy;
}

/** TTL the RFC leaves open; push services cap it (web-push's default, 4 weeks, is the usual maximum). */
const MAX_TTL_MS = 28 * 24 * 3600 * 1000;

const vapidSpec: Spec = {
  type: 'section',
  keys: {
    subject: { type: 'string', required: true, check: checkVapidSubject },
    publicKey: { type: 'string', required: true, check: checkVapidPublicKey },
    privateKey: { type: 'string', required: true, check: checkVapidPrivateKey },
  },
};

const settingsSection: Spec = {
  type: 'section',
  keys: {
    vapid: { type: 'custom', validate: (v, path, ctx) => validate(vapidSpec, v, path, ctx) },
    ttl: { type: 'duration', default: '24h', minMs: 0 },
    urgency: { type: 'enum', values: ['very-low', 'low', 'normal', 'high'], default: 'normal' },
    ca: { type: 'string' },
    requestTimeoutMs: { type: 'integer', min: 1, default: 10_000 },
    maxConcurrentRequests: { type: 'integer', min: 1, max: 10_000, default: 100 },
    maxQueued: maxQueuedSpec,
    subscriptionsPerUid: { type: 'integer', min: 1, max: 10_000, default: 20 },
    retry: retrySpec,
  },
};

function validateSettings(value: unknown, path: string[], ctx: Validation): WebPushSettings {
  const before = ctx.problems.length;
  if (value !== null && typeof value === 'object' && !Array.isArray(value) && !('vapid' in value)) {
    ctx.fail([...path, 'vapid'], `${formatPath([...path, 'vapid'])} is required: {subject: "mailto:you@example.com", publicKey, privateKey} (notify vapid prints a key pair)`);
  }
  const s = validate(settingsSection, value, path, ctx) as WebPushSettings;
  const name = formatPath(path);
  if (s.ttl > MAX_TTL_MS) ctx.fail([...path, 'ttl'], `${name}.ttl must be at most 28d (push services keep a message 4 weeks at most)`);
  const v = s.vapid;
  if (ctx.problems.length === before && v && !vapidKeysMatch(v.publicKey, v.privateKey)) {
    ctx.fail([...path, 'vapid', 'publicKey'], `${name}.vapid.publicKey is not the public half of vapid.privateKey; paste both from the same notify vapid output`);
  }
  if (s.ca !== undefined) {
    const abs = resolve(ctx.baseDir, s.ca);
    let pem: Buffer | undefined;
    try {
      pem = readFileSync(abs);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a folder' : errorMessage(err);
      ctx.fail([...path, 'ca'], `${name}.ca: cannot use ${abs}: ${why}`);
    }
    if (pem !== undefined) {
      try {
        new X509Certificate(pem);
        s.ca = abs;
      } catch {
        ctx.fail([...path, 'ca'], `${name}.ca: cannot use ${abs}: not a PEM certificate`);
      }
    }
  }
  return s;
}

export const webpushType: TransportType = {
  settings: { type: 'custom', validate: validateSettings },
  printSpec: settingsSection,
  checkTarget: checkSubscription,
  normalizeTarget: normalizeSubscription,
  create: (settings, ctx) => new WebPushTransport(settings as unknown as WebPushSettings, ctx),
};

/**
 * What to do with one push service answer (pure). RFC 8030: 201 Created is delivered (its
 * Location names the message). 404 (the subscription expired, section 7.3) and 410 (gone:
 * unsubscribed; what autopush, FCM and Apple answer) retire the subscription for good. 408,
 * 429 and 5xx are retried, no sooner than Retry-After. 401 and 403 say our VAPID signature was
 * refused: a configuration problem, reported without retiring anything. 400, 413 and any
 * other answer are reported, not retried.
 */
export function webPushVerdict(res: ProviderResponse): Verdict {
  const s = res.status;
  const detail = res.body ? `: ${excerpt(res.body)}` : '';
  if (s >= 200 && s < 300) {
    const location = res.headers.get('location');
    return location ? { kind: 'sent', id: location } : { kind: 'sent' };
  }
  if (s === 404 || s === 410) {
    return { kind: 'rejected', reason: `${s} ${s === 404 ? 'Not Found' : 'Gone'}: the subscription expired or was unsubscribed${detail}`, prune: true };
  }
  if (s === 401 || s === 403) {
    return { kind: 'rejected', reason: `${s}: the push service refused the VAPID signature; check vapid.publicKey/privateKey (pages must subscribe with the same public key) and vapid.subject${detail}` };
  }
  if (s === 413) return { kind: 'rejected', reason: `413 Payload Too Large${detail}` };
  if (s === 400) return { kind: 'rejected', reason: `400 Bad Request${detail}` };
  return httpVerdict(res, () => false);
}

/**
 * Browsers through the Web Push protocol (RFC 8030): one POST per subscription to its push
 * service, the payload encrypted for the browser (aes128gcm, RFC 8291) and signed with the
 * VAPID key (RFC 8292), both by the `web-push` package (`generateRequestDetails`, with the
 * VAPID header from `getVapidHeaders`, cached per push service). Requests go out through the
 * shared ProviderClient (concurrency, timeouts, the one retry loop, stop and hand-over), which
 * trusts `ca` besides the system's CAs.
 *
 * A subscription is a target in its canonical JSON text (subscription.ts). A uid's
 * subscriptions are sent by a pool of at most maxConcurrentRequests workers, each encrypting
 * its next one just before sending it, so memory and CPU stay proportional to what is in flight.
 */
export class WebPushTransport implements Transport {
  readonly name: string;
  readonly #s: WebPushSettings;
  readonly #targets: TransportTargets;
  readonly #client: ProviderClient;
  readonly #vapid: VapidSigner;
  readonly #retries: RetryQueue | undefined;
  readonly #ticket: TransportContext['ticket'];
  readonly #log: Logger;
  readonly #stopping = new AbortController();
  #state: 'running' | 'closing' | 'closed' = 'running';
  #sent = 0;
  #failed = 0;

  constructor(settings: WebPushSettings, ctx: TransportContext) {
    this.name = ctx.name;
    this.#s = settings;
    this.#targets = ctx.targets;
    this.#retries = ctx.retries;
    this.#ticket = ctx.ticket;
    this.#log = ctx.log;
    this.#vapid = new VapidSigner(settings.vapid.subject, settings.vapid.publicKey, settings.vapid.privateKey);
    let ca: string | undefined;
    try {
      ca = settings.ca === undefined ? undefined : readFileSync(settings.ca, 'utf8');
    } catch (err) {
      throw new NotifyError('NOTIFY_ERR_CONFIG', `transports.${ctx.name}.ca: ${errorMessage(err)}`, { cause: err });
    }
    this.#client = providerClientFor(ctx, settings, {
      secrets: [settings.vapid.privateKey],
      // One push service asking to slow down (429) must not hold back the others.
      pauseScope: 'origin',
      ...(ca !== undefined ? { ca } : {}),
    });
  }

  async start(): Promise<void> {}

  canReach(uid: Uid): boolean | Promise<boolean> {
    return this.#targets.has(uid);
  }

  health(): TransportHealth {
    return {
      state: this.#state,
      inflight: this.#client.inflight,
      pausedForMs: this.#client.pausedForMs,
      sent: this.#sent,
      failed: this.#failed,
      ...countNow(this.#targets),
    };
  }

  async deliver(uid: Uid, msg: Message, signal: AbortSignal): Promise<DeliveryResult[]> {
    if (this.#state !== 'running') throw new NotifyError('NOTIFY_ERR_CLOSED', `${this.name}: Web Push transport is stopped`);
    const targets = await this.#targets.targets(uid);
    const pkg = toWebPushPayload(msg);
    if ('error' in pkg) return targets.map((target) => ({ transport: this.name, target, status: 'rejected', reason: pkg.error }));
    return sendToEach(this.name, targets, {
      concurrency: this.#s.maxConcurrentRequests,
      signal,
      running: () => this.#state === 'running',
      send: (target, note) => this.#send(uid, msg, pkg, target, undefined, note),
    });
  }

  /** The request for one subscription: encrypted and signed by web-push; a reason when it cannot be built. */
  #request(target: string, pkg: WebPushPackage, msg: Message): ProviderRequest | string {
    // Targets were checked when they were registered (parseSubscription): read back, not re-validated.
    let sub: WebPushSubscription;
    try {
      sub = JSON.parse(target) as WebPushSubscription;
      if (typeof sub.endpoint !== 'string' || typeof sub.keys?.p256dh !== 'string' || typeof sub.keys.auth !== 'string') throw new Error('not a subscription');
    } catch {
      return 'invalid subscription: not {"endpoint", "keys": {"p256dh", "auth"}}';
    }
    try {
      const details = loadWebPush().generateRequestDetails(sub, pkg.text, {
        // Never web-push's module-level VAPID details: the header is ours, cached per push service.
        vapidDetails: null as unknown as undefined,
        TTL: ttlSeconds(msg, this.#s.ttl),
        urgency: this.#s.urgency,
        contentEncoding: 'aes128gcm',
        headers: { Authorization: this.#vapid.authorization(audienceOf(sub.endpoint)) },
      });
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(details.headers)) headers[k] = String(v);
      return { method: details.method, url: details.endpoint, headers, ...(details.body ? { body: details.body } : {}) };
    } catch (err) {
      return `cannot build the Web Push request: ${this.#client.scrub(errorMessage(err))}`;
    }
  }

  /** One subscription, carried to its end (retries included). */
  async #send(uid: Uid, msg: Message, pkg: WebPushPackage, target: string, resumed?: PendingRetry, onRetry?: (r: string) => void): Promise<SendOutcome> {
    const ticket = this.#ticket({ transport: this.name, uid, target, msg }, resumed?.key);
    const req = this.#request(target, pkg, msg);
    let out: SendOutcome;
    if (typeof req === 'string') {
      await ticket.done();
      out = { status: 'rejected', reason: req };
    } else {
      out = await this.#client.send(req, webPushVerdict, {
        target,
        ticket,
        ...(resumed ? { attempts: resumed.attempts } : {}),
        ...(onRetry ? { onRetry } : {}),
      });
    }
    if (out.status === 'sent') this.#sent++;
    else this.#failed++;
    return out;
  }

  resume(p: PendingRetry): void {
    const pkg = toWebPushPayload(p.msg);
    if ('error' in pkg) {
      void this.#retries?.release(p.key);
      return;
    }
    void resumeWhenDue(p, this.name, this.#stopping.signal, this.#log, () => this.#send(p.uid, p.msg, pkg, p.target, p));
  }

  async stop(): Promise<void> {
    if (this.#state !== 'running') return;
    this.#state = 'closing';
    this.#stopping.abort();
    await this.#client.stop();
    this.#state = 'closed';
  }
}
