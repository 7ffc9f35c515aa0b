import { readFileSync } from 'node:fs';
import { NotifyError, errorMessage } from '../../errors.js';
import type { Logger } from '../../obs/log.js';
import type { RetryQueue } from '../../store/retry-queue.js';
import type { DeliveryResult, Message, Uid } from '../../types.js';
import type { TransportContext, TransportType } from '../kinds.js';
import { type ProviderRequest, type ProviderResponse, ProviderClient, type Verdict, providerClientFor } from '../provider-client.js';
import { resumeWhenDue, sendToEach } from '../retry.js';
import { type TransportTargets, countNow } from '../targets.js';
import type { PendingRetry, Transport, TransportHealth } from '../transport.js';
import { AccessTokenRefused, AccessTokenSource } from './oauth.js';
import { type FcmPackage, classifyFcmAnswer, fcmRequestBody, toFcmMessage } from './payload.js';
import { type FcmSettings, loadServiceAccount, validateFcmSettings } from './settings.js';

export type { FcmSettings };

const MAX_TOKEN_CHARS = 4096;

/** FCM registration tokens: letters, digits and `-_:.` (about 160 characters today; no fixed length). */
export function checkFcmToken(token: string): string | undefined {
  if (token.length >= 8 && token.length <= MAX_TOKEN_CHARS && /^[A-Za-z0-9_:.-]+$/.test(token)) return undefined;
  const shown = token.length > 24 ? `${token.slice(0, 24)}…` : token;
  return `an FCM registration token is 8 to ${MAX_TOKEN_CHARS} letters, digits, "-", "_", ":" or "."; got ${JSON.stringify(shown)} (${token.length} characters)`;
}

export const fcmType: TransportType = {
  settings: { type: 'custom', validate: validateFcmSettings },
  checkTarget: checkFcmToken,
  create: (settings, ctx) => new FcmTransport(settings as unknown as FcmSettings, ctx),
};

/**
 * Android (and any FCM client) through Firebase Cloud Messaging HTTP v1: one
 * `POST {url}/v1/projects/{projectId}/messages:send` per registration token, with an OAuth2
 * access token from the service account (JWT bearer grant, RS256; cached, refreshed early).
 *
 * Requests go through the shared provider client (at most maxConcurrentRequests at once, HTTP/1.1
 * keep-alive, maxQueued waiting, requestTimeoutMs each) and its one retry loop; per uid a pool
 * of at most maxConcurrentRequests workers walks the tokens, so memory follows the requests in
 * flight, not the number of devices. What FCM answers does to a token what `classifyFcmAnswer`
 * says: dead tokens are retired (the retry loop calls ctx.retire), 429/500/503 retried,
 * configuration errors (THIRD_PARTY_AUTH_ERROR, a refused access token, no permission) reported
 * per token and shown in /healthz and `notify status` until a send succeeds, tokens kept.
 */
export class FcmTransport implements Transport {
  readonly name: string;
  readonly #s: FcmSettings;
  readonly #targets: TransportTargets;
  readonly #client: ProviderClient;
  readonly #tokens: AccessTokenSource;
  readonly #sendUrl: string;
  readonly #retries: RetryQueue | undefined;
  readonly #ticket: TransportContext['ticket'];
  readonly #log: Logger;
  readonly #stopping = new AbortController();
  #state: 'running' | 'closed' = 'running';
  /** The latest configuration error, until a send succeeds. */
  #problem: { reason: string; since: number } | undefined;
  #sent = 0;
  #failed = 0;

  constructor(settings: FcmSettings, ctx: TransportContext) {
    this.name = ctx.name;
    this.#s = settings;
    this.#targets = ctx.targets;
    this.#retries = ctx.retries;
    this.#ticket = ctx.ticket;
    this.#log = ctx.log;
    // Read again (the config was checked at load; the file may have changed since).
    let account;
    let ca: string | undefined;
    try {
      account = loadServiceAccount(settings.serviceAccount, { projectId: settings.projectId === undefined, tokenUri: settings.tokenUrl === undefined });
      ca = settings.ca === undefined ? undefined : readFileSync(settings.ca, 'utf8');
    } catch (err) {
      throw new NotifyError('NOTIFY_ERR_CONFIG', `transports.${ctx.name}: ${errorMessage(err)}`, { cause: err });
    }
    const projectId = (settings.projectId ?? account.projectId) as string;
    this.#sendUrl = `${settings.url.replace(/\/+$/, '')}/v1/projects/${encodeURIComponent(projectId)}/messages:send`;
    this.#client = providerClientFor(ctx, settings, {
      // The key as PEM and as the file spells it (newlines escaped): never shown.
      secrets: [account.privateKeyPem, JSON.stringify(account.privateKeyPem).slice(1, -1)],
      ...(ca !== undefined ? { ca } : {}),
    });
    this.#tokens = new AccessTokenSource({
      clientEmail: account.clientEmail,
      privateKey: account.privateKey,
      privateKeyId: account.privateKeyId,
      tokenUrl: (settings.tokenUrl ?? account.tokenUri) as string,
      post: (req) => this.#client.request(req),
      onToken: (t) => this.#client.addSecret(t),
    });
  }

  async start(): Promise<void> {}

  canReach(uid: Uid): boolean | Promise<boolean> {
    return this.#targets.has(uid);
  }

  health(): TransportHealth {
    const p = this.#problem;
    return {
      state: this.#state === 'running' && p ? 'degraded' : this.#state,
      ...(p ? { configError: p.reason, configErrorSince: new Date(p.since).toISOString() } : {}),
      inflight: this.#client.inflight,
      pausedForMs: this.#client.pausedForMs,
      sent: this.#sent,
      failed: this.#failed,
      ...countNow(this.#targets),
      accessToken: this.#tokens.state(),
    };
  }

  async deliver(uid: Uid, msg: Message, signal: AbortSignal): Promise<DeliveryResult[]> {
    if (this.#state !== 'running') throw new NotifyError('NOTIFY_ERR_CLOSED', `${this.name}: FCM transport is stopped`);
    const tokens = await this.#targets.targets(uid);
    const pkg = toFcmMessage(msg);
    if ('error' in pkg) return tokens.map((target) => ({ transport: this.name, target, status: 'rejected', reason: pkg.error }));

    return sendToEach(this.name, tokens, {
      concurrency: this.#s.maxConcurrentRequests,
      signal,
      running: () => this.#state === 'running',
      send: (token, note) => this.#sendToken(uid, token, msg, pkg, undefined, note),
    });
  }

  /** One token, through the shared retry loop: each attempt with a valid access token. */
  async #sendToken(uid: Uid, token: string, msg: Message, pkg: FcmPackage, resumed: PendingRetry | undefined, onRetry: (r: string) => void): Promise<DeliveryResult> {
    const body = fcmRequestBody(pkg, token);
    let used: string | undefined;
    let refreshed = false;
    const build = async (): Promise<ProviderRequest | Verdict | undefined> => {
      try {
        used = await this.#tokens.get();
      } catch (err) {
        if (this.#state !== 'running') return undefined;
        if (err instanceof AccessTokenRefused) return this.#configError(err.message);
        return { kind: 'retry', reason: errorMessage(err) };
      }
      return { method: 'POST', url: this.#sendUrl, headers: { 'content-type': 'application/json', authorization: `Bearer ${used}` }, body };
    };
    const judge = (res: ProviderResponse): Verdict => {
      const o = classifyFcmAnswer(res.status, res.body, res.headers);
      switch (o.kind) {
        case 'sent':
          this.#cleared();
          return { kind: 'sent', ...(o.id !== undefined ? { id: o.id } : {}) };
        case 'rejected':
          return { kind: 'rejected', reason: o.reason, ...(o.prune ? { prune: true } : {}) };
        case 'retry':
          return { kind: 'retry', reason: o.reason, ...(o.retryAfterMs !== undefined ? { retryAfterMs: o.retryAfterMs } : {}) };
        case 'config':
          return this.#configError(o.reason);
        case 'unauthenticated':
          if (!refreshed) {
            // The access token was refused (revoked, expired early): one fresh token, one retry.
            refreshed = true;
            if (used !== undefined) this.#tokens.invalidate(used);
            return { kind: 'retry', reason: o.reason, freshRetry: 'again with a fresh access token' };
          }
          return this.#configError(`${o.reason}, again with a fresh access token: check that the service account may send for this project`);
      }
    };
    const out = await this.#client.send(build, judge, {
      target: token,
      ticket: this.#ticket({ transport: this.name, uid, target: token, msg }, resumed?.key),
      ...(resumed ? { attempts: resumed.attempts } : {}),
      onRetry,
    });
    if (out.status === 'sent') this.#sent++;
    else if (this.#state === 'running') this.#failed++; // at a stop it was handed over, not failed
    return { transport: this.name, target: token, ...out };
  }

  /** A configuration error: the delivery fails (not retried, the token kept) and /healthz shows it. */
  #configError(reason: string): Verdict {
    const scrubbed = this.#client.scrub(reason);
    if (this.#problem?.reason !== scrubbed) {
      this.#log.error('FCM configuration error; deliveries fail until it is fixed', { transport: this.name, reason: scrubbed });
      this.#problem = { reason: scrubbed, since: Date.now() };
    }
    return { kind: 'failed', reason: scrubbed };
  }

  #cleared(): void {
    if (this.#problem === undefined) return;
    this.#log.info('FCM configuration error cleared: a send succeeded', { transport: this.name, was: this.#problem.reason });
    this.#problem = undefined;
  }

  resume(p: PendingRetry): void {
    const pkg = toFcmMessage(p.msg);
    if ('error' in pkg) {
      void this.#retries?.release(p.key);
      return;
    }
    void resumeWhenDue(p, this.name, this.#stopping.signal, this.#log, () => this.#sendToken(p.uid, p.target, p.msg, pkg, p, () => {}));
  }

  async stop(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#stopping.abort();
    await this.#client.stop();
  }
}
