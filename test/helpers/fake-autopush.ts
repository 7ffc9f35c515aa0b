/**
 * A fake of Mozilla's push service (autopush) for a real Firefox: the WebSocket protocol Firefox
 * speaks to `dom.push.serverURL` (dom/push/PushServiceWebSocket.sys.mjs), and the HTTPS push
 * endpoint (RFC 8030) an application server POSTs to.
 *
 * WebSocket (plain ws:// on 127.0.0.1, which Firefox accepts with
 * `dom.push.testing.allowInsecureServerURL`), JSON text frames:
 * - `hello {uaid?, use_webpush}` → `hello {status: 200, uaid, use_webpush: true}` (a new uaid
 *   unless the client sent one), then any messages queued for that uaid;
 * - `register {channelID, key}` → `register {status: 200, channelID, pushEndpoint}` with
 *   `pushEndpoint` = `https://127.0.0.1:PORT/wpush/<channelID>`; `key` is the application
 *   server key the page subscribed with (base64url, padded), kept for the VAPID check;
 * - `unregister {channelID}` → `unregister {status: 200, channelID}`;
 * - `ack {updates: [{channelID, version, code}]}` is recorded (code 100: delivered to the
 *   service worker; 101: did not decrypt; 102: not delivered); `nack` too; `{}` (ping) → `{}`.
 *
 * HTTPS `POST /wpush/<channelID>` (a throwaway self-signed certificate; the sender trusts it
 * through `ca`): checked as autopush does, independently of what notify sends with — VAPID
 * `Authorization: vapid t=<JWT>, k=<key>` with `k` the key the channel was registered with and
 * the JWT verified (ES256, `aud` this origin, `exp`, `sub`), a `TTL`, `Content-Encoding:
 * aes128gcm`. The body is not decrypted here (only Firefox has the keys): it is relayed as
 * `notification {channelID, version, data: base64url(body), headers: {encoding: "aes128gcm"}}`
 * and the request answered 201 with a Location.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type WebSocket, WebSocketServer } from 'ws';
import { selfSignedCert } from './fake-apns.js';
import { verifyVapidJwt } from './fake-webpush.js';

export interface AutopushMessage {
  channelID: string;
  version: string;
  bodyBytes: number;
  ttl: number;
  urgency: string | undefined;
  jwt: { header: Record<string, unknown>; claims: Record<string, unknown> };
}

export interface FakeAutopush {
  /** `dom.push.serverURL`: ws://127.0.0.1:PORT/ */
  serverUrl: string;
  /** Origin of the push endpoints: https://127.0.0.1:PORT */
  origin: string;
  /** The endpoint certificate PEM (the sender's `ca`). */
  ca: string;
  /** Every frame Firefox sent, parsed, in order. */
  received: Record<string, unknown>[];
  /** Channels Firefox registered: channelID → the application server key (base64url, unpadded). */
  channels: Map<string, string>;
  /** POSTs that passed the checks and were relayed (or queued) to Firefox. */
  messages: AutopushMessage[];
  /** POSTs refused: status and why. */
  refused: { path: string; status: number; why: string }[];
  /** Acks Firefox sent: version → code. */
  acks: Map<string, number>;
  /** Resolves with the ack code Firefox gives for `version`. */
  acked(version: string): Promise<number>;
  close(): Promise<void>;
}

const unpad = (b64: string): string => Buffer.from(b64.replace(/=+$/, ''), 'base64url').toString('base64url');

export async function startFakeAutopush(): Promise<FakeAutopush> {
  const dir = await mkdtemp(join(tmpdir(), 'notify-fake-autopush-'));
  const pems = await selfSignedCert(dir);
  const sockets = new Set<Socket>();
  const track = (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  };

  const http = createHttpServer((_req, res) => res.writeHead(404).end());
  http.on('connection', track);
  const wss = new WebSocketServer({ server: http });
  const https = createHttpsServer({ key: pems.key, cert: pems.cert });
  https.on('connection', track);
  https.on('tlsClientError', () => {});

  /** The uaid each open client said hello with, and what waits for a uaid that is not connected. */
  const clients = new Map<string, WebSocket>();
  const channelUaid = new Map<string, string>();
  const queued = new Map<string, Record<string, unknown>[]>();
  const ackWaiters = new Map<string, (code: number) => void>();

  const fake: FakeAutopush = {
    serverUrl: '',
    origin: '',
    ca: pems.cert,
    received: [],
    channels: new Map(),
    messages: [],
    refused: [],
    acks: new Map(),
    acked(version) {
      const code = fake.acks.get(version);
      if (code !== undefined) return Promise.resolve(code);
      return new Promise((resolve) => ackWaiters.set(version, resolve));
    },
    close: async () => {
      // Stop listening first (Firefox reconnects at once), then drop every open connection.
      const closed = Promise.all([new Promise<void>((r) => http.close(() => r())), new Promise<void>((r) => https.close(() => r()))]);
      wss.close();
      for (const c of wss.clients) c.terminate();
      for (const s of sockets) s.destroy();
      await closed;
      await rm(dir, { recursive: true, force: true });
    },
  };

  wss.on('connection', (ws) => {
    let uaid: string | undefined;
    const reply = (m: Record<string, unknown>) => ws.send(JSON.stringify(m));
    ws.on('message', (raw) => {
      let m: Record<string, unknown>;
      try {
        m = JSON.parse(String(raw)) as Record<string, unknown>;
      } catch {
        ws.close(1002, 'not JSON');
        return;
      }
      fake.received.push(m);
      switch (m.messageType) {
        case 'hello': {
          uaid = typeof m.uaid === 'string' && m.uaid !== '' ? m.uaid : randomUUID().replace(/-/g, '');
          clients.set(uaid, ws);
          reply({ messageType: 'hello', status: 200, uaid, use_webpush: true, broadcasts: {} });
          for (const n of queued.get(uaid) ?? []) reply(n);
          queued.delete(uaid);
          return;
        }
        case 'register': {
          const channelID = String(m.channelID);
          if (uaid === undefined || typeof m.key !== 'string') {
            reply({ messageType: 'register', status: 401, channelID });
            return;
          }
          fake.channels.set(channelID, unpad(m.key));
          channelUaid.set(channelID, uaid);
          reply({ messageType: 'register', status: 200, channelID, pushEndpoint: `${fake.origin}/wpush/${channelID}` });
          return;
        }
        case 'unregister': {
          const channelID = String(m.channelID);
          fake.channels.delete(channelID);
          channelUaid.delete(channelID);
          reply({ messageType: 'unregister', status: 200, channelID });
          return;
        }
        case 'ack':
          for (const u of (m.updates as { version: string; code: number }[] | undefined) ?? []) {
            fake.acks.set(u.version, u.code);
            ackWaiters.get(u.version)?.(u.code);
            ackWaiters.delete(u.version);
          }
          return;
        case undefined:
          if (Object.keys(m).length === 0) reply({}); // ping
          return;
        default:
          return; // nack, broadcast_subscribe: recorded in `received`
      }
    });
    ws.on('close', () => {
      if (uaid !== undefined && clients.get(uaid) === ws) clients.delete(uaid);
    });
  });

  https.on('request', (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '';
      const refuse = (status: number, why: string) => {
        fake.refused.push({ path, status, why });
        res.writeHead(status, { 'content-type': 'text/plain' }).end(why);
      };
      const channelID = /^\/wpush\/([\w-]+)$/.exec(path)?.[1] ?? '';
      const key = fake.channels.get(channelID);
      if (req.method !== 'POST') return refuse(405, `method ${req.method}`);
      if (key === undefined) return refuse(404, 'no such subscription');
      const auth = req.headers.authorization;
      if (auth === undefined) return refuse(401, 'no Authorization header');
      const m = /^vapid t=([^,\s]+),\s*k=([A-Za-z0-9_-]+)$/.exec(auth);
      if (!m) return refuse(401, `Authorization is not "vapid t=…, k=…": ${auth.slice(0, 40)}`);
      if (m[2] !== key) return refuse(401, 'k is not the key the subscription was made with');
      const jwt = verifyVapidJwt(m[1] as string, m[2] as string, fake.origin);
      if (typeof jwt === 'string') return refuse(401, jwt);
      const ttl = req.headers.ttl;
      if (typeof ttl !== 'string' || !/^\d+$/.test(ttl)) return refuse(400, `TTL header ${JSON.stringify(ttl)}`);
      if (req.headers['content-encoding'] !== 'aes128gcm') return refuse(400, `Content-Encoding ${String(req.headers['content-encoding'])}`);
      const body = Buffer.concat(chunks);
      if (body.length > 4096) return refuse(413, `${body.length} bytes`);
      const version = randomBytes(12).toString('hex');
      fake.messages.push({ channelID, version, bodyBytes: body.length, ttl: Number(ttl), urgency: req.headers.urgency as string | undefined, jwt });
      const notification = { messageType: 'notification', channelID, version, data: body.toString('base64url'), headers: { encoding: 'aes128gcm' } };
      const uaid = channelUaid.get(channelID) as string;
      const ws = clients.get(uaid);
      if (ws) ws.send(JSON.stringify(notification));
      else queued.set(uaid, [...(queued.get(uaid) ?? []), notification]);
      res.writeHead(201, { location: `${fake.origin}/m/${version}`, ttl }).end();
    });
  });

  await new Promise<void>((r) => http.listen(0, '127.0.0.1', () => r()));
  await new Promise<void>((r) => https.listen(0, '127.0.0.1', () => r()));
  fake.serverUrl = `ws://127.0.0.1:${(http.address() as AddressInfo).port}/`;
  fake.origin = `https://127.0.0.1:${(https.address() as AddressInfo).port}`;
  return fake;
}
