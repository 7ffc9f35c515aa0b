import type { Message } from '../../types.js';
import { parseRetryAfter } from '../retry.js';

/** Largest payload FCM takes for a message to a token (notification and data together). */
export const FCM_MAX_PAYLOAD_BYTES = 4096;
/** Longest time to live FCM takes: 28 days. */
export const FCM_MAX_TTL_S = 2_419_200;

/**
 * Data keys FCM refuses or keeps for itself: the FCM v1 reference for `Message.data` ("from",
 * "message_type", any word starting with "google." or "gcm."), and the legacy request keys the
 * Android client treats as its own (collapse_key). https://firebase.google.com/docs/reference/fcm/rest/v1/projects.messages
 */
const RESERVED_KEYS: ReadonlySet<string> = new Set(['from', 'message_type', 'collapse_key']);
const RESERVED_PREFIXES = ['google.', 'gcm.'] as const;

/** The FCM v1 `message`, without its `token`. */
export interface FcmMessage {
  notification?: { title?: string; body?: string };
  data?: Record<string, string>;
  android?: { priority?: 'HIGH' | 'NORMAL'; ttl?: string; notification?: { sound?: string; notification_count?: number } };
}

/** Stage 1, packaging: what one message becomes on the wire to FCM, for any token. */
export interface FcmPackage {
  message: FcmMessage;
  /** The request body after `"token":"…",` (see `fcmRequestBody`). */
  rest: string;
  /** Size of the payload FCM counts (notification and data), in bytes. */
  bytes: number;
}

/** A data value as FCM takes it: a string (numbers and booleans as written, anything else as JSON). */
export function fcmDataValue(v: unknown): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean' || typeof v === 'bigint') return String(v);
  return JSON.stringify(v) ?? 'null';
}

/** Why FCM would refuse this data key, or undefined. */
export function reservedDataKey(key: string): string | undefined {
  if (RESERVED_KEYS.has(key)) return `data key "${key}" is reserved by FCM`;
  const prefix = RESERVED_PREFIXES.find((p) => key.toLowerCase().startsWith(p));
  if (prefix) return `data key "${key}" is reserved by FCM (keys starting with "${prefix}" are FCM's)`;
  return undefined;
}

/**
 * Packages a message for FCM HTTP v1 (pure; no I/O).
 *
 * - With `title` and/or `msg`: a notification message, `notification: {title, body}`, with the
 *   data beside it; `sound` and `badge` go to `android.notification` (sound, notification_count).
 * - Without them: a data message (the app's code gets it, also in the background) with
 *   `android.priority: HIGH` so that it is delivered at once, even in Doze.
 * Data values are strings on the wire: numbers and booleans as written, objects, arrays and null
 * as JSON. A message ttl becomes `android.ttl` ("3600s", whole seconds rounded up, at most 28
 * days). Reserved data keys and a payload over 4096 bytes are refused here, before anything is sent.
 */
export function toFcmMessage(msg: Pick<Message, 'title' | 'msg' | 'badge' | 'sound' | 'data' | 'ttlMs'>): FcmPackage | { error: string } {
  const message: FcmMessage = {};
  const hasAlert = msg.title !== undefined || msg.msg !== undefined;
  if (hasAlert) {
    const n: { title?: string; body?: string } = {};
    if (msg.title !== undefined) n.title = msg.title;
    if (msg.msg !== undefined) n.body = msg.msg;
    message.notification = n;
  }
  if (msg.data !== undefined) {
    // No prototype: a data key "__proto__" is a key like any other.
    const data = Object.create(null) as Record<string, string>;
    for (const [key, value] of Object.entries(msg.data)) {
      const reserved = reservedDataKey(key);
      if (reserved) return { error: reserved };
      data[key] = fcmDataValue(value);
    }
    if (Object.keys(data).length > 0) message.data = data;
  }
  const android: NonNullable<FcmMessage['android']> = {};
  if (!hasAlert) android.priority = 'HIGH';
  if (msg.ttlMs !== undefined) android.ttl = `${Math.min(FCM_MAX_TTL_S, Math.ceil(Math.max(0, msg.ttlMs) / 1000))}s`;
  if (hasAlert && (msg.sound !== undefined || msg.badge !== undefined)) {
    android.notification = {};
    if (msg.sound !== undefined) android.notification.sound = msg.sound;
    if (msg.badge !== undefined) android.notification.notification_count = msg.badge;
  }
  if (Object.keys(android).length > 0) message.android = android;
  const bytes = Buffer.byteLength(JSON.stringify({ notification: message.notification, data: message.data }));
  if (bytes > FCM_MAX_PAYLOAD_BYTES) {
    return { error: `payload too large: the FCM payload (notification and data) would be ${bytes} bytes; FCM takes at most ${FCM_MAX_PAYLOAD_BYTES}` };
  }
  return { message, rest: JSON.stringify(message).slice(1), bytes };
}

/** The body of `messages:send` for one token: `{"message":{"token":…,…}}`. */
export function fcmRequestBody(pkg: FcmPackage, token: string): string {
  return `{"message":{"token":${JSON.stringify(token)}${pkg.rest === '}' ? '' : ','}${pkg.rest}}`;
}

/** FCM's answer to one send, as notify acts on it. */
export type FcmOutcome =
  | { kind: 'sent'; id: string | undefined }
  /** Permanent for this token; `prune`: the token is dead or not this project's, retired for good. */
  | { kind: 'rejected'; reason: string; prune: boolean }
  /** Transient (429, 500, 503, ...): retry, no sooner than retryAfterMs when given. */
  | { kind: 'retry'; reason: string; retryAfterMs?: number }
  /** 401 UNAUTHENTICATED: the access token was not accepted; one fresh token may fix it. */
  | { kind: 'unauthenticated'; reason: string }
  /** A configuration problem (THIRD_PARTY_AUTH_ERROR, no permission, no such project): no token is to blame. */
  | { kind: 'config'; reason: string };

interface FcmErrorBody {
  error?: {
    code?: unknown;
    message?: unknown;
    status?: unknown;
    details?: { '@type'?: unknown; errorCode?: unknown; fieldViolations?: { field?: unknown; description?: unknown }[] }[];
  };
}

const FCM_ERROR_TYPE = 'type.googleapis.com/google.firebase.fcm.v1.FcmError';
const BAD_REQUEST_TYPE = 'type.googleapis.com/google.rpc.BadRequest';

/** Whether a 400 INVALID_ARGUMENT is about the registration token (then the token is bad for good). */
function aboutToken(message: string, violations: { field?: unknown; description?: unknown }[]): boolean {
  if (/registration[ -]token/i.test(message)) return true;
  return violations.some(
    (v) => (typeof v.field === 'string' && /(^|\.)token$/.test(v.field)) || (typeof v.description === 'string' && /registration[ -]token/i.test(v.description)),
  );
}

const short = (s: string): string => {
  const flat = s.replace(/\s+/g, ' ').trim();
  return flat.length > 200 ? `${flat.slice(0, 200)}…` : flat;
};

/**
 * What to do with one FCM answer (pure). The error code is read as firebase-admin does: the
 * FcmError detail's `errorCode` first, then `error.status`, then the HTTP status.
 * https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode
 * - 200: sent; the id is the message `name` FCM answered.
 * - UNREGISTERED (404), SENDER_ID_MISMATCH (403), and an INVALID_ARGUMENT (400) about the
 *   registration token: rejected, and the token is retired.
 * - Any other INVALID_ARGUMENT (the message itself): rejected, not retried, the token kept.
 * - QUOTA_EXCEEDED (429), UNAVAILABLE (503), INTERNAL (500), other 5xx and 408: retried,
 *   honouring Retry-After.
 * - THIRD_PARTY_AUTH_ERROR, PERMISSION_DENIED (403 without SENDER_ID_MISMATCH), and a 404 that
 *   is not UNREGISTERED (a wrong project or url): configuration errors; no token is retired
 *   for them, since every token would be.
 * - 401 UNAUTHENTICATED: the access token was refused (`unauthenticated`: one fresh token).
 */
export function classifyFcmAnswer(status: number, body: string, headers: { get(name: string): string | null }): FcmOutcome {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    parsed = undefined;
  }
  if (status >= 200 && status < 300) {
    const name = (parsed as { name?: unknown } | undefined)?.name;
    return { kind: 'sent', id: typeof name === 'string' ? name : undefined };
  }
  const err = (parsed as FcmErrorBody | undefined)?.error;
  const details = Array.isArray(err?.details) ? err.details : [];
  const fcmCode = details.find((d) => d?.['@type'] === FCM_ERROR_TYPE && typeof d.errorCode === 'string')?.errorCode as string | undefined;
  const statusName = typeof err?.status === 'string' ? err.status : undefined;
  const message = typeof err?.message === 'string' ? err.message : '';
  const violations = details.filter((d) => d?.['@type'] === BAD_REQUEST_TYPE).flatMap((d) => (Array.isArray(d.fieldViolations) ? d.fieldViolations : []));
  const code = fcmCode ?? statusName;
  const said = message ? ` (${short(message)})` : err === undefined && body.trim() !== '' ? ` (${short(body)})` : '';
  const reason = `${status}${code ? ` ${code}` : ''}${said}`;
  const retryAfterMs = parseRetryAfter(headers.get('retry-after') ?? undefined);
  const retry = (): FcmOutcome => (retryAfterMs === undefined ? { kind: 'retry', reason } : { kind: 'retry', reason, retryAfterMs });

  if (code === 'UNREGISTERED') return { kind: 'rejected', reason, prune: true };
  if (code === 'SENDER_ID_MISMATCH') return { kind: 'rejected', reason, prune: true };
  if (code === 'THIRD_PARTY_AUTH_ERROR' || code === 'APNS_AUTH_ERROR') {
    return { kind: 'config', reason: `${reason}: the APNs or Web Push credentials in the Firebase project are missing or invalid (Firebase console, Cloud Messaging)` };
  }
  if (code === 'QUOTA_EXCEEDED' || code === 'RESOURCE_EXHAUSTED' || code === 'UNAVAILABLE' || code === 'INTERNAL') return retry();
  if (code === 'INVALID_ARGUMENT' || (code === undefined && status === 400)) {
    return { kind: 'rejected', reason, prune: aboutToken(message, violations) };
  }
  if (status === 401 || code === 'UNAUTHENTICATED') return { kind: 'unauthenticated', reason };
  if (status === 403 || code === 'PERMISSION_DENIED') {
    return { kind: 'config', reason: `${reason}: the service account may not send for this project (check projectId and the account's roles)` };
  }
  if (status === 404 || code === 'NOT_FOUND') return { kind: 'config', reason: `${reason}: no such project or endpoint (check projectId and url)` };
  if (status === 408 || status === 429 || status >= 500) return retry();
  return { kind: 'rejected', reason, prune: false };
}
