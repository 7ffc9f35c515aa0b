import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RETRY_DEFAULTS, backoffMs, parseRetryAfter, sleep } from '../../src/push/retry.js';

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
