import { type Spec, type Validation, formatPath, validate } from '../../config/schema.js';
import { NotifyError } from '../../errors.js';
import { type TransportTargets, countNow } from '../targets.js';
import type { DeliveryResult, Message, Uid } from '../../types.js';
import type { Logger } from '../../obs/log.js';
import { type ProviderRequest, ProviderClient, type SendOutcome, httpVerdict, providerClientFor } from '../provider-client.js';
import type { TransportContext, TransportType } from '../kinds.js';
import { type RetryPolicy, STILL_TRYING, maxQueuedSpec, resumeWhenDue, retrySpec, settleBy } from '../retry.js';
import {
  type Parts,
  type Placeholder,
  SAMPLE_VALUES,
  type Structure,
  type TemplateValues,
  compileStructure,
  parseTemplate,
  placeholdersOf,
  placeholdersOfStructure,
  renderHeader,
  renderJsonText,
  renderStructure,
  renderText,
  renderUrl,
} from './template.js';
import type { PendingRetry, Transport, TransportHealth } from '../transport.js';

export type BodyFormat = 'json' | 'text' | 'form';

/** Settings of a `type: http` transport, as validated. */
export interface HttpSettings {
  url: string;
  method: 'POST' | 'PUT' | 'PATCH' | 'GET' | 'DELETE';
  headers: Record<string, string>;
  auth?: { bearer?: string; basic?: { username: string; password: string } };
  /** A text template, or a mapping/list whose strings are templates. */
  body?: unknown;
  format?: BodyFormat;
  /** One request per device token (`{{token}}`) instead of one per uid. @default false */
  perDevice: boolean;
  /** Statuses that mean delivered. @default any 2xx */
  successStatus?: number[];
  requestTimeoutMs: number;
  maxConcurrentRequests: number;
  /** Requests waiting for a free slot at most; one more fails at once ("queue full"). @default 10000 */
  maxQueued: number;
  retry: RetryPolicy;
}

/** An http transport's templates, compiled once. */
export interface CompiledHttp {
  method: string;
  url: Parts;
  headers: [string, Parts][];
  body: { format: 'json-text'; parts: Parts } | { format: 'text'; parts: Parts } | { format: 'json' | 'form'; structure: Structure } | undefined;
  contentType: string | undefined;
}

const settingsSection: Spec = {
  type: 'section',
  keys: {
    url: { type: 'string', required: true },
    method: { type: 'enum', values: ['POST', 'PUT', 'PATCH', 'GET', 'DELETE'], default: 'POST' },
    headers: { type: 'map', of: { type: 'string' } },
    auth: {
      type: 'custom',
      validate: (v, path, ctx) =>
        v === undefined || v === null
          ? undefined
          : validate(
              {
                type: 'section',
                keys: {
                  bearer: { type: 'string' },
                  basic: {
                    type: 'custom',
                    validate: (b, p, c) =>
                      b === undefined || b === null
                        ? undefined
                        : validate({ type: 'section', keys: { username: { type: 'string', required: true }, password: { type: 'string', required: true } } }, b, p, c),
                  },
                },
              },
              v,
              path,
              ctx,
            ),
    },
    body: { type: 'custom', validate: (v) => (v === null ? undefined : v) },
    format: { type: 'enum', values: ['json', 'text', 'form'] },
    perDevice: { type: 'boolean', default: false },
    successStatus: {
      type: 'custom',
      validate: (v, path, ctx) => {
        if (v === undefined || v === null) return undefined;
        const list = Array.isArray(v) ? v : [v];
        if (!list.every((s) => Number.isInteger(s) && s >= 100 && s <= 599)) {
          ctx.fail(path, `${formatPath(path)} must be an HTTP status or a list of them, e.g. [200, 201]`);
          return undefined;
        }
        return list;
      },
    },
    requestTimeoutMs: { type: 'integer', min: 1, default: 5000 },
    maxConcurrentRequests: { type: 'integer', min: 1, max: 1000, default: 16 },
    maxQueued: maxQueuedSpec,
    retry: retrySpec,
  },
};

function contentTypeHeader(headers: Record<string, string>): string | undefined {
  for (const [k, v] of Object.entries(headers)) if (k.toLowerCase() === 'content-type') return v;
  return undefined;
}

/** Compiles and checks an http transport's templates; throws an Error naming what is wrong. */
export function compileHttp(s: HttpSettings): CompiledHttp {
  const used = new Set<Placeholder>();
  const add = (set: Set<Placeholder>) => set.forEach((p) => used.add(p));
  const at = (key: string, f: () => Parts): Parts => {
    try {
      return f();
    } catch (err) {
      throw new Error(`${key}: ${(err as Error).message}`);
    }
  };
  const url = at('url', () => parseTemplate(s.url));
  add(placeholdersOf(url));
  const headers: [string, Parts][] = Object.entries(s.headers).map(([k, v]) => {
    const parts = at(`headers.${k}`, () => parseTemplate(v));
    add(placeholdersOf(parts));
    return [k, parts];
  });
  const declared = contentTypeHeader(s.headers);
  let body: CompiledHttp['body'];
  let contentType: string | undefined;
  if (s.body !== undefined) {
    if (s.method === 'GET') throw new Error('body: a GET request has no body');
    const structured = typeof s.body === 'object';
    const format: BodyFormat = s.format ?? (structured || /json/i.test(declared ?? '') ? 'json' : 'text');
    if (typeof s.body === 'string') {
      const parts = at('body', () => parseTemplate(s.body as string));
      add(placeholdersOf(parts));
      if (format === 'form') throw new Error('body: format form takes a mapping of fields, not text');
      body = format === 'json' ? { format: 'json-text', parts } : { format: 'text', parts };
    } else if (structured) {
      if (format === 'text') throw new Error('body: format text takes a text template, not a mapping');
      let structure: Structure;
      try {
        structure = compileStructure(s.body);
      } catch (err) {
        throw new Error(`body: ${(err as Error).message}`);
      }
      add(placeholdersOfStructure(structure));
      body = { format, structure };
    } else {
      throw new Error('body: must be a text template or a mapping');
    }
    contentType = format === 'form' ? 'application/x-www-form-urlencoded' : format === 'text' ? 'text/plain; charset=utf-8' : 'application/json';
  }
  if (used.has('token') && !s.perDevice) throw new Error('{{token}} is only set with perDevice: true (one request per device token)');
  if (s.perDevice && !used.has('token')) throw new Error('perDevice: true, but no template uses {{token}}');
  const compiled: CompiledHttp = { method: s.method, url, headers, body, contentType: declared === undefined ? contentType : undefined };

  // Fill every template once with awkward values: the URL must be a valid http(s) URL and a
  // JSON body valid JSON, or the config is refused now rather than at the first push.
  const sample = toPushRequest(compiled, undefined, SAMPLE_VALUES);
  let parsed: URL;
  try {
    parsed = new URL(sample.url);
  } catch {
    throw new Error(`url: ${JSON.stringify(s.url)} is not a URL once filled in`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new Error('url: must be http:// or https://');
  if (body?.format === 'json-text') {
    try {
      JSON.parse(sample.body ?? '');
    } catch (err) {
      throw new Error(`body: not valid JSON once filled in (${(err as Error).message})`);
    }
  }
  return compiled;
}

/** The request for one uid (or one device token) and one message. Pure. */
export function toPushRequest(c: CompiledHttp, auth: HttpSettings['auth'], v: TemplateValues): ProviderRequest & { body?: string } {
  const headers: Record<string, string> = {};
  if (c.contentType) headers['content-type'] = c.contentType;
  if (auth?.bearer !== undefined) headers.authorization = `Bearer ${auth.bearer}`;
  if (auth?.basic) headers.authorization = `Basic ${Buffer.from(`${auth.basic.username}:${auth.basic.password}`).toString('base64')}`;
  for (const [k, parts] of c.headers) headers[k] = renderHeader(parts, v);
  const req: ProviderRequest & { body?: string } = { method: c.method, url: renderUrl(c.url, v), headers };
  const b = c.body;
  if (b === undefined) return req;
  if (b.format === 'text') req.body = renderText(b.parts, v);
  else if (b.format === 'json-text') req.body = renderJsonText(b.parts, v);
  else if (b.format === 'json') req.body = JSON.stringify(renderStructure(b.structure, v));
  else {
    const fields = renderStructure(b.structure, v) as Record<string, unknown>;
    const form = new URLSearchParams();
    for (const [k, val] of Object.entries(fields ?? {})) form.append(k, typeof val === 'string' ? val : JSON.stringify(val));
    req.body = form.toString();
  }
  return req;
}

/** The template values of a message for a uid (and a device token). */
export function templateValues(uid: Uid, msg: Message, token?: string): TemplateValues {
  return { uid, title: msg.title, msg: msg.msg, badge: msg.badge, sound: msg.sound, data: msg.data ?? {}, frame: msg.frame, token };
}

/** The secrets of an http transport: credentials and the values of credential-like headers. */
export function httpSecrets(s: HttpSettings): string[] {
  const out: string[] = [];
  if (s.auth?.bearer) out.push(s.auth.bearer);
  if (s.auth?.basic) {
    out.push(s.auth.basic.password, Buffer.from(`${s.auth.basic.username}:${s.auth.basic.password}`).toString('base64'));
  }
  for (const [k, v] of Object.entries(s.headers)) if (/auth|token|key|secret|password/i.test(k) && !/\{\{/.test(v)) out.push(v.replace(/^(Bearer|Basic|token)\s+/i, ''));
  for (const [k, v] of new URL(s.url.replace(/\{\{[^}]*\}\}/g, 'x')).searchParams) if (/token|key|secret|password/i.test(k)) out.push(v);
  return out;
}

function validateSettings(value: unknown, path: string[], ctx: Validation): HttpSettings | undefined {
  const s = validate(settingsSection, value, path, ctx) as HttpSettings;
  if (s.auth && (s.auth.bearer === undefined) === (s.auth.basic === undefined)) {
    ctx.fail([...path, 'auth'], `${formatPath([...path, 'auth'])}: give either bearer: TOKEN or basic: {username, password}`);
  }
  if (typeof s.url !== 'string') return s;
  try {
    compileHttp(s);
  } catch (err) {
    const msg = (err as Error).message;
    const key = /^([\w.-]+):/.exec(msg)?.[1];
    ctx.fail(key ? [...path, ...key.split('.')] : path, key ? `${formatPath(path)}.${msg}` : `${formatPath(path)}: ${msg}`);
  }
  return s;
}

export const httpType: TransportType = {
  settings: { type: 'custom', validate: validateSettings },
  create: (settings, ctx) => new HttpTransport(settings as unknown as HttpSettings, ctx),
};

/**
 * Any HTTP push service or webhook, configured in YAML alone: one request per uid (or, with
 * `perDevice`, per device token listed under `devices.UID.NAME`), built from the URL, header and
 * body templates; success is a 2xx (or `successStatus`); 408, 429 and 5xx are retried.
 *
 * With `perDevice: false` every uid is reachable: the service gets every message (a copy to a
 * webhook, ntfy topics named after uids).
 */
export class HttpTransport implements Transport {
  readonly name: string;
  readonly #s: HttpSettings;
  readonly #compiled: CompiledHttp;
  readonly #targets: TransportTargets;
  readonly #client: ProviderClient;
  readonly #isSuccess: (status: number) => boolean;
  readonly #ticket: TransportContext['ticket'];
  readonly #log: Logger;
  readonly #stopping = new AbortController();
  #state: 'running' | 'closed' = 'running';

  constructor(settings: HttpSettings, ctx: TransportContext) {
    this.name = ctx.name;
    this.#s = settings;
    this.#compiled = compileHttp(settings);
    this.#targets = ctx.targets;
    this.#ticket = ctx.ticket;
    this.#log = ctx.log;
    const ok = settings.successStatus;
    this.#isSuccess = ok ? (st) => ok.includes(st) : (st) => st >= 200 && st < 300;
    this.#client = providerClientFor(ctx, settings, {
      secrets: httpSecrets(settings),
    });
  }

  async start(): Promise<void> {}

  canReach(uid: Uid): boolean | Promise<boolean> {
    return this.#s.perDevice ? this.#targets.has(uid) : true;
  }

  health(): TransportHealth {
    return { state: this.#state, inflight: this.#client.inflight, pausedForMs: this.#client.pausedForMs, devices: countNow(this.#targets)?.devices };
  }

  async deliver(uid: Uid, msg: Message, signal: AbortSignal): Promise<DeliveryResult[]> {
    if (this.#state !== 'running') throw new NotifyError('NOTIFY_ERR_CLOSED', `${this.name}: transport is stopped`);
    const targets = this.#s.perDevice ? await this.#targets.targets(uid) : [undefined];
    const last: (string | undefined)[] = [];
    const outs = await settleBy(
      targets.map((token, i) => this.#send(uid, msg, token, undefined, (r) => (last[i] = r))),
      signal,
    );
    return targets.map((token, i) => {
      const target = token ?? uid;
      const out = outs[i];
      if (out) return { transport: this.name, target, ...out };
      const tail = last[i] ? ` (last: ${last[i]})` : '';
      return { transport: this.name, target, status: 'failed', reason: `${STILL_TRYING}${tail}` };
    });
  }

  /** One request, carried to its end (retries included). */
  #send(uid: Uid, msg: Message, token: string | undefined, resumed?: PendingRetry, onRetry?: (r: string) => void): Promise<SendOutcome> {
    const req = toPushRequest(this.#compiled, this.#s.auth, templateValues(uid, msg, token));
    const target = token ?? uid;
    const ticket = this.#ticket({ transport: this.name, uid, target, msg }, resumed?.key);
    return this.#client.send(req, (res) => httpVerdict(res, this.#isSuccess), {
      target,
      ticket,
      ...(resumed ? { attempts: resumed.attempts } : {}),
      ...(onRetry ? { onRetry } : {}),
    });
  }

  resume(p: PendingRetry): void {
    void resumeWhenDue(p, this.name, this.#stopping.signal, this.#log, () => this.#send(p.uid, p.msg, this.#s.perDevice ? p.target : undefined, p));
  }

  async stop(): Promise<void> {
    if (this.#state === 'closed') return;
    this.#state = 'closed';
    this.#stopping.abort();
    await this.#client.stop();
  }
}
