import { makeToken } from '../auth.js';
import { parseDuration } from '../duration.js';
import { NotifyError, errorMessage } from '../errors.js';
import { uidProblem } from '../message.js';
import type { FailureRing } from '../obs/failures.js';

/** What POST /v1/tokens needs of the WebSocket settings (ws.auth, ws.secret). */
export interface WsAuth {
  mode: 'none' | 'token';
  secret: string | null;
}

/** Default validity of a token from POST /v1/tokens, as `notify token`'s --ttl. */
export const TOKEN_TTL_DEFAULT_MS = 3_600_000;
/** Longest validity POST /v1/tokens gives. */
export const TOKEN_TTL_MAX_MS = 366 * 86_400_000;

const bad = (message: string) => new NotifyError('NOTIFY_ERR_BAD_REQUEST', message, { status: 400 });

/**
 * POST /v1/tokens `{uid, ttl?}` -> `{uid, token, expiresAt}`: a connection token for `uid`
 * signed with ws.secret, as `notify token` prints (ttl: a duration such as "15m" or a number of
 * seconds; default 1h). 409 when ws.auth is not token: a token would bind nothing.
 */
export function mintToken(ws: WsAuth, body: unknown, nowMs = Date.now()): { uid: string; token: string; expiresAt: string } {
  if (ws.mode !== 'token' || !ws.secret) {
    throw new NotifyError('NOTIFY_ERR_WS_AUTH', 'connection tokens need ws.auth: token; this daemon runs ws.auth: none, where a page binds any uid without one', {
      status: 409,
    });
  }
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw bad('expected a JSON object {"uid", "ttl"?}, e.g. {"uid":"uid1","ttl":"1h"}');
  const { uid, ttl, ...rest } = body as Record<string, unknown>;
  const extra = Object.keys(rest);
  if (extra.length > 0) throw bad(`unknown field ${extra.map((k) => `"${k}"`).join(', ')}; expected uid, ttl`);
  if (typeof uid !== 'string') throw bad('"uid" is required: the uid the token lets a page bind');
  const problem = uidProblem(uid);
  if (problem) throw bad(`"uid" ${problem === 'empty' ? 'must not be empty' : 'is too long'}`);
  let ttlMs = TOKEN_TTL_DEFAULT_MS;
  if (ttl !== undefined) {
    try {
      ttlMs = parseDuration(ttl);
    } catch (err) {
      throw bad(`"ttl" ${errorMessage(err)}`);
    }
    if (ttlMs < 1000) throw bad('"ttl" must be at least 1s');
    if (ttlMs > TOKEN_TTL_MAX_MS) throw bad('"ttl" must be at most 366d');
  }
  const exp = Math.floor((nowMs + ttlMs) / 1000);
  return { uid, token: makeToken(ws.secret, uid, exp), expiresAt: new Date(exp * 1000).toISOString() };
}

/** GET /v1/failures?limit= -> `{failures: [...]}`, newest first (limit 1..kept; default 50). */
export function listFailures(ring: FailureRing, q: URLSearchParams): { failures: unknown[]; kept: number } {
  const raw = q.get('limit');
  let limit = 50;
  if (raw !== null) {
    limit = /^\d+$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isInteger(limit) || limit < 1 || limit > ring.capacity) {
      throw bad(`limit must be a whole number from 1 to ${ring.capacity}, got ${JSON.stringify(raw.slice(0, 40))}`);
    }
  }
  return { failures: ring.recent(limit), kept: ring.capacity };
}
