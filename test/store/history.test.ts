import assert from 'node:assert/strict';
import { statSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import Database from 'better-sqlite3';
import { BROADCAST_UID, History, type HistoryOptions, type StoredMessage } from '../../src/store/history-sqlite.js';
import { silentLogger } from '../../src/obs/log.js';
import { type StateDb, openState } from '../../src/store/sqlite.js';
import { tempDir } from '../helpers/daemon.js';

// The message store on a real SQLite database in a temporary folder: what it keeps, what a
// resuming session gets back, and what is on disk (read through a second connection).

const HOUR = 3_600_000;

/** A clock the test moves by hand. */
function clock(start = 1_700_000_000_000) {
  const c = { now: start, fn: () => c.now };
  return c;
}

interface Store {
  dir: string;
  db: StateDb;
  h: History;
  /** A second, read-only connection to the same file: what another process would see. */
  peek: Database.Database;
  /** Rows on disk, as the second connection sees them, oldest first. */
  rows(): { seq: number; id: string; uid: string; expires_at: number; frame: string; json: number }[];
  /** Closes this History and its connection, and opens a new one on the same folder (a restart). */
  restart(opts?: Partial<HistoryOptions>): Store;
}

function openStore(t: TestContext, opts: Partial<HistoryOptions> = {}, dir = tempDir(t, 'notify-history-')): Store {
  const db = openState(dir);
  const h = new History(db, { size: 100, ttlMs: 24 * HOUR, maxMessages: 1_000_000, dedupeWindowMs: HOUR, log: silentLogger, ...opts });
  const peek = new Database(join(dir, 'notify.db'), { readonly: true });
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    peek.close();
    h.close();
    db.close();
  };
  t.after(close);
  const rowsStmt = peek.prepare<[], { seq: number; id: string; uid: string; expires_at: number; frame: string; json: number }>(
    'SELECT seq, id, uid, expires_at, frame, json FROM messages ORDER BY seq',
  );
  return {
    dir,
    db,
    h,
    peek,
    rows: () => rowsStmt.all(),
    restart(more = {}) {
      close();
      return openStore(t, { ...opts, ...more }, dir);
    },
  };
}

const ids = (r: { messages: StoredMessage[] }): string[] => r.messages.map((m) => m.id);

// ---------------------------------------------------------------------------------------------
// Durability and group commit

test('history: append + committed(): the rows are on disk for another connection, with their fields', async (t) => {
  const c = clock();
  const s = openStore(t, { now: c.fn, ttlMs: 10_000 });
  const seq = s.h.append('m1', ['alice'], '{"uid":"alice","n":1}', true);
  s.h.append('m2', ['alice', 'bob'], 'plain text', false, 2000);
  s.h.append('m3', [BROADCAST_UID], 'to everyone', false, 60_000);
  assert.equal(seq, 1);
  assert.equal(s.h.lastSeq, 4, 'one row per uid a message is for');
  assert.deepEqual(s.rows(), [], 'nothing is committed while the synchronous work runs');
  await s.h.committed();
  assert.deepEqual(s.rows(), [
    { seq: 1, id: 'm1', uid: 'alice', expires_at: c.now + 10_000, frame: '{"uid":"alice","n":1}', json: 1 },
    { seq: 2, id: 'm2', uid: 'alice', expires_at: c.now + 2000, frame: 'plain text', json: 0 },
    { seq: 3, id: 'm2', uid: 'bob', expires_at: c.now + 2000, frame: 'plain text', json: 0 },
    // A ttl longer than history.ttl is cut to it.
    { seq: 4, id: 'm3', uid: '*', expires_at: c.now + 10_000, frame: 'to everyone', json: 0 },
  ]);
  // Nothing queued: committed() resolves at once.
  await s.h.committed();
});

test('history: everything appended in one synchronous run is committed in one transaction, in the next microtask', async (t) => {
  const s = openStore(t);
  const wal = join(s.dir, 'notify.db-wal');
  const framesOf = () => {
    const pageSize = s.peek.pragma('page_size', { simple: true }) as number;
    return Math.max(0, statSync(wal).size - 32) / (pageSize + 24);
  };
  s.h.append('warm-up', ['u'], 'x', false);
  await s.h.committed();

  // 200 messages in one run: none visible before the microtask, all of them right after it.
  const before = framesOf();
  let committedInRun = -1;
  for (let i = 0; i < 200; i++) s.h.append(`batch-${i}`, [`u${i % 7}`], JSON.stringify({ n: i }), true);
  const seen: number[] = [];
  const countNow = () => (s.peek.prepare('SELECT count(*) AS n FROM messages').get() as { n: number }).n;
  committedInRun = countNow();
  queueMicrotask(() => seen.push(countNow()));
  await Promise.resolve();
  assert.equal(committedInRun, 1, 'nothing of the batch is committed during the synchronous run');
  assert.deepEqual(seen, [201], 'the whole batch is committed in the first microtask after the run');
  const batchFrames = framesOf() - before;

  // The same 200 appends each in a run of its own: one commit each.
  const before2 = framesOf();
  for (let i = 0; i < 200; i++) {
    s.h.append(`single-${i}`, [`u${i % 7}`], JSON.stringify({ n: i }), true);
    await s.h.committed();
  }
  const singleFrames = framesOf() - before2;
  assert.ok(singleFrames >= 200, `one commit (at least one WAL frame) per run: ${singleFrames} frames`);
  assert.ok(batchFrames <= 10, `one transaction for the batch writes a handful of WAL frames, not one commit per row: ${batchFrames} frames`);
  assert.equal(s.rows().length, 401);
});

test('history: committed() waits for the commit; flush() commits at once', async (t) => {
  const s = openStore(t);
  s.h.append('a', ['u'], 'x', false);
  const p = s.h.committed();
  assert.equal(s.rows().length, 0);
  s.h.flush();
  assert.equal(s.rows().length, 1, 'flush() commits synchronously');
  await p;
  // The microtask that was scheduled finds nothing left to do.
  await Promise.resolve();
  assert.equal(s.rows().length, 1);
});

// ---------------------------------------------------------------------------------------------
// Replay

test('history: replay(uid) returns the uid\'s own and broadcast messages, oldest first, with frame and json flag', (t) => {
  const s = openStore(t);
  s.h.append('a1', ['alice'], '{"n":1}', true);
  s.h.append('b1', ['bob'], 'bob only', false);
  s.h.append('all1', [BROADCAST_UID], 'everyone', false);
  s.h.append('ab', ['alice', 'bob'], '{"n":"both"}', true);
  s.h.append('a2', ['alice'], 'text for alice', false);

  const alice = s.h.replay('alice', undefined);
  assert.equal(alice.gap, false);
  assert.deepEqual(
    alice.messages.map((m) => [m.id, m.frame, m.json]),
    [
      ['a1', '{"n":1}', true],
      ['all1', 'everyone', false],
      ['ab', '{"n":"both"}', true],
      ['a2', 'text for alice', false],
    ],
  );
  assert.deepEqual(ids(s.h.replay('bob', undefined)), ['b1', 'all1', 'ab']);
  assert.deepEqual(ids(s.h.replay('carol', undefined)), ['all1'], 'a uid with nothing of its own still gets broadcasts');
  assert.deepEqual(ids(s.h.replay(BROADCAST_UID, undefined)), ['all1']);
  // Seqs increase along the replay.
  const seqs = alice.messages.map((m) => m.seq);
  assert.deepEqual(seqs, [...seqs].sort((x, y) => x - y));
});

test('history: replay(uid, since) returns only what came after since; since = the newest returns nothing', (t) => {
  const s = openStore(t);
  for (const id of ['m1', 'm2', 'm3', 'm4']) s.h.append(id, ['u'], id, false);
  s.h.append('bc', [BROADCAST_UID], 'bc', false);
  s.h.append('m5', ['u'], 'm5', false);

  assert.deepEqual(ids(s.h.replay('u', 'm1')), ['m2', 'm3', 'm4', 'bc', 'm5']);
  assert.deepEqual(ids(s.h.replay('u', 'm3')), ['m4', 'bc', 'm5']);
  assert.deepEqual(ids(s.h.replay('u', 'bc')), ['m5'], 'a broadcast id is a position too');
  const none = s.h.replay('u', 'm5');
  assert.deepEqual(none, { messages: [], gap: false, upTo: s.h.lastSeq });
});

test('history: an unknown since is a gap: gap true, and everything stored follows', (t) => {
  const s = openStore(t);
  s.h.append('m1', ['u'], 'one', false);
  s.h.append('other', ['v'], 'for v', false);
  s.h.append('m2', ['u'], 'two', false);
  const r = s.h.replay('u', 'never-seen');
  assert.equal(r.gap, true);
  assert.deepEqual(ids(r), ['m1', 'm2']);
  // Another uid's message is not a position in this uid's history.
  const wrong = s.h.replay('u', 'other');
  assert.equal(wrong.gap, true);
  assert.deepEqual(ids(wrong), ['m1', 'm2']);
  // A uid with nothing stored: a gap, and nothing.
  assert.deepEqual(s.h.replay('nobody', 'x'), { messages: [], gap: true, upTo: s.h.lastSeq });
  assert.deepEqual(s.h.replay('nobody', undefined), { messages: [], gap: false, upTo: s.h.lastSeq });
});

test('history: upTo is lastSeq, which counts rows appended so far, committed or not; append returns the last row\'s seq', (t) => {
  const s = openStore(t);
  assert.equal(s.h.lastSeq, 0);
  assert.equal(s.h.replay('u', undefined).upTo, 0);
  assert.equal(s.h.append('a', ['u'], 'a', false), 1);
  assert.equal(s.h.append('b', ['x', 'y', 'z'], 'b', false), 4);
  assert.equal(s.h.lastSeq, 4);
  const r = s.h.replay('nobody', undefined);
  assert.equal(r.upTo, 4);
  assert.equal(s.rows().length, 4, 'replay commits what was queued first');
  s.h.append('c', ['u'], 'c', false);
  assert.equal(s.h.replay('u', 'a').upTo, 5);
  assert.deepEqual(
    s.h.replay('u', undefined).messages.map((m) => m.seq),
    [1, 5],
  );
});

test('history: history.size: only the newest N messages of each uid are replayed', (t) => {
  const s = openStore(t, { size: 3 });
  for (let i = 1; i <= 5; i++) s.h.append(`a${i}`, ['alice'], `a${i}`, false);
  s.h.append('b1', ['bob'], 'b1', false);
  assert.deepEqual(ids(s.h.replay('alice', undefined)), ['a3', 'a4', 'a5']);
  assert.deepEqual(ids(s.h.replay('bob', undefined)), ['b1'], "one uid's messages do not push out another's");
  assert.deepEqual(ids(s.h.replay('alice', 'a3')), ['a4', 'a5']);
  const evicted = s.h.replay('alice', 'a1');
  assert.equal(evicted.gap, true, 'a since that was pushed out is a gap');
  assert.deepEqual(ids(evicted), ['a3', 'a4', 'a5']);
});

test('history: a per-message ttl hides the message once it has expired; others stay', (t) => {
  const c = clock();
  const s = openStore(t, { now: c.fn, ttlMs: 10_000 });
  s.h.append('short', ['u'], 'short', false, 1000);
  s.h.append('long', ['u'], 'long', false);
  s.h.append('longer-than-history', ['u'], 'capped', false, 60_000);
  c.now += 999;
  assert.deepEqual(ids(s.h.replay('u', undefined)), ['short', 'long', 'longer-than-history']);
  c.now += 1;
  assert.deepEqual(ids(s.h.replay('u', undefined)), ['long', 'longer-than-history'], 'gone at its expiry');
  c.now += 9000;
  assert.deepEqual(ids(s.h.replay('u', undefined)), [], 'history.ttl caps a longer per-message ttl');
});

test('history: a since whose message expired by its own short ttl is still a position: nothing before it again', (t) => {
  // A client saw `old` then `typing` (ttl 1s), and comes back 2 s later. Nothing was missed
  // after `typing`, and `old` was already seen: the replay is just what came later.
  const c = clock();
  const s = openStore(t, { now: c.fn });
  s.h.append('old', ['u'], 'old', false);
  s.h.append('typing', ['u'], 'typing', false, 1000);
  s.h.append('later', ['u'], 'later', false);
  c.now += 2000;
  const r = s.h.replay('u', 'typing');
  assert.deepEqual(
    { gap: r.gap, ids: ids(r) },
    { gap: false, ids: ['later'] },
    'a message the client already saw (old) must not be sent again, and nothing was missed',
  );
});

// ---------------------------------------------------------------------------------------------
// Sweep

test('history: sweep deletes rows older than history.ttl (by checkpoint) from disk and from the index', async (t) => {
  const c = clock();
  const ttl = 60_000;
  const s = openStore(t, { now: c.fn, ttlMs: ttl });
  s.h.append('old1', ['u'], 'old1', false);
  s.h.append('old2', ['v'], 'old2', false);
  c.now += 1000;
  s.h.sweep(); // a checkpoint: rows up to seq 2 exist at this time
  c.now += 1000;
  s.h.append('new1', ['u'], 'new1', false);
  await s.h.committed();
  assert.equal(s.rows().length, 3);

  // Not yet a ttl past the checkpoint: nothing goes.
  c.now += ttl - 2000;
  s.h.sweep();
  assert.equal(s.rows().length, 3, 'rows younger than history.ttl stay');

  c.now += 1000;
  s.h.sweep();
  assert.deepEqual(
    s.rows().map((r) => r.id),
    ['new1'],
    'rows written before a checkpoint older than history.ttl are deleted',
  );
  assert.deepEqual(ids(s.h.replay('u', undefined)), ['new1']);
  assert.deepEqual(s.h.replay('v', undefined), { messages: [], gap: false, upTo: 3 }, 'a uid with nothing left replays nothing');
  const r = s.h.replay('u', 'old1');
  assert.equal(r.gap, true, 'a swept since is a gap');
  assert.deepEqual(ids(r), ['new1']);
  // New rows keep their place after a sweep.
  s.h.append('new2', ['u'], 'new2', false);
  assert.deepEqual(ids(s.h.replay('u', 'new1')), ['new2']);
});

test('history: sweep keeps at most history.maxMessages rows, dropping the oldest; the index follows', async (t) => {
  const s = openStore(t, { maxMessages: 4 });
  s.h.append('a1', ['a'], 'a1', false);
  s.h.append('b1', ['b'], 'b1', false);
  s.h.append('a2', ['a'], 'a2', false);
  s.h.append('all', [BROADCAST_UID], 'all', false);
  s.h.append('b2', ['b'], 'b2', false);
  s.h.append('a3', ['a'], 'a3', false);
  await s.h.committed();
  assert.equal(s.rows().length, 6, 'the bound is applied by the sweep, not on insert');
  s.h.sweep();
  assert.deepEqual(
    s.rows().map((r) => r.id),
    ['a2', 'all', 'b2', 'a3'],
  );
  assert.deepEqual(ids(s.h.replay('a', undefined)), ['a2', 'all', 'a3']);
  assert.deepEqual(ids(s.h.replay('b', undefined)), ['all', 'b2']);
  assert.equal(s.h.replay('b', 'b1').gap, true);
  // And after a restart (the index is rebuilt from the table), the same.
  const s2 = s.restart();
  assert.deepEqual(ids(s2.h.replay('a', undefined)), ['a2', 'all', 'a3']);
  assert.deepEqual(ids(s2.h.replay('b', undefined)), ['all', 'b2']);
});

// ---------------------------------------------------------------------------------------------
// Restart

test('history: a new History on the same database rebuilds the index: the same replays, seqs continue', async (t) => {
  const s = openStore(t, { size: 3 });
  for (let i = 1; i <= 5; i++) s.h.append(`a${i}`, ['alice'], JSON.stringify({ n: i }), true);
  s.h.append('bc', [BROADCAST_UID], 'to all', false);
  s.h.append('b1', ['bob'], 'b1', false);
  const beforeAlice = s.h.replay('alice', undefined);
  const beforeBob = s.h.replay('bob', 'bc');
  const lastSeq = s.h.lastSeq;

  const s2 = s.restart();
  assert.deepEqual(s2.h.replay('alice', undefined), beforeAlice);
  assert.deepEqual(ids(s2.h.replay('alice', undefined)), ['a3', 'a4', 'a5', 'bc'], 'history.size holds after the rebuild');
  assert.deepEqual(s2.h.replay('bob', 'bc'), beforeBob);
  assert.equal(s2.h.lastSeq, lastSeq);
  assert.equal(s2.h.append('a6', ['alice'], '{"n":6}', true), lastSeq + 1, 'seqs continue after the newest row');
  assert.deepEqual(ids(s2.h.replay('alice', 'a5')), ['bc', 'a6']);
  await s2.h.committed();
  assert.equal(s2.rows().at(-1)?.id, 'a6');
});

test('history: close() commits what is queued, so a restart finds it', (t) => {
  const s = openStore(t);
  s.h.append('queued', ['u'], 'queued', false);
  s.h.recordAnswer('pub-1', '{"id":"pub-1"}');
  const s2 = s.restart();
  assert.deepEqual(ids(s2.h.replay('u', undefined)), ['queued']);
  assert.equal(s2.h.findAnswer('pub-1'), '{"id":"pub-1"}');
  assert.throws(() => s.h.append('late', ['u'], 'late', false), /history is closed/);
});

// ---------------------------------------------------------------------------------------------
// Answers to publisher ids

test('history: recordAnswer/findAnswer: the first answer, within the dedupe window and not after', async (t) => {
  const c = clock();
  const s = openStore(t, { now: c.fn, dedupeWindowMs: 10_000 });
  assert.equal(s.h.findAnswer('order-1'), undefined);
  s.h.recordAnswer('order-1', '{"first":true}');
  assert.equal(s.h.findAnswer('order-1'), '{"first":true}', 'found at once, before the commit microtask');
  s.h.recordAnswer('order-1', '{"first":false}');
  assert.equal(s.h.findAnswer('order-1'), '{"first":true}', 'a later answer does not replace the first');
  assert.equal(s.h.findAnswer('order-2'), undefined);
  await s.h.committed();
  const onDisk = s.peek.prepare('SELECT id, report FROM answers').all();
  assert.deepEqual(onDisk, [{ id: 'order-1', report: '{"first":true}' }]);

  c.now += 9999;
  assert.equal(s.h.findAnswer('order-1'), '{"first":true}', 'still within the window');
  // Survives a restart within the window.
  const s2 = s.restart();
  assert.equal(s2.h.findAnswer('order-1'), '{"first":true}');
  c.now += 1;
  assert.equal(s2.h.findAnswer('order-1'), undefined, 'forgotten once the window has passed');
  s2.h.sweep();
  assert.deepEqual(s2.peek.prepare('SELECT id FROM answers').all(), [], 'the sweep deletes expired answers');
});
