import assert from 'node:assert/strict';
import { once } from 'node:events';
import { request } from 'node:http';
import { test, type TestContext } from 'node:test';
import { type ClientOptions, WebSocket } from 'ws';
import { type TestDaemon, startDaemon } from '../helpers/daemon.js';
import { HANG_MS, type WsClient, bound, textClient, within, wsClient } from '../helpers/clients.js';
import { refusals } from '../helpers/metrics.js';

// ---------------------------------------------------------------------------------------------
// helpers


function index(d: TestDaemon) {
  return d.registry.index('websocket');
}

/** The websocket transport's connection count, from /healthz. */
async function connections(d: TestDaemon): Promise<number> {
  const h = (await (await fetch(`${d.httpUrl}/healthz`)).json()) as { transports: { websocket: { connections: number } } };
  return h.transports.websocket.connections;
}

async function connectionsBecome(d: TestDaemon, n: number): Promise<void> {
  const deadline = Date.now() + HANG_MS;
  let now = await connections(d);
  while (now !== n) {
    if (Date.now() > deadline) assert.fail(`expected ${n} websocket connections, /healthz says ${now}`);
    await new Promise((r) => setTimeout(r, 10));
    now = await connections(d);
  }
}

/** Publishes through the HTTP API. */
async function send(d: TestDaemon, body: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${d.httpUrl}/v1/send`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** A WebSocket upgrade: accepted (open) or refused with an HTTP status and body. */
type Attempt = { open: true; ws: WebSocket } | { open: false; status: number; body: string };

function attempt(t: TestContext, url: string, opts: ClientOptions = {}): Promise<Attempt> {
  const ws = new WebSocket(url, opts);
  ws.on('error', () => {});
  t.after(() => ws.terminate());
  const settled = new Promise<Attempt>((resolve) => {
    ws.once('open', () => resolve({ open: true, ws }));
    ws.once('unexpected-response', (req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => {
        resolve({ open: false, status: res.statusCode ?? 0, body });
        req.destroy();
      });
    });
  });
  return within(settled, HANG_MS, `the upgrade of ${url}`);
}

async function accepted(t: TestContext, url: string, opts: ClientOptions = {}, what = 'upgrade'): Promise<WebSocket> {
  const a = await attempt(t, url, opts);
  assert.ok(a.open, `${what}: expected to be accepted, got ${a.open ? '' : `${a.status} ${JSON.stringify(a.body)}`}`);
  return a.ws;
}

async function refused(t: TestContext, url: string, opts: ClientOptions = {}, what = 'upgrade'): Promise<{ status: number; body: string }> {
  const a = await attempt(t, url, opts);
  assert.ok(!a.open, `${what}: expected a refusal, the upgrade was accepted`);
  return { status: a.status, body: a.body };
}

/** The daemon still serves a normal client: a fresh session binds and gets a push from the HTTP API. */
async function assertServes(t: TestContext, d: TestDaemon, uid: string): Promise<WsClient> {
  const c = await wsClient(t, d.wsUrl, { bind: uid });
  await bound(d, uid);
  const r = await send(d, { uid, msg: `hello ${uid}` });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.delivered, true, JSON.stringify(r.body));
  assert.equal(await c.frame(1), `hello ${uid}`);
  return c;
}

// ---------------------------------------------------------------------------------------------
// limits.connections

test('limits.connections: the 4th upgrade of 3 gets HTTP 503 naming limits.connections, counted; after one closes a new one is accepted', async (t) => {
  const d = await startDaemon(t, { limits: { connections: 3 } });
  const open: WebSocket[] = [];
  for (let i = 0; i < 3; i++) open.push(await accepted(t, d.wsUrl, {}, `connection ${i + 1}`));
  await connectionsBecome(d, 3);

  const r = await refused(t, d.wsUrl, {}, 'the 4th');
  assert.equal(r.status, 503);
  assert.equal(r.body, 'too many connections (limits.connections: 3)\n');
  assert.equal(await refusals(d, 'connections'), 1);
  // Another address is refused as well: the cap is for all.
  const other = await refused(t, d.wsUrl, { localAddress: '127.0.0.2' }, 'the 4th from 127.0.0.2');
  assert.equal(other.status, 503);
  assert.match(other.body, /limits\.connections/);
  assert.equal(await refusals(d, 'connections'), 2);
  await connectionsBecome(d, 3);

  // The ones accepted are untouched.
  for (const ws of open) assert.equal(ws.readyState, WebSocket.OPEN);
  const first = open[0] as WebSocket;
  first.close();
  await connectionsBecome(d, 2);
  const again = await accepted(t, d.wsUrl, {}, 'after one closed');
  again.send('after-close');
  await bound(d, 'after-close');
  const message = once(again, 'message');
  const p = await send(d, { uid: 'after-close', msg: 'made it' });
  assert.equal(p.body.delivered, true);
  const [frame] = await within(message, HANG_MS, 'the push');
  assert.equal(String(frame), 'made it');
  assert.equal(await refusals(d, 'connections'), 2, 'accepted ones are not counted');
});

// ---------------------------------------------------------------------------------------------
// limits.connectionsPerIp

test('limits.connectionsPerIp: the 3rd connection from 127.0.0.1 of 2 gets HTTP 503 naming connectionsPerIp, counted; another address is still accepted', async (t) => {
  const d = await startDaemon(t, { limits: { connectionsPerIp: 2 } });
  const a = await accepted(t, d.wsUrl);
  await accepted(t, d.wsUrl);
  await connectionsBecome(d, 2);
  const r = await refused(t, d.wsUrl, {}, '3rd from 127.0.0.1');
  assert.equal(r.status, 503);
  assert.equal(r.body, 'too many connections from 127.0.0.1 (limits.connectionsPerIp: 2)\n');
  assert.equal(await refusals(d, 'connectionsPerIp'), 1);

  // Per address: 127.0.0.2 (loopback too, another address) has its own two.
  const b1 = await accepted(t, d.wsUrl, { localAddress: '127.0.0.2' }, '1st from 127.0.0.2');
  await accepted(t, d.wsUrl, { localAddress: '127.0.0.2' }, '2nd from 127.0.0.2');
  const r2 = await refused(t, d.wsUrl, { localAddress: '127.0.0.2' }, '3rd from 127.0.0.2');
  assert.equal(r2.status, 503);
  assert.match(r2.body, /from 127\.0\.0\.2 \(limits\.connectionsPerIp: 2\)/);
  assert.equal(await refusals(d, 'connectionsPerIp'), 2);
  b1.send('from-two');
  await bound(d, 'from-two');

  // A slot freed from 127.0.0.1 is usable again, and that client is served.
  a.close();
  await connectionsBecome(d, 3);
  await assertServes(t, d, 'per-ip-after');
  assert.equal(await refusals(d, 'connectionsPerIp'), 2);
});

test('limits.connectionsPerIp: refused handshakes do not use up the address\'s slots', async (t) => {
  const d = await startDaemon(t, { limits: { connectionsPerIp: 2 } });
  const a = await accepted(t, d.wsUrl);
  const b = await accepted(t, d.wsUrl);
  for (let i = 0; i < 5; i++) assert.equal((await refused(t, d.wsUrl)).status, 503);
  assert.equal(await refusals(d, 'connectionsPerIp'), 5);
  a.close();
  b.close();
  await connectionsBecome(d, 0);
  // Both slots are free: the refusals did not leak a count.
  await accepted(t, d.wsUrl, {}, 'first after all closed');
  await accepted(t, d.wsUrl, {}, 'second after all closed');
  assert.equal(await refusals(d, 'connectionsPerIp'), 5);
});

// ---------------------------------------------------------------------------------------------
// limits.connectRatePerIp

test('limits.connectRatePerIp: of 10 upgrades at once about 5 are accepted and the rest get HTTP 429 naming connectRatePerIp; a second later new ones are accepted', async (t) => {
  const d = await startDaemon(t, { limits: { connectRatePerIp: 5 } });
  const results = await Promise.all(Array.from({ length: 10 }, () => attempt(t, d.wsUrl)));
  const ok = results.filter((r) => r.open);
  const no = results.filter((r): r is Extract<Attempt, { open: false }> => !r.open);
  assert.ok(ok.length >= 5 && ok.length <= 7, `about 5 accepted (a burst of 5, plus what refilled meanwhile): ${ok.length}`);
  assert.equal(ok.length + no.length, 10);
  for (const r of no) {
    assert.equal(r.status, 429);
    assert.equal(r.body, 'too many new connections from 127.0.0.1 (limits.connectRatePerIp: 5/s)\n');
  }
  assert.equal(await refusals(d, 'connectRatePerIp'), no.length);

  // Per address: another one is not throttled.
  await accepted(t, d.wsUrl, { localAddress: '127.0.0.2' }, 'from 127.0.0.2 meanwhile');

  // The bucket refills at 5 a second: after a little more than a second, 5 in a row are accepted.
  await new Promise((r) => setTimeout(r, 1100));
  for (let i = 0; i < 5; i++) await accepted(t, d.wsUrl, {}, `after the refill, #${i + 1}`);
  assert.equal(await refusals(d, 'connectRatePerIp'), no.length, 'nothing refused after the refill');
  // The connections accepted before are all still open.
  for (const r of ok) assert.equal(r.ws.readyState, WebSocket.OPEN);
  await new Promise((r) => setTimeout(r, 250));
  await assertServes(t, d, 'rate-after');
});

// ---------------------------------------------------------------------------------------------
// limits.sessionsPerUid

test('limits.sessionsPerUid: the 3rd session binding a uid is closed with 4429, counted; another uid binds; after one closes, a new one binds', async (t) => {
  const d = await startDaemon(t, { limits: { sessionsPerUid: 2 } });
  const s1 = await wsClient(t, d.wsUrl, { bind: 'a' });
  const s2 = await wsClient(t, `${d.wsUrl}?uid=a`);
  await bound(d, 'a', 2);
  const sidsBefore = index(d).targets('a').sort();

  const byFrame = await wsClient(t, d.wsUrl, { bind: 'a' });
  assert.deepEqual(await within(byFrame.closed, HANG_MS, 'the 3rd close'), [4429, 'too many sessions for this uid (limits.sessionsPerUid: 2)']);
  const byUrl = await wsClient(t, `${d.wsUrl}?uid=a`);
  assert.equal((await within(byUrl.closed, HANG_MS, 'the 4th close'))[0], 4429);
  const byResume = await wsClient(t, d.wsUrl, { bind: JSON.stringify({ type: 'bind', uid: 'a' }) });
  assert.equal((await within(byResume.closed, HANG_MS, 'the 5th close'))[0], 4429);
  assert.deepEqual(index(d).targets('a').sort(), sidsBefore, 'still the first two');
  assert.equal(await refusals(d, 'sessionsPerUid'), 3);

  // Another uid is not affected.
  const other = await wsClient(t, d.wsUrl, { bind: 'b' });
  await bound(d, 'b');

  const r = await send(d, { uid: ['a', 'b'], msg: 'to a and b' });
  assert.equal(r.body.sent, 3, JSON.stringify(r.body));
  for (const c of [s1, s2, other]) assert.equal(await c.frame(1), 'to a and b');
  for (const c of [byFrame, byUrl, byResume]) assert.deepEqual(c.frames, [], 'refused sessions get nothing');

  // After one of the first two closes, a new session of the uid binds.
  s1.ws.close();
  await bound(d, 'a', 1);
  const s3 = await wsClient(t, d.wsUrl, { bind: 'a' });
  await bound(d, 'a', 2);
  const r2 = await send(d, { uid: 'a', msg: 'second' });
  assert.equal(r2.body.sent, 2);
  assert.equal(await s3.frame(1), 'second');
  assert.equal(await s2.frame(2), 'second');
  assert.equal(s3.ws.readyState, WebSocket.OPEN);
  assert.equal(await refusals(d, 'sessionsPerUid'), 3);
});

// ---------------------------------------------------------------------------------------------
// limits.uidsPerMessage

test('limits.uidsPerMessage: 4 uids of 3 are refused (HTTP 400, Text error line), counted; 3 uids are delivered', async (t) => {
  const d = await startDaemon(t, { limits: { uidsPerMessage: 3 } });
  const clients = new Map<string, WsClient>();
  for (const uid of ['u1', 'u2', 'u3', 'u4']) {
    clients.set(uid, await wsClient(t, d.wsUrl, { bind: uid }));
    await bound(d, uid);
  }

  const h = await send(d, { uid: ['u1', 'u2', 'u3', 'u4'], msg: 'too many' });
  assert.equal(h.status, 400);
  assert.deepEqual(Object.keys(h.body).sort(), ['code', 'error']);
  assert.equal(h.body.code, 'NOTIFY_ERR_INVALID_MESSAGE');
  assert.match(String(h.body.error), /too many uids: 4/);
  assert.match(String(h.body.error), /uidsPerMessage/);
  assert.equal(await refusals(d, 'uidsPerMessage'), 1);

  const tc = await textClient(t, d.textPort);
  tc.write('{"uid":["u1","u2","u3","u4"],"msg":"too many"}\n');
  const [reply] = await tc.replies(1);
  assert.match(reply ?? '', /^error: too many uids/);
  assert.match(reply ?? '', /uidsPerMessage/);
  assert.equal(await refusals(d, 'uidsPerMessage'), 2);

  // Repeats count: four entries are four.
  const dup = await send(d, { uid: ['u1', 'u1', 'u1', 'u1'], msg: 'dups' });
  assert.equal(dup.status, 400);
  assert.equal(await refusals(d, 'uidsPerMessage'), 3);

  // Three are fine, by either ingress; nothing of the refused ones arrived first.
  const ok = await send(d, { uid: ['u1', 'u2', 'u3'], msg: 'three' });
  assert.equal(ok.status, 200);
  assert.equal(ok.body.sent, 3);
  tc.write('{"uid":["u2","u3","u4"],"msg":"three by text"}\n');
  assert.deepEqual(await tc.replies(2), [reply, 'ok']);
  for (const uid of ['u1', 'u2', 'u3']) assert.equal(await clients.get(uid)?.frame(1), 'three', uid);
  assert.equal(await clients.get('u4')?.frame(1), '{"uid":["u2","u3","u4"],"msg":"three by text"}');
  assert.equal(await refusals(d, 'uidsPerMessage'), 3);
  // A broadcast is not a list of uids.
  const b = await send(d, { broadcast: true, msg: 'everyone' });
  assert.equal(b.status, 200);
  assert.equal(b.body.sent, 4);
});

// ---------------------------------------------------------------------------------------------
// frame, line and body sizes: counted

test('ws.maxPayloadBytes: a frame over the limit closes its session with 1009 and counts frameSize; others are served', async (t) => {
  const d = await startDaemon(t, { ws: { maxPayloadBytes: 64 } });
  const bystander = await wsClient(t, d.wsUrl, { bind: 'bystander' });
  await bound(d, 'bystander');

  const boundBig = await wsClient(t, d.wsUrl, { bind: 'big' });
  await bound(d, 'big');
  boundBig.ws.send('x'.repeat(200));
  assert.equal((await within(boundBig.closed, HANG_MS, 'the 1009 close'))[0], 1009);
  assert.equal(await refusals(d, 'frameSize'), 1);

  // An oversized first frame (the bind) as well.
  const unbound = await wsClient(t, d.wsUrl, { bind: 'y'.repeat(65) });
  assert.equal((await within(unbound.closed, HANG_MS, 'the 1009 close'))[0], 1009);
  assert.equal(index(d).has('y'.repeat(65)), false);
  assert.equal(await refusals(d, 'frameSize'), 2);

  // A frame of exactly the limit is fine and not counted.
  const exact = await wsClient(t, d.wsUrl, { bind: 'z'.repeat(64) });
  await bound(d, 'z'.repeat(64));
  assert.equal(exact.ws.readyState, WebSocket.OPEN);
  assert.equal(await refusals(d, 'frameSize'), 2);

  const r = await send(d, { uid: 'bystander', msg: 'still here' });
  assert.equal(r.body.sent, 1);
  assert.equal(await bystander.frame(1), 'still here');
  await assertServes(t, d, 'after-frames');
});

test('text.maxLineBytes: a line over 1024 bytes gets an error line and counts lineSize, once per line; the connection and the daemon go on', async (t) => {
  const d = await startDaemon(t, { text: { maxLineBytes: 1024 } });
  const c = await wsClient(t, d.wsUrl, { bind: 'uid1' });
  await bound(d, 'uid1');
  const tc = await textClient(t, d.textPort);
  const long = `{"uid":"uid1","msg":"${'x'.repeat(2000)}"}`;
  tc.write(`${long}\n`);
  assert.deepEqual(await tc.replies(1), ['error: line longer than 1024 bytes']);
  assert.equal(await refusals(d, 'lineSize'), 1);

  // Split across writes: still one refusal for one line.
  tc.write(long.slice(0, 1500));
  await new Promise((r) => setTimeout(r, 50));
  tc.write(`${long.slice(1500)}\n`);
  assert.deepEqual(await tc.replies(2), ['error: line longer than 1024 bytes', 'error: line longer than 1024 bytes']);
  assert.equal(await refusals(d, 'lineSize'), 2);

  // The same connection is served, and nothing of the long lines arrived.
  const short = '{"uid":"uid1","msg":"short"}';
  tc.write(`${short}\n`);
  assert.deepEqual((await tc.replies(3))[2], 'ok');
  assert.equal(await c.frame(1), short);
  assert.deepEqual(c.frames, [short]);
  assert.equal(await refusals(d, 'lineSize'), 2);
  await assertServes(t, d, 'after-lines');
});

/** POSTs `size` bytes to /v1/send, with a content-length or chunked; the status. */
function postBytes(d: TestDaemon, size: number, chunked: boolean): Promise<number> {
  return new Promise((resolve, reject) => {
    const url = new URL(`${d.httpUrl}/v1/send`);
    const body = Buffer.from(`{"uid":"uid1","msg":"${'x'.repeat(Math.max(0, size - 24))}"}`);
    const req = request(
      { host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: chunked ? { 'content-type': 'application/json' } : { 'content-type': 'application/json', 'content-length': body.length } },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('error', reject);
    if (chunked) {
      // Several chunks, no content-length.
      for (let i = 0; i < body.length; i += 256) req.write(body.subarray(i, i + 256));
      req.end();
    } else {
      req.end(body);
    }
  });
}

test('http.maxBodyBytes: a body over 1024 bytes is 413 and counts bodySize, with a content-length or chunked; the API goes on', async (t) => {
  const d = await startDaemon(t, { http: { maxBodyBytes: 1024 } });
  const c = await wsClient(t, d.wsUrl, { bind: 'uid1' });
  await bound(d, 'uid1');
  assert.equal(await within(postBytes(d, 2000, false), HANG_MS, 'the 413'), 413);
  assert.equal(await refusals(d, 'bodySize'), 1);
  assert.equal(await within(postBytes(d, 2000, true), HANG_MS, 'the chunked 413'), 413);
  assert.equal(await refusals(d, 'bodySize'), 2);
  // Under the limit: served, not counted.
  assert.equal(await within(postBytes(d, 900, false), HANG_MS, 'a 200'), 200);
  assert.equal(await refusals(d, 'bodySize'), 2);
  assert.equal((await c.frame(1)).length, 900 - 24);
  assert.equal(c.frames.length, 1, 'the refused bodies delivered nothing');
  await assertServes(t, d, 'after-bodies');
});

test('limits: every refusal counter starts at 0 and counts only its own limit', async (t) => {
  const d = await startDaemon(t, { limits: { sessionsPerUid: 1 } });
  for (const limit of ['connections', 'connectionsPerIp', 'connectRatePerIp', 'sessionsPerUid', 'frameSize', 'lineSize', 'bodySize', 'uidsPerMessage']) {
    assert.equal(await refusals(d, limit), 0, limit);
  }
  await wsClient(t, d.wsUrl, { bind: 'solo' });
  await bound(d, 'solo');
  const second = await wsClient(t, d.wsUrl, { bind: 'solo' });
  assert.equal((await within(second.closed, HANG_MS, '4429'))[0], 4429);
  const text = await d.metrics.text();
  const series = text.split('\n').filter((l) => l.startsWith('notify_limit_refusals_total{'));
  assert.deepEqual(series, ['notify_limit_refusals_total{limit="sessionsPerUid"} 1']);
  assert.match(text, /^# TYPE notify_limit_refusals_total counter$/m);
});
