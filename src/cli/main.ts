import { Command, CommanderError, Option } from 'commander';
import { stringify } from 'yaml';
import { type Config, ConfigError, defaultConfig, loadConfig, parseListen, redact } from '../config/load.js';
import { makeToken } from '../auth.js';
import { buildNode } from '../node/node.js';
import { createDaemon } from '../node/daemon.js';
import type { DeviceEntry } from '../push/devices.js';
import { NotifyError, errorMessage } from '../errors.js';
import { createLogger } from '../obs/log.js';
import { parseDuration } from '../duration.js';
import { checkUid, messageFromFields, parseAudience, parsePublishOptions } from '../message.js';
import type { DeliveryReport } from '../types.js';

/** Exit codes for shell scripts. */
export const EXIT = {
  /** Delivered to at least one target. */
  delivered: 0,
  /** Delivered to none. */
  none: 1,
  /** Usage, config or connection error. */
  error: 2,
} as const;

/** Where the CLI writes, and how a running `serve` learns it should stop. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
  /** Resolves when the process is asked to stop (SIGINT/SIGTERM); given the signal name. */
  onStopSignal(handler: (signal: string) => void): () => void;
  /** Calls `handler` when the process is asked to reload (SIGHUP); returns an unsubscribe. */
  onReloadSignal?(handler: () => void): () => void;
}

const processIo: Io = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  onStopSignal(handler) {
    process.on('SIGINT', handler);
    process.on('SIGTERM', handler);
    return () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    };
  },
  onReloadSignal(handler) {
    process.on('SIGHUP', handler);
    return () => process.off('SIGHUP', handler);
  },
};

/** A failure that ends the command with exit code 2 and this one line on stderr. */
class CliError extends Error {}

const collect = (value: string, prev: string[] = []) => [...prev, value];

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

function readConfig(path: string | undefined): Config {
  return path === undefined ? defaultConfig() : loadConfig(path);
}

/** The daemon's HTTP API base URL: --server, else the config's http.listen. */
function serverUrl(server: string | undefined, config: Config): string {
  if (server !== undefined) {
    try {
      return new URL(server).toString().replace(/\/$/, '');
    } catch {
      throw new CliError(`--server must be a URL like http://127.0.0.1:5680, got ${JSON.stringify(server)}`);
    }
  }
  const { host, port } = parseListen(config.http.listen);
  const reachable = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return `http://${reachable.includes(':') ? `[${reachable}]` : reachable}:${port}`;
}

/** How the CLI reaches the daemon's HTTP API. */
interface ApiOptions {
  config?: string;
  server?: string;
  token?: string;
  timeout: string;
}

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

/** Calls the running daemon's HTTP API; resolves with its JSON answer or throws a one-line CliError. */
async function callApi(o: ApiOptions, method: string, path: string, body?: unknown): Promise<unknown> {
  const config = readConfig(o.config);
  const base = serverUrl(o.server, config);
  const token = o.token ?? process.env.NOTIFY_TOKEN ?? config.http.token ?? undefined;
  const timeoutMs = Number(o.timeout);
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) throw new CliError('--timeout must be a positive number of milliseconds');
  let res: Response;
  try {
    res = await fetch(`${base}${path}`, {
      method,
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const why = (err as Error).name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : (cause?.code ?? cause?.message ?? errorMessage(err));
    throw new CliError(`cannot reach the notify daemon at ${base} (${why}); is "notify serve" running?`);
  }
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new CliError(`${base} answered ${res.status} with something that is not notify's JSON`);
  }
  if (!res.ok) {
    const e = parsed as { code?: string; error?: string };
    throw new CliError(`the daemon refused the request: ${e.error ?? res.statusText} (${e.code ?? res.status})`);
  }
  return parsed;
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

function printReport(io: Io, report: DeliveryReport, json: boolean | undefined): number {
  io.out(json ? `${JSON.stringify(report)}\n` : `${summarize(report)}\n`);
  return report.delivered ? EXIT.delivered : EXIT.none;
}

async function publish(io: Io, address: Record<string, unknown>, o: PublishOptions): Promise<number> {
  const body = publishBody(address, o);
  if (o.direct) return publishDirect(io, body, o);
  return printReport(io, (await callApi(o, 'POST', '/v1/send', body)) as DeliveryReport, o.json);
}

/**
 * `--direct`: no daemon. Builds the config's push transports in this process (with the same
 * state directory, so registered and retired tokens count), delivers, and shuts them down.
 */
async function publishDirect(io: Io, body: Record<string, unknown>, o: PublishOptions): Promise<number> {
  const config = readConfig(o.config);
  if (Object.keys(config.transports).length === 0) {
    throw new CliError(`--direct delivers through the push transports under "transports:" in ${o.config ?? 'the config'}, and there are none${o.config ? '' : ' (give --config FILE)'}`);
  }
  const audience = parseAudience(body);
  const message = messageFromFields(body);
  const options = parsePublishOptions(body);
  const node = buildNode(config, { log: createLogger({ level: 'warn', write: io.err }), live: false });
  try {
    await node.start();
    return printReport(io, await node.publisher.publish(audience, message, options, 'cli'), o.json);
  } finally {
    await node.stop();
  }
}

interface DevicesOptions extends ApiOptions {
  transport?: string;
  uid?: string;
  json?: boolean;
}

async function devicesChange(io: Io, op: 'add' | 'remove', uid: string, device: string, o: DevicesOptions): Promise<number> {
  const body = { uid, token: device, ...(o.transport !== undefined ? { transport: o.transport } : {}) };
  const answer = (await callApi(o, op === 'add' ? 'POST' : 'DELETE', '/v1/devices', body)) as {
    added?: boolean;
    removed?: boolean;
    transport: string;
    token: string;
  };
  if (op === 'add') {
    io.out(`${answer.added ? 'registered' : 'already registered'}: ${uid} ${answer.transport} ${answer.token}\n`);
    return EXIT.delivered;
  }
  io.out(answer.removed ? `removed: ${uid} ${answer.transport} ${answer.token}\n` : `not registered for ${uid}: ${answer.token}\n`);
  return answer.removed ? EXIT.delivered : EXIT.none;
}

async function devicesList(io: Io, o: DevicesOptions): Promise<number> {
  const q = new URLSearchParams();
  if (o.uid !== undefined) q.set('uid', o.uid);
  if (o.transport !== undefined) q.set('transport', o.transport);
  const { devices } = (await callApi(o, 'GET', `/v1/devices${q.size ? `?${q}` : ''}`)) as { devices: DeviceEntry[] };
  if (o.json) io.out(`${JSON.stringify(devices)}\n`);
  else if (devices.length === 0) io.err('no device tokens (configure a push transport under transports:, then devices: or notify devices add)\n');
  else for (const d of devices) io.out(`${d.uid}\t${d.transport}\t${d.token}\t${d.source}\n`);
  return EXIT.delivered;
}

/** One line for a human: how many targets, by transport, who was not reached, and whether it is kept. */
export function summarize(r: DeliveryReport & { stored?: boolean }): string {
  const byTransport = new Map<string, number>();
  for (const e of r.results) if (e.status === 'sent') byTransport.set(e.transport, (byTransport.get(e.transport) ?? 0) + 1);
  const parts = [...byTransport].map(([t, n]) => `${t}: ${n}`).join(', ');
  const failures = r.failed + r.rejected;
  let line = r.delivered ? `delivered to ${r.sent} target${r.sent === 1 ? '' : 's'} (${parts})` : 'not delivered';
  if (failures > 0) {
    const reasons = [...new Set(r.results.filter((e) => e.status !== 'sent').map((e) => e.reason ?? e.status))];
    line += `; ${failures} failed (${reasons.join('; ')})`;
  }
  if (r.unreached.length > 0) line += `; not reachable: ${r.unreached.join(', ')}`;
  if (!r.delivered && r.results.length === 0 && r.unreached.length === 0) line += '; nobody is connected';
  if (!r.delivered && r.stored) line += '; stored for sessions that resume';
  return line;
}

async function serve(io: Io, o: { config?: string }): Promise<number> {
  const config = readConfig(o.config);
  const log = createLogger({ level: config.log.level, write: io.err });
  const daemon = createDaemon(config, { log });
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
      reloading = reloading.then(() => reload(daemon, o.config, log));
    }) ?? (() => {});
  try {
    await daemon.start();
    log.info(`notify ready${o.config ? ` (config ${o.config})` : ' (built-in defaults; pass --config FILE to change them)'}`);
    const signal = await stopRequested;
    log.info(`${signal}: shutting down; finishing deliveries in flight`);
    await daemon.stop();
    log.info('stopped');
    return 0;
  } finally {
    unlisten();
    unlistenReload();
  }
}

/** SIGHUP: reads the config file again; a bad one is reported and the running config kept. */
async function reload(daemon: ReturnType<typeof createDaemon>, path: string | undefined, log: ReturnType<typeof createLogger>): Promise<void> {
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

function tokenCommand(io: Io, o: { uid: string; ttl: string; config?: string; json?: boolean }): number {
  const config = readConfig(o.config);
  if (!config.ws.secret) {
    const where = o.config ? `${o.config} has no ws.secret` : 'the built-in defaults have no ws.secret (give --config FILE)';
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
  const token = makeToken(config.ws.secret, o.uid, expiresAt);
  io.out(o.json ? `${JSON.stringify({ uid: o.uid, token, expiresAt: new Date(expiresAt * 1000).toISOString() })}\n` : `${token}\n`);
  return 0;
}

interface StatusAnswer {
  version: string;
  uptimeS: number;
  listeners: Record<string, string>;
  sessions: number;
  uids: number;
  connections: number;
  history: { rows?: number; enabled?: boolean };
  transports: Record<string, Record<string, unknown>>;
}

function duration(s: number): string {
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return [d ? `${d}d` : '', h ? `${h}h` : '', m ? `${m}m` : '', `${s % 60}s`].filter(Boolean).join(' ');
}

/** What a human wants from /v1/status: listeners, sessions, the store, each transport's state. */
export function formatStatus(st: StatusAnswer): string {
  const lines = [`notify ${st.version}, up ${duration(st.uptimeS)}`];
  lines.push(`listening   ${Object.entries(st.listeners).map(([k, v]) => `${k} ${v}`).join('   ')}`);
  lines.push(`sessions    ${st.sessions} session${st.sessions === 1 ? '' : 's'} of ${st.uids} uid${st.uids === 1 ? '' : 's'} (${st.connections} connection${st.connections === 1 ? '' : 's'})`);
  lines.push(`store       ${st.history.enabled === false ? 'off' : `${st.history.rows ?? 0} stored message rows`}`);
  lines.push('transports');
  const width = Math.max(...Object.keys(st.transports).map((n) => n.length));
  for (const [name, h] of Object.entries(st.transports)) {
    const { state, ...rest } = h;
    const details = Object.entries(rest)
      .map(([k, v]) => `${k} ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
      .join(', ');
    lines.push(`  ${name.padEnd(width)}  ${String(state ?? '?')}${details ? `  ${details}` : ''}`);
  }
  return `${lines.join('\n')}\n`;
}

async function statusCommand(io: Io, o: ApiOptions & { json?: boolean }): Promise<number> {
  const st = (await callApi(o, 'GET', '/v1/status')) as StatusAnswer;
  io.out(o.json ? `${JSON.stringify(st)}\n` : formatStatus(st));
  return 0;
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
  io.out(`${o.config ?? 'built-in defaults'}: ok\n`);
  if (o.print) io.out(stringify(redact(config)));
  return 0;
}

/** The commander program. Actions store their exit code in `result.code`. */
export function buildProgram(io: Io, result: { code: number }): Command {
  const program = new Command('notify')
    .description('Push notifications to a uid: live WebSocket sessions, APNs and HTTP push services.')
    .exitOverride()
    .configureOutput({
      writeOut: io.out,
      writeErr: io.err,
      // One line: commander puts its "(Did you mean …?)" hint on a line of its own.
      outputError: (s, write) => write(`notify: ${s.replace(/^error: /, '').trim().replace(/\s*\n\s*/g, ' ')} (see "notify --help")\n`),
    });

  const configOption = () => new Option('-c, --config <file>', 'YAML config file (default: built-in defaults)');
  const publishOptions = (cmd: Command) =>
    cmd
      .option('-m, --msg <text>', 'message text; alone, it is exactly the frame a session receives')
      .option('-t, --title <text>', 'alert title')
      .option('-d, --data <key=value>', 'custom data (repeatable)', collect)
      .option('--json', 'print the delivery report as JSON')
      .addOption(configOption())
      .option('-s, --server <url>', "the daemon's HTTP API (default: from the config's http.listen)")
      .option('--token <token>', 'bearer token for the HTTP API (default: $NOTIFY_TOKEN, else http.token from the config)')
      .option('--timeout <ms>', 'how long to wait for the report', '30000')
      .option('--direct', "no daemon: deliver in this process through the config's push transports (APNs, HTTP push)")
      .option('--id <id>', 'your own message id: a repeat within history.dedupeWindow is not delivered again')
      .addOption(new Option('--route <route>', 'all transports at once, or live sessions first and push only if none takes it').choices(['all', 'live-first']))
      .option('--ttl <duration>', 'how long the message is kept for sessions that resume, e.g. 10m (at most history.ttl)');
  const apiOptions = (cmd: Command) =>
    cmd
      .addOption(configOption())
      .option('-s, --server <url>', "the daemon's HTTP API (default: from the config's http.listen)")
      .option('--token <token>', 'bearer token for the HTTP API (default: $NOTIFY_TOKEN, else http.token from the config)')
      .option('--timeout <ms>', 'how long to wait for an answer', '30000');

  program
    .command('serve')
    .description('run the daemon in the foreground (stop with SIGINT or SIGTERM)')
    .addOption(configOption())
    .action(async (o) => {
      result.code = await serve(io, o);
    });

  publishOptions(
    program
      .command('send')
      .description('send a message to one or more uids through the running daemon')
      .requiredOption('-u, --uid <uid>', 'recipient uid (repeatable)', collect),
  )
    .addHelpText('after', '\nExit status: 0 delivered to at least one target, 1 delivered to none, 2 usage, config or connection error.')
    .action(async (o: PublishOptions & { uid: string[] }) => {
      const address = o.uid.length === 1 ? { uid: o.uid[0] } : { uid: o.uid };
      result.code = await publish(io, address, o);
    });

  publishOptions(program.command('broadcast').description('send a message to every connected uid'))
    .addHelpText('after', '\nExit status: 0 delivered to at least one target, 1 delivered to none, 2 usage, config or connection error.')
    .action(async (o: PublishOptions) => {
      result.code = await publish(io, { broadcast: true }, o);
    });

  const devices = program.command('devices').description('device tokens of the push transports, through the running daemon');
  apiOptions(
    devices
      .command('add')
      .description('register a device token for a uid (kept across restarts)')
      .argument('<uid>', 'the uid the device belongs to')
      .argument('<device-token>', 'the APNs device token (hex) or registration id')
      .option('--transport <name>', 'which transport (default: the only one configured)'),
  ).action(async (uid: string, device: string, o: DevicesOptions) => {
    result.code = await devicesChange(io, 'add', uid, device, o);
  });
  apiOptions(
    devices
      .command('remove')
      .description("remove a uid's device token (exit 1 if it was not registered)")
      .argument('<uid>')
      .argument('<device-token>')
      .option('--transport <name>', 'which transport (default: the only one configured)'),
  ).action(async (uid: string, device: string, o: DevicesOptions) => {
    result.code = await devicesChange(io, 'remove', uid, device, o);
  });
  apiOptions(
    devices
      .command('list')
      .description('list device tokens: uid, transport, token, source (config or api)')
      .option('-u, --uid <uid>', 'only this uid')
      .option('--transport <name>', 'only this transport')
      .option('--json', 'print JSON'),
  ).action(async (o: DevicesOptions) => {
    result.code = await devicesList(io, o);
  });

  program
    .command('token')
    .description("print a connection token for a uid (ws.auth: token), for a backend to hand to its page")
    .requiredOption('-u, --uid <uid>', 'the uid the token lets a page bind')
    .option('--ttl <duration>', 'how long it is valid, e.g. 15m, 1h, 7d', '1h')
    .addOption(configOption())
    .option('--json', 'print {uid, token, expiresAt}')
    .action((o: { uid: string; ttl: string; config?: string; json?: boolean }) => {
      result.code = tokenCommand(io, o);
    });

  apiOptions(
    program
      .command('status')
      .description('what the running daemon is doing: listeners, sessions, the store, each transport')
      .option('--json', 'print the status as JSON'),
  ).action(async (o: ApiOptions & { json?: boolean }) => {
    result.code = await statusCommand(io, o);
  });

  const config = program.command('config').description('work with config files');
  config
    .command('check')
    .description('validate a config file (or the built-in defaults) and exit 0 if it is good')
    .addOption(configOption())
    .option('--print', 'print the effective config with secrets redacted')
    .action((o) => {
      result.code = configCheck(io, o);
    });

  return program;
}

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
