import { isUtf8 } from 'node:buffer';
import { createServer, type Server, type Socket } from 'node:net';
import type { Publisher } from '../delivery/publisher.js';
import { errorMessage } from '../errors.js';
import { closeServer, listen } from '../net/listen.js';
import type { Logger } from '../obs/log.js';
import type { RefusalLog } from '../obs/refusals.js';
import { type Telemetry, noTelemetry } from '../obs/metrics.js';
import { AllowList, unmapped } from '../net/allow.js';
import { messageFromLine, parseAudience, parsePublishOptions } from '../message.js';

export interface TextIngressOptions {
  /** "host:port". @default '127.0.0.1:5678' */
  listen: string;
  /** Longest request line, without its line ending. */
  maxLineBytes: number;
  /** Lines of one connection in delivery at once; past it the connection is not read. */
  maxPipelinedLines: number;
  /**
   * Reply bytes of one connection not yet taken by its client (the socket's unsent data plus
   * replies waiting for an earlier one); past it the connection is not read. @default 16 × maxLineBytes
   */
  maxPendingReplyBytes?: number;
  publisher: Publisher;
  /** Peers allowed besides loopback (CIDRs). @default [] */
  allow?: readonly string[];
  telemetry?: Telemetry;
  log: Logger;
  /** How long stop() waits for a connection's pending replies. @default 5000 */
  closeTimeoutMs?: number;
  /** Where refused peers and lines are logged (rate-limited). */
  refusals?: RefusalLog;
}

const NL = 0x0a;
const CR = 0x0d;

/** Control characters written as \uXXXX: a reply is always one clean line. */
function printable(text: string): string {
  // eslint-disable-next-line no-control-regex
  return text.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/**
 * Handles one request line and returns its reply line (without the newline):
 * `ok` (at least one target has it now), `fail` (none; it may be stored for sessions that
 * resume), or `error: <what is wrong>`. With `"reply":"json"`, the publish report as one JSON
 * line instead of ok/fail.
 */
export function answerLine(line: string, publisher: Publisher): string | Promise<string> {
  if (line.length === 0) return 'error: empty line; send one JSON object per line, e.g. {"uid":"uid1","msg":"hi"}';
  let obj: unknown;
  try {
    obj = JSON.parse(line);
  } catch (err) {
    // The parser quotes the line back: keep its control characters (CR, ESC, NUL) out of the reply.
    return `error: not JSON (${printable(errorMessage(err))})`;
  }
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) {
    return 'error: expected a JSON object, e.g. {"uid":"uid1","msg":"hi"}';
  }
  const fields = obj as Record<string, unknown>;
  let audience, msg, opts;
  try {
    audience = parseAudience(fields);
    msg = messageFromLine(line, fields);
    opts = parsePublishOptions(fields);
    if (fields.reply !== undefined && fields.reply !== 'json') throw new Error('"reply" must be "json" when given');
  } catch (err) {
    return `error: ${errorMessage(err)}`;
  }
  const json = fields.reply === 'json';
  return publisher.publish(audience, msg, opts, 'text').then(
    (report) => (json ? JSON.stringify(report) : report.delivered ? 'ok' : 'fail'),
    (err: unknown) => `error: ${errorMessage(err)}`,
  );
}

/**
 * The line-based TCP ingress of the original protocol: one JSON object per line in (`\n` or
 * `\r\n`), one reply line out per request line, in request order, however the lines are
 * pipelined or split across packets. A connection stays open for as many lines as the client
 * likes.
 *
 * Memory per connection is bounded: a partial line never grows past maxLineBytes (the rest of
 * an oversized line is skipped up to its newline and answered with one `error:` line), and a
 * connection is paused, the lines it has sent but not yet taken kept unparsed, while it has
 * maxPipelinedLines in delivery or its replies are not being read: their bytes (unsent, or
 * waiting for an earlier reply, plus the lines in delivery at the largest reply size seen) are
 * over maxPendingReplyBytes.
 */
export class TextIngress {
  readonly #opts: Required<Omit<TextIngressOptions, 'refusals'>> & Pick<TextIngressOptions, 'refusals'>;
  readonly #server: Server;
  readonly #conns = new Set<TextConnection>();
  readonly #allow: AllowList;
  #address = '';
  #state: 'new' | 'running' | 'closing' | 'closed' = 'new';

  constructor(opts: TextIngressOptions) {
    for (const key of ['maxLineBytes', 'maxPipelinedLines'] as const) {
      if (!Number.isInteger(opts[key]) || opts[key] <= 0) throw new RangeError(`${key} must be a positive integer`);
    }
    this.#opts = { closeTimeoutMs: 5000, allow: [], telemetry: noTelemetry, maxPendingReplyBytes: 16 * opts.maxLineBytes, ...opts };
    if (!Number.isInteger(this.#opts.maxPendingReplyBytes) || this.#opts.maxPendingReplyBytes <= 0) throw new RangeError('maxPendingReplyBytes must be a positive integer');
    this.#allow = new AllowList(this.#opts.allow);
    this.#server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
      if (!this.#allow.allows(socket.remoteAddress)) {
        // The Text ingress has no authentication: only loopback and text.allow may publish.
        this.#opts.telemetry.refused('textAllow');
        const remote = socket.remoteAddress;
        if (this.#opts.refusals) this.#opts.refusals.refused('textAllow', 'text ingress: peer not allowed', { reason: 'not in text.allow (nor loopback)', remote });
        else this.#opts.log.warn('text ingress: peer not allowed', { remote });
        // Read and drop what it sends, and close once it has gone (or in 5 s): with
        // allowHalfOpen, unread input would keep the socket (and a stop) hanging.
        socket.on('error', () => socket.destroy());
        socket.on('end', () => socket.destroy());
        socket.setTimeout(5000, () => socket.destroy());
        socket.resume();
        socket.end(`error: ${unmapped(socket.remoteAddress ?? '')} is not allowed to publish (text.allow)\n`);
        return;
      }
      const conn = new TextConnection(socket, this.#opts, () => this.#conns.delete(conn));
      this.#conns.add(conn);
    });
  }

  async start(): Promise<void> {
    if (this.#state !== 'new') return;
    this.#state = 'running';
    this.#address = await listen(this.#server, this.#opts.listen, 'text.listen');
  }

  addresses(): Record<string, string> {
    return this.#address ? { text: this.#address } : {};
  }

  get connections(): number {
    return this.#conns.size;
  }

  /** Stops accepting and reading; answers the lines already read, then closes each connection. */
  async stop(): Promise<void> {
    if (this.#state === 'closed' || this.#state === 'closing') return;
    this.#state = 'closing';
    const closed = closeServer(this.#server);
    await Promise.all([...this.#conns].map((c) => c.finish(this.#opts.closeTimeoutMs)));
    await closed;
    this.#state = 'closed';
  }
}

class TextConnection {
  readonly #socket: Socket;
  readonly #opts: Required<Omit<TextIngressOptions, 'refusals'>> & Pick<TextIngressOptions, 'refusals'>;
  /** Bytes of the line being read, when it spans packets. */
  #partial: Buffer | undefined;
  /** True while skipping the rest of an oversized line. */
  #skipping = false;
  /** Replies in request order; undefined while that line is being delivered. */
  #slots: (string | undefined)[] = [];
  #head = 0;
  /** The line number of `#slots[0]` (lines numbered from 0 on this connection). */
  #base = 0;
  /** Bytes of answered replies not yet handed to the socket. */
  #readyBytes = 0;
  /** The largest reply so far: what a line in delivery is expected to add. */
  #replyEstimate: number;
  /** Received, not yet taken: the rest of a chunk, kept while the connection is paused. */
  #backlog: Buffer | undefined;
  #estimated = false;
  #reading = true;
  #writeBlocked = false;
  #ended = false;
  #finishing = false;
  #flushQueued = false;
  readonly #written = () => this.#updateFlow();
  readonly #flushLater = () => {
    this.#flushQueued = false;
    this.#flush();
  };

  constructor(socket: Socket, opts: Required<Omit<TextIngressOptions, 'refusals'>> & Pick<TextIngressOptions, 'refusals'>, onGone: () => void) {
    this.#socket = socket;
    this.#opts = opts;
    this.#replyEstimate = opts.maxLineBytes;
    socket.setKeepAlive(true, 60_000);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('end', () => {
      this.#ended = true;
      this.#endIfDone();
    });
    socket.on('drain', () => {
      this.#writeBlocked = false;
      this.#updateFlow();
    });
    socket.on('error', (err) => {
      opts.log.debug('text connection error', { remote: socket.remoteAddress, error: err.message });
      socket.destroy();
    });
    socket.on('close', onGone);
  }

  #onData(chunk: Buffer): void {
    if (this.#finishing) return;
    this.#take(chunk);
    this.#flush();
  }

  /** Takes lines from `chunk` while the connection may take more; keeps the rest in the backlog. */
  #take(chunk: Buffer): void {
    const max = this.#opts.maxLineBytes;
    let start = 0;
    for (let nl = chunk.indexOf(NL); nl !== -1; nl = chunk.indexOf(NL, start)) {
      if (!this.#skipping && !this.#mayTake()) {
        this.#backlog = chunk.subarray(start);
        this.#updateFlow();
        return;
      }
      if (this.#skipping) {
        this.#skipping = false;
      } else {
        let line = chunk.subarray(start, nl);
        if (this.#partial !== undefined) {
          line = Buffer.concat([this.#partial, line]);
          this.#partial = undefined;
        }
        const end = line.length > 0 && line[line.length - 1] === CR ? line.length - 1 : line.length;
        if (end > max) {
          this.#opts.telemetry.refused('lineSize');
          this.#push(`error: line longer than ${max} bytes`);
        }
        else if (!isUtf8(line)) this.#push('error: line is not valid UTF-8');
        else this.#push(answerLine(line.toString('utf8', 0, end), this.#opts.publisher));
      }
      start = nl + 1;
    }
    if (start < chunk.length && !this.#skipping) {
      const rest = chunk.subarray(start);
      // Copy a small rest so it does not pin the whole 64 KiB read buffer.
      this.#partial = this.#partial === undefined ? Buffer.from(rest) : Buffer.concat([this.#partial, rest]);
      // +1: the line's CR may be the last byte read so far.
      if (this.#partial.length > max + 1) {
        this.#partial = undefined;
        this.#skipping = true;
        this.#opts.telemetry.refused('lineSize');
        this.#push(`error: line longer than ${max} bytes`);
      }
    }
  }

  /** Another line may go into delivery: its reply, and those before it, fit maxPendingReplyBytes. */
  #mayTake(): boolean {
    const inflight = this.#inflight;
    if (inflight >= this.#opts.maxPipelinedLines) return false;
    const pending = this.#socket.writableLength + this.#readyBytes;
    return pending + inflight * this.#replyEstimate <= this.#opts.maxPendingReplyBytes;
  }

  /** An `error:` reply is a refused line: logged (rate-limited) with its reason. */
  #refused(reply: string): void {
    this.#opts.refusals?.refused('textLine', 'text publish refused', { reason: reply.slice(7), remote: this.#socket.remoteAddress });
  }

  #push(reply: string | Promise<string>): void {
    if (typeof reply === 'string') {
      if (reply.charCodeAt(0) === 0x65 && reply.startsWith('error: ')) this.#refused(reply);
      this.#slots.push(reply);
      this.#readyBytes += reply.length + 1;
      return;
    }
    const n = this.#base + this.#slots.length;
    this.#slots.push(undefined);
    reply.then((line) => {
      if (line.charCodeAt(0) === 0x65 && line.startsWith('error: ')) this.#refused(line);
      this.#slots[n - this.#base] = line;
      this.#readyBytes += line.length + 1;
      // The first reply replaces the guess (maxLineBytes); after that, the largest one seen.
      this.#replyEstimate = this.#estimated ? Math.max(this.#replyEstimate, line.length + 1) : line.length + 1;
      this.#estimated = true;
      // Replies that resolve together (one group commit) go out in one write: a tick runs once
      // every promise reaction queued so far has run.
      if (!this.#flushQueued) {
        this.#flushQueued = true;
        process.nextTick(this.#flushLater);
      }
    });
    this.#updateFlow();
  }

  /** Writes every reply that is ready and has no unanswered line before it. */
  #flush(): void {
    const slots = this.#slots;
    let out = '';
    while (this.#head < slots.length) {
      const reply = slots[this.#head];
      if (reply === undefined) break;
      out += `${reply}\n`;
      this.#head++;
    }
    if (this.#head > 0 && this.#head >= slots.length - this.#head) {
      // More lines answered than waiting: drop them (pending callbacks hold line numbers), so a
      // client that always keeps a line in flight does not grow the array for ever.
      this.#slots = this.#head === slots.length ? [] : slots.slice(this.#head);
      this.#base += this.#head;
      this.#head = 0;
    }
    this.#readyBytes -= out.length;
    if (out.length > 0 && !this.#socket.destroyed) {
      // Written out: the connection may take lines again (a 'drain' comes only after a full buffer).
      if (!this.#socket.write(out, this.#written)) this.#writeBlocked = true;
    }
    this.#updateFlow();
    this.#endIfDone();
  }

  get #inflight(): number {
    return this.#slots.length - this.#head;
  }

  #updateFlow(): void {
    if (this.#finishing) this.#backlog = undefined;
    else if (this.#backlog !== undefined && !this.#writeBlocked && this.#mayTake()) {
      const backlog = this.#backlog;
      this.#backlog = undefined;
      this.#take(backlog);
      this.#flush();
      return;
    }
    // While finishing, read on and drop what comes, so that closing never resets the connection
    // over unread data (which could discard replies the client has not read yet).
    const shouldRead = this.#finishing || (!this.#writeBlocked && this.#backlog === undefined && this.#mayTake());
    if (shouldRead === this.#reading) return;
    this.#reading = shouldRead;
    if (shouldRead) this.#socket.resume();
    else this.#socket.pause();
  }

  #endIfDone(): void {
    const socket = this.#socket;
    if ((this.#ended || this.#finishing) && this.#inflight === 0 && this.#backlog === undefined && !socket.destroyed && !socket.writableEnded) {
      // A client that half-closed closes its side itself; on shutdown we close ours once flushed.
      socket.end(this.#finishing ? () => socket.destroy() : undefined);
    }
  }

  /** Stops taking lines, answers those already read, and closes; destroys the socket after timeoutMs. */
  finish(timeoutMs: number): Promise<void> {
    this.#finishing = true;
    this.#updateFlow();
    return new Promise((resolve) => {
      if (this.#socket.destroyed) return resolve();
      const timer = setTimeout(() => this.#socket.destroy(), timeoutMs);
      this.#socket.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      this.#endIfDone();
    });
  }
}
