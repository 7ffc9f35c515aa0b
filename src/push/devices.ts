import type { Config } from '../config/load.js';
import { NotifyError, errorMessage } from '../errors.js';
import { type Logger, shortToken } from '../obs/log.js';
import { checkUid } from '../message.js';
import type { Journal } from '../delivery/journal.js';
import type { DeviceDirectory } from '../store/devices.js';
import type { Uid } from '../types.js';
import { TRANSPORT_TYPES } from './kinds.js';

export interface DeviceEntry {
  uid: Uid;
  transport: string;
  token: string;
  /** `config`: listed under `devices` in the YAML; `api`: registered at run time. */
  source: 'config' | 'api';
}

/** A token taken out of service (the provider said it is gone), as the API lists it. */
export interface RetiredDevice {
  transport: string;
  token: string;
  /** What the provider answered: '410 Unregistered', 'removed through the API'. */
  reason: string;
  /** When, as an ISO 8601 time. */
  retiredAt: string;
}

const isPlainObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

function invalid(message: string): NotifyError {
  return new NotifyError('NOTIFY_ERR_INVALID_DEVICE', message, { status: 400 });
}

/**
 * Device tokens as users see them (the HTTP API, the CLI, the YAML): checks each token against
 * its transport's kind, spells it canonically, seeds the directory with the YAML ones, and logs
 * registrations and retirements. The state itself lives in the device directory (store/).
 */
export class DeviceService {
  readonly #dir: DeviceDirectory;
  #config: Config;
  readonly #log: Logger;
  readonly #journal: Journal | undefined;

  constructor(opts: { directory: DeviceDirectory; config: Config; log: Logger; journal?: Journal }) {
    this.#dir = opts.directory;
    this.#config = opts.config;
    this.#log = opts.log;
    this.#journal = opts.journal;
  }

  /** Seeds the directory with the YAML tokens of `config` (at start and on reload). */
  async load(config: Config = this.#config): Promise<void> {
    this.#config = config;
    await this.#dir.seed(this.#seedOf(config));
  }

  #seedOf(config: Config): Map<string, Map<Uid, string[]>> {
    const seed = new Map<string, Map<Uid, string[]>>();
    for (const name of Object.keys(config.transports)) seed.set(name, new Map());
    for (const [uid, byTransport] of Object.entries(config.devices)) {
      for (const [transport, tokens] of Object.entries(byTransport)) {
        const byUid = seed.get(transport);
        if (byUid === undefined) continue;
        byUid.set(uid, tokens.map((t) => this.#normalize(transport, t)));
      }
    }
    return seed;
  }

  #normalize(transport: string, token: string): string {
    const type = this.#config.transports[transport]?.type;
    const normalize = type === undefined ? undefined : TRANSPORT_TYPES[type]?.normalizeTarget;
    return normalize ? normalize(token) : token;
  }

  /** Checks a (uid, transport, token) triple from the API and returns the canonical token. */
  #check(uid: unknown, transport: unknown, token: unknown): { uid: Uid; transport: string; token: string } {
    try {
      checkUid(uid);
    } catch (err) {
      throw invalid(errorMessage(err));
    }
    const names = Object.keys(this.#config.transports);
    if (transport === undefined && names.length === 1) transport = names[0];
    if (typeof transport !== 'string' || transport === '') {
      throw invalid(`"transport" must name a configured push transport (${names.join(', ') || 'none configured'})`);
    }
    const settings = this.#config.transports[transport];
    if (!settings) throw invalid(`no transport named "${transport}" takes device tokens (configured: ${names.join(', ') || 'none configured'})`);
    // A token given as a JSON object (a Web Push subscription) is its JSON text; the transport's kind checks it.
    if (isPlainObject(token)) token = JSON.stringify(token);
    if (typeof token !== 'string' || token === '') throw invalid('"token" must be a non-empty string (or, for a webpush transport, a subscription object)');
    const problem = TRANSPORT_TYPES[settings.type]?.checkTarget?.(token);
    if (problem) throw invalid(`"token": ${problem}`);
    return { uid: uid as Uid, transport, token: this.#normalize(transport, token) };
  }

  /**
   * Registers a device token for a uid (moving it if another uid had it) and persists it. A
   * retired token registered again is back in service: the device re-registered it.
   */
  async register(uid: unknown, transport: unknown, token: unknown): Promise<{ uid: Uid; transport: string; token: string; added: boolean }> {
    const d = this.#check(uid, transport, token);
    const { added } = await this.#dir.register(d.transport, d.uid, d.token);
    this.#log.info('device registered', { uid: d.uid, transport: d.transport, target: shortToken(d.token), added });
    return Object.assign({}, d, { added });
  }

  /** Removes a device token from a uid for good (a YAML one stays removed until registered again). */
  async unregister(uid: unknown, transport: unknown, token: unknown): Promise<{ uid: Uid; transport: string; token: string; removed: boolean }> {
    const d = this.#check(uid, transport, token);
    const removed = await this.#dir.remove(d.transport, d.uid, d.token);
    if (removed) this.#log.info('device unregistered', { uid: d.uid, transport: d.transport, target: shortToken(d.token) });
    return Object.assign({}, d, { removed });
  }

  /**
   * Takes a token out of service for good: the provider said it is gone (410 Unregistered) or
   * not for this app. The one place a target is retired; told to the journal (and so logged) once,
   * with the message whose delivery found it dead.
   */
  async retire(transport: string, token: string, reason: string, messageId?: string): Promise<void> {
    try {
      const { uid, fresh } = await this.#dir.retire(transport, token, reason);
      if (fresh) {
        if (this.#journal) this.#journal.retired(transport, token, reason, uid, messageId);
        else this.#log.warn('device token retired; it will not be used again', { transport, uid, target: shortToken(token), reason, id: messageId });
      }
    } catch (err) {
      this.#log.error('recording a retired device token failed', { transport, target: shortToken(token), error: errorMessage(err) });
    }
  }

  isRetired(transport: string, token: string): boolean | Promise<boolean> {
    return this.#dir.isRetired(transport, token);
  }

  /** Retired tokens, oldest first, optionally of one transport: what was taken out of service, why and when. */
  async retired(filter: { transport?: string } = {}): Promise<RetiredDevice[]> {
    const entries = await this.#dir.retired(filter.transport);
    return entries.map((e) => ({ transport: e.transport, token: e.token, reason: e.reason, retiredAt: new Date(e.at).toISOString() }));
  }

  /** Every usable device token, optionally of one uid and/or transport. */
  async list(filter: { uid?: string; transport?: string } = {}): Promise<DeviceEntry[]> {
    if (filter.uid !== undefined) {
      try {
        checkUid(filter.uid);
      } catch (err) {
        throw invalid(errorMessage(err));
      }
    }
    const names = Object.keys(this.#config.transports);
    if (filter.transport !== undefined && !names.includes(filter.transport)) {
      throw invalid(`no transport named "${filter.transport}" takes device tokens (configured: ${names.join(', ') || 'none configured'})`);
    }
    const seed = this.#seedOf(this.#config);
    const out: DeviceEntry[] = [];
    for (const transport of Object.keys(this.#config.transports)) {
      if (filter.transport !== undefined && filter.transport !== transport) continue;
      for (const { uid, token } of await this.#dir.list(transport, filter.uid)) {
        const source = seed.get(transport)?.get(uid)?.includes(token) ? 'config' : 'api';
        out.push({ uid, transport, token, source });
      }
    }
    return out;
  }
}
