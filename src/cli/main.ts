import { CommanderError } from 'commander';
import { NotifyError, errorMessage } from '../errors.js';
import { CliError, EXIT, type Io, buildProgram, processIo } from './program.js';

export { EXIT, type Io, buildProgram } from './program.js';
export { summarize } from './commands/send.js';
export { formatStatus } from './commands/status.js';

/** Runs the CLI with `argv` (without node and script) and resolves with the exit code. */
export async function main(argv: string[], io: Io = processIo): Promise<number> {
  const result = { code: 0 };
  const program = buildProgram(io, result);
  if (argv.length === 0) argv = ['--help'];
  try {
    await program.parseAsync(argv, { from: 'user' });
    return result.code;
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
      return EXIT.error;
    }
    if (err instanceof CliError || err instanceof NotifyError) io.err(`notify: ${errorMessage(err)}\n`);
    else io.err(`notify: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return EXIT.error;
  }
}
