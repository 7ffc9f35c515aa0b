import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DeliveryReport, ReportEntry } from '../../../src/types.js';
import type { FakeWebPush, TestSubscription } from '../../helpers/fake-webpush.js';
import { webpushWorld } from '../../helpers/webpush.js';
import { shortToken } from '../../../src/obs/log.js';

async function send(httpUrl: string, body: Record<string, unknown>): Promise<DeliveryReport> {
  const res = await fetch(`${httpUrl}/v1/send`, { method: 'POST', body: JSON.stringify(body) });
  assert.equal(res.status, 200, await res.clone().text());
  return (await res.json()) as DeliveryReport;
}

const entries = (r: DeliveryReport): ReportEntry[] => r.results.filter((e) => e.transport === 'webpush');
const to = (fake: FakeWebPush, s: TestSubscription) => fake.requests.filter((r) => r.id === s.id);

test('webpush: a message reaches every subscription of the uid, encrypted (aes128gcm) and VAPID-signed; the fake decrypted the exact payload', async (t) => {
  let subs: TestSubscription[] = [];
  const w = await webpushWorld(t, {
    devices: (fake) => {
      subs = [fake.subscribe(), fake.subscribe()];
      return { uid1: subs.map((s) => s.subscription) };
    },
  });
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', title: 'Export', msg: 'done', badge: 2, data: { file: 'a.csv', url: 'https://example.com/x' } });
  assert.equal(report.delivered, true);
  const es = entries(report);
  assert.deepEqual(es.map((e) => e.target).sort(), subs.map((s) => s.target).sort());
  for (const e of es) {
    assert.equal(e.status, 'sent');
    assert.match(e.id ?? '', new RegExp(`^${w.fake.origin}/m/`), 'the report carries the Location the push service answered');
  }
  assert.equal(w.fake.requests.length, 2);
  assert.deepEqual(w.fake.refused, []);
  const id = (report as DeliveryReport & { id: string }).id;
  for (const r of w.fake.requests) {
    assert.deepEqual(JSON.parse(r.plaintext), { id, title: 'Export', body: 'done', badge: 2, data: { file: 'a.csv', url: 'https://example.com/x' } });
    assert.equal(r.ttl, 86_400, 'TTL defaults to 24h');
    assert.equal(r.urgency, 'normal');
    assert.equal(r.jwt.claims.aud, w.fake.origin);
    assert.equal(r.jwt.claims.sub, 'mailto:ops@example.com');
  }
});

test('webpush: ttl and urgency settings become the TTL and Urgency headers; a shorter message ttl wins', async (t) => {
  let sub: TestSubscription | undefined;
  const w = await webpushWorld(t, {
    devices: (fake) => ({ uid1: [(sub = fake.subscribe()).subscription] }),
    webpush: { ttl: '1h', urgency: 'high' },
  });
  const d = await w.daemon();
  await send(d.httpUrl, { uid: 'uid1', msg: 'one' });
  await send(d.httpUrl, { uid: 'uid1', msg: 'two', ttl: '90s' });
  const [a, b] = w.fake.requests;
  assert.equal(a?.ttl, 3600);
  assert.equal(a?.urgency, 'high');
  assert.equal(b?.ttl, 90);
  assert.ok(sub);
});

test('webpush: the original data-only line is pushed as its data (the service worker shows it)', async (t) => {
  const w = await webpushWorld(t, { devices: (fake) => ({ uid1: [fake.subscribe().subscription] }) });
  const d = await w.daemon();
  const { textClient } = await import('../../helpers/clients.js');
  const backend = await textClient(t, d.textPort);
  backend.write('{"uid":"uid1","percent":"88%"}\n');
  assert.deepEqual(await backend.replies(1), ['ok']);
  const payload = JSON.parse(w.fake.requests[0]?.plaintext ?? '{}') as Record<string, unknown>;
  assert.deepEqual(payload.data, { percent: '88%' });
  assert.equal(payload.title, undefined);
});

test('webpush: a payload too large for one 4096-byte record is rejected before anything is sent', async (t) => {
  const w = await webpushWorld(t, { devices: (fake) => ({ uid1: [fake.subscribe().subscription] }) });
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'x'.repeat(4000) });
  assert.equal(entries(report)[0]?.status, 'rejected');
  assert.match(entries(report)[0]?.reason ?? '', /^PayloadTooLarge: the Web Push payload would be \d+ bytes; at most 3993/);
  assert.equal(w.fake.requests.length, 0);
});

for (const status of [404, 410] as const) {
  test(`webpush: ${status} retires the subscription: not retried, never tried again, also not by the next process; logged once`, async (t) => {
    let dead: TestSubscription | undefined;
    let live: TestSubscription | undefined;
    const w = await webpushWorld(t, {
      devices: (fake) => {
        dead = fake.subscribe();
        live = fake.subscribe();
        return { uid1: [dead.subscription, live.subscription] };
      },
      respond: (req) => (req.id === dead?.id ? { status, body: 'push subscription has unsubscribed or expired' } : undefined),
    });
    assert.ok(dead && live);
    const d1 = await w.daemon();
    const first = await send(d1.httpUrl, { uid: 'uid1', msg: 'one' });
    const deadEntry = entries(first).find((e) => e.target === dead?.target);
    assert.equal(deadEntry?.status, 'rejected');
    assert.match(deadEntry?.reason ?? '', new RegExp(`^${status} (Not Found|Gone): the subscription expired or was unsubscribed`));
    assert.equal(entries(first).find((e) => e.target === live?.target)?.status, 'sent');
    assert.equal(to(w.fake, dead).length, 1, 'tried once, not retried');
    assert.deepEqual(d1.registry.index('webpush').targets('uid1'), [live.target]);

    await send(d1.httpUrl, { uid: 'uid1', msg: 'two' });
    assert.equal(to(w.fake, dead).length, 1, 'not tried by the same process');
    const retired = d1.logs.filter((l) => l.msg === 'device token retired; it will not be used again');
    assert.equal(retired.length, 1, 'the retirement is logged once');
    assert.equal(retired[0]?.target, shortToken(dead.target));
    await d1.stop();

    // A new process on the same state directory and the same YAML (which still lists it).
    const d2 = await w.daemon();
    assert.deepEqual(d2.registry.index('webpush').targets('uid1'), [live.target]);
    await send(d2.httpUrl, { uid: 'uid1', msg: 'three' });
    assert.equal(to(w.fake, dead).length, 1, 'not tried by the next process either');
    assert.equal(to(w.fake, live).length, 3);
  });
}

test('webpush: 429 with Retry-After is retried no sooner than asked, then delivered', async (t) => {
  const w = await webpushWorld(t, {
    devices: (fake) => ({ uid1: [fake.subscribe().subscription] }),
    respond: (req) => (req.attempt === 1 ? { status: 429, headers: { 'retry-after': '1' }, body: 'slow down' } : undefined),
  });
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
  assert.equal(entries(report)[0]?.status, 'sent');
  const [a, b] = w.fake.requests;
  assert.equal(w.fake.requests.length, 2);
  assert.ok((b?.receivedAt ?? 0) - (a?.receivedAt ?? 0) >= 950, `retried after ${(b?.receivedAt ?? 0) - (a?.receivedAt ?? 0)} ms`);
  assert.equal(a?.plaintext, b?.plaintext);
});

test('webpush: a 429 from one push service holds back only that service; subscriptions on other services are sent at once', async (t) => {
  // Service A asks for 30 s of quiet; service B is fine.
  const w = await webpushWorld(t, {
    respond: () => ({ status: 429, headers: { 'retry-after': '30' }, body: 'slow down' }),
    webpush: { retry: { limit: 3, baseDelayMs: 20, maxDelayMs: 60_000 } },
  });
  const { startFakeWebPush } = await import('../../helpers/fake-webpush.js');
  const other = await startFakeWebPush({ vapidPublicKey: w.vapid.publicKey });
  t.after(() => other.close());
  const { writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  writeFileSync(join(w.dir, 'fake-ca.pem'), `${w.fake.ca}\n${other.ca}`);
  const onA = w.fake.subscribe();
  const onB = other.subscribe();
  w.raw.devices = { uid1: { webpush: [onA.subscription] }, uid2: { webpush: [onB.subscription] } };
  const d = await w.daemon();

  const first = send(d.httpUrl, { uid: 'uid1', msg: 'to A' });
  for (const deadline = Date.now() + 30_000; w.fake.requests.length === 0; ) {
    if (Date.now() > deadline) assert.fail('service A was never asked');
    await new Promise((r) => setTimeout(r, 20));
  }
  const report = await send(d.httpUrl, { uid: 'uid2', msg: 'to B' });
  assert.equal(entries(report)[0]?.status, 'sent', JSON.stringify(report));
  assert.equal(to(other, onB).length, 1);
  assert.equal(w.fake.requests.length, 1, 'service A is still paused (no retry yet) when B has been served');
  const firstReport = await first;
  assert.match(entries(firstReport)[0]?.reason ?? '', /still trying/, 'A\'s subscription waits for its service, not failed for good');
});

test('webpush: a Retry-After longer than retry.maxDelayMs fails the subscription with the reason, without retiring it', async (t) => {
  let sub: TestSubscription | undefined;
  const w = await webpushWorld(t, {
    devices: (fake) => ({ uid1: [(sub = fake.subscribe()).subscription] }),
    respond: () => ({ status: 429, headers: { 'retry-after': '60' } }),
  });
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
  assert.equal(entries(report)[0]?.status, 'failed');
  assert.match(entries(report)[0]?.reason ?? '', /^HTTP 429; the provider asked to retry after 60 s, longer than retry.maxDelayMs/);
  assert.deepEqual(d.registry.index('webpush').targets('uid1'), [sub?.target]);
});

for (const status of [500, 503] as const) {
  test(`webpush: ${status} is retried with backoff, then delivered`, async (t) => {
    const w = await webpushWorld(t, {
      devices: (fake) => ({ uid1: [fake.subscribe().subscription] }),
      webpush: { retry: { limit: 3, baseDelayMs: 100, maxDelayMs: 5000 } },
      respond: (req) => (req.attempt <= 2 ? { status, body: 'try later' } : undefined),
    });
    const d = await w.daemon();
    const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
    assert.equal(entries(report)[0]?.status, 'sent');
    const times = w.fake.requests.map((r) => r.receivedAt);
    assert.equal(times.length, 3);
    // Equal jitter: the first backoff is 50-100 ms, the second 100-200 ms.
    assert.ok((times[1] ?? 0) - (times[0] ?? 0) >= 45);
    assert.ok((times[2] ?? 0) - (times[1] ?? 0) >= 95);
  });
}

test('webpush: 500 every time gives up after retry.limit retries: failed, not retired', async (t) => {
  let sub: TestSubscription | undefined;
  const w = await webpushWorld(t, {
    devices: (fake) => ({ uid1: [(sub = fake.subscribe()).subscription] }),
    webpush: { retry: { limit: 2, baseDelayMs: 10, maxDelayMs: 100 } },
    respond: () => ({ status: 500 }),
  });
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
  assert.equal(entries(report)[0]?.status, 'failed');
  assert.match(entries(report)[0]?.reason ?? '', /^HTTP 500 \(gave up after 3 attempts\)$/);
  assert.equal(w.fake.requests.length, 3);
  assert.deepEqual(d.registry.index('webpush').targets('uid1'), [sub?.target]);
});

for (const [status, name] of [
  [413, 'Payload Too Large'],
  [400, 'Bad Request'],
] as const) {
  test(`webpush: ${status} is reported, not retried, and the subscription stays`, async (t) => {
    let sub: TestSubscription | undefined;
    const w = await webpushWorld(t, {
      devices: (fake) => ({ uid1: [(sub = fake.subscribe()).subscription] }),
      respond: () => ({ status, body: 'refused by the push service' }),
    });
    const d = await w.daemon();
    const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
    assert.equal(entries(report)[0]?.status, 'rejected');
    assert.equal(entries(report)[0]?.reason, `${status} ${name}: refused by the push service`);
    assert.equal(w.fake.requests.length, 1);
    await send(d.httpUrl, { uid: 'uid1', msg: 'again' });
    assert.equal(w.fake.requests.length, 2, 'still in service');
    assert.deepEqual(d.registry.index('webpush').targets('uid1'), [sub?.target]);
  });
}

test('webpush: a push service that refuses our VAPID key (403) is a configuration error: reported, nothing retired', async (t) => {
  let sub: TestSubscription | undefined;
  const w = await webpushWorld(t, { devices: (fake) => ({ uid1: [(sub = fake.subscribe()).subscription] }) });
  // notify signs with another key pair than the one the browser subscribed with.
  const { generateVapidKeys } = await import('../../../src/push/webpush/vapid.js');
  const other = generateVapidKeys();
  (w.raw.transports as { webpush: Record<string, unknown> }).webpush.vapid = { subject: 'mailto:ops@example.com', ...other };
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
  assert.equal(entries(report)[0]?.status, 'rejected');
  assert.match(entries(report)[0]?.reason ?? '', /^403: the push service refused the VAPID signature; check vapid.publicKey\/privateKey/);
  assert.equal(w.fake.refused.length, 1);
  assert.equal(w.fake.refused[0]?.why, 'k is not the expected VAPID public key');
  assert.deepEqual(d.registry.index('webpush').targets('uid1'), [sub?.target]);
});

test('webpush: a push service whose certificate is not trusted (no ca) is a failed delivery naming the TLS error', async (t) => {
  const w = await webpushWorld(t, {
    devices: (fake) => ({ uid1: [fake.subscribe().subscription] }),
    webpush: { retry: { limit: 0, baseDelayMs: 10, maxDelayMs: 100 } },
  });
  delete (w.raw.transports as { webpush: Record<string, unknown> }).webpush.ca;
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
  assert.equal(entries(report)[0]?.status, 'failed');
  assert.match(entries(report)[0]?.reason ?? '', /^request failed: (DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE)/);
  assert.equal(w.fake.requests.length, 0);
});

test('webpush: the VAPID private key never shows: not in logs, /healthz, reports (even when a push service echoes it) or config check --print', async (t) => {
  let privateKey = '';
  const w = await webpushWorld(t, {
    devices: (fake) => ({ uid1: [fake.subscribe().subscription] }),
    respond: () => ({ status: 400, body: `bad request, your key is ${privateKey}` }),
  });
  privateKey = w.vapid.privateKey;
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
  const text = JSON.stringify(report);
  assert.ok(!text.includes(privateKey), 'not in the report');
  assert.match(entries(report)[0]?.reason ?? '', /your key is \[redacted\]/);
  const health = await (await fetch(`${d.httpUrl}/healthz`)).text();
  assert.ok(!health.includes(privateKey), 'not in /healthz');
  assert.match(health, /"webpush":\{"state":"running"/);
  await d.stop();
  assert.ok(d.logText.length > 0);
  assert.ok(!d.logText.some((l) => l.includes(privateKey)), 'not in any log line');

  const { writeFileSync } = await import('node:fs');
  const { join } = await import('node:path');
  const { stringify } = await import('yaml');
  const { cli } = await import('../../helpers/cli.js');
  const file = join(w.dir, 'notify.yaml');
  writeFileSync(file, stringify(w.raw));
  const r = await cli(['config', 'check', '--config', file, '--print']);
  assert.equal(r.code, 0, r.err);
  assert.ok(!r.out.includes(privateKey), 'not in config check --print');
  assert.match(r.out, /privateKey: "?\[redacted\]"?/);
  assert.ok(r.out.includes(w.vapid.publicKey), 'the public key is shown');
});
