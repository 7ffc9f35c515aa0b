import type { Uid } from '../types.js';
import type { DeviceDirectory, RetiredEntry } from './devices.js';
import type { StateDb } from './sqlite.js';
import { MemoryRegistry, type Registry } from './target-index.js';

/**
 * The embedded device directory: registrations and retirements in the state database, and each
 * transport's usable tokens (YAML seed plus registrations, minus retired) indexed in memory, so
 * reads are synchronous. This process owns the database (the state directory's lock), so the
 * index is the truth between restarts.
 */
export class SqliteDevices implements DeviceDirectory {
  readonly #db: StateDb;
  readonly #index: MemoryRegistry = new MemoryRegistry();
  readonly #stmt;


  constructor(db: StateDb) {
    this.#db = db;
    this.#stmt = {
      registrations: db.prepare<[], { transport: string; token: string; uid: string }>(
        'SELECT transport, token, uid FROM device_registrations ORDER BY created_at',
      ),
      retiredAll: db.prepare<[], { transport: string; token: string; reason: string; retired_at: number }>(
        'SELECT transport, token, reason, retired_at FROM retired_tokens ORDER BY retired_at',
      ),
      isRetired: db.prepare<[string, string], { reason: string }>('SELECT reason FROM retired_tokens WHERE transport = ? AND token = ?'),
      register: db.prepare(
        'INSERT INTO device_registrations (transport, token, uid, created_at) VALUES (?, ?, ?, ?) ' +
          'ON CONFLICT (transport, token) DO UPDATE SET uid = excluded.uid, created_at = excluded.created_at',
      ),
      unregister: db.prepare('DELETE FROM device_registrations WHERE transport = ? AND token = ?'),
      unretire: db.prepare('DELETE FROM retired_tokens WHERE transport = ? AND token = ?'),
      retire: db.prepare('INSERT OR IGNORE INTO retired_tokens (transport, token, reason, retired_at) VALUES (?, ?, ?, ?)'),
    };
  }

  /** Each transport's in-memory index (what the embedded transports read on the hot path). */
  get registry(): Registry {
    return this.#index;
  }

  targets(transport: string, uid: Uid): string[] {
    return this.#index.index(transport).targets(uid);
  }

  has(transport: string, uid: Uid): boolean {
    return this.#index.index(transport).has(uid);
  }

  list(transport: string, uid?: Uid): { uid: Uid; token: string }[] {
    const index = this.#index.index(transport);
    const uids = uid !== undefined ? (index.has(uid) ? [uid] : []) : [...index.uids()];
    return uids.flatMap((u) => index.targets(u).map((token) => ({ uid: u, token })));
  }

  count(transport: string): { devices: number; uids: number } {
    const index = this.#index.index(transport);
    return { devices: index.targetCount, uids: index.uidCount };
  }

  register(transport: string, uid: Uid, token: string): { added: boolean } {
    this.#db.transaction(() => {
      this.#stmt.register.run(transport, token, uid, Date.now());
      this.#stmt.unretire.run(transport, token);
    })();
    return { added: this.#index.index(transport).add(uid, token) };
  }

  remove(transport: string, uid: Uid, token: string): boolean {
    const index = this.#index.index(transport);
    if (index.uidOf(token) !== uid) return false;
    this.#db.transaction(() => {
      this.#stmt.unregister.run(transport, token);
      this.#stmt.retire.run(transport, token, 'removed through the API', Date.now());
    })();
    index.remove(token);
    return true;
  }

  retire(transport: string, token: string, reason: string): { uid: Uid | undefined; fresh: boolean } {
    const uid = this.#index.index(transport).remove(token);
    let fresh = false;
    this.#db.transaction(() => {
      this.#stmt.unregister.run(transport, token);
      fresh = this.#stmt.retire.run(transport, token, reason, Date.now()).changes > 0;
    })();
    return { uid, fresh };
  }

  isRetired(transport: string, token: string): boolean {
    return this.#stmt.isRetired.get(transport, token) !== undefined;
  }

  retired(transport?: string): RetiredEntry[] {
    return this.#stmt.retiredAll
      .all()
      .filter((r) => transport === undefined || r.transport === transport)
      .map((r) => ({ transport: r.transport, token: r.token, reason: r.reason, at: r.retired_at }));
  }

  /**
   * Fills each seeded transport's index anew, in one synchronous step (no delivery sees it half
   * filled): the YAML tokens, then run-time registrations, minus retired ones.
   */
  seed(tokens: ReadonlyMap<string, ReadonlyMap<Uid, readonly string[]>>): void {

    const retired = new Set(this.#stmt.retiredAll.all().map((r) => `${r.transport}\0${r.token}`));
    const usable = (transport: string, token: string) => !retired.has(`${transport}\0${token}`);
    for (const transport of tokens.keys()) this.#index.index(transport).clear();
    for (const [transport, byUid] of tokens) {
      const index = this.#index.index(transport);
      for (const [uid, list] of byUid) for (const token of list) if (usable(transport, token)) index.add(uid, token);
    }
    for (const r of this.#stmt.registrations.all()) {
      if (tokens.has(r.transport) && usable(r.transport, r.token)) this.#index.index(r.transport).add(r.uid, r.token);
    }
  }

}
