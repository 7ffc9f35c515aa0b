// Tests of the fake APNs server itself, against @parse/node-apn 8.1.0 and a raw http2 client.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as http2 from 'node:http2';
import * as net from 'node:net';
import { test, type TestContext } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import * as apn from '@parse/node-apn';
import { HANG_MS, until, within } from '../../helpers/clients.js';
import {
  type ApnsTestKey,
  type FakeApns,
  type FakeApnsOptions,
  makeApnsJwt,
  makeApnsKey,
  startFakeApns,
} from '../../helpers/fake-apns.js';

const TOPIC = 'com.example.notify';
const TOKEN_A = 'a'.repeat(64);
const TOKEN_B = 'b'.repeat(64);
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** The runtime shapes from reference B.3 (index.d.ts types `sent` as `{device}` and `timestamp` as string). */
interface Sent { device: string; 'apns-id'?: string }
interface Failed { device: string; 'apns-id'?: string; status?: number; response?: { reason: string; timestamp?: number }; error?: Error }

async function fakeApns(t: TestContext, opts: Partial<FakeApnsOptions> = {}): Promise<{ fake: FakeApns; key: ApnsTestKey }> {
  const key = opts.key ?? makeApnsKey();
  const fake = await startFakeApns({ ...opts, key });
  t.after(() => fake.close());
  return { fake, key };
}

/** A Provider configured as in reference C.1; shut down (with a timeout race, B.4) when the test ends. */
function provider(t: TestContext, fake: FakeApns, key: ApnsTestKey, tokenOverride: Partial<apn.ProviderToken> = {}, requestTimeout = 2000): apn.Provider {
  const p = new apn.Provider({
    address: 'localhost',
    port: fake.port,
    ca: [fake.ca],
    token: { key: key.pem, keyId: key.keyId, teamId: key.teamId, ...tokenOverride },
    connectionRetryLimit: 0,
    requestTimeout,
  });
  t.after(() => shutdown(p));
  return p;
}

async function shutdown(p: apn.Provider): Promise<void> {
  const timeout = new AbortController();
  await Promise.race([
    new Promise<void>((resolve) => void p.shutdown(() => resolve())),
    delay(1000, undefined, { signal: timeout.signal }).catch(() => {}),
  ]);
  timeout.abort();
}

function note(fields: { pushType?: apn.NotificationPushType; topic?: string; id?: string } = {}): apn.Notification {
  const n = new apn.Notification();
  n.topic = fields.topic ?? TOPIC;
  n.pushType = fields.pushType ?? 'alert';
  n.alert = 'hello';
  if (fields.id !== undefined) n.id = fields.id;
  return n;
}

async function send(p: apn.Provider, n: apn.Notification, tokens: string[]): Promise<{ sent: Sent[]; failed: Failed[] }> {
  const r = await p.send(n, tokens);
  return { sent: r.sent as Sent[], failed: r.failed as unknown as Failed[] };
}

async function rawClient(t: TestContext, fake: FakeApns): Promise<http2.ClientHttp2Session> {
  const client = http2.connect(`https://localhost:${fake.port}`, { ca: fake.ca });
  client.on('error', () => {});
  t.after(() => client.destroy());
  const settings = once(client, 'remoteSettings');
  await once(client, 'connect');
  await settings;
  return client;
}

interface RawResponse { status: number; headers: http2.IncomingHttpHeaders; body: string }

async function rawRequest(client: http2.ClientHttp2Session, headers: http2.OutgoingHttpHeaders, body?: string): Promise<RawResponse> {
  const req = client.request(headers);
  req.setEncoding('utf8');
  let data = '';
  req.on('data', (c: string) => (data += c));
  const response = once(req, 'response') as Promise<[http2.IncomingHttpHeaders]>;
  const ended = once(req, 'end');
  req.end(body);
  const [resHeaders] = await response;
  await ended;
  return { status: Number(resHeaders[':status']), headers: resHeaders, body: data };
}

/** A JSON payload of exactly `bytes` bytes. */
function sized(bytes: number): string {
  const body = JSON.stringify({ aps: {}, pad: 'x'.repeat(bytes - '{"aps":{},"pad":""}'.length) });
  assert.equal(Buffer.byteLength(body), bytes);
  return body;
}

function apnsHeaders(key: ApnsTestKey, over: Record<string, string | undefined> = {}): http2.OutgoingHttpHeaders {
  const h: Record<string, string> = {};
  const all = {
    ':method': 'POST',
    ':path': `/3/device/${TOKEN_A}`,
    authorization: `bearer ${makeApnsJwt(key)}`,
    'apns-topic': TOPIC,
    'apns-push-type': 'alert',
    ...over,
  };
  for (const [k, v] of Object.entries(all)) if (v !== undefined) h[k] = v;
  return h;
}

test('a 200 carries the apns-id: echoed when given, a fresh lowercase UUID otherwise', async (t) => {
  const { fake, key } = await fakeApns(t);
  const p = provider(t, fake, key);
  const id = randomUUID();
  const given = await send(p, note({ id }), [TOKEN_A]);
  assert.deepEqual(given, { sent: [{ device: TOKEN_A, 'apns-id': id }], failed: [] });

  const fresh = await send(p, note(), [TOKEN_B]);
  assert.equal(fresh.failed.length, 0);
  const freshId = fresh.sent[0]?.['apns-id'];
  assert.match(freshId ?? '', UUID);
  assert.notEqual(freshId, id);
  assert.deepEqual(fake.answers, [
    { token: TOKEN_A, status: 200, apnsId: id },
    { token: TOKEN_B, status: 200, apnsId: freshId },
  ]);
});

test('records the JWT (kid, iss, iat) and the request headers node-apn sends', async (t) => {
  const { fake, key } = await fakeApns(t);
  const p = provider(t, fake, key);
  const before = Math.floor(Date.now() / 1000);
  await send(p, note(), [TOKEN_A]);
  assert.equal(fake.requests.length, 1);
  const req = fake.requests[0]!;
  assert.equal(req.token, TOKEN_A);
  assert.equal(req.method, 'POST');
  assert.equal(req.path, `/3/device/${TOKEN_A}`);
  assert.equal(req.headers[':authority'], 'localhost');
  assert.equal(req.headers[':scheme'], 'https');
  assert.equal(req.headers['apns-topic'], TOPIC);
  assert.equal(req.headers['apns-push-type'], 'alert');
  assert.equal(req.headers['apns-priority'], '10');
  assert.deepEqual(req.payload, { aps: { alert: 'hello' } });
  assert.equal(req.body, '{"aps":{"alert":"hello"}}');
  assert.ok(req.jwt);
  assert.deepEqual(req.jwt.header, { alg: 'ES256', typ: 'JWT', kid: key.keyId });
  assert.equal(req.jwt.claims['iss'], key.teamId);
  const iat = req.jwt.claims['iat'];
  assert.equal(typeof iat, 'number');
  assert.ok((iat as number) >= before - 1 && (iat as number) <= Date.now() / 1000 + 1, `iat ${String(iat)}`);
  assert.equal(req.headers.authorization, `bearer ${req.jwt.raw}`);
  assert.equal(req.connection, 1);
  assert.equal(req.attempt, 1);
  assert.ok(req.receivedAt >= before * 1000 && req.receivedAt <= Date.now(), `receivedAt ${req.receivedAt}: between the send and now`);
});

test('a short device token gets 400 BadDeviceToken', async (t) => {
  const { fake, key } = await fakeApns(t);
  const p = provider(t, fake, key);
  const { sent, failed } = await send(p, note(), ['abcd']);
  assert.deepEqual(sent, []);
  assert.equal(failed.length, 1);
  assert.equal(failed[0]?.device, 'abcd');
  assert.equal(failed[0]?.status, 400);
  assert.deepEqual(failed[0]?.response, { reason: 'BadDeviceToken' });
  assert.match(failed[0]?.['apns-id'] ?? '', UUID);
  assert.deepEqual(fake.answers.map((a) => [a.token, a.status, a.reason]), [['abcd', 400, 'BadDeviceToken']]);
});

test('a scripted 410 Unregistered reaches node-apn as status 410 with {reason, timestamp}', async (t) => {
  const { fake, key } = await fakeApns(t, {
    respond: (req) => (req.token === TOKEN_B ? { status: 410, reason: 'Unregistered', timestamp: 1700000000000 } : undefined),
  });
  const p = provider(t, fake, key);
  const { sent, failed } = await send(p, note(), [TOKEN_A, TOKEN_B]);
  assert.deepEqual(sent.map((s) => s.device), [TOKEN_A]);
  assert.equal(failed.length, 1);
  const f = failed[0]!;
  assert.equal(f.device, TOKEN_B);
  assert.equal(f.status, 410); // a number, not '410'
  assert.deepEqual(f.response, { reason: 'Unregistered', timestamp: 1700000000000 });
  assert.equal(f.error, undefined);
});

test('a JWT signed with the wrong key gets 403 InvalidProviderToken', async (t) => {
  const { fake, key } = await fakeApns(t);
  const other = makeApnsKey();
  const p = provider(t, fake, key, { key: other.pem }); // right kid and iss, wrong signature
  const { failed } = await send(p, note(), [TOKEN_A]);
  assert.equal(failed[0]?.status, 403);
  assert.deepEqual(failed[0]?.response, { reason: 'InvalidProviderToken' });
  assert.equal(fake.requests[0]?.jwt?.header['kid'], key.keyId, 'the bad JWT is still recorded');
});

test('a 5000-byte payload gets 413 PayloadTooLarge, but fits a voip push (5120)', async (t) => {
  const { fake, key } = await fakeApns(t);
  const p = provider(t, fake, key);
  const big = note();
  big.payload = { pad: 'x'.repeat(5000) };
  const { failed } = await send(p, big, [TOKEN_A]);
  assert.equal(failed[0]?.status, 413);
  assert.deepEqual(failed[0]?.response, { reason: 'PayloadTooLarge' });
  assert.ok(Buffer.byteLength(fake.requests[0]!.body) > 5000);

  const voip = note({ pushType: 'voip', topic: `${TOPIC}.voip` });
  voip.payload = { pad: 'x'.repeat(5000) };
  const ok = await send(p, voip, [TOKEN_A]);
  assert.deepEqual(ok.failed, []);
});

test('a scripted 429 sends its retry-after header (node-apn drops it)', async (t) => {
  const { fake, key } = await fakeApns(t, {
    respond: () => ({ status: 429, reason: 'TooManyRequests', headers: { 'retry-after': '1' } }),
  });
  const client = await rawClient(t, fake);
  const res = await rawRequest(client, apnsHeaders(key), '{"aps":{"alert":"hi"}}');
  assert.equal(res.status, 429);
  assert.equal(res.headers['retry-after'], '1');
  assert.match(String(res.headers['apns-id']), UUID);
  assert.deepEqual(JSON.parse(res.body), { reason: 'TooManyRequests' });

  const p = provider(t, fake, key);
  const { failed } = await send(p, note(), [TOKEN_A]);
  assert.equal(failed[0]?.status, 429);
  assert.deepEqual(failed[0]?.response, { reason: 'TooManyRequests' });
  assert.equal('retryAfter' in failed[0]!, false);
});

test('initialMaxConcurrentStreams: 1 is advertised until the first 200, then raised', async (t) => {
  const { fake, key } = await fakeApns(t, { initialMaxConcurrentStreams: 1, maxConcurrentStreams: 500 });
  const client = await rawClient(t, fake);
  assert.equal(client.remoteSettings.maxConcurrentStreams, 1);

  const rejected = await rawRequest(client, apnsHeaders(key, { authorization: undefined }), '{"aps":{}}');
  assert.equal(rejected.status, 403);
  assert.equal(client.remoteSettings.maxConcurrentStreams, 1, 'a rejected request does not raise the limit');

  const ok = await rawRequest(client, apnsHeaders(key), '{"aps":{"alert":"hi"}}');
  assert.equal(ok.status, 200);
  assert.equal(ok.body, '');
  assert.equal(client.remoteSettings.maxConcurrentStreams, 500, 'SETTINGS arrive before the 200');

  const second = await rawClient(t, fake);
  assert.equal(second.remoteSettings.maxConcurrentStreams, 1, 'each new connection starts at 1 again');
  assert.equal(fake.connections(), 2);
});

test('a cold node-apn burst past the limit is refused, and the fake counts the refusals', async (t) => {
  const { fake, key } = await fakeApns(t, { initialMaxConcurrentStreams: 1 });
  const p = provider(t, fake, key);
  const tokens = ['1', '2', '3', '4', '5'].map((c) => c.repeat(64));
  const burst = await send(p, note(), tokens);
  assert.equal(burst.sent.length, 1);
  assert.equal(burst.failed.length, 4);
  for (const f of burst.failed) {
    assert.equal(f.status, undefined);
    assert.match(String(f.error?.message), /NGHTTP2_REFUSED_STREAM/);
  }
  assert.equal(fake.requests.length, 1, 'refused streams never reach the request log');
  const again = await send(p, note(), [TOKEN_A]);
  assert.equal(again.sent.length, 1);
  assert.equal(fake.refusedStreams, 4, 'counted from the stream-id gap once the next stream arrives');
  assert.equal(fake.connections(), 1);
});

test("Apple's checks run in order, before respond, each with its status, reason and apns-id", async (t) => {
  let consulted = 0;
  const { fake, key } = await fakeApns(t, { respond: () => void consulted++ });
  const client = await rawClient(t, fake);
  const alert = '{"aps":{"alert":"hi"}}';
  const bg = '{"aps":{"content-available":1}}';
  const now = Math.floor(Date.now() / 1000);
  const cases: [string, Record<string, string | undefined>, string | undefined, number, string | undefined][] = [
    ['GET', { ':method': 'GET' }, undefined, 405, 'MethodNotAllowed'],
    ['bad path', { ':path': '/3/devices/abc' }, alert, 404, 'BadPath'],
    ['non-hex token', { ':path': '/3/device/xyz' }, alert, 404, 'BadPath'],
    ['no JWT', { authorization: undefined }, alert, 403, 'MissingProviderToken'],
    ['garbage JWT', { authorization: 'bearer abc.def.ghi' }, alert, 403, 'InvalidProviderToken'],
    ['wrong kid', { authorization: `bearer ${makeApnsJwt(key, { header: { kid: 'ZZZZZZZZZZ' } })}` }, alert, 403, 'InvalidProviderToken'],
    ['wrong iss', { authorization: `bearer ${makeApnsJwt(key, { claims: { iss: 'ZZZZZZZZZZ' } })}` }, alert, 403, 'InvalidProviderToken'],
    ['alg HS256', { authorization: `bearer ${makeApnsJwt(key, { header: { alg: 'HS256' } })}` }, alert, 403, 'InvalidProviderToken'],
    ['old iat', { authorization: `bearer ${makeApnsJwt(key, { claims: { iat: now - 3700 } })}` }, alert, 403, 'ExpiredProviderToken'],
    ['no topic', { 'apns-topic': undefined }, alert, 400, 'MissingTopic'],
    ['no push type', { 'apns-push-type': undefined }, alert, 400, 'InvalidPushType'],
    ['unknown push type', { 'apns-push-type': 'banner' }, alert, 400, 'InvalidPushType'],
    ['priority 7', { 'apns-priority': '7' }, alert, 400, 'BadPriority'],
    ['background at 10', { 'apns-push-type': 'background', 'apns-priority': '10' }, bg, 400, 'InvalidPushType'],
    ['background, default priority', { 'apns-push-type': 'background' }, bg, 400, 'InvalidPushType'],
    ['background with alert', { 'apns-push-type': 'background', 'apns-priority': '5' }, '{"aps":{"content-available":1,"alert":"x"}}', 400, 'InvalidPushType'],
    ['background w/o content-available', { 'apns-push-type': 'background', 'apns-priority': '5' }, '{"aps":{}}', 400, 'InvalidPushType'],
    ['short token', { ':path': '/3/device/abcd' }, alert, 400, 'BadDeviceToken'],
    ['empty body', {}, undefined, 400, 'PayloadEmpty'],
    ['not JSON', {}, 'hello', 400, 'BadPayload'],
    ['4097 bytes', {}, sized(4097), 413, 'PayloadTooLarge'],
    ['good alert', {}, alert, 200, undefined],
    ['good background', { 'apns-push-type': 'background', 'apns-priority': '5' }, bg, 200, undefined],
    ['4096 bytes', {}, sized(4096), 200, undefined],
  ];
  for (const [name, over, body, status, reason] of cases) {
    const id = randomUUID();
    const res = await rawRequest(client, apnsHeaders(key, { 'apns-id': id, ...over }), body);
    assert.equal(res.status, status, name);
    assert.equal(res.headers['apns-id'], id, `${name}: apns-id echoed`);
    assert.deepEqual(res.body === '' ? undefined : JSON.parse(res.body), reason === undefined ? undefined : { reason }, name);
  }
  assert.equal(consulted, 3, 'respond is only consulted for requests that pass');
  assert.equal(fake.requests.length, cases.length, 'rejected requests are recorded too');
  assert.equal(fake.requests.find((r) => r.path === '/3/device/xyz')?.token, '');
});

test('attempt counts requests per token across connections', async (t) => {
  const { fake, key } = await fakeApns(t);
  const p1 = provider(t, fake, key);
  const p2 = provider(t, fake, key);
  await send(p1, note(), [TOKEN_A]);
  await send(p2, note(), [TOKEN_A, TOKEN_B]);
  assert.deepEqual(fake.requests.map((r) => [r.token, r.attempt, r.connection]).sort(), [
    [TOKEN_A, 1, 1],
    [TOKEN_A, 2, 2],
    [TOKEN_B, 1, 2],
  ]);
});

test('an async respond and latencyMs delay the answer; a throwing respond gives 500', async (t) => {
  const { fake, key } = await fakeApns(t, {
    latencyMs: 150,
    respond: async (req) => {
      await delay(10);
      if (req.token === TOKEN_B) throw new Error('script bug');
      return { status: 200 };
    },
  });
  const p = provider(t, fake, key);
  const started = Date.now();
  const { sent, failed } = await send(p, note(), [TOKEN_A, TOKEN_B]);
  assert.ok(Date.now() - started >= 150, 'latency applied');
  assert.deepEqual(sent.map((s) => s.device), [TOKEN_A]);
  assert.equal(failed[0]?.status, 500);
  assert.match(String(failed[0]?.error?.message), /Error 500/);
  assert.equal(fake.errors.length, 1);
  assert.match(String(fake.errors[0]), /script bug/);
});

test('goaway: node-apn reports an error without status and reconnects on the next send', async (t) => {
  let first = true;
  const { fake, key } = await fakeApns(t, {
    respond: () => {
      if (!first) return undefined;
      first = false;
      return { goaway: true, reason: 'Shutdown' };
    },
  });
  const p = provider(t, fake, key);
  const { sent, failed } = await send(p, note(), [TOKEN_A]);
  assert.deepEqual(sent, []);
  assert.equal(failed[0]?.status, undefined);
  assert.ok(failed[0]?.error instanceof Error);
  assert.match(failed[0].error.message, /NGHTTP2_REFUSED_STREAM/);
  assert.deepEqual(fake.answers, [{ token: TOKEN_A, status: null }]);

  const again = await send(p, note(), [TOKEN_A]);
  assert.equal(again.sent.length, 1);
  assert.equal(fake.connections(), 2);
  assert.deepEqual(fake.requests.map((r) => [r.connection, r.attempt]), [[1, 1], [2, 2]]);
});

test('goaway reaches a raw client with its reason as debug data, refuses the stream and closes', async (t) => {
  const { fake, key } = await fakeApns(t, { respond: (req) => (req.attempt === 2 ? { goaway: true, reason: 'Shutdown' } : undefined) });
  const client = await rawClient(t, fake);
  assert.equal((await rawRequest(client, apnsHeaders(key), '{"aps":{"alert":"hi"}}')).status, 200);
  const goaway = once(client, 'goaway');
  const closed = once(client, 'close');
  const req = client.request(apnsHeaders(key));
  const errored = once(req, 'error');
  req.end('{"aps":{"alert":"hi"}}');
  const [code, lastStreamId, data] = (await goaway) as [number, number, Buffer];
  assert.equal(code, http2.constants.NGHTTP2_NO_ERROR);
  assert.equal(lastStreamId, 1, 'stream 3 is past the last processed stream');
  assert.deepEqual(JSON.parse(data.toString()), { reason: 'Shutdown' });
  const [err] = (await errored) as [Error];
  assert.match(err.message, /NGHTTP2_REFUSED_STREAM/);
  await closed;
});

test('reset: node-apn reports an error without status', async (t) => {
  const { fake, key } = await fakeApns(t, { respond: () => ({ reset: true }) });
  const p = provider(t, fake, key);
  const { sent, failed } = await send(p, note(), [TOKEN_A]);
  assert.deepEqual(sent, []);
  assert.equal(failed[0]?.status, undefined);
  assert.match(String(failed[0]?.error?.message), /NGHTTP2_INTERNAL_ERROR/);
  assert.deepEqual(fake.answers, [{ token: TOKEN_A, status: null }]);
});

test('close() returns promptly with a hanging stream and removes the certificate dir', async (t) => {
  const key = makeApnsKey();
  const fake = await startFakeApns({ key, respond: () => ({ hang: true }) });
  t.after(() => fake.close());
  // node-apn's requestTimeout is far past the hang guard: only the closed connection ends the send.
  const p = provider(t, fake, key, {}, 3_600_000);
  const pending = send(p, note(), [TOKEN_A]);
  // The fake records a hanging stream's answer (null) one turn after the request.
  await until(() => fake.answers.length === 1, 'the fake to hold the request');
  assert.deepEqual(fake.answers, [{ token: TOKEN_A, status: null }]);
  assert.ok(fs.existsSync(fake.certDir));
  await within(fake.close(), HANG_MS, 'close() with a stream that never gets an answer');
  const { failed } = await within(pending, HANG_MS, 'node-apn to see the connection go');
  assert.equal(failed[0]?.status, undefined);
  assert.ok(failed[0]?.error instanceof Error);
  assert.equal(fs.existsSync(fake.certDir), false);
  await fake.close(); // idempotent
});

test('close() is prompt with sockets stuck before their TLS handshake; an untrusting client does not crash the fake', async (t) => {
  const key = makeApnsKey();
  const fake = await startFakeApns({ key });
  t.after(() => fake.close());
  const untrusting = new apn.Provider({ // no `ca`: Node's root store rejects the self-signed cert
    address: 'localhost',
    port: fake.port,
    token: { key: key.pem, keyId: key.keyId, teamId: key.teamId },
    connectionRetryLimit: 0,
    requestTimeout: 2000,
  });
  t.after(() => shutdown(untrusting));
  const { failed } = await send(untrusting, note(), [TOKEN_A]);
  assert.match(String(failed[0]?.error?.message), /self-signed certificate/);

  for (const waitMs of [0, 50, 50]) {
    const raw = net.connect(fake.port, '127.0.0.1'); // TCP only: never sends a ClientHello
    raw.on('error', () => {});
    t.after(() => raw.destroy());
    await once(raw, 'connect');
    await delay(waitMs);
  }
  // The TLS handshake timeout (120 s) is past the hang guard: close() must not wait for it.
  await within(fake.close(), HANG_MS, 'close() with sockets stuck before their TLS handshake');
});
