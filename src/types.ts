/** A user id, task id or any other name a client binds to. Opaque to notify. */
export type Uid = string;

/**
 * One message as the dispatcher sees it, built once per publish and shared by every transport.
 * Transports must treat it as immutable.
 */
export interface Message {
  /**
   * The exact text a live session receives as its frame. For a Text ingress line this is the
   * line itself; for the HTTP API and CLI it is `msg` alone when the message has nothing else,
   * else a JSON object of the fields that are set.
   */
  readonly frame: string;
  /** Alert title, for transports that show one. */
  readonly title?: string;
  /** Alert body text. */
  readonly msg?: string;
  /** Badge count for mobile transports. */
  readonly badge?: number;
  /** Sound name for mobile transports. */
  readonly sound?: string;
  /** Every other key: custom data, passed through to the app. */
  readonly data?: Readonly<Record<string, unknown>>;
}

/** Who a message is for: some uids, or every uid any transport can reach. */
export type Audience = { readonly uids: readonly Uid[] } | { readonly broadcast: true };

/** Outcome of one delivery attempt to one target. */
export interface DeliveryResult {
  /** The transport's name, e.g. 'websocket'. */
  transport: string;
  /** The session id, device token or registration id; '*' when the transport failed as a whole. */
  target: string;
  /**
   * `sent`: the target has it (written to a live socket, accepted by a provider).
   * `rejected`: permanent for this target; retrying cannot help.
   * `failed`: transient (timeout, slow consumer, provider 5xx).
   */
  status: 'sent' | 'rejected' | 'failed';
  /** Why it was not sent: 'slow consumer', '410 Unregistered', 'timeout after 5000 ms'. */
  reason?: string;
  /** The provider's id for this delivery, when it gives one (APNs `apns-id`, JPush `msg_id`). */
  id?: string;
  /** The target is gone for good: the dispatcher unregisters it. */
  prune?: boolean;
}

/** A DeliveryResult within a report, tagged with the uid it was for. */
export interface ReportEntry extends Omit<DeliveryResult, 'prune'> {
  uid: Uid;
}

/** What the dispatcher answers for one message. */
export interface DeliveryReport {
  /** True when at least one target has the message. */
  delivered: boolean;
  sent: number;
  failed: number;
  rejected: number;
  /** One entry per target tried, in transport order. */
  results: ReportEntry[];
  /** Addressed uids that no transport could reach (empty for a broadcast). */
  unreached: Uid[];
}
