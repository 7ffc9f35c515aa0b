import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { WebSocketTransport } from '../../src/live/websocket.js';
import { silentLogger } from '../../src/obs/log.js';
import { MemoryAckRelay } from '../../src/store/acks-memory.js';
import { MemoryPresence } from '../../src/store/presence-memory.js';
import { MemoryStreams } from '../../src/store/stream-memory.js';
import {
  type HistoryPage,
  type HistoryQuery,
  type MessageStreams,
  type Publication,
  type StreamMessage,
  streamOf,
} from '../../src/store/stream.js';
import { MemoryTargetIndex } from '../../src/store/target-index.js';
import { type WsClient, until, wsClient } from '../helpers/clients.js';

// The resume seam of a WebSocketTransport built from its pieces (no daemon): the session is
// registered, live publications are held while its replay is read, then both are merged by
// offset; a hole in the offsets of live publications makes it catch up from the store.

const WAIT = 10_000;

/**
 * MessageStreams over MemoryStreams whose history reads can be held, as a network backend's
 * are pending for a while. `read: 'now'` takes the page when asked and answers it on release;
 * `read: 'late'` takes it on release (so it already has what was published meanwhile).
 */
class HeldStreams implements MessageStreams {
  readonly inner = new MemoryStreams({ size: 100, ttlMs: 3_600_000 });
  holding = false;
  read: 'now' | 'late' = 'now';
  readonly pending: (() => void)[] = [];

  history(stream: string, q: HistoryQuery): HistoryPage | Promise<HistoryPage> {
    if (!this.holding) return this.inner.history(stream, q);
    const now = this.read === 'now' ? this.inner.history(stream, q) : undefined;
    return new Promise((resolve) => this.pending.push(() => resolve(now ?? this.inner.history(stream, q))));
  }

  release(): void {
    this.holding = false;
    for (const answer of this.pending.splice(0)) answer();
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

async function setup(t: TestContext) {
  const streams = new HeldStreams();
  const index = new MemoryTargetIndex();
  const ws = new WebSocketTransport({
    listen: '127.0.0.1:0',
    maxPayloadBytes: 65_536,
    maxBufferedBytes: 1 << 20,
    heartbeatIntervalMs: 60_000,
    index,
    presence: new MemoryPresence(index, 'n1'),
    node: 'n1',
    acks: new MemoryAckRelay(),
    log: silentLogger,
    streams,
  });
  await ws.start();
  t.after(() => ws.stop());
  /** Stores a message for `uid` (as the publisher does); `live` also delivers it to the uid's sessions. */
  const publish = async (uid: string, id: string, live = true) => {
    const stored = await streams.publish([streamOf(uid)], { id, frame: id, json: false });
    const msg = { id, frame: id, json: false, stored };
    if (live) await ws.deliver(uid, msg, AbortSignal.timeout(WAIT));
    return msg;
  };
  return { streams, index, ws, publish, url: `ws://${ws.address}/` };
}

/** A resume-protocol session of `uid`, bound from the start of the stream. */
async function resuming(t: TestContext, url: string, uid: string): Promise<WsClient & { ids(): string[] }> {
  const c = await wsClient(t, url, { bind: JSON.stringify({ type: 'bind', uid }) });
  return Object.assign(c, { ids: () => c.frames.map((f) => (JSON.parse(f) as { id: string }).id) });
}

for (const read of ['now', 'late'] as const) {
  test(`websocket seam: a publication delivered live while the replay is pending is merged in order, none twice (replay read ${read === 'now' ? 'before' : 'after'} it was stored)`, { timeout: 30_000 }, async (t) => {
    const w = await setup(t);
    await w.publish('alice', 'm1', false);
    await w.publish('alice', 'm2', false);
    w.streams.holding = true;
    w.streams.read = read;
    const c = await resuming(t, w.url, 'alice');
    await until(() => w.streams.pending.length === 1, 'the replay to be read', WAIT);
    assert.equal(w.index.count('alice'), 1, 'registered before its replay is read');
    const m3 = await w.publish('alice', 'm3');
    assert.equal(m3.stored[0]?.offset, 3);
    assert.equal(c.frames.length, 0, 'nothing is sent before the replay');
    w.streams.release();
    await c.frame(3, WAIT);
    await w.publish('alice', 'm4');
    await c.frame(4, WAIT);
    assert.deepEqual(c.ids(), ['m1', 'm2', 'm3', 'm4'], 'the replay, then what was held back, each once, in order');
    assert.deepEqual(JSON.parse(c.frames[0] as string), { id: 'm1', data: 'm1' });
  });
}

test('websocket seam: a live publication past a hole in the offsets makes the session catch up from the store first; a late one it has is dropped', { timeout: 30_000 }, async (t) => {
  const w = await setup(t);
  const c = await resuming(t, w.url, 'alice');
  await until(() => w.index.count('alice') === 1, 'alice to bind', WAIT);
  await w.publish('alice', 'm1');
  await c.frame(1, WAIT);
  // m2 is stored but its live delivery is lost on the way; m3 arrives live.
  const m2 = await w.publish('alice', 'm2', false);
  await w.publish('alice', 'm3');
  await c.frame(3, WAIT);
  assert.deepEqual(c.ids(), ['m1', 'm2', 'm3'], 'm2 read from the store before m3');
  // m2's live delivery turns up after all: the session has it.
  await w.ws.deliver('alice', m2, AbortSignal.timeout(WAIT));
  await w.publish('alice', 'm4');
  await c.frame(4, WAIT);
  assert.deepEqual(c.ids(), ['m1', 'm2', 'm3', 'm4']);
});

test('websocket seam: a catch-up read that is pending holds later live publications too, and merges them', { timeout: 30_000 }, async (t) => {
  const w = await setup(t);
  const c = await resuming(t, w.url, 'alice');
  await until(() => w.index.count('alice') === 1, 'alice to bind', WAIT);
  await w.publish('alice', 'm1');
  await c.frame(1, WAIT);
  w.streams.holding = true;
  w.streams.read = 'late';
  await w.publish('alice', 'm2', false);
  await w.publish('alice', 'm3');
  await until(() => w.streams.pending.length === 1, 'the catch-up read', WAIT);
  await w.publish('alice', 'm4');
  w.streams.release();
  await c.frame(4, WAIT);
  await w.publish('alice', 'm5');
  await c.frame(5, WAIT);
  assert.deepEqual(c.ids(), ['m1', 'm2', 'm3', 'm4', 'm5']);
});
