import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test, type TestContext } from 'node:test';
import type { Redis } from 'ioredis';
import { silentLogger } from '../../src/obs/log.js';
import { closeRedis, openRedis, parseRedisUrl } from '../../src/store/redis.js';
import { BROADCAST_STREAM, type Publication, streamOf } from '../../src/store/stream.js';
import { RedisStreams, type RedisStreamsOptions } from '../../src/store/stream-redis.js';
import { tempDir } from '../helpers/daemon.js';
import { SKIP_REDIS, startRedis } from '../helpers/redis.js';
import { stored } from '../contracts/streams.contract.js';

/** A node: its own two connections to the Redis at `url` and a RedisStreams on them. */
async function node(t: TestContext, url: string, opts: Partial<RedisStreamsOptions> = {}) {
  const target = parseRedisUrl(url);
  const client = await openRedis(target, { log: silentLogger });
  const subscriber = await openRedis(target, { log: silentLogger, role: 'subscriber' });
  const streams = new RedisStreams(client, subscriber, { size: 1000, ttlMs: 3_600_000, ...opts });
  const remote: Publication[] = [];
  streams.onRemote((p) => remote.push(p));
  t.after(async () => {
    streams.close();
    await Promise.all([closeRedis(client), closeRedis(subscriber)]);
  });
  return { streams, client, subscriber, remote };
}

/** Waits (events, with a generous safety timeout) until `cond` holds. */
async function until(cond: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function ready(client: Redis): Promise<void> {
  if (client.status !== 'ready') await once(client, 'ready');
}

test('RedisStreams, two nodes on one Redis: a publish on A reaches B for a followed stream (not A itself), and both read the same history', { skip: SKIP_REDIS }, async (t) => {
  const redis = await startRedis(t);
  const a = await node(t, redis.url, { node: 'node-a' });
  const b = await node(t, redis.url, { node: 'nœud-b' });
  const alice = streamOf('alice');
  await a.streams.follow(alice);
  await b.streams.follow(alice);
  await b.streams.follow(BROADCAST_STREAM);

  const [p1] = await a.streams.publish([alice], { id: 'mé1', frame: '{"text":"héllo"}', json: true });
  const [p2] = await a.streams.publish([streamOf('bob')], { id: 'not-followed', frame: 'x', json: false });
  const both = await a.streams.publish([alice, BROADCAST_STREAM], { id: 'm2', frame: 'to both ✓', json: false });
  await until(() => b.remote.length === 3, "A's publications at B");
  assert.deepEqual(b.remote, [p1, ...both].map(stored), 'B gets exactly what A stored, in order, and nothing of a stream it does not follow');
  assert.equal(p2?.offset, 1);
  assert.deepEqual(a.remote, [], 'A is not handed its own publications');

  // B publishes too: A, which follows alice, gets it.
  const [p3] = await b.streams.publish([alice], { id: 'from-b', frame: 'b says hi', json: false });
  await until(() => a.remote.length === 1, "B's publication at A");
  assert.deepEqual(a.remote, [p3].map(stored));
  assert.equal(p3?.offset, 3, "B's publish continues A's offsets");

  const fromA = await a.streams.history(alice, { limit: 10 });
  const fromB = await b.streams.history(alice, { limit: 10 });
  assert.deepEqual(fromA, fromB, 'one history for both nodes');
  assert.deepEqual(fromA.publications.map((p) => [p.id, p.offset, p.frame, p.json]), [['mé1', 1, '{"text":"héllo"}', true], ['m2', 2, 'to both ✓', false], ['from-b', 3, 'b says hi', false]]);
  assert.deepEqual(await b.streams.locate(alice, 'mé1'), { ...(stored(p1) as Publication), frame: '', json: false }, 'B finds what A published');

  // Unfollowed: nothing more reaches B.
  await b.streams.unfollow(alice);
  await a.streams.publish([alice, BROADCAST_STREAM], { id: 'm4', frame: 'late', json: false });
  await until(() => b.remote.length === 4, 'the broadcast publication at B');
  assert.deepEqual(b.remote.map((p) => [p.stream, p.id]).slice(3), [[BROADCAST_STREAM, 'm4']], 'only the stream B still follows');
});

test('RedisStreams, two nodes publishing to one stream at once: offsets are contiguous and unique, each node sees the other\'s in offset order', { skip: SKIP_REDIS }, async (t) => {
  const redis = await startRedis(t);
  const a = await node(t, redis.url, { node: 'a' });
  const b = await node(t, redis.url, { node: 'b' });
  const s = streamOf('shared');
  await a.streams.follow(s);
  await b.streams.follow(s);
  const N = 200;
  const sends: Promise<Publication[]>[] = [];
  for (let i = 0; i < N; i++) {
    sends.push(a.streams.publish([s], { id: `a${i}`, frame: `a${i}`, json: false }));
    sends.push(b.streams.publish([s, BROADCAST_STREAM], { id: `b${i}`, frame: `b${i}`, json: false }));
  }
  const pubs = (await Promise.all(sends)).map((p) => p[0] as Publication);
  assert.deepEqual(pubs.map((p) => p.offset).sort((x, y) => x - y), Array.from({ length: 2 * N }, (_, i) => i + 1), 'every offset once, none skipped');
  const ofA = pubs.filter((p) => p.id.startsWith('a'));
  assert.deepEqual(ofA.map((p) => p.id), ofA.slice().sort((x, y) => x.offset - y.offset).map((p) => p.id), "one node's publishes keep its call order");
  assert.equal(new Set(pubs.map((p) => p.epoch)).size, 1);

  await until(() => a.remote.length === N && b.remote.length === N, 'each node to get the other\'s publications');
  for (const [who, got] of [['A', a.remote], ['B', b.remote]] as const) {
    const offsets = got.map((p) => p.offset);
    assert.deepEqual(offsets, offsets.slice().sort((x, y) => x - y), `${who} gets them in offset order`);
  }
  assert.ok(a.remote.every((p) => p.id.startsWith('b')) && b.remote.every((p) => p.id.startsWith('a')));

  const page = await a.streams.history(s, { limit: 1000 });
  assert.deepEqual(page.publications.map((p) => p.offset), Array.from({ length: 2 * N }, (_, i) => i + 1));
  assert.deepEqual(page.top.offset, 2 * N);
  const ats = page.publications.map((p) => p.at);
  assert.deepEqual(ats, ats.slice().sort((x, y) => x - y), '`at` grows with the offsets');
  assert.equal((await b.streams.history(BROADCAST_STREAM, { limit: 1000 })).top.offset, N);
});

test('RedisStreams, Redis restarted empty: the next publish starts a new epoch (offset 1 of the old epoch is never reused), and `at` keeps growing', { skip: SKIP_REDIS }, async (t) => {
  const redis = await startRedis(t);
  const a = await node(t, redis.url, { node: 'a' });
  const alice = streamOf('alice');
  const before = [...(await a.streams.publish([alice], { id: 'm1', frame: '1', json: false })), ...(await a.streams.publish([alice], { id: 'm2', frame: '2', json: false }))];
  const old = before[1] as Publication;
  assert.equal(old.offset, 2);

  await redis.restart();
  await ready(a.client);
  const [next] = await a.streams.publish([alice], { id: 'm3', frame: '3', json: false });
  assert.ok(next !== undefined);
  assert.equal(next.offset, 1, 'the lost stream starts over');
  assert.notEqual(next.epoch, old.epoch, '… in a new epoch, so (offset 1, old epoch) is never a second message');
  assert.ok(next.at > old.at, `at ${next.at} after ${old.at}`);
  const page = await a.streams.history(alice, { after: { offset: old.offset, epoch: old.epoch }, limit: 10 });
  assert.deepEqual(page.top, { offset: 1, epoch: next.epoch });
  assert.deepEqual(page.publications.map((p) => p.id), ['m3'], 'a position of the old epoch reads from the oldest stored');
  assert.equal(await a.streams.locate(alice, 'm1'), undefined);
});

test('RedisStreams, Redis down: a publish rejects at once with NOTIFY_ERR_STORE (nothing queued); when it is back publishing works and followers resubscribe', { skip: SKIP_REDIS }, async (t) => {
  const redis = await startRedis(t);
  const a = await node(t, redis.url, { node: 'a' });
  const b = await node(t, redis.url, { node: 'b' });
  const alice = streamOf('alice');
  await b.streams.follow(alice);
  const resubscribed: string[][] = [];
  b.streams.onResubscribed((streams) => resubscribed.push(streams));
  await a.streams.publish([alice], { id: 'before', frame: 'x', json: false });
  await until(() => b.remote.length === 1, 'the first publication at B');

  await redis.stop();
  const refused = await Promise.allSettled(Array.from({ length: 50 }, (_, i) => a.streams.publish([alice], { id: `down${i}`, frame: 'x', json: false })));
  for (const r of refused) {
    assert.equal(r.status, 'rejected');
    assert.equal((r.reason as { code?: string }).code, 'NOTIFY_ERR_STORE');
    assert.match((r.reason as Error).message, /^store unavailable \(/);
  }
  await assert.rejects(Promise.resolve(a.streams.history(alice, { limit: 10 })), { code: 'NOTIFY_ERR_STORE' });
  await assert.rejects(Promise.resolve(a.streams.locate(alice, 'before')), { code: 'NOTIFY_ERR_STORE' });
  // Followed while Redis is away: refused now, subscribed when it is back.
  await assert.rejects(Promise.resolve(b.streams.follow(streamOf('bob'))), { code: 'NOTIFY_ERR_STORE' });

  await redis.restart();
  await ready(a.client);
  await until(() => resubscribed.length === 1, "B's subscriber to be back and subscribed");
  assert.deepEqual(resubscribed[0]?.slice().sort(), [alice, streamOf('bob')]);
  const [p] = await a.streams.publish([alice], { id: 'after', frame: 'y', json: false });
  assert.equal(p?.offset, 1, 'Redis came back empty: a new epoch');
  const [q] = await a.streams.publish([streamOf('bob')], { id: 'to-bob', frame: 'z', json: false });
  await until(() => b.remote.length === 3, 'the publications after the outage at B');
  assert.deepEqual(b.remote.slice(1), [p, q].map(stored));
  assert.equal(a.streams.size, 3, 'what this node stored: refused publishes are not counted');
});

test('RedisStreams, failover to a replica (a new master_replid, the data still there): a new epoch, so no offset of the old primary is reused', { skip: SKIP_REDIS }, async (t) => {
  // A replica writes the RDB it syncs to its working directory, and a redis-server started
  // later from that directory would load it: each gets a directory of its own.
  const primary = await startRedis(t, ['--dir', tempDir(t, 'notify-redis-')]);
  const replica = await startRedis(t, ['--replicaof', '127.0.0.1', String(primary.port), '--dir', tempDir(t, 'notify-redis-')]);
  const a = await node(t, primary.url, { node: 'a' });
  const alice = streamOf('alice');
  await a.streams.publish([alice], { id: 'm1', frame: '1', json: false });
  const [old] = await a.streams.publish([alice], { id: 'm2', frame: '2', json: false });
  await until(() => /master_link_status:up/.test(replica.cli('INFO', 'replication')) && replica.cli('XLEN', 'notify:{u:alice}:h') === '2', 'the replica to have the stream');

  replica.cli('REPLICAOF', 'NO', 'ONE');
  const b = await node(t, replica.url, { node: 'b' });
  const stale = await b.streams.history(alice, { limit: 10 });
  assert.notEqual(stale.top.epoch, old?.epoch, 'the promoted replica answers in a new epoch');
  assert.deepEqual(stale, { publications: [], top: { offset: 0, epoch: stale.top.epoch } }, "the old epoch's stream is no position in the new one");
  assert.equal(await b.streams.locate(alice, 'm2'), undefined);
  const [next] = await b.streams.publish([alice], { id: 'm3', frame: '3', json: false });
  assert.deepEqual([next?.offset, next?.epoch], [1, stale.top.epoch]);
  assert.ok((next as Publication).at > (old as Publication).at);
  assert.deepEqual((await b.streams.history(alice, { limit: 10 })).publications.map((p) => p.id), ['m3']);
});

test('RedisStreams: keys live under the prefix, every one with a TTL except the epoch hash; a stream keeps at most size entries', { skip: SKIP_REDIS }, async (t) => {
  const redis = await startRedis(t);
  const a = await node(t, redis.url, { prefix: 'tenant1', size: 5 });
  for (let i = 0; i < 20; i++) await a.streams.publish([streamOf('alice'), streamOf('bob')], { id: `m${i}`, frame: `frame ${i}`, json: false });
  await a.streams.publish([streamOf('carol')], { id: 'solo', frame: 'one stream: inline', json: false });
  const keys = redis.cli('KEYS', '*').split('\n').sort();
  assert.ok(keys.every((k) => k.startsWith('tenant1:')), keys.join(' '));
  for (const k of keys) {
    const ttl = Number(redis.cli('PTTL', k));
    if (k === 'tenant1:epoch') assert.equal(ttl, -1);
    else assert.ok(ttl > 0, `${k} has a TTL (${ttl})`);
  }
  assert.equal(redis.cli('XLEN', 'tenant1:{u:alice}:h'), '5');
  assert.ok(keys.includes('tenant1:{u:carol}:m') && keys.includes('tenant1:{u:carol}:h'));
  assert.equal(keys.filter((k) => k.startsWith('tenant1:body:')).length, 20, 'a publish to several streams stores its frame once');
  assert.deepEqual((await a.streams.history(streamOf('bob'), { limit: 10 })).publications.map((p) => p.id), ['m15', 'm16', 'm17', 'm18', 'm19']);
});
