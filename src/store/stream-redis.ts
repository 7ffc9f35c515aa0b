import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import { storeError } from '../errors.js';
import type { HistoryPage, HistoryQuery, MessageStreams, Publication, StreamMessage } from './stream.js';

export interface RedisStreamsOptions {
  /** Publications kept per stream (XADD MAXLEN, exact). */
  size: number;
  /** How long a publication is kept at most (history.ttl); also the stream key's PEXPIRE. */
  ttlMs: number;
  /**
   * Key prefix: every key and channel starts with `<prefix>:`.
   * @default 'notify'
   */
  prefix?: string;
  /**
   * This node's name, carried by each publication it PUBLISHes so that it can ignore its own.
   * @default `<hostname>-<pid>-<random>`
   */
  node?: string;
  /**
   * How long a stream's meta hash (its epoch and last offset) outlives its last publish. Kept
   * longer than the history so that a stream whose history expired does not start over at 1.
   * @default 30 days (at least ttlMs)
   */
  metaTtlMs?: number;
  /** The clock expiry decisions read (Redis PEXPIRE stays the backstop). @default Date.now */
  now?: () => number;
  /**
   * The presence key (a ZSET of `<node>:<sid>` scored by expiry) of a stream's uid, read by the
   * publish script: a publish answers with the uid's sessions on every node at that moment, so
   * a delivery report needs no round trip of its own. Undefined: not read.
   */
  sessionsKey?: (stream: string) => string | undefined;
}

/** One stream's keys and channel: `<prefix>:{<stream>}:…`, the stream name (`u:<uid>`, `b:*`) as hash tag. */
interface StreamKeys {
  meta: string;
  hist: string;
  channel: string;
}

/** What the Lua scripts return, as ioredis hands it over. */
type PublishReply = string;
type HistoryReply = [epoch: string, top: number, entries: [offset: number, at: string, id: string, json: string, frame: string][]];
type LocateReply = [epoch: string, offset: number, at: string] | null;

interface StreamCommands {
  notifyStreamsPublish(...args: (string | number)[]): Promise<PublishReply>;
  notifyStreamsHistory(...args: (string | number)[]): Promise<HistoryReply>;
  notifyStreamsLocate(...args: (string | number)[]): Promise<LocateReply>;
}

/** A publish's idempotency record lives this long: ioredis resends an unanswered script after a reconnect. */
const DONE_TTL_MS = 5 * 60_000;
const DEFAULT_META_TTL_MS = 30 * 24 * 3_600_000;
/** Followed streams' meta TTLs are refreshed this often at most. */
const TOUCH_EVERY_MS = 3_600_000;

/**
 * The backend-wide epoch (one for all streams: a session holds one epoch for its uid's stream
 * and the broadcast stream, and an empty stream reports it too). It is renewed when its hash is
 * missing (Redis lost its data) or when the primary's `master_replid` is not the one recorded at
 * its creation (a failover to a replica, which may have been behind; a restart without
 * persistence also changes it). INFO is read inside the script, so no command can slip through
 * with a replication id read from another primary. `a`, the `at` counter, starts from the
 * server's clock in microseconds at each new epoch, so `at` keeps growing across a data loss.
 */
const ENSURE_EPOCH = `
local function ensure_epoch(ekey, candidate)
  local info = redis.call('INFO', 'replication')
  local replid = string.match(info, 'master_replid:(%w+)') or ''
  local cur = redis.call('HMGET', ekey, 'e', 'r', 'a')
  if cur[1] and cur[2] == replid then return cur[1] end
  local t = redis.call('TIME')
  local seed = tonumber(t[1]) * 1000000 + tonumber(t[2])
  local a = tonumber(cur[3] or '0')
  if a > seed then seed = a end
  redis.call('HSET', ekey, 'e', candidate, 'r', replid, 'a', string.format('%.0f', seed))
  return candidate
end
local function fields(kv)
  local f = {}
  for i = 1, #kv, 2 do f[kv[i]] = kv[i + 1] end
  return f
end
`;

/**
 * KEYS: epoch, done (idempotency), body, then meta and hist per stream.
 * ARGV: candidate epoch, node, id, json (0/1), frame, expiresAt, maxlen, histTtlMs, metaTtlMs,
 * bodyTtlMs, doneTtlMs, then one channel per stream.
 * Returns "<epoch> <at> <offset>,<offset>…"; a resent call returns the first call's answer and
 * appends nothing.
 */
const PUBLISH_LUA = `${ENSURE_EPOCH}
local done = redis.call('GET', KEYS[2])
if done then return done end
local epoch = ensure_epoch(KEYS[1], ARGV[1])
local n = (#KEYS - 3) / 2
local ats = string.format('%.0f', redis.call('HINCRBY', KEYS[1], 'a', 1))
local node, id, json, frame = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
if n > 1 then redis.call('SET', KEYS[3], frame, 'PX', ARGV[10]) end
local offsets = {}
for i = 1, n do
  local meta, hist = KEYS[2 + 2 * i], KEYS[3 + 2 * i]
  if redis.call('HGET', meta, 'e') ~= epoch then
    -- A stream of an older epoch (or whose meta is gone): it starts over in this one.
    redis.call('DEL', hist)
    redis.call('HSET', meta, 'e', epoch, 's', 0)
  end
  local off = string.format('%.0f', redis.call('HINCRBY', meta, 's', 1))
  redis.call('PEXPIRE', meta, ARGV[9])
  if n > 1 then
    redis.call('XADD', hist, 'MAXLEN', ARGV[7], off .. '-0', 'i', id, 'a', ats, 'x', ARGV[6], 'j', json, 'k', KEYS[3])
  else
    redis.call('XADD', hist, 'MAXLEN', ARGV[7], off .. '-0', 'i', id, 'a', ats, 'x', ARGV[6], 'j', json, 'f', frame)
  end
  redis.call('PEXPIRE', hist, ARGV[8])
  local took = redis.call('PUBLISH', ARGV[11 + i], off .. ' ' .. ats .. ' ' .. json .. ' ' .. epoch .. ' ' .. #node .. ' ' .. #id .. ' ' .. node .. id .. frame)
  local pkey = ARGV[11 + n + i]
  local members = ''
  if pkey ~= '' then members = table.concat(redis.call('ZRANGEBYSCORE', pkey, '(' .. ARGV[#ARGV], '+inf'), '|') end
  offsets[i] = off .. ':' .. took .. ':' .. members
end
local result = epoch .. ' ' .. ats .. ' ' .. table.concat(offsets, ',')
redis.call('SET', KEYS[2], result, 'PX', ARGV[11])
return result
`;

/**
 * KEYS: epoch, meta, hist. ARGV: candidate epoch, after offset (-1: none), after epoch, afterAt
 * (-1: none), limit, now, metaTtlMs (a read refreshes the meta, as centrifuge's does). Returns {epoch, top, {{offset, at, id, json, frame}…}}.
 */
const HISTORY_LUA = `${ENSURE_EPOCH}
local epoch = ensure_epoch(KEYS[1], ARGV[1])
local meta = redis.call('HMGET', KEYS[2], 'e', 's')
local out = {}
if meta[1] ~= epoch then return {epoch, 0, out} end
redis.call('PEXPIRE', KEYS[2], ARGV[7])
local limit = tonumber(ARGV[5])
if limit <= 0 then return {epoch, tonumber(meta[2]), out} end
local start = '-'
if ARGV[3] == epoch and tonumber(ARGV[2]) >= 0 then start = '(' .. ARGV[2] .. '-0' end
local afterAt, now = tonumber(ARGV[4]), tonumber(ARGV[6])
while #out < limit do
  local batch = redis.call('XRANGE', KEYS[3], start, '+', 'COUNT', 100)
  for _, e in ipairs(batch) do
    local f = fields(e[2])
    if tonumber(f.a) > afterAt and tonumber(f.x) > now then
      local frame = f.f
      if not frame then frame = redis.call('GET', f.k) end
      if frame then
        out[#out + 1] = {tonumber(string.match(e[1], '^(%d+)')), f.a, f.i, f.j, frame}
        if #out >= limit then break end
      end
    end
    start = '(' .. e[1]
  end
  if #batch < 100 then break end
end
return {epoch, tonumber(meta[2]), out}
`;

/**
 * KEYS: epoch, meta, hist. ARGV: candidate epoch, id. Newest first, expired entries included.
 * Returns {epoch, offset, at} or nil.
 */
const LOCATE_LUA = `${ENSURE_EPOCH}
local epoch = ensure_epoch(KEYS[1], ARGV[1])
if redis.call('HGET', KEYS[2], 'e') ~= epoch then return nil end
local stop = '+'
while true do
  local batch = redis.call('XREVRANGE', KEYS[3], stop, '-', 'COUNT', 100)
  for _, e in ipairs(batch) do
    local f = fields(e[2])
    if f.i == ARGV[2] then return {epoch, tonumber(string.match(e[1], '^(%d+)')), f.a} end
    stop = '(' .. e[1]
  end
  if #batch < 100 then return nil end
end
`;


/**
 * Message streams in Redis, shared by every node of a cluster (reference/scale-out.md §1.3, §5).
 *
 * Keys (standalone or Sentinel Redis; not Redis Cluster: one publish touches several streams and
 * the shared `at` counter):
 * - `<prefix>:epoch` HASH: `e` the epoch of every stream's offsets, `r` the primary's
 *   `master_replid` when it was made, `a` the `at` counter. One key, no TTL.
 * - `<prefix>:{<stream>}:m` HASH: `e` the epoch its offsets are in, `s` its last offset;
 *   PEXPIRE metaTtlMs after each publish. A stream whose `e` is not the current epoch is empty
 *   (top offset 0) and starts over at 1 with its next publish.
 * - `<prefix>:{<stream>}:h` STREAM: entry `<offset>-0` with `i` id, `a` at, `x` expiresAt (ms),
 *   `j` json flag, and `f` the frame, or `k` the body key of a publish to several streams;
 *   `XADD MAXLEN size` (exact), PEXPIRE ttlMs after each publish.
 * - `<prefix>:body:<token>` STRING: the frame of a publish to several streams, stored once;
 *   PEXPIRE its ttl.
 * - `<prefix>:done:<token>` STRING: a publish's answer for 5 minutes, so a script ioredis resends
 *   after a reconnect appends nothing twice.
 * - channel `<prefix>:{<stream>}:c`: each publication, PUBLISHed by the same script as
 *   `<offset> <at> <json> <epoch> <nodeLen> <idLen> <node><id><frame>` (lengths in bytes).
 *
 * One script appends a publish to all its streams and PUBLISHes it, so store and fan-out are one
 * atomic step, in the same order on every stream. `follow` SUBSCRIBEs a stream's channel on the
 * subscriber connection; `onRemote` gets what other nodes published there, in offset order per
 * stream (one connection, one script at a time). Pub/sub is at most once: a publication missed
 * while the subscriber was away shows as a skipped offset on the next one, and `onResubscribed`
 * says when the subscriber is back so a node can check its sessions' positions against `history`.
 *
 * `size` is what this node has stored (one per stream of each publish since it started), a
 * cheap figure for status and metrics, not what Redis holds (MAXLEN, TTLs and other nodes).
 */
export class RedisStreams implements MessageStreams {
  readonly #client: Redis & StreamCommands;
  readonly #sub: Redis;
  readonly #o: Required<Omit<RedisStreamsOptions, 'metaTtlMs' | 'sessionsKey'>> & { metaTtlMs: number };
  readonly #sessionsKey: RedisStreamsOptions['sessionsKey'];
  readonly #epochKey: string;
  /** Followed streams by channel. */
  readonly #followed = new Map<string, string>();
  readonly #remote: ((pub: Publication) => void)[] = [];
  readonly #resubscribed: ((streams: string[]) => void)[] = [];
  readonly #onMessage = (channel: Buffer, message: Buffer): void => this.#message(channel, message);
  readonly #onReady = (): void => this.#ready();
  readonly #onClose = (): void => {
    this.#lost = true;
  };
  /** The subscriber lost its connection since it last was ready. */
  #lost = false;
  readonly #toucher: NodeJS.Timeout;
  #size = 0;
  #closed = false;

  constructor(client: Redis, subscriber: Redis, opts: RedisStreamsOptions) {
    if (!Number.isInteger(opts.size) || opts.size < 1) throw new RangeError('size must be a positive integer');
    if (!(opts.ttlMs > 0)) throw new RangeError('ttlMs must be positive');
    const o = {
      prefix: 'notify',
      node: `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`,
      now: Date.now,
      ...opts,
      metaTtlMs: Math.max(opts.metaTtlMs ?? DEFAULT_META_TTL_MS, opts.ttlMs),
    };
    if (o.metaTtlMs < 1) throw new RangeError('metaTtlMs must be positive');
    this.#o = o;
    this.#sessionsKey = opts.sessionsKey;
    this.#epochKey = `${o.prefix}:epoch`;
    client.defineCommand('notifyStreamsPublish', { lua: PUBLISH_LUA });
    client.defineCommand('notifyStreamsHistory', { lua: HISTORY_LUA, numberOfKeys: 3 });
    client.defineCommand('notifyStreamsLocate', { lua: LOCATE_LUA, numberOfKeys: 3 });
    this.#client = client as Redis & StreamCommands;
    this.#sub = subscriber;
    subscriber.on('messageBuffer', this.#onMessage);
    subscriber.on('ready', this.#onReady);
    subscriber.on('close', this.#onClose);
    // A live session whose stream gets no publish for metaTtlMs must not see its offsets start over.
    this.#toucher = setInterval(() => this.#touch(), Math.min(TOUCH_EVERY_MS, Math.floor(o.metaTtlMs / 4)));
    this.#toucher.unref();
  }

  /** This node's name, as carried by its publications. */
  get node(): string {
    return this.#o.node;
  }

  get size(): number {
    return this.#size;
  }

  #keys(stream: string): StreamKeys {
    const base = `${this.#o.prefix}:{${stream}}`;
    return { meta: `${base}:m`, hist: `${base}:h`, channel: `${base}:c` };
  }

  async publish(streams: readonly string[], msg: StreamMessage): Promise<Publication[]> {
    if (this.#closed) throw storeError(new Error('the message store is closed'));
    if (streams.length === 0) return [];
    const ttlMs = Math.min(msg.ttlMs ?? this.#o.ttlMs, this.#o.ttlMs);
    const token = random(12).toString('base64url');
    const keys = [this.#epochKey, `${this.#o.prefix}:done:${token}`, `${this.#o.prefix}:body:${token}`];
    const channels: string[] = [];
    for (const s of streams) {
      const k = this.#keys(s);
      keys.push(k.meta, k.hist);
      channels.push(k.channel);
    }
    const args = [
      newEpoch(), this.#o.node, msg.id, msg.json ? '1' : '0', msg.frame, this.#o.now() + ttlMs,
      this.#o.size, this.#o.ttlMs, this.#o.metaTtlMs, Math.max(1, ttlMs), DONE_TTL_MS, ...channels,
      ...streams.map((st) => this.#sessionsKey?.(st) ?? ''),
      this.#o.now(),
    ];
    let reply: PublishReply;
    try {
      reply = await this.#client.notifyStreamsPublish(keys.length, ...keys, ...args);
    } catch (err) {
      throw storeError(err, 'redis');
    }
    const [epoch = '', at = '0', offsets = ''] = reply.split(' ');
    // Each "offset:receivers:sessions": the nodes subscribed to the stream's channel when it was
    // published, and the uid's sessions then (`node:sid|node:sid`, when sessionsKey names them).
    const parts = offsets.split(',');
    this.#size += streams.length;
    return streams.map((stream, i) => {
      const part = parts[i] ?? '';
      const c1 = part.indexOf(':');
      const c2 = part.indexOf(':', c1 + 1);
      const pub: Publication = {
        stream,
        offset: Number(part.slice(0, c1)),
        epoch,
        at: Number(at),
        id: msg.id,
        frame: msg.frame,
        json: msg.json,
        receivers: Number(part.slice(c1 + 1, c2)),
      };
      if (this.#sessionsKey?.(stream) !== undefined) {
        const members = part.slice(c2 + 1);
        pub.sessions = members === '' ? [] : members.split('|').map((m) => {
          const c = m.indexOf(':');
          return { node: m.slice(0, c), sid: m.slice(c + 1) };
        });
      }
      return pub;
    });
  }

  async history(stream: string, q: HistoryQuery): Promise<HistoryPage> {
    const k = this.#keys(stream);
    let reply: HistoryReply;
    try {
      reply = await this.#client.notifyStreamsHistory(
        this.#epochKey, k.meta, k.hist,
        newEpoch(), q.after?.offset ?? -1, q.after?.epoch ?? '', q.afterAt ?? -1, Math.max(0, Math.floor(q.limit)), this.#o.now(), this.#o.metaTtlMs,
      );
    } catch (err) {
      throw storeError(err, 'redis');
    }
    const [epoch, top, entries] = reply;
    return {
      publications: entries.map(([offset, at, id, json, frame]) => ({ stream, offset: Number(offset), epoch, at: Number(at), id, frame, json: json === '1' })),
      top: { offset: Number(top), epoch },
    };
  }

  async locate(stream: string, id: string): Promise<Publication | undefined> {
    const k = this.#keys(stream);
    let reply: LocateReply;
    try {
      reply = await this.#client.notifyStreamsLocate(this.#epochKey, k.meta, k.hist, newEpoch(), id);
    } catch (err) {
      throw storeError(err, 'redis');
    }
    if (reply === null) return undefined;
    const [epoch, offset, at] = reply;
    return { stream, offset: Number(offset), epoch, at: Number(at), id, frame: '', json: false };
  }

  /**
   * SUBSCRIBEs the stream's channel. The interest is kept even when Redis is away (the promise
   * rejects): the subscription is made when the subscriber is ready again.
   */
  async follow(stream: string): Promise<void> {
    if (this.#closed) return;
    const { channel } = this.#keys(stream);
    if (this.#followed.has(channel)) return;
    this.#followed.set(channel, stream);
    try {
      await this.#sub.subscribe(channel);
    } catch (err) {
      throw storeError(err, 'redis');
    }
  }

  async unfollow(stream: string): Promise<void> {
    const { channel } = this.#keys(stream);
    if (!this.#followed.delete(channel) || this.#closed) return;
    try {
      await this.#sub.unsubscribe(channel);
    } catch (err) {
      // Nothing from it reaches onRemote any more; a subscription restored by a reconnect is dropped then.
      throw storeError(err, 'redis');
    }
  }

  onRemote(handler: (pub: Publication) => void): void {
    this.#remote.push(handler);
  }

  /**
   * Called with the followed streams each time the subscriber is subscribed again after it lost
   * its connection: publications of that time reached no node, so the sessions of those streams
   * should compare their positions with `history`'s top and catch up.
   */
  onResubscribed(handler: (streams: string[]) => void): void {
    this.#resubscribed.push(handler);
  }

  /** The streams this node follows. */
  get followed(): string[] {
    return [...this.#followed.values()];
  }

  #message(channelBuf: Buffer, m: Buffer): void {
    const stream = this.#followed.get(channelBuf.toString());
    if (stream === undefined) return;
    const parsed = parseMessage(m);
    if (parsed === undefined || parsed.node === this.#o.node) return;
    const pub: Publication = { stream, offset: parsed.offset, epoch: parsed.epoch, at: parsed.at, id: parsed.id, frame: parsed.frame, json: parsed.json };
    for (const h of this.#remote) h(pub);
  }

  #ready(): void {
    if (!this.#lost || this.#closed) return;
    this.#lost = false;
    // ioredis resubscribes what it had; this adds what was followed while Redis was away.
    const channels = [...this.#followed.keys()];
    const subscribed = channels.length === 0 ? Promise.resolve() : this.#sub.subscribe(...channels);
    subscribed.then(
      () => {
        if (this.#closed) return;
        const streams = [...this.#followed.values()];
        for (const h of this.#resubscribed) h(streams);
      },
      // Lost again meanwhile: the next 'ready' tries again.
      () => {
        this.#lost = true;
      },
    );
  }

  #touch(): void {
    if (this.#followed.size === 0 || this.#client.status !== 'ready') return;
    const p = this.#client.pipeline();
    for (const stream of this.#followed.values()) p.pexpire(this.#keys(stream).meta, this.#o.metaTtlMs);
    p.exec().catch(() => {});
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#toucher);
    this.#sub.off('messageBuffer', this.#onMessage);
    this.#sub.off('ready', this.#onReady);
    this.#sub.off('close', this.#onClose);
    const channels = [...this.#followed.keys()];
    this.#followed.clear();
    if (channels.length > 0 && this.#sub.status === 'ready') this.#sub.unsubscribe(...channels).catch(() => {});
  }
}

function newEpoch(): string {
  return random(8).toString('hex');
}

/**
 * Random bytes for each publish's token and candidate epoch, taken from a pool the CSPRNG fills
 * 4 KB at a time: one randomBytes call per ~200 publishes instead of two per publish (each a
 * synchronous call into OpenSSL, about 5% of a cluster node's CPU under the bench).
 */
let pool = Buffer.alloc(0);
let poolAt = 0;
function random(n: number): Buffer {
  if (poolAt + n > pool.length) {
    pool = randomBytes(4096);
    poolAt = 0;
  }
  poolAt += n;
  return pool.subarray(poolAt - n, poolAt);
}

/** `<offset> <at> <json> <epoch> <nodeLen> <idLen> <node><id><frame>`, lengths in bytes. */
export function parseMessage(m: Buffer): { offset: number; at: number; json: boolean; epoch: string; node: string; id: string; frame: string } | undefined {
  const fields: string[] = [];
  let start = 0;
  while (fields.length < 6) {
    const sp = m.indexOf(0x20, start);
    if (sp < 0) return undefined;
    fields.push(m.toString('latin1', start, sp));
    start = sp + 1;
  }
  const [offset, at, json, epoch, nodeLen, idLen] = fields as [string, string, string, string, string, string];
  const idStart = start + Number(nodeLen);
  const frameStart = idStart + Number(idLen);
  if (frameStart > m.length) return undefined;
  return {
    offset: Number(offset),
    at: Number(at),
    json: json === '1',
    epoch,
    node: m.toString('utf8', start, idStart),
    id: m.toString('utf8', idStart, frameStart),
    frame: m.toString('utf8', frameStart),
  };
}
