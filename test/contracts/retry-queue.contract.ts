import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { NotifyError } from '../../src/errors.js';
import { messageFromFields } from '../../src/message.js';
import type { RetryEntry, RetryQueue } from '../../src/store/retry-queue.js';

/** Builds a fresh, empty RetryQueue holding at most `maxEntries` (the backend's default when not given). */
export type MakeRetryQueue = (t: TestContext, opts: { maxEntries?: number }) => RetryQueue | Promise<RetryQueue>;

const msg = { ...messageFromFields({ msg: 'hi' }), id: 'm1' };
export const retryEntry = (target: string, dueAt: number): RetryEntry => ({ transport: 'apns', uid: 'uid1', target, msg, attempts: 1, dueAt, reason: '503 ServiceUnavailable' });
const entry = retryEntry;

/**
 * The RetryQueue contract (src/store/retry-queue.ts), against the interface only, in the shared
 * case (several owners, none exclusive). `options.skip` skips every test with that reason.
 */
export function retryQueueContract(name: string, make: MakeRetryQueue, options: { skip?: string | false } = {}): void {
  test(`${name} contract: a held entry is leased to its owner until dueAt + leaseMs; then another claims it, once, with its fields`, options, async (t) => {
    const q = await make(t, {});
    const key = await q.hold(entry('t1', 1000), 'node-a', 500);
    assert.equal(typeof key, 'string');
    assert.deepEqual(await q.claim('node-b', { limit: 10, leaseMs: 500, now: 1499 }), [], 'leased to node-a until 1500');
    const [p, ...rest] = await q.claim('node-b', { limit: 10, leaseMs: 500, now: 1500 });
    assert.deepEqual(rest, []);
    assert.deepEqual(p, { key, ...entry('t1', 1000) });
    assert.deepEqual(await q.claim('node-c', { limit: 10, leaseMs: 500, now: 1600 }), [], 'now leased to node-b (from now, the entry being overdue)');
    assert.equal((await q.claim('node-c', { limit: 10, leaseMs: 500, now: 2100 })).length, 1);
  });

  test(`${name} contract: update moves the due time and the lease; release ends the entry, twice is a no-op`, options, async (t) => {
    const q = await make(t, {});
    const key = await q.hold(entry('t1', 1000), 'node-a', 500);
    await q.update(key, 2, 5000, '429 TooManyRequests', 500);
    assert.deepEqual(await q.claim('node-b', { limit: 10, leaseMs: 500, now: 2000 }), []);
    const [p] = await q.claim('node-b', { limit: 10, leaseMs: 500, now: 5500 });
    assert.deepEqual([p?.attempts, p?.dueAt, p?.reason], [2, 5000, '429 TooManyRequests']);
    await q.release(key);
    await q.release(key);
    assert.equal(q.size, 0);
    await q.update(key, 3, 6000, 'late update', 500);
    assert.deepEqual(await q.claim('node-b', { limit: 10, leaseMs: 500, now: 100_000 }), [], 'an update after the release does not bring it back');
  });

  test(`${name} contract: claim takes the soonest due first, at most limit, each once`, options, async (t) => {
    const q = await make(t, {});
    for (const [target, due] of [['late', 300], ['first', 100], ['second', 200]] as const) await q.hold(entry(target, due), 'dead', 0);
    const now = 1000;
    assert.deepEqual((await q.claim('me', { limit: 2, leaseMs: 100, now })).map((p) => p.target), ['first', 'second']);
    assert.deepEqual((await q.claim('me', { limit: 2, leaseMs: 100, now })).map((p) => p.target), ['late']);
    assert.deepEqual(await q.claim('me', { limit: 2, leaseMs: 100, now }), []);
  });

  test(`${name} contract: handBack ends an owner's leases at once (a graceful stop); others keep theirs`, options, async (t) => {
    const q = await make(t, {});
    await q.hold(entry('mine', 1000), 'node-a', 60_000);
    await q.hold(entry('theirs', 1000), 'node-c', 60_000);
    await q.handBack('node-a');
    assert.deepEqual((await q.claim('node-b', { limit: 10, leaseMs: 1000, now: 1000 })).map((p) => p.target), ['mine']);
  });

  test(`${name} contract: of concurrent claims, each entry goes to one claimer`, options, async (t) => {
    const q = await make(t, {});
    const keys: string[] = [];
    for (let i = 0; i < 20; i++) keys.push(await q.hold(entry(`t${i}`, 100 + i), 'dead', 0));
    const claims = await Promise.all(['b', 'c', 'd', 'e'].flatMap((o) => [1, 2, 3].map(() => q.claim(`node-${o}`, { limit: 3, leaseMs: 60_000, now: 1000 }))));
    const got = claims.flat().map((p) => p.key);
    assert.equal(new Set(got).size, got.length, 'no entry claimed twice');
    assert.deepEqual([...got].sort(), [...keys].sort(), 'every entry claimed');
  });

  test(`${name} contract: bounded: hold beyond maxEntries rejects NOTIFY_ERR_STORE with a clear message; a release makes room`, options, async (t) => {
    const q = await make(t, { maxEntries: 2 });
    const first = await q.hold(entry('a', 1), 'n', 1);
    await q.hold(entry('b', 1), 'n', 1);
    await assert.rejects(
      async () => q.hold(entry('c', 1), 'n', 1),
      (err: unknown) => err instanceof NotifyError && err.code === 'NOTIFY_ERR_STORE' && /retry queue is full: 2 deliveries already wait for a retry \(at most 2\)/.test(err.message),
    );
    assert.equal(q.size, 2);
    await q.release(first);
    await q.hold(entry('c', 1), 'n', 1);
  });
}
