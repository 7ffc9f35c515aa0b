import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type { Redis } from 'ioredis';
import { NotifyError } from '../../src/errors.js';
import { silentLogger } from '../../src/obs/log.js';
import { closeRedis, openRedis, parseRedisUrl } from '../../src/store/redis.js';
import { RedisRetryQueue, type RedisRetryQueueOptions } from '../../src/store/retry-queue-redis.js';
import type { PendingRetry } from '../../src/store/retry-queue.js';
import { SKIP_REDIS, type RedisServer, startRedis } from '../helpers/redis.js';
import { retryEntry as entry } from '../contracts/retry-queue.contract.js';

const opts = { skip: SKIP_REDIS };
const LEASE = 60_000;

/** A node: its own connection to the shared Redis and its own queue object on it. */
async function node(t: TestContext, redis: RedisServer, o: RedisRetryQueueOptions = {}): Promise<{ q: RedisRetryQueue; client: Redis }> {
  const client = await openRedis(parseRedisUrl(redis.url), { log: silentLogger });
  t.after(() => closeRedis(client));
  return { q: new RedisRetryQueue(client, o), client };
}

test('RedisRetryQueue, nodes A, B, C: A holds entries and is killed; after the lease B and C claim concurrently, and each entry goes to exactly one of them, once', opts, async (t) => {
  const redis = await startRedis(t);
  const a = await node(t, redis);
  const { q: b } = await node(t, redis);
  const { q: c } = await node(t, redis);
  const keys: string[] = [];
  for (let i = 0; i < 200; i++) keys.push(await a.q.hold(entry(`tok-${i}`, 1000 + i), 'node-a', LEASE));
  await closeRedis(a.client); // A is gone: it never updates nor releases again.

  assert.deepEqual(await b.claim('node-b', { limit: 50, leaseMs: LEASE, now: 1000 + LEASE - 1 }), [], 'nothing before the first lease ends');
  const now = 1000 + 200 + LEASE;
  const claims: Promise<PendingRetry[]>[] = [];
  for (let i = 0; i < 40; i++) {
    claims.push(b.claim('node-b', { limit: 7, leaseMs: LEASE, now }));
    claims.push(c.claim('node-c', { limit: 7, leaseMs: LEASE, now }));
  }
  const byB = (await Promise.all(claims.filter((_, i) => i % 2 === 0))).flat();
  const byC = (await Promise.all(claims.filter((_, i) => i % 2 === 1))).flat();
  const all = [...byB, ...byC].map((p) => p.key);
  assert.equal(all.length, 200, `200 claims in all (B ${byB.length}, C ${byC.length})`);
  assert.equal(new Set(all).size, 200, 'no entry claimed twice');
  assert.deepEqual([...all].sort(), [...keys].sort());
  for (const p of [...byB, ...byC]) assert.deepEqual(p, { key: p.key, ...entry(`tok-${keys.indexOf(p.key)}`, 1000 + keys.indexOf(p.key)) }, 'with the fields A held');
  // Later claims, by either, find nothing until these leases end in turn.
  assert.deepEqual(await c.claim('node-c', { limit: 500, leaseMs: LEASE, now: now + LEASE - 1 }), []);
  for (const p of byB) await b.release(p.key);
  const again = await c.claim('node-c', { limit: 500, leaseMs: LEASE, now: now + 2 * LEASE });
  assert.deepEqual(again.map((p) => p.key).sort(), byC.map((p) => p.key).sort(), "B's released entries are gone; C's ended leases come back (C's node stopped updating them)");
  assert.equal(b.size, byC.length, "size counts every node's entries");
});

test('RedisRetryQueue, two nodes: a live lease is respected; an update on A extends it; handBack on A lets B take it at once', opts, async (t) => {
  const redis = await startRedis(t);
  const { q: a } = await node(t, redis);
  const { q: b } = await node(t, redis);
  const key = await a.hold(entry('tok', 1000), 'node-a', LEASE);
  assert.deepEqual(await b.claim('node-b', { limit: 10, leaseMs: LEASE, now: 1000 + LEASE - 1 }), []);
  await a.update(key, 2, 5000, '503', LEASE);
  assert.deepEqual(await b.claim('node-b', { limit: 10, leaseMs: LEASE, now: 1000 + LEASE }), [], 'the update moved the lease to 5000 + lease');
  await a.handBack('node-a');
  const [p] = await b.claim('node-b', { limit: 10, leaseMs: LEASE, now: 1001 });
  assert.deepEqual(p && [p.key, p.attempts, p.dueAt, p.reason, p.target], [key, 2, 5000, '503', 'tok']);
  await a.handBack('node-a');
  assert.deepEqual(await a.claim('node-a', { limit: 10, leaseMs: LEASE, now: 1001 }), [], "A handing back again does not take B's lease away");
});

test('RedisRetryQueue: keys under the prefix and the {rq} hash tag; each entry has a TTL backstop; a release leaves no key behind', opts, async (t) => {
  const redis = await startRedis(t);
  const { q, client } = await node(t, redis, { prefix: 'px' });
  const k1 = await q.hold(entry('a', 1000), 'node-a', LEASE);
  const k2 = await q.hold(entry('b', 1000), 'node-a', LEASE);
  const keys = await client.keys('*');
  for (const k of keys) assert.match(k, /^px:\{rq\}:/, k);
  const ttl = await client.pttl(`px:{rq}:job:${k1}`);
  assert.ok(ttl > 0, `the entry expires as a backstop: ${ttl}`);
  await q.claim('node-b', { limit: 1, leaseMs: LEASE, now: 10 * LEASE });
  await q.release(k1);
  await q.release(k2);
  assert.deepEqual(await client.keys('*'), [], 'nothing left');
  assert.equal(q.size, 0);
});

test('RedisRetryQueue: Redis down: each call rejects with NOTIFY_ERR_STORE, nothing crashes; after a restart the same queue works again', opts, async (t) => {
  const redis = await startRedis(t);
  const { q } = await node(t, redis);
  const key = await q.hold(entry('a', 1000), 'node-a', LEASE);
  await redis.stop();
  const calls: [string, () => unknown][] = [
    ['hold', () => q.hold(entry('b', 1000), 'node-a', LEASE)],
    ['update', () => q.update(key, 2, 2000, '503', LEASE)],
    ['release', () => q.release(key)],
    ['claim', () => q.claim('node-a', { limit: 1, leaseMs: LEASE })],
    ['handBack', () => q.handBack('node-a')],
  ];
  for (const [name, call] of calls) {
    await assert.rejects(async () => call(), (err: unknown) => err instanceof NotifyError && err.code === 'NOTIFY_ERR_STORE' && /^store unavailable \(/.test(err.message), name);
  }
  await redis.restart();
  let held: string | undefined;
  for (let i = 0; held === undefined; i++) {
    try {
      held = await q.hold(entry('c', 1000), 'node-a', 0);
    } catch (err) {
      if (i > 300) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  assert.deepEqual((await q.claim('node-b', { limit: 10, leaseMs: LEASE, now: 2000 })).map((p) => [p.key, p.target]), [[held, 'c']], 'back (empty: this server keeps nothing across a restart)');
});
