import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { test, type TestContext } from 'node:test';
import { stringify } from 'yaml';
import { type Config, ConfigError, parseConfig } from '../../../src/config/load.js';
import type { DeliveryReport, ReportEntry } from '../../../src/types.js';
import { textClient, until, wsClient } from '../../helpers/clients.js';
import { type TestDaemon, startDaemon } from '../../helpers/daemon.js';
import { type FakeHttp, type FakeHttpRequest, type FakeHttpResponder, startFakeHttp } from '../../helpers/fake-http.js';

// ---------------------------------------------------------------------------------------------
// Helpers local to this file
// ---------------------------------------------------------------------------------------------

/** Every awkward character a message can carry (no NUL). */
const AWKWARD =
  'He said "hi" \\ back\\slash \\n not-a-newline\nreal newline\ttab\rCR \u2028LS\u2029PS \u0001\u0008\u000b\u000c\u001f\u007f ctl 😀 进展 Grüße </script><script>alert(1)</script> {{uid}} {{msg}} {{ data }} ${HOME} \'single\' &amp; %20';

/** A retry policy that keeps tests fast. */
const FAST_RETRY = { limit: 3, baseDelayMs: 10, maxDelayMs: 5000 };

async function send(d: TestDaemon, body: Record<string, unknown>): Promise<DeliveryReport> {
  const res = await fetch(`${d.httpUrl}/v1/send`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return JSON.parse(text) as DeliveryReport;
}

const entriesOf = (r: DeliveryReport, transport = 'hook'): ReportEntry[] => r.results.filter((e) => e.transport === transport);

function only<T>(list: readonly T[], what = 'entry'): T {
  assert.equal(list.length, 1, `expected exactly one ${what}, got ${JSON.stringify(list)}`);
  return list[0] as T;
}

interface World {
  fake: FakeHttp;
  d: TestDaemon;
}

/**
 * A fake provider and a daemon whose transport `hook` (type http) is `hook(fake.url)`; more
 * transports, devices and dispatch settings as given. The config goes through the YAML loader.
 */
async function world(
  t: TestContext,
  hook: (url: string) => Record<string, unknown>,
  opts: {
    respond?: FakeHttpResponder;
    devices?: Record<string, Record<string, string[]>>;
    dispatch?: Record<string, unknown>;
    more?: (url: string) => Record<string, Record<string, unknown>>;
  } = {},
): Promise<World> {
  const fake = await startFakeHttp(t, opts.respond);
  const d = await startDaemon(t, {
    transports: { hook: { type: 'http', ...hook(fake.url) }, ...opts.more?.(fake.url) },
    ...(opts.devices ? { devices: opts.devices } : {}),
    ...(opts.dispatch ? { dispatch: opts.dispatch } : {}),
  });
  return { fake, d };
}

const byPath = (a: FakeHttpRequest, b: FakeHttpRequest) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);

async function health(d: TestDaemon): Promise<Record<string, Record<string, unknown>>> {
  const res = await fetch(`${d.httpUrl}/healthz`);
  return ((await res.json()) as { transports: Record<string, Record<string, unknown>> }).transports;
}

// ---------------------------------------------------------------------------------------------
// Requests: one per uid or per device token
// ---------------------------------------------------------------------------------------------

test('http: one request per uid: method, uid percent-encoded in the path, JSON body with native types; target = uid; every uid is reachable', async (t) => {
  const { fake, d } = await world(t, (url) => ({
    url: `${url}/push/{{uid}}?src=notify`,
    body: { uid: '{{uid}}', text: '{{msg}}', title: '{{title}}', badge: '{{badge}}', data: '{{data}}', sound: '{{sound}}', kind: 'alert' },
  }));
  const alice = await wsClient(t, d.wsUrl, { bind: 'alice' });
  await until(() => d.registry.index('websocket').has('alice'), 'alice bound');

  const report = await send(d, { uids: ['alice', 'team a/b?#', 'Jürgen 进'], title: 'T', msg: 'hi', badge: 3, data: { k: 'v', n: [1, 2] } });
  assert.equal(report.delivered, true);
  assert.deepEqual(report.unreached, []);
  const hook = entriesOf(report);
  assert.deepEqual(
    hook.map((e) => [e.uid, e.target, e.status]).sort(),
    [
      ['Jürgen 进', 'Jürgen 进', 'sent'],
      ['alice', 'alice', 'sent'],
      ['team a/b?#', 'team a/b?#', 'sent'],
    ],
  );
  assert.equal(only(entriesOf(report, 'websocket')).status, 'sent', 'the live session got it too');
  assert.equal(await alice.frame(1), JSON.stringify({ title: 'T', msg: 'hi', badge: 3, k: 'v', n: [1, 2] }));

  assert.equal(fake.requests.length, 3);
  const reqs = [...fake.requests].sort(byPath);
  assert.deepEqual(
    reqs.map((r) => r.path),
    ['/push/J%C3%BCrgen%20%E8%BF%9B?src=notify', '/push/alice?src=notify', '/push/team%20a%2Fb%3F%23?src=notify'],
  );
  for (const r of reqs) {
    assert.equal(r.method, 'POST');
    assert.equal(r.headers['content-type'], 'application/json');
    const uid = decodeURIComponent(r.path.slice('/push/'.length, r.path.indexOf('?')));
    assert.deepEqual(r.json, { uid, text: 'hi', title: 'T', badge: 3, data: { k: 'v', n: [1, 2] }, kind: 'alert' }, 'absent sound left out; badge a number; data an object');
  }

  // A uid nobody is connected as: reached through the webhook alone.
  const solo = await send(d, { uid: 'nobody', msg: 'solo' });
  assert.equal(solo.delivered, true);
  assert.deepEqual(solo.unreached, []);
  assert.deepEqual(solo.results, [{ uid: 'nobody', transport: 'hook', target: 'nobody', status: 'sent' }]);
  const last = fake.requests[3];
  assert.equal(last?.path, '/push/nobody?src=notify');
  assert.deepEqual(last?.json, { uid: 'nobody', text: 'solo', data: {}, kind: 'alert' }, 'no title, badge or sound keys when absent');
});

test('http: a Text line goes through the webhook too, {{frame}} is the exact line', async (t) => {
  const { fake, d } = await world(t, (url) => ({ url: `${url}/hook`, body: { uid: '{{uid}}', frame: '{{frame}}', data: '{{data}}' } }));
  const backend = await textClient(t, d.textPort);
  const line = '{"uid":"u9","percent":"88%","note":"a \\"q\\" \\u2028 进"}';
  backend.write(`${line}\n`);
  assert.deepEqual(await backend.replies(1), ['ok'], 'ok: the webhook counts as delivered');
  const r = only(fake.requests, 'request');
  assert.deepEqual(r.json, { uid: 'u9', frame: line, data: { percent: '88%', note: 'a "q" \u2028 进' } });
});

test('http: perDevice with {{token}} in the URL: one request per token under devices.UID.NAME; a uid with no tokens is unreached', async (t) => {
  const { fake, d } = await world(
    t,
    (url) => ({ url: `${url}/topic/{{token}}`, perDevice: true, body: { uid: '{{uid}}', msg: '{{msg}}' } }),
    { devices: { alice: { hook: ['tok-1', 'tok 2/x'] }, bob: { hook: ['tok-3'] } } },
  );
  const report = await send(d, { uids: ['alice', 'carol'], msg: 'hi' });
  assert.equal(report.delivered, true);
  assert.deepEqual(report.unreached, ['carol']);
  assert.deepEqual(
    entriesOf(report).map((e) => [e.uid, e.target, e.status]).sort(),
    [
      ['alice', 'tok 2/x', 'sent'],
      ['alice', 'tok-1', 'sent'],
    ],
  );
  assert.deepEqual(fake.requests.map((r) => r.path).sort(), ['/topic/tok%202%2Fx', '/topic/tok-1']);
  for (const r of fake.requests) assert.deepEqual(r.json, { uid: 'alice', msg: 'hi' });

  const none = await send(d, { uid: 'carol', msg: 'anyone?' });
  assert.equal(none.delivered, false);
  assert.deepEqual(none.unreached, ['carol']);
  assert.deepEqual(none.results, []);
  assert.equal(fake.requests.length, 2, 'no request for a uid without tokens');
});

test('http: perDevice with {{token}} in the body only: one request per token, each carrying its token', async (t) => {
  const { fake, d } = await world(
    t,
    (url) => ({ url: `${url}/send`, perDevice: true, body: { to: '{{token}}', notification: { body: '{{msg}}' } } }),
    { devices: { alice: { hook: ['fcm-a', 'fcm-b', 'fcm-c'] } } },
  );
  const report = await send(d, { uid: 'alice', msg: 'hi' });
  assert.equal(report.sent, 3);
  assert.deepEqual(entriesOf(report).map((e) => e.target).sort(), ['fcm-a', 'fcm-b', 'fcm-c']);
  assert.deepEqual(fake.requests.map((r) => (r.json as { to: string }).to).sort(), ['fcm-a', 'fcm-b', 'fcm-c']);
  for (const r of fake.requests) {
    assert.equal(r.path, '/send');
    assert.deepEqual((r.json as { notification: unknown }).notification, { body: 'hi' });
  }
});

// ---------------------------------------------------------------------------------------------
// Auth, headers, method
// ---------------------------------------------------------------------------------------------

test('http: auth bearer, templated custom headers (CR/LF-free, non-ASCII encoded) and method PUT, ntfy style', async (t) => {
  const { fake, d } = await world(t, (url) => ({
    url: `${url}/alerts-{{uid}}`,
    method: 'PUT',
    auth: { bearer: 'tk_AbCdEf123456' },
    headers: { 'X-Title': '{{title}}', 'X-Uid': 'uid={{uid}}', 'X-Static': 'v1', 'X-Priority': '{{badge}}' },
    body: '{{msg}}',
  }));
  const report = await send(d, { uid: 'u1', title: 'Grüße\r\nX-Evil: 1', msg: 'hello', badge: 4 });
  assert.equal(only(entriesOf(report)).status, 'sent');
  const r = only(fake.requests, 'request');
  assert.equal(r.method, 'PUT');
  assert.equal(r.path, '/alerts-u1');
  assert.equal(r.headers.authorization, 'Bearer tk_AbCdEf123456');
  assert.equal(r.headers['x-uid'], 'uid=u1');
  assert.equal(r.headers['x-static'], 'v1');
  assert.equal(r.headers['x-priority'], '4');
  assert.equal(r.headers['x-evil'], undefined, 'no header injected');
  const m = /^=\?UTF-8\?B\?([A-Za-z0-9+/=]+)\?=$/.exec(String(r.headers['x-title']));
  assert.ok(m, `x-title is an encoded word: ${String(r.headers['x-title'])}`);
  assert.equal(Buffer.from(m[1] ?? '', 'base64').toString('utf8'), 'Grüße X-Evil: 1');
  assert.equal(r.headers['content-type'], 'text/plain; charset=utf-8');
  assert.equal(r.body, 'hello');
});

test('http: auth basic sends Basic base64(username:password); no body means no content-type', async (t) => {
  const { fake, d } = await world(t, (url) => ({ url: `${url}/message?uid={{uid}}`, auth: { basic: { username: 'svc', password: 'p@ss:w0rd é' } } }));
  const report = await send(d, { uid: 'u 1', msg: 'x' });
  assert.equal(only(entriesOf(report)).status, 'sent');
  const r = only(fake.requests, 'request');
  assert.equal(r.method, 'POST');
  assert.equal(r.path, '/message?uid=u%201');
  assert.equal(r.headers.authorization, `Basic ${Buffer.from('svc:p@ss:w0rd é').toString('base64')}`);
  assert.equal(r.headers['content-type'], undefined);
  assert.equal(r.body, '');
});

// ---------------------------------------------------------------------------------------------
// Body forms
// ---------------------------------------------------------------------------------------------

test('http: a JSON text template (format: json): values in strings escaped, outside strings JSON values', async (t) => {
  const { fake, d } = await world(t, (url) => ({
    url: `${url}/j`,
    format: 'json',
    body: '{"text": "{{title}}: {{msg}}", "data": {{data}}, "badge": {{badge}}, "sound": {{sound}}, "uid": "{{uid}}"}',
  }));
  await send(d, { uid: 'u1', title: 'T "1"', msg: 'a\nb', badge: 2, data: { k: [1, 'x'] } });
  const r = only(fake.requests, 'request');
  assert.equal(r.headers['content-type'], 'application/json');
  assert.deepEqual(r.json, { text: 'T "1": a\nb', data: { k: [1, 'x'] }, badge: 2, sound: null, uid: 'u1' });
});

test('http: a text body with a JSON content-type header is a JSON text template; the declared content-type is sent once', async (t) => {
  const { fake, d } = await world(t, (url) => ({
    url: `${url}/j`,
    headers: { 'Content-Type': 'application/json; charset=utf-8' },
    body: '{"m": {{msg}}, "t": "{{title}}"}',
  }));
  await send(d, { uid: 'u1', msg: 'say "x"\n' });
  const r = only(fake.requests, 'request');
  assert.equal(r.headers['content-type'], 'application/json; charset=utf-8');
  assert.deepEqual(r.json, { m: 'say "x"\n', t: '' });
});

test('http: a text template body is sent as text/plain, exactly', async (t) => {
  const { fake, d } = await world(t, (url) => ({ url: `${url}/t`, body: 'Hello {{uid}}: {{msg}} ({{badge}})' }));
  await send(d, { uid: 'u1', msg: 'line1\nline2 "q" 进' });
  const r = only(fake.requests, 'request');
  assert.equal(r.headers['content-type'], 'text/plain; charset=utf-8');
  assert.equal(r.body, 'Hello u1: line1\nline2 "q" 进 ()');
});

test('http: format form sends application/x-www-form-urlencoded fields; data as JSON, absent fields left out', async (t) => {
  const { fake, d } = await world(t, (url) => ({
    url: `${url}/form`,
    format: 'form',
    body: { uid: '{{uid}}', message: '{{msg}}', title: '{{title}}', badge: '{{badge}}', data: '{{data}}', app: 'notify' },
  }));
  const msg = 'a&b=c+d %20 进\n"q"';
  await send(d, { uid: 'u1', msg, badge: 7, data: { k: 'v&w' } });
  const r = only(fake.requests, 'request');
  assert.equal(r.headers['content-type'], 'application/x-www-form-urlencoded');
  const form = new URLSearchParams(r.body);
  assert.deepEqual([...form.keys()].sort(), ['app', 'badge', 'data', 'message', 'uid']);
  assert.equal(form.get('uid'), 'u1');
  assert.equal(form.get('message'), msg);
  assert.equal(form.get('badge'), '7');
  assert.deepEqual(JSON.parse(form.get('data') ?? ''), { k: 'v&w' });
  assert.equal(form.get('app'), 'notify');
});

test('http: a body with every awkward character: the provider gets valid JSON with exactly that text (mapping and JSON text template)', async (t) => {
  const { fake, d } = await world(
    t,
    (url) => ({
      url: `${url}/map/{{uid}}`,
      body: { text: '{{msg}}', title: '{{title}}', combo: '{{title}} | {{msg}}', data: '{{data}}', frame: '{{frame}}', uid: '{{uid}}' },
    }),
    {
      more: (url) => ({
        jsontext: {
          type: 'http',
          url: `${url}/text/{{uid}}`,
          format: 'json',
          body: '{"text":"{{msg}}","title":{{title}},"combo":"{{title}} | {{msg}}","data":{{data}},"frame":"{{frame}}","uid":"{{uid}}"}',
        },
      }),
    },
  );
  const data = { note: AWKWARD, [AWKWARD]: 'key', nested: { list: [AWKWARD, 1, null, true] } };
  const report = await send(d, { uid: 'u1', title: AWKWARD, msg: AWKWARD, data });
  assert.equal(report.sent, 2, JSON.stringify(report));
  const frame = JSON.stringify({ title: AWKWARD, msg: AWKWARD, ...data });
  assert.equal(fake.requests.length, 2);
  for (const r of fake.requests) {
    assert.doesNotThrow(() => JSON.parse(r.body), `${r.path}: valid JSON`);
    assert.deepEqual(r.json, { text: AWKWARD, title: AWKWARD, combo: `${AWKWARD} | ${AWKWARD}`, data, frame, uid: 'u1' }, r.path);
  }

  // The same through a Text line, whose frame is the line itself.
  const backend = await textClient(t, d.textPort);
  const line = JSON.stringify({ uid: 'u2', title: AWKWARD, msg: AWKWARD, ...data });
  backend.write(`${line}\n`);
  assert.deepEqual(await backend.replies(1), ['ok']);
  await until(() => fake.requests.length === 4, 'two more requests');
  for (const r of fake.requests.slice(2)) {
    assert.deepEqual(r.json, { text: AWKWARD, title: AWKWARD, combo: `${AWKWARD} | ${AWKWARD}`, data, frame: line, uid: 'u2' }, r.path);
  }
});

// ---------------------------------------------------------------------------------------------
// Success and failure
// ---------------------------------------------------------------------------------------------

test('http: successStatus [202] makes a 200 a (permanent) failure and a 202 a success', async (t) => {
  let n = 0;
  const { fake, d } = await world(t, (url) => ({ url: `${url}/x`, successStatus: [202], body: '{{msg}}', retry: FAST_RETRY }), {
    respond: () => (++n === 1 ? { status: 200, body: 'OK but not accepted' } : { status: 202, body: '' }),
  });
  const first = await send(d, { uid: 'u1', msg: 'one' });
  const e1 = only(entriesOf(first));
  assert.equal(e1.status, 'rejected');
  assert.equal(e1.reason, 'HTTP 200: OK but not accepted');
  assert.equal(first.delivered, false);
  assert.equal(fake.requests.length, 1, 'a non-success 200 is not retried');

  const second = await send(d, { uid: 'u1', msg: 'two' });
  assert.equal(only(entriesOf(second)).status, 'sent');
  assert.equal(second.delivered, true);
  assert.equal(fake.requests.length, 2);
});

test('http: without successStatus any 2xx is a success; a 3xx redirect is not followed', async (t) => {
  const answers = [{ status: 201 }, { status: 204 }, { status: 302, headers: { location: '/elsewhere' }, body: 'moved' }];
  let n = 0;
  const { fake, d } = await world(t, (url) => ({ url: `${url}/x`, body: '{{msg}}', retry: FAST_RETRY }), { respond: () => answers[n++] });
  assert.equal(only(entriesOf(await send(d, { uid: 'u1', msg: 'a' }))).status, 'sent');
  assert.equal(only(entriesOf(await send(d, { uid: 'u1', msg: 'b' }))).status, 'sent');
  const third = only(entriesOf(await send(d, { uid: 'u1', msg: 'c' })));
  assert.equal(third.status, 'rejected');
  assert.equal(third.reason, 'HTTP 302: moved');
  assert.deepEqual(fake.requests.map((r) => r.path), ['/x', '/x', '/x'], 'the redirect was not followed');
});

test('http: 500 then 200 is sent after one retry', async (t) => {
  let n = 0;
  const { fake, d } = await world(t, (url) => ({ url: `${url}/x`, body: '{{msg}}', retry: FAST_RETRY }), {
    respond: () => (++n === 1 ? { status: 500, body: 'oops' } : undefined),
  });
  const report = await send(d, { uid: 'u1', msg: 'hi' });
  const e = only(entriesOf(report));
  assert.equal(e.status, 'sent');
  assert.equal(e.reason, undefined);
  assert.equal(fake.requests.length, 2);
  assert.equal(fake.requests[1]?.body, 'hi', 'the retry is the same request');
});

test('http: 503 forever fails after retry.limit + 1 attempts with the status and an excerpt of the body', async (t) => {
  const { fake, d } = await world(t, (url) => ({ url: `${url}/x`, body: '{{msg}}', retry: { limit: 2, baseDelayMs: 10, maxDelayMs: 100 } }), {
    respond: () => ({ status: 503, headers: { 'content-type': 'text/plain' }, body: 'Service Unavailable:\n  try later' }),
  });
  const report = await send(d, { uid: 'u1', msg: 'hi' });
  assert.deepEqual(
    entriesOf(report).map((e) => [e.status, e.reason]),
    [['failed', 'HTTP 503: Service Unavailable: try later (gave up after 3 attempts)']],
  );
  assert.equal(fake.requests.length, 3);
  assert.equal(report.delivered, false);
});

test('http: 429 with Retry-After: 1 is retried no sooner than asked, then sent', async (t) => {
  let n = 0;
  const { fake, d } = await world(t, (url) => ({ url: `${url}/x`, body: '{{msg}}', retry: FAST_RETRY }), {
    respond: () => (++n === 1 ? { status: 429, headers: { 'retry-after': '1' }, body: 'slow down' } : undefined),
  });
  const report = await send(d, { uid: 'u1', msg: 'hi' });
  assert.equal(only(entriesOf(report)).status, 'sent');
  assert.equal(fake.requests.length, 2);
  const gap = (fake.requests[1]?.receivedAt ?? 0) - (fake.requests[0]?.receivedAt ?? 0);
  assert.ok(gap >= 900, `retried after ${gap} ms; Retry-After asked for 1000`);
});

test('http: 400 is rejected at once with the status and a body excerpt; long bodies are cut to 200 characters with …', async (t) => {
  const long = `${'y'.repeat(150)}\n\n   ${'z'.repeat(300)}`;
  let n = 0;
  const { fake, d } = await world(t, (url) => ({ url: `${url}/x`, body: '{{msg}}', retry: FAST_RETRY }), {
    respond: () => ({ status: 400, body: ++n === 1 ? '{"error": "bad\n request"}' : long }),
  });
  const first = only(entriesOf(await send(d, { uid: 'u1', msg: 'a' })));
  assert.equal(first.status, 'rejected');
  assert.equal(first.reason, 'HTTP 400: {"error": "bad request"}');
  assert.equal(fake.requests.length, 1, 'not retried');

  const second = only(entriesOf(await send(d, { uid: 'u1', msg: 'b' })));
  assert.equal(second.status, 'rejected');
  assert.equal(second.reason, `HTTP 400: ${'y'.repeat(150)} ${'z'.repeat(49)}…`);
  assert.equal(fake.requests.length, 2);
});

test('http: a provider that never answers fails after requestTimeoutMs per attempt and retry.limit + 1 attempts', async (t) => {
  const { fake, d } = await world(t, (url) => ({ url: `${url}/x`, body: '{{msg}}', requestTimeoutMs: 200, retry: { limit: 1, baseDelayMs: 10, maxDelayMs: 100 } }), {
    respond: () => ({ hang: true }),
  });
  const started = Date.now();
  const report = await send(d, { uid: 'u1', msg: 'hi' });
  const elapsed = Date.now() - started;
  const e = only(entriesOf(report));
  assert.equal(e.status, 'failed');
  assert.match(e.reason ?? '', /no answer within 200 ms/);
  assert.match(e.reason ?? '', /gave up after 2 attempts/);
  assert.equal(fake.requests.length, 2);
  assert.ok(elapsed >= 380, `not before two 200 ms attempts: ${elapsed} ms`);
});

test('http: a connection destroyed mid-request is retried and then sent; destroyed every time, it fails with the cause', async (t) => {
  let n = 0;
  const { fake, d } = await world(t, (url) => ({ url: `${url}/x/{{uid}}`, body: '{{msg}}', retry: { limit: 1, baseDelayMs: 10, maxDelayMs: 100 } }), {
    respond: (req) => (req.path.endsWith('/always') || ++n === 1 ? { destroy: true } : undefined),
  });
  const ok = only(entriesOf(await send(d, { uid: 'u1', msg: 'hi' })));
  assert.equal(ok.status, 'sent');
  assert.equal(fake.requests.filter((r) => r.path === '/x/u1').length, 2);

  const bad = only(entriesOf(await send(d, { uid: 'always', msg: 'hi' })));
  assert.equal(bad.status, 'failed');
  assert.match(bad.reason ?? '', /^(request failed|answer cut off)/);
  assert.match(bad.reason ?? '', /gave up after 2 attempts/);
  assert.equal(fake.requests.filter((r) => r.path === '/x/always').length, 2);
});

test('http: maxQueued bounds the requests waiting for a slot: with a provider that does not answer, the extra ones fail at once with "queue full", and the daemon keeps serving', async (t) => {
  const tokens = ['t1', 't2', 't3', 't4', 't5'];
  const { fake, d } = await world(
    t,
    (url) => ({ url: `${url}/q/{{token}}`, body: '{{msg}}', perDevice: true, maxConcurrentRequests: 1, maxQueued: 2, requestTimeoutMs: 10_000 }),
    { respond: () => ({ hang: true }), devices: { stuck: { hook: tokens } }, dispatch: { deliverTimeoutMs: 800 } },
  );
  const page = await wsClient(t, d.wsUrl, { bind: 'fine' });
  await until(() => d.registry.index('websocket').has('fine'), 'fine bound');

  const report = await send(d, { uid: 'stuck', msg: 'x' });
  const entries = entriesOf(report);
  assert.equal(entries.length, 5);
  const full = entries.filter((e) => e.reason === 'queue full (2 waiting; transports.hook.maxQueued)');
  assert.equal(full.length, 2, JSON.stringify(entries));
  for (const e of full) assert.equal(e.status, 'failed');
  const waiting = entries.filter((e) => e !== full[0] && e !== full[1]);
  for (const e of waiting) assert.match(e.reason ?? '', /^not delivered by the deadline; still trying/);
  assert.equal(fake.requests.length, 1, 'one request in flight; two waiting; the rest were not kept');

  const more = await send(d, { uid: 'stuck', msg: 'y' });
  assert.equal(entriesOf(more).filter((e) => /^queue full \(2 waiting; transports\.hook\.maxQueued\)$/.test(e.reason ?? '')).length, 5, 'still full: every new one fails at once');

  const served = await send(d, { uid: 'fine', msg: 'still here' });
  assert.equal(only(entriesOf(served, 'websocket')).status, 'sent');
  assert.equal(await page.frame(1), 'still here');
});

test('http: the daemon keeps serving WS and Text while a provider hangs; the hanging uid is reported at the deadline', async (t) => {
  // The slow request never gets an answer and, with a 1 h request timeout, stays in flight to the end.
  const { fake, d } = await world(t, (url) => ({ url: `${url}/u/{{uid}}`, body: '{{msg}}', requestTimeoutMs: 3_600_000 }), {
    respond: (req) => (req.path === '/u/slow' ? { hang: true } : undefined),
    dispatch: { deliverTimeoutMs: 500 },
  });
  const fast = await wsClient(t, d.wsUrl, { bind: 'fast' });
  await until(() => d.registry.index('websocket').has('fast'), 'fast bound');
  const backend = await textClient(t, d.textPort);

  const slowStarted = Date.now();
  const slow = send(d, { uid: 'slow', msg: 'stuck' });
  await until(() => fake.requests.some((r) => r.path === '/u/slow'), 'the slow request to reach the provider');

  const textLine = '{"uid":"fast","msg":"by text"}';
  backend.write(`${textLine}\n`);
  const [fastReport, replies] = await Promise.all([send(d, { uid: 'fast', msg: 'by http' }), backend.replies(1)]);
  assert.equal((await health(d)).hook?.inflight, 1, 'the other uid was served while the slow one was still in flight');
  assert.deepEqual(replies, ['ok']);
  assert.equal(only(entriesOf(fastReport, 'websocket')).status, 'sent');
  assert.equal(only(entriesOf(fastReport)).status, 'sent', 'the same transport still sends to other uids');
  await fast.frame(2);
  assert.deepEqual([...fast.frames].sort(), ['by http', textLine]);

  const slowReport = await slow;
  const slowElapsed = Date.now() - slowStarted;
  const e = only(entriesOf(slowReport));
  assert.equal(e.status, 'failed');
  assert.match(e.reason ?? '', /timeout|deadline/);
  assert.equal(slowReport.delivered, false);
  assert.ok(slowElapsed >= 450, `the slow uid was reported at the deadline (500 ms), not before: ${slowElapsed} ms`);
  assert.match(e.reason ?? '', /still trying/);
  // The report is due, but the delivery goes on: nothing is dropped at the deadline.
  assert.equal((await health(d)).hook?.inflight, 1, 'the delivery is still under way after the report');
});

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

const BEARER = 'bearer-SECRET-a1b2c3d4';
const API_KEY = 'apikey-SECRET-z9y8x7w6';
const QS_TOKEN = 'query-SECRET-q1w2e3r4';
const PASSWORD = 'pass-SECRET-m4n5b6v7';
const BASIC_B64 = Buffer.from(`svc-user:${PASSWORD}`).toString('base64');
const SECRETS = [BEARER, API_KEY, QS_TOKEN, PASSWORD, BASIC_B64];

/** What a careless provider puts in its error body: everything it was sent. */
function echo(req: FakeHttpRequest): string {
  const auth = String(req.headers.authorization ?? '');
  const decoded = auth.startsWith('Basic ') ? Buffer.from(auth.slice(6), 'base64').toString('utf8') : '';
  return JSON.stringify({ error: 'denied', authorization: auth, decoded, apiKey: req.headers['x-api-key'] ?? null, url: req.path });
}

function assertNoSecrets(where: string, text: string): void {
  for (const s of SECRETS) assert.ok(!text.includes(s), `${where} leaks ${s}: ${text}`);
}

test('http: credentials never appear in reports or logs, even when the provider echoes them in its error body', async (t) => {
  const seen = new Map<string, number>();
  const { fake, d } = await world(
    t,
    (url) => ({
      url: `${url}/a/{{uid}}?token=${QS_TOKEN}`,
      auth: { bearer: BEARER },
      headers: { 'X-Api-Key': API_KEY },
      body: { m: '{{msg}}' },
      retry: { limit: 1, baseDelayMs: 10, maxDelayMs: 100 },
    }),
    {
      // First a 503 (retried, so it is logged), then a 400, both echoing the credentials.
      respond: (req) => {
        const key = req.path.split('?')[0] ?? '';
        const n = (seen.get(key) ?? 0) + 1;
        seen.set(key, n);
        return { status: n === 1 ? 503 : 400, headers: { 'content-type': 'application/json' }, body: echo(req) };
      },
      more: (url) => ({
        basic: {
          type: 'http',
          url: `${url}/b/{{uid}}`,
          auth: { basic: { username: 'svc-user', password: PASSWORD } },
          body: { m: '{{msg}}' },
          retry: { limit: 1, baseDelayMs: 10, maxDelayMs: 100 },
        },
      }),
    },
  );
  const report = await send(d, { uid: 'u1', msg: 'hi' });
  assert.equal(fake.requests.length, 4);
  // The fake did see the credentials (the test would prove nothing otherwise).
  assert.ok(fake.requests.some((r) => r.headers.authorization === `Bearer ${BEARER}` && r.headers['x-api-key'] === API_KEY && r.path.includes(QS_TOKEN)));
  assert.ok(fake.requests.some((r) => r.headers.authorization === `Basic ${BASIC_B64}`));

  for (const name of ['hook', 'basic']) {
    const e = only(entriesOf(report, name));
    assert.equal(e.status, 'rejected', name);
    assert.match(e.reason ?? '', /^HTTP 400: /);
    assert.match(e.reason ?? '', /\[redacted\]/, `${name}: the echoed credentials are replaced`);
    assertNoSecrets(`${name} report reason`, e.reason ?? '');
  }
  assert.match(only(entriesOf(report, 'basic')).reason ?? '', /svc-user:\[redacted\]/, 'the user name stays, the password goes');
  assertNoSecrets('the whole report', JSON.stringify(report));

  const retryLogs = d.logs.filter((l) => l.msg === 'provider retry');
  assert.equal(retryLogs.length, 2, 'each transport logged its retry (with the echoed 503 body)');
  for (const l of retryLogs) assert.match(String(l.reason), /\[redacted\]/);
  for (const l of d.logs) assertNoSecrets(`log line ${String(l.msg)}`, JSON.stringify(l));
});

test('http: a secret cut in two by the 200-character excerpt does not leak its first part', async (t) => {
  // The echo puts the token right across the excerpt's cut: characters 181..202 of the body.
  const { fake, d } = await world(t, (url) => ({ url: `${url}/x`, auth: { bearer: BEARER }, body: '{{msg}}' }), {
    respond: (req) => ({ status: 400, body: `${'x'.repeat(180)} ${String(req.headers.authorization).slice('Bearer '.length)} end` }),
  });
  const e = only(entriesOf(await send(d, { uid: 'u1', msg: 'hi' })));
  assert.equal(fake.requests.length, 1);
  assert.equal(e.status, 'rejected');
  const head = BEARER.slice(0, 12);
  assert.ok(!(e.reason ?? '').includes(head), `the reason leaks the first ${head.length}+ characters of the bearer token: ${e.reason}`);
  for (const l of d.logs) assert.ok(!JSON.stringify(l).includes(head), `log line leaks part of the token: ${JSON.stringify(l)}`);
});

// ---------------------------------------------------------------------------------------------
// Config errors
// ---------------------------------------------------------------------------------------------

function cfg(yaml: string, env: NodeJS.ProcessEnv = {}): Config {
  return parseConfig(yaml, 'cfg.yaml', tmpdir(), env);
}

/** The config's problems (throws if it loads). */
function problems(yaml: string, env: NodeJS.ProcessEnv = {}): readonly string[] {
  try {
    cfg(yaml, env);
  } catch (err) {
    assert.ok(err instanceof ConfigError, String(err));
    return err.problems;
  }
  assert.fail(`expected a ConfigError for:\n${yaml}`);
}

const hookYaml = (lines: string[]) => ['transports:', '  hook:', '    type: http', ...lines.map((l) => `    ${l}`)].join('\n');

test('http config: an unknown placeholder names the key and its line, and lists the known placeholders', () => {
  const inBody = problems(hookYaml(['url: http://h/{{uid}}', 'body:', '  text: "{{msg}}"', '  other: "x {{nope}}"']));
  assert.equal(inBody.length, 1, JSON.stringify(inBody));
  assert.match(inBody[0] ?? '', /^cfg\.yaml:(5|6|7):\d+: transports\.hook\.body: unknown placeholder \{\{nope\}\}; use \{\{uid\}\}, /);

  const inUrl = problems(hookYaml(['url: http://h/{{nope}}/{{uid}}', 'body: "{{msg}}"']));
  assert.match(inUrl[0] ?? '', /^cfg\.yaml:4:\d+: transports\.hook\.url: unknown placeholder \{\{nope\}\}/);
  assert.ok((inUrl[0] ?? '').includes('{{token}}'), 'the known placeholders are listed');

  const inHeader = problems(hookYaml(['url: http://h/', 'headers:', '  X-Title: "{{titel}}"']));
  assert.match(inHeader[0] ?? '', /^cfg\.yaml:6:\d+: transports\.hook\.headers\.X-Title: unknown placeholder \{\{titel\}\}/);
});

test('http config: {{token}} needs perDevice, and perDevice needs {{token}}', () => {
  const noPerDevice = problems(hookYaml(['url: http://h/{{token}}']));
  assert.equal(noPerDevice.length, 1);
  assert.match(noPerDevice[0] ?? '', /^cfg\.yaml:\d+:\d+: transports\.hook/);
  assert.match(noPerDevice[0] ?? '', /\{\{token\}\}.*perDevice: true/);
  // The message names the transport, then says what is wrong; "{{token}}" is not a key of it.
  assert.doesNotMatch(noPerDevice[0] ?? '', /transports\.hook\.\{\{token\}\}/, 'the text is not glued to the key path as if {{token}} were a key');

  const noToken = problems(hookYaml(['url: http://h/{{uid}}', 'perDevice: true']));
  assert.match(noToken[0] ?? '', /^cfg\.yaml:5:\d+: transports\.hook\.perDevice: true, but no template uses \{\{token\}\}/);

  // Both together load.
  const ok = cfg(hookYaml(['url: http://h/{{token}}', 'perDevice: true']));
  assert.equal(ok.transports.hook?.perDevice, true);
});

test('http config: a JSON text template that is not valid JSON once filled in is refused', () => {
  const missingQuotes = problems(hookYaml(['url: http://h/', 'format: json', 'body: \'{"text": {{msg}} {{title}}}\'']));
  assert.match(missingQuotes[0] ?? '', /^cfg\.yaml:6:\d+: transports\.hook\.body: not valid JSON once filled in/);
  const unclosed = problems(hookYaml(['url: http://h/', 'headers:', '  content-type: application/json', 'body: \'{"text": "{{msg}}"\'']));
  assert.match(unclosed[0] ?? '', /transports\.hook\.body: not valid JSON/);
  // A placeholder outside quotes is a JSON value: valid.
  assert.doesNotThrow(() => cfg(hookYaml(['url: http://h/', 'format: json', 'body: \'{"text": {{msg}}, "n": {{badge}}, "d": {{data}}}\''])));
});

test('http config: the url must be http(s); bearer and basic are exclusive', () => {
  const ftp = problems(hookYaml(['url: ftp://h/{{uid}}']));
  assert.match(ftp[0] ?? '', /^cfg\.yaml:4:\d+: transports\.hook\.url: must be http:\/\/ or https:\/\//);
  const notUrl = problems(hookYaml(['url: "{{uid}}"']));
  assert.match(notUrl[0] ?? '', /transports\.hook\.url: .*is not a URL/);

  const both = problems(hookYaml(['url: https://h/', 'auth:', '  bearer: abc', '  basic: {username: u, password: p}']));
  assert.equal(both.length, 1, JSON.stringify(both));
  assert.match(both[0] ?? '', /^cfg\.yaml:\d+:\d+: transports\.hook\.auth: give either bearer: TOKEN or basic/);
  const neither = problems(hookYaml(['url: https://h/', 'auth: {}']));
  assert.match(neither[0] ?? '', /transports\.hook\.auth: give either/);
});

test('http config: ${NAME} comes from the environment; a missing one is an error at its line; ${NAME:-fallback}; a whole unquoted ${NAME} keeps its YAML type', () => {
  const yaml = hookYaml(['url: https://h/{{uid}}', 'auth:', '  bearer: ${HOOK_TOKEN}', 'requestTimeoutMs: ${TIMEOUT_MS}', 'headers:', '  X-Env: "${STAGE:-dev}-{{uid}}"']);
  const missing = problems(yaml, { TIMEOUT_MS: '750' });
  assert.deepEqual(missing, ['cfg.yaml:6:15: transports.hook.auth.bearer: ${HOOK_TOKEN} is not set in the environment']);

  const both = problems(yaml, {});
  assert.equal(both.length, 2, 'every missing variable is listed');
  assert.match(both[1] ?? '', /^cfg\.yaml:7:\d+: transports\.hook\.requestTimeoutMs: \$\{TIMEOUT_MS\} is not set/);

  const c = cfg(yaml, { HOOK_TOKEN: 'tok-from-env', TIMEOUT_MS: '750' });
  const hook = c.transports.hook as Record<string, unknown>;
  assert.deepEqual(hook.auth, { bearer: 'tok-from-env' });
  assert.equal(hook.requestTimeoutMs, 750, 'a whole unquoted ${TIMEOUT_MS} is a number');
  assert.deepEqual(hook.headers, { 'X-Env': 'dev-{{uid}}' }, 'fallback when unset; {{uid}} untouched');
  const staged = cfg(yaml, { HOOK_TOKEN: 't', TIMEOUT_MS: '750', STAGE: 'prod' });
  assert.deepEqual((staged.transports.hook as Record<string, unknown>).headers, { 'X-Env': 'prod-{{uid}}' });
  const empty = cfg(yaml, { HOOK_TOKEN: 't', TIMEOUT_MS: '750', STAGE: '' });
  assert.deepEqual((empty.transports.hook as Record<string, unknown>).headers, { 'X-Env': 'dev-{{uid}}' }, 'fallback when empty');

  // Quoted, it stays a string, which an integer key refuses.
  const quoted = problems(hookYaml(['url: https://h/', 'requestTimeoutMs: "${TIMEOUT_MS}"']), { TIMEOUT_MS: '750' });
  assert.match(quoted[0] ?? '', /transports\.hook\.requestTimeoutMs must be an integer/);
  // $${NAME} is the literal text.
  const literal = cfg(hookYaml(['url: https://h/', 'auth: {bearer: "$${NOT_EXPANDED}"}']), {});
  assert.deepEqual((literal.transports.hook as Record<string, unknown>).auth, { bearer: '${NOT_EXPANDED}' });
});

test('http config: a whole unquoted ${PORT} becomes a number (a listen port)', () => {
  const c = cfg(['ws:', '  listen: ${PORT}', 'transports:', '  hook:', '    type: http', '    url: https://h/', '    successStatus: ${OK_STATUS}'].join('\n'), { PORT: '8081', OK_STATUS: '202' });
  assert.equal(c.ws.listen, '8081');
  assert.deepEqual((c.transports.hook as Record<string, unknown>).successStatus, [202], 'a number, or successStatus would refuse it');
  const asString = problems(hookYaml(['url: https://h/', 'successStatus: "${OK_STATUS}"']), { OK_STATUS: '202' });
  assert.match(asString[0] ?? '', /successStatus must be an HTTP status/);
});

test('http config: a valid hook loads through the YAML loader with its defaults', () => {
  const c = cfg(stringify({ transports: { hook: { type: 'http', url: 'https://ntfy.example/{{uid}}', body: '{{msg}}' } } }));
  const hook = c.transports.hook as Record<string, unknown>;
  assert.equal(hook.method, 'POST');
  assert.equal(hook.perDevice, false);
  assert.equal(hook.requestTimeoutMs, 5000);
  assert.deepEqual(hook.retry, { limit: 3, baseDelayMs: 200, maxDelayMs: 10_000 });
});
