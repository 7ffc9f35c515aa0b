import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import type { TestContext } from 'node:test';

const REDIS_SERVER = '/usr/bin/redis-server';

// CI installs redis-server, so there a missing binary is a failure, not a skip.
export const SKIP_REDIS = existsSync(REDIS_SERVER) || process.env.CI ? false : `${REDIS_SERVER} not installed (.ci/run installs it)`;

export interface RedisServer {
  port: number;
  /** redis://127.0.0.1:PORT */
  url: string;
  /** Runs one command through redis-cli and returns its output, trimmed. */
  cli(...args: string[]): string;
  /** Stops the server (SIGTERM, then SIGKILL); the test's end stops it too. */
  stop(): Promise<void>;
  /** Starts it again on the same port (no persistence: it comes back empty). */
  restart(): Promise<void>;
  /** Its process, for kill tests. */
  readonly child: ChildProcess;
}

/** A port nobody listens on now (Redis takes no port 0); the start retries on the rare collision. */
export async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/**
 * Starts a redis-server on `port`, loopback only, in `dir`, without persistence; resolves once it
 * accepts connections. The bench runs it through `taskset -c N` (`prefix`) and may name another
 * binary.
 */
export function spawnRedis(port: number, dir: string, extra: readonly string[], o: { prefix?: readonly string[]; binary?: string } = {}): Promise<ChildProcess> {
  // A folder of its own: a replica writes what it syncs to dump.rdb there, and a server started
  // in a folder with a dump.rdb would load it.
  const cmd = [...(o.prefix ?? []), o.binary ?? REDIS_SERVER, '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no', '--protected-mode', 'no', ...extra];
  const child = spawn(cmd[0] as string, cmd.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  return readyOn(child, 'Ready to accept connections', `redis-server on port ${port}`);
}

/** Resolves with `child` once its stdout has shown `marker`; rejects when it exits first. */
export function readyOn(child: ChildProcess, marker: string, what: string): Promise<ChildProcess> {
  return new Promise((resolve, reject) => {
    let out = '';
    const onData = (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes(marker)) {
        child.stdout?.off('data', onData);
        child.stdout?.resume();
        resolve(child);
      }
    };
    child.stdout?.on('data', onData);
    child.stderr?.resume();
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`${what} exited with ${code}: ${out.slice(-500)}`)));
  });
}

export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/**
 * Starts a redis-server of its own for this test on a free loopback port, without persistence
 * (no RDB, no AOF), and stops it when the test ends. `extra` are more redis-server arguments,
 * e.g. ['--maxmemory-policy', 'allkeys-lru'].
 */
export async function startRedis(t: TestContext, extra: readonly string[] = []): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'notify-redis-'));
  let port = 0;
  let child: ChildProcess | undefined;
  let lastError: unknown;
  for (let attempt = 0; attempt < 5 && child === undefined; attempt++) {
    port = await freePort();
    try {
      child = await spawnRedis(port, dir, extra);
    } catch (err) {
      lastError = err;
    }
  }
  if (child === undefined) throw lastError;
  const server: RedisServer = {
    port,
    url: `redis://127.0.0.1:${port}`,
    get child() {
      return child as ChildProcess;
    },
    cli: (...args) => execFileSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8' }).trim(),
    stop: () => stopChild(child as ChildProcess),
    async restart() {
      await stopChild(child as ChildProcess);
      // Empty again, as a server without persistence comes back.
      rmSync(join(dir, 'dump.rdb'), { force: true });
      child = await spawnRedis(port, dir, extra);
    },
  };
  t.after(async () => {
    await stopChild(child as ChildProcess);
    rmSync(dir, { recursive: true, force: true });
  });
  return server;
}
