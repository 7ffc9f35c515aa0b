import { type Spec, type Validation, formatPath, validate } from '../../config/schema.js';
import { NotifyError } from '../../errors.js';
import { type TransportTargets, countNow } from '../targets.js';
import type { DeliveryResult, Message, MessageBody, Uid } from '../../types.js';
import type { Logger } from '../../obs/log.js';
import { type ProviderResponse, ProviderClient, type SendOutcome, type Verdict, excerpt, httpVerdict, providerClientFor } from '../provider-client.js';
import type { TransportContext, TransportType } from '../kinds.js';
import { type RetryPolicy, STILL_TRYING, maxQueuedSpec, resumeWhenDue, retrySpec, settleBy } from '../retry.js';
import type { PendingRetry, Transport, TransportHealth } from '../transport.js';

/** How a request's target is written in the retry queue. */
const ALIAS = 'alias:';
const RIDS = 'registration_id:';

/** JPush's v3 push endpoint (apps in the Beijing room use https://bjapi.push.jiguang.cn/v3/push). */
export const JPUSH_DEFAULT_URL = 'https://api.jpush.cn/v3/push';
/** Registration ids or aliases per request, at most (JPush v3). */
export const JPUSH_MAX_AUDIENCE = 1000;
/** Longest alias JPush takes, in UTF-8 bytes. */
export const JPUSH_MAX_ALIAS_BYTES = 40;
const PLATFORMS = ['android', 'ios', 'hmos', 'quickapp'] as const;

/** Settings of a `type: jpush` transport, as validated. */
export interface JPushSettings {
  appKey: string;
  masterSecret: string;
  /** @default https://api.jpush.cn/v3/push */
  url: string;
  /** Sent as options.apns_production: true for App Store builds. @default false */
  production: boolean;
  /** `all`, or a list of android, ios, hmos, quickapp. @default 'all' */
  platform: 'all' | string[];
  /** options.time_to_live: seconds JPush keeps a message for an offline device (0: online only). */
  timeToLiveS?: number;
  requestTimeoutMs: number;
  maxConcurrentRequests: number;
  /** Requests waiting for a free slot at most; one more fails at once ("queue full"). @default 10000 */
  maxQueued: number;
  retry: RetryPolicy;
}

const settingsSection: Spec = {
  type: 'section',
  keys: {
    appKey: { type: 'string', required: true },
    masterSecret: { type: 'string', required: true },
    url: { type: 'string', default: JPUSH_DEFAULT_URL, check: (v) => (/^https?:\/\/[^\s]+$/.test(v) ? undefined : 'must be an http(s) URL') },
    production: { type: 'boolean', default: false },
    platform: {
      type: 'custom',
      validate: (v, path, ctx) => {
        if (v === undefined || v === null || v === 'all') return 'all';
        const list = Array.isArray(v) ? v : [v];
        if (list.length === 0 || !list.every((p) => (PLATFORMS as readonly unknown[]).includes(p))) {
          ctx.fail(path, `${formatPath(path)} must be "all" or a list of ${PLATFORMS.join(', ')}`);
          return 'all';
        }
        return list;
      },
    },
    timeToLiveS: { type: 'integer', min: 0, max: 864_000 },
    requestTimeoutMs: { type: 'integer', min: 1, default: 5000 },
    maxConcurrentRequests: { type: 'integer', min: 1, max: 100, default: 8 },
    maxQueued: maxQueuedSpec,
    retry: retrySpec,
  },
};

type Audience = { registration_id: string[] } | { alias: string[] };

/**
 * The JPush v3 push body for one message and one audience. Pure.
 * - Alert text (`msg`, else `title`): a `notification` with android (alert, title, extras) and
 *   ios (alert: a {title, body} dict or the text, sound, badge, extras) parts.
 * - No alert text: a custom `message`, passed to the app untouched: msg_content is the frame
 *   (what a web page would receive), with title and extras.
 * `extras` is the message's data; apns_production is always sent (JPush's API and SDKs differ
 * on what its absence means).
 */
export function toJPushRequest(msg: MessageBody, audience: Audience, s: Pick<JPushSettings, 'platform' | 'production' | 'timeToLiveS'>): Record<string, unknown> {
  const extras = msg.data ?? {};
  const alert = msg.msg ?? msg.title;
  const body: Record<string, unknown> = { platform: s.platform, audience };
  if (alert !== undefined) {
    const android: Record<string, unknown> = { alert, extras };
    if (msg.title !== undefined && msg.msg !== undefined) android.title = msg.title;
    const ios: Record<string, unknown> = {
      alert: msg.title !== undefined && msg.msg !== undefined ? { title: msg.title, body: msg.msg } : alert,
      extras,
    };
    if (msg.sound !== undefined) ios.sound = msg.sound;
    if (msg.badge !== undefined) ios.badge = msg.badge;
    body.notification = { android, ios };
  } else {
    const message: Record<string, unknown> = { msg_content: msg.frame, extras };
    if (msg.title !== undefined) message.title = msg.title;
    body.message = message;
  }
  const options: Record<string, unknown> = { apns_production: s.production };
  if (s.timeToLiveS !== undefined) options.time_to_live = s.timeToLiveS;
  body.options = options;
  return body;
}

/** JPush v3 error codes: what they mean and whether a retry can help. */
export const JPUSH_ERRORS: Readonly<Record<number, { meaning: string; retry: boolean }>> = {
  1000: { meaning: 'JPush internal error', retry: true },
  1001: { meaning: 'only POST is supported', retry: false },
  1002: { meaning: 'missing parameter', retry: false },
  1003: { meaning: 'invalid parameter value (e.g. an invalid registration id or alias)', retry: false },
  1004: { meaning: 'authentication failed: check appKey and masterSecret', retry: false },
  1005: { meaning: 'message too large', retry: false },
  1008: { meaning: 'invalid appKey', retry: false },
  1009: { meaning: 'unsupported key in the push', retry: false },
  1011: { meaning: 'no target: no device matches the audience', retry: false },
  1012: { meaning: 'paced push over its limit', retry: true },
  1020: { meaning: 'HTTPS only', retry: false },
  1030: { meaning: 'JPush internal timeout', retry: true },
  2002: { meaning: 'rate limited', retry: true },
  2003: { meaning: 'appKey restricted or black-listed', retry: false },
  2004: { meaning: 'no permission: the caller IP is not in the app\'s whitelist', retry: false },
  2005: { meaning: 'send volume beyond a reasonable range', retry: false },
  2006: { meaning: 'no permission (VIP-only feature)', retry: false },
  2007: { meaning: 'no permission for this API', retry: false },
};

/** Seconds until JPush's rate-limit window resets, as milliseconds. */
function resetMs(res: ProviderResponse): number | undefined {
  const header = res.headers.get('x-rate-limit-reset');
  if (header === null || header.trim() === '') return undefined;
  const reset = Number(header);
  return Number.isFinite(reset) && reset >= 0 ? Math.max(1, reset) * 1000 : undefined;
}

/** JPush's answer: 200 with msg_id is sent; an error body's code decides the rest. Pure. */
export function judgeJPush(res: ProviderResponse): Verdict {
  let parsed: { msg_id?: unknown; error?: { code?: unknown; message?: unknown } } | undefined;
  try {
    parsed = JSON.parse(res.body) as typeof parsed;
  } catch {
    parsed = undefined;
  }
  if (res.status >= 200 && res.status < 300 && !parsed?.error) {
    if (parsed?.msg_id === undefined) return { kind: 'sent' };
    // msg_id may be a number above 2^53: take its digits from the text, not the parsed double.
    const digits = /"msg_id"\s*:\s*"?(\d+)/.exec(res.body)?.[1];
    return { kind: 'sent', id: digits ?? String(parsed.msg_id) };
  }
  const code = Number(parsed?.error?.code);
  const known = JPUSH_ERRORS[code];
  if (!known) return httpVerdict(res, () => false);
  const said = typeof parsed?.error?.message === 'string' ? ` (${excerpt(parsed.error.message)})` : '';
  const reason = `JPush ${code} ${known.meaning}${said}`;
  if (!known.retry) return { kind: 'rejected', reason };
  const wait = code === 2002 ? resetMs(res) : undefined;
  return wait === undefined ? { kind: 'retry', reason } : { kind: 'retry', reason, retryAfterMs: wait };
}

function validateSettings(value: unknown, path: string[], ctx: Validation): JPushSettings {
  return validate(settingsSection, value, path, ctx) as JPushSettings;
}

export const jpushType: TransportType = {
  settings: { type: 'custom', validate: validateSettings },
  checkTarget: (t) => (/^[0-9A-Za-z_-]{4,128}$/.test(t) ? undefined : `a JPush registration id is letters and digits; got ${JSON.stringify(t.slice(0, 40))}`),
  create: (settings, ctx) => new JPushTransport(settings as unknown as JPushSettings, ctx),
};

/**
 * JPush (极光推送) v3: Android, iOS and HarmonyOS phones in China. Each uid is sent to its
 * registration ids under `devices.UID.NAME` (up to 1000 per request) or, with none, to the
 * alias equal to the uid, so every uid is reachable and JPush answers 1011 when it has no
 * such device. Rate limits: when X-Rate-Limit-Remaining reaches 0 the transport holds every
 * request until X-Rate-Limit-Reset; a 2002 is retried after it.
 */
export class JPushTransport implements Transport {
  readonly name: string;
  readonly #s: JPushSettings;
  readonly #targets: TransportTargets;
  readonly #client: ProviderClient;
  readonly #authorization: string;
  readonly #ticket: TransportContext['ticket'];
  readonly #log: Logger;
  readonly #stopping = new AbortController();
  #state: 'running' | 'closed' = 'running';

  constructor(settings: JPushSettings, ctx: TransportContext) {
    this.name = ctx.name;
    this.#s = settings;
    this.#targets = ctx.targets;
    this.#ticket = ctx.ticket;
    this.#log = ctx.log;
    const basic = Buffer.from(`${settings.appKey}:${settings.masterSecret}`).toString('base64');
    this.#authorization = `Basic ${basic}`;
    this.#client = providerClientFor(ctx, settings, {
      secrets: [settings.masterSecret, basic],
      pauseAfter: (res) => (res.headers.get('x-rate-limit-remaining') === '0' ? resetMs(res) : undefined),
    });
  }

  async start(): Promise<void> {}

  canReach(_uid: Uid): boolean {
    return true;
  }

  health(): TransportHealth {
    return { state: this.#state, inflight: this.#client.inflight, pausedForMs: this.#client.pausedForMs, devices: countNow(this.#targets)?.devices };
  }

  async deliver(uid: Uid, msg: Message, signal: AbortSignal): Promise<DeliveryResult[]> {
    if (this.#state !== 'running') throw new NotifyError('NOTIFY_ERR_CLOSED', `${this.name}: transport is stopped`);
    const rids = await this.#targets.targets(uid);
    if (rids.length === 0 && Buffer.byteLength(uid) > JPUSH_MAX_ALIAS_BYTES) {
      const reason = `the uid is longer than JPush's ${JPUSH_MAX_ALIAS_BYTES}-byte alias limit and has no registration ids`;
      return [{ transport: this.name, target: `alias:${uid}`, status: 'rejected', reason }];
    }
    // One request per batch: the uid's alias, or up to 1000 of its registration ids.
    const batches: string[][] = [];
    for (let i = 0; i < rids.length; i += JPUSH_MAX_AUDIENCE) batches.push(rids.slice(i, i + JPUSH_MAX_AUDIENCE));
    const requests = batches.length > 0 ? batches.map((b) => `${RIDS}${b.join(',')}`) : [`${ALIAS}${uid}`];
    const last: (string | undefined)[] = [];
    const outs = await settleBy(
      requests.map((target, i) => this.#send(uid, msg, target, undefined, (r) => (last[i] = r))),
      signal,
    );
    return requests.flatMap((target, i) => {
      const out: SendOutcome = outs[i] ?? {
        status: 'failed',
        reason: `${STILL_TRYING}${last[i] ? ` (last: ${last[i]})` : ''}`,
      };
      const shown = target.startsWith(RIDS) ? target.slice(RIDS.length).split(',') : [target];
      return shown.map((t): DeliveryResult => ({ transport: this.name, target: t, ...out }));
    });
  }

  /** One JPush request for `target` (`alias:UID` or `registration_id:ID,ID,…`), carried to its end. */
  #send(uid: Uid, msg: Message, target: string, resumed?: PendingRetry, onRetry?: (r: string) => void): Promise<SendOutcome> {
    const audience = target.startsWith(RIDS) ? { registration_id: target.slice(RIDS.length).split(',') } : { alias: [uid] };
    const body = toJPushRequest(msg, audience, this.#s);
    const ticket = this.#ticket({ transport: this.name, uid, target, msg }, resumed?.key);
    return this.#client.send(
      { method: 'POST', url: this.#s.url, headers: { 'content-type': 'application/json', authorization: this.#authorization }, body: JSON.stringify(body) },
      judgeJPush,
      { target, ticket, ...(resumed ? { attempts: resumed.attempts } : {}), ...(onRetry ? { onRetry } : {}) },
    );
  }

  resume(p: PendingRetry): void {
    void resumeWhenDue(p, this.name, this.#stopping.signal, this.#log, () => this.#send(p.uid, p.msg, p.target, p));
  }

  async stop(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#stopping.abort();
    await this.#client.stop();
  }
}
