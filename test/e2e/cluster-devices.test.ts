import assert from 'node:assert/strict';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test, type TestContext } from 'node:test';
import type { PublishReport } from '../../src/types.js';
import { apnsWorld, deviceToken } from '../helpers/apns.js';
import { HANG_MS } from '../helpers/clients.js';
import { type TestDaemon, startDaemon } from '../helpers/daemon.js';
import type { FakeApnsAnswer, FakeApnsRequest } from '../helpers/fake-apns.js';
import { SKIP_REDIS, startRedis } from '../helpers/redis.js';

// Devices and publisher ids across nodes (the cluster issue, item 6): three nodes on one
// redis-server, each with an `apns` transport pointed at one fake APNs server, so the fake's
// requests are every node's pushes.

/** Three nodes (A, B, C) on one Redis, each with the same APNs transport; the fake answers as `respond` says. */
async function cluster(t: TestContext, respond?: (req: FakeApnsRequest) => FakeApnsAnswer | undefined) {
  const world = await apnsWorld(t, respond ? { fake: { respond } } : {});
  const apns = world.raw.transports as { apns: Record<string, unknown> };
  const transports = {
    apns: { ...apns.apns, token: { key: join(world.dir, 'AuthKey.p8'), keyId: world.key.keyId, teamId: world.key.teamId }, ca: join(world.dir, 'fake-ca.pem') },
  };
  const nodes: TestDaemon[] = [];
  // Before startRedis: t.after hooks run in the order they were added, so the nodes stop first.
  t.after(() => Promise.all(nodes.map((d) => d.stop())));
  const redis = await startRedis(t);
  for (const name of ['node-a', 'node-b', 'node-c']) nodes.push(await startDaemon(t, { transports, cluster: { redis: redis.url, node: name } }));
  return { nodes: nodes as [TestDaemon, TestDaemon, TestDaemon], fake: world.fake };
}

async function post(d: TestDaemon, path: string, body: Record<string, unknown>): Promise<Record<string, unknown>> {
  const res = await fetch(`${d.httpUrl}${path}`, { method: 'POST', body: JSON.stringify(body) });
  const text = await res.text();
  assert.equal(res.status, 200, text);
  return JSON.parse(text) as Record<string, unknown>;
}

const send = (d: TestDaemon, body: Record<string, unknown>) => post(d, '/v1/send', body) as Promise<PublishReport & Record<string, unknown>>;

test('cluster devices: a token registered through node A is used by node B when B publishes', { skip: SKIP_REDIS }, async (t) => {
  const { nodes, fake } = await cluster(t);
  const [a, b, c] = nodes;
  const token = deviceToken();
  assert.deepEqual(await post(a, '/v1/devices', { uid: 'uid1', transport: 'apns', token }), { uid: 'uid1', transport: 'apns', token, added: true });

  const report = await send(b, { uid: 'uid1', title: 'Hi', msg: 'from B' });
  assert.deepEqual(report.results.map((e) => [e.transport, e.target, e.status]), [['apns', token, 'sent']]);
  assert.deepEqual(fake.requests.map((r) => r.token), [token]);
  // Every node lists it (GET /v1/devices on C).
  const listed = (await (await fetch(`${c.httpUrl}/v1/devices?uid=uid1`)).json()) as { devices: { token: string }[] };
  assert.deepEqual(listed.devices.map((d) => d.token), [token]);
});

test('cluster devices: a token retired by node B (APNs 410) is never tried again by A or C; the live one still is', { skip: SKIP_REDIS }, async (t) => {
  const gone = deviceToken();
  const { nodes, fake } = await cluster(t, (req) => (req.token === gone ? { status: 410, reason: 'Unregistered', timestamp: Date.now() } : undefined));
  const [a, b, c] = nodes;
  const live = deviceToken();
  await post(a, '/v1/devices', { uid: 'uid1', transport: 'apns', token: gone });
  await post(a, '/v1/devices', { uid: 'uid1', transport: 'apns', token: live });

  const first = await send(b, { uid: 'uid1', msg: 'one' });
  const byToken = Object.fromEntries(first.results.map((e) => [e.target, e.status]));
  assert.deepEqual(byToken, { [gone]: 'rejected', [live]: 'sent' });
  // B retires it in the shared store as the 410 comes in (not before its report): wait until A
  // and C see it.
  const deadline = Date.now() + HANG_MS;
  while (!(await a.node.backends.devices.isRetired('apns', gone)) || !(await c.node.backends.devices.isRetired('apns', gone))) {
    if (Date.now() > deadline) assert.fail('A and C never saw the token retired');
    await sleep(10);
  }

  const fromA = await send(a, { uid: 'uid1', msg: 'two' });
  const fromC = await send(c, { uid: 'uid1', msg: 'three' });
  for (const r of [fromA, fromC]) assert.deepEqual(r.results.map((e) => [e.target, e.status]), [[live, 'sent']]);
  assert.equal(fake.requests.filter((r) => r.token === gone).length, 1, 'the retired token was tried once, by B, never again');
  assert.equal(fake.requests.filter((r) => r.token === live).length, 3);
});

test('cluster devices: a publisher id is deduped across nodes: the same id through A then B is delivered once, the second answer is duplicate: true', { skip: SKIP_REDIS }, async (t) => {
  const { nodes, fake } = await cluster(t);
  const [a, b, c] = nodes;
  const token = deviceToken();
  await post(c, '/v1/devices', { uid: 'uid1', transport: 'apns', token });

  const first = await send(a, { uid: 'uid1', msg: 'order 42 shipped', id: 'order-42' });
  assert.equal(first.id, 'order-42');
  assert.equal(first.duplicate, undefined);
  assert.deepEqual(first.results.map((e) => [e.target, e.status]), [[token, 'sent']]);
  const again = await send(b, { uid: 'uid1', msg: 'order 42 shipped', id: 'order-42' });
  assert.deepEqual(again, { ...first, duplicate: true }, 'the first answer, marked duplicate');
  // And through C.
  const third = await send(c, { uid: 'uid1', msg: 'order 42 shipped', id: 'order-42' });
  assert.equal(third.duplicate, true);
  await sleep(300);
  assert.equal(fake.requests.length, 1, 'delivered once');
});
