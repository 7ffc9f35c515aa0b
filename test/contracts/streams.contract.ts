import assert from 'node:assert/strict';
import { test as nodeTest, type TestContext } from 'node:test';
import type { MessageStreams, Publication, StreamMessage } from '../../src/store/stream.js';
import { BROADCAST_STREAM, streamOf } from '../../src/store/stream.js';

/** What a contract test asks of the backend it builds: its bounds and the clock it reads. */
export interface StreamsSetup {
  /** Publications kept per stream. */
  size: number;
  /** How long a publication is kept at most. */
  ttlMs: number;
  /** The clock the backend reads expiry by (the test moves it). */
  now: () => number;
}

export type MakeStreams = (t: TestContext, setup: StreamsSetup) => MessageStreams | Promise<MessageStreams>;

/** A clock the test moves by hand. */
export function manualClock(start = 1_700_000_000_000): { now: number; fn: () => number } {
  const c = { now: start, fn: () => c.now };
  return c;
}

const msg = (id: string, more: Partial<StreamMessage> = {}): StreamMessage => ({ id, frame: `frame of ${id}`, json: false, ...more });
const idsOf = (pubs: readonly Publication[]): string[] => pubs.map((p) => p.id);
/** A publication as stored: without `receivers` and `sessions`, which only a publish answers with. */
export const stored = (p: Publication | undefined): Publication | undefined => {
  if (p === undefined) return undefined;
  const { receivers: _r, sessions: _s, ...rest } = p;
  return rest;
};

/**
 * The MessageStreams contract (src/store/stream.ts), written against the interface only, so it
 * runs unchanged against every backend. `make` builds a fresh, empty backend per test; `skip`
 * skips the suite where the backend's server is not installed.
 */
export function streamsContract(name: string, make: MakeStreams, opts: { skip?: string | boolean } = {}): void {
  const test = (title: string, fn: (t: TestContext) => Promise<void>) => nodeTest(title, { skip: opts.skip ?? false }, fn);
  const HOUR = 3_600_000;
  async function open(t: TestContext, over: Partial<StreamsSetup> = {}) {
    const clock = manualClock();
    const setup: StreamsSetup = { size: 100, ttlMs: 24 * HOUR, now: clock.fn, ...over };
    const s = await make(t, setup);
    t.after(() => s.close());
    return { s, clock };
  }

  test(`${name} contract: offsets start at 1 and grow by exactly 1 per publication, per stream; publish resolves with one publication per stream named`, async (t) => {
    const { s } = await open(t);
    const a = streamOf('alice');
    const b = streamOf('bob');
    const p1 = await s.publish([a], msg('m1'));
    const p2 = await s.publish([b], msg('m2'));
    const p3 = await s.publish([a], msg('m3'));
    const p4 = await s.publish([a, b], msg('m4'));
    assert.deepEqual(p1.map((p) => [p.stream, p.offset, p.id]), [[a, 1, 'm1']]);
    assert.deepEqual(p2.map((p) => [p.stream, p.offset, p.id]), [[b, 1, 'm2']], "another stream's offsets start at 1 too");
    assert.deepEqual(p3.map((p) => [p.stream, p.offset, p.id]), [[a, 2, 'm3']]);
    assert.deepEqual(p4.map((p) => [p.stream, p.offset, p.id]), [[a, 3, 'm4'], [b, 2, 'm4']], 'one publication per stream, in the order named');
  });

  test(`${name} contract: publishes issued together get offsets in the order of the calls`, async (t) => {
    const { s } = await open(t);
    const a = streamOf('alice');
    const all = await Promise.all(['c1', 'c2', 'c3', 'c4', 'c5'].map((id) => s.publish([a], msg(id))));
    assert.deepEqual(all.map((pubs) => [pubs[0]?.id, pubs[0]?.offset]), [['c1', 1], ['c2', 2], ['c3', 3], ['c4', 4], ['c5', 5]]);
    const page = await s.history(a, { limit: 10 });
    assert.deepEqual(idsOf(page.publications), ['c1', 'c2', 'c3', 'c4', 'c5']);
  });

  test(`${name} contract: one publish to several streams is in each of them, with its frame and json flag; once it resolves it is readable`, async (t) => {
    const { s } = await open(t);
    const keys = [streamOf('alice'), streamOf('bob'), BROADCAST_STREAM];
    const pubs = await s.publish(keys, msg('both', { frame: '{"n":1}', json: true }));
    for (const key of keys) {
      const page = await s.history(key, { limit: 10 });
      assert.deepEqual(
        page.publications.map((p) => ({ stream: p.stream, id: p.id, frame: p.frame, json: p.json })),
        [{ stream: key, id: 'both', frame: '{"n":1}', json: true }],
        `${key} has it`,
      );
      assert.deepEqual(page.publications[0], stored(pubs.find((p) => p.stream === key)), 'history returns what publish returned (but receivers, a publish-time figure)');
    }
    const plain = await s.publish([streamOf('alice')], msg('text', { frame: 'plain text', json: false }));
    const again = await s.history(streamOf('alice'), { after: { offset: 1, epoch: pubs[0]?.epoch as string }, limit: 10 });
    assert.deepEqual(again.publications.map((p) => [p.id, p.frame, p.json]), [['text', 'plain text', false]]);
    assert.equal(plain[0]?.offset, 2);
  });

  test(`${name} contract: a uid named "*" is an ordinary uid: its stream is not the broadcast stream`, async (t) => {
    const { s } = await open(t);
    assert.notEqual(streamOf('*'), BROADCAST_STREAM);
    await s.publish([streamOf('*')], msg('star'));
    await s.publish([BROADCAST_STREAM], msg('all'));
    assert.deepEqual(idsOf((await s.history(streamOf('*'), { limit: 10 })).publications), ['star']);
    assert.deepEqual(idsOf((await s.history(BROADCAST_STREAM, { limit: 10 })).publications), ['all']);
  });

  test(`${name} contract: \`at\` orders publications across streams: a later publish has a larger at in every stream`, async (t) => {
    const { s } = await open(t);
    const a = streamOf('alice');
    const b = streamOf('bob');
    const first = await s.publish([a, b], msg('first'));
    const second = await s.publish([b], msg('second'));
    const third = await s.publish([BROADCAST_STREAM, a], msg('third'));
    const maxAt = (pubs: Publication[]) => Math.max(...pubs.map((p) => p.at));
    const minAt = (pubs: Publication[]) => Math.min(...pubs.map((p) => p.at));
    assert.ok(minAt(second) > maxAt(first), `second (${minAt(second)}) after first (${maxAt(first)})`);
    assert.ok(minAt(third) > maxAt(second), `third (${minAt(third)}) after second (${maxAt(second)})`);
    // Merging two streams by `at` gives publish order (what a resume does).
    const merged = [...(await s.history(a, { limit: 10 })).publications, ...(await s.history(BROADCAST_STREAM, { limit: 10 })).publications, ...(await s.history(b, { limit: 10 })).publications]
      .sort((x, y) => x.at - y.at)
      .map((p) => `${p.id}@${p.stream}`);
    assert.deepEqual(merged.map((x) => x.split('@')[0]), ['first', 'first', 'second', 'third', 'third']);
  });

  test(`${name} contract: history after a position is exclusive and in order; limit keeps the oldest; top is the newest position`, async (t) => {
    const { s } = await open(t);
    const a = streamOf('alice');
    let epoch = '';
    for (const id of ['m1', 'm2', 'm3', 'm4', 'm5']) epoch = (await s.publish([a], msg(id)))[0]?.epoch as string;
    await s.publish([streamOf('other')], msg('elsewhere'));
    const all = await s.history(a, { limit: 100 });
    assert.deepEqual(idsOf(all.publications), ['m1', 'm2', 'm3', 'm4', 'm5'], 'no position: from the oldest');
    assert.deepEqual(all.publications.map((p) => p.offset), [1, 2, 3, 4, 5]);
    assert.deepEqual(all.top, { offset: 5, epoch });
    const after2 = await s.history(a, { after: { offset: 2, epoch }, limit: 100 });
    assert.deepEqual(idsOf(after2.publications), ['m3', 'm4', 'm5'], 'exclusive of the position itself');
    const limited = await s.history(a, { after: { offset: 1, epoch }, limit: 2 });
    assert.deepEqual(idsOf(limited.publications), ['m2', 'm3'], 'limit keeps the oldest');
    assert.deepEqual(limited.top, { offset: 5, epoch }, 'top is the newest position even when the page stops short');
    const atTop = await s.history(a, { after: { offset: 5, epoch }, limit: 100 });
    assert.deepEqual(atTop.publications, [], 'after the newest: nothing');
    assert.deepEqual(atTop.top, { offset: 5, epoch });
  });

  test(`${name} contract: history afterAt is exclusive; a stream with nothing yet has top offset 0`, async (t) => {
    const { s } = await open(t);
    const a = streamOf('alice');
    const [p1] = await s.publish([a], msg('m1'));
    await s.publish([a], msg('m2'));
    const page = await s.history(a, { afterAt: (p1 as Publication).at, limit: 10 });
    assert.deepEqual(idsOf(page.publications), ['m2']);
    const empty = await s.history(streamOf('nobody'), { limit: 10 });
    assert.deepEqual(empty.publications, []);
    assert.equal(empty.top.offset, 0);
    assert.equal(empty.top.epoch, (p1 as Publication).epoch, 'the epoch of the backend, even for an empty stream');
  });

  test(`${name} contract: a position of a foreign epoch reads from the oldest stored`, async (t) => {
    const { s } = await open(t);
    const a = streamOf('alice');
    const [p] = await s.publish([a], msg('m1'));
    await s.publish([a], msg('m2'));
    await s.publish([a], msg('m3'));
    const foreign = `not-${(p as Publication).epoch}`;
    const page = await s.history(a, { after: { offset: 2, epoch: foreign }, limit: 10 });
    assert.deepEqual(idsOf(page.publications), ['m1', 'm2', 'm3'], 'an old position is never silently reused');
    assert.equal(page.top.epoch, (p as Publication).epoch);
  });

  test(`${name} contract: expired publications are not in history (ttl per message, capped by the store's), but locate still finds them`, async (t) => {
    const { s, clock } = await open(t, { ttlMs: 10_000 });
    const a = streamOf('alice');
    await s.publish([a], msg('short', { ttlMs: 1000 }));
    await s.publish([a], msg('long'));
    await s.publish([a], msg('capped', { ttlMs: 60_000 }));
    clock.now += 999;
    assert.deepEqual(idsOf((await s.history(a, { limit: 10 })).publications), ['short', 'long', 'capped']);
    clock.now += 1;
    assert.deepEqual(idsOf((await s.history(a, { limit: 10 })).publications), ['long', 'capped'], 'gone at its own expiry');
    const expired = await s.locate(a, 'short');
    assert.equal(expired?.id, 'short', 'locate finds an expired publication');
    assert.equal(expired?.offset, 1);
    assert.equal(expired?.stream, a);
    // From that position on: only what came later.
    const after = await s.history(a, { after: { offset: (expired as Publication).offset, epoch: (expired as Publication).epoch }, limit: 10 });
    assert.deepEqual(idsOf(after.publications), ['long', 'capped']);
    clock.now += 9000;
    assert.deepEqual(idsOf((await s.history(a, { limit: 10 })).publications), [], "the store's ttl caps a longer per-message ttl");
    assert.equal((await s.history(a, { limit: 10 })).top.offset, 3, 'the position stays');
  });

  test(`${name} contract: locate finds an id in one stream with its position and at; not in another stream; undefined when unknown`, async (t) => {
    const { s } = await open(t);
    const a = streamOf('alice');
    const b = streamOf('bob');
    await s.publish([a], msg('a1'));
    const [pb] = await s.publish([b, a], msg('both'));
    const found = await s.locate(a, 'both');
    const stored = (await s.history(a, { limit: 10 })).publications[1] as Publication;
    assert.deepEqual([found?.stream, found?.offset, found?.epoch, found?.at, found?.id], [a, 2, stored.epoch, stored.at, 'both']);
    assert.equal((await s.locate(b, 'both'))?.offset, (pb as Publication).offset);
    assert.equal(await s.locate(b, 'a1'), undefined, "another stream's message is no position here");
    assert.equal(await s.locate(a, 'never'), undefined);
    assert.equal(await s.locate(streamOf('nobody'), 'a1'), undefined);
  });

  test(`${name} contract: each stream keeps at most size publications, the newest; one stream does not push out another's`, async (t) => {
    const { s } = await open(t, { size: 3 });
    const a = streamOf('alice');
    const b = streamOf('bob');
    await s.publish([b], msg('b1'));
    for (let i = 1; i <= 5; i++) await s.publish([a], msg(`a${i}`));
    const page = await s.history(a, { limit: 10 });
    assert.deepEqual(idsOf(page.publications), ['a3', 'a4', 'a5']);
    assert.deepEqual(page.publications.map((p) => p.offset), [3, 4, 5], 'offsets are kept');
    assert.equal(page.top.offset, 5);
    assert.deepEqual(idsOf((await s.history(b, { limit: 10 })).publications), ['b1']);
    const epoch = page.top.epoch;
    assert.deepEqual(idsOf((await s.history(a, { after: { offset: 1, epoch }, limit: 10 })).publications), ['a3', 'a4', 'a5'], 'after a position pushed out: from the oldest kept');
  });

  test(`${name} contract: size counts what is stored; follow and unfollow are idempotent`, async (t) => {
    const { s } = await open(t);
    assert.equal(s.size, 0);
    await s.publish([streamOf('a'), streamOf('b')], msg('x'));
    await s.publish([BROADCAST_STREAM], msg('y'));
    assert.equal(s.size, 3, 'one per stream a publish named');
    const remote: Publication[] = [];
    s.onRemote((p) => remote.push(p));
    await s.follow(streamOf('a'));
    await s.follow(streamOf('a'));
    await s.unfollow(streamOf('a'));
    await s.unfollow(streamOf('a'));
    await s.publish([streamOf('a')], msg('z'));
    assert.deepEqual(remote, [], "this node's own publications are not handed back to it as remote");
  });
}
