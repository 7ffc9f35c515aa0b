import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { EXIT } from '../../../src/cli/main.js';
import { parseConfig } from '../../../src/config/load.js';
import { api } from '../../helpers/api.js';
import { cli } from '../../helpers/cli.js';
import { configError } from '../../helpers/config.js';
import { tempDir } from '../../helpers/daemon.js';
import { type FcmTestAccount, makeFcmAccount, serviceAccountJson } from '../../helpers/fake-fcm.js';
import { fcmToken, fcmWorld } from '../../helpers/fcm.js';

const TOKEN_URI = 'https://oauth2.googleapis.com/token';

/** A folder with a service-account file sa.json (fields overridden or, with undefined, removed). */
function accountDir(t: TestContext, over: Record<string, unknown> = {}): { dir: string; account: FcmTestAccount } {
  const dir = tempDir(t, 'notify-fcm-config-');
  const account = makeFcmAccount('my-project');
  const json = JSON.parse(serviceAccountJson(account, TOKEN_URI)) as Record<string, unknown>;
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) delete json[k];
    else json[k] = v;
  }
  writeFileSync(join(dir, 'sa.json'), JSON.stringify(json));
  return { dir, account };
}

/** Lines 1-4 fixed: transports:, android:, type: fcm, serviceAccount; `extra` from line 5. */
function yaml(extra = '', file = './sa.json'): string {
  return ['transports:', '  android:', '    type: fcm', `    serviceAccount: ${file}`, extra].join('\n');
}

/** The one problem of `text`, at line 4 col 21 (the serviceAccount value), after its position. */
function serviceAccountProblem(text: string, dir: string): string {
  const { problems } = configError(text, 'cfg.yaml', dir);
  assert.equal(problems.length, 1, JSON.stringify(problems));
  const p = problems[0] as string;
  assert.ok(p.startsWith('cfg.yaml:4:21: transports.android.serviceAccount: '), p);
  return p.slice('cfg.yaml:4:21: transports.android.serviceAccount: '.length);
}

/** Asserts no line of the private key is in `text`. */
function noKey(text: string, account: FcmTestAccount): void {
  assert.ok(!text.includes('PRIVATE KEY'), `no key material: ${text}`);
  for (const line of account.privateKeyPem.split('\n').filter((l) => l && !l.startsWith('-----'))) assert.ok(!text.includes(line), 'no key material');
}

test('fcm config: a valid transport parses with the defaults, the file path made absolute; its devices are checked as FCM tokens', (t) => {
  const { dir } = accountDir(t);
  const token = fcmToken();
  const cfg = parseConfig(`${yaml()}\ndevices:\n  uid1:\n    android: [${token}]\n`, 'cfg.yaml', dir);
  assert.deepEqual(cfg.transports.android, {
    type: 'fcm',
    serviceAccount: join(dir, 'sa.json'),
    url: 'https://fcm.googleapis.com',
    requestTimeoutMs: 10000,
    maxConcurrentRequests: 32,
    maxQueued: 10000,
    retry: { limit: 3, baseDelayMs: 200, maxDelayMs: 10000 },
  });
  assert.deepEqual(cfg.devices, { uid1: { android: [token] } });
  const bad = configError(`${yaml()}\ndevices:\n  uid1:\n    android: ["not a token!"]\n`, 'cfg.yaml', dir).problems;
  assert.equal(bad.length, 1);
  assert.match(bad[0] as string, /devices\.uid1\.android\[0\]: an FCM registration token is 8 to 4096 letters, digits, "-", "_", ":" or "\."; got "not a token!"/);
});

test('fcm config: a missing file, a folder, and a file that is not JSON are each named', (t) => {
  const { dir, account } = accountDir(t);
  assert.equal(serviceAccountProblem(yaml('', './nope.json'), dir), `cannot read ${join(dir, 'nope.json')}: no such file`);
  mkdirSync(join(dir, 'folder.json'));
  assert.equal(serviceAccountProblem(yaml('', './folder.json'), dir), `cannot read ${join(dir, 'folder.json')}: it is a folder`);
  writeFileSync(join(dir, 'pem.json'), account.privateKeyPem);
  const notJson = serviceAccountProblem(yaml('', './pem.json'), dir);
  assert.equal(notJson, `${join(dir, 'pem.json')} is not JSON; use the service-account key file from the Firebase console (Project settings, Service accounts)`);
  noKey(notJson, account);
  writeFileSync(join(dir, 'list.json'), '[1]');
  assert.equal(serviceAccountProblem(yaml('', './list.json'), dir), `${join(dir, 'list.json')} is not a service-account key (a JSON object)`);
});

for (const field of ['client_email', 'private_key', 'project_id', 'token_uri'] as const) {
  test(`fcm config: a service account without "${field}" is refused, naming the field`, (t) => {
    const { dir } = accountDir(t, { [field]: undefined });
    assert.equal(serviceAccountProblem(yaml(), dir), `${join(dir, 'sa.json')} has no "${field}"`);
  });
}

test('fcm config: projectId and tokenUrl in the settings stand in for project_id and token_uri', (t) => {
  const { dir } = accountDir(t, { project_id: undefined, token_uri: undefined });
  const cfg = parseConfig(yaml('    projectId: other-project\n    tokenUrl: https://oauth.example.com/token\n'), 'cfg.yaml', dir);
  assert.equal(cfg.transports.android?.projectId, 'other-project');
  assert.equal(cfg.transports.android?.tokenUrl, 'https://oauth.example.com/token');
});

test('fcm config: a key that is not an RSA private key (EC, garbage, a public key) is refused without quoting it', (t) => {
  const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const ecPem = ec.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  const { dir: ecDir } = accountDir(t, { private_key: ecPem });
  const ecProblem = serviceAccountProblem(yaml(), ecDir);
  assert.equal(ecProblem, `${join(ecDir, 'sa.json')}: "private_key" is not an RSA private key (it is ec); FCM signs with RS256`);
  assert.ok(!ecProblem.includes(ecPem.split('\n')[1] as string));

  const { dir: gDir, account } = accountDir(t);
  const garbled = account.privateKeyPem.replace(/[A-Za-z]{8}/, '!!!!!!!!');
  writeFileSync(join(gDir, 'sa.json'), serviceAccountJson(account, TOKEN_URI, { private_key: garbled }));
  const g = serviceAccountProblem(yaml(), gDir);
  assert.equal(g, `${join(gDir, 'sa.json')}: "private_key" is not a PEM private key`);
  noKey(g, account);

  const pub = account.publicKey.export({ type: 'spki', format: 'pem' }) as string;
  const { dir: pDir } = accountDir(t, { private_key: pub });
  assert.equal(serviceAccountProblem(yaml(), pDir), `${join(pDir, 'sa.json')}: "private_key" is not a PEM private key`);

  const { dir: nDir } = accountDir(t, { private_key: 42 });
  assert.equal(serviceAccountProblem(yaml(), nDir), `${join(nDir, 'sa.json')}: "private_key" must be a string`);
});

test('fcm config: another kind of Google credentials file is named as such', (t) => {
  const { dir } = accountDir(t, { type: 'authorized_user' });
  assert.equal(serviceAccountProblem(yaml(), dir), `${join(dir, 'sa.json')} has "type": "authorized_user"; a service-account key has "type": "service_account"`);
});

test('fcm config: the settings themselves: serviceAccount required, url and tokenUrl URLs, ca readable, unknown keys refused', (t) => {
  const { dir } = accountDir(t);
  const problems = configError(
    ['transports:', '  android:', '    type: fcm', '    url: fcm.example.com', '    tokenUrl: "ftp://x"', '    ca: ./no-ca.pem', '    colour: red', ''].join('\n'),
    'cfg.yaml',
    dir,
  ).problems;
  for (const [where, text] of [
    ['3:5', 'transports.android.serviceAccount is required'],
    ['4:10', 'transports.android.url must be an http(s) URL'],
    ['5:15', 'transports.android.tokenUrl must be an http(s) URL'],
    ['6:9', `transports.android.ca: cannot read ${join(dir, 'no-ca.pem')}: no such file`],
    ['7:5', 'transports.android.colour'],
  ] as const) {
    assert.ok(problems.some((p) => p.startsWith(`cfg.yaml:${where}: ${text}`)), `lists ${text} at ${where}: ${JSON.stringify(problems)}`);
  }
});

test('fcm config: "notify config check" names the problem and exits 2; --print on a good one shows the path, never the key', async (t) => {
  const { dir, account } = accountDir(t, { client_email: undefined });
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, yaml());
  const r = await cli(['config', 'check', '--config', bad]);
  assert.equal(r.code, EXIT.error);
  assert.equal(r.err, `${bad}:4:21: transports.android.serviceAccount: ${join(dir, 'sa.json')} has no "client_email"\n`);
  noKey(r.err, account);

  const { dir: okDir, account: okAccount } = accountDir(t);
  const good = join(okDir, 'good.yaml');
  writeFileSync(good, yaml());
  const p = await cli(['config', 'check', '--config', good, '--print']);
  assert.equal(p.code, 0, p.err);
  assert.ok(p.out.includes(`serviceAccount: ${join(okDir, 'sa.json')}`), p.out);
  noKey(p.out, okAccount);
});

test('fcm config: POST /v1/devices takes an FCM token like an APNs one, and refuses a malformed one with a clear reason', async (t) => {
  const w = await fcmWorld(t);
  const d = await w.daemon();
  const token = fcmToken();
  const ok = await api(d.httpUrl, 'POST', '/v1/devices', { uid: 'uid1', transport: 'fcm', token });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.deepEqual(ok.body, { uid: 'uid1', transport: 'fcm', token, added: true });
  const bad = await api(d.httpUrl, 'POST', '/v1/devices', { uid: 'uid1', transport: 'fcm', token: 'short' });
  assert.equal(bad.status, 400);
  assert.deepEqual(bad.body, {
    code: 'NOTIFY_ERR_INVALID_DEVICE',
    error: '"token": an FCM registration token is 8 to 4096 letters, digits, "-", "_", ":" or "."; got "short" (5 characters)',
  });
  assert.deepEqual(d.registry.index('fcm').targets('uid1'), [token]);
});
