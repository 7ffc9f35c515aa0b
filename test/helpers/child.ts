import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import { HANG_MS } from './clients.js';

const BIN = fileURLToPath(new URL('../../../bin/notify', import.meta.url));

/** A `notify serve` child process and what it logged. */
export interface Child {
  proc: ChildProcess;
  /** Its listener addresses, from its log lines. */
  ws: string;
  text: string;
  http: string;
  /** Every JSON log line so far. */
  logs: Record<string, unknown>[];
  /** Resolves with the exit code (or the signal name) once it has exited. */
  exited: Promise<number | string>;
}

/**
 * Starts `bin/notify serve --config FILE` and waits for its three listeners; killed when the
 * test ends. `env` is added to this process's environment. A stderr line that is not JSON is
 * logged as `{raw: line}`.
 */
export async function startChild(t: TestContext, configFile: string, timeoutMs = HANG_MS, env: NodeJS.ProcessEnv = {}): Promise<Child> {
  const proc = spawn(process.execPath, [BIN, 'serve', '--config', configFile], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, ...env } });
  t.after(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  const exited = once(proc, 'exit').then(([code, signal]) => (code ?? signal) as number | string);
  const logs: Record<string, unknown>[] = [];
  const found: Record<string, string> = {};
  let rest = '';
  proc.stderr?.setEncoding('utf8');
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`notify serve did not start within ${timeoutMs} ms; logs: ${JSON.stringify(logs)}`)), timeoutMs);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`notify serve exited (${code}) before listening; logs: ${JSON.stringify(logs)}`));
    });
    proc.stderr?.on('data', (chunk: string) => {
      rest += chunk;
      let nl: number;
      while ((nl = rest.indexOf('\n')) !== -1) {
        const line = rest.slice(0, nl);
        rest = rest.slice(nl + 1);
        try {
          const entry = JSON.parse(line) as Record<string, unknown>;
          logs.push(entry);
          if (typeof entry.listener === 'string' && typeof entry.address === 'string') found[entry.listener] = entry.address;
        } catch {
          logs.push({ raw: line });
        }
        if (found.ws && found.text && found.http) {
          clearTimeout(timer);
          resolve();
        }
      }
    });
  });
  await ready;
  return { proc, ws: found.ws as string, text: found.text as string, http: found.http as string, logs, exited };
}
