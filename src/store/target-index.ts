import type { Uid } from '../types.js';

/**
 * A two-way index between uids and one transport's targets (session ids, device tokens).
 *
 * Contract: a target belongs to at most one uid; adding it again under another uid moves it.
 * `remove` is by target, so closing an old session never unregisters a newer one of the same uid.
 * Reads are synchronous and never do I/O, so `Transport.canReach` can call them on the hot path.
 */
export interface TargetIndex {
  /** Binds `target` to `uid`; true when the pair is new. */
  add(uid: Uid, target: string): boolean;
  /** Unbinds `target`; returns the uid it had, if any. Empty uids disappear. */
  remove(target: string): Uid | undefined;
  uidOf(target: string): Uid | undefined;
  /** A snapshot of the uid's targets, safe to iterate while targets come and go. */
  targets(uid: Uid): string[];
  has(uid: Uid): boolean;
  /** How many targets the uid has. */
  count(uid: Uid): number;
  uids(): IterableIterator<Uid>;
  /** Drops every target (before the index is filled anew). */
  clear(): void;
  readonly targetCount: number;
  readonly uidCount: number;
}

/** The push targets of each transport, one TargetIndex per transport name (the device directory's in-memory side). */
export interface Registry {
  /** The index of one transport, created on first use. */
  index(transport: string): TargetIndex;
  /** The uid's targets, by transport name; transports with none are left out. */
  where(uid: Uid): Record<string, string[]>;
  /** Every uid that at least one transport has a target for. */
  uids(): Set<Uid>;
}

/**
 * In-memory TargetIndex. A uid with a single target (the common case: one tab) stores the
 * target string itself instead of a Set, which keeps 10,000 sessions well under a kilobyte each.
 */
export class MemoryTargetIndex implements TargetIndex {
  readonly #byUid = new Map<Uid, string | Set<string>>();
  readonly #byTarget = new Map<string, Uid>();

  add(uid: Uid, target: string): boolean {
    const prev = this.#byTarget.get(target);
    if (prev === uid) return false;
    if (prev !== undefined) this.remove(target);
    this.#byTarget.set(target, uid);
    const cur = this.#byUid.get(uid);
    if (cur === undefined) this.#byUid.set(uid, target);
    else if (typeof cur === 'string') this.#byUid.set(uid, new Set([cur, target]));
    else cur.add(target);
    return true;
  }

  remove(target: string): Uid | undefined {
    const uid = this.#byTarget.get(target);
    if (uid === undefined) return undefined;
    this.#byTarget.delete(target);
    const cur = this.#byUid.get(uid);
    if (typeof cur === 'string') {
      this.#byUid.delete(uid);
    } else if (cur !== undefined) {
      cur.delete(target);
      if (cur.size === 1) this.#byUid.set(uid, cur.values().next().value as string);
    }
    return uid;
  }

  uidOf(target: string): Uid | undefined {
    return this.#byTarget.get(target);
  }

  targets(uid: Uid): string[] {
    const cur = this.#byUid.get(uid);
    if (cur === undefined) return [];
    return typeof cur === 'string' ? [cur] : [...cur];
  }

  has(uid: Uid): boolean {
    return this.#byUid.has(uid);
  }

  count(uid: Uid): number {
    const cur = this.#byUid.get(uid);
    return cur === undefined ? 0 : typeof cur === 'string' ? 1 : cur.size;
  }

  uids(): IterableIterator<Uid> {
    return this.#byUid.keys();
  }

  clear(): void {
    this.#byUid.clear();
    this.#byTarget.clear();
  }

  get targetCount(): number {
    return this.#byTarget.size;
  }

  get uidCount(): number {
    return this.#byUid.size;
  }
}

/** In-memory Registry: one MemoryTargetIndex per transport name. */
export class MemoryRegistry implements Registry {
  readonly #indexes = new Map<string, TargetIndex>();

  index(transport: string): TargetIndex {
    let idx = this.#indexes.get(transport);
    if (idx === undefined) {
      idx = new MemoryTargetIndex();
      this.#indexes.set(transport, idx);
    }
    return idx;
  }

  where(uid: Uid): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const [name, idx] of this.#indexes) {
      if (idx.has(uid)) out[name] = idx.targets(uid);
    }
    return out;
  }

  uids(): Set<Uid> {
    const all = new Set<Uid>();
    for (const idx of this.#indexes.values()) for (const uid of idx.uids()) all.add(uid);
    return all;
  }
}
