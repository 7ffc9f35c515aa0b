/**
 * The baseline for `npm run bench -- --server bare`: a ws + net server that does what the
 * original example does and nothing else (one session per uid, no heartbeat, no limits), so
 * the bench can show what the machine allows next to what notify costs.
 */
import { createServer as createHttpServer } from 'node:http';
import { type AddressInfo, createServer } from 'node:net';
import { WebSocket, WebSocketServer } from 'ws';

const byUid = new Map<string, WebSocket>();
const http = createHttpServer();
const wss = new WebSocketServer({ noServer: true, clientTracking: false, perMessageDeflate: false });
http.on('upgrade', (req, socket, head) => {
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.once('message', (data) => byUid.set(data.toString(), ws));
    ws.on('error', () => {});
  });
});

const text = createServer((socket) => {
  let rest = '';
  socket.setEncoding('utf8');
  socket.on('error', () => socket.destroy());
  socket.on('data', (chunk: string) => {
    rest += chunk;
    let out = '';
    let nl: number;
    while ((nl = rest.indexOf('\n')) !== -1) {
      const line = rest.slice(0, nl);
      rest = rest.slice(nl + 1);
      const ws = byUid.get((JSON.parse(line) as { uid: string }).uid);
      if (ws) ws.send(line);
      out += ws ? 'ok\n' : 'fail\n';
    }
    if (out) socket.write(out);
  });
});

http.listen(0, '127.0.0.1', () => {
  const a = http.address() as AddressInfo;
  process.stderr.write(`${JSON.stringify({ level: 'info', listener: 'ws', address: `127.0.0.1:${a.port}` })}\n`);
});
text.listen(0, '127.0.0.1', () => {
  const a = text.address() as AddressInfo;
  process.stderr.write(`${JSON.stringify({ level: 'info', listener: 'text', address: `127.0.0.1:${a.port}` })}\n`);
});
process.on('SIGTERM', () => process.exit(0));
