import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EXIT } from '../../../src/cli/main.js';
import type { PublishReport } from '../../../src/types.js';
import { api, send } from '../../helpers/api.js';
import { cli, lines } from '../../helpers/cli.js';
import { session, until } from '../../helpers/clients.js';
import { fcmError } from '../../helpers/fake-fcm.js';
import { fcmToken, fcmWorld } from '../../helpers/fcm.js';

delete process.env.NOTIFY_TOKEN;

test('fcm daemon: over HTTPS with a private CA, a uid with a YAML token and one registered over the API gets a send from the HTTP API and from notify send', async (t) => {
  const yamlToken = fcmToken();
  const w = await fcmWorld(t, { devices: { phone: [yamlToken] }, fake: { tls: true } });
  assert.match(w.fake.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(w.raw.transports && (w.raw.transports as { fcm: { ca?: string } }).fcm.ca, './fake-ca.pem');
  const d = await w.daemon();

  const apiToken = fcmToken();
  const add = await cli(['devices', 'add', 'phone', apiToken, '--server', d.httpUrl, '--transport', 'fcm']);
  assert.equal(add.code, EXIT.delivered, add.err);
  assert.equal(add.out, `registered: phone fcm ${apiToken}\n`);
  const list = await cli(['devices', 'list', '--server', d.httpUrl, '--uid', 'phone']);
  const [header, ...rows] = lines(list.out);
  assert.equal(header, 'UID\tTRANSPORT\tTOKEN\tSOURCE');
  assert.deepEqual(rows.sort(), [`phone\tfcm\t${apiToken}\tapi`, `phone\tfcm\t${yamlToken}\tconfig`].sort());

  const report = await send(d.httpUrl, { uid: 'phone', title: 'Build', msg: 'green', data: { run: 42 } });
  assert.equal(report.delivered, true);
  assert.deepEqual(report.results.map((e) => [e.transport, e.target, e.status]).sort(), [
    ['fcm', apiToken, 'sent'],
    ['fcm', yamlToken, 'sent'],
  ].sort());

  const viaCli = await cli(['send', '--server', d.httpUrl, '--uid', 'phone', '--msg', 'from the CLI']);
  assert.equal(viaCli.code, EXIT.delivered, viaCli.err);
  assert.equal(viaCli.out, 'delivered to 2 targets (fcm: 2)\n');

  assert.equal(w.fake.requests.length, 4);
  assert.deepEqual(w.fake.violations, []);
  const fromCli = w.fake.requests.slice(2);
  assert.deepEqual(fromCli.map((r) => r.token).sort(), [apiToken, yamlToken].sort());
  for (const r of fromCli) assert.deepEqual(r.json, { message: { token: r.token, notification: { body: 'from the CLI' } } });
  assert.equal(w.fake.tokenRequests.length, 1, 'one access token for all of it');
});

test('fcm daemon: a token registered over the API and retired (UNREGISTERED) stays retired after a restart; registering it again brings it back', async (t) => {
  const dead = fcmToken('dead-');
  const w = await fcmWorld(t);
  const d1 = await w.daemon();
  assert.equal((await api(d1.httpUrl, 'POST', '/v1/devices', { uid: 'u1', transport: 'fcm', token: dead })).status, 200);
  const r1 = await send(d1.httpUrl, { uid: 'u1', msg: 'one' });
  assert.deepEqual(r1.results.map((e) => [e.status, e.reason]), [['rejected', '404 UNREGISTERED (Requested entity was not found.)']]);
  assert.deepEqual((await api(d1.httpUrl, 'GET', '/v1/devices?uid=u1')).body, { devices: [] });
  await d1.stop();

  const d2 = await w.daemon();
  assert.deepEqual((await api(d2.httpUrl, 'GET', '/v1/devices?uid=u1')).body, { devices: [] }, 'still retired in the next process');
  const r2 = await send(d2.httpUrl, { uid: 'u1', msg: 'two' });
  assert.deepEqual(r2.results, [], 'nothing to send to');
  assert.deepEqual(r2.unreached, ['u1']);
  assert.equal(w.fake.requests.length, 1, 'never tried again');

  // The app re-registered it (a new install that got the same token): in service again.
  assert.equal((await api(d2.httpUrl, 'POST', '/v1/devices', { uid: 'u1', transport: 'fcm', token: dead })).status, 200);
  await send(d2.httpUrl, { uid: 'u1', msg: 'three' });
  assert.equal(w.fake.requests.length, 2);
});

test('fcm daemon: a delivery waiting for a retry (503, Retry-After) when the daemon stops is sent by the next one (the retry queue)', async (t) => {
  const token = fcmToken();
  const w = await fcmWorld(t, {
    devices: { u1: [token] },
    top: { dispatch: { deliverTimeoutMs: 200 } },
    fake: {
      respond: (req) =>
        req.attempt === 1 ? { ...fcmError(503, 'UNAVAILABLE', 'The service is currently unavailable.', 'UNAVAILABLE'), headers: { 'retry-after': '3' } } : undefined,
    },
  });
  const d1 = await w.daemon();
  const r1 = await send(d1.httpUrl, { uid: 'u1', msg: 'later' });
  assert.equal(r1.results[0]?.status, 'failed');
  assert.match(r1.results[0]?.reason ?? '', /^not delivered by the deadline; still trying \(last: 503 UNAVAILABLE/);
  await d1.stop();
  assert.equal(w.fake.requests.length, 1, 'the first process did not send it again');

  const d2 = await w.daemon();
  await until(() => w.fake.requests.length === 2, 'the next process to send the held delivery');
  assert.equal(w.fake.requests[1]?.token, token);
  assert.deepEqual(w.fake.requests[1]?.json, w.fake.requests[0]?.json, 'the same message');
  assert.ok((w.fake.requests[1]?.receivedAt ?? 0) - (w.fake.requests[0]?.receivedAt ?? 0) >= 2900, 'no sooner than Retry-After');
  await until(() => d2.logs.some((l) => l.msg === 'resumed delivery ended' && l.status === 'sent' && l.transport === 'fcm'), 'the resumed delivery to end sent');
});

test('fcm daemon: live-first: an open page takes the message (nothing pushed); with no page the fallback is FCM, and the report says fcm delivered it', async (t) => {
  const token = fcmToken();
  const w = await fcmWorld(t, { devices: { u1: [token] } });
  const d = await w.daemon();

  const page = await session(t, d, 'u1');
  const live = (await send(d.httpUrl, { uid: 'u1', msg: 'on the page', route: 'live-first' })) as PublishReport;
  assert.deepEqual(live.paths, { u1: 'live' });
  assert.deepEqual(live.results.map((e) => [e.transport, e.status]), [['websocket', 'sent']]);
  assert.equal(await page.frame(1), 'on the page');
  assert.equal(w.fake.requests.length, 0, 'nothing pushed while the page is open');

  page.ws.close();
  await until(() => d.registry.index('websocket').targets('u1').length === 0, 'the page to go');
  const pushed = (await send(d.httpUrl, { uid: 'u1', msg: 'to the phone', route: 'live-first' })) as PublishReport;
  assert.deepEqual(pushed.paths, { u1: 'fallback' });
  assert.equal(pushed.delivered, true);
  assert.deepEqual(pushed.results.map((e) => [e.transport, e.target, e.status]), [['fcm', token, 'sent']]);
  assert.match(pushed.results[0]?.id ?? '', /^projects\/notify-test\/messages\//);
  assert.deepEqual(w.fake.requests.map((r) => (r.json as { message: { notification: unknown } }).message.notification), [{ body: 'to the phone' }]);

  const viaCli = await cli(['send', '--server', d.httpUrl, '--uid', 'u1', '--msg', 'again', '--route', 'live-first', '--json']);
  assert.equal(viaCli.code, EXIT.delivered, viaCli.err);
  const parsed = JSON.parse(viaCli.out) as PublishReport;
  assert.deepEqual(parsed.paths, { u1: 'fallback' });
  assert.deepEqual(parsed.results.map((e) => e.transport), ['fcm']);
});

test('fcm daemon: the fcm example of config.example.yaml works as written (only its url pointed at the fake)', async (t) => {
  const { readFileSync, writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { parseConfig } = await import('../../../src/config/load.js');
  const { createDaemon } = await import('../../../src/node/daemon.js');
  const { serviceAccountJson } = await import('../../helpers/fake-fcm.js');
  const text = readFileSync(new URL('../../../../config.example.yaml', import.meta.url), 'utf8');
  const m = /^# >>> example: fcm\n([\s\S]*?)^# <<<$/m.exec(text);
  assert.ok(m, 'config.example.yaml has an fcm example block');
  const block = (m[1] as string)
    .split('\n')
    .map((l) => l.slice(1))
    .join('\n');
  const w = await fcmWorld(t);
  writeFileSync(join(w.dir, 'firebase-service-account.json'), serviceAccountJson(w.account, w.fake.tokenUrl));
  const pointed = block.replace(/^(\s*url: )https:\/\/fcm\.googleapis\.com$/m, `$1${w.fake.url}`);
  assert.notEqual(pointed, block, 'the example has a url line to point at the fake');
  const token = fcmToken();
  const yaml = `ws: {listen: "127.0.0.1:0"}\ntext: {listen: "127.0.0.1:0"}\nhttp: {listen: "127.0.0.1:0"}\nstate: {dir: ./state}\ntransports:\n${pointed}devices:\n  uid1:\n    fcm: [${token}]\n`;
  const d = await createDaemon(parseConfig(yaml, 'example', w.dir));
  await d.start();
  t.after(() => d.stop());
  const report = await send(`http://${d.addresses().http}`, { uid: 'uid1', msg: 'from the example' });
  assert.deepEqual(report.results.map((e) => [e.transport, e.status]), [['fcm', 'sent']]);
  assert.deepEqual(w.fake.violations, []);
});

test('fcm daemon: without ca, the fake\'s self-signed certificate is not trusted: the token request fails with the TLS reason (retried, then failed), nothing is sent', async (t) => {
  const token = fcmToken();
  const w = await fcmWorld(t, { devices: { u1: [token] }, fake: { tls: true }, fcm: { retry: { limit: 1, baseDelayMs: 10, maxDelayMs: 100 } } });
  delete (w.raw.transports as { fcm: Record<string, unknown> }).fcm.ca;
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'u1', msg: 'hi' });
  assert.equal(report.results[0]?.status, 'failed');
  assert.match(
    report.results[0]?.reason ?? '',
    /^access token request to https:\/\/127\.0\.0\.1:\d+\/token failed: request failed: (DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|[A-Z_]*CERT[A-Z_]*) \(gave up after 2 attempts\)$/,
  );
  assert.equal(w.fake.tokenRequests.length, 0, 'the TLS handshake failed before any request');
  assert.equal(w.fake.requests.length, 0);
  assert.deepEqual(d.registry.index('fcm').targets('u1'), [token], 'the token is kept');
});
