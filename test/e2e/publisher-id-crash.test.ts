import assert from 'node:assert/strict';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { WebSocket } from 'ws';
import { stringify } from 'yaml';
import type { PublishReport } from '../../src/types.js';
import { api } from '../helpers/api.js';
import { HANG_MS, until } from '../helpers/clients.js';
import { startChild } from '../helpers/child.js';
import { tempDir } from '../helpers/daemon.js';
import { startFakeHttp } from '../helpers/fake-http.js';

// Publisher ids are safe across a crash: the id is recorded with the message's commit, so a
// publisher's retry after a SIGKILL (while a webhook was slow) is a duplicate, not a second
// delivery and not a second stored copy.

test('publisher id: SIGKILL while a webhook is slow, then the retry with the same id gets duplicate: true; nothing is sent or stored twice', { timeout: HANG_MS * 3 }, async (t) => {
  let answering = false;
  const fake = await startFakeHttp(t, () => (answering ? undefined : { hang: true }));
  const dir = tempDir(t);
  const file = join(dir, 'notify.yaml');
  writeFileSync(
    file,
    stringify({
      ws: { listen: '127.0.0.1:0' },
      text: { listen: '127.0.0.1:0' },
      http: { listen: '127.0.0.1:0' },
      state: { dir: join(dir, 'state') },
      dispatch: { deliverTimeoutMs: 600_000 },
      transports: { hook: { type: 'http', url: `${fake.url}/hook`, body: { uid: '{{uid}}', msg: '{{msg}}' }, requestTimeoutMs: 600_000 } },
    }),
  );
  const first = await startChild(t, file);
  const body = { uid: 'alice', msg: 'charge once', id: 'order-1' };
  // The report waits for the hung webhook: this request never gets its answer.
  const pending = api(`http://${first.http}`, 'POST', '/v1/send', body).catch(() => undefined);
  await until(() => fake.requests.length === 1, 'the webhook to get the message', HANG_MS);
  first.proc.kill('SIGKILL');
  await first.exited;
  await pending;

  answering = true;
  const second = await startChild(t, file);
  const retry = await api(`http://${second.http}`, 'POST', '/v1/send', body);
  assert.equal(retry.status, 200, JSON.stringify(retry.body));
  const report = retry.body as PublishReport;
  assert.equal(report.duplicate, true, 'the retry is answered as a duplicate');
  assert.equal(report.id, 'order-1');
  assert.equal(report.stored, true);

  // Nothing sent again: a later message goes through, and it is the only new request.
  const later = await api(`http://${second.http}`, 'POST', '/v1/send', { uid: 'alice', msg: 'next' });
  assert.equal(later.status, 200);
  await until(() => fake.requests.length === 2, 'the next message at the webhook', HANG_MS);
  assert.deepEqual(
    fake.requests.map((r) => (r.json as { msg: string }).msg),
    ['charge once', 'next'],
    'the message with the publisher id reached the webhook once',
  );

  // Stored once: a page resuming from nothing replays it once.
  const ws = new WebSocket(`ws://${second.ws}/`);
  t.after(() => ws.terminate());
  await once(ws, 'open');
  const ids: string[] = [];
  ws.on('message', (m) => ids.push((JSON.parse(m.toString()) as { id: string }).id));
  ws.send(JSON.stringify({ type: 'bind', uid: 'alice' }));
  await until(() => ids.length >= 2, 'the replay', HANG_MS);
  assert.equal(ids.filter((id) => id === 'order-1').length, 1, `order-1 stored once: ${JSON.stringify(ids)}`);
});
