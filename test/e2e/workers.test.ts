import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { HANG_MS, textClient, wsClient } from '../helpers/clients.js';
import { exitCode, runNotify, spawnNotify, type Proc } from '../helpers/cli.js';
import { tempDir } from '../helpers/daemon.js';
import { SKIP_REDIS, startRedis } from '../helpers/redis.js';

async function waitFor<T>(what: string, f: () => T | undefined): Promise<T> {
  const deadline = Date.now() + HANG_MS;
  for (;;) {
    const v = f();
    if (v !== undefined) return v;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const ready = (p: Proc) => p.logs().filter((l) => typeof l.msg === 'string' && l.msg.startsWith('notify ready')).length;

test('serve --workers 2: two processes share the ports as nodes of one cluster; a killed worker is replaced; SIGTERM stops them all', { skip: SKIP_REDIS }, async (t) => {
  // Stopped after notify (hooks run in the order they were added).
  let primary: Proc | undefined;
  t.after(async () => {
    if (primary && primary.child.exitCode === null) {
      primary.child.kill('SIGTERM');
      await primary.exited;
    }
  });
  const redis = await startRedis(t);
  const dir = tempDir(t, 'notify-workers-');
  const config = join(dir, 'notify.yaml');
  writeFileSync(
    config,
    `ws: {listen: "127.0.0.1:0"}\ntext: {listen: "127.0.0.1:0"}\nhttp: {listen: "127.0.0.1:0"}\nstate: {dir: ./state}\ncluster: {redis: "${redis.url}", node: web}\n`,
  );
  primary = spawnNotify(t, ['serve', '--workers', '2', '--config', config]);
  const p = primary;
  await waitFor('two workers ready', () => (ready(p) >= 2 ? true : undefined));
  const addr = (listener: string) => p.logs().find((l) => l.listener === listener)?.address as string;
  const addresses = p.logs().filter((l) => l.listener === 'ws').map((l) => l.address);
  assert.equal(new Set(addresses).size, 1, `both workers listen on one shared port: ${JSON.stringify(addresses)}`);
  const workers = p.logs().filter((l) => l.msg === 'worker started').map((l) => l.pid as number);
  assert.equal(workers.length, 2);

  // Pages spread over the two workers; every publish through one Text connection reaches its page.
  const pages = [];
  for (let i = 0; i < 6; i++) pages.push(await wsClient(t, `ws://${addr('ws')}/`, { bind: `page-${i}` }));
  const health = async () => (await fetch(`http://${addr('http')}/healthz`)).json() as Promise<{ status: string }>;
  assert.equal((await health()).status, 'ok');
  const backend = await textClient(t, Number(addr('text').split(':').pop()));
  // A page is in presence once its worker has subscribed; until then a publish to it is fail.
  for (let i = 0; i < 6; i++) {
    for (let n = 1; ; n++) {
      backend.write(`{"uid":"page-${i}","n":${i}}\n`);
      const lines = await backend.replies(backend.lines.length + 1);
      if (lines.at(-1) === 'ok') break;
      assert.ok(n < 500, `page-${i} never became reachable: ${JSON.stringify(lines.slice(-3))}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(await pages[i]?.frame(1), `{"uid":"page-${i}","n":${i}}`);
  }

  // A worker killed outright is replaced by a new one.
  process.kill(workers[0] as number, 'SIGKILL');
  await waitFor('the killed worker to be replaced', () => (p.logs().filter((l) => l.msg === 'worker started').length === 3 && ready(p) >= 3 ? true : undefined));
  assert.ok(p.logs().some((l) => l.msg === 'worker exited; starting another' && l.pid === workers[0]));
  const again = await wsClient(t, `ws://${addr('ws')}/`, { bind: 'after' });
  // A new backend connection: the first one may have been served by the killed worker.
  const backend2 = await textClient(t, Number(addr('text').split(':').pop()));
  for (let n = 1; ; n++) {
    backend2.write('{"uid":"after","msg":"still served"}\n');
    const lines = await backend2.replies(backend2.lines.length + 1);
    if (lines.at(-1) === 'ok') break;
    assert.ok(n < 500, 'the page after the restart never became reachable');
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(await again.frame(1), '{"uid":"after","msg":"still served"}');

  p.child.kill('SIGTERM');
  assert.equal(await exitCode(p, 'notify serve --workers 2', HANG_MS), 0);
  assert.ok(p.logs().some((l) => l.msg === 'SIGTERM: stopping the workers'));
  assert.equal(p.logs().filter((l) => l.msg === 'stopped').length, 3, 'both workers and the primary stopped gracefully');
  for (const pid of p.logs().filter((l) => l.msg === 'worker started').map((l) => l.pid as number)) {
    assert.throws(() => process.kill(pid, 0), 'no worker is left running');
  }
});

test('serve --workers 2 without cluster.redis is refused, saying what it needs', async (t) => {
  const dir = tempDir(t, 'notify-workers-');
  const config = join(dir, 'notify.yaml');
  writeFileSync(config, 'ws: {listen: "127.0.0.1:0"}\ntext: {listen: "127.0.0.1:0"}\nhttp: {listen: "127.0.0.1:0"}\nstate: {dir: ./state}\n');
  const r = await runNotify(t, ['serve', '--workers', '2', '--config', config], HANG_MS);
  assert.equal(r.code, 2);
  assert.match(r.err, /serve --workers 2 needs cluster\.redis: the workers share their state/);
  const bad = await runNotify(t, ['serve', '--workers', 'lots', '--config', config], HANG_MS);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /--workers must be a whole number from 1 to 256/);
});
