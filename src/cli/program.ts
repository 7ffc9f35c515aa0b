import { Command } from 'commander';
import { addConfigCommands } from './commands/config.js';
import { addDevicesCommands } from './commands/devices.js';
import { addSendCommands } from './commands/send.js';
import { addServeCommand } from './commands/serve.js';
import { addStatusCommand } from './commands/status.js';
import { addTokenCommand } from './commands/token.js';
import { addTraceCommands } from './commands/trace.js';
import { addVapidCommand } from './commands/vapid.js';
import type { Io, Result } from './io.js';
import { VERSION } from '../version.js';

export { CliError, EXIT, type Io, type Result, processIo } from './io.js';

/**
 * The commander program. Actions store their exit code in `result.code`; errors are thrown
 * (exitOverride) for `main` to turn into one line and an exit code. Output goes through `io`
 * (ntfy cmd/app.go injects its Writer and ErrWriter the same way).
 */
export function buildProgram(io: Io, result: Result): Command {
  const program = new Command('notify')
    .description('Push notifications to a uid: live WebSocket sessions, APNs and HTTP push services.')
    .version(VERSION, '-V, --version', 'print the version and exit')
    .exitOverride()
    .configureOutput({
      writeOut: io.out,
      writeErr: io.err,
      // One line: commander puts its "(Did you mean …?)" hint on a line of its own.
      outputError: (s, write) => write(`notify: ${s.replace(/^error: /, '').trim().replace(/\s*\n\s*/g, ' ')} (see "notify --help")\n`),
    });

  addServeCommand(program, io, result);
  addSendCommands(program, io, result);
  addDevicesCommands(program, io, result);
  addTokenCommand(program, io, result);
  addVapidCommand(program, io, result);
  addStatusCommand(program, io, result);
  addTraceCommands(program, io, result);
  addConfigCommands(program, io, result);
  return program;
}
