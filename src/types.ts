import type { Publication } from './store/stream.js';

/** A user id, task id or any other name a client binds to. Opaque to notify. */
export type Uid = string;

/** What an ingress makes of a publish, before it has an id. */
export interface MessageBody {
  /**
   * The exact text a live session receives as its frame. For a Text ingress line this is the
   * line itself; for the HTTP API and CLI it is `msg` alone when the message has nothing else,
   * else a JSON object of the fields that are set.
   */
  readonly frame: string;
  /** The frame is a JSON object (so envelopes carry it as JSON, not as a string). */
  readonly json: boolean;
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

/**
 * One message as the dispatcher sees it, built once per publish and shared by every transport.
 * Transports must treat it as immutable.
 */
export interface Message extends MessageBody {
  /** Sortable unique id (a ULID), or the publisher's own. */
  readonly id: string;
  /** How long it is kept for sessions that resume (at most history.ttl). */
  readonly ttlMs?: number;
  /** Where the store put it: one publication per stream it went to; undefined when history is off. */
  readonly stored?: readonly Publication[];
}

/** How a message travels: every transport at once, or live sessions first. */
export type Route = 'all' | 'live-first';

/** What a publisher may say besides the message itself. */
export interface PublishOptions {
  /** The publisher's own id: a repeat within the dedupe window gets the first answer. */
  id?: string;
  route?: Route;
  ttlMs?: number;
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
  /** In a cluster: the node whose session this is (websocket targets). */
  node?: string;
}

/** A DeliveryResult within a report, tagged with the uid it was for. */
export interface ReportEntry extends DeliveryResult {
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

/** The answer to a publish: the delivery report, with the message's id and fate. */
export interface PublishReport extends DeliveryReport {
  /** The message id. */
  id: string;
  /** Kept in the history for sessions that resume. */
  stored: boolean;
  route: Route;
  /** With live-first: per uid, what delivered it: a live session, the push fallback, or nothing. */
  paths?: Record<Uid, 'live' | 'fallback' | 'none'>;
  /** This answer is the one given to an earlier publish with the same id; nothing was sent again. */
  duplicate?: true;
}
