import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NotifyError } from '../../src/errors.js';
import { messageFromFields } from '../../src/message.js';
import { silentLogger } from '../../src/obs/log.js';
import { InFlight, RETRY_DEFAULTS, RetryTicket, type Verdict, backoffMs, parseRetryAfter, runWithRetries, sleep } from '../../src/push/retry.js';
import type { PendingRetry, RetryQueue } from '../../src/store/retry-queue.js';

test('backoff: exponential with equal jitter, capped at maxDelayMs', () => {
  const p = { limit: 5, baseDelayMs: 100, maxDelayMs: 1000 };
  assert.equal(backoffMs(1, p, undefined, () => 0), 50);
  assert.equal(backoffMs(1, p, undefined, () => 1), 100);
  assert.equal(backoffMs(3, p, undefined, () => 0), 200);
  assert.equal(backoffMs(3, p, undefined, () => 1), 400);
  assert.equal(backoffMs(10, p, undefined, () => 1), 1000, 'capped');
  assert.equal(backoffMs(10, p, undefined, () => 0), 500, 'jitter keeps at least half');
});

test('backoff: a Retry-After is the delay, never shortened', () => {
  assert.equal(backoffMs(1, RETRY_DEFAULTS, 2000, () => 0), 2000);
  assert.equal(backoffMs(1, RETRY_DEFAULTS, 60_000), 60_000);
});

test('Retry-After: delta seconds and HTTP dates', () => {
  assert.equal(parseRetryAfter('2'), 2000);
  assert.equal(parseRetryAfter(' 1.5 '), 1500);
  assert.equal(parseRetryAfter(['3']), 3000);
  const now = Date.parse('2026-01-01T00:00:00Z');
  assert.equal(parseRetryAfter('Thu, 01 Jan 2026 00:00:05 GMT', now), 5000);
  assert.equal(parseRetryAfter('Wed, 31 Dec 2025 23:00:00 GMT', now), 0, 'a date in the past means now');
  assert.equal(parseRetryAfter(undefined), undefined);
  assert.equal(parseRetryAfter('soon'), undefined);
});

test('sleep: resolves true after the delay, false as soon as the signal aborts', async () => {
  assert.equal(await sleep(5, new AbortController().signal), true);
  const c = new AbortController();
  setTimeout(() => c.abort(), 10);
  // false: the abort ended it (a sleep that ran its 10 s would resolve true).
  assert.equal(await sleep(10_000, c.signal), false);
  assert.equal(await sleep(10, AbortSignal.abort()), false);
});

// ---------------------------------------------------------------------------------------------
// runWithRetries: the one retry loop of the provider transports

const policy = { limit: 2, baseDelayMs: 1, maxDelayMs: 1000 };
const msg = { ...messageFromFields({ msg: 'hi' }), id: 'm1' };

/** A queue in memory that records what is done to it. */
class RecordingQueue implements RetryQueue {
  readonly calls: string[] = [];
  full = false;
  hold(): string {
    if (this.full) throw new NotifyError('NOTIFY_ERR_STORE', 'the retry queue is full');
    this.calls.push('hold');
    return 'k1';
  }
  update(key: string): void {
    this.calls.push(`update ${key}`);
  }
  release(key: string): void {
    this.calls.push(`release ${key}`);
  }
  claim(): PendingRetry[] {
    return [];
  }
  handBack(): void {}
  readonly size = undefined;
}

function loop(queue: RetryQueue, retired: string[][]) {
  return {
    transport: 'hook',
    target: 'tok1',
    policy,
    ticket: new RetryTicket(queue, 'node-1', { transport: 'hook', uid: 'u1', target: 'tok1', msg }),
    stop: new AbortController().signal,
    log: silentLogger,
    provider: 'the provider',
    retire: (target: string, reason: string) => void retired.push([target, reason]),
  };
}

test('runWithRetries: a rejection with prune retires the target, once, in the loop; it is reported rejected with its reason and released', async () => {
  const queue = new RecordingQueue();
  const retired: string[][] = [];
  const verdicts: Verdict[] = [{ kind: 'retry', reason: '503' }, { kind: 'rejected', reason: '410 Unregistered', prune: true }];
  const out = await runWithRetries(async () => verdicts.shift(), loop(queue, retired));
  assert.deepEqual(out, { status: 'rejected', reason: '410 Unregistered' });
  assert.deepEqual(retired, [['tok1', '410 Unregistered']]);
  assert.deepEqual(queue.calls, ['hold', 'release k1'], 'held while it waited, released at the end');
});

test('runWithRetries: a rejection without prune retires nothing; a fresh retry is immediate, once, and not counted', async () => {
  const retired: string[][] = [];
  const rejected = await runWithRetries(async () => ({ kind: 'rejected', reason: '400 BadTopic' }), loop(new RecordingQueue(), retired));
  assert.deepEqual(rejected, { status: 'rejected', reason: '400 BadTopic' });
  assert.deepEqual(retired, []);
  let n = 0;
  const queue = new RecordingQueue();
  const fresh = await runWithRetries(async () => (++n, { kind: 'retry', reason: '403 ExpiredProviderToken', freshRetry: 'again with a fresh token' }), loop(queue, retired));
  assert.deepEqual(fresh, { status: 'failed', reason: '403 ExpiredProviderToken (again with a fresh token)' });
  assert.equal(n, 2);
  assert.deepEqual(queue.calls, [], 'no wait, so nothing held');
});

test('runWithRetries: when the retry queue is full the delivery fails at once with the store\'s reason, and nothing is kept', async () => {
  const queue = new RecordingQueue();
  queue.full = true;
  let n = 0;
  const out = await runWithRetries(async () => (++n, { kind: 'retry', reason: '503' }), loop(queue, []));
  assert.deepEqual(out, { status: 'failed', reason: '503; not retried: the retry queue is full' });
  assert.equal(n, 1);
});

test('runWithRetries: a stop during the wait leaves the entry held and says so', async () => {
  const queue = new RecordingQueue();
  const stop = new AbortController();
  const out = await runWithRetries(
    async () => {
      setImmediate(() => stop.abort());
      return { kind: 'retry', reason: '503', retryAfterMs: 500 };
    },
    { ...loop(queue, []), stop: stop.signal },
  );
  assert.deepEqual(out, { status: 'failed', reason: '503; handed to the next transport or process (retry queue): it will be sent', stopped: true });
  assert.deepEqual(queue.calls, ['hold'], 'held once, at its retry time; not moved');
});

test('runWithRetries: a stop before an answer (queued, or cut off on the wire) holds the delivery, due now, and the report says it was handed over', async () => {
  const held: { attempts: number; dueAt: number; reason: string }[] = [];
  const queue = new (class extends RecordingQueue {
    override hold(e?: { attempts: number; dueAt: number; reason: string }): string {
      if (e) held.push({ attempts: e.attempts, dueAt: e.dueAt, reason: e.reason });
      return super.hold();
    }
  })();
  const before = Date.now();
  const out = await runWithRetries(async () => undefined, loop(queue, []));
  assert.deepEqual(out, { status: 'failed', reason: 'not sent; handed to the next transport or process (retry queue): it will be sent', stopped: true });
  assert.deepEqual(queue.calls, ['hold'], 'held, never released');
  assert.equal(held.length, 1);
  assert.equal(held[0]?.attempts, 0);
  assert.ok((held[0]?.dueAt ?? 0) >= before && (held[0]?.dueAt ?? Infinity) <= Date.now(), 'due now: the successor sends it at once');
  assert.match(held[0]?.reason ?? '', /handed over/);

  // Without a retry queue nothing can keep it: the report says notify is shutting down.
  const bare = await runWithRetries(async () => undefined, { ...loop(queue, []), ticket: new RetryTicket(undefined, 'node-1', { transport: 'hook', uid: 'u1', target: 'tok1', msg }) });
  assert.deepEqual(bare, { status: 'failed', reason: 'not sent: notify is shutting down', stopped: true });

  // A full queue: not kept, and the report says why.
  const full = new RecordingQueue();
  full.full = true;
  const notKept = await runWithRetries(async () => undefined, loop(full, []));
  assert.equal(notKept.status, 'failed');
  assert.match(notKept.reason ?? '', /not kept for a retry: the retry queue is full/);
});

test('InFlight.idle: resolves true when the last one ends, false after the grace if one is still under way', async () => {
  const f = new InFlight();
  assert.equal(await f.idle(1000), true);
  f.begin();
  f.begin();
  const idle = f.idle(60_000);
  f.end();
  setImmediate(() => f.end());
  assert.equal(await idle, true);
  f.begin();
  assert.equal(await f.idle(5), false);
});

test('runWithRetries: the ticket tells the journal how a delivery ended (rejected, given up, sent after a retry) with its attempts; a stop is not an end', async () => {
  const told: [string, string, string | undefined, number][] = [];
  const ticket = () =>
    new RetryTicket(new RecordingQueue(), 'node-1', { transport: 'hook', uid: 'u1', target: 'tok1', msg }, undefined, undefined, (id, o) => {
      if (o.status !== 'retrying') told.push([id, o.status, o.reason, o.attempts]);
    });
  const run = (verdicts: (Verdict | undefined)[]) => runWithRetries(async () => verdicts.shift(), { ...loop(new RecordingQueue(), []), ticket: ticket() });
  await run([{ kind: 'retry', reason: '503' }, undefined]);
  assert.deepEqual(told, [], 'a stop is not an end');
  await run([{ kind: 'retry', reason: '503' }, { kind: 'sent' }]);
  await run([{ kind: 'retry', reason: '503' }, { kind: 'rejected', reason: '400 BadTopic' }]);
  await run([{ kind: 'retry', reason: '503' }, { kind: 'retry', reason: '503' }, { kind: 'retry', reason: '503' }]);
  assert.deepEqual(told, [
    ['m1', 'sent', undefined, 2],
    ['m1', 'rejected', '400 BadTopic', 2],
    ['m1', 'gave-up', '503 (gave up after 3 attempts)', 3],
  ]);
});

test('runWithRetries: a first attempt already made (made) counts as the first: the loop retries from there, and a stop before its answer is handed over', async () => {
  const queue = new RecordingQueue();
  let calls = 0;
  const out = await runWithRetries(async () => (++calls, { kind: 'sent', id: 'a1' }), { ...loop(queue, []), made: { verdict: { kind: 'retry', reason: '503' } } });
  assert.deepEqual(out, { status: 'sent', id: 'a1' });
  assert.equal(calls, 1, 'the attempt function ran once: for the retry, not for the first attempt');
  assert.deepEqual(queue.calls, ['hold', 'release k1'], 'held while it waited for the retry, released at the end');

  let again = 0;
  const given = await runWithRetries(async () => (++again, { kind: 'retry', reason: '503' }), { ...loop(new RecordingQueue(), []), made: { verdict: { kind: 'retry', reason: '503' } } });
  assert.equal(given.status, 'failed');
  assert.match(given.reason ?? '', /gave up after 3 attempts/, 'the first attempt counts towards retry.limit (2)');
  assert.equal(again, 2);

  const stopQueue = new RecordingQueue();
  const stopped = await runWithRetries(async () => assert.fail('no attempt after a stop'), { ...loop(stopQueue, []), made: { verdict: undefined } });
  assert.equal(stopped.stopped, true);
  assert.deepEqual(stopQueue.calls, ['hold'], 'handed over through the retry queue');
});
