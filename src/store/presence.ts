import type { Uid } from '../types.js';

/** What a session is, for diagnostics (GET /v1/uids/{uid}). */
export interface SessionInfo {
  /** The peer's address (the client's, behind a proxy with ws.behindProxy). */
  address: string;
  /** When it connected (ms since the epoch). */
  connectedAt: number;
  /** `original`: bound by its first frame (the Workerman protocol); `resume`: bound with `{"type":"bind"}`. */
  protocol: 'original' | 'resume';
  /** A resume-protocol bind that named the last id it had (`since`): it caught up on what it missed. */
  resuming: boolean;
}

/** One live session somewhere in the service. */
export interface SessionEntry {
  sid: string;
  /** The node (process) that holds the session's socket. */
  node: string;
  /** What it is, when the node that added it said (`add`'s `info`). */
  info?: SessionInfo;
}

/**
 * Presence: which uids have live sessions, and on which node.
 *
 * Contract:
 * - `add` and `remove` are idempotent and keyed by session id, so closing an old session never
 *   removes a newer one of the same uid. A session belongs to one uid.
 * - Entries are kept alive by `touch` (the node's heartbeat); a backend shared by several nodes
 *   drops the sessions of a node that stopped touching them within its ttl (a node killed with
 *   SIGKILL leaves no ghosts for longer than that). A single-process backend's entries are the
 *   process's own sessions and need no expiry.
 * - Reads (`count`, `sessions`, `has`, `uids`) are a snapshot; they may be stale by the time the
 *   caller acts, so delivery must tolerate a session that just left.
 * - A failing backend rejects; callers refuse the bind (or report the publish failed), never
 *   guess.
 *
 * The embedded backend answers synchronously from the node's own session index. A Redis one
 * keeps a ZSET per uid (member `node:sid`, score = expiry) pruned when read, plus a node
 * heartbeat key (the cluster issue).
 */
export interface Presence {
  /** `info` is kept with the session (and dropped with it) for `sessions` to show. */
  add(uid: Uid, sid: string, node: string, info?: SessionInfo): void | Promise<void>;
  remove(uid: Uid, sid: string): void | Promise<void>;
  /** The heartbeat: the node's sessions are still there. */
  touch(node: string, sids: readonly string[]): void | Promise<void>;
  count(uid: Uid): number | Promise<number>;
  has(uid: Uid): boolean | Promise<boolean>;
  sessions(uid: Uid): SessionEntry[] | Promise<SessionEntry[]>;
  /** Every uid with at least one session. */
  uids(): Uid[] | Promise<Uid[]>;
}
