import { streamOf } from '../../src/store/stream.js';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { WebSocket } from 'ws';
import { stringify } from 'yaml';
import type { Config } from '../../src/config/load.js';
import { api, send } from '../helpers/api.js';
import { apnsWorld, deviceToken } from '../helpers/apns.js';
import { type Child, startChild } from '../helpers/child.js';
import { HANG_MS, session, until, within, wsClient } from '../helpers/clients.js';
import { type Overrides, type TestDaemon, startDaemon, tempDir, testConfig } from '../helpers/daemon.js';
import { type FakeHttp, startFakeHttp } from '../helpers/fake-http.js';

// ---------------------------------------------------------------------------------------------
// helpers

/**
 * A daemon and a way to build its next config: both share one state folder (so a reload sees
 * no change to `state`), listeners on 127.0.0.1 port 0.
 */
async function reloadable(t: TestContext, overrides: Overrides): Promise<{ d: TestDaemon; next(o: Overrides): Config }> {
  const dir = join(tempDir(t, 'notify-reload-'), 'state');
  const d = await startDaemon(t, { ...overrides, state: { dir } }, 'warn');
  return { d, next: (o) => testConfig({ ...o, state: { dir } }, t) };
}

async function health(base: string): Promise<Record<string, Record<string, unknown>>> {
  const a = await api(base, 'GET', '/healthz');
  assert.equal(a.status, 200);
  return (a.body as { transports: Record<string, Record<string, unknown>> }).transports;
}

const pathsSince = (fake: FakeHttp, from: number): string[] => fake.requests.slice(from).map((r) => r.path).sort();

// ---------------------------------------------------------------------------------------------
// in-process: transports

test('reload: a transport added, one changed (new URL), one unchanged: added/changed/removed reported; deliveries follow; the unchanged one keeps its instance (its rate-limit pause survives); then one removed gets nothing', { timeout: 60_000 }, async (t) => {
  const fake = await startFakeHttp(t);
  // Answers 429 with Retry-After: 30 s: the transport pauses every request for 30 s.
  const limiter = await startFakeHttp(t, () => ({ status: 429, headers: { 'retry-after': '30' }, body: 'slow down' }));
  const hookC = { type: 'http', url: `${limiter.url}/c/{{token}}`, perDevice: true, retry: { limit: 2, baseDelayMs: 5, maxDelayMs: 1000 } };
  const { d, next } = await reloadable(t, {
    transports: { hookA: { type: 'http', url: `${fake.url}/a1/{{uid}}` }, hookC },
    devices: { pauser: { hookC: ['pc1'] } },
  });

  // hookC gets a 429 asking for 30 s (longer than its maxDelayMs): failed, and paused.
  const paused = await send(d.httpUrl, { uid: 'pauser', msg: 'p' });
  assert.equal(paused.results.find((e) => e.transport === 'hookC')?.status, 'failed', JSON.stringify(paused));
  const h0 = await health(d.httpUrl);
  assert.ok((h0.hookC?.pausedForMs as number) > 20_000, `hookC paused: ${JSON.stringify(h0.hookC)}`);
  let from = fake.requests.length;
  await send(d.httpUrl, { uid: 'alice', msg: 'one' });
  assert.deepEqual(pathsSince(fake, from), ['/a1/alice']);

  const r = await d.reload(
    next({
      transports: {
        hookA: { type: 'http', url: `${fake.url}/a2/{{uid}}` },
        hookC,
        hookB: { type: 'http', url: `${fake.url}/b/{{token}}`, perDevice: true },
      },
      devices: { pauser: { hookC: ['pc1'] }, alice: { hookB: ['tb1', 'tb2'] } },
    }),
  );
  assert.deepEqual(r, { added: ['hookB'], changed: ['hookA'], removed: [], restartNeeded: [] });

  from = fake.requests.length;
  const two = await send(d.httpUrl, { uid: 'alice', msg: 'two' });
  assert.deepEqual(pathsSince(fake, from), ['/a2/alice', '/b/tb1', '/b/tb2'], 'the new URL and the new transport with its devices');
  assert.deepEqual(
    two.results.map((e) => `${e.transport}:${e.target}:${e.status}`).sort(),
    ['hookA:alice:sent', 'hookB:tb1:sent', 'hookB:tb2:sent'],
  );
  const h1 = await health(d.httpUrl);
  assert.deepEqual(Object.keys(h1).sort(), ['hookA', 'hookB', 'hookC', 'websocket']);
  assert.ok((h1.hookC?.pausedForMs as number) > 15_000, `the unchanged hookC is the same instance, still paused: ${JSON.stringify(h1.hookC)}`);
  assert.equal(h1.hookC?.devices, 1);
  assert.equal(h1.hookB?.devices, 2);
  assert.equal(h1.hookB?.state, 'running');
  assert.equal(limiter.requests.length, 1);

  const r2 = await d.reload(
    next({
      transports: { hookA: { type: 'http', url: `${fake.url}/a2/{{uid}}` }, hookC },
      devices: { pauser: { hookC: ['pc1'] } },
    }),
  );
  assert.deepEqual(r2, { added: [], changed: [], removed: ['hookB'], restartNeeded: [] });
  from = fake.requests.length;
  const three = await send(d.httpUrl, { uid: 'alice', msg: 'three' });
  assert.deepEqual(pathsSince(fake, from), ['/a2/alice'], 'nothing goes to the removed hookB');
  assert.deepEqual(three.results.map((e) => e.transport), ['hookA']);
  const h2 = await health(d.httpUrl);
  assert.deepEqual(Object.keys(h2).sort(), ['hookA', 'hookC', 'websocket']);
  assert.ok((h2.hookC?.pausedForMs as number) > 10_000, 'hookC still the same instance');
  const reg = await api(d.httpUrl, 'POST', '/v1/devices', { uid: 'alice', transport: 'hookB', token: 'tb3' });
  assert.equal(reg.status, 400, 'hookB no longer takes device tokens');
});

test('reload: WebSocket sessions bound before a reload are all kept and still receive pushes', { timeout: 60_000 }, async (t) => {
  const fake = await startFakeHttp(t);
  const { d, next } = await reloadable(t, { transports: { hookA: { type: 'http', url: `${fake.url}/a/{{uid}}` } } });
  const clients = [await session(t, d, 'alice'), await session(t, d, 'alice'), await session(t, d, 'bob')];
  const index = d.registry.index('websocket');
  const before = { count: index.targetCount, alice: index.targets('alice').slice().sort(), bob: index.targets('bob').slice() };
  assert.equal(before.count, 3);

  const r = await d.reload(
    next({
      transports: { hookA: { type: 'http', url: `${fake.url}/a2/{{uid}}` }, hookB: { type: 'http', url: `${fake.url}/b/{{uid}}` } },
      limits: { sessionsPerUid: 5 },
      dispatch: { route: 'live-first' },
    }),
  );
  assert.deepEqual(r.restartNeeded, []);
  assert.equal(index.targetCount, 3, 'no session dropped');
  assert.deepEqual(index.targets('alice').slice().sort(), before.alice, 'the same sessions');
  assert.deepEqual(index.targets('bob'), before.bob);

  const report = await send(d.httpUrl, { uids: ['alice', 'bob'], msg: 'after reload' });
  assert.equal(report.results.filter((e) => e.transport === 'websocket' && e.status === 'sent').length, 3, JSON.stringify(report));
  for (const c of clients) {
    assert.equal(await c.frame(1), 'after reload');
    assert.equal(c.ws.readyState, WebSocket.OPEN);
  }
});

// ---------------------------------------------------------------------------------------------
// in-process: devices

test('reload: APNs devices: a token added to the YAML is used, one removed is not; run-time registrations survive; retired tokens stay retired', { timeout: 60_000 }, async (t) => {
  const [y1, yRetired, yGone, yNew, y2, apiToken] = [deviceToken(), deviceToken(), deviceToken(), deviceToken(), deviceToken(), deviceToken()];
  const w = await apnsWorld(t, {
    devices: { uid1: [y1, yRetired, yGone] },
    fake: { respond: (req) => (req.token === yRetired ? { status: 410, reason: 'Unregistered', timestamp: Date.now() } : undefined) },
  });
  const d = await w.daemon();
  const reg = await api(d.httpUrl, 'POST', '/v1/devices', { uid: 'uid1', transport: 'apns', token: apiToken });
  assert.equal(reg.status, 200, JSON.stringify(reg.body));
  const first = await send(d.httpUrl, { uid: 'uid1', msg: 'one' });
  assert.equal(first.results.find((e) => e.target === yRetired)?.status, 'rejected', JSON.stringify(first));
  assert.equal(d.devices.isRetired('apns', yRetired), true);

  // The YAML now lists yNew (and still the retired one), no longer yGone, and uid2.
  w.raw.devices = { uid1: { apns: [y1, yRetired, yNew] }, uid2: { apns: [y2] } };
  const r = await d.reload(w.config());
  assert.deepEqual(r, { added: [], changed: [], removed: [], restartNeeded: [] });

  const index = d.registry.index('apns');
  assert.deepEqual(index.targets('uid1').slice().sort(), [y1, yNew, apiToken].sort());
  assert.deepEqual(index.targets('uid2'), [y2]);
  const from = w.fake.requests.length;
  const two = await send(d.httpUrl, { uids: ['uid1', 'uid2'], msg: 'two' });
  assert.equal(two.sent, 4, JSON.stringify(two));
  const seen = w.fake.requests.slice(from).map((x) => x.token);
  assert.deepEqual(seen.slice().sort(), [y1, yNew, apiToken, y2].sort());
  assert.ok(!seen.includes(yGone), 'a token removed from the YAML is not used');
  assert.ok(!seen.includes(yRetired), 'a retired token stays retired');
  assert.equal(d.devices.isRetired('apns', yRetired), true);

  const list = await api(d.httpUrl, 'GET', '/v1/devices?uid=uid1');
  const entries = (list.body as { devices: { token: string; source: string }[] }).devices;
  assert.deepEqual(
    entries.map((e) => `${e.token === apiToken ? 'api' : e.token === yNew ? 'new' : e.token === y1 ? 'y1' : e.token}:${e.source}`).sort(),
    ['api:api', 'new:config', 'y1:config'],
  );
});

// ---------------------------------------------------------------------------------------------
// in-process: limits and routes

test('reload: lowered limits.uidsPerMessage and sessionsPerUid, and dispatch.route live-first, apply from the reload on', { timeout: 60_000 }, async (t) => {
  const fake = await startFakeHttp(t);
  const { d, next } = await reloadable(t, {
    transports: { hook: { type: 'http', url: `${fake.url}/h/{{uid}}` } },
    limits: { uidsPerMessage: 3, sessionsPerUid: 3 },
    dispatch: { route: 'all' },
  });
  const alice = await session(t, d, 'alice');
  const three = await send(d.httpUrl, { uids: ['a', 'b', 'c'], msg: 'x' });
  assert.equal(three.sent, 3);
  let from = fake.requests.length;
  const all = await send(d.httpUrl, { uid: 'alice', msg: 'route all' });
  assert.equal(all.route, 'all');
  assert.deepEqual(pathsSince(fake, from), ['/h/alice'], 'route all: the webhook too');

  const r = await d.reload(
    next({
      transports: { hook: { type: 'http', url: `${fake.url}/h/{{uid}}` } },
      limits: { uidsPerMessage: 2, sessionsPerUid: 1 },
      dispatch: { route: 'live-first' },
    }),
  );
  assert.deepEqual(r, { added: [], changed: [], removed: [], restartNeeded: [] });

  const over = await api(d.httpUrl, 'POST', '/v1/send', { uids: ['a', 'b', 'c'], msg: 'x' });
  assert.equal(over.status, 400, JSON.stringify(over.body));
  assert.equal((over.body as { code: string }).code, 'NOTIFY_ERR_INVALID_MESSAGE');
  assert.match((over.body as { error: string }).error, /uidsPerMessage is 2/);
  assert.match(await d.metrics.text(), /^notify_limit_refusals_total\{limit="uidsPerMessage"\} 1$/m);
  assert.equal((await send(d.httpUrl, { uids: ['a', 'b'], msg: 'two is fine' })).sent, 2);

  from = fake.requests.length;
  const live = await send(d.httpUrl, { uid: 'alice', msg: 'live first' });
  assert.equal(live.route, 'live-first');
  assert.deepEqual(live.paths, { alice: 'live' });
  assert.deepEqual(pathsSince(fake, from), [], 'the live session took it: no webhook');
  assert.equal(await alice.frame(2), 'live first');
  const fallback = await send(d.httpUrl, { uid: 'bob', msg: 'nobody live' });
  assert.deepEqual(fallback.paths, { bob: 'fallback' });
  assert.deepEqual(pathsSince(fake, from), ['/h/bob']);

  // sessionsPerUid 1: alice's first session is kept, a second bind is refused (4429).
  const second = await wsClient(t, d.wsUrl, { bind: 'alice' });
  const [code] = await within(second.closed, HANG_MS, 'the second alice session to be refused');
  assert.equal(code, 4429);
  assert.equal(alice.ws.readyState, WebSocket.OPEN);
  assert.equal(d.registry.index('websocket').targets('alice').length, 1);
});

// ---------------------------------------------------------------------------------------------
// in-process: what takes a restart

test('reload: a change to ws.listen or history.size is reported in restartNeeded and not applied; the rest of that reload is', { timeout: 60_000 }, async (t) => {
  const { d, next } = await reloadable(t, { history: { size: 3 } });
  const ws = d.addresses().ws;
  for (let i = 1; i <= 3; i++) await send(d.httpUrl, { uid: 'u', msg: `m${i}` });

  const r = await d.reload(next({ ws: { listen: '127.0.0.1:1' }, history: { size: 1 }, limits: { uidsPerMessage: 1 } }));
  assert.deepEqual(r.restartNeeded.slice().sort(), ['history', 'ws']);
  assert.deepEqual([r.added, r.changed, r.removed], [[], [], []]);

  assert.equal(d.addresses().ws, ws, 'still listening where it was');
  const c = await session(t, d, 'u');
  await send(d.httpUrl, { uid: 'u', msg: 'm4' });
  assert.equal(await c.frame(1), 'm4');
  const kept = (await d.streams?.history(streamOf('u'), { limit: 100 }))?.publications.map((m) => m.frame);
  assert.deepEqual(kept, ['m2', 'm3', 'm4'], 'the store still keeps 3 per uid');
  const over = await api(d.httpUrl, 'POST', '/v1/send', { uids: ['u', 'v'], msg: 'x' });
  assert.equal(over.status, 400, 'limits from the same reload did apply');
});

test('reload: restartNeeded is measured against what is running: reverting a pending listener change needs no restart; keeping it still does', { timeout: 60_000 }, async (t) => {
  const { d, next } = await reloadable(t, {});
  const r1 = await d.reload(next({ ws: { listen: '127.0.0.1:1' } }));
  assert.deepEqual(r1.restartNeeded, ['ws']);
  // The file goes back to what the daemon runs with: nothing is pending any more.
  const r2 = await d.reload(next({}));
  assert.deepEqual(r2.restartNeeded, [], 'the running ws.listen is what the file says again');
  // The change again, then an unrelated reload with the change still in the file: still pending.
  const r3 = await d.reload(next({ ws: { listen: '127.0.0.1:1' } }));
  assert.deepEqual(r3.restartNeeded, ['ws']);
  const r4 = await d.reload(next({ ws: { listen: '127.0.0.1:1' }, limits: { uidsPerMessage: 7 } }));
  assert.deepEqual(r4.restartNeeded, ['ws'], 'the listener still differs from the file');
});

test('reload: a change to dispatch.deliverTimeoutMs is applied without a restart: the next delivery is cut off at the new deadline', { timeout: 120_000 }, async (t) => {
  // The webhook never answers, so only the dispatcher's deadline ends a delivery. Before the
  // reload that deadline is far past this test's hang guard; after it, 300 ms.
  const fake = await startFakeHttp(t, () => ({ hang: true }));
  const hook = { type: 'http', url: `${fake.url}/h/{{uid}}`, requestTimeoutMs: 600_000 };
  const { d, next } = await reloadable(t, { transports: { hook }, dispatch: { deliverTimeoutMs: 600_000 } });
  const r = await d.reload(next({ transports: { hook }, dispatch: { deliverTimeoutMs: 300 } }));
  assert.deepEqual(r.restartNeeded, [], 'dispatch applies on reload: no restart needed');
  const report = await within(send(d.httpUrl, { uid: 'x', msg: 'slow' }), HANG_MS, 'the report: dispatch.deliverTimeoutMs 300 was not applied by the reload');
  // Under the old 600 s deadline the send would still be waiting; under 300 ms it is cut off.
  assert.deepEqual(report.results.map((e) => [e.transport, e.status]), [['hook', 'failed']], JSON.stringify(report.results));
  assert.match(report.results[0]?.reason ?? '', /deadline|timeout/, `cut off at the reloaded deadline: ${JSON.stringify(report.results)}`);
  assert.equal(fake.requests.length, 1, 'the webhook was called');
});

// ---------------------------------------------------------------------------------------------
// child process: SIGHUP

/** A YAML config file for a child: port-0 listeners, state next to the file. */
function writeConfig(file: string, extra: Record<string, unknown> = {}, level = 'info'): void {
  const raw = {
    ws: { listen: '127.0.0.1:0' },
    text: { listen: '127.0.0.1:0' },
    http: { listen: '127.0.0.1:0' },
    state: { dir: './state' },
    log: { level },
    shutdown: { timeoutMs: 2000 },
    ...extra,
  };
  writeFileSync(file, stringify(raw));
}

const logsWith = (child: Child, msg: string) => child.logs.filter((l) => l.msg === msg);

async function waitLog(child: Child, msg: string, n: number, what: string): Promise<Record<string, unknown>> {
  await until(() => logsWith(child, msg).length >= n, `${what} (logs: ${JSON.stringify(child.logs.slice(-5))})`);
  return logsWith(child, msg)[n - 1] as Record<string, unknown>;
}

async function childBound(http: string, n: number): Promise<void> {
  const deadline = Date.now() + HANG_MS;
  for (;;) {
    const h = await health(`http://${http}`);
    if (h.websocket?.uids === n) return;
    if (Date.now() > deadline) assert.fail(`expected ${n} bound uids, health says ${JSON.stringify(h)}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const RELOADED = 'SIGHUP: config reloaded; sessions kept';
const PROBLEMS = 'SIGHUP: the config file has problems; keeping the running config';

test('reload (child): SIGHUP applies a new http transport without dropping the session; a broken file is reported with file:line:col and the old config kept; SIGTERM exits 0', { timeout: 60_000 }, async (t) => {
  const fake = await startFakeHttp(t);
  const other = await startFakeHttp(t);
  const dir = tempDir(t, 'notify-sighup-');
  const file = join(dir, 'notify.yaml');
  writeConfig(file);
  const child = await startChild(t, file, HANG_MS);
  const http = `http://${child.http}`;
  const c = await wsClient(t, `ws://${child.ws}/`, { bind: 'alice' });
  await childBound(child.http, 1);
  assert.equal((await send(http, { uid: 'alice', msg: 'before' })).sent, 1);
  assert.equal(await c.frame(1), 'before');

  const hook = { type: 'http', url: `${fake.url}/hook/{{uid}}` };
  writeConfig(file, { transports: { hook } });
  child.proc.kill('SIGHUP');
  const reloaded = await waitLog(child, RELOADED, 1, 'the reload to be logged');
  assert.equal(reloaded.level, 'info');
  assert.deepEqual(reloaded.added, ['hook']);
  assert.deepEqual(reloaded.removed, []);

  const after = await send(http, { uid: 'alice', msg: 'after' });
  assert.deepEqual(after.results.map((e) => `${e.transport}:${e.status}`).sort(), ['hook:sent', 'websocket:sent']);
  assert.equal(await c.frame(2), 'after', 'the same socket still gets pushes');
  assert.deepEqual(fake.requests.map((r) => r.path), ['/hook/alice']);
  assert.equal(c.ws.readyState, WebSocket.OPEN);
  const h = await health(http);
  assert.equal(h.websocket?.connections, 1, 'still the one connection');
  assert.equal(h.hook?.state, 'running');

  // A YAML syntax error.
  writeFileSync(file, 'ws:\n  listen: 127.0.0.1:0\ntransports:\n  hook: [unclosed\n    url: x\n');
  child.proc.kill('SIGHUP');
  const bad = await waitLog(child, PROBLEMS, 1, 'the bad file to be reported');
  assert.equal(bad.level, 'error');
  assert.equal(bad.config, file);
  const problems = bad.problems as string[];
  assert.ok(Array.isArray(problems) && problems.length >= 1, JSON.stringify(bad));
  assert.match(problems[0] as string, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:\\d+:\\d+: `));
  const still = await send(http, { uid: 'alice', msg: 'still' });
  assert.deepEqual(still.results.map((e) => `${e.transport}:${e.status}`).sort(), ['hook:sent', 'websocket:sent'], 'the old config runs on');
  assert.equal(await c.frame(3), 'still');
  assert.equal(fake.requests.length, 2);

  // Valid YAML with an unknown key, and a hook URL that must not be taken.
  writeConfig(file, { transports: { hook: { type: 'http', url: `${other.url}/other/{{uid}}` } }, bogusSection: { x: 1 } });
  child.proc.kill('SIGHUP');
  const unknown = await waitLog(child, PROBLEMS, 2, 'the unknown key to be reported');
  const p2 = (unknown.problems as string[]).join('\n');
  assert.match(p2, /bogusSection/);
  assert.match(p2, new RegExp(`${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:\\d+:\\d+: `));
  assert.equal(logsWith(child, RELOADED).length, 1, 'no reload happened');
  await send(http, { uid: 'alice', msg: 'old url' });
  assert.equal(await c.frame(4), 'old url');
  assert.equal(fake.requests.length, 3, 'the running hook URL is kept');
  assert.equal(other.requests.length, 0);
  assert.equal(c.ws.readyState, WebSocket.OPEN, 'the session lived through all of it');
  assert.equal(c.frames.length, 4);

  child.proc.kill('SIGTERM');
  const code = await within(child.exited, HANG_MS, 'notify serve to exit after SIGTERM');
  assert.equal(code, 0, `exit code; logs: ${JSON.stringify(child.logs.slice(-5))}`);
  const [closeCode] = await within(c.closed, HANG_MS, 'the session to close');
  assert.equal(closeCode, 1001, 'the session was closed as going away at shutdown');
});

test('reload (child): log.level changed to debug on SIGHUP: debug lines appear from then on', { timeout: 60_000 }, async (t) => {
  // Every first attempt fails (503), every retry succeeds: each push logs a "provider retry" at debug.
  let answered = 0;
  const fake = await startFakeHttp(t, () => (answered++ % 2 === 0 ? { status: 503 } : undefined));
  const dir = tempDir(t, 'notify-sighup-');
  const file = join(dir, 'notify.yaml');
  const transports = { hook: { type: 'http', url: `${fake.url}/hook/{{uid}}`, retry: { limit: 3, baseDelayMs: 10, maxDelayMs: 100 } } };
  writeConfig(file, { transports }, 'info');
  const child = await startChild(t, file, HANG_MS);
  const http = `http://${child.http}`;

  const one = await send(http, { uid: 'u1', msg: 'one' });
  assert.equal(one.results[0]?.status, 'sent', JSON.stringify(one));
  assert.equal(fake.requests.length, 2, 'one retry');

  writeConfig(file, { transports }, 'debug');
  child.proc.kill('SIGHUP');
  const reloaded = await waitLog(child, RELOADED, 1, 'the reload');
  assert.deepEqual([reloaded.added, reloaded.changed, reloaded.removed], [[], [], []], 'only the log level changed');
  // stderr is in order: a debug line of the first push would have come before the reload line.
  assert.equal(child.logs.filter((l) => l.level === 'debug').length, 0, 'no debug lines at level info');

  const two = await send(http, { uid: 'u1', msg: 'two' });
  assert.equal(two.results[0]?.status, 'sent');
  assert.equal(fake.requests.length, 4);
  await until(() => child.logs.some((l) => l.level === 'debug' && l.msg === 'provider retry'), 'a debug "provider retry" line');
  const line = child.logs.find((l) => l.level === 'debug') as Record<string, unknown>;
  assert.equal(line.transport, 'hook');
  assert.ok(child.logs.indexOf(line) > child.logs.indexOf(reloaded), 'after the reload');

  child.proc.kill('SIGTERM');
  assert.equal(await within(child.exited, HANG_MS, 'notify serve to exit after SIGTERM'), 0);
});
