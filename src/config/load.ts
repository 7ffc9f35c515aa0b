import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { type Document, LineCounter, isMap, isScalar, parseDocument } from 'yaml';
import { type Problem, Validation, deepFreeze, formatPath, validate } from './schema.js';
import { CONFIG_SPEC, type Config, checkConfig } from './settings.js';
import { substituteEnv } from './env.js';
import { NotifyError } from '../errors.js';
import { REDACTED } from './print.js';

export { type Config, type Limits, type TransportSettings, DEFAULTS } from './settings.js';
export { redact } from './redact.js';
export { parseListen, formatListen } from './schema.js';

/** A config that failed validation; `problems` has every one, `message` the first. */
export class ConfigError extends NotifyError {
  readonly problems: readonly string[];
  constructor(problems: string[]) {
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more problem${problems.length > 2 ? 's' : ''})` : '';
    super('NOTIFY_ERR_CONFIG', `${problems[0]}${more}`);
    this.name = 'ConfigError';
    this.problems = problems;
  }
}

function formatProblem(source: string, p: Problem): string {
  const where = p.line === undefined ? source : `${source}:${p.line}:${p.col}`;
  const text = p.message.startsWith(`${p.path}`) || !p.path ? p.message : `${p.path}: ${p.message}`;
  return `${where}: ${text}`;
}

/** The dotted path of the mapping key that starts at `offset`, if any. */
function keyPathAt(node: unknown, offset: number, prefix: string[] = []): string | undefined {
  if (!isMap(node)) return undefined;
  for (const pair of node.items) {
    const key = isScalar(pair.key) ? String(pair.key.value) : '?';
    if (isScalar(pair.key) && pair.key.range?.[0] === offset) return [...prefix, key].join('.');
    const found = keyPathAt(pair.value, offset, [...prefix, key]);
    if (found) return found;
  }
  return undefined;
}

/**
 * Parses and validates YAML config text. `source` names it in errors (`config.yaml:3:5: ...`).
 * Throws ConfigError listing every problem; returns a frozen config with defaults filled in.
 */
export function parseConfig(text: string, source = 'config', baseDir = process.cwd(), env: NodeJS.ProcessEnv = process.env): Config {
  const { doc, lines } = parseYaml(text, source);
  substituteOrThrow(doc, lines, source, env, () => true);
  const ctx = new Validation(doc, lines, baseDir);
  const root: unknown = doc.toJS({ maxAliasCount: 100 });
  refusePlaceholders(root, [], ctx);
  // Checked on its own: "[redacted]" would also be "too short", which says nothing useful.
  if (ctx.problems.length > 0) throw new ConfigError(ctx.problems.map((p) => formatProblem(source, p)));
  const cfg = validate(CONFIG_SPEC, root, [], ctx) as Config;
  checkConfig(cfg, ctx);
  if (ctx.problems.length > 0) throw new ConfigError(ctx.problems.map((p) => formatProblem(source, p)));
  return deepFreeze(cfg);
}

/** What a client of the HTTP API (send, devices, status) reads from a config file. */
export type ApiConfig = Pick<Config, 'http'>;

/**
 * Parses config text for a client of the daemon's HTTP API: only `http` is validated, and only
 * environment references under `http` must be set, so a cron job with the API address and token
 * needs none of the daemon's secrets (ws.secret, provider keys). Other keys are left to `serve`.
 */
export function parseApiConfig(text: string, source = 'config', baseDir = process.cwd(), env: NodeJS.ProcessEnv = process.env): ApiConfig {
  const { doc, lines } = parseYaml(text, source);
  substituteOrThrow(doc, lines, source, env, (path) => path[0] === 'http');
  const ctx = new Validation(doc, lines, baseDir);
  const root: unknown = doc.toJS({ maxAliasCount: 100 });
  const isMapping = root !== null && typeof root === 'object' && !Array.isArray(root);
  // A misspelt section ("htpp:") is still an error: it would silently leave the defaults.
  for (const key of isMapping ? Object.keys(root) : []) {
    if (!(key in CONFIG_SPEC.keys)) ctx.fail([key], `unknown key "${key}"; expected one of: ${Object.keys(CONFIG_SPEC.keys).join(', ')}`, true);
  }
  const http = isMapping ? (root as Record<string, unknown>).http : undefined;
  refusePlaceholders(http, ['http'], ctx);
  if (ctx.problems.length > 0) throw new ConfigError(ctx.problems.map((p) => formatProblem(source, p)));
  const out = { http: validate(CONFIG_SPEC.keys.http, http, ['http'], ctx) as Config['http'] };
  if (ctx.problems.length > 0) throw new ConfigError(ctx.problems.map((p) => formatProblem(source, p)));
  return deepFreeze(out);
}

/**
 * A value holding the "[redacted]" that `config check --print` writes for a secret is a problem
 * at its line: a printed config fed back must not run with a placeholder for a password.
 */
function refusePlaceholders(value: unknown, path: string[], ctx: Validation): void {
  if (typeof value === 'string') {
    if (value.includes(REDACTED)) {
      ctx.fail(path, `${formatPath(path)} holds "${REDACTED}", which "notify config check --print" writes in place of a secret; put the secret back, or a reference to the environment such as \${NOTIFY_SECRET}`);
    }
  } else if (Array.isArray(value)) {
    value.forEach((v, i) => refusePlaceholders(v, [...path, String(i)], ctx));
  } else if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) refusePlaceholders(v, [...path, k], ctx);
  }
}

function parseYaml(text: string, source: string): { doc: Document; lines: LineCounter } {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, uniqueKeys: true, prettyErrors: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      doc.errors.map((e) => {
        const pos = e.linePos?.[0];
        let msg = e.message.split(/ at line \d+|:\n/)[0] ?? e.message;
        if (e.code === 'DUPLICATE_KEY') {
          const path = keyPathAt(doc.contents, e.pos[0]);
          if (path) msg = `${path}: duplicate key (each key may appear once in a mapping)`;
        }
        return pos ? `${source}:${pos.line}:${pos.col}: ${msg}` : `${source}: ${msg}`;
      }),
    );
  }
  return { doc, lines };
}

/** `${NAME}` substitution; an unset variable under a key path that `needed` accepts is an error. */
function substituteOrThrow(doc: Document, lines: LineCounter, source: string, env: NodeJS.ProcessEnv, needed: (path: string[]) => boolean): void {
  const envProblems: string[] = [];
  substituteEnv(doc, env, (path, offset, message) => {
    if (!needed(path)) return;
    const pos = lines.linePos(offset);
    envProblems.push(`${source}:${pos.line}:${pos.col}: ${formatPath(path)}: ${message}`);
  });
  if (envProblems.length > 0) throw new ConfigError(envProblems);
}

/** The embedded default config: what `notify serve` runs with when given no file. */
export function defaultConfig(): Config {
  return parseConfig('', 'defaults');
}

/** Reads and validates a YAML config file. */
export function loadConfig(path: string): Config {
  return parseConfig(readConfigFile(path), path, dirname(resolve(path)));
}

/** Reads a config file for a client of the HTTP API (see parseApiConfig). */
export function loadApiConfig(path: string): ApiConfig {
  return parseApiConfig(readConfigFile(path), path, dirname(resolve(path)));
}

function readConfigFile(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a folder; name the YAML file in it' : (code ?? String(err));
    throw new ConfigError([`cannot read config file ${path}: ${why}`]);
  }
  return text;
}
