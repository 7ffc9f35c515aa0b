import type { Command } from 'commander';
import { stringify } from 'yaml';
import { type Config, ConfigError, redact } from '../../config/load.js';
import { errorMessage } from '../../errors.js';
import { readTls } from '../../net/tls.js';
import { EXIT, type Io, type Result } from '../io.js';
import { configOption, readConfig } from '../options.js';

/** `notify config check [--print]`. */
export function addConfigCommands(program: Command, io: Io, result: Result): void {
  const config = program.command('config').description('work with config files');
  config
    .command('check')
    .description('validate a config file (or the built-in defaults) and exit 0 if it is good')
    .addOption(configOption())
    .option('--print', 'print the effective config with secrets redacted')
    .action((o: { config?: string; print?: boolean }) => {
      result.code = configCheck(io, o);
    });
}

function configCheck(io: Io, o: { config?: string; print?: boolean }): number {
  let config: Config;
  try {
    config = readConfig(o.config);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    for (const p of err.problems) io.err(`${p}\n`);
    return EXIT.error;
  }
  // The certificate files too, as a start (and a SIGHUP) reads them.
  const source = o.config ?? 'built-in defaults';
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
  io.out(`${source}: ok\n`);
  if (o.print) io.out(stringify(redact(config)));
  return 0;
}
