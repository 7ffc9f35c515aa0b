import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type { Redis } from 'ioredis';
import { NotifyError } from '../../src/errors.js';
import { silentLogger } from '../../src/obs/log.js';
import { RedisDevices, type RedisDevicesOptions } from '../../src/store/devices-redis.js';
import { closeRedis, openRedis, parseRedisUrl } from '../../src/store/redis.js';
import type { Uid } from '../../src/types.js';
import { SKIP_REDIS, type RedisServer, startRedis } from '../helpers/redis.js';

const opts = { skip: SKIP_REDIS };
const sorted = <T>(xs: readonly T[]): T[] => [...xs].sort();
const seedOf = (tokens: Record<string, Record<Uid, string[]>>) => new Map(Object.entries(tokens).map(([t, byUid]) => [t, new Map(Object.entries(byUid))]));

/** A node: its own connection to the shared Redis and its own directory on it. */
async function node(t: TestContext, redis: RedisServer, o: RedisDevicesOptions = {}): Promise<{ dir: RedisDevices; client: Redis }> {
  const client = await openRedis(parseRedisUrl(redis.url), { log: silentLogger });
  t.after(() => closeRedis(client));
  return { dir: new RedisDevices(client, o), client };
}

/** Retries `op` until it resolves (Redis coming back after a restart). */
async function whenBack<T>(op: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await op();
    } catch (err) {
      if (i > 300) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

test('RedisDevices, two nodes: a token registered on A is listed and used by B; retired on B, A sees it retired and a later seed on A does not bring it back', opts, async (t) => {
  const redis = await startRedis(t);
  const { dir: a } = await node(t, redis);
  const { dir: b } = await node(t, redis);
  const yaml = seedOf({ apns: { alice: ['yaml-tok'] } });
  await Promise.all([a.seed(yaml), b.seed(yaml)]);

  assert.deepEqual(await a.register('apns', 'alice', 'run-tok'), { added: true });
  assert.deepEqual(sorted(await b.targets('apns', 'alice')), ['run-tok', 'yaml-tok'], 'B reads what A registered');
  assert.equal(await b.has('apns', 'alice'), true);
  assert.deepEqual(sorted((await b.list('apns')).map((e) => `${e.uid}/${e.token}`)), ['alice/run-tok', 'alice/yaml-tok']);
  assert.deepEqual(await b.count('apns'), { devices: 2, uids: 1 });
  assert.deepEqual(await b.register('apns', 'alice', 'run-tok'), { added: false }, 'B knows the pair is there');

  for (const token of ['run-tok', 'yaml-tok']) assert.deepEqual(await b.retire('apns', token, '410 Unregistered'), { uid: 'alice', fresh: true });
  assert.deepEqual(await a.retire('apns', 'run-tok', '410 Unregistered'), { uid: undefined, fresh: false }, 'A retiring it too is not fresh: logged once in the cluster');
  assert.equal(await a.isRetired('apns', 'run-tok'), true);
  assert.deepEqual(await a.targets('apns', 'alice'), []);
  assert.equal(await a.has('apns', 'alice'), false);
  assert.deepEqual(await a.count('apns'), { devices: 0, uids: 0 });

  await a.seed(yaml);
  assert.deepEqual(await a.targets('apns', 'alice'), [], 'the YAML token stays retired across a seed on another node');
  assert.deepEqual(await b.targets('apns', 'alice'), []);
  assert.deepEqual(sorted((await a.retired('apns')).map((e) => `${e.token}/${e.reason}`)), ['run-tok/410 Unregistered', 'yaml-tok/410 Unregistered']);

  assert.deepEqual(await b.register('apns', 'alice', 'yaml-tok'), { added: true }, 'the device registers it again through B');
  assert.equal(await a.isRetired('apns', 'yaml-tok'), false);
  assert.deepEqual(await a.targets('apns', 'alice'), ['yaml-tok']);
});

test('RedisDevices, three nodes starting together seed the same YAML at once: one result, no retired token back, run-time registrations kept', opts, async (t) => {
  const redis = await startRedis(t);
  const nodes = await Promise.all([1, 2, 3].map(() => node(t, redis)));
  const [a, b, c] = nodes.map((n) => n.dir) as [RedisDevices, RedisDevices, RedisDevices];
  const yaml = seedOf({ apns: { alice: ['y1', 'y2'], bob: ['y3'] }, hook: { carol: ['h1'] } });
  await a.seed(yaml);
  await a.retire('apns', 'y2', '410');
  await b.register('apns', 'dave', 'y3');
  await b.register('apns', 'erin', 'runtime');
  await Promise.all([a.seed(yaml), b.seed(yaml), c.seed(yaml), a.seed(yaml)]);
  for (const d of [a, b, c]) {
    assert.deepEqual(sorted((await d.list('apns')).map((e) => `${e.uid}/${e.token}`)), ['alice/y1', 'dave/y3', 'erin/runtime']);
    assert.deepEqual(await d.count('apns'), { devices: 3, uids: 3 });
    assert.deepEqual(await d.targets('hook', 'carol'), ['h1']);
  }
});

test('RedisDevices, two nodes registering one token for different uids at once: it ends with exactly one uid, and the indexes agree', opts, async (t) => {
  const redis = await startRedis(t);
  const { dir: a } = await node(t, redis);
  const { dir: b } = await node(t, redis);
  await Promise.all([a.seed(seedOf({ apns: {} })), b.seed(seedOf({ apns: {} }))]);
  const uids = Array.from({ length: 20 }, (_, i) => `u${i}`);
  await Promise.all(uids.map((uid, i) => (i % 2 === 0 ? a : b).register('apns', uid, 'contested')));
  const holders = [];
  for (const uid of uids) if ((await a.targets('apns', uid)).includes('contested')) holders.push(uid);
  assert.equal(holders.length, 1, `one uid holds it: ${holders.join(', ')}`);
  assert.deepEqual(await b.list('apns'), [{ uid: holders[0], token: 'contested' }]);
  assert.deepEqual(await b.count('apns'), { devices: 1, uids: 1 });
});

test('RedisDevices: every key is under the prefix, per-uid keys carry the {u:<uid>} hash tag, and two prefixes on one Redis do not mix', opts, async (t) => {
  const redis = await startRedis(t);
  const { dir: one, client } = await node(t, redis, { prefix: 'one' });
  const { dir: two } = await node(t, redis, { prefix: 'two' });
  await one.seed(seedOf({ apns: { alice: ['y1'] } }));
  await one.register('apns', 'bob', 'r1');
  await one.retire('apns', 'y1', 'gone');
  await two.register('apns', 'bob', 'other');
  const keys = sorted(await client.keys('*'));
  assert.ok(keys.length > 0);
  for (const k of keys) assert.match(k, /^(one|two):dev:/, k);
  assert.ok(keys.includes('one:dev:apns:{u:bob}'), keys.join(' '));
  assert.deepEqual(await one.targets('apns', 'bob'), ['r1']);
  assert.deepEqual(await two.targets('apns', 'bob'), ['other']);
  assert.deepEqual(await two.retired(), []);
  assert.throws(() => new RedisDevices(client, { prefix: 'a{b}' }), TypeError);
  await assert.rejects(async () => one.targets('ap{ns}', 'bob'), (err: unknown) => err instanceof NotifyError && /cannot be a Redis key part/.test(err.message));
});

test('RedisDevices: bounded: the oldest retirements beyond maxRetired are dropped; a uid beyond maxTokensPerUid loses its oldest token', opts, async (t) => {
  const redis = await startRedis(t);
  let clock = 1_000;
  const { dir: d } = await node(t, redis, { maxRetired: 3, maxTokensPerUid: 2, now: () => clock });
  await d.seed(seedOf({ apns: {} }));
  for (const token of ['r1', 'r2', 'r3', 'r4']) {
    clock += 10;
    await d.retire('apns', token, `gone ${token}`);
  }
  assert.deepEqual((await d.retired('apns')).map((e) => `${e.token}/${e.reason}/${e.at}`), ['r2/gone r2/1020', 'r3/gone r3/1030', 'r4/gone r4/1040']);
  for (const token of ['t1', 't2', 't3']) {
    clock += 10;
    await d.register('apns', 'alice', token);
  }
  assert.deepEqual(sorted(await d.targets('apns', 'alice')), ['t2', 't3']);
  assert.deepEqual(await d.count('apns'), { devices: 2, uids: 1 });
});

test('RedisDevices: Redis down: every call rejects with NOTIFY_ERR_STORE (nothing hangs, nothing crashes); after a restart the same directory works again', opts, async (t) => {
  const redis = await startRedis(t);
  const { dir: d } = await node(t, redis);
  await d.seed(seedOf({ apns: { alice: ['y1'] } }));
  await d.register('apns', 'bob', 'r1');
  await redis.stop();
  const calls: [string, () => unknown][] = [
    ['targets', () => d.targets('apns', 'alice')],
    ['has', () => d.has('apns', 'alice')],
    ['list', () => d.list('apns')],
    ['list uid', () => d.list('apns', 'alice')],
    ['count', () => d.count('apns')],
    ['register', () => d.register('apns', 'alice', 'x')],
    ['remove', () => d.remove('apns', 'alice', 'y1')],
    ['retire', () => d.retire('apns', 'y1', '410')],
    ['isRetired', () => d.isRetired('apns', 'y1')],
    ['retired', () => d.retired()],
    ['seed', () => d.seed(seedOf({ apns: { alice: ['y1'] } }))],
  ];
  for (const [name, call] of calls) {
    await assert.rejects(
      async () => call(),
      (err: unknown) => err instanceof NotifyError && err.code === 'NOTIFY_ERR_STORE' && err.status === 503 && /^store unavailable \(/.test(err.message),
      name,
    );
  }
  await redis.restart();
  // This server keeps nothing across a restart: the next seed puts the YAML back.
  await whenBack(() => d.seed(seedOf({ apns: { alice: ['y1'] } })));
  assert.deepEqual(await d.targets('apns', 'alice'), ['y1']);
  assert.deepEqual(await d.register('apns', 'bob', 'r2'), { added: true });
  assert.deepEqual(await d.count('apns'), { devices: 2, uids: 2 });
});
