import type { DeliveryResult, Message, Uid } from '../types.js';

export type { DeliveryResult };

/**
 * A way to reach a uid: live WebSocket sessions, APNs device tokens, an HTTP push service.
 *
 * Contract:
 * - `start()` and `stop()` are idempotent. `stop()` waits for deliveries in flight to settle;
 *   after it, `deliver()` rejects with NOTIFY_ERR_CLOSED.
 * - `canReach(uid)` is a synchronous registry lookup with no I/O. The dispatcher calls
 *   `deliver()` only for uids it said yes to.
 * - `deliver()` resolves with one result per target of the uid, failures included, in any
 *   order. It rejects only on misuse or after `stop()`. It must honour `signal`: when it aborts
 *   (the dispatcher's deadline), give up and resolve or reject promptly.
 * - `rejected` is permanent for that target (set `prune` when the target is gone for good, and
 *   the dispatcher unregisters it); `failed` is transient and may be retried by the transport.
 *
 * Adding a transport is one file implementing this interface plus its registration in
 * `transports/index.ts`.
 */
export interface Transport {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  canReach(uid: Uid): boolean;
  deliver(uid: Uid, msg: Message, signal: AbortSignal): Promise<DeliveryResult[]>;
  /** Optional: a short state for /healthz, e.g. `{state: 'running', sessions: 3}`. */
  health?(): TransportHealth;
  /** Optional: the addresses this transport listens on, by name (the WebSocket port). */
  addresses?(): Record<string, string>;
}

export interface TransportHealth {
  state: 'starting' | 'running' | 'closing' | 'closed' | 'degraded';
  [key: string]: unknown;
}
