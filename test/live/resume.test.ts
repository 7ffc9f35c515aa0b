import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test, type TestContext } from 'node:test';
import { runInNewContext } from 'node:vm';
import { WebSocket } from 'ws';
import { main } from '../../src/cli/main.js';
import { createDaemon, type Daemon } from '../../src/node/daemon.js';
import type { PublishReport } from '../../src/types.js';
import { HANG_MS, type TextClient, type WsClient, session, textClient, until, within, wsClient } from '../helpers/clients.js';
import { fakeIo } from '../helpers/cli.js';
import { type TestDaemon, startDaemon, testConfig } from '../helpers/daemon.js';
import { type FakeHttp, startFakeHttp } from '../helpers/fake-http.js';

// The resume protocol and delivery you can trust, against a real daemon: raw `ws` clients bind
// with {"type":"bind","uid","since"}, backends publish over the Text ingress, the HTTP API and
// the CLI.

const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/;

// The CLI falls back to $NOTIFY_TOKEN; keep the caller's environment out of these tests.
delete process.env.NOTIFY_TOKEN;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

interface Envelope {
  id: string;
  data: unknown;
}

// ---------------------------------------------------------------------------------------------
// Helpers local to this file

function sessions(d: Daemon, uid: string): number {
  return d.registry.index('websocket').targets(uid).length;
}

interface Resuming extends WsClient {
  /** Every frame, parsed. */
  parsed(): unknown[];
  /** The envelopes received (gap frames left out). */
  envelopes(): Envelope[];
  /** Waits for the n-th frame (1-based) and returns it parsed. */
  next(n: number): Promise<unknown>;
}

/**
 * A session of the resume protocol: binds with {"type":"bind","uid","since"}; with `ack`, acks
 * every envelope as it arrives. Resolves once the daemon has handled the bind (so the replay is
 * on its way).
 */
async function resuming(t: TestContext, d: Daemon & { wsUrl: string }, uid: string, opts: { since?: string | null; ack?: boolean } = {}): Promise<Resuming> {
  const bind: Record<string, unknown> = { type: 'bind', uid };
  if (opts.since !== undefined) bind.since = opts.since;
  const c = await wsClient(t, d.wsUrl, { bind: JSON.stringify(bind) });
  if (opts.ack) {
    c.ws.on('message', (data) => {
      const f = JSON.parse(data.toString()) as { id?: unknown };
      if (typeof f.id === 'string') c.ws.send(JSON.stringify({ type: 'ack', id: f.id }));
    });
  }
  // The server handles a connection's frames in order: once the pong is back, the bind (and
  // the replay it sends) is done.
  const pong = once(c.ws, 'pong');
  c.ws.ping();
  await pong;
  assert.ok(sessions(d, uid) >= 1, `${uid} is bound`);
  const parsed = () => c.frames.map((f) => JSON.parse(f) as unknown);
  return Object.assign(c, {
    parsed,
    envelopes: () => parsed().filter((f): f is Envelope => typeof (f as { id?: unknown }).id === 'string'),
    next: async (n: number) => JSON.parse(await c.frame(n)) as unknown,
  });
}

async function send(base: string, body: Record<string, unknown>, status = 200): Promise<PublishReport> {
  const res = await fetch(`${base}/v1/send`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const text = await res.text();
  assert.equal(res.status, status, `POST /v1/send ${JSON.stringify(body)} -> ${res.status} ${text}`);
  return JSON.parse(text) as PublishReport;
}

/** Writes one line and resolves with its reply line (one request at a time per client). */
async function say(c: TextClient, line: string): Promise<string> {
  const n = c.lines.length + 1;
  c.write(`${line}\n`);
  return (await c.replies(n))[n - 1] as string;
}

/** Publishes a marker to `uid` and waits for `client` to get it: every frame sent before it has arrived. */
async function marker(d: { httpUrl: string }, client: WsClient, uid: string, text: string): Promise<void> {
  await send(d.httpUrl, { uid, msg: text });
  await until(() => client.frames.some((f) => f === text || f.includes(JSON.stringify(text))), `marker ${text} at ${uid}`);
}

function assertIncreasing(ids: readonly string[], what: string): void {
  for (let i = 1; i < ids.length; i++) assert.ok((ids[i - 1] as string) < (ids[i] as string), `${what}: ${ids[i]} after ${ids[i - 1]}`);
}

/** `notify send ... --json` in-process, against a daemon's HTTP API. */
async function cliSend(d: { httpUrl: string }, args: string[]): Promise<{ code: number; report: PublishReport; err: string }> {
  const f = fakeIo();
  const code = await main(['send', '--server', d.httpUrl, '--json', ...args], f.io);
  assert.ok(f.out().endsWith('\n') && !f.out().slice(0, -1).includes('\n'), `one JSON line: ${JSON.stringify(f.out())} / ${f.err()}`);
  return { code, report: JSON.parse(f.out()) as PublishReport, err: f.err() };
}

/** A started daemon made with createDaemon, with the URLs the helpers use. */
function addressed(d: Daemon) {
  const a = d.addresses();
  return Object.assign(d, { wsUrl: `ws://${a.ws}/`, textPort: Number(a.text.split(':').pop()), httpUrl: `http://${a.http}` });
}

// ---------------------------------------------------------------------------------------------
// Replay on bind

test('resume: messages stored while nobody was online are replayed on bind as {"id","data"} envelopes, in order; then live ones; plain sessions still get bare frames', async (t) => {
  const d = await startDaemon(t);
  const backend = await textClient(t, d.textPort);

  const line1 = JSON.stringify({ uid: 'u1', n: 1, note: 'from the text ingress' });
  assert.equal(await say(backend, line1), 'fail', 'a message that was only stored for later answers fail');
  const r2 = await send(d.httpUrl, { uid: 'u1', msg: 'plain text' });
  const r3 = await send(d.httpUrl, { uid: 'u1', title: 'T', data: { k: 'v', n: [1, 2] } });
  const other = await send(d.httpUrl, { uid: 'u2', msg: 'not for u1' });
  const r4 = await send(d.httpUrl, { broadcast: true, msg: 'to everyone' });
  for (const r of [r2, r3, other, r4]) {
    assert.equal(r.delivered, false, 'nobody was online');
    assert.equal(r.stored, true);
    assert.match(r.id, ULID);
  }

  const page = await resuming(t, d, 'u1');
  await page.frame(4);
  const replay = page.envelopes();
  assert.equal(replay.length, 4);
  const id1 = replay[0]?.id as string;
  assert.match(id1, ULID);
  assert.deepEqual(replay, [
    { id: id1, data: { uid: 'u1', n: 1, note: 'from the text ingress' } },
    { id: r2.id, data: 'plain text' },
    { id: r3.id, data: { title: 'T', k: 'v', n: [1, 2] } },
    { id: r4.id, data: 'to everyone' },
  ]);
  // The Text line is carried as the JSON it is, byte for byte.
  assert.equal(page.frames[0], `{"id":"${id1}","data":${line1}}`);
  assertIncreasing(replay.map((e) => e.id), 'replayed ids');

  // Live: envelopes too, for the resuming session; a plain session of the same uid gets the bare frame.
  const classic = await session(t, d, 'u1');
  const line2 = JSON.stringify({ uid: 'u1', n: 2 });
  assert.equal(await say(backend, line2), 'ok');
  const live = (await page.next(5)) as Envelope;
  assert.match(live.id, ULID);
  assert.ok(live.id > r4.id, 'a live id sorts after the stored ones');
  assert.deepEqual(live.data, { uid: 'u1', n: 2 });
  assert.equal(await classic.frame(1), line2, 'the original protocol: the line itself');
  const r5 = await send(d.httpUrl, { uid: 'u1', msg: 'live text' });
  assert.equal(r5.delivered, true);
  assert.deepEqual(await page.next(6), { id: r5.id, data: 'live text' });
  assert.equal(await classic.frame(2), 'live text');
  assert.deepEqual(classic.frames, [line2, 'live text'], 'a plain session gets no replay and no envelopes');
  assert.equal(page.frames.length, 6);
});

test('resume: since = an id returns only later messages; an unknown since gets a gap frame, then everything stored', async (t) => {
  const d = await startDaemon(t);
  const stored: PublishReport[] = [];
  for (let i = 1; i <= 3; i++) stored.push(await send(d.httpUrl, { uid: 's', msg: `m${i}` }));
  const [m1, m2, m3] = stored as [PublishReport, PublishReport, PublishReport];

  const a = await resuming(t, d, 's', { since: m1.id });
  const m4 = await send(d.httpUrl, { uid: 's', msg: 'm4' });
  await a.frame(3);
  assert.deepEqual(a.parsed(), [
    { id: m2.id, data: 'm2' },
    { id: m3.id, data: 'm3' },
    { id: m4.id, data: 'm4' },
  ]);

  const b = await resuming(t, d, 's', { since: 'not-a-stored-id' });
  await b.frame(5);
  assert.deepEqual(b.parsed(), [
    { type: 'gap', since: 'not-a-stored-id' },
    { id: m1.id, data: 'm1' },
    { id: m2.id, data: 'm2' },
    { id: m3.id, data: 'm3' },
    { id: m4.id, data: 'm4' },
  ]);

  // Since the newest: nothing replayed, the next live message is the first frame.
  const c = await resuming(t, d, 's', { since: m4.id });
  const m5 = await send(d.httpUrl, { uid: 's', msg: 'm5' });
  assert.deepEqual(await c.next(1), { id: m5.id, data: 'm5' });
  // since null or absent: everything, no gap.
  const e = await resuming(t, d, 's', { since: null });
  await e.frame(5);
  assert.deepEqual(
    e.envelopes().map((x) => x.data),
    ['m1', 'm2', 'm3', 'm4', 'm5'],
  );
  assert.equal(e.frames.length, 5, 'no gap frame without a since');
  await marker(d, a, 's', 'end');
  assert.equal(a.frames.length, 5, 'no message twice for the first session');

  // A since that is not a string is refused.
  const bad = await wsClient(t, d.wsUrl, { bind: JSON.stringify({ type: 'bind', uid: 's', since: 42 }) });
  assert.deepEqual(await bad.closed, [1008, '"since" must be a message id (a string)']);
});

test('resume: history.size from the config: a bind replays only the newest N of the uid; a since pushed out is a gap', async (t) => {
  const d = await startDaemon(t, { history: { size: 3 } });
  const r: PublishReport[] = [];
  for (let i = 1; i <= 5; i++) r.push(await send(d.httpUrl, { uid: 'hs', msg: `m${i}` }));
  const all = await resuming(t, d, 'hs');
  await all.frame(3);
  const evicted = await resuming(t, d, 'hs', { since: r[0]?.id ?? '' });
  await evicted.frame(4);
  await marker(d, all, 'hs', 'end');
  await until(() => evicted.frames.length === 5, 'the marker at the second session');
  assert.deepEqual(
    all.envelopes().map((e) => e.data),
    ['m3', 'm4', 'm5', 'end'],
  );
  assert.deepEqual(evicted.parsed()[0], { type: 'gap', since: r[0]?.id });
  assert.deepEqual(
    evicted.envelopes().map((e) => e.data),
    ['m3', 'm4', 'm5', 'end'],
  );
});

// ---------------------------------------------------------------------------------------------
// The seam

test('resume: the seam: a client that keeps dropping and resuming during a stream of pushes sees every message once, in order', async (t) => {
  const d = await startDaemon(t, { history: { size: 100_000 } }, 'info');
  const uid = 'hammer';
  const producer = await textClient(t, d.textPort);
  let sent = 0;
  let stop = false;
  // A continuous stream of numbered messages, a few lines per write, as fast as the loop allows.
  const pump = (async () => {
    while (!stop) {
      let batch = '';
      for (let k = 0; k < 3; k++) batch += `${JSON.stringify({ uid, n: sent++, reply: 'json' })}\n`;
      producer.write(batch);
      await new Promise((r) => setTimeout(r, 1));
    }
  })();
  await producer.replies(30);

  const seen: { id: string; n: number }[] = [];
  let last: string | undefined;
  let cyclesWithMessages = 0;
  const CYCLES = 15;
  for (let cycle = 0; cycle < CYCLES; cycle++) {
    const ws = new WebSocket(d.wsUrl);
    ws.on('error', () => {});
    t.after(() => ws.terminate());
    let recording = true;
    let got = 0;
    const gaps: unknown[] = [];
    ws.on('message', (data) => {
      if (!recording) return;
      const f = JSON.parse(data.toString()) as { type?: string; id: string; data: { n: number } };
      if (f.type === 'gap') return void gaps.push(f);
      seen.push({ id: f.id, n: f.data.n });
      last = f.id;
      got++;
    });
    await once(ws, 'open');
    ws.send(JSON.stringify({ type: 'bind', uid, since: last }));
    await sleep(3 + (cycle % 5) * 6);
    // What arrives after this point is as good as lost: the client resumes from the last it handled.
    recording = false;
    if (cycle % 2 === 0) ws.terminate();
    else ws.close();
    assert.deepEqual(gaps, [], `cycle ${cycle}: since was a stored id, so no gap`);
    if (got > 0) cyclesWithMessages++;
  }
  stop = true;
  await pump;
  const replies = await producer.replies(sent, 3 * HANG_MS);
  const published = replies.map((line, n) => {
    const r = JSON.parse(line) as PublishReport;
    assert.equal(r.stored, true, `message ${n} stored`);
    return r.id;
  });
  assert.ok(sent >= 100, `the stream had ${sent} messages`);
  assert.ok(cyclesWithMessages >= 10, `most cycles got messages (${cyclesWithMessages} of ${CYCLES})`);

  // One last resume picks up the rest.
  const final = await resuming(t, d, uid, { since: last ?? null });
  const endLine = JSON.stringify({ uid, n: 'end' });
  assert.equal(await say(producer, endLine), 'ok');
  await until(() => final.frames.some((f) => f.includes('"n":"end"')), 'the end marker');
  for (const e of final.envelopes()) {
    if ((e.data as { n: unknown }).n === 'end') break;
    seen.push({ id: e.id, n: (e.data as { n: number }).n });
  }
  assert.equal(final.parsed().filter((f) => (f as { type?: string }).type === 'gap').length, 0);

  const ns = seen.map((s) => s.n);
  const missing = published.map((_, n) => n).filter((n) => !ns.includes(n));
  const twice = ns.filter((n, i) => ns.indexOf(n) !== i);
  assert.deepEqual({ missing, twice }, { missing: [], twice: [] }, `${sent} messages, ${seen.length} seen`);
  assert.deepEqual(ns, published.map((_, n) => n), 'in order');
  assert.deepEqual(
    seen.map((s) => s.id),
    published,
    'the ids seen are the ids the publisher was given, in order',
  );
});

// ---------------------------------------------------------------------------------------------
// Acks and other frames

test('resume: an ack is accepted (live-first takes it as delivered at once); other frames after the bind are ignored, the session stays', async (t) => {
  // An ackTimeout far past the hang guard: only the ack can end the wait.
  const d = await startDaemon(t, { dispatch: { ackTimeout: '1h' } });
  const page = await resuming(t, d, 'ak', { ack: true });

  const r = await within(send(d.httpUrl, { uid: 'ak', msg: 'please ack', route: 'live-first' }), HANG_MS, 'the report: the ack should end the wait');
  assert.deepEqual(r.paths, { ak: 'live' }, JSON.stringify(r));
  assert.equal(r.route, 'live-first');
  assert.equal(r.results.length, 1);
  assert.equal('ack' in (r.results[0] ?? {}), false, 'no internal ack marker in the report');
  assert.deepEqual(await page.next(1), { id: r.id, data: 'please ack' });

  // Frames that are not acks: ignored, no close, no rebind.
  const quiet = await resuming(t, d, 'qq');
  for (const f of ['garbage', '{}', '[]', 'null', '42', '{"type":"ack"}', '{"type":"ack","id":42}', '{"type":"ack","id":"no-such-message"}', '{"type":"bind","uid":"someone-else"}', 'qq2']) {
    quiet.ws.send(f);
  }
  quiet.ws.send(Buffer.from([1, 2, 3]), { binary: true });
  const pong = once(quiet.ws, 'pong');
  quiet.ws.ping();
  await pong;
  assert.equal(quiet.ws.readyState, WebSocket.OPEN);
  assert.equal(sessions(d, 'qq'), 1, 'still bound to its uid');
  assert.equal(sessions(d, 'someone-else'), 0, 'a second bind frame does not rebind');
  assert.equal(sessions(d, 'qq2'), 0);
  const r2 = await send(d.httpUrl, { uid: 'qq', msg: 'still here' });
  assert.deepEqual(await quiet.next(1), { id: r2.id, data: 'still here' });
  assert.equal(quiet.frames.length, 1);
});

// ---------------------------------------------------------------------------------------------
// Live-first with an HTTP push fallback

interface Fallback {
  fake: FakeHttp;
  d: TestDaemon;
  /** The fake's requests for `uid`. */
  pushed(uid: string): unknown[];
}

async function withFallback(t: TestContext, dispatch: Record<string, unknown>): Promise<Fallback> {
  const fake = await startFakeHttp(t);
  const d = await startDaemon(t, {
    transports: { hook: { type: 'http', url: `${fake.url}/push/{{uid}}`, body: { uid: '{{uid}}', frame: '{{frame}}' }, perDevice: false } },
    dispatch,
  });
  return { fake, d, pushed: (uid) => fake.requests.filter((r) => r.path === `/push/${uid}`).map((r) => r.json) };
}

test('live-first per publish: a plain session or an acking resuming session takes it (nothing pushed); without an ack the push fallback gets it after ackTimeout', async (t) => {
  const { d, pushed, fake } = await withFallback(t, { ackTimeout: '300ms' });

  // (a) A plain session counts as delivered when written.
  const pa = await session(t, d, 'pa');
  const ra = await send(d.httpUrl, { uid: 'pa', msg: 'a', route: 'live-first' });
  assert.equal(ra.route, 'live-first');
  assert.deepEqual(ra.paths, { pa: 'live' });
  assert.equal(ra.delivered, true);
  assert.deepEqual(ra.results.map((e) => [e.transport, e.status]), [['websocket', 'sent']]);
  assert.equal(await pa.frame(1), 'a');

  // (b) A resuming session that acks within ackTimeout.
  const pb = await resuming(t, d, 'pb', { ack: true });
  const rb = await send(d.httpUrl, { uid: 'pb', msg: 'b', route: 'live-first' });
  assert.deepEqual(rb.paths, { pb: 'live' });
  assert.deepEqual(rb.results.map((e) => [e.transport, e.status]), [['websocket', 'sent']]);
  assert.deepEqual(await pb.next(1), { id: rb.id, data: 'b' });

  // (c) A resuming session that does not ack: after ackTimeout, the push transport. An ack for
  // that id from another uid's session does not count.
  const pc = await resuming(t, d, 'pc');
  const bystander = await resuming(t, d, 'bystander');
  const started = Date.now();
  const sending = send(d.httpUrl, { uid: 'pc', msg: 'c', route: 'live-first', id: 'msg-c' });
  await until(() => pc.frames.length === 1, 'pc to get the envelope');
  bystander.ws.send(JSON.stringify({ type: 'ack', id: 'msg-c' }));
  assert.deepEqual(pushed('pc'), [], 'not pushed while the ack is awaited');
  const rc = await sending;
  const took = Date.now() - started;
  assert.deepEqual(rc.paths, { pc: 'fallback' });
  assert.ok(took >= 280, `the fallback waited for ackTimeout (took ${took} ms)`);
  assert.deepEqual(pushed('pc'), [{ uid: 'pc', frame: 'c' }]);
  const pushedAt = fake.requests.find((r) => r.path === '/push/pc')?.receivedAt ?? 0;
  assert.ok(pushedAt - started >= 280, `pushed only after ackTimeout (${pushedAt - started} ms)`);
  assert.deepEqual(
    rc.results.map((e) => [e.transport, e.status]),
    [
      ['websocket', 'sent'],
      ['hook', 'sent'],
    ],
  );
  assert.deepEqual(pc.parsed(), [{ id: 'msg-c', data: 'c' }], 'the session had it too');

  // (a), (b) pushed nothing at all.
  assert.deepEqual(pushed('pa'), []);
  assert.deepEqual(pushed('pb'), []);

  // (e) route all (the default here): every transport at once, no paths.
  const re = await send(d.httpUrl, { uid: 'pb', msg: 'e' });
  assert.equal(re.route, 'all');
  assert.equal(re.paths, undefined);
  assert.deepEqual(re.results.map((e) => e.transport).sort(), ['hook', 'websocket']);
  assert.deepEqual(pushed('pb'), [{ uid: 'pb', frame: 'e' }]);
  assert.deepEqual(await pb.next(2), { id: re.id, data: 'e' });
});

test('live-first as the config default: nobody online goes straight to the push fallback; route "all" per publish overrides; Text and CLI take route too', async (t) => {
  // An ackTimeout far past the hang guard: a send that waited for an ack would not come back.
  const { d, pushed } = await withFallback(t, { route: 'live-first', ackTimeout: '1h' });

  // (d) Nobody online: straight to the fallback, no waiting for an ack.
  const rd = await within(send(d.httpUrl, { uid: 'pd', msg: 'd' }), HANG_MS, 'the report: no ack wait when nobody is online');
  assert.equal(rd.route, 'live-first', 'the config default');
  assert.deepEqual(rd.paths, { pd: 'fallback' });
  assert.equal(rd.delivered, true);
  assert.deepEqual(pushed('pd'), [{ uid: 'pd', frame: 'd' }]);

  // A plain session: live, nothing pushed.
  const pp = await session(t, d, 'pp');
  const rp = await send(d.httpUrl, { uid: 'pp', msg: 'p' });
  assert.deepEqual(rp.paths, { pp: 'live' });
  assert.deepEqual(pushed('pp'), []);
  assert.equal(await pp.frame(1), 'p');

  // (e) route all per publish, with a resuming session that never acks: both at once.
  const pe = await resuming(t, d, 'pe');
  const re = await within(send(d.httpUrl, { uid: 'pe', msg: 'e', route: 'all' }), HANG_MS, 'the report: route all does not wait for acks');
  assert.equal(re.route, 'all');
  assert.equal(re.paths, undefined);
  assert.deepEqual(re.results.map((e) => [e.transport, e.status]).sort(), [
    ['hook', 'sent'],
    ['websocket', 'sent'],
  ]);
  assert.deepEqual(pushed('pe'), [{ uid: 'pe', frame: 'e' }]);
  assert.deepEqual(await pe.next(1), { id: re.id, data: 'e' });

  // The Text ingress: route per line.
  const backend = await textClient(t, d.textPort);
  const line = JSON.stringify({ uid: 'pt', n: 1, route: 'all', reply: 'json' });
  const rt = JSON.parse(await say(backend, line)) as PublishReport;
  assert.equal(rt.route, 'all');
  assert.equal(rt.paths, undefined);
  assert.deepEqual(pushed('pt'), [{ uid: 'pt', frame: line }]);
  const rt2 = JSON.parse(await say(backend, JSON.stringify({ uid: 'pp', n: 2, reply: 'json' }))) as PublishReport;
  assert.deepEqual(rt2.paths, { pp: 'live' });

  // The CLI: --route.
  const cli = await cliSend(d, ['--uid', 'pcli', '--msg', 'from the cli', '--route', 'all']);
  assert.equal(cli.report.route, 'all');
  const cli2 = await cliSend(d, ['--uid', 'pp', '--msg', 'cli live-first', '--route', 'live-first']);
  assert.equal(cli2.code, 0);
  assert.deepEqual(cli2.report.paths, { pp: 'live' });
  assert.deepEqual(pushed('pp'), [], 'the plain session took every live-first message');
});

// ---------------------------------------------------------------------------------------------
// Message ids and publisher ids

test('ids: every report (HTTP, Text "reply":"json", CLI --json) has a ULID id and stored: true; ids increase', async (t) => {
  const d = await startDaemon(t);
  const page = await session(t, d, 'iu');
  const r1 = await send(d.httpUrl, { uid: 'iu', msg: 'one' });
  const backend = await textClient(t, d.textPort);
  const r2 = JSON.parse(await say(backend, JSON.stringify({ uid: 'iu', n: 2, reply: 'json' }))) as PublishReport;
  const c3 = await cliSend(d, ['--uid', 'iu', '--msg', 'three']);
  const c4 = await cliSend(d, ['--uid', 'nobody', '--msg', 'four', '--ttl', '10m']);
  for (const r of [r1, r2, c3.report, c4.report]) {
    assert.match(r.id, ULID);
    assert.equal(r.stored, true);
    assert.equal(r.route, 'all');
  }
  assert.equal(c3.code, 0);
  assert.equal(c4.code, 1, 'delivered to none');
  assert.equal(c4.report.delivered, false);
  assertIncreasing([r1.id, r2.id, c3.report.id, c4.report.id], 'ids across ingresses');
  await page.frame(3);
  assert.deepEqual(page.frames, ['one', JSON.stringify({ uid: 'iu', n: 2, reply: 'json' }), 'three']);
});

test('ids: a publisher id is the message id; a repeat (HTTP, Text, CLI) is not delivered again and gets the first answer with duplicate: true', async (t) => {
  const d = await startDaemon(t);
  const page = await resuming(t, d, 'du');
  const classic = await session(t, d, 'du');

  const first = await send(d.httpUrl, { uid: 'du', msg: 'order shipped', id: 'order-42' });
  assert.equal(first.id, 'order-42');
  assert.equal(first.delivered, true);
  assert.equal(first.duplicate, undefined);
  assert.deepEqual(await page.next(1), { id: 'order-42', data: 'order shipped' });

  const again = await send(d.httpUrl, { uid: 'du', msg: 'order shipped (retry)', id: 'order-42' });
  assert.deepEqual(again, { ...first, duplicate: true });
  const backend = await textClient(t, d.textPort);
  const viaText = JSON.parse(await say(backend, JSON.stringify({ uid: 'du', id: 'order-42', note: 'retry', reply: 'json' }))) as PublishReport;
  assert.deepEqual(viaText, { ...first, duplicate: true });
  assert.equal(await say(backend, JSON.stringify({ uid: 'du', id: 'order-42' })), 'ok', 'the first answer: it was delivered');
  const viaCli = await cliSend(d, ['--uid', 'du', '--msg', 'cli retry', '--id', 'order-42']);
  assert.deepEqual(viaCli.report, { ...first, duplicate: true });
  // A repeat to another uid is still the same message: not delivered anywhere.
  const elsewhere = await send(d.httpUrl, { uid: 'someone-else', msg: 'x', id: 'order-42' });
  assert.deepEqual(elsewhere, { ...first, duplicate: true });

  // Concurrent repeats while the first is in flight: one delivery, one answer for all.
  const burst = await Promise.all([1, 2, 3].map((i) => send(d.httpUrl, { uid: 'du', msg: `burst ${i}`, id: 'burst-1' })));
  assert.equal(burst.filter((r) => r.duplicate === true).length, 2);
  for (const r of burst) assert.equal(r.id, 'burst-1');

  // CLI --id on a fresh id: used as the message id.
  const fresh = await cliSend(d, ['--uid', 'du', '--msg', 'cli own id', '--id', 'cli:7']);
  assert.equal(fresh.report.id, 'cli:7');
  assert.equal(fresh.report.duplicate, undefined);

  await marker(d, classic, 'du', 'end');
  assert.deepEqual(
    page.envelopes().map((e) => e.id),
    ['order-42', 'burst-1', 'cli:7', page.envelopes().at(-1)?.id],
    'one envelope per publisher id',
  );
  assert.equal(classic.frames.filter((f) => f === 'order shipped').length, 1);
  assert.equal(classic.frames.filter((f) => f.startsWith('burst')).length, 1);
  assert.equal(classic.frames.length, 4);

  // A bad id is refused, saying why.
  const res = await fetch(`${d.httpUrl}/v1/send`, { method: 'POST', body: JSON.stringify({ uid: 'du', msg: 'x', id: 'has space' }) });
  assert.equal(res.status, 400);
  assert.match(((await res.json()) as { error: string }).error, /"id" may use letters, digits and \. _ : ~ - only/);
});

test('ids: after a restart on the same state dir, a repeat still gets the first answer and is not delivered; the stored message is replayed once', async (t) => {
  const config = testConfig({}, t);
  const daemon1 = await createDaemon(config);
  await daemon1.start();
  const d1 = addressed(daemon1);
  t.after(() => d1.stop());
  const first = await send(d1.httpUrl, { uid: 'rs', msg: 'keep me', id: 'keep-1' });
  assert.equal(first.stored, true);
  assert.equal(first.delivered, false);
  const t1 = await textClient(t, d1.textPort);
  const firstText = JSON.parse(await say(t1, JSON.stringify({ uid: 'rs', n: 1, id: 'keep-2', reply: 'json' }))) as PublishReport;
  await d1.stop();

  const daemon2 = await createDaemon(config);
  await daemon2.start();
  const d2 = addressed(daemon2);
  t.after(() => d2.stop());
  const page = await resuming(t, d2, 'rs');
  await page.frame(2);
  assert.deepEqual(page.parsed(), [
    { id: 'keep-1', data: 'keep me' },
    { id: 'keep-2', data: { uid: 'rs', n: 1, id: 'keep-2', reply: 'json' } },
  ]);

  const again = await send(d2.httpUrl, { uid: 'rs', msg: 'keep me (retry after restart)', id: 'keep-1' });
  assert.deepEqual(again, { ...first, duplicate: true });
  const t2 = await textClient(t, d2.textPort);
  const againText = JSON.parse(await say(t2, JSON.stringify({ uid: 'rs', n: 1, id: 'keep-2', reply: 'json' }))) as PublishReport;
  assert.deepEqual(againText, { ...firstText, duplicate: true });
  assert.equal(await say(t2, JSON.stringify({ uid: 'rs', id: 'keep-1' })), 'fail', 'the first answer: it was only stored');

  const classic = await session(t, d2, 'rs');
  await marker(d2, classic, 'rs', 'end');
  await until(() => page.frames.length >= 3, 'the marker at the resuming page');
  assert.deepEqual(
    page.envelopes().map((e) => e.data),
    ['keep me', { uid: 'rs', n: 1, id: 'keep-2', reply: 'json' }, 'end'],
    'the repeats were not delivered again',
  );
});

test('ids: with history off, reports say stored: false, and a bind with since gets a gap and only live messages', async (t) => {
  const d = await startDaemon(t, { history: { enabled: false } });
  assert.equal(d.streams, undefined);
  const before = await send(d.httpUrl, { uid: 'ho', msg: 'before anyone' });
  assert.equal(before.stored, false);
  assert.match(before.id, ULID);
  const backend = await textClient(t, d.textPort);
  const viaText = JSON.parse(await say(backend, JSON.stringify({ uid: 'ho', n: 0, reply: 'json' }))) as PublishReport;
  assert.equal(viaText.stored, false);
  const cli = await cliSend(d, ['--uid', 'ho', '--msg', 'cli']);
  assert.equal(cli.report.stored, false);

  const page = await resuming(t, d, 'ho', { since: before.id });
  const live = await send(d.httpUrl, { uid: 'ho', msg: 'live' });
  assert.equal(live.stored, false);
  await page.frame(2);
  assert.deepEqual(page.parsed(), [
    { type: 'gap', since: before.id },
    { id: live.id, data: 'live' },
  ]);
  // Without since: no gap, nothing replayed, live messages.
  const fresh = await resuming(t, d, 'ho');
  const live2 = await send(d.httpUrl, { uid: 'ho', msg: 'live 2' });
  assert.deepEqual(await fresh.next(1), { id: live2.id, data: 'live 2' });
  await marker(d, fresh, 'ho', 'end');
  assert.equal(fresh.frames.length, 2);
});

// ---------------------------------------------------------------------------------------------
// Text ingress options

test('text: "reply":"json" answers with the report line; bad reply, route, ttl and id are error: lines saying what is wrong; the next line still works', async (t) => {
  const d = await startDaemon(t);
  const page = await session(t, d, 'tj');
  const backend = await textClient(t, d.textPort);
  const good1 = JSON.stringify({ uid: 'tj', msg: 'hi', reply: 'json' });
  const good2 = JSON.stringify({ uid: 'tj', n: 2 });
  const requests = [
    good1,
    JSON.stringify({ uid: 'nobody-here', n: 1, reply: 'json' }),
    JSON.stringify({ uid: 'tj', n: 3, reply: 'xml' }),
    JSON.stringify({ uid: 'tj', n: 4, route: 'sometimes' }),
    JSON.stringify({ uid: 'tj', n: 5, ttl: 'soon' }),
    JSON.stringify({ uid: 'tj', n: 6, ttl: -1 }),
    JSON.stringify({ uid: 'tj', n: 7, id: 'has space' }),
    JSON.stringify({ uid: 'tj', n: 8, id: '' }),
    JSON.stringify({ uid: 'tj', n: 9, id: 'x'.repeat(129) }),
    JSON.stringify({ uid: 'tj', n: 10, id: 42 }),
    good2,
  ];
  // All pipelined in one write: each gets its own reply, in order.
  backend.write(`${requests.join('\n')}\n`);
  const replies = await backend.replies(requests.length);
  assert.equal(replies.length, requests.length);

  const r1 = JSON.parse(replies[0] as string) as PublishReport;
  assert.match(r1.id, ULID);
  assert.equal(r1.stored, true);
  assert.equal(r1.delivered, true);
  assert.equal(r1.route, 'all');
  assert.equal(r1.sent, 1);
  assert.deepEqual(r1.results.map((e) => [e.uid, e.transport, e.status]), [['tj', 'websocket', 'sent']]);
  const r2 = JSON.parse(replies[1] as string) as PublishReport;
  assert.equal(r2.delivered, false);
  assert.equal(r2.stored, true);
  assert.deepEqual(r2.unreached, ['nobody-here']);
  assert.ok(r2.id > r1.id);

  assert.deepEqual(replies.slice(2), [
    'error: "reply" must be "json" when given',
    'error: "route" must be "all" or "live-first"',
    'error: "ttl" must be a duration such as "500ms", "30s", "15m", "24h" or "7d" (a bare number is seconds), got "soon"',
    'error: "ttl" must be a duration such as "30s" or "24h", got -1',
    'error: "id" may use letters, digits and . _ : ~ - only',
    'error: "id" must be a non-empty string',
    'error: "id" is longer than 128 characters',
    'error: "id" must be a non-empty string',
    'ok',
  ]);
  // The refused lines went nowhere.
  await page.frame(2);
  await marker(d, page, 'tj', 'end');
  assert.deepEqual(page.frames, [good1, good2, 'end']);

  // The HTTP API refuses the same options with 400 and the same words.
  for (const [body, want] of [
    [{ uid: 'tj', msg: 'x', route: 'sometimes' }, /"route" must be "all" or "live-first"/],
    [{ uid: 'tj', msg: 'x', ttl: 'soon' }, /"ttl" must be a duration/],
    [{ uid: 'tj', msg: 'x', id: 'a/b' }, /"id" may use/],
  ] as const) {
    const res = await fetch(`${d.httpUrl}/v1/send`, { method: 'POST', body: JSON.stringify(body) });
    assert.equal(res.status, 400);
    assert.match(((await res.json()) as { error: string }).error, want);
  }
});

// ---------------------------------------------------------------------------------------------
// ttl

test('ttl: a message published with ttl "1s" is no longer replayed after ~1.2 s; one without still is', async (t) => {
  const d = await startDaemon(t);
  const started = Date.now();
  const short = await send(d.httpUrl, { uid: 'tt', msg: 'short', ttl: '1s' });
  const backend = await textClient(t, d.textPort);
  assert.equal(await say(backend, JSON.stringify({ uid: 'tt', n: 'short too', ttl: 1 })), 'fail');
  const long = await send(d.httpUrl, { uid: 'tt', msg: 'long' });

  const early = await resuming(t, d, 'tt');
  await early.frame(3);
  assert.deepEqual(
    early.envelopes().map((e) => e.data),
    ['short', { uid: 'tt', n: 'short too', ttl: 1 }, 'long'],
    'stored at first',
  );
  assert.equal(early.envelopes()[0]?.id, short.id);

  await sleep(Math.max(0, started + 1200 - Date.now()));
  const late = await resuming(t, d, 'tt');
  await marker(d, late, 'tt', 'end');
  assert.deepEqual(
    late.envelopes().map((e) => e.id),
    [long.id, late.envelopes().at(-1)?.id],
    'only the message without a ttl is replayed',
  );
  assert.equal(late.envelopes()[0]?.data, 'long');
});

// ---------------------------------------------------------------------------------------------
// The browser client

test('/notify-client.js: serves JavaScript that defines NotifyClient, which resumes, acks and keeps its last id', async (t) => {
  // An ackTimeout far past the hang guard: a live-first send comes back only on the client's ack.
  const d = await startDaemon(t, { dispatch: { ackTimeout: '1h' } });
  const res = await fetch(`http://${d.addresses().ws}/notify-client.js`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/javascript/);
  const js = await res.text();
  assert.match(js, /NotifyClient/);

  type Client = { close(): void; lastId(): string | null };
  type Factory = (opts: Record<string, unknown>) => Client;
  const sandbox: Record<string, unknown> = { WebSocket, URL, setTimeout, clearTimeout };
  sandbox.self = sandbox;
  runInNewContext(js, sandbox, { filename: 'notify-client.js' });
  const NotifyClient = sandbox.NotifyClient as Factory;
  assert.equal(typeof NotifyClient, 'function');
  assert.throws(() => NotifyClient({}), /uid is required/);

  // Two messages while nobody is online; the client gets them on connect, then live ones.
  const m1 = await send(d.httpUrl, { uid: 'nc', msg: 'one' });
  const m2 = await send(d.httpUrl, { uid: 'nc', title: 'two', data: { k: 2 } });
  const saved = new Map<string, string>();
  const storage = { getItem: (k: string) => saved.get(k) ?? null, setItem: (k: string, v: string) => void saved.set(k, v) };
  const got: [unknown, string][] = [];
  const client = NotifyClient({ uid: 'nc', url: d.wsUrl, storage, onMessage: (data: unknown, id: string) => got.push([data, id]) });
  t.after(() => client.close());
  await until(() => got.length === 2, 'the replay at the client');
  assert.deepEqual(JSON.parse(JSON.stringify(got)), [
    ['one', m1.id],
    [{ title: 'two', k: 2 }, m2.id],
  ]);
  // It acks: live-first takes it as delivered without waiting for the timeout.
  const m3 = await within(send(d.httpUrl, { uid: 'nc', msg: 'three', route: 'live-first' }), HANG_MS, 'the report: the client should ack');
  assert.deepEqual(m3.paths, { nc: 'live' });
  assert.equal(client.lastId(), m3.id);
  assert.equal(saved.get('notify:lastId:nc'), m3.id, 'the last id is kept in storage');
  client.close();
  await until(() => sessions(d, 'nc') === 0, 'the client to close');

  // A new client with the same storage resumes from the last id: only what came after.
  const m4 = await send(d.httpUrl, { uid: 'nc', msg: 'four' });
  const got2: [unknown, string][] = [];
  const again = NotifyClient({ uid: 'nc', url: d.wsUrl, storage, onMessage: (data: unknown, id: string) => got2.push([data, id]) });
  t.after(() => again.close());
  await until(() => got2.length >= 1, 'the resumed replay');
  const m5 = await send(d.httpUrl, { uid: 'nc', msg: 'five' });
  await until(() => got2.length >= 2, 'the live message');
  assert.deepEqual(got2, [
    ['four', m4.id],
    ['five', m5.id],
  ]);
});

// ---------------------------------------------------------------------------------------------
// Isolation between uids

test('resume: a message to the uid "*" is that uid\'s alone; a resuming session of another uid never replays it, while a broadcast reaches everyone', async (t) => {
  const d = await startDaemon(t);
  const star = await send(d.httpUrl, { uid: '*', msg: 'for the uid named star' });
  assert.equal(star.stored, true);
  const everyone = await send(d.httpUrl, { broadcast: true, msg: 'for everyone' });
  const alice = await resuming(t, d, 'alice');
  const starUid = await resuming(t, d, '*');
  await marker(d, alice, 'alice', 'alice marker');
  await marker(d, starUid, '*', 'star marker');
  assert.deepEqual(
    alice.envelopes().map((e) => e.data),
    ['for everyone', 'alice marker'],
    'alice replays the broadcast, not the message to the uid "*"',
  );
  assert.deepEqual(
    starUid.envelopes().map((e) => e.id),
    [star.id, everyone.id, starUid.envelopes()[2]?.id],
    'the uid "*" replays its own message and the broadcast, in publish order',
  );
});
