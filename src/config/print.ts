import { existsSync, statSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { isSecretKey } from '../obs/log.js';
import { TRANSPORT_TYPES } from '../push/kinds.js';
import { redactUrl } from './redact.js';
import type { Spec } from './schema.js';
import { CONFIG_SPEC, type Config } from './settings.js';

/**
 * What `config check --print` writes in place of a secret written literally in the file. The
 * loader refuses it with a message saying so: a printed config never runs with a placeholder
 * for a password.
 */
export const REDACTED = '[redacted]';

const UNITS: readonly (readonly [string, number])[] = [
  ['d', 86_400_000],
  ['h', 3_600_000],
  ['m', 60_000],
  ['s', 1000],
  ['ms', 1],
];

/** Milliseconds as a duration the config reads back: 1500 -> "1s500ms", 5400000 -> "1h30m", 0 -> "0s". */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms <= 0) return '0s';
  let rest = Math.round(ms);
  let out = '';
  for (const [unit, size] of UNITS) {
    const n = Math.floor(rest / size);
    if (n > 0) out += `${n}${unit}`;
    rest -= n * size;
  }
  return out;
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);

/** `raw[key]`, or undefined when raw has no such entry. */
function at(raw: unknown, key: string | number): unknown {
  if (Array.isArray(raw)) return typeof key === 'number' ? raw[key] : undefined;
  return isObject(raw) ? raw[String(key)] : undefined;
}

/** A validated file path (made absolute at load): not a secret, even under a key named `key`. */
const isFilePath = (v: string) => isAbsolute(v) && existsSync(v) && statSync(v).isFile();

/** An environment reference as written in the file (`${NOTIFY_HTTP_TOKEN}`), if the value came from one. */
const envReference = (raw: unknown) => (typeof raw === 'string' && raw.includes('${') ? raw : undefined);

/**
 * The effective config as YAML input that means the same (`notify config check --print`):
 * defaults filled in, durations with units, relative paths made absolute, key file paths as
 * they are. A secret is written as the environment reference it came from (`${NOTIFY_TOKEN}`),
 * else as `[redacted]`, which the loader refuses. `raw` is the file as parsed, before
 * environment references were substituted.
 */
export function printableConfig(cfg: Config, raw: unknown): unknown {
  return walk(CONFIG_SPEC, cfg, raw, []);
}

function walk(spec: Spec | undefined, value: unknown, raw: unknown, path: string[]): unknown {
  if (spec?.type === 'duration' && typeof value === 'number') return formatDuration(value);
  if (Array.isArray(value)) return value.map((v, i) => walk(spec?.type === 'list' ? spec.of : undefined, v, at(raw, i), [...path, String(i)]));
  if (isObject(value)) {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      let sub: Spec | undefined;
      if (spec?.type === 'section') sub = spec.keys[k];
      else if (spec?.type === 'map') sub = spec.of;
      else if (path.length === 1 && path[0] === 'transports' && isObject(v) && typeof v.type === 'string') sub = TRANSPORT_TYPES[v.type]?.printSpec;
      out[k] = walk(sub, v, at(raw, k), [...path, k]);
    }
    return out;
  }
  if (value === null || value === undefined) return value;
  const key = path[path.length - 1] ?? '';
  if (isSecretKey(key) && path[0] !== 'devices') {
    if (typeof value === 'string' && isFilePath(value)) return value;
    return envReference(raw) ?? REDACTED;
  }
  if (typeof value === 'string') {
    const shown = redactUrl(value);
    if (shown !== value) return envReference(raw) ?? shown.replace('[redacted]', REDACTED);
  }
  return value;
}
