import { isUtf8 } from 'node:buffer';
import { type Command, Option } from 'commander';
import { buildNode } from '../../node/node.js';
import { StateLockedError } from '../../store/lock.js';
import { createLogger } from '../../obs/log.js';
import { messageFromFields, parseAudience, parsePublishOptions } from '../../message.js';
import type { DeliveryReport } from '../../types.js';
import { type ApiOptions, callApi, serverOptions } from '../api-client.js';
import { CliError, EXIT, type Io, type Result } from '../io.js';
import { collect, configOption, configSource, readApiConfig, readConfig } from '../options.js';

interface PublishOptions extends ApiOptions {
  msg?: string;
  title?: string;
  data?: string[];
  json?: boolean;
  direct?: boolean;
  id?: string;
  route?: string;
  ttl?: string;
}

const EXIT_HELP = '\nExit status: 0 delivered to at least one target, 1 delivered to none, 2 usage, config or connection error.';

/** `notify send` and `notify broadcast`: through the daemon's HTTP API, or `--direct` in this process. */
export function addSendCommands(program: Command, io: Io, result: Result): void {
  publishOptions(
    program
      .command('send')
      .description('send a message to one or more uids through the running daemon')
      .requiredOption('-u, --uid <uid>', 'recipient uid (repeatable)', collect),
  )
    .addHelpText('after', EXIT_HELP)
    .action(async (o: PublishOptions & { uid: string[] }) => {
      const address = o.uid.length === 1 ? { uid: o.uid[0] } : { uid: o.uid };
      result.code = await publish(io, address, o);
    });

  publishOptions(program.command('broadcast').description('send a message to every connected uid'))
    .addHelpText('after', EXIT_HELP)
    .action(async (o: PublishOptions) => {
      result.code = await publish(io, { broadcast: true }, o);
    });
}

const publishOptions = (cmd: Command) =>
  serverOptions(
    cmd
      .option('-m, --msg <text>', 'message text; alone, it is exactly the frame a session receives ("-": read it from stdin, as when --msg is absent and stdin is a pipe or a file)')
      .option('-t, --title <text>', 'alert title')
      .option('-d, --data <key=value>', 'custom data (repeatable)', collect)
      .option('--json', 'print the delivery report as JSON')
      .addOption(configOption()),
    'the report',
  )
    .option('--direct', "no daemon: deliver in this process through the config's push transports (APNs, HTTP push)")
    .option('--id <id>', 'your own message id: a repeat within history.dedupeWindow is not delivered again')
    .addOption(new Option('--route <route>', 'all transports at once, or live sessions first and push only if none takes it').choices(['all', 'live-first']))
    .option('--ttl <duration>', 'how long the message is kept for sessions that resume, e.g. 10m (at most history.ttl)');

function parseData(pairs: string[] | undefined): Record<string, string> | undefined {
  if (!pairs || pairs.length === 0) return undefined;
  const data: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new CliError(`--data takes key=value, got ${JSON.stringify(pair)}`);
    data[pair.slice(0, eq)] = pair.slice(eq + 1);
  }
  return data;
}

/** The /v1/send body of a publish command. */
function publishBody(address: Record<string, unknown>, o: PublishOptions): Record<string, unknown> {
  const body: Record<string, unknown> = { ...address };
  if (o.msg !== undefined) body.msg = o.msg;
  if (o.title !== undefined) body.title = o.title;
  const data = parseData(o.data);
  if (data) body.data = data;
  if (body.msg === undefined && body.title === undefined && data === undefined) {
    throw new CliError('nothing to send: give --msg, --title or --data');
  }
  if (o.id !== undefined) body.id = o.id;
  if (o.route !== undefined) body.route = o.route;
  if (o.ttl !== undefined) body.ttl = o.ttl;
  return body;
}

/**
 * The message text: --msg, or stdin with `--msg -`, or stdin when --msg is absent and stdin is a
 * pipe or a file (not a terminal), so `make 2>&1 | tail -1 | notify send --uid ops` works. One
 * trailing newline is dropped (echo and most commands end with one). At most http.maxBodyBytes,
 * the largest request the daemon takes.
 */
async function messageText(io: Io, o: PublishOptions): Promise<string | undefined> {
  if (o.msg !== undefined && o.msg !== '-') return o.msg;
  const stdin = io.stdin;
  if (o.msg === undefined && (stdin === undefined || stdin.isTTY === true)) return undefined;
  if (stdin === undefined) throw new CliError('--msg - reads the message from stdin, and there is none here; give --msg TEXT');
  const maxBytes = readApiConfig(o.config).http.maxBodyBytes;
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stdin) {
    const b = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
    size += b.length;
    if (size > maxBytes) throw new CliError(`the message on stdin is over ${maxBytes} bytes, the most the daemon takes in one request (http.maxBodyBytes)`);
    chunks.push(b);
  }
  const bytes = Buffer.concat(chunks);
  // Decoding would turn other bytes into U+FFFD and send that garbage as if all were well.
  if (!isUtf8(bytes)) throw new CliError('the message on stdin is not UTF-8 text (binary data, or another encoding such as Latin-1); convert it first, e.g. with iconv -t UTF-8, or base64 for binary data');
  const text = bytes.toString('utf8').replace(/\r?\n$/, '');
  if (text !== '') return text;
  // An empty stdin (cron's /dev/null) with --title or --data: a message without text.
  if (o.msg === undefined && (o.title !== undefined || (o.data?.length ?? 0) > 0)) return undefined;
  throw new CliError(`nothing to send: stdin is empty (${o.msg === '-' ? '--msg - reads the message from it' : 'with no --msg, the message is read from it'}); pipe the message in or give --msg TEXT`);
}

function printReport(io: Io, report: DeliveryReport, json: boolean | undefined): number {
  io.out(json ? `${JSON.stringify(report)}\n` : `${summarize(report)}\n`);
  return report.delivered ? EXIT.delivered : EXIT.none;
}

async function publish(io: Io, address: Record<string, unknown>, o: PublishOptions): Promise<number> {
  const msg = await messageText(io, o);
  const body = publishBody(address, { ...o, msg });
  if (o.direct) return publishDirect(io, body, o);
  return printReport(io, (await callApi(o, 'POST', '/v1/send', body)) as DeliveryReport, o.json);
}

/**
 * `--direct`: no daemon. Builds the config's push transports in this process (with the same
 * state directory, so registered and retired tokens count), delivers, and shuts them down.
 * The one way the CLI reaches delivery/, and only through the composition root (buildNode).
 */
async function publishDirect(io: Io, body: Record<string, unknown>, o: PublishOptions): Promise<number> {
  const config = readConfig(o.config);
  if (Object.keys(config.transports).length === 0) {
    const { path } = configSource(o.config);
    throw new CliError(`--direct delivers through the push transports under "transports:" in ${path ?? 'the config'}, and there are none${path !== undefined ? '' : ' (give --config FILE)'}`);
  }
  const audience = parseAudience(body);
  const message = messageFromFields(body);
  const options = parsePublishOptions(body);
  let node;
  try {
    node = await buildNode(config, { log: createLogger({ level: 'warn', write: io.err }), live: false });
  } catch (err) {
    // A daemon runs on this state directory: it owns the store, so the message goes through it.
    if (!(err instanceof StateLockedError)) throw err;
    io.err(`notify: the daemon (pid ${err.holder.pid}) holds ${config.state.dir}; sending through its HTTP API\n`);
    return printReport(io, (await callApi(o, 'POST', '/v1/send', body)) as DeliveryReport, o.json);
  }
  try {
    await node.start();
    return printReport(io, await node.publisher.publish(audience, message, options, 'cli'), o.json);
  } finally {
    await node.stop();
  }
}

/**
 * One line for a human: how many targets, by transport; which were rejected for good (a dead
 * token, a bad payload) and which failed for now (a timeout, a 5xx; retried when the transport
 * retries); who was not reached; whether it is kept; and whether this was a repeat of an id.
 */
export function summarize(r: DeliveryReport & { stored?: boolean; id?: string; duplicate?: true }): string {
  const byTransport = new Map<string, number>();
  for (const e of r.results) if (e.status === 'sent') byTransport.set(e.transport, (byTransport.get(e.transport) ?? 0) + 1);
  const parts = [...byTransport].map(([t, n]) => `${t}: ${n}`).join(', ');
  let line = r.delivered ? `delivered to ${r.sent} target${r.sent === 1 ? '' : 's'} (${parts})` : 'not delivered';
  for (const status of ['rejected', 'failed'] as const) {
    const entries = r.results.filter((e) => e.status === status);
    if (entries.length === 0) continue;
    const reasons = [...new Set(entries.map((e) => e.reason ?? status))];
    line += `; ${entries.length} ${status} (${reasons.join('; ')})`;
  }
  if (r.unreached.length > 0) line += `; not reachable: ${r.unreached.join(', ')}`;
  if (!r.delivered && r.results.length === 0 && r.unreached.length === 0) line += '; nobody is connected';
  if (!r.delivered && r.stored) line += '; stored for sessions that resume';
  if (r.duplicate) line = `duplicate of message ${r.id ?? '(same id)'} sent earlier: not sent again; the first send: ${line}`;
  return line;
}
