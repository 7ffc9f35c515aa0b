import type { TestContext } from 'node:test';
import { type Config, parseConfig } from '../../src/config.js';
import { type Daemon, createDaemon } from '../../src/daemon.js';
import { type LogLevel, type Logger, createLogger } from '../../src/log.js';

/** Config overrides by section, e.g. `{ ws: { heartbeatIntervalMs: 50 } }`. */
export type Overrides = { [S in keyof Config]?: Partial<Config[S]> };

/** Every listener on 127.0.0.1 port 0; overrides merged per section. */
export function testConfig(overrides: Overrides = {}): Config {
  const base = parseConfig('ws: {listen: "127.0.0.1:0"}\ntext: {listen: "127.0.0.1:0"}\nhttp: {listen: "127.0.0.1:0"}\n', 'test');
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(base) as (keyof Config)[]) {
    out[key] = { ...(base[key] as object), ...(overrides[key] as object | undefined) };
  }
  return out as unknown as Config;
}

export interface TestDaemon extends Daemon {
  /** Log lines written so far, parsed. */
  logs: Record<string, unknown>[];
  wsUrl: string;
  textPort: number;
  httpUrl: string;
}

/** Starts a daemon on port-0 listeners and stops it when the test ends. */
export async function startDaemon(t: TestContext, overrides: Overrides = {}, level: LogLevel = 'debug'): Promise<TestDaemon> {
  const logs: Record<string, unknown>[] = [];
  const log: Logger = createLogger({ level, write: (line) => void logs.push(JSON.parse(line) as Record<string, unknown>) });
  const daemon = createDaemon(testConfig(overrides), { log });
  await daemon.start();
  t.after(() => daemon.stop());
  const a = daemon.addresses();
  return Object.assign(daemon, {
    logs,
    wsUrl: `ws://${a.ws}/`,
    textPort: Number(a.text.split(':').pop()),
    httpUrl: `http://${a.http}`,
  });
}
