import type { Route, Uid } from '../types.js';

/**
 * The delivery journal's events: every fact about a message's fate, emitted once by the code that
 * decides it (the publisher, the dispatcher's report, the retry loop, the device service, the
 * live sessions' acks). Times are ms since the epoch.
 */
export type JournalEvent = PublishedEvent | DuplicateEvent | ReportEvent | TargetEvent | RetiredEvent | AckEvent;

/** A message got its id and (when history is on) was stored. */
export interface PublishedEvent {
  type: 'published';
  id: string;
  at: number;
  ingress: string;
  /** The uids as addressed (at most TRACE_LIMITS.uids kept), or a broadcast. */
  audience: { uids: Uid[] } | { broadcast: true };
  /** How many uids it was for (a broadcast: the uids some transport reached when it was resolved; -1 until known). */
  audienceSize: number;
  route: Route;
  stored: boolean;
  /** The publisher gave the id (`id` of the publish): a repeat within history.dedupeWindow is a duplicate. */
  publisherId?: true;
  node: string;
}

/** A publish repeated a publisher id: answered with the first publish's report, nothing sent again. */
export interface DuplicateEvent {
  type: 'duplicate';
  id: string;
  at: number;
  ingress: string;
  node: string;
}

/** One target as a report (or the retry loop) saw it. */
export interface TargetOutcome {
  uid: Uid;
  transport: string;
  target: string;
  /** The node whose session it is (websocket), or that carried the delivery. */
  node?: string;
  status: 'sent' | 'rejected' | 'failed' | 'retrying' | 'gave-up' | 'pending';
  reason?: string;
  attempts: number;
  nextAttemptAt?: number;
  /** A rejection that retires the target (the retired event tells it). */
  retires?: true;
}

/** The dispatcher's report of one publish: its first targets and the counts of all of them. */
export interface ReportEvent {
  type: 'report';
  id: string;
  at: number;
  node: string;
  /** The broadcast's audience size, known once resolved. */
  audienceSize: number;
  /** At most TRACE_LIMITS.targets of them. */
  targets: TargetOutcome[];
  /** Targets in the report in all (those beyond `targets` are only counted). */
  total: number;
  sent: number;
  failed: number;
  rejected: number;
  /** Addressed uids no transport reached (at most TRACE_LIMITS.uids kept). */
  unreached: Uid[];
}

/** A provider delivery's news from the retry loop: waiting for a retry, or its end. */
export interface TargetEvent extends TargetOutcome {
  type: 'target';
  id: string;
  at: number;
}

/** A device token taken out of service for good. */
export interface RetiredEvent {
  type: 'retired';
  /** The message whose delivery found it dead, when one did. */
  id?: string;
  at: number;
  uid?: Uid;
  transport: string;
  token: string;
  reason: string;
  node: string;
}

/** A resume-protocol session acked a message. */
export interface AckEvent {
  type: 'ack';
  id: string;
  at: number;
  uid: Uid;
  session: string;
}

/** The bounds of one message's record. */
export const TRACE_LIMITS = {
  /** Targets shown per message (the first ones reported); the rest are counted. */
  targets: 100,
  /** Uids of the audience (and unreached ones) kept. */
  uids: 100,
  /** Acks kept per message. */
  acks: 100,
  /** Events kept per message by a store (besides its published event and reports); later ones are counted, not kept. */
  events: 1000,
} as const;

/** The last outcome of a device token (for GET /v1/uids/{uid}). */
export interface TokenOutcome {
  status: TargetOutcome['status'];
  reason?: string;
  at: number;
  messageId: string;
}

/** What `GET /v1/messages/{id}` answers: one message's story, folded from its events. */
export interface MessageTrace {
  id: string;
  publishedAt: string;
  ingress: string;
  audience: { uids: Uid[] } | { broadcast: true };
  audienceSize: number;
  route: Route;
  stored: boolean;
  publisherId?: string;
  /** Publishes that repeated its publisher id. */
  duplicates?: number;
  node?: string;
  /** Totals of the report(s) (every target, also those not listed). */
  counts: { sent: number; failed: number; rejected: number };
  targets: {
    uid: Uid;
    transport: string;
    target: string;
    node?: string;
    status: TargetOutcome['status'];
    reason?: string;
    attempts: number;
    at: string;
    nextAttemptAt?: string;
  }[];
  unreached: Uid[];
  acks: { uid: Uid; session: string; at: string }[];
  truncated?: { targets?: number; acks?: number; events?: number; audience?: number };
}

/**
 * The trace store: each message's journal events, kept while the message is in history.
 *
 * Contract:
 * - `append` takes events in the order they were emitted on this node and never throws nor
 *   slows its caller: backends batch (the embedded one in the state database's group commit,
 *   Redis in one pipeline per turn of the event loop). A failing backend drops the batch and
 *   logs it; a trace is a diagnosis aid, never a reason to refuse a publish.
 * - `events(id)` answers every kept event of the message, those appended but not yet written
 *   included, in append order per node; `dropped` counts the events past TRACE_LIMITS.events.
 * - Records live for history.ttl from their publish, and at most `maxMessages` of them are kept
 *   (oldest dropped first), as the history itself.
 * - `lastOutcome(transport, token)` is the newest outcome of a device token (push transports),
 *   kept as long as the token's records.
 *
 * Implementations: trace-memory.ts (no state dir), trace-sqlite.ts (embedded), trace-redis.ts
 * (cluster: every node appends to the same record, so any node's lookup sees every node's).
 */
export interface TraceStore {
  append(event: JournalEvent): void;
  events(id: string): { events: JournalEvent[]; dropped: number } | Promise<{ events: JournalEvent[]; dropped: number }>;
  lastOutcome(transport: string, tokens: readonly string[]): (TokenOutcome | undefined)[] | Promise<(TokenOutcome | undefined)[]>;
  /** Writes what is batched now (tests, a stop). */
  flush(): void | Promise<void>;
  close(): void | Promise<void>;
}

/**
 * The record under which a uid's retired tokens are kept (beside message records): a retired
 * event with a uid is appended to it too. Starts with U+0001, which no message id may hold.
 */
export function retiredKey(uid: Uid): string {
  return `\u0001retired:${uid}`;
}

/** The records an event goes to: its message's, and for a retirement its uid's. */
export function recordsOf(e: JournalEvent): string[] {
  const out: string[] = [];
  if (e.id !== undefined) out.push(e.id);
  if (e.type === 'retired' && e.uid !== undefined) out.push(retiredKey(e.uid));
  return out;
}

/**
 * Calls `f` with each device token outcome an event implies (push transports only; websocket
 * sessions and '*' have none), allocating nothing for an event that implies none.
 */
export function eachTokenOutcome(e: JournalEvent, f: (transport: string, token: string, outcome: TokenOutcome) => void): void {
  const one = (o: TargetOutcome, id: string, at: number) => {
    if (o.transport === 'websocket' || o.target === '*') return;
    const outcome: TokenOutcome = { status: o.status, at, messageId: id };
    if (o.reason !== undefined) outcome.reason = o.reason;
    f(o.transport, o.target, outcome);
  };
  if (e.type === 'target') one(e, e.id, e.at);
  else if (e.type === 'report') for (const t of e.targets) one(t, e.id, e.at);
}

const iso = (ms: number) => new Date(ms).toISOString();
const keyOf = (o: { uid: string; transport: string; target: string }) => `${o.transport}\u0000${o.target}\u0000${o.uid}`;

/**
 * A message's story from its events; undefined when none says it was published. A report's entry
 * never replaces what the retry loop said of the same target (the loop is the later truth: a
 * report made at the deadline says "still trying" of a delivery that goes on).
 */
export function foldTrace(id: string, events: readonly JournalEvent[], dropped = 0): MessageTrace | undefined {
  const published = events.find((e): e is PublishedEvent => e.type === 'published');
  if (published === undefined) return undefined;
  const targets = new Map<string, TargetOutcome & { at: number; fromRetry: boolean }>();
  const counts = { sent: 0, failed: 0, rejected: 0 };
  let audienceSize = published.audienceSize;
  let duplicates = 0;
  const unreached: Uid[] = [];
  const acks: MessageTrace['acks'] = [];
  let moreAcks = 0;
  let moreTargets = 0;
  const put = (o: TargetOutcome, at: number, fromRetry: boolean) => {
    const k = keyOf(o);
    const had = targets.get(k);
    if (had === undefined && targets.size >= TRACE_LIMITS.targets) {
      if (!fromRetry) moreTargets++;
      return;
    }
    if (had !== undefined && had.fromRetry && !fromRetry) return;
    const { uid, transport, target, status, attempts } = o;
    const next: TargetOutcome & { at: number; fromRetry: boolean } = { uid, transport, target, status, attempts, at, fromRetry };
    const node = o.node ?? had?.node;
    if (node !== undefined) next.node = node;
    if (o.reason !== undefined) next.reason = o.reason;
    if (o.nextAttemptAt !== undefined) next.nextAttemptAt = o.nextAttemptAt;
    targets.set(k, next);
  };
  for (const e of events) {
    switch (e.type) {
      case 'duplicate':
        duplicates++;
        break;
      case 'report':
        if (e.audienceSize >= 0) audienceSize = e.audienceSize;
        counts.sent += e.sent;
        counts.failed += e.failed;
        counts.rejected += e.rejected;
        moreTargets += e.total - e.targets.length;
        for (const u of e.unreached) if (unreached.length < TRACE_LIMITS.uids) unreached.push(u);
        for (const t of e.targets) put(t, e.at, false);
        break;
      case 'target':
        put(e, e.at, true);
        break;
      case 'ack':
        if (acks.length < TRACE_LIMITS.acks) acks.push({ uid: e.uid, session: e.session, at: iso(e.at) });
        else moreAcks++;
        break;
      default:
        break;
    }
  }
  const trace: MessageTrace = {
    id,
    publishedAt: iso(published.at),
    ingress: published.ingress,
    audience: published.audience,
    audienceSize,
    route: published.route,
    stored: published.stored,
    ...(published.publisherId ? { publisherId: id } : {}),
    ...(duplicates > 0 ? { duplicates } : {}),
    node: published.node,
    counts,
    targets: [...targets.values()].map((t) => ({
      uid: t.uid,
      transport: t.transport,
      target: t.target,
      ...(t.node !== undefined ? { node: t.node } : {}),
      status: t.status,
      ...(t.reason !== undefined ? { reason: t.reason } : {}),
      attempts: t.attempts,
      at: iso(t.at),
      ...(t.nextAttemptAt !== undefined ? { nextAttemptAt: iso(t.nextAttemptAt) } : {}),
    })),
    unreached,
    acks,
  };
  const truncated: NonNullable<MessageTrace['truncated']> = {};
  if (moreTargets > 0) truncated.targets = moreTargets;
  if (moreAcks > 0) truncated.acks = moreAcks;
  if (dropped > 0) truncated.events = dropped;
  if ('uids' in published.audience && published.audienceSize > published.audience.uids.length) {
    truncated.audience = published.audienceSize - published.audience.uids.length;
  }
  if (Object.keys(truncated).length > 0) trace.truncated = truncated;
  return trace;
}

/**
 * A first-in first-out list of keys, for evicting the oldest entries of a Map. (Deleting a Map's
 * first entry again and again leaves deleted slots that every `keys().next()` walks past until
 * the Map is rehashed: O(n) per eviction.)
 */
export class KeyQueue {
  #items: string[] = [];
  #head = 0;

  get size(): number {
    return this.#items.length - this.#head;
  }

  push(key: string): void {
    this.#items.push(key);
  }

  peek(): string | undefined {
    return this.#items[this.#head];
  }

  shift(): string | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const key = this.#items[this.#head++];
    if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return key;
  }
}

/**
 * The compact text of an event for a store that keeps the message id beside it: the two events
 * every publish makes (published, report) as arrays without the id (a third of the bytes of
 * their JSON objects), the others as their JSON. `unpackEvent` reads it back.
 */
export function packEvent(e: JournalEvent): string {
  if (e.type === 'published') {
    return JSON.stringify(['p', e.at, e.ingress, e.route, e.stored ? 1 : 0, e.audienceSize, 'uids' in e.audience ? e.audience.uids : 0, e.node, e.publisherId ? 1 : 0]);
  }
  if (e.type === 'report') {
    const targets = e.targets.map((t) => [t.uid, t.transport, t.target, t.status, t.attempts, t.reason ?? null, t.node ?? null]);
    return JSON.stringify(['r', e.at, e.node, e.audienceSize, e.total, e.sent, e.failed, e.rejected, e.unreached, targets]);
  }
  return JSON.stringify(e);
}

/** An event from `packEvent`'s text (parsed), for message `id`. */
export function unpackEvent(item: unknown, id: string): JournalEvent {
  if (!Array.isArray(item)) return item as JournalEvent;
  if (item[0] === 'p') {
    const [, at, ingress, route, stored, audienceSize, uids, node, pid] = item as [string, number, string, Route, number, number, Uid[] | 0, string, number];
    return { type: 'published', id, at, ingress, route, stored: stored === 1, audienceSize, audience: uids === 0 ? { broadcast: true } : { uids }, node, ...(pid === 1 ? { publisherId: true as const } : {}) };
  }
  const [, at, node, audienceSize, total, sent, failed, rejected, unreached, targets] = item as [string, number, string, number, number, number, number, number, Uid[], [Uid, string, string, TargetOutcome['status'], number, string | null, string | null][]];
  return {
    type: 'report',
    id,
    at,
    node,
    audienceSize,
    total,
    sent,
    failed,
    rejected,
    unreached,
    targets: targets.map(([uid, transport, target, status, attempts, reason, tnode]) => ({
      uid,
      transport,
      target,
      status,
      attempts,
      ...(reason !== null ? { reason } : {}),
      ...(tnode !== null ? { node: tnode } : {}),
    })),
  };
}
