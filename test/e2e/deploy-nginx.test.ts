import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import { SKIP as NO_CHROMIUM, SLOW_MS, openPage } from '../helpers/browser.js';
import { HANG_MS, until } from '../helpers/clients.js';
import { cli } from '../helpers/cli.js';
import { type TestDaemon, startDaemon, tempDir } from '../helpers/daemon.js';
import { startFakeHttp } from '../helpers/fake-http.js';
import { deadPort } from '../helpers/net.js';
import { type TestCa, type TestCert, issueCert, makeTestCa } from '../helpers/tls.js';

const NGINX = '/usr/sbin/nginx';
// CI installs nginx and openssl (.ci/run), so there a missing one is a failure, not a skip.
const NO_NGINX = (existsSync(NGINX) && existsSync('/usr/bin/openssl')) || process.env.CI ? false : `${NGINX} or openssl not installed (.ci/run installs them)`;
const CONF = fileURLToPath(new URL('../../../contrib/nginx.conf', import.meta.url));

delete process.env.NOTIFY_TOKEN;
delete process.env.NOTIFY_CA;

/** Replaces the one occurrence of `from` in `text` (a second or none means the example changed under the test). */
function replaceOnce(text: string, from: string, to: string): string {
  const at = text.indexOf(from);
  assert.ok(at >= 0 && text.indexOf(from, at + from.length) < 0, `contrib/nginx.conf has exactly one "${from}"`);
  return text.slice(0, at) + to + text.slice(at + from.length);
}

interface Nginx {
  /** The https:// (and wss://) origin it serves, "https://127.0.0.1:PORT". */
  origin: string;
  port: number;
  errorLog(): string;
}

/**
 * Debian's nginx with the committed contrib/nginx.conf, templated for this test: its listen
 * lines on free 127.0.0.1 ports, its upstreams at the daemon's real ports, its certificate the
 * test's. Everything else is the file as committed, included from a minimal main config of the
 * test's own (pid, logs and temp paths in a temp folder; run in the foreground, killed at the end).
 */
async function startNginx(t: TestContext, d: TestDaemon, cert: TestCert): Promise<Nginx> {
  const dir = tempDir(t, 'notify-nginx-');
  // Workers run as an unprivileged user when the test runs as root: they must reach the folder.
  chmodSync(dir, 0o755);
  for (const sub of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, 'tmp', sub), { recursive: true });
  const port = await deadPort();
  const redirect = await deadPort();
  let conf = readFileSync(CONF, 'utf8');
  conf = replaceOnce(conf, 'listen 443 ssl;', `listen 127.0.0.1:${port} ssl;`);
  conf = replaceOnce(conf, 'listen 80;', `listen 127.0.0.1:${redirect};`);
  conf = replaceOnce(conf, 'server 127.0.0.1:1234;', `server ${d.addresses().ws};`);
  conf = replaceOnce(conf, 'server 127.0.0.1:5680;', `server ${d.addresses().http};`);
  conf = replaceOnce(conf, '/etc/letsencrypt/live/push.example.com/fullchain.pem', cert.certFile);
  conf = replaceOnce(conf, '/etc/letsencrypt/live/push.example.com/privkey.pem', cert.keyFile);
  writeFileSync(join(dir, 'notify.conf'), conf);
  writeFileSync(
    join(dir, 'nginx.conf'),
    `pid ${dir}/nginx.pid;
error_log ${dir}/error.log info;
worker_processes 1;
events { worker_connections 256; }
http {
  access_log ${dir}/access.log;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
  include ${dir}/notify.conf;
}
`,
  );
  const errorLog = () => (existsSync(join(dir, 'error.log')) ? readFileSync(join(dir, 'error.log'), 'utf8') : '');
  const proc: ChildProcess = spawn(NGINX, ['-p', dir, '-e', join(dir, 'error.log'), '-c', join(dir, 'nginx.conf'), '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr?.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  const exited = once(proc, 'exit');
  t.after(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill('SIGTERM');
      await exited;
    }
  });
  // Up once it answers TLS on its port.
  const deadline = Date.now() + HANG_MS;
  for (;;) {
    if (proc.exitCode !== null) assert.fail(`nginx exited (${proc.exitCode}): ${stderr}\n${errorLog()}`);
    const up = await new Promise<boolean>((resolve) => {
      const s = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (up) break;
    if (Date.now() > deadline) assert.fail(`nginx did not listen within ${HANG_MS} ms: ${stderr}\n${errorLog()}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { origin: `https://127.0.0.1:${port}`, port, errorLog };
}

/** A wss:// connection through nginx from local address `from`, sending `headers`: the session (bound to `uid`), or the refusal's status and body. */
async function connectVia(t: TestContext, url: string, ca: TestCa, from: string, uid: string, headers: Record<string, string> = {}) {
  const ws = new WebSocket(url, { ca: [ca.pem], localAddress: from, headers });
  t.after(() => ws.terminate());
  ws.on('error', () => {});
  const frames: string[] = [];
  ws.on('message', (m) => frames.push(m.toString()));
  const outcome = await new Promise<{ open: true } | { open: false; status: number; body: string }>((resolve) => {
    ws.once('open', () => resolve({ open: true }));
    ws.once('unexpected-response', (_req, res: IncomingMessage) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ open: false, status: res.statusCode ?? 0, body }));
    });
  });
  if (outcome.open) ws.send(uid);
  return { ws, frames, ...outcome };
}

test('deploy: through Debian\'s nginx with contrib/nginx.conf, the demo page over https binds over wss and gets a push sent through the API over https', { skip: NO_NGINX || NO_CHROMIUM, timeout: 120_000 }, async (t) => {
  const ca = await makeTestCa(tempDir(t));
  const cert = await issueCert(ca, 'proxy', { serial: 1 });
  const d = await startDaemon(t, { ws: { behindProxy: true } });
  const nginx = await startNginx(t, d, cert);

  const { page, pageErrors, foreign, checkHost } = await openPage(t, { args: [`--ignore-certificate-errors-spki-list=${cert.spki}`] });
  const sockets: string[] = [];
  page.on('websocket', (ws) => {
    sockets.push(ws.url());
    checkHost(ws.url());
  });
  const res = await page.goto(`${nginx.origin}/?uid=viaproxy`, { waitUntil: 'load' });
  assert.equal(res?.status(), 200);
  await page.locator('#state', { hasText: /^connected$/ }).waitFor();
  await until(() => d.registry.index('websocket').has('viaproxy'), 'the page to bind through nginx', SLOW_MS);
  assert.deepEqual(sockets, [`wss://127.0.0.1:${nginx.port}/`]);

  const sent = await cli(['send', '--server', nginx.origin, '--ca', ca.certFile, '--uid', 'viaproxy', '--msg', 'through nginx']);
  assert.equal(sent.code, 0, sent.err);
  assert.equal(sent.out, 'delivered to 1 target (websocket: 1)\n');
  await page.locator('#pushes li', { hasText: 'through nginx' }).waitFor();

  const health = await cli(['status', '--server', nginx.origin, '--ca', ca.certFile]);
  assert.equal(health.code, 0, health.err);
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(foreign, []);
  assert.doesNotMatch(nginx.errorLog(), /\[(error|crit|alert|emerg)\]/, 'nginx logged no error');
});

test('deploy: behind nginx notify counts each client by the address nginx appends to X-Forwarded-For; an address the client forges in the header is not used', { skip: NO_NGINX, timeout: 120_000 }, async (t) => {
  const ca = await makeTestCa(tempDir(t));
  const cert = await issueCert(ca, 'proxy', { serial: 1 });
  const d = await startDaemon(t, { ws: { behindProxy: true }, limits: { connectionsPerIp: 1 } });
  const nginx = await startNginx(t, d, cert);
  const url = `wss://127.0.0.1:${nginx.port}/`;

  // Every connection reaches notify from nginx (127.0.0.1); the clients come from 127.0.0.2 and 127.0.0.3.
  const first = await connectVia(t, url, ca, '127.0.0.2', 'a');
  assert.equal(first.open, true, JSON.stringify(first));
  await until(() => d.registry.index('websocket').has('a'), 'the first client to bind');

  // A second connection of 127.0.0.2 claiming another address: nginx sends "198.51.100.7, 127.0.0.2",
  // notify takes the right-most, and 127.0.0.2 has its one connection already.
  const forged = await connectVia(t, url, ca, '127.0.0.2', 'b', { 'X-Forwarded-For': '198.51.100.7' });
  assert.equal(forged.open, false);
  if (forged.open === false) {
    assert.equal(forged.status, 503);
    assert.equal(forged.body, 'too many connections from 127.0.0.2 (limits.connectionsPerIp: 1)\n');
  }
  const plain = await connectVia(t, url, ca, '127.0.0.2', 'c');
  assert.equal(plain.open, false, 'the same without a forged header');

  // Another client is another address, though it reaches notify from the same nginx.
  const other = await connectVia(t, url, ca, '127.0.0.3', 'd', { 'X-Forwarded-For': '127.0.0.2' });
  assert.equal(other.open, true, JSON.stringify(other));
  await until(() => d.registry.index('websocket').has('d'), 'the client from 127.0.0.3 to bind');

  // The first client's session works through the proxy: a push reaches it.
  const sent = await cli(['send', '--server', nginx.origin, '--ca', ca.certFile, '--uid', 'a', '--msg', 'hello a']);
  assert.equal(sent.code, 0, sent.err);
  await until(() => first.frames.includes('hello a'), 'the push through nginx');
});

/** POST /v1/send through nginx from local address `from`: the status and body. */
function sendVia(nginx: Nginx, ca: TestCa, from: string, body: unknown): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const text = JSON.stringify(body);
    const req = httpsRequest(
      `${nginx.origin}/v1/send`,
      { method: 'POST', ca: [ca.pem], localAddress: from, agent: false, headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) } },
      (res) => {
        let out = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (out += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: out }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(text);
  });
}

test('deploy: behind nginx with http.behindProxy, publishes of several clients in flight at once are not refused as too many connections from nginx\'s one address', { skip: NO_NGINX, timeout: 120_000 }, async (t) => {
  const ca = await makeTestCa(tempDir(t));
  const cert = await issueCert(ca, 'proxy', { serial: 1 });
  // A webhook that holds every request until released: each publish waits for its report, so
  // its connection from nginx stays open meanwhile.
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const hook = await startFakeHttp(t, async () => {
    await released;
    return undefined;
  });
  t.after(() => release());
  const transports = { hook: { type: 'http', url: `${hook.url}/push/{{uid}}`, body: { uid: '{{uid}}', msg: '{{msg}}' } } };
  const clients = ['127.0.0.2', '127.0.0.3', '127.0.0.4'];

  for (const behindProxy of [false, true]) {
    const d = await startDaemon(t, { ws: { behindProxy: true }, http: { behindProxy }, limits: { connectionsPerIp: 2 }, dispatch: { deliverTimeoutMs: 60_000 }, transports });
    const nginx = await startNginx(t, d, cert);
    const before = hook.requests.length;
    const sends = clients.map((from, i) => sendVia(nginx, ca, from, { uid: `u${i}`, msg: `from ${from}` }));
    if (behindProxy) {
      // All three are at the webhook at once: three connections from nginx open together. (A
      // publish answered before the release is a refusal somewhere: say which.)
      const early: { status: number; body: string }[] = [];
      for (const s of sends) void s.then((a) => early.push(a));
      await until(() => hook.requests.length === before + 3 || early.length > 0, 'the three publishes to reach the webhook', HANG_MS);
      assert.deepEqual(early, [], `answered before the webhook let them go (${hook.requests.length - before} reached it)`);
      release();
      const answers = await Promise.all(sends);
      for (const a of answers) {
        assert.equal(a.status, 200, a.body);
        assert.equal((JSON.parse(a.body) as { sent: number }).sent, 1, a.body);
      }
    } else {
      // Without it the third connection from nginx is over 127.0.0.1's limit: a client is
      // refused because of the others.
      // (The two others are held at the webhook: the first answer is the refusal.)
      const refused = await Promise.race(sends);
      assert.equal(refused.status, 503, refused.body);
      assert.deepEqual(JSON.parse(refused.body), { code: 'NOTIFY_ERR_LIMIT', error: 'too many connections from 127.0.0.1 (limits.connectionsPerIp: 2)' });
      await until(() => hook.requests.length === before + 2, 'the two other publishes to reach the webhook', HANG_MS);
    }
    await d.stop();
  }
});
