import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { NotifyError } from '../errors.js';
import { answerClientError, closeServer, listen } from '../net/listen.js';
import { type TlsMaterial, type WebServer, createWebServer, useCertificate } from '../net/tls.js';
import type { Journal } from '../delivery/journal.js';
import type { Logger } from '../obs/log.js';
import type { RefusalLog } from '../obs/refusals.js';
import { MAX_UID_BYTES, uidProblem } from '../message.js';
import type { TargetIndex } from '../store/target-index.js';
import type { DeliveryResult, Message, Uid } from '../types.js';
import { AUTH_CLOSE, type TokenCheck, checkBindToken } from '../auth.js';
import type { AckRelay } from '../store/acks.js';
import type { Presence, SessionInfo } from '../store/presence.js';
import { BROADCAST_STREAM, type HistoryPage, type HistoryQuery, type MessageStreams, type Publication, type StreamPosition, streamOf, uidOfStream } from '../store/stream.js';
import { after } from '../maybe.js';
import { type Telemetry, noTelemetry } from '../obs/metrics.js';
import { Admission, type ConnectionLimits, NO_LIMITS } from './admission.js';
import { DEMO_PAGE } from './assets/demo-page.js';
import { notifyClientJs } from './assets/notify-client.js';
import { NOTIFY_SW_JS } from './assets/notify-sw.js';
import type { LiveSessions, Transport, TransportHealth } from '../push/transport.js';
import type { PagePush } from '../push/webpush/page.js';
import { errorMessage } from '../errors.js';
import { sendTextFrame, textFrame } from './frame.js';

export interface WebSocketTransportOptions {
  /** "host:port" to listen on. @default '127.0.0.1:1234' */
  listen: string;
  /** Largest frame a client may send; a larger one closes that session with 1009. */
  maxPayloadBytes: number;
  /** Unsent bytes a session may hold; past it, the session is a slow consumer and is dropped. */
  maxBufferedBytes: number;
  /** Ping interval; a session that missed the previous pong is terminated. */
  heartbeatIntervalMs: number;
  /** This node's sessions by uid (the live hub's index). */
  index: TargetIndex;
  /** Which uids have sessions on which node (on one node: a view of `index`). */
  presence: Presence;
  /** This node's name, for presence. */
  node: string;
  /** Where acks of the resume protocol go. */
  acks: AckRelay;
  log: Logger;
  /** How long stop() waits for close handshakes before it terminates the rest. @default 2000 */
  closeTimeoutMs?: number;
  /** The message streams, for sessions that resume; without them, a resuming session gets live messages only. */
  streams?: MessageStreams | undefined;
  /** Publications replayed per stream at most (history.size). @default 100 */
  replayLimit?: number;
  /** `token`: a bind must carry a token from `notify token` signed with `secret`. @default none */
  auth?: { mode: 'none' | 'token'; secret: string | null };
  /** An unbound connection is closed (4408) after this long. @default 10000 */
  bindTimeoutMs?: number;
  /** Loopback peers are a reverse proxy: their client is the last X-Forwarded-For address. @default false */
  behindProxy?: boolean;
  /** Connection and session caps. @default no caps */
  limits?: Partial<ConnectionLimits>;
  /** Serve wss:// and https:// with this certificate (ws.tls); `setTls` replaces it. @default plain ws:// */
  tls?: TlsMaterial;
  telemetry?: Telemetry;
  /** Web Push registration for pages (the push-* frames) and the VAPID key the client script is served with. */
  push?: PagePush;
  /**
   * One of several nodes sharing `presence` and `streams` (cluster.redis): a uid's sessions may
   * be on other nodes, which get its messages through the streams (this node follows the stream
   * of each uid it has sessions of, and the broadcast stream); reports name each session's node.
   * @default false
   */
  cluster?: boolean;
  /** Where acks are told (the delivery journal). */
  journal?: Journal;
  /** Where refused binds and connections are logged (rate-limited). */
  refusals?: RefusalLog;
}

/** The first letter of the id of a session bound with the resume protocol (a plain one's is `s`). */
export const RESUME_SID = 'r';

/** push-subscribe and push-unsubscribe frames one session may send in all; a page needs one or two. */
export const PUSH_FRAMES_PER_SESSION = 16;


/** Close codes this transport sends (RFC 6455 section 7.4.1). */
export const CLOSE = {
  goingAway: 1001,
  unsupportedData: 1003,
  policyViolation: 1008,
} as const;

/**
 * A connection. Fields live on the socket object itself, and the event handlers are shared by
 * all sessions (ws calls them with `this` = the socket), so a session costs no closures.
 */
class Session extends WebSocket {
  sid = '';
  uid: Uid | undefined = undefined;
  alive = true;
  /** Bound with the resume protocol: gets `{"id","data"}` envelopes and may ack them. */
  envelope = false;
  /** Its bind asked for revision 2 of the resume protocol (RESUME_V2). */
  v2 = false;
  /** Resume protocol: the offsets of the newest publications it has, in its uid's stream and in the broadcast stream. */
  uPos = 0;
  bPos = 0;
  /** The epoch those offsets are of. */
  epoch = '';
  /** While its replay is being read: live publications held back, merged in by offset after it. */
  held: Message[] | undefined = undefined;
  /** Bytes of the frames in `held`: unsent data, counted against maxBufferedBytes with bufferedAmount. */
  heldBytes = 0;
  /** The peer's address, for the per-IP limits. */
  ip = '';
  /** When it connected (ms), for ws.bindTimeout. */
  born = 0;
  /** A token given in the URL, used when it binds. */
  urlToken: string | undefined = undefined;
  /** Its bind's token is being checked (a JWT): frames meanwhile are ignored. */
  binding = false;
  /** A resume-protocol bind that named the last id it had. */
  resumed = false;
  /** push-* frames received (bounded by PUSH_FRAMES_PER_SESSION); whether one is being handled. */
  pushFrames = 0;
  pushBusy = false;
}

/**
 * A message as one envelope of the resume protocol: `{"id":"…","data":…}`; a replayed one, to a
 * session bound with `"v":2`, ends with `"replay":true`.
 */
export function envelopeOf(id: string, frame: string, json: boolean, replay = false): string {
  return `{"id":${JSON.stringify(id)},"data":${json ? frame : JSON.stringify(frame)}${replay ? ',"replay":true' : ''}}`;
}

/**
 * The revision of the resume protocol a bind may ask for with `"v":2`: the bind is answered with
 * BOUND_FRAME once accepted (before any replay or gap), and replayed envelopes carry
 * `"replay":true`. A bind without it gets the frames of revision 1, unchanged.
 */
export const RESUME_V2 = 2;

/** The answer to an accepted bind of revision 2. */
export const BOUND_FRAME = '{"type":"bound"}';

/** Where a message sits in the stream a session of `uid` follows it by (undefined: not stored). */
function positionFor(msg: Message, uid: Uid): Publication | undefined {
  const stored = msg.stored;
  if (stored === undefined) return undefined;
  if (stored.length === 1) return stored[0];
  const key = streamOf(uid);
  return stored.find((p) => p.stream === key || p.stream === BROADCAST_STREAM);
}

/** Publications per history read of a replay. */
export const REPLAY_PAGE = 100;

/** Where one stream's replay starts and how far it has been read. */
interface Cursor {
  stream: string;
  /** The first read's position (`after` or `afterAt`); later reads go on after `last`. */
  start: Omit<HistoryQuery, 'limit'>;
  /** Publications this replay may still read from the stream (history.size). */
  left: number;
  /** Read, not yet sent. */
  buf: Publication[];
  last: Publication | undefined;
  /** The stream's newest position at the latest read. */
  top: StreamPosition;
  /** The offset of the first publication read (undefined: none yet; null: the stream had none). */
  first: number | null | undefined;
  done: boolean;
}

/**
 * What a resuming session is owed, read in pages as it is sent (a uid's stream and the broadcast
 * stream, merged in publish order): a read takes at most REPLAY_PAGE publications of a stream,
 * and the next one is taken only once those have been handed out, so a replay holds one page
 * per stream however long the history is.
 */
class ReplayReader {
  readonly u: Cursor;
  readonly b: Cursor;
  readonly #streams: MessageStreams;
  readonly #budgetBytes: number;

  constructor(streams: MessageStreams, uid: Uid, start: { u: Omit<HistoryQuery, 'limit'>; b: Omit<HistoryQuery, 'limit'> }, limit: number, budgetBytes: number) {
    this.#streams = streams;
    this.#budgetBytes = budgetBytes;
    const cursor = (stream: string, from: Omit<HistoryQuery, 'limit'>): Cursor => ({
      stream, start: from, left: limit, buf: [], last: undefined, top: { offset: 0, epoch: '' }, first: undefined, done: false,
    });
    this.u = cursor(streamOf(uid), start.u);
    this.b = cursor(BROADCAST_STREAM, start.b);
  }

  /**
   * The next publications to send, in publish order: at most REPLAY_PAGE of them and about
   * budgetBytes of frames (at least one); none when the replay is over.
   */
  next(): Publication[] | Promise<Publication[]> {
    let reads: void | Promise<void> = undefined;
    for (const c of [this.u, this.b]) {
      if (c.done || c.buf.length > 0) continue;
      reads = after(reads, () => after(this.#streams.history(c.stream, this.#query(c)), (page) => this.#got(c, page)));
    }
    return after(reads, () => this.#take());
  }

  #query(c: Cursor): HistoryQuery {
    const limit = Math.min(REPLAY_PAGE, c.left);
    // `at` grows with every publish, so it marks a position in any epoch.
    return c.last === undefined ? { limit, ...c.start } : { afterAt: c.last.at, limit };
  }

  #got(c: Cursor, page: HistoryPage): void {
    const asked = Math.min(REPLAY_PAGE, c.left);
    const n = page.publications.length;
    c.buf = page.publications;
    c.top = page.top;
    c.left -= n;
    if (c.first === undefined) c.first = page.publications[0]?.offset ?? null;
    if (n > 0) c.last = page.publications[n - 1];
    if (n < asked || c.left <= 0) c.done = true;
  }

  #take(): Publication[] {
    const out: Publication[] = [];
    let bytes = 0;
    while (out.length < REPLAY_PAGE && (out.length === 0 || bytes < this.#budgetBytes)) {
      let pick: Cursor | undefined;
      for (const c of [this.u, this.b]) {
        if (c.buf.length === 0) {
          // Its next page may hold an earlier publication: read it before going on.
          if (!c.done) return out;
          continue;
        }
        if (pick === undefined || (c.buf[0] as Publication).at < (pick.buf[0] as Publication).at) pick = c;
      }
      if (pick === undefined) break;
      const p = pick.buf.shift() as Publication;
      out.push(p);
      bytes += p.frame.length;
    }
    return out;
  }
}

/** One message's frames, built when first needed (WebSocketTransport#frames). */
interface MessageFrames {
  msg: Message;
  plain: Buffer | undefined;
  envelope: string | undefined;
  envelopeFrame: Buffer | undefined;
}

/**
 * Live WebSocket sessions (ws, noServer mode).
 *
 * - Plain sessions (the original protocol) bind a uid with their first text frame or `?uid=`
 *   and receive every push for it as one text frame carrying the message's frame unchanged.
 * - Resuming sessions bind with `{"type":"bind","uid","since"}` and receive `{"id","data"}`
 *   envelopes: the stored ones after `since`, then live ones; they may ack. With `"v":2` the
 *   accepted bind is answered `{"type":"bound"}` and replayed envelopes are marked (RESUME_V2).
 * - With auth `token`, a bind needs a token for the uid (URL or bind frame): `nt1.` or a JWT
 *   (checkBindToken); refusals close with the 44xx codes of AUTH_CLOSE. Unbound connections are closed after bindTimeoutMs.
 * - Limits: connections in all and per address, new connections per second per address (at
 *   the upgrade, HTTP 503/429), sessions per uid (4429).
 * A uid may have any number of sessions; each is its own target, keyed by session id. The same
 * port serves the demo page at `GET /` and the browser client at `/notify-client.js`.
 */
export class WebSocketTransport implements Transport, LiveSessions {
  readonly name = 'websocket';
  readonly #opts: Required<Omit<WebSocketTransportOptions, 'streams' | 'limits' | 'push' | 'tls' | 'journal' | 'refusals'>> &
    Pick<WebSocketTransportOptions, 'streams' | 'push' | 'tls' | 'journal' | 'refusals'>;
  readonly #admission: Admission;
  #sweeper: NodeJS.Timeout | undefined;
  readonly #server: WebServer;
  readonly #wss: WebSocketServer;
  /** Every connection, bound or not, by session id. */
  readonly #conns = new Map<string, Session>();
  #nextSid = 0;
  /**
   * Session ids are unique across nodes and restarts, not only in this process: a per-process
   * random prefix, then a counter (presence on a shared backend keys sessions by id). A session
   * that binds with the resume protocol has its first letter changed to RESUME_SID (see
   * confirmsByAck).
   */
  readonly #sidPrefix = `s${randomBytes(3).toString('hex')}.`;
  #state: 'new' | 'running' | 'closing' | 'closed' = 'new';
  #address = '';
  #heartbeat: NodeJS.Timeout | undefined;
  #stopping: Promise<void> | undefined;
  /** Cluster: the uids whose stream this node follows (true) or is subscribing to (the promise). */
  readonly #following = new Map<Uid, true | Promise<void>>();
  /**
   * The frames of the message being delivered, built once each (when first needed) and sent to
   * every session of it: the message's own frame (plain sessions) and its envelope (resuming ones).
   */
  #framesOf: MessageFrames | undefined;
  readonly #onMessage: (this: WebSocket, data: RawData, isBinary: boolean) => void;
  readonly #onClose: (this: WebSocket) => void;
  readonly #onError: (this: WebSocket, err: Error) => void;

  constructor(opts: WebSocketTransportOptions) {
    for (const key of ['maxPayloadBytes', 'maxBufferedBytes', 'heartbeatIntervalMs'] as const) {
      if (!Number.isInteger(opts[key]) || opts[key] <= 0) throw new RangeError(`${key} must be a positive integer`);
    }
    this.#opts = { closeTimeoutMs: 2000, auth: { mode: 'none', secret: null }, bindTimeoutMs: 10_000, behindProxy: false, telemetry: noTelemetry, replayLimit: 100, ...opts, cluster: opts.cluster ?? false };
    if (this.#opts.auth.mode === 'token' && !this.#opts.auth.secret) throw new TypeError('auth: token needs a secret');
    this.#admission = new Admission({
      limits: Object.assign({}, NO_LIMITS, opts.limits),
      behindProxy: opts.behindProxy ?? false,
      telemetry: this.#opts.telemetry,
      ...(opts.refusals ? { refusals: { log: opts.refusals, listener: 'ws' } } : {}),
    });
    this.#wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: opts.maxPayloadBytes,
      WebSocket: Session,
    });
    // A client that trickles its request headers (slowloris) is cut off: 10 s for the headers
    // (the upgrade request included), checked every 2 s.
    // Counted from accept, not from a completed handshake: a connection that never sends a byte
    // holds a descriptor too (limits.connections, connectionsPerIp, silentTimeout). With TLS as
    // well (a stalled TLS handshake, which must end within limits.silentTimeout, holds one).
    this.#server = createWebServer(
      { headersTimeout: 10_000, requestTimeout: 30_000, connectionsCheckingInterval: 2000 },
      opts.tls,
      this.#admission.limits.silentTimeout,
      (req, res) => this.#serveHttp(req, res),
      {
        accepted: (socket: Socket) => this.#state === 'running' && this.#admission.accept(socket, { tls: opts.tls !== undefined }),
        secured: (socket: Socket) => this.#admission.secured(socket),
      },
    );
    this.#server.on('request', (req: IncomingMessage) => this.#admission.takenOver(req.socket));
    this.#server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#upgrade(req, socket, head));
    this.#server.on('clientError', (err: NodeJS.ErrnoException, socket) => answerClientError(err, socket, 'text'));

    if (this.#opts.cluster && this.#opts.streams !== undefined) {
      this.#opts.streams.onRemote((pub) => this.#remote(pub));
      this.#opts.streams.onResubscribed?.(() => this.#catchUp());
    }
    const transport = this;
    this.#onMessage = function (data, isBinary) {
      const s = this as Session;
      s.alive = true;
      if (s.uid === undefined) {
        if (!s.binding) transport.#bindByFrame(s, data, isBinary);
      }
      else if (s.envelope && !isBinary) transport.#control(s, data.toString());
      // Frames after a plain bind are ignored, as in the original protocol.
    };
    this.#onClose = function () {
      const s = this as Session;
      transport.#conns.delete(s.sid);
      if (s.uid !== undefined) transport.#unbind(s);
    };
    this.#onError = function (err) {
      // ws has already sent the matching close code (1002, 1007, 1009); this session ends, nothing else does.
      const s = this as Session;
      if ((err as { code?: string }).code === 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') transport.#opts.telemetry.refused('frameSize');
      transport.#opts.log.debug('websocket session error', { sid: s.sid, uid: s.uid, error: err.message });
    };
  }

  async start(): Promise<void> {
    if (this.#state !== 'new') return;
    this.#state = 'running';
    // Cluster: broadcasts published on other nodes reach this node's sessions.
    if (this.#opts.cluster && this.#opts.streams !== undefined) await this.#opts.streams.follow(BROADCAST_STREAM);
    this.#address = await listen(this.#server, this.#opts.listen, 'ws.listen');
    this.#heartbeat = setInterval(() => this.#beat(), this.#opts.heartbeatIntervalMs);
    this.#sweeper = setInterval(() => this.#sweep(), Math.max(10, Math.min(1000, this.#opts.bindTimeoutMs / 2)));
  }

  /** What one of this node's sessions is (GET /v1/uids/{uid}); undefined for an unknown one. */
  describe(sid: string): SessionInfo | undefined {
    const s = this.#conns.get(sid);
    if (s === undefined) return undefined;
    return { address: s.ip, connectedAt: s.born, protocol: s.envelope ? 'resume' : 'original', resuming: s.resumed };
  }

  /** The bound address, "host:port" ('' before start). */
  get address(): string {
    return this.#address;
  }

  /** A new certificate (ws.tls reread at a reload) for connections from now on; open sessions keep theirs. */
  setTls(tls: TlsMaterial): void {
    useCertificate(this.#server, tls);
  }

  /**
   * One node: whether the uid has a session here. A cluster: yes, and `deliver` tells (the
   * publish read the uid's sessions on every node with it; a uid with none gets no entry, so the
   * report counts it unreached), which saves a round trip to presence per message.
   */
  canReach(uid: Uid): boolean | Promise<boolean> {
    if (this.#opts.cluster) return true;
    return this.#opts.presence.has(uid);
  }

  /**
   * Whether a session has a message only once it acks it (the resume protocol). A session of this
   * node is asked; one of another node (cluster: a report names it with its node) says so by its
   * id, which presence carries: resume-protocol sessions' ids start with RESUME_SID. So live-first
   * waits for the ack of a resuming page on any node, and takes a plain page's write as delivered.
   */
  confirmsByAck(target: string): boolean {
    const s = this.#conns.get(target);
    if (s !== undefined) return s.envelope;
    return this.#opts.cluster && target.startsWith(RESUME_SID);
  }

  /**
   * Writes to every session of the uid on this node at once (synchronously). In a cluster, the
   * uid's sessions on other nodes are reported too: they get the message from the stream it was
   * published to before this call (`sent`: handed to their node), named with their node.
   */
  deliver(uid: Uid, msg: Message, _signal: AbortSignal): DeliveryResult[] | Promise<DeliveryResult[]> {
    if (this.#state === 'closed') throw new NotifyError('NOTIFY_ERR_CLOSED', 'websocket transport is closed');
    const results: DeliveryResult[] = [];
    const node = this.#opts.cluster ? this.#opts.node : undefined;
    for (const sid of this.#opts.index.targets(uid)) {
      const s = this.#conns.get(sid);
      const r = s === undefined ? { transport: this.name, target: sid, status: 'failed' as const, reason: 'session closing' } : this.#write(s, msg);
      if (node !== undefined) r.node = node;
      results.push(r);
    }
    if (!this.#opts.cluster || msg.stored === undefined) return results;
    // The uid's sessions on other nodes have it when another node took the publication from the
    // stream's channel; none did: their presence is stale (a node that died, not yet expired).
    const pub = positionFor(msg, uid);
    const self = pub?.stream === BROADCAST_STREAM || this.#following.get(uid) === true ? 1 : 0;
    const others = pub?.receivers === undefined ? 1 : pub.receivers - self;
    // The publish read the uid's sessions with it (a shared store that can); else presence.
    const remote = (entries: readonly { sid: string; node: string }[]): DeliveryResult[] => {
      for (const e of entries) {
        if (e.node === node) continue;
        results.push(
          others > 0
            ? { transport: this.name, target: e.sid, status: 'sent', node: e.node }
            : { transport: this.name, target: e.sid, status: 'failed', reason: 'no node took it: the node of this session is not following (down?)', node: e.node },
        );
      }
      return results;
    };
    return pub?.sessions !== undefined ? remote(pub.sessions) : after(this.#opts.presence.sessions(uid), remote);
  }

  /** One message to one session of this node: its outcome. */
  #write(s: Session, msg: Message): DeliveryResult {
    if (s.readyState !== WebSocket.OPEN) return { transport: this.name, target: s.sid, status: 'failed', reason: 'session closing' };
    if (s.bufferedAmount + s.heldBytes > this.#opts.maxBufferedBytes) {
      // Held live publications of a session whose replay is still being sent are unsent data too.
      return { transport: this.name, target: s.sid, status: 'failed', reason: this.#slowConsumer(s, s.bufferedAmount + s.heldBytes, 'live') };
    }
    if (s.envelope) this.#live(s, msg);
    else this.#sendPlain(s, msg);
    return { transport: this.name, target: s.sid, status: 'sent' };
  }

  /**
   * Cluster: the subscriptions are back after a lost connection. Publications made meanwhile
   * reached no node; each resume-protocol session reads what it missed from its streams (its
   * positions against the store, as centrifuge's position check does). Plain sessions of the
   * original protocol have no positions: they get what comes from now on.
   */
  #catchUp(attempt = 0): void {
    const streams = this.#opts.streams;
    if (streams === undefined || this.#state !== 'running') return;
    // The store must answer reads first: the subscriber may be back before the command
    // connection, and a replay that fails would close the session. Checked with an empty read,
    // every half second for up to a minute.
    let probe: HistoryPage | Promise<HistoryPage>;
    try {
      probe = streams.history(BROADCAST_STREAM, { limit: 0 });
    } catch (err) {
      probe = Promise.reject(err);
    }
    Promise.resolve(probe).then(
      () => this.#catchUpNow(streams),
      () => {
        if (attempt < 120 && this.#state === 'running') setTimeout(() => this.#catchUp(attempt + 1), 500).unref();
      },
    );
  }

  #catchUpNow(streams: MessageStreams): void {
    if (this.#state !== 'running') return;
    let n = 0;
    for (const s of this.#conns.values()) {
      if (!s.envelope || s.uid === undefined || s.held !== undefined || s.readyState !== WebSocket.OPEN) continue;
      s.held = [];
      s.heldBytes = 0;
      this.#recover(s, this.#readAfter(streams, s), null);
      n++;
    }
    if (n > 0) this.#opts.log.info('subscriptions back: resuming sessions catch up from the store', { sessions: n });
  }

  /** A publication made on another node (cluster): to this node's sessions of its uid, or to all for a broadcast. */
  #remote(pub: Publication): void {
    if (this.#state !== 'running') return;
    const msg: Message = { id: pub.id, frame: pub.frame, json: pub.json, stored: [pub] };
    try {
      if (pub.stream === BROADCAST_STREAM) {
        for (const s of this.#conns.values()) if (s.uid !== undefined && this.#opts.index.uidOf(s.sid) !== undefined) this.#write(s, msg);
        return;
      }
      const uid = uidOfStream(pub.stream);
      if (uid === undefined) return;
      for (const sid of this.#opts.index.targets(uid)) {
        const s = this.#conns.get(sid);
        if (s !== undefined) this.#write(s, msg);
      }
    } catch (err) {
      this.#opts.log.error('delivering a publication from another node failed', { stream: pub.stream, id: pub.id, error: err instanceof Error ? err.message : String(err) });
    }
  }

  health(): TransportHealth {
    const state = this.#state === 'new' ? 'starting' : this.#state;
    return { state, connections: this.#conns.size, sessions: this.#opts.index.targetCount, uids: this.#opts.index.uidCount };
  }

  /** Stops accepting, closes every session with 1001 and waits for them (terminating laggards). */
  stop(): Promise<void> {
    this.#stopping ??= this.#stop();
    return this.#stopping;
  }

  async #stop(): Promise<void> {
    if (this.#state === 'new') {
      this.#state = 'closed';
      return;
    }
    this.#state = 'closing';
    clearInterval(this.#heartbeat);
    clearInterval(this.#sweeper);
    const closed = closeServer(this.#server);
    const pending = [...this.#conns.values()].map(
      (s) => new Promise<void>((resolve) => {
        if (s.readyState === WebSocket.CLOSED) return resolve();
        s.once('close', () => resolve());
        s.close(CLOSE.goingAway, 'server shutting down');
      }),
    );
    const timer = setTimeout(() => {
      for (const s of this.#conns.values()) s.terminate();
    }, this.#opts.closeTimeoutMs);
    await Promise.all(pending);
    clearTimeout(timer);
    // Plain HTTP connections (the demo page, a preconnect that never sent a request) would hold
    // server.close() open forever; the sessions are gone, so these go too.
    this.#server.closeAllConnections();
    await closed;
    this.#wss.close();
    this.#state = 'closed';
  }

  /** Applies new limits (a reload); they hold for connections and binds from now on. */
  setLimits(limits: Partial<ConnectionLimits>): void {
    this.#admission.setLimits(Object.assign({}, NO_LIMITS, limits));
  }

  #upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (this.#state !== 'running') {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    const now = Date.now();
    const ip = this.#admission.admit(req, socket, now);
    if (ip === undefined) return;
    // Read what the session needs from the request now: the callback below must not keep `req`
    // (and its headers) alive for as long as the connection lives.
    const q = req.url?.indexOf('?') ?? -1;
    const params = q < 0 ? undefined : new URLSearchParams(req.url?.slice(q + 1));
    const uid = params?.get('uid') ?? null;
    const token = params?.get('token') ?? null;
    this.#wss.handleUpgrade(req, socket, head, (ws) => {
      this.#admission.takenOver(socket);
      this.#open(ws as Session, ip, now, uid, token);
    });
  }

  /** A completed handshake: the connection becomes a session (bound now when the URL named a uid). */
  #open(s: Session, ip: string, now: number, uid: string | null, token: string | null): void {
    s.sid = this.#sidPrefix + (++this.#nextSid).toString(36);
    s.ip = ip;
    s.born = now;
    this.#conns.set(s.sid, s);
    s.on('message', this.#onMessage);
    s.on('pong', markAlive);
    s.on('close', this.#onClose);
    s.on('error', this.#onError);
    if (token !== null) s.urlToken = token;
    if (uid !== null) this.#bind(s, uid);
  }

  /** Closes connections that have not bound a uid within ws.bindTimeout; forgets idle rate buckets. */
  #sweep(): void {
    const now = Date.now();
    const limit = now - this.#opts.bindTimeoutMs;
    for (const s of this.#conns.values()) {
      if (s.uid === undefined && s.born <= limit && s.readyState === WebSocket.OPEN) {
        this.#opts.telemetry.refused('bindTimeout');
        const reason = `no uid bound within ${this.#opts.bindTimeoutMs} ms`;
        this.#opts.refusals?.refused('bindTimeout', 'websocket bind refused', { reason, closeCode: AUTH_CLOSE.bindTimeout, remote: s.ip });
        s.close(AUTH_CLOSE.bindTimeout, reason);
      }
    }
    this.#admission.sweep(now);
  }

  #frames(msg: Message): MessageFrames {
    let f = this.#framesOf;
    if (f === undefined || f.msg !== msg) this.#framesOf = f = { msg, plain: undefined, envelope: undefined, envelopeFrame: undefined };
    return f;
  }

  /** The message's own frame to a plain session (the original protocol). */
  #sendPlain(s: Session, msg: Message): void {
    const f = this.#frames(msg);
    sendTextFrame(s, (f.plain ??= textFrame(msg.frame)), msg.frame);
  }

  /** The message's envelope to a resuming session. */
  #sendEnvelope(s: Session, msg: Message): void {
    const f = this.#frames(msg);
    const text = (f.envelope ??= envelopeOf(msg.id, msg.frame, msg.json));
    sendTextFrame(s, (f.envelopeFrame ??= textFrame(text)), text);
  }

  /**
   * The first frame: the uid itself (the original protocol), or a resume-protocol bind
   * `{"type":"bind","uid":"…","since":"<last id seen>"}`.
   */
  #bindByFrame(s: Session, data: RawData, isBinary: boolean): void {
    if (isBinary) {
      s.close(CLOSE.unsupportedData, 'send the uid as a text frame');
      return;
    }
    const text = data.toString();
    if (text.charCodeAt(0) === 0x7b) {
      let bind: unknown;
      try {
        bind = JSON.parse(text);
      } catch {
        bind = undefined;
      }
      if (bind !== null && typeof bind === 'object' && (bind as { type?: unknown }).type === 'bind') {
        this.#bindResume(s, bind as { uid?: unknown; since?: unknown; token?: unknown; v?: unknown });
        return;
      }
    }
    this.#bind(s, text);
  }

  #bind(s: Session, uid: string, token: string | undefined = s.urlToken): boolean | Promise<boolean> {
    const problem = uidProblem(uid);
    if (problem !== undefined) {
      const reason = problem === 'empty' ? 'empty uid' : `uid longer than ${MAX_UID_BYTES} bytes`;
      this.#opts.refusals?.refused('uid', 'websocket bind refused', { reason, closeCode: CLOSE.policyViolation, remote: s.ip });
      s.close(CLOSE.policyViolation, reason);
      return false;
    }
    const auth = this.#opts.auth;
    if (auth.mode === 'token') {
      const check = checkBindToken(auth.secret as string, token, uid);
      if (check instanceof Promise) {
        // A JWT: jose answers asynchronously. Frames that come meanwhile are not binds (#onMessage).
        s.binding = true;
        return check.then((c) => {
          s.binding = false;
          return s.readyState === WebSocket.OPEN && this.#authorized(s, c, uid) && this.#admit(s, uid);
        });
      }
      if (!this.#authorized(s, check, uid)) return false;
    }
    return this.#admit(s, uid);
  }

  /** Whether the token check passed; a refusal closes the session with its code and reason. */
  #authorized(s: Session, check: TokenCheck, uid: Uid): boolean {
    if (check.ok) return true;
    this.#opts.telemetry.refused('auth');
    this.#opts.refusals?.refused('auth', 'websocket bind refused', { reason: check.reason, closeCode: check.code, uid, remote: s.ip });
    s.close(check.code, check.reason);
    return false;
  }

  /** A bind that passed its checks: limits.sessionsPerUid, then the index and presence. */
  #admit(s: Session, uid: Uid): boolean | Promise<boolean> {
    const perUid = this.#admission.limits.sessionsPerUid;
    // Counted on every node (presence); on one node that is this node's index.
    const count = perUid === Infinity ? 0 : this.#opts.presence.count(uid);
    // Taken now: frames that come while a shared backend answers are not binds.
    s.uid = uid;
    s.urlToken = undefined;
    const unavailable = (err: unknown): false => {
      this.#opts.log.warn('presence unavailable; closing the session', { sid: s.sid, uid, error: err instanceof Error ? err.message : String(err) });
      if (s.readyState === WebSocket.OPEN) s.close(1011, 'presence unavailable; reconnect');
      return false;
    };
    const admit = (n: number): boolean | Promise<boolean> => {
      if (n >= perUid) {
        this.#opts.telemetry.refused('sessionsPerUid');
        const reason = `too many sessions for this uid (limits.sessionsPerUid: ${perUid})`;
        this.#opts.refusals?.refused('sessionsPerUid', 'websocket bind refused', { reason, closeCode: AUTH_CLOSE.tooManySessions, uid, remote: s.ip });
        s.close(AUTH_CLOSE.tooManySessions, reason);
        return false;
      }
      if (s.readyState !== WebSocket.OPEN) return false;
      this.#opts.index.add(uid, s.sid);
      // Following the uid's stream before the session is in presence: once another node can see
      // the session, what it publishes for the uid reaches this node.
      return after(this.#follow(uid), () => {
        // A shared presence keeps what the session is, for other nodes to show; this node reads
        // its own sessions' from them (describe), at no memory cost per session.
        const info = this.#opts.cluster ? this.describe(s.sid) : undefined;
        this.#presence(this.#opts.presence.add(uid, s.sid, this.#opts.node, info), s);
        return true;
      });
    };
    try {
      const r = after(count, admit);
      return r instanceof Promise ? r.catch(unavailable) : r;
    } catch (err) {
      return unavailable(err);
    }
  }

  #unbind(s: Session): void {
    const uid = s.uid as Uid;
    this.#opts.index.remove(s.sid);
    this.#presence(this.#opts.presence.remove(uid, s.sid), s);
    if (this.#opts.cluster && this.#opts.index.count(uid) === 0 && this.#following.has(uid)) {
      this.#following.delete(uid);
      const streams = this.#opts.streams as MessageStreams;
      const r = streams.unfollow(streamOf(uid));
      if (r instanceof Promise) r.catch((err: unknown) => this.#opts.log.debug('unfollow failed', { uid, error: err instanceof Error ? err.message : String(err) }));
    }
  }

  /** Cluster: follows the uid's stream (once per uid with sessions here); settles when subscribed. */
  #follow(uid: Uid): void | Promise<void> {
    const streams = this.#opts.streams;
    if (!this.#opts.cluster || streams === undefined) return;
    const cur = this.#following.get(uid);
    if (cur === true) return;
    if (cur !== undefined) return cur;
    const r = streams.follow(streamOf(uid));
    if (!(r instanceof Promise)) {
      this.#following.set(uid, true);
      return;
    }
    const p = r.then(
      () => {
        if (this.#following.get(uid) === p) this.#following.set(uid, true);
      },
      (err: unknown) => {
        if (this.#following.get(uid) === p) this.#following.delete(uid);
        throw err;
      },
    );
    this.#following.set(uid, p);
    return p;
  }

  /** A presence write that failed: the session cannot be found by other nodes, so it ends (they would miss it). */
  #presence(result: void | Promise<void>, s: Session): void {
    if (result instanceof Promise) {
      result.catch((err: unknown) => {
        this.#opts.log.warn('presence unavailable; closing the session', { sid: s.sid, uid: s.uid, error: err instanceof Error ? err.message : String(err) });
        if (s.readyState === WebSocket.OPEN) s.close(1011, 'presence unavailable; reconnect');
      });
    }
  }

  /**
   * A resume-protocol bind: every stored message after `since`, in order, then live ones, none
   * twice (centrifuge's recovery): the session is registered first, so live publications reach
   * it from then on, but they are held back while the stored ones are read; then the two are
   * merged by offset (duplicates dropped), and it goes live.
   */
  #bindResume(s: Session, bind: { uid?: unknown; since?: unknown; token?: unknown; v?: unknown }): void {
    if (typeof bind.uid !== 'string') {
      s.close(CLOSE.policyViolation, 'bind needs "uid" (a string)');
      return;
    }
    if (bind.since !== undefined && bind.since !== null && typeof bind.since !== 'string') {
      s.close(CLOSE.policyViolation, '"since" must be a message id (a string)');
      return;
    }
    const since = typeof bind.since === 'string' && bind.since !== '' ? bind.since : undefined;
    s.resumed = since !== undefined;
    const token = typeof bind.token === 'string' ? bind.token : s.urlToken;
    // Not yet in the index or presence: the id can still change, to say that it acks.
    this.#conns.delete(s.sid);
    s.sid = RESUME_SID + s.sid.slice(1);
    this.#conns.set(s.sid, s);
    s.envelope = true;
    s.v2 = bind.v === RESUME_V2;
    s.held = [];
    s.heldBytes = 0;
    const uid = bind.uid;
    const bound = (ok: boolean): void => {
      if (!ok) return;
      if (s.v2 && s.readyState === WebSocket.OPEN) s.send(BOUND_FRAME);
      const streams = this.#opts.streams;
      if (streams === undefined) {
        s.held = undefined;
        if (since !== undefined) s.send(JSON.stringify({ type: 'gap', since }));
        return;
      }
      this.#recover(s, this.#readSince(streams, uid, since), since ?? null);
    };
    const r = this.#bind(s, uid, token);
    if (r instanceof Promise) void r.then(bound);
    else bound(r);
  }

  /** What the session is owed: every stored message after `since` (its uid's and broadcasts, in publish order). */
  #readSince(streams: MessageStreams, uid: Uid, since: string | undefined): { reader: ReplayReader; gap: (r: ReplayReader) => boolean } | Promise<{ reader: ReplayReader; gap: (r: ReplayReader) => boolean }> {
    const u = streamOf(uid);
    const located = since === undefined ? undefined : after(streams.locate(u, since), (p) => p ?? streams.locate(BROADCAST_STREAM, since));
    return after(located, (at) => {
      const from = at === undefined ? {} : { afterAt: at.at };
      const reader = new ReplayReader(streams, uid, { u: from, b: from }, this.#opts.replayLimit, this.#replayBudget);
      const gap = since !== undefined && at === undefined;
      return { reader, gap: () => gap };
    });
  }

  /** What a live session missed: everything after its positions (a gap when they are not contiguous with the store). */
  #readAfter(streams: MessageStreams, s: Session): { reader: ReplayReader; gap: (r: ReplayReader) => boolean } {
    const { uPos, bPos, epoch } = s;
    const reader = new ReplayReader(streams, s.uid as Uid, { u: { after: { offset: uPos, epoch } }, b: { after: { offset: bPos, epoch } } }, this.#opts.replayLimit, this.#replayBudget);
    return { reader, gap: (r) => r.u.top.epoch !== epoch || (r.u.first ?? uPos + 1) !== uPos + 1 || (r.b.first ?? bPos + 1) !== bPos + 1 };
  }

  /** Bytes of frames one replay step sends at most (one publication at least): half of maxBufferedBytes. */
  get #replayBudget(): number {
    return Math.max(1, Math.floor(this.#opts.maxBufferedBytes / 2));
  }

  /**
   * Sends a replay, then what was held back meanwhile (by offset, none twice), and goes live.
   *
   * The replay is paced by the socket: a step reads and sends about half of maxBufferedBytes;
   * when the session's unsent bytes are then over that half, the next step waits until the
   * step's last frame has been written out. A session that does not read therefore holds one
   * step of its replay, never its history; live publications held for it meanwhile count
   * against maxBufferedBytes too (deliver drops it as a slow consumer past it).
   */
  #recover(s: Session, start: { reader: ReplayReader; gap: (r: ReplayReader) => boolean } | Promise<{ reader: ReplayReader; gap: (r: ReplayReader) => boolean }>, since: string | null): void {
    const fail = (err: unknown): void => {
      this.#opts.log.warn('resume failed: the store is unavailable', { sid: s.sid, uid: s.uid, error: err instanceof Error ? err.message : String(err) });
      if (s.readyState === WebSocket.OPEN) s.close(1011, 'store unavailable; reconnect');
    };
    const low = this.#replayBudget;
    const max = this.#opts.maxBufferedBytes;
    const run = ({ reader, gap }: { reader: ReplayReader; gap: (r: ReplayReader) => boolean }): void => {
      let first = true;
      /** Sends one step; true: go on at once. */
      const send = (pubs: Publication[]): boolean => {
        if (s.readyState !== WebSocket.OPEN) return false;
        if (first) {
          first = false;
          if (gap(reader)) s.send(JSON.stringify({ type: 'gap', since }));
        }
        if (pubs.length === 0) {
          this.#goLive(s, reader);
          return false;
        }
        const last = pubs.length - 1;
        for (let i = 0; i < last; i++) {
          const p = pubs[i] as Publication;
          s.send(envelopeOf(p.id, p.frame, p.json, s.v2));
        }
        const p = pubs[last] as Publication;
        let written = false;
        let waiting = false;
        s.send(envelopeOf(p.id, p.frame, p.json, s.v2), () => {
          written = true;
          if (waiting) pump();
        });
        if (s.bufferedAmount <= low || written) return true;
        waiting = true;
        return false;
      };
      const pump = (): void => {
        for (;;) {
          if (s.readyState !== WebSocket.OPEN) return;
          const unsent = s.bufferedAmount + s.heldBytes;
          if (unsent > max) {
            this.#slowConsumer(s, unsent, 'replay');
            return;
          }
          let pubs: Publication[] | Promise<Publication[]>;
          try {
            pubs = reader.next();
          } catch (err) {
            return fail(err);
          }
          if (pubs instanceof Promise) {
            pubs.then((p) => {
              if (send(p)) pump();
            }, fail);
            return;
          }
          if (!send(pubs)) return;
        }
      };
      pump();
    };
    if (start instanceof Promise) start.then(run, fail);
    else run(start);
  }

  /** The replay is over: the session takes the positions it reached, then what was held back, and is live. */
  #goLive(s: Session, reader: ReplayReader): void {
    s.epoch = reader.u.top.epoch;
    s.uPos = reader.u.top.offset;
    s.bPos = reader.b.top.offset;
    const held = s.held ?? [];
    s.held = undefined;
    s.heldBytes = 0;
    for (const m of held) this.#live(s, m, false);
  }

  /** Drops a session whose unsent data passed maxBufferedBytes (centrifuge's DisconnectSlow). */
  #slowConsumer(s: Session, unsentBytes: number, during: 'live' | 'replay'): string {
    s.terminate();
    this.#opts.log.warn('slow consumer dropped', { sid: s.sid, uid: s.uid, unsentBytes, during });
    if (during === 'replay') this.#opts.telemetry.delivered(this.name, 'failed');
    return `slow consumer (${unsentBytes} bytes unsent)`;
  }

  /**
   * A live message to a resuming session: sent unless its replay had it already; a message
   * past a hole in the offsets (a backend that dropped a publication on its way here) makes
   * the session catch up from the store first.
   */
  #live(s: Session, msg: Message, mayRecover = true): void {
    if (s.held !== undefined) {
      s.held.push(msg);
      s.heldBytes += msg.frame.length;
      return;
    }
    const p = positionFor(msg, s.uid as Uid);
    if (p === undefined) {
      this.#sendEnvelope(s, msg);
      return;
    }
    const broadcast = p.stream === BROADCAST_STREAM;
    const cur = broadcast ? s.bPos : s.uPos;
    if (p.epoch === s.epoch && p.offset <= cur) return;
    if (mayRecover && (p.epoch !== s.epoch || p.offset !== cur + 1)) {
      const streams = this.#opts.streams;
      if (streams !== undefined) {
        s.held = [msg];
        s.heldBytes = msg.frame.length;
        this.#recover(s, this.#readAfter(streams, s), null);
        return;
      }
    }
    if (broadcast) s.bPos = p.offset;
    else s.uPos = p.offset;
    this.#sendEnvelope(s, msg);
  }

  /** A frame from a resuming session after its bind: acks, and the push-* frames; anything else is ignored. */
  #control(s: Session, text: string): void {
    let frame: unknown;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    const f = frame as { type?: unknown; id?: unknown; subscription?: unknown } | null;
    if (f === null || typeof f !== 'object' || s.uid === undefined) return;
    if (f.type === 'push-subscribe' || f.type === 'push-unsubscribe') {
      this.#pushFrame(s, f.type, f.subscription);
      return;
    }
    if (f.type !== 'ack' || typeof f.id !== 'string') return;
    this.#opts.journal?.ack(f.id, s.uid, s.sid);
    const r = this.#opts.acks.ack(f.id, s.uid);
    if (r instanceof Promise) r.catch(() => {});
  }

  /**
   * A page registers (or removes) its browser's Web Push subscription for the uid its session is
   * bound to. One at a time per session, PUSH_FRAMES_PER_SESSION in all; each is answered with
   * `push-subscribed`, `push-unsubscribed` or `push-refused` (with the reason).
   */
  #pushFrame(s: Session, type: 'push-subscribe' | 'push-unsubscribe', subscription: unknown): void {
    const reply = (answer: Record<string, unknown>) => {
      if (s.readyState === WebSocket.OPEN) s.send(JSON.stringify(answer));
    };
    const refuse = (reason: string) => reply({ type: 'push-refused', reason });
    const push = this.#opts.push;
    if (push === undefined || push.publicKey() === undefined) return refuse('Web Push is not configured on this daemon (no transport with type: webpush)');
    if (s.pushBusy) return refuse('one push registration at a time: wait for the answer to the previous one');
    if (++s.pushFrames > PUSH_FRAMES_PER_SESSION) {
      this.#opts.telemetry.refused('pushFrames');
      return refuse(`too many push registrations on this session (at most ${PUSH_FRAMES_PER_SESSION})`);
    }
    s.pushBusy = true;
    const uid = s.uid as Uid;
    const done =
      type === 'push-subscribe'
        ? push.subscribe(uid, subscription).then((r) => reply({ type: 'push-subscribed', endpoint: r.endpoint, added: r.added }))
        : push.unsubscribe(uid, subscription).then((r) => reply({ type: 'push-unsubscribed', endpoint: r.endpoint, removed: r.removed }));
    done
      .catch((err: unknown) => {
        this.#opts.log.debug('push registration refused', { sid: s.sid, uid, type, reason: errorMessage(err) });
        refuse(errorMessage(err));
      })
      .finally(() => (s.pushBusy = false));
  }

  #beat(): void {
    const live: string[] = [];
    for (const s of this.#conns.values()) {
      if (s.uid !== undefined && s.alive) live.push(s.sid);
      if (!s.alive) {
        this.#opts.log.debug('websocket heartbeat missed, terminating', { sid: s.sid, uid: s.uid });
        s.terminate();
        continue;
      }
      s.alive = false;
      s.ping();
    }
    // Presence is kept alive by the heartbeat: a shared backend drops the sessions of a node
    // that stops touching them.
    const touched = this.#opts.presence.touch(this.#opts.node, live);
    if (touched instanceof Promise) touched.catch((err: unknown) => this.#opts.log.warn('presence heartbeat failed', { error: err instanceof Error ? err.message : String(err) }));
  }

  #serveHttp(req: IncomingMessage, res: ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0];
    const get = req.method === 'GET' || req.method === 'HEAD';
    const serve = (type: string, body: string, headers: Record<string, string>) => {
      res.writeHead(200, { 'content-type': type, 'x-content-type-options': 'nosniff', 'cache-control': 'no-cache', ...headers });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (get && (path === '/' || path === '/index.html')) {
      serve('text/html; charset=utf-8', DEMO_PAGE, {
        'content-security-policy': "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self' ws: wss:",
      });
      return;
    }
    if (get && path === '/notify-client.js') {
      serve('text/javascript; charset=utf-8', notifyClientJs(this.#opts.push?.publicKey()), { 'access-control-allow-origin': '*' });
      return;
    }
    if (get && path === '/notify-sw.js') {
      serve('text/javascript; charset=utf-8', NOTIFY_SW_JS, {});
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
    res.end('not found: WebSocket clients connect to any path; the demo page is at /, the browser client at /notify-client.js, its service worker at /notify-sw.js\n');
  }
}

function markAlive(this: WebSocket): void {
  (this as Session).alive = true;
}
