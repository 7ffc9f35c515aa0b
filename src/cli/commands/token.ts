import type { Command } from 'commander';
import { makeJwt, makeToken } from '../../auth.js';
import { parseDuration } from '../../duration.js';
import { errorMessage } from '../../errors.js';
import { checkUid } from '../../message.js';
import { CliError, type Io, type Result } from '../io.js';
import { configOption, configSource, readConfig } from '../options.js';

interface TokenOptions {
  uid: string;
  ttl: string;
  config?: string;
  json?: boolean;
  jwt?: boolean;
}

/** `notify token`: a connection token for a uid, signed with ws.secret. */
export function addTokenCommand(program: Command, io: Io, result: Result): void {
  program
    .command('token')
    .description("print a connection token for a uid (ws.auth: token), for a backend to hand to its page")
    .requiredOption('-u, --uid <uid>', 'the uid the token lets a page bind')
    .option('--ttl <duration>', 'how long it is valid, e.g. 15m, 1h, 7d', '1h')
    .addOption(configOption())
    .option('--json', 'print {uid, token, expiresAt}')
    .option('--jwt', 'print a standard JWT instead (HS256 with ws.secret, the uid in sub, exp)')
    .action(async (o: TokenOptions) => {
      result.code = await tokenCommand(io, o);
    });
}

async function tokenCommand(io: Io, o: TokenOptions): Promise<number> {
  const config = readConfig(o.config);
  if (!config.ws.secret) {
    const { path } = configSource(o.config);
    const where = path !== undefined ? `${path} has no ws.secret` : 'the built-in defaults have no ws.secret (give --config FILE or set NOTIFY_CONFIG)';
    throw new CliError(`notify token signs with ws.secret, and ${where}; set it, e.g. secret: \${NOTIFY_WS_SECRET}`);
  }
  let ttlMs: number;
  try {
    ttlMs = parseDuration(o.ttl);
  } catch (err) {
    throw new CliError(`--ttl ${errorMessage(err)}`);
  }
  if (ttlMs <= 0) throw new CliError('--ttl must be more than 0');
  const bad = (() => {
    try {
      checkUid(o.uid, '--uid');
      return undefined;
    } catch (err) {
      return errorMessage(err);
    }
  })();
  if (bad) throw new CliError(bad);
  const expiresAt = Math.floor((Date.now() + ttlMs) / 1000);
  const token = o.jwt ? await makeJwt(config.ws.secret, o.uid, expiresAt) : makeToken(config.ws.secret, o.uid, expiresAt);
  io.out(o.json ? `${JSON.stringify({ uid: o.uid, token, expiresAt: new Date(expiresAt * 1000).toISOString() })}\n` : `${token}\n`);
  return 0;
}
