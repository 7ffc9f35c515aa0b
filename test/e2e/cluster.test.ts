import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type { PublishReport } from '../../src/types.js';
import { HANG_MS, session, textClient, until, wsClient } from '../helpers/clients.js';
import { type Overrides, type TestDaemon, startDaemon } from '../helpers/daemon.js';
import { type RedisServer, SKIP_REDIS, startRedis } from '../helpers/redis.js';

/** Three nodes (A, B, C) on one Redis, each with its own listeners, as behind a load balancer. */
async function cluster(t: TestContext, more: Overrides = {}): Promise<{ redis: RedisServer; nodes: TestDaemon[] }> {
  const nodes: TestDaemon[] = [];
  // Registered before Redis's own stop (t.after hooks run in the order they were added): the
  // nodes stop while their Redis still runs.
  t.after(() => Promise.all(nodes.map((d) => d.stop())));
  const redis = await startRedis(t);
  for (const name of ['node-a', 'node-b', 'node-c']) {
    nodes.push(await startDaemon(t, { ...more, cluster: { redis: redis.url, node: name } }));
  }
  return { redis, nodes };
}

/** Waits until every node sees `n` sessions of `uid` (presence is shared). */
async function seen(nodes: TestDaemon[], uid: string, n = 1): Promise<void> {
  const counts = async () => Promise.all(nodes.map(async (d) => d.node.backends.presence.count(uid)));
  const deadline = Date.now() + HANG_MS;
  for (;;) {
    const c = await counts();
    if (c.every((x) => x === n)) return;
    if (Date.now() > deadline) assert.fail(`presence of ${uid}: ${JSON.stringify(c)}, expected ${n} on every node`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function send(d: TestDaemon, body: Record<string, unknown>): Promise<PublishReport> {
  const res = await fetch(`${d.httpUrl}/v1/send`, { method: 'POST', body: JSON.stringify(body) });
  assert.equal(res.status, 200, await res.clone().text());
  return (await res.json()) as PublishReport;
}

test('cluster: a page bound on node B gets what a backend writes to node A (original protocol: ok/fail); no session anywhere is fail', { skip: SKIP_REDIS }, async (t) => {
  const { nodes } = await cluster(t);
  const [a, b] = nodes as [TestDaemon, TestDaemon, TestDaemon];
  const page = await session(t, b, 'uid1');
  await seen(nodes, 'uid1');

  const backend = await textClient(t, a.textPort);
  backend.write('{"uid":"uid1","percent":"88%"}\n');
  assert.deepEqual(await backend.replies(1), ['ok']);
  assert.equal(await page.frame(1), '{"uid":"uid1","percent":"88%"}');

  backend.write('{"uid":"nobody","percent":"1%"}\n');
  assert.deepEqual(await backend.replies(2), ['ok', 'fail']);
  assert.equal(page.frames.length, 1, 'nothing else reached the page');
});

test('cluster: the report names the node of each session; sessions on two nodes both get it, each once', { skip: SKIP_REDIS }, async (t) => {
  const { nodes } = await cluster(t);
  const [a, b, c] = nodes as [TestDaemon, TestDaemon, TestDaemon];
  const onB = await session(t, b, 'uid1');
  const onC = await session(t, c, 'uid1');
  await seen(nodes, 'uid1', 2);

  const report = await send(a, { uid: 'uid1', msg: 'hello' });
  assert.equal(report.delivered, true);
  const ws = report.results.filter((e) => e.transport === 'websocket');
  assert.deepEqual(ws.map((e) => [e.node, e.status]).sort(), [['node-b', 'sent'], ['node-c', 'sent']]);
  assert.equal(await onB.frame(1), 'hello');
  assert.equal(await onC.frame(1), 'hello');

  // Published on a node that has a session itself: its own session once, the other node's once.
  const report2 = await send(b, { uid: 'uid1', msg: 'again' });
  assert.deepEqual(report2.results.filter((e) => e.transport === 'websocket').map((e) => e.node).sort(), ['node-b', 'node-c']);
  assert.equal(await onB.frame(2), 'again');
  assert.equal(await onC.frame(2), 'again');
  await new Promise((r) => setTimeout(r, 200));
  assert.deepEqual([onB.frames, onC.frames], [['hello', 'again'], ['hello', 'again']], 'none twice');
});

test('cluster: a broadcast reaches every session on every node', { skip: SKIP_REDIS }, async (t) => {
  const { nodes } = await cluster(t);
  const [a, b, c] = nodes as [TestDaemon, TestDaemon, TestDaemon];
  const pages = [await session(t, a, 'u-a'), await session(t, b, 'u-b'), await session(t, c, 'u-c')];
  await Promise.all(['u-a', 'u-b', 'u-c'].map((u) => seen(nodes, u)));
  const report = await send(b, { broadcast: true, msg: 'to everyone' });
  assert.equal(report.delivered, true);
  for (const p of pages) assert.equal(await p.frame(1), 'to everyone');
});

test('cluster: limits.sessionsPerUid counts the sessions on every node', { skip: SKIP_REDIS }, async (t) => {
  const { nodes } = await cluster(t, { limits: { sessionsPerUid: 2 } });
  const [a, b, c] = nodes as [TestDaemon, TestDaemon, TestDaemon];
  await session(t, a, 'uid1');
  await session(t, b, 'uid1');
  await seen(nodes, 'uid1', 2);
  const third = await wsClient(t, c.wsUrl, { bind: 'uid1' });
  const [code, reason] = await third.closed;
  assert.equal(code, 4429);
  assert.match(reason, /too many sessions for this uid \(limits\.sessionsPerUid: 2\)/);
});

test('cluster: a page that was on node B resumes on node C with since: every message after it, in order, none twice, then live ones', { skip: SKIP_REDIS }, async (t) => {
  const { nodes } = await cluster(t);
  const [a, b, c] = nodes as [TestDaemon, TestDaemon, TestDaemon];
  const first = await wsClient(t, b.wsUrl, { bind: JSON.stringify({ type: 'bind', uid: 'uid1' }) });
  await seen(nodes, 'uid1');
  const backend = await textClient(t, a.textPort);
  for (let i = 1; i <= 3; i++) backend.write(`{"uid":"uid1","n":${i}}\n`);
  assert.deepEqual(await backend.replies(3), ['ok', 'ok', 'ok']);
  const env = (f: string) => JSON.parse(f) as { id: string; data: { n: number } };
  await first.frame(3);
  const seenIds = first.frames.map((f) => env(f).id);
  assert.deepEqual(first.frames.map((f) => env(f).data.n), [1, 2, 3]);
  first.ws.close();
  await seen(nodes, 'uid1', 0);

  // While the page is away: published through another node; nobody is reached, all are stored.
  for (let i = 4; i <= 8; i++) backend.write(`{"uid":"uid1","n":${i}}\n`);
  assert.deepEqual((await backend.replies(8)).slice(3), ['fail', 'fail', 'fail', 'fail', 'fail']);

  const again = await wsClient(t, c.wsUrl, { bind: JSON.stringify({ type: 'bind', uid: 'uid1', since: seenIds[2] }) });
  await again.frame(5);
  assert.deepEqual(again.frames.map((f) => env(f).data.n), [4, 5, 6, 7, 8], 'the missed ones, in order');
  await seen(nodes, 'uid1');
  backend.write('{"uid":"uid1","n":9}\n');
  assert.deepEqual((await backend.replies(9)).slice(8), ['ok']);
  assert.equal(env(await again.frame(6)).data.n, 9, 'then live ones');
  await new Promise((r) => setTimeout(r, 200));
  const ids = again.frames.map((f) => env(f).id);
  assert.equal(new Set([...seenIds, ...ids]).size, 9, 'nine messages, each once');
});

test('cluster: while Redis is down a publish is an error (Text) or 503 with Retry-After (HTTP), never ok; /healthz says so; sessions stay; once it is back (empty) publishing works again without a restart', { skip: SKIP_REDIS }, async (t) => {
  // A short heartbeat: presence that Redis lost is written again at the next one.
  const { redis, nodes } = await cluster(t, { ws: { heartbeatIntervalMs: 300 } });
  const [a, b] = nodes as [TestDaemon, TestDaemon, TestDaemon];
  const page = await session(t, b, 'uid1');
  await seen(nodes, 'uid1');
  const backend = await textClient(t, a.textPort);
  await redis.stop();

  backend.write('{"uid":"uid1","msg":"while down"}\n');
  const [reply] = await backend.replies(1);
  assert.match(reply as string, /^error: store unavailable \(/);
  const res = await fetch(`${a.httpUrl}/v1/send`, { method: 'POST', body: JSON.stringify({ uid: 'uid1', msg: 'while down' }) });
  assert.equal(res.status, 503);
  assert.equal(res.headers.get('retry-after'), '1');
  assert.equal(((await res.json()) as { code: string }).code, 'NOTIFY_ERR_STORE');
  const health = await fetch(`${a.httpUrl}/healthz`);
  assert.equal(health.status, 503);
  assert.equal(((await health.json()) as { status: string }).status, 'store unavailable');
  assert.equal(page.ws.readyState, page.ws.OPEN, 'the session stays connected');
  assert.deepEqual(page.frames, [], 'nothing was delivered');

  await redis.restart();
  const deadline = Date.now() + HANG_MS;
  for (let n = 2; ; n++) {
    backend.write('{"uid":"uid1","msg":"back"}\n');
    const lines = await backend.replies(n);
    if (lines[n - 1] === 'ok') break;
    if (Date.now() > deadline) assert.fail(`publishing did not work again: ${JSON.stringify(lines)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(await page.frame(1), '{"uid":"uid1","msg":"back"}');
  const healthy = await fetch(`${a.httpUrl}/healthz`);
  assert.equal(healthy.status, 200);
  assert.deepEqual(((await healthy.json()) as { store: unknown }).store, { state: 'ok', redis: redis.url, node: 'node-a' });
});

test('cluster: a session whose node no longer follows its uid (a node that died, before its presence expires) is not counted as reached', { skip: SKIP_REDIS }, async (t) => {
  const { nodes } = await cluster(t);
  const [a, b] = nodes as [TestDaemon, TestDaemon, TestDaemon];
  await session(t, b, 'uid1');
  await seen(nodes, 'uid1');
  // Node B stops taking the uid's messages, as a node that was killed does; its session stays in
  // presence until it expires.
  await (b.streams as NonNullable<typeof b.streams>).unfollow('u:uid1');
  const report = await send(a, { uid: 'uid1', msg: 'nobody takes it' });
  assert.equal(report.delivered, false);
  const entry = report.results.find((e) => e.transport === 'websocket');
  assert.equal(entry?.status, 'failed');
  assert.equal(entry?.node, 'node-b');
  assert.match(entry?.reason ?? '', /no node took it/);
  const backend = await textClient(t, a.textPort);
  backend.write('{"uid":"uid1","msg":"nobody"}\n');
  assert.deepEqual(await backend.replies(1), ['fail']);
});

test('cluster: a message published while a node\'s subscriptions were down reaches its resuming session once they are back (position check)', { skip: SKIP_REDIS }, async (t) => {
  const { redis, nodes } = await cluster(t);
  const [a, b] = nodes as [TestDaemon, TestDaemon, TestDaemon];
  const page = await wsClient(t, b.wsUrl, { bind: JSON.stringify({ type: 'bind', uid: 'uid1' }) });
  await seen(nodes, 'uid1');
  const env = (f: string) => JSON.parse(f) as { id: string; data: string };
  assert.equal((await send(a, { uid: 'uid1', msg: 'before' })).delivered, true);
  assert.equal(env(await page.frame(1)).data, 'before');
  // Cut every node's subscriber connection and publish before they are back: nobody takes the
  // message from the channel (the report says so), but it is stored. Tried again in the rare case
  // a subscriber was back first.
  let missed: PublishReport | undefined;
  for (let i = 0; i < 20 && missed === undefined; i++) {
    redis.cli('CLIENT', 'KILL', 'TYPE', 'pubsub');
    const r = await send(a, { uid: 'uid1', msg: `while away ${i}` });
    if (!r.delivered) missed = r;
    await until(() => b.node.backends.health().state === 'ok', 'node B to reconnect');
  }
  assert.ok(missed, 'a publish went out while the subscribers were away');
  assert.match(missed.results.find((e) => e.transport === 'websocket')?.reason ?? '', /no node took it/);
  const deadline = Date.now() + HANG_MS;
  while (!page.frames.some((f) => env(f).id === missed?.id)) {
    if (Date.now() > deadline) assert.fail(`the missed message never arrived; frames: ${JSON.stringify(page.frames)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const ids = page.frames.map((f) => env(f).id);
  assert.equal(new Set(ids).size, ids.length, 'none twice');
  assert.ok(b.logs.some((l) => l.msg === 'subscriptions back: resuming sessions catch up from the store'));
});

test('cluster: a page that leaves is no longer reached; the node stops following its uid', { skip: SKIP_REDIS }, async (t) => {
  const { nodes } = await cluster(t);
  const [a, b] = nodes as [TestDaemon, TestDaemon, TestDaemon];
  const page = await session(t, b, 'uid1');
  await seen(nodes, 'uid1');
  page.ws.close();
  await seen(nodes, 'uid1', 0);
  const backend = await textClient(t, a.textPort);
  backend.write('{"uid":"uid1","msg":"gone"}\n');
  assert.deepEqual(await backend.replies(1), ['fail']);
  await until(() => !(b.streams as { followed?: string[] }).followed?.includes('u:uid1'), 'node B to unfollow u:uid1');
});
