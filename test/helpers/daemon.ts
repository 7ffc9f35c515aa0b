import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { stringify } from 'yaml';
import { type Config, parseConfig } from '../../src/config/load.js';
import { type Daemon, createDaemon } from '../../src/node/daemon.js';
import { type LogLevel, type Logger, createLogger } from '../../src/obs/log.js';

/** Config overrides by section, e.g. `{ ws: { heartbeatIntervalMs: 50 } }` or a `transports` entry. */
export type Overrides = { [S in keyof Config]?: Partial<Config[S]> | Record<string, unknown> };

/** A fresh temporary folder, removed when the test ends. */
export function tempDir(t: TestContext, prefix = 'notify-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A file `name` holding `text`, in a fresh temporary folder (removed when the test ends). */
export function writeTemp(t: TestContext, name: string, text: string, prefix?: string): string {
  const file = join(tempDir(t, prefix), name);
  writeFileSync(file, text);
  return file;
}

/**
 * A validated config: every listener on 127.0.0.1 port 0, the state in a fresh temporary folder
 * (removed when the test ends, when `t` is given), and the overrides merged per section. It goes
 * through the real YAML loader, so defaults and checks apply as in production.
 */
export function testConfig(overrides: Overrides = {}, t?: TestContext): Config {
  const dir = t ? tempDir(t, 'notify-state-') : mkdtempSync(join(tmpdir(), 'notify-state-'));
  const base: Record<string, Record<string, unknown>> = {
    ws: { listen: '127.0.0.1:0' },
    text: { listen: '127.0.0.1:0' },
    http: { listen: '127.0.0.1:0' },
    state: { dir: join(dir, 'state') },
  };
  for (const [section, values] of Object.entries(overrides)) base[section] = { ...base[section], ...(values as object) };
  return parseConfig(stringify(base), 'test config', dir);
}

export interface TestDaemon extends Daemon {
  /** Log lines written so far, parsed. */
  logs: Record<string, unknown>[];
  /** The same lines as written. */
  logText: string[];
  wsUrl: string;
  textPort: number;
  httpUrl: string;
}

/** Starts a daemon on port-0 listeners and stops it when the test ends. */
export async function startDaemon(t: TestContext, overrides: Overrides = {}, level: LogLevel = 'debug'): Promise<TestDaemon> {
  return runDaemon(t, testConfig(overrides, t), level);
}

/** Starts a daemon on a validated config, recording its log lines; stopped when the test ends. */
export async function runDaemon(t: TestContext, config: Config, level: LogLevel = 'debug'): Promise<TestDaemon> {
  const logs: Record<string, unknown>[] = [];
  const logText: string[] = [];
  const log: Logger = createLogger({
    level,
    write: (line) => {
      logText.push(line);
      logs.push(JSON.parse(line) as Record<string, unknown>);
    },
  });
  const daemon = await createDaemon(config, { log });
  await daemon.start();
  t.after(() => daemon.stop());
  const a = daemon.addresses();
  return Object.assign(daemon, {
    logs,
    logText,
    wsUrl: `ws://${a.ws}/`,
    textPort: Number(a.text.split(':').pop()),
    httpUrl: `http://${a.http}`,
  });
}
