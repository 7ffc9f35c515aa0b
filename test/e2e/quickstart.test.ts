import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { tempDir } from '../helpers/daemon.js';
import { HANG_MS, until, wsClient } from '../helpers/clients.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BIN = fileURLToPath(new URL('../../../bin/notify', import.meta.url));
const DEFAULT_PORTS = [1234, 5678, 5680];

/** True when nothing listens on 127.0.0.1:port. */
async function free(port: number): Promise<boolean> {
  const s = createServer();
  try {
    s.listen(port, '127.0.0.1');
    await once(s, 'listening');
    return true;
  } catch {
    return false;
  } finally {
    s.close();
  }
}

// The README's quick start, as a newcomer runs it: `npm start` (no config file: the built-in
// defaults, on the default ports), the demo page's uid bound, `notify send` with no --server.
// This one test uses the fixed default ports, because they are what it checks; it is skipped
// when something else holds them, except under CI, where nothing may.
const busy = (await Promise.all(DEFAULT_PORTS.map(free))).some((ok) => !ok);
const skip = busy && !process.env.CI ? `a default port (${DEFAULT_PORTS.join(', ')}) is in use on this machine` : false;

test('quick start: npm start runs the daemon on the built-in defaults, and notify send reaches a page bound to uid1', { skip }, async (t) => {
  assert.equal((JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { scripts: { start: string } }).scripts.start, 'node bin/notify serve');
  // What npm start runs, in a folder of its own so the default ./notify-data lands there.
  const cwd = tempDir(t, 'notify-quickstart-');
  const serve = spawn(process.execPath, [BIN, 'serve'], { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  t.after(() => {
    if (serve.exitCode === null) serve.kill('SIGKILL');
  });
  let log = '';
  serve.stderr.setEncoding('utf8');
  serve.stderr.on('data', (c: string) => (log += c));
  await until(() => log.includes('notify ready'), `the daemon to start (log: ${log})`);
  const entries = log.trim().split('\n').map((l) => JSON.parse(l) as { listener?: string; address?: string; msg: string });
  assert.deepEqual(
    entries.filter((e) => e.listener).map((e) => `${e.listener} ${e.address}`),
    ['ws 127.0.0.1:1234', 'text 127.0.0.1:5678', 'http 127.0.0.1:5680'],
  );
  assert.match(entries.at(-1)?.msg ?? '', /built-in defaults/);

  const page = await wsClient(t, 'ws://127.0.0.1:1234/', { bind: 'uid1' });
  const health = async () => ((await (await fetch('http://127.0.0.1:5680/healthz')).json()) as { transports: { websocket: { sessions: number } } }).transports.websocket.sessions;
  for (const deadline = Date.now() + HANG_MS; (await health()) < 1; ) {
    assert.ok(Date.now() < deadline, 'timed out waiting for the page to bind uid1');
    await new Promise((r) => setTimeout(r, 20));
  }

  const { stdout } = await promisify(execFile)(process.execPath, [BIN, 'send', '--uid', 'uid1', '--msg', 'your export is 88% done'], { cwd });
  assert.equal(stdout, 'delivered to 1 target (websocket: 1)\n');
  assert.equal(await page.frame(1), 'your export is 88% done');

  serve.kill('SIGINT');
  const [code] = (await once(serve, 'exit')) as [number | null];
  assert.equal(code, 0);
  assert.deepEqual(await page.closed, [1001, 'server shutting down']);
});
