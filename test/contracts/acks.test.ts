import { MemoryAckRelay } from '../../src/store/acks-memory.js';
import type { AckRelay } from '../../src/store/acks.js';
import { RedisAckRelay } from '../../src/store/acks-redis.js';
import { SKIP_REDIS, startRedis } from '../helpers/redis.js';
import { redisClient } from '../helpers/redis-client.js';
import { ackRelayContract } from './acks.contract.js';

ackRelayContract('MemoryAckRelay', () => new MemoryAckRelay());

ackRelayContract(
  'RedisAckRelay',
  async (t) => {
    const server = await startRedis(t);
    const relay = new RedisAckRelay(await redisClient(t, server), await redisClient(t, server, 'subscriber'), { node: 'node-a' });
    await relay.start();
    t.after(() => relay.close());
    return relay;
  },
  { skip: SKIP_REDIS },
);

// The same contract across two nodes: every wait on node A, every ack on node B. (Before an
// ack, a PING on A's connection: Redis has A's registration then, as it has in a real publish,
// whose delivery goes over that connection after the wait is registered. After it, a PING on
// A's subscriber: A has counted it, as on one node.)
ackRelayContract(
  'RedisAckRelay across nodes',
  async (t) => {
    const server = await startRedis(t);
    const clientA = await redisClient(t, server);
    const subscriberA = await redisClient(t, server, 'subscriber');
    const a = new RedisAckRelay(clientA, subscriberA, { node: 'node-a' });
    const b = new RedisAckRelay(await redisClient(t, server), await redisClient(t, server, 'subscriber'), { node: 'node-b' });
    await a.start();
    await b.start();
    t.after(() => Promise.all([a.close(), b.close()]));
    return {
      expect: (id, timeoutMs) => a.expect(id, timeoutMs),
      wait: (id, uids, timeoutMs) => a.wait(id, uids, timeoutMs),
      ack: async (id, uid) => {
        await clientA.ping();
        await b.ack(id, uid);
        // B's ack was PUBLISHed to A before B's ack resolved: A has read it once a PING on
        // A's subscriber connection is answered (pushes and replies arrive in order).
        await subscriberA.ping();
      },
    } satisfies AckRelay;
  },
  { skip: SKIP_REDIS },
);
