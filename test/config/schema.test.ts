import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  type Infer,
  type Spec,
  Validation,
  boolean,
  custom,
  defaultsOf,
  duration,
  integer,
  listOf,
  listen,
  mapOf,
  oneOf,
  section,
  string,
  validate,
} from '../../src/config/schema.js';
import { type Config, DEFAULTS } from '../../src/config/load.js';
import type { Route } from '../../src/types.js';
import type { LogLevel } from '../../src/obs/log.js';

/** True when A and B are the same type (not merely assignable). */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const same = <A, B>(ok: Equal<A, B>) => assert.equal(ok, true);

const demo = section({
  port: integer({ min: 1, max: 65535, default: 80 }),
  weight: integer({ min: 0 }),
  id: integer({ min: 0, required: true }),
  name: string({ default: null }),
  tag: string(),
  on: boolean({ default: true }),
  mode: oneOf(['a', 'b'], { default: 'a' }),
  addr: listen({ default: '127.0.0.1:1' }),
  wait: duration({ default: '2s', minMs: 1 }),
  tags: listOf(string()),
  byName: mapOf(integer({ min: 0, default: 0 })),
  upper: custom((v) => String(v ?? '').toUpperCase()),
  dir: custom((v) => `/base/${String(v)}`, { default: 'data' }),
  inner: section({ n: integer({ min: 0, default: 1 }) }),
});

test('schema: the value type is inferred from the declaration', () => {
  type Demo = Infer<typeof demo>;
  same<
    Demo,
    {
      port: number;
      weight?: number;
      id: number;
      name: string | null;
      tag?: string;
      on: boolean;
      mode: 'a' | 'b';
      addr: string;
      wait: number;
      tags: string[];
      byName: Record<string, number>;
      upper: string;
      dir: string;
      inner: { n: number };
    }
  >(true);
  same<Config['ws']['auth'], 'none' | 'token'>(true);
  same<Config['ws']['secret'], string | null>(true);
  same<Config['ws']['bindTimeout'], number>(true);
  same<Config['dispatch']['route'], Route>(true);
  same<Config['log']['level'], LogLevel>(true);
  same<Config['text']['allow'], string[]>(true);
  same<Config['devices'], Record<string, Record<string, string[]>>>(true);
  same<Infer<Spec>, unknown>(true);
});

test('schema: defaultsOf reads the defaults as written, and validation applies them', () => {
  const d = defaultsOf(demo);
  assert.deepEqual(d, { port: 80, name: null, on: true, mode: 'a', addr: '127.0.0.1:1', wait: '2s', tags: [], byName: {}, dir: 'data', inner: { n: 1 } });
  same<typeof d.wait, '2s'>(true);
  const ctx = new Validation(undefined, undefined);
  const v = validate(demo, { id: 3 }, [], ctx) as Infer<typeof demo>;
  assert.deepEqual(ctx.problems, []);
  assert.deepEqual(v, { port: 80, id: 3, name: null, on: true, mode: 'a', addr: '127.0.0.1:1', wait: 2000, tags: [], byName: {}, upper: '', dir: '/base/data', inner: { n: 1 } });
});

test('schema: DEFAULTS is read from the notify declaration, units in the names', () => {
  assert.equal(DEFAULTS.ws.listen, '127.0.0.1:1234');
  assert.equal(DEFAULTS.ws.bindTimeout, '10s');
  assert.equal(DEFAULTS.ws.secret, null);
  assert.equal(DEFAULTS.history.ttl, '24h');
  assert.equal(DEFAULTS.state.dir, './notify-data');
  assert.deepEqual(DEFAULTS.text.allow, []);
  assert.ok(Object.isFrozen(DEFAULTS.ws));
  assert.equal('transports' in DEFAULTS, false, 'transports has no default entries');
});

test('schema: plain { type: ... } literals validate as before, alone and inside constructors', () => {
  const literal: Spec = {
    type: 'section',
    keys: {
      url: { type: 'string', required: true },
      method: { type: 'enum', values: ['GET', 'POST'], default: 'POST' },
      retry: { type: 'section', keys: { limit: { type: 'integer', min: 0, default: 3 } } },
    },
  };
  const mixed = section({ transport: literal, n: integer({ min: 0, default: 1 }) });
  same<Infer<typeof mixed>, { transport?: unknown; n: number }>(true);
  const ctx = new Validation(undefined, undefined);
  assert.deepEqual(validate(mixed, { transport: { url: 'u' } }, [], ctx), { transport: { url: 'u', method: 'POST', retry: { limit: 3 } }, n: 1 });
  assert.deepEqual(ctx.problems, []);
  const bad = new Validation(undefined, undefined);
  validate(literal, { method: 'PUT', extra: 1 }, ['t'], bad);
  assert.deepEqual(
    bad.problems.map((p) => `${p.path}: ${p.message}`),
    ['t.extra: unknown key "extra" in t; expected one of: url, method, retry', 't.url: t.url is required', 't.method: t.method must be one of GET, POST, got "PUT"'],
  );
});

test('schema: under a secret-looking key (obs/log.ts isSecretKey), no problem message carries the value', () => {
  const spec = section({
    apiToken: integer({ min: 1_000_000 }),
    password: boolean(),
    secret: oneOf(['a', 'b']),
    bearer: listen({ default: '127.0.0.1:1' }),
    passphrase: duration({ default: '1s', minMs: 1000 }),
    tokens: listOf(string()),
    privateKey: mapOf(string()),
  });
  const ctx = new Validation(undefined, undefined);
  validate(
    spec,
    { apiToken: 'Zq1-secret-a', password: 'Zq2-secret-b', secret: 'Zq3-secret-c', bearer: 'Zq4-secret-d', passphrase: 'Zq5-secret-e', tokens: [5551234], privateKey: { k: 5554321 } },
    [],
    ctx,
  );
  assert.equal(ctx.problems.length, 7, JSON.stringify(ctx.problems));
  for (const p of ctx.problems) assert.doesNotMatch(p.message, /Zq\d-secret|555/, p.message);
  assert.deepEqual(
    ctx.problems.map((p) => p.message),
    [
      'apiToken must be an integer, got a string',
      'password must be true or false, got a string',
      'secret must be one of a, b, got a string',
      'bearer must be "host:port" or a port number',
      'passphrase must be a duration such as "30s" or "24h"',
      'tokens[0] must be a string, got a number',
      'privateKey.k must be a string, got a number',
    ],
  );
  const range = new Validation(undefined, undefined);
  validate(spec, { apiToken: 555001, passphrase: 0.5 }, [], range);
  for (const p of range.problems) assert.doesNotMatch(p.message, /555|0\.5/, p.message);
  assert.deepEqual(range.problems.map((p) => p.message), ['apiToken must be at least 1000000', 'passphrase must be at least 1000 ms']);
  // Other keys still show what they got.
  const plain = new Validation(undefined, undefined);
  validate(section({ port: integer({ min: 1 }) }), { port: 'eighty' }, [], plain);
  assert.deepEqual(plain.problems.map((p) => p.message), ['port must be an integer, got "eighty"']);
});
