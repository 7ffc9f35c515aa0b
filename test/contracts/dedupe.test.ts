import assert from 'node:assert/strict';
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { silentLogger } from '../../src/obs/log.js';
import { MemoryDedupe } from '../../src/store/dedupe-memory.js';
import { RedisDedupe } from '../../src/store/dedupe-redis.js';
import { SqliteDedupe } from '../../src/store/dedupe-sqlite.js';
import { GroupCommit, openState } from '../../src/store/sqlite.js';
import { SqliteStreams } from '../../src/store/stream-sqlite.js';
import { streamOf } from '../../src/store/stream.js';
import { tempDir } from '../helpers/daemon.js';
import { SKIP_REDIS, startRedis } from '../helpers/redis.js';
import { redisClient } from '../helpers/redis-client.js';
import { dedupeContract } from './dedupe.contract.js';

const HOUR = 3_600_000;

dedupeContract('MemoryDedupe', (_t, o) => ({ dedupe: new MemoryDedupe({ now: o.now }) }));

/** A state database with its group commit and dedupe, closed when the test ends. */
function sqliteState(t: TestContext, dir: string, now: () => number) {
  const db = openState(dir);
  const commit = new GroupCommit(db);
  const dedupe = new SqliteDedupe(db, commit, { windowMs: HOUR, now });
  t.after(() => {
    dedupe.close();
    db.close();
  });
  return { db, commit, dedupe };
}

/**
 * What a process started after a crash finds: the state folder's files as they are on disk now
 * (the database and its WAL, copied while this connection stays open and unflushed).
 */
function afterCrash(t: TestContext, dir: string): string {
  const copy = join(tempDir(t, 'notify-crash-'), 'state');
  cpSync(dir, copy, { recursive: true });
  return copy;
}

dedupeContract('SqliteDedupe', (t, o) => {
  const dir = join(tempDir(t, 'notify-dedupe-'), 'state');
  const { commit, dedupe } = sqliteState(t, dir, o.now);
  return {
    dedupe,
    async reopen() {
      // What the publisher awaits: the group commit its claim went into.
      await commit.committed();
      return sqliteState(t, afterCrash(t, dir), o.now).dedupe;
    },
  };
});

// Redis outlives a node: the next process is another client of the same server.
dedupeContract(
  'RedisDedupe',
  async (t, o) => {
    const server = await startRedis(t);
    const dedupe = new RedisDedupe(await redisClient(t, server), { now: o.now });
    return { dedupe, reopen: async () => new RedisDedupe(await redisClient(t, server), { now: o.now }) };
  },
  { skip: SKIP_REDIS },
);

test('SqliteDedupe: a claim is committed with the message it belongs to: after a crash once the publish resolved, a retry is not first', async (t) => {
  const dir = join(tempDir(t, 'notify-dedupe-'), 'state');
  const { db, commit, dedupe } = sqliteState(t, dir, Date.now);
  const streams = new SqliteStreams(db, commit, { size: 100, ttlMs: HOUR, maxMessages: 1000, log: silentLogger });
  t.after(() => streams.close());

  // As the publisher does it: claim, then publish, in one run; answered once the publish resolves.
  assert.deepEqual(dedupe.claim('order-1', HOUR), { first: true });
  const crashedBefore = afterCrash(t, dir);
  await streams.publish([streamOf('alice')], { id: 'order-1', frame: 'hi', json: false });
  const crashedAfter = afterCrash(t, dir);

  const before = sqliteState(t, crashedBefore, Date.now);
  assert.deepEqual(before.dedupe.claim('order-1', HOUR), { first: true }, 'a crash before the commit lost the claim and the message alike');
  const after = sqliteState(t, crashedAfter, Date.now);
  assert.deepEqual(after.dedupe.claim('order-1', HOUR), { first: false, answer: undefined }, 'the claim is on disk with the message');
  const afterStreams = new SqliteStreams(after.db, after.commit, { size: 100, ttlMs: HOUR, maxMessages: 1000, log: silentLogger });
  t.after(() => afterStreams.close());
  assert.deepEqual(afterStreams.history(streamOf('alice'), { limit: 10 }).publications.map((p) => p.id), ['order-1']);
});
