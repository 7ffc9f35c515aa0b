import { NotifyError } from '../errors.js';
import { UlidGenerator } from '../ids.js';
import { after } from '../maybe.js';
import type { Logger } from '../obs/log.js';
import { type Telemetry, noTelemetry } from '../obs/metrics.js';
import { isLive, type LiveSessions, type Transport } from '../push/transport.js';
import type { AckRelay, AckWait } from '../store/acks.js';
import type { Claim, Dedupe } from '../store/dedupe.js';
import { BROADCAST_STREAM, type MessageStreams, streamOf } from '../store/stream.js';
import type { Audience, DeliveryReport, Message, MessageBody, PublishOptions, PublishReport, Route, Uid } from '../types.js';
import type { Dispatcher } from './dispatcher.js';
import type { Journal } from './journal.js';

export interface PublisherOptions {
  dispatcher: Dispatcher;
  /** The message streams; undefined when history is off. */
  streams: MessageStreams | undefined;
  /** Publisher-id dedupe. */
  dedupe: Dedupe;
  /** Where acks of the resume protocol arrive. */
  acks: AckRelay;
  /** The route of a message that names none. */
  route: Route;
  ackTimeoutMs: number;
  dedupeWindowMs: number;
  /** At most this many uids per publish. @default no cap */
  uidsPerMessage?: number;
  telemetry?: Telemetry;
  log: Logger;
  /** Where each publish's story is told (published, duplicate, the report). */
  journal?: Journal;
}

const isPush = (t: Transport) => !isLive(t);

function emptyReport(): DeliveryReport {
  return { delivered: false, sent: 0, failed: 0, rejected: 0, results: [], unreached: [] };
}

/**
 * Every ingress publishes through here: the message gets its id, goes into the store, is
 * delivered along its route, and the answer comes back once the store has committed it (a
 * message answered `ok` survives a crash; a session never sees a message the store could lose).
 * A publisher's own id seen again within the dedupe window is not delivered again; the repeat
 * gets the first answer.
 */
export class Publisher {
  readonly #o: PublisherOptions;
  readonly #ids = new UlidGenerator();
  /** Publishes with a publisher-given id that are under way here: a repeat waits for the same answer. */
  readonly #underway = new Map<string, Promise<PublishReport>>();

  #uidsPerMessage: number;
  #route: Route;
  #ackTimeoutMs: number;

  constructor(opts: PublisherOptions) {
    this.#o = opts;
    this.#uidsPerMessage = opts.uidsPerMessage ?? Infinity;
    this.#route = opts.route;
    this.#ackTimeoutMs = opts.ackTimeoutMs;
  }

  /** Applies reloaded settings to publishes from now on. */
  configure(s: { route: Route; ackTimeoutMs: number; uidsPerMessage: number }): void {
    this.#route = s.route;
    this.#ackTimeoutMs = s.ackTimeoutMs;
    this.#uidsPerMessage = s.uidsPerMessage;
  }

  /**
   * Publishes one message; `via` names the ingress (text, http, cli) for the metrics. Rejects
   * (NOTIFY_ERR_INVALID_MESSAGE) when the audience is over limits.uidsPerMessage, and
   * (NOTIFY_ERR_STORE) when the store cannot take it: then nothing was delivered.
   */
  publish(audience: Audience, body: MessageBody, opts: PublishOptions = {}, via = 'api'): Promise<PublishReport> {
    const telemetry = this.#o.telemetry ?? noTelemetry;
    const cap = this.#uidsPerMessage;
    if ('uids' in audience && audience.uids.length > cap) {
      telemetry.refused('uidsPerMessage');
      return Promise.reject(
        new NotifyError('NOTIFY_ERR_INVALID_MESSAGE', `too many uids: ${audience.uids.length} (limits.uidsPerMessage is ${cap})`, { status: 400 }),
      );
    }
    telemetry.published(via);
    const started = performance.now();
    const pid = opts.id;
    if (pid === undefined) return this.#publish(audience, body, opts, this.#ids.next(), started, via);
    let claim: Claim | Promise<Claim>;
    try {
      claim = this.#o.dedupe.claim(pid, this.#o.dedupeWindowMs);
    } catch (err) {
      return Promise.reject(err);
    }
    const answer = after(claim, (c) => (c.first ? this.#publish(audience, body, opts, pid, started, via) : this.#earlier(pid, c.answer, opts, via)));
    return answer instanceof Promise ? answer : Promise.resolve(answer);
  }

  /** The answer to a repeated publisher id: the first publish's (awaited if it is under way here). */
  #earlier(id: string, answer: string | undefined, opts: PublishOptions, via: string): Promise<PublishReport> {
    this.#o.journal?.duplicate(id, via);
    const mine = this.#underway.get(id);
    if (mine) return mine.then((r) => Object.assign({}, r, { duplicate: true }));
    if (answer !== undefined) return Promise.resolve(Object.assign(JSON.parse(answer) as PublishReport, { duplicate: true }));
    // Claimed by a publish that has no answer yet (on another node, or cut short by a crash):
    // stored, so sessions that resume get it; nothing is sent again.
    return Promise.resolve({ id, stored: this.#o.streams !== undefined, route: opts.route ?? this.#route, ...emptyReport(), duplicate: true });
  }

  #publish(audience: Audience, body: MessageBody, opts: PublishOptions, id: string, started: number, via: string): Promise<PublishReport> {
    const route = opts.route ?? this.#route;
    const streams = this.#o.streams;
    // The id first, the body spread last: `{ ...body, id }` (a spread, then a property) sends V8
    // (Node 20) down a slow path that makes a new hidden class per message, whose objects survive
    // the young generation (test/perf/literal-spread.test.ts); so does adding `stored` to it later,
    // hence the slot from the start. The body has no `id`, `ttlMs` or `stored` of its own
    // (messageFromLine and messageFromFields build it).
    const msg: { -readonly [K in keyof Message]: Message[K] } = opts.ttlMs === undefined ? { id, stored: undefined, ...body } : { id, ttlMs: opts.ttlMs, stored: undefined, ...body };
    // Live-first: acks count from before the message goes out. In a cluster a session on another
    // node gets it from the stream publish below and may ack before this node has delivered it.
    const acks = route === 'live-first' ? this.#o.acks.expect(id, this.#ackTimeoutMs) : undefined;
    let answer: Promise<PublishReport>;
    const journal = this.#o.journal;
    if (streams === undefined) {
      journal?.published(id, via, audience, route, false, opts.id !== undefined);
      try {
        const r = this.#deliver(audience, msg, route, opts.id, started, acks);
        answer = r instanceof Promise ? r : Promise.resolve(r);
      } catch (err) {
        answer = Promise.reject(err);
      }
    } else {
      const keys = 'broadcast' in audience ? [BROADCAST_STREAM] : audience.uids.length === 1 ? [streamOf(audience.uids[0] as Uid)] : [...new Set(audience.uids)].map(streamOf);
      // Committed before anyone has it: the last id a session saw is always one it can resume from.
      answer = streams.publish(keys, msg).then((stored) => {
        msg.stored = stored;
        journal?.published(id, via, audience, route, true, opts.id !== undefined);
        return this.#deliver(audience, msg, route, opts.id, started, acks);
      });
    }
    // However it ended (a wait that ran already ended; a failed publish never waited).
    if (acks !== undefined) answer.then(() => acks.end(), () => acks.end());
    if (opts.id !== undefined) {
      const pid = opts.id;
      this.#underway.set(pid, answer);
      const forget = () => {
        if (this.#underway.get(pid) === answer) this.#underway.delete(pid);
      };
      answer.then(forget, forget);
    }
    return answer;
  }

  /** Delivers along the route and makes the report: synchronously when every transport answered at once. */
  #deliver(audience: Audience, msg: Message, route: Route, pid: string | undefined, started: number, acks: AckWait | undefined): PublishReport | Promise<PublishReport> {
    const delivery = acks !== undefined ? this.#liveFirst(audience, msg, acks) : this.#o.dispatcher.dispatch(audience, msg);
    return after(delivery, (d) => {
      this.#o.journal?.report(msg.id, audience, d);
      const report: PublishReport = { id: msg.id, stored: this.#o.streams !== undefined, route, ...d };
      const done = () => {
        (this.#o.telemetry ?? noTelemetry).reported((performance.now() - started) / 1000);
        return report;
      };
      return pid === undefined ? done() : after(this.#o.dedupe.record(pid, JSON.stringify(report)), done);
    });
  }

  /**
   * Live sessions first; the push transports only for uids that no live session took: a plain
   * session (original protocol) takes it when written, a resuming session when it acks within
   * ackTimeout (its acks count from before the message went out: `acks`, expected by #publish).
   */
  async #liveFirst(audience: Audience, msg: Message, acks: AckWait): Promise<DeliveryReport & { paths: Record<Uid, 'live' | 'fallback' | 'none'> }> {
    const { dispatcher } = this.#o;
    const everyone = [...(await dispatcher.resolve(audience))];
    const live = await dispatcher.dispatch({ uids: everyone }, msg, isLive);
    const sessions = dispatcher.transports.filter(isLive);
    const confirms = (transport: string, target: string) =>
      sessions.some((t: Transport & LiveSessions) => t.name === transport && t.confirmsByAck(target));
    const delivered = new Set<Uid>();
    const awaiting = new Set<Uid>();
    for (const e of live.results) {
      if (e.status !== 'sent') continue;
      if (confirms(e.transport, e.target)) awaiting.add(e.uid);
      else delivered.add(e.uid);
    }
    for (const uid of delivered) awaiting.delete(uid);
    if (awaiting.size > 0) {
      for (const uid of await acks.until(awaiting, this.#ackTimeoutMs)) delivered.add(uid);
    } else acks.end();
    const rest = everyone.filter((u) => !delivered.has(u));
    const push = rest.length > 0 ? await dispatcher.dispatch({ uids: rest }, msg, isPush) : emptyReport();
    const fallback = new Set(push.results.filter((e) => e.status === 'sent').map((e) => e.uid));
    const paths: Record<Uid, 'live' | 'fallback' | 'none'> = {};
    for (const uid of everyone) paths[uid] = delivered.has(uid) ? 'live' : fallback.has(uid) ? 'fallback' : 'none';
    const results = [...live.results, ...push.results];
    const reached = new Set(results.map((e) => e.uid));
    return {
      delivered: live.sent + push.sent > 0,
      sent: live.sent + push.sent,
      failed: live.failed + push.failed,
      rejected: live.rejected + push.rejected,
      results,
      unreached: 'broadcast' in audience ? [] : everyone.filter((u) => !reached.has(u)),
      paths,
    };
  }
}
