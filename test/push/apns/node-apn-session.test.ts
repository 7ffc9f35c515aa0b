import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { test, type TestContext } from 'node:test';
import type { ClientHttp2Stream } from 'node:http2';
import type * as Apn from '@parse/node-apn';
import { ApnSession, NODE_APN_VERSION, buildNotification } from '../../../src/push/apns/node-apn-session.js';
import { deviceToken } from '../../helpers/apns.js';
import { type ApnsTestKey, makeApnsKey, startFakeApns } from '../../helpers/fake-apns.js';

const require = createRequire(import.meta.url);
const apn = require('@parse/node-apn') as typeof Apn;

/** A node-apn Provider on the fake, with no reconnect retries; shut down when the test ends. */
function providerFor(t: TestContext, key: ApnsTestKey, fake: { port: number; ca: string }): Apn.Provider {
  const provider = new apn.Provider({
    token: { key: key.pem, keyId: key.keyId, teamId: key.teamId },
    address: 'localhost',
    port: fake.port,
    ca: [fake.ca],
    connectionRetryLimit: 0,
    requestTimeout: 5000,
  } as Apn.ProviderOptions);
  // Bounded: node-apn's shutdown callback never fires after some connection errors (reference B.4).
  t.after(() => Promise.race([new Promise<void>((r) => provider.shutdown(() => r())), new Promise((r) => setTimeout(r, 1000))]));
  return provider;
}

test('node-apn internals: the installed @parse/node-apn is the version node-apn-session.ts is written against', () => {
  const pkg = require('@parse/node-apn/package.json') as { version: string };
  assert.equal(pkg.version, NODE_APN_VERSION, 'a new node-apn: re-check provider.client, client.session and client.connect() in src/push/apns/node-apn-session.ts');
});

test('node-apn internals: provider.client.connect() opens the session found at client.session, whose responses\' headers (Retry-After) are seen; a new connection is told apart', async (t) => {
  const key = makeApnsKey();
  const fake = await startFakeApns({ key, respond: () => ({ status: 429, reason: 'TooManyRequests', headers: { 'retry-after': '7' } }) });
  t.after(() => fake.close());
  const provider = providerFor(t, key, fake);
  const seen: [string, unknown][] = [];
  const session = new ApnSession(provider, (path, headers) => seen.push([path, headers['retry-after']]));
  assert.equal(session.current(), undefined, 'no connection before the first request');

  const first = await session.open();
  assert.equal(first.session?.constructor.name, 'ClientHttp2Session');
  assert.equal(first.fresh, true);
  assert.equal(session.current(), first.session);
  assert.equal((await session.open()).fresh, false, 'the same connection');

  const token = deviceToken();
  const note = new apn.Notification();
  note.rawPayload = { aps: { alert: 'hi' } };
  note.topic = 'com.example.app';
  note.pushType = 'alert';
  const res = await provider.send(note, token);
  assert.equal(res.failed[0]?.status, 429);
  assert.deepEqual(seen, [[`/3/device/${token}`, '7']], 'the Retry-After node-apn drops is seen');
  assert.equal(typeof first.session?.remoteSettings.maxConcurrentStreams, 'number', 'the server\'s SETTINGS are readable');

  const closed = new Promise((r) => first.session?.once('close', r));
  fake.destroyConnections();
  await closed;
  const second = await session.open();
  assert.equal(second.fresh, true, 'a new connection after the old one closed');
  assert.notEqual(second.session, first.session);
});

test('node-apn internals: ApnSession.send(built note, token) through client.write() gives what provider.send(note, token) puts in sent or failed', async (t) => {
  const key = makeApnsKey();
  const dead = deviceToken();
  const busy = deviceToken();
  const fake = await startFakeApns({
    key,
    respond: (req) =>
      req.token === dead ? { status: 410, reason: 'Unregistered', timestamp: 1700000000000 } : req.token === busy ? { status: 503, reason: 'ServiceUnavailable' } : undefined,
  });
  t.after(() => fake.close());
  const provider = providerFor(t, key, fake);
  const session = new ApnSession(provider, () => {});
  const note = new apn.Notification();
  note.rawPayload = { aps: { alert: 'hi' } };
  note.topic = 'com.example.app';
  note.pushType = 'alert';
  note.priority = 10;
  const built = buildNotification(note);
  assert.deepEqual(built, { headers: { 'apns-priority': 10, 'apns-topic': 'com.example.app', 'apns-push-type': 'alert' }, body: '{"aps":{"alert":"hi"}}' });

  const shape = (r: unknown) => {
    const o = { ...(r as Record<string, unknown>) };
    if (typeof o['apns-id'] === 'string') o['apns-id'] = 'uuid';
    if (o['error'] instanceof Error) o['error'] = (o['error'] as Error).message;
    return o;
  };
  for (const token of [deviceToken(), dead, busy]) {
    const viaSend = await provider.send(note, token);
    const expected = viaSend.sent[0] ?? viaSend.failed[0];
    const got = await session.send(built, token);
    assert.deepEqual(shape(got), shape(expected), `token ${token === dead ? '410' : token === busy ? '503' : '200'}`);
  }
  const ok = await session.send(built, deviceToken());
  assert.match(String(ok['apns-id']), /^[0-9a-f-]{36}$/, 'the apns-id of a sent notification');
  const gone = await session.send(built, dead);
  assert.equal(gone.status, 410);
  assert.equal(gone.response?.reason, 'Unregistered');
  // The fake checked the headers and body of every request the same way for both paths.
  assert.equal(fake.requests.length, 8);
  assert.deepEqual(new Set(fake.requests.map((r) => r.body)), new Set(['{"aps":{"alert":"hi"}}']));

  provider.shutdown();
  const closed = await session.send(built, deviceToken());
  assert.equal(closed.error?.message, 'client is destroyed', 'a shut-down client fails as provider.send does');
});

test('node-apn internals: a request\'s stream keeps none of node-apn\'s listeners once it is closed (they would keep its closures and the promise chain alive with it)', async (t) => {
  const key = makeApnsKey();
  const fake = await startFakeApns({ key });
  t.after(() => fake.close());
  const provider = providerFor(t, key, fake);
  const session = new ApnSession(provider, () => {});
  const s = (await session.open()).session;
  assert.ok(s);
  const watched = s.request.bind(s);
  const streams: ClientHttp2Stream[] = [];
  s.request = ((...args: Parameters<typeof s.request>) => {
    const stream = watched(...args);
    streams.push(stream);
    return stream;
  }) as typeof s.request;
  const note = new apn.Notification();
  note.rawPayload = { aps: { alert: 'hi' } };
  note.topic = 'com.example.app';
  note.pushType = 'alert';
  const res = await session.send(buildNotification(note), deviceToken());
  assert.equal(res.error, undefined);
  const stream = streams[0];
  assert.ok(stream);
  // Our 'close' listener is there until the stream closes: wait for that event if it is still to come.
  if (stream.listenerCount('close') > 0) await once(stream, 'close');
  assert.equal(stream.destroyed, true);
  const left = ['end', 'error', 'aborted', 'frameError', 'data', 'response'].filter((e) => stream.listenerCount(e) > 0);
  assert.deepEqual(left, [], 'none of node-apn\'s listeners (they hold the request\'s promise) is left on the closed stream');
});
