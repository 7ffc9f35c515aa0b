import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { test } from 'node:test';
import { WebSocket } from 'ws';
import { apnsWorld, deviceToken, writeWorldConfig } from '../helpers/apns.js';
import { startChild } from '../helpers/child.js';
import { HANG_MS, collectLines, until } from '../helpers/clients.js';

/** Waits until the daemon at `http` (host:port) has `n` uids bound over WebSocket (its /healthz). */
async function uidsBound(http: string, n: number): Promise<void> {
  const deadline = Date.now() + HANG_MS;
  for (;;) {
    const h = (await (await fetch(`http://${http}/healthz`)).json()) as { transports: { websocket: { uids: number } } };
    if (h.transports.websocket.uids === n) return;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${n} bound uid(s) at ${http}: ${JSON.stringify(h)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * A resuming client as /notify-client.js is one, minus its dedupe: it binds with the last id it
 * saw and acks each message, and it counts every id it is sent, so a duplicate from the server
 * shows.
 */
class ResumingClient {
  readonly seen = new Map<string, number>();
  readonly order: number[] = [];
  last: string | null = null;
  ws: WebSocket | undefined;

  connect(address: string, uid: string): Promise<void> {
    const ws = new WebSocket(`ws://${address}/`);
    this.ws = ws;
    ws.on('error', () => {});
    ws.on('message', (raw) => {
      const frame = JSON.parse(raw.toString()) as { id?: string; type?: string; data?: { n?: number } };
      if (frame.id === undefined) return;
      this.seen.set(frame.id, (this.seen.get(frame.id) ?? 0) + 1);
      if (typeof frame.data?.n === 'number') this.order.push(frame.data.n);
      this.last = frame.id;
      ws.send(JSON.stringify({ type: 'ack', id: frame.id }));
    });
    return new Promise((resolve, reject) => {
      ws.once('open', () => {
        ws.send(JSON.stringify({ type: 'bind', uid, since: this.last }));
        resolve();
      });
      ws.once('error', reject);
    });
  }
}

test('crash safety: after SIGKILL mid-stream and a restart, the resuming client has every message answered ok exactly once, and pending APNs retries complete', async (t) => {
  // Fake APNs: every token's first attempt is 503 with Retry-After 3 s, so the deliveries are
  // waiting for their retry (held in the store) when the daemon is killed.
  const tokens = [deviceToken(), deviceToken(), deviceToken()];
  const w = await apnsWorld(t, {
    devices: { ios1: tokens },
    fake: {
      respond: (req) => (req.attempt === 1 ? { status: 503, reason: 'ServiceUnavailable', headers: { 'retry-after': '3' } } : undefined),
    },
    dispatch: { deliverTimeoutMs: 1000 },
    apns: { retry: { limit: 3, baseDelayMs: 50, maxDelayMs: 10_000 } },
  });
  Object.assign(w.raw, { log: { level: 'debug' }, history: { size: 10_000 } });
  const { fake } = w;
  const config = writeWorldConfig(w);

  const first = await startChild(t, config);

  // The APNs message: its report is due after 1 s, while every token waits for its retry.
  const apnsReport = (await (
    await fetch(`http://${first.http}/v1/send`, { method: 'POST', body: JSON.stringify({ uid: 'ios1', title: 'Build', msg: 'green' }) })
  ).json()) as { results: { status: string; reason?: string }[] };
  assert.deepEqual(
    apnsReport.results.map((r) => r.status),
    ['failed', 'failed', 'failed'],
  );
  assert.match(apnsReport.results[0]?.reason ?? '', /still trying \(last: 503 ServiceUnavailable\)/);
  assert.equal(fake.requests.length, 3, 'one attempt per token so far');

  // The stream: a resuming client of uid web1, and a backend pipelining numbered messages to it.
  const client = new ResumingClient();
  await client.connect(first.ws, 'web1');
  await until(() => client.ws?.readyState === WebSocket.OPEN, 'the client to open');
  await uidsBound(first.http, 1);
  const [host, port] = [first.text.slice(0, first.text.lastIndexOf(':')), Number(first.text.split(':').pop())];
  const backend = connect({ host, port });
  await once(backend, 'connect');
  backend.on('error', () => {});
  const replies: string[] = [];
  collectLines(backend, replies);
  let sent = 0;
  const writer = setInterval(() => {
    let batch = '';
    for (let i = 0; i < 25; i++, sent++) batch += `${JSON.stringify({ uid: 'web1', id: `m-${sent}`, n: sent })}\n`;
    backend.write(batch);
  }, 5);

  // Kill the daemon in the middle of the stream, with no warning.
  await until(() => replies.length >= 400, '400 replies');
  first.proc.kill('SIGKILL');
  assert.equal(await first.exited, 'SIGKILL');
  clearInterval(writer);
  const answeredOk = replies.flatMap((r, i) => (r === 'ok' ? [`m-${i}`] : []));
  assert.equal(answeredOk.length, replies.length, `every reply before the kill was ok: ${JSON.stringify(replies.filter((r) => r !== 'ok').slice(0, 3))}`);
  assert.ok(sent > replies.length, 'messages were still in flight when the daemon died');

  // Restart on the same state directory: the client resumes from the last id it saw.
  const second = await startChild(t, config);
  await client.connect(second.ws, 'web1');
  await until(
    () => answeredOk.every((id) => client.seen.has(id)),
    `every message answered ok to reach the client (missing: ${answeredOk.filter((id) => !client.seen.has(id)).slice(0, 5)})`,
  );
  // A marker published now comes after the whole replay: once it is in, a duplicate would be too.
  const marker = await fetch(`http://${second.http}/v1/send`, { method: 'POST', body: JSON.stringify({ uid: 'web1', msg: 'marker', id: 'crash-marker' }) });
  assert.equal(marker.status, 200);
  await until(() => client.seen.has('crash-marker'), 'the marker after the replay');
  const twice = [...client.seen].filter(([, n]) => n > 1).map(([id]) => id);
  assert.deepEqual(twice, [], 'no message reached the client twice');
  for (let i = 1; i < client.order.length; i++) {
    assert.ok((client.order[i] as number) > (client.order[i - 1] as number), `in order: ${client.order[i - 1]} then ${client.order[i]}`);
  }

  // The APNs retries held in the store resume in the new process and complete.
  await until(() => tokens.every((tk) => fake.answers.some((a) => a.token === tk && a.status === 200)), 'every pending APNs retry to complete');
  for (const tk of tokens) {
    const retry = fake.requests.find((r) => r.token === tk && r.attempt === 2);
    assert.ok(retry && retry.connection >= 2, 'the retry came from the restarted daemon, on a new connection');
  }
  assert.ok(second.logs.some((l) => l.msg === 'resuming deliveries that were waiting for a retry' && l.count === 3));
  await until(() => second.logs.filter((l) => l.msg === 'resumed delivery ended' && l.status === 'sent').length === 3, 'three resumed deliveries to end sent');

  client.ws?.terminate();
  backend.destroy();
  second.proc.kill('SIGTERM');
  assert.equal(await second.exited, 0);
});
