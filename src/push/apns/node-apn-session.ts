import type { ClientHttp2Session, ClientHttp2Stream, IncomingHttpHeaders } from 'node:http2';
import type * as Apn from '@parse/node-apn';
import type { ApnResult } from './payload.js';

/**
 * The one place that reaches into @parse/node-apn's private state. Written against 8.1.0 (pinned
 * in package.json; test/push/apns/node-apn-session.test.ts checks the version and each
 * assumption below), because 8.1.0 has no supported way to do these:
 *
 * - `provider.client` (lib/provider.js): the Client behind a Provider. Not in index.d.ts.
 * - `client.session` (lib/client.js): its current HTTP/2 session. Needed to read the server's
 *   SETTINGS_MAX_CONCURRENT_STREAMS (`session.remoteSettings`), to tell a new connection from
 *   the one a request already succeeded on (APNs allows one stream until then), and to see
 *   response headers: node-apn reads `headers['Retry-After']`, but Node lowercases HTTP/2 header
 *   names, so it never sees one, and it deletes what it has before returning a result.
 * - `client.connect()` (lib/client.js): opens the session before the first request, so its
 *   headers can be watched from the first answer on (send() would connect and send in one go).
 * - `client.write(built, token, 'device', 'post')` (lib/client.js) and `notification.headers()` /
 *   `notification.compile()` (lib/notification): what `Provider#send(note, token)` does for each
 *   token (lib/provider.js), without building the headers again and wrapping one request in
 *   `Promise.allSettled` and two arrays every time; the notification is built once per message.
 *
 * Provider options reach `http2.connect` (documented for `rejectUnauthorized`), but none of its
 * options hands back the session; Node 20 has no http2 diagnostics channels (Node 22.16+/23.11+
 * have `http2.client.stream.*`, which would replace the request wrapper below).
 */
export const NODE_APN_VERSION = '8.1.0';

/** A notification as `Provider#send` hands it to the client (lib/provider.js): its APNs headers and its JSON. */
export interface BuiltNotification {
  headers: Record<string, unknown>;
  body: string;
}

/** The parts of node-apn 8.1.0's Client used here (lib/client.js). */
interface ApnClient {
  session?: ClientHttp2Session | null;
  connect(): Promise<void>;
  write(notification: BuiltNotification, subDirectory: string, type: 'device', method: 'post'): Promise<ApnResult>;
}

function clientOf(provider: Apn.Provider): ApnClient {
  const client = (provider as unknown as { client?: Partial<ApnClient> }).client;
  if (!client || typeof client.connect !== 'function' || typeof client.write !== 'function') {
    throw new Error(`@parse/node-apn: Provider#client.connect() or write() is missing; notify's APNs transport is written against ${NODE_APN_VERSION} (src/push/apns/node-apn-session.ts)`);
  }
  return client as ApnClient;
}

/** `note` built for the wire once, as `Provider#send` builds it for each call (lib/provider.js). */
export function buildNotification(note: Apn.Notification): BuiltNotification {
  const n = note as unknown as { headers(): Record<string, unknown>; compile(): string };
  return { headers: n.headers(), body: n.compile() };
}

/**
 * A closed request's listeners, dropped. A stream's JS object outlives the young generation (the
 * native handle behind it keeps it through scavenges until a full collection), and through its
 * listeners it kept node-apn's request closures and the promise chain that awaited the answer:
 * dropping them once nothing more can be emitted lets those go young. About 5% less memory
 * promoted per request (bench: the daemon's peak RSS 155 -> 147 MB for 10,000 tokens).
 */
function forget(this: ClientHttp2Stream): void {
  // node-apn's handlers that hold the request's promise (lib/client.js request()); not 'readable'
  // or all at once, which would schedule a tick per stream.
  for (const event of FORGOTTEN) this.removeAllListeners(event);
}
const FORGOTTEN = ['end', 'error', 'aborted', 'frameError', 'data', 'response', 'close'] as const;

/** Called with the headers of each response on a watched session, and the request's `:path`. */
export type ResponseListener = (path: string, headers: IncomingHttpHeaders) => void;

/** A Provider's HTTP/2 session, opened on demand, whose responses' headers are watched. */
export class ApnSession {
  readonly #client: ApnClient;
  readonly #onResponse: ResponseListener;
  #watched: ClientHttp2Session | undefined;

  constructor(provider: Apn.Provider, onResponse: ResponseListener) {
    this.#client = clientOf(provider);
    this.#onResponse = onResponse;
  }

  /**
   * Sends `note` to one device token as `provider.send(note, token)` would, and resolves with the
   * one result that send() puts in `sent` or `failed` (node-apn rejects with the failed result).
   */
  send(note: BuiltNotification, token: string): Promise<ApnResult> {
    return this.#client.write(note, token, 'device', 'post').then(undefined, (err: unknown): ApnResult => {
      if (typeof err === 'object' && err !== null && ('error' in err || 'status' in err)) return err as ApnResult;
      return { device: token, error: err instanceof Error ? err : new Error(String(err)) };
    });
  }

  /** The session requests go on now, if it is open. */
  current(): ClientHttp2Session | undefined {
    const s = this.#client.session;
    return s && !s.closed && !s.destroyed ? s : undefined;
  }

  /**
   * The session the next request goes on, opened (and watched) first if need be; `fresh` when it
   * was not the one watched before (a new connection).
   */
  async open(): Promise<{ session: ClientHttp2Session | undefined; fresh: boolean }> {
    if (!this.current()) await this.#client.connect();
    const s = this.current();
    if (!s || s === this.#watched) return { session: s, fresh: false };
    this.#watched = s;
    const request = s.request.bind(s);
    const onResponse = this.#onResponse;
    // One listener for every stream of the session (a stream emits 'response' once), reading the
    // path from the stream: no closure per request.
    function watch(this: ClientHttp2Stream, headers: IncomingHttpHeaders): void {
      onResponse(String(this.sentHeaders[':path'] ?? ''), headers);
    }
    s.request = ((headers: Record<string, unknown>, options?: unknown) => {
      const stream = (request as (h: unknown, o?: unknown) => ClientHttp2Stream)(headers, options);
      stream.on('response', watch);
      stream.on('close', forget);
      return stream;
    }) as typeof s.request;
    return { session: s, fresh: true };
  }

  /** The current session when it is the watched one (the common case: no need to open()). */
  ready(): ClientHttp2Session | undefined {
    const s = this.current();
    return s !== undefined && s === this.#watched ? s : undefined;
  }

  /**
   * Tears `s` down if it is still the current session (a stalled connection: TCP accepted, but
   * no TLS or no answers); the next request opens a new one.
   */
  abandon(s: ClientHttp2Session | undefined): void {
    if (s !== undefined && s === this.current()) s.destroy();
  }

  /** Whether `s` is the watched session (requests go on it, and its answers are seen). */
  isWatched(s: ClientHttp2Session | undefined): boolean {
    return s !== undefined && s === this.#watched;
  }
}
