import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { test, type TestContext } from 'node:test';
import { WebSocket } from 'ws';
import { type TestDaemon, startDaemon } from '../helpers/daemon.js';
import { HANG_MS, textClient, until, wsClient } from '../helpers/clients.js';
import { wsFrame } from '../helpers/ws-frame.js';

/**
 * Abuse tests (issue 6, item 6). One daemon, in this process (an uncaught exception anywhere in
 * it fails the run), with small limits. Before the abuse a resuming client of uid `victim` gets
 * numbered messages from a Text publisher; then random and malformed input hits the Text
 * ingress, the HTTP API and the WebSocket port at once, while the publisher goes on and a
 * bystander keeps getting HTTP pushes. Afterwards the daemon serves new clients, holds no
 * leftover connection or connection slot, and a fresh resuming client of `victim` gets every
 * message that was answered `ok`, each once.
 *
 * Inputs come from a seeded PRNG (mulberry32). Every failure names the seed; replay a run with
 * NOTIFY_FUZZ_SEED=<seed> node --test dist/test/load/abuse.test.js
 */

const SEED = process.env.NOTIFY_FUZZ_SEED !== undefined && process.env.NOTIFY_FUZZ_SEED !== '' ? Number(process.env.NOTIFY_FUZZ_SEED) >>> 0 : (Math.random() * 0x1_0000_0000) >>> 0;
const REPLAY = `fuzz seed ${SEED}; replay with NOTIFY_FUZZ_SEED=${SEED}`;

const MAX_LINE = 4096;
const MAX_BODY = 8192;
const MAX_PAYLOAD = 1024;
const MAX_BUFFERED = 1024;
const BIND_TIMEOUT_MS = 2000;
const PER_IP = 64;

const ABUSE_CONFIG = {
  ws: { maxPayloadBytes: MAX_PAYLOAD, maxBufferedBytes: MAX_BUFFERED, bindTimeout: `${BIND_TIMEOUT_MS}ms` },
  text: { maxLineBytes: MAX_LINE },
  http: { maxBodyBytes: MAX_BODY },
  // All clients are 127.0.0.1: the per-IP cap is small on purpose (a leaked slot shows), the
  // connect rate is not what is tested here.
  limits: { connections: 10_000, connectionsPerIp: PER_IP, connectRatePerIp: 1_000_000 },
  history: { size: 10_000 },
};

// ---------------------------------------------------------------------------------------------
// Seeded randomness
// ---------------------------------------------------------------------------------------------

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

class Rng {
  readonly #next: () => number;
  constructor(seed: number) {
    this.#next = mulberry32(seed);
  }
  /** An integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.#next() * n);
  }
  /** An integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  chance(p: number): boolean {
    return this.#next() < p;
  }
  pick<T>(items: readonly T[]): T {
    const v = items[this.int(items.length)];
    if (v === undefined) throw new Error('pick from an empty list');
    return v;
  }
  bytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
  text(n: number, alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789 "\\{}[]:,\t\'é€😀\u0000\u001b\u2028'): string {
    const chars = [...alphabet];
    let s = '';
    for (let i = 0; i < n; i++) s += this.pick(chars);
    return s;
  }
}

/** A PRNG of its own for each part, so that running parts at once does not change their inputs. */
function rngFor(part: string): Rng {
  return new Rng((SEED ^ Number.parseInt(createHash('sha256').update(part).digest('hex').slice(0, 8), 16)) >>> 0);
}

/** Runs a test body and adds the seed to whatever it throws. */
function seeded(fn: (t: TestContext) => Promise<void>): (t: TestContext) => Promise<void> {
  return async (t) => {
    try {
      await fn(t);
    } catch (err) {
      if (err instanceof Error) err.message = `${err.message}\n[${REPLAY}]`;
      throw err;
    }
  };
}

// ---------------------------------------------------------------------------------------------
// Small tools
// ---------------------------------------------------------------------------------------------

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function portOf(address: string): number {
  return Number(address.slice(address.lastIndexOf(':') + 1));
}

/** Runs `fn` over `items` with at most `width` at once; fails with the first error, after all have ended. */
async function pool<T>(items: readonly T[], width: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const errors: unknown[] = [];
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      try {
        await fn(items[i] as T, i);
      } catch (err) {
        errors.push(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, worker));
  if (errors.length > 0) {
    const first = errors[0];
    if (first instanceof Error) first.message = `${first.message} (${errors.length} of ${items.length} cases failed)`;
    throw first;
  }
}

/** A raw TCP connection that keeps every byte it receives. */
class RawConn {
  readonly socket: Socket;
  buf: Buffer = Buffer.alloc(0);
  closedAt: number | undefined;
  readonly openedAt = Date.now();
  readonly closed: Promise<void>;
  readonly #waiters = new Set<() => void>();

  constructor(port: number) {
    this.socket = connect({ host: '127.0.0.1', port });
    this.socket.on('error', () => {});
    this.socket.on('data', (chunk: Buffer) => {
      this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
      this.#wake();
    });
    this.closed = new Promise((resolve) =>
      this.socket.on('close', () => {
        this.closedAt = Date.now();
        this.#wake();
        resolve();
      }),
    );
  }

  static async open(t: TestContext, port: number): Promise<RawConn> {
    const c = new RawConn(port);
    t.after(() => c.socket.destroy());
    await Promise.race([once(c.socket, 'connect'), c.closed.then(() => Promise.reject(new Error(`connection to port ${port} closed before connecting`)))]);
    return c;
  }

  get isClosed(): boolean {
    return this.closedAt !== undefined;
  }

  write(data: string | Buffer): void {
    if (!this.socket.destroyed && !this.socket.writableEnded) this.socket.write(data);
  }

  #wake(): void {
    for (const w of this.#waiters) w();
    this.#waiters.clear();
  }

  /** Waits until check() holds; returns false when `ms` (a safety net against a hang) passed first. */
  async waitFor(check: () => boolean, ms = HANG_MS): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!check()) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 50));
        this.#waiters.add(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return true;
  }

  /** Waits for the server to close the connection; false when it had not after `ms`. */
  waitClosed(ms = HANG_MS): Promise<boolean> {
    return this.waitFor(() => this.isClosed, ms);
  }
}

// ---------------------------------------------------------------------------------------------
// Protocol checkers
// ---------------------------------------------------------------------------------------------

/** What a Text reply line may be (README): ok, fail, error: …, or a JSON report (reply: json). */
function textReplyProblem(line: string): string | undefined {
  if (line === 'ok' || line === 'fail') return undefined;
  if (line.startsWith('error: ') && line.length > 'error: '.length) return undefined;
  if (line.startsWith('{')) {
    try {
      const r = JSON.parse(line) as { id?: unknown; delivered?: unknown };
      if (typeof r.id === 'string' && typeof r.delivered === 'boolean') return undefined;
    } catch {
      // reported below
    }
  }
  return `not a Text reply: ${JSON.stringify(line.slice(0, 200))}`;
}

/**
 * The reply lines in `data`, as a parser that follows the protocol sees them: split at `\n`, a
 * `\r` before it dropped. A partial last line is reported.
 */
function replyLines(data: Buffer): { lines: string[]; partial: string } {
  const parts = data.toString('utf8').split('\n');
  const partial = parts.pop() ?? '';
  return { lines: parts.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l)), partial };
}

interface HttpResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

/**
 * Parses HTTP/1.1 responses from `buf`, strictly. `methods` are the request methods in order (a
 * HEAD response has no body). Returns the complete responses, and what is wrong, if anything.
 */
function parseHttpResponses(buf: Buffer, methods: readonly string[]): { responses: HttpResponse[]; problem?: string; incomplete: boolean } {
  const responses: HttpResponse[] = [];
  let off = 0;
  while (off < buf.length) {
    const end = buf.indexOf('\r\n\r\n', off);
    if (end < 0) return { responses, incomplete: true };
    const head = buf.subarray(off, end).toString('latin1');
    const [statusLine = '', ...headerLines] = head.split('\r\n');
    const m = /^HTTP\/1\.1 ([1-5]\d\d) [\x20-\x7e]*$/.exec(statusLine);
    if (!m) return { responses, incomplete: false, problem: `bad status line ${JSON.stringify(statusLine.slice(0, 100))}` };
    const headers: Record<string, string> = {};
    for (const h of headerLines) {
      const hm = /^([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*([\x20-\x7e\t]*?)[ \t]*$/.exec(h);
      if (!hm) return { responses, incomplete: false, problem: `bad header line ${JSON.stringify(h.slice(0, 100))}` };
      headers[(hm[1] as string).toLowerCase()] = hm[2] as string;
    }
    const status = Number(m[1]);
    off = end + 4;
    if (status < 200) continue; // an interim response (100 Continue)
    const method = methods[responses.length] ?? 'GET';
    let body: Buffer = Buffer.alloc(0);
    if (method !== 'HEAD' && status !== 204 && status !== 304) {
      if (headers['transfer-encoding'] !== undefined) return { responses, incomplete: false, problem: `unexpected transfer-encoding ${headers['transfer-encoding']}` };
      const cl = headers['content-length'];
      if (cl === undefined || !/^\d+$/.test(cl)) return { responses, incomplete: false, problem: `response ${status} without a valid content-length: ${JSON.stringify(headers)}` };
      const len = Number(cl);
      if (off + len > buf.length) return { responses, incomplete: true };
      body = buf.subarray(off, off + len);
      off += len;
    }
    responses.push({ status, headers, body });
  }
  return { responses, incomplete: false };
}

/** What is wrong with one API response, if anything: 4xx/5xx must carry a JSON {code, error}. */
function apiResponseProblem(r: HttpResponse, method: string): string | undefined {
  if (method === 'HEAD') return undefined;
  const type = r.headers['content-type'] ?? '';
  if (r.status >= 400) {
    if (!type.startsWith('application/json')) return `${r.status} with content-type ${JSON.stringify(type)}`;
    try {
      const e = JSON.parse(r.body.toString('utf8')) as { code?: unknown; error?: unknown };
      if (typeof e.code !== 'string' || typeof e.error !== 'string' || e.code === '' || e.error === '') return `${r.status} body is not {code, error}: ${r.body.toString().slice(0, 200)}`;
    } catch {
      return `${r.status} body is not JSON: ${r.body.toString().slice(0, 200)}`;
    }
    return undefined;
  }
  if (type.startsWith('application/json')) {
    try {
      JSON.parse(r.body.toString('utf8'));
    } catch {
      return `${r.status} JSON body does not parse: ${r.body.toString().slice(0, 200)}`;
    }
  }
  return undefined;
}

interface WsFrame {
  fin: boolean;
  opcode: number;
  payload: Buffer;
}

/** Server->client frames in `buf` (complete ones), checked against RFC 6455. */
function parseServerFrames(buf: Buffer): { frames: WsFrame[]; problem?: string } {
  const frames: WsFrame[] = [];
  let off = 0;
  while (off + 2 <= buf.length) {
    const b0 = buf[off] as number;
    const b1 = buf[off + 1] as number;
    if (b1 & 0x80) return { frames, problem: 'a server frame is masked' };
    if (b0 & 0x70) return { frames, problem: 'a server frame has RSV bits set' };
    const opcode = b0 & 0x0f;
    if (![0, 1, 2, 8, 9, 10].includes(opcode)) return { frames, problem: `server frame with opcode ${opcode}` };
    let len = b1 & 0x7f;
    let p = off + 2;
    if (len === 126) {
      if (p + 2 > buf.length) break;
      len = buf.readUInt16BE(p);
      p += 2;
    } else if (len === 127) {
      if (p + 8 > buf.length) break;
      len = Number(buf.readBigUInt64BE(p));
      p += 8;
    }
    if (p + len > buf.length) break;
    const frame = { fin: (b0 & 0x80) !== 0, opcode, payload: buf.subarray(p, p + len) };
    if (opcode >= 8 && (!frame.fin || len > 125)) return { frames, problem: `bad server control frame (opcode ${opcode}, ${len} bytes)` };
    if (opcode === 8 && len > 0) {
      const code = len >= 2 ? frame.payload.readUInt16BE(0) : -1;
      const valid = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
      if (!valid) return { frames, problem: `server close frame with code ${code}` };
    }
    frames.push(frame);
    off = p + len;
  }
  return { frames };
}

function closePayload(code: number, reason: Buffer = Buffer.alloc(0)): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(code);
  return Buffer.concat([b, reason]);
}

/** A raw connection to the ws port after an upgrade request: the HTTP answer, then frames. */
class RawWs {
  constructor(
    readonly conn: RawConn,
    /** Where the frames start in conn.buf (after the 101 response). */
    readonly start: number,
  ) {}

  frames(): { frames: WsFrame[]; problem?: string } {
    return parseServerFrames(this.conn.buf.subarray(this.start));
  }

  send(frame: Buffer): void {
    this.conn.write(frame);
  }

  /**
   * Waits for the server's close frame and answers it as a client does (a close frame, then
   * the end of our side); returns its code (1005 for none), or undefined if none came in `ms`.
   */
  async closeCode(ms = HANG_MS): Promise<number | undefined> {
    let found: WsFrame | undefined;
    await this.conn.waitFor(() => {
      found = this.frames().frames.find((f) => f.opcode === 8);
      return found !== undefined || this.conn.isClosed;
    }, ms);
    if (found === undefined) return undefined;
    this.send(wsFrame(8, found.payload.subarray(0, 2)));
    this.conn.socket.end();
    return found.payload.length >= 2 ? found.payload.readUInt16BE(0) : 1005;
  }
}

const GOOD_KEY = () => randomBytes(16).toString('base64');

/** Sends an upgrade request (or `raw` bytes instead) and waits for the HTTP answer. */
async function wsHandshake(
  t: TestContext,
  port: number,
  opts: { key?: string | null; version?: string; upgrade?: string; path?: string; raw?: Buffer } = {},
): Promise<{ conn: RawConn; status: number | undefined; head: string; ws: RawWs | undefined }> {
  const conn = await RawConn.open(t, port);
  if (opts.raw) conn.write(opts.raw);
  else {
    const key = opts.key === undefined ? GOOD_KEY() : opts.key;
    conn.write(
      `GET ${opts.path ?? '/'} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: ${opts.upgrade ?? 'websocket'}\r\nConnection: Upgrade\r\n` +
        `${key === null ? '' : `Sec-WebSocket-Key: ${key}\r\n`}Sec-WebSocket-Version: ${opts.version ?? '13'}\r\n\r\n`,
    );
  }
  await conn.waitFor(() => conn.buf.includes('\r\n\r\n') || conn.isClosed);
  const end = conn.buf.indexOf('\r\n\r\n');
  if (end < 0) return { conn, status: undefined, head: conn.buf.toString('latin1'), ws: undefined };
  const head = conn.buf.subarray(0, end).toString('latin1');
  const m = /^HTTP\/1\.1 (\d{3}) /.exec(head);
  const status = m ? Number(m[1]) : undefined;
  return { conn, status, head, ws: status === 101 ? new RawWs(conn, end + 4) : undefined };
}

/**
 * A resuming client as /notify-client.js is one, minus its dedupe (as in the crash test): binds
 * with the last id it saw, acks each message, and counts every id it is sent.
 */
class ResumingClient {
  readonly seen = new Map<string, number>();
  readonly order: number[] = [];
  readonly other: string[] = [];
  last: string | null = null;
  ws: WebSocket | undefined;

  async connect(t: TestContext, url: string, uid: string, since: string | null = this.last): Promise<void> {
    const ws = new WebSocket(url);
    this.ws = ws;
    t.after(() => ws.terminate());
    ws.on('error', () => {});
    ws.on('message', (raw) => {
      const text = raw.toString();
      const frame = JSON.parse(text) as { id?: string; type?: string; data?: unknown };
      if (frame.id === undefined) {
        this.other.push(text);
        return;
      }
      this.seen.set(frame.id, (this.seen.get(frame.id) ?? 0) + 1);
      const data = frame.data as { n?: unknown } | undefined;
      if (data !== null && typeof data === 'object' && typeof data.n === 'number') this.order.push(data.n);
      this.last = frame.id;
      ws.send(JSON.stringify({ type: 'ack', id: frame.id }));
    });
    await once(ws, 'open');
    ws.send(JSON.stringify({ type: 'bind', uid, since }));
  }
}

/** A Text publisher that pipelines lines and matches replies to them in order. */
class TextPublisher {
  readonly sent: string[] = [];
  readonly replies: string[] = [];
  #rest = '';
  private constructor(readonly socket: Socket) {
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      this.#rest += chunk;
      let nl: number;
      while ((nl = this.#rest.indexOf('\n')) !== -1) {
        this.replies.push(this.#rest.slice(0, nl));
        this.#rest = this.#rest.slice(nl + 1);
      }
    });
  }
  static async open(t: TestContext, port: number): Promise<TextPublisher> {
    const c = await textClient(t, port);
    c.socket.removeAllListeners('data');
    return new TextPublisher(c.socket);
  }
  /** Sends a line publishing `fields` with message id `id`. */
  send(id: string, fields: Record<string, unknown>): void {
    this.sent.push(id);
    this.socket.write(`${JSON.stringify({ ...fields, id })}\n`);
  }
  async drained(what: string, ms = HANG_MS): Promise<void> {
    await until(() => this.replies.length >= this.sent.length, `${what}: ${this.sent.length} replies (have ${this.replies.length})`, ms);
  }
  /** The ids answered ok. */
  okIds(): string[] {
    return this.sent.filter((_, i) => this.replies[i] === 'ok');
  }
}

// ---------------------------------------------------------------------------------------------
// Text ingress fuzz
// ---------------------------------------------------------------------------------------------

/** One request line and what its reply must be: exactly a string, matching a RegExp, or any valid reply. */
interface Segment {
  bytes: Buffer;
  expect: string | RegExp | { jsonId: string } | 'any';
}

const UTF8_ERROR = 'error: line is not valid UTF-8';
const LONG_ERROR = `error: line longer than ${MAX_LINE} bytes`;
const INVALID_UTF8 = [
  [0xff],
  [0xfe, 0xfe],
  [0xc3, 0x28],
  [0xc0, 0xaf], // overlong "/"
  [0xe0, 0x80, 0xaf], // overlong
  [0xed, 0xa0, 0x80], // a UTF-16 surrogate
  [0xf4, 0x90, 0x80, 0x80], // past U+10FFFF
  [0xe2, 0x82], // truncated €
  [0x80],
].map((b) => Buffer.from(b));

let txSeq = 0;

function jsonValue(rng: Rng, depth = 0): unknown {
  switch (rng.int(depth > 1 ? 6 : 9)) {
    case 0:
      return null;
    case 1:
      return rng.chance(0.5);
    case 2:
      return rng.pick([0, -1, 1.5, 1e308, -0, 2 ** 53 + 1, 123456789, 0.1]);
    case 3:
      return rng.text(rng.int(24));
    case 4:
      return rng.pick(['', '__proto__', 'constructor', '\u0000', '\ud800', 'é€😀', '\r', '%00', '../../etc/passwd']);
    case 5:
      return `tx-${rng.int(50)}`;
    case 6:
      return Array.from({ length: rng.int(5) }, () => jsonValue(rng, depth + 1));
    case 7:
      return rawObject(rng, depth + 1);
    default:
      return Array.from({ length: rng.pick([0, 1, 3, 1001]) }, (_, i) => `tx-${i}`);
  }
}

/** An object as JSON text, built by hand so that "__proto__" stays an ordinary key. */
function rawObject(rng: Rng, depth: number): { __raw: string } {
  const n = rng.int(5);
  const parts: string[] = [];
  for (let i = 0; i < n; i++) parts.push(`${JSON.stringify(rng.pick(['a', 'uid', '__proto__', 'data', rng.text(4)]))}:${jsonText(jsonValue(rng, depth))}`);
  return { __raw: `{${parts.join(',')}}` };
}

function jsonText(v: unknown): string {
  if (v !== null && typeof v === 'object' && '__raw' in v) return (v as { __raw: string }).__raw;
  if (Array.isArray(v)) return `[${v.map(jsonText).join(',')}]`;
  return JSON.stringify(v) ?? 'null';
}

/** A random publish-shaped line, often valid, often not; never for a uid a test client holds. */
function jsonishLine(rng: Rng): string {
  for (;;) {
    const entries: string[] = [];
    const keys = ['uid', 'uids', 'msg', 'title', 'badge', 'sound', 'data', 'id', 'route', 'ttl', 'reply', 'broadcast', '__proto__', 'percent'];
    if (rng.chance(0.8)) entries.push(`"uid":${jsonText(rng.chance(0.7) ? `tx-${rng.int(50)}` : jsonValue(rng))}`);
    for (let i = rng.int(5); i > 0; i--) {
      const key = rng.pick(keys);
      let value: unknown;
      if (key === 'broadcast') value = rng.pick([false, 0, 'no', null]);
      else if (key === 'reply') value = rng.pick(['json', 'text', 1]);
      else if (key === 'route') value = rng.pick(['all', 'live-first', 'nope']);
      else if (key === 'ttl') value = rng.pick(['1s', '24h', 5, -1, 'x', '0s']);
      else if (key === 'id') value = rng.pick([`fz-${rng.int(30)}`, '', 'has space', 'x'.repeat(300), 7]);
      else if (key === 'badge') value = rng.pick([1, -1, 1.5, '3', null]);
      else value = jsonValue(rng);
      entries.push(`${JSON.stringify(key)}:${jsonText(value)}`);
    }
    let line = `{${entries.join(',')}}`;
    for (let m = rng.chance(0.4) ? rng.range(1, 3) : 0; m > 0; m--) {
      const at = rng.int(line.length + 1);
      switch (rng.int(4)) {
        case 0:
          line = line.slice(0, at) + line.slice(at + 1);
          break;
        case 1:
          line = line.slice(0, at) + rng.pick([...'{}[]",:\\ 0aZ\t\r']) + line.slice(at);
          break;
        case 2:
          line = line.slice(0, at) + line.slice(at, at + rng.int(12)).repeat(2) + line.slice(at);
          break;
        default:
          line = line.slice(0, at);
      }
    }
    // Keep the accounting of the other parts exact: no broadcast, no uid a client holds.
    if (/"broadcast"\s*:\s*true/.test(line) || /victim|bystander|slowpoke|wf-|after-/.test(line)) continue;
    if (Buffer.byteLength(line) > MAX_LINE || line.includes('\n')) continue;
    return line;
  }
}

function segment(rng: Rng): Segment {
  const eol = rng.chance(0.3) ? '\r\n' : '\n';
  const line = (s: string | Buffer, expect: Segment['expect']): Segment => ({ bytes: Buffer.concat([Buffer.from(s), Buffer.from(eol)]), expect });
  switch (rng.int(12)) {
    case 0:
    case 1: {
      const id = `tx-${SEED.toString(36)}-${txSeq++}`;
      const json = rng.chance(0.5);
      const body = { uid: `tx-${rng.int(50)}`, msg: rng.text(rng.int(40), 'abc é€😀 xyz'), id, ...(json ? { reply: 'json' } : {}) };
      return line(JSON.stringify(body), json ? { jsonId: id } : 'fail');
    }
    case 2:
    case 3:
      return line(jsonishLine(rng), 'any');
    case 4: {
      // Random bytes, any of them but the line feed.
      const b = rng.bytes(rng.range(1, 300));
      for (let i = 0; i < b.length; i++) if (b[i] === 0x0a) b[i] = 0x0b;
      // A CR last would be taken for the line ending: keep the count of lines exact either way.
      return line(b, 'any');
    }
    case 5: {
      const bad = Buffer.concat([Buffer.from(`{"uid":"tx-1","msg":"${rng.text(rng.int(20), 'abc')}`), rng.pick(INVALID_UTF8), Buffer.from('"}')]);
      return line(rng.chance(0.5) ? bad : Buffer.concat([rng.pick(INVALID_UTF8), Buffer.from('x')]), UTF8_ERROR);
    }
    case 6: {
      // Past maxLineBytes (not counting the line ending), sometimes far past it.
      const n = rng.chance(0.2) ? rng.range(64 * 1024, 300 * 1024) : rng.range(MAX_LINE + 1, 3 * MAX_LINE);
      return line('y'.repeat(n), LONG_ERROR);
    }
    case 7: {
      // Exactly maxLineBytes: still a request.
      const head = `{"uid":"tx-2","msg":"`;
      return line(`${head}${'m'.repeat(MAX_LINE - head.length - 2)}"}`, 'fail');
    }
    case 8:
      // CR without LF: the CR stays in the line (only a CR right before the LF is a line ending).
      return line(rng.pick(['{"uid":"tx-3","msg":"a"}\r{"uid":"tx-4","msg":"b"}', '\r\r', 'x\ry', '\r{\r"uid"\r:\r"tx-5"\r,"msg":"c"}\r']), 'any');
    case 9:
      // NUL bytes: raw in a string (bad JSON), alone, or escaped (fine).
      return rng.pick<Segment>([
        line('{"uid":"tx-6","msg":"a\u0000b"}', /^error: not JSON/),
        line('\u0000\u0000', /^error: not JSON/),
        line('{"uid":"tx-6","msg":"a\\u0000b"}', 'fail'),
      ]);
    case 10:
      return line('', /^error: empty line/);
    default:
      return line(`[${rng.int(10)}]`, /^error: expected a JSON object/);
  }
}

interface TextPlan {
  segments: Segment[];
  data: Buffer;
  /** Where the data is cut into writes. */
  cuts: number[];
  /** A pause before each write after the first (ms; 0 = next turn). */
  pauses: number[];
  finish: 'end' | 'destroy-mid-line' | 'destroy-after-write';
}

function textPlan(rng: Rng): TextPlan {
  const segments = Array.from({ length: rng.range(1, 30) }, () => segment(rng));
  let data = Buffer.concat(segments.map((s) => s.bytes));
  const finish = rng.pick(['end', 'end', 'end', 'end', 'destroy-mid-line', 'destroy-after-write'] as const);
  if (finish === 'destroy-mid-line') data = Buffer.concat([data, Buffer.from('{"uid":"tx-7","msg":"never fini')]);
  const cuts = Array.from({ length: rng.int(3) === 0 ? 0 : rng.range(1, 25) }, () => rng.int(data.length)).sort((a, b) => a - b);
  const pauses = cuts.map(() => (rng.chance(0.7) ? 0 : rng.range(1, 15)));
  return { segments, data, cuts, pauses, finish };
}

async function runTextPlan(t: TestContext, port: number, plan: TextPlan, n: number): Promise<{ lines: number }> {
  const c = await RawConn.open(t, port);
  let from = 0;
  for (let i = 0; i <= plan.cuts.length; i++) {
    const to = plan.cuts[i] ?? plan.data.length;
    if (to > from) c.write(plan.data.subarray(from, to));
    from = Math.max(from, to);
    const pause = plan.pauses[i];
    if (pause !== undefined) await sleep(pause);
  }
  if (plan.finish !== 'end') {
    if (plan.finish === 'destroy-after-write') await sleep(1);
    c.socket.destroy();
    return { lines: 0 };
  }
  // Half-open: our side ends right after the last write; the server answers every line, then closes.
  c.socket.end();
  const closed = await c.waitClosed();
  const { lines, partial } = replyLines(c.buf);
  const tag = `text plan #${n}`;
  assert.ok(closed, `${tag}: the server closed the half-closed connection (got ${lines.length}/${plan.segments.length} replies)`);
  assert.equal(partial, '', `${tag}: no partial reply line`);
  assert.equal(lines.length, plan.segments.length, `${tag}: one reply per request line: ${JSON.stringify(lines.slice(0, 40))}`);
  lines.forEach((reply, i) => {
    const seg = plan.segments[i] as Segment;
    const what = `${tag}, line ${i} (${JSON.stringify(seg.bytes.subarray(0, 80).toString('latin1'))})`;
    assert.equal(textReplyProblem(reply), undefined, what);
    if (typeof seg.expect === 'string' && seg.expect !== 'any') assert.equal(reply, seg.expect, what);
    else if (seg.expect instanceof RegExp) assert.match(reply, seg.expect, what);
    else if (typeof seg.expect === 'object') {
      const report = JSON.parse(reply) as { id?: string; delivered?: boolean };
      assert.equal(report.id, seg.expect.jsonId, `${what}: the report is this line's`);
      assert.equal(report.delivered, false, what);
    }
  });
  return { lines: lines.length };
}

/**
 * A client that writes line after line and never reads: the daemon must stop reading it once
 * its replies back up (our writes then back up here), instead of buffering without bound.
 */
async function slowTextReader(t: TestContext, port: number): Promise<{ written: number; backlog: number }> {
  const c = await RawConn.open(t, port);
  c.socket.pause();
  c.socket.removeAllListeners('data');
  // Cheap lines with long replies ("error: expected a JSON object, ..."): the replies fill the
  // socket buffers fast.
  const batch = Buffer.from('[]\n'.repeat(20_000));
  let written = 0;
  const deadline = Date.now() + HANG_MS;
  while (c.socket.writableLength < 1024 * 1024 && written < 3_000_000 && Date.now() < deadline && !c.isClosed) {
    c.socket.write(batch);
    written += 20_000;
    await sleep(5);
  }
  const backlog = c.socket.writableLength;
  return { written, backlog };
}

// ---------------------------------------------------------------------------------------------
// HTTP API fuzz
// ---------------------------------------------------------------------------------------------

type HttpKind = 'complete' | 'malformed' | 'incomplete' | 'oversized';

interface HttpPlan {
  kind: HttpKind;
  /** The request methods, in order, of the complete requests in `data`. */
  methods: string[];
  data: Buffer;
  cuts: number[];
  desc: string;
}

const API_PATHS = ['/v1/send', '/v1/devices', '/healthz', '/metrics', '/v1/status', '/', '/v1/', '/v1/send/', '/V1/SEND', '/v1/send?x=1', '/healthz?%%%', '/a/../v1/send', '/v1/devices?uid=%ZZ&transport=', '/%2e%2e/', '/' + 'p'.repeat(2000)];

function httpBody(rng: Rng): string | Buffer {
  switch (rng.int(8)) {
    case 0:
      return JSON.stringify({ uid: `hx-${rng.int(20)}`, msg: rng.text(20) });
    case 1:
      return JSON.stringify({ uid: `hx-${rng.int(20)}`, title: 'x', data: { a: 1 }, id: `hx-${rng.int(1000)}` });
    case 2:
      return jsonishLine(rng);
    case 3:
      return rng.pick(['', '{', '{"uid":', 'null', '[]', '"str"', '1', '{"uid":"hx-1","msg":"x","nope":1}', '{"uid":"hx-1"}', '{"uid":"hx-1","transport":"apns","token":"00"}']);
    case 4:
      return rng.bytes(rng.int(200));
    case 5:
      // Over limits.uidsPerMessage (1000), under http.maxBodyBytes.
      return JSON.stringify({ uids: Array.from({ length: 1001 }, (_, i) => String(i)), msg: 'too many' });
    default:
      return Buffer.concat([Buffer.from('{"uid":"hx-1","msg":"'), rng.pick(INVALID_UTF8), Buffer.from('"}')]);
  }
}

function completeRequest(rng: Rng, last: boolean): { text: Buffer; method: string } {
  const method = rng.pick(['GET', 'GET', 'POST', 'POST', 'POST', 'DELETE', 'PUT', 'PATCH', 'HEAD', 'OPTIONS']);
  let path = rng.chance(0.4) ? '/v1/send' : rng.pick(API_PATHS);
  if (rng.chance(0.1)) path = rng.pick(['//[', '//%zz', 'http://[::1', '//x:99999/', '*']);
  const body = method === 'GET' || method === 'HEAD' ? (rng.chance(0.1) ? httpBody(rng) : '') : httpBody(rng);
  const bodyBuf = Buffer.from(body);
  const chunked = bodyBuf.length > 0 && rng.chance(0.2);
  const headers = [
    `${method} ${path} HTTP/1.1`,
    'Host: 127.0.0.1',
    ...(rng.chance(0.3) ? ['Content-Type: application/json'] : []),
    ...(rng.chance(0.2) ? [`Authorization: ${rng.pick(['Bearer x', 'Basic abc', 'Bearer', ''])}`] : []),
    ...(chunked ? ['Transfer-Encoding: chunked'] : bodyBuf.length > 0 || rng.chance(0.3) ? [`Content-Length: ${bodyBuf.length}`] : []),
    ...(last ? ['Connection: close'] : []),
  ];
  let payload = bodyBuf;
  if (chunked) {
    const parts: Buffer[] = [];
    for (let at = 0; at < bodyBuf.length; ) {
      const n = Math.min(bodyBuf.length - at, rng.range(1, 64));
      parts.push(Buffer.from(`${n.toString(16)}\r\n`), bodyBuf.subarray(at, at + n), Buffer.from('\r\n'));
      at += n;
    }
    parts.push(Buffer.from('0\r\n\r\n'));
    payload = Buffer.concat(parts);
  }
  return { text: Buffer.concat([Buffer.from(`${headers.join('\r\n')}\r\n\r\n`), payload]), method };
}

function httpPlan(rng: Rng): HttpPlan {
  const kind = rng.pick<HttpKind>(['complete', 'complete', 'complete', 'malformed', 'malformed', 'incomplete', 'oversized']);
  let data: Buffer;
  let desc: string;
  const methods: string[] = [];
  switch (kind) {
    case 'complete': {
      const n = rng.chance(0.3) ? rng.range(2, 5) : 1;
      const parts: Buffer[] = [];
      for (let i = 0; i < n; i++) {
        const r = completeRequest(rng, i === n - 1);
        parts.push(r.text);
        methods.push(r.method);
      }
      data = Buffer.concat(parts);
      desc = `${n} request(s): ${methods.join(',')}`;
      break;
    }
    case 'malformed': {
      const choice = rng.int(10);
      const cl = rng.pick(['abc', '-1', '1.5', '0x10', ' ', '1 2', '99999999999999999999999']);
      const variants = [
        // Garbage that is not HTTP: a byte no method starts with, then anything.
        Buffer.concat([Buffer.from([rng.pick([0x00, 0x16, 0x7b, 0x20, 0xff, 0x0d])]), rng.bytes(rng.range(1, 500)), Buffer.from('\r\n\r\n')]),
        Buffer.from(`POST /v1/send HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${cl}\r\n\r\n{}`),
        Buffer.from('POST /v1/send HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x'),
        Buffer.from('POST /v1/send HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}'),
        Buffer.from('POST /v1/send HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n'),
        Buffer.from(`${rng.pick(['FOO', 'G ET', 'GET\t', 'get'])} /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`),
        Buffer.from(`GET /h\u00ffz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`, 'latin1'),
        Buffer.from(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header: y\r\nX-Nul: a\u0000b\r\n\r\n`),
        Buffer.from(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'b'.repeat(20_000)}\r\n\r\n`),
        Buffer.from(`GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n${'no colon here'}\r\n\r\n`),
      ];
      data = variants[choice] as Buffer;
      desc = `malformed #${choice}`;
      break;
    }
    case 'incomplete': {
      const choice = rng.int(3);
      data = [
        Buffer.from('POST /v1/send HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{"uid":"hx-1"'),
        Buffer.from('POST /v1/send HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{"uid\r\n'),
        Buffer.from('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: 1'),
      ][choice] as Buffer;
      desc = `incomplete #${choice}`;
      break;
    }
    default: {
      const choice = rng.int(3);
      const big = Buffer.from(JSON.stringify({ uid: 'hx-1', msg: 'z'.repeat(MAX_BODY + rng.int(5000)) }));
      if (choice === 0) data = Buffer.concat([Buffer.from(`POST /v1/send HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${big.length}\r\n\r\n`), big]);
      else if (choice === 1) data = Buffer.from(`POST /v1/send HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${10 ** rng.range(5, 12)}\r\n\r\n{"uid":`);
      else {
        const parts = [Buffer.from('POST /v1/send HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n')];
        for (let at = 0; at < big.length; at += 1000) {
          const piece = big.subarray(at, at + 1000);
          parts.push(Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n'));
        }
        parts.push(Buffer.from('0\r\n\r\n'));
        data = Buffer.concat(parts);
      }
      methods.push('POST');
      desc = `oversized #${choice}`;
    }
  }
  const cuts = rng.chance(0.5) ? Array.from({ length: rng.range(1, 8) }, () => rng.int(data.length)).sort((a, b) => a - b) : [];
  return { kind, methods, data, cuts, desc };
}

async function runHttpPlan(t: TestContext, port: number, plan: HttpPlan, n: number, statuses: Map<number, number>): Promise<void> {
  const c = await RawConn.open(t, port);
  let from = 0;
  for (const to of [...plan.cuts, plan.data.length]) {
    if (to > from) c.write(plan.data.subarray(from, to));
    from = Math.max(from, to);
    await sleep(1);
  }
  const tag = `http plan #${n} (${plan.desc})`;
  const check = () => {
    const parsed = parseHttpResponses(c.buf, plan.methods);
    assert.equal(parsed.problem, undefined, `${tag}: ${parsed.problem}; got ${JSON.stringify(c.buf.subarray(0, 300).toString('latin1'))}`);
    parsed.responses.forEach((r, i) => {
      statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
      assert.equal(apiResponseProblem(r, plan.methods[i] ?? 'GET'), undefined, tag);
    });
    return parsed;
  };
  switch (plan.kind) {
    case 'complete': {
      // Every request answered; the last asked for Connection: close, so the server closes.
      assert.ok(await c.waitClosed(), `${tag}: the server answered and closed; got ${JSON.stringify(c.buf.subarray(0, 300).toString('latin1'))}`);
      const parsed = check();
      assert.equal(parsed.incomplete, false, `${tag}: a truncated response`);
      // One response per request; a response that closes the connection (a refused body) ends them.
      const closing = parsed.responses.findIndex((r) => r.headers.connection === 'close');
      const due = closing >= 0 && closing < plan.methods.length - 1 ? closing + 1 : plan.methods.length;
      assert.equal(parsed.responses.length, due, `${tag}: one response per request (statuses ${parsed.responses.map((r) => r.status)})`);
      break;
    }
    case 'malformed': {
      // Not HTTP: the server drops the connection (any bytes it sent first must be a response).
      assert.ok(await c.waitClosed(), `${tag}: the server closed the connection`);
      const parsed = check();
      assert.equal(parsed.incomplete, false, `${tag}: a truncated response`);
      break;
    }
    case 'incomplete': {
      // The request never completes: no answer is due; the server holds it without blocking others.
      await sleep(300);
      const health = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(HANG_MS) });
      assert.equal(health.status, 200, `${tag}: another request is served while this one stalls`);
      await health.arrayBuffer();
      const parsed = check();
      assert.equal(parsed.responses.length, 0, `${tag}: nothing answered for a request that never completed`);
      c.socket.destroy();
      break;
    }
    case 'oversized': {
      assert.ok(await c.waitFor(() => parseHttpResponses(c.buf, plan.methods).responses.length > 0), `${tag}: a response`);
      const parsed = check();
      const r = parsed.responses[0] as HttpResponse;
      assert.equal(r.status, 413, `${tag}: 413`);
      assert.equal((JSON.parse(r.body.toString()) as { code: string }).code, 'NOTIFY_ERR_BODY_TOO_LARGE');
      assert.equal(r.headers.connection, 'close', `${tag}: the connection is not kept after a refused body`);
      assert.ok(await c.waitClosed(), `${tag}: then closed`);
      break;
    }
  }
}

/**
 * Slowloris: a request line, then one valid header byte every 200 ms, never finishing. The
 * server (headersTimeout 10 s, checked every 2 s) must cut it off, around 10-12 s in on an idle
 * machine; the test asserts that it does, not how soon.
 */
async function slowloris(t: TestContext, port: number, head: string): Promise<{ closed: boolean; closedAfterMs: number; sent: number; reply: string }> {
  const c = await RawConn.open(t, port);
  c.write(head);
  const trickle = `X-Trickle: ${'abcdefghij'.repeat(20)}`;
  let sent = 0;
  const timer = setInterval(() => {
    if (c.isClosed) return;
    c.write(trickle[sent % trickle.length] as string);
    sent++;
  }, 200);
  let closed: boolean;
  try {
    closed = await c.waitClosed();
  } finally {
    clearInterval(timer);
  }
  return { closed, closedAfterMs: (c.closedAt ?? Date.now()) - c.openedAt, sent, reply: c.buf.toString('latin1') };
}

// ---------------------------------------------------------------------------------------------
// WebSocket port fuzz
// ---------------------------------------------------------------------------------------------

const PROTOCOL_ERROR = 1002;

type WsCase = (t: TestContext, d: TestDaemon, port: number) => Promise<string>;

const uidsOf = (d: TestDaemon) => d.registry.index('websocket');

/** A case that upgrades, sends `frames`, and expects the server to close with `code`. */
function closesWith(name: string, frames: Buffer[], code: number, opts: { bindFirst?: string } = {}): WsCase {
  return async (t, d, port) => {
    const { ws, status, head } = await wsHandshake(t, port);
    assert.ok(ws, `${name}: upgrade answered ${status}: ${head}`);
    if (opts.bindFirst !== undefined) {
      ws.send(wsFrame(1, Buffer.from(opts.bindFirst)));
      await until(() => uidsOf(d).has(opts.bindFirst as string), `${name}: ${opts.bindFirst} to bind`);
    }
    for (const f of frames) ws.send(f);
    const got = await ws.closeCode();
    assert.equal(got, code, `${name}: close code (frames so far: ${JSON.stringify(ws.frames().frames.map((f) => f.opcode))})`);
    assert.equal(ws.frames().problem, undefined, `${name}: server frames are valid`);
    assert.ok(await ws.conn.waitClosed(), `${name}: the server closes the TCP connection after the close handshake`);
    if (opts.bindFirst !== undefined) await until(() => !uidsOf(d).has(opts.bindFirst as string), `${name}: ${opts.bindFirst} to be unbound`);
    return `${name} -> ${code}`;
  };
}

function wsCase(rng: Rng, n: number): WsCase {
  const uid = `wf-${n}`;
  const text = (s: string | Buffer, o: { fin?: boolean; mask?: boolean; rsv?: number } = {}) => wsFrame(1, Buffer.from(s), o);
  switch (rng.int(24)) {
    case 0: {
      // Raw TCP garbage instead of an upgrade request.
      const garbage = Buffer.concat([Buffer.from([rng.pick([0x00, 0x16, 0x7b, 0x20, 0xff, 0x0d, 0x81])]), rng.bytes(rng.range(1, 2000))]);
      return async (t, _d, port) => {
        const c = await RawConn.open(t, port);
        c.write(garbage);
        assert.ok(await c.waitClosed(), 'garbage: the server closed the connection');
        const parsed = parseHttpResponses(c.buf, ['GET']);
        assert.equal(parsed.problem, undefined, `garbage: whatever came back is HTTP: ${c.buf.subarray(0, 200).toString('latin1')}`);
        return 'garbage -> closed';
      };
    }
    case 1: {
      const key = rng.pick<string | null>([null, '', 'abc', 'not base64 at all!!!!==', randomBytes(15).toString('base64'), randomBytes(20).toString('base64'), 'AAAAAAAAAAAAAAAAAAAAAA=']);
      return async (t, _d, port) => {
        const { status, conn, head } = await wsHandshake(t, port, { key });
        assert.equal(status, 400, `bad Sec-WebSocket-Key ${JSON.stringify(key)}: ${head}`);
        assert.ok(await conn.waitClosed(), 'bad key: closed');
        return 'bad key -> 400';
      };
    }
    case 2: {
      const version = rng.pick(['7', '99', '', 'x']);
      const upgrade = rng.pick(['websocket', 'websocket', 'h2c', 'WebSocket2']);
      return async (t, _d, port) => {
        const { status, conn, head } = await wsHandshake(t, port, { version, upgrade });
        assert.ok(status !== undefined && status >= 400 && status < 500, `version ${version} / upgrade ${upgrade}: a 4xx, got ${head}`);
        assert.ok(await conn.waitClosed(), 'bad version: closed');
        return `bad version/upgrade -> ${status}`;
      };
    }
    case 3:
      return closesWith('invalid UTF-8 text', [text(Buffer.concat([Buffer.from('uid'), rng.pick(INVALID_UTF8)]))], 1007);
    case 4:
      return closesWith('invalid UTF-8 after bind', [text(Buffer.concat([rng.pick(INVALID_UTF8), Buffer.from('x')]))], 1007, { bindFirst: uid });
    case 5:
      return closesWith('oversized frame', [text('o'.repeat(rng.range(MAX_PAYLOAD + 1, 5 * MAX_PAYLOAD)))], 1009);
    case 6:
      return closesWith('oversized fragmented message', [text('f'.repeat(700), { fin: false }), wsFrame(0, Buffer.from('g'.repeat(700)))], 1009, rng.chance(0.5) ? { bindFirst: uid } : {});
    case 7: {
      // A uid in fragments with a ping between them: the ping is answered, the uid binds whole.
      const k = rng.range(2, Math.min(6, uid.length));
      const cuts = [...new Set(Array.from({ length: k - 1 }, () => rng.range(1, uid.length - 1)))].sort((a, b) => a - b);
      const pieces = [0, ...cuts].map((at, i) => uid.slice(at, cuts[i] ?? uid.length));
      const pingAt = rng.range(1, pieces.length - 1);
      const pingPayload = Buffer.from(`p${n}`);
      return async (t, d, port) => {
        const { ws } = await wsHandshake(t, port);
        assert.ok(ws);
        pieces.forEach((p, i) => {
          if (i === pingAt) ws.send(wsFrame(9, pingPayload));
          ws.send(wsFrame(i === 0 ? 1 : 0, Buffer.from(p), { fin: i === pieces.length - 1 }));
        });
        const pong = await ws.conn.waitFor(() => ws.frames().frames.some((f) => f.opcode === 10 && f.payload.equals(pingPayload)));
        assert.ok(pong, `fragmented bind: the interleaved ping was answered: ${JSON.stringify(ws.frames())}`);
        await until(() => uidsOf(d).has(uid), `fragmented bind ${JSON.stringify(pieces)}: ${uid} bound whole`);
        ws.send(wsFrame(8, closePayload(1000)));
        assert.equal(await ws.closeCode(), 1000, 'fragmented bind: a normal close is echoed');
        await until(() => !uidsOf(d).has(uid), `${uid} unbound after the close`);
        return 'fragmented bind with a ping -> bound';
      };
    }
    case 8:
      // A message that never finishes: nothing binds, so ws.bindTimeout closes it (4408).
      return closesWith('unfinished fragmented message', [text('wf-never', { fin: false })], 4408);
    case 9:
      return closesWith('unmasked frame', [text(uid, { mask: false })], PROTOCOL_ERROR, rng.chance(0.5) ? { bindFirst: uid } : {});
    case 10:
      return closesWith('reserved opcode', [wsFrame(rng.pick([3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf]), Buffer.from('x'))], PROTOCOL_ERROR);
    case 11:
      return closesWith('RSV bits', [text(uid, { rsv: rng.range(1, 7) })], PROTOCOL_ERROR);
    case 12:
      return closesWith('binary first frame', [wsFrame(2, rng.bytes(rng.range(1, 100)))], 1003);
    case 13: {
      const code = rng.pick([0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535]);
      return closesWith(`close code ${code}`, [wsFrame(8, closePayload(code))], PROTOCOL_ERROR, rng.chance(0.5) ? { bindFirst: uid } : {});
    }
    case 14:
      return closesWith('close frame of one byte', [wsFrame(8, Buffer.from([3]))], PROTOCOL_ERROR);
    case 15:
      return closesWith('close reason not UTF-8', [wsFrame(8, closePayload(1000, Buffer.concat([Buffer.from('r'), rng.pick(INVALID_UTF8)])))], 1007);
    case 16:
      return closesWith('control frame over 125 bytes', [wsFrame(9, Buffer.alloc(126, 1))], PROTOCOL_ERROR);
    case 17:
      return closesWith('fragmented control frame', [wsFrame(9, Buffer.from('p'), { fin: false })], PROTOCOL_ERROR);
    case 18:
      return closesWith('continuation with nothing to continue', [wsFrame(0, Buffer.from(uid))], PROTOCOL_ERROR);
    case 19:
      return closesWith('new message inside a fragmented one', [text('wf-', { fin: false }), text('again')], PROTOCOL_ERROR);
    case 20: {
      // Half-open: the client ends its side right after the upgrade (or after binding).
      const bind = rng.chance(0.5);
      return async (t, d, port) => {
        const { ws } = await wsHandshake(t, port);
        assert.ok(ws);
        if (bind) {
          ws.send(wsFrame(1, Buffer.from(uid)));
          await until(() => uidsOf(d).has(uid), `${uid} to bind`);
        }
        ws.conn.socket.end();
        assert.ok(await ws.conn.waitClosed(), `half-open${bind ? ' after bind' : ''}: the server closes`);
        await until(() => !uidsOf(d).has(uid), `${uid} unbound after a half-close`);
        return 'half-open -> closed';
      };
    }
    case 21: {
      // A bound plain session sends junk: ignored, the session stays and answers pings.
      const junk = Array.from({ length: rng.range(1, 10) }, () => (rng.chance(0.5) ? wsFrame(1, Buffer.from(rng.text(rng.int(200)))) : wsFrame(2, rng.bytes(rng.int(200)))));
      return async (t, d, port) => {
        const { ws } = await wsHandshake(t, port);
        assert.ok(ws);
        ws.send(wsFrame(1, Buffer.from(uid)));
        for (const j of junk) ws.send(j);
        ws.send(wsFrame(9, Buffer.from('alive?')));
        assert.ok(await ws.conn.waitFor(() => ws.frames().frames.some((f) => f.opcode === 10)), 'junk after bind: still answers a ping');
        assert.ok(uidsOf(d).has(uid), 'junk after bind: still bound');
        ws.send(wsFrame(8, closePayload(1000)));
        assert.equal(await ws.closeCode(), 1000);
        return 'junk after bind -> ignored';
      };
    }
    default: {
      // Random bytes after a valid upgrade.
      const bytes = rng.bytes(rng.range(1, 3000));
      return async (t, _d, port) => {
        const { ws } = await wsHandshake(t, port);
        assert.ok(ws);
        ws.send(bytes);
        // Unbound, so it ends one way or another within ws.bindTimeout; unless the bytes bound a uid.
        await ws.closeCode();
        assert.equal(ws.frames().problem, undefined, 'random frames: server frames are valid');
        ws.conn.socket.destroy();
        return 'random bytes after upgrade';
      };
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

test('abuse: random and malformed input at every port, at once; afterwards the daemon serves new clients and has lost no acknowledged message', { timeout: 300_000, concurrency: true }, async (t) => {
  t.diagnostic(REPLAY);
  const d = await startDaemon(t, ABUSE_CONFIG, 'warn');
  const wsPort = portOf(d.addresses().ws);
  const httpPort = portOf(d.addresses().http);
  const health = () => d.registry.index('websocket');

  // --- Before the abuse: a resuming victim, a publisher with ids, a bystander ------------------
  const victim = new ResumingClient();
  await victim.connect(t, d.wsUrl, 'victim', null);
  await until(() => health().has('victim'), 'victim to bind');
  const bystander = await wsClient(t, d.wsUrl, { bind: 'bystander' });
  await until(() => health().has('bystander'), 'bystander to bind');

  const publisher = await TextPublisher.open(t, d.textPort);
  const N = 200;
  for (let i = 0; i < N; i++) publisher.send(`pre-${i}`, { uid: 'victim', n: i, msg: `before ${i}` });
  await publisher.drained('the messages before the abuse');
  assert.deepEqual(publisher.replies.filter((r) => r !== 'ok'), [], 'the victim is online: every message before the abuse is ok');

  // During the abuse: the publisher goes on (one line every 20 ms), and a bystander gets an HTTP
  // push every 50 ms.
  let n = N;
  const stream = setInterval(() => {
    publisher.send(`mid-${n}`, { uid: 'victim', n, msg: `during ${n}` });
    n++;
  }, 20);
  const bystanderSent: string[] = [];
  const bystanderErrors: string[] = [];
  let pushes = 0;
  const pusher = setInterval(() => {
    const msg = `b-${pushes++}`;
    fetch(`${d.httpUrl}/v1/send`, { method: 'POST', body: JSON.stringify({ uid: 'bystander', msg }), signal: AbortSignal.timeout(HANG_MS) })
      .then(async (res) => {
        const report = (await res.json()) as { delivered?: boolean };
        if (res.status === 200 && report.delivered === true) bystanderSent.push(msg);
        else bystanderErrors.push(`${msg}: ${res.status} ${JSON.stringify(report)}`);
      })
      .catch((err: unknown) => bystanderErrors.push(`${msg}: ${String(err)}`));
  }, 50);
  t.after(() => {
    clearInterval(stream);
    clearInterval(pusher);
  });

  // --- The abuse, all at once ------------------------------------------------------------------
  const started = Date.now();
  await Promise.all([
    t.test('text ingress: random bytes, JSON-ish lines, invalid UTF-8, huge lines, random splits, CR without LF, NUL, half-open, destroyed mid-line', { timeout: 120_000 }, seeded(async (t) => {
      const rng = rngFor('text');
      const plans = Array.from({ length: 140 }, () => textPlan(rng));
      let lines = 0;
      await pool(plans, 16, async (plan, i) => {
        const r = await runTextPlan(t, d.textPort, plan, i);
        lines += r.lines;
      });
      t.diagnostic(`${plans.length} connections, ${lines} request lines answered as expected`);
      assert.ok(lines > 500, `the fuzz exercised the ingress (${lines} lines)`);
    })),
    t.test('text ingress: connections that never read their replies while writing thousands of lines are held back, not buffered', { timeout: 120_000 }, seeded(async (t) => {
      const readers = await Promise.all([0, 1, 2].map(() => slowTextReader(t, d.textPort)));
      for (const r of readers) {
        t.diagnostic(`slow reader: ${r.written} lines written, ${r.backlog} bytes held back on the client`);
        // The daemon stopped reading this connection: our writes pile up here, not in the daemon.
        assert.ok(r.backlog >= 1024 * 1024, `the daemon stopped reading a client that does not read (${r.written} lines written, backlog ${r.backlog})`);
      }
      // Meanwhile a normal connection is served at once.
      const c = await textClient(t, d.textPort);
      c.write('{"uid":"tx-99","msg":"while others do not read"}\n');
      assert.deepEqual(await c.replies(1), ['fail']);
    })),
    t.test('http api: random methods, paths and bodies, malformed JSON, invalid Content-Length, huge and stalled bodies', { timeout: 120_000 }, seeded(async (t) => {
      const rng = rngFor('http');
      const plans = Array.from({ length: 220 }, () => httpPlan(rng));
      const statuses = new Map<number, number>();
      await pool(plans, 12, (plan, i) => runHttpPlan(t, httpPort, plan, i, statuses));
      t.diagnostic(`statuses: ${JSON.stringify(Object.fromEntries([...statuses].sort((a, b) => a[0] - b[0])))}`);
      assert.ok([...statuses.keys()].some((s) => s >= 400 && s < 500), 'some requests were refused with a 4xx');
      assert.ok(statuses.has(200), 'some requests were served');
      assert.ok(statuses.has(413), 'an oversized body was refused with 413');
    })),
    t.test('http api: a slowloris header trickle is cut off by the headers timeout', { timeout: 120_000 }, seeded(async (t) => {
      const r = await slowloris(t, httpPort, 'GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n');
      t.diagnostic(`http slowloris: closed after ${r.closedAfterMs} ms, ${r.sent} header bytes trickled`);
      assert.ok(r.closed, `the server cut the trickle off (still open after ${r.closedAfterMs} ms, ${r.sent} bytes trickled)`);
      assert.ok(r.closedAfterMs >= 5_000, `the trickle was valid, so it was the headers timeout that ended it, not a parse error (closed after ${r.closedAfterMs} ms; got ${JSON.stringify(r.reply)})`);
      assert.equal(parseHttpResponses(Buffer.from(r.reply, 'latin1'), ['GET']).problem, undefined, `only a valid response, if any: ${JSON.stringify(r.reply)}`);
    })),
    t.test('websocket port: garbage, bad handshakes, invalid UTF-8, oversized, fragmented and unfinished messages, unmasked frames, reserved opcodes, bad close frames, half-open', { timeout: 120_000 }, seeded(async (t) => {
      const rng = rngFor('ws');
      const cases = Array.from({ length: 220 }, (_, i) => wsCase(rng, i));
      const outcomes = new Map<string, number>();
      await pool(cases, 12, async (c) => {
        const what = await c(t, d, wsPort);
        outcomes.set(what, (outcomes.get(what) ?? 0) + 1);
      });
      t.diagnostic(`outcomes: ${JSON.stringify(Object.fromEntries(outcomes))}`);
      assert.ok(outcomes.size >= 15, `many kinds of abuse were tried (${outcomes.size})`);
    })),
    t.test('websocket port: a session that never reads while pushes flow is dropped as a slow consumer; the other session of its uid gets every push', { timeout: 120_000 }, seeded(async (t) => {
      const { ws: slow } = await wsHandshake(t, wsPort);
      assert.ok(slow);
      slow.send(wsFrame(1, Buffer.from('slowpoke')));
      await until(() => health().has('slowpoke'), 'slowpoke to bind');
      const slowSid = health().targets('slowpoke')[0] as string;
      slow.conn.socket.pause();
      const healthy = await wsClient(t, d.wsUrl, { bind: 'slowpoke' });
      await until(() => health().targets('slowpoke').length === 2, 'the healthy session of slowpoke to bind');

      const pub = await TextPublisher.open(t, d.textPort);
      const pad = 'p'.repeat(3800);
      let i = 0;
      while (health().targets('slowpoke').includes(slowSid) && i < 4000) {
        for (let k = 0; k < 20; k++, i++) pub.send(`sp-${i}`, { uid: 'slowpoke', n: i, pad });
        await pub.drained('slowpoke pushes');
      }
      t.diagnostic(`slow session dropped after ${i} pushes of ${pad.length} bytes`);
      assert.ok(!health().targets('slowpoke').includes(slowSid), `the slow session was dropped within ${i} pushes (~${Math.round((i * pad.length) / 1e6)} MB)`);
      const dropped = d.logs.find((l) => l.msg === 'slow consumer dropped' && l.sid === slowSid);
      assert.ok(dropped, 'the drop is logged');
      assert.ok(Number(dropped.unsentBytes) > MAX_BUFFERED, `it held more than ws.maxBufferedBytes unsent: ${JSON.stringify(dropped)}`);
      assert.deepEqual(pub.replies.filter((r) => r !== 'ok'), [], 'every push reached the healthy session (ok)');
      await until(() => healthy.frames.length >= i, `the healthy session to get all ${i} pushes (has ${healthy.frames.length})`);
      assert.deepEqual(
        healthy.frames.map((f) => (JSON.parse(f) as { id: string }).id),
        pub.sent,
        'the healthy session got every push, in order, once',
      );
      // The server really dropped the connection: once the client reads again it sees the end.
      slow.conn.socket.resume();
      assert.ok(await slow.conn.waitClosed(), 'the slow connection was closed by the server');
    })),
    t.test('websocket port: a slowloris trickle of upgrade-request headers is cut off by the headers timeout', { timeout: 120_000 }, seeded(async (t) => {
      const r = await slowloris(
        t,
        wsPort,
        `GET /?uid=loris HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${GOOD_KEY()}\r\n`,
      );
      t.diagnostic(`ws slowloris: closed after ${r.closedAfterMs} ms, ${r.sent} header bytes trickled`);
      assert.ok(r.closed, `the server cut the trickle off (still open after ${r.closedAfterMs} ms, ${r.sent} bytes trickled)`);
      assert.ok(r.closedAfterMs >= 5_000, `it was the headers timeout that ended it (closed after ${r.closedAfterMs} ms; got ${JSON.stringify(r.reply)})`);
      assert.equal(health().has('loris'), false, 'nothing bound');
    })),
  ]);
  clearInterval(stream);
  clearInterval(pusher);
  t.diagnostic(`abuse took ${Date.now() - started} ms; ${n - N} messages published to the victim meanwhile, ${pushes} bystander pushes`);

  // --- Afterwards ------------------------------------------------------------------------------
  await t.test('afterwards: no leftover connection, new plain and resuming clients are served, every connection slot was given back, and no acknowledged message was lost', { timeout: 120_000 }, seeded(async (t) => {
    await publisher.drained('the messages published during the abuse');
    await until(() => pushes === bystanderSent.length + bystanderErrors.length, 'every bystander push to be answered');
    assert.deepEqual(bystanderErrors, [], 'every bystander push was answered 200 and delivered');
    await until(() => bystander.frames.length >= bystanderSent.length, `the bystander to get ${bystanderSent.length} pushes`);
    assert.deepEqual([...bystander.frames].sort(), [...bystanderSent].sort(), 'the bystander got every push, once');
    assert.equal(bystander.ws.readyState, WebSocket.OPEN, 'the bystander is still connected');

    const okIds = publisher.okIds();
    assert.equal(okIds.length, publisher.sent.length, `the victim stayed online: every message was ok (${JSON.stringify(publisher.replies.filter((r) => r !== 'ok').slice(0, 5))})`);

    // Only the clients this test keeps are left: the victim and the bystander (each part closed
    // its own clients when it ended). Nothing from the abuse lingers, bound or not.
    await eventually(
      async () => health().targetCount === 2 && (await wsConnections(d)) === 2,
      async () => `only the victim and the bystander to be left (sessions: ${JSON.stringify([...health().uids()])}, connections: ${await wsConnections(d)})`,
    );
    assert.deepEqual([...health().uids()].sort(), ['bystander', 'victim']);
    const h = (await (await fetch(`${d.httpUrl}/healthz`)).json()) as { status: string; transports: { websocket: { state: string } } };
    assert.equal(h.status, 'ok');
    assert.equal(h.transports.websocket.state, 'running');

    // The victim's own session got every message once.
    const victimMissing = okIds.filter((id) => !victim.seen.has(id));
    assert.deepEqual(victimMissing.slice(0, 10), [], `the victim's session got every ok message (${victimMissing.length} missing)`);
    assert.deepEqual([...victim.seen].filter(([, c]) => c > 1), [], 'the victim got no message twice');

    // A new resuming client of the victim, since null: every ok message, each once, in order.
    const fresh = new ResumingClient();
    await fresh.connect(t, d.wsUrl, 'victim', null);
    await until(() => okIds.every((id) => fresh.seen.has(id)), `every ok message in the replay (missing ${okIds.filter((id) => !fresh.seen.has(id)).length} of ${okIds.length}, e.g. ${okIds.filter((id) => !fresh.seen.has(id)).slice(0, 5)})`);
    // A marker published now comes after the whole replay: once it is in, a duplicate would be too.
    const marker = await fetch(`${d.httpUrl}/v1/send`, { method: 'POST', body: JSON.stringify({ uid: 'victim', msg: 'after the replay', id: 'victim-marker' }) });
    assert.equal(marker.status, 200);
    await until(() => fresh.seen.has('victim-marker'), 'the marker after the replay');
    assert.deepEqual([...fresh.seen].filter(([, c]) => c > 1), [], 'no message replayed twice');
    assert.deepEqual(fresh.other, [], 'no gap and nothing else in the replay');
    for (let i = 1; i < fresh.order.length; i++) assert.ok((fresh.order[i] as number) > (fresh.order[i - 1] as number), `replayed in order: ${fresh.order[i - 1]} then ${fresh.order[i]}`);

    // New clients are served: a plain one (Text and HTTP pushes) and a resuming one.
    const plain = await wsClient(t, d.wsUrl, { bind: 'after-plain' });
    await until(() => health().has('after-plain'), 'after-plain to bind');
    const tc = await textClient(t, d.textPort);
    tc.write('{"uid":"after-plain","msg":"via text"}\n');
    assert.deepEqual(await tc.replies(1), ['ok']);
    assert.equal(await plain.frame(1), '{"uid":"after-plain","msg":"via text"}');
    const res = await fetch(`${d.httpUrl}/v1/send`, { method: 'POST', body: JSON.stringify({ uid: 'after-plain', msg: 'via http' }) });
    assert.equal(res.status, 200);
    assert.equal(((await res.json()) as { sent: number }).sent, 1);
    assert.equal(await plain.frame(2), 'via http');

    const resuming = new ResumingClient();
    await resuming.connect(t, d.wsUrl, 'after-resume', null);
    await until(() => health().has('after-resume'), 'after-resume to bind');
    const r2 = await fetch(`${d.httpUrl}/v1/send`, { method: 'POST', body: JSON.stringify({ uid: 'after-resume', msg: 'hi', id: 'after-1' }) });
    assert.equal(((await r2.json()) as { delivered: boolean }).delivered, true);
    await until(() => resuming.seen.get('after-1') === 1, 'the resuming client to get after-1');

    // Every connection slot of 127.0.0.1 was given back: with limits.connectionsPerIp 64 and
    // hundreds of refused, broken and closed connections behind us, 64 may be open at once again.
    await eventually(async () => (await wsConnections(d)) === health().targetCount, async () => 'every connection to be a session');
    const room = PER_IP - (await wsConnections(d));
    assert.ok(room > 40, `room for ${room} more`);
    const extra: WebSocket[] = [];
    const opened = await Promise.allSettled(
      Array.from({ length: room }, (_, i) => {
        const w = new WebSocket(`${d.wsUrl}?uid=slot-${i}`);
        extra.push(w);
        w.on('error', () => {});
        return new Promise<void>((resolve, reject) => {
          w.once('open', () => resolve());
          w.once('unexpected-response', (_req, r) => reject(new Error(`slot ${i}: HTTP ${r.statusCode}`)));
          w.once('close', () => reject(new Error(`slot ${i}: closed`)));
        });
      }),
    );
    t.after(() => extra.forEach((w) => w.terminate()));
    const refused = opened.filter((o) => o.status === 'rejected').map((o) => String((o as PromiseRejectedResult).reason));
    assert.deepEqual(refused.slice(0, 5), [], `${room} more connections fit under limits.connectionsPerIp ${PER_IP}: no slot leaked (${refused.length} refused)`);
    // And the cap is real: one more is refused with 503.
    const over = new WebSocket(`${d.wsUrl}?uid=slot-over`);
    over.on('error', () => {});
    t.after(() => over.terminate());
    const overStatus = await new Promise<number>((resolve) => {
      over.once('unexpected-response', (_req, r) => resolve(r.statusCode ?? 0));
      over.once('open', () => resolve(101));
    });
    assert.equal(overStatus, 503, 'one more is over the per-IP cap');
  }));
});

/** The daemon's WebSocket connections, bound or not, as /healthz reports them. */
async function wsConnections(d: TestDaemon): Promise<number> {
  const h = (await (await fetch(`${d.httpUrl}/healthz`)).json()) as { transports: { websocket: { connections: number } } };
  return h.transports.websocket.connections;
}

/** Polls an async check until it holds; fails with `what()` after `ms`. */
async function eventually(check: () => Promise<boolean>, what: () => Promise<string>, ms = HANG_MS): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${await what()}`);
    await sleep(50);
  }
}

// ---------------------------------------------------------------------------------------------
// Bugs the fuzz surfaced, pinned down
// ---------------------------------------------------------------------------------------------

test('http api: a malformed request target (//[, http://[::1) is the client\'s error: 4xx with {code, error}, not a 500 logged as a server error', async (t) => {
  const d = await startDaemon(t, ABUSE_CONFIG, 'warn');
  const port = portOf(d.addresses().http);
  for (const target of ['//[', '//%zz', 'http://[::1', '//x:99999/']) {
    const c = await RawConn.open(t, port);
    c.write(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`);
    assert.ok(await c.waitClosed(), `${target}: answered and closed`);
    const { responses, problem } = parseHttpResponses(c.buf, ['GET']);
    assert.equal(problem, undefined);
    const r = responses[0];
    assert.ok(r, `${target}: a response`);
    assert.equal(apiResponseProblem(r, 'GET'), undefined);
    assert.ok(r.status >= 400 && r.status < 500, `${target}: a 4xx for a bad request target, got ${r.status} ${r.body.toString()}`);
  }
  assert.deepEqual(
    d.logs.filter((l) => l.level === 'error'),
    [],
    'bad client input is not logged as a server error',
  );
});

test('text ingress: a reply line never carries a raw CR or other control character from the request, so a line reader that also splits at CR stays in step', async (t) => {
  const d = await startDaemon(t, ABUSE_CONFIG, 'warn');
  const c = await textClient(t, d.textPort);
  // Bad JSON whose error message quotes the line: a CR, a NUL, an ESC inside.
  const requests = ['x\ry', '\u0000', '\u001b[31mred', 'ab\rcd\ref', '{"uid":"tx-1","msg":"ok"}'];
  c.write(requests.map((r) => `${r}\n`).join(''));
  const replies = await c.replies(requests.length);
  assert.equal(replies.length, requests.length);
  replies.forEach((reply, i) => {
    assert.equal(textReplyProblem(reply), undefined);
    // eslint-disable-next-line no-control-regex
    assert.doesNotMatch(reply, /[\u0000-\u0008\u000b-\u001f\u007f]/, `reply to ${JSON.stringify(requests[i])} has a raw control character: ${JSON.stringify(reply)}`);
  });
  // Split as Node's readline (and many line readers) do, at \r, \n or \r\n: one reply per request.
  const raw = replies.join('\n');
  assert.equal(raw.split(/\r\n|\r|\n/).length, requests.length, `readline would see ${JSON.stringify(raw.split(/\r\n|\r|\n/))}`);
});
