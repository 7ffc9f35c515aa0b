import assert from 'node:assert/strict';
import { createECDH, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse, stringify } from 'yaml';
import { EXIT } from '../../../src/cli/main.js';
import { parseConfig } from '../../../src/config/load.js';
import { parseSubscription } from '../../../src/push/webpush/subscription.js';
import { checkVapidPrivateKey, checkVapidPublicKey, generateVapidKeys, vapidKeysMatch } from '../../../src/push/webpush/vapid.js';
import { cli, lines } from '../../helpers/cli.js';
import { configError } from '../../helpers/config.js';
import { tempDir } from '../../helpers/daemon.js';
import { makeSubscription } from '../../helpers/fake-webpush.js';
import { webpushWorld } from '../../helpers/webpush.js';

const ORIGIN = 'https://push.example.net';

function webpushYaml(vapid: Record<string, string>, extra: Record<string, unknown> = {}, devices?: unknown): string {
  return stringify({ transports: { web: { type: 'webpush', vapid, ...extra } }, ...(devices ? { devices: { uid1: { web: devices } } } : {}) });
}

// ---- notify vapid

test('notify vapid: prints a fresh key pair as YAML that pastes under vapid: as it is', async (t) => {
  const r = await cli(['vapid']);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.err, '');
  const printed = parse(r.out) as Record<string, string>;
  assert.deepEqual(Object.keys(printed), ['subject', 'publicKey', 'privateKey']);
  assert.equal(printed.subject, 'mailto:you@example.com');
  assert.equal(checkVapidPublicKey(printed.publicKey as string), undefined);
  assert.equal(checkVapidPrivateKey(printed.privateKey as string), undefined);
  assert.ok(vapidKeysMatch(printed.publicKey as string, printed.privateKey as string), 'the two halves belong together');
  assert.ok(lines(r.out).filter((l) => l.startsWith('#')).some((l) => /keep privateKey secret/i.test(l)));

  // Indented under transports.NAME.vapid, the output is a valid config.
  const indented = r.out.split('\n').map((l) => (l ? `      ${l}` : l)).join('\n');
  const dir = tempDir(t);
  const cfg = parseConfig(`transports:\n  web:\n    type: webpush\n    vapid:\n${indented}`, 'pasted.yaml', dir);
  assert.equal((cfg.transports.web as unknown as { vapid: { publicKey: string } }).vapid.publicKey, printed.publicKey);

  const again = parse((await cli(['vapid'])).out) as Record<string, string>;
  assert.notEqual(again.privateKey, printed.privateKey, 'a fresh pair every time');
});

test('notify vapid --subject and --json; a subject that is not mailto:/https: is refused', async () => {
  const r = await cli(['vapid', '--subject', 'https://example.com/contact', '--json']);
  assert.equal(r.code, 0, r.err);
  const j = JSON.parse(r.out) as Record<string, string>;
  assert.equal(j.subject, 'https://example.com/contact');
  assert.ok(vapidKeysMatch(j.publicKey as string, j.privateKey as string));
  const yaml = await cli(['vapid', '--subject', 'mailto:ops@example.com']);
  assert.ok(!/Set subject/.test(yaml.out));
  assert.equal((parse(yaml.out) as Record<string, string>).subject, 'mailto:ops@example.com');

  const bad = await cli(['vapid', '--subject', 'http://example.com']);
  assert.equal(bad.code, EXIT.error);
  assert.equal(bad.out, '');
  assert.match(bad.err, /^notify: --subject must be a mailto: or https: URL, got a http: URL\n$/);
});

// ---- transport settings

test('webpush config: vapid is required, each key checked and named, the pair must match; no secret is quoted', () => {
  const keys = generateVapidKeys();
  const other = generateVapidKeys();
  assert.match(configError(webpushYaml(undefined as unknown as Record<string, string>).replace('vapid: null', '')).message, /transports\.web\.vapid is required: \{subject: "mailto:you@example.com", publicKey, privateKey\} \(notify vapid prints a key pair\)/);
  const cases: [Record<string, string>, RegExp][] = [
    [{ ...keys, subject: 'ops@example.com' }, /transports\.web\.vapid\.subject must be a mailto: or https: URL/],
    [{ ...keys, subject: 'https://localhost/contact' }, /transports\.web\.vapid\.subject must not point at localhost/],
    [{ subject: 'mailto:a@b.c', privateKey: keys.privateKey }, /transports\.web\.vapid\.publicKey is required/],
    [{ subject: 'mailto:a@b.c', publicKey: keys.publicKey, privateKey: 'c2hvcnQ' }, /transports\.web\.vapid\.privateKey must be a P-256 private key \(32 bytes once decoded\), got 5 bytes/],
    [{ subject: 'mailto:a@b.c', publicKey: 'not base64!', privateKey: keys.privateKey }, /transports\.web\.vapid\.publicKey must be base64url/],
    [{ subject: 'mailto:a@b.c', publicKey: keys.publicKey.slice(0, 40), privateKey: keys.privateKey }, /publicKey must be an uncompressed P-256 public key \(65 bytes once decoded\), got 30 bytes/],
    [{ subject: 'mailto:a@b.c', publicKey: other.publicKey, privateKey: keys.privateKey }, /transports\.web\.vapid\.publicKey is not the public half of vapid\.privateKey; paste both from the same notify vapid output/],
  ];
  for (const [vapid, expected] of cases) {
    const err = configError(webpushYaml(vapid));
    assert.match(err.problems.join('\n'), expected);
    assert.ok(!err.problems.join('\n').includes(keys.privateKey), 'the private key is never quoted');
  }
});

test('webpush config: ttl (a duration, at most 28d), urgency and ca are checked', (t) => {
  const vapid = { subject: 'mailto:a@b.c', ...generateVapidKeys() };
  const dir = tempDir(t);
  const ok = parseConfig(webpushYaml(vapid, { ttl: '2h', urgency: 'low' }), 'cfg.yaml', dir);
  const web = ok.transports.web as unknown as { ttl: number; urgency: string; subscriptionsPerUid: number };
  assert.equal(web.ttl, 7_200_000);
  assert.equal(web.urgency, 'low');
  assert.equal(web.subscriptionsPerUid, 20);
  const dflt = parseConfig(webpushYaml(vapid), 'cfg.yaml', dir).transports.web as unknown as { ttl: number; urgency: string };
  assert.equal(dflt.ttl, 24 * 3600 * 1000, 'ttl defaults to 24h');
  assert.equal(dflt.urgency, 'normal');
  assert.match(configError(webpushYaml(vapid, { ttl: '30d' })).message, /transports\.web\.ttl must be at most 28d/);
  assert.match(configError(webpushYaml(vapid, { ttl: 'soon' })).message, /transports\.web\.ttl must be a duration/);
  assert.match(configError(webpushYaml(vapid, { urgency: 'urgent' })).message, /transports\.web\.urgency must be one of very-low, low, normal, high/);
  assert.match(configError(webpushYaml(vapid, { ca: './nope.pem' }), 'cfg.yaml', dir).message, /transports\.web\.ca: cannot use .*nope\.pem: no such file/);
  writeFileSync(join(dir, 'junk.pem'), 'not a certificate');
  assert.match(configError(webpushYaml(vapid, { ca: './junk.pem' }), 'cfg.yaml', dir).message, /transports\.web\.ca: cannot use .*junk\.pem: not a PEM certificate/);
  assert.match(configError(webpushYaml(vapid, { topic: 'x' })).message, /unknown key "topic" in transports\.web/);
});

// ---- subscriptions

test('subscriptions: the canonical form is compact JSON, base64url without padding; expirationTime is dropped', () => {
  const s = makeSubscription(ORIGIN);
  const padded = {
    endpoint: s.subscription.endpoint,
    expirationTime: null,
    keys: { auth: s.auth.toString('base64'), p256dh: s.ecdh.getPublicKey().toString('base64') },
  };
  const parsed = parseSubscription(JSON.stringify(padded));
  assert.deepEqual(parsed, s.subscription);
  assert.equal(JSON.stringify(parsed), s.target);
});

test('subscriptions: each invalid one gets a specific readable error', () => {
  const s = makeSubscription(ORIGIN).subscription;
  const bad = (v: unknown): string => {
    const r = parseSubscription(v);
    assert.ok('error' in r, `expected ${JSON.stringify(v)} to be refused`);
    return r.error;
  };
  const offCurve = Buffer.from(s.keys.p256dh, 'base64url');
  offCurve[64] = (offCurve[64] as number) ^ 1;
  const compressed = createECDH('prime256v1');
  compressed.generateKeys();
  assert.match(bad('{nope'), /this is not JSON/);
  assert.match(bad('"a string"'), /is an object/);
  assert.match(bad({ ...s, endpoint: 'http://push.example.net/x' }), /must be an https:\/\/ URL \(RFC 8030\); got http:\/\/…/);
  assert.match(bad({ ...s, endpoint: 'not a url' }), /endpoint is not a URL/);
  assert.match(bad({ ...s, endpoint: `${ORIGIN}/${'x'.repeat(3000)}` }), /endpoint is 30\d\d characters; at most 2048/);
  assert.match(bad({ ...s, endpoint: 'https://u:p@push.example.net/x' }), /must not carry a user name or password/);
  assert.match(bad({ ...s, endpoint: 'https://android.googleapis.com/gcm/send/abc' }), /legacy GCM endpoint/);
  assert.match(bad({ endpoint: s.endpoint }), /needs "keys"/);
  assert.match(bad({ ...s, keys: { auth: s.keys.auth } }), /needs keys\.p256dh/);
  assert.match(bad({ ...s, keys: { ...s.keys, p256dh: offCurve.toString('base64url') } }), /keys\.p256dh is not a point on the P-256 curve/);
  assert.match(bad({ ...s, keys: { ...s.keys, p256dh: compressed.getPublicKey(undefined, 'compressed').toString('base64url') } }), /keys\.p256dh must be an uncompressed P-256 point \(65 bytes starting 0x04\); got 33 bytes/);
  assert.match(bad({ ...s, keys: { ...s.keys, p256dh: 'not*base64' } }), /keys\.p256dh is not base64url/);
  assert.match(bad({ ...s, keys: { ...s.keys, auth: randomBytes(15).toString('base64url') } }), /keys\.auth must be exactly 16 bytes \(RFC 8291\); got 15/);
  assert.match(bad({ ...s, keys: { ...s.keys, extra: 'x' } }), /unknown key "keys\.extra"/);
  assert.match(bad({ ...s, userId: 'x' }), /unknown key "userId" in the Web Push subscription/);
  assert.match(bad('x'.repeat(5000)), /at most 4096 characters of JSON; got 5000/);
});

test('subscriptions in YAML: a mapping under devices.UID.NAME is kept in canonical form; a bad one names its path', (t) => {
  const vapid = { subject: 'mailto:a@b.c', ...generateVapidKeys() };
  const s = makeSubscription(ORIGIN);
  const dir = tempDir(t);
  const spelled = { endpoint: s.subscription.endpoint, keys: { auth: s.auth.toString('base64'), p256dh: s.subscription.keys.p256dh } };
  const cfg = parseConfig(webpushYaml(vapid, {}, [spelled]), 'cfg.yaml', dir);
  assert.deepEqual(cfg.devices.uid1?.web, [JSON.stringify(spelled)], 'kept as JSON text; normalized when seeded');
  const err = configError(webpushYaml(vapid, {}, [{ ...s.subscription, keys: { ...s.subscription.keys, auth: 'AAAA' } }]));
  assert.match(err.message, /^cfg\.yaml:\d+:\d+: devices\.uid1\.web\[0\]: keys\.auth must be exactly 16 bytes \(RFC 8291\); got 3/);
  assert.match(configError(webpushYaml(vapid, {}, [42])).message, /devices\.uid1\.web\[0\] must be a device token \(a string\) or a Web Push subscription/);
  // The same subscription listed for two uids.
  const twice = stringify({ transports: { web: { type: 'webpush', vapid } }, devices: { a: { web: [s.subscription] }, b: { web: [spelled] } } });
  assert.match(configError(twice).message, /also listed under devices\.a\.web; a device belongs to one uid/);
});

test('subscriptions through POST /v1/devices and the CLI: an object or its JSON text; invalid ones are a 400 with the reason', async (t) => {
  const w = await webpushWorld(t);
  const d = await w.daemon();
  const s = w.fake.subscribe();
  const post = (body: unknown, method = 'POST') => fetch(`${d.httpUrl}/v1/devices`, { method, body: JSON.stringify(body) });

  const spelled = { endpoint: s.subscription.endpoint, expirationTime: null, keys: { p256dh: s.subscription.keys.p256dh, auth: s.auth.toString('base64') } };
  const res = await post({ uid: 'uid1', token: spelled });
  assert.equal(res.status, 200, await res.clone().text());
  assert.deepEqual(await res.json(), { uid: 'uid1', transport: 'webpush', token: s.target, added: true });
  assert.deepEqual(d.registry.index('webpush').targets('uid1'), [s.target]);

  for (const [token, expected] of [
    [{ ...s.subscription, endpoint: 'http://127.0.0.1/x' }, /^"token": the subscription endpoint must be an https:\/\/ URL/],
    [{ ...s.subscription, keys: { ...s.subscription.keys, auth: 'AAAA' } }, /^"token": keys\.auth must be exactly 16 bytes/],
    ['{"endpoint":', /^"token": a Web Push subscription is JSON/],
    [[1, 2], /^"token" must be a non-empty string \(or, for a webpush transport, a subscription object\)$/],
  ] as const) {
    const r = await post({ uid: 'uid1', token });
    assert.equal(r.status, 400);
    const body = (await r.json()) as { code: string; error: string };
    assert.equal(body.code, 'NOTIFY_ERR_INVALID_DEVICE');
    assert.match(body.error, expected);
  }

  // The CLI takes the JSON text; it reaches the fake once sent.
  const other = w.fake.subscribe();
  const add = await cli(['devices', 'add', 'uid2', JSON.stringify(other.subscription), '--server', d.httpUrl]);
  assert.equal(add.code, EXIT.delivered, add.err);
  assert.equal(add.out, `registered: uid2 webpush ${other.target}\n`);
  const sent = await cli(['send', '--server', d.httpUrl, '--uid', 'uid2', '--msg', 'to the browser']);
  assert.equal(sent.code, EXIT.delivered, sent.err);
  assert.equal(sent.out, 'delivered to 1 target (webpush: 1)\n');
  assert.equal(JSON.parse(w.fake.requests[0]?.plaintext ?? '{}').body, 'to the browser');

  const del = await post({ uid: 'uid1', token: s.subscription }, 'DELETE');
  assert.equal(del.status, 200);
  assert.equal(((await del.json()) as { removed: boolean }).removed, true);
  assert.deepEqual(d.registry.index('webpush').targets('uid1'), []);
});

test('config.example.yaml: the webpush block parses as written, with the key pair from the environment', () => {
  const file = new URL('../../../../config.example.yaml', import.meta.url);
  const text = readFileSync(file, 'utf8');
  const m = /^# >>> example: webpush\n([\s\S]*?)^# <<<$/m.exec(text);
  assert.ok(m, 'config.example.yaml has a webpush example block');
  const body = (m[1] as string).split('\n').map((l) => l.slice(1)).join('\n');
  const keys = generateVapidKeys();
  const cfg = parseConfig(`transports:\n${body}`, 'config.example.yaml', undefined, { NOTIFY_VAPID_PUBLIC_KEY: keys.publicKey, NOTIFY_VAPID_PRIVATE_KEY: keys.privateKey });
  const web = cfg.transports.webpush as unknown as Record<string, unknown>;
  assert.equal(web.type, 'webpush');
  assert.deepEqual(web.vapid, { subject: 'mailto:ops@example.com', ...keys });
  assert.equal(web.ttl, 24 * 3600 * 1000);
  assert.equal(web.urgency, 'normal');
  assert.equal(web.subscriptionsPerUid, 20);
  assert.throws(() => parseConfig(`transports:\n${body}`, 'config.example.yaml', undefined, {}), /NOTIFY_VAPID_PUBLIC_KEY/);
});
