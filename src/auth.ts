import { createHmac, timingSafeEqual } from 'node:crypto';

/**
 * Connection tokens: proof, from a backend that knows `ws.secret`, that a page may bind a uid
 * until a time. The format is ours and small:
 *
 *   nt1.<base64url of {"uid":"…","exp":<unix seconds>}>.<base64url of HMAC-SHA256(secret, "nt1." + payload)>
 *
 * A backend can make one with `notify token --uid UID --ttl 1h`, or in a few lines of any
 * language (see the README).
 */
const PREFIX = 'nt1.';

/** WebSocket close codes for refused binds (documented in the README). */
export const AUTH_CLOSE = {
  /** The token is not in our format. */
  malformed: 4400,
  /** ws.auth is token and the bind had none. */
  missing: 4401,
  /** The signature does not match (another secret, or an edited token). */
  forged: 4403,
  /** The token is for another uid. */
  otherUid: 4406,
  /** No uid bound within ws.bindTimeout. */
  bindTimeout: 4408,
  /** The token has expired. */
  expired: 4410,
  /** The uid has limits.sessionsPerUid sessions already. */
  tooManySessions: 4429,
} as const;

/**
 * True when `text` is the one base64url spelling of its bytes: no padding, no characters
 * outside the alphabet (Buffer skips them), and zero unused bits in the last character (which
 * Buffer ignores, so "…Q" and "…R" can decode alike). One token, one spelling: an edited
 * token never passes as the original.
 */
function isCanonicalBase64url(text: string): boolean {
  return /^[A-Za-z0-9_-]*$/.test(text) && Buffer.from(text, 'base64url').toString('base64url') === text;
}

function sign(secret: string, payload: string): Buffer {
  return createHmac('sha256', secret).update(PREFIX + payload).digest();
}

/** A token for `uid` valid until `expiresAt` (unix seconds). */
export function makeToken(secret: string, uid: string, expiresAt: number): string {
  const payload = Buffer.from(JSON.stringify({ uid, exp: Math.floor(expiresAt) })).toString('base64url');
  return `${PREFIX}${payload}.${sign(secret, payload).toString('base64url')}`;
}

export type TokenCheck = { ok: true; exp: number } | { ok: false; code: number; reason: string };

/** Checks that `token` was signed with `secret`, is for `uid`, and has not expired (at `nowS`). */
export function checkToken(secret: string, token: string | undefined, uid: string, nowS = Date.now() / 1000): TokenCheck {
  if (token === undefined || token === '') return { ok: false, code: AUTH_CLOSE.missing, reason: 'a token is required (ws.auth: token)' };
  const parts = token.split('.');
  if (parts.length !== 3 || `${parts[0]}.` !== PREFIX) return { ok: false, code: AUTH_CLOSE.malformed, reason: 'malformed token' };
  const [, payload = '', sig = ''] = parts;
  if (!isCanonicalBase64url(payload) || !isCanonicalBase64url(sig)) return { ok: false, code: AUTH_CLOSE.malformed, reason: 'malformed token' };
  const given = Buffer.from(sig, 'base64url');
  const expected = sign(secret, payload);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    return { ok: false, code: AUTH_CLOSE.forged, reason: 'token signature does not match' };
  }
  let claims: { uid?: unknown; exp?: unknown };
  try {
    claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as typeof claims;
  } catch {
    return { ok: false, code: AUTH_CLOSE.malformed, reason: 'malformed token' };
  }
  if (claims === null || typeof claims !== 'object' || typeof claims.uid !== 'string' || typeof claims.exp !== 'number') {
    return { ok: false, code: AUTH_CLOSE.malformed, reason: 'malformed token' };
  }
  if (claims.uid !== uid) return { ok: false, code: AUTH_CLOSE.otherUid, reason: 'token is for another uid' };
  if (claims.exp <= nowS) return { ok: false, code: AUTH_CLOSE.expired, reason: 'token expired' };
  return { ok: true, exp: claims.exp };
}
