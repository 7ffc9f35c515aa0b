import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test, type TestContext } from 'node:test';
import { RedisAckRelay } from '../../src/store/acks-redis.js';
import type { PublishReport } from '../../src/types.js';
import { HANG_MS, type WsClient, session, wsClient } from '../helpers/clients.js';
import { type Overrides, type TestDaemon, startDaemon } from '../helpers/daemon.js';
import { type FakeHttp, startFakeHttp } from '../helpers/fake-http.js';
import { SKIP_REDIS, startRedis } from '../helpers/redis.js';

// Live-first across nodes (the cluster issue, item 5): three nodes on one redis-server, each with
// the same push fallback: a `type: http` transport (perDevice: false, so it reaches every uid)
// pointed at one fake webhook, whose requests are therefore the fallback's calls from all nodes.

/** Three nodes (A, B, C) on one Redis with the webhook fallback, live-first for every message. */
async function cluster(t: TestContext, ackTimeout: string): Promise<{ nodes: TestDaemon[]; hook: FakeHttp }> {
  const hook = await startFakeHttp(t);
  const nodes: TestDaemon[] = [];
  // Before startRedis: t.after hooks run in the order they were added, so the nodes stop first.
  t.after(() => Promise.all(nodes.map((d) => d.stop())));
  const redis = await startRedis(t);
  const more: Overrides = {
    dispatch: { route: 'live-first', ackTimeout },
    transports: { hook: { type: 'http', url: `${hook.url}/push/{{uid}}`, body: { uid: '{{uid}}', msg: '{{msg}}' } } },
  };
  for (const name of ['node-a', 'node-b', 'node-c']) nodes.push(await startDaemon(t, { ...more, cluster: { redis: redis.url, node: name } }));
  return { nodes, hook };
}

/** Waits until every node sees `n` sessions of `uid` (presence is shared). */
async function seen(nodes: TestDaemon[], uid: string, n = 1): Promise<void> {
  const deadline = Date.now() + HANG_MS;
  for (;;) {
    const c = await Promise.all(nodes.map(async (d) => d.node.backends.presence.count(uid)));
    if (c.every((x) => x === n)) return;
    if (Date.now() > deadline) assert.fail(`presence of ${uid}: ${JSON.stringify(c)}, expected ${n} on every node`);
    await sleep(10);
  }
}

async function send(d: TestDaemon, body: Record<string, unknown>): Promise<PublishReport> {
  const res = await fetch(`${d.httpUrl}/v1/send`, { method: 'POST', body: JSON.stringify(body) });
  assert.equal(res.status, 200, await res.clone().text());
  return (await res.json()) as PublishReport;
}

/** A page on `d` bound with the resume protocol; with `ack`, it acks every message the moment it arrives. */
async function resumePage(t: TestContext, d: TestDaemon, uid: string, ack: boolean): Promise<WsClient> {
  const page = await wsClient(t, d.wsUrl, { bind: JSON.stringify({ type: 'bind', uid }) });
  if (ack) {
    page.ws.on('message', (data) => {
      const { id } = JSON.parse(data.toString()) as { id: string };
      page.ws.send(JSON.stringify({ type: 'ack', id }));
    });
  }
  return page;
}

/** The webhook calls for `uid` so far. */
const callsFor = (hook: FakeHttp, uid: string) => hook.requests.filter((r) => r.path === `/push/${uid}`);

test('cluster live-first: a resume-protocol page on node B that acks takes every message published on node A (paths live); the webhook fallback is never called', { skip: SKIP_REDIS }, async (t) => {
  // A generous ackTimeout: a publish whose ack was lost would end with paths fallback.
  const { nodes, hook } = await cluster(t, '30s');
  const [a, b] = nodes as [TestDaemon, TestDaemon, TestDaemon];
  const page = await resumePage(t, b, 'uid1', true);
  await seen(nodes, 'uid1');

  // The page's ack can reach Redis before node A has delivered the message itself (B gets it
  // from the stream publish): twenty in a row, each must count.
  for (let i = 1; i <= 20; i++) {
    const report = await send(a, { uid: 'uid1', msg: `m${i}` });
    assert.deepEqual(report.paths, { uid1: 'live' }, `message ${i}: ${JSON.stringify(report)}`);
    assert.deepEqual(report.results.map((e) => [e.transport, e.node, e.status]), [['websocket', 'node-b', 'sent']]);
  }
  assert.equal(page.frames.length, 20);
  assert.deepEqual(page.frames.map((f) => (JSON.parse(f) as { data: string }).data), Array.from({ length: 20 }, (_, i) => `m${i + 1}`));
  assert.deepEqual(hook.requests, [], 'no fallback from any node');
  for (const d of nodes) {
    const acks = d.node.backends.acks;
    assert.ok(acks instanceof RedisAckRelay);
    assert.equal(acks.waiting, 0, 'no wait left on any node');
  }
});

test('cluster live-first: a resume-protocol page on node B that does not ack: the fallback is called exactly once, by the publishing node; a plain page on node C takes it on write', { skip: SKIP_REDIS }, async (t) => {
  const { nodes, hook } = await cluster(t, '300ms');
  const [a, b, c] = nodes as [TestDaemon, TestDaemon, TestDaemon];
  const silent = await resumePage(t, b, 'silent', false);
  const plain = await session(t, c, 'plain');
  await seen(nodes, 'silent');
  await seen(nodes, 'plain');

  const report = await send(a, { uids: ['silent', 'plain'], msg: 'hello' });
  assert.deepEqual(report.paths, { silent: 'fallback', plain: 'live' }, JSON.stringify(report));
  assert.equal((JSON.parse(await silent.frame(1)) as { data: string }).data, 'hello', 'the silent page got it too (it just did not ack)');
  assert.equal(await plain.frame(1), 'hello');
  const fallback = report.results.filter((e) => e.transport === 'hook');
  assert.deepEqual(fallback.map((e) => [e.uid, e.status]), [['silent', 'sent']]);
  // Every node's fallback calls the same webhook: one call in all, for the uid that did not ack.
  await sleep(500);
  assert.deepEqual(hook.requests.map((r) => r.path), ['/push/silent'], 'once, from one node');
  assert.deepEqual(callsFor(hook, 'silent')[0]?.json, { uid: 'silent', msg: 'hello' });
});

test('cluster live-first: no session on any node: the fallback is called exactly once', { skip: SKIP_REDIS }, async (t) => {
  const { nodes, hook } = await cluster(t, '10m');
  const [, b] = nodes as [TestDaemon, TestDaemon, TestDaemon];
  // A session of another uid elsewhere changes nothing for this one.
  await resumePage(t, nodes[2] as TestDaemon, 'someone-else', true);
  await seen(nodes, 'someone-else');

  const report = await send(b, { uid: 'offline', msg: 'while away' });
  assert.deepEqual(report.paths, { offline: 'fallback' });
  assert.deepEqual(report.results.map((e) => [e.transport, e.uid, e.status]), [['hook', 'offline', 'sent']]);
  await sleep(500);
  assert.equal(callsFor(hook, 'offline').length, 1, 'once, from one node');
  assert.equal(hook.requests.length, 1);
});
