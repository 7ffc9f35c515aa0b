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
