import type { Redis } from 'ioredis';
import type { Uid } from '../types.js';
import type { Presence, SessionEntry, SessionInfo } from './presence.js';
import { type RedisScript, checkPrefix, defineScript, viaRedis } from './redis-script.js';

export interface RedisPresenceOptions {
  /** This node's name: the sessions it adds are `<node>:<sid>`. No `:` in it. */
  node: string;
  /** Key prefix shared by every node of the cluster. @default 'notify' */
  prefix?: string;
  /**
   * How long a session counts after its node last added or touched it. Set it to a few of the
   * live hub's heartbeat intervals (it touches every session once per interval), so a node that
   * dies stops counting that long after its last heartbeat. @default 90000 (three 30 s heartbeats)
   */
  ttlMs?: number;
  /** The clock of expiry decisions (every node's clock should agree to well under ttlMs). @default Date.now */
  now?: () => number;
}

/**
 * Adds a session. KEYS: the uid's sessions, the uid index; ARGV: member, expiry, uid, now, ttlMs.
 * The uid index scores each uid with its latest session expiry (ZADD GT), so it leaves the index
 * when its last session expires; the key TTLs are backstops, refreshed by every add and touch.
 */
const ADD = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
if ARGV[6] ~= '' then
  redis.call('HSET', KEYS[3], ARGV[1], ARGV[6])
  redis.call('PEXPIRE', KEYS[3], ARGV[5])
end
redis.call('ZADD', KEYS[2], 'GT', ARGV[2], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[5])
return 1
`;

/**
 * The heartbeat of one uid's sessions on a node. KEYS as ADD; ARGV: expiry, uid, now, ttlMs,
 * members… Re-adds members that are missing (a Redis restarted empty, or a node stalled past its
 * ttl, finds its live sessions again at the next heartbeat).
 */
const TOUCH = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
for i = 5, #ARGV do redis.call('ZADD', KEYS[1], ARGV[1], ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('PEXPIRE', KEYS[3], ARGV[4]) end
redis.call('ZADD', KEYS[2], 'GT', ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
`;

/**
 * Removes a session. KEYS as ADD; ARGV: member, uid, now. The uid's index score becomes its
 * latest remaining expiry; a uid with none left leaves the index. Returns the sessions left.
 */
const REMOVE = `
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if #top == 0 then
  redis.call('ZREM', KEYS[2], ARGV[2])
else
  redis.call('ZADD', KEYS[2], top[2], ARGV[2])
end
return redis.call('ZCARD', KEYS[1])
`;

/** Drops expired entries of a sorted set, then counts. KEYS: the set; ARGV: now. */
const COUNT = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZCARD', KEYS[1])
`;

/**
 * A uid's sessions with what they are: drops expired members (and the info of members gone),
 * then lists members and their info. KEYS: the uid's sessions, their info hash; ARGV: now.
 */
const SESSIONS = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
local members = redis.call('ZRANGE', KEYS[1], 0, -1)
local live = {}
for _, m in ipairs(members) do live[m] = true end
for _, f in ipairs(redis.call('HKEYS', KEYS[2])) do
  if not live[f] then redis.call('HDEL', KEYS[2], f) end
end
if #members == 0 then return {{}, {}} end
return {members, redis.call('HMGET', KEYS[2], unpack(members))}
`;

/** Drops expired entries of a sorted set, then lists its members. KEYS: the set; ARGV: now. */
const MEMBERS = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
return redis.call('ZRANGE', KEYS[1], 0, -1)
`;

/** A session this node added: its uid and the node it was added for. */
interface Mine {
  uid: Uid;
  node: string;
}

/**
 * Presence shared by every node on one Redis (the layout of the cluster issue):
 * - `<prefix>:{u:<uid>}:p` ZSET: member `<node>:<sid>`, score = the time it stops counting
 *   (added or touched + ttlMs). Reads drop expired members first (a script), so the sessions of
 *   a node that stopped its heartbeat (killed, cut off) stop counting ttlMs after its last one.
 * - `<prefix>:uids` ZSET: each uid with sessions, scored by its latest session expiry; what
 *   `uids()` reads, so a broadcast costs the uids present, never a scan of the keyspace.
 * - `<prefix>:nodes` ZSET: the node registry, node → heartbeat expiry; `nodes()` lists the
 *   live ones, and a node that closes leaves it.
 *
 * Add and remove each are one script over the uid's set and the uid index (atomic together on
 * one primary, standalone or Sentinel; the uid index is not in the uid's hash slot, so on Redis
 * Cluster they would need splitting). Every script is idempotent, as ioredis may resend one.
 *
 * In this process: only this node's own sessions (sid → uid), to refresh them on `touch` and to
 * move a session that changes uid; every read asks Redis, as the other nodes' sessions are there.
 * Calls never throw: a Redis failure is a NOTIFY_ERR_STORE rejection.
 */
export class RedisPresence implements Presence {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #node: string;
  readonly #ttlMs: number;
  readonly #now: () => number;
  readonly #mine = new Map<string, Mine>();
  readonly #add: RedisScript;
  readonly #touch: RedisScript;
  readonly #remove: RedisScript;
  readonly #count: RedisScript;
  readonly #members: RedisScript;
  readonly #sessions: RedisScript;

  constructor(redis: Redis, opts: RedisPresenceOptions) {
    const o = { prefix: 'notify', ttlMs: 90_000, now: Date.now, ...opts };
    this.#prefix = checkPrefix(o.prefix);
    this.#node = checkNode(o.node);
    if (!Number.isInteger(o.ttlMs) || o.ttlMs <= 0) throw new RangeError('ttlMs must be a positive integer');
    this.#ttlMs = o.ttlMs;
    this.#now = o.now;
    this.#redis = redis;
    this.#add = defineScript(redis, 'notifyPresenceAdd3', 3, ADD);
    this.#touch = defineScript(redis, 'notifyPresenceTouch3', 3, TOUCH);
    this.#remove = defineScript(redis, 'notifyPresenceRemove3', 3, REMOVE);
    this.#sessions = defineScript(redis, 'notifyPresenceSessions', 2, SESSIONS);
    this.#count = defineScript(redis, 'notifyPresenceCount', 1, COUNT);
    this.#members = defineScript(redis, 'notifyPresenceMembers', 1, MEMBERS);
  }

  /** The sorted set of a uid's sessions. */
  key(uid: Uid): string {
    return `${this.#prefix}:{u:${uid}}:p`;
  }

  /** The hash of a uid's sessions' info (member -> JSON SessionInfo). */
  #infoKey(uid: Uid): string {
    return `${this.#prefix}:{u:${uid}}:pi`;
  }

  get #uidsKey(): string {
    return `${this.#prefix}:uids`;
  }

  get #nodesKey(): string {
    return `${this.#prefix}:nodes`;
  }

  add(uid: Uid, sid: string, node: string, info?: SessionInfo): Promise<void> {
    const misuse = nodeError(node);
    if (misuse) return Promise.reject(misuse);
    return viaRedis(async () => {
      const now = this.#now();
      const steps: Promise<unknown>[] = [];
      // A session belongs to one uid: a sid bound again to another uid leaves the first one.
      const before = this.#mine.get(sid);
      if (before !== undefined && (before.uid !== uid || before.node !== node)) {
        steps.push(this.#remove.run([this.key(before.uid), this.#uidsKey, this.#infoKey(before.uid)], [`${before.node}:${sid}`, before.uid, now]));
      }
      this.#mine.set(sid, { uid, node });
      const about = info === undefined ? '' : JSON.stringify(info);
      steps.push(this.#add.run([this.key(uid), this.#uidsKey, this.#infoKey(uid)], [`${node}:${sid}`, now + this.#ttlMs, uid, now, this.#ttlMs, about]));
      await Promise.all(steps);
    });
  }

  remove(uid: Uid, sid: string): Promise<void> {
    return viaRedis(async () => {
      const e = this.#mine.get(sid);
      const node = e?.uid === uid ? e.node : this.#node;
      if (e?.uid === uid) this.#mine.delete(sid);
      await this.#remove.run([this.key(uid), this.#uidsKey, this.#infoKey(uid)], [`${node}:${sid}`, uid, this.#now()]);
    });
  }

  /**
   * The node's heartbeat: the node stays registered and each of `sids` (those of its sessions
   * this instance added and still has) counts for another ttlMs, re-added if Redis lost it. One
   * pipeline, one script per uid.
   */
  touch(node: string, sids: readonly string[]): Promise<void> {
    const misuse = nodeError(node);
    if (misuse) return Promise.reject(misuse);
    return viaRedis(async () => {
      const now = this.#now();
      const expiry = now + this.#ttlMs;
      const byUid = new Map<Uid, string[]>();
      for (const sid of sids) {
        const e = this.#mine.get(sid);
        if (e === undefined || e.node !== node) continue;
        let members = byUid.get(e.uid);
        if (members === undefined) byUid.set(e.uid, (members = []));
        members.push(`${node}:${sid}`);
      }
      const p = this.#redis.pipeline();
      p.zremrangebyscore(this.#nodesKey, '-inf', now);
      p.zadd(this.#nodesKey, expiry, node);
      p.pexpire(this.#nodesKey, this.#ttlMs);
      for (const [uid, members] of byUid) this.#touch.queue(p, [this.key(uid), this.#uidsKey, this.#infoKey(uid)], [expiry, uid, now, this.#ttlMs, ...members]);
      await exec(p);
    });
  }

  count(uid: Uid): Promise<number> {
    return viaRedis(async () => Number(await this.#count.run([this.key(uid)], [this.#now()])));
  }

  async has(uid: Uid): Promise<boolean> {
    return (await this.count(uid)) > 0;
  }

  sessions(uid: Uid): Promise<SessionEntry[]> {
    return viaRedis(async () => {
      const [members, infos] = (await this.#sessions.run([this.key(uid), this.#infoKey(uid)], [this.#now()])) as [string[], (string | null)[]];
      return members.map((m, i) => {
        const e = parseMember(m);
        const info = infos[i];
        if (typeof info === 'string') e.info = JSON.parse(info) as SessionInfo;
        return e;
      });
    });
  }

  uids(): Promise<Uid[]> {
    return viaRedis(async () => (await this.#members.run([this.#uidsKey], [this.#now()])) as Uid[]);
  }

  /** The nodes whose heartbeat is current (registered by `touch` within ttlMs). */
  nodes(): Promise<string[]> {
    return viaRedis(async () => (await this.#members.run([this.#nodesKey], [this.#now()])) as string[]);
  }

  /** This process's own sessions (those it added and has not removed). */
  get local(): number {
    return this.#mine.size;
  }

  /**
   * A graceful stop: this node's remaining sessions are removed and it leaves the node registry,
   * so the others stop counting it now rather than after ttlMs. Rejects if Redis cannot be
   * reached (the sessions then expire by themselves).
   */
  close(): Promise<void> {
    return viaRedis(async () => {
      const now = this.#now();
      const p = this.#redis.pipeline();
      const nodes = new Set([this.#node]);
      for (const [sid, e] of this.#mine) {
        nodes.add(e.node);
        this.#remove.queue(p, [this.key(e.uid), this.#uidsKey, this.#infoKey(e.uid)], [`${e.node}:${sid}`, e.uid, now]);
      }
      this.#mine.clear();
      for (const node of nodes) p.zrem(this.#nodesKey, node);
      await exec(p);
    });
  }
}

function nodeError(node: unknown): TypeError | undefined {
  if (typeof node !== 'string' || node === '' || node.includes(':')) return new TypeError(`node must be a non-empty name without ":"; got ${JSON.stringify(node)}`);
  return undefined;
}

function checkNode(node: unknown): string {
  const err = nodeError(node);
  if (err) throw err;
  return node as string;
}

/** `<node>:<sid>`: node names have no `:`, session ids may. */
function parseMember(member: string): SessionEntry {
  const cut = member.indexOf(':');
  return { node: member.slice(0, cut), sid: member.slice(cut + 1) };
}

/** Runs a pipeline; rejects with the first command's error (a pipeline resolves even when some fail). */
async function exec(p: ReturnType<Redis['pipeline']>): Promise<void> {
  const results = await p.exec();
  if (results === null) throw new Error('pipeline discarded');
  for (const [err] of results) if (err) throw err;
}
