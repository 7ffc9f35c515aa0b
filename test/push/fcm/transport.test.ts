import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { PublishReport, ReportEntry } from '../../../src/types.js';
import { api, send } from '../../helpers/api.js';
import { cli } from '../../helpers/cli.js';
import { textClient } from '../../helpers/clients.js';
import { FCM_SCOPE, fcmError } from '../../helpers/fake-fcm.js';
import { type FcmDaemon, fcmToken, fcmWorld } from '../../helpers/fcm.js';
import { shortToken } from '../../../src/obs/log.js';

delete process.env.NOTIFY_TOKEN;

const fcmEntries = (r: PublishReport): ReportEntry[] => r.results.filter((e) => e.transport === 'fcm');
const retiredLogs = (d: FcmDaemon) => d.logs.filter((l) => l.msg === 'device token retired; it will not be used again');

async function fcmHealth(d: FcmDaemon): Promise<Record<string, unknown>> {
  const h = await api(d.httpUrl, 'GET', '/healthz');
  return (h.body as { transports: Record<string, Record<string, unknown>> }).transports.fcm as Record<string, unknown>;
}

test('fcm: an alert reaches every token of the uid, each with the message name as id; the fake verified the assertion, the bearer, the project path and the message', async (t) => {
  const tokens = [fcmToken(), fcmToken(), fcmToken()];
  const w = await fcmWorld(t, { devices: { uid1: tokens } });
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', title: 'Export', msg: 'done', data: { file: 'a.csv', n: 3, ok: true, meta: { k: 'v' } } });
  assert.equal(report.delivered, true);
  const entries = fcmEntries(report);
  assert.deepEqual(entries.map((e) => e.target).sort(), [...tokens].sort());
  for (const e of entries) {
    assert.equal(e.status, 'sent');
    assert.match(e.id ?? '', /^projects\/notify-test\/messages\/0:[0-9a-f]{16}$/);
  }
  assert.deepEqual(w.fake.violations, []);
  assert.equal(w.fake.requests.length, 3);
  assert.equal(w.fake.tokenRequests.length, 1, 'concurrent sends shared one access token request');
  const [tr] = w.fake.tokenRequests;
  assert.equal(tr?.problem, undefined, 'the assertion verified against the public key');
  assert.equal(tr?.assertion?.header.alg, 'RS256');
  assert.equal(tr?.assertion?.header.kid, w.account.privateKeyId);
  assert.equal(tr?.assertion?.claims.iss, w.account.clientEmail);
  assert.equal(tr?.assertion?.claims.aud, w.fake.tokenUrl);
  assert.equal(tr?.assertion?.claims.scope, FCM_SCOPE);
  assert.equal(Number(tr?.assertion?.claims.exp) - Number(tr?.assertion?.claims.iat), 3600);
  for (const r of w.fake.requests) {
    assert.equal(r.path, '/v1/projects/notify-test/messages:send');
    assert.equal(r.bearer, w.fake.issued[0]);
    assert.deepEqual(r.json, {
      message: { token: r.token, notification: { title: 'Export', body: 'done' }, data: { file: 'a.csv', n: '3', ok: 'true', meta: '{"k":"v"}' } },
    });
  }
  // A second message uses the cached token.
  await send(d.httpUrl, { uid: 'uid1', msg: 'again' });
  assert.equal(w.fake.tokenRequests.length, 1, 'the access token is cached');
  const h = await fcmHealth(d);
  assert.equal(h.state, 'running');
  assert.equal(h.sent, 6);
  assert.equal(h.configError, undefined);
  assert.match(String((h.accessToken as { validUntil?: string }).validUntil), /^\d{4}-\d\d-\d\dT/);
});

test('fcm: the original data-only line is a data message with android.priority HIGH; ttl maps to android.ttl', async (t) => {
  const token = fcmToken();
  const w = await fcmWorld(t, { devices: { uid1: [token] } });
  const d = await w.daemon();
  const backend = await textClient(t, d.textPort);
  backend.write('{"uid":"uid1","percent":"88%","step":4}\n');
  assert.deepEqual(await backend.replies(1), ['ok']);
  assert.deepEqual(w.fake.requests[0]?.json, { message: { token, data: { percent: '88%', step: '4' }, android: { priority: 'HIGH' } } });
  await send(d.httpUrl, { uid: 'uid1', msg: 'soon gone', ttl: '90s' });
  assert.deepEqual(w.fake.requests[1]?.json, { message: { token, notification: { body: 'soon gone' }, android: { ttl: '90s' } } });
  assert.deepEqual(w.fake.violations, []);
});

test('fcm: a payload over 4096 bytes and a reserved data key are rejected before anything is sent', async (t) => {
  const w = await fcmWorld(t, { devices: { uid1: [fcmToken()] } });
  const d = await w.daemon();
  const big = await send(d.httpUrl, { uid: 'uid1', msg: 'x'.repeat(5000) });
  assert.equal(big.delivered, false);
  assert.equal(fcmEntries(big)[0]?.status, 'rejected');
  assert.match(fcmEntries(big)[0]?.reason ?? '', /^payload too large: the FCM payload \(notification and data\) would be \d+ bytes; FCM takes at most 4096$/);
  const reserved = await send(d.httpUrl, { uid: 'uid1', msg: 'hi', data: { 'google.sent_time': 1 } });
  assert.deepEqual(
    fcmEntries(reserved).map((e) => [e.status, e.reason]),
    [['rejected', 'data key "google.sent_time" is reserved by FCM (keys starting with "google." are FCM\'s)']],
  );
  const from = await send(d.httpUrl, { uid: 'uid1', msg: 'hi', data: { from: 'me' } });
  assert.equal(fcmEntries(from)[0]?.reason, 'data key "from" is reserved by FCM');
  assert.equal(w.fake.requests.length, 0);
  assert.equal(w.fake.tokenRequests.length, 0, 'not even an access token was asked for');
});

for (const [prefix, shown] of [
  ['dead-', /^404 UNREGISTERED \(Requested entity was not found\.\)$/],
  ['mismatch-', /^403 SENDER_ID_MISMATCH \(SenderId mismatch\)$/],
  ['badtoken-', /^400 INVALID_ARGUMENT \(The registration token is not a valid FCM registration token\)$/],
] as const) {
  test(`fcm: ${shown.source.slice(1, 24)}… retires the token: not retried, never tried again, also not by the next process; logged once`, async (t) => {
    const dead = fcmToken(prefix);
    const live = fcmToken();
    const w = await fcmWorld(t, { devices: { uid1: [dead, live] } });
    const d1 = await w.daemon();
    const first = await send(d1.httpUrl, { uid: 'uid1', msg: 'one' });
    const deadEntry = fcmEntries(first).find((e) => e.target === dead);
    assert.equal(deadEntry?.status, 'rejected');
    assert.match(deadEntry?.reason ?? '', shown);
    assert.equal(fcmEntries(first).find((e) => e.target === live)?.status, 'sent');
    assert.equal(w.fake.requests.filter((r) => r.token === dead).length, 1, 'tried once, not retried');
    assert.deepEqual(d1.registry.index('fcm').targets('uid1'), [live]);

    await send(d1.httpUrl, { uid: 'uid1', msg: 'two' });
    assert.equal(w.fake.requests.filter((r) => r.token === dead).length, 1, 'not tried again by the same process');
    assert.equal(retiredLogs(d1).length, 1, 'the retirement is logged once');
    assert.equal(retiredLogs(d1)[0]?.target, shortToken(dead));
    await d1.stop();

    // A new process on the same state directory and the same YAML (which still lists the token).
    const d2 = await w.daemon();
    assert.deepEqual(d2.registry.index('fcm').targets('uid1'), [live]);
    await send(d2.httpUrl, { uid: 'uid1', msg: 'three' });
    assert.equal(w.fake.requests.filter((r) => r.token === dead).length, 1, 'not tried by the next process either');
    assert.equal(retiredLogs(d2).length, 0);
    assert.equal((await fcmHealth(d2)).state, 'running', 'a dead token is no configuration error');
  });
}

test('fcm: an INVALID_ARGUMENT about the message (not the token) is rejected, not retried, and the token is kept', async (t) => {
  const token = fcmToken('badarg-');
  const w = await fcmWorld(t, { devices: { uid1: [token] } });
  const d = await w.daemon();
  const r1 = await send(d.httpUrl, { uid: 'uid1', msg: 'one' });
  assert.deepEqual(fcmEntries(r1).map((e) => [e.status, e.reason]), [['rejected', '400 INVALID_ARGUMENT (Request contains an invalid argument.)']]);
  assert.equal(w.fake.requests.length, 1, 'not retried');
  assert.deepEqual(d.registry.index('fcm').targets('uid1'), [token], 'the token is kept');
  await send(d.httpUrl, { uid: 'uid1', msg: 'two' });
  assert.equal(w.fake.requests.length, 2, 'the next message is sent to it');
  assert.equal(retiredLogs(d).length, 0);
});

test('fcm: 429 QUOTA_EXCEEDED with Retry-After: 1 is retried no sooner than asked, then delivered', async (t) => {
  const token = fcmToken('quota-');
  const w = await fcmWorld(t, { devices: { uid1: [token] } });
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
  assert.equal(fcmEntries(report)[0]?.status, 'sent');
  const [a, b] = w.fake.requests;
  assert.equal(w.fake.requests.length, 2);
  const gap = (b?.receivedAt ?? 0) - (a?.receivedAt ?? 0);
  assert.ok(gap >= 950, `retried after ${gap} ms`);
});

test('fcm: 429 with Retry-After as an HTTP date is honoured too', async (t) => {
  const w = await fcmWorld(t, { devices: { uid1: [fcmToken('quotadate-')] } });
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
  assert.equal(fcmEntries(report)[0]?.status, 'sent');
  const [a, b] = w.fake.requests;
  const gap = (b?.receivedAt ?? 0) - (a?.receivedAt ?? 0);
  // The date has whole seconds: 2 s ahead is 1 to 2 s away.
  assert.ok(gap >= 900, `retried after ${gap} ms`);
});

test('fcm: a Retry-After longer than retry.maxDelayMs gives up with the reason instead of retrying early', async (t) => {
  const w = await fcmWorld(t, {
    devices: { uid1: [fcmToken()] },
    fake: { respond: () => ({ ...fcmError(429, 'RESOURCE_EXHAUSTED', 'Quota exceeded.', 'QUOTA_EXCEEDED'), headers: { 'retry-after': '60' } }) },
  });
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
  assert.equal(fcmEntries(report)[0]?.status, 'failed');
  assert.match(fcmEntries(report)[0]?.reason ?? '', /^429 QUOTA_EXCEEDED \(Quota exceeded\.\); the provider asked to retry after 60 s, longer than retry\.maxDelayMs$/);
  assert.equal(w.fake.requests.length, 1);
});

for (const [prefix, status] of [
  ['flaky-', '503 UNAVAILABLE'],
  ['internal-', '500 INTERNAL'],
] as const) {
  test(`fcm: ${status} is retried with backoff, then delivered; the token is kept`, async (t) => {
    const token = fcmToken(prefix);
    const w = await fcmWorld(t, { devices: { uid1: [token] }, fcm: { retry: { limit: 3, baseDelayMs: 100, maxDelayMs: 5000 } } });
    const d = await w.daemon();
    const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
    assert.equal(fcmEntries(report)[0]?.status, 'sent');
    assert.equal(w.fake.requests.length, 2);
    const gap = (w.fake.requests[1]?.receivedAt ?? 0) - (w.fake.requests[0]?.receivedAt ?? 0);
    assert.ok(gap >= 50, `backoff ${gap} ms (50-100 with jitter)`);
    assert.deepEqual(d.registry.index('fcm').targets('uid1'), [token]);
  });
}

test('fcm: retries are bounded: a token that keeps getting 503 fails after limit + 1 attempts, and is kept', async (t) => {
  const token = fcmToken('busy-');
  const w = await fcmWorld(t, { devices: { uid1: [token] }, fcm: { retry: { limit: 2, baseDelayMs: 10, maxDelayMs: 100 } } });
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
  assert.deepEqual(
    fcmEntries(report).map((e) => [e.status, e.reason]),
    [['failed', '503 UNAVAILABLE (The service is currently unavailable.) (gave up after 3 attempts)']],
  );
  assert.equal(w.fake.requests.length, 3);
  assert.deepEqual(d.registry.index('fcm').targets('uid1'), [token]);
});

test('fcm: a 401 gets one fresh access token and one retry, which succeeds', async (t) => {
  const token = fcmToken('revoked-');
  const w = await fcmWorld(t, { devices: { uid1: [token] } });
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
  assert.equal(fcmEntries(report)[0]?.status, 'sent', JSON.stringify(report));
  assert.equal(w.fake.issued.length, 2, 'a second access token was fetched');
  assert.deepEqual(
    w.fake.requests.map((r) => r.bearer),
    [w.fake.issued[0], w.fake.issued[1]],
    'the retry carried the fresh token',
  );
  // The fresh token is cached for what follows.
  await send(d.httpUrl, { uid: 'uid1', msg: 'again' });
  assert.equal(w.fake.issued.length, 2);
  assert.equal(w.fake.requests[2]?.bearer, w.fake.issued[1]);
  assert.equal((await fcmHealth(d)).state, 'running');
});

test('fcm: a 401 again with the fresh access token is a configuration error: one retry only, the token kept, shown in /healthz', async (t) => {
  const token = fcmToken();
  const w = await fcmWorld(t, {
    devices: { uid1: [token] },
    fake: { respond: () => fcmError(401, 'UNAUTHENTICATED', 'Request had invalid authentication credentials.') },
  });
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
  const [e] = fcmEntries(report);
  assert.equal(e?.status, 'failed');
  assert.match(e?.reason ?? '', /^401 UNAUTHENTICATED \(Request had invalid authentication credentials\.\), again with a fresh access token: check that the service account may send/);
  assert.equal(w.fake.requests.length, 2, 'one retry, not a loop');
  assert.equal(w.fake.issued.length, 2);
  assert.deepEqual(d.registry.index('fcm').targets('uid1'), [token]);
  const h = await fcmHealth(d);
  assert.equal(h.state, 'degraded');
  assert.equal(h.configError, e?.reason);
});

test('fcm: THIRD_PARTY_AUTH_ERROR is a configuration error: reported, not retried, token kept, shown in /healthz and notify status until a send succeeds', async (t) => {
  const ios = fcmToken('thirdparty-');
  const android = fcmToken();
  const w = await fcmWorld(t, { devices: { iphone: [ios], pixel: [android] } });
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'iphone', msg: 'hi' });
  const [e] = fcmEntries(report);
  assert.equal(e?.status, 'failed');
  assert.match(e?.reason ?? '', /^401 THIRD_PARTY_AUTH_ERROR \(Auth error from APNS or Web Push Service\): the APNs or Web Push credentials in the Firebase project are missing or invalid/);
  assert.equal(w.fake.requests.length, 1, 'not retried');
  assert.deepEqual(d.registry.index('fcm').targets('iphone'), [ios], 'the token is kept');
  assert.equal(retiredLogs(d).length, 0);

  const h = await fcmHealth(d);
  assert.equal(h.state, 'degraded');
  assert.equal(h.configError, e?.reason);
  assert.match(String(h.configErrorSince), /^\d{4}-/);
  const healthz = await api(d.httpUrl, 'GET', '/healthz');
  assert.equal(healthz.status, 200, 'the node still takes publishes');
  const status = await cli(['status', '--server', d.httpUrl]);
  assert.equal(status.code, 0, status.err);
  const line = status.out.split('\n').find((l) => l.trimStart().startsWith('fcm '));
  assert.match(line ?? '', /^ {2}fcm +degraded {2}configError 401 THIRD_PARTY_AUTH_ERROR/);
  assert.equal(d.logs.filter((l) => l.msg === 'FCM configuration error; deliveries fail until it is fixed').length, 1);

  // An Android token works: the error clears.
  const ok = await send(d.httpUrl, { uid: 'pixel', msg: 'hi' });
  assert.equal(fcmEntries(ok)[0]?.status, 'sent');
  const after = await fcmHealth(d);
  assert.equal(after.state, 'running');
  assert.equal(after.configError, undefined);
});

test('fcm: a token endpoint refusing the grant is a configuration error: every token fails at once, none retired, asked once, shown in /healthz', async (t) => {
  const tokens = [fcmToken(), fcmToken(), fcmToken()];
  const w = await fcmWorld(t, {
    devices: { uid1: tokens },
    fake: { tokenRespond: () => ({ status: 400, body: { error: 'invalid_grant', error_description: 'Invalid grant: account not found' } }) },
  });
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
  const reason = `access token refused by ${w.fake.tokenUrl}: 400 invalid_grant: Invalid grant: account not found (check the service account file: is the key still valid, and this machine's clock?)`;
  assert.deepEqual(
    fcmEntries(report).map((e) => [e.status, e.reason]),
    tokens.map(() => ['failed', reason]),
  );
  assert.equal(w.fake.requests.length, 0, 'nothing sent to FCM');
  assert.equal(w.fake.tokenRequests.length, 1, 'the refusal is shared and remembered, not asked for per token');
  assert.deepEqual(d.registry.index('fcm').targets('uid1').sort(), [...tokens].sort(), 'no token retired');
  const h = await fcmHealth(d);
  assert.equal(h.state, 'degraded');
  assert.equal(h.configError, reason);
  const status = await cli(['status', '--server', d.httpUrl]);
  assert.match(status.out, /\n {2}fcm +degraded {2}configError access token refused by/);
});

test('fcm: a service account whose key the token endpoint does not know is refused there (the fake verifies the RS256 signature)', async (t) => {
  const { writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { generateKeyPairSync } = await import('node:crypto');
  const { serviceAccountJson } = await import('../../helpers/fake-fcm.js');
  const w = await fcmWorld(t, { devices: { uid1: [fcmToken()] } });
  const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  writeFileSync(join(w.dir, 'sa.json'), serviceAccountJson({ ...w.account, privateKeyPem: other }, w.fake.tokenUrl));
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
  assert.equal(fcmEntries(report)[0]?.status, 'failed');
  assert.match(fcmEntries(report)[0]?.reason ?? '', /^access token refused by .*: 400 invalid_grant: Invalid JWT Signature\./);
  assert.equal(w.fake.tokenRequests[0]?.problem, 'Invalid JWT Signature.');
  assert.equal(w.fake.requests.length, 0);
});

test('fcm: a token endpoint that fails (503) is retried like a send, then delivered', async (t) => {
  const w = await fcmWorld(t, {
    devices: { uid1: [fcmToken()] },
    fake: { tokenRespond: (n) => (n === 1 ? { status: 503, body: 'busy' } : undefined) },
  });
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
  assert.equal(fcmEntries(report)[0]?.status, 'sent', JSON.stringify(report));
  assert.equal(w.fake.tokenRequests.length, 2);
  assert.equal((await fcmHealth(d)).state, 'running');
});

test('fcm: a wrong projectId is a configuration error (403 PERMISSION_DENIED), not a reason to retire every token', async (t) => {
  const token = fcmToken();
  const w = await fcmWorld(t, { devices: { uid1: [token] }, fcm: { projectId: 'someone-else' } });
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
  assert.equal(fcmEntries(report)[0]?.status, 'failed');
  assert.match(fcmEntries(report)[0]?.reason ?? '', /^403 PERMISSION_DENIED \(Permission 'cloudmessaging\.messages\.create' denied .*\): the service account may not send for this project/);
  assert.equal(w.fake.requests[0]?.path, '/v1/projects/someone-else/messages:send', 'projectId overrides the file');
  assert.deepEqual(d.registry.index('fcm').targets('uid1'), [token]);
  assert.equal((await fcmHealth(d)).state, 'degraded');
});

test('fcm: neither the private key nor an access token shows in any report, log, /healthz, status or reason, even when FCM echoes the bearer', async (t) => {
  const echo = fcmToken('echo-');
  const w = await fcmWorld(t, { devices: { uid1: [echo, fcmToken('revoked-'), fcmToken('thirdparty-'), fcmToken()] } });
  const d = await w.daemon();
  const shown: string[] = [];
  const r1 = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
  shown.push(JSON.stringify(r1));
  const echoed = fcmEntries(r1).find((e) => e.target === echo);
  assert.equal(echoed?.status, 'rejected');
  assert.equal(echoed?.reason, '400 INVALID_ARGUMENT (Invalid request; you sent Bearer [redacted])', 'the echoed access token is scrubbed');
  shown.push(JSON.stringify((await api(d.httpUrl, 'GET', '/healthz')).body));
  shown.push(JSON.stringify((await api(d.httpUrl, 'GET', '/v1/status')).body));
  shown.push((await cli(['status', '--server', d.httpUrl])).out);
  shown.push((await cli(['status', '--server', d.httpUrl, '--json'])).out);
  shown.push(JSON.stringify(d.logs));
  const all = shown.join('\n');
  assert.ok(w.fake.issued.length >= 2);
  for (const token of w.fake.issued) assert.ok(!all.includes(token), 'an access token leaked');
  const keyBody = w.account.privateKeyPem.split('\n').filter((l) => l && !l.startsWith('-----'));
  for (const line of keyBody) assert.ok(!all.includes(line), 'a line of the private key leaked');
  assert.ok(!all.includes('PRIVATE KEY'));
});
