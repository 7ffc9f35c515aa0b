import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { type Socket, connect } from 'node:net';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import { stringify } from 'yaml';
import { HANG_MS, session, until } from '../helpers/clients.js';
import { parseLogs } from '../helpers/cli.js';
import { startDaemon, tempDir } from '../helpers/daemon.js';

// Every connection a peer can open is bounded from accept: silent TCP connections count against
// limits.connections and connectionsPerIp at once (not after a handshake) and are closed after
// limits.silentTimeout, on the WebSocket port and on the HTTP port.

async function silent(t: TestContext, address: string): Promise<Socket & { gone: Promise<void> }> {
  const [host, port] = [address.slice(0, address.lastIndexOf(':')), Number(address.split(':').pop())];
  const s = connect({ host, port });
  s.on('error', () => {});
  t.after(() => s.destroy());
  const gone = once(s, 'close').then(() => undefined);
  await once(s, 'connect');
  return Object.assign(s, { gone });
}

async function refusal(url: string): Promise<{ status: number; body: string }> {
  const ws = new WebSocket(url);
  ws.on('error', () => {});
  const [, res] = (await once(ws, 'unexpected-response')) as [unknown, import('node:http').IncomingMessage];
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (c: string) => (body += c));
  await once(res, 'end');
  return { status: res.statusCode ?? 0, body };
}

test('silent connections: they count against limits.connections from accept (the next one is refused 503) and are closed after limits.silentTimeout; then sessions connect again', { timeout: HANG_MS * 2 }, async (t) => {
  const d = await startDaemon(t, { limits: { connections: 3, connectionsPerIp: 100, silentTimeout: '500ms' } });
  const quiet = await Promise.all([1, 2, 3].map(() => silent(t, d.addresses().ws)));
  const refused = await refusal(d.wsUrl);
  assert.equal(refused.status, 503);
  assert.equal(refused.body, 'too many connections (limits.connections: 3)\n');
  await Promise.all(quiet.map((s) => s.gone));
  const page = await session(t, d, 'alice');
  assert.equal(page.ws.readyState, WebSocket.OPEN, 'a session connects once the silent ones are gone');
  const metrics = await (await fetch(`${d.httpUrl}/metrics`)).text();
  assert.match(metrics, /notify_limit_refusals_total\{limit="silent"\} 3/);
});

test('silent connections: connectionsPerIp counts from accept too; a session that sent its handshake is not cut by silentTimeout', { timeout: HANG_MS * 2 }, async (t) => {
  const d = await startDaemon(t, { limits: { connections: 100, connectionsPerIp: 2, silentTimeout: '300ms' } });
  const page = await session(t, d, 'bob');
  const quiet = await silent(t, d.addresses().ws);
  const refused = await refusal(d.wsUrl);
  assert.equal(refused.status, 503);
  assert.equal(refused.body, 'too many connections from 127.0.0.1 (limits.connectionsPerIp: 2)\n');
  await quiet.gone;
  // Well past silentTimeout, the bound session is still there and gets its messages.
  const res = await fetch(`${d.httpUrl}/v1/send`, { method: 'POST', body: JSON.stringify({ uid: 'bob', msg: 'still here' }) });
  assert.equal(res.status, 200);
  assert.equal(await page.frame(1), 'still here');
});

test('silent connections: on the HTTP API port, silent ones are closed and count from accept; a publish that waits for its report in silence is not cut', { timeout: HANG_MS * 2 }, async (t) => {
  const d = await startDaemon(t, { limits: { connections: 2, connectionsPerIp: 100, silentTimeout: '300ms' } });
  const quiet = await Promise.all([1, 2].map(() => silent(t, d.addresses().http)));
  const over = await silent(t, d.addresses().http);
  let answer = '';
  over.setEncoding('utf8');
  over.on('data', (c: string) => (answer += c));
  await over.gone;
  // The API's error shape ({code, error}), as every other answer of this port.
  assert.match(answer, /^HTTP\/1\.1 503 Service Unavailable\r\n[\s\S]*Content-Type: application\/json; charset=utf-8\r\n/);
  assert.deepEqual(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)), { code: 'NOTIFY_ERR_LIMIT', error: 'too many connections (limits.connections: 2)' });
  await Promise.all(quiet.map((s) => s.gone));
  const health = await fetch(`${d.httpUrl}/healthz`);
  assert.equal(health.status, 200);
});

test('file descriptors: the daemon raises its soft limit on open files to the hard limit at start and logs the figure', { timeout: HANG_MS * 2 }, async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'notify.yaml');
  writeFileSync(file, stringify({ ws: { listen: '127.0.0.1:0' }, text: { listen: '127.0.0.1:0' }, http: { listen: '127.0.0.1:0' }, state: { dir: join(dir, 'state') } }));
  const bin = fileURLToPath(new URL('../../../bin/notify', import.meta.url));
  const hard = Number(execFileSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).trim());
  assert.ok(hard > 256, `a hard limit above 256 to test with (${hard})`);
  const child = spawn('sh', ['-c', `ulimit -Sn 256 && exec "$0" "$1" serve --config "$2"`, process.execPath, bin, file], { stdio: ['ignore', 'ignore', 'pipe'] });
  t.after(() => child.kill('SIGKILL'));
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (c: string) => (err += c));
  await until(() => parseLogs(err).some((l) => typeof l.fdSoft === 'number'), 'the open-files log line', HANG_MS);
  const line = parseLogs(err).find((l) => typeof l.fdSoft === 'number') as { msg: string; fdSoft: number; fdHard: number };
  // Started with a soft limit of 256: it runs with the hard limit (Node raises it at start on
  // Linux; the daemon raises it with prlimit where that did not happen) and says so.
  assert.equal(line.fdSoft, hard, 'raised to the hard limit');
  assert.equal(line.fdHard, hard);
  assert.match(line.msg, new RegExp(`^open files: at most ${hard}\\b`));
});
