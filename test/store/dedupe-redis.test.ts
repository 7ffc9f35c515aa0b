import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RedisDedupe } from '../../src/store/dedupe-redis.js';
import { SKIP_REDIS, startRedis } from '../helpers/redis.js';
import { ready, redisClient } from '../helpers/redis-client.js';

const opts = { skip: SKIP_REDIS, timeout: 30_000 };
const WINDOW = 60_000;

test('RedisDedupe: a claim on node A is a repeat on node B, with A\'s answer once recorded; racing claims from two nodes: exactly one first', opts, async (t) => {
  const server = await startRedis(t);
  const a = new RedisDedupe(await redisClient(t, server));
  const b = new RedisDedupe(await redisClient(t, server));
  assert.deepEqual(await a.claim('order-1', WINDOW), { first: true });
  assert.deepEqual(await b.claim('order-1', WINDOW), { first: false, answer: undefined });
  await a.record('order-1', '{"ok":true}');
  assert.deepEqual(await b.claim('order-1', WINDOW), { first: false, answer: '{"ok":true}' });

  for (let i = 0; i < 20; i++) {
    const claims = await Promise.all([a.claim(`race-${i}`, WINDOW), b.claim(`race-${i}`, WINDOW), a.claim(`race-${i}`, WINDOW), b.claim(`race-${i}`, WINDOW)]);
    assert.equal(claims.filter((c) => c.first).length, 1, JSON.stringify(claims));
  }
});

test('RedisDedupe: the claim key is under the prefix with the window as TTL, and recording keeps that TTL', opts, async (t) => {
  const server = await startRedis(t);
  const d = new RedisDedupe(await redisClient(t, server), { prefix: 'pfx' });
  await d.claim('order-1', WINDOW);
  assert.equal(server.cli('--scan'), 'pfx:idem:order-1');
  server.cli('PEXPIRE', 'pfx:idem:order-1', '30000'); // as if half the window had passed
  await d.record('order-1', '{"final":true}');
  const ttl = Number(server.cli('PTTL', 'pfx:idem:order-1'));
  assert.ok(ttl > 0 && ttl <= 30_000, `the record kept the claim's TTL (${ttl} ms)`);
  await d.record('never-claimed', '{"x":1}');
  assert.equal(server.cli('EXISTS', 'pfx:idem:never-claimed'), '0', 'recording an id nobody claimed stores nothing');
  assert.deepEqual(await d.claim('zero', 0), { first: true });
  assert.deepEqual(await d.claim('zero', 0), { first: true }, 'a zero window dedupes nothing');
  assert.equal(server.cli('EXISTS', 'pfx:idem:zero'), '0');
});

test('RedisDedupe: the claim script run again with the same claim (as ioredis resends one in flight on a reconnect) still answers first', opts, async (t) => {
  const server = await startRedis(t);
  const client = await redisClient(t, server);
  const d = new RedisDedupe(client);
  // The command RedisDedupe registered, called as ioredis would resend it: same arguments.
  const claim = (client as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>).notifyDedupeClaim as (...a: unknown[]) => Promise<unknown>;
  const now = Date.now();
  assert.deepEqual(await claim.call(client, d.key('order-1'), now, WINDOW, 'token-1'), [1]);
  assert.deepEqual(await claim.call(client, d.key('order-1'), now, WINDOW, 'token-1'), [1], 'the resent claim is still the first');
  assert.deepEqual(await claim.call(client, d.key('order-1'), now, WINDOW, 'token-2'), [0, null], 'another claim is a repeat');
  assert.deepEqual(await d.claim('order-1', WINDOW), { first: false, answer: undefined });
});

test('RedisDedupe: Redis down: claim and record reject with NOTIFY_ERR_STORE (the publish is answered with an error, not sent); after a restart they work', opts, async (t) => {
  const server = await startRedis(t);
  const client = await redisClient(t, server);
  const d = new RedisDedupe(client);
  await server.stop();
  await assert.rejects(d.claim('order-1', WINDOW), { code: 'NOTIFY_ERR_STORE' });
  await assert.rejects(d.record('order-1', '{}'), { code: 'NOTIFY_ERR_STORE' });
  await server.restart();
  await ready(client);
  assert.deepEqual(await d.claim('order-1', WINDOW), { first: true });
  assert.deepEqual(await d.claim('order-1', WINDOW), { first: false, answer: undefined });
});
