import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Dispatcher } from '../../src/delivery/dispatcher.js';
import { NotifyError } from '../../src/errors.js';
import { silentLogger } from '../../src/obs/log.js';
import { MemoryRegistry } from '../../src/store/target-index.js';
import type { Message } from '../../src/types.js';
import { RecordingTransport } from '../helpers/recording-transport.js';

const msg: Message = { id: 'm1', frame: 'hello', json: false, msg: 'hello' };

function setup(deliverTimeoutMs = 2000) {
  const registry = new MemoryRegistry();
  const a = new RecordingTransport('a', registry.index('a'));
  const b = new RecordingTransport('b', registry.index('b'));
  const dispatcher = new Dispatcher({ transports: [a, b], everyone: () => [...registry.uids()], deliverTimeoutMs, log: silentLogger });
  return { registry, a, b, dispatcher };
}

test('fans out to every transport that can reach the uid and reports per transport and target', async () => {
  const { registry, a, b, dispatcher } = setup();
  registry.index('a').add('uid1', 'a1');
  registry.index('a').add('uid1', 'a2');
  registry.index('b').add('uid1', 'b1');
  registry.index('b').add('uid2', 'b2');
  const report = await dispatcher.dispatch({ uids: ['uid1'] }, msg);
  assert.equal(report.delivered, true);
  assert.equal(report.sent, 3);
  assert.deepEqual(
    report.results.map((r) => `${r.uid}/${r.transport}/${r.target}/${r.status}`).sort(),
    ['uid1/a/a1/sent', 'uid1/a/a2/sent', 'uid1/b/b1/sent'],
  );
  assert.equal(a.calls.length, 1);
  assert.equal(b.calls.length, 1);
  assert.equal(b.calls[0]?.msg, msg, 'every transport gets the same message object');
});

test('a list of uids: each reached uid is delivered, the others are listed as unreached', async () => {
  const { registry, dispatcher } = setup();
  registry.index('a').add('uid1', 'a1');
  registry.index('b').add('uid2', 'b2');
  const report = await dispatcher.dispatch({ uids: ['uid1', 'uid2', 'ghost', 'uid1'] }, msg);
  assert.deepEqual(report.results.map((r) => r.uid), ['uid1', 'uid2'], 'a repeated uid is delivered once');
  assert.deepEqual(report.unreached, ['ghost']);
});

test('nobody reachable: not delivered, no transport called', async () => {
  const { a, b, dispatcher } = setup();
  const report = await dispatcher.dispatch({ uids: ['ghost'] }, msg);
  assert.deepEqual(report, { delivered: false, sent: 0, failed: 0, rejected: 0, results: [], unreached: ['ghost'] });
  assert.equal(a.calls.length + b.calls.length, 0);
});

test('broadcast reaches every uid of every transport', async () => {
  const { registry, a, b, dispatcher } = setup();
  registry.index('a').add('uid1', 'a1');
  registry.index('b').add('uid2', 'b2');
  registry.index('b').add('uid1', 'b1');
  const report = await dispatcher.dispatch({ broadcast: true }, msg);
  assert.equal(report.sent, 3);
  assert.deepEqual(a.calls.map((c) => c.uid), ['uid1']);
  assert.deepEqual(b.calls.map((c) => c.uid).sort(), ['uid1', 'uid2']);
});

test('transports run concurrently: one waits for the other to have been called', async () => {
  const { registry, a, b, dispatcher } = setup();
  registry.index('a').add('uid1', 'a1');
  registry.index('b').add('uid1', 'b1');
  let bCalled!: () => void;
  const bStarted = new Promise<void>((resolve) => (bCalled = resolve));
  a.onDeliver = () => bStarted; // a cannot finish before b has started
  b.onDeliver = () => bCalled();
  const report = await dispatcher.dispatch({ uids: ['uid1'] }, msg);
  assert.equal(report.sent, 2);
});

for (const behaviour of ['throw', 'reject'] as const) {
  test(`a transport that fails (${behaviour}) becomes one failed entry and the others still deliver`, async () => {
    const { registry, a, dispatcher } = setup();
    registry.index('a').add('uid1', 'a1');
    registry.index('b').add('uid1', 'b1');
    a.behaviour.set('uid1', behaviour);
    const report = await dispatcher.dispatch({ uids: ['uid1'] }, msg);
    assert.equal(report.delivered, true);
    assert.deepEqual(report.results.find((r) => r.transport === 'a'), {
      uid: 'uid1',
      transport: 'a',
      target: '*',
      status: 'failed',
      reason: behaviour === 'throw' ? 'a exploded' : 'a is down',
    });
    assert.equal(report.results.find((r) => r.transport === 'b')?.status, 'sent');
  });
}

test('a hanging transport is cut off at deliverTimeoutMs, its signal aborts, and the others are not held up', async () => {
  const { registry, a, dispatcher } = setup(100);
  registry.index('a').add('uid1', 'a1');
  registry.index('b').add('uid1', 'b1');
  a.behaviour.set('uid1', 'hang-ignoring-signal');
  const started = Date.now();
  const report = await dispatcher.dispatch({ uids: ['uid1'] }, msg);
  const took = Date.now() - started;
  assert.ok(took >= 90, `not reported before the deadline (${took} ms)`);
  assert.equal(report.results.find((r) => r.transport === 'b')?.status, 'sent');
  assert.deepEqual(report.results.find((r) => r.transport === 'a'), {
    uid: 'uid1',
    transport: 'a',
    target: '*',
    status: 'failed',
    reason: 'timeout after 100 ms',
  });
  assert.equal(a.calls[0]?.signal.aborted, true, 'the transport is told to give up');
});

test('canReach that throws counts as unreachable', async () => {
  const { registry, a, dispatcher } = setup();
  registry.index('a').add('uid1', 'a1');
  a.canReach = () => {
    throw new Error('broken index');
  };
  const report = await dispatcher.dispatch({ uids: ['uid1'] }, msg);
  assert.deepEqual(report.unreached, ['uid1']);
});

test('rejected and failed are counted; a rejected target stays registered: retiring dead targets is the transport\'s (push/retry.ts), not the dispatcher\'s', async () => {
  const { registry, a, dispatcher } = setup();
  registry.index('a').add('uid1', 'gone');
  registry.index('a').add('uid1', 'busy');
  registry.index('a').add('uid1', 'fine');
  a.canned.set('uid1', [
    { transport: 'a', target: 'gone', status: 'rejected', reason: 'Unregistered' },
    { transport: 'a', target: 'busy', status: 'failed', reason: 'ServiceUnavailable' },
    { transport: 'a', target: 'fine', status: 'sent' },
  ]);
  const report = await dispatcher.dispatch({ uids: ['uid1'] }, msg);
  assert.deepEqual([report.sent, report.failed, report.rejected], [1, 1, 1]);
  assert.deepEqual(report.results[0], { uid: 'uid1', transport: 'a', target: 'gone', status: 'rejected', reason: 'Unregistered' });
  assert.deepEqual(registry.index('a').targets('uid1').sort(), ['busy', 'fine', 'gone']);
});

test('close() waits for deliveries in flight, then dispatch rejects with NOTIFY_ERR_CLOSED', async () => {
  const { registry, a, dispatcher } = setup();
  registry.index('a').add('uid1', 'a1');
  let release!: () => void;
  a.onDeliver = () => new Promise<void>((resolve) => (release = resolve));
  const inflight = dispatcher.dispatch({ uids: ['uid1'] }, msg);
  let closed = false;
  const closing = dispatcher.close().then(() => (closed = true));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(closed, false, 'close waits for the delivery in flight');
  release();
  assert.equal((await inflight).sent, 1);
  await closing;
  await assert.rejects(async () => dispatcher.dispatch({ uids: ['uid1'] }, msg), (err: unknown) => {
    return err instanceof NotifyError && err.code === 'NOTIFY_ERR_CLOSED';
  });
});

test('options are validated up front', () => {
  const registry = new MemoryRegistry();
  const a = new RecordingTransport('a', registry.index('a'));
  assert.throws(() => new Dispatcher({ transports: [a], everyone: () => [...registry.uids()], deliverTimeoutMs: 0, log: silentLogger }), /deliverTimeoutMs/);
  assert.throws(() => new Dispatcher({ transports: [a, a], everyone: () => [...registry.uids()], deliverTimeoutMs: 10, log: silentLogger }), /two transports are named "a"/);
});

test('a uid whose every transport answered with no target at all is reported unreached (a transport that can only tell at delivery time)', async () => {
  const lateTeller = {
    name: 'late',
    start: async () => {},
    stop: async () => {},
    canReach: () => true,
    deliver: (uid: string) => (uid === 'here' ? [{ transport: 'late', target: 's1', status: 'sent' as const }] : []),
  };
  const dispatcher = new Dispatcher({ transports: [lateTeller], everyone: () => ['here', 'gone'], deliverTimeoutMs: 2000, log: silentLogger });
  const report = await dispatcher.dispatch({ uids: ['here', 'gone'] }, msg);
  assert.deepEqual(report.results.map((r) => r.uid), ['here']);
  assert.deepEqual(report.unreached, ['gone']);
  const broadcast = await dispatcher.dispatch({ broadcast: true }, msg);
  assert.deepEqual(broadcast.unreached, [], 'a broadcast names no unreached uids');
});
