import { ECDH } from 'node:crypto';

/**
 * A browser push subscription as `PushSubscription.toJSON()` gives it (W3C Push API), without
 * `expirationTime`: the push service's URL and the keys its messages are encrypted for.
 */
export interface WebPushSubscription {
  /** The push service URL the message is POSTed to (RFC 8030); https. */
  endpoint: string;
  keys: {
    /** The browser's P-256 public key, uncompressed (65 bytes), base64url without padding. */
    p256dh: string;
    /** The 16-byte authentication secret (RFC 8291), base64url without padding. */
    auth: string;
  };
}

/** Longest endpoint accepted. Real ones are 150-400 characters. */
export const MAX_ENDPOINT_CHARS = 2048;
/** Longest subscription text accepted (JSON), anywhere it comes from: the YAML, the API, a page. */
export const MAX_SUBSCRIPTION_CHARS = 4096;

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Bytes of a base64 or base64url string (padding optional); undefined when it is neither. */
function base64Bytes(text: string): Buffer | undefined {
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(text)) return undefined;
  if (/[+/]/.test(text) && /[-_]/.test(text)) return undefined;
  return Buffer.from(text.replace(/=+$/, ''), /[+/]/.test(text) ? 'base64' : 'base64url');
}

/**
 * Parses and checks a subscription given as JSON text or as an object: an https endpoint
 * without credentials, `keys.p256dh` an uncompressed point on P-256 (65 bytes, checked to lie
 * on the curve), `keys.auth` exactly 16 bytes. `expirationTime` (part of toJSON()) is accepted
 * and dropped; any other key is refused. Returns the subscription in its canonical spelling
 * (base64url without padding), or what is wrong with it.
 */
export function parseSubscription(input: unknown): WebPushSubscription | { error: string } {
  let value = input;
  if (typeof value === 'string') {
    if (value.length > MAX_SUBSCRIPTION_CHARS) return { error: `a Web Push subscription is at most ${MAX_SUBSCRIPTION_CHARS} characters of JSON; got ${value.length}` };
    try {
      value = JSON.parse(value);
    } catch {
      return { error: 'a Web Push subscription is JSON {"endpoint": "https://…", "keys": {"p256dh": "…", "auth": "…"}}; this is not JSON' };
    }
  }
  if (!isObject(value)) return { error: 'a Web Push subscription is an object {"endpoint", "keys": {"p256dh", "auth"}}' };
  const extra = Object.keys(value).filter((k) => k !== 'endpoint' && k !== 'keys' && k !== 'expirationTime');
  if (extra.length > 0) return { error: `unknown key ${extra.map((k) => JSON.stringify(k)).join(', ')} in the Web Push subscription; expected endpoint, keys (and expirationTime)` };
  const { endpoint, keys } = value;
  if (typeof endpoint !== 'string' || endpoint === '') return { error: 'the Web Push subscription needs "endpoint", the push service URL (a string)' };
  if (endpoint.length > MAX_ENDPOINT_CHARS) return { error: `the subscription endpoint is ${endpoint.length} characters; at most ${MAX_ENDPOINT_CHARS} are accepted` };
  let url: URL;
  try {
    url = new URL(endpoint);
  } catch {
    return { error: `the subscription endpoint is not a URL: ${JSON.stringify(endpoint.slice(0, 80))}` };
  }
  if (url.protocol !== 'https:') return { error: `the subscription endpoint must be an https:// URL (RFC 8030); got ${url.protocol}//…` };
  if (url.username !== '' || url.password !== '') return { error: 'the subscription endpoint must not carry a user name or password' };
  if (url.hash !== '') return { error: 'the subscription endpoint must not have a #fragment' };
  if (url.hostname === 'android.googleapis.com' && url.pathname.startsWith('/gcm/send')) {
    return { error: 'the subscription endpoint is a legacy GCM endpoint (shut down in 2019); the page must subscribe again' };
  }
  if (!isObject(keys)) return { error: 'the Web Push subscription needs "keys": {"p256dh", "auth"}' };
  const extraKeys = Object.keys(keys).filter((k) => k !== 'p256dh' && k !== 'auth');
  if (extraKeys.length > 0) return { error: `unknown key ${extraKeys.map((k) => JSON.stringify(`keys.${k}`)).join(', ')} in the Web Push subscription; expected keys.p256dh and keys.auth` };
  if (typeof keys.p256dh !== 'string') return { error: 'the Web Push subscription needs keys.p256dh (base64url, the browser\'s P-256 public key)' };
  if (typeof keys.auth !== 'string') return { error: 'the Web Push subscription needs keys.auth (base64url, 16 bytes)' };
  const p256dh = base64Bytes(keys.p256dh);
  if (p256dh === undefined) return { error: 'keys.p256dh is not base64url' };
  if (p256dh.length !== 65 || p256dh[0] !== 0x04) {
    return { error: `keys.p256dh must be an uncompressed P-256 point (65 bytes starting 0x04); got ${p256dh.length} bytes` };
  }
  try {
    ECDH.convertKey(p256dh, 'prime256v1');
  } catch {
    return { error: 'keys.p256dh is not a point on the P-256 curve' };
  }
  const auth = base64Bytes(keys.auth);
  if (auth === undefined) return { error: 'keys.auth is not base64url' };
  if (auth.length !== 16) return { error: `keys.auth must be exactly 16 bytes (RFC 8291); got ${auth.length}` };
  return { endpoint, keys: { p256dh: p256dh.toString('base64url'), auth: auth.toString('base64url') } };
}

/**
 * The canonical target string of a subscription, as the device directory keeps it: compact JSON
 * `{"endpoint":"…","keys":{"p256dh":"…","auth":"…"}}` in that key order, base64url without
 * padding. One browser subscription is one target however it was spelt.
 */
export function subscriptionTarget(s: WebPushSubscription): string {
  return JSON.stringify({ endpoint: s.endpoint, keys: { p256dh: s.keys.p256dh, auth: s.keys.auth } });
}

/** `checkTarget` of the webpush type: a problem or undefined. */
export function checkSubscription(target: string): string | undefined {
  const s = parseSubscription(target);
  return 'error' in s ? s.error : undefined;
}

/** `normalizeTarget` of the webpush type: the canonical JSON of a valid subscription. */
export function normalizeSubscription(target: string): string {
  const s = parseSubscription(target);
  return 'error' in s ? target : subscriptionTarget(s);
}

/** The push service's origin of a subscription target: the VAPID audience (RFC 8292 section 2). */
export function audienceOf(endpoint: string): string {
  return new URL(endpoint).origin;
}
