import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { HANG_MS } from './clients.js';
import { SKIP_REDIS, freePort, readyOn, spawnRedis, stopChild } from './redis.js';

const REDIS_SENTINEL = '/usr/bin/redis-sentinel';

// CI installs redis-sentinel with redis-server, so there a missing binary is a failure, not a skip.
export const SKIP_SENTINEL = SKIP_REDIS || (existsSync(REDIS_SENTINEL) || process.env.CI ? false : `${REDIS_SENTINEL} not installed (.ci/run installs it)`);

/** The name the sentinels monitor the primary by. */
export const MASTER_NAME = 'mymaster';

export interface SentinelServer {
  port: number;
  child: ChildProcess;
  /** Runs one command through redis-cli against this process and returns its output, trimmed. */
  cli(...args: string[]): string;
}

export interface SentinelSetup {
  /** `redis+sentinel://127.0.0.1:S1,127.0.0.1:S2,127.0.0.1:S3/mymaster`, for cluster.redis. */
  url: string;
  primary: SentinelServer;
  replica: SentinelServer;
  sentinels: SentinelServer[];
  /** The port each sentinel reports for the primary now (undefined: it did not answer). */
  masterPorts(): (number | undefined)[];
  /** Waits until every sentinel reports `port` as the primary's (they learn a failover from each other). */
  agreeOn(port: number): Promise<void>;
  /** SIGKILLs the primary's redis-server and waits until it has exited. */
  killPrimary(): Promise<void>;
}

function server(port: number, child: ChildProcess): SentinelServer {
  return { port, child, cli: (...args) => execFileSync('redis-cli', ['-p', String(port), ...args], { encoding: 'utf8', timeout: 10_000 }).trim() };
}

/** `redis-cli` prints a reply of name/value pairs one per line: as an object. */
function pairs(text: string): Record<string, string> {
  const lines = text.split('\n').map((l) => l.trim());
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < lines.length; i += 2) out[lines[i] as string] = lines[i + 1] as string;
  return out;
}

async function waitFor(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + HANG_MS;
  for (;;) {
    try {
      if (check()) return;
    } catch {
      // Not answering yet: asked again.
    }
    if (Date.now() > deadline) throw new Error(`sentinel setup: timed out after ${HANG_MS} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function spawnSentinel(port: number, dir: string, masterPort: number): Promise<ChildProcess> {
  // Sentinel rewrites its config file (ids, epochs, what it discovered): one per folder.
  const conf = join(dir, 'sentinel.conf');
  writeFileSync(
    conf,
    [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor ${MASTER_NAME} 127.0.0.1 ${masterPort} 2`,
      // Short, so that a killed primary is replaced within seconds (the defaults are 30 s and 3 min).
      `sentinel down-after-milliseconds ${MASTER_NAME} 1000`,
      `sentinel failover-timeout ${MASTER_NAME} 4000`,
      `sentinel parallel-syncs ${MASTER_NAME} 1`,
      '',
    ].join('\n'),
  );
  const child = spawn(REDIS_SENTINEL, [conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  return readyOn(child, '+monitor master', `redis-sentinel on port ${port}`);
}

/** Starts a process on a free port, trying another port on the rare collision. */
async function onFreePort(start: (port: number) => Promise<ChildProcess>): Promise<SentinelServer> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    try {
      return server(port, await start(port));
    } catch (err) {
      lastError = err;
    }
  }
  throw lastError;
}

/**
 * A Sentinel deployment of its own for this test, on free loopback ports, each process in its
 * own folder, without persistence: a primary, a replica of it, and three redis-sentinel processes
 * monitoring it as MASTER_NAME with quorum 2, down-after-milliseconds 1000 and failover-timeout
 * 4000 (a killed primary is replaced within seconds). Resolves once the replica is in sync and
 * every sentinel knows the replica and the two other sentinels (so a failover can be voted).
 * Everything is stopped when the test ends, sentinels first.
 */
export async function startSentinels(t: TestContext): Promise<SentinelSetup> {
  const base = mkdtempSync(join(tmpdir(), 'notify-sentinel-'));
  const procs: ChildProcess[] = [];
  t.after(async () => {
    // Sentinels first (stopped from the end of the list), so none reacts to its Redis stopping.
    for (const p of [...procs].reverse()) await stopChild(p);
    rmSync(base, { recursive: true, force: true });
  });
  const folder = (name: string) => {
    const dir = join(base, name);
    mkdirSync(dir);
    return dir;
  };

  const primaryDir = folder('primary');
  const primary = await onFreePort((port) => spawnRedis(port, primaryDir, []));
  procs.push(primary.child);
  const replicaDir = folder('replica');
  const replica = await onFreePort((port) => spawnRedis(port, replicaDir, ['--replicaof', '127.0.0.1', String(primary.port)]));
  procs.push(replica.child);
  await waitFor('the replica to be in sync', () => /master_link_status:up/.test(replica.cli('INFO', 'replication')));

  const sentinels: SentinelServer[] = [];
  for (let i = 1; i <= 3; i++) {
    const dir = folder(`sentinel-${i}`);
    const s = await onFreePort((port) => spawnSentinel(port, dir, primary.port));
    procs.push(s.child);
    sentinels.push(s);
  }
  for (const s of sentinels) {
    await waitFor(`sentinel ${s.port} to know the replica and the two other sentinels`, () => {
      const m = pairs(s.cli('SENTINEL', 'MASTER', MASTER_NAME));
      return m['num-slaves'] === '1' && m['num-other-sentinels'] === '2' && m.flags === 'master';
    });
  }

  const masterPorts = () =>
    sentinels.map((s) => {
      try {
        const [, port] = s.cli('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER_NAME).split('\n');
        return port === undefined ? undefined : Number(port.trim());
      } catch {
        return undefined;
      }
    });
  return {
    url: `redis+sentinel://${sentinels.map((s) => `127.0.0.1:${s.port}`).join(',')}/${MASTER_NAME}`,
    primary,
    replica,
    sentinels,
    masterPorts,
    agreeOn: (port) => waitFor(`every sentinel to report port ${port} as the primary's`, () => masterPorts().every((p) => p === port)),
    async killPrimary() {
      const child = primary.child;
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGKILL');
      await exited;
    },
  };
}
