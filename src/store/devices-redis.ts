import type { Redis } from 'ioredis';
import { NotifyError } from '../errors.js';
import type { Uid } from '../types.js';
import type { DeviceDirectory, RetiredEntry } from './devices.js';
import { storeError } from '../errors.js';

/** Options of a RedisDevices. */
export interface RedisDevicesOptions {
  /** Every key starts with `<prefix>:` (cluster.prefix). @default 'notify' */
  prefix?: string;
  /** Retired tokens kept per transport; beyond, the oldest retirements are forgotten. @default 1000000 */
  maxRetired?: number;
  /** Tokens per uid and transport; registering one more drops that uid's oldest. @default 1000 */
  maxTokensPerUid?: number;
  /** The clock for registration and retirement times. @default Date.now */
  now?: () => number;
}

const DEFAULTS: Required<RedisDevicesOptions> = { prefix: 'notify', maxRetired: 1_000_000, maxTokensPerUid: 1000, now: Date.now };

// Key layout (P = prefix, T = transport), after the scale-out reference §5.1/§5.6:
//   P:dev:T:{u:<uid>}  HASH   token -> "<source>:<ms>" (source api = registered, yaml = seeded)
//   P:dev:T:owner      HASH   token -> uid (a token belongs to one uid per transport)
//   P:dev:T:uids       SET    uids with at least one token (count and list without a scan of every key)
//   P:dev:T:seed       HASH   token -> uid, the last seed (what the next one replaces)
//   P:dev:T:retired    ZSET   token -> retired at (ms); bounded by maxRetired
//   P:dev:T:why        HASH   token -> reason of the retirement
//   P:dev:transports   SET    transports with any state (for retired() of every transport)
// The uid comes last in its key so that no uid can spell another key; a transport name may not
// hold '{' or '}' (it would move the hash tag). Register, remove, retire and seed touch one
// uid's HASH (two when a token moves) and the transport's keys in one script: atomic on a
// standalone or Sentinel-managed Redis (what store/redis.ts connects to); a Redis Cluster
// would need every device key of a transport under one hash tag instead.

/** Drops a token from its uid's HASH and the uid from the uid set when it has no token left. */
const UNLINK = `
local function unlink(base, uids, uid, token)
  local k = base .. uid .. '}'
  redis.call('HDEL', k, token)
  if redis.call('EXISTS', k) == 0 then redis.call('SREM', uids, uid) end
end
local function retire(retired, why, token, reason, now, max)
  if redis.call('ZSCORE', retired, token) then return 0 end
  redis.call('ZADD', retired, now, token)
  redis.call('HSET', why, token, reason)
  local over = redis.call('ZCARD', retired) - max
  if over > 0 then
    local old = redis.call('ZRANGE', retired, 0, over - 1)
    redis.call('ZREMRANGEBYRANK', retired, 0, over - 1)
    for i = 1, #old do redis.call('HDEL', why, old[i]) end
  end
  return 1
end
`;

/**
 * KEYS owner uids retired why uidKey transports; ARGV base uid token now maxPerUid transport.
 * Returns 1 when the pair is new. A resend (ioredis after a reconnect) finds it there: 0, same state.
 */
const REGISTER = `${UNLINK}
local owner, uids, retired, why, key, transports = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local base, uid, token, now, max = ARGV[1], ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
redis.call('ZREM', retired, token)
redis.call('HDEL', why, token)
redis.call('SADD', transports, ARGV[6])
local old = redis.call('HGET', owner, token)
redis.call('HSET', key, token, 'api:' .. now)
if old == uid then return 0 end
if old then unlink(base, uids, old, token) end
redis.call('HSET', owner, token, uid)
redis.call('SADD', uids, uid)
if redis.call('HLEN', key) > max then
  local all = redis.call('HGETALL', key)
  local oldest, oldestAt = nil, nil
  for i = 1, #all, 2 do
    local at = tonumber(string.match(all[i + 1], ':(%d+)$')) or 0
    if all[i] ~= token and (oldestAt == nil or at < oldestAt) then oldest, oldestAt = all[i], at end
  end
  if oldest then
    redis.call('HDEL', key, oldest)
    redis.call('HDEL', owner, oldest)
  end
end
return 1
`;

/** KEYS owner uids retired why; ARGV base uid token now reason maxRetired. 1 when uid had it. */
const REMOVE = `${UNLINK}
local owner, uids, retired, why = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local base, uid, token = ARGV[1], ARGV[2], ARGV[3]
if redis.call('HGET', owner, token) ~= uid then return 0 end
redis.call('HDEL', owner, token)
unlink(base, uids, uid, token)
retire(retired, why, token, ARGV[5], ARGV[4], tonumber(ARGV[6]))
return 1
`;

/** KEYS owner uids retired why transports; ARGV base token reason now maxRetired transport. {uid or '', fresh}. */
const RETIRE = `${UNLINK}
local owner, uids, retired, why, transports = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local base, token = ARGV[1], ARGV[2]
redis.call('SADD', transports, ARGV[6])
local uid = redis.call('HGET', owner, token)
if uid then
  redis.call('HDEL', owner, token)
  unlink(base, uids, uid, token)
end
return { uid or '', retire(retired, why, token, ARGV[3], ARGV[4], tonumber(ARGV[5])) }
`;

/**
 * KEYS owner uids retired seed transports; ARGV base now transport, then uid token pairs.
 * Replaces the transport's previous seed: its tokens no longer listed (or listed under another
 * uid) leave, unless registered since; listed tokens join unless retired or registered to a uid
 * (a registration wins over the YAML, as in the embedded directory). Running it twice with the
 * same tokens (nodes starting together) changes nothing the second time.
 */
const SEED = `${UNLINK}
local owner, uids, retired, seed, transports = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local base, now = ARGV[1], ARGV[2]
redis.call('SADD', transports, ARGV[3])
local listed = {}
for i = 4, #ARGV, 2 do listed[ARGV[i + 1]] = ARGV[i] end
local function seeded(uid, token)
  local v = redis.call('HGET', base .. uid .. '}', token)
  return v and string.sub(v, 1, 5) == 'yaml:'
end
local prev = redis.call('HGETALL', seed)
for i = 1, #prev, 2 do
  local token, uid = prev[i], prev[i + 1]
  if listed[token] ~= uid and redis.call('HGET', owner, token) == uid and seeded(uid, token) then
    redis.call('HDEL', owner, token)
    unlink(base, uids, uid, token)
  end
end
redis.call('DEL', seed)
for token, uid in pairs(listed) do
  redis.call('HSET', seed, token, uid)
  if not redis.call('ZSCORE', retired, token) then
    local cur = redis.call('HGET', owner, token)
    if not cur or (cur ~= uid and seeded(cur, token)) then
      if cur then unlink(base, uids, cur, token) end
      redis.call('HSET', owner, token, uid)
      redis.call('HSET', base .. uid .. '}', token, 'yaml:' .. now)
      redis.call('SADD', uids, uid)
    end
  end
end
return 1
`;

interface DeviceCommands {
  notifyDevRegister(owner: string, uids: string, retired: string, why: string, key: string, transports: string, base: string, uid: string, token: string, now: number, max: number, transport: string): Promise<number>;
  notifyDevRemove(owner: string, uids: string, retired: string, why: string, base: string, uid: string, token: string, now: number, reason: string, max: number): Promise<number>;
  notifyDevRetire(owner: string, uids: string, retired: string, why: string, transports: string, base: string, token: string, reason: string, now: number, max: number, transport: string): Promise<[string, number]>;
  notifyDevSeed(owner: string, uids: string, retired: string, seed: string, transports: string, base: string, now: number, transport: string, ...pairs: string[]): Promise<number>;
}

/**
 * The device directory on Redis, shared by every node: what one node registers, removes or
 * retires, every other node reads at its next call (each read is a Redis round trip; nothing is
 * cached here, so nothing is stale beyond the call in flight). Writes are Lua scripts, durable
 * (as far as Redis persists) when they resolve; a Redis failure rejects with NOTIFY_ERR_STORE.
 */
export class RedisDevices implements DeviceDirectory {
  readonly #redis: Redis & DeviceCommands;
  readonly #prefix: string;
  readonly #maxRetired: number;
  readonly #maxPerUid: number;
  readonly #now: () => number;

  constructor(redis: Redis, options: RedisDevicesOptions = {}) {
    const o = Object.assign({}, DEFAULTS, options);
    if (typeof o.prefix !== 'string' || o.prefix === '' || /[{}]/.test(o.prefix)) throw new TypeError('prefix must be a non-empty string without { or }');
    if (!Number.isInteger(o.maxRetired) || o.maxRetired < 1) throw new RangeError('maxRetired must be a positive integer');
    if (!Number.isInteger(o.maxTokensPerUid) || o.maxTokensPerUid < 1) throw new RangeError('maxTokensPerUid must be a positive integer');
    this.#prefix = o.prefix;
    this.#maxRetired = o.maxRetired;
    this.#maxPerUid = o.maxTokensPerUid;
    this.#now = o.now;
    redis.defineCommand('notifyDevRegister', { numberOfKeys: 6, lua: REGISTER });
    redis.defineCommand('notifyDevRemove', { numberOfKeys: 4, lua: REMOVE });
    redis.defineCommand('notifyDevRetire', { numberOfKeys: 5, lua: RETIRE });
    redis.defineCommand('notifyDevSeed', { numberOfKeys: 5, lua: SEED });
    this.#redis = redis as Redis & DeviceCommands;
  }

  #keys(transport: string) {
    if (typeof transport !== 'string' || transport === '' || /[{}]/.test(transport)) {
      throw new NotifyError('NOTIFY_ERR_INTERNAL', `transport name ${JSON.stringify(transport)} cannot be a Redis key part (empty, or with { or })`);
    }
    const t = `${this.#prefix}:dev:${transport}`;
    return {
      base: `${t}:{u:`,
      uid: (uid: Uid) => `${t}:{u:${uid}}`,
      owner: `${t}:owner`,
      uids: `${t}:uids`,
      seed: `${t}:seed`,
      retired: `${t}:retired`,
      why: `${t}:why`,
      transports: `${this.#prefix}:dev:transports`,
    };
  }

  async #run<T>(op: () => Promise<T>): Promise<T> {
    try {
      return await op();
    } catch (err) {
      throw err instanceof NotifyError ? err : storeError(err, 'redis');
    }
  }

  targets(transport: string, uid: Uid): Promise<string[]> {
    return this.#run(() => this.#redis.hkeys(this.#keys(transport).uid(uid)));
  }

  has(transport: string, uid: Uid): Promise<boolean> {
    return this.#run(async () => (await this.#redis.exists(this.#keys(transport).uid(uid))) === 1);
  }

  list(transport: string, uid?: Uid): Promise<{ uid: Uid; token: string }[]> {
    return this.#run(async () => {
      const k = this.#keys(transport);
      if (uid !== undefined) return (await this.#redis.hkeys(k.uid(uid))).map((token) => ({ uid, token }));
      // HSCAN in pages, so a large directory never blocks Redis in one command; a page may repeat
      // an entry (SCAN's guarantee), hence the map.
      const byToken = new Map<string, Uid>();
      let cursor = '0';
      do {
        const [next, flat] = await this.#redis.hscan(k.owner, cursor, 'COUNT', 1000);
        for (let i = 0; i + 1 < flat.length; i += 2) byToken.set(flat[i] as string, flat[i + 1] as string);
        cursor = next;
      } while (cursor !== '0');
      return [...byToken].map(([token, u]) => ({ uid: u, token }));
    });
  }

  count(transport: string): Promise<{ devices: number; uids: number }> {
    return this.#run(async () => {
      const k = this.#keys(transport);
      const [devices, uids] = await Promise.all([this.#redis.hlen(k.owner), this.#redis.scard(k.uids)]);
      return { devices, uids };
    });
  }

  register(transport: string, uid: Uid, token: string): Promise<{ added: boolean }> {
    return this.#run(async () => {
      const k = this.#keys(transport);
      const added = await this.#redis.notifyDevRegister(k.owner, k.uids, k.retired, k.why, k.uid(uid), k.transports, k.base, uid, token, this.#now(), this.#maxPerUid, transport);
      return { added: added === 1 };
    });
  }

  remove(transport: string, uid: Uid, token: string): Promise<boolean> {
    return this.#run(async () => {
      const k = this.#keys(transport);
      return (await this.#redis.notifyDevRemove(k.owner, k.uids, k.retired, k.why, k.base, uid, token, this.#now(), 'removed through the API', this.#maxRetired)) === 1;
    });
  }

  retire(transport: string, token: string, reason: string): Promise<{ uid: Uid | undefined; fresh: boolean }> {
    return this.#run(async () => {
      const k = this.#keys(transport);
      const [uid, fresh] = await this.#redis.notifyDevRetire(k.owner, k.uids, k.retired, k.why, k.transports, k.base, token, reason, this.#now(), this.#maxRetired, transport);
      return { uid: uid === '' ? undefined : uid, fresh: fresh === 1 };
    });
  }

  isRetired(transport: string, token: string): Promise<boolean> {
    return this.#run(async () => (await this.#redis.zscore(this.#keys(transport).retired, token)) !== null);
  }

  retired(transport?: string): Promise<RetiredEntry[]> {
    return this.#run(async () => {
      const names = transport !== undefined ? [transport] : (await this.#redis.smembers(`${this.#prefix}:dev:transports`)).sort();
      const out: RetiredEntry[] = [];
      for (const name of names) {
        const k = this.#keys(name);
        const flat = await this.#redis.zrange(k.retired, 0, -1, 'WITHSCORES');
        const tokens = flat.filter((_, i) => i % 2 === 0);
        if (tokens.length === 0) continue;
        const reasons = await this.#redis.hmget(k.why, ...tokens);
        tokens.forEach((token, i) => out.push({ transport: name, token, reason: reasons[i] ?? '', at: Number(flat[2 * i + 1]) }));
      }
      return out.sort((a, b) => a.at - b.at);
    });
  }

  seed(tokens: ReadonlyMap<string, ReadonlyMap<Uid, readonly string[]>>): Promise<void> {
    return this.#run(async () => {
      const now = this.#now();
      for (const [transport, byUid] of tokens) {
        const k = this.#keys(transport);
        const pairs: string[] = [];
        for (const [uid, list] of byUid) for (const token of list) pairs.push(uid, token);
        await this.#redis.notifyDevSeed(k.owner, k.uids, k.retired, k.seed, k.transports, k.base, now, transport, ...pairs);
      }
    });
  }
}
