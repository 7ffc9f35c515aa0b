import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { LineCounter, isMap, isScalar, parseDocument } from 'yaml';
import { type Problem, Validation, deepFreeze, formatPath, validate } from './schema.js';
import { CONFIG_SPEC, type Config, checkConfig } from './settings.js';
import { substituteEnv } from './env.js';
import { NotifyError } from '../errors.js';

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
  const envProblems: string[] = [];
  substituteEnv(doc, env, (path, offset, message) => {
    const pos = lines.linePos(offset);
    envProblems.push(`${source}:${pos.line}:${pos.col}: ${formatPath(path)}: ${message}`);
  });
  if (envProblems.length > 0) throw new ConfigError(envProblems);
  const ctx = new Validation(doc, lines, baseDir);
  const cfg = validate(CONFIG_SPEC, doc.toJS({ maxAliasCount: 100 }), [], ctx) as Config;
  checkConfig(cfg, ctx);
  if (ctx.problems.length > 0) throw new ConfigError(ctx.problems.map((p) => formatProblem(source, p)));
  return deepFreeze(cfg);
}

/** The embedded default config: what `notify serve` runs with when given no file. */
export function defaultConfig(): Config {
  return parseConfig('', 'defaults');
}

/** Reads and validates a YAML config file. */
export function loadConfig(path: string): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (code ?? String(err));
    throw new ConfigError([`cannot read config file ${path}: ${why}`]);
  }
  return parseConfig(text, path, dirname(resolve(path)));
}
