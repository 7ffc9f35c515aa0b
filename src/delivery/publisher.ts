import type { Dispatcher } from './dispatcher.js';
import { NotifyError } from '../errors.js';
import { BROADCAST_UID, type History } from '../store/history-sqlite.js';
import { UlidGenerator } from '../ids.js';
import type { Logger } from '../obs/log.js';
import { type Telemetry, noTelemetry } from '../obs/metrics.js';
import type { Registry } from '../store/registry.js';
import type { Transport } from '../push/transport.js';
import type { Audience, DeliveryReport, Message, MessageBody, PublishOptions, PublishReport, Route, Uid } from '../types.js';

/** Where acks of the resume protocol come from (the WebSocket transport). */
export interface AckSource {
  /** Resolves with those of `uids` whose sessions acked message `id` within `timeoutMs`. */
  waitForAcks(id: string, uids: ReadonlySet<Uid>, timeoutMs: number): Promise<Set<Uid>>;
}

export interface PublisherOptions {
  dispatcher: Dispatcher;
  registry: Registry;
  /** The message store; undefined when history is off. */
  history: History | undefined;
  acks: AckSource | undefined;
  /** The route of a message that names none. */
  route: Route;
  ackTimeoutMs: number;
  dedupeWindowMs: number;
  /** At most this many uids per publish. @default no cap */
  uidsPerMessage?: number;
  telemetry?: Telemetry;
  log: Logger;
}

const isLive = (t: Transport) => t.live === true;
const isPush = (t: Transport) => t.live !== true;

function emptyReport(): DeliveryReport {
  return { delivered: false, sent: 0, failed: 0, rejected: 0, results: [], unreached: [] };
}

/**
 * Every ingress publishes through here: the message gets its id, goes into the store, is
 * delivered along its route, and the answer comes back once the store has committed it (a
 * message answered `ok` survives a crash). A publisher's own id seen again within the dedupe
 * window is not delivered again; the repeat gets the first answer.
 */
export class Publisher {
  readonly #o: PublisherOptions;
  readonly #ids = new UlidGenerator();
  /** Publisher-given ids of this process, in arrival order, with their answers. */
  readonly #recent = new Map<string, { at: number; answer: Promise<PublishReport> }>();

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
   * (NOTIFY_ERR_INVALID_MESSAGE) when the audience is over limits.uidsPerMessage.
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
    if (opts.id !== undefined) {
      const earlier = this.#earlier(opts.id);
      if (earlier) return earlier.then((r) => ({ ...r, duplicate: true }));
    }
    const id = opts.id ?? this.#ids.next();
    const route = opts.route ?? this.#route;
    const history = this.#o.history;
    let msg: Message = opts.ttlMs === undefined ? { ...body, id } : { ...body, id, ttlMs: opts.ttlMs };
    if (history) {
      const uids = 'broadcast' in audience ? [BROADCAST_UID] : audience.uids.length === 1 ? audience.uids : [...new Set(audience.uids)];
      msg = { ...msg, seq: history.append(id, uids, msg.frame, msg.json, msg.ttlMs) };
    }
    const answer = (async (): Promise<PublishReport> => {
      // Committed before anyone has it: a session never sees a message the store could lose,
      // so the last id it saw is always one it can resume from.
      if (history) await history.committed();
      const delivery = route === 'live-first' ? await this.#liveFirst(audience, msg) : await this.#o.dispatcher.dispatch(audience, msg);
      // `ack: pending` only steers live-first; the report says what happened (paths).
      for (const e of delivery.results) delete e.ack;
      const report: PublishReport = { id, stored: history !== undefined, route, ...delivery };
      if (history && opts.id !== undefined) {
        history.recordAnswer(opts.id, JSON.stringify(report));
        await history.committed();
      }
      telemetry.reported((performance.now() - started) / 1000);
      return report;
    })();
    if (opts.id !== undefined) this.#remember(opts.id, answer);
    return answer;
  }

  /** The answer to an earlier publish with this id, from this process or (after a restart) the store. */
  #earlier(id: string): Promise<PublishReport> | undefined {
    const now = Date.now();
    const mine = this.#recent.get(id);
    if (mine && now - mine.at < this.#o.dedupeWindowMs) return mine.answer;
    const stored = this.#o.history?.findAnswer(id);
    return stored === undefined ? undefined : Promise.resolve(JSON.parse(stored) as PublishReport);
  }

  #remember(id: string, answer: Promise<PublishReport>): void {
    const now = Date.now();
    this.#recent.delete(id);
    this.#recent.set(id, { at: now, answer });
    // Entries are in arrival order: drop the expired ones from the front.
    for (const [key, e] of this.#recent) {
      if (now - e.at < this.#o.dedupeWindowMs) break;
      this.#recent.delete(key);
    }
  }

  /**
   * Live sessions first; the push transports only for uids that no live session took: a plain
   * session (original protocol) takes it when written, a resuming session when it acks within
   * ackTimeout.
   */
  async #liveFirst(audience: Audience, msg: Message): Promise<DeliveryReport & { paths: Record<Uid, 'live' | 'fallback' | 'none'> }> {
    const { dispatcher, registry, acks } = this.#o;
    const live = await dispatcher.dispatch(audience, msg, isLive);
    const delivered = new Set<Uid>();
    const awaiting = new Set<Uid>();
    for (const e of live.results) {
      if (e.status !== 'sent') continue;
      if (e.ack === 'pending') awaiting.add(e.uid);
      else delivered.add(e.uid);
    }
    for (const uid of delivered) awaiting.delete(uid);
    if (awaiting.size > 0 && acks) {
      for (const uid of await acks.waitForAcks(msg.id, awaiting, this.#ackTimeoutMs)) delivered.add(uid);
    }
    const everyone = 'broadcast' in audience ? [...registry.uids()] : [...new Set(audience.uids)];
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
