import type { Uid } from '../types.js';
import type { Presence, SessionEntry, SessionInfo } from './presence.js';
import type { TargetIndex } from './target-index.js';

/**
 * Presence for a single process: its own sessions are everyone's, so this is a view of the
 * node's session index (shared with the live hub, so a session costs one entry, not two).
 */
export class MemoryPresence implements Presence {
  readonly #sessions: TargetIndex;
  readonly #node: string;
  readonly #info = new Map<string, SessionInfo>();

  constructor(sessions: TargetIndex, node: string) {
    this.#sessions = sessions;
    this.#node = node;
  }

  add(uid: Uid, sid: string, _node?: string, info?: SessionInfo): void {
    this.#sessions.add(uid, sid);
    if (info !== undefined) this.#info.set(sid, info);
  }

  remove(_uid: Uid, sid: string): void {
    this.#sessions.remove(sid);
    this.#info.delete(sid);
  }

  touch(): void {}

  count(uid: Uid): number {
    return this.#sessions.count(uid);
  }

  has(uid: Uid): boolean {
    return this.#sessions.has(uid);
  }

  sessions(uid: Uid): SessionEntry[] {
    return this.#sessions.targets(uid).map((sid) => {
      const info = this.#info.get(sid);
      return info === undefined ? { sid, node: this.#node } : { sid, node: this.#node, info };
    });
  }

  uids(): Uid[] {
    return [...this.#sessions.uids()];
  }
}
