import type { Message } from '../../types.js';

/**
 * Largest plaintext that fits one aes128gcm record in the 4096 bytes of payload every push
 * service must accept (RFC 8030 section 7.2): 4096 - 86 (salt, record size, key id length, the
 * 65-byte key id) - 16 (the AEAD tag) - 1 (the padding delimiter). RFC 8291 section 4.
 */
export const WEBPUSH_MAX_PLAINTEXT_BYTES = 3993;

/**
 * What the service worker (`/notify-sw.js`) receives: the JSON text of this object, encrypted.
 * `title` and `body` are what the notification shows; `data` is the message's custom data
 * (`data.url`, when a string, is the page a click opens).
 */
export interface WebPushPayload {
  id: string;
  title?: string;
  body?: string;
  badge?: number;
  data?: Record<string, unknown>;
}

/** Stage 1, packaging: the plaintext for one message. */
export interface WebPushPackage {
  payload: WebPushPayload;
  /** The JSON text that is encrypted. */
  text: string;
  bytes: number;
}

/**
 * Packages a message for Web Push (pure; no I/O): `{id, title, body, badge, data}` with what
 * the message has (`msg` becomes `body`). A data-only message (the original
 * `{"uid":"uid1","percent":"88%"}`) is sent as it is: browsers show a notification for every
 * push (userVisibleOnly), so the service worker shows its data as the body. A payload whose
 * JSON is over WEBPUSH_MAX_PLAINTEXT_BYTES is refused here, before anything is sent.
 */
export function toWebPushPayload(msg: Message): WebPushPackage | { error: string } {
  const payload: WebPushPayload = { id: msg.id };
  if (msg.title !== undefined) payload.title = msg.title;
  if (msg.msg !== undefined) payload.body = msg.msg;
  if (msg.badge !== undefined) payload.badge = msg.badge;
  if (msg.data !== undefined && Object.keys(msg.data).length > 0) payload.data = { ...msg.data };
  const text = JSON.stringify(payload);
  const bytes = Buffer.byteLength(text);
  if (bytes > WEBPUSH_MAX_PLAINTEXT_BYTES) {
    return { error: `PayloadTooLarge: the Web Push payload would be ${bytes} bytes; at most ${WEBPUSH_MAX_PLAINTEXT_BYTES} fit the 4096 bytes every push service accepts` };
  }
  return { payload, text, bytes };
}

/** The TTL header (seconds) for a message: the shorter of its own ttl (when it has one) and the transport's. */
export function ttlSeconds(msg: Message, defaultTtlMs: number): number {
  const ms = msg.ttlMs === undefined ? defaultTtlMs : Math.min(msg.ttlMs, defaultTtlMs);
  return Math.max(0, Math.ceil(ms / 1000));
}
