import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { VERSION } from '../../src/version.js';
import { HANG_MS, until, wsClient } from '../helpers/clients.js';
import { tempDir } from '../helpers/daemon.js';
import { NOT_SHIPPED, npmPack } from '../helpers/pack.js';
import { parseLogs } from '../helpers/cli.js';

const run = promisify(execFile);

/** Building better-sqlite3 from source needs a C++ compiler, make and python3 (.ci/run installs them). */
const TOOLS = ['g++', 'make', 'python3'].filter((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status !== 0);
const SKIP = TOOLS.length === 0 || process.env.CI ? false : `${TOOLS.join(', ')} not installed (.ci/run installs them)`;

/**
 * `npm install -g notify-push-daemon`, from the packed tarball (issue 14, item 7): the
 * installed `notify` answers --version and --help, and runs the daemon (better-sqlite3 built and
 * loaded). Here, not in `npm test`: building better-sqlite3 takes a minute or more.
 *
 * The dependencies come from the npm registry, through the local npm cache first
 * (--prefer-offline). better-sqlite3 is built from source against this Node's own headers
 * (npm_config_build_from_source, npm_config_nodedir), so its install script does not download a
 * prebuilt binary or Node headers from elsewhere.
 */
test('package: npm install -g from the packed tarball gives a working notify (--version, --help, serve, send)', { skip: SKIP }, async (t) => {
  const dir = tempDir(t, 'notify-pack-');
  const packed = await npmPack(dir);
  const tarball = join(dir, packed.filename);
  const { stdout: listing } = await run('tar', ['tzf', tarball], { maxBuffer: 16 * 1024 * 1024 });
  const files = listing.split('\n').filter(Boolean).map((f) => f.replace(/^package\//, ''));
  assert.ok(files.includes('dist/src/cli/main.js') && files.includes('bin/notify'), 'the tarball holds dist/src and bin');
  assert.deepEqual(files.filter((f) => NOT_SHIPPED.test(f)), [], 'no tests, benchmark or sources in the tarball');

  const prefix = join(dir, 'global');
  const nodePrefix = dirname(dirname(process.execPath));
  const env: NodeJS.ProcessEnv = { ...process.env, npm_config_build_from_source: 'true' };
  if (existsSync(join(nodePrefix, 'include', 'node', 'node.h'))) env.npm_config_nodedir = nodePrefix;
  for (const name of ['NOTIFY_TOKEN', 'NOTIFY_SERVER', 'NOTIFY_CONFIG']) delete env[name];
  await run('npm', ['install', '-g', '--prefix', prefix, '--no-audit', '--no-fund', '--prefer-offline', tarball], {
    env,
    maxBuffer: 64 * 1024 * 1024,
    timeout: 15 * 60_000,
  });
  const notify = join(prefix, 'bin', 'notify');
  assert.ok(existsSync(notify), `npm linked the command at ${notify}`);
  assert.ok(existsSync(join(prefix, 'lib', 'node_modules', 'notify-push-daemon', 'dist', 'src', 'cli', 'main.js')));

  const version = await run(notify, ['--version'], { env });
  assert.equal(version.stdout, `${VERSION}\n`);
  const help = await run(notify, ['--help'], { env });
  for (const cmd of ['serve', 'send', 'devices', 'config']) assert.match(help.stdout, new RegExp(`^\\s+${cmd}\\b`, 'm'));

  // The installed daemon runs: its store (better-sqlite3) opens, a page binds, a send reaches it.
  const cwd = tempDir(t, 'notify-installed-');
  writeFileSync(join(cwd, 'notify.yaml'), 'ws:\n  listen: 127.0.0.1:0\ntext:\n  listen: 127.0.0.1:0\nhttp:\n  listen: 127.0.0.1:0\n');
  const serve = spawn(notify, ['serve'], { cwd, env, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  serve.stderr.setEncoding('utf8').on('data', (s: string) => (err += s));
  const exited = new Promise<number | null>((resolve) => serve.on('close', (code) => resolve(code)));
  t.after(() => {
    if (serve.exitCode === null && serve.signalCode === null) serve.kill('SIGKILL');
  });
  const address = (listener: string) => parseLogs(err).find((l) => l.listener === listener)?.address as string | undefined;
  await until(() => parseLogs(err).some((l) => String(l.msg).startsWith('notify ready')) || serve.exitCode !== null, `the installed notify serve to be ready: ${err}`);
  assert.ok(existsSync(join(cwd, 'notify-data')), `the state directory is made: ${err}`);
  const ws = address('ws');
  const http = address('http');
  assert.ok(ws && http, err);
  const page = await wsClient(t, `ws://${ws}/`, { bind: 'uid1' });
  const deadline = Date.now() + HANG_MS;
  for (;;) {
    const h = (await (await fetch(`http://${http}/healthz`)).json()) as { transports: { websocket: { uids: number } } };
    if (h.transports.websocket.uids === 1) break;
    if (Date.now() > deadline) assert.fail(`the page did not bind: ${JSON.stringify(h)}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const sent = await run(notify, ['send', '--uid', 'uid1', '--msg', 'from the installed notify'], { env: { ...env, NOTIFY_SERVER: `http://${http}` } });
  assert.equal(sent.stdout, 'delivered to 1 target (websocket: 1)\n');
  assert.equal(await page.frame(1), 'from the installed notify');
  serve.kill('SIGTERM');
  assert.equal(await exited, 0, err);
});
