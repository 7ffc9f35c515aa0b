import type { Duplex } from 'node:stream';
import type { WebSocket } from 'ws';

/**
 * A whole unmasked final text frame (RFC 6455 section 5.2) in one buffer: the bytes ws's Sender
 * writes for `ws.send(text)` on a server socket without compression, which it writes as two
 * chunks (header, then the text, encoded by the socket) through cork/uncork and a writev. Built
 * once per message, it goes to each session of the message with one plain write.
 */
export function textFrame(text: string): Buffer {
  const len = Buffer.byteLength(text);
  const head = len < 126 ? 2 : len < 65536 ? 4 : 10;
  const buf = Buffer.allocUnsafe(head + len);
  buf[0] = 0x81; // FIN, opcode 1 (text)
  if (len < 126) buf[1] = len;
  else if (len < 65536) {
    buf[1] = 126;
    buf.writeUInt16BE(len, 2);
  } else {
    buf[1] = 127;
    buf.writeUInt32BE(Math.floor(len / 2 ** 32), 2);
    buf.writeUInt32BE(len >>> 0, 6);
  }
  buf.write(text, head, len, 'utf8');
  return buf;
}

/** The parts of a ws WebSocket (ws 8) the direct write relies on. */
interface WsInternals {
  _socket?: Duplex;
  _sender?: { _state?: unknown; _queue?: unknown[] };
  _extensions?: Record<string, unknown>;
}

/** WebSocket.OPEN. */
const OPEN = 1;

/** ws's Sender state when it is not deflating or reading a Blob (lib/sender.js `DEFAULT`). */
const SENDER_IDLE = 0;

/**
 * Sends `frame` (textFrame(text)) on a server-side `ws`. Written straight to its socket
 * when ws would have written it there at once: open, no extension negotiated (no compression) and its
 * Sender idle with nothing queued, so frames keep their order with those ws sends (pings, close).
 * Otherwise (or with a ws whose internals differ) `ws.send(text)`, which also refuses a closing one. True when written directly.
 * `ws.bufferedAmount` counts the frame either way (it reads the socket's unsent bytes).
 */
export function sendTextFrame(ws: WebSocket, frame: Buffer, text: string): boolean {
  const w = ws as unknown as WsInternals;
  const sender = w._sender;
  const socket = w._socket;
  if (
    ws.readyState === OPEN &&
    sender !== undefined &&
    sender._state === SENDER_IDLE &&
    sender._queue !== undefined &&
    sender._queue.length === 0 &&
    w._extensions !== undefined &&
    w._extensions['permessage-deflate'] === undefined &&
    socket !== undefined
  ) {
    socket.write(frame);
    return true;
  }
  ws.send(text);
  return false;
}
