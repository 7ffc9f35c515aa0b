import { once } from 'node:events';
import { createServer } from 'node:net';

/** A port nothing listens on (and so one that was free a moment ago): bound on 127.0.0.1 port 0, then closed. */
export async function deadPort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
