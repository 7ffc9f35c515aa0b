import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { parseConfig } from '../../src/config/load.js';
import { NotifyError } from '../../src/errors.js';
import { MAX_PEM_BYTES, readTls } from '../../src/net/tls.js';
import { cli, oneErrLine, runNotify } from '../helpers/cli.js';
import { tempDir } from '../helpers/daemon.js';
import { issueCert, makeTestCa } from '../helpers/tls.js';

// openssl makes the certificates; CI installs it (.ci/run).
const SKIP = existsSync('/usr/bin/openssl') || process.env.CI ? false : 'openssl not installed (.ci/run installs it)';

/** The NotifyError readTls throws for these files. */
function refusal(files: { cert: string; key: string }, key = 'ws.tls', now?: number): NotifyError {
  try {
    readTls(files, key, now);
  } catch (err) {
    assert.ok(err instanceof NotifyError, `a NotifyError, got ${String(err)}`);
    assert.equal(err.code, 'NOTIFY_ERR_CONFIG');
    return err;
  }
  assert.fail('readTls accepted the files');
}

test('tls: readTls takes a matching certificate and key and says which certificate it is', { skip: SKIP }, async (t) => {
  const ca = await makeTestCa(tempDir(t));
  const leaf = await issueCert(ca, 'leaf', { serial: 7, notAfter: new Date(Date.now() + 60 * 24 * 3600_000) });
  const m = readTls({ cert: leaf.certFile, key: leaf.keyFile }, 'ws.tls');
  assert.equal(m.fingerprint256, leaf.fingerprint256);
  assert.equal(m.serialNumber, leaf.serialNumber);
  assert.deepEqual(m.warnings, [], 'valid for 60 days: nothing to warn about');
});

test('tls: a missing file, a file that is no certificate or key, a key of another certificate, an expired or not yet valid certificate: one line naming the config key and the file, never the key', { skip: SKIP }, async (t) => {
  const dir = tempDir(t);
  const ca = await makeTestCa(dir);
  const a = await issueCert(ca, 'a', { serial: 1 });
  const b = await issueCert(ca, 'b', { serial: 2 });
  const keyText = readFileSync(a.keyFile, 'utf8');
  const keyBody = keyText.split('\n')[1] as string;
  const noKeyIn = (e: NotifyError) => {
    assert.ok(!e.message.includes(keyBody), `no key material in ${e.message}`);
    assert.ok(!e.message.includes('\n'), `one line: ${e.message}`);
  };

  const missing = join(dir, 'nope.pem');
  let e = refusal({ cert: missing, key: a.keyFile });
  assert.equal(e.message, `ws.tls.cert: cannot read ${missing}: no such file`);
  e = refusal({ cert: a.certFile, key: missing }, 'http.tls');
  assert.equal(e.message, `http.tls.key: cannot read ${missing}: no such file`);
  e = refusal({ cert: a.certFile, key: dir });
  assert.equal(e.message, `ws.tls.key: cannot read ${dir}: it is a folder`);

  // The key where the certificate belongs, and the other way round.
  e = refusal({ cert: a.keyFile, key: a.keyFile });
  assert.equal(e.message, `ws.tls.cert: ${a.keyFile} holds no PEM certificate ("-----BEGIN CERTIFICATE-----")`);
  noKeyIn(e);
  e = refusal({ cert: a.certFile, key: a.certFile });
  assert.equal(e.message, `ws.tls.key: ${a.certFile} holds no unencrypted PEM private key ("-----BEGIN PRIVATE KEY-----")`);
  // A damaged key: Node's own parse error is not passed on.
  const broken = join(dir, 'broken.key');
  writeFileSync(broken, keyText.replace(keyBody, keyBody.slice(0, 20)));
  e = refusal({ cert: a.certFile, key: broken });
  assert.match(e.message, /^ws\.tls\.key: .*broken\.key holds no unencrypted PEM private key/);
  noKeyIn(e);

  e = refusal({ cert: a.certFile, key: b.keyFile });
  assert.equal(e.message, `ws.tls.key: ${b.keyFile} is not the key of the certificate in ${a.certFile} (ws.tls.cert)`);
  noKeyIn(e);

  const old = await issueCert(ca, 'old', { serial: 3, notBefore: new Date('2020-01-01T00:00:00Z'), notAfter: new Date('2020-01-02T00:00:00Z') });
  e = refusal({ cert: old.certFile, key: old.keyFile });
  assert.equal(e.message, `ws.tls.cert: the certificate in ${old.certFile} expired on 2020-01-02T00:00:00.000Z; renew it (clients refuse an expired certificate)`);
  // Not valid yet: the same certificate, a clock before its start.
  e = refusal({ cert: a.certFile, key: a.keyFile }, 'ws.tls', Date.now() - 3 * 3600_000);
  assert.match(e.message, /^ws\.tls\.cert: the certificate in .* is not valid before \d{4}-.*Z \(is this machine's clock right\?\)$/);

  // Expiring within 14 days: taken, with a warning.
  const soon = readTls({ cert: a.certFile, key: a.keyFile }, 'ws.tls');
  assert.equal(soon.warnings.length, 1);
  assert.match(soon.warnings[0] as string, /^ws\.tls\.cert: the certificate in .*a\.pem expires on .*; renew it and send SIGHUP$/);
});

test('tls: config ws.tls and http.tls are {cert, key} paths resolved against the config folder; other shapes are refused by key', () => {
  const c = parseConfig(stringify({ ws: { tls: { cert: 'c.pem', key: 'k.pem' } }, http: { tls: { cert: '/etc/notify/c.pem', key: '/etc/notify/k.pem' } } }), 'notify.yaml', '/srv/notify');
  assert.deepEqual(c.ws.tls, { cert: '/srv/notify/c.pem', key: '/srv/notify/k.pem' });
  assert.deepEqual(c.http.tls, { cert: '/etc/notify/c.pem', key: '/etc/notify/k.pem' });
  assert.equal(parseConfig('').ws.tls, null, 'off by default');
  const problems = (yaml: string): string => {
    try {
      parseConfig(yaml, 'notify.yaml');
    } catch (err) {
      return (err as Error).message;
    }
    return 'accepted';
  };
  assert.match(problems('ws:\n  tls: yes\n'), /notify\.yaml:2:\d+: ws\.tls must be a mapping \{cert, key\} of PEM file paths/);
  assert.match(problems('ws:\n  tls:\n    cert: c.pem\n'), /ws\.tls\.key must be a file path \(ws\.tls needs both cert and key\)/);
  assert.match(problems('http:\n  tls:\n    cert: c.pem\n    key: k.pem\n    ca: ca.pem\n'), /unknown key "ca" in http\.tls; expected one of: cert, key/);
});

test('tls: notify serve with a wrong ws.tls file exits 2 with one line naming the key and the file, before it listens', { skip: SKIP }, async (t) => {
  const dir = tempDir(t);
  const ca = await makeTestCa(dir);
  const a = await issueCert(ca, 'a', { serial: 1 });
  const b = await issueCert(ca, 'b', { serial: 2 });
  const config = join(dir, 'notify.yaml');
  writeFileSync(
    config,
    stringify({
      ws: { listen: '127.0.0.1:0', tls: { cert: a.certFile, key: b.keyFile } },
      text: { listen: '127.0.0.1:0' },
      http: { listen: '127.0.0.1:0' },
      state: { dir: join(dir, 'state') },
    }),
  );
  const r = await cli(['serve', '--config', config]);
  assert.equal(r.code, 2);
  assert.equal(oneErrLine(r, 'serve with a mismatched key'), `notify: ws.tls.key: ${b.keyFile} is not the key of the certificate in ${a.certFile} (ws.tls.cert)`);
  assert.ok(!existsSync(join(dir, 'state')), 'refused before the store was opened');
});

test('tls: notify config check reads the certificate files as a start would: a wrong one is one line and exit 2, a good one ok', { skip: SKIP }, async (t) => {
  const dir = tempDir(t);
  const ca = await makeTestCa(dir);
  const a = await issueCert(ca, 'a', { serial: 1, notAfter: new Date(Date.now() + 60 * 24 * 3600_000) });
  const config = join(dir, 'notify.yaml');
  writeFileSync(config, stringify({ http: { tls: { cert: a.certFile, key: join(dir, 'missing.key') } } }));
  const bad = await cli(['config', 'check', '--config', config]);
  assert.equal(bad.code, 2);
  assert.equal(bad.out, '');
  assert.equal(bad.err, `${config}: http.tls.key: cannot read ${join(dir, 'missing.key')}: no such file\n`);
  writeFileSync(config, stringify({ http: { tls: { cert: a.certFile, key: a.keyFile } } }));
  const good = await cli(['config', 'check', '--config', config]);
  assert.equal(good.code, 0, good.err);
  assert.equal(good.out, `${config}: ok\n`);
});

test('tls: a cert or key path that is a FIFO or a device is refused by name without being read, and a file over 1 MiB by its size', { skip: SKIP, timeout: 60_000 }, async (t) => {
  const dir = tempDir(t);
  const ca = await makeTestCa(dir);
  const a = await issueCert(ca, 'a', { serial: 1, notAfter: new Date(Date.now() + 60 * 24 * 3600_000) });
  // A FIFO nobody writes to: reading it would wait forever (and block the process: readFileSync).
  const fifo = join(dir, 'cert.fifo');
  execFileSync('mkfifo', [fifo]);
  const config = join(dir, 'notify.yaml');
  writeFileSync(config, stringify({ http: { tls: { cert: fifo, key: a.keyFile } } }));
  const r = await runNotify(t, ['config', 'check', '--config', config], 20_000);
  assert.equal(r.code, 2, r.err);
  assert.equal(r.err, `${config}: http.tls.cert: ${fifo} is not a regular file (a FIFO, socket or device); give the path of a PEM file\n`);
  // A device that never ends.
  writeFileSync(config, stringify({ ws: { tls: { cert: a.certFile, key: '/dev/zero' } } }));
  const z = await runNotify(t, ['config', 'check', '--config', config], 20_000);
  assert.equal(z.code, 2, z.err);
  assert.equal(z.err, `${config}: ws.tls.key: /dev/zero is not a regular file (a FIFO, socket or device); give the path of a PEM file\n`);
  // 50 MB (sparse) that starts with the real certificate.
  const big = join(dir, 'big.pem');
  copyFileSync(a.certFile, big);
  truncateSync(big, 50 * 1024 * 1024);
  assert.equal(refusal({ cert: big, key: a.keyFile }).message, `ws.tls.cert: ${big} is larger than ${MAX_PEM_BYTES} bytes; a PEM certificate chain or key is a few KiB (is this the right file?)`);
  // A chain of a few certificates is well within the bound.
  writeFileSync(big, Buffer.concat([readFileSync(a.certFile), readFileSync(ca.certFile)]));
  assert.equal(readTls({ cert: big, key: a.keyFile }, 'ws.tls').fingerprint256, a.fingerprint256);
});
