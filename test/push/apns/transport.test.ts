import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DeliveryReport, ReportEntry } from '../../../src/types.js';
import { apnsWorld, deviceToken } from '../../helpers/apns.js';
import { HANG_MS, until, within, wsClient } from '../../helpers/clients.js';
import { shortToken } from '../../../src/obs/log.js';

async function send(httpUrl: string, body: Record<string, unknown>): Promise<DeliveryReport> {
  const res = await fetch(`${httpUrl}/v1/send`, { method: 'POST', body: JSON.stringify(body) });
  assert.equal(res.status, 200, await res.clone().text());
  return (await res.json()) as DeliveryReport;
}

const apnsEntries = (r: DeliveryReport): ReportEntry[] => r.results.filter((e) => e.transport === 'apns');

test('apns: an alert reaches every device token of the uid, each with its apns-id; the fake checked JWT, path and headers', async (t) => {
  const tokens = [deviceToken(), deviceToken()];
  const w = await apnsWorld(t, { devices: { uid1: tokens } });
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', title: 'Export', msg: 'done', badge: 2, sound: 'default', data: { file: 'a.csv' } });
  assert.equal(report.delivered, true);
  const entries = apnsEntries(report);
  assert.deepEqual(entries.map((e) => e.target).sort(), [...tokens].sort());
  const answered = new Map(w.fake.answers.map((a) => [a.token, a.apnsId]));
  for (const e of entries) {
    assert.equal(e.status, 'sent');
    assert.ok(e.id && e.id === answered.get(e.target), 'the report carries the apns-id APNs answered');
  }
  assert.equal(w.fake.requests.length, 2);
  for (const r of w.fake.requests) {
    assert.equal(r.path, `/3/device/${r.token}`);
    assert.equal(r.headers['apns-topic'], 'com.example.app');
    assert.equal(r.headers['apns-push-type'], 'alert');
    assert.equal(r.headers['apns-priority'], '10');
    assert.equal(r.jwt?.header.kid, w.key.keyId);
    assert.equal(r.jwt?.claims.iss, w.key.teamId);
    assert.ok(Math.abs(Number(r.jwt?.claims.iat) - Date.now() / 1000) < 120, 'iat is now');
    assert.deepEqual(r.payload, { aps: { alert: { title: 'Export', body: 'done' }, badge: 2, sound: 'default' }, file: 'a.csv' });
  }
});

test('apns: the original data-only line is a background push (content-available, push type background, priority 5)', async (t) => {
  const w = await apnsWorld(t, { devices: { uid1: [deviceToken()] } });
  const d = await w.daemon();
  const { textClient } = await import('../../helpers/clients.js');
  const backend = await textClient(t, d.textPort);
  backend.write('{"uid":"uid1","percent":"88%"}\n');
  assert.deepEqual(await backend.replies(1), ['ok']);
  const [r] = w.fake.requests;
  assert.equal(r?.headers['apns-push-type'], 'background');
  assert.equal(r?.headers['apns-priority'], '5');
  assert.deepEqual(r?.payload, { aps: { 'content-available': 1 }, percent: '88%' });
});

test('apns: a payload over 4 KB is rejected before anything is sent', async (t) => {
  const w = await apnsWorld(t, { devices: { uid1: [deviceToken()] } });
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'x'.repeat(5000) });
  assert.equal(report.delivered, false);
  assert.equal(apnsEntries(report)[0]?.status, 'rejected');
  assert.match(apnsEntries(report)[0]?.reason ?? '', /^PayloadTooLarge: the APNs payload would be \d+ bytes; APNs takes at most 4096$/);
  assert.equal(w.fake.requests.length, 0);
});

for (const [status, reason] of [
  [400, 'BadDeviceToken'],
  [400, 'DeviceTokenNotForTopic'],
  [410, 'Unregistered'],
] as const) {
  test(`apns: ${status} ${reason} retires the token: never tried again, also not by the next process; logged once`, async (t) => {
    const dead = deviceToken();
    const live = deviceToken();
    const w = await apnsWorld(t, {
      devices: { uid1: [dead, live] },
      fake: { respond: (req) => (req.token === dead ? { status, reason, ...(status === 410 ? { timestamp: 1700000000000 } : {}) } : undefined) },
    });
    const d1 = await w.daemon();
    const first = await send(d1.httpUrl, { uid: 'uid1', msg: 'one' });
    const deadEntry = apnsEntries(first).find((e) => e.target === dead);
    assert.equal(deadEntry?.status, 'rejected');
    assert.match(deadEntry?.reason ?? '', new RegExp(`^${status} ${reason}`));
    if (status === 410) assert.match(deadEntry?.reason ?? '', /since 2023-11-14T22:13:20.000Z/);
    assert.equal(w.fake.requests.filter((r) => r.token === dead).length, 1, 'tried once, not retried');
    assert.deepEqual(d1.registry.index('apns').targets('uid1'), [live]);

    await send(d1.httpUrl, { uid: 'uid1', msg: 'two' });
    assert.equal(w.fake.requests.filter((r) => r.token === dead).length, 1, 'not tried by the same process');
    const retiredLogs = d1.logs.filter((l) => l.msg === 'device token retired; it will not be used again');
    assert.equal(retiredLogs.length, 1, 'the removal is logged once');
    // Shortened in the log (enough to tell tokens apart), with the message that found it dead.
    assert.equal(retiredLogs[0]?.target, shortToken(dead));
    assert.equal(retiredLogs[0]?.id, (first as DeliveryReport & { id: string }).id);
    await d1.stop();

    // A new process on the same state directory and the same YAML (which still lists the token).
    const d2 = await w.daemon();
    assert.deepEqual(d2.registry.index('apns').targets('uid1'), [live]);
    await send(d2.httpUrl, { uid: 'uid1', msg: 'three' });
    assert.equal(w.fake.requests.filter((r) => r.token === dead).length, 1, 'not tried by the next process either');
    assert.equal(d2.logs.filter((l) => l.msg === 'device token retired; it will not be used again').length, 0);
  });
}

test('apns: 429 with Retry-After is retried no sooner than asked, then delivered', async (t) => {
  const token = deviceToken();
  const w = await apnsWorld(t, {
    devices: { uid1: [token] },
    fake: { respond: (req) => (req.attempt === 1 ? { status: 429, reason: 'TooManyRequests', headers: { 'retry-after': '1' } } : undefined) },
  });
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
  assert.equal(apnsEntries(report)[0]?.status, 'sent');
  const [a, b] = w.fake.requests;
  assert.equal(w.fake.requests.length, 2);
  assert.ok((b?.receivedAt ?? 0) - (a?.receivedAt ?? 0) >= 950, `retried after ${(b?.receivedAt ?? 0) - (a?.receivedAt ?? 0)} ms`);
});

test('apns: a Retry-After longer than retry.maxDelayMs is not cut short: the token fails with the reason', async (t) => {
  const w = await apnsWorld(t, {
    devices: { uid1: [deviceToken()] },
    fake: { respond: () => ({ status: 429, reason: 'TooManyRequests', headers: { 'retry-after': '60' } }) },
  });
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
  assert.equal(apnsEntries(report)[0]?.status, 'failed');
  assert.match(apnsEntries(report)[0]?.reason ?? '', /429 TooManyRequests; APNs asked to retry after 60 s/);
  assert.equal(w.fake.requests.length, 1);
});

for (const status of [500, 503] as const) {
  test(`apns: ${status} is retried with exponential backoff, then delivered`, async (t) => {
    const token = deviceToken();
    const w = await apnsWorld(t, {
      devices: { uid1: [token] },
      apns: { retry: { limit: 3, baseDelayMs: 100, maxDelayMs: 5000 } },
      fake: { respond: (req) => (req.attempt <= 2 ? { status, reason: status === 500 ? 'InternalServerError' : 'ServiceUnavailable' } : undefined) },
    });
    const d = await w.daemon();
    const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
    assert.equal(apnsEntries(report)[0]?.status, 'sent');
    const times = w.fake.requests.map((r) => r.receivedAt);
    assert.equal(times.length, 3);
    const gap1 = (times[1] ?? 0) - (times[0] ?? 0);
    const gap2 = (times[2] ?? 0) - (times[1] ?? 0);
    assert.ok(gap1 >= 50, `first backoff ${gap1} ms (50-100 with jitter)`);
    assert.ok(gap2 >= 100, `second backoff ${gap2} ms (100-200 with jitter)`);
  });
}

test('apns: retries are bounded: a token that keeps failing 503 is reported failed after limit + 1 attempts', async (t) => {
  const w = await apnsWorld(t, {
    devices: { uid1: [deviceToken()] },
    apns: { retry: { limit: 2, baseDelayMs: 10, maxDelayMs: 100 } },
    fake: { respond: () => ({ status: 503, reason: 'ServiceUnavailable' }) },
  });
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
  assert.deepEqual(
    apnsEntries(report).map((e) => [e.status, e.reason]),
    [['failed', '503 ServiceUnavailable (gave up after 3 attempts)']],
  );
  assert.equal(w.fake.requests.length, 3);
  assert.equal(report.delivered, false);
});

test('apns: a stream reset with no status is retried and delivered', async (t) => {
  const w = await apnsWorld(t, {
    devices: { uid1: [deviceToken()] },
    fake: { respond: (req) => (req.attempt === 1 ? { reset: true } : undefined) },
  });
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
  assert.equal(apnsEntries(report)[0]?.status, 'sent');
  assert.equal(w.fake.requests.length, 2);
});

test('apns: GOAWAY in the middle of a burst: every token is still delivered, on a new connection', async (t) => {
  const tokens = Array.from({ length: 200 }, deviceToken);
  let seen = 0;
  const w = await apnsWorld(t, {
    devices: { uid1: tokens },
    fake: { respond: (req) => (req.connection === 1 && ++seen === 50 ? { goaway: true, reason: 'Shutdown' } : undefined) },
  });
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'burst' });
  assert.equal(report.sent, 200, JSON.stringify(apnsEntries(report).filter((e) => e.status !== 'sent').slice(0, 3)));
  assert.ok(w.fake.connections() >= 2, 'reconnected');
  assert.equal(new Set(w.fake.answers.filter((a) => a.status === 200).map((a) => a.token)).size, 200);
});

test('apns: ExpiredProviderToken gets a fresh JWT and one retry', async (t) => {
  const w = await apnsWorld(t, {
    devices: { uid1: [deviceToken()] },
    fake: { respond: (req) => (req.attempt === 1 ? { status: 403, reason: 'ExpiredProviderToken' } : undefined) },
  });
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
  assert.equal(apnsEntries(report)[0]?.status, 'sent');
  const [a, b] = w.fake.requests;
  assert.ok(a?.jwt && b?.jwt);
  assert.notEqual(a.jwt.raw, b.jwt.raw, 'the retry carries a new JWT');

  // Expired again with the fresh one: no endless loop; one retry only.
  const w2 = await apnsWorld(t, {
    devices: { uid1: [deviceToken()] },
    fake: { respond: () => ({ status: 403, reason: 'ExpiredProviderToken' }) },
  });
  const d2 = await w2.daemon();
  const report2 = await send(d2.httpUrl, { uid: 'uid1', msg: 'hi' });
  assert.equal(apnsEntries(report2)[0]?.status, 'failed');
  assert.match(apnsEntries(report2)[0]?.reason ?? '', /403 ExpiredProviderToken \(again with a fresh provider token/);
  assert.equal(w2.fake.requests.length, 2);
});

test('apns: a connection that allows one stream at first gets one request, then the rest, with no refused streams', async (t) => {
  const tokens = Array.from({ length: 100 }, deviceToken);
  const w = await apnsWorld(t, { devices: { uid1: tokens }, fake: { initialMaxConcurrentStreams: 1, maxConcurrentStreams: 1000, latencyMs: 5 } });
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
  assert.equal(report.sent, 100);
  assert.equal(w.fake.refusedStreams, 0);
  assert.equal(w.fake.requests.length, 100, 'no request had to be resent');
  const firstAnswered = w.fake.requests[0]?.receivedAt ?? 0;
  assert.ok((w.fake.requests[1]?.receivedAt ?? 0) >= firstAnswered, 'the second request came after the first');
});

test('apns: in-flight requests stay within maxConcurrentStreams', async (t) => {
  let inflight = 0;
  let peak = 0;
  const w = await apnsWorld(t, {
    devices: { uid1: Array.from({ length: 60 }, deviceToken) },
    apns: { maxConcurrentStreams: 8 },
    fake: {
      respond: async () => {
        peak = Math.max(peak, ++inflight);
        await new Promise((r) => setTimeout(r, 10));
        inflight--;
        return undefined;
      },
    },
  });
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
  assert.equal(report.sent, 60);
  assert.ok(peak <= 8, `peak ${peak}`);
  assert.ok(peak >= 2, `requests do run concurrently (peak ${peak})`);
});

test('apns: to an APNs that answers from a queue, the requests in flight stay few (the stream window), and every token is delivered', async (t) => {
  let inflight = 0;
  let peak = 0;
  let queue = Promise.resolve();
  const w = await apnsWorld(t, {
    devices: { uid1: Array.from({ length: 1500 }, deviceToken) },
    dispatch: { deliverTimeoutMs: 120_000 },
    apns: { maxConcurrentStreams: 500 },
    fake: {
      initialMaxConcurrentStreams: 1,
      maxConcurrentStreams: 1000,
      // One request at a time, 1 ms each: a server whose latency is its queue.
      respond: async () => {
        peak = Math.max(peak, ++inflight);
        const mine = queue.then(() => new Promise<void>((r) => setTimeout(r, 1)));
        queue = mine;
        await mine;
        inflight--;
        return undefined;
      },
    },
  });
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'hi' });
  assert.equal(report.sent, 1500);
  assert.equal(w.fake.refusedStreams, 0);
  // All 500 would be in flight without the window; it settles far below (about 16-40 here).
  assert.ok(peak < 250, `peak ${peak} in flight`);
  assert.ok(peak >= 8, `requests do run concurrently (peak ${peak})`);
});

test('apns: 5,000 tokens for one message: every one delivered, none refused for want of streams', async (t) => {
  const tokens = Array.from({ length: 5000 }, deviceToken);
  const w = await apnsWorld(t, {
    devices: { uid1: tokens },
    dispatch: { deliverTimeoutMs: 60_000 },
    fake: { initialMaxConcurrentStreams: 1, maxConcurrentStreams: 100 },
  });
  const d = await w.daemon();
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'everyone' });
  assert.equal(report.sent, 5000, JSON.stringify(apnsEntries(report).filter((e) => e.status !== 'sent').slice(0, 3)));
  assert.equal(report.failed + report.rejected, 0);
  assert.equal(w.fake.refusedStreams, 0);
  assert.equal(w.fake.requests.length, 5000);
});

test('apns: one message reaches the uid\'s live sessions and its devices in one report', async (t) => {
  const token = deviceToken();
  const w = await apnsWorld(t, { devices: { uid1: [token] } });
  const d = await w.daemon();
  const page = await wsClient(t, d.wsUrl, { bind: 'uid1' });
  await until(() => d.registry.index('websocket').has('uid1'), 'uid1 to bind');
  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'both' });
  assert.deepEqual(report.results.map((e) => `${e.transport}:${e.status}`).sort(), ['apns:sent', 'websocket:sent']);
  assert.equal(await page.frame(1), 'both');
});

test('apns: a provider that never answers costs its uid a timeout entry; the daemon keeps serving', async (t) => {
  const w = await apnsWorld(t, {
    devices: { uid1: [deviceToken()] },
    dispatch: { deliverTimeoutMs: 500 },
    apns: { requestTimeoutMs: 5000 },
    fake: { respond: () => ({ hang: true }) },
  });
  const d = await w.daemon();
  const page = await wsClient(t, d.wsUrl, { bind: 'uid2' });
  await until(() => d.registry.index('websocket').has('uid2'), 'uid2 to bind');
  const [hung, live] = await within(Promise.all([send(d.httpUrl, { uid: 'uid1', msg: 'x' }), send(d.httpUrl, { uid: 'uid2', msg: 'y' })]), HANG_MS, 'both reports');
  assert.equal(hung.delivered, false);
  assert.match(apnsEntries(hung)[0]?.reason ?? '', /deadline|timeout/);
  assert.equal(live.delivered, true);
  assert.equal(await page.frame(1), 'y');
});

test('apns: maxQueued bounds the request queue: with an APNs that does not answer, the extra tokens fail at once with "queue full", and the daemon keeps serving', async (t) => {
  const tokens = Array.from({ length: 6 }, deviceToken);
  const w = await apnsWorld(t, {
    devices: { uid1: tokens },
    dispatch: { deliverTimeoutMs: 800 },
    apns: { maxQueued: 2, requestTimeoutMs: 10_000 },
    fake: { respond: () => ({ hang: true }) },
  });
  const d = await w.daemon();
  const page = await wsClient(t, d.wsUrl, { bind: 'uid2' });
  await until(() => d.registry.index('websocket').has('uid2'), 'uid2 to bind');

  const report = await send(d.httpUrl, { uid: 'uid1', msg: 'x' });
  const entries = apnsEntries(report);
  assert.equal(entries.length, 6);
  // A fresh connection takes one request at a time: one in flight, two waiting, three refused.
  const full = entries.filter((e) => e.reason === 'queue full (2 waiting; transports.apns.maxQueued)');
  assert.equal(full.length, 3, JSON.stringify(entries));
  for (const e of full) assert.equal(e.status, 'failed');
  assert.equal(entries.filter((e) => /^not delivered by the deadline; still trying/.test(e.reason ?? '')).length, 3);
  assert.equal(w.fake.requests.length, 1);
  const health = (await (await fetch(`${d.httpUrl}/healthz`)).json()) as { transports: Record<string, { queued: number }> };
  assert.equal(health.transports.apns?.queued, 2, 'no more than maxQueued kept');

  const live = await send(d.httpUrl, { uid: 'uid2', msg: 'y' });
  assert.equal(live.delivered, true);
  assert.equal(await page.frame(1), 'y');
});
