import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { promisify } from 'node:util';
import { EXIT } from '../../../src/cli/main.js';
import { parseConfig } from '../../../src/config/load.js';
import { cli } from '../../helpers/cli.js';
import { configError } from '../../helpers/config.js';
import { tempDir } from '../../helpers/daemon.js';
import { makeApnsKey } from '../../helpers/fake-apns.js';

const execFileAsync = promisify(execFile);
const KEY_ID = 'ABC123DEFG';
const TEAM_ID = 'TEAM123456';
const PASSPHRASE = 'correct horse battery staple';

/** A folder with a valid .p8 (AuthKey.p8), removed when the test ends. */
function keyDir(t: TestContext): { dir: string; pem: string } {
  const dir = tempDir(t, 'notify-apns-config-');
  const { pem } = makeApnsKey();
  writeFileSync(join(dir, 'AuthKey.p8'), pem);
  return { dir, pem };
}

/**
 * A token-auth APNs transport; lines 1-7 are fixed, `extra` starts at line 8:
 *   1 transports:  2 apns:  3 topic  4 token:  5 key  6 keyId  7 teamId
 */
function tokenYaml(extra = '', o: { key?: string; keyId?: string; teamId?: string } = {}): string {
  return [
    'transports:',
    '  apns:',
    '    topic: com.example.app',
    '    token:',
    `      key: ${o.key ?? './AuthKey.p8'}`,
    `      keyId: ${o.keyId ?? KEY_ID}`,
    `      teamId: ${o.teamId ?? TEAM_ID}`,
    extra,
  ].join('\n');
}

/** The problems parsing `text` finds, each checked to start with cfg.yaml:LINE:COL. */
function problemsOf(text: string, dir: string): readonly string[] {
  const { problems } = configError(text, 'cfg.yaml', dir);
  for (const p of problems) assert.match(p, /^cfg\.yaml:\d+:\d+: \S/, `every problem has cfg.yaml:LINE:COL: ${p}`);
  return problems;
}

/** Asserts exactly one problem, at line:col, and returns its text after the position. */
function oneProblem(text: string, dir: string, line: number, col: number): string {
  const problems = problemsOf(text, dir);
  assert.equal(problems.length, 1, JSON.stringify(problems));
  const p = problems[0] as string;
  const prefix = `cfg.yaml:${line}:${col}: `;
  assert.ok(p.startsWith(prefix), `expected ${prefix}...: ${p}`);
  return p.slice(prefix.length);
}

/** A self-signed certificate and its unencrypted key, made with the openssl CLI. */
async function opensslCert(dir: string): Promise<{ cert: string; key: string }> {
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  await execFileAsync('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=com.example.app',
  ]);
  return { cert, key };
}

// ---------------------------------------------------------------------------------------------
// valid configs

test('apns config: a valid token-auth transport parses with defaults filled and the key path made absolute', (t) => {
  const { dir } = keyDir(t);
  const cfg = parseConfig(tokenYaml(), 'cfg.yaml', dir);
  assert.deepEqual(cfg.transports, {
    apns: {
      type: 'apns',
      topic: 'com.example.app',
      production: false,
      token: { key: join(dir, 'AuthKey.p8'), keyId: KEY_ID, teamId: TEAM_ID },
      maxConcurrentStreams: 500,
      requestTimeoutMs: 3000,
      maxQueued: 10000,
      retry: { limit: 3, baseDelayMs: 200, maxDelayMs: 10000 },
    },
  });

  // Given values win over the defaults; a path with ".." is normalised.
  const custom = parseConfig(
    tokenYaml('    production: true\n    maxConcurrentStreams: 20\n    requestTimeoutMs: 800\n    retry:\n      limit: 0\n', { key: './sub/../AuthKey.p8' }),
    'cfg.yaml',
    dir,
  );
  const apns = custom.transports.apns as Record<string, unknown>;
  assert.equal(apns.production, true);
  assert.equal(apns.maxConcurrentStreams, 20);
  assert.equal(apns.requestTimeoutMs, 800);
  assert.deepEqual(apns.retry, { limit: 0, baseDelayMs: 200, maxDelayMs: 10000 });
  assert.deepEqual(apns.token, { key: join(dir, 'AuthKey.p8'), keyId: KEY_ID, teamId: TEAM_ID });

  // An absolute key path is kept as is, whatever the base folder.
  const abs = parseConfig(tokenYaml('', { key: join(dir, 'AuthKey.p8') }), 'cfg.yaml', '/');
  assert.equal((abs.transports.apns?.token as { key: string }).key, join(dir, 'AuthKey.p8'));
});

test('apns config: a transport named "ios" with type: apns is an APNs transport; one named "apns" needs no type', (t) => {
  const { dir } = keyDir(t);
  const ios = tokenYaml().replace('  apns:\n', '  ios:\n    type: apns\n');
  const token = 'a'.repeat(64);
  const cfg = parseConfig(`${ios}\ndevices:\n  uid1:\n    ios: [${token}]\n`, 'cfg.yaml', dir);
  assert.deepEqual(Object.keys(cfg.transports), ['ios']);
  assert.equal(cfg.transports.ios?.type, 'apns');
  assert.equal(cfg.transports.ios?.topic, 'com.example.app');
  assert.equal((cfg.transports.ios?.token as { key: string }).key, join(dir, 'AuthKey.p8'), 'validated as APNs settings');
  assert.deepEqual(cfg.devices, { uid1: { ios: [token] } });

  // Its devices are checked as APNs device tokens.
  const bad = problemsOf(`${ios}\ndevices:\n  uid1:\n    ios: [nothex]\n`, dir);
  assert.equal(bad.length, 1, JSON.stringify(bad));
  assert.match(bad[0] as string, /devices\.uid1\.ios\[0\].*an APNs device token is hex/);

  // And its settings are checked as APNs settings.
  const noTopic = ios.replace('    topic: com.example.app\n', '');
  assert.match(problemsOf(noTopic, dir).join('\n'), /transports\.ios\.topic is required/);

  const byName = parseConfig(tokenYaml(), 'cfg.yaml', dir);
  assert.equal(byName.transports.apns?.type, 'apns');
});

// ---------------------------------------------------------------------------------------------
// token auth problems

test('apns config: a missing topic is an error naming transports.apns.topic', (t) => {
  const { dir } = keyDir(t);
  const text = tokenYaml().replace('    topic: com.example.app\n', '');
  // The key is absent: the position is that of the apns mapping (line 3, "token:").
  assert.match(oneProblem(text, dir, 3, 5), /^transports\.apns\.topic is required/);
  const empty = tokenYaml().replace('topic: com.example.app', 'topic: 42');
  assert.match(oneProblem(empty, dir, 3, 12), /^transports\.apns\.topic must be a string/);
});

test('apns config: a key file that does not exist is an error naming the absolute path', (t) => {
  const { dir } = keyDir(t);
  const p = oneProblem(tokenYaml('', { key: './Missing.p8' }), dir, 5, 12);
  assert.equal(p, `transports.apns.token.key: cannot read ${join(dir, 'Missing.p8')}: no such file`);
  const folder = oneProblem(tokenYaml('', { key: '.' }), dir, 5, 12);
  assert.match(folder, /^transports\.apns\.token\.key: cannot read .*: it is a folder/);
});

test('apns config: a key file that is RSA or EC P-384 is "not an EC P-256 private key"', (t) => {
  const { dir } = keyDir(t);
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  writeFileSync(join(dir, 'rsa.p8'), rsa);
  const p384 = generateKeyPairSync('ec', { namedCurve: 'secp384r1' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  writeFileSync(join(dir, 'p384.p8'), p384);

  const a = oneProblem(tokenYaml('', { key: './rsa.p8' }), dir, 5, 12);
  assert.ok(a.startsWith(`transports.apns.token.key: ${join(dir, 'rsa.p8')} is not an EC P-256 private key`), a);
  assert.match(a, /\(it is rsa\)/);
  const b = oneProblem(tokenYaml('', { key: './p384.p8' }), dir, 5, 12);
  assert.ok(b.startsWith(`transports.apns.token.key: ${join(dir, 'p384.p8')} is not an EC P-256 private key`), b);
  assert.match(b, /secp384r1/);
});

test('apns config: a key file that is not a key is "not a PEM private key"', (t) => {
  const { dir } = keyDir(t);
  writeFileSync(join(dir, 'notes.txt'), 'this is not a key\n');
  const p = oneProblem(tokenYaml('', { key: './notes.txt' }), dir, 5, 12);
  assert.ok(p.startsWith(`transports.apns.token.key: ${join(dir, 'notes.txt')} is not a PEM private key`), p);
  // A certificate is not a private key either.
  writeFileSync(join(dir, 'public.pem'), makeApnsKey().publicKey.export({ type: 'spki', format: 'pem' }) as string);
  assert.match(oneProblem(tokenYaml('', { key: './public.pem' }), dir, 5, 12), /is not a PEM private key|is not an EC P-256 private key/);
});

test('apns config: keyId and teamId must be 10 letters or digits', (t) => {
  const { dir } = keyDir(t);
  for (const bad of ['ABC123', 'ABC123DEFGH', 'ABC-23DEFG', '""']) {
    assert.match(oneProblem(tokenYaml('', { keyId: bad }), dir, 6, 14), /^transports\.apns\.token\.keyId must be the 10-character Key ID/, `keyId ${bad}`);
    assert.match(oneProblem(tokenYaml('', { teamId: bad }), dir, 7, 15), /^transports\.apns\.token\.teamId must be the 10-character Team ID/, `teamId ${bad}`);
  }
  const missing = tokenYaml().replace(`      teamId: ${TEAM_ID}\n`, '');
  assert.match(problemsOf(missing, dir).join('\n'), /transports\.apns\.token\.teamId is required/);
  assert.equal(parseConfig(tokenYaml('', { keyId: 'abc123defg' }), 'cfg.yaml', dir).transports.apns?.type, 'apns', 'lowercase is fine');
});

test('apns config: token auth and certificate auth together is an error ("not both"); neither is an error too', (t) => {
  const { dir } = keyDir(t);
  writeFileSync(join(dir, 'cert.pem'), 'x');
  const both = oneProblem(tokenYaml('    cert: ./cert.pem\n    key: ./AuthKey.p8\n'), dir, 3, 5);
  assert.match(both, /^transports\.apns: give token auth .* or certificate auth .*, not both/);

  const neither = oneProblem('transports:\n  apns:\n    topic: com.example.app\n', dir, 3, 5);
  assert.match(neither, /^transports\.apns: needs token auth .* or certificate auth/);
  const empty = problemsOf('transports:\n  apns: {}\n', dir);
  assert.equal(empty.length, 2, JSON.stringify(empty));
  assert.ok(empty.some((p) => /^cfg\.yaml:2:9: transports\.apns\.topic is required/.test(p)), JSON.stringify(empty));
  assert.ok(empty.some((p) => /^cfg\.yaml:2:9: transports\.apns: needs token auth/.test(p)), JSON.stringify(empty));
});

// ---------------------------------------------------------------------------------------------
// certificate auth

test('apns config: certificate auth with an openssl cert and key parses, paths made absolute', async (t) => {
  const dir = tempDir(t, 'notify-apns-cert-');
  await opensslCert(dir);
  const cfg = parseConfig('transports:\n  apns:\n    topic: com.example.app\n    cert: cert.pem\n    key: ./key.pem\n    production: true\n', 'cfg.yaml', dir);
  assert.deepEqual(cfg.transports.apns, {
    type: 'apns',
    topic: 'com.example.app',
    production: true,
    cert: join(dir, 'cert.pem'),
    key: join(dir, 'key.pem'),
    maxConcurrentStreams: 500,
    requestTimeoutMs: 3000,
    maxQueued: 10000,
    retry: { limit: 3, baseDelayMs: 200, maxDelayMs: 10000 },
  });
});

test('apns config: certificate auth problems: not a certificate, cert without key, pfx with cert, wrong passphrase', async (t) => {
  const dir = tempDir(t, 'notify-apns-cert-');
  await opensslCert(dir);
  writeFileSync(join(dir, 'notcert.pem'), 'hello\n');
  const head = 'transports:\n  apns:\n    topic: com.example.app\n';

  const notCert = oneProblem(`${head}    cert: ./notcert.pem\n    key: ./key.pem\n`, dir, 4, 11);
  assert.equal(notCert, `transports.apns.cert: ${join(dir, 'notcert.pem')} is not a PEM certificate`);
  // A key where the certificate goes is not a certificate.
  assert.match(oneProblem(`${head}    cert: ./key.pem\n    key: ./key.pem\n`, dir, 4, 11), /^transports\.apns\.cert: .* is not a PEM certificate/);
  // A certificate where the key goes is not a key.
  assert.match(oneProblem(`${head}    cert: ./cert.pem\n    key: ./cert.pem\n`, dir, 5, 10), /^transports\.apns\.key: .* is not a PEM private key/);

  assert.match(oneProblem(`${head}    cert: ./cert.pem\n`, dir, 3, 5), /^transports\.apns: certificate auth needs both cert and key/);
  assert.match(oneProblem(`${head}    key: ./key.pem\n`, dir, 3, 5), /^transports\.apns: certificate auth needs both cert and key/);
  assert.match(oneProblem(`${head}    pfx: ./cert.pem\n    cert: ./cert.pem\n`, dir, 3, 5), /^transports\.apns: give cert \+ key, or pfx, not both/);
  assert.equal(oneProblem(`${head}    pfx: ./nope.p12\n`, dir, 4, 10), `transports.apns.pfx: cannot read ${join(dir, 'nope.p12')}: no such file`);
  assert.equal(oneProblem(`${head}    cert: ./cert.pem\n    key: ./nokey.pem\n`, dir, 5, 10), `transports.apns.key: cannot read ${join(dir, 'nokey.pem')}: no such file`);

  // An encrypted key: the right passphrase parses, a wrong or missing one does not.
  const encrypted = createPrivateKey(readFileSync(join(dir, 'key.pem'))).export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: PASSPHRASE }) as string;
  writeFileSync(join(dir, 'enc.pem'), encrypted);
  const ok = parseConfig(`${head}    cert: ./cert.pem\n    key: ./enc.pem\n    passphrase: ${PASSPHRASE}\n`, 'cfg.yaml', dir);
  assert.equal(ok.transports.apns?.passphrase, PASSPHRASE);
  assert.match(oneProblem(`${head}    cert: ./cert.pem\n    key: ./enc.pem\n    passphrase: wrong\n`, dir, 5, 10), /is not a PEM private key \(or the passphrase is wrong\)/);
  assert.match(oneProblem(`${head}    cert: ./cert.pem\n    key: ./enc.pem\n`, dir, 5, 10), /is not a PEM private key/);
});

// ---------------------------------------------------------------------------------------------
// other settings

test('apns config: address must be a host name only (no scheme, no port); port must be 1-65535', (t) => {
  const { dir } = keyDir(t);
  for (const address of ['https://api.push.apple.com', 'localhost:443', 'https://x', '"api push"']) {
    assert.match(
      oneProblem(tokenYaml(`    address: ${address}\n`), dir, 8, 14),
      /^transports\.apns\.address must be a host name only \(no scheme or port/,
      address,
    );
  }
  for (const port of ['0', '65536', '70000', '-1']) {
    assert.match(oneProblem(tokenYaml(`    port: ${port}\n`), dir, 8, 11), /^transports\.apns\.port must be between 1 and 65535/, port);
  }
  assert.match(oneProblem(tokenYaml('    port: "443"\n'), dir, 8, 11), /^transports\.apns\.port must be an integer/);
  const ok = parseConfig(tokenYaml('    address: api.sandbox.push.apple.com\n    port: 2197\n'), 'cfg.yaml', dir);
  assert.equal(ok.transports.apns?.address, 'api.sandbox.push.apple.com');
  assert.equal(ok.transports.apns?.port, 2197);
});

test('apns config: an unknown key inside the apns section is an error at the key', (t) => {
  const { dir } = keyDir(t);
  const p = oneProblem(tokenYaml('    bundleId: com.example.app\n'), dir, 8, 5);
  assert.match(p, /^transports\.apns\.bundleId: unknown key "bundleId" in transports\.apns; expected one of: .*topic/);
  const inToken = oneProblem(tokenYaml().replace(`      teamId: ${TEAM_ID}`, `      teamId: ${TEAM_ID}\n      kid: x`), dir, 8, 7);
  assert.match(inToken, /unknown key "kid" in transports\.apns\.token/);
  const inRetry = oneProblem(tokenYaml('    retry:\n      tries: 3\n'), dir, 9, 7);
  assert.match(inRetry, /unknown key "tries" in transports\.apns\.retry/);
});

test('apns config: retry.limit (0-20), maxConcurrentStreams and requestTimeoutMs out of range are errors', (t) => {
  const { dir } = keyDir(t);
  assert.match(oneProblem(tokenYaml('    retry:\n      limit: 21\n'), dir, 9, 14), /^transports\.apns\.retry\.limit must be between 0 and 20, got 21/);
  assert.match(oneProblem(tokenYaml('    retry:\n      limit: -1\n'), dir, 9, 14), /^transports\.apns\.retry\.limit must be between 0 and 20/);
  assert.match(oneProblem(tokenYaml('    retry:\n      baseDelayMs: 0\n'), dir, 9, 20), /^transports\.apns\.retry\.baseDelayMs must be at least 1/);
  assert.match(oneProblem(tokenYaml('    maxConcurrentStreams: 0\n'), dir, 8, 27), /^transports\.apns\.maxConcurrentStreams must be between 1 and 10000/);
  assert.match(oneProblem(tokenYaml('    requestTimeoutMs: 0\n'), dir, 8, 23), /^transports\.apns\.requestTimeoutMs must be at least 1/);
  assert.match(oneProblem(tokenYaml('    maxQueued: 0\n'), dir, 8, 16), /^transports\.apns\.maxQueued must be between 1 and 1000000/);
  assert.match(oneProblem(tokenYaml('    production: "yes"\n'), dir, 8, 17), /^transports\.apns\.production must be true or false/);
  assert.match(oneProblem(tokenYaml('    ca: ./missing-ca.pem\n'), dir, 8, 9), /^transports\.apns\.ca: cannot read .*missing-ca\.pem: no such file/);
});

test('apns config: every problem of one transport is listed, each with its own line:column', (t) => {
  const { dir } = keyDir(t);
  const problems = problemsOf(tokenYaml('    port: 0\n    address: localhost:443\n    colour: blue\n', { keyId: 'short' }), dir);
  assert.equal(problems.length, 4, JSON.stringify(problems));
  for (const [where, key] of [
    ['6:14', 'transports.apns.token.keyId'],
    ['8:11', 'transports.apns.port'],
    ['9:14', 'transports.apns.address'],
    ['10:5', 'transports.apns.colour'],
  ] as const) {
    assert.ok(problems.some((p) => p.startsWith(`cfg.yaml:${where}: ${key}`)), `lists ${key} at ${where}: ${JSON.stringify(problems)}`);
  }
});

// ---------------------------------------------------------------------------------------------
// notify config check

test('apns config: "notify config check" exits 2 listing the problems of a bad apns config', async (t) => {
  const { dir } = keyDir(t);
  const file = join(dir, 'bad.yaml');
  writeFileSync(file, tokenYaml('    port: 70000\n', { key: './Missing.p8' }));
  const r = await cli(['config', 'check', '--config', file]);
  assert.equal(r.code, EXIT.error);
  assert.equal(r.out, '');
  const ls = r.err.replace(/\n$/, '').split('\n');
  assert.equal(ls.length, 2, r.err);
  assert.ok(ls.some((l) => l.startsWith(`${file}:5:12: transports.apns.token.key: cannot read ${join(dir, 'Missing.p8')}: no such file`)), r.err);
  assert.ok(ls.some((l) => l.startsWith(`${file}:8:11: transports.apns.port must be between 1 and 65535`)), r.err);
});

test('apns config: "notify config check --print" on a good apns config exits 0 and shows paths, not key contents, passphrase redacted', async (t) => {
  const { dir, pem } = keyDir(t);
  const token = tokenYaml('    production: true\n');
  const file = join(dir, 'good.yaml');
  writeFileSync(file, token);
  const r = await cli(['config', 'check', '--config', file, '--print']);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.err, `${file}: ok\n`, 'with --print the status goes to stderr: stdout is the YAML');
  assert.match(r.out, /topic: com\.example\.app/);
  assert.match(r.out, new RegExp(`keyId: ${KEY_ID}`));
  assert.match(r.out, /maxConcurrentStreams: 500/, 'defaults are shown');
  assert.match(r.out, /production: true/);
  assert.ok(!r.out.includes('PRIVATE KEY'), `no key material: ${r.out}`);
  const keyBody = pem.split('\n')[1] as string;
  assert.ok(!r.out.includes(keyBody), 'no key material');
  assert.ok(r.out.includes(`\n      key: ${join(dir, 'AuthKey.p8')}\n`), `the key file's path is shown (a path is not a secret): ${r.out}`);

  // Certificate auth with a passphrase.
  const certDir = tempDir(t, 'notify-apns-cert-');
  await opensslCert(certDir);
  const keyPem = readFileSync(join(certDir, 'key.pem'));
  writeFileSync(
    join(certDir, 'enc.pem'),
    createPrivateKey(keyPem).export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase: PASSPHRASE }) as string,
  );
  const certFile = join(certDir, 'cert.yaml');
  writeFileSync(certFile, `transports:\n  apns:\n    topic: com.example.app\n    cert: ./cert.pem\n    key: ./enc.pem\n    passphrase: "${PASSPHRASE}"\n`);
  const c = await cli(['config', 'check', '--config', certFile, '--print']);
  assert.equal(c.code, 0, c.err);
  assert.ok(!c.out.includes(PASSPHRASE), `the passphrase is not printed: ${c.out}`);
  assert.match(c.out, /passphrase: "?\[redacted\]"?/);
  assert.ok(c.out.includes(`cert: ${join(certDir, 'cert.pem')}`), `the cert path is shown: ${c.out}`);
  assert.ok(c.out.includes(`key: ${join(certDir, 'enc.pem')}`), `the key path is shown: ${c.out}`);
  assert.ok(!c.out.includes('BEGIN'), 'no PEM contents');
  assert.ok(!c.out.includes(readFileSync(join(certDir, 'cert.pem'), 'utf8').split('\n')[1] as string), 'no certificate contents');
});
