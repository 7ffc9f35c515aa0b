import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Limits } from '../config/load.js';
import { type LimitName, type Telemetry } from '../obs/metrics.js';
import { isLoopbackAddress, unmapped } from '../net/allow.js';

export type ConnectionLimits = Pick<Limits, 'connections' | 'connectionsPerIp' | 'connectRatePerIp' | 'sessionsPerUid'>;

export const NO_LIMITS: ConnectionLimits = { connections: Infinity, connectionsPerIp: Infinity, connectRatePerIp: Infinity, sessionsPerUid: Infinity };

/**
 * Who may open a WebSocket connection: connections in all and per address, and new connections
 * per second per address (a token bucket), refused at the upgrade with an HTTP status and a
 * one-line reason. Behind a local reverse proxy the client's address is the last
 * X-Forwarded-For entry.
 */
export class Admission {
  #limits: ConnectionLimits;
  readonly #behindProxy: boolean;
  readonly #telemetry: Telemetry;
  /** Connections per peer address. */
  readonly #perIp = new Map<string, number>();
  /** New-connection token buckets per peer address. */
  readonly #rate = new Map<string, { tokens: number; at: number }>();

  constructor(opts: { limits: ConnectionLimits; behindProxy: boolean; telemetry: Telemetry }) {
    this.#limits = opts.limits;
    this.#behindProxy = opts.behindProxy;
    this.#telemetry = opts.telemetry;
  }

  get limits(): ConnectionLimits {
    return this.#limits;
  }

  /** New limits (a reload): they hold for connections from now on. */
  setLimits(limits: ConnectionLimits): void {
    this.#limits = limits;
  }

  /**
   * Checks an upgrade against the limits, `open` being the connections there are now: the
   * client's address when admitted; else the socket has been answered and closed.
   */
  admit(req: IncomingMessage, socket: Duplex, open: number, now: number): string | undefined {
    const ip = this.#clientAddress(req);
    const l = this.#limits;
    if (open >= l.connections) return this.#refuse(socket, '503 Service Unavailable', 'connections', `too many connections (limits.connections: ${l.connections})`);
    if ((this.#perIp.get(ip) ?? 0) >= l.connectionsPerIp) {
      return this.#refuse(socket, '503 Service Unavailable', 'connectionsPerIp', `too many connections from ${ip} (limits.connectionsPerIp: ${l.connectionsPerIp})`);
    }
    if (!this.#rateAllows(ip, now)) {
      return this.#refuse(socket, '429 Too Many Requests', 'connectRatePerIp', `too many new connections from ${ip} (limits.connectRatePerIp: ${l.connectRatePerIp}/s)`);
    }
    return ip;
  }

  /** A connection from `ip` now counts against its address's cap. */
  opened(ip: string): void {
    this.#perIp.set(ip, (this.#perIp.get(ip) ?? 0) + 1);
  }

  /** A connection from `ip` has gone. */
  closed(ip: string): void {
    const n = (this.#perIp.get(ip) ?? 1) - 1;
    if (n <= 0) this.#perIp.delete(ip);
    else this.#perIp.set(ip, n);
  }

  /** Forgets rate buckets idle for 10 s. */
  sweep(now: number): void {
    for (const [ip, b] of this.#rate) if (now - b.at > 10_000) this.#rate.delete(ip);
  }

  #refuse(socket: Duplex, status: string, limit: LimitName, why: string): undefined {
    this.#telemetry.refused(limit);
    const body = `${why}\n`;
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
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
