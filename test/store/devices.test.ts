import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseConfig } from '../../src/config/load.js';
import { type Answer, api, send } from '../helpers/api.js';
import { apnsWorld, deviceToken } from '../helpers/apns.js';
import { configError } from '../helpers/config.js';
import { tempDir } from '../helpers/daemon.js';
import { makeApnsKey } from '../helpers/fake-apns.js';

const BEARER = 'b'.repeat(24);

/** The tokens the fake APNs received requests for, in order. */
const seen = (w: { fake: { requests: { token: string }[] } }): string[] => w.fake.requests.map((r) => r.token);

/** Asserts a 400 NOTIFY_ERR_INVALID_DEVICE answer whose error matches `re`. */
function assertInvalid(a: Answer, re: RegExp, what: string): void {
  assert.equal(a.status, 400, `${what}: status (body ${JSON.stringify(a.body)})`);
  const body = a.body as { code?: unknown; error?: unknown };
  assert.deepEqual(Object.keys(body).sort(), ['code', 'error'], `${what}: body keys`);
  assert.equal(body.code, 'NOTIFY_ERR_INVALID_DEVICE', `${what}: code (body ${JSON.stringify(body)})`);
  assert.match(String(body.error), re, `${what}: error`);
}

// ---------------------------------------------------------------------------------------------
// POST /v1/devices

test('devices: POST /v1/devices registers a token; a send to the uid reaches it; posting again is added:false', async (t) => {
  const w = await apnsWorld(t);
  const d = await w.daemon();
  const token = deviceToken();

  const before = await send(d.httpUrl, { uid: 'uid1', msg: 'nobody yet' });
  assert.deepEqual(before.unreached, ['uid1'], 'uid1 has no device before registering');

  const a = await api(d.httpUrl, 'POST', '/v1/devices', { uid: 'uid1', transport: 'apns', token });
  assert.equal(a.status, 200, JSON.stringify(a.body));
  assert.deepEqual(a.body, { uid: 'uid1', transport: 'apns', token, added: true });
  assert.deepEqual(d.registry.index('apns').targets('uid1'), [token]);

  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hello device' });
  assert.equal(report.delivered, true, JSON.stringify(report));
  assert.deepEqual(report.results.map((e) => [e.transport, e.target, e.status]), [['apns', token, 'sent']]);
  assert.deepEqual(seen(w), [token]);
  assert.deepEqual(w.fake.requests[0]?.payload, { aps: { alert: { body: 'hello device' } } });

  const again = await api(d.httpUrl, 'POST', '/v1/devices', { uid: 'uid1', transport: 'apns', token });
  assert.equal(again.status, 200);
  assert.deepEqual(again.body, { uid: 'uid1', transport: 'apns', token, added: false });
  assert.deepEqual(d.registry.index('apns').targets('uid1'), [token], 'still one target');
});

test('devices: "transport" may be left out when exactly one push transport is configured, not when there are two', async (t) => {
  const w = await apnsWorld(t);
  const d = await w.daemon();
  const token = deviceToken();
  const a = await api(d.httpUrl, 'POST', '/v1/devices', { uid: 'uid1', token });
  assert.equal(a.status, 200, JSON.stringify(a.body));
  assert.deepEqual(a.body, { uid: 'uid1', transport: 'apns', token, added: true });
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
  assert.equal(report.sent, 1);
  assert.deepEqual(seen(w), [token]);
  await d.stop();

  // With a second APNs transport the daemon cannot guess.
  const transports = w.raw.transports as Record<string, Record<string, unknown>>;
  transports.apns2 = { ...transports.apns, type: 'apns', topic: 'com.example.other' };
  const d2 = await w.daemon();
  const b = await api(d2.httpUrl, 'POST', '/v1/devices', { uid: 'uid1', token: deviceToken() });
  assertInvalid(b, /transport.*apns, apns2/, 'no transport with two configured');
});

test('devices: tokens are normalised to lowercase; the fake sees the lowercase one; removing by the uppercase spelling works', async (t) => {
  const w = await apnsWorld(t);
  const d = await w.daemon();
  const lower = deviceToken();
  const upper = lower.toUpperCase();
  assert.notEqual(upper, lower);

  const a = await api(d.httpUrl, 'POST', '/v1/devices', { uid: 'uid1', transport: 'apns', token: upper });
  assert.equal(a.status, 200, JSON.stringify(a.body));
  assert.deepEqual(a.body, { uid: 'uid1', transport: 'apns', token: lower, added: true });
  assert.deepEqual(d.registry.index('apns').targets('uid1'), [lower]);

  const mixed = lower.slice(0, 32) + upper.slice(32);
  const again = await api(d.httpUrl, 'POST', '/v1/devices', { uid: 'uid1', transport: 'apns', token: mixed });
  assert.deepEqual(again.body, { uid: 'uid1', transport: 'apns', token: lower, added: false }, 'the same device in another spelling');

  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
  assert.equal(report.sent, 1);
  assert.deepEqual(seen(w), [lower]);

  const removed = await api(d.httpUrl, 'DELETE', '/v1/devices', { uid: 'uid1', transport: 'apns', token: upper });
  assert.equal(removed.status, 200, JSON.stringify(removed.body));
  assert.equal((removed.body as { removed?: unknown }).removed, true);
  assert.deepEqual(d.registry.index('apns').targets('uid1'), []);
});

test('devices: invalid registrations answer 400 NOTIFY_ERR_INVALID_DEVICE saying what is wrong, and register nothing', async (t) => {
  const w = await apnsWorld(t);
  const d = await w.daemon();
  const good = deviceToken();
  const cases: [string, unknown, RegExp][] = [
    ['not hex', { uid: 'uid1', transport: 'apns', token: `${'z'.repeat(2)}${good.slice(2)}` }, /"token": an APNs device token is hex.*\(64 characters\)/],
    ['too short', { uid: 'uid1', transport: 'apns', token: 'abcdef0123' }, /"token": an APNs device token is hex, 64 characters or more.*"abcdef0123" \(10 characters\)/],
    ['odd length', { uid: 'uid1', transport: 'apns', token: `${good}a` }, /"token": .*an even number.*\(65 characters\)/],
    ['empty token', { uid: 'uid1', transport: 'apns', token: '' }, /"token" must be a non-empty string/],
    ['token not a string', { uid: 'uid1', transport: 'apns', token: 42 }, /"token" must be a non-empty string/],
    ['unknown transport', { uid: 'uid1', transport: 'fcm', token: good }, /no transport named "fcm".*\(configured: apns\)/],
    ['websocket', { uid: 'uid1', transport: 'websocket', token: good }, /no transport named "websocket".*\(configured: apns\)/],
    ['extra field', { uid: 'uid1', transport: 'apns', token: good, platform: 'ios' }, /unknown field "platform"/],
    ['an array', [{ uid: 'uid1', transport: 'apns', token: good }], /expected a JSON object/],
    ['a string', '"uid1"', /expected a JSON object/],
    ['null', 'null', /expected a JSON object/],
  ];
  for (const [what, body, re] of cases) {
    assertInvalid(await api(d.httpUrl, 'POST', '/v1/devices', body), re, what);
  }
  assert.equal(d.registry.index('apns').targetCount, 0, 'nothing was registered');
  const list = await api(d.httpUrl, 'GET', '/v1/devices');
  assert.deepEqual(list.body, { devices: [] });
});

test('devices: a registration without a uid answers 400 NOTIFY_ERR_INVALID_DEVICE naming "uid"', async (t) => {
  const w = await apnsWorld(t);
  const d = await w.daemon();
  const token = deviceToken();
  assertInvalid(await api(d.httpUrl, 'POST', '/v1/devices', { transport: 'apns', token }), /"uid"/, 'missing uid');
  assertInvalid(await api(d.httpUrl, 'POST', '/v1/devices', { uid: '', transport: 'apns', token }), /"uid"/, 'empty uid');
  assertInvalid(await api(d.httpUrl, 'DELETE', '/v1/devices', { transport: 'apns', token }), /"uid"/, 'missing uid on DELETE');
  assert.equal(d.registry.index('apns').targetCount, 0);
});

// ---------------------------------------------------------------------------------------------
// persistence

test('devices: run-time registrations survive a restart and sends reach them', async (t) => {
  const w = await apnsWorld(t);
  const d = await w.daemon();
  const [t1, t2] = [deviceToken(), deviceToken()];
  for (const token of [t1, t2]) {
    const a = await api(d.httpUrl, 'POST', '/v1/devices', { uid: 'uid1', transport: 'apns', token });
    assert.equal(a.status, 200, JSON.stringify(a.body));
  }
  await d.stop();

  const d2 = await w.daemon();
  assert.deepEqual(d2.registry.index('apns').targets('uid1').sort(), [t1, t2].sort(), 'the new process loaded them');
  const report = await send(d2.httpUrl, { uid: 'uid1', msg: 'after restart' });
  assert.equal(report.sent, 2, JSON.stringify(report));
  assert.deepEqual(seen(w).sort(), [t1, t2].sort());
  const list = await api(d2.httpUrl, 'GET', '/v1/devices');
  assert.deepEqual(
    (list.body as { devices: { token: string; source: string }[] }).devices.map((e) => [e.token, e.source]).sort(),
    [[t1, 'api'], [t2, 'api']].sort(),
  );
});

// ---------------------------------------------------------------------------------------------
// DELETE /v1/devices

test('devices: DELETE /v1/devices with a JSON body or with query parameters removes the token; again is removed:false', async (t) => {
  const w = await apnsWorld(t);
  const d = await w.daemon();
  const [byBody, byQuery, kept] = [deviceToken(), deviceToken(), deviceToken()];
  for (const token of [byBody, byQuery, kept]) {
    assert.equal((await api(d.httpUrl, 'POST', '/v1/devices', { uid: 'uid1', transport: 'apns', token })).status, 200);
  }

  const a = await api(d.httpUrl, 'DELETE', '/v1/devices', { uid: 'uid1', transport: 'apns', token: byBody });
  assert.equal(a.status, 200, JSON.stringify(a.body));
  assert.deepEqual(a.body, { uid: 'uid1', transport: 'apns', token: byBody, removed: true });
  const again = await api(d.httpUrl, 'DELETE', '/v1/devices', { uid: 'uid1', transport: 'apns', token: byBody });
  assert.equal(again.status, 200, JSON.stringify(again.body));
  assert.deepEqual(again.body, { uid: 'uid1', transport: 'apns', token: byBody, removed: false });

  const q = new URLSearchParams({ uid: 'uid1', transport: 'apns', token: byQuery });
  const b = await api(d.httpUrl, 'DELETE', `/v1/devices?${q}`);
  assert.equal(b.status, 200, JSON.stringify(b.body));
  assert.deepEqual(b.body, { uid: 'uid1', transport: 'apns', token: byQuery, removed: true });
  const bAgain = await api(d.httpUrl, 'DELETE', `/v1/devices?${q}`);
  assert.deepEqual(bAgain.body, { uid: 'uid1', transport: 'apns', token: byQuery, removed: false });

  // A token registered to uid1 is not removed by a request naming another uid.
  const wrongUid = await api(d.httpUrl, 'DELETE', '/v1/devices', { uid: 'uid2', transport: 'apns', token: kept });
  assert.deepEqual(wrongUid.body, { uid: 'uid2', transport: 'apns', token: kept, removed: false });

  assert.deepEqual(d.registry.index('apns').targets('uid1'), [kept]);
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
  assert.deepEqual(report.results.map((e) => e.target), [kept]);
  assert.deepEqual(seen(w), [kept], 'removed tokens are not sent to');

  await d.stop();
  const d2 = await w.daemon();
  assert.deepEqual(d2.registry.index('apns').targets('uid1'), [kept], 'removals survive a restart');
});

test('devices: removing a YAML token keeps it removed after a restart; registering it again brings it back, also after a restart', async (t) => {
  const [yamlToken, other] = [deviceToken(), deviceToken()];
  const w = await apnsWorld(t, { devices: { uid1: [yamlToken, other] } });
  const d = await w.daemon();
  assert.deepEqual(d.registry.index('apns').targets('uid1').sort(), [yamlToken, other].sort());

  const a = await api(d.httpUrl, 'DELETE', '/v1/devices', { uid: 'uid1', transport: 'apns', token: yamlToken });
  assert.deepEqual(a.body, { uid: 'uid1', transport: 'apns', token: yamlToken, removed: true });
  assert.deepEqual(d.registry.index('apns').targets('uid1'), [other]);
  await send(d.httpUrl, { uid: 'uid1', msg: 'one' });
  assert.deepEqual(seen(w), [other]);
  await d.stop();

  // The YAML still lists it; the removal wins.
  const d2 = await w.daemon();
  assert.deepEqual(d2.registry.index('apns').targets('uid1'), [other], 'still removed after a restart');
  await send(d2.httpUrl, { uid: 'uid1', msg: 'two' });
  assert.equal(seen(w).filter((x) => x === yamlToken).length, 0);

  const b = await api(d2.httpUrl, 'POST', '/v1/devices', { uid: 'uid1', transport: 'apns', token: yamlToken });
  assert.deepEqual(b.body, { uid: 'uid1', transport: 'apns', token: yamlToken, added: true });
  await send(d2.httpUrl, { uid: 'uid1', msg: 'three' });
  assert.equal(seen(w).filter((x) => x === yamlToken).length, 1, 'back in service');
  await d2.stop();

  const d3 = await w.daemon();
  assert.deepEqual(d3.registry.index('apns').targets('uid1').sort(), [yamlToken, other].sort(), 'back after a restart too');
  await send(d3.httpUrl, { uid: 'uid1', msg: 'four' });
  assert.equal(seen(w).filter((x) => x === yamlToken).length, 2);
});

test('devices: a token retired by APNs (410) and registered again through the API is used again, also after a restart', async (t) => {
  const token = deviceToken();
  let gone = true;
  const w = await apnsWorld(t, {
    devices: { uid1: [token] },
    fake: { respond: (req) => (req.token === token && gone ? { status: 410, reason: 'Unregistered', timestamp: Date.now() } : undefined) },
  });
  const d = await w.daemon();
  const first = await send(d.httpUrl, { uid: 'uid1', msg: 'one' });
  assert.equal(first.results[0]?.status, 'rejected', JSON.stringify(first));
  assert.deepEqual(d.registry.index('apns').targets('uid1'), [], 'retired');
  assert.equal(d.devices.isRetired('apns', token), true);
  const second = await send(d.httpUrl, { uid: 'uid1', msg: 'two' });
  assert.deepEqual(second.unreached, ['uid1']);
  assert.equal(w.fake.requests.length, 1);

  // The app reinstalled and the device registered the token again.
  gone = false;
  const a = await api(d.httpUrl, 'POST', '/v1/devices', { uid: 'uid1', transport: 'apns', token });
  assert.deepEqual(a.body, { uid: 'uid1', transport: 'apns', token, added: true });
  assert.equal(d.devices.isRetired('apns', token), false);
  const third = await send(d.httpUrl, { uid: 'uid1', msg: 'three' });
  assert.equal(third.sent, 1, JSON.stringify(third));
  assert.equal(w.fake.requests.length, 2);
  await d.stop();

  const d2 = await w.daemon();
  assert.deepEqual(d2.registry.index('apns').targets('uid1'), [token], 'a restart does not retire it again');
  const fourth = await send(d2.httpUrl, { uid: 'uid1', msg: 'four' });
  assert.equal(fourth.sent, 1);
});

test('devices: registering a token under uid2 that uid1 had moves it (also a YAML one, also across a restart)', async (t) => {
  const [apiToken, yamlToken] = [deviceToken(), deviceToken()];
  const w = await apnsWorld(t, { devices: { uid1: [yamlToken] } });
  const d = await w.daemon();
  assert.equal((await api(d.httpUrl, 'POST', '/v1/devices', { uid: 'uid1', transport: 'apns', token: apiToken })).status, 200);
  assert.deepEqual(d.registry.index('apns').targets('uid1').sort(), [apiToken, yamlToken].sort());

  for (const token of [apiToken, yamlToken]) {
    const a = await api(d.httpUrl, 'POST', '/v1/devices', { uid: 'uid2', transport: 'apns', token });
    assert.deepEqual(a.body, { uid: 'uid2', transport: 'apns', token, added: true });
  }
  assert.deepEqual(d.registry.index('apns').targets('uid1'), []);
  assert.deepEqual(d.registry.index('apns').targets('uid2').sort(), [apiToken, yamlToken].sort());

  const toUid1 = await send(d.httpUrl, { uid: 'uid1', msg: 'old owner' });
  assert.deepEqual(toUid1.unreached, ['uid1']);
  assert.equal(w.fake.requests.length, 0);
  const toUid2 = await send(d.httpUrl, { uid: 'uid2', msg: 'new owner' });
  assert.equal(toUid2.sent, 2);

  // uid1 cannot remove what is now uid2's.
  const notYours = await api(d.httpUrl, 'DELETE', '/v1/devices', { uid: 'uid1', transport: 'apns', token: apiToken });
  assert.equal((notYours.body as { removed?: unknown }).removed, false);
  await d.stop();

  const d2 = await w.daemon();
  assert.deepEqual(d2.registry.index('apns').targets('uid1'), [], 'the move survives a restart (the YAML still lists uid1)');
  assert.deepEqual(d2.registry.index('apns').targets('uid2').sort(), [apiToken, yamlToken].sort());
});

// ---------------------------------------------------------------------------------------------
// GET /v1/devices

test('devices: GET /v1/devices lists uid, transport, token and source; ?uid= and ?transport= filter', async (t) => {
  const [y1, y2, y3] = [deviceToken(), deviceToken(), deviceToken()];
  const w = await apnsWorld(t, { devices: { uid1: [y1, y2], uid2: [y3] } });
  const transports = w.raw.transports as Record<string, Record<string, unknown>>;
  transports.apns2 = { ...transports.apns, type: 'apns', topic: 'com.example.other' };
  const d = await w.daemon();
  const [r1, r2] = [deviceToken(), deviceToken()];
  assert.equal((await api(d.httpUrl, 'POST', '/v1/devices', { uid: 'uid1', transport: 'apns', token: r1 })).status, 200);
  assert.equal((await api(d.httpUrl, 'POST', '/v1/devices', { uid: 'uid3', transport: 'apns2', token: r2 })).status, 200);

  type Entry = { uid: string; transport: string; token: string; source: string };
  const key = (e: Entry) => `${e.uid} ${e.transport} ${e.token} ${e.source}`;
  const list = async (query = ''): Promise<string[]> => {
    const a = await api(d.httpUrl, 'GET', `/v1/devices${query}`);
    assert.equal(a.status, 200, JSON.stringify(a.body));
    const body = a.body as { devices: Entry[] };
    assert.deepEqual(Object.keys(body), ['devices']);
    for (const e of body.devices) assert.deepEqual(Object.keys(e).sort(), ['source', 'token', 'transport', 'uid']);
    return body.devices.map(key).sort();
  };
  const E = (uid: string, transport: string, token: string, source: string) => key({ uid, transport, token, source });

  assert.deepEqual(
    await list(),
    [E('uid1', 'apns', y1, 'config'), E('uid1', 'apns', y2, 'config'), E('uid2', 'apns', y3, 'config'), E('uid1', 'apns', r1, 'api'), E('uid3', 'apns2', r2, 'api')].sort(),
  );
  assert.deepEqual(await list('?uid=uid1'), [E('uid1', 'apns', y1, 'config'), E('uid1', 'apns', y2, 'config'), E('uid1', 'apns', r1, 'api')].sort());
  assert.deepEqual(await list('?transport=apns2'), [E('uid3', 'apns2', r2, 'api')]);
  assert.deepEqual(await list('?uid=uid3&transport=apns'), []);
  assert.deepEqual(await list('?uid=uid3&transport=apns2'), [E('uid3', 'apns2', r2, 'api')]);
  assert.deepEqual(await list('?uid=nobody'), []);

  // A removed YAML token is no longer listed; a moved one is listed under its new uid, as registered.
  await api(d.httpUrl, 'DELETE', '/v1/devices', { uid: 'uid1', transport: 'apns', token: y1 });
  await api(d.httpUrl, 'POST', '/v1/devices', { uid: 'uid3', transport: 'apns', token: y3 });
  assert.deepEqual(await list('?transport=apns'), [E('uid1', 'apns', y2, 'config'), E('uid1', 'apns', r1, 'api'), E('uid3', 'apns', y3, 'api')].sort());
});

test('devices: with http.token set, /v1/devices needs the bearer token', async (t) => {
  const w = await apnsWorld(t);
  w.raw.http = { ...(w.raw.http as Record<string, unknown>), token: BEARER };
  const d = await w.daemon();
  const token = deviceToken();
  const body = { uid: 'uid1', transport: 'apns', token };
  const wrong = { authorization: `Bearer ${'w'.repeat(24)}` };
  for (const [method, b] of [['GET', undefined], ['POST', body], ['DELETE', body]] as const) {
    for (const headers of [{}, wrong]) {
      const a = await api(d.httpUrl, method, '/v1/devices', b, headers);
      assert.equal(a.status, 401, `${method} ${JSON.stringify(headers)}: ${JSON.stringify(a.body)}`);
      assert.equal((a.body as { code?: unknown }).code, 'NOTIFY_ERR_UNAUTHORIZED');
    }
  }
  assert.equal(d.registry.index('apns').targetCount, 0, 'the refused POST registered nothing');

  const auth = { authorization: `Bearer ${BEARER}` };
  const add = await api(d.httpUrl, 'POST', '/v1/devices', body, auth);
  assert.deepEqual(add.body, { ...body, added: true });
  const list = await api(d.httpUrl, 'GET', '/v1/devices', undefined, auth);
  assert.deepEqual(list.body, { devices: [{ uid: 'uid1', transport: 'apns', token, source: 'api' }] });
  const unauthorizedRemove = await api(d.httpUrl, 'DELETE', `/v1/devices?${new URLSearchParams(body)}`);
  assert.equal(unauthorizedRemove.status, 401);
  assert.deepEqual(d.registry.index('apns').targets('uid1'), [token], 'a refused DELETE removed nothing');
  const remove = await api(d.httpUrl, 'DELETE', '/v1/devices', body, auth);
  assert.deepEqual(remove.body, { ...body, removed: true });
});

// ---------------------------------------------------------------------------------------------
// YAML `devices`

/** A config with a valid token-auth APNs transport (a real key file in `dir`) and the given `devices` section. */
function yamlWithDevices(dir: string, devices: string): string {
  const key = makeApnsKey();
  writeFileSync(join(dir, 'AuthKey.p8'), key.pem);
  return [
    'transports:',
    '  apns:',
    '    topic: com.example.app',
    `    token: {key: ./AuthKey.p8, keyId: ${key.keyId}, teamId: ${key.teamId}}`,
    'devices:',
    devices,
  ].join('\n');
}

function configProblems(text: string, dir: string): readonly string[] {
  return configError(text, 'cfg.yaml', dir).problems;
}

test('devices config: a YAML device token that is not hex is an error naming devices.uid1.apns[0] at its line:column', (t) => {
  const dir = tempDir(t);
  const good = deviceToken();
  // line 6: "  uid1:", line 7: "    apns:", line 8: "      - nothex..."
  const text = yamlWithDevices(dir, `  uid1:\n    apns:\n      - ${'g'.repeat(64)}\n      - ${good}\n`);
  const problems = configProblems(text, dir);
  assert.equal(problems.length, 1, JSON.stringify(problems));
  const p = problems[0] as string;
  assert.match(p, /^cfg\.yaml:8:9: /, p);
  assert.ok(p.includes('devices.uid1.apns[0]'), p);
  assert.match(p, /an APNs device token is hex/);

  const short = configProblems(yamlWithDevices(dir, `  uid1:\n    apns: [${good}, abc123]\n`), dir);
  assert.equal(short.length, 1, JSON.stringify(short));
  assert.match(short[0] as string, /^cfg\.yaml:7:\d+: /);
  assert.ok((short[0] as string).includes('devices.uid1.apns[1]'), short[0]);
  assert.match(short[0] as string, /"abc123" \(6 characters\)/);

  // The good token alone parses.
  const cfg = parseConfig(yamlWithDevices(dir, `  uid1:\n    apns: [${good}]\n`), 'cfg.yaml', dir);
  assert.deepEqual(cfg.devices, { uid1: { apns: [good] } });
});

test('devices config: a problem line names its key once ("cfg.yaml:L:C: devices.uid1.apns[0]: ...")', (t) => {
  const dir = tempDir(t);
  const problems = configProblems(yamlWithDevices(dir, `  uid1:\n    apns:\n      - nothex\n`), dir);
  assert.equal(problems.length, 1, JSON.stringify(problems));
  assert.match(problems[0] as string, /^cfg\.yaml:8:9: devices\.uid1\.apns\[0\]: an APNs device token is hex/);
});

test('devices config: the same token under two uids is an error', (t) => {
  const dir = tempDir(t);
  const token = deviceToken();
  // line 6 "  uid1:", 7 "    apns: [...]", 8 "  uid2:", 9 "    apns: [..., token]"
  const problems = configProblems(yamlWithDevices(dir, `  uid1:\n    apns: [${token}]\n  uid2:\n    apns: [${deviceToken()}, ${token}]\n`), dir);
  assert.equal(problems.length, 1, JSON.stringify(problems));
  const p = problems[0] as string;
  assert.match(p, /^cfg\.yaml:9:\d+: /, p);
  assert.ok(p.includes('devices.uid2.apns[1]'), p);
  assert.match(p, /also listed under devices\.uid1\.apns; a device belongs to one uid/);

  // Listed twice under the same uid is not an error (one device, one uid).
  const same = parseConfig(yamlWithDevices(dir, `  uid1:\n    apns: [${token}, ${token}]\n`), 'cfg.yaml', dir);
  assert.deepEqual(same.devices.uid1?.apns, [token, token]);
});

test('devices config: the same token spelled in upper and lower case under two uids is an error (tokens are case-insensitive)', (t) => {
  const dir = tempDir(t);
  const token = deviceToken();
  const problems = configProblems(yamlWithDevices(dir, `  uid1:\n    apns: [${token}]\n  uid2:\n    apns: [${token.toUpperCase()}]\n`), dir);
  assert.equal(problems.length, 1, JSON.stringify(problems));
  assert.match(problems[0] as string, /^cfg\.yaml:9:\d+: .*devices\.uid2\.apns\[0\].*also listed under devices\.uid1\.apns/);
});
