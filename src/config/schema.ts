import type { Document, LineCounter } from 'yaml';
import { isMap, isPair, isScalar, isSeq, type Node, type Pair } from 'yaml';
import { parseDuration } from '../duration.js';
import { isSecretKey } from '../obs/log.js';

/**
 * A small declarative schema for the YAML config: every key has a type, an optional default
 * and range; unknown keys are errors. Validation collects every problem with its YAML position.
 *
 * A spec is plain data (`{ type: 'section', keys: {...} }` literals validate as they are). The
 * constructors below (`section`, `integer`, `duration`, ...) build the same objects and also
 * carry the type of the validated value, so a declaration is the one source of its type
 * (`Infer<typeof spec>`) and of its defaults (`defaultsOf(spec)`), as zod's `z.infer` does.
 */
export type Spec =
  | SectionSpec
  | IntegerSpec
  | StringSpec
  | BooleanSpec
  | EnumSpec
  | ListenSpec
  | DurationSpec
  | MapSpec
  | ListSpec
  | CustomSpec;

export interface SectionSpec {
  type: 'section';
  keys: Readonly<Record<string, Spec>>;
}
export interface IntegerSpec {
  type: 'integer';
  min: number;
  max?: number;
  default?: number;
  required?: boolean;
}
export interface StringSpec {
  type: 'string';
  default?: string | null;
  required?: boolean;
  check?: (v: string) => string | undefined;
}
export interface BooleanSpec {
  type: 'boolean';
  default?: boolean;
}
export interface EnumSpec {
  type: 'enum';
  values: readonly string[];
  default?: string;
}
/** "host:port", "[v6]:port" or a bare port; see parseListen. */
export interface ListenSpec {
  type: 'listen';
  default: string;
}
/** A duration ("500ms", "30s", "24h", or a number of seconds), validated to milliseconds. */
export interface DurationSpec {
  type: 'duration';
  default: string;
  minMs?: number;
}
export interface MapSpec {
  type: 'map';
  of: Spec;
  emptyDefault?: boolean;
  checkKey?: (k: string) => string | undefined;
}
export interface ListSpec {
  type: 'list';
  of: Spec;
}
/** Validated by a function. A missing (or null) value is `default` when one is given. */
export interface CustomSpec {
  type: 'custom';
  validate: (value: unknown, path: string[], ctx: Validation) => unknown;
  default?: unknown;
}

declare const OUTPUT: unique symbol;
/** Marks a spec with the type of its validated value. Type-level only: never set at run time. */
export interface Typed<T> {
  // Boxed: an optional property's own `undefined` would otherwise swallow `T | undefined`.
  readonly [OUTPUT]?: { value: T };
}

/** The type of the value `validate` returns for `S` (`unknown` for a spec without one). */
export type Infer<S> = S extends { readonly [OUTPUT]?: { value: infer T } } ? T : unknown;

type Flatten<T> = { [K in keyof T]: T[K] } & {};
type OptionalKeys<K> = { [P in keyof K]-?: undefined extends Infer<K[P]> ? P : never }[keyof K];
/** A section's value: a key that may be absent (no default, not required) is optional. */
export type SectionOf<K> = Flatten<
  { -readonly [P in Exclude<keyof K, OptionalKeys<K>>]: Infer<K[P]> } & { -readonly [P in OptionalKeys<K>]?: Exclude<Infer<K[P]>, undefined> }
>;

/** A value that is absent unless `O` gives a default or makes it required. */
type Given<O, T> = O extends { default: infer D } ? (D extends null ? T | null : T) : O extends { required: true } ? T : T | undefined;

/** A mapping with exactly these keys (unknown keys are errors). */
export function section<const K extends Readonly<Record<string, Spec>>>(keys: K): { type: 'section'; keys: K } & Typed<SectionOf<K>> {
  return { type: 'section', keys };
}

/** An integer in `[min, max]`. */
export function integer<const O extends Omit<IntegerSpec, 'type'>>(o: O): IntegerSpec & O & Typed<Given<O, number>> {
  return { type: 'integer', ...o };
}

/** A string; `check` returns a problem ("must be ...") or undefined. */
export function string<const O extends Omit<StringSpec, 'type'> = {}>(o?: O): StringSpec & O & Typed<Given<O, string>> {
  return { type: 'string', ...(o as O) };
}

export function boolean<const O extends Omit<BooleanSpec, 'type'> = {}>(o?: O): BooleanSpec & O & Typed<Given<O, boolean>> {
  return { type: 'boolean', ...(o as O) };
}

/** One of a fixed list of strings. */
export function oneOf<const V extends readonly string[], const O extends { default?: V[number] } = {}>(
  values: V,
  o?: O,
): { type: 'enum'; values: V } & O & Typed<Given<O, V[number]>> {
  return { type: 'enum', values, ...(o as O) };
}

/** A listen address, kept as written ("127.0.0.1:1234", "8080"). */
export function listen<const O extends Omit<ListenSpec, 'type'>>(o: O): ListenSpec & O & Typed<string> {
  return { type: 'listen', ...o };
}

/** A duration written as "10s", "24h" or seconds; the value is in milliseconds. */
export function duration<const O extends Omit<DurationSpec, 'type'>>(o: O): DurationSpec & O & Typed<number> {
  return { type: 'duration', ...o };
}

/**
 * A mapping of any keys to values of `of`; absent is `{}`. (A null entry of a spec without a
 * default comes out undefined, as it always has; the type leaves that case out.)
 */
export function mapOf<const S extends Spec>(of: S, o: Omit<MapSpec, 'type' | 'of'> = {}): Omit<MapSpec, 'of'> & { of: S } & Typed<Record<string, Exclude<Infer<S>, undefined>>> {
  return { type: 'map', of, ...o };
}

/** A list of values of `of`; absent is `[]`. (Null items: as for mapOf.) */
export function listOf<const S extends Spec>(of: S): { type: 'list'; of: S } & Typed<Exclude<Infer<S>, undefined>[]> {
  return { type: 'list', of };
}

/** A value checked by `validate`, which reports problems to `ctx.fail` and returns the value to keep. */
export function custom<T>(validate: (value: unknown, path: string[], ctx: Validation) => T): CustomSpec & Typed<T>;
export function custom<T, const D>(validate: (value: unknown, path: string[], ctx: Validation) => T, o: { default: D }): CustomSpec & { default: D } & Typed<T>;
export function custom(validate: CustomSpec['validate'], o?: { default: unknown }): CustomSpec {
  return { type: 'custom', validate, ...o };
}

/** The type of `defaultsOf(S)`: the defaults as written in YAML ("10s", not 10000). */
export type DefaultsOf<S> = S extends { type: 'section'; keys: infer K }
  ? { -readonly [P in keyof K as DefaultsOf<K[P]> extends undefined ? never : P]: DefaultsOf<K[P]> }
  : S extends { type: 'list' | 'map' }
    ? Infer<S>
    : S extends { default: infer D }
      ? D
      : undefined;

/**
 * Every default of `spec` as it would be written in the YAML (`bindTimeout: '10s'`): a
 * section's keys that have one, `[]` for a list and `{}` for a map.
 */
export function defaultsOf<S extends Spec>(spec: S): DefaultsOf<S> {
  return defaultOf(spec) as DefaultsOf<S>;
}

function defaultOf(spec: Spec): unknown {
  switch (spec.type) {
    case 'section': {
      const out: Record<string, unknown> = {};
      for (const [key, sub] of Object.entries(spec.keys)) {
        const d = defaultOf(sub);
        if (d !== undefined) out[key] = d;
      }
      return out;
    }
    case 'list':
      return [];
    case 'map':
      return {};
    default:
      return spec.default;
  }
}

/** Freezes `v` and everything in it. */
export function deepFreeze<T>(v: T): T {
  if (v && typeof v === 'object' && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const k of Object.keys(v)) deepFreeze((v as Record<string, unknown>)[k]);
  }
  return v;
}

export interface Problem {
  /** Dotted key path, e.g. `ws.listen`. */
  path: string;
  message: string;
  line?: number;
  col?: number;
}

/** Carries the document for positions and collects problems. */
export class Validation {
  readonly problems: Problem[] = [];
  constructor(
    readonly doc: Document | undefined,
    readonly lines: LineCounter | undefined,
    /** Relative file paths in the config are resolved against this (the config file's folder). */
    readonly baseDir: string = process.cwd(),
  ) {}

  /** Records a problem at `path`; `atKey` points at the key instead of the value. */
  fail(path: readonly string[], message: string, atKey = false): void {
    const p: Problem = { path: formatPath(path), message };
    const pos = this.#position(path, atKey);
    if (pos) Object.assign(p, pos);
    this.problems.push(p);
  }

  #position(path: readonly string[], atKey: boolean): { line: number; col: number } | undefined {
    if (!this.doc || !this.lines) return undefined;
    let node: unknown = this.doc.contents;
    let keyNode: Node | undefined;
    for (const seg of path) {
      if (isMap(node)) {
        const pair = node.items.find((it: Pair) => isScalar(it.key) && String(it.key.value) === seg);
        if (!pair) break;
        keyNode = pair.key as Node;
        node = pair.value;
      } else if (isSeq(node)) {
        keyNode = undefined;
        node = node.items[Number(seg)];
      } else break;
    }
    const target = (atKey && keyNode) || (isPair(node) ? node.key : node) || keyNode;
    const range = (target as Node | undefined)?.range;
    if (!range) return undefined;
    return this.lines.linePos(range[0]);
  }
}

/** A key path as people write it: `devices.uid1.apns[0]`. */
export function formatPath(path: readonly string[]): string {
  let out = '';
  for (const seg of path) out += /^\d+$/.test(seg) ? `[${seg}]` : out ? `.${seg}` : seg;
  return out;
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** Validates `value` against `spec`, applying defaults; problems go to `ctx`. */
export function validate(spec: Spec, value: unknown, path: string[], ctx: Validation): unknown {
  const name = formatPath(path) || 'the config';
  // A problem with a secret names the key and what is wrong, never the value (not even a
  // wrong one: it may be the real secret under a misspelt or mistyped key).
  const secret = holdsSecret(path);
  const got = (v: unknown) => `, got ${secret ? kindOf(v) : describe(v)}`;
  switch (spec.type) {
    case 'section': {
      if (value === undefined || value === null) value = {};
      if (!isObject(value)) {
        ctx.fail(path, `${name} must be a mapping of keys`);
        value = {};
      }
      const obj = value as Record<string, unknown>;
      const out: Record<string, unknown> = {};
      for (const key of Object.keys(obj)) {
        if (!(key in spec.keys)) {
          const known = Object.keys(spec.keys).join(', ');
          ctx.fail([...path, key], `unknown key "${key}"${path.length ? ` in ${name}` : ''}; expected one of: ${known}`, true);
        }
      }
      for (const [key, sub] of Object.entries(spec.keys)) {
        const v = validate(sub, obj[key], [...path, key], ctx);
        if (v !== undefined) out[key] = v;
      }
      return out;
    }
    case 'integer': {
      if (value === undefined || value === null) {
        if (spec.required) ctx.fail(path, `${name} is required`);
        return spec.default;
      }
      if (typeof value !== 'number' || !Number.isInteger(value)) {
        ctx.fail(path, `${name} must be an integer${got(value)}`);
        return spec.default;
      }
      if (value < spec.min || (spec.max !== undefined && value > spec.max)) {
        const range = spec.max === undefined ? `at least ${spec.min}` : `between ${spec.min} and ${spec.max}`;
        ctx.fail(path, `${name} must be ${range}${secret ? '' : `, got ${value}`}`);
        return spec.default;
      }
      return value;
    }
    case 'string': {
      if (value === undefined || value === null) {
        if (spec.required) ctx.fail(path, `${name} is required`);
        return spec.default;
      }
      if (typeof value !== 'string') {
        ctx.fail(path, `${name} must be a string${got(value)}`);
        return spec.default;
      }
      const problem = spec.check?.(value);
      if (problem) ctx.fail(path, `${name} ${problem}`);
      return value;
    }
    case 'boolean': {
      if (value === undefined || value === null) return spec.default;
      if (typeof value !== 'boolean') {
        ctx.fail(path, `${name} must be true or false${got(value)}`);
        return spec.default;
      }
      return value;
    }
    case 'enum': {
      if (value === undefined || value === null) return spec.default;
      if (typeof value !== 'string' || !spec.values.includes(value)) {
        ctx.fail(path, `${name} must be one of ${spec.values.join(', ')}${got(value)}`);
        return spec.default;
      }
      return value;
    }
    case 'listen': {
      if (value === undefined || value === null) return spec.default;
      const text = typeof value === 'number' ? String(value) : value;
      if (typeof text !== 'string') {
        ctx.fail(path, `${name} must be "host:port" or a port number${got(value)}`);
        return spec.default;
      }
      try {
        parseListen(text);
      } catch (err) {
        ctx.fail(path, secret ? `${name} must be "host:port" or a port number` : `${name} ${(err as Error).message}`);
        return spec.default;
      }
      return text;
    }
    case 'duration': {
      const raw = value === undefined || value === null ? spec.default : value;
      try {
        const ms = parseDuration(raw);
        if (spec.minMs !== undefined && ms < spec.minMs) {
          ctx.fail(path, `${name} must be at least ${spec.minMs} ms${secret ? '' : `, got ${JSON.stringify(raw)}`}`);
          return parseDuration(spec.default);
        }
        return ms;
      } catch (err) {
        ctx.fail(path, secret ? `${name} must be a duration such as "30s" or "24h"` : `${name} ${(err as Error).message}`);
        return parseDuration(spec.default);
      }
    }
    case 'map': {
      if (value === undefined || value === null) return {};
      if (!isObject(value)) {
        ctx.fail(path, `${name} must be a mapping`);
        return {};
      }
      const out: Record<string, unknown> = {};
      for (const [key, v] of Object.entries(value)) {
        const bad = spec.checkKey?.(key);
        if (bad) ctx.fail([...path, key], bad, true);
        out[key] = validate(spec.of, v, [...path, key], ctx);
      }
      return out;
    }
    case 'list': {
      if (value === undefined || value === null) return [];
      if (!Array.isArray(value)) {
        ctx.fail(path, `${name} must be a list`);
        return [];
      }
      return value.map((v, i) => validate(spec.of, v, [...path, String(i)], ctx));
    }
    case 'custom':
      return spec.validate((value === undefined || value === null) && spec.default !== undefined ? spec.default : value, path, ctx);
  }
}

/**
 * True when the value at `path` may be a secret: a key on its path looks like one (obs/log.ts
 * isSecretKey), so everything under `privateKey:` or `token:` is treated as secret too.
 */
function holdsSecret(path: readonly string[]): boolean {
  return path.some(isSecretKey);
}

/** What a value is, without what it says: for secrets. */
function kindOf(v: unknown): string {
  if (Array.isArray(v)) return 'a list';
  if (isObject(v)) return 'a mapping';
  if (typeof v === 'boolean') return 'true or false';
  return v === null ? 'null' : `a ${typeof v}`;
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return 'a list';
  if (isObject(v)) return 'a mapping';
  return JSON.stringify(v);
}

/** A listen address split into host and port. */
export interface ListenAddress {
  host: string;
  port: number;
}

/**
 * Parses "host:port", "[v6]:port" or a bare "port" (which means 127.0.0.1). Port 0 asks the
 * system for a free port.
 */
export function parseListen(text: string): ListenAddress {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:\s[\]]+)):(\d{1,5})$/.exec(text) ?? /^()()(\d{1,5})$/.exec(text);
  if (!m) throw new Error(`must be "host:port" or a port number, got ${JSON.stringify(text)}`);
  const port = Number(m[3]);
  if (port > 65535) throw new Error(`has port ${port}, above 65535`);
  return { host: m[1] || m[2] || '127.0.0.1', port };
}

/** Formats an address as "host:port", bracketing IPv6 hosts. */
export function formatListen(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
