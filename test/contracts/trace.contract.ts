import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { type JournalEvent, type TraceStore, TRACE_LIMITS, foldTrace, retiredKey } from '../../src/store/trace.js';

/** Builds a fresh, empty TraceStore keeping records `ttlMs` (history.ttl) on the clock `now`. */
export type MakeTrace = (t: TestContext, o: { ttlMs: number; maxMessages: number; now: () => number }) => TraceStore | Promise<TraceStore>;

const published = (id: string, at: number): JournalEvent => ({
  type: 'published',
  id,
  at,
  ingress: 'http',
  audience: { uids: ['alice'] },
  audienceSize: 1,
  route: 'all',
  stored: true,
  node: 'n1',
});

/** The TraceStore contract (src/store/trace.ts), against the interface only. */
export function traceContract(name: string, make: MakeTrace, opts: { skip?: string | false } = {}): void {
  test(`${name} contract: events of a message come back in append order, also before they are written; other ids are apart`, opts, async (t) => {
    const now = Date.now();
    const s = await make(t, { ttlMs: 60_000, maxMessages: 1000, now: () => Date.now() });
    s.append(published('m1', now));
    s.append({ type: 'report', id: 'm1', at: now + 1, node: 'n1', audienceSize: 1, targets: [{ uid: 'alice', transport: 'apns', target: 'tok1', status: 'failed', reason: 'still trying', attempts: 1 }], total: 1, sent: 0, failed: 1, rejected: 0, unreached: [] });
    s.append({ type: 'target', id: 'm1', at: now + 2, uid: 'alice', transport: 'apns', target: 'tok1', status: 'sent', attempts: 2, node: 'n1' });
    s.append(published('m2', now));
    // Read at once: what is batched is part of the answer.
    const { events, dropped } = await s.events('m1');
    assert.deepEqual(events.map((e) => e.type), ['published', 'report', 'target']);
    assert.equal(dropped, 0);
    const trace = foldTrace('m1', events);
    assert.equal(trace?.targets[0]?.status, 'sent', 'the retry loop outcome wins over the report entry');
    assert.equal(trace?.targets[0]?.attempts, 2);
    assert.deepEqual((await s.events('m2')).events.map((e) => e.type), ['published']);
    assert.deepEqual((await s.events('never')).events, []);
    await s.flush();
    assert.deepEqual((await s.events('m1')).events.map((e) => e.type), ['published', 'report', 'target'], 'the same once written');
  });

  test(`${name} contract: a device token's last outcome is its newest, per transport; websocket targets have none`, opts, async (t) => {
    const s = await make(t, { ttlMs: 60_000, maxMessages: 1000, now: () => Date.now() });
    const at = Date.now();
    s.append(published('m1', at));
    s.append({ type: 'report', id: 'm1', at, node: 'n1', audienceSize: 1, targets: [{ uid: 'alice', transport: 'websocket', target: 's1', status: 'sent', attempts: 1 }, { uid: 'alice', transport: 'apns', target: 'tok1', status: 'failed', reason: '503', attempts: 1 }], total: 2, sent: 1, failed: 1, rejected: 0, unreached: [] });
    s.append({ type: 'target', id: 'm1', at: at + 5, uid: 'alice', transport: 'apns', target: 'tok1', status: 'gave-up', reason: '503 (gave up after 4 attempts)', attempts: 4, node: 'n1' });
    await s.flush();
    const [apns, unknown] = await s.lastOutcome('apns', ['tok1', 'tok2']);
    assert.deepEqual(apns, { status: 'gave-up', reason: '503 (gave up after 4 attempts)', at: at + 5, messageId: 'm1' });
    assert.equal(unknown, undefined);
    assert.deepEqual(await s.lastOutcome('websocket', ['s1']), [undefined]);
    assert.deepEqual(await s.lastOutcome('other', ['tok1']), [undefined], 'per transport');
  });

  test(`${name} contract: a retired token is kept under its uid's record too`, opts, async (t) => {
    const s = await make(t, { ttlMs: 60_000, maxMessages: 1000, now: () => Date.now() });
    const at = Date.now();
    s.append(published('m1', at));
    s.append({ type: 'retired', id: 'm1', at, uid: 'alice', transport: 'apns', token: 'tok1', reason: 'Unregistered', node: 'n1' });
    const { events } = await s.events(retiredKey('alice'));
    assert.deepEqual(events.map((e) => e.type === 'retired' && [e.token, e.reason]), [['tok1', 'Unregistered']]);
    assert.deepEqual((await s.events(retiredKey('bob'))).events, []);
  });

  test(`${name} contract: at most TRACE_LIMITS.events events per message are kept (besides its published event); the rest are counted`, opts, async (t) => {
    const s = await make(t, { ttlMs: 60_000, maxMessages: 1000, now: () => Date.now() });
    const at = Date.now();
    s.append(published('big', at));
    for (let i = 0; i < TRACE_LIMITS.events + 9; i++) s.append({ type: 'ack', id: 'big', at, uid: `u${i}`, session: `s${i}` });
    await s.flush();
    const { events, dropped } = await s.events('big');
    // The bound may leave the publish's own event out of the count (the embedded store does).
    assert.ok(events.length === TRACE_LIMITS.events || events.length === TRACE_LIMITS.events + 1, `${events.length} kept`);
    assert.equal(events[0]?.type, 'published', 'the first events are the ones kept');
    assert.equal(events.length + dropped, TRACE_LIMITS.events + 10, 'the rest are counted');
    assert.deepEqual(foldTrace('big', events, dropped)?.truncated, { acks: events.length - 1 - TRACE_LIMITS.acks, events: dropped });
  });

  test(`${name} contract: a record is gone once older than the ttl`, opts, async (t) => {
    let clock = Date.now();
    const s = await make(t, { ttlMs: 1000, maxMessages: 1000, now: () => clock });
    s.append(published('old', clock));
    await s.flush();
    assert.equal((await s.events('old')).events.length, 1);
    clock += 1500;
    // A backend that expires by the server's clock (Redis) needs the real time to pass.
    await new Promise((r) => setTimeout(r, 1100));
    assert.deepEqual((await s.events('old')).events, []);
  });
}
