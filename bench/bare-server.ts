/**
 * The baseline of `npm run bench`: a ws + net server that does what the original Workerman push
 * example does and nothing else, so the bench can show what the machine allows next to what
 * notify costs.
 *
 * - WebSocket (ws, no compression): a connection's first text frame is its uid; later frames
 *   are ignored. One session per uid (a later bind of the same uid replaces it), forgotten
 *   when it closes. No heartbeat, no limits, no history.
 * - Text (net): one JSON object per line (`\n` or `\r\n`), pipelined and split across packets
 *   however the client likes. `{"uid":...}` sends the line itself, unchanged, as one text frame
 *   to that uid's session and answers `ok`; `fail` when the uid has no session; `error: ...`
 *   when the line is not a JSON object with a string uid. Replies are in request order, and
 *   the replies to the lines of one read go out in one write.
 * - GET /sessions on the WebSocket port answers the number of bound uids, so the bench knows
 *   when every session has bound (the bench's only addition, unused during the pushes).
 *
 * Listener addresses are printed as JSON log lines on stderr, like notify's.
 */
import { createServer as createHttpServer } from 'node:http';
import { type AddressInfo, createServer } from 'node:net';
import { StringDecoder } from 'node:string_decoder';
import { type WebSocket, WebSocketServer } from 'ws';

const byUid = new Map<string, WebSocket>();
const http = createHttpServer((req, res) => {
  if (req.url === '/sessions') res.end(String(byUid.size));
  else {
    res.statusCode = 404;
    res.end();
  }
});
const wss = new WebSocketServer({ noServer: true, clientTracking: false, perMessageDeflate: false });
http.on('upgrade', (req, socket, head) => {
  wss.handleUpgrade(req, socket, head, (ws) => {
    let uid: string | undefined;
    ws.on('message', (data, isBinary) => {
      if (uid !== undefined || isBinary) return;
      uid = data.toString();
      byUid.set(uid, ws);
    });
    ws.on('close', () => {
      if (uid !== undefined && byUid.get(uid) === ws) byUid.delete(uid);
    });
    ws.on('error', () => {});
  });
});

function answer(line: string): string {
  let uid: unknown;
  try {
    uid = (JSON.parse(line) as { uid?: unknown } | null)?.uid;
  } catch {
    return 'error: not JSON';
  }
  if (typeof uid !== 'string') return 'error: no uid';
  const ws = byUid.get(uid);
  if (ws === undefined) return 'fail';
  ws.send(line);
  return 'ok';
}

const text = createServer({ noDelay: true }, (socket) => {
  // A decoder: a UTF-8 character split across packets stays whole.
  const decoder = new StringDecoder('utf8');
  let rest = '';
  socket.on('error', () => socket.destroy());
  socket.on('data', (chunk: Buffer) => {
    const buf = rest + decoder.write(chunk);
    let out = '';
    let start = 0;
    for (let nl = buf.indexOf('\n'); nl !== -1; nl = buf.indexOf('\n', start)) {
      const end = nl > start && buf.charCodeAt(nl - 1) === 13 ? nl - 1 : nl;
      out += `${answer(buf.slice(start, end))}\n`;
      start = nl + 1;
    }
    rest = buf.slice(start);
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
