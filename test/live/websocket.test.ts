import assert from 'node:assert/strict';
import { randomBytes, createHash } from 'node:crypto';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { WebSocket, type ClientOptions } from 'ws';
import type { DeliveryReport, ReportEntry } from '../../src/types.js';
import { type TestDaemon, startDaemon } from '../helpers/daemon.js';
import { HANG_MS, type WsClient, bound, roundTrip, textClient, until, within, wsClient } from '../helpers/clients.js';
import { wsFrame } from '../helpers/ws-frame.js';

// ---------------------------------------------------------------------------------------------
// Helpers local to this file
// ---------------------------------------------------------------------------------------------


function index(d: TestDaemon) {
  return d.registry.index('websocket');
}

function push(d: TestDaemon, uid: string, frame: string): Promise<DeliveryReport> {
  return Promise.resolve(d.dispatcher.dispatch({ uids: [uid] }, { id: `m-${frame.length}`, frame, json: false }));
}

/** A ws client with options (the helper takes none); closed resolves with [code, reason]. */
async function openWs(t: TestContext, url: string, opts: ClientOptions = {}): Promise<{ ws: WebSocket; frames: string[]; pings: number[]; closed: Promise<[number, string]> }> {
  const ws = new WebSocket(url, opts);
  const frames: string[] = [];
  const pings: number[] = [];
  ws.on('message', (data) => frames.push(data.toString()));
  ws.on('ping', () => pings.push(Date.now()));
  ws.on('error', () => {});
  const closed = new Promise<[number, string]>((resolve) => ws.on('close', (code, reason) => resolve([code, reason.toString()])));
  t.after(() => ws.terminate());
  await within(once(ws, 'open'), HANG_MS, 'ws open');
  return { ws, frames, pings, closed };
}

/** A client bound to `uid`, with the bind confirmed in the registry. */
async function boundClient(t: TestContext, d: TestDaemon, uid: string, n = 1): Promise<WsClient> {
  const c = await wsClient(t, d.wsUrl, { bind: uid });
  await bound(d, uid, n);
  return c;
}

/** The sessions of `uid` now, for telling them apart in reports. */
function sids(d: TestDaemon, uid: string): string[] {
  return index(d).targets(uid).sort();
}

/**
 * After a bad client was closed: the bystander still gets pushes, and a brand-new connection
 * can still bind and get one.
 */
async function assertStillServing(t: TestContext, d: TestDaemon, bystander: WsClient, tag: string): Promise<void> {
  const n = bystander.frames.length + 1;
  const r = await push(d, 'bystander', `still serving after ${tag}`);
  assert.equal(r.sent, 1, `bystander push after ${tag}: ${JSON.stringify(r)}`);
  assert.equal(await bystander.frame(n), `still serving after ${tag}`);
  assert.equal(bystander.ws.readyState, WebSocket.OPEN);
  const fresh = await boundClient(t, d, `fresh-${tag}`);
  const r2 = await push(d, `fresh-${tag}`, 'hello fresh');
  assert.equal(r2.sent, 1);
  assert.equal(await fresh.frame(1), 'hello fresh');
}

// --- raw WebSocket over net, for frames the ws client will not send ----------------------------

interface RawWs {
  socket: Socket;
  /** Bytes received after the 101 response. */
  data(): Buffer;
  /** Resolves once the server's close frame has arrived; [code, reason]. */
  closeFrame(timeoutMs?: number): Promise<[number, string]>;
  /** Resolves when the TCP connection has closed. */
  ended: Promise<void>;
}

function hostPort(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(address.slice(i + 1)) };
}

/** Opens a TCP connection to the ws port and completes the upgrade handshake by hand. */
async function rawWs(t: TestContext, d: TestDaemon, path = '/'): Promise<RawWs> {
  const { host, port } = hostPort(d.addresses().ws);
  const socket = connect({ host, port });
  t.after(() => socket.destroy());
  socket.on('error', () => {});
  const ended = new Promise<void>((resolve) => socket.on('close', () => resolve()));
  await within(once(socket, 'connect'), HANG_MS, 'tcp connect');
  const key = randomBytes(16).toString('base64');
  socket.write(
    `GET ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  let buf = Buffer.alloc(0);
  let headerDone = false;
  let resolveHeader!: (head: string) => void;
  const header = new Promise<string>((resolve) => (resolveHeader = resolve));
  socket.on('data', (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    if (!headerDone) {
      const end = buf.indexOf('\r\n\r\n');
      if (end === -1) return;
      headerDone = true;
      const head = buf.subarray(0, end).toString('latin1');
      buf = buf.subarray(end + 4);
      resolveHeader(head);
    }
  });
  const head = await within(header, HANG_MS, 'upgrade response');
  assert.match(head, /^HTTP\/1\.1 101 /);
  const accept = createHash('sha1').update(`${key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11`).digest('base64');
  assert.match(head, new RegExp(`sec-websocket-accept: ${accept.replace(/[+/]/g, '\\$&')}`, 'i'));
  return {
    socket,
    ended,
    data: () => buf,
    async closeFrame(timeoutMs = HANG_MS) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = findCloseFrame(buf);
        if (found) return found;
        if (Date.now() > deadline) throw new Error(`no close frame within ${timeoutMs} ms; got ${buf.length} bytes: ${buf.subarray(0, 64).toString('hex')}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
  };
}

/** Scans unmasked server frames for a close frame. */
function findCloseFrame(buf: Buffer): [number, string] | undefined {
  let off = 0;
  while (off + 2 <= buf.length) {
    const b0 = buf[off] as number;
    const b1 = buf[off + 1] as number;
    assert.equal(b1 & 0x80, 0, 'server frames are never masked');
    let len = b1 & 0x7f;
    let p = off + 2;
    if (len === 126) {
      if (p + 2 > buf.length) return undefined;
      len = buf.readUInt16BE(p);
      p += 2;
    } else if (len === 127) {
      if (p + 8 > buf.length) return undefined;
      len = Number(buf.readBigUInt64BE(p));
      p += 8;
    }
    if (p + len > buf.length) return undefined;
    if ((b0 & 0x0f) === 0x8) {
      const payload = buf.subarray(p, p + len);
      return payload.length >= 2 ? [payload.readUInt16BE(0), payload.subarray(2).toString()] : [1005, ''];
    }
    off = p + len;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Binding
// ---------------------------------------------------------------------------------------------

test('websocket: the first text frame binds the uid, with no frame sent back', async (t) => {
  const d = await startDaemon(t);
  const c = await wsClient(t, d.wsUrl, { bind: 'uid1' });
  await bound(d, 'uid1');
  await roundTrip(c.ws);
  assert.equal(c.frames.length, 0, 'nothing is sent on bind');

  const r = await push(d, 'uid1', 'first push');
  assert.equal(r.delivered, true);
  assert.equal(r.sent, 1);
  assert.deepEqual(r.results, [{ uid: 'uid1', transport: 'websocket', target: sids(d, 'uid1')[0], status: 'sent' }]);
  assert.equal(await c.frame(1), 'first push');
  await roundTrip(c.ws);
  assert.deepEqual(c.frames, ['first push'], 'the push is the very first frame the client sees');
});

test('websocket: ?uid= in the URL binds on any path, with no frame sent back', async (t) => {
  const d = await startDaemon(t);
  const base = d.wsUrl.replace(/\/$/, '');
  const a = await wsClient(t, `${base}/any/path?uid=u2`);
  await bound(d, 'u2');
  const b = await wsClient(t, `${base}/?foo=1&uid=caf%C3%A9%20%E2%82%AC`);
  await bound(d, 'café €');
  const c = await wsClient(t, `${base}/deep/er/path.html?uid=u2`);
  await bound(d, 'u2', 2);
  for (const x of [a, b, c]) {
    await roundTrip(x.ws);
    assert.equal(x.frames.length, 0, 'nothing is sent on bind');
  }

  // A URL-bound session ignores its first text frame: it is already bound.
  a.ws.send('other');
  await roundTrip(a.ws);
  assert.equal(index(d).has('other'), false);
  assert.equal(index(d).targets('u2').length, 2);

  const r = await push(d, 'u2', 'to u2');
  assert.equal(r.sent, 2);
  assert.equal(await a.frame(1), 'to u2');
  assert.equal(await c.frame(1), 'to u2');
  const r2 = await push(d, 'café €', 'to café');
  assert.equal(r2.sent, 1);
  assert.equal(await b.frame(1), 'to café');
  assert.equal((await push(d, 'other', 'nope')).delivered, false);
});

test('websocket: several sessions per uid all get each push; a new connection never evicts an old one', async (t) => {
  const d = await startDaemon(t);
  const clients: WsClient[] = [];
  for (let i = 1; i <= 3; i++) {
    clients.push(await wsClient(t, d.wsUrl, { bind: 'uid1' }));
    await bound(d, 'uid1', i);
  }
  const r = await push(d, 'uid1', 'to all three');
  assert.equal(r.delivered, true);
  assert.equal(r.sent, 3);
  assert.equal(r.failed, 0);
  assert.equal(r.results.length, 3);
  assert.ok(r.results.every((e) => e.status === 'sent' && e.uid === 'uid1' && e.transport === 'websocket'), JSON.stringify(r.results));
  const targets = r.results.map((e) => e.target).sort();
  assert.equal(new Set(targets).size, 3, `distinct targets: ${targets.join(',')}`);
  assert.deepEqual(targets, sids(d, 'uid1'));
  for (const c of clients) {
    assert.equal(await c.frame(1), 'to all three');
    assert.equal(c.ws.readyState, WebSocket.OPEN, 'no session was closed by a later bind');
  }
  // Via the Text ingress too.
  const backend = await textClient(t, d.textPort);
  backend.write('{"uid":"uid1","n":2}\n');
  assert.deepEqual(await backend.replies(1), ['ok']);
  for (const c of clients) assert.equal(await c.frame(2), '{"uid":"uid1","n":2}');
});

test('websocket: closing an old session never unregisters a newer one of the same uid', async (t) => {
  const d = await startDaemon(t);
  const a = await boundClient(t, d, 'uid1');
  const [sidA] = sids(d, 'uid1');
  const b = await boundClient(t, d, 'uid1', 2);
  const sidB = sids(d, 'uid1').find((s) => s !== sidA);
  assert.ok(sidB);

  a.ws.close(1000, 'bye');
  assert.equal((await within(a.closed, HANG_MS, 'A closed'))[0], 1000);
  await bound(d, 'uid1', 1);
  assert.deepEqual(sids(d, 'uid1'), [sidB]);

  const r = await push(d, 'uid1', 'after A left');
  assert.equal(r.delivered, true);
  assert.deepEqual(r.results, [{ uid: 'uid1', transport: 'websocket', target: sidB, status: 'sent' }]);
  assert.equal(await b.frame(1), 'after A left');
  assert.equal(a.frames.length, 0);

  // A Text backend sees ok while B is there, fail after B leaves.
  const backend = await textClient(t, d.textPort);
  backend.write('{"uid":"uid1","step":1}\n');
  assert.deepEqual(await backend.replies(1), ['ok']);
  assert.equal(await b.frame(2), '{"uid":"uid1","step":1}');

  b.ws.close();
  await within(b.closed, HANG_MS, 'B closed');
  await bound(d, 'uid1', 0);
  assert.equal(index(d).has('uid1'), false);
  assert.equal(d.registry.uids().has('uid1'), false);

  const r2 = await push(d, 'uid1', 'nobody home');
  assert.equal(r2.delivered, false);
  assert.equal(r2.sent, 0);
  assert.deepEqual(r2.results, []);
  assert.deepEqual(r2.unreached, ['uid1']);
  backend.write('{"uid":"uid1","step":2}\n');
  assert.deepEqual(await backend.replies(2), ['ok', 'fail']);
});

test('websocket: frames after the bind are ignored; a second text frame does not rebind', async (t) => {
  const d = await startDaemon(t);
  const c = await boundClient(t, d, 'uid1');
  c.ws.send('uid2');
  c.ws.send('{"uid":"uid3"}');
  c.ws.send(Buffer.from('uid4'), { binary: true });
  await roundTrip(c.ws);
  assert.equal(c.ws.readyState, WebSocket.OPEN, 'later frames, even binary ones, do not close the session');
  for (const uid of ['uid2', 'uid3', 'uid4', '{"uid":"uid3"}']) assert.equal(index(d).has(uid), false, uid);
  assert.deepEqual([...index(d).uids()], ['uid1']);
  assert.equal(index(d).targetCount, 1);

  assert.equal((await push(d, 'uid2', 'not for me')).delivered, false);
  const r = await push(d, 'uid1', 'for uid1');
  assert.equal(r.sent, 1);
  assert.equal(await c.frame(1), 'for uid1');
  await roundTrip(c.ws);
  assert.deepEqual(c.frames, ['for uid1']);
});

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

test('websocket: pushed frames carry the frame text unchanged', async (t) => {
  const d = await startDaemon(t);
  const c = await boundClient(t, d, 'uid1');
  const unit = 'é€😀中"\'\\\n';
  const big = unit.repeat(Math.ceil((60 * 1024) / Buffer.byteLength(unit)));
  assert.ok(Buffer.byteLength(big) >= 60 * 1024);
  const frames = [
    'plain',
    'héllo wörld — 日本語 — 👋🏽 — \u0000 nul \u2028 sep',
    `"double" 'single' \`back\` \\backslash\\ {"json": "in \\"quotes\\""}`,
    'line1\nline2\r\nline3\r\n\n',
    '   leading and trailing spaces   ',
    '{"uid":"uid1","percent":"88%"}',
    big,
    'x'.repeat(60 * 1024),
  ];
  for (const [i, f] of frames.entries()) {
    const r = await push(d, 'uid1', f);
    assert.equal(r.sent, 1);
    const got = await c.frame(i + 1);
    assert.equal(got.length, f.length, `frame #${i + 1} length`);
    assert.ok(got === f, `frame #${i + 1} differs`);
  }

  // Through the HTTP API: a message with only msg is sent as msg alone.
  const msg = 'über "quoted"\nsecond line 😀';
  const res = await fetch(`${d.httpUrl}/v1/send`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ uid: 'uid1', msg }),
  });
  assert.equal(res.status, 200);
  const report = (await res.json()) as DeliveryReport;
  assert.equal(report.sent, 1);
  assert.equal(await c.frame(frames.length + 1), msg);

  // Through the Text ingress: the line itself, byte for byte.
  const line = JSON.stringify({ uid: 'uid1', text: 'ünï "cødé" ✓', n: 1 });
  const backend = await textClient(t, d.textPort);
  backend.write(`${line}\n`);
  assert.deepEqual(await backend.replies(1), ['ok']);
  assert.equal(await c.frame(frames.length + 2), line);
});

// ---------------------------------------------------------------------------------------------
// Invalid client frames
// ---------------------------------------------------------------------------------------------

test('websocket: invalid UTF-8 in a text frame closes that session with 1007; the rest keep working', async (t) => {
  const d = await startDaemon(t);
  const bystander = await boundClient(t, d, 'bystander');

  // As the first (bind) frame. The ws client does not validate what it sends.
  const a = await wsClient(t, d.wsUrl);
  a.ws.send(Buffer.from([0x75, 0xff, 0xfe]), { binary: false });
  assert.equal((await within(a.closed, HANG_MS, '1007 close'))[0], 1007);
  assert.equal(index(d).has('u\ufffd\ufffd'), false);

  // After the bind: the session ends and is unregistered.
  const b = await boundClient(t, d, 'victim');
  b.ws.send(Buffer.from([0xc3, 0x28]), { binary: false });
  assert.equal((await within(b.closed, HANG_MS, '1007 close'))[0], 1007);
  await bound(d, 'victim', 0);

  // Over a raw socket too (a truncated multibyte sequence).
  const raw = await rawWs(t, d);
  raw.socket.write(wsFrame(0x1, Buffer.from([0x61, 0xe2, 0x82])));
  assert.equal((await raw.closeFrame())[0], 1007);

  await assertStillServing(t, d, bystander, '1007');
});

test('websocket: a frame over ws.maxPayloadBytes closes that session with 1009; the rest keep working', async (t) => {
  const d = await startDaemon(t, { ws: { maxPayloadBytes: 64 } });
  const bystander = await boundClient(t, d, 'bystander');

  const big = await wsClient(t, d.wsUrl);
  big.ws.send('u'.repeat(65));
  assert.equal((await within(big.closed, HANG_MS, '1009 close'))[0], 1009);
  assert.equal(index(d).has('u'.repeat(65)), false);

  // Exactly at the limit is fine.
  const edge = await boundClient(t, d, 'e'.repeat(64));
  assert.equal(edge.ws.readyState, WebSocket.OPEN);

  // A bound session that sends too much later is closed and unregistered.
  const victim = await boundClient(t, d, 'victim');
  victim.ws.send('x'.repeat(1000));
  assert.equal((await within(victim.closed, HANG_MS, '1009 close'))[0], 1009);
  await bound(d, 'victim', 0);

  assert.equal((await push(d, 'e'.repeat(64), 'edge')).sent, 1);
  assert.equal(await edge.frame(1), 'edge');
  await assertStillServing(t, d, bystander, '1009');
});

test('websocket: a binary first frame closes that session with 1003 and binds nothing', async (t) => {
  const d = await startDaemon(t);
  const bystander = await boundClient(t, d, 'bystander');
  const c = await wsClient(t, d.wsUrl);
  c.ws.send(Buffer.from('uid1'), { binary: true });
  const [code] = await within(c.closed, HANG_MS, '1003 close');
  assert.equal(code, 1003);
  assert.equal(index(d).has('uid1'), false);
  assert.equal((await push(d, 'uid1', 'x')).delivered, false);
  await assertStillServing(t, d, bystander, '1003');
});

test('websocket: an empty uid closes that session with 1008 (frame or URL)', async (t) => {
  const d = await startDaemon(t);
  const bystander = await boundClient(t, d, 'bystander');
  const a = await wsClient(t, d.wsUrl);
  a.ws.send('');
  assert.deepEqual(await within(a.closed, HANG_MS, '1008 close'), [1008, 'empty uid']);

  const b = await wsClient(t, `${d.wsUrl}?uid=`);
  assert.equal((await within(b.closed, HANG_MS, '1008 close'))[0], 1008);

  assert.equal(index(d).has(''), false);
  assert.deepEqual([...index(d).uids()], ['bystander']);
  await assertStillServing(t, d, bystander, '1008-empty');
});

test('websocket: a uid over 256 UTF-8 bytes closes that session with 1008; 256 bytes binds', async (t) => {
  const d = await startDaemon(t);
  const bystander = await boundClient(t, d, 'bystander');

  const long = await wsClient(t, d.wsUrl);
  long.ws.send('a'.repeat(257));
  const [code, reason] = await within(long.closed, HANG_MS, '1008 close');
  assert.equal(code, 1008);
  assert.match(reason, /256/);

  // 86 three-byte characters: 86 UTF-16 units but 258 bytes.
  const euro = await wsClient(t, d.wsUrl);
  euro.ws.send('€'.repeat(86));
  assert.equal((await within(euro.closed, HANG_MS, '1008 close'))[0], 1008);

  const viaUrl = await wsClient(t, `${d.wsUrl}?uid=${'b'.repeat(257)}`);
  assert.equal((await within(viaUrl.closed, HANG_MS, '1008 close'))[0], 1008);

  assert.equal(index(d).uidCount, 1, 'only the bystander is bound');

  // The limit itself is allowed.
  const ok = await boundClient(t, d, 'a'.repeat(256));
  const okEuro = await boundClient(t, d, `${'€'.repeat(85)}a`); // 256 bytes
  assert.equal((await push(d, 'a'.repeat(256), 'max')).sent, 1);
  assert.equal(await ok.frame(1), 'max');
  assert.equal((await push(d, `${'€'.repeat(85)}a`, 'max€')).sent, 1);
  assert.equal(await okEuro.frame(1), 'max€');
  await assertStillServing(t, d, bystander, '1008-long');
});

test('websocket: an unmasked client frame (or a reserved bit) over a raw socket closes it with 1002', async (t) => {
  const d = await startDaemon(t);
  const bystander = await boundClient(t, d, 'bystander');

  // The raw handshake works and a masked frame binds: the baseline.
  const good = await rawWs(t, d, '/raw');
  good.socket.write(wsFrame(0x1, Buffer.from('rawuid')));
  await bound(d, 'rawuid');

  // Unmasked first frame.
  const a = await rawWs(t, d);
  a.socket.write(wsFrame(0x1, Buffer.from('uid1'), { mask: false }));
  assert.equal((await a.closeFrame())[0], 1002);
  await within(a.ended, HANG_MS, 'server to end the connection');
  assert.equal(index(d).has('uid1'), false);

  // Unmasked frame from a bound session: that session is closed and unregistered.
  good.socket.write(wsFrame(0x1, Buffer.from('late'), { mask: false }));
  assert.equal((await good.closeFrame())[0], 1002);
  await bound(d, 'rawuid', 0);

  // RSV1 set with no extension negotiated.
  const b = await rawWs(t, d);
  b.socket.write(wsFrame(0x1, Buffer.from('uid1'), { rsv: 4 }));
  assert.equal((await b.closeFrame())[0], 1002);

  // A reserved opcode.
  const c = await rawWs(t, d);
  c.socket.write(wsFrame(0x3, Buffer.from('uid1')));
  assert.equal((await c.closeFrame())[0], 1002);

  assert.deepEqual([...index(d).uids()], ['bystander']);
  await assertStillServing(t, d, bystander, '1002');
});

// ---------------------------------------------------------------------------------------------
// Slow consumers and heartbeats
// ---------------------------------------------------------------------------------------------

test('websocket: a slow consumer is failed, terminated and unregistered; the healthy session of the uid gets every push', async (t) => {
  const maxBufferedBytes = 1024;
  const d = await startDaemon(t, { ws: { maxBufferedBytes } });

  // The slow one: a raw client that completed the upgrade, bound, and then stops reading.
  const slow = await rawWs(t, d);
  slow.socket.write(wsFrame(0x1, Buffer.from('uid1')));
  await bound(d, 'uid1');
  const [slowSid] = sids(d, 'uid1');
  assert.ok(slowSid);
  slow.socket.pause();

  const healthy = await boundClient(t, d, 'uid1', 2);
  const healthySid = sids(d, 'uid1').find((s) => s !== slowSid);
  assert.ok(healthySid);

  const big = 'x'.repeat(60 * 1024);
  const frameBytes = Buffer.byteLength(big) + 16;
  const MAX_PUSHES = 2000; // ~120 MB: far beyond any loopback socket buffer
  let failure: { reason?: string } | undefined;
  let pushes = 0;
  while (failure === undefined && pushes < MAX_PUSHES) {
    pushes++;
    const r = await push(d, 'uid1', `${pushes}:${big}`);
    const mine: ReportEntry | undefined = r.results.find((e) => e.target === slowSid);
    const theirs: ReportEntry | undefined = r.results.find((e) => e.target === healthySid);
    assert.ok(mine, `push #${pushes} has an entry for the slow session: ${JSON.stringify(r.results)}`);
    assert.equal(theirs?.status, 'sent', `push #${pushes} to the healthy session: ${JSON.stringify(theirs)}`);
    if (mine.status === 'failed') failure = mine;
    else assert.equal(mine.status, 'sent');
    // Let the healthy client read everything, so only the slow one falls behind.
    const got = await healthy.frame(pushes);
    assert.ok(got.startsWith(`${pushes}:`) && got.length === big.length + `${pushes}:`.length, `healthy frame #${pushes}`);
  }
  assert.ok(failure, `the slow session was never failed in ${MAX_PUSHES} pushes of 60 KB`);
  t.diagnostic(`slow consumer failed after ${pushes} pushes: ${failure.reason}`);
  assert.match(failure.reason ?? '', /^slow consumer/);
  const unsent = Number(/(\d+) bytes unsent/.exec(failure.reason ?? '')?.[1]);
  assert.ok(Number.isFinite(unsent) && unsent > maxBufferedBytes, `reason reports the backlog: ${failure.reason}`);
  // Memory stays bounded: the backlog held for the slow session never exceeds the limit plus one frame.
  assert.ok(unsent <= maxBufferedBytes + frameBytes, `backlog ${unsent} bytes > ${maxBufferedBytes} + one frame`);

  // Terminated and unregistered; the healthy session stays.
  await until(() => sids(d, 'uid1').length === 1 && sids(d, 'uid1')[0] === healthySid, 'the slow session to be unregistered');
  assert.equal(index(d).uidOf(slowSid), undefined);
  // The server really dropped the TCP connection: once the client reads again, it sees the end.
  slow.socket.resume();
  await within(slow.ended, HANG_MS, 'the slow connection to be closed by the server');

  // From now on every push goes to the healthy session alone.
  for (let i = 1; i <= 5; i++) {
    const n = pushes + i;
    const r = await push(d, 'uid1', `after ${i}`);
    assert.deepEqual(r.results, [{ uid: 'uid1', transport: 'websocket', target: healthySid, status: 'sent' }]);
    assert.equal(await healthy.frame(n), `after ${i}`);
  }
  assert.equal(healthy.frames.length, pushes + 5, 'the healthy session got every push, no more, no less');
  assert.equal(healthy.ws.readyState, WebSocket.OPEN);

  const res = await fetch(`${d.httpUrl}/healthz`);
  const health = (await res.json()) as { transports: { websocket: { connections: number; sessions: number } } };
  assert.equal(health.transports.websocket.connections, 1);
  assert.equal(health.transports.websocket.sessions, 1);
});

test('websocket: a client that does not answer pings is terminated and unregistered; a normal one stays', async (t) => {
  const intervalMs = 50;
  const d = await startDaemon(t, { ws: { heartbeatIntervalMs: intervalMs } });
  const normal = await boundClient(t, d, 'normal');
  const mute = await openWs(t, d.wsUrl, { autoPong: false });
  mute.ws.send('mute');
  // It may be gone before we look, so only wait for "bound or already closed".
  const [code] = await within(mute.closed, HANG_MS, 'the mute client to be terminated');
  assert.equal(code, 1006, 'terminated without a close handshake');
  assert.ok(mute.pings.length >= 1, 'the server pinged it');
  await bound(d, 'mute', 0);
  assert.equal((await push(d, 'mute', 'x')).delivered, false);

  // The normal client answers pings and survives more intervals than the mute one did: three
  // pings after the mute one was already gone.
  const pings: number[] = [];
  normal.ws.on('ping', () => pings.push(Date.now()));
  await until(() => pings.length >= 3, 'the normal client to be pinged three times');
  assert.equal(normal.ws.readyState, WebSocket.OPEN);
  assert.equal(index(d).targets('normal').length, 1);
  const r = await push(d, 'normal', 'still here');
  assert.equal(r.sent, 1);
  assert.equal(await normal.frame(1), 'still here');
});

// ---------------------------------------------------------------------------------------------
// Lifecycle, demo page, broadcast
// ---------------------------------------------------------------------------------------------

test('websocket: stop() closes every session with 1001, then dispatch rejects with NOTIFY_ERR_CLOSED', async (t) => {
  const d = await startDaemon(t);
  const a = await boundClient(t, d, 'uid1');
  const b = await boundClient(t, d, 'uid1', 2);
  const c = await boundClient(t, d, 'uid2');
  const unbound = await wsClient(t, d.wsUrl);
  const viaUrl = await wsClient(t, `${d.wsUrl}x?uid=uid3`);
  await bound(d, 'uid3');

  await d.stop();
  // 1001 with a reason: closed by the close handshake (the terminate timer would give 1006).
  for (const [name, x] of Object.entries({ a, b, c, unbound, viaUrl })) {
    const [code, reason] = await within(x.closed, HANG_MS, `${name} to close`);
    assert.equal(code, 1001, `${name} close code`);
    assert.equal(reason, 'server shutting down');
  }
  assert.equal(index(d).targetCount, 0);
  assert.equal(index(d).uidCount, 0);

  await assert.rejects(push(d, 'uid1', 'too late'), { code: 'NOTIFY_ERR_CLOSED' });
  await assert.rejects(async () => d.dispatcher.dispatch({ broadcast: true }, { id: 'late', frame: 'too late', json: false }), { code: 'NOTIFY_ERR_CLOSED' });
  await d.stop(); // idempotent

  // The port no longer accepts connections.
  const late = new WebSocket(d.wsUrl);
  t.after(() => late.terminate());
  const [err] = (await within(once(late, 'error'), HANG_MS, 'connect error')) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'ECONNREFUSED');
});

test('websocket: stop() is not held up by connections to the ws port that never finished an HTTP request', async (t) => {
  // A browser's speculative preconnect, or a client that stalls mid-request: a TCP connection to
  // the ws port with no (complete) request. Stopping must not wait for it beyond the transport's
  // close timeout (2000 ms). The daemon's own deadline, shutdown.timeoutMs, is far past the hang
  // guard here: a stop that waited for those connections would not come back.
  const d = await startDaemon(t, { shutdown: { timeoutMs: 3_600_000 } });
  const { host, port } = hostPort(d.addresses().ws);
  const sockets: { socket: Socket; ended: Promise<void> }[] = [];
  for (const first of ['', 'GET / HTTP/1.1\r\nHost: x\r\n']) {
    const socket = connect({ host, port });
    t.after(() => socket.destroy());
    socket.on('error', () => {});
    const ended = new Promise<void>((resolve) => socket.on('close', () => resolve()));
    await within(once(socket, 'connect'), HANG_MS, 'tcp connect');
    if (first) socket.write(first);
    sockets.push({ socket, ended });
  }
  const session = await boundClient(t, d, 'uid1');
  await new Promise((r) => setTimeout(r, 50)); // let the server see the bytes

  await within(d.stop(), HANG_MS, 'd.stop() with two idle HTTP connections open on the ws port');
  assert.equal((await within(session.closed, HANG_MS, 'the session to close'))[0], 1001);
  for (const s of sockets) await within(s.ended, HANG_MS, 'the server to close the idle connection');
});

test('websocket: GET / serves the demo page, other paths 404, and the same port still upgrades', async (t) => {
  const d = await startDaemon(t);
  const base = `http://${d.addresses().ws}`;

  const res = await fetch(`${base}/`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
  const html = await res.text();
  assert.match(html, /<script[\s>]/);
  assert.match(html, /<script src="\/notify-client\.js"><\/script>/);
  assert.match(html, /NotifyClient\(/);
  const client = await fetch(`${base}/notify-client.js`);
  assert.equal(client.status, 200);
  assert.match(client.headers.get('content-type') ?? '', /^text\/javascript/);
  assert.match(await client.text(), /new WebSocket\(/);

  const withQuery = await fetch(`${base}/?uid=someone`);
  assert.equal(withQuery.status, 200);
  assert.equal(await withQuery.text(), html);

  const nope = await fetch(`${base}/nope`);
  assert.equal(nope.status, 404);
  await nope.arrayBuffer();
  const post = await fetch(`${base}/`, { method: 'POST', body: 'x' });
  assert.equal(post.status, 404);
  await post.arrayBuffer();

  // Upgrades on the same port, on / and on the 404 path alike.
  const a = await boundClient(t, d, 'uid1');
  const b = await wsClient(t, `${d.wsUrl}nope?uid=uid1`);
  await bound(d, 'uid1', 2);
  const r = await push(d, 'uid1', 'hello page');
  assert.equal(r.sent, 2);
  assert.equal(await a.frame(1), 'hello page');
  assert.equal(await b.frame(1), 'hello page');

  // HTTP still served after upgrades.
  const again = await fetch(`${base}/`);
  assert.equal(again.status, 200);
  assert.equal(await again.text(), html);
});

test('websocket: broadcast reaches every bound session of every uid, and no unbound connection', async (t) => {
  const d = await startDaemon(t);
  const a1 = await boundClient(t, d, 'uid1');
  const a2 = await boundClient(t, d, 'uid1', 2);
  const b = await boundClient(t, d, 'uid2');
  const c = await wsClient(t, `${d.wsUrl}?uid=uid3`);
  await bound(d, 'uid3');
  const idle = await wsClient(t, d.wsUrl); // connected, never bound
  const rejected = await wsClient(t, d.wsUrl);
  rejected.ws.send(''); // closed with 1008, never bound
  await within(rejected.closed, HANG_MS, 'the empty-uid client to close');

  const r = await d.dispatcher.dispatch({ broadcast: true }, { id: 'all', frame: 'to everyone', json: false });
  assert.equal(r.delivered, true);
  assert.equal(r.sent, 4);
  assert.equal(r.failed, 0);
  assert.deepEqual(r.unreached, []);
  assert.deepEqual(r.results.map((e) => e.uid).sort(), ['uid1', 'uid1', 'uid2', 'uid3']);
  assert.equal(new Set(r.results.map((e) => e.target)).size, 4);
  for (const x of [a1, a2, b, c]) assert.equal(await x.frame(1), 'to everyone');

  // Through the HTTP API as well.
  const res = await fetch(`${d.httpUrl}/v1/send`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ broadcast: true, msg: 'http everyone' }),
  });
  assert.equal(res.status, 200);
  assert.equal(((await res.json()) as DeliveryReport).sent, 4);
  for (const x of [a1, a2, b, c]) assert.equal(await x.frame(2), 'http everyone');

  // The idle connection got neither broadcast: once it binds, its first frame is the next push.
  idle.ws.send('late');
  await bound(d, 'late');
  assert.equal((await push(d, 'late', 'only for late')).sent, 1);
  assert.equal(await idle.frame(1), 'only for late');
  assert.deepEqual(idle.frames, ['only for late']);
  assert.deepEqual(rejected.frames, []);
});
