import cluster, { type Worker } from 'node:cluster';
import type { Config } from '../../config/load.js';
import type { Logger } from '../../obs/log.js';
import type { Io } from '../io.js';

/** A worker that exits sooner than this after its start is restarted after a pause (a crash loop). */
const QUICK_EXIT_MS = 5000;
const RESTART_PAUSE_MS = 1000;

/**
 * `notify serve --workers N`, the primary: forks N worker processes that each run the daemon
 * (node:cluster shares the listening ports among them), restarts a worker that dies, forwards
 * SIGHUP to every worker, and on SIGINT/SIGTERM stops them all gracefully and exits 0. The
 * workers are nodes of one cluster: they share their state through cluster.redis, which N > 1
 * requires.
 */
export async function runPrimary(io: Io, config: Config, workers: number, log: Logger): Promise<number> {
  if (!config.cluster.redis) {
    io.err(`notify: serve --workers ${workers} needs cluster.redis: the workers share their state (sessions, history, devices, retries) through Redis; see the README, "Running several nodes"\n`);
    return 2;
  }
  const started = new Map<Worker, number>();
  let stopping = false;
  const fork = (slot: number): void => {
    const w = cluster.fork({ NOTIFY_WORKER: String(slot) });
    started.set(w, Date.now());
    log.info('worker started', { worker: slot, pid: w.process.pid });
    w.once('exit', (code, signal) => {
      const ranMs = Date.now() - (started.get(w) ?? 0);
      started.delete(w);
      if (stopping) return;
      log.warn('worker exited; starting another', { worker: slot, pid: w.process.pid, code, signal });
      const again = () => {
        if (!stopping) fork(slot);
      };
      if (ranMs < QUICK_EXIT_MS) setTimeout(again, RESTART_PAUSE_MS).unref();
      else again();
    });
  };
  for (let slot = 1; slot <= workers; slot++) fork(slot);
  log.info(`notify primary: ${workers} workers`, { workers, pid: process.pid });

  const unlistenReload =
    io.onReloadSignal?.(() => {
      for (const w of started.keys()) w.process.kill('SIGHUP');
    }) ?? (() => {});
  const signal = await new Promise<string>((resolve) => {
    const unlisten = io.onStopSignal((s) => {
      unlisten();
      resolve(s);
    });
  });
  stopping = true;
  unlistenReload();
  log.info(`${signal}: stopping the workers`);
  const exits = [...started.keys()].map((w) => new Promise<void>((resolve) => (w.isDead() ? resolve() : w.once('exit', () => resolve()))));
  for (const w of started.keys()) w.process.kill('SIGTERM');
  await Promise.all(exits);
  log.info('stopped');
  return 0;
}

/** In a worker of `serve --workers N`: its slot (1..N); undefined in a plain `notify serve`. */
export function workerSlot(): number | undefined {
  if (!cluster.isWorker) return undefined;
  const slot = Number(process.env.NOTIFY_WORKER);
  return Number.isInteger(slot) && slot > 0 ? slot : undefined;
}
