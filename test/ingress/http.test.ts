import assert from 'node:assert/strict';
import { once } from 'node:events';
import { request } from 'node:http';
import { connect } from 'node:net';
import { test } from 'node:test';
import { type TestDaemon, startDaemon } from '../helpers/daemon.js';
import { session, until } from '../helpers/clients.js';

const TOKEN = 'x'.repeat(20);

interface Answer {
  status: number;
  headers: Headers;
  body: unknown;
}

/** POSTs `body` (an object is sent as JSON, a string as is) to /v1/send and parses the JSON answer. */
async function post(d: TestDaemon, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  const res = await fetch(`${d.httpUrl}/v1/send`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  return { status: res.status, headers: res.headers, body: JSON.parse(await res.text()) as unknown };
}

/** Asserts an error answer: the status, `{code, error}` JSON and nothing else. */
function assertError(a: Answer, status: number, code: string, what: string): void {
  assert.equal(a.status, status, `${what}: status (body ${JSON.stringify(a.body)})`);
  assert.match(a.headers.get('content-type') ?? '', /^application\/json/, `${what}: content-type`);
  const body = a.body as { code?: unknown; error?: unknown };
  assert.deepEqual(Object.keys(body).sort(), ['code', 'error'], `${what}: body keys`);
  assert.equal(body.code, code, `${what}: code`);
  assert.equal(typeof body.error, 'string', `${what}: error`);
  assert.ok((body.error as string).length > 0, `${what}: error is not empty`);
}

test('http: POST /v1/send {uid, msg} answers 200 with the delivery report, and the session gets exactly msg', async (t) => {
  const d = await startDaemon(t);
  const page = await session(t, d, 'uid1');
  const sid = d.registry.index('websocket').targets('uid1')[0];
  const msg = 'héllo {"not":"parsed"} ✓ 88%';
  const a = await post(d, { uid: 'uid1', msg });
  assert.equal(a.status, 200);
  assert.match(a.headers.get('content-type') ?? '', /^application\/json/);
  const id = (a.body as { id: string }).id;
  assert.match(id, /^[0-9A-HJKMNP-TV-Z]{26}$/, 'a ULID message id');
  assert.deepEqual(a.body, {
    id,
    stored: true,
    route: 'all',
    delivered: true,
    sent: 1,
    failed: 0,
    rejected: 0,
    results: [{ uid: 'uid1', transport: 'websocket', target: sid, status: 'sent' }],
    unreached: [],
  });
  assert.equal(await page.frame(1), msg);
  assert.equal(page.frames.length, 1);
});

test('http: with title, data, badge or sound the frame is one flat JSON object of the fields set', async (t) => {
  const d = await startDaemon(t);
  const page = await session(t, d, 'uid1');
  const cases: [Record<string, unknown>, Record<string, unknown>][] = [
    [{ title: 'Build' }, { title: 'Build' }],
    [{ title: 'Build', msg: 'done' }, { title: 'Build', msg: 'done' }],
    [{ data: { percent: '88%', n: 3 } }, { percent: '88%', n: 3 }],
    [{ msg: 'done', data: { percent: '88%' } }, { msg: 'done', percent: '88%' }],
    [{ msg: 'done', badge: 2, sound: 'ping' }, { msg: 'done', badge: 2, sound: 'ping' }],
  ];
  let n = 0;
  for (const [fields, expected] of cases) {
    const a = await post(d, { uid: 'uid1', ...fields });
    assert.equal(a.status, 200, JSON.stringify(fields));
    assert.equal((a.body as { delivered: boolean }).delivered, true);
    const frame = await page.frame(++n);
    assert.deepEqual(JSON.parse(frame), expected, `frame for ${JSON.stringify(fields)}: ${frame}`);
    assert.ok(!('uid' in (JSON.parse(frame) as object)), 'the address is not part of the frame');
  }
  assert.equal(page.frames.length, cases.length);
});

test('http: "uids" and "uid" as an array reach every listed uid; each session is one result', async (t) => {
  const d = await startDaemon(t);
  const a1 = await session(t, d, 'a');
  const a2 = await session(t, d, 'a');
  const b = await session(t, d, 'b');
  const other = await session(t, d, 'c');

  const r1 = await post(d, { uids: ['a', 'b'], msg: 'one' });
  assert.equal(r1.status, 200);
  const rep1 = r1.body as { delivered: boolean; sent: number; results: { uid: string; status: string }[]; unreached: string[] };
  assert.equal(rep1.delivered, true);
  assert.equal(rep1.sent, 3);
  assert.deepEqual(rep1.results.map((r) => `${r.uid}:${r.status}`).sort(), ['a:sent', 'a:sent', 'b:sent']);
  assert.deepEqual(rep1.unreached, []);

  const r2 = await post(d, { uid: ['b', 'a'], msg: 'two' });
  assert.equal(r2.status, 200);
  assert.equal((r2.body as { sent: number }).sent, 3);

  for (const c of [a1, a2, b]) {
    assert.equal(await c.frame(1), 'one');
    assert.equal(await c.frame(2), 'two');
  }
  assert.deepEqual(other.frames, [], 'an unlisted uid gets nothing');
});

test('http: "broadcast": true reaches every bound session', async (t) => {
  const d = await startDaemon(t);
  const clients = [await session(t, d, 'a'), await session(t, d, 'a'), await session(t, d, 'b')];
  const r = await post(d, { broadcast: true, msg: 'all' });
  assert.equal(r.status, 200);
  const rep = r.body as { delivered: boolean; sent: number; unreached: string[] };
  assert.equal(rep.delivered, true);
  assert.equal(rep.sent, 3);
  assert.deepEqual(rep.unreached, []);
  for (const c of clients) assert.equal(await c.frame(1), 'all');
});

test('http: a broadcast with nobody bound answers 200, delivered false', async (t) => {
  const d = await startDaemon(t);
  const r = await post(d, { broadcast: true, msg: 'all' });
  assert.equal(r.status, 200);
  const { id, ...rest } = r.body as { id: string };
  assert.match(id, /^[0-9A-HJKMNP-TV-Z]{26}$/);
  assert.deepEqual(rest, { stored: true, route: 'all', delivered: false, sent: 0, failed: 0, rejected: 0, results: [], unreached: [] });
});

test('http: a uid that is not online answers 200 with delivered false and unreached [uid]', async (t) => {
  const d = await startDaemon(t);
  const page = await session(t, d, 'uid1');
  const r = await post(d, { uid: 'nobody', msg: 'hi' });
  assert.equal(r.status, 200);
  const { id, ...rest } = r.body as { id: string };
  assert.match(id, /^[0-9A-HJKMNP-TV-Z]{26}$/);
  assert.deepEqual(rest, { stored: true, route: 'all', delivered: false, sent: 0, failed: 0, rejected: 0, results: [], unreached: ['nobody'] });

  const mixed = await post(d, { uids: ['uid1', 'nobody'], msg: 'hi' });
  assert.equal(mixed.status, 200);
  const rep = mixed.body as { delivered: boolean; sent: number; unreached: string[] };
  assert.equal(rep.delivered, true);
  assert.equal(rep.sent, 1);
  assert.deepEqual(rep.unreached, ['nobody']);
  assert.equal(await page.frame(1), 'hi');
  assert.equal(page.frames.length, 1, 'the message to nobody did not reach uid1');
});

test('http: GET /healthz answers 200 with status ok and the websocket transport running, without a token', async (t) => {
  const d = await startDaemon(t, { http: { token: TOKEN } });
  await session(t, d, 'uid1');
  const res = await fetch(`${d.httpUrl}/healthz`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
  const body = (await res.json()) as { status: string; transports: { websocket: { state: string; sessions: number; uids: number } } };
  assert.equal(body.status, 'ok');
  assert.equal(body.transports.websocket.state, 'running');
  assert.equal(body.transports.websocket.sessions, 1);
  assert.equal(body.transports.websocket.uids, 1);
});

test('http: with http.token, /v1/send needs the right bearer token', async (t) => {
  const d = await startDaemon(t, { http: { token: TOKEN } });
  const page = await session(t, d, 'uid1');
  const body = { uid: 'uid1', msg: 'secret' };

  assertError(await post(d, body), 401, 'NOTIFY_ERR_UNAUTHORIZED', 'no header');
  assertError(await post(d, body, { authorization: `Bearer ${'y'.repeat(20)}` }), 401, 'NOTIFY_ERR_UNAUTHORIZED', 'wrong token');
  assertError(await post(d, body, { authorization: `Bearer ${TOKEN}x` }), 401, 'NOTIFY_ERR_UNAUTHORIZED', 'token with a suffix');
  assertError(await post(d, body, { authorization: `Bearer ${TOKEN.slice(1)}` }), 401, 'NOTIFY_ERR_UNAUTHORIZED', 'token prefix');
  assertError(await post(d, body, { authorization: `Basic ${TOKEN}` }), 401, 'NOTIFY_ERR_UNAUTHORIZED', 'other scheme');
  assertError(await post(d, body, { authorization: 'Bearer' }), 401, 'NOTIFY_ERR_UNAUTHORIZED', 'empty bearer');
  assert.deepEqual(page.frames, [], 'refused requests deliver nothing');

  const ok = await post(d, { uid: 'uid1', msg: 'allowed' }, { authorization: `Bearer ${TOKEN}` });
  assert.equal(ok.status, 200);
  assert.equal((ok.body as { delivered: boolean }).delivered, true);
  assert.equal(await page.frame(1), 'allowed');
  assert.deepEqual(page.frames, ['allowed']);
});

test('http: bad requests get 4xx with {code, error}, deliver nothing, and the daemon still serves', async (t) => {
  const d = await startDaemon(t);
  const page = await session(t, d, 'uid1');
  const cases: [string, string | object, number, string][] = [
    ['invalid JSON', '{"uid":"uid1",', 400, 'NOTIFY_ERR_INVALID_JSON'],
    ['trailing garbage', '{"uid":"uid1","msg":"hi"} x', 400, 'NOTIFY_ERR_INVALID_JSON'],
    ['empty body', '', 400, 'NOTIFY_ERR_INVALID_JSON'],
    ['blank body', '  \n', 400, 'NOTIFY_ERR_INVALID_JSON'],
    ['an array', '[{"uid":"uid1","msg":"hi"}]', 400, 'NOTIFY_ERR_INVALID_MESSAGE'],
    ['a string', '"hi"', 400, 'NOTIFY_ERR_INVALID_MESSAGE'],
    ['null', 'null', 400, 'NOTIFY_ERR_INVALID_MESSAGE'],
    ['a number', '42', 400, 'NOTIFY_ERR_INVALID_MESSAGE'],
    ['missing uid', { msg: 'hi' }, 400, 'NOTIFY_ERR_INVALID_MESSAGE'],
    ['unknown field', { uid: 'uid1', msg: 'hi', percent: '88%' }, 400, 'NOTIFY_ERR_INVALID_MESSAGE'],
    ['uid a number', { uid: 5, msg: 'hi' }, 400, 'NOTIFY_ERR_INVALID_MESSAGE'],
    ['uid empty', { uid: '', msg: 'hi' }, 400, 'NOTIFY_ERR_INVALID_MESSAGE'],
    ['uid too long', { uid: 'u'.repeat(300), msg: 'hi' }, 400, 'NOTIFY_ERR_INVALID_MESSAGE'],
    ['uids empty', { uids: [], msg: 'hi' }, 400, 'NOTIFY_ERR_INVALID_MESSAGE'],
    ['uids with a number', { uids: ['uid1', 7], msg: 'hi' }, 400, 'NOTIFY_ERR_INVALID_MESSAGE'],
    ['uid and broadcast', { uid: 'uid1', broadcast: true, msg: 'hi' }, 400, 'NOTIFY_ERR_INVALID_MESSAGE'],
    ['broadcast false', { broadcast: false, msg: 'hi' }, 400, 'NOTIFY_ERR_INVALID_MESSAGE'],
    ['msg a number', { uid: 'uid1', msg: 5 }, 400, 'NOTIFY_ERR_INVALID_MESSAGE'],
    ['title a boolean', { uid: 'uid1', title: true }, 400, 'NOTIFY_ERR_INVALID_MESSAGE'],
    ['badge negative', { uid: 'uid1', msg: 'hi', badge: -1 }, 400, 'NOTIFY_ERR_INVALID_MESSAGE'],
    ['badge a string', { uid: 'uid1', msg: 'hi', badge: '1' }, 400, 'NOTIFY_ERR_INVALID_MESSAGE'],
    ['data a string', { uid: 'uid1', data: 'x' }, 400, 'NOTIFY_ERR_INVALID_MESSAGE'],
    ['data an array', { uid: 'uid1', data: [1] }, 400, 'NOTIFY_ERR_INVALID_MESSAGE'],
    ['data with a reserved key', { uid: 'uid1', data: { uid: 'other' } }, 400, 'NOTIFY_ERR_INVALID_MESSAGE'],
    ['no msg, title or data', { uid: 'uid1' }, 400, 'NOTIFY_ERR_INVALID_MESSAGE'],
    ['empty data only', { uid: 'uid1', data: {} }, 400, 'NOTIFY_ERR_INVALID_MESSAGE'],
  ];
  for (const [what, body, status, code] of cases) assertError(await post(d, body), status, code, what);

  const unknownField = await post(d, { uid: 'uid1', msg: 'hi', percent: '88%' });
  assert.match((unknownField.body as { error: string }).error, /"percent"/, 'the unknown field is named');

  assert.deepEqual(page.frames, [], 'no bad request delivered anything');
  const ok = await post(d, { uid: 'uid1', msg: 'still here' });
  assert.equal(ok.status, 200);
  assert.equal(await page.frame(1), 'still here');
});

test('http: unknown paths get 404 and a wrong method 405 with an allow header', async (t) => {
  const d = await startDaemon(t);
  const page = await session(t, d, 'uid1');

  for (const path of ['/', '/v1/sendx', '/v1', '/v2/send', '/healthz/x']) {
    const res = await fetch(`${d.httpUrl}${path}`, { method: 'POST', body: '{"uid":"uid1","msg":"hi"}' });
    assertError({ status: res.status, headers: res.headers, body: await res.json() }, 404, 'NOTIFY_ERR_NOT_FOUND', path);
  }

  const get = await fetch(`${d.httpUrl}/v1/send`);
  assertError({ status: get.status, headers: get.headers, body: await get.json() }, 405, 'NOTIFY_ERR_METHOD', 'GET /v1/send');
  assert.equal(get.headers.get('allow'), 'POST');

  const put = await fetch(`${d.httpUrl}/v1/send`, { method: 'PUT', body: '{"uid":"uid1","msg":"hi"}' });
  assertError({ status: put.status, headers: put.headers, body: await put.json() }, 405, 'NOTIFY_ERR_METHOD', 'PUT /v1/send');
  assert.equal(put.headers.get('allow'), 'POST');

  const postHealth = await fetch(`${d.httpUrl}/healthz`, { method: 'POST', body: '{}' });
  assertError({ status: postHealth.status, headers: postHealth.headers, body: await postHealth.json() }, 405, 'NOTIFY_ERR_METHOD', 'POST /healthz');
  assert.equal(postHealth.headers.get('allow'), 'GET');

  assert.deepEqual(page.frames, []);
  const ok = await post(d, { uid: 'uid1', msg: 'after' });
  assert.equal(ok.status, 200);
  assert.equal(await page.frame(1), 'after');
});

/** POSTs `parts` to /v1/send with chunked transfer encoding (no content-length), via node:http. */
function postChunked(url: string, parts: (string | Buffer)[]): Promise<{ status: number; headers: Record<string, unknown>; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}/v1/send`, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(text) as unknown });
        } catch (err) {
          reject(err as Error);
        }
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    for (const p of parts) req.write(p);
    req.end();
  });
}

test('http: a body over http.maxBodyBytes gets 413, with content-length and chunked; one at the limit is accepted', async (t) => {
  const d = await startDaemon(t, { http: { maxBodyBytes: 1024 } });
  const page = await session(t, d, 'uid1');
  const big = JSON.stringify({ uid: 'uid1', msg: 'x'.repeat(3000) });

  // With content-length (fetch sets it for a string body).
  const declared = await post(d, big);
  assertError(declared, 413, 'NOTIFY_ERR_BODY_TOO_LARGE', 'content-length body');
  assert.equal(declared.headers.get('connection'), 'close');

  // Chunked: no content-length, the limit is counted while reading.
  const chunked = await postChunked(d.httpUrl, [big.slice(0, 700), big.slice(700, 1400), big.slice(1400)]);
  assert.equal(chunked.status, 413, JSON.stringify(chunked.body));
  assert.equal((chunked.body as { code: string }).code, 'NOTIFY_ERR_BODY_TOO_LARGE');

  assert.deepEqual(page.frames, [], 'an oversized body is not delivered');

  // Exactly maxBodyBytes is fine, both ways.
  const skeleton = JSON.stringify({ uid: 'uid1', msg: '' });
  const exact = JSON.stringify({ uid: 'uid1', msg: 'y'.repeat(1024 - skeleton.length) });
  assert.equal(Buffer.byteLength(exact), 1024);
  const a = await post(d, exact);
  assert.equal(a.status, 200, JSON.stringify(a.body));
  const b = await postChunked(d.httpUrl, [exact.slice(0, 500), exact.slice(500)]);
  assert.equal(b.status, 200, JSON.stringify(b.body));
  assert.equal(await page.frame(2), 'y'.repeat(1024 - skeleton.length));
  assert.equal(page.frames.length, 2);
});

/** `{"a":{"a":...1...}}`: `levels` objects, one inside the other, written by hand (JSON.stringify would recurse). */
function nested(levels: number): string {
  return `${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}`;
}

test('http: "data" nested 10,000 deep is a 400 naming the limit, not a 500; 32 levels are fine and the daemon keeps serving', async (t) => {
  const d = await startDaemon(t);
  const page = await session(t, d, 'uid1');

  const deep = await post(d, `{"uid":"uid1","data":${nested(10_000)}}`);
  assertError(deep, 400, 'NOTIFY_ERR_INVALID_MESSAGE', 'data 10,000 deep');
  assert.equal((deep.body as { error: string }).error, '"data" is nested deeper than 32 levels');
  const justOver = await post(d, `{"uid":"uid1","data":${nested(33)}}`);
  assertError(justOver, 400, 'NOTIFY_ERR_INVALID_MESSAGE', 'data 33 deep');
  // Arrays count as levels too.
  const arrays = await post(d, `{"uid":"uid1","data":{"a":${'['.repeat(10_000)}${']'.repeat(10_000)}}}`);
  assertError(arrays, 400, 'NOTIFY_ERR_INVALID_MESSAGE', 'arrays 10,000 deep');
  // Another field with a deep value is refused without echoing it.
  const ttl = await post(d, `{"uid":"uid1","msg":"hi","ttl":${nested(10_000)}}`);
  assertError(ttl, 400, 'NOTIFY_ERR_INVALID_MESSAGE', 'ttl 10,000 deep');
  assert.equal((ttl.body as { error: string }).error, '"ttl" must be a duration such as "30s" or "24h", got an object');

  assert.deepEqual(page.frames, [], 'nothing was delivered');
  assert.deepEqual(d.logs.filter((l) => l.level === 'error'), [], 'no server error was logged');

  const limit = await post(d, `{"uid":"uid1","data":${nested(32)}}`);
  assert.equal(limit.status, 200, JSON.stringify(limit.body));
  assert.equal(await page.frame(1), nested(32));
});

test('http: a body that is not valid UTF-8 gets 400 NOTIFY_ERR_INVALID_JSON and is not delivered; UTF-8 split across chunks is fine', async (t) => {
  const d = await startDaemon(t);
  const page = await session(t, d, 'uid1');
  const bad: [string, Buffer][] = [
    ['Latin-1 é', Buffer.from('{"uid":"uid1","msg":"caf\xe9"}', 'latin1')],
    ['a lone continuation byte', Buffer.concat([Buffer.from('{"uid":"uid1","msg":"'), Buffer.from([0x80]), Buffer.from('"}')])],
    ['an encoded surrogate', Buffer.concat([Buffer.from('{"uid":"uid1","msg":"'), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')])],
    ['an overlong slash', Buffer.concat([Buffer.from('{"uid":"uid1","msg":"'), Buffer.from([0xc0, 0xaf]), Buffer.from('"}')])],
  ];
  for (const [what, body] of bad) {
    const res = await fetch(`${d.httpUrl}/v1/send`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    const a = { status: res.status, headers: res.headers, body: JSON.parse(await res.text()) as unknown };
    assertError(a, 400, 'NOTIFY_ERR_INVALID_JSON', what);
    assert.equal((a.body as { error: string }).error, 'request body is not valid UTF-8', what);
  }
  assert.deepEqual(page.frames, [], 'nothing was delivered');

  // "é" is two bytes: split between chunks, the body is still valid.
  const text = JSON.stringify({ uid: 'uid1', msg: 'café 😀' });
  const bytes = Buffer.from(text);
  const cut = bytes.indexOf(0xc3) + 1;
  const ok = await postChunked(d.httpUrl, [bytes.subarray(0, cut), bytes.subarray(cut)]);
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.equal(await page.frame(1), 'café 😀');
});

test('http: a client that sends half its body and hangs up is logged at debug, not as a server error; the daemon keeps serving', async (t) => {
  const d = await startDaemon(t);
  const page = await session(t, d, 'uid1');
  const socket = connect(Number(new URL(d.httpUrl).port), '127.0.0.1');
  await once(socket, 'connect');
  let answer = '';
  socket.on('data', (chunk: Buffer) => (answer += chunk.toString()));
  // With "Expect: 100-continue" the server says when it has the request (and is reading its body).
  socket.write('POST /v1/send HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\nExpect: 100-continue\r\n\r\n');
  await until(() => answer.startsWith('HTTP/1.1 100 Continue\r\n\r\n'), 'the server to take the request');
  socket.write(`{"uid":"uid1","msg":"${'x'.repeat(480)}`, () => socket.destroy());
  await until(() => d.logs.some((l) => l.level === 'error' || l.msg === 'http client went away mid-request'), 'the abort to be handled');
  assert.deepEqual(d.logs.filter((l) => l.level === 'error'), [], 'no server error logged');
  const line = d.logs.find((l) => l.msg === 'http client went away mid-request');
  assert.equal(line?.level, 'debug');

  const ok = await post(d, { uid: 'uid1', msg: 'after' });
  assert.equal(ok.status, 200);
  assert.equal(await page.frame(1), 'after');
  assert.deepEqual(page.frames, ['after']);
});
