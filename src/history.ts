import type { Logger } from './log.js';
import type { StateDb } from './state.js';

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
  /** How long a publisher's id is remembered, with the first answer to it. */
  dedupeWindowMs: number;
  log: Logger;
  /** @default Date.now */
  now?: () => number;
}

type Write = () => void;

/**
 * The message store: each uid's recent messages (bounded by count and age) for sessions that
 * resume, and the first answer to every publisher-given id. Writes are group-committed:
 * everything queued in one event-loop turn goes in one transaction, and `committed()` resolves
 * once it is durable (WAL: it survives the process being killed).
 */
export class History {
  readonly #db: StateDb;
  readonly #o: Required<HistoryOptions>;
  readonly #stmt;
  #queue: Write[] = [];
  #flushScheduled = false;
  #waiters: (() => void)[] = [];
  /** Rows per uid, to prune a uid past its size without counting in SQL on every insert. */
  readonly #counts = new Map<string, number>();
  /**
   * (time, highest seq then) checkpoints, oldest first: rows up to a checkpoint older than
   * history.ttl have all expired, so the sweep deletes a primary-key range and the table needs
   * no index on expiry. A shorter per-message ttl is enforced when reading.
   */
  readonly #checkpoints: { at: number; seq: number }[] = [];
  readonly #sweeper: NodeJS.Timeout;
  #closed = false;

  constructor(db: StateDb, opts: HistoryOptions) {
    this.#db = db;
    this.#o = { now: Date.now, ...opts };
    this.#stmt = {
      insert: db.prepare('INSERT INTO messages (id, uid, expires_at, frame, json) VALUES (?, ?, ?, ?, ?)'),
      // Found through messages_by_uid: a uid has at most history.size rows (the schema keeps one index).
      seqOf: db.prepare<[string, string, string], { seq: number }>('SELECT seq FROM messages WHERE uid IN (?, ?) AND id = ? ORDER BY seq LIMIT 1'),
      after: db.prepare<[string, string, number, number], { seq: number; id: string; frame: string; json: number }>(
        'SELECT seq, id, frame, json FROM messages WHERE uid IN (?, ?) AND seq > ? AND expires_at > ? ORDER BY seq',
      ),
      trimUid: db.prepare(
        'DELETE FROM messages WHERE uid = ? AND seq <= (SELECT seq FROM messages WHERE uid = ? ORDER BY seq DESC LIMIT 1 OFFSET ?)',
      ),
      expire: db.prepare<[number], { uid: string }>('DELETE FROM messages WHERE seq <= ? RETURNING uid'),
      maxSeq: db.prepare<[], { seq: number | null }>('SELECT max(seq) AS seq FROM messages'),
      counts: db.prepare<[], { uid: string; n: number }>('SELECT uid, count(*) AS n FROM messages GROUP BY uid'),
      answer: db.prepare<[string, number], { report: string }>('SELECT report FROM answers WHERE id = ? AND at > ?'),
      putAnswer: db.prepare('INSERT OR IGNORE INTO answers (id, at, report) VALUES (?, ?, ?)'),
      expireAnswers: db.prepare('DELETE FROM answers WHERE at <= ?'),
    };
    for (const r of this.#stmt.counts.all()) this.#counts.set(r.uid, r.n);
    this.#checkpoints.push({ at: this.#o.now(), seq: this.#stmt.maxSeq.get()?.seq ?? 0 });
    this.#sweeper = setInterval(() => this.sweep(), Math.min(60_000, Math.max(1000, this.#o.ttlMs / 10)));
    this.#sweeper.unref();
  }

  /** Queues a message for each uid (BROADCAST_UID for everyone), kept `ttlMs` (at most history.ttl). */
  append(id: string, uids: readonly string[], frame: string, json: boolean, ttlMs?: number): void {
    const expiresAt = this.#o.now() + Math.min(ttlMs ?? this.#o.ttlMs, this.#o.ttlMs);
    const isJson = json ? 1 : 0;
    for (const uid of uids) {
      this.#enqueue(() => {
        this.#stmt.insert.run(id, uid, expiresAt, frame, isJson);
        const n = (this.#counts.get(uid) ?? 0) + 1;
        // Trim in steps, not on every insert: at most size + 1/8 rows live between trims.
        if (n > this.#o.size + Math.max(1, this.#o.size >> 3)) {
          this.#stmt.trimUid.run(uid, uid, this.#o.size - 1);
          this.#counts.set(uid, this.#o.size);
        } else {
          this.#counts.set(uid, n);
        }
      });
    }
  }

  /** Queues the first answer to a publisher-given id. */
  recordAnswer(id: string, report: string): void {
    const at = this.#o.now();
    this.#enqueue(() => this.#stmt.putAnswer.run(id, at, report));
  }

  /** The stored first answer to a publisher-given id within the dedupe window, if any. */
  findAnswer(id: string): string | undefined {
    this.flush();
    return this.#stmt.answer.get(id, this.#o.now() - this.#o.dedupeWindowMs)?.report;
  }

  /**
   * Every stored message for `uid` after the message `since` (exclusive), oldest first.
   * `gap` is true when `since` was given but is no longer (or never was) stored: messages may
   * have been missed, and all that is stored follows. Commits queued writes first, so that a
   * session that replays and then registers, in one synchronous step, misses nothing.
   */
  replay(uid: string, since: string | undefined): { messages: StoredMessage[]; gap: boolean } {
    this.flush();
    let after = 0;
    let gap = false;
    if (since !== undefined) {
      const row = this.#stmt.seqOf.get(uid, BROADCAST_UID, since);
      if (row) after = row.seq;
      else gap = true;
    }
    const rows = this.#stmt.after.all(uid, BROADCAST_UID, after, this.#o.now());
    return { messages: rows.map((r) => ({ seq: r.seq, id: r.id, frame: r.frame, json: r.json === 1 })), gap };
  }

  #enqueue(w: Write): void {
    if (this.#closed) throw new Error('history is closed');
    this.#queue.push(w);
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Resolves when everything queued so far is committed. */
  committed(): Promise<void> {
    if (this.#queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Commits every queued write now, in one transaction. */
  flush(): void {
    this.#flushScheduled = false;
    if (this.#queue.length === 0) return;
    const writes = this.#queue;
    const waiters = this.#waiters;
    this.#queue = [];
    this.#waiters = [];
    this.#db.transaction(() => {
      for (const w of writes) w();
    })();
    for (const w of waiters) w();
  }

  /** Deletes expired messages and answers. Runs on a timer; callable for tests. */
  sweep(): void {
    if (this.#closed) return;
    this.flush();
    const now = this.#o.now();
    let cutoff = 0;
    while (this.#checkpoints.length > 0 && (this.#checkpoints[0] as { at: number }).at <= now - this.#o.ttlMs) {
      cutoff = (this.#checkpoints.shift() as { seq: number }).seq;
    }
    this.#db.transaction(() => {
      if (cutoff > 0) {
        for (const { uid } of this.#stmt.expire.all(cutoff)) {
          const n = (this.#counts.get(uid) ?? 1) - 1;
          if (n <= 0) this.#counts.delete(uid);
          else this.#counts.set(uid, n);
        }
      }
      this.#stmt.expireAnswers.run(now - this.#o.dedupeWindowMs);
    })();
    this.#checkpoints.push({ at: now, seq: this.#stmt.maxSeq.get()?.seq ?? 0 });
  }

  close(): void {
    if (this.#closed) return;
    this.flush();
    this.#closed = true;
    clearInterval(this.#sweeper);
  }
}
