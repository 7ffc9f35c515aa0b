import type { ChainableCommander, Redis } from 'ioredis';
import { storeError } from '../errors.js';

/** One argument of a Redis command or script. */
export type RedisArg = string | number;

/**
 * A Lua script registered on a client with ioredis `defineCommand` (sent as EVALSHA, and as EVAL
 * once after a Redis that lost its script cache answers NOSCRIPT). ioredis may resend a command
 * that was in flight when the connection dropped, so every script given here must be idempotent.
 */
export interface RedisScript {
  /** Runs the script now. */
  run(keys: readonly string[], args: readonly RedisArg[]): Promise<unknown>;
  /** Queues the script on a pipeline (its reply is in the pipeline's results). */
  queue(pipeline: ChainableCommander, keys: readonly string[], args: readonly RedisArg[]): void;
}

type Invoke = (...args: RedisArg[]) => Promise<unknown>;

/**
 * Registers `lua` as command `name` on `client` (a name per script, so backends sharing one
 * client do not collide) with `numberOfKeys` KEYS.
 */
export function defineScript(client: Redis, name: string, numberOfKeys: number, lua: string): RedisScript {
  client.defineCommand(name, { numberOfKeys, lua });
  // defineCommand adds the method at run time; ioredis's types cannot name it.
  const on = (target: Redis | ChainableCommander) => (target as unknown as Record<string, Invoke>)[name] as Invoke;
  return {
    run(keys, args) {
      if (keys.length !== numberOfKeys) throw new RangeError(`${name} takes ${numberOfKeys} keys, got ${keys.length}`);
      return on(client).call(client, ...keys, ...args);
    },
    queue(pipeline, keys, args) {
      if (keys.length !== numberOfKeys) throw new RangeError(`${name} takes ${numberOfKeys} keys, got ${keys.length}`);
      void on(pipeline).call(pipeline, ...keys, ...args);
    },
  };
}

export { storeError };

/**
 * Runs `f` (Redis calls) and turns whatever it throws, synchronously or not, into a rejected
 * NOTIFY_ERR_STORE promise: a backend never throws at its caller, never crashes the process.
 */
export async function viaRedis<T>(f: () => Promise<T>): Promise<T> {
  try {
    return await f();
  } catch (err) {
    throw storeError(err, 'redis');
  }
}

/** Checks a key prefix option: non-empty, no braces (they would become a Cluster hash tag). */
export function checkPrefix(prefix: unknown): string {
  if (typeof prefix !== 'string' || prefix === '' || /[{}\s]/.test(prefix)) {
    throw new TypeError(`prefix must be a non-empty string without braces or spaces; got ${JSON.stringify(prefix)}`);
  }
  return prefix;
}
