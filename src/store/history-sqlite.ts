import type { Logger } from '../obs/log.js';
import type { StateDb } from './sqlite.js';

/** The uid under which a broadcast is stored: every uid's history includes it. */
export const BROADCAST_UID = '*';

/** One stored message as a resuming session gets it. */
export interface StoredMessage {
  seq: number;
  id: string;
  frame: string;
  /** The frame is a JSON object (a Text line, a structured publish), sent as JSON in envelopes. */
  json: boolean;
}

export interface HistoryOptions {
  /** Messages kept per uid. */
  size: number;
  /** How long a message is kept at most. */
  ttlMs: number;
  /** Rows kept in all (a uid's message is one row per uid it was for): the bound on disk and memory. */
  maxMessages: number;
  /** How long a publisher's id is remembered, with the first answer to it. */
  dedupeWindowMs: number;
  log: Logger;
  /** @default Date.now */
  now?: () => number;
}

interface Row {
  seq: number;
  id: string;
  uid: string;
  expiresAt: number;
  frame: string;
  json: number;
}

/**
 * The message store: each uid's recent messages (bounded by count and age) for sessions that
 * resume, and the first answer to every publisher-given id.
 *
 * SQLite holds an append-only log of messages with no secondary index; which rows belong to a
 * uid is kept in memory (at most history.size per uid; rebuilt from the table at start). An
 * insert then only appends to the end of the table, which keeps the hot path cheap; old rows go
 * by range (past history.ttl, or past history.maxMessages in all).
 *
 * Writes are group-committed: everything queued in one run of synchronous work goes in one
 * transaction, and `committed()` resolves once it is durable (WAL: it survives the process being
 * killed).
 */
export class History {
  readonly #db: StateDb;
  readonly #o: Required<HistoryOptions>;
  readonly #stmt;
  /** Rows waiting for the next commit. */
  #rows: Row[] = [];
  #answers: [string, number, string][] = [];
  #flushScheduled = false;
  #committed: { promise: Promise<void>; resolve: () => void } | undefined;
  /** Per uid, the seqs of its newest rows, oldest first, at most `size`. */
  readonly #byUid = new Map<string, number[]>();
  #nextSeq: number;
  /** Rows in the table (committed or queued). */
  #rowCount = 0;
  /** (time, last seq then) checkpoints, oldest first, for deleting by age without an index. */
  readonly #checkpoints: { at: number; seq: number }[] = [];
  readonly #sweeper: NodeJS.Timeout;
  #closed = false;
  readonly #flushNow = () => this.flush();

  constructor(db: StateDb, opts: HistoryOptions) {
    this.#db = db;
    this.#o = { now: Date.now, ...opts };
    this.#stmt = {
      insert: db.prepare('INSERT INTO messages (seq, id, uid, expires_at, frame, json) VALUES (?, ?, ?, ?, ?, ?)'),
      row: db.prepare<[number], { id: string; frame: string; json: number; expires_at: number }>('SELECT id, frame, json, expires_at FROM messages WHERE seq = ?'),
      index: db.prepare<[], { seq: number; uid: string }>('SELECT seq, uid FROM messages ORDER BY seq'),
      count: db.prepare<[], { n: number }>('SELECT count(*) AS n FROM messages'),
      deleteUpTo: db.prepare('DELETE FROM messages WHERE seq <= ?'),
      answer: db.prepare<[string, number], { report: string }>('SELECT report FROM answers WHERE id = ? AND at > ?'),
      putAnswer: db.prepare('INSERT OR IGNORE INTO answers (id, at, report) VALUES (?, ?, ?)'),
      expireAnswers: db.prepare('DELETE FROM answers WHERE at <= ?'),
    };
    let last = 0;
    for (const r of this.#stmt.index.iterate()) {
      this.#index(r.uid, r.seq);
      last = r.seq;
    }
    this.#nextSeq = last + 1;
    this.#rowCount = this.#stmt.count.get()?.n ?? 0;
    this.#checkpoints.push({ at: this.#o.now(), seq: last });
    this.#sweeper = setInterval(() => this.sweep(), Math.min(60_000, Math.max(1000, this.#o.ttlMs / 10)));
    this.#sweeper.unref();
  }

  #index(uid: string, seq: number): void {
    let seqs = this.#byUid.get(uid);
    if (seqs === undefined) this.#byUid.set(uid, (seqs = []));
    seqs.push(seq);
    if (seqs.length > this.#o.size) seqs.shift();
  }

  /** Rows in the store (one per uid a message was for). */
  get rows(): number {
    return this.#rowCount;
  }

  /** The seq of the newest row appended (committed or not). */
  get lastSeq(): number {
    return this.#nextSeq - 1;
  }

  /**
   * Queues a message for each uid (BROADCAST_UID for everyone), kept `ttlMs` (at most
   * history.ttl). Returns the seq of its last row: its position in the store.
   */
  append(id: string, uids: readonly string[], frame: string, json: boolean, ttlMs?: number): number {
    if (this.#closed) throw new Error('history is closed');
    const expiresAt = this.#o.now() + Math.min(ttlMs ?? this.#o.ttlMs, this.#o.ttlMs);
    const isJson = json ? 1 : 0;
    for (const uid of uids) {
      const seq = this.#nextSeq++;
      this.#rows.push({ seq, id, uid, expiresAt, frame, json: isJson });
      this.#rowCount++;
      this.#index(uid, seq);
    }
    this.#schedule();
    return this.#nextSeq - 1;
  }

  /** Queues the first answer to a publisher-given id. */
  recordAnswer(id: string, report: string): void {
    if (this.#closed) throw new Error('history is closed');
    this.#answers.push([id, this.#o.now(), report]);
    this.#schedule();
  }

  /** The stored first answer to a publisher-given id within the dedupe window, if any. */
  findAnswer(id: string): string | undefined {
    this.flush();
    return this.#stmt.answer.get(id, this.#o.now() - this.#o.dedupeWindowMs)?.report;
  }

  /**
   * Every stored message for `uid` after the message `since` (exclusive), oldest first.
   * `gap` is true when `since` was given but is no longer (or never was) stored: messages may
   * have been missed, and all that is stored follows. `upTo` is the newest seq the replay covers:
   * a message with a seq up to it is in the replay (if it is for this uid), so the session must
   * not get it live as well. Commits queued writes first.
   */
  replay(uid: string, since: string | undefined): { messages: StoredMessage[]; gap: boolean; upTo: number } {
    this.flush();
    const upTo = this.lastSeq;
    const own = this.#byUid.get(uid) ?? [];
    const all = uid === BROADCAST_UID ? own : mergeSorted(own, this.#byUid.get(BROADCAST_UID) ?? []);
    const now = this.#o.now();
    const rows: (StoredMessage & { live: boolean })[] = [];
    for (const seq of all) {
      const r = this.#stmt.row.get(seq);
      if (r !== undefined) rows.push({ seq, id: r.id, frame: r.frame, json: r.json === 1, live: r.expires_at > now });
    }
    // `since` is looked for among expired rows too: a message past its own ttl still marks a
    // position, and what came before it must not be sent again.
    const at = since === undefined ? -1 : rows.findIndex((m) => m.id === since);
    const gap = since !== undefined && at < 0;
    const messages = rows.slice(at + 1).filter((m) => m.live).map(({ live: _live, ...m }) => m);
    return { messages, gap, upTo };
  }

  #schedule(): void {
    if (this.#flushScheduled) return;
    this.#flushScheduled = true;
    // A microtask runs once the current piece of synchronous work is done: everything a Text
    // ingress read in one chunk (or a transport queued meanwhile) goes in one transaction, and
    // no reply waits an extra event-loop turn for it.
    queueMicrotask(this.#flushNow);
  }

  /** Resolves when everything queued so far is committed. */
  committed(): Promise<void> {
    if (this.#rows.length === 0 && this.#answers.length === 0) return Promise.resolve();
    if (this.#committed === undefined) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.#committed = { promise, resolve };
    }
    return this.#committed.promise;
  }

  /** Commits every queued write now, in one transaction. */
  flush(): void {
    this.#flushScheduled = false;
    if (this.#rows.length === 0 && this.#answers.length === 0) return;
    const rows = this.#rows;
    const answers = this.#answers;
    const done = this.#committed;
    this.#rows = [];
    this.#answers = [];
    this.#committed = undefined;
    const { insert, putAnswer } = this.#stmt;
    this.#db.transaction(() => {
      for (const r of rows) insert.run(r.seq, r.id, r.uid, r.expiresAt, r.frame, r.json);
      for (const a of answers) putAnswer.run(a[0], a[1], a[2]);
    })();
    done?.resolve();
  }

  /**
   * Deletes rows past history.ttl or beyond history.maxMessages (oldest first, by range), and
   * expired answers. Runs on a timer; callable for tests.
   */
  sweep(): void {
    if (this.#closed) return;
    this.flush();
    const now = this.#o.now();
    let cutoff = Math.max(0, this.#nextSeq - 1 - this.#o.maxMessages);
    while (this.#checkpoints.length > 0 && (this.#checkpoints[0] as { at: number }).at <= now - this.#o.ttlMs) {
      cutoff = Math.max(cutoff, (this.#checkpoints.shift() as { seq: number }).seq);
    }
    this.#db.transaction(() => {
      if (cutoff > 0) this.#rowCount -= this.#stmt.deleteUpTo.run(cutoff).changes;
      this.#stmt.expireAnswers.run(now - this.#o.dedupeWindowMs);
    })();
    if (cutoff > 0) {
      for (const [uid, seqs] of this.#byUid) {
        let drop = 0;
        while (drop < seqs.length && (seqs[drop] as number) <= cutoff) drop++;
        if (drop === seqs.length) this.#byUid.delete(uid);
        else if (drop > 0) seqs.splice(0, drop);
      }
    }
    this.#checkpoints.push({ at: now, seq: this.#nextSeq - 1 });
  }

  close(): void {
    if (this.#closed) return;
    this.flush();
    this.#closed = true;
    clearInterval(this.#sweeper);
  }
}

function mergeSorted(a: readonly number[], b: readonly number[]): number[] {
  const out: number[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (j >= b.length || (i < a.length && (a[i] as number) < (b[j] as number))) out.push(a[i++] as number);
    else out.push(b[j++] as number);
  }
  return out;
}
