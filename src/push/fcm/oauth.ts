import { type KeyObject, sign } from 'node:crypto';
import type { ProviderRequest, ProviderResponse } from '../provider-client.js';
import { FCM_SCOPE } from './settings.js';

/** The token endpoint refused the service account's assertion: a configuration error, not a network one. */
export class AccessTokenRefused extends Error {}

/** Refresh this long before expiry (google-auth-library's eagerRefreshThresholdMillis). */
export const REFRESH_EARLY_MS = 5 * 60_000;
/** A refusal is remembered this long: the deliveries meanwhile fail at once instead of asking again. */
export const REFUSAL_HOLD_MS = 30_000;
/** Lifetime asked for in the assertion (Google's maximum for this grant). */
const ASSERTION_LIFETIME_S = 3600;
const GRANT_TYPE = 'urn:ietf:params:oauth:grant-type:jwt-bearer';

export interface AccessTokenSourceOptions {
  clientEmail: string;
  privateKey: KeyObject;
  privateKeyId?: string | undefined;
  tokenUrl: string;
  /** Sends one request (the transport's provider client: its CA, timeout and stop). */
  post: (req: ProviderRequest) => Promise<ProviderResponse>;
  /** Told of each new token, so it can be scrubbed from anything shown. */
  onToken?: (token: string) => void;
  /** @default Date.now */
  now?: () => number;
}

const b64url = (v: unknown): string => Buffer.from(JSON.stringify(v)).toString('base64url');

/**
 * Signs the JWT bearer grant's assertion (RFC 7523) with the service account's RSA key (RS256),
 * as google-auth-library's gtoken does: iss = the account, scope, aud = the token URL, iat, exp
 * = iat + 1 h.
 */
export function signAssertion(o: { clientEmail: string; privateKey: KeyObject; privateKeyId?: string | undefined; tokenUrl: string; nowS: number }): string {
  const header = { alg: 'RS256', typ: 'JWT', ...(o.privateKeyId ? { kid: o.privateKeyId } : {}) };
  const claims = { iss: o.clientEmail, scope: FCM_SCOPE, aud: o.tokenUrl, iat: o.nowS, exp: o.nowS + ASSERTION_LIFETIME_S };
  const input = `${b64url(header)}.${b64url(claims)}`;
  return `${input}.${sign('RSA-SHA256', Buffer.from(input), o.privateKey).toString('base64url')}`;
}

/**
 * OAuth2 access tokens for one service account (the JWT bearer grant): cached and refreshed
 * 5 minutes before they expire (or halfway, for short-lived ones); concurrent callers share one
 * request. The token endpoint refusing the grant (400/401/403: invalid_grant, a deleted key, a
 * wrong account) rejects with AccessTokenRefused, remembered for REFUSAL_HOLD_MS; anything else
 * (no answer, 5xx) rejects with a plain Error, and the next call asks again.
 */
export class AccessTokenSource {
  readonly #o: AccessTokenSourceOptions;
  readonly #now: () => number;
  #token: { value: string; refreshAt: number; expiresAt: number } | undefined;
  #pending: Promise<string> | undefined;
  #refused: { error: AccessTokenRefused; until: number } | undefined;
  #fetches = 0;

  constructor(o: AccessTokenSourceOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
  }

  /** A valid access token. */
  get(): Promise<string> {
    const now = this.#now();
    if (this.#token && now < this.#token.refreshAt) return Promise.resolve(this.#token.value);
    if (this.#pending) return this.#pending;
    if (this.#refused && now < this.#refused.until) return Promise.reject(this.#refused.error);
    const p = this.#fetch().finally(() => {
      if (this.#pending === p) this.#pending = undefined;
    });
    this.#pending = p;
    return p;
  }

  /** Drops `token` from the cache (FCM answered 401 to it); a newer one is kept. */
  invalidate(token: string): void {
    if (this.#token?.value === token) this.#token = undefined;
  }

  /** For /healthz: when the cached token expires (never the token itself), and how many were fetched. */
  state(): { validUntil?: string; fetched: number } {
    const t = this.#token;
    return Object.assign(t && this.#now() < t.expiresAt ? { validUntil: new Date(t.expiresAt).toISOString() } : {}, { fetched: this.#fetches });
  }

  async #fetch(): Promise<string> {
    const sentAt = this.#now();
    const assertion = signAssertion(Object.assign({}, this.#o, { nowS: Math.floor(sentAt / 1000) }));
    const hide = (s: string) => s.split(assertion).join('[redacted]');
    let res: ProviderResponse;
    try {
      res = await this.#o.post({
        method: 'POST',
        url: this.#o.tokenUrl,
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: new URLSearchParams({ grant_type: GRANT_TYPE, assertion }).toString(),
      });
    } catch (err) {
      throw new Error(`access token request to ${this.#o.tokenUrl} failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    let parsed: { access_token?: unknown; expires_in?: unknown; error?: unknown; error_description?: unknown } | undefined;
    try {
      parsed = JSON.parse(res.body) as typeof parsed;
    } catch {
      parsed = undefined;
    }
    if (res.status >= 200 && res.status < 300) {
      const token = parsed?.access_token;
      const lifetimeS = Number(parsed?.expires_in ?? ASSERTION_LIFETIME_S);
      if (typeof token !== 'string' || token === '' || !Number.isFinite(lifetimeS) || lifetimeS <= 0) {
        throw this.#refuse(`the token endpoint ${this.#o.tokenUrl} answered ${res.status} without an access_token and expires_in (is tokenUrl right?)`);
      }
      this.#o.onToken?.(token);
      this.#fetches++;
      this.#refused = undefined;
      const lifetimeMs = lifetimeS * 1000;
      this.#token = { value: token, expiresAt: sentAt + lifetimeMs, refreshAt: sentAt + lifetimeMs - Math.min(REFRESH_EARLY_MS, lifetimeMs / 2) };
      return token;
    }
    const what = [parsed?.error, parsed?.error_description].filter((v): v is string => typeof v === 'string' && v !== '').join(': ');
    const shown = hide(what || res.body.replace(/\s+/g, ' ').trim()).slice(0, 200);
    const reason = `${res.status}${shown ? ` ${shown}` : ''}`;
    if (res.status === 400 || res.status === 401 || res.status === 403) {
      throw this.#refuse(`access token refused by ${this.#o.tokenUrl}: ${reason} (check the service account file: is the key still valid, and this machine's clock?)`);
    }
    throw new Error(`access token request to ${this.#o.tokenUrl} failed: ${reason}`);
  }

  #refuse(message: string): AccessTokenRefused {
    const error = new AccessTokenRefused(message);
    this.#refused = { error, until: this.#now() + REFUSAL_HOLD_MS };
    return error;
  }
}
