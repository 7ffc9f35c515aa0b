import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type { Presence } from '../../src/store/presence.js';

/** Builds a fresh, empty Presence for the node named `node` (the one that adds the sessions in these tests). */
export type MakePresence = (t: TestContext, node: string) => Presence | Promise<Presence>;

const sorted = (xs: readonly string[]): string[] => [...xs].sort();

/** The Presence contract (src/store/presence.ts), against the interface only. */
export function presenceContract(name: string, make: MakePresence, opts: { skip?: string | false } = {}): void {
  const NODE = 'node-a';

  test(`${name} contract: add makes a uid present with that session on that node; count/has/sessions/uids agree`, opts, async (t) => {
    const p = await make(t, NODE);
    assert.equal(await p.has('alice'), false);
    assert.equal(await p.count('alice'), 0);
    assert.deepEqual(await p.sessions('alice'), []);
    assert.deepEqual(await p.uids(), []);
    await p.add('alice', 's1', NODE);
    await p.add('alice', 's2', NODE);
    await p.add('bob', 's3', NODE);
    assert.equal(await p.has('alice'), true);
    assert.equal(await p.count('alice'), 2);
    assert.equal(await p.count('bob'), 1);
    assert.deepEqual((await p.sessions('alice')).map((e) => `${e.node}/${e.sid}`).sort(), [`${NODE}/s1`, `${NODE}/s2`]);
    assert.deepEqual(sorted(await p.uids()), ['alice', 'bob']);
    assert.equal(await p.has('carol'), false);
  });

  test(`${name} contract: add and remove are idempotent`, opts, async (t) => {
    const p = await make(t, NODE);
    await p.add('alice', 's1', NODE);
    await p.add('alice', 's1', NODE);
    assert.equal(await p.count('alice'), 1, 'adding the same session twice is one session');
    assert.deepEqual((await p.sessions('alice')).map((e) => e.sid), ['s1']);
    await p.remove('alice', 's1');
    await p.remove('alice', 's1');
    await p.remove('alice', 'never-added');
    await p.remove('nobody', 's9');
    assert.equal(await p.count('alice'), 0);
    assert.equal(await p.has('alice'), false);
    assert.deepEqual(await p.uids(), [], 'a uid with no sessions left is not listed');
  });

  test(`${name} contract: keyed by session: removing an old session of a uid does not remove a newer one`, opts, async (t) => {
    const p = await make(t, NODE);
    await p.add('alice', 'old', NODE);
    await p.add('alice', 'new', NODE);
    await p.remove('alice', 'old');
    assert.equal(await p.has('alice'), true);
    assert.equal(await p.count('alice'), 1);
    assert.deepEqual((await p.sessions('alice')).map((e) => e.sid), ['new']);
    assert.deepEqual(await p.uids(), ['alice']);
    // And the stale close arriving again later changes nothing.
    await p.remove('alice', 'old');
    assert.deepEqual((await p.sessions('alice')).map((e) => e.sid), ['new']);
  });

  test(`${name} contract: a session belongs to one uid`, opts, async (t) => {
    const p = await make(t, NODE);
    await p.add('alice', 's1', NODE);
    await p.add('bob', 's1', NODE);
    assert.deepEqual((await p.sessions('bob')).map((e) => e.sid), ['s1']);
    assert.deepEqual((await p.sessions('alice')).map((e) => e.sid), [], 's1 is no longer one of alice');
    assert.deepEqual(await p.uids(), ['bob']);
  });

  test(`${name} contract: reads are snapshots: a list read before a session leaves keeps its entries`, opts, async (t) => {
    const p = await make(t, NODE);
    await p.add('alice', 's1', NODE);
    await p.add('alice', 's2', NODE);
    const before = await p.sessions('alice');
    const uidsBefore = await p.uids();
    await p.remove('alice', 's1');
    await p.remove('alice', 's2');
    assert.deepEqual(before.map((e) => e.sid).sort(), ['s1', 's2']);
    assert.deepEqual(uidsBefore, ['alice']);
    assert.deepEqual(await p.sessions('alice'), []);
  });

  test(`${name} contract: touch (the node's heartbeat) keeps the node's sessions`, opts, async (t) => {
    const p = await make(t, NODE);
    await p.add('alice', 's1', NODE);
    await p.add('bob', 's2', NODE);
    await p.touch(NODE, ['s1', 's2']);
    await p.touch(NODE, ['s1', 's2']);
    assert.deepEqual(sorted(await p.uids()), ['alice', 'bob']);
    assert.equal(await p.count('alice'), 1);
  });

  test(`${name} contract: the info a session is added with comes back with it, and goes with it`, opts, async (t) => {
    const p = await make(t, NODE);
    const info = { address: '203.0.113.7', connectedAt: 1_700_000_000_000, protocol: 'resume' as const, resuming: true };
    await p.add('alice', 's1', NODE, info);
    await p.add('alice', 's2', NODE);
    const entries = await p.sessions('alice');
    assert.deepEqual(entries.find((e) => e.sid === 's1')?.info, info);
    assert.equal(entries.find((e) => e.sid === 's2')?.info, undefined);
    await p.remove('alice', 's1');
    await p.add('alice', 's1', NODE);
    assert.equal((await p.sessions('alice')).find((e) => e.sid === 's1')?.info, undefined, 'removed with its session');
  });
}
