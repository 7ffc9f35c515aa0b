import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { EXIT } from '../../src/cli/main.js';
import type { DeliveryReport } from '../../src/types.js';
import { apnsWorld, deviceToken, writeWorldConfig } from '../helpers/apns.js';
import { cli, lines, oneErrLine, runNotify } from '../helpers/cli.js';
import { HANG_MS } from '../helpers/clients.js';

// The CLI falls back to $NOTIFY_TOKEN; keep the caller's environment out of these tests.
delete process.env.NOTIFY_TOKEN;

// ---------------------------------------------------------------------------------------------
// devices add | remove | list, against a daemon

test('cli devices: add registers (exit 0, "registered: ..."), list shows it tab-separated, remove exits 0 then 1', async (t) => {
  const yamlToken = deviceToken();
  const w = await apnsWorld(t, { devices: { uid2: [yamlToken] } });
  const d = await w.daemon();
  const token = deviceToken();

  const add = await cli(['devices', 'add', 'uid1', token, '--server', d.httpUrl]);
  assert.equal(add.code, EXIT.delivered, add.err);
  assert.equal(add.err, '');
  assert.equal(add.out, `registered: uid1 apns ${token}\n`);
  assert.deepEqual(d.registry.index('apns').targets('uid1'), [token], 'the daemon has it');

  const again = await cli(['devices', 'add', 'uid1', token, '--server', d.httpUrl, '--transport', 'apns']);
  assert.equal(again.code, EXIT.delivered, again.err);
  assert.match(again.out, /^already registered: uid1 apns /);

  const list = await cli(['devices', 'list', '--server', d.httpUrl]);
  assert.equal(list.code, EXIT.delivered, list.err);
  assert.equal(list.err, '');
  const [header, ...rows] = lines(list.out);
  assert.equal(header, 'UID\tTRANSPORT\tTOKEN\tSOURCE', 'a header row first');
  assert.deepEqual(rows.sort(), [`uid1\tapns\t${token}\tapi`, `uid2\tapns\t${yamlToken}\tconfig`].sort());

  const json = await cli(['devices', 'list', '--server', d.httpUrl, '--json']);
  assert.equal(json.code, EXIT.delivered, json.err);
  assert.equal(lines(json.out).length, 1, 'one line of JSON');
  const parsed = JSON.parse(json.out) as { uid: string; token: string }[];
  assert.deepEqual(
    [...parsed].sort((a, b) => a.uid.localeCompare(b.uid)),
    [
      { uid: 'uid1', transport: 'apns', token, source: 'api' },
      { uid: 'uid2', transport: 'apns', token: yamlToken, source: 'config' },
    ],
  );

  const only = await cli(['devices', 'list', '--server', d.httpUrl, '--uid', 'uid2']);
  assert.equal(only.code, EXIT.delivered, only.err);
  assert.equal(only.out, `UID\tTRANSPORT\tTOKEN\tSOURCE\nuid2\tapns\t${yamlToken}\tconfig\n`);
  const byTransport = await cli(['devices', 'list', '--server', d.httpUrl, '--uid', 'uid1', '--transport', 'apns']);
  assert.equal(byTransport.out, `UID\tTRANSPORT\tTOKEN\tSOURCE\nuid1\tapns\t${token}\tapi\n`);

  // A send through the daemon now reaches the registered token.
  const sent = await cli(['send', '--server', d.httpUrl, '--uid', 'uid1', '--msg', 'to the phone']);
  assert.equal(sent.code, EXIT.delivered, sent.err);
  assert.equal(sent.out, 'delivered to 1 target (apns: 1)\n');
  assert.deepEqual(w.fake.requests.map((r) => r.token), [token]);

  const remove = await cli(['devices', 'remove', 'uid1', token, '--server', d.httpUrl]);
  assert.equal(remove.code, EXIT.delivered, remove.err);
  assert.match(remove.out, /^removed: uid1 /);
  assert.deepEqual(d.registry.index('apns').targets('uid1'), []);
  const removeAgain = await cli(['devices', 'remove', 'uid1', token, '--server', d.httpUrl]);
  assert.equal(removeAgain.code, EXIT.none, removeAgain.err);
  assert.match(removeAgain.out, /not registered for uid1/);

  const after = await cli(['devices', 'list', '--server', d.httpUrl]);
  assert.equal(after.out, `UID\tTRANSPORT\tTOKEN\tSOURCE\nuid2\tapns\t${yamlToken}\tconfig\n`);
});

test('cli devices: add with a token that is not hex exits 2 with one stderr line carrying the daemon\'s error', async (t) => {
  const w = await apnsWorld(t);
  const d = await w.daemon();
  const r = await cli(['devices', 'add', 'uid1', 'nothex', '--server', d.httpUrl]);
  assert.equal(r.code, EXIT.error);
  assert.equal(r.out, '');
  const line = oneErrLine(r, 'devices add nothex');
  assert.match(line, /an APNs device token is hex/);
  assert.match(line, /"nothex"/);
  assert.match(line, /NOTIFY_ERR_INVALID_DEVICE/);

  const unknown = await cli(['devices', 'add', 'uid1', deviceToken(), '--transport', 'fcm', '--server', d.httpUrl]);
  assert.equal(unknown.code, EXIT.error);
  assert.match(oneErrLine(unknown, 'unknown transport'), /no transport named "fcm"/);
  assert.equal(d.registry.index('apns').targetCount, 0);
});

test('cli send: --data k=v alone through the daemon is a background push', async (t) => {
  const token = deviceToken();
  const w = await apnsWorld(t, { devices: { uid1: [token] } });
  const d = await w.daemon();
  const r = await cli(['send', '--server', d.httpUrl, '--uid', 'uid1', '--data', 'k=v']);
  assert.equal(r.code, EXIT.delivered, r.err);
  assert.equal(w.fake.requests.length, 1);
  const req = w.fake.requests[0];
  assert.equal(req?.token, token);
  assert.equal(req?.headers['apns-push-type'], 'background');
  assert.equal(req?.headers['apns-priority'], '5');
  assert.deepEqual(req?.payload, { aps: { 'content-available': 1 }, k: 'v' });
  assert.equal(w.fake.answers[0]?.status, 200);
});

// ---------------------------------------------------------------------------------------------
// send --direct: no daemon

test('cli send --direct: with no daemon running, delivers through the config\'s APNs transport and exits 0', async (t) => {
  const token = deviceToken();
  const w = await apnsWorld(t, { devices: { uid1: [token] } });
  const file = writeWorldConfig(w);

  const r = await cli(['send', '--direct', '--uid', 'uid1', '--msg', 'hi', '--config', file]);
  assert.equal(r.code, EXIT.delivered, r.err);
  assert.equal(r.out, 'delivered to 1 target (apns: 1)\n');
  assert.equal(w.fake.requests.length, 1);
  const req = w.fake.requests[0];
  assert.equal(req?.token, token);
  assert.equal(req?.headers['apns-topic'], 'com.example.app');
  assert.equal(req?.headers['apns-push-type'], 'alert');
  assert.deepEqual(req?.payload, { aps: { alert: { body: 'hi' } } });

  const titled = await cli(['send', '--direct', '--uid', 'uid1', '--msg', 'body', '--title', 'T', '--config', file]);
  assert.equal(titled.code, EXIT.delivered, titled.err);
  assert.deepEqual(w.fake.requests[1]?.payload, { aps: { alert: { title: 'T', body: 'body' } } });
});

test('cli send --direct: --data k=v alone is a background push (push type background, priority 5)', async (t) => {
  const w = await apnsWorld(t, { devices: { uid1: [deviceToken()] } });
  const file = writeWorldConfig(w);
  const r = await cli(['send', '--direct', '--uid', 'uid1', '--data', 'k=v', '--config', file]);
  assert.equal(r.code, EXIT.delivered, r.err);
  const req = w.fake.requests[0];
  assert.equal(req?.headers['apns-push-type'], 'background');
  assert.equal(req?.headers['apns-priority'], '5');
  assert.deepEqual(req?.payload, { aps: { 'content-available': 1 }, k: 'v' });
});

test('cli send --direct --json prints the report with the apns entry and its apns-id', async (t) => {
  const token = deviceToken();
  const w = await apnsWorld(t, { devices: { uid1: [token] } });
  const file = writeWorldConfig(w);
  const r = await cli(['send', '--direct', '--uid', 'uid1', '--uid', 'nobody', '--msg', 'hi', '--json', '--config', file]);
  assert.equal(r.code, EXIT.delivered, r.err);
  assert.equal(lines(r.out).length, 1, 'one line of JSON');
  const report = JSON.parse(r.out) as DeliveryReport;
  const apnsId = w.fake.answers[0]?.apnsId;
  assert.ok(apnsId, 'the fake answered with an apns-id');
  const id = (report as unknown as { id: string }).id;
  assert.deepEqual(report, {
    id,
    stored: true,
    route: 'all',
    delivered: true,
    sent: 1,
    failed: 0,
    rejected: 0,
    results: [{ uid: 'uid1', transport: 'apns', target: token, status: 'sent', id: apnsId }],
    unreached: ['nobody'],
  });
});

test('cli send --direct: a uid with no devices exits 1', async (t) => {
  const w = await apnsWorld(t, { devices: { uid1: [deviceToken()] } });
  const file = writeWorldConfig(w);
  const r = await cli(['send', '--direct', '--uid', 'nobody', '--msg', 'hi', '--config', file]);
  assert.equal(r.code, EXIT.none, r.err);
  assert.match(r.out, /^not delivered; not reachable: nobody; stored for sessions that resume\n$/);
  assert.equal(w.fake.requests.length, 0);
});

test('cli send --direct: a token APNs answers 410 exits 1 and is retired in the state db (the next daemon does not load it)', async (t) => {
  const [dead, live] = [deviceToken(), deviceToken()];
  const w = await apnsWorld(t, {
    devices: { uid1: [dead], uid2: [live] },
    fake: { respond: (req) => (req.token === dead ? { status: 410, reason: 'Unregistered', timestamp: Date.now() } : undefined) },
  });
  const file = writeWorldConfig(w);
  const r = await cli(['send', '--direct', '--uid', 'uid1', '--msg', 'hi', '--config', file]);
  assert.equal(r.code, EXIT.none, r.err);
  assert.match(r.out, /^not delivered; 1 rejected \(410 Unregistered/, 'a 410 is a permanent refusal: "rejected", not "failed"');
  assert.equal(w.fake.requests.length, 1);

  const d = await w.daemon();
  assert.deepEqual(d.registry.index('apns').targets('uid1'), [], 'the daemon does not load the retired token');
  assert.deepEqual(d.registry.index('apns').targets('uid2'), [live], 'the other one is untouched');
  assert.equal(d.devices.isRetired('apns', dead), true);
  const again = await cli(['send', '--server', d.httpUrl, '--uid', 'uid1', '--msg', 'again']);
  assert.equal(again.code, EXIT.none, again.err);
  assert.equal(w.fake.requests.length, 1, 'not tried again');

  // devices list --retired: the token, why and when, under a header row.
  const retired = await cli(['devices', 'list', '--retired', '--server', d.httpUrl]);
  assert.equal(retired.code, EXIT.delivered, retired.err);
  const [header, ...rows] = lines(retired.out);
  assert.equal(header, 'TRANSPORT\tTOKEN\tREASON\tRETIRED');
  assert.equal(rows.length, 1, retired.out);
  const [transport, token, reason, at] = (rows[0] as string).split('\t');
  assert.deepEqual([transport, token], ['apns', dead]);
  assert.match(reason as string, /^410 Unregistered/);
  assert.ok(Math.abs(Date.parse(at as string) - Date.now()) < 3_600_000, `an ISO time: ${at}`);
  const json = await cli(['devices', 'list', '--retired', '--json', '--transport', 'apns', '--server', d.httpUrl]);
  assert.deepEqual((JSON.parse(json.out) as { token: string }[]).map((e) => e.token), [dead]);
  const other = await cli(['devices', 'list', '--retired', '--transport', 'nope', '--server', d.httpUrl]);
  assert.equal(other.out, '');
  assert.equal(other.err, 'no retired device tokens\n');
  const withUid = await cli(['devices', 'list', '--retired', '--uid', 'uid1', '--server', d.httpUrl]);
  assert.equal(withUid.code, EXIT.error);
  assert.match(oneErrLine(withUid, '--retired --uid'), /--retired lists by --transport only/);

  // The API behind it: GET /v1/devices?retired=1.
  const api = await fetch(`${d.httpUrl}/v1/devices?retired=1`);
  assert.equal(api.status, 200);
  const body = (await api.json()) as { retired: { transport: string; token: string; reason: string; retiredAt: string }[] };
  assert.deepEqual(body.retired.map((e) => [e.transport, e.token, e.reason]), [['apns', dead, reason]]);
  assert.equal(body.retired[0]?.retiredAt, at);
  for (const [q, re] of [
    ['retired=yes', /retired takes 1 or true, got "yes"/],
    ['retired=1&uid=uid1', /retired=1 lists by transport only/],
  ] as const) {
    const bad = await fetch(`${d.httpUrl}/v1/devices?${q}`);
    assert.equal(bad.status, 400, q);
    const e = (await bad.json()) as { code: string; error: string };
    assert.equal(e.code, 'NOTIFY_ERR_BAD_REQUEST');
    assert.match(e.error, re);
  }
});

test('cli send --direct: a config with no transports exits 2 with one line about --direct', async (t) => {
  const w = await apnsWorld(t);
  const file = join(w.dir, 'plain.yaml');
  writeFileSync(file, 'http:\n  listen: 127.0.0.1:0\n');
  const r = await cli(['send', '--direct', '--uid', 'uid1', '--msg', 'hi', '--config', file]);
  assert.equal(r.code, EXIT.error);
  assert.equal(r.out, '');
  const line = oneErrLine(r, 'no transports');
  assert.match(line, /--direct/);
  assert.match(line, /transports/);

  const noConfig = await cli(['send', '--direct', '--uid', 'uid1', '--msg', 'hi']);
  assert.equal(noConfig.code, EXIT.error);
  assert.match(oneErrLine(noConfig, 'no --config'), /--direct.*--config FILE/);
});

test('cli process: send --direct as a real child process delivers and exits 0', async (t) => {
  const token = deviceToken();
  const w = await apnsWorld(t, { devices: { uid1: [token] } });
  const file = writeWorldConfig(w);
  const r = await runNotify(t, ['send', '--direct', '--uid', 'uid1', '--msg', 'from a process', '--config', file], HANG_MS);
  assert.equal(r.code, EXIT.delivered, r.err);
  assert.equal(r.out, 'delivered to 1 target (apns: 1)\n');
  assert.equal(r.err, '');
  assert.deepEqual(w.fake.requests.map((q) => q.token), [token]);
  assert.deepEqual(w.fake.requests[0]?.payload, { aps: { alert: { body: 'from a process' } } });
});
