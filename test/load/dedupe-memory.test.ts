import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { HANG_MS, textClient } from '../helpers/clients.js';
import { startDaemon } from '../helpers/daemon.js';

// Publisher ids held for dedupe are bounded in memory: the answers live in the store for their
// window, and memory holds only publishes under way (today's figure before this: about 1 KB of
// heap per id for the whole window, 200,000 ids took 218 MB).

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function heapAfterGc(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

test('dedupe: 50,000 publishes with their own ids leave the heap where it was; a repeat of any of them is still a duplicate', { timeout: HANG_MS * 5 }, async (t) => {
  const N = 50_000;
  const d = await startDaemon(t, {}, 'warn');
  const c = await textClient(t, d.textPort);
  const warm = Array.from({ length: 1000 }, (_, i) => `{"uid":"nobody","id":"warm-${i}","n":${i}}\n`).join('');
  c.write(warm);
  await c.replies(1000, HANG_MS);
  const before = heapAfterGc();
  for (let sent = 0; sent < N; sent += 1000) {
    c.write(Array.from({ length: 1000 }, (_, i) => `{"uid":"nobody","id":"order-${sent + i}","n":${sent + i}}\n`).join(''));
    await c.replies(1000 + sent + 1000, HANG_MS);
  }
  const after = heapAfterGc();
  const grownMb = (after - before) / 1024 / 1024;
  t.diagnostic(`heap: ${(before / 1048576).toFixed(1)} MB -> ${(after / 1048576).toFixed(1)} MB after ${N} publisher ids`);
  assert.ok(grownMb < 10, `heap grew by ${grownMb.toFixed(1)} MB for ${N} ids (about 1 KB each would be ${Math.round(N / 1024)} MB)`);
  c.write('{"uid":"nobody","id":"order-7","reply":"json","n":7}\n');
  const [line] = (await c.replies(1000 + N + 1, HANG_MS)).slice(-1);
  assert.equal((JSON.parse(line as string) as { duplicate?: boolean }).duplicate, true, 'still deduplicated: the id is in the store');
});
