import type { Document, LineCounter } from 'yaml';
import { isMap, isPair, isScalar, isSeq, type Node, type Pair } from 'yaml';
import { parseDuration } from '../duration.js';

/**
 * A small declarative schema for the YAML config: every key has a type, an optional default
 * and range; unknown keys are errors. Validation collects every problem with its YAML position.
 */
export type Spec =
  | { type: 'section'; keys: Readonly<Record<string, Spec>> }
  | { type: 'integer'; min: number; max?: number; default?: number; required?: boolean }
  | { type: 'string'; default?: string | null; required?: boolean; check?: (v: string) => string | undefined }
  | { type: 'boolean'; default?: boolean }
  | { type: 'enum'; values: readonly string[]; default?: string }
  | { type: 'listen'; default: string }
  /** A duration ("500ms", "30s", "24h", or a number of seconds), validated to milliseconds. */
  | { type: 'duration'; default: string; minMs?: number }
  | { type: 'map'; of: Spec; emptyDefault?: boolean; checkKey?: (k: string) => string | undefined }
  | { type: 'list'; of: Spec }
  | { type: 'custom'; validate: (value: unknown, path: string[], ctx: Validation) => unknown };

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
        ctx.fail(path, `${name} must be an integer, got ${describe(value)}`);
        return spec.default;
      }
      if (value < spec.min || (spec.max !== undefined && value > spec.max)) {
        const range = spec.max === undefined ? `at least ${spec.min}` : `between ${spec.min} and ${spec.max}`;
        ctx.fail(path, `${name} must be ${range}, got ${value}`);
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
        ctx.fail(path, `${name} must be a string, got ${describe(value)}`);
        return spec.default;
      }
      const problem = spec.check?.(value);
      if (problem) ctx.fail(path, `${name} ${problem}`);
      return value;
    }
    case 'boolean': {
      if (value === undefined || value === null) return spec.default;
      if (typeof value !== 'boolean') {
        ctx.fail(path, `${name} must be true or false, got ${describe(value)}`);
        return spec.default;
      }
      return value;
    }
    case 'enum': {
      if (value === undefined || value === null) return spec.default;
      if (typeof value !== 'string' || !spec.values.includes(value)) {
        ctx.fail(path, `${name} must be one of ${spec.values.join(', ')}, got ${describe(value)}`);
        return spec.default;
      }
      return value;
    }
    case 'listen': {
      if (value === undefined || value === null) return spec.default;
      const text = typeof value === 'number' ? String(value) : value;
      if (typeof text !== 'string') {
        ctx.fail(path, `${name} must be "host:port" or a port number, got ${describe(value)}`);
        return spec.default;
      }
      try {
        parseListen(text);
      } catch (err) {
        ctx.fail(path, `${name} ${(err as Error).message}`);
        return spec.default;
      }
      return text;
    }
    case 'duration': {
      const raw = value === undefined || value === null ? spec.default : value;
      try {
        const ms = parseDuration(raw);
        if (spec.minMs !== undefined && ms < spec.minMs) {
          ctx.fail(path, `${name} must be at least ${spec.minMs} ms, got ${JSON.stringify(raw)}`);
          return parseDuration(spec.default);
        }
        return ms;
      } catch (err) {
        ctx.fail(path, `${name} ${(err as Error).message}`);
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
      return spec.validate(value, path, ctx);
  }
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
