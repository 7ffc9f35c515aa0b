import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { NotifyError } from '../errors.js';
import { answerClientError, closeServer, listen } from '../net/listen.js';
import type { Logger } from '../obs/log.js';
import { MAX_UID_BYTES, uidProblem } from '../message.js';
import type { TargetIndex } from '../store/target-index.js';
import type { DeliveryResult, Message, Uid } from '../types.js';
import { AUTH_CLOSE, checkToken } from '../auth.js';
import type { Limits } from '../config/load.js';
import type { AckRelay } from '../store/acks.js';
import type { Presence } from '../store/presence.js';
import { BROADCAST_STREAM, type HistoryPage, type MessageStreams, type Publication, type StreamPosition, streamOf } from '../store/stream.js';
import { after } from '../maybe.js';
import { type Telemetry, noTelemetry } from '../obs/metrics.js';
import { Admission, type ConnectionLimits, NO_LIMITS } from './admission.js';
import { DEMO_PAGE } from './assets/demo-page.js';
import { NOTIFY_CLIENT_JS } from './assets/notify-client.js';
import type { LiveSessions, Transport, TransportHealth } from '../push/transport.js';

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
  telemetry?: Telemetry;
}


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
  /** Resume protocol: the offsets of the newest publications it has, in its uid's stream and in the broadcast stream. */
  uPos = 0;
  bPos = 0;
  /** The epoch those offsets are of. */
  epoch = '';
  /** While its replay is being read: live publications held back, merged in by offset after it. */
  held: Message[] | undefined = undefined;
  /** The peer's address, for the per-IP limits. */
  ip = '';
  /** When it connected (ms), for ws.bindTimeout. */
  born = 0;
  /** A token given in the URL, used when it binds. */
  urlToken: string | undefined = undefined;
}

/** A message as one envelope of the resume protocol: `{"id":"…","data":…}`. */
export function envelopeOf(id: string, frame: string, json: boolean): string {
  return `{"id":${JSON.stringify(id)},"data":${json ? frame : JSON.stringify(frame)}}`;
}

/** Where a message sits in the stream a session of `uid` follows it by (undefined: not stored). */
function positionFor(msg: Message, uid: Uid): Publication | undefined {
  const stored = msg.stored;
  if (stored === undefined) return undefined;
  if (stored.length === 1) return stored[0];
  const key = streamOf(uid);
  return stored.find((p) => p.stream === key || p.stream === BROADCAST_STREAM);
}

/** What a resuming session is sent before it goes live. */
interface Replay {
  publications: Publication[];
  /** `since` named no stored message: messages may have been missed. */
  gap: boolean;
  u: StreamPosition;
  b: StreamPosition;
}

/**
 * Live WebSocket sessions (ws, noServer mode).
 *
 * - Plain sessions (the original protocol) bind a uid with their first text frame or `?uid=`
 *   and receive every push for it as one text frame carrying the message's frame unchanged.
 * - Resuming sessions bind with `{"type":"bind","uid","since"}` and receive `{"id","data"}`
 *   envelopes: the stored ones after `since`, then live ones; they may ack.
 * - With auth `token`, a bind needs a token for the uid (URL or bind frame); refusals close
 *   with the 44xx codes of AUTH_CLOSE. Unbound connections are closed after bindTimeoutMs.
 * - Limits: connections in all and per address, new connections per second per address (at
 *   the upgrade, HTTP 503/429), sessions per uid (4429).
 * A uid may have any number of sessions; each is its own target, keyed by session id. The same
 * port serves the demo page at `GET /` and the browser client at `/notify-client.js`.
 */
export class WebSocketTransport implements Transport, LiveSessions {
  readonly name = 'websocket';
  readonly #opts: Required<Omit<WebSocketTransportOptions, 'streams' | 'limits'>> & Pick<WebSocketTransportOptions, 'streams'>;
  readonly #admission: Admission;
  #sweeper: NodeJS.Timeout | undefined;
  readonly #server: Server;
  readonly #wss: WebSocketServer;
  /** Every connection, bound or not, by session id. */
  readonly #conns = new Map<string, Session>();
  #nextSid = 0;
  /**
   * Session ids are unique across nodes and restarts, not only in this process: a per-process
   * random prefix, then a counter (presence on a shared backend keys sessions by id).
   */
  readonly #sidPrefix = `s${randomBytes(3).toString('hex')}.`;
  #state: 'new' | 'running' | 'closing' | 'closed' = 'new';
  #address = '';
  #heartbeat: NodeJS.Timeout | undefined;
  #stopping: Promise<void> | undefined;
  /** The envelope of the message being delivered: built once, sent to every resuming session. */
  #envelopeFor: { msg: Message; text: string } | undefined;
  readonly #onMessage: (this: WebSocket, data: RawData, isBinary: boolean) => void;
  readonly #onClose: (this: WebSocket) => void;
  readonly #onError: (this: WebSocket, err: Error) => void;

  constructor(opts: WebSocketTransportOptions) {
    for (const key of ['maxPayloadBytes', 'maxBufferedBytes', 'heartbeatIntervalMs'] as const) {
      if (!Number.isInteger(opts[key]) || opts[key] <= 0) throw new RangeError(`${key} must be a positive integer`);
    }
    this.#opts = { closeTimeoutMs: 2000, auth: { mode: 'none', secret: null }, bindTimeoutMs: 10_000, behindProxy: false, telemetry: noTelemetry, replayLimit: 100, ...opts };
    if (this.#opts.auth.mode === 'token' && !this.#opts.auth.secret) throw new TypeError('auth: token needs a secret');
    this.#admission = new Admission({ limits: { ...NO_LIMITS, ...opts.limits }, behindProxy: opts.behindProxy ?? false, telemetry: this.#opts.telemetry });
    this.#wss = new WebSocketServer({
      noServer: true,
      clientTracking: false,
      perMessageDeflate: false,
      maxPayload: opts.maxPayloadBytes,
      WebSocket: Session,
    });
    // A client that trickles its request headers (slowloris) is cut off: 10 s for the headers
    // (the upgrade request included), checked every 2 s.
    this.#server = createServer({ headersTimeout: 10_000, requestTimeout: 30_000, connectionsCheckingInterval: 2000 }, (req, res) =>
      this.#serveHttp(req, res),
    );
    // Counted from accept, not from a completed handshake: a connection that never sends a byte
    // holds a descriptor too (limits.connections, connectionsPerIp, silentTimeout).
    this.#server.on('connection', (socket: Socket) => {
      if (this.#state !== 'running' || !this.#admission.accept(socket)) socket.destroy();
    });
    this.#server.on('request', (req: IncomingMessage) => req.socket.setTimeout(0));
    this.#server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.#upgrade(req, socket, head));
    this.#server.on('clientError', (err: NodeJS.ErrnoException, socket) => answerClientError(err, socket, 'text'));

    const transport = this;
    this.#onMessage = function (data, isBinary) {
      const s = this as Session;
      s.alive = true;
      if (s.uid === undefined) transport.#bindByFrame(s, data, isBinary);
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
    this.#address = await listen(this.#server, this.#opts.listen, 'ws.listen');
    this.#heartbeat = setInterval(() => this.#beat(), this.#opts.heartbeatIntervalMs);
    this.#sweeper = setInterval(() => this.#sweep(), Math.max(10, Math.min(1000, this.#opts.bindTimeoutMs / 2)));
  }

  /** The bound address, "host:port" ('' before start). */
  get address(): string {
    return this.#address;
  }

  canReach(uid: Uid): boolean | Promise<boolean> {
    return this.#opts.presence.has(uid);
  }

  confirmsByAck(target: string): boolean {
    return this.#conns.get(target)?.envelope === true;
  }

  deliver(uid: Uid, msg: Message, _signal: AbortSignal): Promise<DeliveryResult[]> {
    if (this.#state === 'closed') {
      return Promise.reject(new NotifyError('NOTIFY_ERR_CLOSED', 'websocket transport is closed'));
    }
    const results: DeliveryResult[] = [];
    for (const sid of this.#opts.index.targets(uid)) {
      const s = this.#conns.get(sid);
      if (s === undefined || s.readyState !== WebSocket.OPEN) {
        results.push({ transport: this.name, target: sid, status: 'failed', reason: 'session closing' });
      } else if (s.bufferedAmount > this.#opts.maxBufferedBytes) {
        const unsent = s.bufferedAmount;
        s.terminate();
        this.#opts.log.warn('slow consumer dropped', { sid, uid, unsentBytes: unsent });
        results.push({ transport: this.name, target: sid, status: 'failed', reason: `slow consumer (${unsent} bytes unsent)` });
      } else if (s.envelope) {
        this.#live(s, msg);
        results.push({ transport: this.name, target: sid, status: 'sent' });
      } else {
        s.send(msg.frame);
        results.push({ transport: this.name, target: sid, status: 'sent' });
      }
    }
    return Promise.resolve(results);
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
    this.#admission.setLimits({ ...NO_LIMITS, ...limits });
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
    this.#wss.handleUpgrade(req, socket, head, (ws) => this.#open(ws as Session, ip, now, uid, token));
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
        s.close(AUTH_CLOSE.bindTimeout, `no uid bound within ${this.#opts.bindTimeoutMs} ms`);
      }
    }
    this.#admission.sweep(now);
  }

  #envelope(msg: Message): string {
    const cached = this.#envelopeFor;
    if (cached !== undefined && cached.msg === msg) return cached.text;
    const text = envelopeOf(msg.id, msg.frame, msg.json);
    this.#envelopeFor = { msg, text };
    return text;
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
        this.#bindResume(s, bind as { uid?: unknown; since?: unknown });
        return;
      }
    }
    this.#bind(s, text);
  }

  #bind(s: Session, uid: string, token: string | undefined = s.urlToken): boolean {
    const problem = uidProblem(uid);
    if (problem !== undefined) {
      s.close(CLOSE.policyViolation, problem === 'empty' ? 'empty uid' : `uid longer than ${MAX_UID_BYTES} bytes`);
      return false;
    }
    const auth = this.#opts.auth;
    if (auth.mode === 'token') {
      const check = checkToken(auth.secret as string, token, uid);
      if (!check.ok) {
        this.#opts.telemetry.refused('auth');
        s.close(check.code, check.reason);
        return false;
      }
    }
    const perUid = this.#admission.limits.sessionsPerUid;
    if (this.#opts.index.count(uid) >= perUid) {
      this.#opts.telemetry.refused('sessionsPerUid');
      s.close(AUTH_CLOSE.tooManySessions, `too many sessions for this uid (limits.sessionsPerUid: ${perUid})`);
      return false;
    }
    s.uid = uid;
    s.urlToken = undefined;
    this.#opts.index.add(uid, s.sid);
    this.#presence(this.#opts.presence.add(uid, s.sid, this.#opts.node), s);
    return true;
  }

  #unbind(s: Session): void {
    this.#opts.index.remove(s.sid);
    this.#presence(this.#opts.presence.remove(s.uid as Uid, s.sid), s);
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
  #bindResume(s: Session, bind: { uid?: unknown; since?: unknown; token?: unknown }): void {
    if (typeof bind.uid !== 'string') {
      s.close(CLOSE.policyViolation, 'bind needs "uid" (a string)');
      return;
    }
    if (bind.since !== undefined && bind.since !== null && typeof bind.since !== 'string') {
      s.close(CLOSE.policyViolation, '"since" must be a message id (a string)');
      return;
    }
    const since = typeof bind.since === 'string' && bind.since !== '' ? bind.since : undefined;
    const token = typeof bind.token === 'string' ? bind.token : s.urlToken;
    s.envelope = true;
    s.held = [];
    if (!this.#bind(s, bind.uid, token)) return;
    const streams = this.#opts.streams;
    if (streams === undefined) {
      s.held = undefined;
      if (since !== undefined) s.send(JSON.stringify({ type: 'gap', since }));
      return;
    }
    this.#recover(s, this.#readSince(streams, bind.uid, since), since ?? null);
  }

  /** What the session is owed: every stored message after `since` (its uid's and broadcasts, in publish order). */
  #readSince(streams: MessageStreams, uid: Uid, since: string | undefined): Replay | Promise<Replay> {
    const u = streamOf(uid);
    const limit = this.#opts.replayLimit;
    const located = since === undefined ? undefined : after(streams.locate(u, since), (p) => p ?? streams.locate(BROADCAST_STREAM, since));
    return after(located, (at) => {
      const afterAt = at?.at;
      const q = afterAt === undefined ? { limit } : { afterAt, limit };
      return after(streams.history(u, q), (hu) =>
        after(streams.history(BROADCAST_STREAM, q), (hb) => merged(hu, hb, since !== undefined && at === undefined)),
      );
    });
  }

  /** Sends a replay, then what was held back meanwhile (by offset, none twice), and goes live. */
  #recover(s: Session, replay: Replay | Promise<Replay>, since: string | null): void {
    const done = (r: Replay): void => {
      if (s.readyState !== WebSocket.OPEN) return;
      if (r.gap) s.send(JSON.stringify({ type: 'gap', since }));
      for (const p of r.publications) s.send(envelopeOf(p.id, p.frame, p.json));
      s.epoch = r.u.epoch;
      s.uPos = r.u.offset;
      s.bPos = r.b.offset;
      const held = s.held ?? [];
      s.held = undefined;
      for (const m of held) this.#live(s, m, false);
    };
    if (!(replay instanceof Promise)) return done(replay);
    replay.then(done, (err: unknown) => {
      this.#opts.log.warn('resume failed: the store is unavailable', { sid: s.sid, uid: s.uid, error: err instanceof Error ? err.message : String(err) });
      if (s.readyState === WebSocket.OPEN) s.close(1011, 'store unavailable; reconnect');
    });
  }

  /**
   * A live message to a resuming session: sent unless its replay had it already; a message
   * past a hole in the offsets (a backend that dropped a publication on its way here) makes
   * the session catch up from the store first.
   */
  #live(s: Session, msg: Message, mayRecover = true): void {
    if (s.held !== undefined) {
      s.held.push(msg);
      return;
    }
    const p = positionFor(msg, s.uid as Uid);
    if (p === undefined) {
      s.send(this.#envelope(msg));
      return;
    }
    const broadcast = p.stream === BROADCAST_STREAM;
    const cur = broadcast ? s.bPos : s.uPos;
    if (p.epoch === s.epoch && p.offset <= cur) return;
    if (mayRecover && (p.epoch !== s.epoch || p.offset !== cur + 1)) {
      const streams = this.#opts.streams;
      if (streams !== undefined) {
        s.held = [msg];
        this.#recover(s, this.#readAfter(streams, s), null);
        return;
      }
    }
    if (broadcast) s.bPos = p.offset;
    else s.uPos = p.offset;
    s.send(this.#envelope(msg));
  }

  /** What a live session missed: everything after its positions. */
  #readAfter(streams: MessageStreams, s: Session): Replay | Promise<Replay> {
    const limit = this.#opts.replayLimit;
    return after(streams.history(streamOf(s.uid as Uid), { after: { offset: s.uPos, epoch: s.epoch }, limit }), (hu) =>
      after(streams.history(BROADCAST_STREAM, { after: { offset: s.bPos, epoch: s.epoch }, limit }), (hb) =>
        merged(hu, hb, hu.top.epoch !== s.epoch || (hu.publications[0]?.offset ?? s.uPos + 1) !== s.uPos + 1 || (hb.publications[0]?.offset ?? s.bPos + 1) !== s.bPos + 1),
      ),
    );
  }

  /** A frame from a resuming session after its bind: acks; anything else is ignored. */
  #control(s: Session, text: string): void {
    let frame: unknown;
    try {
      frame = JSON.parse(text);
    } catch {
      return;
    }
    const f = frame as { type?: unknown; id?: unknown } | null;
    if (f === null || typeof f !== 'object' || f.type !== 'ack' || typeof f.id !== 'string' || s.uid === undefined) return;
    const r = this.#opts.acks.ack(f.id, s.uid);
    if (r instanceof Promise) r.catch(() => {});
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
      serve('text/javascript; charset=utf-8', NOTIFY_CLIENT_JS, { 'access-control-allow-origin': '*' });
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' });
    res.end('not found: WebSocket clients connect to any path; the demo page is at /, the browser client at /notify-client.js\n');
  }
}

/** A replay: both streams' publications in publish order. */
function merged(u: HistoryPage, b: HistoryPage, gap: boolean): Replay {
  const publications = b.publications.length === 0 ? u.publications : [...u.publications, ...b.publications].sort((x, y) => x.at - y.at);
  return { publications, gap, u: u.top, b: b.top };
}

function markAlive(this: WebSocket): void {
  (this as Session).alive = true;
}
