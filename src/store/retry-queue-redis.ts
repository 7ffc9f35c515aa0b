import type { Redis } from 'ioredis';
import { NotifyError } from '../errors.js';
import { UlidGenerator } from '../ids.js';
import type { Message } from '../types.js';
import type { PendingRetry, RetryEntry, RetryQueue } from './retry-queue.js';
import { storeError } from '../errors.js';

/** Options of a RedisRetryQueue. */
export interface RedisRetryQueueOptions {
  /** Every key starts with `<prefix>:` (cluster.prefix). @default 'notify' */
  prefix?: string;
  /** Entries held at most, by every node together; `hold` rejects NOTIFY_ERR_STORE beyond. @default 100000 */
  maxEntries?: number;
  /**
   * How long an entry's HASH lives after its last write: a backstop only (every entry is released
   * when its delivery ends); an entry older than this is forgotten. @default 604800000 (7 days)
   */
  entryTtlMs?: number;
  /** The clock for `claim` when it is not given `now`. @default Date.now */
  now?: () => number;
}

const DEFAULTS: Required<RedisRetryQueueOptions> = { prefix: 'notify', maxEntries: 100_000, entryTtlMs: 7 * 24 * 3_600_000, now: Date.now };

/** Expired leases moved to the ready set per claim at most, so one claim never blocks Redis long. */
const PROMOTE_MAX = 10_000;

// Key layout (P = prefix), every key under the hash tag {rq} so that each script touches one slot:
//   P:{rq}:leased     ZSET  key -> lease end (ms): entries some owner holds
//   P:{rq}:ready      ZSET  key -> due at (ms): entries whose lease ended (expired or handed back)
//   P:{rq}:job:<key>  HASH  transport uid target msg attempts due reason owner lease; PEXPIRE entryTtlMs
//   P:{rq}:own:<node> SET   the keys an owner holds (for handBack)
// An entry is in exactly one of leased and ready. Keys are ULIDs made by the caller, so `hold`
// resent by ioredis after a reconnect finds its entry instead of adding a second one, and ties
// in due time are taken in the order they were held.

/** KEYS leased ready; ARGV key jobPrefix ownPrefix owner lease(ms) ttl max, then field value pairs. Returns the count, or -count when full. */
const HOLD = `
local leased, ready = KEYS[1], KEYS[2]
local key, job, own, owner, lease, ttl, max = ARGV[1], ARGV[2] .. ARGV[1], ARGV[3] .. ARGV[4], ARGV[4], ARGV[5], ARGV[6], tonumber(ARGV[7])
local held = redis.call('ZCARD', leased) + redis.call('ZCARD', ready)
if redis.call('EXISTS', job) == 1 then return held end
if held >= max then return -held end
local fields = {}
for i = 8, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', job, 'owner', owner, 'lease', lease, unpack(fields))
redis.call('PEXPIRE', job, ttl)
redis.call('ZADD', leased, lease, key)
redis.call('SADD', own, key)
return held + 1
`;

/** KEYS leased ready; ARGV key jobPrefix attempts due reason lease ttl. An entry gone (released) stays gone. */
const UPDATE = `
local job = ARGV[2] .. ARGV[1]
if redis.call('EXISTS', job) == 0 then return 0 end
redis.call('HSET', job, 'attempts', ARGV[3], 'due', ARGV[4], 'reason', ARGV[5], 'lease', ARGV[6])
redis.call('PEXPIRE', job, ARGV[7])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[6], ARGV[1])
return 1
`;

/** KEYS leased ready; ARGV key jobPrefix ownPrefix. Returns the count left. */
const RELEASE = `
local job = ARGV[2] .. ARGV[1]
local owner = redis.call('HGET', job, 'owner')
if owner then redis.call('SREM', ARGV[3] .. owner, ARGV[1]) end
redis.call('DEL', job)
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return redis.call('ZCARD', KEYS[1]) + redis.call('ZCARD', KEYS[2])
`;

/**
 * KEYS leased ready; ARGV now limit leaseMs owner jobPrefix ownPrefix ttl promoteMax.
 * Moves ended leases to ready (by due time), then leases the `limit` soonest due to `owner`, each
 * until max(due, now) + leaseMs. One script: no two claimers ever get the same entry.
 */
const CLAIM = `
local leased, ready = KEYS[1], KEYS[2]
local now, limit, leaseMs, owner, jobp, ownp, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4], ARGV[5], ARGV[6], ARGV[7]
local ended = redis.call('ZRANGEBYSCORE', leased, '-inf', now, 'LIMIT', 0, tonumber(ARGV[8]))
for _, key in ipairs(ended) do
  redis.call('ZREM', leased, key)
  local due = redis.call('HGET', jobp .. key, 'due')
  if due then redis.call('ZADD', ready, due, key) end
end
local out = {}
while #out < limit do
  local keys = redis.call('ZRANGE', ready, 0, limit - #out - 1)
  if #keys == 0 then break end
  for _, key in ipairs(keys) do
    redis.call('ZREM', ready, key)
    local job = jobp .. key
    local f = redis.call('HMGET', job, 'transport', 'uid', 'target', 'msg', 'attempts', 'due', 'reason', 'owner')
    if f[1] then
      local due = tonumber(f[6])
      local lease = math.max(due, now) + leaseMs
      if f[8] ~= owner then
        if f[8] then redis.call('SREM', ownp .. f[8], key) end
        redis.call('SADD', ownp .. owner, key)
      end
      redis.call('HSET', job, 'owner', owner, 'lease', string.format('%d', lease))
      redis.call('PEXPIRE', job, ttl)
      redis.call('ZADD', leased, lease, key)
      out[#out + 1] = { key, f[1], f[2], f[3], f[4], f[5], f[6], f[7] }
    end
  end
end
return out
`;

/** KEYS leased ready; ARGV ownPrefix owner jobPrefix. Ends the owner's leases: its entries are ready now. */
const HAND_BACK = `
local keys = redis.call('SMEMBERS', ARGV[1] .. ARGV[2])
for _, key in ipairs(keys) do
  local job = ARGV[3] .. key
  local due = redis.call('HGET', job, 'due')
  redis.call('ZREM', KEYS[1], key)
  if due then
    redis.call('HSET', job, 'lease', '0')
    redis.call('ZADD', KEYS[2], due, key)
  else
    redis.call('SREM', ARGV[1] .. ARGV[2], key)
  end
end
return #keys
`;

type ClaimRow = [string, string, string, string, string, string, string, string];

interface RetryCommands {
  notifyRqHold(leased: string, ready: string, ...args: (string | number)[]): Promise<number>;
  notifyRqUpdate(leased: string, ready: string, key: string, jobPrefix: string, attempts: number, due: number, reason: string, lease: number, ttl: number): Promise<number>;
  notifyRqRelease(leased: string, ready: string, key: string, jobPrefix: string, ownPrefix: string): Promise<number>;
  notifyRqClaim(leased: string, ready: string, now: number, limit: number, leaseMs: number, owner: string, jobPrefix: string, ownPrefix: string, ttl: number, promoteMax: number): Promise<ClaimRow[]>;
  notifyRqHandBack(leased: string, ready: string, ownPrefix: string, owner: string, jobPrefix: string): Promise<number>;
}

/**
 * The retry queue on Redis, shared by every node, with leases (the scale-out reference §5.6,
 * BullMQ's delayed-job pattern): an entry is leased to the node that holds it until its due time
 * plus `leaseMs`; once the lease ends (the node was killed, or handed it back at a stop), the
 * next `claim` by any node moves it to the ready set and leases it to the claimer, in one Lua
 * script, so two nodes never claim the same entry at once. Like the shared SQLite queue (not
 * `exclusive`), an entry of another owner is taken only when its lease has ended: the other
 * node may be alive. A Redis failure rejects with NOTIFY_ERR_STORE.
 */
export class RedisRetryQueue implements RetryQueue {
  readonly #redis: Redis & RetryCommands;
  readonly #maxEntries: number;
  readonly #ttlMs: number;
  readonly #now: () => number;
  readonly #ids = new UlidGenerator();
  readonly #k;
  #size: number | undefined;

  constructor(redis: Redis, options: RedisRetryQueueOptions = {}) {
    const o = Object.assign({}, DEFAULTS, options);
    if (typeof o.prefix !== 'string' || o.prefix === '' || /[{}]/.test(o.prefix)) throw new TypeError('prefix must be a non-empty string without { or }');
    if (!Number.isInteger(o.maxEntries) || o.maxEntries < 1) throw new RangeError('maxEntries must be a positive integer');
    if (!Number.isInteger(o.entryTtlMs) || o.entryTtlMs < 1) throw new RangeError('entryTtlMs must be a positive integer');
    this.#maxEntries = o.maxEntries;
    this.#ttlMs = o.entryTtlMs;
    this.#now = o.now;
    const base = `${o.prefix}:{rq}`;
    this.#k = { leased: `${base}:leased`, ready: `${base}:ready`, job: `${base}:job:`, own: `${base}:own:` };
    redis.defineCommand('notifyRqHold', { numberOfKeys: 2, lua: HOLD });
    redis.defineCommand('notifyRqUpdate', { numberOfKeys: 2, lua: UPDATE });
    redis.defineCommand('notifyRqRelease', { numberOfKeys: 2, lua: RELEASE });
    redis.defineCommand('notifyRqClaim', { numberOfKeys: 2, lua: CLAIM });
    redis.defineCommand('notifyRqHandBack', { numberOfKeys: 2, lua: HAND_BACK });
    this.#redis = redis as Redis & RetryCommands;
  }

  async #run<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      throw err instanceof NotifyError ? err : storeError(err, 'redis');
    }
  }

  hold(entry: RetryEntry, owner: string, leaseMs: number): Promise<string> {
    return this.#run(async () => {
      const k = this.#k;
      const key = this.#ids.next();
      const fields = ['transport', entry.transport, 'uid', entry.uid, 'target', entry.target, 'msg', JSON.stringify(entry.msg), 'attempts', entry.attempts, 'due', entry.dueAt, 'reason', entry.reason];
      const held = await this.#redis.notifyRqHold(k.leased, k.ready, key, k.job, k.own, owner, entry.dueAt + leaseMs, this.#ttlMs, this.#maxEntries, ...fields);
      if (held < 0) {
        this.#size = -held;
        throw new NotifyError(
          'NOTIFY_ERR_STORE',
          `the retry queue is full: ${-held} deliveries already wait for a retry (at most ${this.#maxEntries}); this one is not retried`,
        );
      }
      this.#size = held;
      return key;
    });
  }

  update(key: string, attempts: number, dueAt: number, reason: string, leaseMs: number): Promise<void> {
    return this.#run(async () => {
      await this.#redis.notifyRqUpdate(this.#k.leased, this.#k.ready, key, this.#k.job, attempts, dueAt, reason, dueAt + leaseMs, this.#ttlMs);
    });
  }

  release(key: string): Promise<void> {
    return this.#run(async () => {
      this.#size = await this.#redis.notifyRqRelease(this.#k.leased, this.#k.ready, key, this.#k.job, this.#k.own);
    });
  }

  claim(owner: string, opts: { limit: number; leaseMs: number; now?: number }): Promise<PendingRetry[]> {
    if (!Number.isInteger(opts.limit) || opts.limit < 1) return Promise.reject(new RangeError('limit must be a positive integer'));
    return this.#run(async () => {
      const k = this.#k;
      const rows = await this.#redis.notifyRqClaim(k.leased, k.ready, opts.now ?? this.#now(), opts.limit, opts.leaseMs, owner, k.job, k.own, this.#ttlMs, PROMOTE_MAX);
      return rows.map(([key, transport, uid, target, msg, attempts, due, reason]) => ({
        key,
        transport,
        uid,
        target,
        msg: JSON.parse(msg) as Message,
        attempts: Number(attempts),
        dueAt: Number(due),
        reason,
      }));
    });
  }

  handBack(owner: string): Promise<void> {
    return this.#run(async () => {
      await this.#redis.notifyRqHandBack(this.#k.leased, this.#k.ready, this.#k.own, owner, this.#k.job);
    });
  }

  /**
   * Entries held by every node, as of this queue's last hold or release (undefined before
   * either): a synchronous figure for logs, not a query.
   */
  get size(): number | undefined {
    return this.#size;
  }
}
