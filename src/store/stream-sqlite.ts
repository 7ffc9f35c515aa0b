import type { Logger } from '../obs/log.js';
import { SeqChains } from './seq-chains.js';
import { type GroupCommit, type StateDb, storeError } from './sqlite.js';
import type { HistoryPage, HistoryQuery, MessageStreams, Publication, StreamMessage } from './stream.js';

export interface SqliteStreamsOptions {
  /** Publications kept per stream. */
  size: number;
  /** How long a publication is kept at most. */
  ttlMs: number;
  /** Rows kept in all: the bound on disk and memory. */
  maxMessages: number;
  /**
   * Frame bytes kept in all (a body shared by several streams counts once): the bound on disk.
   * @default 1 GiB
   */
  maxBytes?: number;
  log: Logger;
  /** @default Date.now */
  now?: () => number;
}

/**
 * A stream's rows, offsets `first` to `next - 1` (none when they are equal): the newest is at log
 * position `newest`, each one before it linked in the store's SeqChains. `next` is the offset the
 * next publication gets, `committed` the newest durable one.
 */
interface StreamIndex {
  first: number;
  next: number;
  committed: number;
  /** The seq of the row at offset `next - 1` (0: none). */
  newest: number;
  /** Not newer than the seq of the row at `first`: a sweep skips a stream with nothing to drop. */
  oldest: number;
}

interface Row {
  seq: number;
  stream: string;
  pos: number;
}

/** One publish waiting for the group commit. */
interface PendingPublish {
  rows: Row[];
  /** The seq of its first and last row; a body shared by several rows is stored under `first`. */
  first: number;
  last: number;
  id: string;
  frame: string;
  json: 0 | 1;
  expiresAt: number;
  bytes: number;
}

interface Batch {
  publishes: PendingPublish[];
  done: Promise<void>;
}

/** history.maxBytes's default. */
export const DEFAULT_MAX_BYTES = 1024 * 1024 * 1024;

/**
 * Slots of the newest offsets of streams dropped from the index (a hash of the name picks one): a
 * stream goes on after them when it is published to again, whatever its name (128 KiB).
 */
const DROPPED_SLOTS = 16_384;

/** A sweep starts right after a commit that puts the store this far past history.maxBytes. */
const EAGER_SWEEP_SLACK = 1 / 8;

/**
 * The embedded message streams: an append-only SQLite log (no secondary index, so an insert
 * only appends to one B-tree), with each stream's rows indexed in memory (rebuilt at start).
 * `at` is the log position, so one database orders every publication exactly. A publish to one
 * stream is one row with its frame inline (one INSERT); a publish to several streams stores its
 * frame once in `bodies` (id: its first seq) and its rows point at it. Writes go through the
 * database's group commit; old rows go by range, oldest first (past history.ttl, past
 * history.maxMessages rows or history.maxBytes frame bytes in all), and a body goes with the
 * last row of its publish. A stream left with no rows leaves the index (the memory it costs is
 * bounded by the rows kept, not by the uids ever published to): its newest offset stays behind in
 * a fixed table of slots, and it goes on after it when it is published to again, so that a live
 * session's position in it stays valid. A single process owns the database: `follow` is a no-op.
 */
export class SqliteStreams implements MessageStreams {
  readonly #commit: GroupCommit;
  readonly #o: Required<SqliteStreamsOptions>;
  readonly #epoch: string;
  readonly #streams = new Map<string, StreamIndex>();
  /** Every indexed row's link to the row before it in its stream. */
  readonly #chains = new SeqChains();
  /** Per slot, the newest offset of the streams dropped to it (0: none): where a stream not in the index is. */
  readonly #dropped = new Float64Array(DROPPED_SLOTS);
  readonly #stmt;
  #nextSeq: number;
  #rows = 0;
  /**
   * Frame bytes: `#cum` counts every byte ever written (this run), `#cumFloor` those swept, so
   * `#cum - #cumFloor` are stored. The ledger holds, per run of publishes worth a grain of bytes
   * (oldest first), its last seq and `#cum` through it: what a sweep up to that seq frees.
   */
  #cum = 0;
  #cumFloor = 0;
  readonly #ledgerSeq: number[] = [];
  readonly #ledgerCum: number[] = [];
  /** Bytes of publishes that may share one ledger entry. */
  readonly #grain: number;
  #sweepSoon: NodeJS.Immediate | undefined;
  /** The publishes of this turn, not yet written. */
  #batch: Batch | undefined;
  /** (time, last seq then) checkpoints, oldest first, for deleting by age without an index. */
  readonly #checkpoints: { at: number; seq: number }[] = [];
  readonly #sweeper: NodeJS.Timeout;
  #closed = false;

  constructor(db: StateDb, commit: GroupCommit, opts: SqliteStreamsOptions) {
    this.#commit = commit;
    this.#o = { now: Date.now, maxBytes: DEFAULT_MAX_BYTES, ...opts };
    this.#grain = Math.floor(this.#o.maxBytes / 4096);
    this.#stmt = {
      insert: db.prepare('INSERT INTO publications (seq, stream, pos, id, expires_at, json, frame, bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
      insertBody: db.prepare('INSERT INTO bodies (id, frame) VALUES (?, ?)'),
      insertRef: db.prepare('INSERT INTO publications (seq, stream, pos, id, expires_at, json, body, bytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
      row: db.prepare<[number], { id: string; frame: string; json: number; expires_at: number }>(
        'SELECT p.id, coalesce(p.frame, b.frame) AS frame, p.json, p.expires_at FROM publications p LEFT JOIN bodies b ON b.id = p.body WHERE p.seq = ?',
      ),
      idOf: db.prepare<[number], { id: string }>('SELECT id FROM publications WHERE seq = ?'),
      index: db.prepare<[], { seq: number; stream: string; pos: number; bytes: number }>('SELECT seq, stream, pos, bytes FROM publications ORDER BY seq'),
      deleteUpTo: db.prepare('DELETE FROM publications WHERE seq <= ?'),
      firstAfter: db.prepare<[number], { body: number | null }>('SELECT body FROM publications WHERE seq > ? ORDER BY seq LIMIT 1'),
      deleteBodiesUpTo: db.prepare('DELETE FROM bodies WHERE id <= ?'),
    };
    this.#epoch = (db.prepare<[], { value: string }>("SELECT value FROM meta WHERE key = 'epoch'").get()?.value ?? '0');
    let last = 0;
    for (const r of this.#stmt.index.iterate()) {
      let s = this.#streams.get(r.stream);
      if (s === undefined) this.#streams.set(r.stream, (s = newStream(r.pos)));
      // Offsets are contiguous in a stream (a sweep deletes its oldest rows); if not, its index starts again here.
      if (r.pos !== s.next) s.first = s.next = r.pos;
      this.#append(s, r.seq);
      s.committed = r.pos;
      this.#trim(s);
      last = r.seq;
      this.#rows++;
      if (r.bytes > 0) this.#account(r.seq, r.bytes);
    }
    this.#nextSeq = last + 1;
    this.#checkpoints.push({ at: this.#o.now(), seq: last });
    this.#sweeper = setInterval(() => this.sweep(), Math.min(60_000, Math.max(1000, this.#o.ttlMs / 10)));
    this.#sweeper.unref();
  }

  get size(): number {
    return this.#rows;
  }

  get epoch(): string {
    return this.#epoch;
  }

  /** Streams in the index: those with rows. */
  get streamCount(): number {
    return this.#streams.size;
  }

  /** Bytes of the index's links (4 per row kept, in chunks outside the JavaScript heap). */
  get indexBytes(): number {
    return this.#chains.bytes;
  }

  /** Frame bytes stored (a shared body once), the quantity history.maxBytes bounds. */
  get bytes(): number {
    return this.#cum - this.#cumFloor;
  }

  #account(lastSeq: number, bytes: number): void {
    this.#cum += bytes;
    const n = this.#ledgerSeq.length;
    // Publishes are counted together until their bytes reach a grain (1/4096 of maxBytes): the
    // ledger stays a few thousand entries, and a sweep frees at most a grain more than it must.
    if (n > 1 && this.#cum - (this.#ledgerCum[n - 2] as number) <= this.#grain) {
      this.#ledgerSeq[n - 1] = lastSeq;
      this.#ledgerCum[n - 1] = this.#cum;
    } else {
      this.#ledgerSeq.push(lastSeq);
      this.#ledgerCum.push(this.#cum);
    }
  }

  /** Keeps the newest `size` committed publications: one whose commit may still fail pushes out nothing. */
  #trim(s: StreamIndex): void {
    if (s.committed - s.first + 1 > this.#o.size) s.first = s.committed - this.#o.size + 1;
  }

  /** Indexes the row with log position `seq` at offset `s.next`. */
  #append(s: StreamIndex, seq: number): void {
    if (s.next === s.first) {
      this.#chains.append(seq, 0);
      s.oldest = seq;
    } else if (!this.#chains.append(seq, s.newest)) {
      // Its previous row is further back than a link reaches (older than any log keeps): the index starts here.
      s.first = s.next;
      s.oldest = seq;
    }
    s.newest = seq;
    s.next++;
  }

  /** The seqs of the stream's rows at offsets `from` to `to` (first <= from, to < next), oldest first. */
  #seqs(s: StreamIndex, from: number, to: number): number[] {
    const out = new Array<number>(Math.max(0, to - from + 1));
    let seq = s.newest;
    for (let off = s.next - 1; off > to; off--) seq = this.#chains.prev(seq);
    for (let off = to; off >= from; off--) {
      out[off - from] = seq;
      if (off > from) seq = this.#chains.prev(seq);
    }
    return out;
  }

  publish(streams: readonly string[], msg: StreamMessage): Promise<Publication[]> {
    if (this.#closed) return Promise.reject(storeError(new Error('the message store is closed')));
    const rows: Row[] = [];
    const pubs: Publication[] = [];
    const first = this.#nextSeq;
    for (const stream of streams) {
      let s = this.#streams.get(stream);
      if (s === undefined) this.#streams.set(stream, (s = newStream(this.#dropped[slotOf(stream)] as number + 1)));
      const seq = this.#nextSeq++;
      const pos = s.next;
      this.#append(s, seq);
      this.#rows++;
      rows.push({ seq, stream, pos });
      pubs.push({ stream, offset: pos, epoch: this.#epoch, at: seq, id: msg.id, frame: msg.frame, json: msg.json });
    }
    if (rows.length === 0) return Promise.resolve(pubs);
    const last = this.#nextSeq - 1;
    const bytes = Buffer.byteLength(msg.frame);
    this.#account(last, bytes);
    const expiresAt = this.#o.now() + Math.min(msg.ttlMs ?? this.#o.ttlMs, this.#o.ttlMs);
    const batch = this.#batch ?? this.#newBatch();
    batch.publishes.push({ rows, first, last, id: msg.id, frame: msg.frame, json: msg.json ? 1 : 0, expiresAt, bytes });
    return batch.done.then(() => pubs);
  }

  /**
   * The publishes of this turn: one write and one undo in the group commit for all of them, and
   * one promise that settles when they are committed (a failed commit: none of them exist).
   */
  #newBatch(): Batch {
    const publishes: PendingPublish[] = [];
    this.#commit.queue(
      () => this.#write(publishes),
      () => {
        if (this.#batch?.publishes === publishes) this.#batch = undefined;
        // Newest first: each row forgotten is then the newest of its stream.
        for (let i = publishes.length - 1; i >= 0; i--) this.#forget(publishes[i] as PendingPublish);
      },
    );
    // Asked for after the write is queued: it settles with that write's transaction.
    const batch: Batch = { publishes, done: this.#commit.committed().then(() => this.#committed(publishes)) };
    this.#batch = batch;
    return batch;
  }

  #write(publishes: readonly PendingPublish[]): void {
    if (this.#batch?.publishes === publishes) this.#batch = undefined;
    const { insert, insertBody, insertRef } = this.#stmt;
    for (const p of publishes) {
      const rows = p.rows;
      if (rows.length === 1) {
        const r = rows[0] as Row;
        insert.run(r.seq, r.stream, r.pos, p.id, p.expiresAt, p.json, p.frame, p.bytes);
      } else {
        // The body once; it goes with the last row (the one that counts its bytes).
        insertBody.run(p.first, p.frame);
        for (const r of rows) insertRef.run(r.seq, r.stream, r.pos, p.id, p.expiresAt, p.json, p.first, r.seq === p.last ? p.bytes : 0);
      }
    }
  }

  /** A batch is durable: its rows may be read back, and push older ones out of their streams. */
  #committed(publishes: readonly PendingPublish[]): void {
    for (const p of publishes) {
      for (const r of p.rows) {
        const s = this.#streams.get(r.stream);
        if (s !== undefined && r.pos > s.committed) {
          s.committed = r.pos;
          this.#trim(s);
        }
      }
    }
    if (this.bytes > this.#o.maxBytes * (1 + EAGER_SWEEP_SLACK) && this.#sweepSoon === undefined && !this.#closed) {
      // Far past history.maxBytes (large messages): make room now, not at the next tick.
      this.#sweepSoon = setImmediate(() => {
        this.#sweepSoon = undefined;
        this.sweep();
      });
    }
  }

  /** A failed commit: its rows never existed; their offsets are handed out again. */
  #forget(p: PendingPublish): void {
    // The failed transaction held the newest publishes: their bytes are in the ledger's tail
    // entries (each counts every byte up to its seq).
    for (let i = this.#ledgerSeq.length - 1; i >= 0 && (this.#ledgerSeq[i] as number) >= p.first; i--) {
      this.#ledgerCum[i] = (this.#ledgerCum[i] as number) - p.bytes;
    }
    this.#cum -= p.bytes;
    for (let i = p.rows.length - 1; i >= 0; i--) {
      const r = p.rows[i] as Row;
      this.#rows--;
      const s = this.#streams.get(r.stream);
      if (s === undefined) continue;
      if (s.newest === r.seq && r.pos === s.next - 1) {
        s.next = r.pos;
        s.newest = s.next > s.first ? this.#chains.prev(r.seq) : 0;
      } else {
        // Not its newest row (the transaction held the newest of every stream, so this does not
        // happen): the stream's index starts again after it, rather than link around it.
        s.next = Math.min(s.next, r.pos);
        s.first = s.next;
        s.newest = 0;
      }
      if (s.first > s.next) s.first = s.next;
    }
  }

  history(stream: string, q: HistoryQuery): HistoryPage {
    const s = this.#streams.get(stream);
    const top = { offset: s?.committed ?? (this.#dropped[slotOf(stream)] as number), epoch: this.#epoch };
    if (s === undefined || q.limit <= 0) return { publications: [], top };
    let from = s.first;
    if (q.after !== undefined && q.after.epoch === this.#epoch) from = Math.max(from, q.after.offset + 1);
    // Only committed rows: one queued in this same turn is not durable yet.
    const to = Math.min(s.committed, s.next - 1);
    if (from > to) return { publications: [], top };
    const seqs = this.#seqs(s, from, to);
    const now = this.#o.now();
    const out: Publication[] = [];
    for (let i = q.afterAt === undefined ? 0 : upperBound(seqs, q.afterAt); i < seqs.length && out.length < q.limit; i++) {
      const seq = seqs[i] as number;
      const r = this.#stmt.row.get(seq);
      if (r === undefined || r.expires_at <= now) continue;
      out.push({ stream, offset: from + i, epoch: this.#epoch, at: seq, id: r.id, frame: r.frame, json: r.json === 1 });
    }
    return { publications: out, top };
  }

  locate(stream: string, id: string): Publication | undefined {
    const s = this.#streams.get(stream);
    if (s === undefined) return undefined;
    // Newest first: a client usually resumes from a recent message.
    let seq = s.newest;
    for (let off = s.next - 1; off >= s.first; off--) {
      if (off <= s.committed && this.#stmt.idOf.get(seq)?.id === id) {
        return { stream, offset: off, epoch: this.#epoch, at: seq, id, frame: '', json: false };
      }
      if (off > s.first) seq = this.#chains.prev(seq);
    }
    return undefined;
  }

  follow(): void {}
  unfollow(): void {}
  onRemote(): void {}

  /**
   * Deletes rows past history.ttl, beyond history.maxMessages rows or beyond history.maxBytes
   * frame bytes (oldest first, by range), and the bodies no row points at any more. Runs on a
   * timer, and right after a commit far past history.maxBytes; callable for tests.
   */
  sweep(): void {
    if (this.#closed) return;
    const now = this.#o.now();
    let cutoff = Math.max(0, this.#nextSeq - 1 - this.#o.maxMessages);
    while (this.#checkpoints.length > 0 && (this.#checkpoints[0] as { at: number }).at <= now - this.#o.ttlMs) {
      cutoff = Math.max(cutoff, (this.#checkpoints.shift() as { seq: number }).seq);
    }
    const over = this.bytes - this.#o.maxBytes;
    if (over > 0) {
      // The oldest publishes whose bytes bring the store back under the bound.
      const i = lowerBound(this.#ledgerCum, this.#cumFloor + over);
      cutoff = Math.max(cutoff, this.#ledgerSeq[i] ?? this.#nextSeq - 1);
    }
    const freed = upperBound(this.#ledgerSeq, cutoff);
    if (freed > 0) {
      this.#cumFloor = this.#ledgerCum[freed - 1] as number;
      this.#ledgerSeq.splice(0, freed);
      this.#ledgerCum.splice(0, freed);
    }
    if (cutoff > 0) {
      const { deleteUpTo, firstAfter, deleteBodiesUpTo } = this.#stmt;
      this.#commit.queue(() => {
        this.#rows -= deleteUpTo.run(cutoff).changes;
        // A body whose publish has rows left (the cutoff fell inside it) stays.
        const next = firstAfter.get(cutoff)?.body;
        deleteBodiesUpTo.run(next != null && next <= cutoff ? next - 1 : cutoff);
      });
      for (const [stream, s] of this.#streams) {
        if (s.next !== s.first && s.oldest > cutoff) continue;
        // The rows after the cutoff, counted from the newest back.
        const count = s.next - s.first;
        let keep = 0;
        let seq = s.newest;
        while (keep < count && seq > cutoff) {
          s.oldest = seq;
          keep++;
          if (keep < count) seq = this.#chains.prev(seq);
        }
        s.first = s.next - keep;
        if (keep === 0) this.#drop(stream, s);
      }
      this.#chains.dropUpTo(cutoff);
      this.#commit.flush();
    }
    this.#checkpoints.push({ at: now, seq: this.#nextSeq - 1 });
  }

  /**
   * A stream with no rows leaves the index. Its next offset must not start over at 1 in this
   * epoch (a live session at offset n would take a new n for one it has): its slot keeps the
   * newest offset it had, and a stream not in the index goes on after its slot's.
   */
  #drop(stream: string, s: StreamIndex): void {
    this.#streams.delete(stream);
    const slot = slotOf(stream);
    this.#dropped[slot] = Math.max(this.#dropped[slot] as number, s.next - 1);
  }

  close(): void {
    if (this.#closed) return;
    this.#commit.flush();
    this.#closed = true;
    clearInterval(this.#sweeper);
    if (this.#sweepSoon !== undefined) clearImmediate(this.#sweepSoon);
  }
}

/** A stream name's slot in the table of dropped streams' offsets (FNV-1a). */
function slotOf(stream: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < stream.length; i++) h = Math.imul(h ^ stream.charCodeAt(i), 0x01000193);
  return (h >>> 0) % DROPPED_SLOTS;
}

function newStream(first: number): StreamIndex {
  return { first, next: first, committed: first - 1, newest: 0, oldest: 0 };
}

/** The index of the first element not less than `x` in an ascending array. */
function lowerBound(a: readonly number[], x: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((a[mid] as number) < x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The index of the first element greater than `x` in an ascending array. */
function upperBound(a: readonly number[], x: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((a[mid] as number) <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}
