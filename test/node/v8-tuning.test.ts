import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { DAEMON_V8_FLAGS } from '../../src/node/v8-tuning.js';
import { HANG_MS, textClient, until, wsClient } from '../helpers/clients.js';
import { exitCode, spawnNotify } from '../helpers/cli.js';
import { tempDir, writeTemp } from '../helpers/daemon.js';

// `notify serve` sets its garbage-collector flags (node/v8-tuning.ts) before it builds anything:
// without --no-allocation-site-pretenuring, a push load makes V8 allocate some per-message site
// in the old generation and the heap grows by tens of MB per 100,000 pushes (the benchmark
// measures it; README "Benchmark"). The flag is set at run time, so the process must say so.

test('notify serve sets --no-allocation-site-pretenuring before it builds the node, and serves as before', async (t) => {
  assert.deepEqual(DAEMON_V8_FLAGS, ['--no-allocation-site-pretenuring']);
  const dir = tempDir(t);
  const file = writeTemp(t, 'serve.yaml', `ws: {listen: "127.0.0.1:0"}\ntext: {listen: "127.0.0.1:0"}\nhttp: {listen: "127.0.0.1:0"}\nstate: {dir: ${JSON.stringify(join(dir, 'state'))}}\nlog: {level: debug}\n`);
  const serve = spawnNotify(t, ['serve', '--config', file]);
  await until(() => serve.logs().some((l) => String(l.msg).startsWith('notify ready')), `notify serve to be ready: ${serve.stderr()}`);
  const logs = serve.logs();
  const set = logs.findIndex((l) => l.msg === 'v8 flags set');
  assert.ok(set >= 0, serve.stderr());
  assert.deepEqual(logs[set]?.flags, ['--no-allocation-site-pretenuring']);
  const firstListener = logs.findIndex((l) => typeof l.listener === 'string');
  assert.ok(set < firstListener, 'set before any listener starts');
  const addr = (name: string) => logs.find((l) => l.listener === name)?.address as string;
  const page = await wsClient(t, `ws://${addr('ws')}/`, { bind: 'uid1' });
  const text = await textClient(t, Number(addr('text').split(':').pop()));
  // The page's bind (its first frame) may still be on its way: `fail` until it is bound.
  let reply: string | undefined = '';
  for (let i = 0; i < 100 && reply !== 'ok'; i++) {
    if (i > 0) await new Promise((r) => setTimeout(r, 100));
    text.write('{"uid":"uid1","percent":"88%"}\n');
    reply = (await text.replies(i + 1)).at(-1);
  }
  assert.equal(reply, 'ok');
  assert.equal(await page.frame(1), '{"uid":"uid1","percent":"88%"}');
  serve.child.kill('SIGTERM');
  assert.equal(await exitCode(serve, 'notify serve after SIGTERM', HANG_MS), 0);
});
