import { X509Certificate, createPrivateKey } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { type IncomingMessage, type Server as HttpServer, type ServerOptions as HttpServerOptions, type ServerResponse, createServer as createHttpServer } from 'node:http';
import { type Server as HttpsServer, createServer as createHttpsServer } from 'node:https';
import type { Socket } from 'node:net';
import { NotifyError } from '../errors.js';

/** `ws.tls` / `http.tls`: the PEM files a listener serves TLS with (paths, absolute once read). */
export interface TlsFiles {
  /** The certificate, optionally followed by its intermediates (a "fullchain.pem"). */
  cert: string;
  /** Its private key (unencrypted PEM). */
  key: string;
}

/** Certificates that run out within this long are logged as a warning at start and reload. */
export const EXPIRY_WARNING_MS = 14 * 24 * 3600 * 1000;

/** A certificate and key read and checked: what a TLS listener is given. */
export interface TlsMaterial {
  /** The config key the files came from (`ws.tls`), for log lines. */
  configKey: string;
  files: TlsFiles;
  cert: Buffer;
  key: Buffer;
  /** The served (first) certificate: SHA-256 fingerprint, serial, subject and validity. */
  fingerprint256: string;
  serialNumber: string;
  subject: string;
  validFrom: Date;
  validTo: Date;
  /** Not refused, but worth a line in the log (it expires soon). */
  warnings: string[];
}

/**
 * The most a certificate file (with its chain) or a key file may hold. A real chain is a few KiB;
 * the bound keeps a wrong path (a log file, /dev/zero) from being read into memory.
 */
export const MAX_PEM_BYTES = 1024 * 1024;

/**
 * Reads a PEM file of at most MAX_PEM_BYTES. Opened without blocking and checked to be a regular
 * file before it is read: a FIFO or a device (readFileSync would wait for a writer or read
 * forever) would freeze the whole daemon at a reload.
 */
function readPem(file: string, what: string): Buffer {
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a folder' : (code ?? 'unreadable');
    throw new NotifyError('NOTIFY_ERR_CONFIG', `${what}: cannot read ${file}: ${why}`);
  }
  try {
    const st = fstatSync(fd);
    if (st.isDirectory()) throw new NotifyError('NOTIFY_ERR_CONFIG', `${what}: cannot read ${file}: it is a folder`);
    if (!st.isFile()) throw new NotifyError('NOTIFY_ERR_CONFIG', `${what}: ${file} is not a regular file (a FIFO, socket or device); give the path of a PEM file`);
    const tooBig = () => new NotifyError('NOTIFY_ERR_CONFIG', `${what}: ${file} is larger than ${MAX_PEM_BYTES} bytes; a PEM certificate chain or key is a few KiB (is this the right file?)`);
    if (st.size > MAX_PEM_BYTES) throw tooBig();
    // Read to the end, but never past the bound (the file may grow after fstat).
    const buf = Buffer.alloc(MAX_PEM_BYTES + 1);
    let n = 0;
    for (;;) {
      const r = readSync(fd, buf, n, buf.length - n, null);
      if (r === 0) break;
      n += r;
      if (n > MAX_PEM_BYTES) throw tooBig();
    }
    return Buffer.from(buf.subarray(0, n));
  } catch (err) {
    if (err instanceof NotifyError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new NotifyError('NOTIFY_ERR_CONFIG', `${what}: cannot read ${file}: ${code === 'EISDIR' ? 'it is a folder' : (code ?? 'unreadable')}`);
  } finally {
    closeSync(fd);
  }
}

/**
 * Reads and checks the files of `configKey` (`ws.tls`, `http.tls`): both readable, the first PEM
 * block of `cert` a certificate valid now, `key` a private key that matches it. Throws a
 * NOTIFY_ERR_CONFIG with one line naming the key and the file; never any of the key's content.
 *
 * An expired (or not yet valid) certificate is refused rather than served with a warning: every
 * browser and `notify send` would refuse it, so the listener would only look up while no client
 * could connect; refusing puts the reason in the one place an operator looks (the start or the
 * reload's log line), and on a reload the running certificate is kept.
 */
export function readTls(files: TlsFiles, configKey: string, now = Date.now()): TlsMaterial {
  const certKey = `${configKey}.cert`;
  const keyKey = `${configKey}.key`;
  const cert = readPem(files.cert, certKey);
  const key = readPem(files.key, keyKey);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(cert);
  } catch {
    throw new NotifyError('NOTIFY_ERR_CONFIG', `${certKey}: ${files.cert} holds no PEM certificate ("-----BEGIN CERTIFICATE-----")`);
  }
  let privateKey: ReturnType<typeof createPrivateKey>;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    // Node's message may quote what it could not parse: ours names the file only.
    throw new NotifyError('NOTIFY_ERR_CONFIG', `${keyKey}: ${files.key} holds no unencrypted PEM private key ("-----BEGIN PRIVATE KEY-----")`);
  }
  if (!x509.checkPrivateKey(privateKey)) {
    throw new NotifyError('NOTIFY_ERR_CONFIG', `${keyKey}: ${files.key} is not the key of the certificate in ${files.cert} (${certKey})`);
  }
  const validFrom = new Date(x509.validFrom);
  const validTo = new Date(x509.validTo);
  if (validTo.getTime() <= now) {
    throw new NotifyError('NOTIFY_ERR_CONFIG', `${certKey}: the certificate in ${files.cert} expired on ${validTo.toISOString()}; renew it (clients refuse an expired certificate)`);
  }
  if (validFrom.getTime() > now) {
    throw new NotifyError('NOTIFY_ERR_CONFIG', `${certKey}: the certificate in ${files.cert} is not valid before ${validFrom.toISOString()} (is this machine's clock right?)`);
  }
  const warnings: string[] = [];
  const left = validTo.getTime() - now;
  if (left < EXPIRY_WARNING_MS) {
    warnings.push(`${certKey}: the certificate in ${files.cert} expires on ${validTo.toISOString()} (in ${Math.max(1, Math.round(left / 3_600_000))} h); renew it and send SIGHUP`);
  }
  return {
    configKey,
    files,
    cert,
    key,
    fingerprint256: x509.fingerprint256,
    serialNumber: x509.serialNumber,
    subject: x509.subject.replace(/\n/g, ', '),
    validFrom,
    validTo,
    warnings,
  };
}

/** What a log line says about a certificate in use (no key material). */
export function describeTls(m: TlsMaterial): Record<string, string> {
  return { cert: m.files.cert, subject: m.subject, serial: m.serialNumber, sha256: m.fingerprint256, validTo: m.validTo.toISOString() };
}

/** A plain or a TLS HTTP server: both are what the listeners need (listen, close, upgrade). */
export type WebServer = HttpServer | HttpsServer;

/** What a listener does with its connections (the Admission's accept and secured). */
export interface ConnectionHooks {
  /**
   * A TCP connection just accepted (with TLS: the one under the TLS connection, before its
   * handshake); false when it is refused (it is then closed).
   */
  accepted(socket: Socket): boolean;
  /** TLS only: the TLS socket once its handshake is done, which the requests come on. */
  secured(socket: Socket): void;
}

/**
 * An HTTP server, or with `tls` an HTTPS one serving `tls`'s certificate (its TLS handshake must
 * finish within `handshakeTimeoutMs`). Every TCP connection goes to `hooks.accepted` as it is
 * accepted, TLS or not: a connection counts from accept, a stalled TLS handshake included. With
 * TLS, `hooks.secured` then gets the TLS socket (silence is timed on it: a timeout set on the TCP
 * socket under a TLS one would still fire after a request or an upgrade has cleared the TLS
 * socket's). A plain http:// request to the TLS port is answered 400, as `{code, error}` JSON
 * with `plainFormat: 'json'` (the API) or as text.
 */
export function createWebServer(
  options: HttpServerOptions,
  tls: TlsMaterial | undefined,
  handshakeTimeoutMs: number,
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  hooks: ConnectionHooks,
  plainFormat: 'json' | 'text' = 'text',
): WebServer {
  if (tls === undefined) {
    const server = createHttpServer(options, handler);
    server.on('connection', (socket: Socket) => {
      if (!hooks.accepted(socket)) socket.destroy();
    });
    return server;
  }
  const server = createHttpsServer({ ...options, cert: tls.cert, key: tls.key, handshakeTimeout: handshakeTimeoutMs }, handler);
  server.on('secureConnection', (socket: Socket) => hooks.secured(socket));
  answerPlainHttp(server, tls.configKey, handshakeTimeoutMs, plainFormat, hooks);
  return server;
}

/** The first byte a TLS client sends: a handshake record (RFC 8446 section 5.1, ContentType handshake = 22). */
const TLS_HANDSHAKE_RECORD = 0x16;

/**
 * A plain http:// request to a TLS port is answered 400 with what to use instead, as nginx
 * does ("The plain HTTP request was sent to HTTPS port"), where Node would drop the connection
 * without a word (curl: "Empty reply from server"; the CLI: ECONNRESET). The first byte of each
 * connection is peeked before the TLS server's own 'connection' listener (which starts the
 * handshake; the bytes read are handed back with unshift, and TLSSocket takes what is buffered)
 * sees it. A connection that sends nothing is closed after `timeoutMs`, as the handshake would be.
 * https://nodejs.org/api/net.html#event-connection ("emitted when a new connection is made")
 */
function answerPlainHttp(server: HttpsServer, configKey: string, timeoutMs: number, format: 'json' | 'text', hooks: ConnectionHooks): void {
  const startTls = server.listeners('connection') as ((socket: Socket) => void)[];
  server.removeAllListeners('connection');
  server.on('connection', (socket: Socket) => {
    if (!hooks.accepted(socket)) {
      socket.destroy();
      return;
    }
    const timer = setTimeout(() => socket.destroy(), timeoutMs);
    const onError = () => socket.destroy();
    socket.on('error', onError);
    socket.once('close', () => clearTimeout(timer));
    const peek = () => {
      const chunk = socket.read() as Buffer | null;
      if (chunk === null) {
        if (socket.readableEnded) socket.destroy();
        else socket.once('readable', peek);
        return;
      }
      clearTimeout(timer);
      socket.unshift(chunk);
      if (chunk[0] === TLS_HANDSHAKE_RECORD) {
        socket.off('error', onError);
        for (const l of startTls) l.call(server, socket);
        return;
      }
      const why = `this port serves TLS only (${configKey}): use https://${configKey.startsWith('ws.') ? ' (wss:// for WebSocket sessions)' : ''}, not http://`;
      const body = format === 'json' ? JSON.stringify({ code: 'NOTIFY_ERR_TLS_REQUIRED', error: why }) : `${why}\n`;
      const type = format === 'json' ? 'application/json; charset=utf-8' : 'text/plain; charset=utf-8';
      socket.end(`HTTP/1.1 400 Bad Request\r\nContent-Type: ${type}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
      // What else it sends is read and dropped (closing with unread input would reset the answer).
      socket.resume();
      setTimeout(() => socket.destroy(), 1000).unref();
    };
    socket.once('readable', peek);
  });
}

/**
 * New connections of `server` get `tls`'s certificate; those open keep theirs (the rotation of a
 * SIGHUP: no session is dropped).
 */
export function useCertificate(server: WebServer, tls: TlsMaterial): void {
  if (!('setSecureContext' in server)) throw new TypeError('this listener was started without TLS');
  server.setSecureContext({ cert: tls.cert, key: tls.key });
}
