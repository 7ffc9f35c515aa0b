import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { EXIT, main } from '../../src/cli/main.js';
import { startDaemon, tempDir, writeTemp } from '../helpers/daemon.js';
import { HANG_MS, session, textClient, until, wsClient } from '../helpers/clients.js';
import { cli, exitCode, fakeIo, lines, oneErrLine, runNotify, spawnNotify } from '../helpers/cli.js';
import { deadPort } from '../helpers/net.js';

const EXAMPLE = fileURLToPath(new URL('../../../config.example.yaml', import.meta.url));
const TOKEN = 't'.repeat(24);

// The CLI falls back to $NOTIFY_TOKEN; keep the caller's environment out of these tests.
delete process.env.NOTIFY_TOKEN;

// ---------------------------------------------------------------------------------------------
// helpers

const PORT0_CONFIG = 'ws:\n  listen: 127.0.0.1:0\ntext:\n  listen: 127.0.0.1:0\nhttp:\n  listen: 127.0.0.1:0\n';

/** The bound addresses a serve logged, by listener, once all three are up. */
async function listeners(logs: () => Record<string, unknown>[], what: string): Promise<{ ws: string; text: string; http: string }> {
  const found = () => logs().filter((l) => typeof l.listener === 'string' && typeof l.address === 'string');
  await until(() => found().length >= 3, `${what} to log its three listeners`);
  const by = Object.fromEntries(found().map((l) => [l.listener as string, l.address as string]));
  for (const k of ['ws', 'text', 'http']) assert.match(by[k] ?? '', /^127\.0\.0\.1:\d+$/, `${k} listener address: ${JSON.stringify(by)}`);
  assert.notEqual(by.ws, '127.0.0.1:0', 'the real port is logged');
  return by as { ws: string; text: string; http: string };
}

/** Waits until the daemon at `http` reports `n` bound websocket uids on /healthz. */
async function boundUids(http: string, n: number): Promise<void> {
  const deadline = Date.now() + HANG_MS;
  for (;;) {
    const h = (await (await fetch(`http://${http}/healthz`)).json()) as { transports: { websocket: { uids: number } } };
    if (h.transports.websocket.uids === n) return;
    if (Date.now() > deadline) assert.fail(`expected ${n} bound uids, health says ${JSON.stringify(h)}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

// ---------------------------------------------------------------------------------------------
// in-process: usage

test('cli: --help lists serve, send, broadcast and config and exits 0', async () => {
  const r = await cli(['--help']);
  assert.equal(r.code, 0);
  for (const cmd of ['serve', 'send', 'broadcast', 'config']) assert.match(r.out, new RegExp(`^\\s+${cmd}\\b`, 'm'), `--help lists ${cmd}`);
  assert.equal(r.err, '');
  const bare = await cli([]);
  assert.equal(bare.code, 0, 'no arguments shows the help');
  assert.equal(bare.out, r.out);
});

test('cli: send --help documents the exit status', async () => {
  const r = await cli(['send', '--help']);
  assert.equal(r.code, 0);
  assert.match(r.out, /--uid/);
  assert.match(r.out, /Exit status: 0 .*1 .*2/);
});

test('cli: an unknown command or option exits 2 with one line on stderr', async () => {
  const cases: [string[], RegExp][] = [
    [['frobnicate'], /unknown command 'frobnicate'/],
    [['send', '--uid', 'x', '--msg', 'hi', '--frob'], /unknown option '--frob'/],
    [['--xyzzy'], /unknown option '--xyzzy'/],
  ];
  for (const [argv, re] of cases) {
    const r = await cli(argv);
    assert.equal(r.code, EXIT.error, argv.join(' '));
    assert.match(oneErrLine(r, argv.join(' ')), re);
    assert.equal(r.out, '');
  }
});

test('cli: a misspelled command or option (with a "did you mean" hint) still exits 2 with one line on stderr', async () => {
  const cases: [string[], RegExp][] = [
    [['sned', '--uid', 'x', '--msg', 'hi'], /unknown command 'sned'.*send/],
    [['brodcast'], /unknown command 'brodcast'.*broadcast/],
    [['--hepl'], /unknown option '--hepl'.*--help/],
    [['broadcast', '--mgs', 'hi'], /unknown option '--mgs'.*--msg/],
  ];
  for (const [argv, re] of cases) {
    const r = await cli(argv);
    assert.equal(r.code, EXIT.error, argv.join(' '));
    assert.match(oneErrLine(r, argv.join(' ')), re);
    assert.equal(r.out, '');
  }
});

test('cli: send without --uid exits 2 with one line', async () => {
  const r = await cli(['send', '--msg', 'hi']);
  assert.equal(r.code, EXIT.error);
  assert.match(oneErrLine(r, 'send without --uid'), /--uid/);
});

test('cli: send --uid x with nothing to send exits 2 with one line', async () => {
  const r = await cli(['send', '--uid', 'x', '--server', 'http://127.0.0.1:1']);
  assert.equal(r.code, EXIT.error);
  assert.match(oneErrLine(r, 'nothing to send'), /nothing to send/);
  const b = await cli(['broadcast']);
  assert.equal(b.code, EXIT.error);
  assert.match(oneErrLine(b, 'broadcast with nothing'), /nothing to send/);
});

test('cli: --data without key=value exits 2 with one line', async () => {
  for (const bad of ['novalue', '=value']) {
    const r = await cli(['send', '--uid', 'x', '--data', bad, '--server', 'http://127.0.0.1:1']);
    assert.equal(r.code, EXIT.error, bad);
    assert.match(oneErrLine(r, `--data ${bad}`), /--data takes key=value/);
  }
});

test('cli: a bad --server or --timeout exits 2 with one line', async () => {
  const s = await cli(['send', '--uid', 'x', '--msg', 'hi', '--server', 'not a url']);
  assert.equal(s.code, EXIT.error);
  assert.match(oneErrLine(s, '--server'), /--server/);
  const tm = await cli(['send', '--uid', 'x', '--msg', 'hi', '--server', 'http://127.0.0.1:1', '--timeout', 'soon']);
  assert.equal(tm.code, EXIT.error);
  assert.match(oneErrLine(tm, '--timeout'), /--timeout/);
});

test('cli: send to a daemon that is not running exits 2 with one line saying it cannot reach it', async () => {
  const port = await deadPort();
  const r = await cli(['send', '--uid', 'x', '--msg', 'hi', '--server', `http://127.0.0.1:${port}`]);
  assert.equal(r.code, EXIT.error);
  const line = oneErrLine(r, 'no daemon');
  assert.match(line, /cannot reach the notify daemon/);
  assert.ok(line.includes(`127.0.0.1:${port}`), `names the address: ${line}`);
  assert.equal(r.out, '');
  const b = await cli(['broadcast', '--msg', 'hi', '--server', `http://127.0.0.1:${port}`]);
  assert.equal(b.code, EXIT.error);
  assert.match(oneErrLine(b, 'broadcast, no daemon'), /cannot reach the notify daemon/);
});

test('cli: a config error exits 2 with one line naming file:line:col', async (t) => {
  // serve reads the whole file; send and broadcast read only http (the rest is the daemon's).
  const daemonFile = writeTemp(t, 'bad.yaml', 'ws:\n  listen: 1234\n  listn: 1\nlog:\n  level: loud\n');
  const clientFile = writeTemp(t, 'bad-http.yaml', 'http:\n  listen: 1234\n  listn: 1\nlog:\n  level: loud\n');
  for (const [argv, file, key] of [
    [['send', '--uid', 'x', '--msg', 'hi', '--config', clientFile], clientFile, /http\.listn/],
    [['broadcast', '--msg', 'hi', '--config', clientFile], clientFile, /http\.listn/],
    [['serve', '--config', daemonFile], daemonFile, /ws\.listn/],
  ] as const) {
    const r = await cli([...argv]);
    assert.equal(r.code, EXIT.error, argv[0]);
    const line = oneErrLine(r, argv[0]);
    assert.ok(line.includes(`${file}:3:3: `), `names ${file}:3:3: ${line}`);
    assert.match(line, key);
  }
  const missing = await cli(['send', '--uid', 'x', '--msg', 'hi', '--config', join(tempDir(t), 'nope.yaml')]);
  assert.equal(missing.code, EXIT.error);
  assert.match(oneErrLine(missing, 'missing config'), /nope\.yaml: no such file/);
});

test('cli: config check accepts config.example.yaml and the defaults', async () => {
  const r = await cli(['config', 'check', '--config', EXAMPLE]);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.out, `${EXAMPLE}: ok\n`);
  assert.equal(r.err, '');
  const d = await cli(['config', 'check']);
  assert.equal(d.code, 0);
  assert.match(d.out, /built-in defaults: ok/);
});

test('cli: config check --print shows the effective config with the token redacted', async (t) => {
  const file = writeTemp(t, 'c.yaml', `http:\n  token: ${TOKEN}\n  listen: 127.0.0.1:7000\n`);
  const r = await cli(['config', 'check', '--config', file, '--print']);
  assert.equal(r.code, 0, r.err);
  assert.ok(!r.out.includes(TOKEN), 'the token is not printed');
  assert.match(r.out, /token: "?\[redacted\]"?/);
  assert.match(r.out, /listen: 127\.0\.0\.1:7000/);
  assert.match(r.out, /maxBodyBytes: 1048576/, 'defaults are filled in');
});

test('cli: config check on a bad file exits 2 and lists every problem', async (t) => {
  const file = writeTemp(t, 'bad.yaml', 'ws:\n  listn: 1\ntext:\n  maxLineBytes: 1\nhttp:\n  token: short\n');
  const r = await cli(['config', 'check', '--config', file]);
  assert.equal(r.code, EXIT.error);
  assert.equal(r.out, '');
  const ls = lines(r.err);
  assert.equal(ls.length, 3, r.err);
  for (const [where, key] of [
    ['2:3', 'ws.listn'],
    ['4:17', 'text.maxLineBytes'],
    ['6:10', 'http.token'],
  ] as const) {
    assert.ok(
      ls.some((l) => l.startsWith(`${file}:${where}: `) && l.includes(key)),
      `lists ${key} at ${where}: ${r.err}`,
    );
  }
});

// ---------------------------------------------------------------------------------------------
// in-process: against a real daemon

test('cli: send --uid --msg delivers exactly the text and exits 0', async (t) => {
  const d = await startDaemon(t);
  const page = await session(t, d, 'uid1');
  const text = 'build 42 done ✓ {"raw":true}';
  const r = await cli(['send', '--server', d.httpUrl, '--uid', 'uid1', '--msg', text]);
  assert.equal(r.code, EXIT.delivered, r.err);
  assert.equal(r.err, '');
  assert.equal(r.out, 'delivered to 1 target (websocket: 1)\n');
  assert.equal(await page.frame(1), text);
  assert.equal(page.frames.length, 1);
});

test('cli: send --json prints the delivery report as JSON', async (t) => {
  const d = await startDaemon(t);
  await session(t, d, 'uid1');
  const sid = d.registry.index('websocket').targets('uid1')[0];
  const r = await cli(['send', '--server', d.httpUrl, '--uid', 'uid1', '--uid', 'gone', '--msg', 'hi', '--json']);
  assert.equal(r.code, EXIT.delivered, r.err);
  assert.ok(r.out.endsWith('\n'));
  assert.equal(lines(r.out).length, 1, 'one line of JSON');
  const report = JSON.parse(r.out) as { id: string };
  assert.match(report.id, /^[0-9A-HJKMNP-TV-Z]{26}$/, 'a ULID message id');
  assert.deepEqual(report, {
    id: report.id,
    stored: true,
    route: 'all',
    delivered: true,
    sent: 1,
    failed: 0,
    rejected: 0,
    results: [{ uid: 'uid1', transport: 'websocket', target: sid, status: 'sent' }],
    unreached: ['gone'],
  });
});

test('cli: send to an offline uid exits 1 and says who was not reachable', async (t) => {
  const d = await startDaemon(t);
  const page = await session(t, d, 'uid1');
  const r = await cli(['send', '--server', d.httpUrl, '--uid', 'nobody', '--msg', 'hi']);
  assert.equal(r.code, EXIT.none, r.err);
  assert.equal(r.err, '');
  assert.match(r.out, /^not delivered; not reachable: nobody; stored for sessions that resume\n$/);
  const j = await cli(['send', '--server', d.httpUrl, '--uid', 'nobody', '--msg', 'hi', '--json']);
  assert.equal(j.code, EXIT.none);
  assert.deepEqual((JSON.parse(j.out) as { unreached: string[] }).unreached, ['nobody']);
  assert.deepEqual(page.frames, []);
});

test('cli: send --uid a --uid b reaches both', async (t) => {
  const d = await startDaemon(t);
  const a = await session(t, d, 'a');
  const b = await session(t, d, 'b');
  const c = await session(t, d, 'c');
  const r = await cli(['send', '--server', d.httpUrl, '--uid', 'a', '--uid', 'b', '--msg', 'both', '--json']);
  assert.equal(r.code, EXIT.delivered, r.err);
  const report = JSON.parse(r.out) as { sent: number; results: { uid: string }[] };
  assert.equal(report.sent, 2);
  assert.deepEqual(report.results.map((e) => e.uid).sort(), ['a', 'b']);
  assert.equal(await a.frame(1), 'both');
  assert.equal(await b.frame(1), 'both');
  assert.deepEqual(c.frames, []);
});

test('cli: send --title and --data k=v sends a flat JSON frame', async (t) => {
  const d = await startDaemon(t);
  const page = await session(t, d, 'uid1');
  const r = await cli(['send', '-s', d.httpUrl, '-u', 'uid1', '--title', 'Deploy', '--data', 'percent=88%', '-d', 'url=a=b']);
  assert.equal(r.code, EXIT.delivered, r.err);
  assert.deepEqual(JSON.parse(await page.frame(1)), { title: 'Deploy', percent: '88%', url: 'a=b' });

  const m = await cli(['send', '-s', d.httpUrl, '-u', 'uid1', '-m', 'done', '-t', 'Deploy']);
  assert.equal(m.code, EXIT.delivered, m.err);
  assert.deepEqual(JSON.parse(await page.frame(2)), { title: 'Deploy', msg: 'done' });

  const data = await cli(['send', '-s', d.httpUrl, '-u', 'uid1', '-d', 'k=v']);
  assert.equal(data.code, EXIT.delivered, data.err);
  assert.deepEqual(JSON.parse(await page.frame(3)), { k: 'v' });
});

test('cli: a message the daemon refuses exits 2 with its reason', async (t) => {
  const d = await startDaemon(t);
  const r = await cli(['send', '--server', d.httpUrl, '--uid', 'uid1', '--data', 'uid=other']);
  assert.equal(r.code, EXIT.error);
  const line = oneErrLine(r, 'reserved data key');
  assert.match(line, /refused/);
  assert.match(line, /NOTIFY_ERR_INVALID_MESSAGE/);
});

test('cli: broadcast --msg exits 0 with sessions and 1 with none', async (t) => {
  const d = await startDaemon(t);
  const none = await cli(['broadcast', '--server', d.httpUrl, '--msg', 'anyone?']);
  assert.equal(none.code, EXIT.none, none.err);
  assert.match(none.out, /^not delivered/);

  const a = await session(t, d, 'a');
  const b = await session(t, d, 'b');
  const r = await cli(['broadcast', '--server', d.httpUrl, '--msg', 'everyone']);
  assert.equal(r.code, EXIT.delivered, r.err);
  assert.equal(r.out, 'delivered to 2 targets (websocket: 2)\n');
  assert.equal(await a.frame(1), 'everyone');
  assert.equal(await b.frame(1), 'everyone');
});

test('cli: with http.token the right --token sends, a wrong or missing one exits 2', async (t) => {
  const d = await startDaemon(t, { http: { token: TOKEN } });
  const page = await session(t, d, 'uid1');

  const ok = await cli(['send', '--server', d.httpUrl, '--token', TOKEN, '--uid', 'uid1', '--msg', 'with token']);
  assert.equal(ok.code, EXIT.delivered, ok.err);
  assert.equal(await page.frame(1), 'with token');

  const wrong = await cli(['send', '--server', d.httpUrl, '--token', 'w'.repeat(24), '--uid', 'uid1', '--msg', 'no']);
  assert.equal(wrong.code, EXIT.error);
  assert.match(oneErrLine(wrong, 'wrong token'), /NOTIFY_ERR_UNAUTHORIZED/);

  const missing = await cli(['broadcast', '--server', d.httpUrl, '--msg', 'no']);
  assert.equal(missing.code, EXIT.error);
  assert.match(oneErrLine(missing, 'no token'), /NOTIFY_ERR_UNAUTHORIZED/);

  process.env.NOTIFY_TOKEN = TOKEN;
  try {
    const env = await cli(['send', '--server', d.httpUrl, '--uid', 'uid1', '--msg', 'env token']);
    assert.equal(env.code, EXIT.delivered, env.err);
  } finally {
    delete process.env.NOTIFY_TOKEN;
  }
  assert.equal(await page.frame(2), 'env token');
  assert.deepEqual(page.frames, ['with token', 'env token']);
});

test('cli: --config FILE whose http.listen and token point at the daemon works without --server', async (t) => {
  const d = await startDaemon(t, { http: { token: TOKEN } });
  const page = await session(t, d, 'uid1');
  const file = writeTemp(t, 'client.yaml', `http:\n  listen: "${d.addresses().http}"\n  token: "${TOKEN}"\n`);
  const r = await cli(['send', '--config', file, '--uid', 'uid1', '--msg', 'via config']);
  assert.equal(r.code, EXIT.delivered, r.err);
  assert.equal(await page.frame(1), 'via config');
  const b = await cli(['broadcast', '--config', file, '--msg', 'all via config']);
  assert.equal(b.code, EXIT.delivered, b.err);
  assert.equal(await page.frame(2), 'all via config');
  const wrong = await cli(['send', '--config', file, '--token', 'w'.repeat(24), '--uid', 'uid1', '--msg', 'x']);
  assert.equal(wrong.code, EXIT.error, '--token wins over the config');
});

test('cli: serve runs in-process until its stop signal, then closes sessions with 1001 and returns 0', async (t) => {
  const file = writeTemp(t, 'serve.yaml', PORT0_CONFIG);
  const f = fakeIo();
  const serving = main(['serve', '--config', file], f.io);
  let done = false;
  void serving.finally(() => (done = true));
  t.after(() => {
    if (!done) f.signal('SIGTERM');
  });
  const a = await listeners(f.logs, 'in-process serve');
  assert.equal(f.listening, 1, 'serve listens for stop signals');
  const page = await wsClient(t, `ws://${a.ws}/`, { bind: 'uid1' });
  await boundUids(a.http, 1);
  const r = await cli(['send', '--server', `http://${a.http}`, '--uid', 'uid1', '--msg', 'in process']);
  assert.equal(r.code, EXIT.delivered, r.err);
  assert.equal(await page.frame(1), 'in process');
  assert.equal(done, false, 'serve keeps running');

  f.signal('SIGTERM');
  assert.equal(await serving, 0);
  const [code] = await page.closed;
  assert.equal(code, 1001);
  assert.equal(f.listening, 0, 'the signal handlers are removed');
  assert.ok(f.logs().some((l) => /SIGTERM: shutting down/.test(String(l.msg))), f.err());
  assert.equal(f.logs().at(-1)?.msg, 'stopped');
});

// ---------------------------------------------------------------------------------------------
// real processes

test('cli process: serve, send from another process, then SIGTERM closes sessions with 1001 and exits 0', async (t) => {
  const file = writeTemp(t, 'serve.yaml', PORT0_CONFIG);
  const serve = spawnNotify(t, ['serve', '--config', file]);
  const a = await listeners(serve.logs, 'notify serve');
  assert.equal(new Set([a.ws, a.text, a.http]).size, 3, 'three distinct listeners');

  const page = await wsClient(t, `ws://${a.ws}/`, { bind: 'uid1' });
  await boundUids(a.http, 1);
  const r = await runNotify(t, ['send', '--server', `http://${a.http}`, '--uid', 'uid1', '--msg', 'hi'], HANG_MS);
  assert.equal(r.code, EXIT.delivered, r.err);
  assert.equal(r.out, 'delivered to 1 target (websocket: 1)\n');
  assert.equal(r.err, '');
  assert.equal(await page.frame(1), 'hi');

  assert.equal(serve.child.kill('SIGTERM'), true);
  const [closeCode] = await page.closed;
  assert.equal(closeCode, 1001);
  assert.equal(await exitCode(serve, 'notify serve after SIGTERM', HANG_MS), 0);
  const logs = serve.logs();
  assert.ok(logs.some((l) => l.level === 'info' && /SIGTERM: shutting down/.test(String(l.msg))), serve.stderr());
  assert.equal(logs.at(-1)?.msg, 'stopped');
  assert.equal(serve.stdout(), '');
});

test('cli process: exit codes are 0 delivered, 1 delivered to none, 2 usage or connection error', async (t) => {
  const d = await startDaemon(t);
  const page = await session(t, d, 'uid1');
  const ok = await runNotify(t, ['send', '--server', d.httpUrl, '--uid', 'uid1', '--msg', 'proc'], HANG_MS);
  assert.equal(ok.code, 0, ok.err);
  assert.equal(await page.frame(1), 'proc');
  const none = await runNotify(t, ['send', '--server', d.httpUrl, '--uid', 'nobody', '--msg', 'proc'], HANG_MS);
  assert.equal(none.code, 1, none.err);
  const usage = await runNotify(t, ['send', '--msg', 'no uid'], HANG_MS);
  assert.equal(usage.code, 2);
  assert.equal(lines(usage.err).length, 1, usage.err);
  const conn = await runNotify(t, ['broadcast', '--server', `http://127.0.0.1:${await deadPort()}`, '--msg', 'x'], HANG_MS);
  assert.equal(conn.code, 2);
  assert.match(conn.err, /^notify: cannot reach the notify daemon .*\n$/);
});

test('cli process: on SIGTERM, every line of a pipelined burst the daemon took is delivered and answered before the Text connection closes', async (t) => {
  const file = writeTemp(t, 'serve.yaml', PORT0_CONFIG);
  const serve = spawnNotify(t, ['serve', '--config', file]);
  const a = await listeners(serve.logs, 'notify serve');
  const page = await wsClient(t, `ws://${a.ws}/`, { bind: 'uid1' });
  const textPort = Number(a.text.split(':').pop());

  await boundUids(a.http, 1);
  const backend = await textClient(t, textPort);
  let socketError: Error | undefined;
  backend.socket.on('error', (err) => (socketError = err));
  const N = 30_000;
  let burst = '';
  for (let i = 0; i < N; i++) burst += `${JSON.stringify({ uid: 'uid1', n: i })}\n`;
  const written = new Promise<void>((resolve) => backend.socket.write(burst, () => resolve()));
  // The burst is with the daemon and it has started on it: stop it while lines are still being
  // read and delivered.
  await written;
  await page.frame(1);
  serve.child.kill('SIGTERM');

  let timer: NodeJS.Timeout | undefined;
  const closedInTime = await Promise.race([backend.ended, new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), HANG_MS)))]);
  clearTimeout(timer);
  assert.equal(closedInTime, true, 'the daemon closed the Text connection');
  const [closeCode] = await page.closed;
  assert.equal(closeCode, 1001);
  assert.equal(await exitCode(serve, 'notify serve after SIGTERM', HANG_MS), 0);

  t.diagnostic(`${backend.lines.length} of ${N} pipelined lines were taken and answered`);
  assert.equal(socketError, undefined, 'the connection was closed, not reset');
  const delivered = page.frames;
  assert.ok(backend.lines.length >= 1, 'lines read before the signal were answered');
  assert.deepEqual(
    backend.lines.filter((l) => l !== 'ok'),
    [],
    'every answered line was delivered',
  );
  assert.equal(backend.lines.length, delivered.length, 'every line that was delivered got its reply before the close');
  // Replies and frames are for the same lines, in order: the first k lines of the burst.
  assert.deepEqual(
    delivered.map((f) => (JSON.parse(f) as { n: number }).n),
    Array.from({ length: delivered.length }, (_, i) => i),
  );
});

test('cli process: a second serve on a port in use exits 2 with one line naming the address and ws.listen', async (t) => {
  const file = writeTemp(t, 'serve.yaml', PORT0_CONFIG);
  const first = spawnNotify(t, ['serve', '--config', file]);
  const a = await listeners(first.logs, 'first notify serve');

  const clash = writeTemp(t, 'clash.yaml', `ws:\n  listen: "${a.ws}"\ntext:\n  listen: 127.0.0.1:0\nhttp:\n  listen: 127.0.0.1:0\n`);
  const second = await runNotify(t, ['serve', '--config', clash], HANG_MS);
  assert.equal(second.code, EXIT.error, second.err);
  assert.equal(second.out, '');
  const ls = lines(second.err);
  assert.equal(ls.length, 1, `one line: ${second.err}`);
  const line = ls[0] as string;
  assert.ok(line.includes(a.ws), `names ${a.ws}: ${line}`);
  assert.match(line, /ws\.listen/);
  assert.match(line, /address already in use/);

  // The first one is unharmed.
  const health = await fetch(`http://${a.http}/healthz`);
  assert.equal(health.status, 200);
  first.child.kill('SIGTERM');
  assert.equal(await exitCode(first, 'first notify serve', HANG_MS), 0);
});
