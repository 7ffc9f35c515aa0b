import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test, type TestContext } from 'node:test';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { ROUTES } from '../../src/ingress/http.js';
import { VERSION } from '../../src/version.js';
import { type TestDaemon, startDaemon } from '../helpers/daemon.js';
import { startFakeHttp } from '../helpers/fake-http.js';
import { SKIP_REDIS, startRedis } from '../helpers/redis.js';

/**
 * The OpenAPI document (openapi.json, served at /v1/openapi.json) against the running daemon:
 * every route the daemon serves is in it and nothing else, and every response it documents,
 * success and error alike, is produced for real by a request below and matches its schema.
 */

interface Operation {
  responses: Record<string, { $ref?: string; content?: Record<string, { schema: unknown }> }>;
  security?: unknown[];
}
type Doc = { openapi: string; info: { version: string }; paths: Record<string, Record<string, Operation>>; components: Record<string, Record<string, unknown>> };

const DOC_FILE = new URL('../../../openapi.json', import.meta.url);
const doc = JSON.parse(readFileSync(DOC_FILE, 'utf8')) as Doc;
const TOKEN = 'openapi-test-token-0123456789';
const AUTH = { authorization: `Bearer ${TOKEN}` };

/** Resolves a local `$ref` ("#/components/responses/X"). */
function deref<T>(node: T | { $ref: string }): T {
  let n: unknown = node;
  while (n && typeof n === 'object' && '$ref' in n) {
    const path = (n as { $ref: string }).$ref.replace(/^#\//, '').split('/');
    n = path.reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], doc);
    assert.ok(n !== undefined, `dangling $ref ${(node as { $ref: string }).$ref}`);
  }
  return n as T;
}

function operations(): { key: string; path: string; method: string; op: Operation }[] {
  const out = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(item)) out.push({ key: `${method.toUpperCase()} ${path}`, path, method: method.toUpperCase(), op });
  }
  return out;
}

const ajv = new Ajv2020({ strict: false, allErrors: true });
ajv.addSchema({ $id: 'notify', components: doc.components }, 'notify');
/** A validator for a response schema; `$ref`s to components resolve inside the document. */
function validator(schema: unknown): ValidateFunction {
  const rewritten = JSON.parse(JSON.stringify(schema).replaceAll('"#/components/', '"notify#/components/')) as object;
  return ajv.compile(rewritten);
}

test('openapi: the document is OpenAPI 3.1, its version is the daemon\'s, every $ref resolves and every schema compiles', () => {
  assert.equal(doc.openapi, '3.1.0');
  assert.equal(doc.info.version, VERSION, 'info.version follows package.json');
  const refs = JSON.stringify(doc).match(/"\$ref":"[^"]+"/g) ?? [];
  assert.ok(refs.length > 10);
  for (const r of refs) deref({ $ref: (JSON.parse(`{${r}}`) as { $ref: string }).$ref });
  for (const [name, schema] of Object.entries(doc.components.schemas ?? {})) assert.doesNotThrow(() => validator(schema), `schema ${name} compiles`);
  for (const { key, op } of operations()) {
    assert.ok(Object.keys(op.responses).length > 0, `${key} documents its responses`);
    for (const [status, r] of Object.entries(op.responses)) {
      assert.match(status, /^[1-5]\d\d$/, `${key}: response ${status}`);
      assert.ok(deref(r).content, `${key} ${status} documents its body`);
    }
  }
});

test('openapi: the daemon serves exactly the documented routes, and asks for the token exactly where the document says', () => {
  const documented = operations().map((o) => o.key).sort();
  const served = ROUTES.map((r) => `${r.method} ${r.path}`).sort();
  assert.deepEqual(served, documented);
  for (const r of ROUTES) {
    const op = doc.paths[r.path]?.[r.method.toLowerCase()] as Operation;
    const open = Array.isArray(op.security) && op.security.length === 0;
    assert.equal(!open, r.auth, `${r.method} ${r.path}: token needed = ${r.auth}`);
  }
});

/** One request that makes a documented response happen. */
type Recipe = (w: World) => Promise<Response>;
interface World {
  d: TestDaemon;
  /** A cluster node whose Redis is stopped: the store is unavailable. */
  down: () => Promise<TestDaemon>;
  /** A daemon with ws.auth: token. */
  tokens: () => Promise<TestDaemon>;
}

const call = (d: TestDaemon, method: string, path: string, body?: unknown, headers: Record<string, string> = AUTH) =>
  fetch(`${d.httpUrl}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  });
const big = 'x'.repeat(2 * 1024 * 1024);
const device = { uid: 'uid1', transport: 'hook', token: 'device-1' };

/** Every documented (operation, status), and how to make it happen. */
const RECIPES: Record<string, Recipe> = {
  'POST /v1/send 200': ({ d }) => call(d, 'POST', '/v1/send', { uid: 'uid1', msg: 'hello' }),
  'POST /v1/send 400': ({ d }) => call(d, 'POST', '/v1/send', { uid: 'uid1', colour: 'red' }),
  'POST /v1/send 401': ({ d }) => call(d, 'POST', '/v1/send', { uid: 'uid1', msg: 'hello' }, {}),
  'POST /v1/send 413': ({ d }) => call(d, 'POST', '/v1/send', { uid: 'uid1', msg: big }),
  'POST /v1/send 503': async (w) => call(await w.down(), 'POST', '/v1/send', { uid: 'uid1', msg: 'hello' }),
  'GET /v1/devices 200': async ({ d }) => {
    // The other shape of the same response: retired tokens (none yet, but the shape is checked).
    const retired = await call(d, 'GET', '/v1/devices?retired=1&transport=hook');
    assert.equal(retired.status, 200);
    const body = await retired.json();
    const v = validator({ $ref: '#/components/schemas/RetiredList' });
    assert.ok(v(body), JSON.stringify(v.errors));
    return call(d, 'GET', '/v1/devices?uid=uid1');
  },
  'GET /v1/devices 400': ({ d }) => call(d, 'GET', `/v1/devices?uid=${'u'.repeat(300)}`),
  'GET /v1/devices 401': ({ d }) => call(d, 'GET', '/v1/devices', undefined, { authorization: 'Bearer wrong-token-0123456789' }),
  'GET /v1/devices 503': async (w) => call(await w.down(), 'GET', '/v1/devices?uid=uid1'),
  'POST /v1/devices 200': ({ d }) => call(d, 'POST', '/v1/devices', device),
  'POST /v1/devices 400': ({ d }) => call(d, 'POST', '/v1/devices', { ...device, transport: 'no-such-transport' }),
  'POST /v1/devices 401': ({ d }) => call(d, 'POST', '/v1/devices', device, {}),
  'POST /v1/devices 413': ({ d }) => call(d, 'POST', '/v1/devices', { ...device, token: big }),
  'POST /v1/devices 503': async (w) => call(await w.down(), 'POST', '/v1/devices', device),
  'DELETE /v1/devices 200': ({ d }) => call(d, 'DELETE', '/v1/devices?uid=uid1&transport=hook&token=device-1'),
  'DELETE /v1/devices 400': ({ d }) => call(d, 'DELETE', '/v1/devices', '{"uid":'),
  'DELETE /v1/devices 401': ({ d }) => call(d, 'DELETE', '/v1/devices', device, {}),
  'DELETE /v1/devices 503': async (w) => call(await w.down(), 'DELETE', '/v1/devices', device),
  'GET /v1/status 200': ({ d }) => call(d, 'GET', '/v1/status'),
  'GET /v1/status 401': ({ d }) => call(d, 'GET', '/v1/status', undefined, {}),
  'GET /v1/messages/{id} 200': async ({ d }) => {
    const sent = (await (await call(d, 'POST', '/v1/send', { uids: ['uid1', 'uid-failing'], msg: 'traced', id: 'order-1' })).json()) as { id: string };
    return call(d, 'GET', `/v1/messages/${encodeURIComponent(sent.id)}`);
  },
  'GET /v1/messages/{id} 400': ({ d }) => call(d, 'GET', `/v1/messages/${'x'.repeat(300)}`),
  'GET /v1/messages/{id} 401': ({ d }) => call(d, 'GET', '/v1/messages/01ABC', undefined, {}),
  'GET /v1/messages/{id} 404': ({ d }) => call(d, 'GET', '/v1/messages/no-such-message'),
  'GET /v1/uids/{uid} 200': async ({ d }) => {
    await call(d, 'POST', '/v1/devices', { uid: 'uid-who', transport: 'hook', token: 'device-who' });
    await call(d, 'POST', '/v1/send', { uid: 'uid-who', msg: 'for who' });
    const res = await call(d, 'GET', '/v1/uids/uid-who');
    const body = (await res.clone().json()) as { devices: unknown[]; recentMessages: unknown[] };
    assert.ok(body.devices.length > 0 && body.recentMessages.length > 0, JSON.stringify(body));
    return res;
  },
  'GET /v1/uids/{uid} 400': ({ d }) => call(d, 'GET', `/v1/uids/${'u'.repeat(300)}`),
  'GET /v1/uids/{uid} 401': ({ d }) => call(d, 'GET', '/v1/uids/uid1', undefined, {}),
  'POST /v1/tokens 200': async (w) => call(await w.tokens(), 'POST', '/v1/tokens', { uid: 'uid1', ttl: '15m' }),
  'POST /v1/tokens 400': async (w) => call(await w.tokens(), 'POST', '/v1/tokens', { uid: 'uid1', ttl: 'soon' }),
  'POST /v1/tokens 401': async (w) => call(await w.tokens(), 'POST', '/v1/tokens', { uid: 'uid1' }, {}),
  'POST /v1/tokens 409': ({ d }) => call(d, 'POST', '/v1/tokens', { uid: 'uid1' }),
  'POST /v1/tokens 413': async (w) => call(await w.tokens(), 'POST', '/v1/tokens', { uid: 'uid1', pad: big }),
  'GET /v1/failures 200': async ({ d }) => {
    // The "refuses" webhook answers 400: a final failure to list.
    await call(d, 'POST', '/v1/send', { uid: 'uid-failing', msg: 'to a webhook that refuses' });
    const res = await call(d, 'GET', '/v1/failures?limit=10');
    const body = (await res.clone().json()) as { failures: { uid: string }[] };
    assert.ok(body.failures.some((f) => f.uid === 'uid-failing'), JSON.stringify(body));
    return res;
  },
  'GET /v1/failures 400': ({ d }) => call(d, 'GET', '/v1/failures?limit=zero'),
  'GET /v1/failures 401': ({ d }) => call(d, 'GET', '/v1/failures', undefined, {}),
  'GET /metrics 200': ({ d }) => call(d, 'GET', '/metrics'),
  'GET /metrics 401': ({ d }) => call(d, 'GET', '/metrics', undefined, {}),
  'GET /healthz 200': ({ d }) => call(d, 'GET', '/healthz', undefined, {}),
  'GET /healthz 503': async (w) => call(await w.down(), 'GET', '/healthz', undefined, {}),
  'GET /v1/openapi.json 200': ({ d }) => call(d, 'GET', '/v1/openapi.json', undefined, {}),
};

async function world(t: TestContext): Promise<World> {
  const hook = await startFakeHttp(t, () => ({ status: 200 }));
  const refuses = await startFakeHttp(t, () => ({ status: 400 }));
  const d = await startDaemon(t, {
    http: { token: TOKEN },
    transports: { hook: { type: 'http', url: `${hook.url}/push`, method: 'POST' }, refuses: { type: 'http', url: `${refuses.url}/push`, method: 'POST' } },
  });
  let tokenNode: TestDaemon | undefined;
  const tokens = async () => (tokenNode ??= await startDaemon(t, { http: { token: TOKEN }, ws: { auth: 'token', secret: 'openapi-test-ws-secret-0123456789' } }));
  let downNode: TestDaemon | undefined;
  const down = async () => {
    if (downNode) return downNode;
    if (SKIP_REDIS) throw new Error(SKIP_REDIS);
    const nodes: TestDaemon[] = [];
    t.after(() => Promise.all(nodes.map((n) => n.stop())));
    const redis = await startRedis(t);
    downNode = await startDaemon(t, { http: { token: TOKEN }, cluster: { redis: redis.url }, transports: { hook: { type: 'http', url: `${hook.url}/push`, method: 'POST' } } });
    nodes.push(downNode);
    await redis.stop();
    return downNode;
  };
  return { d, down, tokens };
}

test('openapi: every documented response, success and error, is what the daemon answers to a real request, body and content type', { skip: SKIP_REDIS }, async (t) => {
  const w = await world(t);
  const documented = operations().flatMap(({ key, op }) => Object.keys(op.responses).map((s) => `${key} ${s}`));
  assert.deepEqual(Object.keys(RECIPES).sort(), documented.sort(), 'one request per documented response, none undocumented');
  for (const { key, op } of operations()) {
    for (const [status, ref] of Object.entries(op.responses)) {
      const recipe = RECIPES[`${key} ${status}`] as Recipe;
      const res = await recipe(w);
      const text = await res.text();
      assert.equal(res.status, Number(status), `${key}: expected ${status}, got ${res.status} ${text}`);
      const content = deref(ref).content as Record<string, { schema: unknown }>;
      const [type, { schema }] = Object.entries(content)[0] as [string, { schema: unknown }];
      assert.ok((res.headers.get('content-type') ?? '').startsWith(type), `${key} ${status}: content-type ${res.headers.get('content-type')} is ${type}`);
      const body = type === 'application/json' ? (JSON.parse(text) as unknown) : text;
      const validate = validator(schema);
      assert.ok(validate(body), `${key} ${status}: ${JSON.stringify(validate.errors)} in ${text.slice(0, 300)}`);
      if (Number(status) === 503 && key !== 'GET /healthz') assert.equal(res.headers.get('retry-after'), '1', `${key} 503 says when to try again`);
    }
  }
});

test('openapi: the errors every path shares (unknown path 404, a method the path does not take 405 with Allow) have the documented error shape', async (t) => {
  const { d } = await world(t);
  const validate = validator({ $ref: '#/components/schemas/Error' });
  const notFound = await call(d, 'GET', '/v1/nothing-here');
  assert.equal(notFound.status, 404);
  assert.ok(validate(await notFound.json()));
  for (const [path, item] of Object.entries(doc.paths)) {
    const allowed = Object.keys(item).map((m) => m.toUpperCase());
    const other = ['GET', 'POST', 'DELETE', 'PUT'].find((m) => !allowed.includes(m)) as string;
    const res = await call(d, other, path.replace(/\{\w+\}/, 'x'), other === 'GET' ? undefined : {});
    assert.equal(res.status, 405, `${other} ${path}`);
    assert.deepEqual((res.headers.get('allow') ?? '').split(', ').sort(), allowed.sort(), `${path}: Allow lists the documented methods`);
    const body = (await res.json()) as unknown;
    assert.ok(validate(body), JSON.stringify(body));
  }
  const served = (await (await call(d, 'GET', '/v1/openapi.json', undefined, {})).json()) as unknown;
  assert.deepEqual(served, doc, 'the served document is the one in the repository');
});
