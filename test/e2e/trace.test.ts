import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WebSocket } from 'ws';
import type { UidFacts } from '../../src/node/lookup.js';
import type { MessageTrace } from '../../src/store/trace.js';
import type { PublishReport } from '../../src/types.js';
import { api, send } from '../helpers/api.js';
import { cli, lines } from '../helpers/cli.js';
import { HANG_MS, session, textClient, until, wsClient } from '../helpers/clients.js';
import { runDaemon, startDaemon, testConfig } from '../helpers/daemon.js';
import { startFakeHttp } from '../helpers/fake-http.js';

const trace = async (base: string, id: string) => {
  const a = await api(base, 'GET', `/v1/messages/${encodeURIComponent(id)}`);
  assert.equal(a.status, 200, JSON.stringify(a.body));
  return a.body as MessageTrace;
};
const who = async (base: string, uid: string) => {
  const a = await api(base, 'GET', `/v1/uids/${encodeURIComponent(uid)}`);
  assert.equal(a.status, 200, JSON.stringify(a.body));
  return a.body as UidFacts;
};
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/** A page bound with the resume protocol; acks every message it gets. */
async function resumingPage(url: string, uid: string, since?: string): Promise<{ ws: WebSocket; got: string[] }> {
  const ws = new WebSocket(url);
  const got: string[] = [];
  ws.on('message', (data) => {
    const f = JSON.parse(data.toString()) as { id?: string };
    if (typeof f.id === 'string') {
      got.push(f.id);
      ws.send(JSON.stringify({ type: 'ack', id: f.id }));
    }
  });
  ws.on('error', () => {});
  await new Promise((resolve) => ws.once('open', resolve));
  ws.send(JSON.stringify({ type: 'bind', uid, ...(since ? { since } : {}) }));
  return { ws, got };
}

test('trace: GET /v1/messages/{id} tells a message story: ingress, audience, stored, the websocket target, an ack, a webhook delivery retried after the report was returned, and one that gave up (logged at info with id, reason and attempts)', async (t) => {
  // t1: 503 once, then 200: the first answer is in the report; the retry (600 ms later) after it.
  // t2: always 503, one retry: gives up after 2 attempts.
  let t1 = 0;
  const fake = await startFakeHttp(t, (req) => {
    if (req.path === '/h/t1') return t1++ === 0 ? { status: 503, body: 'busy' } : undefined;
    return { status: 503, body: 'down' };
  });
  const d = await startDaemon(t, {
    transports: { hook: { type: 'http', url: `${fake.url}/h/{{token}}`, body: '{{msg}}', perDevice: true, retry: { limit: 1, baseDelayMs: 1200, maxDelayMs: 1200 } } },
    devices: { alice: { hook: ['t1', 't2'] } },
    dispatch: { deliverTimeoutMs: 400 },
  });
  const plain = await session(t, d, 'alice');
  const resuming = await resumingPage(d.wsUrl, 'alice');
  t.after(() => resuming.ws.terminate());
  await until(() => d.registry.index('websocket').targets('alice').length === 2, 'two sessions of alice');

  const report = await send(d.httpUrl, { uid: 'alice', msg: 'hello' });
  assert.equal(await plain.frame(1), 'hello');
  await until(() => resuming.got.includes(report.id), 'the resuming page to get it');

  const early = await trace(d.httpUrl, report.id);
  assert.equal(early.id, report.id);
  assert.match(early.publishedAt, ISO);
  assert.equal(early.ingress, 'http');
  assert.deepEqual(early.audience, { uids: ['alice'] });
  assert.equal(early.audienceSize, 1);
  assert.equal(early.route, 'all');
  assert.equal(early.stored, true);
  const ws = early.targets.filter((x) => x.transport === 'websocket');
  assert.equal(ws.length, 2);
  for (const x of ws) {
    assert.equal(x.status, 'sent');
    assert.equal(x.attempts, 1);
    assert.match(x.at, ISO);
  }
  const hook1 = early.targets.find((x) => x.target === 't1');
  assert.equal(hook1?.status, 'retrying', JSON.stringify(early.targets));
  assert.equal(hook1?.attempts, 1);
  assert.match(hook1?.reason ?? '', /^HTTP 503/);
  assert.match(hook1?.nextAttemptAt ?? '', ISO);

  // After the report: t1 is sent on its second attempt, t2 gives up; the resuming page acked.
  let late = early;
  const deadline = Date.now() + HANG_MS;
  for (;;) {
    late = await trace(d.httpUrl, report.id);
    const s1 = late.targets.find((x) => x.target === 't1')?.status;
    const s2 = late.targets.find((x) => x.target === 't2')?.status;
    if (s1 === 'sent' && s2 === 'gave-up' && late.acks.length > 0) break;
    if (Date.now() > deadline) assert.fail(`the trace did not settle: ${JSON.stringify(late)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.deepEqual(late.targets.find((x) => x.target === 't1'), { ...late.targets.find((x) => x.target === 't1'), uid: 'alice', transport: 'hook', status: 'sent', attempts: 2 });
  const gave = late.targets.find((x) => x.target === 't2');
  assert.equal(gave?.attempts, 2);
  assert.match(gave?.reason ?? '', /^HTTP 503: down \(gave up after 2 attempts\)$/);
  assert.equal(late.acks.length, 1);
  const ack = late.acks[0];
  assert.equal(ack?.uid, 'alice');
  assert.match(ack?.session ?? '', /^r/);
  assert.match(ack?.at ?? '', ISO);

  // Item 2: the give-up is one info-visible line with the message id, transport, target, reason and attempts.
  const gaveUp = d.logs.filter((l) => l.msg === 'delivery failed for good');
  assert.equal(gaveUp.length, 1, JSON.stringify(gaveUp));
  assert.equal(gaveUp[0]?.id, report.id);
  assert.equal(gaveUp[0]?.transport, 'hook');
  assert.equal(gaveUp[0]?.target, 't2');
  assert.equal(gaveUp[0]?.attempts, 2);
  assert.match(String(gaveUp[0]?.reason), /gave up after 2 attempts/);
  assert.ok(['warn', 'info', 'error'].includes(String(gaveUp[0]?.level)), 'visible at info');
  // At debug: one line per publish with its id, audience size and outcome.
  const published = d.logs.filter((l) => l.msg === 'published' && l.id === report.id);
  assert.equal(published.length, 1);
  assert.equal(published[0]?.level, 'debug');
  assert.equal(published[0]?.audienceSize, 1);
  assert.equal(published[0]?.sent, report.sent);
  assert.equal(published[0]?.failed, report.failed);
  assert.equal(published[0]?.rejected, report.rejected);
  assert.ok(fake.requests.length >= 4);
});

test('trace: GET /v1/uids/{uid} lists live sessions (address, since, protocol, resuming), devices with their last outcome and recent message ids; an unknown uid is 200 and empty', async (t) => {
  const fake = await startFakeHttp(t, (req) => (req.path === '/h/bad' ? { status: 400, body: 'no such device' } : undefined));
  const d = await startDaemon(t, {
    transports: { hook: { type: 'http', url: `${fake.url}/h/{{token}}`, body: '{{msg}}', perDevice: true } },
    devices: { bob: { hook: ['good', 'bad'] } },
  });
  await session(t, d, 'bob');
  const first = await send(d.httpUrl, { uid: 'bob', msg: 'one' });
  const second = await send(d.httpUrl, { uid: 'bob', msg: 'two' });
  const page = await resumingPage(d.wsUrl, 'bob', first.id);
  t.after(() => page.ws.terminate());
  await until(() => d.registry.index('websocket').targets('bob').length === 2, 'the resuming session');

  const facts = await who(d.httpUrl, 'bob');
  assert.equal(facts.uid, 'bob');
  assert.equal(facts.online, true);
  assert.equal(facts.sessions.length, 2);
  const original = facts.sessions.find((s) => s.protocol === 'original');
  const resumed = facts.sessions.find((s) => s.protocol === 'resume');
  assert.equal(original?.address, '127.0.0.1');
  assert.equal(original?.resuming, false);
  assert.match(original?.connectedAt ?? '', ISO);
  assert.equal(resumed?.resuming, true, 'it named the last id it had');
  assert.equal(resumed?.node, d.node.name);
  const good = facts.devices.find((x) => x.token === 'good');
  const bad = facts.devices.find((x) => x.token === 'bad');
  assert.deepEqual({ ...good?.lastOutcome, at: undefined }, { status: 'sent', at: undefined, messageId: second.id });
  assert.equal(bad?.lastOutcome?.status, 'rejected');
  assert.match(bad?.lastOutcome?.reason ?? '', /^HTTP 400/);
  assert.equal(bad?.transport, 'hook');
  assert.deepEqual(facts.retired, []);
  assert.deepEqual(facts.recentMessages.map((m) => m.id), [second.id, first.id], 'newest first');
  for (const m of facts.recentMessages) assert.match(m.at ?? '', ISO);

  // A rejection that is not a dead token is logged (rate-limited per reason) with the message id.
  const rejected = d.logs.filter((l) => l.msg === 'delivery rejected');
  assert.ok(rejected.length >= 1);
  assert.equal(rejected[0]?.id, first.id);
  assert.match(String(rejected[0]?.reason), /^HTTP 400/);

  assert.deepEqual(await who(d.httpUrl, 'nobody'), { uid: 'nobody', online: false, sessions: [], devices: [], retired: [], recentMessages: [] });
});

test('trace: an unknown id is 404 NOTIFY_ERR_NOT_FOUND; an empty or over-long uid or id is 400; percent-encoded uids work; the daemon keeps serving', async (t) => {
  const d = await startDaemon(t);
  const missing = await api(d.httpUrl, 'GET', '/v1/messages/01NOPE');
  assert.equal(missing.status, 404);
  assert.deepEqual(missing.body, { code: 'NOTIFY_ERR_NOT_FOUND', error: 'no message 01NOPE in history (never published, or older than history.ttl)' });
  for (const path of ['/v1/uids/', '/v1/messages/', `/v1/uids/${'x'.repeat(300)}`, `/v1/messages/${'y'.repeat(200)}`, '/v1/uids/%E0%A4%A']) {
    const a = await api(d.httpUrl, 'GET', path);
    assert.equal(a.status, 400, path);
    assert.equal((a.body as { code: string }).code, 'NOTIFY_ERR_BAD_REQUEST');
    assert.match((a.body as { error: string }).error, /uid|message id/);
  }
  const post = await api(d.httpUrl, 'POST', '/v1/uids/x', {});
  assert.equal(post.status, 405);
  await session(t, d, 'a b/c');
  const facts = await who(d.httpUrl, 'a b/c');
  assert.equal(facts.uid, 'a b/c');
  assert.equal(facts.online, true);
  const r = await send(d.httpUrl, { uid: 'a b/c', msg: 'still serving' });
  assert.equal(r.sent, 1);
});

test('trace: both lookups need http.token when one is set; a 401 is logged (rate-limited, with the reason) and no token appears in the log', async (t) => {
  const secret = 'trace-api-secret-1234';
  const d = await startDaemon(t, { http: { token: secret } });
  const report = (await api(d.httpUrl, 'POST', '/v1/send', { uid: 'u', msg: 'x' }, { authorization: `Bearer ${secret}` })).body as PublishReport;
  for (const path of [`/v1/messages/${report.id}`, '/v1/uids/u']) {
    const none = await api(d.httpUrl, 'GET', path);
    assert.equal(none.status, 401, path);
    const wrong = await api(d.httpUrl, 'GET', path, undefined, { authorization: 'Bearer wrong-token-value' });
    assert.equal(wrong.status, 401);
    const ok = await api(d.httpUrl, 'GET', path, undefined, { authorization: `Bearer ${secret}` });
    assert.equal(ok.status, 200, path);
  }
  const refused = d.logs.filter((l) => l.msg === 'http request refused');
  assert.ok(refused.length >= 1 && refused.length < 4, `rate-limited: ${refused.length} lines for 4 refusals within a second`);
  assert.equal(refused[0]?.reason, 'this endpoint needs "Authorization: Bearer <http.token>"');
  assert.equal(refused[0]?.level, 'info');
  assert.match(String(refused[0]?.path), /^\/v1\//);
  const all = d.logText.join('');
  assert.ok(!all.includes(secret) && !all.includes('wrong-token-value'), 'no token in the log');
});

test('trace: notify trace ID and notify who UID print an aligned summary or the raw JSON; exit 0 found, 1 no such message, 2 on errors', async (t) => {
  const d = await startDaemon(t, { http: { token: 'cli-secret-0123456789' } });
  await session(t, d, 'carol');
  const report = (await api(d.httpUrl, 'POST', '/v1/send', { uid: 'carol', msg: 'hi' }, { authorization: 'Bearer cli-secret-0123456789' })).body as PublishReport;
  const opts = ['--server', d.httpUrl, '--token', 'cli-secret-0123456789'];

  const human = await cli(['trace', report.id, ...opts]);
  assert.equal(human.code, 0, human.err);
  const out = lines(human.out);
  assert.equal(out[0], `message    ${report.id}`);
  assert.match(out[1] ?? '', /^published  \S+ via http on \S+, route all, stored in history$/);
  assert.equal(out[2], 'audience   carol');
  assert.equal(out[3], 'outcome    1 sent, 0 failed, 0 rejected');
  assert.equal(out[4], 'targets');
  assert.match(out[5] ?? '', /^ {2}UID +TRANSPORT +TARGET +STATUS +ATTEMPTS +AT +DETAIL$/);
  assert.match(out[6] ?? '', /^ {2}carol +websocket +s\S+ +sent +1 +\d{4}-\S+$/);
  assert.equal((out[5] ?? '').indexOf('STATUS'), (out[6] ?? '').indexOf('sent'), 'columns aligned');

  const json = await cli(['trace', report.id, '--json', ...opts]);
  assert.equal(json.code, 0);
  const viaApi = await api(d.httpUrl, 'GET', `/v1/messages/${report.id}`, undefined, { authorization: 'Bearer cli-secret-0123456789' });
  assert.deepEqual(JSON.parse(json.out), viaApi.body);

  const missing = await cli(['trace', '01UNKNOWN', ...opts]);
  assert.equal(missing.code, 1);
  assert.equal(missing.out, '');
  assert.match(missing.err, /no message 01UNKNOWN in history/);

  const denied = await cli(['trace', report.id, '--server', d.httpUrl, '--token', 'wrong']);
  assert.equal(denied.code, 2);
  assert.match(denied.err, /NOTIFY_ERR_UNAUTHORIZED/);
  const down = await cli(['who', 'carol', '--server', 'http://127.0.0.1:1', '--token', 'x']);
  assert.equal(down.code, 2);

  const whoHuman = await cli(['who', 'carol', ...opts]);
  assert.equal(whoHuman.code, 0, whoHuman.err);
  const w = lines(whoHuman.out);
  assert.equal(w[0], 'uid       carol');
  assert.equal(w[1], 'online    yes, 1 session');
  assert.equal(w[2], 'sessions');
  assert.match(w[3] ?? '', /^ {2}SESSION +NODE +ADDRESS +CONNECTED +PROTOCOL$/);
  assert.match(w[4] ?? '', /^ {2}s\S+ +\S+ +127\.0\.0\.1 +\d{4}-\S+ +original$/);
  assert.ok(w.includes('devices   none'));
  assert.ok(w.includes('recent messages (newest first)'));
  assert.ok(whoHuman.out.includes(report.id));
  const whoJson = await cli(['who', 'carol', '--json', ...opts]);
  assert.equal((JSON.parse(whoJson.out) as UidFacts).online, true);
});

test('trace: the embedded store keeps a trace across a restart, for as long as the message is in history', async (t) => {
  const config = testConfig({}, t);
  const d1 = await runDaemon(t, config);
  const backend = await textClient(t, d1.textPort);
  backend.write('{"uid":"dave","percent":"5%","reply":"json"}\n');
  const [line] = await backend.replies(1);
  const id = (JSON.parse(line as string) as PublishReport).id;
  const before = await trace(d1.httpUrl, id);
  assert.equal(before.ingress, 'text');
  assert.deepEqual(before.unreached, ['dave']);
  await d1.stop();
  const d2 = await runDaemon(t, config);
  const after = await trace(d2.httpUrl, id);
  assert.deepEqual(after, before);
});

test('trace: a publisher id repeated is counted as a duplicate of the first publish', async (t) => {
  const d = await startDaemon(t);
  await wsClient(t, d.wsUrl, { bind: 'erin' });
  await until(() => d.registry.index('websocket').has('erin'), 'erin bound');
  const first = await send(d.httpUrl, { uid: 'erin', msg: 'x', id: 'job-42' });
  const again = await send(d.httpUrl, { uid: 'erin', msg: 'x', id: 'job-42' });
  assert.equal(again.duplicate, true);
  const tr = await trace(d.httpUrl, 'job-42');
  assert.equal(first.id, 'job-42');
  assert.equal(tr.publisherId, 'job-42');
  assert.equal(tr.duplicates, 1);
  assert.equal(tr.targets.length, 1);
});

test('trace: a delivery the report deadline caught on the wire is pending (not failed) until the provider answers', async (t) => {
  let answer: (() => void) | undefined;
  const fake = await startFakeHttp(t, () => new Promise((resolve) => (answer = () => resolve(undefined))));
  const d = await startDaemon(t, {
    transports: { hook: { type: 'http', url: `${fake.url}/h/{{token}}`, body: '{{msg}}', perDevice: true, requestTimeoutMs: 60_000 } },
    devices: { frank: { hook: ['slow'] } },
    dispatch: { deliverTimeoutMs: 300 },
  });
  const report = await send(d.httpUrl, { uid: 'frank', msg: 'x' });
  assert.match(report.results[0]?.reason ?? '', /^not delivered by the deadline; still trying/);
  const during = await trace(d.httpUrl, report.id);
  assert.deepEqual([during.targets[0]?.status, during.targets[0]?.attempts], ['pending', 0]);
  await until(() => answer !== undefined, 'the request to reach the provider');
  answer?.();
  const deadline = Date.now() + HANG_MS;
  for (;;) {
    const after = await trace(d.httpUrl, report.id);
    if (after.targets[0]?.status === 'sent') {
      assert.equal(after.targets[0]?.attempts, 1);
      break;
    }
    if (Date.now() > deadline) assert.fail(JSON.stringify(after));
    await new Promise((r) => setTimeout(r, 20));
  }
});

test('trace: a token APNs answers 410 Unregistered for is rejected in the trace, retired in GET /v1/uids/{uid} with the reason, and logged once with the message id and the token shortened', async (t) => {
  const { apnsWorld, deviceToken } = await import('../helpers/apns.js');
  const { shortToken } = await import('../../src/obs/log.js');
  const dead = deviceToken();
  const live = deviceToken();
  const w = await apnsWorld(t, {
    devices: { gina: [dead, live] },
    fake: { respond: (req) => (req.token === dead ? { status: 410, reason: 'Unregistered', timestamp: 1700000000000 } : undefined) },
  });
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'gina', msg: 'hi' });
  const tr = await trace(d.httpUrl, report.id);
  const deadTarget = tr.targets.find((x) => x.target === dead);
  assert.equal(deadTarget?.status, 'rejected');
  assert.match(deadTarget?.reason ?? '', /^410 Unregistered/);
  assert.equal(tr.targets.find((x) => x.target === live)?.status, 'sent');

  let facts: UidFacts | undefined;
  const deadline = Date.now() + HANG_MS;
  for (;;) {
    facts = await who(d.httpUrl, 'gina');
    if (facts.retired.length > 0) break;
    if (Date.now() > deadline) assert.fail(JSON.stringify(facts));
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.deepEqual(facts.retired.map((r) => [r.transport, r.token]), [['apns', dead]]);
  assert.match(facts.retired[0]?.reason ?? '', /^410 Unregistered/);
  assert.match(facts.retired[0]?.at ?? '', ISO);
  assert.deepEqual(facts.devices.map((x) => [x.token, x.lastOutcome?.status]), [[live, 'sent']], 'the retired token is no longer a device');

  const lines = d.logs.filter((l) => l.msg === 'device token retired; it will not be used again');
  assert.equal(lines.length, 1);
  assert.equal(lines[0]?.id, report.id);
  assert.equal(lines[0]?.target, shortToken(dead));
  assert.ok(!JSON.stringify(d.logs).includes(dead), 'the whole token is not in the log');
});
