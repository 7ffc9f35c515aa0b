import { MemoryTargetIndex } from '../../src/store/target-index.js';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { test } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { TRANSPORT_TYPES, type TransportType } from '../../src/push/kinds.js';
import type { DeliveryResult, Message, Uid } from '../../src/types.js';
import { HANG_MS, session, type TextClient, textClient, until, wsClient } from '../helpers/clients.js';
import { startDaemon } from '../helpers/daemon.js';
import { IndexedTransport } from '../helpers/recording-transport.js';

// Generous waits: the CI box is a noisy 2-core machine. Tests wait on conditions, so they
// normally finish long before these.

const EMPTY_LINE = 'error: empty line; send one JSON object per line, e.g. {"uid":"uid1","msg":"hi"}';
const NOT_OBJECT = 'error: expected a JSON object, e.g. {"uid":"uid1","msg":"hi"}';
const NOT_UTF8 = 'error: line is not valid UTF-8';

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Resolves true if the connection closed within `ms`, false if it is still open. */
async function closedWithin(c: TextClient, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  // Clear the timer either way, so that no test leaves a pending timeout behind.
  return Promise.race([c.ended, timeout]).finally(() => clearTimeout(timer));
}

/** A request line of exactly `bytes` bytes (without its line ending), addressed to `uid`. */
function lineOfBytes(bytes: number, uid = 'uid1'): string {
  const head = `{"uid":"${uid}","pad":"`;
  const tail = '"}';
  const line = `${head}${'x'.repeat(bytes - head.length - tail.length)}${tail}`;
  assert.equal(Buffer.byteLength(line), bytes);
  return line;
}

// ---------------------------------------------------------------------------------------------
// Line endings and framing

test('text: \\n and \\r\\n line endings; the WS frame is the line without its ending, byte for byte', async (t) => {
  const d = await startDaemon(t);
  const page = await session(t, d, 'uid1');
  const c = await textClient(t, d.textPort);
  let raw = '';
  c.socket.on('data', (chunk: string) => (raw += chunk));

  const lf = '{"uid":"uid1","percent":"10%"}';
  const crlf = '{"uid":"uid1","percent":"20%"}';
  // Whitespace around the object and non-ASCII text are part of the frame too: nothing is trimmed.
  const spaced = '  {"uid" : "uid1", "msg":"café 😀 \\u00e9"}\t ';
  c.write(`${lf}\n`);
  assert.deepEqual(await c.replies(1), ['ok']);
  assert.equal(await page.frame(1), lf);

  c.write(`${crlf}\r\n`);
  assert.deepEqual(await c.replies(2), ['ok', 'ok']);
  assert.equal(await page.frame(2), crlf, 'the CR is not part of the frame');

  c.write(`${spaced}\r\n`);
  assert.deepEqual(await c.replies(3), ['ok', 'ok', 'ok']);
  assert.equal(await page.frame(3), spaced);

  // Mixed endings in one write.
  c.write(`${lf}\r\n${crlf}\n${lf}\r\n`);
  await c.replies(6);
  assert.deepEqual(await Promise.all([page.frame(4), page.frame(5), page.frame(6)]), [lf, crlf, lf]);

  // Replies always end with a bare \n, whatever the request used.
  assert.equal(raw, 'ok\n'.repeat(6));
  assert.equal(page.frames.length, 6);
});

test('text: a CR that is not the last byte of the line stays in it', async (t) => {
  const d = await startDaemon(t);
  const page = await session(t, d, 'uid1');
  const c = await textClient(t, d.textPort);
  // "\r" between JSON tokens is whitespace, so this line is valid JSON; only a trailing CR is stripped.
  const line = '{"uid":"uid1",\r"msg":"cr inside"}';
  c.write(`${line}\r\n`);
  assert.deepEqual(await c.replies(1), ['ok']);
  assert.equal(await page.frame(1), line);
});

// ---------------------------------------------------------------------------------------------
// Pipelining and split lines

test('text: 200 pipelined lines in one write are answered in request order (ok / fail / error mixed)', async (t) => {
  const d = await startDaemon(t);
  const page = await session(t, d, 'uid1');
  const c = await textClient(t, d.textPort);
  let raw = '';
  c.socket.on('data', (chunk: string) => (raw += chunk));

  const requests: string[] = [];
  const expected: string[] = [];
  const delivered: string[] = [];
  for (let i = 0; i < 200; i++) {
    if (i % 3 === 0) {
      const line = JSON.stringify({ uid: 'uid1', seq: i });
      requests.push(line);
      delivered.push(line);
      expected.push('ok');
    } else if (i % 3 === 1) {
      requests.push(JSON.stringify({ uid: `offline-${i}`, seq: i }));
      expected.push('fail');
    } else {
      requests.push(`{"seq":${i}}`);
      expected.push('error: missing "uid" (or "broadcast": true)');
    }
  }
  c.write(`${requests.join('\n')}\n`);

  assert.deepEqual(await c.replies(200), expected);
  assert.equal(raw, `${expected.join('\n')}\n`, 'exact reply bytes');
  await page.frame(delivered.length);
  assert.deepEqual(page.frames, delivered, 'the session gets the delivered lines, in order');
});

test('text: a line written byte by byte, with delays, is one request', async (t) => {
  const d = await startDaemon(t);
  const page = await session(t, d, 'uid1');
  const c = await textClient(t, d.textPort);
  c.socket.setNoDelay(true);

  const line = '{"uid":"uid1","msg":"split"}';
  const bytes = Buffer.from(`${line}\r\n`);
  for (let i = 0; i < bytes.length; i++) {
    c.write(bytes.subarray(i, i + 1));
    await sleep(2);
    // Nothing is answered before the newline arrives.
    if (i < bytes.length - 1) assert.equal(c.lines.length, 0, `no reply after byte ${i}`);
  }
  assert.deepEqual(await c.replies(1), ['ok']);
  assert.equal(await page.frame(1), line);

  // The end of one line and the start of the next in the same write, the rest later.
  const a = '{"uid":"uid1","msg":"A"}';
  const b = '{"uid":"nobody","msg":"B"}';
  c.write(`${a}\n${b.slice(0, 10)}`);
  await c.replies(2);
  await sleep(10);
  c.write(b.slice(10, 20));
  await sleep(10);
  c.write(`${b.slice(20)}\n`);
  assert.deepEqual(await c.replies(3), ['ok', 'ok', 'fail']);
  assert.equal(await page.frame(2), a);
  assert.equal(page.frames.length, 2);
});

test('text: multi-byte UTF-8 characters split between writes arrive intact', async (t) => {
  const d = await startDaemon(t);
  const page = await session(t, d, 'uid1');
  const c = await textClient(t, d.textPort);
  c.socket.setNoDelay(true);

  const line = '{"uid":"uid1","msg":"Grüße € 😀 中文"}';
  const bytes = Buffer.from(`${line}\n`);
  // Cut inside ü (2 bytes), twice inside € (3 bytes), three times inside 😀 (4 bytes) and inside 中.
  const cuts = new Set<number>();
  for (const [ch, n] of [['ü', 2], ['€', 3], ['😀', 4], ['中', 3]] as const) {
    const at = bytes.indexOf(Buffer.from(ch));
    assert.ok(at > 0, `${ch} is in the line`);
    for (let k = 1; k < n; k++) cuts.add(at + k);
  }
  let from = 0;
  for (const cut of [...cuts].sort((x, y) => x - y)) {
    c.write(bytes.subarray(from, cut));
    from = cut;
    await sleep(5);
  }
  c.write(bytes.subarray(from));

  assert.deepEqual(await c.replies(1), ['ok']);
  assert.equal(await page.frame(1), line);
});

// ---------------------------------------------------------------------------------------------
// Keep-alive

test('text: the connection stays open and keeps serving after replies and after errors', async (t) => {
  const d = await startDaemon(t);
  const page = await session(t, d, 'uid1');
  const c = await textClient(t, d.textPort);

  const rounds: [string, string][] = [
    ['{"uid":"uid1","n":1}', 'ok'],
    ['{"uid":"nobody","n":2}', 'fail'],
    ['hello', 'error: not JSON'],
    ['{"uid":"uid1","n":3}', 'ok'],
    ['[1,2]', NOT_OBJECT],
    ['', EMPTY_LINE],
    ['{"uid":"uid1","n":4}', 'ok'],
  ];
  for (const [i, [line, reply]] of rounds.entries()) {
    c.write(`${line}\n`);
    const got = (await c.replies(i + 1))[i] as string;
    assert.ok(got.startsWith(reply), `reply ${i} ${JSON.stringify(got)} starts with ${JSON.stringify(reply)}`);
    // Idle between requests: the server must not close the connection.
    assert.equal(await closedWithin(c, 100), false, `connection still open after reply ${i}`);
  }
  assert.equal(c.lines.length, rounds.length);
  assert.deepEqual(page.frames, ['{"uid":"uid1","n":1}', '{"uid":"uid1","n":3}', '{"uid":"uid1","n":4}']);
  assert.equal(c.socket.destroyed, false);
});

// ---------------------------------------------------------------------------------------------
// Addressing

test('text: uid as an array reaches every listed uid; ok if any is online, fail if none', async (t) => {
  const d = await startDaemon(t);
  const one = await session(t, d, 'uid1');
  const two = await session(t, d, 'uid2');
  const three = await session(t, d, 'uid3');
  const c = await textClient(t, d.textPort);

  const both = '{"uid":["uid1","uid2","nobody"],"msg":"to two"}';
  c.write(`${both}\n`);
  assert.deepEqual(await c.replies(1), ['ok']);
  assert.equal(await one.frame(1), both);
  assert.equal(await two.frame(1), both);

  c.write('{"uid":["nobody","ghost"],"msg":"to none"}\n');
  assert.deepEqual(await c.replies(2), ['ok', 'fail']);

  // A uid listed twice gets the message once.
  const dup = '{"uid":["uid1","uid1"],"msg":"once"}';
  c.write(`${dup}\n`);
  const last = '{"uid":"uid1","msg":"last"}';
  c.write(`${last}\n`);
  assert.deepEqual(await c.replies(4), ['ok', 'fail', 'ok', 'ok']);
  assert.equal(await one.frame(3), last);
  assert.deepEqual(one.frames, [both, dup, last]);
  assert.deepEqual(two.frames, [both], 'uid2 got only what was addressed to it');
  assert.deepEqual(three.frames, [], 'uid3 was never addressed');
});

test('text: "broadcast": true reaches every bound session of every uid', async (t) => {
  const d = await startDaemon(t);
  const c = await textClient(t, d.textPort);

  // No one online yet: fail.
  c.write('{"broadcast":true,"msg":"nobody home"}\n');
  assert.deepEqual(await c.replies(1), ['fail']);

  const a1 = await session(t, d, 'uidA');
  const a2 = await session(t, d, 'uidA');
  const b = await session(t, d, 'uidB');
  const unbound = await wsClient(t, d.wsUrl);

  const line = '{"broadcast":true,"msg":"to all"}';
  c.write(`${line}\n`);
  assert.deepEqual(await c.replies(2), ['fail', 'ok']);
  for (const [name, page] of [['uidA #1', a1], ['uidA #2', a2], ['uidB', b]] as const) {
    assert.equal(await page.frame(1), line, name);
  }
  // A follow-up to uidB only proves the unbound session would have had the broadcast by now.
  c.write('{"uid":"uidB","msg":"sync"}\n');
  await c.replies(3);
  await b.frame(2);
  assert.deepEqual(unbound.frames, [], 'a session that never bound a uid gets nothing');
  assert.equal(a1.frames.length, 1);
  assert.equal(a2.frames.length, 1);
});

// ---------------------------------------------------------------------------------------------
// Bad input: one `error:` line each, and the next line is served

const PROBE = '{"uid":"uid1","msg":"probe"}';
const bytes = (s: string) => Buffer.from(s, 'latin1');

const BAD_INPUTS: { name: string; line: string | Buffer; reply: string; exact: boolean }[] = [
  { name: 'not JSON', line: 'hello', reply: 'error: not JSON (', exact: false },
  { name: 'truncated JSON', line: '{"uid":"uid1"', reply: 'error: not JSON (', exact: false },
  { name: 'array', line: '[1,2]', reply: NOT_OBJECT, exact: true },
  { name: 'number', line: '42', reply: NOT_OBJECT, exact: true },
  { name: 'string', line: '"str"', reply: NOT_OBJECT, exact: true },
  { name: 'null', line: 'null', reply: NOT_OBJECT, exact: true },
  { name: 'true', line: 'true', reply: NOT_OBJECT, exact: true },
  { name: 'missing uid', line: '{"msg":"x"}', reply: 'error: missing "uid" (or "broadcast": true)', exact: true },
  { name: 'empty object', line: '{}', reply: 'error: missing "uid" (or "broadcast": true)', exact: true },
  { name: 'uid a number', line: '{"uid":5}', reply: 'error: "uid" must be a string or an array of strings', exact: true },
  { name: 'uid an object', line: '{"uid":{"a":1}}', reply: 'error: "uid" must be a string or an array of strings', exact: true },
  { name: 'uid null', line: '{"uid":null,"msg":"x"}', reply: 'error: "uid" must be a string or an array of strings', exact: true },
  { name: 'uid [1]', line: '{"uid":[1]}', reply: 'error: "uid[0]" must be a string or an array of strings', exact: true },
  { name: 'empty uid', line: '{"uid":""}', reply: 'error: "uid" must not be empty', exact: true },
  { name: 'empty uid array', line: '{"uid":[]}', reply: 'error: "uid" must not be an empty array', exact: true },
  { name: 'empty uid in array', line: '{"uid":["uid1",""]}', reply: 'error: "uid[1]" must not be empty', exact: true },
  { name: 'uid too long', line: JSON.stringify({ uid: 'u'.repeat(257) }), reply: 'error: "uid" is longer than 256 bytes', exact: true },
  { name: 'empty line', line: '', reply: EMPTY_LINE, exact: true },
  { name: 'empty line with CR', line: '\r', reply: EMPTY_LINE, exact: true },
  { name: 'invalid UTF-8 (0xff)', line: Buffer.concat([bytes('{"uid":"uid1","msg":"'), Buffer.from([0xff]), bytes('"}')]), reply: NOT_UTF8, exact: true },
  { name: 'invalid UTF-8 (lone continuation byte)', line: Buffer.concat([bytes('{"uid":"uid1","msg":"'), Buffer.from([0x80]), bytes('"}')]), reply: NOT_UTF8, exact: true },
  { name: 'invalid UTF-8 (truncated sequence)', line: Buffer.concat([bytes('{"uid":"uid1","msg":"'), Buffer.from([0xe2, 0x82]), bytes('"}')]), reply: NOT_UTF8, exact: true },
  { name: 'invalid UTF-8 (overlong /)', line: Buffer.concat([bytes('{"uid":"uid1","msg":"'), Buffer.from([0xc0, 0xaf]), bytes('"}')]), reply: NOT_UTF8, exact: true },
  { name: 'invalid UTF-8 (encoded surrogate)', line: Buffer.concat([bytes('{"uid":"uid1","msg":"'), Buffer.from([0xed, 0xa0, 0x80]), bytes('"}')]), reply: NOT_UTF8, exact: true },
  { name: 'uid and broadcast', line: '{"uid":"uid1","broadcast":true}', reply: 'error: give only one of "uid", "broadcast"', exact: true },
  { name: 'broadcast false', line: '{"broadcast":false,"msg":"x"}', reply: 'error: "broadcast" must be true when given', exact: true },
  { name: 'title a number', line: '{"uid":"uid1","title":5}', reply: 'error: "title" must be a string', exact: true },
  { name: 'msg null', line: '{"uid":"uid1","msg":null}', reply: 'error: "msg" must be a string', exact: true },
  { name: 'sound a boolean', line: '{"uid":"uid1","sound":true}', reply: 'error: "sound" must be a string', exact: true },
  { name: 'badge -1', line: '{"uid":"uid1","badge":-1}', reply: 'error: "badge" must be a non-negative integer', exact: true },
  { name: 'badge 1.5', line: '{"uid":"uid1","badge":1.5}', reply: 'error: "badge" must be a non-negative integer', exact: true },
  { name: 'badge a string', line: '{"uid":"uid1","badge":"3"}', reply: 'error: "badge" must be a non-negative integer', exact: true },
];

for (const bad of BAD_INPUTS) {
  test(`text: bad input (${bad.name}) gets one error line and the next line is served`, async (t) => {
    const d = await startDaemon(t);
    const page = await session(t, d, 'uid1');
    const c = await textClient(t, d.textPort);
    // Bad line and a good one in the same write, then another good one on its own.
    c.write(Buffer.concat([Buffer.from(bad.line), Buffer.from(`\n${PROBE}\n`)]));
    const [reply, next] = (await c.replies(2)) as [string, string];
    assert.ok(reply.startsWith('error: '), `reply ${JSON.stringify(reply)} starts with "error: "`);
    if (bad.exact) assert.equal(reply, bad.reply);
    else assert.ok(reply.startsWith(bad.reply), `reply ${JSON.stringify(reply)} starts with ${JSON.stringify(bad.reply)}`);
    assert.ok(reply.length > 'error: '.length + 5, 'the error says what is wrong');
    assert.equal(next, 'ok', 'the line after the bad one is served');

    c.write(`${PROBE}\n`);
    assert.deepEqual((await c.replies(3)).slice(1), ['ok', 'ok']);
    assert.equal(c.lines.length, 3, 'exactly one reply per line');
    await page.frame(2);
    assert.deepEqual(page.frames, [PROBE, PROBE], 'the bad line delivered nothing');
  });
}

test('text: "not JSON" says why the JSON is bad', async (t) => {
  const d = await startDaemon(t);
  const c = await textClient(t, d.textPort);
  c.write('hello\n');
  const [reply] = (await c.replies(1)) as [string];
  let why = '';
  try {
    JSON.parse('hello');
  } catch (err) {
    why = (err as Error).message;
  }
  assert.equal(reply, `error: not JSON (${why})`);
});

test('text: data nested 10,000 deep gets one error line naming the limit; 32 levels are fine and the connection keeps serving', async (t) => {
  const d = await startDaemon(t);
  const page = await session(t, d, 'uid1');
  const c = await textClient(t, d.textPort);
  const nested = (levels: number) => `${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}`;
  // The line's own object is the data's first level, as "data" is over the HTTP API.
  c.write(`{"uid":"uid1","a":${nested(9_999)}}\n{"uid":"uid1","a":${nested(32)}}\n{"uid":"uid1","a":${nested(31)}}\n`);
  assert.deepEqual(await c.replies(3), ['error: "data" is nested deeper than 32 levels', 'error: "data" is nested deeper than 32 levels', 'ok']);
  assert.equal(await page.frame(1), `{"uid":"uid1","a":${nested(31)}}`);
  assert.equal(page.frames.length, 1);
  assert.deepEqual(d.logs.filter((l) => l.level === 'error'), [], 'no server error was logged');
});

// ---------------------------------------------------------------------------------------------
// Oversized lines

test('text: a 5000-byte line over maxLineBytes gets exactly one error, and the next line is served', async (t) => {
  const d = await startDaemon(t, { text: { maxLineBytes: 1024 } });
  const page = await session(t, d, 'uid1');
  const c = await textClient(t, d.textPort);
  const big = lineOfBytes(5000);

  // In one write together with the next line.
  c.write(`${big}\n{"uid":"nobody"}\n`);
  assert.deepEqual(await c.replies(2), ['error: line longer than 1024 bytes', 'fail']);

  // In several writes (the over-limit part is seen before the newline).
  c.write(big.slice(0, 700));
  await sleep(10);
  c.write(big.slice(700, 1400));
  await sleep(10);
  c.write(big.slice(1400));
  await sleep(10);
  c.write(`\n${PROBE}\n`);
  assert.deepEqual(await c.replies(4), ['error: line longer than 1024 bytes', 'fail', 'error: line longer than 1024 bytes', 'ok']);

  // A partial line under the limit completed by a chunk that takes it over.
  c.write(big.slice(0, 1000));
  await sleep(10);
  c.write(`${big.slice(1000, 1100)}\n${PROBE}\n`);
  await c.replies(6);

  // A last sentinel proves no extra reply was queued in between.
  c.write('{"uid":"nobody","sentinel":true}\n');
  assert.deepEqual(await c.replies(7), [
    'error: line longer than 1024 bytes',
    'fail',
    'error: line longer than 1024 bytes',
    'ok',
    'error: line longer than 1024 bytes',
    'ok',
    'fail',
  ]);
  assert.deepEqual(page.frames, [PROBE, PROBE], 'nothing of the long lines was delivered');
});

test('text: maxLineBytes is exact, not counting the line ending, in one write or byte by byte', async (t) => {
  const d = await startDaemon(t, { text: { maxLineBytes: 1024 } });
  const page = await session(t, d, 'uid1');
  const c = await textClient(t, d.textPort);
  const fits = lineOfBytes(1024);
  const over = lineOfBytes(1025);

  c.write(`${fits}\n${fits}\r\n${over}\n${over}\r\n`);
  assert.deepEqual(await c.replies(4), ['ok', 'ok', 'error: line longer than 1024 bytes', 'error: line longer than 1024 bytes']);

  // The same four lines, streamed in 7-byte pieces, so they are assembled from partial reads.
  c.socket.setNoDelay(true);
  const all = Buffer.from(`${fits}\n${fits}\r\n${over}\n${over}\r\n`);
  for (let i = 0; i < all.length; i += 7) {
    c.write(all.subarray(i, i + 7));
    if (i % 700 === 0) await sleep(1);
  }
  c.write('{"uid":"nobody"}\n');
  assert.deepEqual((await c.replies(9)).slice(4), [
    'ok',
    'ok',
    'error: line longer than 1024 bytes',
    'error: line longer than 1024 bytes',
    'fail',
  ]);
  await page.frame(4);
  assert.deepEqual(page.frames, [fits, fits, fits, fits]);
});

test('text: an endless over-limit line gets one error, is not buffered, and the line after its newline is served', async (t) => {
  setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  /** Live JS heap plus Buffer memory (Buffers are outside the V8 heap), after a full GC. */
  const retained = () => {
    gc();
    gc();
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };

  const d = await startDaemon(t, { text: { maxLineBytes: 1024 } }, 'warn');
  await session(t, d, 'uid1');
  const c = await textClient(t, d.textPort);

  const before = retained();
  const chunk = Buffer.alloc(64 * 1024, 'a');
  const total = 5 * 1024 * 1024;
  c.write('{"uid":"uid1","msg":"');
  let peak = 0;
  for (let sent = 0; sent < total; sent += chunk.length) {
    await new Promise<void>((resolve, reject) => c.socket.write(chunk, (err) => (err ? reject(err) : resolve())));
    if (sent === 0) {
      // The error comes as soon as the limit is passed, long before any newline.
      assert.deepEqual(await c.replies(1), ['error: line longer than 1024 bytes']);
    }
    if ((sent / chunk.length) % 16 === 15) peak = Math.max(peak, retained() - before);
    await new Promise((resolve) => setImmediate(resolve));
  }
  // Let the server read what is still in the socket buffers, then measure again.
  await sleep(200);
  peak = Math.max(peak, retained() - before);
  assert.ok(peak < 1024 * 1024, `memory grew by ${peak} bytes while a ${total}-byte line was streamed; it must not be buffered`);
  assert.deepEqual(c.lines, ['error: line longer than 1024 bytes'], 'one error for the whole line');
  assert.equal(c.socket.destroyed, false);

  // The newline ends the skipped line; the next one is served.
  c.write('"}\n{"uid":"uid1","msg":"after"}\n{"uid":"nobody"}\n');
  assert.deepEqual(await c.replies(3), ['error: line longer than 1024 bytes', 'ok', 'fail']);
});

// ---------------------------------------------------------------------------------------------
// Flow control

test('text: with maxPipelinedLines 4, 100 lines written at once all get their replies, in order', async (t) => {
  const d = await startDaemon(t, { text: { maxPipelinedLines: 4 } });
  const page = await session(t, d, 'uid1');
  const c = await textClient(t, d.textPort);

  const requests: string[] = [];
  const expected: string[] = [];
  for (let i = 0; i < 100; i++) {
    if (i % 2 === 0) {
      requests.push(JSON.stringify({ uid: 'uid1', seq: i }));
      expected.push('ok');
    } else {
      requests.push(JSON.stringify({ uid: 'nobody', seq: i }));
      expected.push('fail');
    }
  }
  c.write(`${requests.join('\n')}\n`);
  assert.deepEqual(await c.replies(100), expected);
  await page.frame(50);
  assert.deepEqual(page.frames, requests.filter((_, i) => i % 2 === 0));

  // And again as 100 separate writes, so the connection is paused and resumed between reads.
  c.socket.setNoDelay(true);
  for (const line of requests) c.write(`${line}\n`);
  assert.deepEqual((await c.replies(200)).slice(100), expected);

  // A larger burst spanning many reads.
  const many = Array.from({ length: 5000 }, (_, i) => JSON.stringify({ uid: i % 2 ? 'nobody' : 'uid1', seq: i, pad: 'p'.repeat(40) }));
  c.write(`${many.join('\n')}\n`);
  const got = (await c.replies(5200, HANG_MS * 2)).slice(200);
  assert.deepEqual(got, many.map((_, i) => (i % 2 ? 'fail' : 'ok')));
  await page.frame(50 + 50 + 2500);
  assert.deepEqual(page.frames.slice(100), many.filter((_, i) => i % 2 === 0));
});

test('text: a client that does not read its replies for a while still gets them all, in order', async (t) => {
  const d = await startDaemon(t, { text: { maxPipelinedLines: 16 } });
  const c = await textClient(t, d.textPort);
  c.socket.pause();
  // 3 bytes in, 45 bytes out per line: about 2 MB of replies pile up unread.
  const n = 50_000;
  c.write('{}\n'.repeat(n));
  c.write('{"uid":"nobody"}\n');
  await sleep(300);

  // Meanwhile another connection is served.
  const other = await textClient(t, d.textPort);
  other.write('{"uid":"nobody"}\n');
  assert.deepEqual(await other.replies(1), ['fail']);

  c.socket.resume();
  const got = await c.replies(n + 1, HANG_MS * 2);
  assert.equal(got.length, n + 1);
  const missing = 'error: missing "uid" (or "broadcast": true)';
  assert.ok(got.slice(0, n).every((l) => l === missing), 'every {} line gets its error, in order');
  assert.equal(got[n], 'fail');
});

// ---------------------------------------------------------------------------------------------
// Half-close, other connections, shutdown

test('text: a client that half-closes right after writing still gets every reply, then the server closes', async (t) => {
  const d = await startDaemon(t);
  const page = await session(t, d, 'uid1');
  const c = await textClient(t, d.textPort);
  c.write('{"uid":"uid1","msg":"one"}\n{"uid":"nobody"}\nhello\n{"uid":"uid1","msg":"two"}\n');
  c.socket.end();

  assert.equal(await closedWithin(c, HANG_MS), true, 'the server closes its side');
  assert.equal(c.lines.length, 4);
  assert.deepEqual(c.lines.slice(0, 2), ['ok', 'fail']);
  assert.ok(c.lines[2]?.startsWith('error: not JSON'), String(c.lines[2]));
  assert.equal(c.lines[3], 'ok');
  await page.frame(2);
  assert.deepEqual(page.frames, ['{"uid":"uid1","msg":"one"}', '{"uid":"uid1","msg":"two"}']);
});

test('text: a half-close while lines are held back by maxPipelinedLines still gets every reply', async (t) => {
  const d = await startDaemon(t, { text: { maxPipelinedLines: 2 } });
  await session(t, d, 'uid1');
  const c = await textClient(t, d.textPort);
  const lines = Array.from({ length: 3000 }, (_, i) => JSON.stringify({ uid: i % 3 ? 'nobody' : 'uid1', seq: i, pad: 'q'.repeat(30) }));
  c.socket.end(`${lines.join('\n')}\n`);
  assert.equal(await closedWithin(c, HANG_MS * 2), true, 'the server closes its side');
  assert.deepEqual(c.lines, lines.map((_, i) => (i % 3 ? 'fail' : 'ok')));
});

test('text: the daemon keeps serving other connections while one client misbehaves', async (t) => {
  const d = await startDaemon(t, { text: { maxLineBytes: 1024 } });
  const page = await session(t, d, 'uid1');

  const bad = await textClient(t, d.textPort);
  bad.write(Buffer.from([0xff, 0xfe, 0x0a]));
  bad.write('hello\n[1]\n\n');
  bad.write('x'.repeat(4000)); // an over-limit line that never ends
  await bad.replies(5);

  const good = await textClient(t, d.textPort);
  good.write('{"uid":"uid1","msg":"from good"}\n');
  assert.deepEqual(await good.replies(1), ['ok']);
  assert.equal(await page.frame(1), '{"uid":"uid1","msg":"from good"}');

  // A client that opens a line and goes silent does not hold anyone up either.
  const silent = await textClient(t, d.textPort);
  silent.write('{"uid":"uid1","msg":"never fin');
  const third = await textClient(t, d.textPort);
  third.write('{"uid":"nobody"}\n');
  assert.deepEqual(await third.replies(1), ['fail']);

  assert.deepEqual(bad.lines.slice(0, 4), [NOT_UTF8, bad.lines[1], NOT_OBJECT, EMPTY_LINE]);
  assert.ok(bad.lines[1]?.startsWith('error: not JSON'));
  assert.equal(bad.lines[4], 'error: line longer than 1024 bytes');
  assert.equal(silent.lines.length, 0);
  assert.equal(page.frames.length, 1);
});

/** A transport whose deliveries wait until `open()` is called: lines stay "in delivery" meanwhile. */
class GateTransport extends IndexedTransport {
  readonly pending: (() => void)[] = [];
  #opened = false;

  override deliver(uid: Uid, _msg: Message, signal: AbortSignal): Promise<DeliveryResult[]> {
    const sent = this.index.targets(uid).map((target): DeliveryResult => ({ transport: this.name, target, status: 'sent' }));
    if (this.#opened) return Promise.resolve(sent);
    return new Promise((resolve) => {
      this.pending.push(() => resolve(sent));
      signal.addEventListener('abort', () => resolve([{ transport: this.name, target: '*', status: 'failed', reason: 'aborted' }]), {
        once: true,
      });
    });
  }

  open(): void {
    this.#opened = true;
    for (const release of this.pending.splice(0)) release();
  }
}

test('text: on stop, lines already read are answered before the connection is closed', async (t) => {
  // Registered through the transport-type table, the same way a real transport is added.
  const types = TRANSPORT_TYPES as Record<string, TransportType>;
  let gate: GateTransport | undefined;
  types['test-gate'] = {
    settings: { type: 'section', keys: {} },
    create: (_settings, ctx) => (gate = new GateTransport(ctx.name, new MemoryTargetIndex())),
  };
  t.after(() => delete types['test-gate']);

  const d = await startDaemon(t, { transports: { gate: { type: 'test-gate' } } });
  assert.ok(gate);
  const g = gate;
  g.index.add('slowpoke', 'device-1');

  const c = await textClient(t, d.textPort);
  c.write('{"uid":"slowpoke","n":1}\n{"uid":"slowpoke","n":2}\n{"uid":"nobody"}\nhello\n{"uid":"slowpoke","n":3}\n');
  await until(() => g.pending.length === 3, 'three deliveries in flight');

  const stopping = d.stop();
  let stopped = false;
  void stopping.then(() => (stopped = true));
  await sleep(100);
  assert.equal(c.lines.length, 0, 'nothing is answered out of order while the first line is in delivery');
  assert.equal(await closedWithin(c, 0), false, 'the connection is not closed with lines unanswered');
  assert.equal(stopped, false, 'stop waits for the answers');

  // A line sent after stop() is not taken.
  c.write('{"uid":"slowpoke","n":4}\n');
  await sleep(50);

  g.open();
  assert.equal(await closedWithin(c, HANG_MS), true, 'the server closes the connection');
  assert.equal(c.lines.length, 5, `replies: ${JSON.stringify(c.lines)}`);
  assert.deepEqual(c.lines.slice(0, 3), ['ok', 'ok', 'fail']);
  assert.ok(c.lines[3]?.startsWith('error: not JSON'));
  assert.equal(c.lines[4], 'ok');
  await stopping;

  // Nothing listens any more.
  const refused = connect({ host: '127.0.0.1', port: d.textPort });
  const [err] = (await once(refused, 'error')) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'ECONNREFUSED');
});
