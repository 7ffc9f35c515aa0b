import assert from 'node:assert/strict';
import { once } from 'node:events';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { WebSocket } from 'ws';
import { stringify } from 'yaml';
import { SKIP as NO_CHROMIUM, SLOW_MS, openPage } from '../helpers/browser.js';
import { send } from '../helpers/api.js';
import { startChild } from '../helpers/child.js';
import { HANG_MS, until } from '../helpers/clients.js';
import { cli, oneErrLine } from '../helpers/cli.js';
import { startDaemon, tempDir, testConfig } from '../helpers/daemon.js';
import { type TestCa, type TestCert, issueCert, issueIntermediateCa, makeTestCa } from '../helpers/tls.js';

// openssl makes the certificates; CI installs it (.ci/run).
const NO_OPENSSL = existsSync('/usr/bin/openssl') || process.env.CI ? false : 'openssl not installed (.ci/run installs it)';

// The CLI falls back to these; keep the caller's environment out of these tests.
delete process.env.NOTIFY_TOKEN;
delete process.env.NOTIFY_CA;

const tlsOf = (c: TestCert) => ({ tls: { cert: c.certFile, key: c.keyFile } });

/** The certificate a fresh TLS connection to 127.0.0.1:port is served, checked against `ca`. */
async function servedCert(port: number, ca: TestCa): Promise<{ fingerprint256: string; serialNumber: string }> {
  const socket = tlsConnect({ host: '127.0.0.1', port, ca: [ca.pem] });
  try {
    await once(socket, 'secureConnect');
    const c = socket.getPeerCertificate();
    return { fingerprint256: c.fingerprint256, serialNumber: c.serialNumber };
  } finally {
    socket.destroy();
  }
}

/** A wss:// session bound to `uid` with the original protocol (first frame), trusting `ca`; records frames and the certificate it got. */
async function wssSession(t: TestContext, url: string, ca: TestCa, uid: string) {
  const ws = new WebSocket(url, { ca: [ca.pem] });
  t.after(() => ws.terminate());
  const frames: string[] = [];
  ws.on('message', (d) => frames.push(d.toString()));
  ws.on('error', () => {});
  let cert = '';
  ws.once('upgrade', (res: IncomingMessage) => (cert = (res.socket as TLSSocket).getPeerCertificate().fingerprint256));
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  await once(ws, 'open');
  ws.send(uid);
  return { ws, frames, cert: () => cert, closed };
}

const port = (address: string) => Number(address.split(':').pop());

test('tls: the demo page over https:// and the original page script over wss:// in Chromium get pushes sent with notify send --server https://… --ca FILE', { skip: NO_CHROMIUM || NO_OPENSSL, timeout: 120_000 }, async (t) => {
  const ca = await makeTestCa(tempDir(t));
  const leaf = await issueCert(ca, 'notify', { serial: 1 });
  const d = await startDaemon(t, { ws: tlsOf(leaf), http: tlsOf(leaf) });
  const wsAddr = d.addresses().ws;
  const api = `https://${d.addresses().http}`;
  assert.ok(d.logs.some((l) => l.listener === 'ws' && String(l.msg).startsWith(`websocket sessions on wss://${wsAddr}/ (demo page: https://${wsAddr}/)`)), 'the start line says wss:// and https://');
  assert.ok(d.logs.some((l) => l.listener === 'http' && l.msg === `http api on https://${d.addresses().http}/v1/send` && l.sha256 === leaf.fingerprint256));

  // Chromium trusts this one certificate's key, nothing else: no blanket --ignore-certificate-errors.
  const { page, pageErrors, foreign, checkHost } = await openPage(t, { args: [`--ignore-certificate-errors-spki-list=${leaf.spki}`] });
  const sockets: string[] = [];
  page.on('websocket', (ws) => {
    sockets.push(ws.url());
    checkHost(ws.url());
  });

  // The demo page (notify-client.js picks wss:// on an https:// page).
  const res = await page.goto(`https://${wsAddr}/?uid=uid1`, { waitUntil: 'load' });
  assert.equal(res?.status(), 200);
  await page.locator('#state', { hasText: /^connected$/ }).waitFor();
  await until(() => d.registry.index('websocket').has('uid1'), 'the demo page to bind uid1', SLOW_MS);

  // The Workerman example's page script, unchanged but for wss:// (and this port for 1234).
  const alerts: string[] = [];
  page.on('dialog', (dialog) => {
    alerts.push(dialog.message());
    void dialog.accept();
  });
  await page.evaluate(`ws = new WebSocket('wss://' + document.domain + ':${port(wsAddr)}');
ws.onopen = function () { ws.send('uid2'); };
ws.onmessage = function (e) { alert(e.data); };`);
  await until(() => d.registry.index('websocket').has('uid2'), 'the original script to bind uid2', SLOW_MS);

  const sent = await cli(['send', '--server', api, '--ca', ca.certFile, '--uid', 'uid1', '--msg', 'over https']);
  assert.equal(sent.code, 0, sent.err);
  assert.equal(sent.out, 'delivered to 1 target (websocket: 1)\n');
  await page.locator('#pushes li', { hasText: 'over https' }).waitFor();

  const frame = JSON.stringify({ uid: 'uid2', percent: '88%' });
  const sent2 = await cli(['send', '--server', api, '--ca', ca.certFile, '--uid', 'uid2', '--msg', frame]);
  assert.equal(sent2.code, 0, sent2.err);
  await until(() => alerts.includes(frame), 'the original script to alert the push', SLOW_MS);

  assert.deepEqual(sockets.map((u) => new URL(u).protocol), ['wss:', 'wss:'], `both sockets are wss: ${JSON.stringify(sockets)}`);
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(foreign, []);
});

test('tls: notify send to an https:// daemon: exit 2 with one line about the untrusted certificate without --ca, or with the wrong CA; 0 with NOTIFY_CA', { skip: NO_OPENSSL, timeout: 60_000 }, async (t) => {
  const dir = tempDir(t);
  const ca = await makeTestCa(join(dir, 'ca'));
  const other = await makeTestCa(join(dir, 'other'));
  const leaf = await issueCert(ca, 'notify', { serial: 1 });
  const d = await startDaemon(t, { http: tlsOf(leaf) });
  const api = `https://${d.addresses().http}`;
  const args = ['send', '--server', api, '--uid', 'nobody', '--msg', 'hi'];

  const bare = await cli(args);
  assert.equal(bare.code, 2);
  assert.equal(
    oneErrLine(bare, 'no --ca'),
    `notify: the TLS certificate of ${api} is not trusted (UNABLE_TO_VERIFY_LEAF_SIGNATURE); give the CA that signed it with --ca FILE (or NOTIFY_CA)`,
  );

  const wrong = await cli([...args, '--ca', other.certFile]);
  assert.equal(wrong.code, 2);
  assert.equal(oneErrLine(wrong, 'another CA'), `notify: the TLS certificate of ${api} is not trusted (UNABLE_TO_VERIFY_LEAF_SIGNATURE); it does not chain up to the CA in ${other.certFile}`);

  const missing = await cli([...args, '--ca', join(dir, 'nope.pem')]);
  assert.equal(missing.code, 2);
  assert.equal(oneErrLine(missing, 'missing --ca file'), `notify: --ca: cannot read ${join(dir, 'nope.pem')}: no such file`);
  const notPem = await cli([...args, '--ca', leaf.keyFile]);
  assert.equal(notPem.code, 2);
  assert.equal(oneErrLine(notPem, '--ca a key'), `notify: --ca: ${leaf.keyFile} holds no PEM certificate`);
  assert.ok(!notPem.err.includes(readFileSync(leaf.keyFile, 'utf8').split('\n')[1] as string), 'no key material in the error');

  // Nobody is connected: 1 (delivered to none), which is an answer from the daemon over TLS.
  process.env.NOTIFY_CA = ca.certFile;
  t.after(() => delete process.env.NOTIFY_CA);
  const env = await cli(args);
  assert.equal(env.code, 1, env.err);
  assert.match(env.out, /^not delivered/);
  const ok = await cli(['status', '--server', api]);
  assert.equal(ok.code, 0, ok.err);
  // No --server: the config's http.listen, over https:// because it has http.tls.
  const config = join(dir, 'client.yaml');
  writeFileSync(config, stringify({ http: { listen: d.addresses().http, ...tlsOf(leaf) } }));
  const viaConfig = await cli(['status', '--config', config]);
  assert.equal(viaConfig.code, 0, viaConfig.err);
});

test('tls: SIGHUP with a new certificate: a session opened before stays open and still receives, new connections get the new certificate; a wrong file keeps the running one and says why', { skip: NO_OPENSSL, timeout: 120_000 }, async (t) => {
  const dir = tempDir(t);
  const ca = await makeTestCa(join(dir, 'ca'));
  const first = await issueCert(ca, 'first', { serial: 1 });
  const second = await issueCert(ca, 'second', { serial: 2 });
  const third = await issueCert(ca, 'third', { serial: 3 });
  const certFile = join(dir, 'live.pem');
  const keyFile = join(dir, 'live.key');
  const install = (c: TestCert) => {
    copyFileSync(c.certFile, certFile);
    copyFileSync(c.keyFile, keyFile);
  };
  install(first);
  const config = join(dir, 'notify.yaml');
  const tls = { cert: certFile, key: keyFile };
  writeFileSync(config, stringify({ ws: { listen: '127.0.0.1:0', tls }, text: { listen: '127.0.0.1:0' }, http: { listen: '127.0.0.1:0', tls }, state: { dir: join(dir, 'state') } }));
  const child = await startChild(t, config);
  const wsPort = port(child.ws);
  const httpPort = port(child.http);
  const api = `https://${child.http}`;
  assert.equal((await servedCert(wsPort, ca)).fingerprint256, first.fingerprint256);

  const keeper = await wssSession(t, `wss://${child.ws}/`, ca, 'keeper');
  assert.equal(keeper.cert(), first.fingerprint256);
  const before = await cli(['send', '--server', api, '--ca', ca.certFile, '--uid', 'keeper', '--msg', 'before']);
  assert.equal(before.code, 0, before.err);
  await until(() => keeper.frames.includes('before'), 'the first push');

  const reloaded = (key: string, n: number) => child.logs.filter((l) => String(l.msg).startsWith(`${key}: certificate reloaded`)).length >= n;
  install(second);
  child.proc.kill('SIGHUP');
  await until(() => reloaded('ws.tls', 1) && reloaded('http.tls', 1), 'both listeners to reload their certificate', HANG_MS);
  const line = child.logs.find((l) => String(l.msg).startsWith('ws.tls: certificate reloaded'));
  assert.equal(line?.serial, second.serialNumber);
  assert.equal(line?.sha256, second.fingerprint256);

  const now = await servedCert(wsPort, ca);
  assert.deepEqual(now, { fingerprint256: second.fingerprint256, serialNumber: second.serialNumber }, 'a new connection to the ws port sees the new certificate');
  assert.equal((await servedCert(httpPort, ca)).fingerprint256, second.fingerprint256, 'and one to the API port');
  const fresh = await wssSession(t, `wss://${child.ws}/`, ca, 'fresh');
  assert.equal(fresh.cert(), second.fingerprint256);

  assert.equal(keeper.ws.readyState, WebSocket.OPEN, 'the session from before is still open');
  const after = await cli(['send', '--server', api, '--ca', ca.certFile, '--uid', 'keeper', '--msg', 'after']);
  assert.equal(after.code, 0, after.err);
  await until(() => keeper.frames.includes('after'), 'the push after the rotation');
  assert.deepEqual(keeper.frames, ['before', 'after']);

  // A key of another certificate: the running certificate stays, and the log says why.
  copyFileSync(third.keyFile, keyFile);
  child.proc.kill('SIGHUP');
  const kept = (key: string) => child.logs.find((l) => l.level === 'error' && String(l.msg).startsWith(`${key}: keeping the running certificate`));
  await until(() => kept('ws.tls') !== undefined && kept('http.tls') !== undefined, 'the reload to refuse the mismatched key', HANG_MS);
  assert.equal(kept('ws.tls')?.msg, `ws.tls: keeping the running certificate: ws.tls.key: ${keyFile} is not the key of the certificate in ${certFile} (ws.tls.cert)`);
  assert.equal((await servedCert(wsPort, ca)).fingerprint256, second.fingerprint256, 'still the second certificate');
  assert.equal((await servedCert(httpPort, ca)).fingerprint256, second.fingerprint256);
  assert.equal(keeper.ws.readyState, WebSocket.OPEN);
  const keyBody = readFileSync(third.keyFile, 'utf8').split('\n')[1] as string;
  assert.ok(!JSON.stringify(child.logs).includes(keyBody), 'no key material in the log');
  assert.equal(child.proc.exitCode, null, 'the daemon is still running');
});

test('tls: a wss:// session that stays silent past limits.silentTimeout is not cut off (the timeout ends with the handshake), and a silent TLS connection is', { skip: NO_OPENSSL, timeout: 60_000 }, async (t) => {
  const ca = await makeTestCa(tempDir(t));
  const leaf = await issueCert(ca, 'notify', { serial: 1 });
  const d = await startDaemon(t, { ws: tlsOf(leaf), limits: { silentTimeout: '300ms' } });
  const s = await wssSession(t, `wss://${d.addresses().ws}/`, ca, 'quiet');
  await until(() => d.registry.index('websocket').has('quiet'), 'the bind');
  // A TLS connection that never sends a request is closed after silentTimeout ...
  const idle = tlsConnect({ host: '127.0.0.1', port: port(d.addresses().ws), ca: [ca.pem] });
  idle.on('error', () => {});
  await once(idle, 'close');
  // ... while the session, silent all that time, is still there and receives.
  assert.equal(s.ws.readyState, WebSocket.OPEN);
  const r = await send(d.httpUrl, { uid: 'quiet', msg: 'still here' });
  assert.equal(r.sent, 1, JSON.stringify(r));
  await until(() => s.frames.includes('still here'), 'the push to the silent session');
});

test('tls: a reload with other certificate paths applies them without a restart; turning TLS off is listed as needing one', { skip: NO_OPENSSL, timeout: 60_000 }, async (t) => {
  const dir = tempDir(t);
  const ca = await makeTestCa(join(dir, 'ca'));
  const first = await issueCert(ca, 'first', { serial: 1 });
  const second = await issueCert(ca, 'second', { serial: 2 });
  const state = { dir: join(dir, 'state') };
  const d = await startDaemon(t, { ws: tlsOf(first), state });
  assert.equal((await servedCert(port(d.addresses().ws), ca)).serialNumber, first.serialNumber);

  const moved = await d.reload(testConfig({ ws: tlsOf(second), state }, t));
  assert.deepEqual(moved.restartNeeded, [], 'new paths are a reload, not a restart');
  assert.equal((await servedCert(port(d.addresses().ws), ca)).serialNumber, second.serialNumber);
  assert.ok(d.logs.some((l) => String(l.msg).startsWith('ws.tls: certificate reloaded') && l.cert === second.certFile));

  const off = await d.reload(testConfig({ state }, t));
  assert.deepEqual(off.restartNeeded, ['ws']);
  assert.equal((await servedCert(port(d.addresses().ws), ca)).serialNumber, second.serialNumber, 'still TLS until a restart');
});

test('tls: a cert file with the intermediate after the certificate (fullchain.pem) serves the chain: a client that trusts only the root connects', { skip: NO_OPENSSL, timeout: 60_000 }, async (t) => {
  const dir = tempDir(t);
  const root = await makeTestCa(join(dir, 'root'));
  const intermediate = await issueIntermediateCa(root, 'intermediate', 1);
  const leaf = await issueCert(intermediate, 'notify', { serial: 1 });
  const fullchain = join(dir, 'fullchain.pem');
  writeFileSync(fullchain, leaf.pem + intermediate.pem);
  const d = await startDaemon(t, { http: { tls: { cert: fullchain, key: leaf.keyFile } } });
  assert.equal((await servedCert(port(d.addresses().http), root)).fingerprint256, leaf.fingerprint256);
  const r = await cli(['status', '--server', `https://${d.addresses().http}`, '--ca', root.certFile]);
  assert.equal(r.code, 0, r.err);
  // The leaf alone does not verify against the root: the chain is what made the difference.
  const bare = await startDaemon(t, { http: { tls: { cert: leaf.certFile, key: leaf.keyFile } } });
  const alone = await cli(['status', '--server', `https://${bare.addresses().http}`, '--ca', root.certFile]);
  assert.equal(alone.code, 2);
  assert.match(alone.err, /is not trusted \((UNABLE_TO_GET_ISSUER_CERT_LOCALLY|UNABLE_TO_VERIFY_LEAF_SIGNATURE)\); it does not chain up to the CA in /);
});

test('tls: SIGHUP with the certificate path now a FIFO keeps the running certificate, says why, and the daemon keeps serving (it does not wait on the FIFO)', { skip: NO_OPENSSL, timeout: 60_000 }, async (t) => {
  const dir = tempDir(t);
  const ca = await makeTestCa(join(dir, 'ca'));
  const first = await issueCert(ca, 'first', { serial: 1 });
  const certFile = join(dir, 'live.pem');
  copyFileSync(first.certFile, certFile);
  const config = join(dir, 'notify.yaml');
  const tls = { cert: certFile, key: first.keyFile };
  writeFileSync(config, stringify({ ws: { listen: '127.0.0.1:0' }, text: { listen: '127.0.0.1:0' }, http: { listen: '127.0.0.1:0', tls }, state: { dir: join(dir, 'state') } }));
  const child = await startChild(t, config);
  // The operator's mistake: a FIFO (or a device) where the certificate was. Nobody writes to it.
  unlinkSync(certFile);
  execFileSync('mkfifo', [certFile]);
  child.proc.kill('SIGHUP');
  const kept = () => child.logs.find((l) => l.level === 'error' && String(l.msg).startsWith('http.tls: keeping the running certificate'));
  await until(() => kept() !== undefined, 'the reload to refuse the FIFO', HANG_MS);
  assert.equal(kept()?.msg, `http.tls: keeping the running certificate: http.tls.cert: ${certFile} is not a regular file (a FIFO, socket or device); give the path of a PEM file`);
  assert.equal((await servedCert(port(child.http), ca)).fingerprint256, first.fingerprint256, 'still serving the first certificate');
  const r = await cli(['status', '--server', `https://${child.http}`, '--ca', ca.certFile]);
  assert.equal(r.code, 0, r.err);
});

test('tls: a plain http:// request to a TLS port is answered 400 saying to use https:// (JSON on the API, so the CLI shows it), not dropped; a silent TCP connection is still closed', { skip: NO_OPENSSL, timeout: 60_000 }, async (t) => {
  const ca = await makeTestCa(tempDir(t));
  const leaf = await issueCert(ca, 'notify', { serial: 1 });
  const d = await startDaemon(t, { ws: tlsOf(leaf), http: tlsOf(leaf), limits: { silentTimeout: '500ms' } });
  const api = await fetch(`http://${d.addresses().http}/healthz`);
  assert.equal(api.status, 400);
  assert.deepEqual(await api.json(), { code: 'NOTIFY_ERR_TLS_REQUIRED', error: 'this port serves TLS only (http.tls): use https://, not http://' });
  const page = await fetch(`http://${d.addresses().ws}/`);
  assert.equal(page.status, 400);
  assert.equal(await page.text(), 'this port serves TLS only (ws.tls): use https:// (wss:// for WebSocket sessions), not http://\n');
  const r = await cli(['status', '--server', `http://${d.addresses().http}`]);
  assert.equal(r.code, 2);
  assert.equal(oneErrLine(r, 'status over http:// to an https:// daemon'), 'notify: the daemon refused the request: this port serves TLS only (http.tls): use https://, not http:// (NOTIFY_ERR_TLS_REQUIRED)');
  // TLS itself is unchanged on both ports.
  assert.equal((await servedCert(port(d.addresses().http), ca)).fingerprint256, leaf.fingerprint256);
  const ok = await cli(['status', '--server', `https://${d.addresses().http}`, '--ca', ca.certFile]);
  assert.equal(ok.code, 0, ok.err);
  const s = await wssSession(t, `wss://${d.addresses().ws}/`, ca, 'after');
  await until(() => d.registry.index('websocket').has('after'), 'a wss:// bind');
  assert.equal(s.ws.readyState, WebSocket.OPEN);
  // A TCP connection that never sends a byte is closed (as a stalled TLS handshake was).
  for (const p of [port(d.addresses().http), port(d.addresses().ws)]) {
    const silent = netConnect({ host: '127.0.0.1', port: p });
    silent.on('error', () => {});
    await once(silent, 'close');
  }
});

test('tls: connections count against limits.connections and connectionsPerIp from accept, before their TLS handshake: stalled handshakes cannot pile up past the limits', { skip: NO_OPENSSL, timeout: 60_000 }, async (t) => {
  const ca = await makeTestCa(tempDir(t));
  const leaf = await issueCert(ca, 'notify', { serial: 1 });
  // silentTimeout well past the test: only the limits close anything here.
  const d = await startDaemon(t, { ws: tlsOf(leaf), http: tlsOf(leaf), limits: { connections: 2, connectionsPerIp: 100, silentTimeout: '5m' } });
  for (const p of [port(d.addresses().ws), port(d.addresses().http)]) {
    // Two TCP connections that never start their handshake hold the two places ...
    const held = await Promise.all([1, 2].map(async () => {
      const s = netConnect({ host: '127.0.0.1', port: p });
      s.on('error', () => {});
      await once(s, 'connect');
      return s;
    }));
    // ... so the next connection is closed at once, TLS client or not.
    const over = netConnect({ host: '127.0.0.1', port: p });
    over.on('error', () => {});
    await once(over, 'close');
    const client = tlsConnect({ host: '127.0.0.1', port: p, ca: [ca.pem] });
    const refused = await new Promise<string>((resolve) => {
      client.once('secureConnect', () => resolve('secureConnect'));
      client.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    });
    assert.notEqual(refused, 'secureConnect', 'no handshake past limits.connections');
    client.destroy();
    assert.ok(held.every((s) => !s.destroyed), 'the two held connections are still open');
    for (const s of held) s.destroy();
    // Once they are gone, TLS clients connect again.
    const deadline = Date.now() + HANG_MS;
    for (;;) {
      const c = tlsConnect({ host: '127.0.0.1', port: p, ca: [ca.pem] });
      c.on('error', () => {});
      const ok = await new Promise<boolean>((resolve) => {
        c.once('secureConnect', () => resolve(true));
        c.once('close', () => resolve(false));
      });
      c.destroy();
      if (ok) break;
      assert.ok(Date.now() < deadline, 'a TLS connection once the held ones closed');
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  const s = await wssSession(t, `wss://${d.addresses().ws}/`, ca, 'after');
  await until(() => d.registry.index('websocket').has('after'), 'a wss:// bind');
  const r = await cli(['send', '--server', `https://${d.addresses().http}`, '--ca', ca.certFile, '--uid', 'after', '--msg', 'hi']);
  assert.equal(r.code, 0, r.err);
  await until(() => s.frames.includes('hi'), 'the push');
});
