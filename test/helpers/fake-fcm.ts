/**
 * A fake of FCM HTTP v1 and Google's OAuth2 token endpoint for tests: one real `node:http` (or,
 * with `tls`, `node:https` with a throwaway self-signed certificate) server on 127.0.0.1 port 0.
 *
 * - `POST /token`: the JWT bearer grant. The assertion must be RS256, verify against the test
 *   key's public half, and carry iss = the account's client_email, aud = this endpoint's URL,
 *   scope with firebase.messaging, iat now and exp at most 1 h after it; else 400 invalid_grant,
 *   as Google answers. A good one gets a fresh access token (`ya29.fake-N-…`, expires_in 3599).
 * - `POST /v1/projects/{project}/messages:send`: the bearer must be an access token this fake
 *   issued (not expired, not revoked: else 401 UNAUTHENTICATED), the project the account's
 *   (else 403 PERMISSION_DENIED), and the message well formed as FCM requires (a token; string
 *   data values; no reserved data keys; notification title/body; android priority and ttl; at most
 *   4096 bytes): else 400 INVALID_ARGUMENT, recorded in `violations`. Only requests that pass reach
 *   `respond`; the default answers by the registration token's prefix (see FCM_SCRIPT).
 * Error bodies are FCM's: https://firebase.google.com/docs/reference/fcm/rest/v1/ErrorCode
 */
import { type KeyObject, createHash, generateKeyPairSync, randomBytes, verify } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { type IncomingMessage, type ServerResponse, createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { selfSignedCert } from './fake-apns.js';

export const FCM_SCOPE = 'https://www.googleapis.com/auth/firebase.messaging';

export interface FcmTestAccount {
  projectId: string;
  clientEmail: string;
  privateKeyId: string;
  /** PKCS#8 PEM, as in a service-account file. */
  privateKeyPem: string;
  publicKey: KeyObject;
}

let keyPair: { privateKeyPem: string; publicKey: KeyObject } | undefined;

/**
 * A throwaway service account: an RSA key generated at test time (once per process: 2048-bit
 * generation is slow), a project id and a client email.
 */
export function makeFcmAccount(projectId = 'notify-test'): FcmTestAccount {
  if (!keyPair) {
    const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
    keyPair = { privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }) as string, publicKey };
  }
  return {
    projectId,
    clientEmail: `notify-sender@${projectId}.iam.gserviceaccount.com`,
    privateKeyId: randomBytes(20).toString('hex'),
    ...keyPair,
  };
}

/** The service-account JSON file for `account`, as the Firebase console gives it, with token_uri set. */
export function serviceAccountJson(account: FcmTestAccount, tokenUri: string, over: Record<string, unknown> = {}): string {
  return JSON.stringify(
    {
      type: 'service_account',
      project_id: account.projectId,
      private_key_id: account.privateKeyId,
      private_key: account.privateKeyPem,
      client_email: account.clientEmail,
      client_id: '104857600000000000000',
      auth_uri: 'https://accounts.google.com/o/oauth2/auth',
      token_uri: tokenUri,
      universe_domain: 'googleapis.com',
      ...over,
    },
    null,
    2,
  );
}

export interface FakeFcmSend {
  /** The registration token of the message ('' when the body had none). */
  token: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: string;
  /** JSON.parse(body), or undefined. */
  json: unknown;
  /** The bearer access token sent. */
  bearer: string | undefined;
  /** 1 for the first request for this token, 2 for the second, ... */
  attempt: number;
  receivedAt: number;
}

export interface FakeFcmTokenRequest {
  /** The decoded assertion (whether or not it verified), or null. */
  assertion: { header: Record<string, unknown>; claims: Record<string, unknown> } | null;
  /** Why it was refused by the checks, or undefined when it passed. */
  problem: string | undefined;
  /** The access token given, when one was. */
  issued: string | undefined;
  receivedAt: number;
}

export type FakeFcmAnswer = { status: number; body?: unknown; headers?: Record<string, string> } | { hang: true };

export interface FakeFcmOptions {
  account: FcmTestAccount;
  /** HTTPS with a self-signed certificate for 127.0.0.1 (`ca` to trust it). @default false */
  tls?: boolean;
  /** Answer for a send that passed the checks; undefined: the prefix script (FCM_SCRIPT). */
  respond?: (req: FakeFcmSend, fake: FakeFcm) => FakeFcmAnswer | undefined;
  /** Answer for the n-th (1-based) token request instead of checking it, e.g. a refusal; undefined: check and issue. */
  tokenRespond?: (n: number) => FakeFcmAnswer | undefined;
  /** expires_in of issued access tokens. @default 3599 */
  expiresInS?: number;
  /** How far an assertion's iat may be from the fake's clock, in seconds. @default 60 */
  clockToleranceS?: number;
}

export interface FakeFcm {
  /** `http(s)://127.0.0.1:PORT`: the `url` setting. */
  url: string;
  /** `${url}/token`: the token_uri. */
  tokenUrl: string;
  /** The certificate to trust (with tls). */
  ca: string | undefined;
  requests: FakeFcmSend[];
  tokenRequests: FakeFcmTokenRequest[];
  /** Every access token issued, in order. */
  issued: string[];
  /** Makes an issued access token invalid from now on (FCM then answers 401). */
  revoke(token: string): void;
  /** Messages that broke FCM's rules (answered 400); tests expect none. */
  violations: string[];
  close(): Promise<void>;
}

/** An FCM error body: `{error: {code, message, status, details: [FcmError{errorCode}]}}`. */
export function fcmError(code: number, status: string, message: string, errorCode?: string, extraDetails: unknown[] = []): { status: number; body: unknown } {
  const details = [...(errorCode ? [{ '@type': 'type.googleapis.com/google.firebase.fcm.v1.FcmError', errorCode }] : []), ...extraDetails];
  return { status: code, body: { error: { code, message, status, ...(details.length ? { details } : {}) } } };
}

/**
 * The default answers, by the registration token's prefix (first request = attempt 1):
 * `dead-` 404 UNREGISTERED; `mismatch-` 403 SENDER_ID_MISMATCH; `badtoken-` 400 INVALID_ARGUMENT
 * about the token; `badarg-` 400 INVALID_ARGUMENT about the message; `quota-` 429 QUOTA_EXCEEDED
 * with Retry-After: 1, then 200; `quotadate-` the same with an HTTP-date Retry-After 2 s ahead;
 * `flaky-` 503 UNAVAILABLE, then 200; `internal-` 500 INTERNAL, then 200; `busy-` always 503;
 * `revoked-` revokes the access token used and answers 401, then (with a fresh one) 200;
 * `thirdparty-` 401 THIRD_PARTY_AUTH_ERROR; `echo-` 400 INVALID_ARGUMENT whose message quotes
 * the Authorization header; anything else 200.
 */
export function FCM_SCRIPT(req: FakeFcmSend, fake: FakeFcm): FakeFcmAnswer | undefined {
  const t = req.token;
  const first = req.attempt === 1;
  if (t.startsWith('dead-')) return fcmError(404, 'NOT_FOUND', 'Requested entity was not found.', 'UNREGISTERED');
  if (t.startsWith('mismatch-')) return fcmError(403, 'PERMISSION_DENIED', 'SenderId mismatch', 'SENDER_ID_MISMATCH');
  if (t.startsWith('badtoken-')) return fcmError(400, 'INVALID_ARGUMENT', 'The registration token is not a valid FCM registration token', 'INVALID_ARGUMENT');
  if (t.startsWith('badarg-')) {
    return fcmError(400, 'INVALID_ARGUMENT', 'Request contains an invalid argument.', 'INVALID_ARGUMENT', [
      { '@type': 'type.googleapis.com/google.rpc.BadRequest', fieldViolations: [{ field: 'message.android.notification.color', description: 'Invalid color value' }] },
    ]);
  }
  if (t.startsWith('quota-') && first) return { ...fcmError(429, 'RESOURCE_EXHAUSTED', 'Quota exceeded.', 'QUOTA_EXCEEDED'), headers: { 'retry-after': '1' } };
  if (t.startsWith('quotadate-') && first) {
    return { ...fcmError(429, 'RESOURCE_EXHAUSTED', 'Quota exceeded.', 'QUOTA_EXCEEDED'), headers: { 'retry-after': new Date(Date.now() + 2000).toUTCString() } };
  }
  if (t.startsWith('flaky-') && first) return fcmError(503, 'UNAVAILABLE', 'The service is currently unavailable.', 'UNAVAILABLE');
  if (t.startsWith('internal-') && first) return fcmError(500, 'INTERNAL', 'Internal error encountered.', 'INTERNAL');
  if (t.startsWith('busy-')) return fcmError(503, 'UNAVAILABLE', 'The service is currently unavailable.', 'UNAVAILABLE');
  if (t.startsWith('revoked-') && first && req.bearer !== undefined) {
    fake.revoke(req.bearer);
    return unauthenticated();
  }
  if (t.startsWith('thirdparty-')) return fcmError(401, 'UNAUTHENTICATED', 'Auth error from APNS or Web Push Service', 'THIRD_PARTY_AUTH_ERROR');
  if (t.startsWith('echo-')) return fcmError(400, 'INVALID_ARGUMENT', `Invalid request; you sent ${String(req.headers.authorization)}`, 'INVALID_ARGUMENT');
  return undefined;
}

function unauthenticated(): { status: number; body: unknown } {
  return fcmError(
    401,
    'UNAUTHENTICATED',
    'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.',
  );
}

const RESERVED = new Set(['from', 'message_type', 'collapse_key']);
const MESSAGE_KEYS = new Set(['name', 'data', 'notification', 'android', 'webpush', 'apns', 'fcm_options', 'token', 'topic', 'condition']);
const ANDROID_KEYS = new Set(['collapse_key', 'priority', 'ttl', 'restricted_package_name', 'data', 'notification', 'fcm_options', 'direct_boot_ok']);
const NOTIFICATION_KEYS = new Set(['title', 'body', 'image']);

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** What is wrong with a send body by FCM's rules, or undefined. */
export function messageProblem(json: unknown): string | undefined {
  if (!isObject(json)) return 'the body is not a JSON object';
  for (const k of Object.keys(json)) if (k !== 'message' && k !== 'validate_only') return `unknown field "${k}"`;
  const m = json.message;
  if (!isObject(m)) return '"message" is missing';
  for (const k of Object.keys(m)) if (!MESSAGE_KEYS.has(k)) return `unknown field "message.${k}"`;
  const targets = ['token', 'topic', 'condition'].filter((k) => m[k] !== undefined);
  if (targets.length !== 1) return 'exactly one of message.token, topic, condition is required';
  if (typeof m.token !== 'string' || m.token === '') return 'message.token must be a non-empty string';
  if (m.data !== undefined) {
    if (!isObject(m.data)) return 'message.data must be a map';
    for (const [k, v] of Object.entries(m.data)) {
      if (typeof v !== 'string') return `message.data.${k} must be a string`;
      if (RESERVED.has(k) || k.startsWith('google.') || k.startsWith('gcm.')) return `message.data.${k} is a reserved key`;
    }
  }
  if (m.notification !== undefined) {
    if (!isObject(m.notification)) return 'message.notification must be an object';
    for (const [k, v] of Object.entries(m.notification)) {
      if (!NOTIFICATION_KEYS.has(k)) return `unknown field "message.notification.${k}"`;
      if (typeof v !== 'string') return `message.notification.${k} must be a string`;
    }
  }
  if (m.android !== undefined) {
    const a = m.android;
    if (!isObject(a)) return 'message.android must be an object';
    for (const k of Object.keys(a)) if (!ANDROID_KEYS.has(k)) return `unknown field "message.android.${k}"`;
    if (a.priority !== undefined && a.priority !== 'HIGH' && a.priority !== 'NORMAL') return 'message.android.priority must be HIGH or NORMAL';
    if (a.ttl !== undefined) {
      const ttl = /^(\d+)(\.\d{1,9})?s$/.exec(String(a.ttl));
      if (typeof a.ttl !== 'string' || !ttl || Number(ttl[1]) > 2_419_200) return 'message.android.ttl must be "<seconds>s", at most 2419200s';
    }
    if (a.notification !== undefined && !isObject(a.notification)) return 'message.android.notification must be an object';
  }
  const bytes = Buffer.byteLength(JSON.stringify({ notification: m.notification, data: m.data }));
  if (bytes > 4096) return `the payload is ${bytes} bytes, over 4096`;
  return undefined;
}

const SEND_PATH = /^\/v1\/projects\/([^/]+)\/messages:send$/;

export async function startFakeFcm(opts: FakeFcmOptions): Promise<FakeFcm> {
  const requests: FakeFcmSend[] = [];
  const tokenRequests: FakeFcmTokenRequest[] = [];
  const issued: string[] = [];
  const valid = new Map<string, number>();
  const violations: string[] = [];
  const attempts = new Map<string, number>();
  const sockets = new Set<Socket>();
  const expiresInS = opts.expiresInS ?? 3599;
  let certDir: string | undefined;
  let pems: { key: string; cert: string } | undefined;
  if (opts.tls) {
    certDir = await mkdtemp(join(tmpdir(), 'fake-fcm-'));
    pems = await selfSignedCert(certDir);
  }

  const reply = (res: ServerResponse, a: FakeFcmAnswer): void => {
    if ('hang' in a) return;
    const text = a.body === undefined ? '' : typeof a.body === 'string' ? a.body : JSON.stringify(a.body);
    res.writeHead(a.status, { 'content-type': 'application/json; charset=UTF-8', 'content-length': String(Buffer.byteLength(text)), ...a.headers });
    res.end(text);
  };

  const onToken = (body: string, headers: IncomingMessage['headers'], res: ServerResponse): void => {
    const record: FakeFcmTokenRequest = { assertion: null, problem: undefined, issued: undefined, receivedAt: Date.now() };
    tokenRequests.push(record);
    const scripted = opts.tokenRespond?.(tokenRequests.length);
    if (scripted) {
      record.problem = 'scripted';
      reply(res, scripted);
      return;
    }
    const refuse = (why: string) => {
      record.problem = why;
      reply(res, { status: 400, body: { error: 'invalid_grant', error_description: why } });
    };
    if (!String(headers['content-type']).startsWith('application/x-www-form-urlencoded')) return refuse('content-type must be application/x-www-form-urlencoded');
    const form = new URLSearchParams(body);
    if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:jwt-bearer') return refuse('unsupported grant_type');
    const parts = (form.get('assertion') ?? '').split('.');
    if (parts.length !== 3) return refuse('Invalid JWT: not three parts');
    const [h, c, sig] = parts as [string, string, string];
    let header: Record<string, unknown>;
    let claims: Record<string, unknown>;
    try {
      header = JSON.parse(Buffer.from(h, 'base64url').toString()) as Record<string, unknown>;
      claims = JSON.parse(Buffer.from(c, 'base64url').toString()) as Record<string, unknown>;
    } catch {
      return refuse('Invalid JWT: not JSON');
    }
    record.assertion = { header, claims };
    if (header.alg !== 'RS256') return refuse('Invalid JWT: alg must be RS256');
    if (!verify('RSA-SHA256', Buffer.from(`${h}.${c}`), opts.account.publicKey, Buffer.from(sig, 'base64url'))) return refuse('Invalid JWT Signature.');
    if (claims.iss !== opts.account.clientEmail) return refuse('Invalid JWT: iss is not the service account');
    if (claims.aud !== fake.tokenUrl) return refuse(`Invalid JWT: aud must be ${fake.tokenUrl}`);
    if (typeof claims.scope !== 'string' || !claims.scope.split(' ').includes(FCM_SCOPE)) return refuse('Invalid JWT: scope lacks firebase.messaging');
    const now = Math.floor(Date.now() / 1000);
    const iat = Number(claims.iat);
    const exp = Number(claims.exp);
    if (!Number.isInteger(iat) || !Number.isInteger(exp)) return refuse('Invalid JWT: iat and exp must be integers');
    if (Math.abs(iat - now) > (opts.clockToleranceS ?? 60)) return refuse('Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values');
    if (exp <= now - (opts.clockToleranceS ?? 60) || exp - iat > 3600) return refuse('Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values');
    const token = `ya29.fake-${issued.length + 1}-${randomBytes(24).toString('base64url')}`;
    issued.push(token);
    valid.set(token, Date.now() + expiresInS * 1000);
    record.issued = token;
    reply(res, { status: 200, body: { access_token: token, expires_in: expiresInS, token_type: 'Bearer' } });
  };

  const onSend = (path: string, body: string, headers: IncomingMessage['headers'], res: ServerResponse): void => {
    let json: unknown;
    try {
      json = JSON.parse(body);
    } catch {
      json = undefined;
    }
    const token = isObject(json) && isObject(json.message) && typeof json.message.token === 'string' ? json.message.token : '';
    const auth = headers.authorization;
    const bearer = typeof auth === 'string' && auth.startsWith('Bearer ') ? auth.slice(7) : undefined;
    const attempt = (attempts.get(token) ?? 0) + 1;
    attempts.set(token, attempt);
    const req: FakeFcmSend = { token, path, headers, body, json, bearer, attempt, receivedAt: Date.now() };
    requests.push(req);
    const expires = bearer === undefined ? undefined : valid.get(bearer);
    if (expires === undefined || expires < Date.now()) return reply(res, unauthenticated());
    const project = SEND_PATH.exec(path)?.[1];
    if (project !== opts.account.projectId) {
      return reply(res, fcmError(403, 'PERMISSION_DENIED', `Permission 'cloudmessaging.messages.create' denied on resource '//cloudresourcemanager.googleapis.com/projects/${project}' (or it may not exist).`));
    }
    if (!String(headers['content-type']).startsWith('application/json')) {
      violations.push(`content-type ${String(headers['content-type'])}`);
      return reply(res, fcmError(400, 'INVALID_ARGUMENT', 'content-type must be application/json', 'INVALID_ARGUMENT'));
    }
    const problem = messageProblem(json);
    if (problem) {
      violations.push(problem);
      return reply(
        res,
        fcmError(400, 'INVALID_ARGUMENT', `Request contains an invalid argument: ${problem}`, 'INVALID_ARGUMENT', [
          { '@type': 'type.googleapis.com/google.rpc.BadRequest', fieldViolations: [{ field: 'message', description: problem }] },
        ]),
      );
    }
    const answer = opts.respond?.(req, fake) ?? FCM_SCRIPT(req, fake);
    if (answer) return reply(res, answer);
    const id = createHash('sha1').update(`${token}:${attempt}:${requests.length}`).digest('hex').slice(0, 16);
    reply(res, { status: 200, body: { name: `projects/${opts.account.projectId}/messages/0:${id}` } });
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const path = req.url ?? '';
      if (req.method === 'POST' && path === '/token') return onToken(body, req.headers, res);
      if (req.method === 'POST' && SEND_PATH.test(path)) return onSend(path, body, req.headers, res);
      reply(res, { status: 404, body: { error: { code: 404, message: `no such endpoint: ${req.method} ${path}`, status: 'NOT_FOUND' } } });
    });
  };

  const server = pems ? createHttpsServer({ key: pems.key, cert: pems.cert }, handle) : createHttpServer(handle);
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('clientError', (_e, s) => s.destroy());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  const url = `${pems ? 'https' : 'http'}://127.0.0.1:${port}`;
  let closing: Promise<void> | undefined;
  const fake: FakeFcm = {
    url,
    tokenUrl: `${url}/token`,
    ca: pems?.cert,
    requests,
    tokenRequests,
    issued,
    revoke: (token) => void valid.delete(token),
    violations,
    close: () =>
      (closing ??= (async () => {
        for (const s of sockets) s.destroy();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        if (certDir) await rm(certDir, { recursive: true, force: true });
      })()),
  };
  return fake;
}
