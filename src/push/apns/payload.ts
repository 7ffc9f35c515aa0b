import type { MessageBody } from '../../types.js';

/** Largest payload APNs takes for alert and background pushes (VoIP allows 5120). */
export const APNS_MAX_PAYLOAD_BYTES = 4096;

/** Stage 1, packaging: what one message becomes on the wire to APNs. */
export interface ApnsPackage {
  /** The JSON body: custom data keys at the top level, beside `aps`. */
  payload: Record<string, unknown>;
  /** `apns-push-type`. */
  pushType: 'alert' | 'background';
  /** `apns-priority`: 10 send now; 5 power-aware (required for background pushes). */
  priority: 10 | 5;
  /** Size of the JSON body in bytes. */
  bytes: number;
}

/**
 * Packages a message for APNs (pure; no I/O).
 *
 * - With `title` and/or `msg`: an alert push, `aps.alert = {title, body}`, plus `badge` and
 *   `sound` when given; priority 10.
 * - With only `badge` and/or `sound`: an alert push that sets the badge or plays the sound.
 * - With none of them (the original `{"uid":"uid1","percent":"88%"}`): a background push,
 *   `aps.content-available = 1`, push type background, priority 5, which wakes the app
 *   without showing anything.
 * Every data key becomes a custom top-level key of the payload. A payload over 4096 bytes, or
 * data that uses the key `aps`, is refused here, before anything is sent.
 *
 * See developer.apple.com/documentation/usernotifications/generating-a-remote-notification.
 */
export function toApnsNotification(msg: MessageBody): ApnsPackage | { error: string } {
  const aps: Record<string, unknown> = {};
  const hasAlert = msg.title !== undefined || msg.msg !== undefined;
  if (hasAlert) {
    const alert: Record<string, string> = {};
    if (msg.title !== undefined) alert.title = msg.title;
    if (msg.msg !== undefined) alert.body = msg.msg;
    aps.alert = alert;
  }
  if (msg.badge !== undefined) aps.badge = msg.badge;
  if (msg.sound !== undefined) aps.sound = msg.sound;
  const visible = hasAlert || msg.badge !== undefined || msg.sound !== undefined;
  if (!visible) aps['content-available'] = 1;

  const payload: Record<string, unknown> = { aps };
  if (msg.data !== undefined) {
    if (Object.prototype.hasOwnProperty.call(msg.data, 'aps')) {
      return { error: 'data key "aps" is reserved by APNs' };
    }
    for (const [key, value] of Object.entries(msg.data)) payload[key] = value;
  }
  const bytes = Buffer.byteLength(JSON.stringify(payload));
  if (bytes > APNS_MAX_PAYLOAD_BYTES) {
    return { error: `PayloadTooLarge: the APNs payload would be ${bytes} bytes; APNs takes at most ${APNS_MAX_PAYLOAD_BYTES}` };
  }
  return { payload, pushType: visible ? 'alert' : 'background', priority: visible ? 10 : 5, bytes };
}

/** One result of `@parse/node-apn`'s `provider.send()` (doc/provider.markdown; shapes as it returns them). */
export interface ApnResult {
  device: string;
  'apns-id'?: string;
  status?: number | string;
  response?: { reason?: string; timestamp?: number | string };
  error?: Error;
}

export type ApnsOutcome =
  | { kind: 'sent'; apnsId: string | undefined }
  /** Permanent for this token; `prune` when the token is gone or not for this app. */
  | { kind: 'rejected'; reason: string; prune: boolean }
  /** Transient: worth another attempt. `freshToken`: the JWT expired; node-apn made a new one. */
  | { kind: 'retry'; reason: string; freshToken: boolean }
  /** Failed, and retrying cannot help now (the provider is shut down). */
  | { kind: 'failed'; reason: string };

/** Token errors after which Apple says to stop sending to the token. */
const DEAD_TOKEN: ReadonlySet<string> = new Set(['BadDeviceToken', 'DeviceTokenNotForTopic', 'Unregistered', 'ExpiredToken']);

/**
 * What to do with one APNs answer (pure). Follows Apple's "Handling error responses from APNs":
 * never retry BadDeviceToken, DeviceTokenNotForTopic, Unregistered, ExpiredToken (the token is
 * retired), nor other 4xx (a request or configuration problem); retry 429 and 5xx after a delay;
 * retry 403 ExpiredProviderToken once with a fresh JWT. An answer without a status (stream reset,
 * GOAWAY, timeout, connection lost) was not processed by APNs, or may not have been: retried.
 */
export function classifyApnsResult(r: ApnResult): ApnsOutcome {
  const status = r.status === undefined ? undefined : Number(r.status);
  if (status === undefined || Number.isNaN(status)) {
    if (!r.error) return { kind: 'sent', apnsId: r['apns-id'] };
    const reason = r.error.message;
    if (reason === 'client is destroyed') return { kind: 'failed', reason: 'APNs client is shut down' };
    return { kind: 'retry', reason, freshToken: false };
  }
  const name = r.response?.reason ?? (r.error ? r.error.message : undefined);
  const reason = name === undefined ? `${status}` : `${status} ${name}`;
  if (status === 403 && name === 'ExpiredProviderToken') return { kind: 'retry', reason, freshToken: true };
  if (status === 429 || status >= 500) return { kind: 'retry', reason, freshToken: false };
  if (status === 410 || (name !== undefined && DEAD_TOKEN.has(name))) {
    const ts = r.response?.timestamp;
    const since = ts !== undefined && !Number.isNaN(Number(ts)) ? ` (since ${new Date(Number(ts)).toISOString()})` : '';
    return { kind: 'rejected', reason: `${reason}${since}`, prune: true };
  }
  return { kind: 'rejected', reason, prune: false };
}
