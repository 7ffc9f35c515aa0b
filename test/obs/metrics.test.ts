import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test, type TestContext } from 'node:test';
import { createLogger } from '../../src/obs/log.js';
import type { DeliveryReport } from '../../src/types.js';
import { cli } from '../helpers/cli.js';
import { HANG_MS, type WsClient, session, textClient, until, wsClient } from '../helpers/clients.js';
import { type TestDaemon, startDaemon } from '../helpers/daemon.js';
import { startFakeHttp } from '../helpers/fake-http.js';
import { sample } from '../helpers/metrics.js';
import { deadPort } from '../helpers/net.js';

// The CLI falls back to $NOTIFY_TOKEN; keep the caller's environment out of these tests.
delete process.env.NOTIFY_TOKEN;

const TOKEN = 'm'.repeat(24);
const AUTH = { authorization: `Bearer ${TOKEN}` };
const PKG = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

// ---------------------------------------------------------------------------------------------
// helpers

async function scrape(d: TestDaemon, headers: Record<string, string> = {}): Promise<string> {
  const res = await fetch(`${d.httpUrl}/metrics`, { headers });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/, 'Prometheus text exposition format');
  return text;
}

async function send(d: TestDaemon, body: Record<string, unknown>, headers: Record<string, string> = {}): Promise<DeliveryReport> {
  const res = await fetch(`${d.httpUrl}/v1/send`, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return JSON.parse(text) as DeliveryReport;
}

async function getJson(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(url, { headers });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

// ---------------------------------------------------------------------------------------------
// GET /metrics

test('metrics: sessions and uids online follow bound WS sessions; messages in by ingress, websocket deliveries per target, store rows, latency count, line-size refusals, process metrics', { timeout: 60_000 }, async (t) => {
  const d = await startDaemon(t, { text: { maxLineBytes: 1024 } }, 'warn');

  const empty = await scrape(d);
  assert.equal(sample(empty, 'notify_sessions'), 0);
  assert.equal(sample(empty, 'notify_uids_online'), 0);
  assert.equal(sample(empty, 'notify_store_messages'), 0);
  assert.equal(sample(empty, 'notify_delivery_seconds_count'), 0);

  const a1 = await session(t, d, 'alice');
  const a2 = await session(t, d, 'alice');
  const b1 = await session(t, d, 'bob');
  // An unbound connection is not a session.
  await wsClient(t, d.wsUrl);

  const bound = await scrape(d);
  assert.equal(sample(bound, 'notify_sessions'), 3, '3 sessions');
  assert.equal(sample(bound, 'notify_uids_online'), 2, 'of 2 uids');

  // Two publishes over Text (to alice: 2 sessions each), two over HTTP (bob: 1; alice+bob: 3).
  const text = await textClient(t, d.textPort);
  text.write('{"uid":"alice","msg":"t1"}\n{"uid":"alice","msg":"t2"}\n');
  assert.deepEqual(await text.replies(2), ['ok', 'ok']);
  assert.equal((await send(d, { uid: 'bob', msg: 'h1' })).sent, 1);
  assert.equal((await send(d, { uids: ['alice', 'bob'], msg: 'h2' })).sent, 3);
  // A line over text.maxLineBytes is refused, not published.
  text.write(`{"uid":"alice","msg":"${'x'.repeat(1100)}"}\n`);
  assert.match((await text.replies(3))[2] ?? '', /^error: line longer than 1024 bytes/);
  await a1.frame(3);
  await a2.frame(3);
  await b1.frame(2);

  const m = await scrape(d);
  assert.equal(sample(m, 'notify_messages_in_total', { via: 'text' }), 2, 'text publishes (the refused line is not one)');
  assert.equal(sample(m, 'notify_messages_in_total', { via: 'http' }), 2, 'http publishes');
  assert.equal(sample(m, 'notify_deliveries_total', { transport: 'websocket', result: 'sent' }), 2 * 2 + 1 + 3, 'one per target');
  assert.equal(sample(m, 'notify_deliveries_total', { transport: 'websocket', result: 'failed' }), undefined);
  assert.equal(sample(m, 'notify_store_messages'), 2 + 1 + 2, 'one row per uid of each publish');
  assert.equal(sample(m, 'notify_store_messages'), d.streams?.size);
  assert.equal(sample(m, 'notify_delivery_seconds_count'), 4, 'one observation per publish');
  const sum = sample(m, 'notify_delivery_seconds_sum');
  assert.ok(sum !== undefined && sum > 0 && sum < 60, `delivery_seconds_sum ${sum}`);
  assert.equal(sample(m, 'notify_delivery_seconds_bucket', { le: '+Inf' }), 4);
  assert.equal(sample(m, 'notify_limit_refusals_total', { limit: 'lineSize' }), 1);
  assert.match(m, /^# TYPE notify_delivery_seconds histogram$/m);
  assert.match(m, /^# TYPE notify_messages_in_total counter$/m);
  assert.match(m, /^# TYPE notify_sessions gauge$/m);
  // prom-client's default metrics, prefixed (their own names start process_ or nodejs_).
  const processNames = new Set([...m.matchAll(/^(notify_(?:process|nodejs)_[a-z0-9_]+)/gm)].map((x) => x[1] as string));
  assert.ok(![...processNames].some((n) => n.includes('process_process_')), 'the prefix is not doubled');
  assert.ok([...processNames].some((n) => /cpu_user_seconds_total$/.test(n)), `process cpu metric: ${[...processNames].join(' ')}`);
  const rss = [...processNames].find((n) => /resident_memory_bytes$/.test(n));
  assert.ok(rss !== undefined && (sample(m, rss) ?? 0) > 0, 'resident memory reported');
  assert.ok([...processNames].some((n) => /heap_size_used_bytes$/.test(n)), 'node heap metric');
  assert.ok(!/^process_/m.test(m), 'no unprefixed process metrics');

  // The gauges follow sessions going away.
  a1.ws.close();
  await until(() => d.registry.index('websocket').targetCount === 2, 'a session to go');
  const after1 = await scrape(d);
  assert.equal(sample(after1, 'notify_sessions'), 2);
  assert.equal(sample(after1, 'notify_uids_online'), 2);
  a2.ws.close();
  await until(() => d.registry.index('websocket').targetCount === 1, 'alice to go');
  const after2 = await scrape(d);
  assert.equal(sample(after2, 'notify_sessions'), 1);
  assert.equal(sample(after2, 'notify_uids_online'), 1);
});

test('metrics: a failing HTTP push transport (503, retry limit 1) counts failed deliveries and provider retries under its name; a working one counts sent', { timeout: 60_000 }, async (t) => {
  const bad = await startFakeHttp(t, () => ({ status: 503, body: 'down' }));
  const good = await startFakeHttp(t);
  const d = await startDaemon(
    t,
    {
      transports: {
        hook: { type: 'http', url: `${bad.url}/push/{{uid}}`, retry: { limit: 1, baseDelayMs: 5, maxDelayMs: 50 } },
        okhook: { type: 'http', url: `${good.url}/push/{{uid}}` },
      },
    },
    'warn',
  );
  const r = await send(d, { uid: 'carol', msg: 'hi' });
  const hook = r.results.filter((e) => e.transport === 'hook');
  assert.deepEqual(hook.map((e) => e.status), ['failed'], JSON.stringify(r));
  assert.equal(bad.requests.length, 2, 'first attempt and one retry');
  assert.equal(good.requests.length, 1);

  const m = await scrape(d);
  assert.equal(sample(m, 'notify_deliveries_total', { transport: 'hook', result: 'failed' }), 1);
  assert.equal(sample(m, 'notify_deliveries_total', { transport: 'hook', result: 'sent' }), undefined);
  assert.ok((sample(m, 'notify_provider_retries_total', { transport: 'hook' }) ?? 0) >= 1, 'the retry is counted');
  assert.equal(sample(m, 'notify_deliveries_total', { transport: 'okhook', result: 'sent' }), 1);
  assert.equal(sample(m, 'notify_provider_retries_total', { transport: 'okhook' }), undefined, 'no retries for the working one');
  assert.equal(sample(m, 'notify_messages_in_total', { via: 'http' }), 1);
});

test('metrics: with http.token, /metrics and /v1/status need the bearer; /healthz stays open and reports each transport state', { timeout: 60_000 }, async (t) => {
  const fake = await startFakeHttp(t);
  const d = await startDaemon(t, { http: { token: TOKEN }, transports: { hook: { type: 'http', url: `${fake.url}/{{uid}}` } } }, 'warn');

  const wrong: Record<string, string>[] = [{}, { authorization: 'Bearer wrong-token-wrong-token' }, { authorization: TOKEN }];
  for (const headers of wrong) {
    const res = await fetch(`${d.httpUrl}/metrics`, { headers });
    assert.equal(res.status, 401, `/metrics with ${JSON.stringify(headers)}`);
    const body = (await res.json()) as { code: string };
    assert.equal(body.code, 'NOTIFY_ERR_UNAUTHORIZED');
    const st = await getJson(`${d.httpUrl}/v1/status`, headers);
    assert.equal(st.status, 401, `/v1/status with ${JSON.stringify(headers)}`);
  }
  const m = await scrape(d, AUTH);
  assert.equal(sample(m, 'notify_sessions'), 0);
  assert.equal((await getJson(`${d.httpUrl}/v1/status`, AUTH)).status, 200);

  const h = await getJson(`${d.httpUrl}/healthz`);
  assert.equal(h.status, 200, 'no token needed');
  assert.equal(h.body.status, 'ok');
  const transports = h.body.transports as Record<string, Record<string, unknown>>;
  assert.deepEqual(Object.keys(transports).sort(), ['hook', 'websocket']);
  assert.equal(transports.websocket?.state, 'running');
  assert.equal(transports.hook?.state, 'running');
  assert.equal(transports.hook?.inflight, 0);
});

// ---------------------------------------------------------------------------------------------
// GET /v1/status and notify status

async function busyDaemon(t: TestContext): Promise<{ d: TestDaemon; clients: WsClient[] }> {
  const fake = await startFakeHttp(t);
  const d = await startDaemon(t, { http: { token: TOKEN }, transports: { hook: { type: 'http', url: `${fake.url}/{{uid}}` } } }, 'warn');
  const clients = [await session(t, d, 'alice'), await session(t, d, 'alice'), await session(t, d, 'bob')];
  await send(d, { uids: ['alice', 'bob', 'carol'], msg: 'one' }, AUTH);
  await send(d, { uid: 'bob', msg: 'two' }, AUTH);
  return { d, clients };
}

test('status: GET /v1/status reports version, uptime, listeners, sessions, uids, connections, store rows and transports', { timeout: 60_000 }, async (t) => {
  const { d } = await busyDaemon(t);
  await wsClient(t, d.wsUrl); // connected, not bound
  const deadline = Date.now() + HANG_MS;
  let st: Record<string, unknown> = {};
  for (;;) {
    const a = await getJson(`${d.httpUrl}/v1/status`, AUTH);
    assert.equal(a.status, 200);
    st = a.body;
    if (st.connections === 4 || Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.equal(st.version, PKG.version);
  assert.equal(typeof st.uptimeS, 'number');
  assert.ok(Number.isInteger(st.uptimeS) && (st.uptimeS as number) >= 0 && (st.uptimeS as number) < 120, `uptimeS ${st.uptimeS}`);
  const listeners = st.listeners as Record<string, string>;
  for (const k of ['ws', 'text', 'http']) assert.match(listeners[k] ?? '', /^127\.0\.0\.1:[1-9]\d*$/, k);
  assert.deepEqual(st.listeners, d.addresses());
  assert.equal(st.sessions, 3);
  assert.equal(st.uids, 2);
  assert.equal(st.connections, 4, 'the unbound connection counts as a connection');
  assert.deepEqual(st.history, { rows: 4 }, '3 rows for the first publish, 1 for the second');
  const transports = st.transports as Record<string, Record<string, unknown>>;
  assert.deepEqual(Object.keys(transports).sort(), ['hook', 'websocket']);
  assert.equal(transports.websocket?.state, 'running');
  assert.equal(transports.websocket?.sessions, 3);
  assert.equal(transports.hook?.state, 'running');
});

test('status: `notify status` prints listeners, sessions of uids, the store and one line per transport; --json is /v1/status', { timeout: 60_000 }, async (t) => {
  const { d } = await busyDaemon(t);
  const human = await cli(['status', '--server', d.httpUrl, '--token', TOKEN]);
  assert.equal(human.err, '');
  assert.equal(human.code, 0);
  const lines = human.out.replace(/\n$/, '').split('\n');
  const a = d.addresses();
  assert.match(lines[0] ?? '', new RegExp(`^notify ${PKG.version.replace(/\./g, '\\.')}, up \\d`));
  const listening = lines.find((l) => l.startsWith('listening'));
  assert.ok(listening, human.out);
  for (const addr of [a.ws, a.text, a.http]) assert.ok(listening.includes(addr), `${addr} in ${listening}`);
  assert.match(human.out, /^sessions\s+3 sessions of 2 uids \(3 connections\)$/m);
  assert.match(human.out, /^store\s+4 stored message rows$/m);
  const at = lines.indexOf('transports');
  assert.ok(at > 0, human.out);
  const tl = lines.slice(at + 1);
  assert.equal(tl.length, 2, `one line per transport: ${JSON.stringify(tl)}`);
  assert.match(tl.find((l) => /^\s+websocket\s/.test(l)) ?? '', /^\s+websocket\s+running\b.*sessions 3/);
  assert.match(tl.find((l) => /^\s+hook\s/.test(l)) ?? '', /^\s+hook\s+running\b/);

  const json = await cli(['status', '--server', d.httpUrl, '--token', TOKEN, '--json']);
  assert.equal(json.code, 0);
  assert.equal(json.err, '');
  assert.ok(json.out.endsWith('\n') && json.out.indexOf('\n') === json.out.length - 1, 'one line of JSON');
  const printed = JSON.parse(json.out) as Record<string, unknown>;
  const direct = (await getJson(`${d.httpUrl}/v1/status`, AUTH)).body;
  assert.ok(Math.abs((printed.uptimeS as number) - (direct.uptimeS as number)) <= 1);
  delete printed.uptimeS;
  delete direct.uptimeS;
  assert.deepEqual(printed, direct);

  // Without the token: refused, exit 2, one line.
  const refused = await cli(['status', '--server', d.httpUrl]);
  assert.equal(refused.code, 2);
  assert.equal(refused.out, '');
  assert.match(refused.err, /^notify: .*NOTIFY_ERR_UNAUTHORIZED.*\n$/);
});

test('status: `notify status` against a dead server exits 2 with one stderr line; history off shows "store off"', { timeout: 60_000 }, async (t) => {
  const port = await deadPort();
  const r = await cli(['status', '--server', `http://127.0.0.1:${port}`, '--timeout', '5000']);
  assert.equal(r.code, 2);
  assert.equal(r.out, '');
  assert.ok(r.err.endsWith('\n'));
  assert.equal(r.err.split('\n').length, 2, `one line: ${JSON.stringify(r.err)}`);
  assert.match(r.err, /^notify: cannot reach the notify daemon at http:\/\/127\.0\.0\.1:\d+ .*ECONNREFUSED/);

  const d = await startDaemon(t, { history: { enabled: false } }, 'warn');
  const off = await cli(['status', '--server', d.httpUrl]);
  assert.equal(off.code, 0, off.err);
  assert.match(off.out, /^store\s+off$/m);
  assert.match(off.out, /^sessions\s+0 sessions of 0 uids \(0 connections\)$/m);
});

// ---------------------------------------------------------------------------------------------
// logs

test('logs: one JSON object per line with time, level, msg; the level filters and setLevel changes it; secret fields are redacted', { timeout: 60_000 }, () => {
  const written: string[] = [];
  const log = createLogger({ level: 'info', write: (line) => void written.push(line) });
  log.debug('hidden at info', { n: 1 });
  assert.equal(written.length, 0, 'debug dropped at level info');
  log.info('multi\nline "msg"', { uid: 'u1', n: 2 });
  log.warn('warned');
  log.error('failed', { error: new Error('boom') });
  assert.equal(written.length, 3);
  for (const line of written) {
    assert.ok(line.endsWith('\n'), 'ends with a newline');
    assert.equal(line.indexOf('\n'), line.length - 1, `exactly one line: ${JSON.stringify(line)}`);
  }
  const [info, warn, error] = written.map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(info?.level, 'info');
  assert.equal(info?.msg, 'multi\nline "msg"');
  assert.equal(info?.uid, 'u1');
  assert.equal(info?.n, 2);
  assert.match(String(info?.time), /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/);
  assert.ok(Math.abs(Date.parse(String(info?.time)) - Date.now()) < 60_000);
  assert.equal(warn?.level, 'warn');
  assert.equal(error?.level, 'error');
  assert.equal(error?.error, 'boom');

  log.setLevel('debug');
  log.debug('now shown');
  assert.equal(written.length, 4);
  assert.deepEqual(
    (({ level, msg }) => ({ level, msg }))(JSON.parse(written[3] as string) as Record<string, unknown>),
    { level: 'debug', msg: 'now shown' },
  );
  log.setLevel('error');
  log.warn('dropped at error');
  assert.equal(written.length, 4);
  log.setLevel('debug');

  const secrets = { token: 'tok-SECRET-1', secret: 'sec-SECRET-2', password: 'pw-SECRET-3', authorization: 'Bearer SECRET-4', uid: 'visible-uid' };
  log.info('with secrets', secrets);
  const last = written[written.length - 1] as string;
  for (const v of Object.values(secrets).slice(0, 4)) assert.ok(!last.includes(v), `${v} leaked: ${last}`);
  const parsed = JSON.parse(last) as Record<string, unknown>;
  assert.equal(parsed.token, '[redacted]');
  assert.equal(parsed.secret, '[redacted]');
  assert.equal(parsed.password, '[redacted]');
  assert.equal(parsed.authorization, '[redacted]');
  assert.equal(parsed.uid, 'visible-uid', 'other fields kept');
  assert.equal(secrets.token, 'tok-SECRET-1', "the caller's object is not changed");
});

test('logs: the daemon writes JSON lines with time, level and msg, and never the http.token', { timeout: 60_000 }, async (t) => {
  const d = await startDaemon(t, { http: { token: TOKEN } }, 'debug');
  await session(t, d, 'alice');
  await send(d, { uid: 'alice', msg: 'hi' }, AUTH);
  const bad = await fetch(`${d.httpUrl}/v1/send`, { method: 'POST', headers: { authorization: 'Bearer nope' }, body: '{}' });
  assert.equal(bad.status, 401);
  assert.ok(d.logs.length >= 3, 'the listeners were logged');
  for (const l of d.logs) {
    assert.equal(typeof l.time, 'string');
    assert.ok(['debug', 'info', 'warn', 'error'].includes(l.level as string), JSON.stringify(l));
    assert.equal(typeof l.msg, 'string');
  }
  assert.ok(!JSON.stringify(d.logs).includes(TOKEN), 'the bearer token is never logged');
});
