/**
 * A scriptable fake HTTP push provider / webhook for tests: a real `node:http` server on
 * 127.0.0.1 port 0 that records every request and answers as `respond` says.
 *
 * `respond(req)` may return (or resolve to):
 * - `{ status, headers?, body? }`: that answer;
 * - `{ hang: true }`: never answer (the socket stays open until the client gives up or close());
 * - `{ destroy: true }`: destroy the connection without answering;
 * - `undefined`: 200 with `{}` (application/json).
 * If it throws, the request is answered 500 with the error's message.
 */
import { once } from 'node:events';
import { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { TestContext } from 'node:test';

export interface FakeHttpRequest {
  method: string;
  /** The request target as sent: path with the query string, still percent-encoded. */
  path: string;
  /** Header names in lower case. */
  headers: IncomingHttpHeaders;
  /** The body as UTF-8 text ('' when none). */
  body: string;
  /** JSON.parse(body), or undefined when the body is not JSON. */
  json: unknown;
  /** Date.now() when the body was complete. */
  receivedAt: number;
}

export type FakeHttpAnswer =
  | { status: number; headers?: Record<string, string | string[]>; body?: string }
  | { hang: true }
  | { destroy: true }
  | undefined;

export type FakeHttpResponder = (req: FakeHttpRequest) => FakeHttpAnswer | Promise<FakeHttpAnswer>;

export interface FakeHttp {
  /** `http://127.0.0.1:PORT`, no trailing slash. */
  url: string;
  /** Every request received, in arrival order (recorded before it is answered). */
  requests: FakeHttpRequest[];
  /** Destroys every open socket (hanging requests included), then closes the server. Idempotent. */
  close(): Promise<void>;
}

export async function startFakeHttp(t: TestContext, respond: FakeHttpResponder = () => undefined): Promise<FakeHttp> {
  const requests: FakeHttpRequest[] = [];
  const sockets = new Set<Socket>();

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const chunks: Buffer[] = [];
    for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
    const body = Buffer.concat(chunks).toString('utf8');
    let json: unknown;
    try {
      json = body === '' ? undefined : JSON.parse(body);
    } catch {
      json = undefined;
    }
    const recorded: FakeHttpRequest = { method: req.method ?? '', path: req.url ?? '', headers: req.headers, body, json, receivedAt: Date.now() };
    requests.push(recorded);
    let answer: FakeHttpAnswer;
    try {
      answer = await respond(recorded);
    } catch (err) {
      answer = { status: 500, headers: { 'content-type': 'text/plain' }, body: `fake-http respond() threw: ${(err as Error).message}` };
    }
    if (answer === undefined) answer = { status: 200, headers: { 'content-type': 'application/json' }, body: '{}' };
    if ('hang' in answer) return;
    if ('destroy' in answer) {
      req.socket.destroy();
      return;
    }
    const text = answer.body ?? '';
    res.writeHead(answer.status, { 'content-length': String(Buffer.byteLength(text)), ...answer.headers });
    res.end(text);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch(() => req.socket.destroy());
  });
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  server.on('clientError', (_err, socket) => socket.destroy());
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;

  let closing: Promise<void> | undefined;
  const close = (): Promise<void> => {
    closing ??= new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
      server.closeAllConnections();
    });
    return closing;
  };
  t.after(close);
  return { url: `http://127.0.0.1:${port}`, requests, close };
}
