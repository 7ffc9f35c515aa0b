import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { test, type TestContext } from 'node:test';
import { RedisAckRelay } from '../../src/store/acks-redis.js';
import { type RedisServer, SKIP_REDIS, startRedis } from '../helpers/redis.js';
import { ready, redisClient } from '../helpers/redis-client.js';

const opts = { skip: SKIP_REDIS, timeout: 30_000 };
/** Longer than any test may take: a wait with it that resolves at all resolved early. */
const NEVER_MS = 60_000;

/** A node's relay: its own command and subscriber connections to `server`. */
async function node(t: TestContext, server: RedisServer, name: string) {
  const client = await redisClient(t, server);
  const subscriber = await redisClient(t, server, 'subscriber');
  const relay = new RedisAckRelay(client, subscriber, { node: name });
  await relay.start();
  t.after(() => relay.close());
  return { relay, client, subscriber };
}

/** Waits (polling Redis) until node `name`'s channel has a subscriber: after a restart, ioredis subscribes again by itself. */
async function subscribed(server: RedisServer, name: string): Promise<void> {
  while (server.cli('PUBSUB', 'NUMSUB', `notify:ack:${name}`).split('\n')[1] !== '1') await sleep(20);
}

test('RedisAckRelay: an ack sent to node B resolves the wait made on node A; the registration has a TTL and is gone when the wait ends', opts, async (t) => {
  const server = await startRedis(t);
  const a = await node(t, server, 'node-a');
  const b = await node(t, server, 'node-b');
  const w = a.relay.wait('m1', new Set(['alice', 'bob']), NEVER_MS);
  await a.client.ping(); // Redis has A's registration (a publish would follow it on this connection)
  assert.deepEqual(server.cli('SMEMBERS', 'notify:ackwait:m1'), 'node-a');
  const ttl = Number(server.cli('PTTL', 'notify:ackwait:m1'));
  assert.ok(ttl > 0 && ttl <= NEVER_MS + 1000, `the registration expires (${ttl} ms)`);
  await b.relay.ack('m1', 'alice');
  await b.relay.ack('m1', 'bob');
  assert.deepEqual([...(await w)].sort(), ['alice', 'bob']);
  assert.equal(a.relay.waiting, 0);
  await a.client.ping();
  assert.equal(server.cli('EXISTS', 'notify:ackwait:m1'), '0', 'nobody waits: the key is removed');
});

test('RedisAckRelay: waits for one message on two nodes each get an ack sent to a third; an ack on the waiting node counts there at once', opts, async (t) => {
  const server = await startRedis(t);
  const a = await node(t, server, 'node-a');
  const b = await node(t, server, 'node-b');
  const c = await node(t, server, 'node-c');
  const wa = a.relay.wait('m1', new Set(['alice']), NEVER_MS);
  const wb = b.relay.wait('m1', new Set(['alice', 'bob']), NEVER_MS);
  await Promise.all([a.client.ping(), b.client.ping()]);
  await c.relay.ack('m1', 'alice');
  assert.deepEqual([...(await wa)], ['alice']);
  await b.relay.ack('m1', 'bob');
  assert.deepEqual([...(await wb)].sort(), ['alice', 'bob']);
});

test('RedisAckRelay: Redis down: a wait still resolves (no acks from elsewhere), an ack rejects with NOTIFY_ERR_STORE but counts on its own node; after a restart acks cross nodes again', opts, async (t) => {
  const server = await startRedis(t);
  const a = await node(t, server, 'node-a');
  const b = await node(t, server, 'node-b');
  await server.stop();

  const lonely = a.relay.wait('m1', new Set(['alice']), 50);
  await assert.rejects(b.relay.ack('m1', 'alice'), { code: 'NOTIFY_ERR_STORE' });
  assert.deepEqual([...(await lonely)], [], 'the wait ends at its timeout, never rejects');

  const local = a.relay.wait('m2', new Set(['alice']), NEVER_MS);
  await assert.rejects(a.relay.ack('m2', 'alice'), { code: 'NOTIFY_ERR_STORE' });
  assert.deepEqual([...(await local)], ['alice'], 'an ack on the waiting node needs no Redis');

  await server.restart();
  await Promise.all([ready(a.client), ready(b.client), ready(a.subscriber), ready(b.subscriber)]);
  await subscribed(server, 'node-a');
  const w = a.relay.wait('m3', new Set(['alice']), NEVER_MS);
  await a.client.ping();
  await b.relay.ack('m3', 'alice');
  assert.deepEqual([...(await w)], ['alice']);
});

test('RedisAckRelay: close ends the waits with what they have and unsubscribes; later waits resolve at once, acks reject', opts, async (t) => {
  const server = await startRedis(t);
  const a = await node(t, server, 'node-a');
  const w = a.relay.wait('m1', new Set(['alice', 'bob']), NEVER_MS);
  await a.relay.ack('m1', 'bob');
  await a.relay.close();
  assert.deepEqual([...(await w)], ['bob']);
  assert.equal(server.cli('PUBSUB', 'NUMSUB', 'notify:ack:node-a').split('\n')[1], '0');
  assert.deepEqual([...(await a.relay.wait('m2', new Set(['alice']), NEVER_MS))], []);
  await assert.rejects(a.relay.ack('m2', 'alice'), { code: 'NOTIFY_ERR_CLOSED' });
});
