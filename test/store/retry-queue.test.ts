import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { NotifyError } from '../../src/errors.js';
import { SqliteRetryQueue } from '../../src/store/retry-queue-sqlite.js';
import type { RetryEntry } from '../../src/store/retry-queue.js';
import { type StateDb, openState } from '../../src/store/sqlite.js';
import { messageFromFields } from '../../src/message.js';
import { tempDir } from '../helpers/daemon.js';

const msg = { ...messageFromFields({ msg: 'hi' }), id: 'm1' };
const entry = (target: string, dueAt: number): RetryEntry => ({ transport: 'apns', uid: 'uid1', target, msg, attempts: 1, dueAt, reason: '503 ServiceUnavailable' });

function db(t: TestContext): StateDb {
  const d = openState(tempDir(t, 'notify-retries-'));
  t.after(() => d.close());
  return d;
}

test('retry queue: a held entry is leased to its owner until dueAt + leaseMs; then another claims it, once, with its fields', (t) => {
  const q = new SqliteRetryQueue(db(t));
  const key = q.hold(entry('t1', 1000), 'node-a', 500);
  assert.equal(typeof key, 'string');
  assert.deepEqual(q.claim('node-b', { limit: 10, leaseMs: 500, now: 1499 }), [], 'leased to node-a until 1500');
  const [p, ...rest] = q.claim('node-b', { limit: 10, leaseMs: 500, now: 1500 });
  assert.deepEqual(rest, []);
  assert.deepEqual(p, { key, ...entry('t1', 1000) });
  assert.deepEqual(q.claim('node-c', { limit: 10, leaseMs: 500, now: 1600 }), [], 'now leased to node-b (from now, the entry being overdue)');
  assert.equal(q.claim('node-c', { limit: 10, leaseMs: 500, now: 2100 }).length, 1);
});

test('retry queue: update moves the due time and the lease; release ends the entry, twice is a no-op', (t) => {
  const q = new SqliteRetryQueue(db(t));
  const key = q.hold(entry('t1', 1000), 'node-a', 500);
  q.update(key, 2, 5000, '429 TooManyRequests', 500);
  assert.deepEqual(q.claim('node-b', { limit: 10, leaseMs: 500, now: 2000 }), []);
  const [p] = q.claim('node-b', { limit: 10, leaseMs: 500, now: 5500 });
  assert.deepEqual([p?.attempts, p?.dueAt, p?.reason], [2, 5000, '429 TooManyRequests']);
  q.release(key);
  q.release(key);
  assert.equal(q.size, 0);
});

test('retry queue: claim takes the soonest due first, at most limit, each once', (t) => {
  const q = new SqliteRetryQueue(db(t));
  for (const [target, due] of [['late', 300], ['first', 100], ['second', 200]] as const) q.hold(entry(target, due), 'dead', 0);
  const now = 1000;
  assert.deepEqual(q.claim('me', { limit: 2, leaseMs: 100, now }).map((p) => p.target), ['first', 'second']);
  assert.deepEqual(q.claim('me', { limit: 2, leaseMs: 100, now }).map((p) => p.target), ['late']);
  assert.deepEqual(q.claim('me', { limit: 2, leaseMs: 100, now }), []);
});

test('retry queue: handBack ends an owner\'s leases at once (a graceful stop); others keep theirs', (t) => {
  const q = new SqliteRetryQueue(db(t));
  q.hold(entry('mine', 1000), 'node-a', 60_000);
  q.hold(entry('theirs', 1000), 'node-c', 60_000);
  q.handBack('node-a');
  assert.deepEqual(q.claim('node-b', { limit: 10, leaseMs: 1000, now: 1000 }).map((p) => p.target), ['mine']);
});

test('retry queue: exclusive (the daemon owns the state directory): another owner\'s entries are orphans, claimed at once; its own are not', (t) => {
  const d = db(t);
  new SqliteRetryQueue(d).hold(entry('orphan', 1000), 'host-111', 60_000);
  const q = new SqliteRetryQueue(d, { exclusive: true });
  q.hold(entry('own', 1000), 'host-222', 60_000);
  assert.deepEqual(q.claim('host-222', { limit: 10, leaseMs: 60_000, now: 1000 }).map((p) => p.target), ['orphan']);
  assert.deepEqual(q.claim('host-222', { limit: 10, leaseMs: 60_000, now: 1000 }), [], 'claimed entries are its own now');
});

test('retry queue: bounded: hold beyond maxEntries throws NOTIFY_ERR_STORE with a clear message; a release makes room', (t) => {
  const q = new SqliteRetryQueue(db(t), { maxEntries: 2 });
  const first = q.hold(entry('a', 1), 'n', 1);
  q.hold(entry('b', 1), 'n', 1);
  assert.throws(
    () => q.hold(entry('c', 1), 'n', 1),
    (err: unknown) => err instanceof NotifyError && err.code === 'NOTIFY_ERR_STORE' && /retry queue is full: 2 deliveries already wait for a retry \(at most 2\)/.test(err.message),
  );
  assert.equal(q.size, 2);
  q.release(first);
  q.hold(entry('c', 1), 'n', 1);
  assert.throws(() => new SqliteRetryQueue(db(t), { maxEntries: 0 }), RangeError);
});
