import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { type IncomingHttpHeaders, type IncomingMessage, type ServerResponse, createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { ConfigError, parseConfig } from '../../src/config/load.js';
import { createDaemon } from '../../src/node/daemon.js';
import { createLogger } from '../../src/obs/log.js';
import type { DeliveryReport, ReportEntry } from '../../src/types.js';
import { tempDir } from '../helpers/daemon.js';

// config.example.yaml promises working examples for JPush, ntfy, Gotify and a plain webhook.
// These tests load exactly that file's example blocks, change nothing but the endpoint (the
// scheme and host of `url:`), and drive each one against a local server that checks what the
// real service checks (path, auth, content type, body fields; docs: shared reference section D)
// and answers the way it does.

const EXAMPLE_FILE = new URL('../../../config.example.yaml', import.meta.url);

const NAMES = ['jpush', 'ntfy', 'gotify', 'webhook'] as const;
type Name = (typeof NAMES)[number];

/** The real endpoint each example points at: the only text a test may change. */
const HOSTS: Record<Name, string> = {
  jpush: 'https://api.jpush.cn',
  ntfy: 'https://ntfy.sh',
  gotify: 'https://gotify.example.com',
  webhook: 'https://hooks.example.com',
};

/** The environment variables each example reads. */
const VARS: Record<Name, string[]> = {
  jpush: ['JPUSH_APP_KEY', 'JPUSH_MASTER_SECRET'],
  ntfy: ['NTFY_TOKEN'],
  gotify: ['GOTIFY_APP_TOKEN'],
  webhook: ['WEBHOOK_PASSWORD'],
};

const ENV = {
  // JPush's SDKs check that both are 24 letters and digits.
  JPUSH_APP_KEY: '4f8a2c6e1b9d3f7a5c0e8b2d',
  JPUSH_MASTER_SECRET: 'Zk3mQ9xT7pL2vR8nW4yB6cHs',
  NTFY_TOKEN: 'tk_AgQdq7mVBoFD37zQVN29RhuMzNIz2',
  GOTIFY_APP_TOKEN: 'AHzY7.kq-VTrMxb',
  // A quote and a colon: YAML and Basic auth must both keep it whole.
  WEBHOOK_PASSWORD: 'pa"ss:w0rd-9f3e',
};

const JPUSH_BASIC = Buffer.from(`${ENV.JPUSH_APP_KEY}:${ENV.JPUSH_MASTER_SECRET}`).toString('base64');
const WEBHOOK_BASIC = Buffer.from(`notify:${ENV.WEBHOOK_PASSWORD}`).toString('base64');
/** What must never show up in a report or a log line. */
const SECRETS = [ENV.JPUSH_MASTER_SECRET, ENV.NTFY_TOKEN, ENV.GOTIFY_APP_TOKEN, ENV.WEBHOOK_PASSWORD, JPUSH_BASIC, WEBHOOK_BASIC];

const TITLE = 'Export "Q3"';
const MSG = 'done ✓ 100%\nline 2';

// ---------------------------------------------------------------------------------------------
// The example blocks

/** Every `# >>> example: NAME` … `# <<<` block of config.example.yaml, with its first "#" removed. */
function exampleBlocks(): Map<string, string> {
  const lines = readFileSync(EXAMPLE_FILE, 'utf8').split('\n');
  const blocks = new Map<string, string>();
  let open: string | undefined;
  let body: string[] = [];
  lines.forEach((line, i) => {
    const where = `config.example.yaml:${i + 1}`;
    const start = /^# >>> example: (\S+)\s*$/.exec(line);
    if (start) {
      assert.equal(open, undefined, `${where}: example ${start[1]} starts inside example ${open}`);
      open = start[1] as string;
      body = [];
      return;
    }
    if (/^# <<<\s*$/.test(line)) {
      assert.ok(open !== undefined, `${where}: "# <<<" closes no example`);
      assert.ok(!blocks.has(open), `${where}: a second example named ${open}`);
      blocks.set(open, `${body.join('\n')}\n`);
      open = undefined;
      return;
    }
    if (open === undefined) return;
    assert.ok(line.startsWith('#'), `${where}: a line of example ${open} does not start with "#": ${JSON.stringify(line)}`);
    body.push(line.slice(1));
  });
  assert.equal(open, undefined, `config.example.yaml: example ${open} has no closing "# <<<"`);
  const missing = NAMES.filter((n) => !blocks.has(n));
  assert.deepEqual(missing, [], `config.example.yaml has no example block for ${missing.join(', ')} (want "# >>> example: NAME" … "# <<<")`);
  return blocks;
}

function block(blocks: Map<string, string>, name: Name): string {
  const text = blocks.get(name);
  assert.ok(text !== undefined, `config.example.yaml has no example block for ${name}`);
  return text;
}

/** The block with the scheme and host of its `url:` replaced by `base`; exactly once. */
function pointAt(name: Name, text: string, base: string): string {
  const host = HOSTS[name].replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  let replaced = 0;
  const out = text.replace(new RegExp(`^(\\s*url:\\s*["']?)${host}(?=[/"'\\s]|$)`, 'gm'), (_m, lead: string) => {
    replaced++;
    return `${lead}${base}`;
  });
  assert.equal(replaced, 1, `example ${name}: expected exactly one "url: ${HOSTS[name]}…" line to point at the fake, replaced ${replaced}`);
  return out;
}

function without(name: string): Record<string, string> {
  const env: Record<string, string> = { ...ENV };
  delete env[name];
  return env;
}

// ---------------------------------------------------------------------------------------------
// Fake services

interface Seen {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: IncomingHttpHeaders;
  text: string;
  /** The body as JSON, or undefined when it is not JSON. */
  json: unknown;
  /** What the fake answered. */
  status: number;
  answer: unknown;
}

interface Answer {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

interface Fake {
  /** http://127.0.0.1:PORT */
  base: string;
  requests: Seen[];
}

async function fakeService(t: TestContext, judge: (req: Omit<Seen, 'status' | 'answer'>) => Answer): Promise<Fake> {
  const requests: Seen[] = [];
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let json: unknown;
      try {
        json = JSON.parse(text);
      } catch {
        json = undefined;
      }
      const url = new URL(req.url ?? '/', 'http://fake');
      const seen = { method: req.method ?? '', path: url.pathname, query: url.searchParams, headers: req.headers, text, json };
      let a: Answer;
      try {
        a = judge(seen);
      } catch (err) {
        a = { status: 500, body: { fakeError: String(err) } };
      }
      requests.push({ ...seen, status: a.status, answer: a.body });
      const payload = a.body === undefined ? '' : JSON.stringify(a.body);
      res.writeHead(a.status, { ...(a.body === undefined ? {} : { 'content-type': 'application/json' }), ...a.headers });
      res.end(payload);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(async () => {
    server.closeAllConnections();
    server.close();
    await once(server, 'close').catch(() => undefined);
  });
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests };
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const isJson = (h: IncomingHttpHeaders) => /^application\/json\s*(;|$)/i.test(h['content-type'] ?? '');

/** user:password of a Basic authorization header, split at the first colon. */
function basicAuth(h: IncomingHttpHeaders): [string, string] | undefined {
  const m = /^Basic ([A-Za-z0-9+/]+=*)$/.exec(h.authorization ?? '');
  if (!m) return undefined;
  const plain = Buffer.from(m[1] as string, 'base64').toString('utf8');
  const colon = plain.indexOf(':');
  return colon < 0 ? undefined : [plain.slice(0, colon), plain.slice(colon + 1)];
}

/** JPush v3 push (reference D.1–D.3): Basic appKey:masterSecret, a JSON push object. */
function fakeJPush(t: TestContext): Promise<Fake & { msgIds: string[] }> {
  const msgIds: string[] = [];
  let next = 1828256757;
  const error = (status: number, code: number, message: string): Answer => ({ status, body: { error: { code, message } } });
  const PLATFORMS = ['android', 'ios', 'hmos', 'quickapp'];
  const TOP = ['platform', 'audience', 'notification', 'message', 'inapp_message', 'sms_message', 'notification_3rd', 'live_activity', 'options', 'callback', 'cid'];
  const AUDIENCE = ['tag', 'tag_and', 'tag_not', 'alias', 'registration_id', 'segment', 'abtest', 'live_activity_id'];
  return fakeService(t, (req) => {
    if (req.method !== 'POST') return error(405, 1001, 'Only support HTTP POST method');
    if (req.path !== '/v3/push') return error(404, 1003, `no such API: ${req.path}`);
    const auth = basicAuth(req.headers);
    if (!auth || !auth.every((s) => /^[0-9A-Za-z]{24}$/.test(s)) || auth[0] !== ENV.JPUSH_APP_KEY || auth[1] !== ENV.JPUSH_MASTER_SECRET) {
      return error(401, 1004, 'Authen failed');
    }
    if (!isJson(req.headers)) return error(400, 1003, `Content-Type must be application/json, got ${req.headers['content-type']}`);
    const b = req.json;
    if (!isObject(b)) return error(400, 1002, 'Missing parameter: the body is not a JSON object');
    const unknown = Object.keys(b).filter((k) => !TOP.includes(k));
    if (unknown.length > 0) return error(400, 1009, `unsupported key in push object: ${unknown.join(', ')}`);
    const p = b.platform;
    if (!(p === 'all' || (Array.isArray(p) && p.length > 0 && p.every((x) => PLATFORMS.includes(x as string))))) return error(400, 1003, 'platform is invalid');
    const a = b.audience;
    if (a !== 'all') {
      if (!isObject(a) || Object.keys(a).length === 0) return error(400, 1003, 'audience is invalid');
      for (const [k, v] of Object.entries(a)) {
        if (!AUDIENCE.includes(k)) return error(400, 1003, `audience key ${k} is invalid`);
        if (!Array.isArray(v) || v.length === 0 || v.length > 1000) return error(400, 1003, `audience.${k} must be a non-empty array`);
        if (!v.every((x) => typeof x === 'string' && x !== '' && Buffer.byteLength(x) <= 40)) return error(400, 1003, `audience.${k} has an empty or too long value`);
      }
    }
    if (b.notification === undefined && b.message === undefined) return error(400, 1002, 'notification or message is required');
    if (b.notification !== undefined) {
      const n = b.notification;
      if (!isObject(n)) return error(400, 1003, 'notification is invalid');
      const android = n.android;
      if (android !== undefined && (!isObject(android) || typeof android.alert !== 'string' || android.alert === '')) return error(400, 1002, 'notification.android.alert is required');
      const ios = n.ios;
      if (ios !== undefined && (!isObject(ios) || !(typeof ios.alert === 'string' || isObject(ios.alert)))) return error(400, 1003, 'notification.ios.alert is invalid');
      for (const part of [android, ios]) if (isObject(part) && part.extras !== undefined && !isObject(part.extras)) return error(400, 1003, 'extras must be a JSON object');
    }
    if (b.message !== undefined) {
      const m = b.message;
      if (!isObject(m) || typeof m.msg_content !== 'string' || m.msg_content === '') return error(400, 1002, 'message.msg_content is required');
      if (m.extras !== undefined && !isObject(m.extras)) return error(400, 1003, 'extras must be a JSON object');
    }
    if (b.options !== undefined) {
      if (!isObject(b.options)) return error(400, 1003, 'options is invalid');
      if (b.options.apns_production !== undefined && typeof b.options.apns_production !== 'boolean') return error(400, 1003, 'options.apns_production must be a boolean');
    }
    const msgId = String(next++);
    msgIds.push(msgId);
    return {
      status: 200,
      body: { sendno: '0', msg_id: msgId },
      headers: { 'x-rate-limit-quota': '600', 'x-rate-limit-remaining': '599', 'x-rate-limit-reset': '60' },
    };
  }).then((f) => Object.assign(f, { msgIds }));
}

/** ntfy, publishing as JSON (reference D.5): POST / with {topic, message, title, priority, tags}. */
function fakeNtfy(t: TestContext): Promise<Fake> {
  const error = (status: number, code: number, message: string): Answer => ({ status, body: { code, http: status, error: message, link: 'https://ntfy.sh/docs/publish/' } });
  let n = 0;
  return fakeService(t, (req) => {
    if (req.path !== '/') return error(404, 40401, 'page not found');
    if (req.method !== 'POST' && req.method !== 'PUT') return error(405, 40501, 'method not allowed');
    if (req.headers.authorization !== `Bearer ${ENV.NTFY_TOKEN}`) return error(401, 40101, 'unauthorized');
    if (!isJson(req.headers)) return error(400, 40017, `invalid request: expected Content-Type application/json, got ${req.headers['content-type']}`);
    const b = req.json;
    if (!isObject(b)) return error(400, 40017, 'invalid request: request body must be message JSON');
    if (typeof b.topic !== 'string' || !/^[-_A-Za-z0-9]{1,64}$/.test(b.topic)) return error(400, 40009, 'invalid request: topic invalid');
    for (const k of ['title', 'message'] as const) if (b[k] !== undefined && typeof b[k] !== 'string') return error(400, 40017, `invalid request: ${k} must be a string`);
    if (b.priority !== undefined && !(Number.isInteger(b.priority) && (b.priority as number) >= 1 && (b.priority as number) <= 5)) return error(400, 40007, 'invalid priority');
    if (b.tags !== undefined && !(Array.isArray(b.tags) && b.tags.every((x) => typeof x === 'string'))) return error(400, 40017, 'invalid request: tags must be a list of strings');
    const time = Math.floor(Date.now() / 1000);
    return {
      status: 200,
      body: {
        id: `abc${n++}`,
        time,
        expires: time + 43200,
        event: 'message',
        topic: b.topic,
        ...(b.title !== undefined ? { title: b.title } : {}),
        // ntfy shows "triggered" for a message without text.
        message: typeof b.message === 'string' && b.message !== '' ? b.message : 'triggered',
        ...(b.tags !== undefined ? { tags: b.tags } : {}),
      },
    };
  });
}

/** Gotify (reference D.5): POST /message, app token in X-Gotify-Key, JSON with a required message. */
function fakeGotify(t: TestContext): Promise<Fake> {
  const error = (status: number, name: string, description: string): Answer => ({ status, body: { error: name, errorCode: status, errorDescription: description } });
  let id = 0;
  return fakeService(t, (req) => {
    if (req.path !== '/message') return error(404, 'Not Found', 'page not found');
    if (req.method !== 'POST') return error(405, 'Method Not Allowed', 'method not allowed');
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const token = req.headers['x-gotify-key'] ?? bearer ?? req.query.get('token');
    if (token !== ENV.GOTIFY_APP_TOKEN) return error(401, 'Unauthorized', 'you need to provide a valid access token or user credentials to access this api');
    // Gin binds the body by its content type: anything but JSON is read as a form.
    if (!isJson(req.headers)) return error(400, 'Bad Request', `expected a JSON body, got Content-Type ${req.headers['content-type']}`);
    const b = req.json;
    if (!isObject(b)) return error(400, 'Bad Request', 'invalid character in JSON body');
    if (b.title !== undefined && typeof b.title !== 'string') return error(400, 'Bad Request', 'json: cannot unmarshal into Go struct field MessageExternal.title of type string');
    if (b.message !== undefined && typeof b.message !== 'string') return error(400, 'Bad Request', 'json: cannot unmarshal into Go struct field MessageExternal.message of type string');
    if (b.priority !== undefined && !Number.isInteger(b.priority)) return error(400, 'Bad Request', 'json: cannot unmarshal into Go struct field MessageExternal.priority of type int');
    if (b.extras !== undefined && !isObject(b.extras)) return error(400, 'Bad Request', 'json: cannot unmarshal into Go struct field MessageExternal.extras of type map[string]interface {}');
    if (typeof b.message !== 'string' || b.message === '') {
      return error(400, 'Bad Request', "Key: 'MessageExternal.Message' Error:Field validation for 'Message' failed on the 'required' tag");
    }
    return {
      status: 200,
      body: { id: ++id, appid: 1, message: b.message, title: b.title ?? 'notify', priority: b.priority ?? 0, ...(b.extras !== undefined ? { extras: b.extras } : {}), date: new Date().toISOString() },
    };
  });
}

/** A webhook receiver: POST /notify/UID, Basic notify:PASSWORD, a JSON body, answers 202. */
function fakeWebhook(t: TestContext): Promise<Fake> {
  return fakeService(t, (req) => {
    if (!/^\/notify\/[^/]+$/.test(req.path)) return { status: 404, body: { error: 'not found' } };
    if (req.method !== 'POST') return { status: 405, body: { error: 'method not allowed' } };
    const auth = basicAuth(req.headers);
    if (!auth || auth[0] !== 'notify' || auth[1] !== ENV.WEBHOOK_PASSWORD) return { status: 401, body: { error: 'unauthorized' }, headers: { 'www-authenticate': 'Basic realm="hooks"' } };
    if (!isJson(req.headers)) return { status: 415, body: { error: `expected application/json, got ${req.headers['content-type']}` } };
    if (req.headers['x-notify-source'] !== 'notify') return { status: 400, body: { error: 'missing X-Notify-Source: notify' } };
    if (!isObject(req.json)) return { status: 400, body: { error: 'body is not a JSON object' } };
    return { status: 202 };
  });
}

// ---------------------------------------------------------------------------------------------
// The daemon, configured with the four examples

interface World {
  http: string;
  jpush: Fake & { msgIds: string[] };
  ntfy: Fake;
  gotify: Fake;
  webhook: Fake;
  logs: string[];
  reports: DeliveryReport[];
  send(body: Record<string, unknown>): Promise<DeliveryReport>;
}

async function world(t: TestContext): Promise<World> {
  const blocks = exampleBlocks();
  const fakes = { jpush: await fakeJPush(t), ntfy: await fakeNtfy(t), gotify: await fakeGotify(t), webhook: await fakeWebhook(t) };
  const dir = tempDir(t, 'notify-example-');
  const yaml = [
    'ws:\n  listen: 127.0.0.1:0',
    'text:\n  listen: 127.0.0.1:0',
    'http:\n  listen: 127.0.0.1:0',
    `state:\n  dir: ${JSON.stringify(join(dir, 'state'))}`,
    'transports:',
    ...NAMES.map((n) => pointAt(n, block(blocks, n), fakes[n].base)),
  ].join('\n');
  const logs: string[] = [];
  const log = createLogger({ level: 'debug', write: (line) => void logs.push(line) });
  const daemon = await createDaemon(parseConfig(yaml, 'example', dir, { ...ENV }), { log });
  await daemon.start();
  t.after(() => daemon.stop());
  const http = `http://${daemon.addresses().http}`;
  const reports: DeliveryReport[] = [];
  return {
    http,
    ...fakes,
    logs,
    reports,
    async send(body) {
      const res = await fetch(`${http}/v1/send`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      const text = await res.text();
      assert.equal(res.status, 200, text);
      const report = JSON.parse(text) as DeliveryReport;
      reports.push(report);
      return report;
    },
  };
}

function entry(report: DeliveryReport, name: Name): ReportEntry {
  const found = report.results.filter((e) => e.transport === name);
  assert.equal(found.length, 1, `one report entry for ${name}: ${JSON.stringify(report.results)}`);
  return found[0] as ReportEntry;
}

function only(fake: Fake, name: string): Seen {
  assert.equal(fake.requests.length, 1, `${name} got ${fake.requests.length} requests, want 1`);
  return fake.requests[0] as Seen;
}

/** No secret, raw or JSON-escaped, in any report or log line. */
function assertNoSecrets(w: World): void {
  const texts = [...w.reports.map((r) => JSON.stringify(r)), ...w.logs];
  assert.ok(w.logs.some((l) => l.includes('transport jpush ready')), 'the daemon log was captured');
  for (const secret of SECRETS) {
    const forms = [secret, JSON.stringify(secret).slice(1, -1)];
    const leaks = texts.filter((text) => forms.some((f) => text.includes(f)));
    assert.deepEqual(leaks, [], `a secret (${secret.slice(0, 3)}…) appears in a report or log line`);
  }
}

// ---------------------------------------------------------------------------------------------

test('example config: the jpush, ntfy, gotify and webhook blocks parse as written, each naming an unset variable', () => {
  const blocks = exampleBlocks();
  const dir = '/nonexistent-base-dir';
  const parsed = (name: Name, env: Record<string, string>) => parseConfig(`transports:\n${block(blocks, name)}`, `example ${name}`, dir, env).transports[name];

  const jpush = parsed('jpush', ENV);
  assert.equal(jpush?.type, 'jpush');
  assert.equal(jpush?.appKey, ENV.JPUSH_APP_KEY);
  assert.equal(jpush?.masterSecret, ENV.JPUSH_MASTER_SECRET);
  assert.equal(jpush?.url, 'https://api.jpush.cn/v3/push');
  assert.equal(jpush?.production, false);
  assert.equal(jpush?.platform, 'all');

  const ntfy = parsed('ntfy', ENV);
  assert.equal(ntfy?.type, 'http');
  assert.equal(ntfy?.url, 'https://ntfy.sh/');
  assert.deepEqual(ntfy?.auth, { bearer: ENV.NTFY_TOKEN });

  const gotify = parsed('gotify', ENV);
  assert.equal(gotify?.type, 'http');
  assert.equal(gotify?.url, 'https://gotify.example.com/message');
  assert.deepEqual(gotify?.headers, { 'X-Gotify-Key': ENV.GOTIFY_APP_TOKEN });

  const webhook = parsed('webhook', ENV);
  assert.equal(webhook?.type, 'http');
  assert.equal(webhook?.url, 'https://hooks.example.com/notify/{{uid}}');
  assert.deepEqual(webhook?.auth, { basic: { username: 'notify', password: ENV.WEBHOOK_PASSWORD } }, 'the password keeps its quote and colon');

  // All four together, unmodified, as one transports section.
  const all = parseConfig(`transports:\n${NAMES.map((n) => block(blocks, n)).join('')}`, 'examples', dir, { ...ENV });
  assert.deepEqual(Object.keys(all.transports).sort(), [...NAMES].sort());

  for (const name of NAMES) {
    for (const variable of VARS[name]) {
      assert.throws(
        () => parsed(name, without(variable)),
        (err: unknown) => {
          assert.ok(err instanceof ConfigError, `example ${name} without ${variable}: expected a ConfigError, got ${String(err)}`);
          assert.equal(err.problems.length, 1, JSON.stringify(err.problems));
          assert.match(err.problems[0] as string, new RegExp(`^example ${name}:\\d+:\\d+: .*\\$\\{${variable}\\} is not set in the environment$`));
          return true;
        },
        `example ${name} without ${variable} is refused`,
      );
    }
  }
});

test('example config: one message with text reaches JPush, ntfy, Gotify and the webhook, each checked like the real service', async (t) => {
  const w = await world(t);
  const report = await w.send({ uid: 'uid1', title: TITLE, msg: MSG, data: { file: 'a.csv' } });

  assert.deepEqual(report.results.map((e) => e.transport).sort(), [...NAMES].sort(), JSON.stringify(report));
  for (const name of NAMES) assert.equal(entry(report, name).status, 'sent', `${name}: ${entry(report, name).reason}`);
  assert.equal(entry(report, 'jpush').target, 'alias:uid1');
  assert.deepEqual(w.jpush.msgIds.length, 1);
  assert.equal(entry(report, 'jpush').id, w.jpush.msgIds[0], 'the report carries the msg_id JPush answered');
  assert.deepEqual({ delivered: report.delivered, sent: report.sent, failed: report.failed, rejected: report.rejected, unreached: report.unreached }, {
    delivered: true,
    sent: 4,
    failed: 0,
    rejected: 0,
    unreached: [],
  });

  const jp = only(w.jpush, 'jpush');
  assert.equal(jp.method, 'POST');
  assert.equal(jp.path, '/v3/push');
  assert.equal(jp.headers.authorization, `Basic ${JPUSH_BASIC}`);
  assert.match(jp.headers['content-type'] ?? '', /^application\/json/);
  assert.deepEqual(jp.json, {
    platform: 'all',
    audience: { alias: ['uid1'] },
    notification: {
      android: { alert: MSG, title: TITLE, extras: { file: 'a.csv' } },
      ios: { alert: { title: TITLE, body: MSG }, extras: { file: 'a.csv' } },
    },
    options: { apns_production: false },
  });

  const nt = only(w.ntfy, 'ntfy');
  assert.equal(nt.method, 'POST');
  assert.equal(nt.path, '/');
  assert.equal(nt.headers.authorization, `Bearer ${ENV.NTFY_TOKEN}`);
  assert.match(nt.headers['content-type'] ?? '', /^application\/json/);
  assert.deepEqual(nt.json, { topic: 'uid1', title: TITLE, message: MSG, tags: ['bell'] });
  assert.equal((nt.answer as { message?: unknown }).message, MSG, 'ntfy published exactly the text');

  const go = only(w.gotify, 'gotify');
  assert.equal(go.method, 'POST');
  assert.equal(go.path, '/message');
  assert.equal(go.headers['x-gotify-key'], ENV.GOTIFY_APP_TOKEN);
  assert.equal(go.query.get('token'), null, 'the token is not in the URL');
  assert.match(go.headers['content-type'] ?? '', /^application\/json/);
  assert.deepEqual(go.json, { title: TITLE, message: MSG, priority: 5, extras: { 'notify::data': { file: 'a.csv' } } });

  const wh = only(w.webhook, 'webhook');
  assert.equal(wh.method, 'POST');
  assert.equal(wh.path, '/notify/uid1');
  assert.equal(wh.headers.authorization, `Basic ${WEBHOOK_BASIC}`);
  assert.match(wh.headers['content-type'] ?? '', /^application\/json/);
  assert.equal(wh.headers['x-notify-source'], 'notify');
  assert.deepEqual(wh.json, { uid: 'uid1', title: TITLE, msg: MSG, data: { file: 'a.csv' } });
  assert.equal(wh.status, 202);

  assertNoSecrets(w);
});

test('example config: a data-only message is a JPush custom message; ntfy and Gotify show its frame', async (t) => {
  const w = await world(t);
  const report = await w.send({ uid: 'uid1', data: { percent: '88%' } });
  const frame = '{"percent":"88%"}';

  for (const name of NAMES) assert.equal(entry(report, name).status, 'sent', `${name}: ${entry(report, name).reason}`);
  assert.equal(entry(report, 'jpush').id, w.jpush.msgIds[0]);
  assert.deepEqual({ delivered: report.delivered, sent: report.sent, failed: report.failed, rejected: report.rejected }, { delivered: true, sent: 4, failed: 0, rejected: 0 });

  // JPush: no alert text, so a custom (透传) message whose content is the frame, data in extras.
  assert.deepEqual(only(w.jpush, 'jpush').json, {
    platform: 'all',
    audience: { alias: ['uid1'] },
    message: { msg_content: frame, extras: { percent: '88%' } },
    options: { apns_production: false },
  });
  // ntfy and Gotify: "{{msg|frame}}" falls back to the frame, so Gotify's required message is there.
  assert.deepEqual(only(w.ntfy, 'ntfy').json, { topic: 'uid1', message: frame, tags: ['bell'] });
  const go = only(w.gotify, 'gotify');
  assert.deepEqual(go.json, { message: frame, priority: 5, extras: { 'notify::data': { percent: '88%' } } });
  assert.equal(go.status, 200);
  // The webhook: the absent title and msg are left out.
  assert.deepEqual(only(w.webhook, 'webhook').json, { uid: 'uid1', data: { percent: '88%' } });

  assertNoSecrets(w);
});
