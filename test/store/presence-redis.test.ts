import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { closeRedis } from '../../src/store/redis.js';
import { RedisPresence } from '../../src/store/presence-redis.js';
import { type RedisServer, SKIP_REDIS, startRedis } from '../helpers/redis.js';
import { ready, redisClient } from '../helpers/redis-client.js';

const TTL = 90_000;
const opts = { skip: SKIP_REDIS, timeout: 30_000 };

/** Two nodes, A and B, each with its own connection to one Redis, on one clock the test moves. */
async function twoNodes(t: TestContext) {
  const server = await startRedis(t);
  const clock = { now: 1_700_000_000_000 };
  const now = () => clock.now;
  const clientA = await redisClient(t, server);
  const clientB = await redisClient(t, server);
  const a = new RedisPresence(clientA, { node: 'node-a', ttlMs: TTL, now });
  const b = new RedisPresence(clientB, { node: 'node-b', ttlMs: TTL, now });
  return { server, clock, a, b, clientA, clientB };
}

const names = (entries: { node: string; sid: string }[]) => entries.map((e) => `${e.node}/${e.sid}`).sort();

/** Every key the backend wrote, with its TTL in ms (-1: none). */
function ttls(server: RedisServer): Record<string, number> {
  const out: Record<string, number> = {};
  for (const key of server.cli('--scan').split('\n').filter(Boolean)) out[key] = Number(server.cli('PTTL', key));
  return out;
}

test('RedisPresence: a session added on node B is seen from node A, with node B named; counts add up over nodes', opts, async (t) => {
  const { a, b } = await twoNodes(t);
  await b.add('alice', 's1', 'node-b');
  assert.equal(await a.has('alice'), true);
  assert.equal(await a.count('alice'), 1);
  assert.deepEqual(await a.sessions('alice'), [{ node: 'node-b', sid: 's1' }]);
  assert.deepEqual(await a.uids(), ['alice']);

  await a.add('alice', 's2', 'node-a');
  await b.add('bob', 's3', 'node-b');
  for (const p of [a, b]) {
    assert.equal(await p.count('alice'), 2, 'limits.sessionsPerUid counts the sessions on every node');
    assert.deepEqual(names(await p.sessions('alice')), ['node-a/s2', 'node-b/s1']);
    assert.deepEqual((await p.uids()).sort(), ['alice', 'bob']);
  }

  // Each node removes its own; the other's stays.
  await a.remove('alice', 's2');
  assert.deepEqual(names(await b.sessions('alice')), ['node-b/s1']);
  await b.remove('alice', 's1');
  assert.equal(await a.has('alice'), false);
  assert.deepEqual(await a.uids(), ['bob']);
});

test('RedisPresence: a node that stops its heartbeat (killed: its connection gone, sessions left behind) stops counting after the ttl; the live node keeps its own', opts, async (t) => {
  const { server, clock, a, b, clientB } = await twoNodes(t);
  await a.add('alice', 'sa', 'node-a');
  await b.add('alice', 'sb', 'node-b');
  await b.add('bob', 'sc', 'node-b');
  await a.touch('node-a', ['sa']);
  await b.touch('node-b', ['sb', 'sc']);
  assert.deepEqual((await a.nodes()).sort(), ['node-a', 'node-b']);

  await closeRedis(clientB); // node B dies: nothing removed
  // A keeps beating; B's entries age out.
  for (let beat = 0; beat < 3; beat++) {
    clock.now += TTL / 3;
    await a.touch('node-a', ['sa']);
    if (beat < 2) assert.equal(await a.count('alice'), 2, `still within B's ttl (beat ${beat})`);
  }
  clock.now += 1;
  assert.equal(await a.count('alice'), 1, "B's session no longer counts");
  assert.deepEqual(await a.sessions('alice'), [{ node: 'node-a', sid: 'sa' }]);
  assert.equal(await a.has('bob'), false, 'a uid only B had is gone');
  assert.deepEqual(await a.uids(), ['alice']);
  assert.deepEqual(await a.nodes(), ['node-a'], 'B left the node registry');
  assert.equal(server.cli('ZCARD', 'notify:{u:alice}:p'), '1', "reads dropped B's entries from Redis");
});

test('RedisPresence: every key it writes carries a TTL, under the prefix, per-uid keys with a hash tag', opts, async (t) => {
  const server = await startRedis(t);
  const p = new RedisPresence(await redisClient(t, server), { node: 'n1', prefix: 'pfx', ttlMs: TTL });
  await p.add('alice', 's1', 'n1');
  await p.add('bob', 's2', 'n1');
  await p.touch('n1', ['s1', 's2']);
  await p.remove('bob', 's2');
  const keys = ttls(server);
  assert.deepEqual(Object.keys(keys).sort(), ['pfx:nodes', 'pfx:uids', 'pfx:{u:alice}:p']);
  for (const [key, ms] of Object.entries(keys)) assert.ok(ms > 0 && ms <= TTL, `${key} expires (${ms} ms)`);
});

test('RedisPresence: a touch does not bring back a session removed before it; a session bound to another uid leaves the first', opts, async (t) => {
  const { a, b } = await twoNodes(t);
  await a.add('alice', 's1', 'node-a');
  await a.remove('alice', 's1');
  await a.touch('node-a', ['s1']);
  assert.equal(await b.count('alice'), 0);
  assert.deepEqual(await b.uids(), []);

  await a.add('alice', 's2', 'node-a');
  await a.add('bob', 's2', 'node-a');
  await a.touch('node-a', ['s2']);
  assert.deepEqual(await b.sessions('alice'), []);
  assert.deepEqual(await b.sessions('bob'), [{ node: 'node-a', sid: 's2' }]);
  assert.deepEqual(await b.uids(), ['bob']);
});

test('RedisPresence: a graceful close removes the node\'s sessions and registration at once', opts, async (t) => {
  const { a, b } = await twoNodes(t);
  await a.add('alice', 's1', 'node-a');
  await a.add('carol', 's2', 'node-a');
  await b.add('alice', 's3', 'node-b');
  await a.touch('node-a', ['s1', 's2']);
  await b.touch('node-b', ['s3']);
  await a.close();
  assert.deepEqual(await b.sessions('alice'), [{ node: 'node-b', sid: 's3' }]);
  assert.deepEqual(await b.uids(), ['alice']);
  assert.deepEqual(await b.nodes(), ['node-b']);
});

test('RedisPresence: Redis down: every call rejects with NOTIFY_ERR_STORE; after a restart (empty) calls work and the next heartbeat restores the live sessions', opts, async (t) => {
  const server = await startRedis(t);
  const client = await redisClient(t, server);
  const p = new RedisPresence(client, { node: 'n1', ttlMs: TTL });
  await p.add('alice', 's1', 'n1');
  await p.add('bob', 's2', 'n1');
  await server.stop();
  const calls: [string, () => Promise<unknown>][] = [
    ['add', () => p.add('carol', 's3', 'n1')],
    ['remove', () => p.remove('bob', 's2')],
    ['touch', () => p.touch('n1', ['s1'])],
    ['count', () => p.count('alice')],
    ['has', () => p.has('alice')],
    ['sessions', () => p.sessions('alice')],
    ['uids', () => p.uids()],
    ['nodes', () => p.nodes()],
  ];
  for (const [name, call] of calls) {
    await assert.rejects(call(), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'NOTIFY_ERR_STORE', `${name}: ${err.message}`);
      assert.match(err.message, /store unavailable \(redis: /);
      return true;
    });
  }

  await server.restart();
  await ready(client);
  assert.equal(await p.count('alice'), 0, 'the restarted Redis has nothing');
  await p.touch('n1', ['s1', 's3']);
  assert.deepEqual(await p.sessions('alice'), [{ node: 'n1', sid: 's1' }], 'the heartbeat re-added the live session');
  assert.deepEqual(await p.sessions('carol'), [{ node: 'n1', sid: 's3' }], 'and the one whose add failed but which the node still has');
  assert.deepEqual((await p.uids()).sort(), ['alice', 'carol']);
  assert.equal(await p.count('bob'), 0, 'the session removed while Redis was away is not brought back');
});

test('RedisPresence: one heartbeat refreshes thousands of sessions over many uids (one pipeline, a script per uid)', opts, async (t) => {
  const { clock, a, b } = await twoNodes(t);
  const sids: string[] = [];
  for (let i = 0; i < 3000; i++) sids.push(`s${i}`);
  await Promise.all(sids.map((sid, i) => a.add(`u${i % 700}`, sid, 'node-a')));
  clock.now += TTL - 1;
  await a.touch('node-a', sids);
  clock.now += TTL - 1;
  assert.equal((await b.uids()).length, 700, 'every uid still present, one ttl after the first');
  assert.equal(await b.count('u0'), 5);
  clock.now += 1;
  assert.deepEqual(await b.uids(), [], 'and all gone one ttl after the heartbeat');
});
