import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { Dispatcher } from '../../src/delivery/dispatcher.js';
import { Publisher } from '../../src/delivery/publisher.js';
import { NotifyError } from '../../src/errors.js';
import { silentLogger } from '../../src/obs/log.js';
import { MemoryAckRelay } from '../../src/store/acks-memory.js';
import { MemoryDedupe } from '../../src/store/dedupe-memory.js';
import { GroupCommit, openState } from '../../src/store/sqlite.js';
import { MemoryStreams } from '../../src/store/stream-memory.js';
import { SqliteStreams } from '../../src/store/stream-sqlite.js';
import { BROADCAST_STREAM, type MessageStreams, streamOf } from '../../src/store/stream.js';
import { MemoryRegistry } from '../../src/store/target-index.js';
import type { MessageBody, Route } from '../../src/types.js';
import { until } from '../helpers/clients.js';
import { tempDir } from '../helpers/daemon.js';
import { LiveRecordingTransport, RecordingTransport } from '../helpers/recording-transport.js';

// The Publisher built from its pieces: a real Dispatcher over recording transports (one of live
// sessions, one push), real memory streams, dedupe and ack relay.

const HOUR = 3_600_000;
const body: MessageBody = { frame: 'hello', json: false, msg: 'hello' };

function world(opts: { streams?: MessageStreams; ackTimeoutMs?: number; route?: Route } = {}) {
  const registry = new MemoryRegistry();
  const live = new LiveRecordingTransport('live', registry.index('live'));
  const push = new RecordingTransport('push', registry.index('push'));
  const everyone = { calls: 0 };
  const dispatcher = new Dispatcher({
    transports: [live, push],
    everyone: () => {
      everyone.calls++;
      return [...registry.uids()];
    },
    deliverTimeoutMs: 10_000,
    log: silentLogger,
  });
  const streams = opts.streams ?? new MemoryStreams({ size: 100, ttlMs: HOUR });
  const acks = new MemoryAckRelay();
  const publisher = new Publisher({
    dispatcher,
    streams,
    dedupe: new MemoryDedupe(),
    acks,
    route: opts.route ?? 'all',
    ackTimeoutMs: opts.ackTimeoutMs ?? 60_000,
    dedupeWindowMs: HOUR,
    log: silentLogger,
  });
  return { registry, live, push, dispatcher, streams, acks, publisher, everyone };
}

test('publisher: the message is committed before any transport has it: the transport sees msg.stored, and the store already holds it', async () => {
  const w = world();
  w.registry.index('push').add('alice', 'd1');
  const inStore: string[][] = [];
  w.push.onDeliver = async (uid) => {
    inStore.push((await w.streams.history(streamOf(uid), { limit: 10 })).publications.map((p) => p.id));
  };
  const report = await w.publisher.publish({ uids: ['alice'] }, body);
  const call = w.push.calls[0];
  assert.ok(call, 'delivered');
  assert.deepEqual(call.msg.stored?.map((p) => [p.stream, p.offset, p.id]), [[streamOf('alice'), 1, report.id]]);
  assert.deepEqual(inStore, [[report.id]], 'in the store when the transport was called');
  assert.equal(report.stored, true);
  assert.equal(report.sent, 1);
});

test('publisher: a store that cannot take the message: the publish rejects with NOTIFY_ERR_STORE and no transport is called', async (t: TestContext) => {
  const db = openState(join(tempDir(t), 'state'));
  t.after(() => db.close());
  const streams = new SqliteStreams(db, new GroupCommit(db), { size: 10, ttlMs: HOUR, maxMessages: 100, log: silentLogger });
  streams.close();
  const w = world({ streams });
  w.registry.index('push').add('alice', 'd1');
  w.registry.index('live').add('alice', 's1');
  await assert.rejects(w.publisher.publish({ uids: ['alice'] }, body), (err: unknown) => err instanceof NotifyError && err.code === 'NOTIFY_ERR_STORE');
  await assert.rejects(w.publisher.publish({ uids: ['alice'] }, body, { id: 'order-1', route: 'live-first' }), { code: 'NOTIFY_ERR_STORE' });
  assert.equal(w.push.calls.length + w.live.calls.length, 0, 'nothing was delivered');
});

test('publisher: a publisher id seen again gets the first answer with duplicate: true and is not delivered or stored again', async () => {
  const w = world();
  w.registry.index('push').add('alice', 'd1');
  const first = await w.publisher.publish({ uids: ['alice'] }, body, { id: 'order-1' });
  const again = await w.publisher.publish({ uids: ['alice'] }, { frame: 'other', json: false }, { id: 'order-1' });
  assert.equal(first.id, 'order-1');
  assert.equal(first.duplicate, undefined);
  assert.deepEqual(again, { ...first, duplicate: true });
  // Two at once: the second waits for the first's answer.
  const [x, y] = await Promise.all([
    w.publisher.publish({ uids: ['alice'] }, body, { id: 'order-2' }),
    w.publisher.publish({ uids: ['alice'] }, body, { id: 'order-2' }),
  ]);
  assert.deepEqual(y, { ...x, duplicate: true });
  assert.deepEqual(w.push.calls.map((c) => c.msg.id), ['order-1', 'order-2'], 'each id delivered once');
  assert.deepEqual((await w.streams.history(streamOf('alice'), { limit: 10 })).publications.map((p) => p.id), ['order-1', 'order-2']);
});

test('publisher: live-first: a session that confirms by ack takes the message once it acks; nothing is pushed', { timeout: 20_000 }, async () => {
  // ackTimeout (60 s) is longer than this test may run: the publish ends because of the ack.
  const w = world();
  w.registry.index('live').add('alice', 's1');
  w.live.byAck.add('s1');
  w.registry.index('push').add('alice', 'd1');
  const answer = w.publisher.publish({ uids: ['alice'] }, body, { route: 'live-first' });
  await until(() => w.acks.waiting === 1, 'the publish to wait for acks', 10_000);
  const id = w.live.calls[0]?.msg.id as string;
  await w.acks.ack(id, 'alice');
  const report = await answer;
  assert.deepEqual(report.paths, { alice: 'live' });
  assert.equal(w.push.calls.length, 0);
  assert.deepEqual(report.results.map((e) => `${e.transport}/${e.target}/${e.status}`), ['live/s1/sent']);
});

test('publisher: live-first: without an ack the push transports get it; a session that confirms on write needs no ack; nobody live goes to push', { timeout: 20_000 }, async () => {
  const w = world({ ackTimeoutMs: 20 });
  w.registry.index('live').add('silent', 's-silent');
  w.live.byAck.add('s-silent');
  w.registry.index('push').add('silent', 'd-silent');
  w.registry.index('live').add('plain', 's-plain');
  w.registry.index('push').add('plain', 'd-plain');
  w.registry.index('push').add('offline', 'd-offline');
  const report = await w.publisher.publish({ uids: ['silent', 'plain', 'offline', 'nobody'] }, body, { route: 'live-first' });
  assert.deepEqual(report.paths, { silent: 'fallback', plain: 'live', offline: 'fallback', nobody: 'none' });
  assert.deepEqual(w.push.calls.map((c) => c.uid).sort(), ['offline', 'silent'], 'the plain session took it: not pushed');
  assert.deepEqual(report.unreached, ['nobody']);
  assert.equal(report.route, 'live-first');
});

for (const route of ['all', 'live-first'] as const) {
  test(`publisher: a broadcast (${route}) resolves its audience once, goes to the broadcast stream and reaches every uid`, async () => {
    const w = world({ ackTimeoutMs: 20 });
    w.registry.index('live').add('alice', 's1');
    w.registry.index('push').add('bob', 'd1');
    const report = await w.publisher.publish({ broadcast: true }, body, { route });
    assert.equal(w.everyone.calls, 1, 'the audience of a broadcast is resolved once');
    assert.deepEqual(w.live.calls[0]?.msg.stored?.map((p) => p.stream), [BROADCAST_STREAM]);
    assert.deepEqual([...w.live.calls, ...w.push.calls].map((c) => c.uid).sort(), ['alice', 'bob']);
    assert.equal(report.sent, 2);
    assert.deepEqual(report.unreached, []);
  });
}
