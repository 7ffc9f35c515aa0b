import { ECDH, createECDH } from 'node:crypto';
import { createRequire } from 'node:module';
import type * as WebPushLib from 'web-push';

// web-push is CommonJS and pulls in asn1.js, jws and http_ece: load it only when it is used,
// so CLI commands that never touch Web Push start fast.
const require = createRequire(import.meta.url);
export const loadWebPush = (): typeof WebPushLib => require('web-push') as typeof WebPushLib;

/** A VAPID key pair (RFC 8292), base64url without padding, as `notify vapid` prints it. */
export interface VapidKeys {
  /** The uncompressed P-256 public key (65 bytes): what pages subscribe with (`applicationServerKey`). */
  publicKey: string;
  /** The private scalar (32 bytes). A secret: it signs every push. */
  privateKey: string;
}

/** A fresh key pair, made by web-push's `generateVAPIDKeys()`. */
export function generateVapidKeys(): VapidKeys {
  return loadWebPush().generateVAPIDKeys();
}

function b64url(text: string): Buffer | undefined {
  return /^[A-Za-z0-9_-]+$/.test(text) ? Buffer.from(text, 'base64url') : undefined;
}

/** What is wrong with a VAPID subject, or undefined: a mailto: or https: URL (RFC 8292 section 2.1). */
export function checkVapidSubject(subject: string): string | undefined {
  let url: URL;
  try {
    url = new URL(subject);
  } catch {
    return 'must be a mailto: or https: URL where the push service can reach you, e.g. "mailto:ops@example.com"';
  }
  if (url.protocol !== 'mailto:' && url.protocol !== 'https:') return `must be a mailto: or https: URL, got a ${url.protocol} URL`;
  if (url.protocol === 'https:' && url.hostname === 'localhost') return "must not point at localhost: Apple's push service refuses it (BadJwtToken)";
  return undefined;
}

/** What is wrong with a VAPID public key, or undefined. Never quotes the value. */
export function checkVapidPublicKey(key: string): string | undefined {
  const bytes = b64url(key);
  if (bytes === undefined) return 'must be base64url (A-Z a-z 0-9 - _, no padding), as notify vapid prints it';
  if (bytes.length !== 65 || bytes[0] !== 0x04) return `must be an uncompressed P-256 public key (65 bytes once decoded), got ${bytes.length} bytes`;
  try {
    ECDH.convertKey(bytes, 'prime256v1');
  } catch {
    return 'is not a point on the P-256 curve';
  }
  return undefined;
}

/** What is wrong with a VAPID private key, or undefined. Never quotes the value. */
export function checkVapidPrivateKey(key: string): string | undefined {
  const bytes = b64url(key);
  if (bytes === undefined) return 'must be base64url (A-Z a-z 0-9 - _, no padding), as notify vapid prints it';
  if (bytes.length !== 32) return `must be a P-256 private key (32 bytes once decoded), got ${bytes.length} bytes`;
  try {
    createECDH('prime256v1').setPrivateKey(bytes);
  } catch {
    return 'is not a valid P-256 private key';
  }
  return undefined;
}

/** True when `publicKey` is the public half of `privateKey` (both valid). */
export function vapidKeysMatch(publicKey: string, privateKey: string): boolean {
  const ecdh = createECDH('prime256v1');
  ecdh.setPrivateKey(Buffer.from(privateKey, 'base64url'));
  return ecdh.getPublicKey().equals(Buffer.from(publicKey, 'base64url'));
}

/** How long a VAPID JWT is valid (RFC 8292 allows at most 24 h; web-push's default is 12 h). */
export const VAPID_JWT_LIFETIME_S = 12 * 3600;
/** A cached JWT is renewed this long before it expires. */
const RENEW_BEFORE_S = 3600;
/** Push service origins whose JWT is cached at most (there are a handful in practice). */
const MAX_AUDIENCES = 256;

/**
 * The `Authorization: vapid t=…, k=…` header per push service origin (the JWT's `aud`),
 * signed by web-push's `getVapidHeaders` and reused until an hour before it expires: one ES256
 * signature per push service every 11 hours instead of one per request.
 */
export class VapidSigner {
  readonly #cache = new Map<string, { header: string; renewAtMs: number }>();

  constructor(
    private readonly subject: string,
    private readonly publicKey: string,
    private readonly privateKey: string,
  ) {}

  authorization(audience: string, nowMs = Date.now()): string {
    const hit = this.#cache.get(audience);
    if (hit !== undefined && hit.renewAtMs > nowMs) return hit.header;
    const exp = Math.floor(nowMs / 1000) + VAPID_JWT_LIFETIME_S;
    const { Authorization } = loadWebPush().getVapidHeaders(audience, this.subject, this.publicKey, this.privateKey, 'aes128gcm', exp);
    if (this.#cache.size >= MAX_AUDIENCES && hit === undefined) this.#cache.clear();
    this.#cache.set(audience, { header: Authorization, renewAtMs: (exp - RENEW_BEFORE_S) * 1000 });
    return Authorization;
  }
}
