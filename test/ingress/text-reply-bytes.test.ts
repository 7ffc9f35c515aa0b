import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { WebSocket } from 'ws';
import { HANG_MS, textClient, until } from '../helpers/clients.js';
import { startDaemon } from '../helpers/daemon.js';

// `"reply":"json"` replies count in bytes: a client that pipelines broadcasts to many sessions
// and never reads its replies makes the daemon stop reading it, not buffer every report.

/** Heap plus Buffer memory after a full collection. */
function memoryInUse(): number {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}

test('text: a client that never reads its "reply":"json" reports is not read past text.maxLineBytes × 16 of them; others are served; it then gets every reply in order', { timeout: 240_000 }, async (t) => {
  const SESSIONS = 200;
  const LINES = 3000;
  const d = await startDaemon(t, { text: { maxLineBytes: 4096 }, limits: { connectRatePerIp: 10_000 } }, 'info');
  const clients: WebSocket[] = [];
  let frames = 0;
  for (let i = 0; i < SESSIONS; i++) {
    const ws = new WebSocket(`${d.wsUrl}?uid=u${i}`);
    ws.on('error', () => {});
    if (i === 0) ws.on('message', () => frames++);
    t.after(() => ws.terminate());
    clients.push(ws);
    await once(ws, 'open');
  }
  await until(() => d.registry.index('websocket').targetCount === SESSIONS, 'every session to bind', HANG_MS);

  const before = memoryInUse();
  const c = await textClient(t, d.textPort);
  c.socket.pause();
  let lines = '';
  for (let i = 0; i < LINES; i++) lines += `{"broadcast":true,"msg":"m","id":"t-${i}","reply":"json"}\n`;
  c.write(lines);

  // Wait until the daemon has stopped taking its lines: no broadcast for a while.
  let seen = -1;
  for (let quiet = 0; quiet < 50; ) {
    await new Promise((r) => setTimeout(r, 10));
    if (frames === seen) quiet++;
    else [seen, quiet] = [frames, 0];
  }
  const grew = memoryInUse() - before;
  const taken = frames;

  // Meanwhile another connection is served.
  const other = await textClient(t, d.textPort);
  other.write('{"uid":"u1","msg":"hi"}\n');
  assert.deepEqual(await other.replies(1), ['ok']);

  other.write('{"broadcast":true,"msg":"x","reply":"json"}\n');
  const reply = (await other.replies(2))[1] as string;
  t.diagnostic(`not read: ${taken} of ${LINES} lines taken, memory grew ${(grew / 1e6).toFixed(1)} MB; a reply is ${reply.length} bytes`);
  assert.ok(taken < LINES / 2, `the daemon stopped taking lines from the client that does not read (${taken} of ${LINES} taken)`);
  assert.ok(grew < (LINES * reply.length) / 2, `memory did not grow by the replies (${grew} bytes)`);

  c.socket.resume();
  const got = await c.replies(LINES, HANG_MS * 2);
  assert.equal(got.length, LINES);
  got.forEach((line, i) => {
    const report = JSON.parse(line) as { id: string; targets: number };
    assert.equal(report.id, `t-${i}`, `reply ${i} in order`);
  });
  await until(() => frames === LINES + 1, 'every broadcast to reach a session', HANG_MS);
});
