import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WebSocket } from 'ws';
import type { UidFacts } from '../../src/node/lookup.js';
import type { MessageTrace } from '../../src/store/trace.js';
import { api, send } from '../helpers/api.js';
import { HANG_MS, session, until } from '../helpers/clients.js';
import { type TestDaemon, startDaemon } from '../helpers/daemon.js';
import { startFakeHttp } from '../helpers/fake-http.js';
import { SKIP_REDIS, startRedis } from '../helpers/redis.js';

async function seen(nodes: TestDaemon[], uid: string, n: number): Promise<void> {
  const deadline = Date.now() + HANG_MS;
  for (;;) {
    const c = await Promise.all(nodes.map(async (d) => d.node.backends.presence.count(uid)));
    if (c.every((x) => x === n)) return;
    if (Date.now() > deadline) assert.fail(`presence of ${uid}: ${JSON.stringify(c)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test('cluster trace: a page on node B, a publish on node A: B answers GET /v1/messages/{id} with the websocket target sent on B and the ack B took; A answers GET /v1/uids/{uid} with the sessions on B and the device outcome A saw', { skip: SKIP_REDIS }, async (t) => {
  const nodes: TestDaemon[] = [];
  t.after(() => Promise.all(nodes.map((d) => d.stop())));
  const redis = await startRedis(t);
  const fake = await startFakeHttp(t);
  const more = {
    transports: { hook: { type: 'http', url: `${fake.url}/h/{{token}}`, body: '{{msg}}', perDevice: true } },
    devices: { uid1: { hook: ['dev1'] } },
  };
  for (const name of ['node-a', 'node-b']) nodes.push(await startDaemon(t, { ...more, cluster: { redis: redis.url, node: name } }));
  const [a, b] = nodes as [TestDaemon, TestDaemon];

  await session(t, b, 'uid1');
  const resuming = new WebSocket(b.wsUrl);
  t.after(() => resuming.terminate());
  const acked: string[] = [];
  resuming.on('message', (data) => {
    const f = JSON.parse(data.toString()) as { id?: string };
    if (typeof f.id === 'string') {
      resuming.send(JSON.stringify({ type: 'ack', id: f.id }));
      acked.push(f.id);
    }
  });
  await new Promise((r) => resuming.once('open', r));
  resuming.send(JSON.stringify({ type: 'bind', uid: 'uid1' }));
  await seen(nodes, 'uid1', 2);

  const report = await send(a.httpUrl, { uid: 'uid1', msg: 'across' });
  assert.equal(report.sent, 3, JSON.stringify(report));
  await until(() => acked.includes(report.id), 'the resuming page on B to ack');

  let tr: MessageTrace | undefined;
  const deadline = Date.now() + HANG_MS;
  for (;;) {
    const r = await api(b.httpUrl, 'GET', `/v1/messages/${report.id}`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    tr = r.body as MessageTrace;
    if (tr.acks.length === 1) break;
    if (Date.now() > deadline) assert.fail(`no ack in ${JSON.stringify(tr)}`);
    await new Promise((res) => setTimeout(res, 20));
  }
  assert.equal(tr.node, 'node-a', 'published on A');
  const ws = tr.targets.filter((x) => x.transport === 'websocket');
  assert.deepEqual(ws.map((x) => [x.node, x.status]), [['node-b', 'sent'], ['node-b', 'sent']]);
  assert.deepEqual(tr.targets.filter((x) => x.transport === 'hook').map((x) => [x.target, x.status, x.attempts]), [['dev1', 'sent', 1]]);
  assert.equal(tr.acks[0]?.uid, 'uid1');
  assert.match(tr.acks[0]?.session ?? '', /^r/);

  const w = await api(a.httpUrl, 'GET', '/v1/uids/uid1');
  assert.equal(w.status, 200);
  const facts = w.body as UidFacts;
  assert.equal(facts.online, true);
  assert.deepEqual(facts.sessions.map((s) => [s.node, s.protocol, s.address]).sort(), [['node-b', 'original', '127.0.0.1'], ['node-b', 'resume', '127.0.0.1']]);
  for (const s of facts.sessions) assert.match(s.connectedAt ?? '', /^\d{4}-/);
  assert.equal(facts.devices[0]?.lastOutcome?.status, 'sent');
  assert.equal(facts.devices[0]?.lastOutcome?.messageId, report.id);
  assert.deepEqual(facts.recentMessages.map((m) => m.id), [report.id]);
  // B has the same view.
  const fromB = (await api(b.httpUrl, 'GET', '/v1/uids/uid1')).body as UidFacts;
  assert.deepEqual(fromB.sessions.map((s) => s.session).sort(), facts.sessions.map((s) => s.session).sort());
});
