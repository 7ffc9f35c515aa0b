import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { startDaemon } from '../helpers/daemon.js';
import { textClient, until, wsClient } from '../helpers/clients.js';

const PHP = ['/usr/bin/php', '/usr/local/bin/php'].find((p) => existsSync(p));

// The classic Workerman push example, both sides unchanged: the page sends its uid as the first
// frame; the backend writes one JSON line to the Text port and reads back ok or fail.
test('original protocol: a backend line reaches the bound page byte for byte, and the backend reads ok', async (t) => {
  const d = await startDaemon(t);
  const page = await wsClient(t, d.wsUrl, { bind: 'uid1' });
  await until(() => d.registry.index('websocket').has('uid1'), 'uid1 to bind');
  assert.equal(page.frames.length, 0, 'binding gets no reply frame (the original page alerts every frame)');

  const backend = await textClient(t, d.textPort);
  const line = JSON.stringify({ uid: 'uid1', percent: '88%' });
  backend.write(`${line}\n`);
  assert.deepEqual(await backend.replies(1), ['ok']);
  assert.equal(await page.frame(1), line);
});

test('original protocol: a uid that is not online gets fail', async (t) => {
  const d = await startDaemon(t);
  const backend = await textClient(t, d.textPort);
  backend.write('{"uid":"nobody","percent":"10%"}\n');
  assert.deepEqual(await backend.replies(1), ['fail']);
});

test('original protocol: a persistent client reads "ok\\n" from one read and reuses the connection', async (t) => {
  const d = await startDaemon(t);
  await wsClient(t, d.wsUrl, { bind: 'uid1' });
  await until(() => d.registry.index('websocket').has('uid1'), 'uid1 to bind');
  // What PHP's stream_socket_client(..., STREAM_CLIENT_PERSISTENT) + fwrite + fread(8192) does:
  // one write, one read of whatever arrives first, and the socket stays open for the next request.
  const socket = connect({ host: '127.0.0.1', port: d.textPort });
  t.after(() => socket.destroy());
  await once(socket, 'connect');
  for (const percent of ['10%', '88%']) {
    socket.write(`${JSON.stringify({ uid: 'uid1', percent })}\n`);
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    assert.equal(chunk.toString(), 'ok\n');
  }
  assert.equal(socket.destroyed, false);
});

// Skipped without php, except under CI (which installs php-cli), where a missing php fails the test.
const skipPhp = PHP || process.env.CI ? false : 'php is not installed (.ci/run installs php-cli)';

test('original protocol: the PHP backend snippet prints ok', { skip: skipPhp }, async (t) => {
  const d = await startDaemon(t);
  const page = await wsClient(t, d.wsUrl, { bind: 'uid1' });
  await until(() => d.registry.index('websocket').has('uid1'), 'uid1 to bind');
  // The snippet from the original example, with only the port changed to the test daemon's.
  const php =
    `$c = stream_socket_client('tcp://127.0.0.1:${d.textPort}', $e, $m, 1, STREAM_CLIENT_CONNECT|STREAM_CLIENT_PERSISTENT); ` +
    `fwrite($c, json_encode(array('uid'=>'uid1','percent'=>'88%'))."\\n"); echo fread($c, 8192);`;
  const { stdout } = await promisify(execFile)(PHP ?? 'php', ['-r', php], { timeout: 10_000 });
  assert.equal(stdout, 'ok\n');
  assert.equal(await page.frame(1), '{"uid":"uid1","percent":"88%"}');
});
