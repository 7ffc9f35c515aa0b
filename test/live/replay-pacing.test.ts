import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { WebSocketTransport } from '../../src/live/websocket.js';
import { silentLogger } from '../../src/obs/log.js';
import { MemoryAckRelay } from '../../src/store/acks-memory.js';
import { MemoryPresence } from '../../src/store/presence-memory.js';
import { MemoryStreams } from '../../src/store/stream-memory.js';
import {
  BROADCAST_STREAM,
  type HistoryPage,
  type HistoryQuery,
  type MessageStreams,
  type Publication,
  type StreamMessage,
  streamOf,
} from '../../src/store/stream.js';
import { MemoryTargetIndex } from '../../src/store/target-index.js';
import type { DeliveryResult, Message } from '../../src/types.js';
import { until, wsClient } from '../helpers/clients.js';
import { wsFrame } from '../helpers/ws-frame.js';

// A resuming session's replay is read in pages and paced by its socket: a session that does
// not read holds one page, not its history, and is dropped as a slow consumer like a live one.

const WAIT = 60_000;

/** MemoryStreams that count what is read from them. */
class CountingStreams implements MessageStreams {
  readonly inner: MemoryStreams;
  reads = 0;
  rows = 0;

  constructor(size: number) {
    this.inner = new MemoryStreams({ size, ttlMs: 3_600_000 });
  }
  history(stream: string, q: HistoryQuery): HistoryPage {
    const page = this.inner.history(stream, q);
    this.reads++;
    this.rows += page.publications.length;
    return page;
  }
  publish(streams: readonly string[], msg: StreamMessage): Promise<Publication[]> {
    return this.inner.publish(streams, msg);
  }
  locate(stream: string, id: string) {
    return this.inner.locate(stream, id);
  }
  follow(): void {}
  unfollow(): void {}
  onRemote(): void {}
  get size(): number {
    return this.inner.size;
  }
  close(): void {}
}

async function setup(t: TestContext, o: { size: number; maxBufferedBytes: number }) {
  const streams = new CountingStreams(o.size);
  const index = new MemoryTargetIndex();
  const ws = new WebSocketTransport({
    listen: '127.0.0.1:0',
    maxPayloadBytes: 65_536,
    maxBufferedBytes: o.maxBufferedBytes,
    heartbeatIntervalMs: 600_000,
    index,
    presence: new MemoryPresence(index, 'n1'),
    node: 'n1',
    acks: new MemoryAckRelay(),
    log: silentLogger,
    streams,
    replayLimit: o.size,
  });
  await ws.start();
  t.after(() => ws.stop());
  /** Stores a message (as the publisher does); `live` also delivers it to the uid's sessions. */
  const publish = async (uid: string | null, id: string, frame: string, live: boolean): Promise<DeliveryResult[]> => {
    const stored = await streams.publish([uid === null ? BROADCAST_STREAM : streamOf(uid)], { id, frame, json: false });
    const msg: Message = { id, frame, json: false, stored } as Message;
    return live && uid !== null ? ws.deliver(uid, msg, AbortSignal.timeout(WAIT)) : [];
  };
  return { streams, index, ws, publish, url: `ws://${ws.address}/` };
}

/** A raw TCP client that completes the WebSocket handshake, sends a bind frame, then never reads. */
async function nonReader(t: TestContext, address: string, bind: object): Promise<Socket> {
  const [host, port] = address.split(':') as [string, string];
  const socket = connect({ host, port: Number(port) });
  socket.on('error', () => {});
  t.after(() => socket.destroy());
  await once(socket, 'connect');
  socket.write(`GET / HTTP/1.1\r\nHost: ${address}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n`);
  let head = '';
  while (!head.includes('\r\n\r\n')) {
    const [chunk] = (await once(socket, 'data')) as [Buffer];
    head += chunk.toString('latin1');
  }
  assert.match(head, /^HTTP\/1\.1 101 /);
  socket.pause();
  socket.write(wsFrame(0x1, Buffer.from(JSON.stringify(bind))));
  return socket;
}

/** Heap and buffers in use after a full collection. */
function memoryInUse(): number {
  setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
}

/** Waits until the store has not been read for `quietPolls` polls in a row (the replays went as far as they go). */
async function settled(streams: CountingStreams, quietPolls = 30): Promise<void> {
  let seen = -1;
  let quiet = 0;
  while (quiet < quietPolls) {
    await new Promise((r) => setTimeout(r, 10));
    if (streams.rows === seen) quiet++;
    else {
      seen = streams.rows;
      quiet = 0;
    }
  }
}

test('replay pacing: sessions that resume and never read hold one page, not the history, and are dropped as slow consumers; a reading one gets everything in order', { timeout: 180_000 }, async (t) => {
  const HISTORY = 2000;
  const BYTES = 10_000;
  const CLIENTS = 10;
  const w = await setup(t, { size: HISTORY + 200, maxBufferedBytes: 64 * 1024 });
  const ids: string[] = [];
  for (let i = 0; i < HISTORY; i++) {
    const id = `m${i}`;
    ids.push(id);
    await w.publish('u', id, `${id}:`.padEnd(BYTES, 'x'), false);
  }
  const before = memoryInUse();
  const rowsBefore = w.streams.rows;

  const sockets: Socket[] = [];
  for (let i = 0; i < CLIENTS; i++) sockets.push(await nonReader(t, w.ws.address, { type: 'bind', uid: 'u' }));
  await until(() => w.index.count('u') === CLIENTS, 'the non-readers to bind', WAIT);
  let peak = memoryInUse() - before;
  await settled(w.streams);
  peak = Math.max(peak, memoryInUse() - before);
  const rowsRead = w.streams.rows - rowsBefore;
  t.diagnostic(`non-readers: ${rowsRead} rows read for ${CLIENTS} replays of ${HISTORY}; memory grew ${(peak / 1e6).toFixed(1)} MB`);
  assert.ok(rowsRead < (CLIENTS * HISTORY) / 2, `each replay reads about what its socket took, not the whole history (${rowsRead} rows read)`);
  assert.ok(peak < (HISTORY * BYTES * CLIENTS) / 2, `memory does not grow by the history's size per client (grew ${peak} bytes)`);
  assert.equal(w.index.count('u'), CLIENTS, 'a quiet stalled replay is not dropped by itself');

  // Live messages for the uid are held while the replays are stalled: past maxBufferedBytes of
  // unsent data, each session is a slow consumer.
  const sids = new Set(w.index.targets('u'));
  const failed = new Set<string>();
  for (let i = 0; failed.size < CLIENTS; i++) {
    assert.ok(i < 100, 'the non-readers are dropped before 100 live messages');
    const id = `live${i}`;
    ids.push(id);
    for (const r of await w.publish('u', id, `${id}:`.padEnd(BYTES, 'y'), true)) {
      if (r.status === 'failed' && r.reason === 'session closing') {
        assert.ok(failed.has(r.target), 'closing after it was dropped');
      } else if (r.status === 'failed') {
        assert.match(r.reason ?? '', /^slow consumer \(\d+ bytes unsent\)$/);
        failed.add(r.target);
      } else assert.equal(r.status, 'sent');
    }
  }
  assert.deepEqual([...failed].sort(), [...sids].sort(), 'every non-reader was failed as a slow consumer');
  await until(() => w.ws.health().connections === 0 && w.index.count('u') === 0, 'the dropped sessions to be gone and unregistered', WAIT);

  // A session that reads gets the whole history, then what is published during its replay, once each, in order.
  const c = await wsClient(t, w.url, { bind: JSON.stringify({ type: 'bind', uid: 'u' }) });
  await until(() => w.index.count('u') === 1, 'the reader to bind', WAIT);
  for (let i = 0; i < 5; i++) {
    const id = `late${i}`;
    ids.push(id);
    const [r] = await w.publish('u', id, id, true);
    assert.equal(r?.status, 'sent');
  }
  await c.frame(ids.length, WAIT);
  await w.publish('u', 'last', 'last', true);
  ids.push('last');
  await c.frame(ids.length, WAIT);
  assert.deepEqual(c.frames.map((f) => (JSON.parse(f) as { id: string }).id), ids);
  assert.equal(JSON.parse(c.frames[0] as string).data, `m0:`.padEnd(BYTES, 'x'));
});

test('replay pacing: a bind with since at the newest id reads no history rows', async (t) => {
  const w = await setup(t, { size: 5000, maxBufferedBytes: 64 * 1024 });
  for (let i = 0; i < 3000; i++) await w.publish('u', `m${i}`, `m${i}`, false);
  for (let i = 0; i < 100; i++) await w.publish(null, `b${i}`, `b${i}`, false);
  const { reads, rows } = w.streams;
  const c = await wsClient(t, w.url, { bind: JSON.stringify({ type: 'bind', uid: 'u', since: 'b99' }) });
  await until(() => w.index.count('u') === 1, 'the session to bind', WAIT);
  await w.publish('u', 'next', 'next', true);
  await c.frame(1, WAIT);
  assert.deepEqual(c.frames.map((f) => (JSON.parse(f) as { id: string }).id), ['next']);
  assert.equal(w.streams.rows - rows, 0, 'no stored row was read');
  assert.ok(w.streams.reads - reads <= 2, `one read per stream at most (${w.streams.reads - reads})`);
});

test('replay pacing: a replay of many pages merges the uid stream and the broadcast stream in publish order', async (t) => {
  const w = await setup(t, { size: 1000, maxBufferedBytes: 4096 });
  const all: string[] = [];
  for (let i = 0; i < 450; i++) {
    const id = `${i % 3 === 0 ? 'b' : 'u'}${i}`;
    all.push(id);
    await w.publish(i % 3 === 0 ? null : 'u', id, id.padEnd(300, '.'), false);
  }
  const c = await wsClient(t, w.url, { bind: JSON.stringify({ type: 'bind', uid: 'u', since: 'u37' }) });
  const want = all.slice(all.indexOf('u37') + 1);
  await c.frame(want.length, WAIT);
  await w.publish('u', 'next', 'next', true);
  await c.frame(want.length + 1, WAIT);
  assert.deepEqual(c.frames.map((f) => (JSON.parse(f) as { id: string }).id), [...want, 'next']);
  assert.ok(w.streams.reads > 4, 'read in pages');
});
