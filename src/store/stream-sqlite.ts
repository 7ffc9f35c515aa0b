import type { Logger } from '../obs/log.js';
import { type GroupCommit, type StateDb, storeError } from './sqlite.js';
import type { HistoryPage, HistoryQuery, MessageStreams, Publication, StreamMessage } from './stream.js';

export interface SqliteStreamsOptions {
  /** Publications kept per stream. */
  size: number;
  /** How long a publication is kept at most. */
  ttlMs: number;
  /** Rows kept in all: the bound on disk and memory. */
  maxMessages: number;
  log: Logger;
  /** @default Date.now */
  now?: () => number;
}

/**
 * A stream's rows: `seqs[i]` is the log position of the publication at offset `first + i`;
 * `next` is the offset the next publication gets, `committed` the newest durable one.
 */
interface StreamIndex {
  first: number;
  seqs: number[];
  next: number;
  committed: number;
}

interface Row {
  seq: number;
  stream: string;
  pos: number;
  id: string;
  expiresAt: number;
  frame: string;
  json: number;
}

/**
 * The embedded message streams: an append-only SQLite log (no secondary index, so an insert
 * only appends to one B-tree), with each stream's rows indexed in memory (rebuilt at start).
 * `at` is the log position, so one database orders every publication exactly. Writes go through
 * the database's group commit; old rows go by range (past history.ttl, or past
 * history.maxMessages in all). A single process owns the database: `follow` is a no-op.
 */
export class SqliteStreams implements MessageStreams {
  readonly #commit: GroupCommit;
  readonly #o: Required<SqliteStreamsOptions>;
  readonly #epoch: string;
  readonly #streams = new Map<string, StreamIndex>();
  readonly #stmt;
  #nextSeq: number;
  #rows = 0;
  /** (time, last seq then) checkpoints, oldest first, for deleting by age without an index. */
  readonly #checkpoints: { at: number; seq: number }[] = [];
  readonly #sweeper: NodeJS.Timeout;
  #closed = false;

  constructor(db: StateDb, commit: GroupCommit, opts: SqliteStreamsOptions) {
    this.#commit = commit;
    this.#o = { now: Date.now, ...opts };
    this.#stmt = {
      insert: db.prepare('INSERT INTO publications (seq, stream, pos, id, expires_at, frame, json) VALUES (?, ?, ?, ?, ?, ?, ?)'),
      row: db.prepare<[number], { id: string; frame: string; json: number; expires_at: number }>(
        'SELECT id, frame, json, expires_at FROM publications WHERE seq = ?',
      ),
      idOf: db.prepare<[number], { id: string }>('SELECT id FROM publications WHERE seq = ?'),
      index: db.prepare<[], { seq: number; stream: string; pos: number }>('SELECT seq, stream, pos FROM publications ORDER BY seq'),
      deleteUpTo: db.prepare('DELETE FROM publications WHERE seq <= ?'),
    };
    this.#epoch = (db.prepare<[], { value: string }>("SELECT value FROM meta WHERE key = 'epoch'").get()?.value ?? '0');
    let last = 0;
    for (const r of this.#stmt.index.iterate()) {
      let s = this.#streams.get(r.stream);
      if (s === undefined) this.#streams.set(r.stream, (s = { first: r.pos, seqs: [], next: r.pos, committed: r.pos }));
      s.seqs.push(r.seq);
      s.next = r.pos + 1;
      s.committed = r.pos;
      this.#trim(s);
      last = r.seq;
      this.#rows++;
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

  /** Keeps the newest `size` committed publications: one whose commit may still fail pushes out nothing. */
  #trim(s: StreamIndex): void {
    while (s.committed - s.first + 1 > this.#o.size) {
      s.seqs.shift();
      s.first++;
    }
  }

  publish(streams: readonly string[], msg: StreamMessage): Promise<Publication[]> {
    if (this.#closed) return Promise.reject(storeError(new Error('the message store is closed')));
    const expiresAt = this.#o.now() + Math.min(msg.ttlMs ?? this.#o.ttlMs, this.#o.ttlMs);
    const json = msg.json ? 1 : 0;
    const rows: Row[] = [];
    const pubs: Publication[] = [];
    for (const stream of streams) {
      let s = this.#streams.get(stream);
      if (s === undefined) this.#streams.set(stream, (s = { first: 1, seqs: [], next: 1, committed: 0 }));
      const seq = this.#nextSeq++;
      const pos = s.next++;
      if (s.seqs.length === 0) s.first = pos;
      s.seqs.push(seq);
      this.#rows++;
      rows.push({ seq, stream, pos, id: msg.id, expiresAt, frame: msg.frame, json });
      pubs.push({ stream, offset: pos, epoch: this.#epoch, at: seq, id: msg.id, frame: msg.frame, json: msg.json });
    }
    const { insert } = this.#stmt;
    this.#commit.queue(
      () => {
        for (const r of rows) insert.run(r.seq, r.stream, r.pos, r.id, r.expiresAt, r.frame, r.json);
      },
      () => this.#forget(rows),
    );
    return this.#commit.committed().then(() => {
      for (const r of rows) {
        const s = this.#streams.get(r.stream);
        if (s !== undefined && r.pos > s.committed) {
          s.committed = r.pos;
          this.#trim(s);
        }
      }
      return pubs;
    });
  }

  /** A failed commit: its rows never existed; their offsets are handed out again. */
  #forget(rows: readonly Row[]): void {
    for (const r of rows) {
      this.#rows--;
      const s = this.#streams.get(r.stream);
      if (s === undefined) continue;
      const i = s.seqs.indexOf(r.seq);
      if (i >= 0) s.seqs.splice(i, 1);
      if (r.pos < s.next) s.next = r.pos;
      if (s.seqs.length === 0) s.first = s.next;
    }
  }

  history(stream: string, q: HistoryQuery): HistoryPage {
    const s = this.#streams.get(stream);
    const top = { offset: s?.committed ?? 0, epoch: this.#epoch };
    if (s === undefined || q.limit <= 0) return { publications: [], top };
    let i = 0;
    if (q.after !== undefined && q.after.epoch === this.#epoch) i = Math.max(0, q.after.offset + 1 - s.first);
    if (q.afterAt !== undefined) i = Math.max(i, upperBound(s.seqs, q.afterAt));
    const now = this.#o.now();
    const out: Publication[] = [];
    // Only committed rows: one queued in this same turn is not durable yet.
    const end = s.committed - s.first + 1;
    for (; i < end && out.length < q.limit; i++) {
      const seq = s.seqs[i] as number;
      const r = this.#stmt.row.get(seq);
      if (r === undefined || r.expires_at <= now) continue;
      out.push({ stream, offset: s.first + i, epoch: this.#epoch, at: seq, id: r.id, frame: r.frame, json: r.json === 1 });
    }
    return { publications: out, top };
  }

  locate(stream: string, id: string): Publication | undefined {
    const s = this.#streams.get(stream);
    if (s === undefined) return undefined;
    // Newest first: a client usually resumes from a recent message.
    for (let i = s.committed - s.first; i >= 0; i--) {
      const seq = s.seqs[i] as number;
      if (this.#stmt.idOf.get(seq)?.id === id) {
        return { stream, offset: s.first + i, epoch: this.#epoch, at: seq, id, frame: '', json: false };
      }
    }
    return undefined;
  }

  follow(): void {}
  unfollow(): void {}
  onRemote(): void {}

  /**
   * Deletes rows past history.ttl or beyond history.maxMessages (oldest first, by range). Runs
   * on a timer; callable for tests.
   */
  sweep(): void {
    if (this.#closed) return;
    const now = this.#o.now();
    let cutoff = Math.max(0, this.#nextSeq - 1 - this.#o.maxMessages);
    while (this.#checkpoints.length > 0 && (this.#checkpoints[0] as { at: number }).at <= now - this.#o.ttlMs) {
      cutoff = Math.max(cutoff, (this.#checkpoints.shift() as { seq: number }).seq);
    }
    if (cutoff > 0) {
      const deleteUpTo = this.#stmt.deleteUpTo;
      this.#commit.queue(() => {
        this.#rows -= deleteUpTo.run(cutoff).changes;
      });
      for (const s of this.#streams.values()) {
        let drop = 0;
        while (drop < s.seqs.length && (s.seqs[drop] as number) <= cutoff) drop++;
        // A stream swept empty keeps its entry: its next offset must not start over at 1 in
        // this epoch (a live session at offset n would take a new n for one it has).
        if (drop > 0) {
          s.seqs.splice(0, drop);
          s.first += drop;
        }
      }
      this.#commit.flush();
    }
    this.#checkpoints.push({ at: now, seq: this.#nextSeq - 1 });
  }

  close(): void {
    if (this.#closed) return;
    this.#commit.flush();
    this.#closed = true;
    clearInterval(this.#sweeper);
  }
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
