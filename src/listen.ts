import type { AddressInfo, Server } from 'node:net';
import { formatListen, parseListen } from './config-schema.js';
import { NotifyError } from './errors.js';
import { isLoopbackAddress } from './net-allow.js';

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
