/**
 * A fake Web Push service (RFC 8030) for tests: a real `https.createServer` on 127.0.0.1 port 0
 * with a throwaway self-signed certificate (openssl), which the transport trusts through `ca`.
 *
 * Every POST to `/push/<id>` goes through what a push service checks, independently of the
 * web-push package that notify sends with (this file has its own RFC 8291/8292 code):
 * - VAPID (RFC 8292): `Authorization: vapid t=<JWT>, k=<key>`; the JWT is ES256 over the key
 *   `k` (and `k` is the expected public key), `aud` is this server's origin, `exp` is in the
 *   future and at most 24 h ahead, `sub` is a mailto: or https: URL. Missing: 401; bad: 403.
 * - `TTL` a non-negative integer, `Urgency` one of the four values, `Content-Encoding: aes128gcm`.
 * - The body is decrypted (RFC 8291 aes128gcm) with the subscription's private key and auth
 *   secret; one that does not decrypt is a 400.
 * Requests that pass are recorded with their plaintext and answered by `respond` (default 201
 * with a Location).
 */
import { createECDH, createPublicKey, createDecipheriv, hkdfSync, randomBytes, verify, type ECDH } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { selfSignedCert } from './fake-apns.js';

/** A browser's side of a subscription: its key pair and auth secret, and the subscription JSON it gives. */
export interface TestSubscription {
  /** The id in the endpoint path (`/push/<id>`). */
  id: string;
  subscription: { endpoint: string; keys: { p256dh: string; auth: string } };
  /** The canonical target string notify keeps (compact JSON, endpoint then keys). */
  target: string;
  ecdh: ECDH;
  auth: Buffer;
}

export interface FakePushRequest {
  id: string;
  /** 1 for the first request to this subscription, 2 for the next, ... */
  attempt: number;
  headers: Record<string, string | string[] | undefined>;
  ttl: number;
  urgency: string | undefined;
  jwt: { header: Record<string, unknown>; claims: Record<string, unknown> };
  /** The decrypted body. */
  plaintext: string;
  bodyBytes: number;
  receivedAt: number;
}

export interface FakePushAnswer {
  status: number;
  headers?: Record<string, string>;
  body?: string;
}

export interface FakeWebPushOptions {
  /** The VAPID public key notify signs with (base64url): `k` must be it. */
  vapidPublicKey: string;
  /** Answers a request that passed the checks; undefined: 201 Created. */
  respond?: (req: FakePushRequest) => FakePushAnswer | undefined | Promise<FakePushAnswer | undefined>;
}

export interface FakeWebPush {
  port: number;
  origin: string;
  /** The server certificate PEM (the transport's `ca`). */
  ca: string;
  /** Requests that passed the checks, in arrival order. */
  requests: FakePushRequest[];
  /** Requests refused by the checks: status and why. */
  refused: { id: string; status: number; why: string }[];
  /** A new browser subscription on this service. */
  subscribe(): TestSubscription;
  close(): Promise<void>;
}

const b64url = (b: Buffer): string => b.toString('base64url');

/** Decrypts an aes128gcm body (RFC 8188 framing, RFC 8291 keys) for the browser `ecdh`/`auth`; throws when it does not decrypt. */
export function decryptAes128gcm(body: Buffer, ecdh: ECDH, auth: Buffer): string {
  if (body.length < 21 + 65 + 17) throw new Error(`body of ${body.length} bytes is too short`);
  const salt = body.subarray(0, 16);
  const rs = body.readUInt32BE(16);
  const idlen = body[20] as number;
  if (idlen !== 65) throw new Error(`key id of ${idlen} bytes; expected the 65-byte sender key`);
  const senderKey = body.subarray(21, 21 + idlen);
  const records = body.subarray(21 + idlen);
  if (records.length > rs) throw new Error(`more than one record (rs ${rs}, ${records.length} bytes)`);
  const uaPublic = ecdh.getPublicKey();
  const secret = ecdh.computeSecret(senderKey);
  const info = Buffer.concat([Buffer.from('WebPush: info\0'), uaPublic, senderKey]);
  const ikm = Buffer.from(hkdfSync('sha256', secret, auth, info, 32));
  const cek = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: aes128gcm\0'), 16));
  const nonce = Buffer.from(hkdfSync('sha256', ikm, salt, Buffer.from('Content-Encoding: nonce\0'), 12));
  const decipher = createDecipheriv('aes-128-gcm', cek, nonce);
  decipher.setAuthTag(records.subarray(records.length - 16));
  const padded = Buffer.concat([decipher.update(records.subarray(0, records.length - 16)), decipher.final()]);
  let end = padded.length - 1;
  while (end >= 0 && padded[end] === 0) end--;
  if (end < 0 || padded[end] !== 0x02) throw new Error('no last-record delimiter (0x02)');
  return padded.subarray(0, end).toString('utf8');
}

/** Verifies a VAPID JWT (ES256) with the raw public key `k`; returns its parts or why it is bad. */
export function verifyVapidJwt(jwt: string, k: string, origin: string, nowS = Date.now() / 1000): { header: Record<string, unknown>; claims: Record<string, unknown> } | string {
  const parts = jwt.split('.');
  if (parts.length !== 3) return 'JWT is not three parts';
  const [h, c, sig] = parts as [string, string, string];
  let header: Record<string, unknown>;
  let claims: Record<string, unknown>;
  try {
    header = JSON.parse(Buffer.from(h, 'base64url').toString()) as Record<string, unknown>;
    claims = JSON.parse(Buffer.from(c, 'base64url').toString()) as Record<string, unknown>;
  } catch {
    return 'JWT parts are not JSON';
  }
  if (header.alg !== 'ES256') return `alg ${String(header.alg)}, expected ES256`;
  if (header.typ !== undefined && header.typ !== 'JWT') return `typ ${String(header.typ)}`;
  const raw = Buffer.from(k, 'base64url');
  if (raw.length !== 65) return 'k is not a 65-byte key';
  const key = createPublicKey({ key: { kty: 'EC', crv: 'P-256', x: b64url(raw.subarray(1, 33)), y: b64url(raw.subarray(33, 65)) }, format: 'jwk' });
  const ok = verify('sha256', Buffer.from(`${h}.${c}`), { key, dsaEncoding: 'ieee-p1363' }, Buffer.from(sig, 'base64url'));
  if (!ok) return 'bad ES256 signature';
  if (claims.aud !== origin) return `aud ${JSON.stringify(claims.aud)}, expected ${origin}`;
  const exp = Number(claims.exp);
  if (!Number.isInteger(exp) || exp <= nowS) return 'exp is not in the future';
  if (exp > nowS + 24 * 3600 + 60) return 'exp is more than 24 h ahead';
  if (typeof claims.sub !== 'string' || !/^(mailto:|https:)/.test(claims.sub)) return `sub ${JSON.stringify(claims.sub)} is not mailto: or https:`;
  return { header, claims };
}

/** A browser subscription on `origin` (its own key pair and auth secret). */
export function makeSubscription(origin: string, id = randomBytes(8).toString('hex')): TestSubscription {
  const ecdh = createECDH('prime256v1');
  ecdh.generateKeys();
  const auth = randomBytes(16);
  const subscription = { endpoint: `${origin}/push/${id}`, keys: { p256dh: b64url(ecdh.getPublicKey()), auth: b64url(auth) } };
  return { id, subscription, target: JSON.stringify(subscription), ecdh, auth };
}

/** Starts the fake on 127.0.0.1 port 0. */
export async function startFakeWebPush(opts: FakeWebPushOptions): Promise<FakeWebPush> {
  const dir = await mkdtemp(join(tmpdir(), 'notify-fake-webpush-'));
  const pems = await selfSignedCert(dir);
  const server: Server = createServer({ key: pems.key, cert: pems.cert, keepAlive: true });
  const sockets = new Set<Socket>();
  server.on('secureConnection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('tlsClientError', () => {});
  const subs = new Map<string, TestSubscription>();
  const attempts = new Map<string, number>();
  let origin = '';
  const fake: FakeWebPush = {
    port: 0,
    origin: '',
    ca: pems.cert,
    requests: [],
    refused: [],
    subscribe() {
      const s = makeSubscription(origin);
      subs.set(s.id, s);
      return s;
    },
    close: once(async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      await rm(dir, { recursive: true, force: true });
    }),
  };
  server.on('request', (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        const id = /^\/push\/([\w-]+)$/.exec(req.url ?? '')?.[1] ?? '';
        const refuse = (status: number, why: string) => {
          fake.refused.push({ id, status, why });
          res.writeHead(status, { 'content-type': 'text/plain' });
          res.end(why);
        };
        const sub = subs.get(id);
        if (req.method !== 'POST') return refuse(405, `method ${req.method}`);
        if (!sub) return refuse(404, 'no such subscription');
        const auth = req.headers.authorization;
        if (auth === undefined) return refuse(401, 'no Authorization header');
        const m = /^vapid t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)$/.exec(auth);
        if (!m) return refuse(403, `Authorization is not "vapid t=…, k=…": ${auth.slice(0, 40)}`);
        if (m[2] !== opts.vapidPublicKey) return refuse(403, 'k is not the expected VAPID public key');
        const jwt = verifyVapidJwt(m[1] as string, m[2] as string, origin);
        if (typeof jwt === 'string') return refuse(403, jwt);
        const ttl = req.headers.ttl;
        if (typeof ttl !== 'string' || !/^\d+$/.test(ttl)) return refuse(400, `TTL header ${JSON.stringify(ttl)}`);
        const urgency = req.headers.urgency as string | undefined;
        if (urgency !== undefined && !['very-low', 'low', 'normal', 'high'].includes(urgency)) return refuse(400, `Urgency ${urgency}`);
        if (req.headers['content-encoding'] !== 'aes128gcm') return refuse(400, `Content-Encoding ${String(req.headers['content-encoding'])}`);
        const body = Buffer.concat(chunks);
        let plaintext: string;
        try {
          plaintext = decryptAes128gcm(body, sub.ecdh, sub.auth);
        } catch (err) {
          return refuse(400, `does not decrypt: ${(err as Error).message}`);
        }
        const attempt = (attempts.get(id) ?? 0) + 1;
        attempts.set(id, attempt);
        const record: FakePushRequest = { id, attempt, headers: req.headers, ttl: Number(ttl), urgency, jwt, plaintext, bodyBytes: body.length, receivedAt: Date.now() };
        fake.requests.push(record);
        const answer = (await opts.respond?.(record)) ?? { status: 201, headers: { location: `${origin}/m/${id}-${attempt}` } };
        res.writeHead(answer.status, answer.headers ?? {});
        res.end(answer.body);
      })();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  fake.port = (server.address() as AddressInfo).port;
  origin = `https://127.0.0.1:${fake.port}`;
  fake.origin = origin;
  return fake;
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => (done ??= fn());
}
