import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import Database from 'better-sqlite3';
import { api } from '../helpers/api.js';
import { session, textClient, until } from '../helpers/clients.js';
import { type TestDaemon, startDaemon } from '../helpers/daemon.js';

// The store failing is an error, not a crash: publishes are answered with an error (never ok),
// the daemon keeps its sessions, logs the cause once per burst, shows it in /healthz, and
// recovers by itself.

const HANG_MS = 60_000;

function storeErrors(d: TestDaemon): number {
  return d.logs.filter((l) => l.level === 'error' && String(l.msg).startsWith('store unavailable')).length;
}

async function checkFailing(t: TestContext, d: TestDaemon, why: RegExp): Promise<void> {
  const page = await session(t, d, 'alice', HANG_MS);
  const backend = await textClient(t, d.textPort);
  backend.write('{"uid":"alice","n":1}\n{"uid":"alice","n":2}\n{"uid":"nobody","n":3}\n');
  const replies = await backend.replies(3, HANG_MS);
  for (const r of replies) assert.match(r, /^error: store unavailable \(/, `a Text publish is refused, never ok: ${r}`);
  assert.match(replies[0] as string, why);
  const http = await api(d.httpUrl, 'POST', '/v1/send', { uid: 'alice', msg: 'over http' });
  assert.equal(http.status, 503, JSON.stringify(http.body));
  assert.equal((http.body as { code: string }).code, 'NOTIFY_ERR_STORE');
  const health = await api(d.httpUrl, 'GET', '/healthz');
  assert.equal(health.status, 503);
  assert.equal((health.body as { status: string }).status, 'store unavailable');
  assert.equal((health.body as { store: { state: string } }).store.state, 'unavailable');
  assert.equal(storeErrors(d), 1, 'the cause is logged once for the whole burst');
  assert.equal(page.ws.readyState, page.ws.OPEN, 'the session stays');
  assert.deepEqual(page.frames, [], 'nothing uncommitted reached the session');
}

async function checkRecovered(t: TestContext, d: TestDaemon): Promise<void> {
  const page = await session(t, d, 'bob', HANG_MS);
  const backend = await textClient(t, d.textPort);
  backend.write('{"uid":"bob","n":4}\n');
  assert.deepEqual(await backend.replies(1, HANG_MS), ['ok']);
  assert.equal(await page.frame(1, HANG_MS), '{"uid":"bob","n":4}');
  const health = await api(d.httpUrl, 'GET', '/healthz');
  assert.equal(health.status, 200);
  assert.deepEqual((health.body as { store: unknown }).store, { state: 'ok' });
  await until(() => d.logs.some((l) => l.msg === 'store recovered'), 'the recovery log line', HANG_MS);
}

test('store failure: a write lock held by another process makes publishes fail fast with an error (Text and HTTP 503), not a crash; released, it works again', { timeout: HANG_MS * 2 }, async (t) => {
  const d = await startDaemon(t);
  const other = new Database(join(d.node.config.state.dir, 'notify.db'));
  t.after(() => other.close());
  other.exec('BEGIN IMMEDIATE');
  await checkFailing(t, d, /database is locked/);
  other.exec('ROLLBACK');
  await checkRecovered(t, d);
});

/** A 1 MiB tmpfs mounted for the test (root only), or undefined where mounting is not allowed. */
function smallDisk(t: TestContext): string | undefined {
  const dir = mkdtempSync(join(tmpdir(), 'notify-full-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', dir], { stdio: 'ignore' });
  } catch {
    rmSync(dir, { recursive: true, force: true });
    return undefined;
  }
  t.after(() => {
    // Lazy: whatever still holds a file there lets go when it closes.
    execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

test('store failure: a full disk (SQLITE_FULL) makes publishes fail with an error, sessions stay; with room again, publishing works without a restart', { timeout: HANG_MS * 2 }, async (t) => {
  const disk = smallDisk(t);
  if (disk === undefined) {
    if (process.env.CI) assert.fail('mounting a small tmpfs needs root; CI runs as root');
    t.skip('cannot mount a tmpfs here (not root)');
    return;
  }
  const state = join(disk, 'state');
  mkdirSync(state);
  const d = await startDaemon(t, { state: { dir: state } });
  const filler = join(disk, 'filler');
  try {
    writeFileSync(filler, Buffer.alloc(1024 * 1024));
  } catch {
    // ENOSPC: the file took what there was.
  }
  await checkFailing(t, d, /database or disk is full/);
  rmSync(filler);
  await checkRecovered(t, d);
  await d.stop();
});
