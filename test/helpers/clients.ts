import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import type { TestContext } from 'node:test';
import { WebSocket } from 'ws';

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
    async frame(n = frames.length + 1, timeoutMs = 2000) {
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
  let rest = '';
  const waiters: (() => void)[] = [];
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => {
    rest += chunk;
    let nl: number;
    while ((nl = rest.indexOf('\n')) !== -1) {
      lines.push(rest.slice(0, nl));
      rest = rest.slice(nl + 1);
    }
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
    async replies(n, timeoutMs = 2000) {
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
export async function until(check: () => boolean, what: string, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
