import type { Uid } from '../types.js';

/** A retired target: the provider said it is gone for good (or it was removed through the API). */
export interface RetiredEntry {
  transport: string;
  token: string;
  reason: string;
  /** ms since the epoch. */
  at: number;
}

/**
 * The device directory: the push targets (device tokens, registration ids) of each uid per
 * transport, registered at run time or listed in the YAML, minus those retired.
 *
 * Contract:
 * - A token belongs to at most one uid per transport; registering it for another uid moves it.
 * - `retire` takes a token out of service for good, across restarts and nodes: it is removed
 *   from its uid and never returned by `targets` again until registered anew (a device that
 *   registers a token again brings it back). It answers whether this call retired it (the first
 *   of concurrent retirements), so it is logged once.
 * - `seed` sets the YAML-listed tokens (a reload replaces them); seeded tokens that are retired
 *   stay out.
 * - Reads may be stale by a moment on a shared backend; writes are durable when they resolve.
 * - A failing backend rejects; the caller reports the error (HTTP 503), never a false success.
 *
 * The embedded backend keeps an index in memory (sync reads on the hot path) over SQLite; a
 * Redis one keeps a HASH per uid and transport plus a retired set per transport.
 */
export interface DeviceDirectory {
  targets(transport: string, uid: Uid): string[] | Promise<string[]>;
  has(transport: string, uid: Uid): boolean | Promise<boolean>;
  /** Every (uid, token) of one transport, or of one uid there. */
  list(transport: string, uid?: Uid): { uid: Uid; token: string }[] | Promise<{ uid: Uid; token: string }[]>;
  count(transport: string): { devices: number; uids: number } | Promise<{ devices: number; uids: number }>;
  register(transport: string, uid: Uid, token: string): { added: boolean } | Promise<{ added: boolean }>;
  /** Removes `token` from `uid` (and keeps a YAML one removed). False when `uid` did not have it. */
  remove(transport: string, uid: Uid, token: string): boolean | Promise<boolean>;
  retire(transport: string, token: string, reason: string): { uid: Uid | undefined; fresh: boolean } | Promise<{ uid: Uid | undefined; fresh: boolean }>;
  isRetired(transport: string, token: string): boolean | Promise<boolean>;
  retired(transport?: string): RetiredEntry[] | Promise<RetiredEntry[]>;
  /** The YAML-listed tokens, by transport then uid (replacing the previous seed). */
  seed(tokens: ReadonlyMap<string, ReadonlyMap<Uid, readonly string[]>>): void | Promise<void>;
}
