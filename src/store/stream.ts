import type { Uid } from '../types.js';

/**
 * Message streams: each uid's history, and the broadcast stream, with positions.
 *
 * A stream is named by a key: `streamOf(uid)` for a uid, `BROADCAST_STREAM` for broadcasts. The
 * keys are prefixed so that no uid can name the broadcast stream (a uid `*` is an ordinary uid).
 *
 * A position is an offset within one stream plus the stream's epoch (centrifuge's
 * StreamPosition): offsets start at 1 and grow by exactly 1 per publication; when a backend
 * loses a stream (a new database, a Redis that restarted empty or failed over to a replica that
 * was behind), the stream gets a new epoch, so an old position is never silently reused.
 *
 * Contract for every implementation:
 * - `publish` appends one message to every stream it names as one atomic step: either every
 *   stream has it, in the order of the calls, or (it rejects) none does. It resolves once the
 *   publications are durable, never before; what a caller sends to a session after that
 *   resolution is therefore always resumable. The backend also hands the publications to the
 *   other nodes that follow those streams (`follow`); the calling node delivers to its own
 *   sessions itself, so that its report can say per session what happened. A single-process
 *   backend has no other nodes.
 * - Ordering: within one stream, offsets are the publish order. Across streams, `at` orders
 *   publications: a later publish has a larger `at` in every stream.
 * - `history` reads what is stored after a position, oldest first, never more than `limit`,
 *   without expired publications; with `top`, the stream's newest position, so a reader can
 *   check contiguity (first offset == since + 1) and the epoch.
 * - `locate` finds a message id in a stream, expired publications included (a message past its
 *   own ttl still marks a position a client may resume from), until the store drops it.
 * - A failing backend rejects (NOTIFY_ERR_STORE) and never answers with a partial result.
 * - Storage: a message to several streams should be stored once, not once per stream (the
 *   embedded backend: one `bodies` row the publications point at; Redis would do the same with
 *   one body key per message, its stream entries carrying the key, expired with the message).
 *
 * Reads return `T | Promise<T>`: the embedded backend answers synchronously on the hot path; a
 * network backend (Redis: a Stream plus a meta hash per key, appended and PUBLISHed by one Lua
 * script; see the cluster issue) returns promises.
 */
export interface MessageStreams {
  publish(streams: readonly string[], msg: StreamMessage): Promise<Publication[]>;
  history(stream: string, query: HistoryQuery): HistoryPage | Promise<HistoryPage>;
  locate(stream: string, id: string): Publication | undefined | Promise<Publication | undefined>;
  /**
   * Starts or stops taking publications of `stream` from other nodes, handed to `onRemote`
   * (a no-op for a single-process backend). Idempotent.
   */
  follow(stream: string): void | Promise<void>;
  unfollow(stream: string): void | Promise<void>;
  /** Where publications from other nodes go, in offset order per stream. */
  onRemote(handler: (pub: Publication) => void): void;
  /**
   * Optional (a shared backend): `handler` is told, with the followed streams, when the
   * subscriptions are back after a lost connection; what was published meanwhile reached no
   * node, so the sessions of those streams catch up from `history`.
   */
  onResubscribed?(handler: (streams: string[]) => void): void;
  /** Publications stored in all (for status and metrics). */
  readonly size: number;
  close(): void | Promise<void>;
}

/** What is stored of a message. */
export interface StreamMessage {
  id: string;
  /** The exact text a plain session receives. */
  frame: string;
  /** The frame is a JSON object, sent as JSON (not as a string) in envelopes. */
  json: boolean;
  /** Kept this long at most (the store caps it at history.ttl). */
  ttlMs?: number;
}

/** One message in one stream. */
export interface Publication {
  stream: string;
  offset: number;
  epoch: string;
  /** Publish order across streams: later publishes have a larger `at`. */
  at: number;
  id: string;
  frame: string;
  json: boolean;
  /**
   * A shared backend's publish only: how many nodes took it from the stream's channel when it
   * was published (the publishing node included when it follows the stream). Undefined where
   * there is no fan-out (one process) and for publications read back from history.
   */
  receivers?: number;
  /**
   * A shared backend's publish only, when it reads presence with it: the stream's uid's sessions
   * on every node at that moment.
   */
  sessions?: { sid: string; node: string }[];
}

export interface StreamPosition {
  offset: number;
  epoch: string;
}

export interface HistoryQuery {
  /** Publications after this position (exclusive); from the oldest stored when absent. */
  after?: StreamPosition;
  /** Only publications published after this `at` (exclusive). */
  afterAt?: number;
  /** At most this many (the oldest first). */
  limit: number;
}

export interface HistoryPage {
  publications: Publication[];
  /** The stream's newest position (offset 0 when it has none yet). */
  top: StreamPosition;
}

const UID_PREFIX = 'u:';

/** The broadcast stream: every uid's resume includes it. No uid can name it. */
export const BROADCAST_STREAM = 'b:*';

/** The stream of one uid. */
export function streamOf(uid: Uid): string {
  return UID_PREFIX + uid;
}

/** The uid whose stream `stream` is; undefined for the broadcast stream or another key. */
export function uidOfStream(stream: string): Uid | undefined {
  return stream.startsWith(UID_PREFIX) ? stream.slice(UID_PREFIX.length) : undefined;
}
