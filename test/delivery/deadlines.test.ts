import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Deadlines } from '../../src/delivery/deadlines.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('operations started in the same window share one signal; a later window gets its own', async () => {
  const d = new Deadlines(50, 20);
  const a = d.current();
  const b = d.current();
  assert.equal(a.signal, b.signal);
  await sleep(30);
  assert.notEqual(d.current().signal, a.signal);
});

test('a waiter still registered at the deadline is expired and the signal aborts, not before timeoutMs', async () => {
  const d = new Deadlines(60, 10);
  const started = performance.now();
  const w = d.current();
  let expired = false;
  const expiredAfter = new Promise<number>((resolve) =>
    w.add({
      expire: () => {
        expired = true;
        resolve(performance.now() - started);
      },
    }),
  );
  assert.equal(expired, false, 'not expired at once');
  assert.equal(w.signal.aborted, false);
  const after = await expiredAfter;
  assert.ok(after >= 59, `expired, not before timeoutMs: after ${after} ms`);
  assert.equal(w.signal.aborted, true);
});

test('a waiter that finished in time is never expired, and a window nobody waits on does not abort', async () => {
  const d = new Deadlines(20, 5);
  const w = d.current();
  let expired = false;
  const waiter = { expire: () => (expired = true) };
  w.add(waiter);
  w.delete(waiter);
  await sleep(80);
  assert.equal(expired, false);
  assert.equal(w.signal.aborted, false);
});

test('timeoutMs is validated', () => {
  assert.throws(() => new Deadlines(0), /timeoutMs must be a positive integer/);
});
