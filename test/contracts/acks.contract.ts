import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type { AckRelay } from '../../src/store/acks.js';

export type MakeAckRelay = (t: TestContext) => AckRelay | Promise<AckRelay>;

/** Longer than any test here may take: a wait that ends before it ended early. */
const NEVER_MS = 30_000;
/** A timeout a wait is expected to reach (nothing asserts how long it took). */
const SHORT_MS = 30;

/**
 * The AckRelay contract (src/store/acks.ts), against the interface only. `ack` is awaited before
 * what should count it is checked; a relay across nodes (acks.test.ts) makes sure, before each
 * ack, that Redis has the waiting node's registration, as the publish after it ensures in use. A wait with a timeout
 * of NEVER_MS that resolves at all resolved early: the test's own timeout would end it first.
 */
export function ackRelayContract(name: string, make: MakeAckRelay, extra: { skip?: string | false } = {}): void {
  const opts = { timeout: 20_000, ...extra };

  test(`${name} contract: wait resolves early, once every uid waited for has acked`, opts, async (t) => {
    const r = await make(t);
    const w = r.wait('m1', new Set(['alice', 'bob']), NEVER_MS);
    await r.ack('m1', 'alice');
    await r.ack('m1', 'bob');
    assert.deepEqual([...(await w)].sort(), ['alice', 'bob']);
  });

  test(`${name} contract: at the timeout, wait resolves with the subset that acked`, opts, async (t) => {
    const r = await make(t);
    const w = r.wait('m1', new Set(['alice', 'bob', 'carol']), SHORT_MS);
    await r.ack('m1', 'bob');
    assert.deepEqual([...(await w)], ['bob']);
  });

  test(`${name} contract: acks for another message id or from a uid not waited for do not count`, opts, async (t) => {
    const r = await make(t);
    const w = r.wait('m1', new Set(['alice']), SHORT_MS);
    await r.ack('m2', 'alice');
    await r.ack('m1', 'mallory');
    assert.deepEqual([...(await w)], []);
  });

  test(`${name} contract: an ack nobody waits for is dropped, not stored for a later wait`, opts, async (t) => {
    const r = await make(t);
    await r.ack('m1', 'alice');
    assert.deepEqual([...(await r.wait('m1', new Set(['alice']), SHORT_MS))], []);
  });

  test(`${name} contract: an ack counts for every current waiter of the id that waits for that uid`, opts, async (t) => {
    const r = await make(t);
    const w1 = r.wait('m1', new Set(['alice']), NEVER_MS);
    const w2 = r.wait('m1', new Set(['alice', 'bob']), NEVER_MS);
    await r.ack('m1', 'alice');
    assert.deepEqual([...(await w1)], ['alice']);
    await r.ack('m1', 'bob');
    assert.deepEqual([...(await w2)].sort(), ['alice', 'bob']);
  });

  test(`${name} contract: wait never rejects: with nobody to wait for, or after the wait ended, it still resolves`, opts, async (t) => {
    const r = await make(t);
    assert.deepEqual([...(await r.wait('m1', new Set(), SHORT_MS))], []);
    const done = await r.wait('m2', new Set(['alice']), SHORT_MS);
    await r.ack('m2', 'alice');
    assert.deepEqual([...done], [], 'a late ack changes nothing already answered');
  });

  test(`${name} contract: an ack that comes after expect and before until counts (an ack may overtake the delivery, never the expect)`, opts, async (t) => {
    const r = await make(t);
    const e = r.expect('m1', NEVER_MS);
    await r.ack('m1', 'alice');
    await r.ack('m1', 'mallory');
    assert.deepEqual([...(await e.until(new Set(['alice']), NEVER_MS))], ['alice'], 'resolved early, with the uids it waits for only');
  });

  test(`${name} contract: until resolves at its timeout with those acked before and during it`, opts, async (t) => {
    const r = await make(t);
    const e = r.expect('m1', SHORT_MS);
    await r.ack('m1', 'alice');
    const w = e.until(new Set(['alice', 'bob', 'carol']), SHORT_MS);
    await r.ack('m1', 'bob');
    assert.deepEqual([...(await w)].sort(), ['alice', 'bob']);
  });

  test(`${name} contract: end ends the wait: a later ack is dropped, and until on it resolves at once with nothing`, opts, async (t) => {
    const r = await make(t);
    const e = r.expect('m1', NEVER_MS);
    e.end();
    e.end();
    await r.ack('m1', 'alice');
    assert.deepEqual([...(await e.until(new Set(['alice']), NEVER_MS))], []);
    assert.deepEqual([...(await r.wait('m1', new Set(['alice']), SHORT_MS))], [], 'the ack was not kept for a later wait either');
  });
}
