import type { Command } from 'commander';
import { checkVapidSubject, generateVapidKeys } from '../../push/webpush/vapid.js';
import { CliError, type Io, type Result } from '../io.js';

interface VapidOptions {
  subject: string;
  json?: boolean;
}

/** Placeholder subject: valid, so the output pastes as it is, and plainly one to replace. */
const SUBJECT_PLACEHOLDER = 'mailto:you@example.com';

/** `notify vapid`: a fresh VAPID key pair for a webpush transport, as YAML to paste under `vapid:`. */
export function addVapidCommand(program: Command, io: Io, result: Result): void {
  program
    .command('vapid')
    .description('print a fresh VAPID key pair for a webpush transport, as YAML to paste under transports.NAME.vapid')
    .option('--subject <url>', 'how push services can reach you: a mailto: or https: URL', SUBJECT_PLACEHOLDER)
    .option('--json', 'print {subject, publicKey, privateKey}')
    .action((o: VapidOptions) => {
      result.code = vapidCommand(io, o);
    });
}

function vapidCommand(io: Io, o: VapidOptions): number {
  const bad = checkVapidSubject(o.subject);
  if (bad) throw new CliError(`--subject ${bad}`);
  const { publicKey, privateKey } = generateVapidKeys();
  if (o.json) {
    io.out(`${JSON.stringify({ subject: o.subject, publicKey, privateKey })}\n`);
    return 0;
  }
  io.out(
    '# A fresh VAPID key pair (RFC 8292). Paste under transports.NAME.vapid of a webpush transport.\n' +
      (o.subject === SUBJECT_PLACEHOLDER ? '# Set subject to a contact of yours (or give --subject).\n' : '') +
      '# Keep privateKey secret, e.g. in the environment: privateKey: ${NOTIFY_VAPID_PRIVATE_KEY}.\n' +
      '# Pages subscribe with publicKey; a new pair makes every existing subscription useless.\n' +
      `subject: ${JSON.stringify(o.subject)}\n` +
      `publicKey: ${publicKey}\n` +
      `privateKey: ${privateKey}\n`,
  );
  return 0;
}
