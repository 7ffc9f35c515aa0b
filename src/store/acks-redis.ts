import type { Redis } from 'ioredis';
import { NotifyError } from '../errors.js';
import type { Uid } from '../types.js';
import { type AckRelay, type AckWait, AckWaits } from './acks.js';
import { type RedisScript, checkPrefix, defineScript, viaRedis } from './redis-script.js';

export interface RedisAckRelayOptions {
  /** This node's name: its channel is `<prefix>:ack:<node>`. */
  node: string;
  /** Key prefix shared by every node of the cluster. @default 'notify' */
  prefix?: string;
  /** How much longer than its wait a waiter registration stays in Redis (a backstop; the wait removes it when it ends). @default 1000 */
  graceMs?: number;
}

/**
 * Registers this node as waiting for acks of a message. KEYS: the message's waiting nodes;
 * ARGV: node, ttlMs. The key lives as long as its longest wait (PEXPIRE only raises it).
 */
const WAIT = `
redis.call('SADD', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[2]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 1
`;

/**
 * Relays an ack to every node waiting for its message, except the acking node itself (which
 * counted it already). KEYS: the message's waiting nodes; ARGV: prefix, this node, payload.
 * Returns how many nodes it was sent to. Resending it is harmless: an ack counts once.
 */
const ACK = `
local n = 0
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if node ~= ARGV[2] then
    redis.call('PUBLISH', ARGV[1] .. ':ack:' .. node, ARGV[3])
    n = n + 1
  end
end
return n
`;

/**
 * The ack relay of a cluster on Redis. Each node subscribes once to its own channel
 * `<prefix>:ack:<node>`; a wait registers the node in `<prefix>:ackwait:<id>` (a SET of node
 * names, with the wait's timeout as TTL) when the publish expects its acks, before the message
 * goes out, and an ack runs one script that
 * PUBLISHes `[id, uid]` to each node in that set. An ack on the waiting node itself counts at
 * once, without Redis.
 *
 * Why a channel per node and not one per message id: the registration goes over the command
 * connection, like the publish whose acks are awaited, so Redis has it before any session can
 * receive the message (the wait is registered first); a SUBSCRIBE per message would go over the
 * subscriber connection, with no order against the publish, and cost two more round trips each.
 *
 * Pub/sub is at most once: an ack lost while a connection is down counts as no ack, and the
 * publish falls back to push (at least once, never silence), as the contract allows. A wait never
 * rejects; `ack` rejects (NOTIFY_ERR_STORE) when Redis cannot take it, after counting it here.
 */
export class RedisAckRelay implements AckRelay {
  readonly #redis: Redis;
  readonly #subscriber: Redis;
  readonly #prefix: string;
  readonly #node: string;
  readonly #graceMs: number;
  readonly #channel: string;
  readonly #waits = new AckWaits({
    onFirst: (id, timeoutMs) => this.#register(id, timeoutMs),
    onUntil: (id, timeoutMs) => this.#extend(id, timeoutMs),
    // Nobody here waits for it any more; the TTL removes it if this fails.
    onLast: (id) => void this.#redis.srem(this.key(id), this.#node).catch(() => {}),
  });
  readonly #wait: RedisScript;
  readonly #ack: RedisScript;
  #state: 'new' | 'running' | 'closed' = 'new';
  readonly #onMessage = (channel: string, message: string) => {
    if (channel !== this.#channel) return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(message);
    } catch {
      return;
    }
    if (Array.isArray(parsed) && typeof parsed[0] === 'string' && typeof parsed[1] === 'string') this.#count(parsed[0], parsed[1]);
  };

  /**
   * `redis` runs commands; `subscriber` is a connection of its own for SUBSCRIBE (a connection in
   * subscriber mode runs nothing else). It may be shared with other backends: this relay only
   * reads messages of its own channel.
   */
  constructor(redis: Redis, subscriber: Redis, opts: RedisAckRelayOptions) {
    if (typeof opts.node !== 'string' || opts.node === '') throw new TypeError('node must be a non-empty string');
    const graceMs = opts.graceMs ?? 1000;
    if (!Number.isInteger(graceMs) || graceMs < 0) throw new RangeError('graceMs must be a non-negative integer');
    if (redis === subscriber) throw new TypeError('the subscriber must be a connection of its own');
    this.#redis = redis;
    this.#subscriber = subscriber;
    this.#prefix = checkPrefix(opts.prefix ?? 'notify');
    this.#node = opts.node;
    this.#graceMs = graceMs;
    this.#channel = `${this.#prefix}:ack:${this.#node}`;
    this.#wait = defineScript(redis, 'notifyAckWait', 1, WAIT);
    this.#ack = defineScript(redis, 'notifyAckRelay', 1, ACK);
  }

  /** Subscribes to this node's channel (ioredis subscribes again by itself after a reconnect). Idempotent. */
  async start(): Promise<void> {
    if (this.#state !== 'new') return;
    this.#subscriber.on('message', this.#onMessage);
    try {
      await viaRedis(() => this.#subscriber.subscribe(this.#channel));
    } catch (err) {
      this.#subscriber.off('message', this.#onMessage);
      throw err;
    }
    this.#state = 'running';
  }

  /** The key that lists the nodes waiting for acks of message `id`. */
  key(id: string): string {
    return `${this.#prefix}:ackwait:${id}`;
  }

  expect(id: string, timeoutMs: number): AckWait {
    if (this.#state === 'closed') return { until: () => Promise.resolve(new Set()), end: () => {} };
    return this.#waits.expect(id, timeoutMs);
  }

  wait(id: string, uids: ReadonlySet<Uid>, timeoutMs: number): Promise<Set<Uid>> {
    if (uids.size === 0) return Promise.resolve(new Set());
    return this.expect(id, timeoutMs).until(uids, timeoutMs);
  }

  /**
   * Registers this node as waiting for acks of `id`: SADD and PEXPIRE in one MULTI, sent now, so
   * Redis runs it before any later command of this connection (the publish that sends the
   * message). Plain commands, not a script: a script that Redis lost would be resent as EVAL
   * after NOSCRIPT, behind the publish. If Redis cannot take it, acks from other nodes cannot
   * arrive: the wait ends at its timeout with those acked here.
   */
  #register(id: string, timeoutMs: number): void {
    try {
      this.#redis.multi().sadd(this.key(id), this.#node).pexpire(this.key(id), Math.ceil(timeoutMs) + this.#graceMs).exec().catch(() => {});
    } catch {
      // ioredis refused before sending (e.g. not connected): the same as a failed registration.
    }
  }

  /** The wait now waits `timeoutMs` more: its registration lasts at least that long (PEXPIRE only raises it). */
  #extend(id: string, timeoutMs: number): void {
    try {
      this.#wait.run([this.key(id)], [this.#node, Math.ceil(timeoutMs) + this.#graceMs]).catch(() => {});
    } catch {
      // As in #register.
    }
  }

  ack(id: string, uid: Uid): Promise<void> {
    if (this.#state === 'closed') return Promise.reject(new NotifyError('NOTIFY_ERR_CLOSED', 'the ack relay is closed'));
    this.#count(id, uid);
    return viaRedis(async () => {
      await this.#ack.run([this.key(id)], [this.#prefix, this.#node, JSON.stringify([id, uid])]);
    });
  }

  /** An ack of `uid` for message `id` counts for each wait of it under way on this node. */
  #count(id: string, uid: Uid): void {
    this.#waits.count(id, uid);
  }

  /** Publishes waiting for acks on this node now. */
  get waiting(): number {
    return this.#waits.waiting;
  }

  /** Ends every wait now (with the acks it has) and unsubscribes. Idempotent; the connections stay the caller's. */
  async close(): Promise<void> {
    if (this.#state === 'closed') return;
    const wasRunning = this.#state === 'running';
    this.#state = 'closed';
    this.#waits.endAll();
    this.#subscriber.off('message', this.#onMessage);
    if (wasRunning && this.#subscriber.status === 'ready') await this.#subscriber.unsubscribe(this.#channel).catch(() => {});
  }
}
