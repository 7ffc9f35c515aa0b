import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import type { TestContext } from 'node:test';
import { WebSocket } from 'ws';
import type { Daemon } from '../../src/node/daemon.js';

/**
 * How long a wait may take before it counts as a hang. A safety net, not a speed claim: tests
 * wait for events, and a busy machine may make any of them slow.
 */
export const HANG_MS = 60_000;

/** A ws client that records every frame it receives, as text. */
export interface WsClient {
  ws: WebSocket;
  frames: string[];
  /** Resolves with the n-th frame (1-based), waiting for it if needed. */
  frame(n?: number, timeoutMs?: number): Promise<string>;
  /** Resolves with [code, reason] when the connection closes. */
  closed: Promise<[number, string]>;
}

export async function wsClient(t: TestContext, url: string, opts: { bind?: string } = {}): Promise<WsClient> {
  const ws = new WebSocket(url);
  const frames: string[] = [];
  const waiters: (() => void)[] = [];
  ws.on('message', (data) => {
    frames.push(data.toString());
    for (const w of waiters.splice(0)) w();
  });
  ws.on('error', () => {});
  const closed = new Promise<[number, string]>((resolve) => ws.on('close', (code, reason) => resolve([code, reason.toString()])));
  t.after(() => ws.terminate());
  await once(ws, 'open');
  if (opts.bind !== undefined) ws.send(opts.bind);
  return {
    ws,
    frames,
    closed,
    async frame(n = frames.length + 1, timeoutMs = HANG_MS) {
      const deadline = Date.now() + timeoutMs;
      while (frames.length < n) {
        if (Date.now() > deadline) throw new Error(`expected frame #${n} within ${timeoutMs} ms; got ${JSON.stringify(frames)}`);
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 20);
        });
      }
      return frames[n - 1] as string;
    },
  };
}

/**
 * Reads `socket` as UTF-8 and pushes every complete line it receives, without its line ending,
 * to `lines`; `onChunk` runs after each chunk.
 */
export function collectLines(socket: Socket, lines: string[], onChunk?: () => void): void {
  let rest = '';
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    rest += chunk;
    let nl: number;
    while ((nl = rest.indexOf('\n')) !== -1) {
      lines.push(rest.slice(0, nl));
      rest = rest.slice(nl + 1);
    }
    onChunk?.();
  });
}

/** A raw TCP client for the Text ingress that collects reply lines. */
export interface TextClient {
  socket: Socket;
  /** Every complete reply line so far, without line endings. */
  lines: string[];
  write(data: string | Buffer): void;
  /** Resolves when at least n reply lines have arrived; returns them all. */
  replies(n: number, timeoutMs?: number): Promise<string[]>;
  /** Resolves with true when the server has closed the connection. */
  ended: Promise<true>;
}

export async function textClient(t: TestContext, port: number): Promise<TextClient> {
  const socket = connect({ host: '127.0.0.1', port });
  const lines: string[] = [];
  const waiters: (() => void)[] = [];
  collectLines(socket, lines, () => {
    for (const w of waiters.splice(0)) w();
  });
  socket.on('error', () => {});
  const ended = new Promise<true>((resolve) => socket.on('close', () => resolve(true)));
  t.after(() => socket.destroy());
  await once(socket, 'connect');
  return {
    socket,
    lines,
    ended,
    write: (data) => void socket.write(data),
    async replies(n, timeoutMs = HANG_MS) {
      const deadline = Date.now() + timeoutMs;
      while (lines.length < n) {
        if (Date.now() > deadline) throw new Error(`expected ${n} reply lines within ${timeoutMs} ms; got ${JSON.stringify(lines)}`);
        await new Promise<void>((resolve) => {
          waiters.push(resolve);
          setTimeout(resolve, 20);
        });
      }
      return lines.slice();
    },
  };
}

/** Waits until `check()` is true, polling; fails with `what` after timeoutMs. */
export async function until(check: () => boolean, what: string, timeoutMs = HANG_MS): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Rejects after `ms` with `what`; for promises that have no timeout of their own. */
export function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * A client->server->client round trip. The server handles a connection's frames in order, so
 * once the pong is back every frame sent before the ping has been processed.
 */
export async function roundTrip(ws: WebSocket, timeoutMs = HANG_MS): Promise<void> {
  const pong = once(ws, 'pong');
  ws.ping();
  await within(pong, timeoutMs, 'pong');
}

/** A daemon with a WebSocket listener, as the session helpers need it. */
type WsDaemon = Pick<Daemon, 'registry'> & { wsUrl: string };

/**
 * A WebSocket session bound to `uid` (the uid as its first frame), once the daemon's registry
 * has one more session for the uid than before.
 */
export async function session(t: TestContext, d: WsDaemon, uid: string, timeoutMs = HANG_MS): Promise<WsClient> {
  const before = d.registry.index('websocket').targets(uid).length;
  const c = await wsClient(t, d.wsUrl, { bind: uid });
  await until(() => d.registry.index('websocket').targets(uid).length > before, `${uid} to bind`, timeoutMs);
  return c;
}

/** Waits until `uid` has exactly `n` WebSocket sessions bound (0: the uid is gone). */
export async function bound(d: Pick<Daemon, 'registry'>, uid: string, n = 1, timeoutMs = HANG_MS): Promise<void> {
  const index = () => d.registry.index('websocket');
  await until(() => index().targets(uid).length === n && index().has(uid) === n > 0, `${JSON.stringify(uid.slice(0, 40))} to have ${n} session(s)`, timeoutMs);
}
