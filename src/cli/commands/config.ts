import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { parse, stringify } from 'yaml';
import { type Config, ConfigError } from '../../config/load.js';
import { printableConfig } from '../../config/print.js';
import { errorMessage } from '../../errors.js';
import { readTls } from '../../net/tls.js';
import { EXIT, type Io, type Result } from '../io.js';
import { configOption, configSource, readConfig } from '../options.js';

/** `notify config check [--print]`. */
export function addConfigCommands(program: Command, io: Io, result: Result): void {
  const config = program.command('config').description('work with config files');
  config
    .command('check')
    .description('validate a config file (or the built-in defaults) and exit 0 if it is good')
    .addOption(configOption())
    .option('--print', 'print the effective config as YAML that reads back the same (secrets as their ${ENV} reference, else [redacted])')
    .action((o: { config?: string; print?: boolean }) => {
      result.code = configCheck(io, o);
    });
}

function configCheck(io: Io, o: { config?: string; print?: boolean }): number {
  let config: Config;
  let path: string | undefined;
  try {
    path = configSource(o.config).path;
    config = readConfig(o.config);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const p of err.problems) io.err(`${p}\n`);
    return EXIT.error;
  }
  // The certificate files too, as a start (and a SIGHUP) reads them.
  const source = path ?? 'built-in defaults';
  let bad = false;
  for (const [key, files] of [['ws.tls', config.ws.tls], ['http.tls', config.http.tls]] as const) {
    if (!files) continue;
    try {
      for (const w of readTls(files, key).warnings) io.err(`${source}: warning: ${w}\n`);
    } catch (err) {
      io.err(`${source}: ${errorMessage(err)}\n`);
      bad = true;
    }
  }
  if (bad) return EXIT.error;
  // Status on stderr when printing, so that `config check --print > effective.yaml` is the YAML alone.
  const ok = `${source}: ok\n`;
  if (!o.print) {
    io.out(ok);
    return 0;
  }
  io.err(ok);
  const raw: unknown = path === undefined ? {} : parse(readFileSync(path, 'utf8'));
  io.out(stringify(printableConfig(config, raw)));
  return 0;
}
