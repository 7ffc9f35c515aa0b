import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { WebSocket } from 'ws';
import { stringify } from 'yaml';
import { api } from '../helpers/api.js';
import { HANG_MS, textClient } from '../helpers/clients.js';
import { startChild } from '../helpers/child.js';
import { runNotify } from '../helpers/cli.js';
import { tempDir } from '../helpers/daemon.js';
import { deadPort } from '../helpers/net.js';
import { startFakeHttp } from '../helpers/fake-http.js';

// One state directory, one daemon: a second daemon is refused with a line naming the directory
// and the holder; `send --direct` goes through the running daemon instead of opening its store
// behind its back; a lock left by a crashed daemon does not keep the directory; a damaged
// database is one line saying what to do.

function config(dir: string, extra: Record<string, unknown> = {}): string {
  const file = join(dir, 'notify.yaml');
  writeFileSync(
    file,
    stringify({
      ws: { listen: '127.0.0.1:0' },
      text: { listen: '127.0.0.1:0' },
      http: { listen: '127.0.0.1:0' },
      state: { dir: join(dir, 'state') },
      ...extra,
    }),
  );
  return file;
}

test('state.dir: a second notify serve on the same directory is refused with one line naming it and the running daemon; the first goes on', { timeout: HANG_MS * 2 }, async (t) => {
  const dir = tempDir(t);
  const file = config(dir);
  const first = await startChild(t, file);
  const second = await runNotify(t, ['serve', '--config', file], HANG_MS);
  assert.equal(second.code, 2, second.err);
  const line = second.err.trim().split('\n').pop() as string;
  assert.match(line, new RegExp(`state\\.dir ${join(dir, 'state').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} is in use by another notify \\(pid ${first.proc.pid} `));
  assert.doesNotMatch(second.err, /\n\s+at /, 'no stack trace');
  const health = await api(`http://${first.http}`, 'GET', '/healthz');
  assert.equal(health.status, 200, 'the first daemon is untouched');
});

test('state.dir: a lock left by a daemon killed with SIGKILL does not keep the directory: the next daemon starts', { timeout: HANG_MS * 2 }, async (t) => {
  const dir = tempDir(t);
  const file = config(dir);
  const first = await startChild(t, file);
  first.proc.kill('SIGKILL');
  await first.exited;
  const next = await startChild(t, file);
  const health = await api(`http://${next.http}`, 'GET', '/healthz');
  assert.equal(health.status, 200);
});

test('state.dir: notify send --direct while the daemon runs goes through the daemon; the daemon keeps publishing and sees what was sent', { timeout: HANG_MS * 2 }, async (t) => {
  const fake = await startFakeHttp(t);
  const dir = tempDir(t);
  // The CLI reaches the daemon where the config says it listens.
  const file = config(dir, {
    http: { listen: `127.0.0.1:${await deadPort()}` },
    transports: { hook: { type: 'http', url: `${fake.url}/hook`, body: { uid: '{{uid}}', msg: '{{msg}}' } } },
  });
  const d = await startChild(t, file);
  const direct = await runNotify(t, ['send', '--direct', '--uid', 'alice', '--msg', 'via the daemon', '--config', file, '--json'], HANG_MS);
  assert.equal(direct.code, 0, direct.err);
  assert.match(direct.err, new RegExp(`the daemon \\(pid ${d.proc.pid}\\) holds .*; sending through its HTTP API`));
  const report = JSON.parse(direct.out) as { id: string; stored: boolean };
  assert.equal(report.stored, true, 'stored by the daemon');
  // The daemon publishes on after it (it used to die on its next publish), and a page that
  // resumes from nothing gets the message the direct send made.
  const text = await textClient(t, Number(d.text.split(':').pop()));
  text.write('{"uid":"alice","n":2}\n');
  assert.deepEqual(await text.replies(1, HANG_MS), ['ok']);
  const ws = new WebSocket(`ws://${d.ws}/`);
  t.after(() => ws.terminate());
  await once(ws, 'open');
  const frames: string[] = [];
  ws.on('message', (m) => frames.push(m.toString()));
  ws.send(JSON.stringify({ type: 'bind', uid: 'alice' }));
  const deadline = Date.now() + HANG_MS;
  while (frames.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(
    frames.map((f) => (JSON.parse(f) as { id: string }).id).slice(0, 1),
    [report.id],
    'the message sent with --direct is in the daemon\'s store',
  );
});

test('state.dir: a damaged notify.db is one line naming the file and what to do, not a stack trace', { timeout: HANG_MS * 2 }, async (t) => {
  const dir = tempDir(t);
  const file = config(dir);
  const state = join(dir, 'state');
  mkdirSync(state, { recursive: true });
  writeFileSync(join(state, 'notify.db'), Buffer.alloc(8192, 0x41));
  const r = await runNotify(t, ['serve', '--config', file], HANG_MS);
  assert.equal(r.code, 2, r.err);
  const line = r.err.trim();
  assert.equal(line.split('\n').length, 1, `one line: ${r.err}`);
  assert.match(line, new RegExp(`${join(state, 'notify.db').replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} is damaged or not a notify database .*move it .* aside to start with an empty store, or restore it from a backup`));
});
