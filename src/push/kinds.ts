import type { Spec } from '../config/schema.js';
import type { Logger } from '../obs/log.js';
import type { TransportTargets } from './targets.js';
import type { Telemetry } from '../obs/metrics.js';
import type { RetryQueue } from '../store/retry-queue.js';
import type { RetrySubject, RetryTicket } from './retry.js';
import { apnsType } from './apns/transport.js';
import { fcmType } from './fcm/transport.js';
import { httpType } from './http/transport.js';
import { jpushType } from './jpush/transport.js';
import { webpushType } from './webpush/transport.js';
import type { Transport } from './transport.js';

/** What a configured transport (one entry under `transports:`) is built from. */
export interface TransportContext {
  /** The entry's name, e.g. `apns` or `apns-enterprise`. */
  name: string;
  /** The node this runs in (`HOST-PID`): the owner of the retries it holds. */
  node: string;
  /** This transport's device tokens (its view of the device directory). */
  targets: TransportTargets;
  log: Logger;
  /**
   * Takes a target out of service for good (token gone, wrong app): unregisters it and records it
   * so that no later process uses it. The retry loop (`runWithRetries`) calls it for a rejection
   * with `prune`; nothing else does.
   */
  retire(target: string, reason: string, messageId?: string): void;
  /** Where deliveries waiting for a retry are kept across restarts (undefined: in memory only). */
  retries: RetryQueue | undefined;
  /** Counters (retries) for /metrics. */
  telemetry: Telemetry;
  /**
   * The ticket of one delivery that may wait for a retry: it holds the delivery in `retries`,
   * leased to this node (cluster.retryLease past its due time); `key` takes up one held before.
   */
  ticket(subject: RetrySubject, key?: string): RetryTicket;
  /**
   * How long stop() lets provider requests on the wire finish (shutdown.graceMs) before they are
   * cut off and handed over through the retry queue. @default 5000
   */
  stopGraceMs?: number;
}

/** A kind of transport that can be configured under `transports.NAME` with `type: KIND`. */
export interface TransportType {
  /** The settings besides `type`, validated at load time. */
  settings: Spec;
  /** Checks one device token or registration id given for this transport; a problem or undefined. */
  checkTarget?(target: string): string | undefined;
  /** The canonical spelling of a valid target (e.g. lowercase hex), so one device is one target. */
  normalizeTarget?(target: string): string;
  create(settings: Record<string, unknown>, ctx: TransportContext): Transport;
  /**
   * The section of keys `settings` checks, when it has durations: `config check --print` writes
   * them back with units ("24h"), not as milliseconds (which would read as seconds).
   */
  printSpec?: Spec;
}

/**
 * Every configurable transport type, by `type:` value. Adding one is a file under transports/
 * plus a line here; the daemon and the config loader need no other change.
 */
export const TRANSPORT_TYPES: Readonly<Record<string, TransportType>> = {
  apns: apnsType,
  fcm: fcmType,
  http: httpType,
  jpush: jpushType,
  webpush: webpushType,
};
