import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { SqliteRetryQueue } from '../../src/store/retry-queue-sqlite.js';
import { type StateDb, openState } from '../../src/store/sqlite.js';
import { tempDir } from '../helpers/daemon.js';
import { retryEntry as entry } from '../contracts/retry-queue.contract.js';

// The shared-queue contract runs in test/contracts/retry-queue.test.ts; here, what only the SQLite queue does.

function db(t: TestContext): StateDb {
  const d = openState(tempDir(t, 'notify-retries-'));
  t.after(() => d.close());
  return d;
}

test('retry queue: exclusive (the daemon owns the state directory): another owner\'s entries are orphans, claimed at once; its own are not', (t) => {
  const d = db(t);
  new SqliteRetryQueue(d).hold(entry('orphan', 1000), 'host-111', 60_000);
  const q = new SqliteRetryQueue(d, { exclusive: true });
  q.hold(entry('own', 1000), 'host-222', 60_000);
  assert.deepEqual(q.claim('host-222', { limit: 10, leaseMs: 60_000, now: 1000 }).map((p) => p.target), ['orphan']);
  assert.deepEqual(q.claim('host-222', { limit: 10, leaseMs: 60_000, now: 1000 }), [], 'claimed entries are its own now');
});

test('retry queue: held entries are answered synchronously (the daemon\'s hot path), and maxEntries must be a positive integer', (t) => {
  const q = new SqliteRetryQueue(db(t), { maxEntries: 2 });
  const key = q.hold(entry('a', 1), 'n', 1);
  assert.equal(typeof key, 'string');
  assert.equal(q.size, 1);
  assert.throws(() => new SqliteRetryQueue(db(t), { maxEntries: 0 }), RangeError);
});
