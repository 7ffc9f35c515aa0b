/**
 * A faithful fake of Apple's APNs provider API (HTTP/2 over TLS) for tests: a real
 * `http2.createSecureServer` on 127.0.0.1 port 0 with a throwaway self-signed certificate.
 *
 * Requests go through Apple's documented checks first (method, path, JWT, headers, token, payload),
 * each answered with Apple's status and `{"reason"}` body; only requests that pass reach `respond`.
 * Statuses and reasons: https://developer.apple.com/documentation/usernotifications/handling-error-responses-from-apns
 */
import { execFile } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs/promises';
import * as http2 from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
const { NGHTTP2_NO_ERROR, NGHTTP2_INTERNAL_ERROR, NGHTTP2_REFUSED_STREAM } = http2.constants;

export interface ApnsTestKey {
  pem: string;
  publicKey: crypto.KeyObject;
  keyId: string;
  teamId: string;
  /** The private key, to sign JWTs by hand (see `makeApnsJwt`). */
  privateKey: crypto.KeyObject;
}

const ALNUM = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';
function randomId(length = 10): string {
  let out = '';
  for (const byte of crypto.randomBytes(length)) out += ALNUM[byte % ALNUM.length];
  return out;
}

/** A throwaway P-256 .p8 key with a 10-char keyId and teamId (uppercase alnum). */
export function makeApnsKey(): ApnsTestKey {
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const pem = privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  return { pem, publicKey, privateKey, keyId: randomId(), teamId: randomId() };
}

/**
 * An APNs provider JWT signed with `key` (ES256, raw r||s), as node-apn makes it. Override any
 * header field or claim to build a bad one, e.g. `{ claims: { iat: now - 7200 } }`.
 */
export function makeApnsJwt(
  key: ApnsTestKey,
  over: { header?: Record<string, unknown>; claims?: Record<string, unknown> } = {},
): string {
  const header = { alg: 'ES256', typ: 'JWT', kid: key.keyId, ...over.header };
  const claims = { iss: key.teamId, iat: Math.floor(Date.now() / 1000), ...over.claims };
  const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const signingInput = `${b64(header)}.${b64(claims)}`;
  const sig = crypto.sign('sha256', Buffer.from(signingInput), { key: key.privateKey, dsaEncoding: 'ieee-p1363' });
  return `${signingInput}.${sig.toString('base64url')}`;
}

export interface FakeApnsRequest {
  /** Device token from the path ('' if the path did not match). */
  token: string;
  path: string;
  method: string;
  headers: http2.IncomingHttpHeaders;
  /** Raw payload. */
  body: string;
  /** JSON.parse(body), or undefined if not JSON. */
  payload: unknown;
  /** The decoded bearer JWT (whether or not it verified), or null if missing or undecodable. */
  jwt: { header: Record<string, unknown>; claims: Record<string, unknown>; raw: string } | null;
  /** 1-based index of the HTTP/2 session (connection) it came on. */
  connection: number;
  /** HTTP/2 stream id on that connection. */
  streamId: number;
  /** 1 for the first request for this token, 2 for the second, ... (over all connections). */
  attempt: number;
  /** Date.now() when the request body was complete. */
  receivedAt: number;
}

export type FakeApnsAnswer =
  | { status: number; reason?: string; timestamp?: number; headers?: Record<string, string> }
  /** Send GOAWAY on this connection (session.goaway) without answering this stream; the stream is
   *  refused (NGHTTP2_REFUSED_STREAM), then the server closes the connection once other streams end.
   *  `reason` goes in the GOAWAY debug data as `{"reason"}`, as APNs does; `errorCode` defaults to NO_ERROR. */
  | { goaway: true; reason?: string; errorCode?: number }
  /** Never answer this stream. */
  | { hang: true }
  /** Reset this stream (RST_STREAM) without a status; `code` defaults to NGHTTP2_INTERNAL_ERROR. */
  | { reset: true; code?: number };

export interface FakeApnsOptions {
  /** JWTs must verify against key.publicKey with kid = keyId, iss = teamId. */
  key: ApnsTestKey;
  /** Scripted answer for a request that passed Apple's checks; undefined means 200. May be async.
   *  If it throws, the fake answers 500 InternalServerError and records the error in `errors`. */
  respond?: (req: FakeApnsRequest) => FakeApnsAnswer | undefined | Promise<FakeApnsAnswer | undefined>;
  /** SETTINGS_MAX_CONCURRENT_STREAMS a new connection starts with, as APNs does before the first
   *  request with a valid JWT succeeds (e.g. 1); after the first 200 on that connection the server
   *  raises it to `maxConcurrentStreams` with session.settings(). Default: maxConcurrentStreams. */
  initialMaxConcurrentStreams?: number;
  /** @default 1000 */
  maxConcurrentStreams?: number;
  /** Artificial delay before answering each stream, ms. @default 0 */
  latencyMs?: number;
}

export interface FakeApns {
  port: number;
  /** The server certificate PEM, to trust via the Provider's `ca` option. */
  ca: string;
  /** The mkdtemp dir holding the certificate and its key; removed by `close()`. */
  certDir: string;
  /** Every request received, in order (including rejected ones). */
  requests: FakeApnsRequest[];
  /** What was answered (null: goaway/hang/reset), with the apns-id header sent (absent for null). */
  answers: { token: string; status: number | null; reason?: string; apnsId?: string }[];
  /** HTTP/2 sessions accepted so far. */
  connections(): number;
  /** Streams refused because they exceeded the advertised limit (best effort: counted from gaps in
   *  the stream ids the server sees, so refusals after a connection's last accepted stream are missed). */
  refusedStreams: number;
  /** Exceptions thrown (or rejections) by `respond`; each was answered 500 InternalServerError. */
  errors: unknown[];
  /** Destroys every live session now (like a dropped connection); the server keeps listening. */
  destroyConnections(): void;
  /** Destroys live sessions first, then closes the server and removes the certificate dir. Idempotent. */
  close(): Promise<void>;
}

/** Apple's push types (apns-push-type). */
export const APNS_PUSH_TYPES: readonly string[] = [
  'alert', 'background', 'voip', 'complication', 'fileprovider', 'mdm', 'location', 'liveactivity', 'pushtotalk', 'widgets',
];

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const DEVICE_PATH = /^\/3\/device\/([0-9a-fA-F]+)$/;
const JWT_MAX_AGE_S = 3600;

export async function selfSignedCert(dir: string): Promise<{ key: string; cert: string }> {
  const keyFile = path.join(dir, 'key.pem');
  const certFile = path.join(dir, 'cert.pem');
  await execFileAsync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=localhost',
    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
  ]);
  return { key: await fs.readFile(keyFile, 'utf8'), cert: await fs.readFile(certFile, 'utf8') };
}

function header(headers: http2.IncomingHttpHeaders, name: string): string | undefined {
  const v = headers[name];
  return Array.isArray(v) ? v[0] : v;
}

/** The latest authorization header and its decoded JWT: a client sends the same one for an hour. */
let lastAuth: { auth: string; jwt: FakeApnsRequest['jwt'] } | undefined;

function decodeJwt(auth: string | undefined): FakeApnsRequest['jwt'] {
  if (auth === undefined) return null;
  if (lastAuth?.auth === auth) return lastAuth.jwt;
  const jwt = decodeJwtUncached(auth);
  lastAuth = { auth, jwt };
  return jwt;
}

function decodeJwtUncached(auth: string): FakeApnsRequest['jwt'] {
  if (!/^bearer /i.test(auth)) return null;
  const raw = auth.slice(7).trim();
  const [h, c] = raw.split('.');
  try {
    const head: unknown = JSON.parse(Buffer.from(h ?? '', 'base64url').toString());
    const claims: unknown = JSON.parse(Buffer.from(c ?? '', 'base64url').toString());
    if (!isObject(head) || !isObject(claims)) return null;
    return { header: head, claims, raw };
  } catch {
    return null;
  }
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Raw JWTs whose signature verified, per public key. */
const verifiedJwts = new WeakMap<crypto.KeyObject, Set<string>>();

/** Apple's checks, in order; returns the rejection or null if the request passes. */
function appleChecks(req: FakeApnsRequest, body: Buffer, key: ApnsTestKey): { status: number; reason: string } | null {
  const h = req.headers;
  if (req.method !== 'POST') return { status: 405, reason: 'MethodNotAllowed' };
  if (!DEVICE_PATH.test(req.path)) return { status: 404, reason: 'BadPath' };

  // Token auth: https://developer.apple.com/documentation/usernotifications/establishing-a-token-based-connection-to-apns
  const auth = header(h, 'authorization');
  if (auth === undefined || auth === '') return { status: 403, reason: 'MissingProviderToken' };
  const jwt = req.jwt;
  if (jwt === null) return { status: 403, reason: 'InvalidProviderToken' };
  // Like APNs, check a provider token's signature once, not on every request (it keeps the fake
  // fast enough for the benchmark); the claims below are still checked every time.
  let known = verifiedJwts.get(key.publicKey);
  if (!known) verifiedJwts.set(key.publicKey, (known = new Set()));
  let signed = known.has(jwt.raw);
  if (!signed) {
    const [hPart, cPart, sPart] = jwt.raw.split('.');
    try {
      signed = crypto.verify('sha256', Buffer.from(`${hPart}.${cPart}`),
        { key: key.publicKey, dsaEncoding: 'ieee-p1363' }, Buffer.from(sPart ?? '', 'base64url'));
    } catch {
      signed = false;
    }
    if (signed) known.add(jwt.raw);
  }
  if (!signed || jwt.header['alg'] !== 'ES256' || jwt.header['kid'] !== key.keyId || jwt.claims['iss'] !== key.teamId) {
    return { status: 403, reason: 'InvalidProviderToken' };
  }
  const iat = jwt.claims['iat'];
  if (typeof iat !== 'number' || !Number.isFinite(iat)) return { status: 403, reason: 'InvalidProviderToken' };
  if (Date.now() / 1000 - iat > JWT_MAX_AGE_S) return { status: 403, reason: 'ExpiredProviderToken' };

  if (!header(h, 'apns-topic')) return { status: 400, reason: 'MissingTopic' };

  const pushType = header(h, 'apns-push-type');
  if (pushType === undefined || !APNS_PUSH_TYPES.includes(pushType)) return { status: 400, reason: 'InvalidPushType' };
  const priority = header(h, 'apns-priority');
  if (priority !== undefined && !['1', '5', '10'].includes(priority)) return { status: 400, reason: 'BadPriority' };
  if (pushType === 'background') {
    // A background push must have priority 5 and aps {content-available: 1} with no alert, badge or sound:
    // https://developer.apple.com/documentation/usernotifications/pushing-background-updates-to-your-app
    // (only checked when the body is a JSON object; other bodies fail the payload checks below).
    if ((priority ?? '10') !== '5') return { status: 400, reason: 'InvalidPushType' };
    if (isObject(req.payload)) {
      const aps = req.payload['aps'];
      if (!isObject(aps) || aps['content-available'] !== 1 || 'alert' in aps || 'badge' in aps || 'sound' in aps) {
        return { status: 400, reason: 'InvalidPushType' };
      }
    }
  }
  const apnsId = header(h, 'apns-id');
  if (apnsId !== undefined && !UUID.test(apnsId)) return { status: 400, reason: 'BadMessageId' };
  const collapseId = header(h, 'apns-collapse-id');
  if (collapseId !== undefined && Buffer.byteLength(collapseId) > 64) return { status: 400, reason: 'BadCollapseId' };
  const expiration = header(h, 'apns-expiration');
  if (expiration !== undefined && !/^\d+$/.test(expiration)) return { status: 400, reason: 'BadExpirationDate' };

  if (!/^[0-9a-fA-F]{64}$/.test(req.token)) return { status: 400, reason: 'BadDeviceToken' };

  if (body.length === 0) return { status: 400, reason: 'PayloadEmpty' };
  if (!isObject(req.payload)) return { status: 400, reason: 'BadPayload' };
  if (body.length > (pushType === 'voip' ? 5120 : 4096)) return { status: 413, reason: 'PayloadTooLarge' };
  return null;
}

function checkOptions(opts: FakeApnsOptions): { initial: number; max: number; latencyMs: number } {
  const merged = { maxConcurrentStreams: 1000, latencyMs: 0, ...opts };
  const max = merged.maxConcurrentStreams;
  const initial = merged.initialMaxConcurrentStreams ?? max;
  for (const [name, v] of [['maxConcurrentStreams', max], ['initialMaxConcurrentStreams', initial]] as const) {
    if (!Number.isInteger(v) || v < 1 || v > 2 ** 31 - 1) throw new RangeError(`${name} must be a positive integer`);
  }
  if (!Number.isFinite(merged.latencyMs) || merged.latencyMs < 0) throw new RangeError('latencyMs must be a number >= 0');
  if (!opts.key?.publicKey) throw new TypeError('key is required (use makeApnsKey())');
  return { initial, max, latencyMs: merged.latencyMs };
}

/** Starts a fake APNs server on 127.0.0.1 port 0; close it with `close()` (e.g. in `t.after`). */
export async function startFakeApns(opts: FakeApnsOptions): Promise<FakeApns> {
  const { initial, max, latencyMs } = checkOptions(opts);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fake-apns-'));
  let pems: { key: string; cert: string };
  try {
    pems = await selfSignedCert(dir);
  } catch (err) {
    await fs.rm(dir, { recursive: true, force: true });
    throw err;
  }

  const requests: FakeApnsRequest[] = [];
  const answers: FakeApns['answers'] = [];
  const errors: unknown[] = [];
  const sessions = new Map<http2.Http2Session, { index: number; raised: boolean; highestStreamId: number }>();
  const attempts = new Map<string, number>();
  const closing = new AbortController();
  let sessionCount = 0;

  const server = http2.createSecureServer({ key: pems.key, cert: pems.cert, settings: { maxConcurrentStreams: initial } });
  // server.close() waits for every socket, and one that never finishes its TLS handshake has no
  // session to destroy, so track raw sockets too.
  const sockets = new Set<Socket>();
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  const fake: FakeApns = {
    port: 0,
    ca: pems.cert,
    certDir: dir,
    requests,
    answers,
    errors,
    refusedStreams: 0,
    connections: () => sessionCount,
    destroyConnections: () => {
      for (const s of sessions.keys()) s.destroy();
    },
    close: closeOnce(async () => {
      closing.abort();
      fake.destroyConnections();
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await fs.rm(dir, { recursive: true, force: true });
    }),
  };

  server.on('tlsClientError', () => {}); // a client that rejects our cert must not crash anything
  server.on('sessionError', () => {});
  server.on('session', (session) => {
    sessions.set(session, { index: ++sessionCount, raised: initial === max, highestStreamId: 0 });
    session.on('error', () => {}); // refused/cancelled streams surface here (C.4 pitfall 3)
    session.on('frameError', () => {});
    session.on('close', () => sessions.delete(session));
  });

  // One setImmediate for every answer that waits for the next turn, not one each.
  const waiting: (() => void)[] = [];
  const wake = () => {
    for (const resolve of waiting.splice(0)) resolve();
  };
  const nextTurn = () =>
    new Promise<void>((resolve) => {
      if (waiting.push(resolve) === 1) setImmediate(wake);
    });

  server.on('stream', (stream, headers) => {
    stream.on('error', () => {});
    const session = stream.session;
    const state = session ? sessions.get(session) : undefined;
    if (!session || !state || stream.id === undefined) {
      setImmediate(() => stream.close(NGHTTP2_INTERNAL_ERROR)); // not from inside nghttp2: see answer()
      return;
    }
    const streamId = stream.id;
    // Client stream ids are odd and increase by 2; a skipped id is a stream nghttp2 refused (over the
    // advertised SETTINGS_MAX_CONCURRENT_STREAMS) before Node saw it.
    const expectedId = state.highestStreamId === 0 ? 1 : state.highestStreamId + 2;
    if (streamId > expectedId) fake.refusedStreams += (streamId - expectedId) / 2;
    state.highestStreamId = Math.max(state.highestStreamId, streamId);

    const answer = async (req: FakeApnsRequest, body: Buffer): Promise<void> => {
      // Leave the 'end' callback first: microtasks queued there run while nghttp2 is still inside
      // nghttp2_session_mem_recv for this stream, and stream.close(code) from there sends the
      // RST_STREAM synchronously and frees the stream under it. Seen on Node 20.20.2 as valgrind
      // "Invalid read ... nghttp2_session_on_data_received" and a ~7% "corrupted size vs. prev_size" abort.
      await nextTurn();
      if (latencyMs > 0) {
        try {
          await delay(latencyMs, undefined, { signal: closing.signal });
        } catch {
          return; // closing
        }
      }
      const requestApnsId = header(headers, 'apns-id');
      const apnsId = requestApnsId !== undefined && UUID.test(requestApnsId) ? requestApnsId : crypto.randomUUID();
      let reply: FakeApnsAnswer | undefined = appleChecks(req, body, opts.key) ?? undefined;
      if (reply === undefined) {
        try {
          reply = await opts.respond?.(req);
        } catch (err) {
          errors.push(err);
          reply = { status: 500, reason: 'InternalServerError' };
        }
      }
      reply ??= { status: 200 };
      if (closing.signal.aborted || stream.destroyed || stream.closed || session.destroyed) return;

      if ('goaway' in reply) {
        answers.push({ token: req.token, status: null });
        const data = reply.reason === undefined ? undefined : Buffer.from(JSON.stringify({ reason: reply.reason }));
        // Node sends last-proc-stream-id when lastStreamID <= 0, so for stream 1 the RST below does the refusing.
        session.goaway(reply.errorCode ?? NGHTTP2_NO_ERROR, Math.max(0, streamId - 2), data);
        stream.close(NGHTTP2_REFUSED_STREAM);
        session.close();
        return;
      }
      if ('hang' in reply) {
        answers.push({ token: req.token, status: null });
        return;
      }
      if ('reset' in reply) {
        answers.push({ token: req.token, status: null });
        stream.close(reply.code ?? NGHTTP2_INTERNAL_ERROR);
        return;
      }

      const { status, reason, timestamp } = reply;
      answers.push(reason === undefined ? { token: req.token, status, apnsId } : { token: req.token, status, reason, apnsId });
      if (status === 200 && !state.raised) {
        // APNs allows one stream until a request with a valid JWT succeeds, then raises the limit.
        // The SETTINGS frame goes out before the 200, so a client that saw the 200 sees the new limit.
        state.raised = true;
        session.settings({ maxConcurrentStreams: max });
      }
      const responseBody = reason === undefined ? undefined : JSON.stringify(timestamp === undefined ? { reason } : { reason, timestamp });
      stream.respond({
        ...reply.headers,
        ':status': status,
        'apns-id': apnsId,
      });
      stream.end(responseBody);
    };

    const chunks: Buffer[] = [];
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('end', () => {
      const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
      const text = body.toString('utf8');
      const reqPath = header(headers, ':path') ?? '';
      const token = DEVICE_PATH.exec(reqPath)?.[1] ?? '';
      const attempt = (attempts.get(token) ?? 0) + 1;
      attempts.set(token, attempt);
      let payload: unknown;
      try {
        payload = JSON.parse(text);
      } catch {
        payload = undefined;
      }
      const req: FakeApnsRequest = {
        token,
        path: reqPath,
        method: header(headers, ':method') ?? '',
        headers,
        body: text,
        payload,
        jwt: decodeJwt(header(headers, 'authorization')),
        connection: state.index,
        streamId,
        attempt,
        receivedAt: Date.now(),
      };
      requests.push(req);
      void answer(req, body).catch((err: unknown) => {
        errors.push(err);
        if (!stream.destroyed) stream.close(NGHTTP2_INTERNAL_ERROR);
      });
    });

  });

  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    await fs.rm(dir, { recursive: true, force: true });
    throw err;
  }
  server.on('error', () => {});
  fake.port = (server.address() as AddressInfo).port;
  return fake;
}

function closeOnce(fn: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined;
  return () => (done ??= fn());
}
