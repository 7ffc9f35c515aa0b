import type { Config } from '../config/load.js';
import { NotifyError } from '../errors.js';
import type { Logger } from '../obs/log.js';
import { MAX_UID_BYTES } from '../message.js';
import type { Registry } from './registry.js';
import type { StateDb } from './sqlite.js';
import { TRANSPORT_TYPES } from '../push/kinds.js';
import type { Uid } from '../types.js';

export interface DeviceEntry {
  uid: Uid;
  transport: string;
  token: string;
  /** `config`: listed under `devices` in the YAML; `api`: registered at run time. */
  source: 'config' | 'api';
}

function invalid(message: string): NotifyError {
  return new NotifyError('NOTIFY_ERR_INVALID_DEVICE', message, { status: 400 });
}

/**
 * Device tokens of the configured transports (APNs, HTTP push): the ones listed in the YAML,
 * plus those registered at run time, minus those retired. Registrations and retirements are
 * written to the state database, so they survive a restart; the YAML file is never rewritten.
 * The registry's index of each transport is what transports read; this store keeps it in step.
 */
export class DeviceStore {
  readonly #db: StateDb;
  readonly #registry: Registry;
  #config: Config;
  readonly #log: Logger;
  readonly #stmt;

  constructor(opts: { db: StateDb; registry: Registry; config: Config; log: Logger }) {
    this.#db = opts.db;
    this.#registry = opts.registry;
    this.#config = opts.config;
    this.#log = opts.log;
    const db = opts.db;
    this.#stmt = {
      registrations: db.prepare<[], { transport: string; token: string; uid: string }>(
        'SELECT transport, token, uid FROM device_registrations ORDER BY created_at',
      ),
      retired: db.prepare<[], { transport: string; token: string }>('SELECT transport, token FROM retired_tokens'),
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

  /**
   * Takes a reloaded config: each configured transport's index is filled anew (YAML tokens,
   * registrations, minus retired), in one synchronous step, so no delivery sees it half-filled.
   */
  reload(config: Config): void {
    this.#config = config;
    for (const name of Object.keys(config.transports)) this.#registry.index(name).clear();
    this.load();
  }

  /** Fills each transport's registry index: YAML tokens, then run-time registrations, minus retired ones. */
  load(): void {
    const retired = new Set(this.#stmt.retired.all().map((r) => `${r.transport}\0${r.token}`));
    const usable = (transport: string, token: string) => !retired.has(`${transport}\0${token}`);
    for (const [uid, byTransport] of Object.entries(this.#config.devices)) {
      for (const [transport, tokens] of Object.entries(byTransport)) {
        const index = this.#registry.index(transport);
        for (const raw of tokens) {
          const token = this.#normalize(transport, raw);
          if (usable(transport, token)) index.add(uid, token);
        }
      }
    }
    for (const r of this.#stmt.registrations.all()) {
      if (this.#config.transports[r.transport] && usable(r.transport, r.token)) this.#registry.index(r.transport).add(r.uid, r.token);
    }
  }

  #normalize(transport: string, token: string): string {
    const type = this.#config.transports[transport]?.type;
    const normalize = type === undefined ? undefined : TRANSPORT_TYPES[type]?.normalizeTarget;
    return normalize ? normalize(token) : token;
  }

  /** Checks a (uid, transport, token) triple from the API and returns the canonical token. */
  #check(uid: unknown, transport: unknown, token: unknown): { uid: Uid; transport: string; token: string } {
    if (typeof uid !== 'string' || uid === '') throw invalid('"uid" must be a non-empty string');
    if (Buffer.byteLength(uid) > MAX_UID_BYTES) throw invalid(`"uid" is longer than ${MAX_UID_BYTES} bytes`);
    const u = uid;
    const names = Object.keys(this.#config.transports);
    if (transport === undefined && names.length === 1) transport = names[0];
    if (typeof transport !== 'string' || transport === '') {
      throw invalid(`"transport" must name a configured push transport (${names.join(', ') || 'none configured'})`);
    }
    const settings = this.#config.transports[transport];
    if (!settings) {
      const known = Object.keys(this.#config.transports).join(', ') || 'none configured';
      throw invalid(`no transport named "${transport}" takes device tokens (configured: ${known})`);
    }
    if (typeof token !== 'string' || token === '') throw invalid('"token" must be a non-empty string');
    const problem = TRANSPORT_TYPES[settings.type]?.checkTarget?.(token);
    if (problem) throw invalid(`"token": ${problem}`);
    return { uid: u, transport, token: this.#normalize(transport, token) };
  }

  /**
   * Registers a device token for a uid (moving it if another uid had it) and persists it. A
   * retired token registered again is back in service: the device re-registered it.
   */
  register(uid: unknown, transport: unknown, token: unknown): { uid: Uid; transport: string; token: string; added: boolean } {
    const d = this.#check(uid, transport, token);
    this.#db.transaction(() => {
      this.#stmt.register.run(d.transport, d.token, d.uid, Date.now());
      this.#stmt.unretire.run(d.transport, d.token);
    })();
    const added = this.#registry.index(d.transport).add(d.uid, d.token);
    this.#log.info('device registered', { uid: d.uid, transport: d.transport, target: d.token, added });
    return { ...d, added };
  }

  /** Removes a device token from a uid for good (a YAML one stays removed until registered again). */
  unregister(uid: unknown, transport: unknown, token: unknown): { uid: Uid; transport: string; token: string; removed: boolean } {
    const d = this.#check(uid, transport, token);
    const index = this.#registry.index(d.transport);
    if (index.uidOf(d.token) !== d.uid) return { ...d, removed: false };
    this.#db.transaction(() => {
      this.#stmt.unregister.run(d.transport, d.token);
      this.#stmt.retire.run(d.transport, d.token, 'removed through the API', Date.now());
    })();
    index.remove(d.token);
    this.#log.info('device unregistered', { uid: d.uid, transport: d.transport, target: d.token });
    return { ...d, removed: true };
  }

  /**
   * Takes a token out of service for good: the provider said it is gone (410 Unregistered) or
   * not for this app. Recorded once, logged once; idempotent.
   */
  retire(transport: string, token: string, reason: string): void {
    const uid = this.#registry.index(transport).remove(token);
    let fresh = false;
    this.#db.transaction(() => {
      this.#stmt.unregister.run(transport, token);
      fresh = this.#stmt.retire.run(transport, token, reason, Date.now()).changes > 0;
    })();
    if (fresh) this.#log.warn('device token retired; it will not be used again', { transport, uid, target: token, reason });
  }

  isRetired(transport: string, token: string): boolean {
    return this.#stmt.isRetired.get(transport, token) !== undefined;
  }

  /** Every usable device token, optionally of one uid and/or transport. */
  list(filter: { uid?: string; transport?: string } = {}): DeviceEntry[] {
    const fromConfig = new Set<string>();
    for (const [uid, byTransport] of Object.entries(this.#config.devices)) {
      for (const [transport, tokens] of Object.entries(byTransport)) {
        for (const t of tokens) fromConfig.add(`${uid}\0${transport}\0${this.#normalize(transport, t)}`);
      }
    }
    const out: DeviceEntry[] = [];
    for (const transport of Object.keys(this.#config.transports)) {
      if (filter.transport !== undefined && filter.transport !== transport) continue;
      const index = this.#registry.index(transport);
      const uids = filter.uid !== undefined ? (index.has(filter.uid) ? [filter.uid] : []) : [...index.uids()];
      for (const uid of uids) {
        for (const token of index.targets(uid)) {
          out.push({ uid, transport, token, source: fromConfig.has(`${uid}\0${transport}\0${token}`) ? 'config' : 'api' });
        }
      }
    }
    return out;
  }
}
