import { type DeadlineWindow, Deadlines } from './deadlines.js';
import { NotifyError, errorMessage } from '../errors.js';
import type { Logger } from '../obs/log.js';
import { type Telemetry, noTelemetry } from '../obs/metrics.js';
import type { Transport } from '../push/transport.js';
import type { Audience, DeliveryReport, DeliveryResult, Message, ReportEntry, Uid } from '../types.js';

export interface DispatcherOptions {
  transports: readonly Transport[];
  /** Every uid some transport can reach: the audience of a broadcast. */
  everyone: () => readonly Uid[] | Promise<readonly Uid[]>;
  /** How long one transport may take for one uid before it counts as failed. */
  deliverTimeoutMs: number;
  log: Logger;
  /** Counts each target's outcome. */
  telemetry?: Telemetry;
}

interface Call {
  uid: Uid;
  transport: Transport;
}

/** Deliveries of one message running at once, at most. */
const MAX_CALLS_IN_FLIGHT = 1024;

/** Who gets a message through which transport, and who no transport reaches. */
interface Plan {
  calls: Call[];
  unreached: Uid[];
}

/**
 * Fans one message out to every transport that can reach each addressed uid, concurrently,
 * and answers with a delivery report.
 *
 * Isolation: each (transport, uid) delivery runs on its own; one that throws, rejects or does
 * not settle by the deadline becomes a `failed` entry with target '*', and never delays or
 * breaks the others beyond `deliverTimeoutMs`. Dead targets are the transports' business
 * (they retire them); the report only shows them rejected.
 */
export class Dispatcher {
  #transports: readonly Transport[];
  readonly #everyone: DispatcherOptions['everyone'];
  #timeoutMs: number;
  #deadlines: Deadlines;
  readonly #telemetry: Telemetry;
  #state: 'running' | 'closing' | 'closed' = 'running';
  #inflight = 0;
  readonly #idleWaiters: (() => void)[] = [];

  constructor(opts: DispatcherOptions) {
    if (!Number.isInteger(opts.deliverTimeoutMs) || opts.deliverTimeoutMs <= 0) {
      throw new RangeError('deliverTimeoutMs must be a positive integer');
    }
    const names = new Set<string>();
    for (const t of opts.transports) {
      if (names.has(t.name)) throw new TypeError(`two transports are named "${t.name}"`);
      names.add(t.name);
    }
    this.#transports = opts.transports;
    this.#everyone = opts.everyone;
    this.#timeoutMs = opts.deliverTimeoutMs;
    this.#deadlines = new Deadlines(opts.deliverTimeoutMs);
    this.#telemetry = opts.telemetry ?? noTelemetry;
  }

  /** A new delivery deadline (a reload), for dispatches from now on. */
  setDeliverTimeout(ms: number): void {
    if (!Number.isInteger(ms) || ms <= 0) throw new RangeError('deliverTimeoutMs must be a positive integer');
    this.#timeoutMs = ms;
    this.#deadlines = new Deadlines(ms);
  }

  /** Replaces the transports (a reload); dispatches from now on use the new list. */
  setTransports(transports: readonly Transport[]): void {
    const names = new Set(transports.map((t) => t.name));
    if (names.size !== transports.length) throw new TypeError('two transports have the same name');
    this.#transports = transports;
  }

  /** The transports dispatches use now. */
  get transports(): readonly Transport[] {
    return this.#transports;
  }

  /** Messages being delivered now. */
  get inflight(): number {
    return this.#inflight;
  }

  /** The uids an audience names: a broadcast is every uid some transport can reach now. The one place it is decided. */
  resolve(audience: Audience): readonly Uid[] | Promise<readonly Uid[]> {
    return 'broadcast' in audience ? this.#everyone() : unique(audience.uids);
  }

  /**
   * Delivers `msg` to `audience` through every transport (or those `only` accepts). Answers
   * synchronously when every lookup and every delivery did (live sessions on this node), else
   * with a promise. Rejects only when the dispatcher is closed. For a broadcast, `unreached` is
   * empty.
   */
  dispatch(audience: Audience, msg: Message, only?: (t: Transport) => boolean): DeliveryReport | Promise<DeliveryReport> {
    if (this.#state !== 'running') {
      return Promise.reject(new NotifyError('NOTIFY_ERR_CLOSED', 'notify is shutting down', { status: 503 }));
    }
    const broadcast = 'broadcast' in audience;
    const run = (p: Plan) => this.#run(p.calls, broadcast ? undefined : p.unreached, msg);
    const go = (uids: readonly Uid[]): DeliveryReport | Promise<DeliveryReport> => {
      const p = this.#plan(uids, only);
      return p instanceof Promise ? p.then(run) : run(p);
    };
    const uids = this.resolve(audience);
    return uids instanceof Promise ? uids.then(go) : go(uids);
  }

  /**
   * Which transport reaches which uid: synchronously when every transport answers at once, else
   * once the lookups have settled.
   */
  #plan(uids: readonly Uid[], only: ((t: Transport) => boolean) | undefined): Plan | Promise<Plan> {
    const transports = only ? this.#transports.filter(only) : this.#transports;
    const answers: (boolean | Promise<boolean>)[] = [];
    let pending = false;
    for (const uid of uids) {
      for (const transport of transports) {
        const a = reachable(transport, uid);
        if (a instanceof Promise) pending = true;
        answers.push(a);
      }
    }
    const build = (known: readonly boolean[]): Plan => {
      const calls: Call[] = [];
      const unreached: Uid[] = [];
      let k = 0;
      for (const uid of uids) {
        const before = calls.length;
        for (const transport of transports) if (known[k++]) calls.push({ uid, transport });
        if (calls.length === before) unreached.push(uid);
      }
      return { calls, unreached };
    };
    return pending ? Promise.all(answers).then(build) : build(answers as boolean[]);
  }

  #run(calls: Call[], unreached: Uid[] | undefined, msg: Message): DeliveryReport | Promise<DeliveryReport> {
    if (this.#state !== 'running') {
      return Promise.reject(new NotifyError('NOTIFY_ERR_CLOSED', 'notify is shutting down', { status: 503 }));
    }
    if (calls.length === 0) return { delivered: false, sent: 0, failed: 0, rejected: 0, results: [], unreached: unreached ?? [] };
    const window = this.#deadlines.current();
    const settled: (DeliveryResult[] | undefined)[] = new Array(calls.length);
    // The fast path: transports that answer at once (live sessions) are done here, without a
    // promise or a deadline; the first one that answers with a promise makes the rest wait.
    let next = 0;
    let first: Promise<DeliveryResult[]> | undefined;
    if (calls.length <= MAX_CALLS_IN_FLIGHT) {
      while (next < calls.length) {
        const c = calls[next] as Call;
        const r = invoke(c.transport, c.uid, msg, window.signal);
        if (r instanceof Promise) {
          first = r;
          break;
        }
        settled[next++] = r;
      }
      if (first === undefined) return this.#report(calls, settled, unreached);
    }
    return this.#wait(calls, unreached, msg, window, settled, next, first);
  }

  /** The rest of #run, for deliveries that answer with a promise: `first` is call `from`'s, started. */
  #wait(
    calls: Call[],
    unreached: Uid[] | undefined,
    msg: Message,
    window: DeadlineWindow,
    settled: (DeliveryResult[] | undefined)[],
    from: number,
    first: Promise<DeliveryResult[]> | undefined,
  ): Promise<DeliveryReport> {
    this.#inflight++;
    return new Promise((resolve) => {
      let remaining = calls.length - from;
      let next = from;
      let done = false;
      const finish = () => {
        done = true;
        window.delete(waiter);
        resolve(this.#report(calls, settled, unreached));
        if (--this.#inflight === 0) for (const wake of this.#idleWaiters.splice(0)) wake();
      };
      const waiter = { expire: () => done || finish() };
      window.add(waiter);
      const settle = (i: number, results: DeliveryResult[]) => {
        if (done) return;
        settled[i] = results;
        if (--remaining === 0) finish();
        else start();
      };
      // At most MAX_CALLS_IN_FLIGHT deliveries of one message run at once (a broadcast to every
      // uid does not start one per uid and transport); each that settles starts the next.
      const start = (): void => {
        if (done || next >= calls.length) return;
        const i = next++;
        const c = calls[i] as Call;
        const r = i === from && first !== undefined ? first : invoke(c.transport, c.uid, msg, window.signal);
        if (r instanceof Promise) r.then((results) => settle(i, results));
        else settle(i, r);
      };
      for (let k = 0; k < MAX_CALLS_IN_FLIGHT && next < calls.length && !done; k++) start();
    });
  }

  /**
   * The report of a dispatch. `unreached` (undefined for a broadcast) gains the uids whose every
   * call answered with no target at all (a transport that could only tell at delivery time, as a
   * cluster's live sessions do, or whose last session just left).
   */
  #report(calls: Call[], settled: (DeliveryResult[] | undefined)[], unreached: Uid[] | undefined): DeliveryReport {
    const report: DeliveryReport = { delivered: false, sent: 0, failed: 0, rejected: 0, results: [], unreached: unreached ?? [] };
    let empty = false;
    for (let i = 0; i < calls.length; i++) {
      const { uid, transport } = calls[i] as Call;
      const results = settled[i] ?? [
        { transport: transport.name, target: '*', status: 'failed', reason: `timeout after ${this.#timeoutMs} ms` },
      ];
      if (results.length === 0) empty = true;
      for (const r of results) {
        const entry: ReportEntry = { uid, transport: r.transport, target: r.target, status: r.status };
        if (r.reason !== undefined) entry.reason = r.reason;
        if (r.id !== undefined) entry.id = r.id;
        if (r.node !== undefined) entry.node = r.node;
        report.results.push(entry);
        report[r.status]++;
        this.#telemetry.delivered(r.transport, r.status);
      }
    }
    if (empty && unreached !== undefined) {
      const reached = new Set(report.results.map((e) => e.uid));
      const none = new Set<Uid>();
      for (const c of calls) if (!reached.has(c.uid)) none.add(c.uid);
      if (none.size > 0) report.unreached = [...unreached, ...none];
    }
    report.delivered = report.sent > 0;
    return report;
  }

  /** Refuses new messages and waits until those in flight have their reports. */
  async close(): Promise<void> {
    if (this.#state === 'running') this.#state = 'closing';
    while (this.#inflight > 0) await new Promise<void>((resolve) => this.#idleWaiters.push(resolve));
    this.#state = 'closed';
  }
}

function unique(uids: readonly Uid[]): readonly Uid[] {
  return uids.length < 2 ? uids : [...new Set(uids)];
}

function reachable(transport: Transport, uid: Uid): boolean | Promise<boolean> {
  try {
    const r = transport.canReach(uid);
    return r instanceof Promise ? r.catch(() => false) : r;
  } catch {
    return false;
  }
}

/** Calls deliver() so that a throw or a rejection becomes one `failed` result, never an exception. */
function invoke(transport: Transport, uid: Uid, msg: Message, signal: AbortSignal): DeliveryResult[] | Promise<DeliveryResult[]> {
  const failed = (err: unknown): DeliveryResult[] => [
    { transport: transport.name, target: '*', status: 'failed', reason: errorMessage(err) },
  ];
  try {
    const r = transport.deliver(uid, msg, signal);
    return r instanceof Promise ? r.then(undefined, failed) : r;
  } catch (err) {
    return failed(err);
  }
}
