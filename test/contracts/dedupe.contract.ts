import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type { Claim, Dedupe } from '../../src/store/dedupe.js';

export interface DedupeSubject {
  dedupe: Dedupe;
  /**
   * The backend as a new process finds it once this one's writes are durable (a crash after the
   * commit), when the backend keeps claims beyond the process.
   */
  reopen?: () => Promise<Dedupe>;
}

/** Builds a fresh, empty Dedupe reading time from `now`. */
export type MakeDedupe = (t: TestContext, opts: { now: () => number }) => DedupeSubject | Promise<DedupeSubject>;

const WINDOW = 10_000;

/** The Dedupe contract (src/store/dedupe.ts), against the interface only. */
export function dedupeContract(name: string, make: MakeDedupe, opts: { skip?: string | false } = {}): void {
  async function open(t: TestContext) {
    const clock = { now: 1_700_000_000_000 };
    const subject = await make(t, { now: () => clock.now });
    return { ...subject, clock };
  }

  test(`${name} contract: exactly one first claim per id within the window; the others see no answer while none is recorded`, opts, async (t) => {
    const { dedupe } = await open(t);
    const together = await Promise.all([1, 2, 3, 4].map(() => dedupe.claim('order-1', WINDOW)));
    assert.deepEqual(together.filter((c) => c.first).length, 1, `one first claim: ${JSON.stringify(together)}`);
    assert.deepEqual(together[0], { first: true }, 'the first caller gets it');
    for (const c of together.slice(1)) assert.deepEqual(c, { first: false, answer: undefined });
    assert.deepEqual(await dedupe.claim('order-1', WINDOW), { first: false, answer: undefined });
    assert.deepEqual(await dedupe.claim('order-2', WINDOW), { first: true }, 'ids are independent');
  });

  test(`${name} contract: a later claim sees the recorded answer; the latest record wins`, opts, async (t) => {
    const { dedupe } = await open(t);
    assert.deepEqual(await dedupe.claim('order-1', WINDOW), { first: true });
    await dedupe.record('order-1', '{"provisional":true}');
    assert.deepEqual(await dedupe.claim('order-1', WINDOW), { first: false, answer: '{"provisional":true}' });
    await dedupe.record('order-1', '{"final":true}');
    assert.deepEqual(await dedupe.claim('order-1', WINDOW), { first: false, answer: '{"final":true}' });
    assert.deepEqual(await dedupe.claim('order-2', WINDOW), { first: true }, "another id does not see order-1's answer");
  });

  test(`${name} contract: once the window has passed, the id can be claimed again (and the old answer is gone)`, opts, async (t) => {
    const { dedupe, clock } = await open(t);
    assert.deepEqual(await dedupe.claim('order-1', WINDOW), { first: true });
    await dedupe.record('order-1', '{"n":1}');
    clock.now += WINDOW - 1;
    assert.deepEqual(await dedupe.claim('order-1', WINDOW), { first: false, answer: '{"n":1}' }, 'still within the window');
    clock.now += 1;
    assert.deepEqual(await dedupe.claim('order-1', WINDOW), { first: true }, 'claimable again when the window is over');
    assert.deepEqual(await dedupe.claim('order-1', WINDOW), { first: false, answer: undefined }, 'the new claim has no answer yet');
  });

  test(`${name} contract: when the backend outlives the process, a claim and its answer are there for the next one`, opts, async (t) => {
    const { dedupe, reopen } = await open(t);
    if (reopen === undefined) {
      t.skip('this backend lives in one process');
      return;
    }
    assert.deepEqual(await dedupe.claim('order-1', WINDOW), { first: true });
    await dedupe.record('order-1', '{"ok":1}');
    assert.deepEqual(await dedupe.claim('order-2', WINDOW), { first: true });
    const next = await reopen();
    assert.deepEqual(await next.claim('order-1', WINDOW), { first: false, answer: '{"ok":1}' } satisfies Claim);
    assert.deepEqual(await next.claim('order-2', WINDOW), { first: false, answer: undefined }, 'a claim without an answer is kept too');
    assert.deepEqual(await next.claim('order-3', WINDOW), { first: true });
  });
}
