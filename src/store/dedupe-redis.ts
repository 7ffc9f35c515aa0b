import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Claim, Dedupe } from './dedupe.js';
import { type RedisScript, checkPrefix, defineScript, viaRedis } from './redis-script.js';

export interface RedisDedupeOptions {
  /** Key prefix shared by every node of the cluster. @default 'notify' */
  prefix?: string;
  /** The clock that decides whether a window is over (tests move it). Redis's own key TTL stays the backstop. @default Date.now */
  now?: () => number;
}

/**
 * Claims a publisher id. KEYS[1] the id's hash; ARGV now, windowMs, token.
 * Fields: `u` the window's end (ms, the claiming node's clock), `o` the claim's token, `a` the
 * answer once recorded. A claim whose window is over is replaced. The token makes a resent
 * claim (ioredis resends a command that was in flight when the connection dropped) find its own
 * claim and answer first again, instead of turning the first publish into its own repeat.
 * Returns {1} for the first claim, {0, answer-or-nil} for a repeat.
 */
const CLAIM = `
local v = redis.call('HMGET', KEYS[1], 'u', 'o', 'a')
local now = tonumber(ARGV[1])
if v[1] and tonumber(v[1]) > now then
  if v[2] == ARGV[3] then return {1} end
  return {0, v[3]}
end
redis.call('DEL', KEYS[1])
local window = tonumber(ARGV[2])
if window <= 0 then return {1} end
redis.call('HSET', KEYS[1], 'u', now + window, 'o', ARGV[3])
redis.call('PEXPIRE', KEYS[1], window)
return {1}
`;

/** Records the answer of a claimed id, keeping its TTL (HSET does not touch it). KEYS[1]; ARGV answer. */
const RECORD = `
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'a', ARGV[1]) end
return 1
`;

/**
 * Publisher-id dedupe shared by every node on one Redis: one hash per id,
 * `<prefix>:idem:<id>` = {u: window end, o: claim token, a: answer}, with the window as its TTL.
 * Claiming and recording are each one script, so exactly one node gets the first claim.
 *
 * Durability is Redis's: with `appendonly yes` and `appendfsync everysec` a claim can be lost
 * with the last second of writes on a crash of Redis itself (and on a failover to a replica that
 * was behind), together with the message it belongs to.
 */
export class RedisDedupe implements Dedupe {
  readonly #prefix: string;
  readonly #now: () => number;
  readonly #claim: RedisScript;
  readonly #record: RedisScript;

  constructor(redis: Redis, opts: RedisDedupeOptions = {}) {
    this.#prefix = checkPrefix(opts.prefix ?? 'notify');
    this.#now = opts.now ?? Date.now;
    this.#claim = defineScript(redis, 'notifyDedupeClaim', 1, CLAIM);
    this.#record = defineScript(redis, 'notifyDedupeRecord', 1, RECORD);
  }

  /** The key of a publisher id. Ids are not per uid, so no hash tag: each is a key of its own. */
  key(id: string): string {
    return `${this.#prefix}:idem:${id}`;
  }

  claim(id: string, windowMs: number): Promise<Claim> {
    if (!Number.isFinite(windowMs) || windowMs < 0) return Promise.reject(new RangeError('windowMs must be a non-negative number'));
    return viaRedis(async () => {
      const reply = (await this.#claim.run([this.key(id)], [this.#now(), Math.ceil(windowMs), randomUUID()])) as [number, string | null | undefined];
      if (reply[0] === 1) return { first: true };
      return { first: false, answer: reply[1] ?? undefined };
    });
  }

  record(id: string, answer: string): Promise<void> {
    return viaRedis(async () => {
      await this.#record.run([this.key(id)], [answer]);
    });
  }
}
