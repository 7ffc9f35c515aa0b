import type { Redis } from 'ioredis';
import { errorMessage } from '../errors.js';
import type { Logger } from '../obs/log.js';
import { type RedisScript, checkPrefix, defineScript, viaRedis } from './redis-script.js';
import { type JournalEvent, TRACE_LIMITS, type TokenOutcome, type TraceStore, recordsOf, eachTokenOutcome } from './trace.js';

export interface RedisTraceOptions {
  /** Key prefix shared by every node of the cluster (cluster.prefix). @default 'notify' */
  prefix?: string;
  /** How long a message's record lives after its first event (history.ttl). */
  ttlMs: number;
  log: Logger;
}

/**
 * Appends events to one message's record. KEYS: the record (LIST), its dropped-events counter;
 * ARGV: max events, ttl ms, events... The record expires ttl after its first event (the expiry
 * is set once, by whichever node writes first); events past the bound are counted instead.
 */
const APPEND = `
local n = redis.call('LLEN', KEYS[1])
local room = tonumber(ARGV[1]) - n
local over = 0
for i = 3, #ARGV do
  if room > 0 then
    redis.call('RPUSH', KEYS[1], ARGV[i])
    room = room - 1
  else
    over = over + 1
  end
end
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if over > 0 then
  redis.call('INCRBY', KEYS[2], over)
  redis.call('PEXPIRE', KEYS[2], ARGV[2])
end
return over
`;

/**
 * The cluster's trace store (cluster.redis):
 * - `<prefix>:{t:<id>}:e` LIST: the message's events as JSON, in the order each node appended
 *   them; at most TRACE_LIMITS.events, the rest counted in `<prefix>:{t:<id>}:d`; both expire
 *   history.ttl after the first event.
 * - `<prefix>:tlast:<transport>` HASH: device token → its last outcome (JSON); the hash lives
 *   history.ttl past its last write.
 * Every node appends to the same record, so a lookup on any node sees what every node did.
 * Appends are batched: one pipeline per turn of the event loop (one script per message in it).
 */
export class RedisTraceStore implements TraceStore {
  readonly #redis: Redis;
  readonly #prefix: string;
  readonly #o: RedisTraceOptions;
  readonly #append: RedisScript;
  #byId = new Map<string, string[]>();
  #outcomes = new Map<string, Map<string, string>>();
  #scheduled: NodeJS.Immediate | undefined;
  #writing: Promise<void> = Promise.resolve();
  readonly #flushNow = () => void this.flush();
  #closed = false;

  constructor(redis: Redis, opts: RedisTraceOptions) {
    this.#redis = redis;
    this.#prefix = checkPrefix(opts.prefix ?? 'notify');
    this.#o = opts;
    this.#append = defineScript(redis, 'notifyTraceAppend', 2, APPEND);
  }

  #key(id: string): string {
    return `${this.#prefix}:{t:${id}}:e`;
  }

  #droppedKey(id: string): string {
    return `${this.#prefix}:{t:${id}}:d`;
  }

  append(e: JournalEvent): void {
    if (this.#closed) return;
    let text: string | undefined;
    for (const id of recordsOf(e)) {
      let list = this.#byId.get(id);
      if (list === undefined) this.#byId.set(id, (list = []));
      list.push((text ??= JSON.stringify(e)));
    }
    eachTokenOutcome(e, (transport, token, outcome) => {
      let m = this.#outcomes.get(transport);
      if (m === undefined) this.#outcomes.set(transport, (m = new Map()));
      m.set(token, JSON.stringify(outcome));
    });
    this.#scheduled ??= setImmediate(this.#flushNow);
  }

  /** Writes everything batched so far in one pipeline; settles when it (and those before it) are done. */
  flush(): Promise<void> {
    if (this.#scheduled !== undefined) {
      clearImmediate(this.#scheduled);
      this.#scheduled = undefined;
    }
    if (this.#byId.size === 0 && this.#outcomes.size === 0) return this.#writing;
    const byId = this.#byId;
    const outcomes = this.#outcomes;
    this.#byId = new Map();
    this.#outcomes = new Map();
    const p = this.#redis.pipeline();
    for (const [id, events] of byId) this.#append.queue(p, [this.#key(id), this.#droppedKey(id)], [TRACE_LIMITS.events, this.#o.ttlMs, ...events]);
    for (const [transport, m] of outcomes) {
      const key = `${this.#prefix}:tlast:${transport}`;
      p.hset(key, ...[...m].flat());
      p.pexpire(key, this.#o.ttlMs);
    }
    const done = p.exec().then(
      (results) => {
        const failed = results?.find(([err]) => err);
        if (failed) this.#o.log.warn('trace events not recorded', { events: byId.size, error: errorMessage(failed[0]) });
      },
      (err: unknown) => this.#o.log.warn('trace events not recorded', { events: byId.size, error: errorMessage(err) }),
    );
    this.#writing = Promise.all([this.#writing, done]).then(() => {});
    return this.#writing;
  }

  events(id: string): Promise<{ events: JournalEvent[]; dropped: number }> {
    return viaRedis(async () => {
      // What this node has batched is written first, so the answer has it.
      await this.flush();
      const [list, dropped] = await Promise.all([this.#redis.lrange(this.#key(id), 0, -1), this.#redis.get(this.#droppedKey(id))]);
      return { events: list.map((s) => JSON.parse(s) as JournalEvent), dropped: Number(dropped ?? 0) };
    });
  }

  lastOutcome(transport: string, tokens: readonly string[]): Promise<(TokenOutcome | undefined)[]> {
    if (tokens.length === 0) return Promise.resolve([]);
    return viaRedis(async () => {
      await this.flush();
      const values = await this.#redis.hmget(`${this.#prefix}:tlast:${transport}`, ...tokens);
      return values.map((v) => (v === null ? undefined : (JSON.parse(v) as TokenOutcome)));
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    await this.flush();
    this.#closed = true;
  }
}
