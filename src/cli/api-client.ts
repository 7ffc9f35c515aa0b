import type { Command } from 'commander';
import { type Config, parseListen } from '../config/load.js';
import { errorMessage } from '../errors.js';
import { CliError } from './io.js';
import { configOption, readConfig } from './options.js';

/** How the CLI reaches the daemon's HTTP API. */
export interface ApiOptions {
  config?: string;
  server?: string;
  token?: string;
  timeout: string;
}

/** --server, --token and --timeout; `waitFor` says what --timeout waits for. */
export const serverOptions = (cmd: Command, waitFor: string) =>
  cmd
    .option('-s, --server <url>', "the daemon's HTTP API (default: from the config's http.listen)")
    .option('--token <token>', 'bearer token for the HTTP API (default: $NOTIFY_TOKEN, else http.token from the config)')
    .option('--timeout <ms>', `how long to wait for ${waitFor}`, '30000');

/** The options of a command that only talks to the daemon: --config, then serverOptions. */
export const apiOptions = (cmd: Command) => serverOptions(cmd.addOption(configOption()), 'an answer');

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

/**
 * Calls the running daemon's HTTP API; resolves with its JSON answer or throws a one-line CliError.
 * With `notFound`, a 404 NOTIFY_ERR_NOT_FOUND answer resolves undefined instead.
 */
export async function callApi(o: ApiOptions, method: string, path: string, body?: unknown, opts: { notFound?: boolean } = {}): Promise<unknown> {
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
    if (opts.notFound && res.status === 404 && e.code === 'NOTIFY_ERR_NOT_FOUND') return undefined;
    throw new CliError(`the daemon refused the request: ${e.error ?? res.statusText} (${e.code ?? res.status})`);
  }
  return parsed;
}
