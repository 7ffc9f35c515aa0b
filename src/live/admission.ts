import type { RefusalLog } from '../obs/refusals.js';
import type { IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Limits } from '../config/load.js';
import { type LimitName, type Telemetry } from '../obs/metrics.js';
import { isLoopbackAddress, unmapped } from '../net/allow.js';

export type ConnectionLimits = Pick<Limits, 'connections' | 'connectionsPerIp' | 'connectRatePerIp' | 'sessionsPerUid' | 'silentTimeout'>;

export const NO_LIMITS: ConnectionLimits = { connections: Infinity, connectionsPerIp: Infinity, connectRatePerIp: Infinity, sessionsPerUid: Infinity, silentTimeout: 10_000 };

/**
 * Who may hold a connection: connections in all and per address, counted from accept (a
 * connection that never completes a handshake holds a descriptor all the same), and new
 * connections per second per address (a token bucket), checked at the handshake. Refusals are
 * an HTTP status and a one-line reason. Behind a local reverse proxy the client's address is the
 * last X-Forwarded-For entry, known only at the handshake: connections from the proxy count per
 * address from then on.
 */
export class Admission {
  #limits: ConnectionLimits;
  readonly #behindProxy: boolean;
  readonly #telemetry: Telemetry;
  readonly #format: 'json' | 'text';
  /** Connections open now (accepted and not yet closed). */
  #open = 0;
  /** Connections per client address. */
  readonly #perIp = new Map<string, number>();
  /** New-connection token buckets per client address. */
  readonly #rate = new Map<string, { tokens: number; at: number }>();
  /** The address each accepted socket counts under (none yet for a proxy's, until its handshake). */
  readonly #counted = new WeakMap<Duplex, string>();
  /** TLS sockets whose TCP connection was counted at accept (admit does not count them again). */
  readonly #countedBelow = new WeakSet<Duplex>();

  readonly #refusals: { log: RefusalLog; listener: string } | undefined;

  /**
   * The 'close' and 'timeout' handlers of every socket, shared (called with `this` = the socket):
   * a session holds no closure, once-wrapper or bound function of its own for them, which it
   * would keep for as long as it lives.
   */
  readonly #onClosed: (this: Duplex) => void;
  readonly #onSilent: (this: Duplex) => void;

  /** `format`: how a refusal's body is written: text, or the HTTP API's `{code, error}` JSON. @default 'text' */
  constructor(opts: { limits: ConnectionLimits; behindProxy: boolean; telemetry: Telemetry; format?: 'json' | 'text'; refusals?: { log: RefusalLog; listener: string } }) {
    this.#refusals = opts.refusals;
    this.#limits = opts.limits;
    this.#behindProxy = opts.behindProxy;
    this.#telemetry = opts.telemetry;
    this.#format = opts.format ?? 'text';
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const admission = this;
    this.#onClosed = function (this: Duplex) {
      admission.#closed(this);
    };
    this.#onSilent = function (this: Duplex) {
      admission.#telemetry.refused('silent');
      this.destroy();
    };
  }

  get limits(): ConnectionLimits {
    return this.#limits;
  }

  /** Connections open now. */
  get open(): number {
    return this.#open;
  }

  /** New limits (a reload): they hold for connections from now on. */
  setLimits(limits: ConnectionLimits): void {
    this.#limits = limits;
  }

  /**
   * A connection just accepted: counted, or refused (answered 503 and closed) when it is over
   * limits.connections or its address's limits.connectionsPerIp. It is released when it closes.
   * With `tls` it is the TCP connection under a TLS one, counted from accept all the same (a
   * stalled handshake holds a descriptor too): a refusal only closes it (a TLS client could not
   * read a plain answer), and its silence is timed from the end of its handshake (`secured`).
   */
  accept(socket: Socket, opts: { tls?: boolean } = {}): boolean {
    const l = this.#limits;
    const peer = unmapped(socket.remoteAddress ?? '');
    const tls = opts.tls === true;
    if (this.#open >= l.connections) {
      this.#refuse(socket, '503 Service Unavailable', 'connections', `too many connections (limits.connections: ${l.connections})`, tls);
      return false;
    }
    const proxied = this.#behindProxy && isLoopbackAddress(peer);
    if (!proxied && (this.#perIp.get(peer) ?? 0) >= l.connectionsPerIp) {
      this.#refuse(socket, '503 Service Unavailable', 'connectionsPerIp', `too many connections from ${peer} (limits.connectionsPerIp: ${l.connectionsPerIp})`, tls);
      return false;
    }
    this.#open++;
    if (!proxied) this.#count(socket, peer);
    if (!tls) this.#timeSilence(socket);
    socket.on('close', this.#onClosed);
    return true;
  }

  #closed(socket: Duplex): void {
    this.#open--;
    const ip = this.#counted.get(socket);
    if (ip !== undefined) this.#release(ip);
  }

  /**
   * TLS: the TLS socket of an accepted connection, its handshake done. Requests come on it, so
   * its silence is timed from now. A proxy's connection is counted at its WebSocket handshake,
   * on this socket (admit), and released when it closes; others were counted at accept.
   */
  secured(socket: Socket): void {
    const peer = unmapped(socket.remoteAddress ?? '');
    if (this.#behindProxy && isLoopbackAddress(peer)) {
      socket.once('close', () => {
        const ip = this.#counted.get(socket);
        if (ip !== undefined) this.#release(ip);
      });
    } else {
      this.#countedBelow.add(socket);
    }
    this.#timeSilence(socket);
  }

  /** Until the connection is taken over (`takenOver`), silence ends it. */
  #timeSilence(socket: Socket): void {
    socket.setTimeout(this.#limits.silentTimeout, this.#onSilent);
  }

  /**
   * The connection has been taken over (a WebSocket handshake done, an HTTP request read): its
   * silence is no longer timed, and its timeout listener goes with the timer.
   */
  takenOver(socket: Duplex): void {
    (socket as Socket).setTimeout(0, this.#onSilent);
  }

  /**
   * Checks a WebSocket handshake: the rate per address, and (behind a proxy) the per-address cap
   * of the forwarded client. The client's address when admitted; else the socket has been
   * answered and closed.
   */
  admit(req: IncomingMessage, socket: Duplex, now: number): string | undefined {
    const ip = this.#clientAddress(req);
    const l = this.#limits;
    if (!this.#counted.has(socket) && !this.#countedBelow.has(socket)) {
      if ((this.#perIp.get(ip) ?? 0) >= l.connectionsPerIp) {
        return this.#refuse(socket, '503 Service Unavailable', 'connectionsPerIp', `too many connections from ${ip} (limits.connectionsPerIp: ${l.connectionsPerIp})`);
      }
      this.#count(socket, ip);
    }
    if (!this.#rateAllows(ip, now)) {
      return this.#refuse(socket, '429 Too Many Requests', 'connectRatePerIp', `too many new connections from ${ip} (limits.connectRatePerIp: ${l.connectRatePerIp}/s)`);
    }
    return ip;
  }

  #count(socket: Duplex, ip: string): void {
    this.#counted.set(socket, ip);
    this.#perIp.set(ip, (this.#perIp.get(ip) ?? 0) + 1);
  }

  #release(ip: string): void {
    const n = (this.#perIp.get(ip) ?? 1) - 1;
    if (n <= 0) this.#perIp.delete(ip);
    else this.#perIp.set(ip, n);
  }

  /** Forgets rate buckets idle for 10 s. */
  sweep(now: number): void {
    for (const [ip, b] of this.#rate) if (now - b.at > 10_000) this.#rate.delete(ip);
  }

  #refuse(socket: Duplex, status: string, limit: LimitName, why: string, closeOnly = false): undefined {
    this.#telemetry.refused(limit);
    const r = this.#refusals;
    if (r) r.log.refused(`${r.listener}:${limit}`, 'connection refused', { listener: r.listener, reason: why, status: status.slice(0, 3) });
    if (closeOnly) {
      socket.destroy();
      return undefined;
    }
    const json = this.#format === 'json';
    const body = json ? JSON.stringify({ code: 'NOTIFY_ERR_LIMIT', error: why }) : `${why}\n`;
    const type = json ? 'application/json; charset=utf-8' : 'text/plain';
    socket.on('error', () => socket.destroy());
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Type: ${type}\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    // Whatever it sends is not read: it goes once the answer is out, or in a second.
    socket.resume?.();
    setTimeout(() => socket.destroy(), 1000).unref();
    return undefined;
  }

  #rateAllows(ip: string, now: number): boolean {
    const rate = this.#limits.connectRatePerIp;
    if (!Number.isFinite(rate)) return true;
    const b = this.#rate.get(ip) ?? { tokens: rate, at: now };
    b.tokens = Math.min(rate, b.tokens + ((now - b.at) / 1000) * rate);
    b.at = now;
    this.#rate.set(ip, b);
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  #clientAddress(req: IncomingMessage): string {
    const peer = unmapped(req.socket.remoteAddress ?? '');
    if (!this.#behindProxy || !isLoopbackAddress(peer)) return peer;
    const forwarded = req.headers['x-forwarded-for'];
    const last = (Array.isArray(forwarded) ? forwarded.join(',') : (forwarded ?? '')).split(',').pop()?.trim();
    return last ? unmapped(last) : peer;
  }
}
