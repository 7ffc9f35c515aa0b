import type { PendingRetry } from '../store/retry-queue.js';
import type { DeliveryResult, Message, Uid } from '../types.js';

export type { DeliveryResult, PendingRetry };

/**
 * A way to reach a uid: live WebSocket sessions, APNs device tokens, an HTTP push service.
 *
 * Contract:
 * - `start()` and `stop()` are idempotent. `stop()` waits for deliveries in flight to settle;
 *   after it, `deliver()` rejects with NOTIFY_ERR_CLOSED.
 * - `canReach(uid)` looks the uid up in the transport's directory: synchronous where the
 *   backend answers at once (the embedded store), a promise where it does I/O. The dispatcher
 *   calls `deliver()` only for uids it said yes to.
 * - `deliver()` resolves with one result per target of the uid, failures included, in any
 *   order: synchronously (an array) when it has them at once, as live sessions do (no promise,
 *   no deadline on the hot path), else a promise. It rejects (or throws) only on misuse or after
 *   `stop()`. It must honour `signal`: when it aborts (the dispatcher's deadline), give up and
 *   resolve or reject promptly.
 * - `rejected` is permanent for that target; `failed` is transient and may be retried by the
 *   transport. A target gone for good is retired by the transport itself (its retry loop calls
 *   `TransportContext.retire`), never by the dispatcher.
 *
 * Adding a transport is one file implementing this interface plus its registration in
 * `transports/index.ts`.
 */
export interface Transport {
  readonly name: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  canReach(uid: Uid): boolean | Promise<boolean>;
  deliver(uid: Uid, msg: Message, signal: AbortSignal): DeliveryResult[] | Promise<DeliveryResult[]>;
  /** Optional: a short state for /healthz, e.g. `{state: 'running', sessions: 3}`. */
  health?(): TransportHealth;
  /**
   * Optional: takes up a delivery that was waiting for a retry when the previous process
   * stopped (read back from the store), and carries it to its end in the background.
   */
  resume?(pending: PendingRetry): void;
}

export interface TransportHealth {
  state: 'starting' | 'running' | 'closing' | 'closed' | 'degraded';
  [key: string]: unknown;
}

/**
 * An optional capability, probed rather than declared on Transport (centrifuge's `Closer`):
 * the transport's targets are live sessions, what the live-first route tries first.
 */
export interface LiveSessions {
  /** The session confirms receipt with acks (the resume protocol): it has a message once it acks. */
  confirmsByAck(target: string): boolean;
}

export function isLive(t: Transport): t is Transport & LiveSessions {
  return typeof (t as Partial<LiveSessions>).confirmsByAck === 'function';
}
