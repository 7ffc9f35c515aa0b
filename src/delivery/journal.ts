import type { FailureRing } from '../obs/failures.js';
import { type Logger, shortToken } from '../obs/log.js';
import { RefusalLog } from '../obs/refusals.js';
import { STILL_TRYING } from '../push/retry.js';
import type { JournalEvent, TargetOutcome, TraceStore } from '../store/trace.js';
import { TRACE_LIMITS } from '../store/trace.js';
import type { Audience, DeliveryReport, Route, Uid } from '../types.js';

/**
 * The delivery journal: every fact about a message's fate, told once by the code that decides it
 * (the publisher: published, duplicate and the dispatcher's report; the retry loop: waiting for a
 * retry and how a provider delivery ended; the device service: a token retired; the live
 * sessions: acks). Three consumers: the trace store (GET /v1/messages/{id}), the log (final
 * failures at info, one line per publish at debug) and the ring of the latest final failures
 * (GET /v1/failures, the console).
 */
export class Journal {
  readonly #trace: TraceStore | undefined;
  readonly #log: Logger;
  readonly node: string;
  /** Rejections (a provider's configuration errors among them) come in floods when a setting is wrong: one line per reason per second. */
  readonly #rejections: RefusalLog;

  /** The latest final failures of provider deliveries, newest first (GET /v1/failures). */
  readonly failures: FailureRing;

  constructor(opts: { trace: TraceStore | undefined; log: Logger; node: string; failures: FailureRing }) {
    this.#trace = opts.trace;
    this.failures = opts.failures;
    this.#log = opts.log;
    this.node = opts.node;
    this.#rejections = new RefusalLog(opts.log);
  }

  /** Where events are kept (undefined: logged only). */
  get trace(): TraceStore | undefined {
    return this.#trace;
  }

  emit(e: JournalEvent): void {
    try {
      this.#trace?.append(e);
    } catch (err) {
      this.#log.warn('trace event not recorded', { type: e.type, error: err instanceof Error ? err.message : String(err) });
    }
    this.#logEvent(e);
  }

  published(id: string, ingress: string, audience: Audience, route: Route, stored: boolean, publisherId: boolean): void {
    const uids = 'uids' in audience ? audience.uids : undefined;
    const e: JournalEvent = {
      type: 'published',
      id,
      at: Date.now(),
      ingress,
      audience: uids === undefined ? { broadcast: true } : { uids: uids.length > TRACE_LIMITS.uids ? uids.slice(0, TRACE_LIMITS.uids) : (uids as Uid[]) },
      audienceSize: uids === undefined ? -1 : uids.length < 2 ? uids.length : new Set(uids).size,
      route,
      stored,
      node: this.node,
    };
    if (publisherId) e.publisherId = true;
    this.emit(e);
  }

  duplicate(id: string, ingress: string): void {
    this.emit({ type: 'duplicate', id, at: Date.now(), ingress, node: this.node });
  }

  /** The report of a publish: its first targets, and the counts of all. */
  report(id: string, audience: Audience, d: DeliveryReport): void {
    const n = Math.min(d.results.length, TRACE_LIMITS.targets);
    const targets: TargetOutcome[] = new Array(n);
    for (let i = 0; i < n; i++) {
      const r = d.results[i] as DeliveryReport['results'][number];
      // Caught under way by the deadline: it goes on, and the retry loop tells how it ends.
      const pending = r.status === 'failed' && r.reason !== undefined && r.reason.startsWith(STILL_TRYING);
      const t: TargetOutcome = { uid: r.uid, transport: r.transport, target: r.target, status: pending ? 'pending' : r.status, attempts: pending ? 0 : 1 };
      if (r.reason !== undefined) t.reason = r.reason;
      if (r.node !== undefined) t.node = r.node;
      targets[i] = t;
    }
    let audienceSize: number;
    if ('uids' in audience) audienceSize = audience.uids.length < 2 ? audience.uids.length : new Set(audience.uids).size;
    else {
      const uids = new Set<Uid>();
      for (const r of d.results) uids.add(r.uid);
      audienceSize = uids.size;
    }
    this.emit({
      type: 'report',
      id,
      at: Date.now(),
      node: this.node,
      audienceSize,
      targets,
      total: d.results.length,
      sent: d.sent,
      failed: d.failed,
      rejected: d.rejected,
      unreached: d.unreached.length > TRACE_LIMITS.uids ? d.unreached.slice(0, TRACE_LIMITS.uids) : d.unreached,
    });
  }

  /** A provider delivery's news (the retry loop). */
  target(id: string, o: TargetOutcome): void {
    const at = Date.now();
    this.emit({ type: 'target', id, at, ...o, node: o.node ?? this.node });
    if (o.status === 'gave-up' || o.status === 'rejected') {
      this.failures.record({
        at: new Date(at).toISOString(),
        id,
        uid: o.uid,
        transport: o.transport,
        target: o.target,
        status: o.status === 'rejected' ? 'rejected' : 'failed',
        ...(o.reason !== undefined ? { reason: o.reason } : {}),
        attempts: o.attempts,
      });
    }
  }

  retired(transport: string, token: string, reason: string, uid: Uid | undefined, id: string | undefined): void {
    this.emit({ type: 'retired', at: Date.now(), transport, token, reason, node: this.node, ...(uid !== undefined ? { uid } : {}), ...(id !== undefined ? { id } : {}) });
  }

  ack(id: string, uid: Uid, session: string): void {
    this.emit({ type: 'ack', id, at: Date.now(), uid, session });
  }

  /** The log lines of the events: final failures at info (warn), each publish's outcome at debug. */
  #logEvent(e: JournalEvent): void {
    switch (e.type) {
      case 'target':
        if (e.status === 'gave-up') {
          this.#log.warn('delivery failed for good', { id: e.id, uid: e.uid, transport: e.transport, target: shortToken(e.target), reason: e.reason, attempts: e.attempts });
        } else if (e.status === 'rejected' && e.retires !== true) {
          this.#rejections.refused(`${e.transport}:${e.reason ?? ''}`, 'delivery rejected', { id: e.id, uid: e.uid, transport: e.transport, target: shortToken(e.target), reason: e.reason, attempts: e.attempts });
        }
        break;
      case 'retired':
        this.#log.warn('device token retired; it will not be used again', {
          transport: e.transport,
          uid: e.uid,
          target: shortToken(e.token),
          reason: e.reason,
          ...(e.id !== undefined ? { id: e.id } : {}),
        });
        break;
      case 'report':
        if (this.#log.enabled('debug')) this.#log.debug('published', { id: e.id, audienceSize: e.audienceSize, targets: e.total, sent: e.sent, failed: e.failed, rejected: e.rejected, unreached: e.unreached.length });
        break;
      case 'published':
        break;
      default:
        break;
    }
  }
}
