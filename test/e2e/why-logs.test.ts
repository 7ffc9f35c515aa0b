import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { test } from 'node:test';
import { makeToken } from '../../src/auth.js';
import { shortToken } from '../../src/obs/log.js';
import { api, send } from '../helpers/api.js';
import { session, textClient, until, wsClient } from '../helpers/clients.js';
import { startDaemon } from '../helpers/daemon.js';
import { startFakeHttp } from '../helpers/fake-http.js';

const SECRET = 'why-logs-secret-0123456789abcdef';

test('logs: refused WebSocket binds are logged at info with the close code and reason and the uid, rate-limited per reason; no token appears in the log', async (t) => {
  const d = await startDaemon(t, { ws: { auth: 'token', secret: SECRET } }, 'info');
  const forged = makeToken('another-secret-0123456789abcdef', 'alice', Math.floor(Date.now() / 1000) + 60);
  const c = await wsClient(t, `${d.wsUrl}?token=${encodeURIComponent(forged)}`, { bind: 'alice' });
  const [code, reason] = await c.closed;
  assert.equal(code, 4403);
  await until(() => d.logs.some((l) => l.msg === 'websocket bind refused'), 'the refusal line');
  const line = d.logs.find((l) => l.msg === 'websocket bind refused');
  assert.equal(line?.level, 'info');
  assert.equal(line?.refused, 'auth');
  assert.equal(line?.reason, reason, 'the reason the close frame gave');
  assert.equal(line?.closeCode, 4403);
  assert.equal(line?.uid, 'alice');
  assert.equal(line?.remote, '127.0.0.1');

  // A flood of refused binds: a line or two, not one per attempt.
  const flood = await Promise.all(Array.from({ length: 30 }, () => wsClient(t, `${d.wsUrl}?token=${encodeURIComponent(forged)}`, { bind: 'alice' })));
  await Promise.all(flood.map((f) => f.closed));
  const lines = d.logs.filter((l) => l.msg === 'websocket bind refused');
  assert.ok(lines.length <= 3, `rate-limited: ${lines.length} lines for 31 refusals`);
  const all = d.logText.join('');
  assert.ok(!all.includes(forged), 'the token is not in the log');
  assert.ok(!all.includes(forged.slice(-20)), 'nor a part of it');
  assert.ok(!all.includes(SECRET));
});

test('logs: a bind over limits.sessionsPerUid and a connection over limits.connectionsPerIp are logged with their reason', async (t) => {
  const d = await startDaemon(t, { limits: { sessionsPerUid: 1, connectionsPerIp: 3 } }, 'info');
  await session(t, d, 'bob');
  const second = await wsClient(t, d.wsUrl, { bind: 'bob' });
  const [code] = await second.closed;
  assert.equal(code, 4429);
  await until(() => d.logs.some((l) => l.msg === 'websocket bind refused' && l.refused === 'sessionsPerUid'), 'the sessionsPerUid line');
  const perUid = d.logs.find((l) => l.refused === 'sessionsPerUid');
  assert.equal(perUid?.reason, 'too many sessions for this uid (limits.sessionsPerUid: 1)');
  assert.equal(perUid?.uid, 'bob');

  // Two connections open (bob's, and one more), the fourth is over connectionsPerIp: 3.
  await wsClient(t, d.wsUrl);
  await wsClient(t, d.wsUrl);
  const port = Number(new URL(d.wsUrl).port);
  const sock = connect(port, '127.0.0.1');
  t.after(() => sock.destroy());
  sock.on('error', () => {});
  sock.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n');
  await until(() => d.logs.some((l) => l.msg === 'connection refused'), 'the connection refusal line');
  const conn = d.logs.find((l) => l.msg === 'connection refused');
  assert.equal(conn?.level, 'info');
  assert.equal(conn?.listener, 'ws');
  assert.equal(conn?.status, '503');
  assert.equal(conn?.reason, 'too many connections from 127.0.0.1 (limits.connectionsPerIp: 3)');
});

test('logs: a refused Text line is logged with its reason; a refused HTTP publish by its 401; the Authorization header never', async (t) => {
  const token = 'why-logs-http-token-0123456789';
  const d = await startDaemon(t, { http: { token } }, 'info');
  const backend = await textClient(t, d.textPort);
  backend.write('{"uid":"","msg":"x"}\n');
  const [reply] = await backend.replies(1);
  assert.match(reply ?? '', /^error: /);
  await until(() => d.logs.some((l) => l.msg === 'text publish refused'), 'the Text refusal');
  const text = d.logs.find((l) => l.msg === 'text publish refused');
  assert.equal(text?.level, 'info');
  assert.equal(text?.reason, (reply ?? '').slice('error: '.length));

  const res = await api(d.httpUrl, 'POST', '/v1/send', { uid: 'x', msg: 'y' }, { authorization: 'Bearer not-the-token-at-all' });
  assert.equal(res.status, 401);
  const refused = d.logs.find((l) => l.msg === 'http request refused');
  assert.equal(refused?.reason, 'wrong bearer token');
  assert.equal(refused?.path, '/v1/send');
  const all = d.logText.join('');
  assert.ok(!all.includes('not-the-token-at-all') && !all.includes(token));
});

test('logs: a publish over limits.uidsPerMessage is logged as refused with its reason; an empty uid bind too', async (t) => {
  const d = await startDaemon(t, { limits: { uidsPerMessage: 2 } }, 'info');
  const res = await api(d.httpUrl, 'POST', '/v1/send', { uids: ['a', 'b', 'c'], msg: 'x' });
  assert.equal(res.status, 400);
  const line = d.logs.find((l) => l.msg === 'http publish refused');
  assert.equal(line?.level, 'info');
  assert.equal(line?.reason, 'too many uids: 3 (limits.uidsPerMessage is 2)');
  assert.equal(line?.code, 'NOTIFY_ERR_INVALID_MESSAGE');
  const c = await wsClient(t, d.wsUrl, { bind: '' });
  const [code, reason] = await c.closed;
  assert.equal(code, 1008);
  await until(() => d.logs.some((l) => l.msg === 'websocket bind refused' && l.refused === 'uid'), 'the uid refusal');
  assert.equal(d.logs.find((l) => l.refused === 'uid')?.reason, reason);
});

test('logs: a device token is shortened in every line that names one, at debug too: registered, a provider retry, unregistered', async (t) => {
  const token = 'a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90';
  let calls = 0;
  const fake = await startFakeHttp(t, () => (calls++ === 0 ? { status: 503, body: 'busy' } : undefined));
  const d = await startDaemon(
    t,
    { transports: { hook: { type: 'http', url: `${fake.url}/h/{{token}}`, body: '{{msg}}', perDevice: true, retry: { limit: 2, baseDelayMs: 200, maxDelayMs: 200 } } } },
    'debug',
  );
  const reg = await api(d.httpUrl, 'POST', '/v1/devices', { uid: 'alice', transport: 'hook', token });
  assert.equal(reg.status, 200, JSON.stringify(reg.body));
  await send(d.httpUrl, { uid: 'alice', msg: 'hello' });
  await until(() => calls >= 2, 'the retry to reach the provider');
  const del = await api(d.httpUrl, 'DELETE', '/v1/devices', { uid: 'alice', transport: 'hook', token });
  assert.equal(del.status, 200, JSON.stringify(del.body));
  await until(() => d.logs.some((l) => l.msg === 'device unregistered'), 'the unregistration line');

  const short = shortToken(token);
  assert.equal(short, 'a1b2c3d4…8f90');
  for (const msg of ['device registered', 'provider retry', 'device unregistered']) {
    const line = d.logs.find((l) => l.msg === msg);
    assert.equal(line?.target, short, `${msg}: ${JSON.stringify(line)}`);
  }
  const all = d.logText.join('');
  assert.ok(!all.includes(token), 'the whole token is in no line');
  assert.ok(!all.includes(token.slice(8, 40)), 'nor its middle');
});
