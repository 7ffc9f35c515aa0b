import cluster from 'node:cluster';
import { type Command, InvalidArgumentError } from 'commander';
import { type Config, ConfigError, defaultConfig, loadConfig } from '../../config/load.js';
import { createDaemon } from '../../node/daemon.js';
import { tuneV8 } from '../../node/v8-tuning.js';
import { errorMessage } from '../../errors.js';
import { createLogger, logProcessWarnings } from '../../obs/log.js';
import type { Io, Result } from '../io.js';
import { configOption, configSource, describeSource } from '../options.js';
import { runPrimary, workerSlot } from './workers.js';

/** `notify serve`: the daemon in the foreground, until SIGINT/SIGTERM; SIGHUP reloads. */
export function addServeCommand(program: Command, io: Io, result: Result): void {
  program
    .command('serve')
    .description('run the daemon in the foreground (stop with SIGINT or SIGTERM)')
    .addOption(configOption())
    .option('--workers <n>', 'run N worker processes sharing the ports (needs cluster.redis when N > 1)', parseWorkers, 1)
    .action(async (o: { config?: string; workers: number }) => {
      result.code = await serve(io, o);
    });
}

function parseWorkers(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 256) throw new InvalidArgumentError('--workers must be a whole number from 1 to 256');
  return n;
}

async function serve(io: Io, o: { config?: string; workers: number }): Promise<number> {
  const source = configSource(o.config);
  const config = source.path === undefined ? defaultConfig() : loadConfig(source.path);
  const log = createLogger({ level: config.log.level, write: io.err });
  // Before anything is built: the daemon's garbage-collector settings (node/v8-tuning.ts).
  log.debug('v8 flags set', { flags: tuneV8() });
  const slot = workerSlot();
  if (slot === undefined && o.workers > 1) return runPrimary(io, config, o.workers, log);
  const unlistenWarnings = logProcessWarnings(log);
  let daemon: Awaited<ReturnType<typeof createDaemon>>;
  try {
    // A worker's node name: cluster.node plus its slot, or HOSTNAME-PID (distinct per worker).
    const name = slot !== undefined && config.cluster.node ? `${config.cluster.node}-w${slot}` : undefined;
    daemon = await createDaemon(config, { log, ...(name !== undefined ? { name } : {}) });
  } catch (err) {
    unlistenWarnings();
    throw err;
  }
  let signalled = 0;
  let wake: (signal: string) => void = () => {};
  const stopRequested = new Promise<string>((resolve) => (wake = resolve));
  const unlisten = io.onStopSignal((signal) => {
    if (++signalled > 1) {
      log.warn(`second ${signal}: exiting without waiting`);
      process.exit(130);
    }
    wake(signal);
  });
  let reloading = Promise.resolve();
  const unlistenReload =
    io.onReloadSignal?.(() => {
      reloading = reloading.then(() => reload(daemon, source.path, log));
    }) ?? (() => {});
  try {
    await daemon.start();
    log.info(`notify ready (${describeSource(source)})`, source.path !== undefined ? { config: source.path } : {});
    const signal = await stopRequested;
    log.info(`${signal}: shutting down; finishing deliveries in flight`);
    await daemon.stop();
    log.info('stopped');
    // A worker of `serve --workers N`: its channel to the primary would keep it running.
    if (slot !== undefined) cluster.worker?.disconnect();
    return 0;
  } finally {
    unlisten();
    unlistenReload();
    unlistenWarnings();
  }
}

/** SIGHUP: reads the config file again; a bad one is reported and the running config kept. */
async function reload(daemon: Awaited<ReturnType<typeof createDaemon>>, path: string | undefined, log: ReturnType<typeof createLogger>): Promise<void> {
  if (path === undefined) {
    log.warn('SIGHUP: running on the built-in defaults, there is no config file to reload');
    return;
  }
  let next: Config;
  try {
    next = loadConfig(path);
  } catch (err) {
    const problems = err instanceof ConfigError ? err.problems : [errorMessage(err)];
    log.error('SIGHUP: the config file has problems; keeping the running config', { config: path, problems });
    return;
  }
  try {
    const r = await daemon.reload(next);
    log.setLevel(next.log.level);
    log.info('SIGHUP: config reloaded; sessions kept', { config: path, added: r.added, changed: r.changed, removed: r.removed });
    if (r.restartNeeded.length > 0) {
      log.warn(`SIGHUP: changes to ${r.restartNeeded.join(', ')} take a restart to apply`, { sections: r.restartNeeded });
    }
  } catch (err) {
    log.error('SIGHUP: reload failed; keeping the running config', { config: path, error: errorMessage(err) });
  }
}
