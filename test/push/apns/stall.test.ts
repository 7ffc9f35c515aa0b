import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type Socket, createServer } from 'node:net';
import { test } from 'node:test';
import type { PublishReport } from '../../../src/types.js';
import { api } from '../../helpers/api.js';
import { HANG_MS } from '../../helpers/clients.js';
import { apnsWorld, deviceToken } from '../../helpers/apns.js';

// An APNs connection that stalls (TCP accepted, then no TLS at all) does not hold deliveries
// forever: each request ends by requestTimeoutMs, the stalled connection is torn down, and the
// next attempt opens a new one.

test('apns: an endpoint that accepts TCP and never answers TLS: requests end by their timeout, the connection is replaced for the retry, the report says why', { timeout: HANG_MS * 2 }, async (t) => {
  const token = deviceToken();
  const world = await apnsWorld(t, { devices: { alice: [token] }, apns: { requestTimeoutMs: 300, retry: { limit: 2, baseDelayMs: 10, maxDelayMs: 100 } } });
  // The stalled endpoint: a plain TCP server that accepts and stays silent.
  const sockets: Socket[] = [];
  const tarpit = createServer((s) => {
    sockets.push(s);
    s.on('error', () => {});
  });
  tarpit.listen(0, '127.0.0.1');
  await once(tarpit, 'listening');
  t.after(() => {
    for (const s of sockets) s.destroy();
    tarpit.close();
  });
  (world.raw.transports as { apns: Record<string, unknown> }).apns.port = (tarpit.address() as { port: number }).port;
  const d = await world.daemon();
  const r = await api(d.httpUrl, 'POST', '/v1/send', { uid: 'alice', title: 'hi', msg: 'stalled' });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  const report = r.body as PublishReport;
  const entry = report.results.find((e) => e.transport === 'apns');
  assert.equal(entry?.status, 'failed', JSON.stringify(report));
  assert.ok(sockets.length >= 2, `the stalled connection was replaced for a retry (${sockets.length} connection(s) made)`);
});

test('apns: a connection whose streams are never answered is replaced for the retry; once APNs answers again the delivery goes through', { timeout: HANG_MS * 2 }, async (t) => {
  const token = deviceToken();
  let hang = true;
  const world = await apnsWorld(t, {
    devices: { bob: [token] },
    apns: { requestTimeoutMs: 300, retry: { limit: 3, baseDelayMs: 10, maxDelayMs: 100 } },
    fake: { respond: () => (hang ? { hang: true } : undefined) },
  });
  const d = await world.daemon();
  const first = (await api(d.httpUrl, 'POST', '/v1/send', { uid: 'bob', title: 'hi', msg: 'one' })).body as PublishReport;
  assert.equal(first.results.find((e) => e.transport === 'apns')?.status, 'failed', JSON.stringify(first));
  const stalled = world.fake.connections();
  assert.ok(stalled >= 2, `each unanswered attempt got a new connection (${stalled})`);
  hang = false;
  const second = (await api(d.httpUrl, 'POST', '/v1/send', { uid: 'bob', title: 'hi', msg: 'two' })).body as PublishReport;
  assert.equal(second.results.find((e) => e.transport === 'apns')?.status, 'sent', JSON.stringify(second));
});
