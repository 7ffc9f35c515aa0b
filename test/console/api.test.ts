import assert from 'node:assert/strict';
import { test } from 'node:test';
import { checkToken } from '../../src/auth.js';
import { FailureRing } from '../../src/obs/failures.js';
import { api } from '../helpers/api.js';
import { session, until, wsClient } from '../helpers/clients.js';
import { startDaemon } from '../helpers/daemon.js';
import { startFakeHttp } from '../helpers/fake-http.js';

const TOKEN = 'console-api-token-0123456789';
const SECRET = 'ws-secret-for-console-tests-0123456789abcdef';
const AUTH = { authorization: `Bearer ${TOKEN}` };

function assertError(a: { status: number; body: unknown }, status: number, code: string, match?: RegExp): void {
  const body = a.body as { code?: string; error?: string };
  assert.equal(a.status, status, JSON.stringify(a.body));
  assert.equal(body.code, code);
  if (match) assert.match(body.error ?? '', match);
}

test('failure ring: keeps the latest N, newest first, bounded', () => {
  const ring = new FailureRing(3);
  assert.deepEqual(ring.recent(), []);
  for (let i = 1; i <= 5; i++) {
    ring.record({ at: `t${i}`, id: `m${i}`, uid: 'u', transport: 'hook', target: 'u', status: 'failed', attempts: i });
  }
  assert.equal(ring.size, 3);
  assert.deepEqual(
    ring.recent().map((f) => f.id),
    ['m5', 'm4', 'm3'],
  );
  assert.deepEqual(
    ring.recent(2).map((f) => f.id),
    ['m5', 'm4'],
  );
  assert.throws(() => new FailureRing(0), RangeError);
});

test('POST /v1/tokens: mints a token for the uid with ws.secret that binds that uid, and needs the API token', async (t) => {
  const d = await startDaemon(t, { http: { token: TOKEN }, ws: { auth: 'token', secret: SECRET } });
  assertError(await api(d.httpUrl, 'POST', '/v1/tokens', { uid: 'alice' }), 401, 'NOTIFY_ERR_UNAUTHORIZED');

  const before = Date.now();
  const a = await api(d.httpUrl, 'POST', '/v1/tokens', { uid: 'alice', ttl: '15m' }, AUTH);
  assert.equal(a.status, 200, JSON.stringify(a.body));
  const { uid, token, expiresAt } = a.body as { uid: string; token: string; expiresAt: string };
  assert.equal(uid, 'alice');
  const exp = Date.parse(expiresAt);
  assert.ok(exp >= before + 15 * 60_000 - 1000 && exp <= Date.now() + 15 * 60_000, `expiresAt ${expiresAt} is 15 minutes ahead`);
  const check = checkToken(SECRET, token, 'alice');
  assert.equal(check.ok, true);
  assert.equal(checkToken(SECRET, token, 'bob').ok, false);

  // It binds: a session with it is registered, and a push reaches it.
  const c = await wsClient(t, `${d.wsUrl}?uid=alice&token=${encodeURIComponent(token)}`);
  await until(() => d.registry.index('websocket').has('alice'), 'alice to bind with the minted token');
  const r = await api(d.httpUrl, 'POST', '/v1/send', { uid: 'alice', msg: 'hi' }, AUTH);
  assert.equal(r.status, 200);
  assert.equal(await c.frame(1), 'hi');

  // Without ttl: one hour, as `notify token`.
  const def = await api(d.httpUrl, 'POST', '/v1/tokens', { uid: 'bob' }, AUTH);
  const defExp = Date.parse((def.body as { expiresAt: string }).expiresAt);
  assert.ok(defExp > Date.now() + 3_500_000 && defExp <= Date.now() + 3_600_000, 'default ttl is 1h');
  // A number is seconds.
  const secs = await api(d.httpUrl, 'POST', '/v1/tokens', { uid: 'bob', ttl: 120 }, AUTH);
  assert.ok(Date.parse((secs.body as { expiresAt: string }).expiresAt) <= Date.now() + 120_000);
});

test('POST /v1/tokens: bad input gets a 400 naming what is wrong, and the daemon keeps serving', async (t) => {
  const d = await startDaemon(t, { http: { token: TOKEN }, ws: { auth: 'token', secret: SECRET } });
  const post = (body: unknown) => api(d.httpUrl, 'POST', '/v1/tokens', body, AUTH);
  assertError(await post({}), 400, 'NOTIFY_ERR_BAD_REQUEST', /"uid" is required/);
  assertError(await post({ uid: '' }), 400, 'NOTIFY_ERR_BAD_REQUEST', /"uid" must not be empty/);
  assertError(await post({ uid: 42 }), 400, 'NOTIFY_ERR_BAD_REQUEST', /"uid" is required/);
  assertError(await post({ uid: 'x'.repeat(5000) }), 400, 'NOTIFY_ERR_BAD_REQUEST', /"uid" is too long/);
  assertError(await post({ uid: 'a', ttl: 'soon' }), 400, 'NOTIFY_ERR_BAD_REQUEST', /"ttl" must be a duration/);
  assertError(await post({ uid: 'a', ttl: '0s' }), 400, 'NOTIFY_ERR_BAD_REQUEST', /"ttl" must be at least 1s/);
  assertError(await post({ uid: 'a', ttl: '400d' }), 400, 'NOTIFY_ERR_BAD_REQUEST', /"ttl" must be at most 366d/);
  assertError(await post({ uid: 'a', secret: 'x' }), 400, 'NOTIFY_ERR_BAD_REQUEST', /unknown field "secret"/);
  assertError(await post([1]), 400, 'NOTIFY_ERR_BAD_REQUEST', /expected a JSON object/);
  assertError(await post('{"uid":'), 400, 'NOTIFY_ERR_INVALID_JSON');
  assertError(await api(d.httpUrl, 'GET', '/v1/tokens', undefined, AUTH), 405, 'NOTIFY_ERR_METHOD');
  for (const a of [await post({ uid: 'a', ttl: 'soon' })]) {
    assert.ok(!JSON.stringify(a.body).includes(SECRET), 'the secret is never in an answer');
  }
  const ok = await post({ uid: 'still-serving' });
  assert.equal(ok.status, 200);
});

test('POST /v1/tokens: 409 with a clear error when ws.auth is not token', async (t) => {
  const d = await startDaemon(t, { http: { token: TOKEN } });
  assertError(await api(d.httpUrl, 'POST', '/v1/tokens', { uid: 'alice' }, AUTH), 409, 'NOTIFY_ERR_WS_AUTH', /need ws\.auth: token/);
  const st = await api(d.httpUrl, 'GET', '/v1/status', undefined, AUTH);
  assert.equal((st.body as { wsAuth: string }).wsAuth, 'none', '/v1/status says which ws.auth runs');
});

test('GET /v1/failures: provider deliveries rejected or given up after retries, newest first, with the message id', async (t) => {
  const fake = await startFakeHttp(t, (req) => (req.path.startsWith('/gone/') ? { status: 400, body: 'no such user' } : { status: 503, body: 'busy' }));
  const d = await startDaemon(t, {
    http: { token: TOKEN },
    transports: { hook: { type: 'http', url: `${fake.url}/{{uid}}/x`, retry: { limit: 1, baseDelayMs: 5, maxDelayMs: 50 } } },
  });
  assertError(await api(d.httpUrl, 'GET', '/v1/failures'), 401, 'NOTIFY_ERR_UNAUTHORIZED');
  const empty = await api(d.httpUrl, 'GET', '/v1/failures', undefined, AUTH);
  assert.deepEqual(empty.body, { failures: [], kept: 200 });

  const r1 = await api(d.httpUrl, 'POST', '/v1/send', { uid: 'gone', msg: 'one' }, AUTH);
  const r2 = await api(d.httpUrl, 'POST', '/v1/send', { uid: 'busy', msg: 'two' }, AUTH);
  const id1 = (r1.body as { id: string }).id;
  const id2 = (r2.body as { id: string }).id;
  type F = { at: string; id: string; uid: string; transport: string; target: string; status: string; reason?: string; attempts: number };
  let failures: F[] = [];
  const read = async () => {
    failures = ((await api(d.httpUrl, 'GET', '/v1/failures', undefined, AUTH)).body as { failures: F[] }).failures;
    return failures.length;
  };
  for (let i = 0; (await read()) < 2; i++) {
    if (i > 600) assert.fail(`expected 2 failures, got ${JSON.stringify(failures)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const [busy, gone] = failures as [F, F];
  assert.equal(gone.id, id1);
  assert.equal(gone.uid, 'gone');
  assert.equal(gone.transport, 'hook');
  assert.equal(gone.status, 'rejected');
  assert.equal(gone.attempts, 1);
  assert.match(gone.reason ?? '', /400/);
  assert.equal(busy.id, id2);
  assert.equal(busy.status, 'failed');
  assert.equal(busy.attempts, 2, 'given up after retry.limit 1');
  assert.match(busy.reason ?? '', /gave up after 2 attempts/);
  assert.ok(Date.parse(busy.at) >= Date.parse(gone.at));

  const one = await api(d.httpUrl, 'GET', '/v1/failures?limit=1', undefined, AUTH);
  assert.equal((one.body as { failures: F[] }).failures.length, 1);
  for (const bad of ['0', '201', 'x', '-1', '1.5']) {
    assertError(await api(d.httpUrl, 'GET', `/v1/failures?limit=${bad}`, undefined, AUTH), 400, 'NOTIFY_ERR_BAD_REQUEST', /limit must be a whole number from 1 to 200/);
  }
});

test('API answers carry Cache-Control: no-store', async (t) => {
  const d = await startDaemon(t, { http: { token: TOKEN } });
  await session(t, d, 'uid1');
  for (const path of ['/v1/status', '/metrics', '/v1/failures']) {
    const res = await fetch(`${d.httpUrl}${path}`, { headers: AUTH });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('cache-control'), 'no-store', path);
    await res.arrayBuffer();
  }
});
