import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import Database from 'better-sqlite3';
import { NotifyError } from '../../src/errors.js';
import { silentLogger } from '../../src/obs/log.js';
import { SqliteDedupe } from '../../src/store/dedupe-sqlite.js';
import { GroupCommit, MIGRATIONS, type StateDb, openState } from '../../src/store/sqlite.js';
import { SqliteStreams, type SqliteStreamsOptions } from '../../src/store/stream-sqlite.js';
import { BROADCAST_STREAM, type HistoryPage, type Publication, type StreamMessage, streamOf } from '../../src/store/stream.js';
import { manualClock } from '../contracts/streams.contract.js';
import { tempDir } from '../helpers/daemon.js';

// The embedded message store on a real SQLite database in a temporary folder: what is on disk
// (read through a second connection, as another process would), the group commit, the sweep,
// the index rebuilt at start, and dedupe answers in the same database. What every backend must
// do is in test/contracts/streams.contract.ts; this file is what SQLite adds.

const HOUR = 3_600_000;
const A = streamOf('alice');
const B = streamOf('bob');

interface Row {
  seq: number;
  stream: string;
  pos: number;
  id: string;
  expires_at: number;
  frame: string;
  json: number;
}

interface Store {
  dir: string;
  db: StateDb;
  commit: GroupCommit;
  s: SqliteStreams;
  dedupe: SqliteDedupe;
  /** A second, read-only connection to the same file: what another process would see. */
  peek: Database.Database;
  /** Rows on disk as the second connection sees them, oldest first. */
  rows(): Row[];
  /** Closes the store and its connection, and opens a new one on the same folder (a restart). */
  restart(opts?: Partial<SqliteStreamsOptions>): Store;
}

type Opts = Partial<SqliteStreamsOptions> & { dedupeWindowMs?: number };

function openStore(t: TestContext, opts: Opts = {}, dir = join(tempDir(t, 'notify-streams-'), 'state')): Store {
  const db = openState(dir);
  const commit = new GroupCommit(db);
  const s = new SqliteStreams(db, commit, { size: 100, ttlMs: 24 * HOUR, maxMessages: 1_000_000, log: silentLogger, ...opts });
  const dedupe = new SqliteDedupe(db, commit, { windowMs: opts.dedupeWindowMs ?? HOUR, ...(opts.now ? { now: opts.now } : {}) });
  const peek = new Database(join(dir, 'notify.db'), { readonly: true });
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    peek.close();
    dedupe.close();
    s.close();
    db.close();
  };
  t.after(close);
  // A row's frame is its own or its publish's shared body.
  const rowsStmt = peek.prepare<[], Row>(
    'SELECT p.seq, p.stream, p.pos, p.id, p.expires_at, coalesce(p.frame, b.frame) AS frame, p.json FROM publications p LEFT JOIN bodies b ON b.id = p.body ORDER BY p.seq',
  );
  return {
    dir,
    db,
    commit,
    s,
    dedupe,
    peek,
    rows: () => rowsStmt.all(),
    restart(more = {}) {
      close();
      return openStore(t, { ...opts, ...more }, dir);
    },
  };
}

const m = (id: string, frame = id, json = false, ttlMs?: number): StreamMessage => (ttlMs === undefined ? { id, frame, json } : { id, frame, json, ttlMs });
const ids = (page: HistoryPage): string[] => page.publications.map((p) => p.id);
const all = (s: SqliteStreams, stream: string): string[] => ids(s.history(stream, { limit: 1000 }));

/** A uid's replay as a resume reads it: its stream and the broadcast stream, merged by `at`. */
function replay(s: SqliteStreams, uid: string, afterAt?: number): Publication[] {
  const q = afterAt === undefined ? { limit: 1000 } : { afterAt, limit: 1000 };
  return [...s.history(streamOf(uid), q).publications, ...s.history(BROADCAST_STREAM, q).publications].sort((x, y) => x.at - y.at);
}

// ---------------------------------------------------------------------------------------------
// Durability and group commit

test('sqlite streams: publish resolves once the rows are on disk for another connection, with their fields; nothing is there during the synchronous run', async (t) => {
  const c = manualClock();
  const st = openStore(t, { now: c.fn, ttlMs: 10_000 });
  const p1 = st.s.publish([A], m('m1', '{"uid":"alice","n":1}', true));
  const p2 = st.s.publish([A, B], m('m2', 'plain text', false, 2000));
  const p3 = st.s.publish([BROADCAST_STREAM], m('m3', 'to everyone', false, 60_000));
  assert.deepEqual(st.rows(), [], 'nothing is committed while the synchronous work runs');
  assert.equal(st.s.history(A, { limit: 10 }).top.offset, 0, 'and nothing not yet durable is readable');
  const [r1, r2, r3] = await Promise.all([p1, p2, p3]);
  assert.deepEqual(st.rows(), [
    { seq: 1, stream: A, pos: 1, id: 'm1', expires_at: c.now + 10_000, frame: '{"uid":"alice","n":1}', json: 1 },
    { seq: 2, stream: A, pos: 2, id: 'm2', expires_at: c.now + 2000, frame: 'plain text', json: 0 },
    { seq: 3, stream: B, pos: 1, id: 'm2', expires_at: c.now + 2000, frame: 'plain text', json: 0 },
    // A ttl longer than history.ttl is cut to it.
    { seq: 4, stream: BROADCAST_STREAM, pos: 1, id: 'm3', expires_at: c.now + 10_000, frame: 'to everyone', json: 0 },
  ]);
  assert.deepEqual([...(r1 ?? []), ...(r2 ?? []), ...(r3 ?? [])].map((p) => [p.stream, p.offset, p.at, p.epoch]), [
    [A, 1, 1, st.s.epoch],
    [A, 2, 2, st.s.epoch],
    [B, 1, 3, st.s.epoch],
    [BROADCAST_STREAM, 1, 4, st.s.epoch],
  ], 'at is the log position');
  const epochOnDisk = st.peek.prepare<[], { value: string }>("SELECT value FROM meta WHERE key = 'epoch'").get()?.value;
  assert.equal(st.s.epoch, epochOnDisk, 'the epoch is the database\'s');
  // Nothing queued: committed() resolves at once.
  await st.commit.committed();
});

test('sqlite streams: everything published in one turn of the event loop is committed in one transaction at the end of it', async (t) => {
  const st = openStore(t);
  const wal = join(st.dir, 'notify.db-wal');
  const framesOf = () => {
    const pageSize = st.peek.pragma('page_size', { simple: true }) as number;
    return Math.max(0, statSync(wal).size - 32) / (pageSize + 24);
  };
  await st.s.publish([streamOf('u')], m('warm-up'));
  const countNow = () => (st.peek.prepare('SELECT count(*) AS n FROM publications').get() as { n: number }).n;

  // 200 publishes in one turn (100 in a run, 100 in a microtask after it, as two connections'
  // data in one poll): none visible before the end of the turn, all of them right after it.
  const before = framesOf();
  const pending: Promise<Publication[]>[] = [];
  const publish = (from: number) => {
    for (let i = from; i < from + 100; i++) pending.push(st.s.publish([streamOf(`u${i % 7}`)], m(`batch-${i}`, JSON.stringify({ n: i }), true)));
  };
  publish(0);
  const seen: number[] = [];
  queueMicrotask(() => {
    publish(100);
    seen.push(countNow());
  });
  const committedInRun = countNow();
  await new Promise((resolve) => setImmediate(resolve));
  seen.push(countNow());
  assert.equal(committedInRun, 1, 'nothing of the batch is committed during the synchronous run');
  assert.deepEqual(seen, [1, 201], 'nothing in the microtasks after the run; the whole batch at the end of the turn');
  await Promise.all(pending);
  const batchFrames = framesOf() - before;

  // The same 200 publishes each in a run of its own: one commit each.
  const before2 = framesOf();
  for (let i = 0; i < 200; i++) await st.s.publish([streamOf(`u${i % 7}`)], m(`single-${i}`, JSON.stringify({ n: i }), true));
  const singleFrames = framesOf() - before2;
  assert.ok(singleFrames >= 200, `one commit (at least one WAL frame) per run: ${singleFrames} frames`);
  assert.ok(batchFrames <= 10, `one transaction for the batch writes a handful of WAL frames, not one commit per row: ${batchFrames} frames`);
  assert.equal(st.rows().length, 401);
});

test('sqlite streams: GroupCommit.committed() waits for the commit; flush() commits at once', async (t) => {
  const st = openStore(t);
  const published = st.s.publish([A], m('a'));
  const p = st.commit.committed();
  assert.equal(st.rows().length, 0);
  st.commit.flush();
  assert.equal(st.rows().length, 1, 'flush() commits synchronously');
  await p;
  await published;
  // The microtask that was scheduled finds nothing left to do.
  await Promise.resolve();
  assert.equal(st.rows().length, 1);
});

test('sqlite streams: a failed transaction rejects every publish in it with NOTIFY_ERR_STORE; none of it happened and its offsets are handed out again', async (t) => {
  const st = openStore(t);
  await st.s.publish([A], m('a1'));
  await st.s.publish([B], m('b1'));
  // A real failure, through a second connection as another process could cause it: every
  // insert into the log aborts while this trigger exists.
  const other = new Database(join(st.dir, 'notify.db'));
  t.after(() => other.close());
  other.exec("CREATE TRIGGER refuse BEFORE INSERT ON publications BEGIN SELECT RAISE(ABORT, 'refused by the test'); END");

  const claim = st.dedupe.claim('order-1', HOUR);
  assert.deepEqual(claim, { first: true });
  const results = await Promise.allSettled([st.s.publish([A, B], m('x1')), st.s.publish([A], m('x2'))]);
  for (const r of results) {
    assert.equal(r.status, 'rejected');
    const err = (r as PromiseRejectedResult).reason as NotifyError;
    assert.ok(err instanceof NotifyError, String(err));
    assert.equal(err.code, 'NOTIFY_ERR_STORE');
    assert.match(err.message, /store unavailable \(refused by the test\)/);
  }
  assert.deepEqual(st.rows().map((r) => r.id), ['a1', 'b1'], 'nothing of the failed transaction is on disk');
  assert.deepEqual(all(st.s, A), ['a1'], 'nor readable');
  assert.equal(st.s.history(A, { limit: 10 }).top.offset, 1);
  assert.equal(st.s.size, 2);
  assert.equal(st.s.locate(A, 'x1'), undefined);
  assert.deepEqual(st.dedupe.claim('order-1', HOUR), { first: true }, 'the claim in the failed transaction did not happen either');

  other.exec('DROP TRIGGER refuse');
  // The publisher's retry: the claim again, then the same offsets.
  const [again] = await st.s.publish([A, B], m('x1'));
  assert.deepEqual([again?.stream, again?.offset], [A, 2], "alice's next offset is 2 again");
  const [x2] = await st.s.publish([A], m('x2'));
  assert.equal(x2?.offset, 3);
  assert.deepEqual(st.s.history(B, { limit: 10 }).publications.map((p) => [p.id, p.offset]), [['b1', 1], ['x1', 2]]);
  assert.deepEqual(st.rows().map((r) => `${r.stream}:${r.pos}:${r.id}`), [`${A}:1:a1`, `${B}:1:b1`, `${A}:2:x1`, `${B}:2:x1`, `${A}:3:x2`]);
  assert.deepEqual(st.dedupe.claim('order-1', HOUR), { first: false, answer: undefined });
});

test('sqlite streams: a failed publish to a full stream does not push out its oldest publication', async (t) => {
  const st = openStore(t, { size: 3 });
  for (const id of ['a1', 'a2', 'a3']) await st.s.publish([A], m(id));
  const other = new Database(join(st.dir, 'notify.db'));
  t.after(() => other.close());
  other.exec("CREATE TRIGGER refuse BEFORE INSERT ON publications BEGIN SELECT RAISE(ABORT, 'refused by the test'); END");
  await assert.rejects(st.s.publish([A], m('a4')), { code: 'NOTIFY_ERR_STORE' });
  assert.deepEqual(all(st.s, A), ['a1', 'a2', 'a3'], 'the stream is as it was');
  assert.equal(st.s.locate(A, 'a1')?.offset, 1);
  other.exec('DROP TRIGGER refuse');
  await st.s.publish([A], m('a4'));
  assert.deepEqual(st.s.history(A, { limit: 10 }).publications.map((p) => [p.id, p.offset]), [['a2', 2], ['a3', 3], ['a4', 4]]);
});

// ---------------------------------------------------------------------------------------------
// Reading: what the old History.replay did, per stream

test('sqlite streams: a uid\'s stream and the broadcast stream, merged by at, give its messages oldest first, with frame and json flag', async (t) => {
  const st = openStore(t);
  await st.s.publish([A], m('a1', '{"n":1}', true));
  await st.s.publish([B], m('b1', 'bob only'));
  await st.s.publish([BROADCAST_STREAM], m('all1', 'everyone'));
  await st.s.publish([A, B], m('ab', '{"n":"both"}', true));
  await st.s.publish([A], m('a2', 'text for alice'));
  assert.deepEqual(
    replay(st.s, 'alice').map((p) => [p.id, p.frame, p.json]),
    [
      ['a1', '{"n":1}', true],
      ['all1', 'everyone', false],
      ['ab', '{"n":"both"}', true],
      ['a2', 'text for alice', false],
    ],
  );
  assert.deepEqual(replay(st.s, 'bob').map((p) => p.id), ['b1', 'all1', 'ab']);
  assert.deepEqual(replay(st.s, 'carol').map((p) => p.id), ['all1'], 'a uid with nothing of its own still gets broadcasts');
  assert.deepEqual(all(st.s, A), ['a1', 'ab', 'a2'], "the uid's own stream has no broadcasts");
  assert.deepEqual(st.s.history(A, { limit: 10 }).publications.map((p) => p.offset), [1, 2, 3]);
});

test('sqlite streams: after a located message only what came later; a broadcast id is a position too; after the newest, nothing', async (t) => {
  const st = openStore(t);
  for (const id of ['m1', 'm2', 'm3', 'm4']) await st.s.publish([streamOf('u')], m(id));
  await st.s.publish([BROADCAST_STREAM], m('bc'));
  await st.s.publish([streamOf('u')], m('m5'));
  const at = (stream: string, id: string) => st.s.locate(stream, id)?.at as number;
  assert.deepEqual(replay(st.s, 'u', at(streamOf('u'), 'm1')).map((p) => p.id), ['m2', 'm3', 'm4', 'bc', 'm5']);
  assert.deepEqual(replay(st.s, 'u', at(streamOf('u'), 'm3')).map((p) => p.id), ['m4', 'bc', 'm5']);
  assert.deepEqual(replay(st.s, 'u', at(BROADCAST_STREAM, 'bc')).map((p) => p.id), ['m5']);
  const m5 = st.s.locate(streamOf('u'), 'm5') as Publication;
  const none = st.s.history(streamOf('u'), { after: { offset: m5.offset, epoch: m5.epoch }, limit: 10 });
  assert.deepEqual(none, { publications: [], top: { offset: 5, epoch: st.s.epoch } });
});

test('sqlite streams: an unknown id or another stream\'s id is no position (a resume reads from the oldest)', async (t) => {
  const st = openStore(t);
  await st.s.publish([streamOf('u')], m('m1'));
  await st.s.publish([streamOf('v')], m('other'));
  await st.s.publish([streamOf('u')], m('m2'));
  assert.equal(st.s.locate(streamOf('u'), 'never-seen'), undefined);
  assert.equal(st.s.locate(streamOf('u'), 'other'), undefined);
  assert.equal(st.s.locate(BROADCAST_STREAM, 'other'), undefined);
  assert.deepEqual(all(st.s, streamOf('u')), ['m1', 'm2']);
  assert.equal(st.s.locate(streamOf('nobody'), 'x'), undefined);
  assert.deepEqual(st.s.history(streamOf('nobody'), { limit: 10 }), { publications: [], top: { offset: 0, epoch: st.s.epoch } });
});

test('sqlite streams: top counts committed publications only; at continues across streams; a publish queued in this run is not readable yet', async (t) => {
  const st = openStore(t);
  assert.equal(st.s.history(streamOf('u'), { limit: 10 }).top.offset, 0);
  const [a] = await st.s.publish([streamOf('u')], m('a'));
  const b = await st.s.publish([streamOf('x'), streamOf('y'), streamOf('z')], m('b'));
  assert.equal(a?.at, 1);
  assert.deepEqual(b.map((p) => p.at), [2, 3, 4]);
  const queued = st.s.publish([streamOf('u')], m('c'));
  assert.deepEqual(all(st.s, streamOf('u')), ['a'], 'not readable before it is durable');
  assert.equal(st.s.history(streamOf('u'), { limit: 10 }).top.offset, 1);
  assert.equal(st.s.locate(streamOf('u'), 'c'), undefined);
  const [c] = await queued;
  assert.deepEqual([c?.offset, c?.at], [2, 5]);
  assert.deepEqual(st.s.history(streamOf('u'), { limit: 10 }).publications.map((p) => p.at), [1, 5]);
  assert.equal(st.s.history(streamOf('u'), { limit: 10 }).top.offset, 2);
});

test('sqlite streams: history.size: only the newest N of each stream; a position pushed out is not located', async (t) => {
  const st = openStore(t, { size: 3 });
  for (let i = 1; i <= 5; i++) await st.s.publish([A], m(`a${i}`));
  await st.s.publish([B], m('b1'));
  assert.deepEqual(all(st.s, A), ['a3', 'a4', 'a5']);
  assert.deepEqual(all(st.s, B), ['b1'], "one stream's publications do not push out another's");
  assert.deepEqual(replay(st.s, 'alice', st.s.locate(A, 'a3')?.at).map((p) => p.id), ['a4', 'a5']);
  assert.equal(st.s.locate(A, 'a1'), undefined, 'pushed out: a resume from it is a gap');
  assert.equal(st.rows().length, 6, 'the size bound is on the index; rows go with the sweep');
});

test('sqlite streams: a per-message ttl hides the message once it has expired; history.ttl caps a longer one', async (t) => {
  const c = manualClock();
  const st = openStore(t, { now: c.fn, ttlMs: 10_000 });
  await st.s.publish([A], m('short', 'short', false, 1000));
  await st.s.publish([A], m('long'));
  await st.s.publish([A], m('longer-than-history', 'capped', false, 60_000));
  c.now += 999;
  assert.deepEqual(all(st.s, A), ['short', 'long', 'longer-than-history']);
  c.now += 1;
  assert.deepEqual(all(st.s, A), ['long', 'longer-than-history'], 'gone at its expiry');
  c.now += 9000;
  assert.deepEqual(all(st.s, A), []);
});

test('sqlite streams: a message expired by its own short ttl is still a position: nothing before it again', async (t) => {
  // A client saw `old` then `typing` (ttl 1s), and comes back 2 s later. Nothing was missed
  // after `typing`, and `old` was already seen: the replay is just what came later.
  const c = manualClock();
  const st = openStore(t, { now: c.fn });
  await st.s.publish([A], m('old'));
  await st.s.publish([A], m('typing', 'typing', false, 1000));
  await st.s.publish([A], m('later'));
  c.now += 2000;
  const typing = st.s.locate(A, 'typing');
  assert.equal(typing?.offset, 2, 'found although expired');
  assert.deepEqual(replay(st.s, 'alice', typing?.at).map((p) => p.id), ['later']);
});

// ---------------------------------------------------------------------------------------------
// Sweep

test('sqlite streams: sweep deletes rows older than history.ttl (by checkpoint) from disk and from the index; offsets go on', async (t) => {
  const c = manualClock();
  const ttl = 60_000;
  const st = openStore(t, { now: c.fn, ttlMs: ttl });
  await st.s.publish([streamOf('u')], m('old1'));
  await st.s.publish([streamOf('v')], m('old2'));
  c.now += 1000;
  st.s.sweep(); // a checkpoint: rows up to seq 2 exist at this time
  c.now += 1000;
  await st.s.publish([streamOf('u')], m('new1'));
  assert.equal(st.rows().length, 3);

  // Not yet a ttl past the checkpoint: nothing goes.
  c.now += ttl - 2000;
  st.s.sweep();
  assert.equal(st.rows().length, 3, 'rows younger than history.ttl stay');

  c.now += 1000;
  st.s.sweep();
  assert.deepEqual(st.rows().map((r) => r.id), ['new1'], 'rows written before a checkpoint older than history.ttl are deleted');
  assert.equal(st.s.size, 1);
  assert.deepEqual(all(st.s, streamOf('u')), ['new1']);
  assert.deepEqual(all(st.s, streamOf('v')), [], 'a stream with nothing left reads nothing');
  assert.equal(st.s.locate(streamOf('u'), 'old1'), undefined, 'a swept message is no position');
  // New rows keep their place after a sweep: offsets are never handed out twice in one epoch
  // (a live session at v:1 would take a new v:1 for the one it has).
  const [new2] = await st.s.publish([streamOf('u')], m('new2'));
  assert.equal(new2?.offset, 3);
  assert.equal(st.s.streamCount, 1, 'v, swept empty, left the index');
  assert.equal(st.s.history(streamOf('v'), { limit: 10 }).top.offset, 1, 'its top is still its last offset');
  const [v2] = await st.s.publish([streamOf('v')], m('v-new'));
  assert.equal(v2?.offset, 2, 'a stream swept empty goes on from its last offset');
  assert.deepEqual(replay(st.s, 'u', st.s.locate(streamOf('u'), 'new1')?.at).map((p) => p.id), ['new2']);
});

test('sqlite streams: sweep keeps at most history.maxMessages rows, dropping the oldest; the index follows, also after a restart', async (t) => {
  const st = openStore(t, { maxMessages: 4 });
  await st.s.publish([A], m('a1'));
  await st.s.publish([B], m('b1'));
  await st.s.publish([A], m('a2'));
  await st.s.publish([BROADCAST_STREAM], m('all'));
  await st.s.publish([B], m('b2'));
  await st.s.publish([A], m('a3'));
  assert.equal(st.rows().length, 6, 'the bound is applied by the sweep, not on insert');
  st.s.sweep();
  assert.deepEqual(st.rows().map((r) => r.id), ['a2', 'all', 'b2', 'a3']);
  assert.equal(st.s.size, 4);
  assert.deepEqual(replay(st.s, 'alice').map((p) => p.id), ['a2', 'all', 'a3']);
  assert.deepEqual(replay(st.s, 'bob').map((p) => p.id), ['all', 'b2']);
  assert.equal(st.s.locate(B, 'b1'), undefined);
  const st2 = st.restart();
  assert.deepEqual(replay(st2.s, 'alice').map((p) => p.id), ['a2', 'all', 'a3']);
  assert.deepEqual(replay(st2.s, 'bob').map((p) => p.id), ['all', 'b2']);
  assert.deepEqual(st2.s.history(A, { limit: 10 }).publications.map((p) => p.offset), [2, 3]);
});

// ---------------------------------------------------------------------------------------------
// Restart

test('sqlite streams: a new store on the same database rebuilds the index: the same pages, the same epoch; offsets and at go on', async (t) => {
  const st = openStore(t, { size: 3 });
  for (let i = 1; i <= 5; i++) await st.s.publish([A], m(`a${i}`, JSON.stringify({ n: i }), true));
  await st.s.publish([BROADCAST_STREAM], m('bc', 'to all'));
  await st.s.publish([B], m('b1'));
  const beforeA = st.s.history(A, { limit: 10 });
  const beforeB = st.s.history(B, { after: { offset: 0, epoch: st.s.epoch }, limit: 10 });
  const beforeBc = st.s.history(BROADCAST_STREAM, { limit: 10 });
  const epoch = st.s.epoch;

  const st2 = st.restart();
  assert.equal(st2.s.epoch, epoch, 'the same database keeps its epoch');
  assert.deepEqual(st2.s.history(A, { limit: 10 }), beforeA);
  assert.deepEqual(ids(st2.s.history(A, { limit: 10 })), ['a3', 'a4', 'a5'], 'history.size holds after the rebuild');
  assert.deepEqual(st2.s.history(B, { after: { offset: 0, epoch }, limit: 10 }), beforeB);
  assert.deepEqual(st2.s.history(BROADCAST_STREAM, { limit: 10 }), beforeBc);
  assert.equal(st2.s.size, 7);
  assert.equal(st2.s.locate(A, 'a4')?.offset, 4);
  const [a6] = await st2.s.publish([A], m('a6', '{"n":6}', true));
  assert.deepEqual([a6?.offset, a6?.at, a6?.epoch], [6, 8, epoch], 'offsets and at continue after the newest row');
  assert.deepEqual(replay(st2.s, 'alice', st2.s.locate(A, 'a5')?.at).map((p) => p.id), ['bc', 'a6']);
  assert.equal(st2.rows().at(-1)?.id, 'a6');
});

test('sqlite streams: a new database is a new epoch', (t) => {
  const one = openStore(t);
  const two = openStore(t);
  assert.match(one.s.epoch, /^[0-9a-f]{16}$/);
  assert.notEqual(one.s.epoch, two.s.epoch);
});

test('sqlite streams: close() commits what is queued, so a restart finds it; a publish after close rejects with NOTIFY_ERR_STORE', async (t) => {
  const st = openStore(t);
  const queued = st.s.publish([streamOf('u')], m('queued'));
  assert.deepEqual(st.dedupe.claim('pub-1', HOUR), { first: true });
  st.dedupe.record('pub-1', '{"id":"pub-1"}');
  const st2 = st.restart();
  await queued;
  assert.deepEqual(all(st2.s, streamOf('u')), ['queued']);
  assert.deepEqual(st2.dedupe.claim('pub-1', HOUR), { first: false, answer: '{"id":"pub-1"}' });
  await assert.rejects(st.s.publish([streamOf('u')], m('late')), (err: unknown) => err instanceof NotifyError && err.code === 'NOTIFY_ERR_STORE' && /closed/.test(err.message));
});

// ---------------------------------------------------------------------------------------------
// Answers to publisher ids (SqliteDedupe in the same database)

test('sqlite dedupe: the answer is found at once (before the commit), on disk after it, within the window and after a restart; not after the window; the sweep deletes it', async (t) => {
  const c = manualClock();
  const st = openStore(t, { now: c.fn, dedupeWindowMs: 10_000 });
  assert.deepEqual(st.dedupe.claim('order-1', 10_000), { first: true });
  st.dedupe.record('order-1', '{"first":true}');
  assert.deepEqual(st.dedupe.claim('order-1', 10_000), { first: false, answer: '{"first":true}' }, 'found at once, before the commit microtask');
  assert.deepEqual(st.peek.prepare('SELECT id FROM answers').all(), [], 'not on disk yet');
  st.dedupe.record('order-1', '{"final":true}');
  assert.deepEqual(st.dedupe.claim('order-1', 10_000), { first: false, answer: '{"final":true}' }, 'the latest answer wins');
  assert.deepEqual(st.dedupe.claim('order-2', 10_000), { first: true });
  await st.commit.committed();
  assert.deepEqual(st.peek.prepare('SELECT id, at, report FROM answers ORDER BY id').all(), [
    { id: 'order-1', at: c.now, report: '{"final":true}' },
    { id: 'order-2', at: c.now, report: '' },
  ]);

  c.now += 9999;
  assert.deepEqual(st.dedupe.claim('order-1', 10_000), { first: false, answer: '{"final":true}' }, 'still within the window');
  const st2 = st.restart();
  assert.deepEqual(st2.dedupe.claim('order-1', 10_000), { first: false, answer: '{"final":true}' }, 'survives a restart');
  assert.deepEqual(st2.dedupe.claim('order-2', 10_000), { first: false, answer: undefined });
  c.now += 1;
  st2.dedupe.sweep(10_000);
  assert.deepEqual(st2.peek.prepare('SELECT id FROM answers').all(), [], 'the sweep deletes expired answers');
  assert.deepEqual(st2.dedupe.claim('order-1', 10_000), { first: true }, 'forgotten once the window has passed');
});

// ---------------------------------------------------------------------------------------------
// A body once per message; history.maxBytes

const MB = 1024 * 1024;
const fileSize = (f: string): number => {
  try {
    return statSync(f).size;
  } catch {
    return 0;
  }
};

test('sqlite streams: a 1 MB message to 200 uids stores its body once: the database plus WAL grow by a few MB, not 200; every uid reads it', async (t) => {
  const st = openStore(t);
  const db = join(st.dir, 'notify.db');
  const wal = `${db}-wal`;
  await st.s.publish([A], m('warm-up'));
  st.db.pragma('wal_checkpoint(TRUNCATE)');
  const before = fileSize(db) + fileSize(wal);
  const frame = JSON.stringify({ blob: 'x'.repeat(MB) });
  const uids = Array.from({ length: 200 }, (_, i) => streamOf(`u${i}`));
  const pubs = await st.s.publish(uids, m('big', frame, true));
  assert.equal(pubs.length, 200);
  const walAfterCommit = fileSize(wal);
  const dbAfterCommit = fileSize(db);
  st.db.pragma('wal_checkpoint(TRUNCATE)');
  const grown = fileSize(db) + fileSize(wal) - before;
  t.diagnostic(`1 MB to 200 uids: WAL after the commit ${(walAfterCommit / MB).toFixed(2)} MB (database ${(dbAfterCommit / MB).toFixed(2)} MB); database plus WAL grew by ${(grown / MB).toFixed(2)} MB after a checkpoint`);
  assert.ok(walAfterCommit < 20 * MB, `the commit writes the body once to the WAL: ${walAfterCommit} bytes`);
  assert.ok(grown < 20 * MB, `the database plus WAL grew by ${grown} bytes`);
  assert.deepEqual(st.peek.prepare('SELECT count(*) AS n FROM bodies').get(), { n: 1 });
  assert.equal(st.s.bytes, Buffer.byteLength(frame) + 'warm-up'.length);
  for (const u of uids) {
    const [p] = st.s.history(u, { limit: 10 }).publications;
    assert.ok(p !== undefined && p.id === 'big' && p.json && p.frame === frame, `${u} reads the message`);
  }
  const st2 = st.restart();
  assert.equal(st2.s.bytes, Buffer.byteLength(frame) + 'warm-up'.length, 'the byte count is rebuilt at start');
  assert.equal(st2.s.history(streamOf('u199'), { limit: 1 }).publications[0]?.frame, frame);
});

test('sqlite streams: a publish to one stream keeps its frame inline (one row, no body); a body is shared by the rows of one publish only', async (t) => {
  const st = openStore(t);
  await st.s.publish([A], m('solo', 'only alice'));
  await st.s.publish([A, B, BROADCAST_STREAM], m('trio', 'three'));
  await st.s.publish([B], m('solo2', 'only bob'));
  assert.deepEqual(st.peek.prepare('SELECT seq, frame, body, bytes FROM publications ORDER BY seq').all(), [
    { seq: 1, frame: 'only alice', body: null, bytes: 10 },
    { seq: 2, frame: null, body: 2, bytes: 0 },
    { seq: 3, frame: null, body: 2, bytes: 0 },
    { seq: 4, frame: null, body: 2, bytes: 5 },
    { seq: 5, frame: 'only bob', body: null, bytes: 8 },
  ]);
  assert.deepEqual(st.peek.prepare('SELECT id, frame FROM bodies').all(), [{ id: 2, frame: 'three' }]);
  assert.equal(st.s.bytes, 23);
});

test('sqlite streams: a body stays while a row of its publish is left (history.maxMessages cut inside it) and goes with the last one', async (t) => {
  const st = openStore(t, { maxMessages: 3 });
  await st.s.publish([A, B, streamOf('c')], m('shared', 'body'));
  await st.s.publish([A], m('a2'));
  st.s.sweep();
  assert.deepEqual(st.rows().map((r) => [r.stream, r.id, r.frame]), [
    [B, 'shared', 'body'],
    [streamOf('c'), 'shared', 'body'],
    [A, 'a2', 'a2'],
  ]);
  assert.deepEqual(st.peek.prepare('SELECT id FROM bodies').all(), [{ id: 1 }], 'the body stays for the rows left');
  assert.deepEqual(all(st.s, B), ['shared']);
  assert.equal(st.s.bytes, 6, 'the shared body still counts');
  await st.s.publish([A], m('a3'));
  await st.s.publish([A], m('a4'));
  st.s.sweep();
  assert.deepEqual(st.rows().map((r) => r.id), ['a2', 'a3', 'a4']);
  assert.deepEqual(st.peek.prepare('SELECT count(*) AS n FROM bodies').get(), { n: 0 }, 'no body is left without rows');
  assert.equal(st.s.bytes, 6);
  const st2 = st.restart();
  assert.equal(st2.s.bytes, 6);
  assert.deepEqual(all(st2.s, A), ['a2', 'a3', 'a4']);
});

test('sqlite streams: history.maxBytes: a sweep drops the oldest messages until the frames are under it, on disk and in history; a restart agrees', async (t) => {
  const st = openStore(t, { maxBytes: 10_000 });
  const kb = (n: number, c: string) => c.repeat(n * 1000);
  await st.s.publish([A], m('a1', kb(3, 'a')));
  await st.s.publish([A, B], m('ab', kb(3, 'b')));
  await st.s.publish([B], m('b1', kb(3, 'c')));
  assert.equal(st.s.bytes, 9000);
  st.s.sweep();
  assert.equal(st.rows().length, 4, 'under the bound: nothing goes');
  await st.s.publish([BROADCAST_STREAM], m('all', kb(2, 'd')));
  assert.equal(st.s.bytes, 11_000, 'past the bound until the sweep (not far enough for one at once)');
  st.s.sweep();
  assert.deepEqual(st.rows().map((r) => r.id), ['ab', 'ab', 'b1', 'all'], 'the oldest message went, just enough');
  assert.equal(st.s.bytes, 8000);
  const onDisk = () =>
    (st.peek.prepare('SELECT (SELECT coalesce(sum(length(CAST(frame AS BLOB))), 0) FROM publications) + (SELECT coalesce(sum(length(CAST(frame AS BLOB))), 0) FROM bodies) AS n').get() as { n: number }).n;
  assert.equal(onDisk(), 8000, 'the frames on disk are what is counted');
  assert.deepEqual(all(st.s, A), ['ab']);
  assert.equal(st.s.locate(A, 'a1'), undefined);

  // One message larger than the rest together: everything older goes.
  await st.s.publish([A, B], m('huge', kb(9, 'e')));
  st.s.sweep();
  assert.deepEqual(st.rows().map((r) => r.id), ['huge', 'huge']);
  assert.equal(onDisk(), 9000);
  assert.equal(st.s.bytes, 9000);
  assert.deepEqual(replay(st.s, 'alice').map((p) => p.id), ['huge']);
  assert.deepEqual(replay(st.s, 'bob').map((p) => p.id), ['huge']);
  assert.deepEqual(st.s.history(B, { limit: 10 }).publications.map((p) => p.offset), [3], 'offsets go on');

  const st2 = st.restart();
  assert.equal(st2.s.bytes, 9000, 'the count is rebuilt from the rows');
  assert.deepEqual(replay(st2.s, 'bob').map((p) => p.id), ['huge']);
  await st2.s.publish([A], m('a5', kb(2, 'f')));
  st2.s.sweep();
  assert.deepEqual(st2.rows().map((r) => r.id), ['a5']);
  assert.equal(st2.s.bytes, 2000);
  assert.deepEqual(st2.peek.prepare('SELECT count(*) AS n FROM bodies').get(), { n: 0 });
});

test('sqlite streams: a commit far past history.maxBytes starts a sweep at once, without waiting for the timer', async (t) => {
  const st = openStore(t, { maxBytes: 100 * 1000 });
  for (let i = 0; i < 10; i++) await st.s.publish([A, B], m(`m${i}`, String(i).repeat(10_000)));
  assert.equal(st.s.bytes, 100_000);
  await st.s.publish([A], m('over', 'x'.repeat(20_000)));
  await new Promise((r) => setImmediate(r));
  await st.commit.committed();
  assert.ok(st.s.bytes <= 100_000, `${st.s.bytes}`);
  assert.deepEqual(all(st.s, A), ['m2', 'm3', 'm4', 'm5', 'm6', 'm7', 'm8', 'm9', 'over']);
  assert.equal(st.rows()[0]?.id, 'm2');
});

test('sqlite streams: a failed publish is not counted in the stored bytes', async (t) => {
  const st = openStore(t);
  await st.s.publish([A], m('a1', 'x'.repeat(100)));
  const other = new Database(join(st.dir, 'notify.db'));
  t.after(() => other.close());
  other.exec("CREATE TRIGGER refuse BEFORE INSERT ON publications BEGIN SELECT RAISE(ABORT, 'refused by the test'); END");
  await Promise.allSettled([st.s.publish([A, B], m('x1', 'y'.repeat(50))), st.s.publish([A], m('x2', 'z'))]);
  assert.equal(st.s.bytes, 100);
  assert.deepEqual(st.peek.prepare('SELECT count(*) AS n FROM bodies').get(), { n: 0 }, 'the body went with the failed transaction');
  other.exec('DROP TRIGGER refuse');
  await st.s.publish([A, B], m('x1', 'y'.repeat(50)));
  assert.equal(st.s.bytes, 150);
});

test('sqlite streams: the migration to shared bodies converts existing rows: one body per multi-stream publish, inline frames otherwise; history reads the same', (t) => {
  const dir = join(tempDir(t, 'notify-streams-'), 'state');
  mkdirSync(dir, { recursive: true });
  const old = new Database(join(dir, 'notify.db'));
  for (const sql of MIGRATIONS.slice(0, 4)) old.exec(sql);
  old.pragma('user_version = 4');
  const ins = old.prepare('INSERT INTO publications (seq, stream, pos, id, expires_at, frame, json) VALUES (?, ?, ?, ?, ?, ?, ?)');
  const far = Date.now() + HOUR;
  ins.run(1, A, 1, 'solo', far, 'only alice', 0);
  ins.run(2, A, 2, 'both', far, '{"n":"é"}', 1);
  ins.run(3, B, 1, 'both', far, '{"n":"é"}', 1);
  // The same id again right after, with another frame (a publisher id reused after its window).
  ins.run(4, A, 3, 'both', far, 'other', 0);
  // A gap in seq (a failed commit), then a broadcast and a run of three.
  ins.run(6, BROADCAST_STREAM, 1, 'bc', far, 'to all', 0);
  ins.run(7, A, 4, 'tri', far, 'three', 0);
  ins.run(8, B, 2, 'tri', far, 'three', 0);
  ins.run(9, streamOf('c'), 1, 'tri', far, 'three', 0);
  old.close();

  const st = openStore(t, {}, dir);
  assert.deepEqual(st.peek.prepare('SELECT seq, stream, pos, id, json, frame, body, bytes FROM publications ORDER BY seq').all(), [
    { seq: 1, stream: A, pos: 1, id: 'solo', json: 0, frame: 'only alice', body: null, bytes: 10 },
    { seq: 2, stream: A, pos: 2, id: 'both', json: 1, frame: null, body: 2, bytes: 0 },
    { seq: 3, stream: B, pos: 1, id: 'both', json: 1, frame: null, body: 2, bytes: 10 },
    { seq: 4, stream: A, pos: 3, id: 'both', json: 0, frame: 'other', body: null, bytes: 5 },
    { seq: 6, stream: BROADCAST_STREAM, pos: 1, id: 'bc', json: 0, frame: 'to all', body: null, bytes: 6 },
    { seq: 7, stream: A, pos: 4, id: 'tri', json: 0, frame: null, body: 7, bytes: 0 },
    { seq: 8, stream: B, pos: 2, id: 'tri', json: 0, frame: null, body: 7, bytes: 0 },
    { seq: 9, stream: streamOf('c'), pos: 1, id: 'tri', json: 0, frame: null, body: 7, bytes: 5 },
  ]);
  assert.deepEqual(st.peek.prepare('SELECT id, frame FROM bodies ORDER BY id').all(), [
    { id: 2, frame: '{"n":"é"}' },
    { id: 7, frame: 'three' },
  ]);
  assert.equal(st.s.bytes, 36, 'bytes, not characters');
  assert.deepEqual(st.s.history(A, { limit: 10 }).publications.map((p) => [p.offset, p.id, p.frame, p.json]), [
    [1, 'solo', 'only alice', false],
    [2, 'both', '{"n":"é"}', true],
    [3, 'both', 'other', false],
    [4, 'tri', 'three', false],
  ]);
  assert.deepEqual(replay(st.s, 'bob').map((p) => [p.id, p.frame]), [['both', '{"n":"é"}'], ['bc', 'to all'], ['tri', 'three']]);
  assert.equal(st.peek.pragma('user_version', { simple: true }), MIGRATIONS.length);
});

// ---------------------------------------------------------------------------------------------
// The index: each stream's rows as links between log positions (src/store/seq-chains.ts)

/** Publishes `n` messages, message i to `streams[i % streams.length]`, a thousand per turn (one transaction each). */
async function publishMany(s: SqliteStreams, streams: string[], n: number, prefix = 'm'): Promise<void> {
  for (let i = 0; i < n; ) {
    const turn: Promise<unknown>[] = [];
    for (const end = Math.min(n, i + 1000); i < end; i++) turn.push(s.publish([streams[i % streams.length] as string], m(`${prefix}${i}`)));
    await Promise.all(turn);
  }
}

test('sqlite streams: the index over more rows than one chunk of links holds, swept by history.maxMessages: every stream reads what is on disk, the links of swept rows are freed, a restart agrees', async (t) => {
  const C = streamOf('carol');
  const streams = [A, B, C];
  const st = openStore(t, { size: 100_000, maxMessages: 80_000 });
  await publishMany(st.s, streams, 150_000);
  assert.equal(st.s.indexBytes, 3 * 65_536 * 4, 'seqs 1..150,000: three chunks of 65,536 four-byte links');
  for (const [k, stream] of streams.entries()) {
    const page = st.s.history(stream, { limit: 100_000 }).publications;
    assert.equal(page.length, 50_000);
    assert.deepEqual([page[0]?.id, page[0]?.offset, page.at(-1)?.id, page.at(-1)?.offset], [`m${k}`, 1, `m${149_997 + k}`, 50_000]);
  }
  st.s.sweep();
  assert.equal(st.rows().length, 80_000);
  assert.equal(st.s.indexBytes, 2 * 65_536 * 4, 'the chunk of seqs 0..65,535 is freed once every row in it is swept');
  const onDisk = st.rows();
  const check = (s: SqliteStreams) => {
    for (const stream of streams) {
      const disk = onDisk.filter((r) => r.stream === stream);
      const page = s.history(stream, { limit: 100_000 }).publications;
      assert.deepEqual(page.map((p) => [p.id, p.offset, p.at]), disk.map((r) => [r.id, r.pos, r.seq]), `${stream} reads its rows on disk`);
      // Resuming from the middle reads the rest; a swept id is no position.
      const mid = disk[Math.floor(disk.length / 2)] as Row;
      assert.deepEqual(s.locate(stream, mid.id)?.offset, mid.pos);
      assert.deepEqual(ids(s.history(stream, { after: { offset: mid.pos, epoch: s.epoch }, limit: 3 })), disk.slice(disk.indexOf(mid) + 1, disk.indexOf(mid) + 4).map((r) => r.id));
      assert.deepEqual(ids(s.history(stream, { afterAt: mid.seq, limit: 2 })), disk.slice(disk.indexOf(mid) + 1, disk.indexOf(mid) + 3).map((r) => r.id));
    }
    assert.equal(s.locate(A, 'm0'), undefined);
  };
  check(st.s);
  const st2 = st.restart();
  check(st2.s);
  assert.equal(st2.s.indexBytes, 2 * 65_536 * 4, 'the rebuilt index holds links from the oldest kept row on');
  const [next] = await st2.s.publish([B], m('b-next'));
  assert.deepEqual([next?.offset, next?.at], [50_001, 150_001]);
});

test('sqlite streams: a row whose previous row in its stream is more than 2^32 - 1 seqs back starts that stream\'s index again (at a rebuild)', async (t) => {
  const st = openStore(t);
  await st.s.publish([A], m('a1'));
  const far = 1 + 2 ** 32 + 5;
  const other = new Database(join(st.dir, 'notify.db'));
  t.after(() => other.close());
  other
    .prepare('INSERT INTO publications (seq, stream, pos, id, expires_at, json, frame, bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
    .run(far, A, 2, 'a2', Date.now() + HOUR, 0, 'a2', 2);
  const st2 = st.restart();
  assert.deepEqual(st2.s.history(A, { limit: 10 }).publications.map((p) => [p.id, p.offset, p.at]), [['a2', 2, far]], 'the row too far back is no longer in the index');
  const [a3] = await st2.s.publish([A], m('a3'));
  assert.deepEqual([a3?.offset, a3?.at], [3, far + 1]);
  assert.deepEqual(all(st2.s, A), ['a2', 'a3']);
});

test('sqlite streams: the index keeps its links outside the JavaScript heap: 200,000 publications over 1,000 streams add less than 4 bytes per row to the heap (an array per stream added 16)', (t) => {
  // Measured in a process of its own: node:test keeps a record of every promise a test makes.
  const dir = tempDir(t, 'notify-index-heap-');
  const url = (p: string) => JSON.stringify(new URL(p, import.meta.url).href);
  const script = `
    import { runInNewContext } from 'node:vm';
    import { openState, GroupCommit } from ${url('../../src/store/sqlite.js')};
    import { SqliteStreams } from ${url('../../src/store/stream-sqlite.js')};
    import { silentLogger } from ${url('../../src/obs/log.js')};
    import { streamOf } from ${url('../../src/store/stream.js')};
    const gc = runInNewContext('gc');
    const db = openState(${JSON.stringify(join(dir, 'state'))});
    const s = new SqliteStreams(db, new GroupCommit(db), { size: 1000, ttlMs: 86400000, maxMessages: 1000000, log: silentLogger });
    const streams = Array.from({ length: 1000 }, (_, i) => streamOf('u' + i));
    let n = 0;
    async function publish(count) {
      for (let i = 0; i < count; ) {
        const turn = [];
        for (const end = Math.min(count, i + 1000); i < end; i++, n++) turn.push(s.publish([streams[n % 1000]], { id: 'm' + n, frame: 'm' + n, json: false }));
        await Promise.all(turn);
      }
    }
    await publish(20000);
    gc(); gc();
    const before = process.memoryUsage().heapUsed;
    await publish(200000);
    gc(); gc();
    const grew = process.memoryUsage().heapUsed - before;
    process.stdout.write(JSON.stringify({ grew, rows: s.history(streamOf('u7'), { limit: 1000 }).publications.length, indexBytes: s.indexBytes }));
    s.close(); db.close();
  `;
  const out = JSON.parse(execFileSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8' })) as { grew: number; rows: number; indexBytes: number };
  t.diagnostic(`heap +${out.grew} bytes for 200,000 rows`);
  assert.ok(out.grew < 800_000, `the heap grew by ${out.grew} bytes for 200,000 rows`);
  assert.equal(out.rows, 220, 'every stream indexes its 220 rows');
  assert.equal(out.indexBytes, 4 * 65_536 * 4, 'seqs 1..220,000: four chunks of 65,536 four-byte links');
});

test('sqlite streams: streams swept empty leave the index (its memory is bounded by the rows kept, not by the uids ever published to); each goes on after its last offset; a stream not in the index starts right after its top', async (t) => {
  const c = manualClock();
  const st = openStore(t, { now: c.fn, ttlMs: 60_000 });
  const names = Array.from({ length: 5000 }, (_, i) => streamOf(`once-${i}`));
  for (const [i, stream] of names.entries()) {
    const turn: Promise<unknown>[] = [st.s.publish([stream], m(`a${i}`))];
    if (i % 10 === 0) turn.push(st.s.publish([stream], m(`b${i}`)));
    await Promise.all(turn);
  }
  assert.equal(st.s.streamCount, 5000);
  c.now += 1000;
  st.s.sweep(); // a checkpoint
  c.now += 60_000;
  st.s.sweep();
  assert.equal(st.s.size, 0);
  assert.equal(st.s.streamCount, 0, 'no entry is left for a stream with no rows');
  // Each dropped stream reads its last offset as its top, and goes on right after it.
  for (const i of [0, 1, 10, 4999]) {
    const top = st.s.history(names[i] as string, { limit: 10 }).top.offset;
    assert.ok(top >= (i % 10 === 0 ? 2 : 1), `${names[i]}: top ${top}`);
    const [p] = await st.s.publish([names[i] as string], m(`again${i}`));
    assert.equal(p?.offset, top + 1);
    assert.deepEqual(all(st.s, names[i] as string), [`again${i}`]);
  }
  // A stream never published to starts right after the top it reads (1 when its slot is unused).
  let fresh = 0;
  for (let i = 0; i < 300; i++) {
    const stream = streamOf(`never-${i}`);
    const top = st.s.history(stream, { limit: 1 }).top.offset;
    if (top === 0) fresh++;
    const [p] = await st.s.publish([stream], m(`n${i}`));
    assert.equal(p?.offset, top + 1, stream);
  }
  assert.ok(fresh > 150, `${fresh} of 300 never-seen streams start at 1`);
});
