import { isUtf8 } from 'node:buffer';
import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { type Socket, isIP } from 'node:net';
import { type WsAuth, listFailures, mintToken } from '../console/api.js';
import { isConsolePath, serveConsole } from '../console/route.js';
import type { FailureRing } from '../obs/failures.js';
import { Admission, type ConnectionLimits, NO_LIMITS } from '../live/admission.js';
import type { DeviceService } from '../push/devices.js';
import type { Publisher } from '../delivery/publisher.js';
import { NotifyError, errorMessage } from '../errors.js';
import { isLoopbackAddress } from '../net/allow.js';
import { answerClientError, closeServer, isLoopback, listen } from '../net/listen.js';
import { type TlsMaterial, type WebServer, createWebServer, useCertificate } from '../net/tls.js';
import type { Logger } from '../obs/log.js';
import { type Telemetry, noTelemetry } from '../obs/metrics.js';
import { MAX_UID_BYTES, PUBLISH_KEYS, messageFromFields, parseAudience, parsePublishOptions, uidProblem } from '../message.js';
import { MAX_ID_LENGTH } from '../ids.js';
import type { Lookup } from '../node/lookup.js';
import type { RefusalLog } from '../obs/refusals.js';

export interface HttpIngressOptions {
  /** "host:port". @default '127.0.0.1:5680' */
  listen: string;
  /** When set, every /v1/ request needs `Authorization: Bearer <token>`. */
  token: string | null;
  maxBodyBytes: number;
  publisher: Publisher;
  /** Device tokens of the push transports: /v1/devices. */
  devices: DeviceService;
  /** What GET /healthz reports, besides its status. */
  health: () => Record<string, unknown>;
  /** What GET /v1/status reports. */
  status?: () => Record<string, unknown>;
  /** Prometheus metrics for GET /metrics (needs the token when one is set). */
  metrics?: { text(): Promise<string>; contentType: string };
  telemetry?: Telemetry;
  log: Logger;
  /** How long stop() waits for requests in flight. @default 5000 */
  closeTimeoutMs?: number;
  /** Connections in all and per address, counted from accept; silent ones are closed. @default no caps, 10 s */
  limits?: Partial<ConnectionLimits>;
  /** Loopback peers are a reverse proxy. @default false */
  behindProxy?: boolean;
  /** ws.auth and ws.secret, for POST /v1/tokens. @default ws.auth none (the route answers 409) */
  wsAuth?: WsAuth;
  /** The latest final failures, for GET /v1/failures. @default none kept */
  failures?: FailureRing;
  /** Serve https:// with this certificate (http.tls); `setTls` replaces it. @default plain http:// */
  tls?: TlsMaterial;
  /** The trace lookups: GET /v1/messages/{id} and GET /v1/uids/{uid} (404 without). */
  lookup?: Lookup;
  /** Where refused requests (401) are logged, rate-limited. */
  refusals?: RefusalLog;
}

/** `param`: the path's last segment, as sent (still percent-encoded), for a route that ends in `{name}`. */
type Handler = (req: IncomingMessage, body: unknown, query: URLSearchParams, param: string) => Promise<unknown>;

interface RouteSpec {
  method: 'GET' | 'POST' | 'DELETE';
  path: string;
  /** Needs `Authorization: Bearer <http.token>` when one is set. */
  auth: boolean;
}

/**
 * Every endpoint of the API. The OpenAPI document (openapi.json, served at /v1/openapi.json)
 * describes each of them and nothing else; test/ingress/openapi.test.ts holds the two equal.
 */
export const ROUTES = [
  { method: 'POST', path: '/v1/send', auth: true },
  { method: 'GET', path: '/v1/devices', auth: true },
  { method: 'POST', path: '/v1/devices', auth: true },
  { method: 'DELETE', path: '/v1/devices', auth: true },
  { method: 'GET', path: '/v1/status', auth: true },
  { method: 'GET', path: '/v1/messages/{id}', auth: true },
  { method: 'GET', path: '/v1/uids/{uid}', auth: true },
  { method: 'POST', path: '/v1/tokens', auth: true },
  { method: 'GET', path: '/v1/failures', auth: true },
  { method: 'GET', path: '/metrics', auth: true },
  { method: 'GET', path: '/healthz', auth: false },
  { method: 'GET', path: '/v1/openapi.json', auth: false },
] as const satisfies readonly RouteSpec[];

type RouteKey = (typeof ROUTES)[number] extends infer R ? (R extends RouteSpec ? `${R['method']} ${R['path']}` : never) : never;

interface Route extends RouteSpec {
  handle: Handler;
  /** For a path ending in `{name}`: what comes before it. */
  prefix?: string;
}

/** The OpenAPI document, kept in the repository root (dist/src/ingress/ -> ../../../). */
const OPENAPI_FILE = new URL('../../../openapi.json', import.meta.url);
let openapiText: string | undefined;
function openapiDocument(): string {
  openapiText ??= readFileSync(OPENAPI_FILE, 'utf8');
  return openapiText;
}

/**
 * Reads and drops what is left of a request body before an error is answered (at most
 * `maxBytes` more, for at most a second): closing a connection with unread input makes the
 * kernel reset it, and the client could lose the answer (nginx's "lingering close").
 */
async function lingerOnBody(req: IncomingMessage, maxBytes: number): Promise<void> {
  if (req.complete || req.destroyed) return;
  await new Promise<void>((resolve) => {
    let read = 0;
    const done = () => {
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', done);
      req.off('error', done);
      resolve();
    };
    const onData = (chunk: Buffer) => {
      read += chunk.length;
      if (read > maxBytes) done();
    };
    const timer = setTimeout(done, 1000);
    req.on('data', onData);
    req.once('end', done);
    req.once('error', done);
    req.resume();
  });
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s).digest();
}

/** The host name of a Host header ("127.0.0.1:5680", "[::1]:5680", "push.example.com"), lower case; '' when unreadable. */
function hostnameOf(host: string): string {
  try {
    return new URL(`http://${host}`).hostname;
  } catch {
    return '';
  }
}

/**
 * Refuses a browser's request made by a page of another site. Without it any web page the
 * operator opens could POST /v1/send, /v1/devices or /v1/tokens to a daemon on 127.0.0.1 that
 * has no http.token: a "simple" cross-origin POST (a form, or fetch with mode no-cors) goes
 * out without a CORS preflight, only its answer is hidden from the page. Browsers name the
 * page's origin in `Origin` on every POST and every cross-origin fetch; publishers (curl, a
 * backend, the CLI) send none, and the console's own requests name this host. Compared by host
 * name only: a proxy may drop the port from Host (nginx's $host).
 * https://developer.mozilla.org/en-US/docs/Web/HTTP/Headers/Origin
 */
function checkOrigin(req: IncomingMessage): void {
  const origin = req.headers.origin;
  if (origin === undefined) return;
  let from = '';
  try {
    from = new URL(origin).hostname;
  } catch {
    // "null": a sandboxed frame, a file:// page, a redirect across origins.
  }
  if (from !== '' && from === hostnameOf(req.headers.host ?? '')) return;
  throw new NotifyError(
    'NOTIFY_ERR_CROSS_ORIGIN',
    `requests from web pages of another origin are refused (Origin: ${JSON.stringify(origin.slice(0, 100))}); call the API from a backend, the CLI or the console at /console`,
    { status: 403 },
  );
}

/** A loopback host name: 127.x, ::1, localhost and *.localhost (RFC 6761 section 6.3). */
function isLoopbackName(name: string): boolean {
  const n = name.replace(/^\[|\]$/g, '').toLowerCase();
  return n === 'localhost' || n.endsWith('.localhost') || (isIP(n) !== 0 && isLoopbackAddress(n));
}

/** The client went away before its request body was complete: nobody to answer, nothing wrong here. */
class ClientGone extends Error {}

/** A handler's answer with a status other than 200. */
class Answer {
  constructor(
    readonly status: number,
    readonly body: unknown,
  ) {}
}

/** A handler's answer that is already text (not a value to serialize as JSON). */
class TextAnswer {
  constructor(
    readonly contentType: string,
    readonly text: string,
  ) {}
}

/**
 * The publisher HTTP API:
 * - `POST /v1/send` `{uid | uids | broadcast, msg?, title?, badge?, sound?, data?, id?, route?, ttl?}` -> the report;
 * - `POST /v1/devices` and `DELETE /v1/devices` `{uid, transport, token}`; `GET /v1/devices?uid=&transport=`;
 *   `GET /v1/devices?retired=1&transport=` -> `{retired: [{transport, token, reason, retiredAt}]}`;
 * - `GET /healthz` -> `{status, transports}`.
 * Errors are `{code, error}` with a matching 4xx/5xx status.
 */
export class HttpIngress {
  readonly #opts: Required<Omit<HttpIngressOptions, 'metrics' | 'limits' | 'behindProxy' | 'wsAuth' | 'failures' | 'tls' | 'lookup' | 'refusals'>> &
    Pick<HttpIngressOptions, 'metrics' | 'wsAuth' | 'failures' | 'lookup' | 'refusals'>;
  readonly #server: WebServer;
  readonly #admission: Admission;
  readonly #routes: Route[];
  readonly #tokenDigest: Buffer | undefined;
  /** Only loopback Host names are answered (see #checkHost). */
  readonly #loopbackHostsOnly: boolean;
  #address = '';
  #state: 'new' | 'running' | 'closing' | 'closed' = 'new';

  constructor(opts: HttpIngressOptions) {
    if (!Number.isInteger(opts.maxBodyBytes) || opts.maxBodyBytes <= 0) {
      throw new RangeError('maxBodyBytes must be a positive integer');
    }
    this.#opts = { closeTimeoutMs: 5000, telemetry: noTelemetry, status: () => ({}), ...opts };
    this.#tokenDigest = opts.token ? sha256(opts.token) : undefined;
    this.#loopbackHostsOnly = !opts.token && !opts.behindProxy && isLoopback(opts.listen);
    const handlers: Record<RouteKey, Handler> = {
      'POST /v1/send': (_req, body) => this.#send(body),
      'GET /v1/devices': async (_req, _body, q) => this.#listDevices(q),
      'POST /v1/devices': async (_req, body) => this.#device('add', body),
      'DELETE /v1/devices': async (_req, body, q) => this.#device('remove', body ?? Object.fromEntries(q)),
      'GET /v1/status': async () => this.#opts.status(),
      'GET /v1/messages/{id}': (_req, _body, _q, param) => this.#lookup('/v1/messages/', param),
      'GET /v1/uids/{uid}': (_req, _body, _q, param) => this.#lookup('/v1/uids/', param),
      'POST /v1/tokens': async (_req, body) => mintToken(this.#opts.wsAuth ?? { mode: 'none', secret: null }, body),
      'GET /v1/failures': async (_req, _body, q) => (this.#opts.failures ? listFailures(this.#opts.failures, q) : { failures: [], kept: 0 }),
      'GET /metrics': async () => this.#metrics(),
      'GET /healthz': async () => this.#health(),
      'GET /v1/openapi.json': async () => new TextAnswer('application/json; charset=utf-8', openapiDocument()),
    };
    this.#routes = ROUTES.map((r) => {
      const m = /^(.*\/)\{\w+\}$/.exec(r.path);
      return Object.assign({}, r, { handle: handlers[`${r.method} ${r.path}` as RouteKey] }, m ? { prefix: m[1] } : {});
    });
    this.#admission = new Admission({
      limits: Object.assign({}, NO_LIMITS, opts.limits),
      behindProxy: opts.behindProxy ?? false,
      telemetry: this.#opts.telemetry,
      format: 'json',
      ...(opts.refusals ? { refusals: { log: opts.refusals, listener: 'http' } } : {}),
    });
    // Counted from accept (with TLS too: a stalled handshake holds a descriptor all the same; it
    // must end within limits.silentTimeout); a connection silent until limits.silentTimeout is
    // closed (the first request clears that: a publish may wait for its report in silence).
    this.#server = createWebServer(
      { requestTimeout: 30_000, headersTimeout: 10_000, keepAliveTimeout: 5_000, connectionsCheckingInterval: 2000 },
      opts.tls,
      this.#admission.limits.silentTimeout,
      (req, res) => {
        this.#serve(req, res).catch(async (err: unknown) => {
          // A refused publish (bad input, over a limit); 401s are logged where they are decided.
          if (err instanceof NotifyError && err.status !== undefined && err.status >= 400 && err.status < 500 && err.status !== 401 && req.url?.startsWith('/v1/send')) {
            this.#opts.refusals?.refused('httpPublish', 'http publish refused', { reason: err.message, code: err.code, status: err.status, remote: req.socket.remoteAddress });
          }
          await lingerOnBody(req, this.#opts.maxBodyBytes);
          this.#fail(res, err);
        });
      },
      {
        accepted: (socket: Socket) => this.#state === 'running' && this.#admission.accept(socket, { tls: opts.tls !== undefined }),
        secured: (socket: Socket) => this.#admission.secured(socket),
      },
      'json',
    );
    this.#server.on('clientError', (err: NodeJS.ErrnoException, socket) => answerClientError(err, socket, 'json'));
    this.#server.on('request', (req: IncomingMessage) => this.#admission.takenOver(req.socket));
  }

  /** A new certificate (http.tls reread at a reload) for connections from now on. */
  setTls(tls: TlsMaterial): void {
    useCertificate(this.#server, tls);
  }

  /** New connection limits (a reload). */
  setLimits(limits: Partial<ConnectionLimits>): void {
    this.#admission.setLimits(Object.assign({}, NO_LIMITS, limits));
  }

  async start(): Promise<void> {
    if (this.#state !== 'new') return;
    this.#state = 'running';
    this.#address = await listen(this.#server, this.#opts.listen, 'http.listen');
  }

  addresses(): Record<string, string> {
    return this.#address ? { http: this.#address } : {};
  }

  /** Stops accepting, lets requests in flight finish (up to closeTimeoutMs), then closes. */
  async stop(): Promise<void> {
    if (this.#state === 'closing' || this.#state === 'closed') return;
    this.#state = 'closing';
    const closed = closeServer(this.#server);
    this.#server.closeIdleConnections();
    const timer = setTimeout(() => this.#server.closeAllConnections(), this.#opts.closeTimeoutMs);
    await closed;
    clearTimeout(timer);
    this.#state = 'closed';
  }

  async #serve(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://notify');
    } catch {
      throw new NotifyError('NOTIFY_ERR_BAD_REQUEST', 'malformed request target', { status: 400 });
    }
    const path = url.pathname;
    this.#checkHost(req);
    checkOrigin(req);
    // The operator console: static files without data (the data comes from the API, with the token).
    if (isConsolePath(path)) return serveConsole(req, res, path);
    // A route ending in `{name}` takes the rest of the path as that parameter (a "/" in it is a 404).
    let param = '';
    let routes = this.#routes.filter((r) => r.path === path);
    if (routes.length === 0) {
      routes = this.#routes.filter((r) => r.prefix !== undefined && path.startsWith(r.prefix));
      param = routes.length > 0 ? path.slice((routes[0] as Route).prefix?.length) : '';
    }
    if (routes.length === 0) throw new NotifyError('NOTIFY_ERR_NOT_FOUND', `no such endpoint: ${path}`, { status: 404 });
    const route = routes.find((r) => r.method === req.method);
    if (!route) {
      res.setHeader('allow', routes.map((r) => r.method).join(', '));
      throw new NotifyError('NOTIFY_ERR_METHOD', `${(routes[0] as Route).path} takes ${routes.map((r) => r.method).join(' or ')}`, { status: 405 });
    }
    if (route.auth) this.#authorize(req);
    const body = route.method === 'GET' ? undefined : await this.#readJson(req, route.method === 'DELETE');
    const answer = await route.handle(req, body, url.searchParams, param);
    if (answer instanceof TextAnswer) {
      res.writeHead(200, { 'content-type': answer.contentType, 'content-length': Buffer.byteLength(answer.text), 'cache-control': 'no-store' });
      res.end(answer.text);
    } else if (answer instanceof Answer) this.#reply(res, answer.status, answer.body);
    else this.#reply(res, 200, answer);
  }

  /**
   * DNS rebinding: a site can make its own name resolve to 127.0.0.1, and its pages' requests to
   * the API are then same-origin (checkOrigin lets them by), reads included. A daemon on
   * loopback without http.token would answer them; it is only ever reached by a loopback name,
   * so it refuses other Host names. Not with a token (a page cannot have it) nor with
   * http.behindProxy (the proxy passes the public name).
   * https://en.wikipedia.org/wiki/DNS_rebinding
   */
  #checkHost(req: IncomingMessage): void {
    if (!this.#loopbackHostsOnly) return;
    const host = req.headers.host;
    // No Host at all (HTTP/1.0) is no browser.
    if (host === undefined || host === '' || isLoopbackName(hostnameOf(host))) return;
    throw new NotifyError(
      'NOTIFY_ERR_HOST',
      `this API listens on loopback without http.token and answers only requests to a loopback name (127.0.0.1, [::1], localhost), not ${JSON.stringify(host.slice(0, 100))} (DNS rebinding); behind a reverse proxy set http.behindProxy: true`,
      { status: 403 },
    );
  }

  #authorize(req: IncomingMessage): void {
    if (!this.#tokenDigest) return;
    const header = req.headers.authorization ?? '';
    const m = /^Bearer\s+(\S+)\s*$/i.exec(header);
    const refuse = (reason: string) => {
      // The path without its query (a token may ride in one), never the header.
      this.#opts.refusals?.refused('http401', 'http request refused', { reason, method: req.method, path: (req.url ?? '').split('?')[0], remote: req.socket.remoteAddress });
      return new NotifyError('NOTIFY_ERR_UNAUTHORIZED', reason, { status: 401 });
    };
    if (!m) throw refuse('this endpoint needs "Authorization: Bearer <http.token>"');
    // Compare digests: equal length, constant time, whatever the caller sent.
    if (!timingSafeEqual(sha256(m[1] as string), this.#tokenDigest)) throw refuse('wrong bearer token');
  }

  /** GET /v1/messages/{id} and GET /v1/uids/{uid}: `segment` is the rest of the path, URL-encoded. */
  async #lookup(prefix: string, segment: string): Promise<unknown> {
    const lookup = this.#opts.lookup;
    if (!lookup) throw new NotifyError('NOTIFY_ERR_NOT_FOUND', `no such endpoint: ${prefix}${segment} (this node keeps no traces)`, { status: 404 });
    const what = prefix === '/v1/messages/' ? 'message id' : 'uid';
    let key: string;
    try {
      key = decodeURIComponent(segment);
    } catch {
      throw new NotifyError('NOTIFY_ERR_BAD_REQUEST', `the ${what} in the path is not valid percent-encoding`, { status: 400 });
    }
    if (segment.includes('/')) throw new NotifyError('NOTIFY_ERR_NOT_FOUND', `no such endpoint: ${prefix}${segment} (URL-encode a "/" in the ${what} as %2F)`, { status: 404 });
    if (key === '') throw new NotifyError('NOTIFY_ERR_BAD_REQUEST', `the ${what} is missing: ${prefix}{${what === 'uid' ? 'uid' : 'id'}}`, { status: 400 });
    if (prefix === '/v1/uids/') {
      if (uidProblem(key) === 'too long') throw new NotifyError('NOTIFY_ERR_BAD_REQUEST', `the uid is longer than ${MAX_UID_BYTES} bytes`, { status: 400 });
      return lookup.uid(key);
    }
    if (key.length > MAX_ID_LENGTH) throw new NotifyError('NOTIFY_ERR_BAD_REQUEST', `the message id is longer than ${MAX_ID_LENGTH} characters`, { status: 400 });
    const trace = await lookup.message(key);
    if (trace === undefined) {
      return new Answer(404, { code: 'NOTIFY_ERR_NOT_FOUND', error: `no message ${key} in history (never published, or older than history.ttl)` });
    }
    return trace;
  }

  /** The JSON body; with `optional`, an empty body is undefined instead of an error. */
  async #readJson(req: IncomingMessage, optional = false): Promise<unknown> {
    const max = this.#opts.maxBodyBytes;
    const tooLarge = () =>
      new NotifyError('NOTIFY_ERR_BODY_TOO_LARGE', `request body larger than ${max} bytes (http.maxBodyBytes)`, { status: 413 });
    const declared = Number(req.headers['content-length']);
    if (declared > max) {
      this.#opts.telemetry.refused('bodySize');
      throw tooLarge();
    }
    // Listeners, not `for await`: leaving that loop early destroys the request, and with it the
    // socket the 413 has to go out on.
    const bytes = await new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      let size = 0;
      const onData = (chunk: Buffer) => {
        size += chunk.length;
        if (size <= max) return void chunks.push(chunk);
        req.off('data', onData);
        req.off('end', onEnd);
        this.#opts.telemetry.refused('bodySize');
        reject(tooLarge());
      };
      const onEnd = () => resolve(Buffer.concat(chunks));
      req.on('data', onData);
      req.once('end', onEnd);
      req.once('error', (err) => reject(new ClientGone(errorMessage(err))));
    });
    // JSON is UTF-8 (RFC 8259 section 8.1): refuse other bytes rather than decode them to U+FFFD.
    if (!isUtf8(bytes)) throw new NotifyError('NOTIFY_ERR_INVALID_JSON', 'request body is not valid UTF-8', { status: 400 });
    const text = bytes.toString('utf8');
    if (text.trim() === '' && optional) return undefined;
    if (text.trim() === '') throw new NotifyError('NOTIFY_ERR_INVALID_JSON', 'request body is empty; send a JSON object', { status: 400 });
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new NotifyError('NOTIFY_ERR_INVALID_JSON', `request body is not JSON (${errorMessage(err)})`, { status: 400 });
    }
  }

  async #send(body: unknown): Promise<unknown> {
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      throw new NotifyError('NOTIFY_ERR_INVALID_MESSAGE', 'expected a JSON object, e.g. {"uid":"uid1","msg":"hi"}', { status: 400 });
    }
    const obj = body as Record<string, unknown>;
    const unknown = Object.keys(obj).filter((k) => !PUBLISH_KEYS.has(k));
    if (unknown.length > 0) {
      throw new NotifyError('NOTIFY_ERR_INVALID_MESSAGE', `unknown field ${unknown.map((k) => `"${k}"`).join(', ')}; custom keys go in "data"`, {
        status: 400,
      });
    }
    return this.#opts.publisher.publish(parseAudience(obj), messageFromFields(obj), parsePublishOptions(obj), 'http');
  }

  #device(op: 'add' | 'remove', body: unknown): unknown {
    if (body === null || typeof body !== 'object' || Array.isArray(body)) {
      throw new NotifyError('NOTIFY_ERR_INVALID_DEVICE', 'expected a JSON object {"uid", "transport", "token"}', { status: 400 });
    }
    const { uid, transport, token, ...rest } = body as Record<string, unknown>;
    const extra = Object.keys(rest);
    if (extra.length > 0) {
      throw new NotifyError('NOTIFY_ERR_INVALID_DEVICE', `unknown field ${extra.map((k) => `"${k}"`).join(', ')}; expected uid, transport, token`, { status: 400 });
    }
    const devices = this.#opts.devices;
    return op === 'add' ? devices.register(uid, transport, token) : devices.unregister(uid, transport, token);
  }

  async #listDevices(q: URLSearchParams): Promise<unknown> {
    const filter: { uid?: string; transport?: string } = {};
    const uid = q.get('uid');
    const transport = q.get('transport');
    const retired = q.get('retired');
    if (retired !== null) {
      if (retired !== '1' && retired !== 'true') throw new NotifyError('NOTIFY_ERR_BAD_REQUEST', `retired takes 1 or true, got ${JSON.stringify(retired.slice(0, 64))}`, { status: 400 });
      if (uid !== null) throw new NotifyError('NOTIFY_ERR_BAD_REQUEST', 'retired=1 lists by transport only: a retired token is not kept with its uid', { status: 400 });
      return { retired: await this.#opts.devices.retired(transport !== null ? { transport } : {}) };
    }
    if (uid !== null) filter.uid = uid;
    if (transport !== null) filter.transport = transport;
    return { devices: await this.#opts.devices.list(filter) };
  }

  /** Prometheus text; 404 when this node was built without metrics. */
  async #metrics(): Promise<TextAnswer> {
    const metrics = this.#opts.metrics;
    if (!metrics) throw new NotifyError('NOTIFY_ERR_NOT_FOUND', 'no such endpoint: /metrics (this node has no metrics)', { status: 404 });
    return new TextAnswer(metrics.contentType, await metrics.text());
  }

  /** 200 while this node can take publishes; 503 (with what is wrong) while closing or while its store fails. */
  #health(): Answer {
    const h = this.#opts.health();
    const storeDown = (h.store as { state?: string } | undefined)?.state === 'unavailable';
    const status = this.#state !== 'running' ? 'closing' : storeDown ? 'store unavailable' : 'ok';
    return new Answer(status === 'ok' ? 200 : 503, { status, ...h });
  }

  #reply(res: ServerResponse, status: number, body: unknown): void {
    const json = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(json), 'cache-control': 'no-store' });
    res.end(json);
  }

  #fail(res: ServerResponse, err: unknown): void {
    if (err instanceof ClientGone) {
      this.#opts.log.debug('http client went away mid-request', { error: err.message });
      res.destroy();
      return;
    }
    const known = err instanceof NotifyError;
    const status = known && err.status !== undefined ? err.status : 500;
    if (!known) this.#opts.log.error('http request failed', { error: errorMessage(err) });
    if (res.headersSent) {
      res.destroy();
      return;
    }
    // After a refused body the rest of it may still be arriving: don't keep the connection.
    if (status === 413) res.setHeader('connection', 'close');
    // The store (SQLite, the cluster's Redis) cannot take it now: a publisher may try again soon,
    // with the same "id" so that a publish that did get through is not made twice.
    if (known && err.code === 'NOTIFY_ERR_STORE') res.setHeader('retry-after', '1');
    this.#reply(res, status, { code: known ? err.code : 'NOTIFY_ERR_INTERNAL', error: known ? err.message : 'internal error' });
  }
}
