import assert from 'node:assert/strict';
import { test } from 'node:test';
import { StreamWindow } from '../../../src/push/apns/stream-window.js';

/** Feeds one round of answers, each taking `latencyMs`. */
function round(w: StreamWindow, latencyMs: number | ((size: number) => number)): number {
  const size = w.size;
  for (let i = 0; i < size; i++) w.sample(typeof latencyMs === 'number' ? latencyMs : latencyMs(size));
  return w.size;
}

test('stream window: over a long round trip that does not queue, it doubles from 16 up to maxConcurrentStreams', () => {
  const w = new StreamWindow(500);
  assert.equal(w.size, 16);
  const sizes = Array.from({ length: 6 }, () => round(w, 80));
  assert.deepEqual(sizes, [32, 64, 128, 256, 500, 500]);
});

test('stream window: to a server that queues (latency grows with the window), it settles where latency stays near the lowest', () => {
  const w = new StreamWindow(500);
  // A server answering one request per 0.1 ms from a queue: latency = 1 ms + window x 0.1 ms.
  const serial = (size: number) => 1 + size * 0.1;
  let size = 0;
  for (let i = 0; i < 50; i++) size = round(w, serial);
  assert.ok(size >= 8 && size <= 120, `settled at ${size}`);
  // ... and the latency it sees there is within the allowance (twice the lowest, or 5 ms over it).
  assert.ok(serial(size) <= Math.max(2 * serial(16), serial(16) + 5) * 1.5, `latency ${serial(size)} ms at ${size}`);
});

test('stream window: never above maxConcurrentStreams nor below 8 (or the max, when smaller); reset() starts again from 16', () => {
  const small = new StreamWindow(5);
  assert.equal(small.size, 5);
  round(small, 1);
  assert.equal(small.size, 5);
  round(small, 1000);
  assert.equal(small.size, 5, 'a max under 8 is the floor too');

  const w = new StreamWindow(500);
  round(w, 10);
  round(w, 10);
  assert.equal(w.size, 64);
  for (let i = 0; i < 10; i++) round(w, 10_000);
  assert.equal(w.size, 8);
  w.reset();
  assert.equal(w.size, 16);
  assert.throws(() => new StreamWindow(0), /max must be a positive integer/);
});
