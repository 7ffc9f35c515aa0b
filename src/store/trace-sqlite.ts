import { errorMessage } from '../errors.js';
import type { Logger } from '../obs/log.js';
import type { GroupCommit, StateDb } from './sqlite.js';
import { type JournalEvent, TRACE_LIMITS, type TokenOutcome, type TraceStore, KeyQueue, eachTokenOutcome, packEvent, retiredKey, unpackEvent } from './trace.js';

export interface SqliteTraceOptions {
  /** How long events are kept (history.ttl). */
  ttlMs: number;
  /** Messages kept at most (history.maxMessages): at most 4 rows per message are kept on average, oldest dropped first. */
  maxMessages: number;
  log: Logger;
  now?: () => number;
}

/** A row to write: one message's events of one batch, as the comma-joined JSON of each (a row holds a JSON array). */
interface Row {
  seq: number;
  id: string;
  events: string;
}

/**
 * Messages whose events are counted at once (the newest), for the per-message bound: a message's
 * events come within minutes of its publish, while its retries last.
 */
const COUNTED = 10_000;

/** Rows per multi-row INSERT. */
const INSERT_ROWS = 16;

/**
 * A batch of journal rows is due once RIDE_ROWS wait (or after RIDE_MS), then goes with the
 * store's next transaction (or one of its own after RIDE_MS more). Not every turn: each
 * transaction writes the last page of the table and of its index to the WAL again, however few
 * rows it adds; a few turns' rows together cost fewer pages, and are still young enough not to
 * be promoted by the garbage collector.
 */
const RIDE_ROWS = 256;
const RIDE_MS = 100;

const nothing = () => {};

/**
 * The embedded trace store: journal events as rows of `trace_events` (a row: a JSON array of the
 * events of one message appended in one batch, so a publish and its report cost one row), written
 * in the state database's group commit: they ride with the next transaction the store makes
 * anyway (the next turn's publishes), or get one of their own after RIDE_MS when none comes; never
 * one statement per call of `append`, never a transaction per turn of their own under load. Rows go by age (history.ttl) and count (4 × history.maxMessages), oldest first, by
 * seq range, as the history's do. Reads see rows still waiting for the commit too.
 *
 * The per-message bound (TRACE_LIMITS.events, besides the publish's own events) is counted in
 * memory for the newest COUNTED messages with such events (a restart counts from zero again).
 */
export class SqliteTraceStore implements TraceStore {
  readonly #commit: GroupCommit;
  readonly #o: Required<SqliteTraceOptions>;
  readonly #stmt;
  #pending: Row[] = [];
  #outcomes: { transport: string; token: string; at: number; outcome: string }[] = [];
  #queued = false;
  #nextSeq: number;
  /** Events per message id this process appended (insertion order: oldest first), for the per-message bound. */
  readonly #counts = new Map<string, { at: number; n: number; dropped: number }>();
  readonly #countOrder = new KeyQueue();
  readonly #checkpoints: { at: number; seq: number }[] = [];
  readonly #sweeper: NodeJS.Timeout;
  readonly #write = () => this.#writeAll();
  #timer: NodeJS.Timeout | undefined;
  /** The batch rides with the store's next transaction (#due ran); #force follows if none comes. */
  #riding = false;
  /**
   * The batch is due: it goes with the next transaction the store makes anyway (the next turn's
   * publishes), or in one of its own within RIDE_MS when none comes.
   */
  readonly #due = () => {
    if (!this.#queued || this.#closed || this.#riding) return;
    clearTimeout(this.#timer);
    this.#riding = true;
    this.#commit.ride(this.#write);
    this.#timer = setTimeout(this.#force, RIDE_MS);
    this.#timer.unref();
  };
  /** No transaction came within RIDE_MS (or the one it rode failed first): one of its own, checked again after RIDE_MS. */
  readonly #force = () => {
    if (!this.#queued || this.#closed) return;
    this.#commit.ride(this.#write);
    this.#commit.queue(nothing);
    this.#timer = setTimeout(this.#force, RIDE_MS);
    this.#timer.unref();
  };
  #closed = false;

  constructor(db: StateDb, commit: GroupCommit, opts: SqliteTraceOptions) {
    this.#commit = commit;
    this.#o = { now: Date.now, ...opts };
    this.#stmt = {
      insert: db.prepare('INSERT INTO trace_events (seq, id, event) VALUES (?, ?, ?)'),
      insertMany: db.prepare(`INSERT INTO trace_events (seq, id, event) VALUES ${Array.from({ length: INSERT_ROWS }, () => '(?, ?, ?)').join(', ')}`),
      byId: db.prepare<[string], { event: string }>('SELECT event FROM trace_events WHERE id = ? ORDER BY seq'),
      lastSeq: db.prepare<[], { seq: number | null }>('SELECT max(seq) AS seq FROM trace_events'),
      deleteUpTo: db.prepare('DELETE FROM trace_events WHERE seq <= ?'),
      outcome: db.prepare('INSERT INTO token_outcomes (transport, token, at, outcome) VALUES (?, ?, ?, ?) ON CONFLICT (transport, token) DO UPDATE SET at = excluded.at, outcome = excluded.outcome'),
      lastOutcome: db.prepare<[string, string], { outcome: string }>('SELECT outcome FROM token_outcomes WHERE transport = ? AND token = ?'),
      deleteOutcomes: db.prepare('DELETE FROM token_outcomes WHERE at <= ?'),
    };
    const last = this.#stmt.lastSeq.get()?.seq ?? 0;
    this.#nextSeq = last + 1;
    this.#checkpoints.push({ at: this.#o.now(), seq: last });
    this.#sweeper = setInterval(() => this.sweep(), Math.min(60_000, Math.max(1000, this.#o.ttlMs / 10)));
    this.#sweeper.unref();
  }

  append(e: JournalEvent): void {
    if (this.#closed) return;
    if (e.id !== undefined) this.#add(e.id, e);
    if (e.type === 'retired' && e.uid !== undefined) this.#add(retiredKey(e.uid), e);
    eachTokenOutcome(e, (transport, token, outcome) => this.#outcomes.push({ transport, token, at: outcome.at, outcome: JSON.stringify(outcome) }));
    if (!this.#queued && (this.#pending.length > 0 || this.#outcomes.length > 0)) {
      // Due after RIDE_MS, or at once when RIDE_ROWS are waiting.
      this.#queued = true;
      this.#timer = setTimeout(this.#due, RIDE_MS);
      this.#timer.unref();
    } else if (!this.#riding && this.#pending.length >= RIDE_ROWS) this.#due();
  }

  /** Adds event `e` to record `id`'s pending row (the one of this batch, when the last is its). */
  #add(id: string, e: JournalEvent): void {
    // A publish's own events (one published, one report per node) are bounded by themselves: the
    // hot path keeps no count. The others (retry-loop news, acks, repeats) count per message.
    if (e.type !== 'published' && e.type !== 'report') {
      if (!this.#count(id, e.at)) return;
    }
    const text = packEvent(e);
    // The events of one message in one batch (published, then its report) share a row.
    const last = this.#pending[this.#pending.length - 1];
    if (last !== undefined && last.id === id) last.events += `,${text}`;
    else this.#pending.push({ seq: this.#nextSeq++, id, events: text });
  }

  /** Counts one more event of message `id`: false (and counted as dropped) past TRACE_LIMITS.events. */
  #count(id: string, at: number): boolean {
    let c = this.#counts.get(id);
    if (c === undefined) {
      this.#counts.set(id, (c = { at, n: 0, dropped: 0 }));
      this.#countOrder.push(id);
      if (this.#counts.size > COUNTED) this.#counts.delete(this.#countOrder.shift() as string);
    }
    if (c.n >= TRACE_LIMITS.events) {
      c.dropped++;
      return false;
    }
    c.n++;
    return true;
  }

  /** Runs inside the group commit's transaction: never throws (a trace must not fail the publishes committed with it). */
  #writeAll(): void {
    this.#queued = false;
    this.#riding = false;
    clearTimeout(this.#timer);
    const rows = this.#pending;
    const outcomes = this.#outcomes;
    if (rows.length === 0 && outcomes.length === 0) return;
    this.#pending = [];
    this.#outcomes = [];
    try {
      const { insert, insertMany, outcome } = this.#stmt;
      // INSERT_ROWS rows per statement: one call into SQLite for many rows.
      let i = 0;
      if (rows.length >= INSERT_ROWS) {
        const args: (number | string)[] = new Array(3 * INSERT_ROWS);
        for (; i + INSERT_ROWS <= rows.length; i += INSERT_ROWS) {
          for (let k = 0; k < INSERT_ROWS; k++) {
            const r = rows[i + k] as Row;
            args[3 * k] = r.seq;
            args[3 * k + 1] = r.id;
            args[3 * k + 2] = `[${r.events}]`;
          }
          insertMany.run(args);
        }
      }
      for (; i < rows.length; i++) {
        const r = rows[i] as Row;
        insert.run(r.seq, r.id, `[${r.events}]`);
      }
      for (const o of outcomes) outcome.run(o.transport, o.token, o.at, o.outcome);
    } catch (err) {
      this.#o.log.warn('trace events not recorded', { events: rows.length, error: errorMessage(err) });
    }
    const now = this.#o.now();
    const lastCp = this.#checkpoints[this.#checkpoints.length - 1];
    if (rows.length > 0 && (lastCp === undefined || now - lastCp.at >= this.#o.ttlMs / 20)) {
      this.#checkpoints.push({ at: now, seq: (rows[rows.length - 1] as Row).seq });
    }
  }

  events(id: string): { events: JournalEvent[]; dropped: number } {
    const c = this.#counts.get(id);
    const stored = this.#stmt.byId.all(id).flatMap((r) => (JSON.parse(r.event) as unknown[]).map((x) => unpackEvent(x, id)));
    for (const r of this.#pending) if (r.id === id) stored.push(...(JSON.parse(`[${r.events}]`) as unknown[]).map((x) => unpackEvent(x, id)));
    const horizon = this.#o.now() - this.#o.ttlMs;
    const first = stored[0];
    if (first !== undefined && first.at <= horizon) return { events: [], dropped: 0 };
    return { events: stored, dropped: c?.dropped ?? 0 };
  }

  lastOutcome(transport: string, tokens: readonly string[]): (TokenOutcome | undefined)[] {
    return tokens.map((token) => {
      for (let i = this.#outcomes.length - 1; i >= 0; i--) {
        const o = this.#outcomes[i] as { transport: string; token: string; outcome: string };
        if (o.transport === transport && o.token === token) return JSON.parse(o.outcome) as TokenOutcome;
      }
      const row = this.#stmt.lastOutcome.get(transport, token);
      return row === undefined ? undefined : (JSON.parse(row.outcome) as TokenOutcome);
    });
  }

  /** Deletes events past history.ttl and beyond the row bound, oldest first; token outcomes past history.ttl. Runs on a timer; callable for tests. */
  sweep(): void {
    if (this.#closed) return;
    const now = this.#o.now();
    const horizon = now - this.#o.ttlMs;
    let cutoff = Math.max(0, this.#nextSeq - 1 - this.#pending.length - 4 * this.#o.maxMessages);
    while (this.#checkpoints.length > 0 && (this.#checkpoints[0] as { at: number }).at <= horizon) {
      cutoff = Math.max(cutoff, (this.#checkpoints.shift() as { seq: number }).seq);
    }
    for (let id = this.#countOrder.peek(); id !== undefined; id = this.#countOrder.peek()) {
      const c = this.#counts.get(id);
      if (c !== undefined && c.at > horizon) break;
      this.#countOrder.shift();
      this.#counts.delete(id);
    }
    const { deleteUpTo, deleteOutcomes } = this.#stmt;
    this.#commit.queue(() => {
      try {
        if (cutoff > 0) deleteUpTo.run(cutoff);
        deleteOutcomes.run(horizon);
      } catch (err) {
        this.#o.log.warn('trace sweep failed', { error: errorMessage(err) });
      }
    });
  }

  flush(): void {
    if (this.#queued) {
      if (!this.#riding) this.#commit.ride(this.#write);
      this.#commit.queue(nothing);
    }
    this.#commit.flush();
  }

  close(): void {
    if (this.#closed) return;
    clearInterval(this.#sweeper);
    this.flush();
    clearTimeout(this.#timer);
    this.#closed = true;
  }
}
