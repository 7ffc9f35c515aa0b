import { createHmac, timingSafeEqual } from 'node:crypto';
import { SignJWT, decodeProtectedHeader, errors as joseErrors, jwtVerify } from 'jose';

/**
 * Connection tokens: proof, from a backend that knows `ws.secret`, that a page may bind a uid
 * until a time. The format is ours and small:
 *
 *   nt1.<base64url of {"uid":"…","exp":<unix seconds>}>.<base64url of HMAC-SHA256(secret, "nt1." + payload)>
 *
 * A backend can make one with `notify token --uid UID --ttl 1h`, or in a few lines of any
 * language (see the README).
 *
 * A standard JWT is accepted too (Centrifugo's convention, so a backend uses its usual JWT
 * library): HS256 signed with the same secret, the uid in `sub`, `exp` required; verified with
 * jose (checkJwt). checkBindToken is the one entry point of a bind: `nt1.` tokens are checked
 * synchronously, a JWT asynchronously (jose verifies with Web Crypto).
 */
const PREFIX = 'nt1.';

/** WebSocket close codes for refused binds (documented in the README). */
export const AUTH_CLOSE = {
  /** The token is not in our format, or a JWT without `exp` or `sub`. */
  malformed: 4400,
  /** ws.auth is token and the bind had none. */
  missing: 4401,
  /** The signature does not match (another secret, or an edited token), or a JWT not signed with HS256 (`alg: none` included). */
  forged: 4403,
  /** The token is for another uid. */
  otherUid: 4406,
  /** No uid bound within ws.bindTimeout. */
  bindTimeout: 4408,
  /** The token has expired (or a JWT whose `nbf` is still ahead). */
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

/**
 * Seconds a JWT's `exp` (and `nbf`) may be off, for backends whose clocks differ a little from
 * ours. `nt1.` tokens are made by `notify token` or a backend from its own clock and get none.
 */
export const JWT_CLOCK_SKEW_S = 5;

/** The one algorithm a JWT may use: HMAC-SHA256 with ws.secret (as ws.secret is a shared secret). */
const JWT_ALG = 'HS256';

let keyCache: { secret: string; key: Uint8Array } | undefined;

function jwtKey(secret: string): Uint8Array {
  if (keyCache?.secret !== secret) keyCache = { secret, key: new TextEncoder().encode(secret) };
  return keyCache.key;
}

/** A JWT for `uid` (in `sub`) valid until `expiresAt` (unix seconds): HS256 with `secret`, with `iat`. */
export function makeJwt(secret: string, uid: string, expiresAt: number, nowS = Date.now() / 1000): Promise<string> {
  return new SignJWT({})
    .setProtectedHeader({ alg: JWT_ALG, typ: 'JWT' })
    .setSubject(uid)
    .setIssuedAt(Math.floor(nowS))
    .setExpirationTime(Math.floor(expiresAt))
    .sign(jwtKey(secret));
}

/** The alg a JWT names in its header, for the refusal's reason (undefined: unreadable). */
function algOf(token: string): string | undefined {
  try {
    const alg = decodeProtectedHeader(token).alg;
    return typeof alg === 'string' ? alg.slice(0, 20) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Checks a JWT (jose's jwtVerify): HS256 only, signed with `secret`, `exp` and `sub` present,
 * `sub` equal to `uid`, not expired and not before its `nbf`, JWT_CLOCK_SKEW_S either way.
 * Refusals use AUTH_CLOSE: 4400 not a JWT / no `exp` or `sub` / a claim of the wrong type;
 * 4403 bad signature or another alg; 4406 another uid; 4410 expired or not yet valid.
 * Never rejects.
 */
export async function checkJwt(secret: string, token: string, uid: string, nowS = Date.now() / 1000): Promise<TokenCheck> {
  let payload: { sub?: unknown; exp?: unknown };
  try {
    ({ payload } = await jwtVerify(token, jwtKey(secret), {
      algorithms: [JWT_ALG],
      requiredClaims: ['exp', 'sub'],
      clockTolerance: JWT_CLOCK_SKEW_S,
      currentDate: new Date(nowS * 1000),
    }));
  } catch (err) {
    return jwtRefusal(err, token);
  }
  // jose checks both; kept so the types below hold whatever a jose version does.
  if (typeof payload.sub !== 'string') return { ok: false, code: AUTH_CLOSE.malformed, reason: 'malformed token: sub must be a string' };
  if (typeof payload.exp !== 'number') return { ok: false, code: AUTH_CLOSE.malformed, reason: 'malformed token: exp must be a number' };
  if (payload.sub !== uid) return { ok: false, code: AUTH_CLOSE.otherUid, reason: 'token is for another uid' };
  return { ok: true, exp: payload.exp };
}

function jwtRefusal(err: unknown, token: string): TokenCheck & { ok: false } {
  if (err instanceof joseErrors.JOSEAlgNotAllowed) {
    const alg = algOf(token);
    return { ok: false, code: AUTH_CLOSE.forged, reason: `token alg ${alg === undefined ? '(none given)' : JSON.stringify(alg)} is not accepted: sign with HS256` };
  }
  if (err instanceof joseErrors.JWSSignatureVerificationFailed) return { ok: false, code: AUTH_CLOSE.forged, reason: 'token signature does not match' };
  if (err instanceof joseErrors.JWTExpired) return { ok: false, code: AUTH_CLOSE.expired, reason: 'token expired' };
  if (err instanceof joseErrors.JWTClaimValidationFailed) {
    // Only a time check is "not yet": an nbf of the wrong type is malformed (jose's reason 'invalid').
    if (err.claim === 'nbf' && err.reason === 'check_failed') return { ok: false, code: AUTH_CLOSE.expired, reason: 'token not valid yet (nbf)' };
    if (err.claim === 'nbf') return { ok: false, code: AUTH_CLOSE.malformed, reason: 'malformed token: nbf must be a number' };
    if ((err.claim === 'exp' || err.claim === 'sub') && err.reason === 'missing') return { ok: false, code: AUTH_CLOSE.malformed, reason: `malformed token: no ${err.claim} claim (required)` };
    if (err.claim === 'exp' || err.claim === 'sub' || err.claim === 'iat') return { ok: false, code: AUTH_CLOSE.malformed, reason: `malformed token: ${err.claim} must be a ${err.claim === 'sub' ? 'string' : 'number'}` };
  }
  return { ok: false, code: AUTH_CLOSE.malformed, reason: 'malformed token' };
}

/**
 * The check of a bind under `ws.auth: token`: an `nt1.` token synchronously (checkToken), a
 * JWT (three dot-separated parts) with checkJwt, which answers through a promise.
 */
export function checkBindToken(secret: string, token: string | undefined, uid: string, nowS = Date.now() / 1000): TokenCheck | Promise<TokenCheck> {
  if (token === undefined || token === '' || token.startsWith(PREFIX)) return checkToken(secret, token, uid, nowS);
  if (token.split('.', 4).length !== 3) return { ok: false, code: AUTH_CLOSE.malformed, reason: 'malformed token' };
  return checkJwt(secret, token, uid, nowS);
}
