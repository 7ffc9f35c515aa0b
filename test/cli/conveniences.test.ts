import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { EXIT, summarize } from '../../src/cli/main.js';
import { loadConfig } from '../../src/config/load.js';
import { formatDuration } from '../../src/config/print.js';
import { parseDuration } from '../../src/duration.js';
import { generateVapidKeys } from '../../src/push/webpush/vapid.js';
import type { PublishReport } from '../../src/types.js';
import { VERSION } from '../../src/version.js';
import { HANG_MS, session, until } from '../helpers/clients.js';
import { cli, exitCode, lines, oneErrLine, runNotify, spawnNotify } from '../helpers/cli.js';
import { startDaemon, tempDir, writeTemp } from '../helpers/daemon.js';
import { deadPort } from '../helpers/net.js';

const BIN = fileURLToPath(new URL('../../../bin/notify', import.meta.url));
const TOKEN = 'c'.repeat(24);
const SECRET = 's'.repeat(40);

// The CLI reads these; keep the caller's environment out of the in-process tests.
for (const name of ['NOTIFY_TOKEN', 'NOTIFY_SERVER', 'NOTIFY_CONFIG']) delete process.env[name];

/** A config file that points a client at the daemon at `http` ("127.0.0.1:PORT"). */
const clientYaml = (http: string, token?: string) => `http:\n  listen: "${http}"\n${token ? `  token: "${token}"\n` : ''}`;

// ---------------------------------------------------------------------------------------------
// --version

test('cli conveniences: --version and -V print the version and exit 0, in process and from bin/notify', async (t) => {
  assert.match(VERSION, /^\d+\.\d+\.\d+/);
  for (const flag of ['--version', '-V']) {
    const r = await cli([flag]);
    assert.equal(r.code, 0, flag);
    assert.equal(r.out, `${VERSION}\n`, flag);
    assert.equal(r.err, '');
    const p = await runNotify(t, [flag], HANG_MS);
    assert.equal(p.code, 0, p.err);
    assert.equal(p.out, `${VERSION}\n`);
  }
  const help = await cli(['--help']);
  assert.match(help.out, /-V, --version/, '--help lists it');
});

// ---------------------------------------------------------------------------------------------
// default config path

test('cli conveniences: with no --config, ./notify.yaml is read by send, config check and token', async (t) => {
  const d = await startDaemon(t, { http: { token: TOKEN } });
  const page = await session(t, d, 'uid1');
  const dir = tempDir(t);
  writeFileSync(join(dir, 'notify.yaml'), `${clientYaml(d.addresses().http, TOKEN)}ws:\n  auth: token\n  secret: "${SECRET}"\n`);

  const sent = await runNotify(t, ['send', '--uid', 'uid1', '--msg', 'from ./notify.yaml'], HANG_MS, { cwd: dir });
  assert.equal(sent.code, EXIT.delivered, sent.err);
  assert.equal(await page.frame(1), 'from ./notify.yaml');

  const check = await runNotify(t, ['config', 'check'], HANG_MS, { cwd: dir });
  assert.equal(check.code, 0, check.err);
  assert.equal(check.out, `${join(dir, 'notify.yaml')}: ok\n`);

  const token = await runNotify(t, ['token', '--uid', 'uid1'], HANG_MS, { cwd: dir });
  assert.equal(token.code, 0, token.err);
  assert.match(token.out, /^nt1\./, 'signed with the ws.secret of ./notify.yaml');

  // Elsewhere (no notify.yaml): the built-in defaults.
  const elsewhere = await runNotify(t, ['config', 'check'], HANG_MS, { cwd: tempDir(t) });
  assert.equal(elsewhere.out, 'built-in defaults: ok\n');
});

test('cli conveniences: NOTIFY_CONFIG wins over ./notify.yaml, --config wins over both', async (t) => {
  const d = await startDaemon(t);
  const page = await session(t, d, 'uid1');
  const dead = `127.0.0.1:${await deadPort()}`;
  const dir = tempDir(t);
  writeFileSync(join(dir, 'notify.yaml'), clientYaml(dead));
  const good = writeTemp(t, 'good.yaml', clientYaml(d.addresses().http));
  const bad = writeTemp(t, 'bad.yaml', clientYaml(dead));

  const local = await runNotify(t, ['send', '--uid', 'uid1', '--msg', 'x'], HANG_MS, { cwd: dir });
  assert.equal(local.code, EXIT.error, 'the local notify.yaml points at nothing');
  assert.ok(local.err.includes(dead), local.err);

  const env = await runNotify(t, ['send', '--uid', 'uid1', '--msg', 'via NOTIFY_CONFIG'], HANG_MS, { cwd: dir, env: { NOTIFY_CONFIG: good } });
  assert.equal(env.code, EXIT.delivered, env.err);
  assert.equal(await page.frame(1), 'via NOTIFY_CONFIG');

  const flag = await runNotify(t, ['send', '--config', good, '--uid', 'uid1', '--msg', 'via --config'], HANG_MS, { cwd: dir, env: { NOTIFY_CONFIG: bad } });
  assert.equal(flag.code, EXIT.delivered, flag.err);
  assert.equal(await page.frame(2), 'via --config');

  const check = await runNotify(t, ['config', 'check'], HANG_MS, { cwd: dir, env: { NOTIFY_CONFIG: good } });
  assert.equal(check.out, `${good}: ok\n`);
});

test('cli conveniences: a NOTIFY_CONFIG naming a missing file is an error naming it, not a fall back to ./notify.yaml', async (t) => {
  const dir = tempDir(t);
  writeFileSync(join(dir, 'notify.yaml'), 'log:\n  level: warn\n');
  const missing = join(tempDir(t), 'typo.yaml');
  for (const argv of [['config', 'check'], ['send', '--uid', 'u', '--msg', 'x'], ['serve'], ['status'], ['devices', 'list'], ['token', '--uid', 'u']]) {
    const r = await runNotify(t, argv, HANG_MS, { cwd: dir, env: { NOTIFY_CONFIG: missing } });
    assert.equal(r.code, EXIT.error, `${argv.join(' ')}: ${r.err}`);
    assert.equal(lines(r.err).length, 1, r.err);
    assert.ok(r.err.includes(`NOTIFY_CONFIG names ${missing}, and there is no such file`), `${argv.join(' ')}: ${r.err}`);
  }
});

test('cli conveniences: serve says which config file it runs on (NOTIFY_CONFIG, ./notify.yaml) in its ready line', async (t) => {
  const yaml = 'ws:\n  listen: 127.0.0.1:0\ntext:\n  listen: 127.0.0.1:0\nhttp:\n  listen: 127.0.0.1:0\nstate:\n  dir: ./state\n';
  const file = writeTemp(t, 'serve.yaml', yaml);
  const dir = tempDir(t);
  writeFileSync(join(dir, 'notify.yaml'), yaml);
  const cases = [
    { opts: { env: { NOTIFY_CONFIG: file } }, config: file, msg: `notify ready (config ${file} (from NOTIFY_CONFIG))` },
    { opts: { cwd: dir }, config: join(dir, 'notify.yaml'), msg: `notify ready (config ${join(dir, 'notify.yaml')} (found in the working directory))` },
  ];
  for (const c of cases) {
    const serve = spawnNotify(t, ['serve'], c.opts);
    const ready = () => serve.logs().find((l) => typeof l.msg === 'string' && l.msg.startsWith('notify ready'));
    await until(() => ready() !== undefined || serve.child.exitCode !== null, `serve to be ready (${serve.stderr()})`);
    assert.equal(ready()?.msg, c.msg, serve.stderr());
    assert.equal(ready()?.config, c.config);
    serve.child.kill('SIGTERM');
    assert.equal(await exitCode(serve, 'serve after SIGTERM', HANG_MS), 0, serve.stderr());
  }
});

// ---------------------------------------------------------------------------------------------
// NOTIFY_SERVER, NOTIFY_TOKEN

test('cli conveniences: NOTIFY_SERVER and NOTIFY_TOKEN let send, status and devices run with no flags and no config', async (t) => {
  const d = await startDaemon(t, { http: { token: TOKEN } });
  const page = await session(t, d, 'uid1');
  const env = { NOTIFY_SERVER: d.httpUrl, NOTIFY_TOKEN: TOKEN };
  const cwd = tempDir(t);

  const sent = await runNotify(t, ['send', '--uid', 'uid1', '--msg', 'cron job'], HANG_MS, { cwd, env });
  assert.equal(sent.code, EXIT.delivered, sent.err);
  assert.equal(await page.frame(1), 'cron job');
  const all = await runNotify(t, ['broadcast', '--msg', 'to all'], HANG_MS, { cwd, env });
  assert.equal(all.code, EXIT.delivered, all.err);
  const status = await runNotify(t, ['status', '--json'], HANG_MS, { cwd, env });
  assert.equal(status.code, 0, status.err);
  assert.equal((JSON.parse(status.out) as { sessions: number }).sessions, 1);
  const devices = await runNotify(t, ['devices', 'list', '--json'], HANG_MS, { cwd, env });
  assert.equal(devices.code, 0, devices.err);
  assert.deepEqual(JSON.parse(devices.out), []);
  assert.ok(![sent, all, status, devices].some((r) => r.out.includes(TOKEN) || r.err.includes(TOKEN)), 'the token is never echoed');
});

test('cli conveniences: flags win over NOTIFY_SERVER / NOTIFY_TOKEN, which win over the config; a wrong token is not echoed', async (t) => {
  const d = await startDaemon(t, { http: { token: TOKEN } });
  const page = await session(t, d, 'uid1');
  const dead = `http://127.0.0.1:${await deadPort()}`;
  const wrong = 'w'.repeat(24);
  const deadConfig = writeTemp(t, 'dead.yaml', clientYaml(dead.replace('http://', ''), TOKEN));

  // --server over NOTIFY_SERVER
  const flag = await runNotify(t, ['send', '--server', dead, '--uid', 'uid1', '--msg', 'x'], HANG_MS, { env: { NOTIFY_SERVER: d.httpUrl, NOTIFY_TOKEN: TOKEN } });
  assert.equal(flag.code, EXIT.error);
  assert.ok(flag.err.includes(dead), flag.err);
  // NOTIFY_SERVER over the config's http.listen (the config's token still used)
  const env = await runNotify(t, ['send', '--config', deadConfig, '--uid', 'uid1', '--msg', 'server from env'], HANG_MS, { env: { NOTIFY_SERVER: d.httpUrl } });
  assert.equal(env.code, EXIT.delivered, env.err);
  assert.equal(await page.frame(1), 'server from env');
  // NOTIFY_TOKEN over the config's http.token
  const envToken = await runNotify(t, ['send', '--config', deadConfig, '--uid', 'uid1', '--msg', 'x'], HANG_MS, { env: { NOTIFY_SERVER: d.httpUrl, NOTIFY_TOKEN: wrong } });
  assert.equal(envToken.code, EXIT.error);
  assert.match(envToken.err, /NOTIFY_ERR_UNAUTHORIZED/);
  assert.ok(!envToken.err.includes(wrong), 'the wrong token is not echoed');
  // --token over NOTIFY_TOKEN
  const tokenFlag = await runNotify(t, ['send', '--token', TOKEN, '--uid', 'uid1', '--msg', 'token flag'], HANG_MS, { env: { NOTIFY_SERVER: d.httpUrl, NOTIFY_TOKEN: wrong } });
  assert.equal(tokenFlag.code, EXIT.delivered, tokenFlag.err);
  assert.equal(await page.frame(2), 'token flag');
});

test('cli conveniences: a bad NOTIFY_SERVER is one line naming the variable; credentials in it are refused, not echoed', async (t) => {
  const bad = await runNotify(t, ['send', '--uid', 'u', '--msg', 'x'], HANG_MS, { env: { NOTIFY_SERVER: 'not a url' } });
  assert.equal(bad.code, EXIT.error);
  assert.match(bad.err, /^notify: NOTIFY_SERVER must be a URL like http:\/\/127\.0\.0\.1:5680, got "not a url"\n$/);
  const creds = await runNotify(t, ['status'], HANG_MS, { env: { NOTIFY_SERVER: 'http://admin:hunter2hunter2@127.0.0.1:5680' } });
  assert.equal(creds.code, EXIT.error);
  assert.match(creds.err, /^notify: NOTIFY_SERVER must not carry a user or password/);
  assert.ok(!creds.err.includes('hunter2'), creds.err);
});

test('cli conveniences: a NOTIFY_SERVER or --server that is no valid URL is not echoed with its password; one with a query (a token?) is refused, not quoted in every error', async (t) => {
  const badPort = await runNotify(t, ['status'], HANG_MS, { env: { NOTIFY_SERVER: 'http://admin:hunter2hunter2@127.0.0.1:99999' } });
  assert.equal(badPort.code, EXIT.error);
  assert.equal(badPort.err, 'notify: NOTIFY_SERVER must be a URL like http://127.0.0.1:5680, got "http://admin:[redacted]@127.0.0.1:99999"\n');
  const flag = await cli(['status', '--server', 'https://ops:hunter2hunter2@[::1']);
  assert.equal(flag.code, EXIT.error);
  assert.ok(!flag.err.includes('hunter2'), flag.err);
  for (const server of ['http://127.0.0.1:5680/?token=hunter2hunter2', 'http://127.0.0.1:5680/#hunter2hunter2']) {
    const q = await runNotify(t, ['status'], HANG_MS, { env: { NOTIFY_SERVER: server } });
    assert.equal(q.code, EXIT.error);
    assert.equal(q.err, 'notify: NOTIFY_SERVER must not carry a query string or fragment; give the API token with --token or NOTIFY_TOKEN\n');
  }
});

// ---------------------------------------------------------------------------------------------
// send: the message from stdin

test('cli conveniences: send reads the message from a pipe when --msg is absent or "-", one trailing newline dropped', async (t) => {
  const d = await startDaemon(t);
  const page = await session(t, d, 'uid1');
  const env = { NOTIFY_SERVER: d.httpUrl };
  const piped = await runNotify(t, ['send', '--uid', 'uid1'], HANG_MS, { env, input: 'backup finished: 42 GB\n' });
  assert.equal(piped.code, EXIT.delivered, piped.err);
  assert.equal(await page.frame(1), 'backup finished: 42 GB');
  const dash = await runNotify(t, ['send', '--uid', 'uid1', '--msg', '-'], HANG_MS, { env, input: 'line one\nline two\n\n' });
  assert.equal(dash.code, EXIT.delivered, dash.err);
  assert.equal(await page.frame(2), 'line one\nline two\n', 'only the last newline goes');
  const crlf = await runNotify(t, ['broadcast', '--title', 'Deploy'], HANG_MS, { env, input: 'v42 is live\r\n' });
  assert.equal(crlf.code, EXIT.delivered, crlf.err);
  assert.deepEqual(JSON.parse(await page.frame(3)), { title: 'Deploy', msg: 'v42 is live' });
  // --msg TEXT is used as it is, stdin untouched.
  const given = await runNotify(t, ['send', '--uid', 'uid1', '--msg', 'from the flag'], HANG_MS, { env, input: 'not this\n' });
  assert.equal(given.code, EXIT.delivered, given.err);
  assert.equal(await page.frame(4), 'from the flag');
});

test('cli conveniences: in process, send reads the Io stdin the same way (a stream that is not a terminal)', async (t) => {
  const d = await startDaemon(t);
  const page = await session(t, d, 'uid1');
  const r = await cli(['send', '--server', d.httpUrl, '--uid', 'uid1'], Readable.from([Buffer.from('chunk one, '), Buffer.from('chunk two\n')]));
  assert.equal(r.code, EXIT.delivered, r.err);
  assert.equal(await page.frame(1), 'chunk one, chunk two');
  // With no stdin (a terminal, in this Io): the usual error.
  const none = await cli(['send', '--server', d.httpUrl, '--uid', 'uid1']);
  assert.equal(none.code, EXIT.error);
  assert.match(oneErrLine(none, 'no stdin'), /nothing to send: give --msg, --title or --data/);
});

test('cli conveniences: an empty stdin is a clear error (unless --title or --data give the message); too large a one too', async (t) => {
  const d = await startDaemon(t);
  const page = await session(t, d, 'uid1');
  const env = { NOTIFY_SERVER: d.httpUrl };
  const empty = await runNotify(t, ['send', '--uid', 'uid1'], HANG_MS, { env, input: '' });
  assert.equal(empty.code, EXIT.error);
  assert.match(empty.err, /^notify: nothing to send: stdin is empty \(with no --msg, the message is read from it\); pipe the message in or give --msg TEXT\n$/);
  const emptyDash = await runNotify(t, ['send', '--uid', 'uid1', '--msg', '-'], HANG_MS, { env, input: '\n' });
  assert.equal(emptyDash.code, EXIT.error);
  assert.match(emptyDash.err, /^notify: nothing to send: stdin is empty \(--msg - reads the message from it\)/);
  // cron gives /dev/null: with --title the message is the title alone.
  const devNull = await runNotify(t, ['send', '--uid', 'uid1', '--title', 'Nightly'], HANG_MS, { env });
  assert.equal(devNull.code, EXIT.delivered, devNull.err);
  assert.deepEqual(JSON.parse(await page.frame(1)), { title: 'Nightly' });

  // The limit is the daemon's http.maxBodyBytes, read from the config.
  const cfg = writeTemp(t, 'small.yaml', `http:\n  listen: "${d.addresses().http}"\n  maxBodyBytes: 1024\n`);
  const big = await runNotify(t, ['send', '--config', cfg, '--uid', 'uid1'], HANG_MS, { input: 'x'.repeat(5000) });
  assert.equal(big.code, EXIT.error);
  assert.match(big.err, /^notify: the message on stdin is over 1024 bytes, the most the daemon takes in one request \(http\.maxBodyBytes\)\n$/);
  const fits = await runNotify(t, ['send', '--config', cfg, '--uid', 'uid1'], HANG_MS, { input: `${'y'.repeat(900)}\n` });
  assert.equal(fits.code, EXIT.delivered, fits.err);
  assert.equal(await page.frame(2), 'y'.repeat(900));
  assert.equal(page.frames.length, 2);
});

test('cli conveniences: a stdin that is not UTF-8 (binary, Latin-1) is refused with a clear error, not sent as U+FFFD', async (t) => {
  const d = await startDaemon(t);
  const page = await session(t, d, 'uid1');
  const env = { NOTIFY_SERVER: d.httpUrl };
  for (const input of [Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0xff, 0x00]), Buffer.from('caf\xe9 cr\xe8me\n', 'latin1')]) {
    const r = await runNotify(t, ['send', '--uid', 'uid1'], HANG_MS, { env, input });
    assert.equal(r.code, EXIT.error, r.err);
    assert.equal(r.err, 'notify: the message on stdin is not UTF-8 text (binary data, or another encoding such as Latin-1); convert it first, e.g. with iconv -t UTF-8, or base64 for binary data\n');
  }
  // UTF-8 text (NUL and all) goes as it is.
  const ok = await runNotify(t, ['send', '--uid', 'uid1', '--msg', '-'], HANG_MS, { env, input: Buffer.from('café crème \u0000 ✓\n') });
  assert.equal(ok.code, EXIT.delivered, ok.err);
  assert.equal(await page.frame(1), 'café crème \u0000 ✓');
  assert.equal(page.frames.length, 1, 'nothing was sent for the refused ones');
});

test('cli conveniences: with --msg absent and stdin a terminal, send is the usual "nothing to send" error (under a pty)', async (t) => {
  const script = spawnSync('script', ['--version'], { encoding: 'utf8' });
  if (script.error) {
    if (process.env.CI) assert.fail('script (util-linux) is needed for the pty test');
    t.skip('no script(1) here');
    return;
  }
  const d = await startDaemon(t);
  const env: NodeJS.ProcessEnv = { ...process.env, NOTIFY_SERVER: d.httpUrl };
  delete env.NOTIFY_TOKEN;
  delete env.NOTIFY_CONFIG;
  // script(1) runs the command with its stdin on a new pty; -e passes on its exit code.
  const cmd = `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} send --uid uid1`;
  const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8', env, timeout: HANG_MS, stdio: ['pipe', 'pipe', 'pipe'], input: '' });
  assert.equal(r.status, EXIT.error, `${r.stdout}${r.stderr}`);
  assert.match(r.stdout, /notify: nothing to send: give --msg, --title or --data/, 'the terminal is not read (no wait for input)');
});

// ---------------------------------------------------------------------------------------------
// publishing commands read only the http part of the config

test('cli conveniences: a config serve refuses (ws.auth: token without ws.secret, unset ${VAR}s) still works for send, status, devices', async (t) => {
  const d = await startDaemon(t, { http: { token: TOKEN } });
  const page = await session(t, d, 'uid1');
  const file = writeTemp(
    t,
    'client.yaml',
    `${clientYaml(d.addresses().http, TOKEN)}ws:\n  auth: token\ntransports:\n  apns:\n    topic: com.example\n    token:\n      key: \${NOTIFY_TEST_UNSET_P8}\n`,
  );
  const serve = await runNotify(t, ['serve', '--config', file], HANG_MS);
  assert.equal(serve.code, EXIT.error, 'serve needs the whole config');
  assert.match(serve.err, /NOTIFY_TEST_UNSET_P8|ws\.secret/);

  const sent = await runNotify(t, ['send', '--config', file, '--uid', 'uid1', '--msg', 'only http is read'], HANG_MS);
  assert.equal(sent.code, EXIT.delivered, sent.err);
  assert.equal(await page.frame(1), 'only http is read');
  for (const argv of [['status'], ['devices', 'list', '--json']]) {
    const r = await runNotify(t, [...argv, '--config', file], HANG_MS);
    assert.equal(r.code, 0, `${argv.join(' ')}: ${r.err}`);
  }

  // What it does read is still checked: the http section, and misspelt sections.
  const badHttp = writeTemp(t, 'bad-http.yaml', 'http:\n  token: ${NOTIFY_TEST_UNSET_TOKEN}\n');
  const r1 = await runNotify(t, ['send', '--config', badHttp, '--uid', 'u', '--msg', 'x'], HANG_MS);
  assert.equal(r1.code, EXIT.error);
  assert.match(r1.err, /bad-http\.yaml:2:10: http\.token: \$\{NOTIFY_TEST_UNSET_TOKEN\} is not set in the environment/);
  const typo = writeTemp(t, 'typo.yaml', 'htpp:\n  listen: 127.0.0.1:9\n');
  const r2 = await runNotify(t, ['send', '--config', typo, '--uid', 'u', '--msg', 'x'], HANG_MS);
  assert.equal(r2.code, EXIT.error);
  assert.match(r2.err, /typo\.yaml:1:1: htpp: unknown key "htpp"; expected one of: ws, text, http/);
});

// ---------------------------------------------------------------------------------------------
// config check --print reads back

test('cli conveniences: durations print with units that read back the same', () => {
  for (const [ms, text] of [
    [0, '0s'],
    [500, '500ms'],
    [1500, '1s500ms'],
    [30_000, '30s'],
    [3_600_000, '1h'],
    [5_400_000, '1h30m'],
    [86_400_000 * 7, '7d'],
  ] as const) {
    assert.equal(formatDuration(ms), text);
    assert.equal(parseDuration(text), ms);
  }
});

test('cli conveniences: config check --print output is valid input that means the same config (secrets as their env references)', async (t) => {
  const dir = tempDir(t);
  const p8 = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey.export({ format: 'pem', type: 'pkcs8' });
  writeFileSync(join(dir, 'AuthKey.p8'), p8);
  const vapid = generateVapidKeys();
  const env = { NOTIFY_TEST_HTTP_TOKEN: TOKEN, NOTIFY_TEST_WS_SECRET: SECRET, NOTIFY_TEST_VAPID: vapid.privateKey, NOTIFY_TEST_REDIS_PASS: 'hunter2hunter2', NOTIFY_TEST_HOOK_KEY: 'gotify-app-token', NOTIFY_TEST_HOOK_PASSWORD: 'webhook-password' };
  Object.assign(process.env, env);
  t.after(() => {
    for (const k of Object.keys(env)) delete process.env[k];
  });
  const file = join(dir, 'notify.yaml');
  writeFileSync(
    file,
    [
      'ws:',
      '  listen: 127.0.0.1:0',
      '  auth: token',
      '  secret: ${NOTIFY_TEST_WS_SECRET}',
      '  bindTimeout: 1500ms',
      'http:',
      '  listen: 127.0.0.1:0',
      '  token: ${NOTIFY_TEST_HTTP_TOKEN}',
      'limits:',
      '  silentTimeout: 45s',
      'dispatch:',
      '  route: live-first',
      '  ackTimeout: 750ms',
      'history:',
      '  ttl: 36h',
      '  maxBytes: 64MiB',
      '  dedupeWindow: 90m',
      'shutdown:',
      '  graceMs: 2s',
      'cluster:',
      '  redis: redis://:${NOTIFY_TEST_REDIS_PASS}@127.0.0.1:6390/2',
      '  retryLease: 2m',
      'state:',
      '  dir: ./data',
      'transports:',
      '  apns:',
      '    topic: com.example.app',
      '    token: {key: ./AuthKey.p8, keyId: ABCDEFGHIJ, teamId: KLMNOPQRST}',
      '  webpush:',
      '    vapid:',
      '      subject: mailto:ops@example.com',
      `      publicKey: ${vapid.publicKey}`,
      '      privateKey: ${NOTIFY_TEST_VAPID}',
      '    ttl: 12h',
      '  hook:',
      '    type: http',
      '    url: https://hooks.example.com/notify/{{uid}}',
      '    headers:',
      '      X-Gotify-Key: ${NOTIFY_TEST_HOOK_KEY}',
      '    auth:',
      '      basic: {username: notify, password: "${NOTIFY_TEST_HOOK_PASSWORD}"}',
      '    body: {uid: "{{uid}}", msg: "{{msg}}"}',
      'devices:',
      '  uid1:',
      `    apns: [${'ab'.repeat(32)}]`,
      '',
    ].join('\n'),
  );
  const printed = await cli(['config', 'check', '--config', file, '--print']);
  assert.equal(printed.code, 0, printed.err);
  assert.equal(printed.err, `${file}: ok\n`, 'the status goes to stderr, stdout is the YAML alone');
  for (const secret of Object.values(env)) assert.ok(!printed.out.includes(secret), 'no secret is printed');
  for (const line of [
    'bindTimeout: 1s500ms',
    'silentTimeout: 45s',
    'ackTimeout: 750ms',
    'ttl: 1d12h',
    'ttl: 12h',
    'dedupeWindow: 1h30m',
    'graceMs: 2s',
    'retryLease: 2m',
    'secret: ${NOTIFY_TEST_WS_SECRET}',
    'token: ${NOTIFY_TEST_HTTP_TOKEN}',
    'privateKey: ${NOTIFY_TEST_VAPID}',
    'redis: redis://:${NOTIFY_TEST_REDIS_PASS}@127.0.0.1:6390/2',
    'X-Gotify-Key: ${NOTIFY_TEST_HOOK_KEY}',
    'password: ${NOTIFY_TEST_HOOK_PASSWORD}',
    `key: ${join(dir, 'AuthKey.p8')}`,
    `dir: ${join(dir, 'data')}`,
  ]) {
    assert.ok(printed.out.split('\n').some((l) => l.trim() === line), `prints "${line}":\n${printed.out}`);
  }

  // Fed back from another folder: it passes and is the same config.
  const copy = join(tempDir(t), 'printed.yaml');
  writeFileSync(copy, printed.out);
  const again = await cli(['config', 'check', '--config', copy]);
  assert.equal(again.code, 0, again.err);
  assert.equal(again.out, `${copy}: ok\n`);
  assert.deepEqual(loadConfig(copy), loadConfig(file));
  const twice = await cli(['config', 'check', '--config', copy, '--print']);
  assert.equal(twice.out, printed.out, 'printing the printed config changes nothing');
});

test('cli conveniences: a secret written literally prints as [redacted], which config check refuses with a clear message', async (t) => {
  const file = writeTemp(t, 'literal.yaml', `http:\n  token: ${TOKEN}\ncluster:\n  redis: redis://:hunter2hunter2@127.0.0.1:6390\n`);
  const printed = await cli(['config', 'check', '--config', file, '--print']);
  assert.equal(printed.code, 0, printed.err);
  assert.ok(!printed.out.includes(TOKEN) && !printed.out.includes('hunter2'), printed.out);
  assert.match(printed.out, /token: "\[redacted\]"/);
  assert.match(printed.out, /redis: redis:\/\/:\[redacted\]@127\.0\.0\.1:6390/);
  const copy = writeTemp(t, 'printed.yaml', printed.out);
  const again = await cli(['config', 'check', '--config', copy]);
  assert.equal(again.code, EXIT.error);
  const problems = lines(again.err);
  assert.equal(problems.length, 2, again.err);
  assert.match(problems[0] ?? '', /printed\.yaml:\d+:\d+: http\.token holds "\[redacted\]", which "notify config check --print" writes in place of a secret; put the secret back/);
  assert.match(problems[1] ?? '', /cluster\.redis holds "\[redacted\]"/);
  const send = await cli(['send', '--config', copy, '--uid', 'u', '--msg', 'x']);
  assert.equal(send.code, EXIT.error);
  assert.match(oneErrLine(send, 'send with a placeholder token'), /http\.token holds "\[redacted\]"/);
});

// ---------------------------------------------------------------------------------------------
// the summary line

test('cli conveniences: the summary says "rejected" apart from "failed", and names a duplicate', async (t) => {
  const base = { id: 'm1', stored: false, route: 'all' as const, unreached: [] };
  const mixed: PublishReport = {
    ...base,
    delivered: true,
    sent: 1,
    failed: 1,
    rejected: 2,
    results: [
      { uid: 'u', transport: 'websocket', target: 's1', status: 'sent' },
      { uid: 'u', transport: 'apns', target: 'a', status: 'rejected', reason: '410 Unregistered' },
      { uid: 'u', transport: 'apns', target: 'b', status: 'rejected', reason: '400 BadDeviceToken' },
      { uid: 'u', transport: 'http', target: 'h', status: 'failed', reason: 'timeout after 5000 ms' },
    ],
  };
  assert.equal(summarize(mixed), 'delivered to 1 target (websocket: 1); 2 rejected (410 Unregistered; 400 BadDeviceToken); 1 failed (timeout after 5000 ms)');

  const d = await startDaemon(t);
  const page = await session(t, d, 'uid1');
  const first = await cli(['send', '--server', d.httpUrl, '--uid', 'uid1', '--msg', 'once', '--id', 'job-7']);
  assert.equal(first.code, EXIT.delivered, first.err);
  assert.equal(first.out, 'delivered to 1 target (websocket: 1)\n');
  const repeat = await cli(['send', '--server', d.httpUrl, '--uid', 'uid1', '--msg', 'once', '--id', 'job-7']);
  assert.equal(repeat.code, EXIT.delivered, repeat.err);
  assert.equal(repeat.out, 'duplicate of message job-7 sent earlier: not sent again; the first send: delivered to 1 target (websocket: 1)\n');
  assert.deepEqual(page.frames, ['once'], 'delivered once');
});
