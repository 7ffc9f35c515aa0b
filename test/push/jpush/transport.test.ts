import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type { ProviderResponse } from '../../../src/push/provider-client.js';
import { JPUSH_ERRORS, judgeJPush, toJPushRequest } from '../../../src/push/jpush/transport.js';
import type { DeliveryReport, Message, ReportEntry } from '../../../src/types.js';
import { HANG_MS, textClient, until, within } from '../../helpers/clients.js';
import { type TestDaemon, startDaemon } from '../../helpers/daemon.js';
import { type FakeHttp, type FakeHttpAnswer, type FakeHttpRequest, startFakeHttp } from '../../helpers/fake-http.js';

// ---------------------------------------------------------------------------------------------
// Pure: the request body
// ---------------------------------------------------------------------------------------------

const DEV = { platform: 'all' as const, production: false };

test('jpush toJPushRequest: title + msg is a notification with android (alert, title, extras) and ios (alert dict, sound, badge, extras)', () => {
  const msg: Message = { id: 'm1', json: false, frame: 'f', title: 'Export', msg: 'done', badge: 2, sound: 'default', data: { file: 'a.csv', n: 1 } };
  assert.deepEqual(toJPushRequest(msg, { registration_id: ['r1', 'r2'] }, DEV), {
    platform: 'all',
    audience: { registration_id: ['r1', 'r2'] },
    notification: {
      android: { alert: 'done', title: 'Export', extras: { file: 'a.csv', n: 1 } },
      ios: { alert: { title: 'Export', body: 'done' }, sound: 'default', badge: 2, extras: { file: 'a.csv', n: 1 } },
    },
    options: { apns_production: false },
  });
});

test('jpush toJPushRequest: msg alone or title alone is the alert string; no sound or badge keys when absent; extras always an object', () => {
  assert.deepEqual(toJPushRequest({ json: false, frame: 'hi', msg: 'hi' }, { alias: ['uid1'] }, DEV), {
    platform: 'all',
    audience: { alias: ['uid1'] },
    notification: { android: { alert: 'hi', extras: {} }, ios: { alert: 'hi', extras: {} } },
    options: { apns_production: false },
  });
  const titleOnly = toJPushRequest({ json: false, frame: '{"title":"T"}', title: 'T', badge: 0 }, { alias: ['u'] }, DEV);
  assert.deepEqual(titleOnly.notification, { android: { alert: 'T', extras: {} }, ios: { alert: 'T', badge: 0, extras: {} } });
});

test('jpush toJPushRequest: options.apns_production is always present (true when production); time_to_live when set; platform list', () => {
  const msg: Message = { id: 'm1', json: false, frame: 'x', msg: 'x' };
  assert.deepEqual(toJPushRequest(msg, { alias: ['u'] }, { platform: 'all', production: false }).options, { apns_production: false });
  assert.deepEqual(toJPushRequest(msg, { alias: ['u'] }, { platform: 'all', production: true }).options, { apns_production: true });
  const ttl0 = toJPushRequest(msg, { alias: ['u'] }, { platform: ['android', 'ios'], production: true, timeToLiveS: 0 });
  assert.deepEqual(ttl0.options, { apns_production: true, time_to_live: 0 }, 'a TTL of 0 (online only) is sent, not dropped');
  assert.deepEqual(ttl0.platform, ['android', 'ios']);
  assert.deepEqual(toJPushRequest(msg, { alias: ['u'] }, { ...DEV, timeToLiveS: 600 }).options, { apns_production: false, time_to_live: 600 });
});

test('jpush toJPushRequest: data only is a custom message whose msg_content is the frame, with extras; no notification', () => {
  const frame = '{"uid":"uid1","percent":"88%"}';
  const body = toJPushRequest({ frame, json: true, data: { percent: '88%' } }, { registration_id: ['r1'] }, DEV);
  assert.deepEqual(body, {
    platform: 'all',
    audience: { registration_id: ['r1'] },
    message: { msg_content: frame, extras: { percent: '88%' } },
    options: { apns_production: false },
  });
  assert.equal('notification' in body, false);
});

// ---------------------------------------------------------------------------------------------
// Pure: judging the answer
// ---------------------------------------------------------------------------------------------

function res(status: number, body: unknown, headers: Record<string, string> = {}): ProviderResponse {
  return { status, headers: new Headers(headers), body: typeof body === 'string' ? body : JSON.stringify(body) };
}

test('jpush judgeJPush: 200 with msg_id is sent with that id, a string whether JPush sent a string or a number', () => {
  assert.deepEqual(judgeJPush(res(200, { sendno: '0', msg_id: '1828256757' })), { kind: 'sent', id: '1828256757' });
  assert.deepEqual(judgeJPush(res(200, '{"sendno":"0","msg_id":1828256757}')), { kind: 'sent', id: '1828256757' });
  assert.deepEqual(judgeJPush(res(200, '{}')), { kind: 'sent' });
});

test('jpush judgeJPush: a numeric msg_id beyond 2^53 keeps every digit', () => {
  // JPush msg_ids are 64-bit; many are above Number.MAX_SAFE_INTEGER (jpush-api-nodejs-client#72).
  assert.deepEqual(judgeJPush(res(200, '{"sendno":"0","msg_id":18100419029254441}')), { kind: 'sent', id: '18100419029254441' });
});

/** The documented error table (push-protocols.md D.3), with the status JPush answers each with. */
const DOCUMENTED: [code: number, status: number, retry: boolean][] = [
  [1000, 500, true],
  [1001, 405, false],
  [1002, 400, false],
  [1003, 400, false],
  [1004, 401, false],
  [1005, 400, false],
  [1008, 400, false],
  [1009, 400, false],
  [1011, 400, false],
  [1012, 400, true],
  [1020, 404, false],
  [1030, 503, true],
  [2002, 429, true],
  [2003, 403, false],
  [2004, 403, false],
  [2005, 403, false],
  [2006, 403, false],
  [2007, 403, false],
];

test('jpush judgeJPush: every documented error code is rejected or retried as documented, its meaning in the reason', () => {
  assert.deepEqual(Object.keys(JPUSH_ERRORS).map(Number).sort(), DOCUMENTED.map(([c]) => c).sort(), 'JPUSH_ERRORS covers the documented codes');
  for (const [code, status, retry] of DOCUMENTED) {
    const meaning = JPUSH_ERRORS[code]?.meaning ?? '';
    assert.ok(meaning.length > 5, `${code} has a meaning`);
    const v = judgeJPush(res(status, { error: { code, message: `server says ${code}` }, msg_id: '123' }));
    assert.equal(v.kind, retry ? 'retry' : 'rejected', `code ${code}`);
    assert.ok('reason' in v);
    assert.equal(v.reason, `JPush ${code} ${meaning} (server says ${code})`);
    // (2002 without X-Rate-Limit-Reset: see the 2002 test below.)
    if (code !== 2002) assert.equal('retryAfterMs' in v, false, `${code} without headers has no retryAfterMs`);
  }
  // A code given as a string, without a message.
  assert.deepEqual(judgeJPush(res(400, { error: { code: '1011' } })), { kind: 'rejected', reason: `JPush 1011 ${JPUSH_ERRORS[1011]?.meaning}` });
  assert.match(JPUSH_ERRORS[1011]?.meaning ?? '', /no target/);
  assert.match(JPUSH_ERRORS[1004]?.meaning ?? '', /authentication failed/);
});

test('jpush judgeJPush: 2002 with X-Rate-Limit-Reset is retried after that many seconds', () => {
  const body = { error: { code: 2002, message: 'Rate limit exceeded' } };
  assert.deepEqual(judgeJPush(res(429, body, { 'X-Rate-Limit-Reset': '3', 'X-Rate-Limit-Remaining': '0' })), {
    kind: 'retry',
    reason: `JPush 2002 ${JPUSH_ERRORS[2002]?.meaning} (Rate limit exceeded)`,
    retryAfterMs: 3000,
  });
  const zero = judgeJPush(res(429, body, { 'x-rate-limit-reset': '0' }));
  assert.ok(zero.kind === 'retry' && zero.retryAfterMs === 1000, `a reset of 0 still waits a second: ${JSON.stringify(zero)}`);
});

test('jpush judgeJPush: 2002 without X-Rate-Limit-Reset has no retryAfterMs (the retry policy\'s backoff applies)', () => {
  const body = { error: { code: 2002, message: 'Rate limit exceeded' } };
  // A missing header is no reset time, not a reset of 0 s.
  const none = judgeJPush(res(429, body));
  assert.ok(none.kind === 'retry' && none.retryAfterMs === undefined, `no X-Rate-Limit-Reset header, yet: ${JSON.stringify(none)}`);
});

test('jpush judgeJPush: a body that is not a JPush error falls back to the HTTP status', () => {
  assert.deepEqual(judgeJPush(res(502, '<html>Bad Gateway</html>')), { kind: 'retry', reason: 'HTTP 502: <html>Bad Gateway</html>' });
  assert.deepEqual(judgeJPush(res(503, 'busy', { 'retry-after': '2' })), { kind: 'retry', reason: 'HTTP 503: busy', retryAfterMs: 2000 });
  assert.deepEqual(judgeJPush(res(400, { error: { code: 9999, message: 'new' } })), { kind: 'rejected', reason: 'HTTP 400: {"error":{"code":9999,"message":"new"}}' });
  assert.deepEqual(judgeJPush(res(404, '')), { kind: 'rejected', reason: 'HTTP 404' });
  // A 200 carrying an error object is not a success.
  assert.equal(judgeJPush(res(200, { error: { code: 1011, message: 'x' } })).kind, 'rejected');
});

// ---------------------------------------------------------------------------------------------
// Through a daemon, against a fake that checks what JPush checks
// ---------------------------------------------------------------------------------------------

const APP_KEY = 'a'.repeat(24);
const MASTER_SECRET = 's'.repeat(24);
const OK_BODY = '{"sendno":"0","msg_id":"1828256757"}';

function jpushError(status: number, code: number, message: string, headers: Record<string, string> = {}): FakeHttpAnswer {
  return { status, headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify({ error: { code, message } }) };
}

/** JPush's own checks of a push request (push-protocols.md D.1-D.3): an error answer, or undefined when it passes. */
function jpushChecks(req: FakeHttpRequest, auth: string): FakeHttpAnswer {
  if (req.method !== 'POST') return jpushError(405, 1001, 'only POST');
  if (req.path !== '/v3/push') return { status: 404, body: 'not found' };
  if (req.headers.authorization !== auth) return jpushError(401, 1004, 'Authen failed');
  if (!/^application\/json\b/.test(String(req.headers['content-type']))) return jpushError(400, 1002, 'content-type must be application/json');
  const b = req.json as Record<string, unknown> | undefined;
  if (b === undefined || typeof b !== 'object' || Array.isArray(b)) return jpushError(400, 1002, 'body is not a JSON object');
  const allowed = new Set(['platform', 'audience', 'notification', 'message', 'options', 'cid', 'sms_message', 'notification_3rd']);
  const unknown = Object.keys(b).filter((k) => !allowed.has(k));
  if (unknown.length > 0) return jpushError(400, 1009, `unsupported key ${unknown.join(',')}`);
  const platforms = ['android', 'ios', 'hmos', 'quickapp'];
  if (b.platform !== 'all' && !(Array.isArray(b.platform) && b.platform.length > 0 && b.platform.every((p) => platforms.includes(p as string)))) {
    return jpushError(400, 1003, 'platform invalid');
  }
  const a = b.audience as Record<string, unknown> | string | undefined;
  if (a !== 'all') {
    if (a === undefined || typeof a !== 'object') return jpushError(400, 1002, 'audience missing');
    const keys = Object.keys(a);
    if (keys.length === 0 || !keys.every((k) => ['tag', 'tag_and', 'tag_not', 'alias', 'registration_id', 'segment', 'abtest'].includes(k))) {
      return jpushError(400, 1003, 'audience invalid');
    }
    for (const k of keys) {
      const list = a[k];
      if (!Array.isArray(list) || list.length === 0 || list.length > 1000) return jpushError(400, 1003, `audience.${k} must hold 1..1000 values`);
      if (!list.every((v) => typeof v === 'string' && v !== '')) return jpushError(400, 1003, `audience.${k} has an empty value`);
      if ((k === 'alias' || k.startsWith('tag')) && list.some((v) => Buffer.byteLength(v as string) > 40)) return jpushError(400, 1003, `${k} over 40 bytes`);
    }
  }
  if (b.notification === undefined && b.message === undefined) return jpushError(400, 1002, 'notification or message required');
  const n = b.notification as Record<string, Record<string, unknown>> | undefined;
  if (n !== undefined) {
    if (n.android !== undefined && typeof n.android.alert !== 'string') return jpushError(400, 1003, 'android.alert required');
    if (n.ios !== undefined && n.ios.alert === undefined) return jpushError(400, 1003, 'ios.alert required');
    for (const part of [n.android, n.ios]) {
      if (part?.extras !== undefined && (typeof part.extras !== 'object' || part.extras === null || Array.isArray(part.extras))) return jpushError(400, 1003, 'extras must be an object');
    }
    if (Buffer.byteLength(JSON.stringify(n.ios ?? {})) > 2000) return jpushError(400, 1005, 'ios notification too large');
  }
  const m = b.message as Record<string, unknown> | undefined;
  if (m !== undefined && typeof m.msg_content !== 'string') return jpushError(400, 1002, 'message.msg_content required');
  const o = b.options as Record<string, unknown> | undefined;
  if (o !== undefined && o.apns_production !== undefined && typeof o.apns_production !== 'boolean') return jpushError(400, 1003, 'apns_production');
  return undefined;
}

interface JPushWorld {
  fake: FakeHttp;
  d: TestDaemon;
  /** Requests that passed JPush's checks. */
  accepted: FakeHttpRequest[];
}

async function jpushWorld(
  t: TestContext,
  opts: {
    respond?: (req: FakeHttpRequest, n: number) => FakeHttpAnswer | Promise<FakeHttpAnswer>;
    devices?: Record<string, string[]>;
    jpush?: Record<string, unknown>;
    dispatch?: Record<string, unknown>;
    masterSecret?: string;
  } = {},
): Promise<JPushWorld> {
  const secret = opts.masterSecret ?? MASTER_SECRET;
  const auth = `Basic ${Buffer.from(`${APP_KEY}:${secret}`).toString('base64')}`;
  const accepted: FakeHttpRequest[] = [];
  const fake = await startFakeHttp(t, async (req) => {
    const problem = jpushChecks(req, auth);
    if (problem !== undefined) return problem;
    accepted.push(req);
    return (await opts.respond?.(req, accepted.length)) ?? { status: 200, headers: { 'content-type': 'application/json' }, body: OK_BODY };
  });
  const devices = opts.devices ? Object.fromEntries(Object.entries(opts.devices).map(([uid, rids]) => [uid, { jpush: rids }])) : undefined;
  const d = await startDaemon(t, {
    transports: {
      jpush: { type: 'jpush', appKey: APP_KEY, masterSecret: secret, url: `${fake.url}/v3/push`, retry: { limit: 3, baseDelayMs: 10, maxDelayMs: 5000 }, ...opts.jpush },
    },
    ...(devices ? { devices } : {}),
    ...(opts.dispatch ? { dispatch: opts.dispatch } : {}),
  });
  return { fake, d, accepted };
}

async function send(d: TestDaemon, body: Record<string, unknown>): Promise<DeliveryReport> {
  const r = await fetch(`${d.httpUrl}/v1/send`, { method: 'POST', body: JSON.stringify(body) });
  const text = await r.text();
  assert.equal(r.status, 200, text);
  return JSON.parse(text) as DeliveryReport;
}

const jpushEntries = (r: DeliveryReport): ReportEntry[] => r.results.filter((e) => e.transport === 'jpush');

function only<T>(list: readonly T[], what = 'entry'): T {
  assert.equal(list.length, 1, `expected exactly one ${what}, got ${JSON.stringify(list).slice(0, 500)}`);
  return list[0] as T;
}

/** Registration ids in JPush's style (hex-ish, 19 characters). */
const rid = (i: number) => `1a0018970a${i.toString(16).padStart(9, '0')}`;

test('jpush: a uid without registration ids is pushed to its alias; POST /v3/push with Basic auth and the JSON body; the report carries msg_id', async (t) => {
  const w = await jpushWorld(t);
  const report = await send(w.d, { uid: 'uid1', title: 'Export', msg: 'done', badge: 2, sound: 'default', data: { file: 'a.csv' } });
  assert.deepEqual(jpushEntries(report), [{ uid: 'uid1', transport: 'jpush', target: 'alias:uid1', status: 'sent', id: '1828256757' }]);
  assert.equal(report.delivered, true);
  const r = only(w.fake.requests, 'request');
  assert.equal(w.accepted.length, 1, 'it passed JPush checks');
  assert.equal(r.method, 'POST');
  assert.equal(r.path, '/v3/push');
  assert.equal(r.headers.authorization, `Basic ${Buffer.from(`${APP_KEY}:${MASTER_SECRET}`).toString('base64')}`);
  assert.equal(r.headers['content-type'], 'application/json');
  assert.deepEqual(r.json, {
    platform: 'all',
    audience: { alias: ['uid1'] },
    notification: {
      android: { alert: 'done', title: 'Export', extras: { file: 'a.csv' } },
      ios: { alert: { title: 'Export', body: 'done' }, sound: 'default', badge: 2, extras: { file: 'a.csv' } },
    },
    options: { apns_production: false },
  });
});

test('jpush: a data-only Text line is a custom message whose msg_content is the line', async (t) => {
  const w = await jpushWorld(t, { devices: { uid1: [rid(1)] } });
  const backend = await textClient(t, w.d.textPort);
  const line = '{"uid":"uid1","percent":"88%"}';
  backend.write(`${line}\n`);
  assert.deepEqual(await backend.replies(1), ['ok']);
  const r = only(w.accepted, 'request');
  assert.deepEqual(r.json, {
    platform: 'all',
    audience: { registration_id: [rid(1)] },
    message: { msg_content: line, extras: { percent: '88%' } },
    options: { apns_production: false },
  });
});

test('jpush: 3 registration ids are one request with all 3; one report entry each; production, TTL and platform settings are sent', async (t) => {
  const rids = [rid(1), rid(2), rid(3)];
  const w = await jpushWorld(t, { devices: { uid1: rids }, jpush: { production: true, timeToLiveS: 600, platform: ['android', 'ios'] } });
  const report = await send(w.d, { uid: 'uid1', msg: 'hi' });
  const r = only(w.accepted, 'request');
  const body = r.json as { audience: { registration_id: string[] }; options: unknown; platform: unknown };
  assert.deepEqual([...body.audience.registration_id].sort(), [...rids].sort());
  assert.deepEqual(body.options, { apns_production: true, time_to_live: 600 });
  assert.deepEqual(body.platform, ['android', 'ios']);
  const entries = jpushEntries(report);
  assert.deepEqual(entries.map((e) => e.target).sort(), [...rids].sort());
  for (const e of entries) {
    assert.equal(e.status, 'sent');
    assert.equal(e.id, '1828256757');
  }
  assert.equal(report.sent, 3);
});

test('jpush: 2,500 registration ids are split into requests of at most 1000, each id once; each entry has its request msg_id', async (t) => {
  const rids = Array.from({ length: 2500 }, (_, i) => rid(i));
  const w = await jpushWorld(t, {
    devices: { uid1: rids },
    respond: (_req, n) => ({ status: 200, headers: { 'content-type': 'application/json' }, body: JSON.stringify({ sendno: '0', msg_id: String(9000 + n) }) }),
  });
  const report = await send(w.d, { uid: 'uid1', msg: 'hi' });
  assert.equal(w.fake.requests.length, 3);
  assert.equal(w.accepted.length, 3);
  const batches = w.accepted.map((r) => (r.json as { audience: { registration_id: string[] } }).audience.registration_id);
  assert.deepEqual(batches.map((b) => b.length).sort((a, b) => a - b), [500, 1000, 1000]);
  const all = batches.flat();
  assert.equal(new Set(all).size, 2500);
  assert.deepEqual([...all].sort(), [...rids].sort());
  assert.equal(report.sent, 2500);
  const idOf = new Map<string, string>();
  batches.forEach((b, i) => b.forEach((id) => idOf.set(id, String(9000 + i + 1))));
  for (const e of jpushEntries(report)) assert.equal(e.id, idOf.get(e.target), `${e.target} carries the msg_id of its batch`);
});

test('jpush: a uid over 40 bytes with no registration ids is rejected without a request; exactly 40 bytes is sent', async (t) => {
  const w = await jpushWorld(t);
  const long = '进'.repeat(14); // 14 characters, 42 bytes
  const e = only(jpushEntries(await send(w.d, { uid: long, msg: 'hi' })));
  assert.equal(e.status, 'rejected');
  assert.equal(e.target, `alias:${long}`);
  assert.match(e.reason ?? '', /40-byte/);
  assert.equal(w.fake.requests.length, 0);

  const forty = 'u'.repeat(40);
  const ok = only(jpushEntries(await send(w.d, { uid: forty, msg: 'hi' })));
  assert.equal(ok.status, 'sent');
  assert.deepEqual((only(w.accepted, 'request').json as { audience: unknown }).audience, { alias: [forty] });
});

test('jpush: 400 code 1011 (no target) is rejected at once with the code and its meaning', async (t) => {
  const w = await jpushWorld(t, { respond: () => jpushError(400, 1011, 'cannot find user by this audience') });
  const report = await send(w.d, { uid: 'uid1', msg: 'hi' });
  const e = only(jpushEntries(report));
  assert.equal(e.status, 'rejected');
  assert.match(e.reason ?? '', /1011/);
  assert.match(e.reason ?? '', /no target/);
  assert.match(e.reason ?? '', /cannot find user by this audience/);
  assert.equal(w.fake.requests.length, 1, 'not retried');
  assert.equal(report.delivered, false);
});

test('jpush: 401 code 1004 is rejected as an authentication failure (the fake really checks the credentials)', async (t) => {
  // The daemon is configured with another secret than the one the fake expects.
  const fake = await startFakeHttp(t, (req) => jpushChecks(req, `Basic ${Buffer.from(`${APP_KEY}:${MASTER_SECRET}`).toString('base64')}`));
  const d = await startDaemon(t, {
    transports: { jpush: { type: 'jpush', appKey: APP_KEY, masterSecret: 'w'.repeat(24), url: `${fake.url}/v3/push`, retry: { limit: 3, baseDelayMs: 10, maxDelayMs: 100 } } },
  });
  const e = only(jpushEntries(await send(d, { uid: 'uid1', msg: 'hi' })));
  assert.equal(e.status, 'rejected');
  assert.match(e.reason ?? '', /^JPush 1004 authentication failed/);
  assert.equal(fake.requests.length, 1, 'not retried');
});

test('jpush: 500 code 1000 is retried, then sent', async (t) => {
  const w = await jpushWorld(t, { respond: (_req, n) => (n === 1 ? jpushError(500, 1000, 'Server Internal Error') : undefined) });
  const e = only(jpushEntries(await send(w.d, { uid: 'uid1', msg: 'hi' })));
  assert.equal(e.status, 'sent');
  assert.equal(e.id, '1828256757');
  assert.equal(w.accepted.length, 2);
  assert.equal(w.accepted[1]?.body, w.accepted[0]?.body, 'the same push again');
});

test('jpush: 429 code 2002 with X-Rate-Limit-Reset: 1 is retried no sooner than a second later', async (t) => {
  const w = await jpushWorld(t, {
    respond: (_req, n) => (n === 1 ? jpushError(429, 2002, 'Rate limit exceeded', { 'X-Rate-Limit-Quota': '600', 'X-Rate-Limit-Remaining': '0', 'X-Rate-Limit-Reset': '1' }) : undefined),
  });
  const e = only(jpushEntries(await send(w.d, { uid: 'uid1', msg: 'hi' })));
  assert.equal(e.status, 'sent');
  assert.equal(w.accepted.length, 2);
  const gap = (w.accepted[1]?.receivedAt ?? 0) - (w.accepted[0]?.receivedAt ?? 0);
  assert.ok(gap >= 900, `retried after ${gap} ms; X-Rate-Limit-Reset asked for 1 s`);
});

test('jpush: a 200 with X-Rate-Limit-Remaining: 0 pauses the transport: the next message waits for X-Rate-Limit-Reset', async (t) => {
  const w = await jpushWorld(t, {
    respond: (_req, n) =>
      n === 1
        ? { status: 200, headers: { 'content-type': 'application/json', 'X-Rate-Limit-Quota': '600', 'X-Rate-Limit-Remaining': '0', 'X-Rate-Limit-Reset': '1' }, body: OK_BODY }
        : undefined,
  });
  const first = only(jpushEntries(await send(w.d, { uid: 'uid1', msg: 'one' })));
  assert.equal(first.status, 'sent');
  const hz = (await (await fetch(`${w.d.httpUrl}/healthz`)).json()) as { transports: { jpush: { pausedForMs: number } } };
  assert.ok(hz.transports.jpush.pausedForMs > 0, `healthz shows the pause: ${JSON.stringify(hz.transports.jpush)}`);

  const second = only(jpushEntries(await send(w.d, { uid: 'uid2', msg: 'two' })));
  assert.equal(second.status, 'sent');
  assert.equal(w.accepted.length, 2);
  const gap = (w.accepted[1]?.receivedAt ?? 0) - (w.accepted[0]?.receivedAt ?? 0);
  assert.ok(gap >= 900, `the next request came ${gap} ms after the one that used up the quota; the reset was 1 s`);
  assert.deepEqual((w.accepted[1]?.json as { audience: unknown }).audience, { alias: ['uid2'] });
});

test('jpush: without X-Rate-Limit-Remaining: 0 there is no pause', async (t) => {
  const w = await jpushWorld(t, {
    // A reset far away: a message held for it would miss the delivery deadline.
    respond: () => ({ status: 200, headers: { 'content-type': 'application/json', 'X-Rate-Limit-Remaining': '599', 'X-Rate-Limit-Reset': '3600' }, body: OK_BODY }),
  });
  await send(w.d, { uid: 'uid1', msg: 'one' });
  const second = await within(send(w.d, { uid: 'uid1', msg: 'two' }), HANG_MS, 'the second report');
  assert.equal(only(jpushEntries(second)).status, 'sent', 'the second message was not held');
  assert.equal(w.accepted.length, 2);
});

// ---------------------------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------------------------

const SECRET = 'S3cr3tMasterKeyAbCd12345'; // 24 alphanumerics
const BASIC = Buffer.from(`${APP_KEY}:${SECRET}`).toString('base64');

function echoAuth(req: FakeHttpRequest): string {
  const auth = String(req.headers.authorization ?? '');
  return `you sent ${auth} = ${Buffer.from(auth.replace(/^Basic /, ''), 'base64').toString('utf8')}`;
}

test('jpush: the masterSecret and the Basic credentials never appear in reports or logs, even when JPush echoes them', async (t) => {
  const w = await jpushWorld(t, {
    masterSecret: SECRET,
    jpush: { retry: { limit: 1, baseDelayMs: 10, maxDelayMs: 100 } },
    // uid1: 500/1000 (retried, logged) then 401/1004, both echoing; uid2: a non-JSON 403 echoing.
    respond: (req, n) => {
      const audience = (req.json as { audience: { alias: string[] } }).audience.alias[0];
      if (audience === 'uid2') return { status: 403, headers: { 'content-type': 'text/plain' }, body: echoAuth(req) };
      return n === 1 ? jpushError(500, 1000, echoAuth(req)) : jpushError(401, 1004, echoAuth(req));
    },
  });
  const first = await send(w.d, { uid: 'uid1', msg: 'hi' });
  const second = await send(w.d, { uid: 'uid2', msg: 'hi' });
  assert.equal(w.accepted.length, 3);
  assert.ok(w.accepted.every((r) => r.headers.authorization === `Basic ${BASIC}`));

  const e1 = only(jpushEntries(first));
  assert.equal(e1.status, 'rejected');
  assert.match(e1.reason ?? '', /^JPush 1004 /);
  const e2 = only(jpushEntries(second));
  assert.equal(e2.status, 'rejected');
  assert.match(e2.reason ?? '', /^HTTP 403: /);
  for (const e of [e1, e2]) {
    assert.match(e.reason ?? '', /\[redacted\]/);
    assert.ok(!(e.reason ?? '').includes(SECRET), `reason leaks the master secret: ${e.reason}`);
    assert.ok(!(e.reason ?? '').includes(BASIC), `reason leaks the Basic credentials: ${e.reason}`);
  }
  assert.equal(w.d.logs.filter((l) => l.msg === 'provider retry').length, 1, 'the retry was logged');
  for (const l of w.d.logs) {
    const text = JSON.stringify(l);
    assert.ok(!text.includes(SECRET) && !text.includes(BASIC), `log line leaks a credential: ${text}`);
  }
});

test('jpush: a master secret cut by the 200-character excerpt of JPush\'s message does not leak its first part', async (t) => {
  const w = await jpushWorld(t, {
    masterSecret: SECRET,
    respond: () => jpushError(401, 1004, `${'x'.repeat(185)} ${SECRET} was wrong`),
  });
  const e = only(jpushEntries(await send(w.d, { uid: 'uid1', msg: 'hi' })));
  assert.equal(e.status, 'rejected');
  const head = SECRET.slice(0, 12);
  assert.ok(!(e.reason ?? '').includes(head), `the reason leaks the first ${head.length}+ characters of the master secret: ${e.reason}`);
});

test('jpush config: url must be http(s); platform must be all or known platforms', async () => {
  const { parseConfig } = await import('../../../src/config/load.js');
  const yaml = (extra: string) => `transports:\n  jpush:\n    type: jpush\n    appKey: ${APP_KEY}\n    masterSecret: \${JPUSH_SECRET}\n${extra}`;
  const c = parseConfig(yaml(''), 'cfg.yaml', '/tmp', { JPUSH_SECRET: MASTER_SECRET });
  const s = c.transports.jpush as Record<string, unknown>;
  assert.equal(s.masterSecret, MASTER_SECRET, 'the secret from the environment');
  assert.equal(s.url, 'https://api.jpush.cn/v3/push');
  assert.equal(s.production, false);
  assert.equal(s.platform, 'all');
  assert.throws(() => parseConfig(yaml('    url: ftp://x/v3/push\n'), 'cfg.yaml', '/tmp', { JPUSH_SECRET: 'x' }), /transports\.jpush\.url must be an http\(s\) URL/);
  assert.throws(() => parseConfig(yaml('    platform: [android, windows]\n'), 'cfg.yaml', '/tmp', { JPUSH_SECRET: 'x' }), /transports\.jpush\.platform must be "all" or a list of android, ios, hmos, quickapp/);
  assert.throws(() => parseConfig(yaml(''), 'cfg.yaml', '/tmp', {}), /cfg\.yaml:5:\d+: transports\.jpush\.masterSecret: \$\{JPUSH_SECRET\} is not set in the environment/);
  // Registration ids are checked at load time.
  assert.throws(
    () => parseConfig(`${yaml('')}devices:\n  uid1:\n    jpush: ["bad id!"]\n`, 'cfg.yaml', '/tmp', { JPUSH_SECRET: 'x' }),
    /a JPush registration id is letters and digits/,
  );
});

test('jpush: the fake refuses what JPush refuses (sanity check of the test fake itself)', async (t) => {
  const w = await jpushWorld(t);
  const auth = `Basic ${Buffer.from(`${APP_KEY}:${MASTER_SECRET}`).toString('base64')}`;
  const post = (body: unknown, headers: Record<string, string> = { 'content-type': 'application/json', authorization: auth }) =>
    fetch(`${w.fake.url}/v3/push`, { method: 'POST', headers, body: JSON.stringify(body) }).then(async (r) => [r.status, await r.text()] as const);
  const good = { platform: 'all', audience: { alias: ['u'] }, notification: { android: { alert: 'x' } }, options: { apns_production: false } };
  assert.deepEqual(await post(good), [200, OK_BODY]);
  assert.equal((await post(good, { 'content-type': 'application/json', authorization: 'Basic eDp5' }))[0], 401);
  assert.match((await post({ ...good, audience: { alias: ['x'.repeat(41)] } }))[1], /1003/);
  assert.match((await post({ ...good, audience: { registration_id: Array.from({ length: 1001 }, (_, i) => rid(i)) } }))[1], /1003/);
  assert.match((await post({ platform: 'all', audience: 'all' }))[1], /1002/);
  assert.match((await post({ ...good, extra: 1 }))[1], /1009/);
  await until(() => w.accepted.length === 1, 'one accepted');
});

test('maxQueued config: an integer from 1, default 10000, validated for every provider transport type (apns, http, jpush)', async () => {
  const { parseConfig } = await import('../../../src/config/load.js');
  const env = { JPUSH_SECRET: 'x' };
  const jpush = (extra: string) => `transports:\n  jpush:\n    type: jpush\n    appKey: ${APP_KEY}\n    masterSecret: \${JPUSH_SECRET}\n${extra}`;
  const hook = (extra: string) => `transports:\n  hook:\n    type: http\n    url: https://h.example/{{uid}}\n${extra}`;
  for (const [yaml, name] of [[jpush, 'jpush'], [hook, 'hook']] as const) {
    assert.equal((parseConfig(yaml(''), 'cfg.yaml', '/tmp', env).transports[name] as Record<string, unknown>).maxQueued, 10_000);
    assert.equal((parseConfig(yaml('    maxQueued: 5\n'), 'cfg.yaml', '/tmp', env).transports[name] as Record<string, unknown>).maxQueued, 5);
    assert.throws(() => parseConfig(yaml('    maxQueued: 0\n'), 'cfg.yaml', '/tmp', env), new RegExp(`transports\\.${name}\\.maxQueued must be between 1 and 1000000`));
    assert.throws(() => parseConfig(yaml('    maxQueued: 1.5\n'), 'cfg.yaml', '/tmp', env), new RegExp(`transports\\.${name}\\.maxQueued`));
  }
});
