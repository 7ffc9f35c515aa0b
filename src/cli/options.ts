import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { Option } from 'commander';
import { type ApiConfig, type Config, ConfigError, defaultConfig, loadApiConfig, loadConfig } from '../config/load.js';

/** `-c, --config <file>`, which every command that reads the config takes. */
export const configOption = () => new Option('-c, --config <file>', 'YAML config file (default: $NOTIFY_CONFIG, else ./notify.yaml when present, else built-in defaults)');

/** The file name looked for in the working directory when neither --config nor $NOTIFY_CONFIG is given. */
export const LOCAL_CONFIG = 'notify.yaml';

/** Which config file a command reads, and why that one. */
export interface ConfigSource {
  /** The file, or undefined for the built-in defaults. */
  path: string | undefined;
  /** `--config`, `NOTIFY_CONFIG`, `./notify.yaml` or `defaults`. */
  from: 'flag' | 'env' | 'cwd' | 'defaults';
}

/**
 * The config file: `--config`, else `$NOTIFY_CONFIG` (a file that must exist: a typo is an
 * error, not a silent fall back to the defaults), else `./notify.yaml` when present, else none
 * (ntfy reads /etc/ntfy/server.yml by default the same way).
 */
export function configSource(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): ConfigSource {
  if (flag !== undefined) return { path: flag, from: 'flag' };
  const fromEnv = env.NOTIFY_CONFIG;
  if (fromEnv !== undefined && fromEnv !== '') {
    if (!existsSync(fromEnv)) throw new ConfigError([`NOTIFY_CONFIG names ${fromEnv}, and there is no such file`]);
    return { path: fromEnv, from: 'env' };
  }
  // Absolute: a log line (journald) does not show the working directory it was relative to.
  if (existsSync(LOCAL_CONFIG)) return { path: resolve(LOCAL_CONFIG), from: 'cwd' };
  return { path: undefined, from: 'defaults' };
}

/** How a config source reads in a message: "config /etc/notify.yaml (from NOTIFY_CONFIG)". */
export function describeSource(s: ConfigSource): string {
  switch (s.from) {
    case 'flag':
      return `config ${s.path}`;
    case 'env':
      return `config ${s.path} (from NOTIFY_CONFIG)`;
    case 'cwd':
      return `config ${s.path} (found in the working directory)`;
    case 'defaults':
      return 'built-in defaults; pass --config FILE, set NOTIFY_CONFIG or put a notify.yaml here to change them';
  }
}

/** The whole config of `configSource(flag)`, validated as `serve` needs it. */
export function readConfig(flag: string | undefined): Config {
  const { path } = configSource(flag);
  return path === undefined ? defaultConfig() : loadConfig(path);
}

/**
 * What a command that only talks to the daemon needs from the config: `http` alone. The rest
 * (ws.secret, transports, environment references there) is the daemon's business and not read.
 */
export function readApiConfig(flag: string | undefined): ApiConfig {
  const { path } = configSource(flag);
  return path === undefined ? { http: defaultConfig().http } : loadApiConfig(path);
}

/** Commander's argParser for a repeatable option. */
export const collect = (value: string, prev: string[] = []) => [...prev, value];
