import type { AddressInfo, Server } from 'node:net';
import type { Duplex } from 'node:stream';
import { formatListen, parseListen } from '../config/schema.js';
import { NotifyError } from '../errors.js';
import { isLoopbackAddress } from './allow.js';

const WHY: Record<string, string> = {
  EADDRINUSE: 'address already in use (is another notify running?)',
  EACCES: 'permission denied (ports below 1024 need privileges)',
  EADDRNOTAVAIL: 'no such address on this machine',
  ENOTFOUND: 'unknown host',
};

/**
 * Listens on "host:port" and resolves with the bound address (the real port when 0 was asked).
 * `key` is the config key the address came from, named in the error when it fails.
 */
export function listen(server: Server, address: string, key: string): Promise<string> {
  const { host, port } = parseListen(address);
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      const why = WHY[err.code ?? ''] ?? err.message;
      reject(new NotifyError('NOTIFY_ERR_CONFIG', `cannot listen on ${address} (${key}): ${why}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen({ host, port, backlog: 4096 }, () => {
      server.off('error', onError);
      const a = server.address() as AddressInfo;
      resolve(formatListen(a.address, a.port));
    });
  });
}

/** Stops accepting; resolves when the server has closed (all its connections are gone). */
export function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) return resolve();
    server.close(() => resolve());
  });
}

/** True for a listen address on the loopback interface. */
export function isLoopback(address: string): boolean {
  return isLoopbackAddress(parseListen(address).host);
}

/**
 * Answers a request the HTTP parser refused (malformed, headers too large, too slow) with a
 * status and a one-line reason, as JSON for the API or text for the WebSocket port, then closes.
 * A connection that is already gone is just destroyed.
 */
export function answerClientError(err: NodeJS.ErrnoException, socket: Duplex, format: 'json' | 'text'): void {
  if (err.code === 'ECONNRESET' || !socket.writable) {
    socket.destroy();
    return;
  }
  const [status, code, why] =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? ['408 Request Timeout', 'NOTIFY_ERR_TIMEOUT', 'the request took too long to arrive']
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? ['431 Request Header Fields Too Large', 'NOTIFY_ERR_BAD_REQUEST', 'request headers too large']
        : ['400 Bad Request', 'NOTIFY_ERR_BAD_REQUEST', 'malformed HTTP request'];
  const body = format === 'json' ? JSON.stringify({ code, error: why }) : `${why}\n`;
  const type = format === 'json' ? 'application/json; charset=utf-8' : 'text/plain; charset=utf-8';
  socket.end(`HTTP/1.1 ${status}\r\nContent-Type: ${type}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
}
