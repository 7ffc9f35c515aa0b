import type { Command } from 'commander';
import { type ApiConfig, parseListen } from '../config/load.js';
import { errorMessage } from '../errors.js';
import { CliError } from './io.js';
import { configOption, readApiConfig } from './options.js';

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
    .option('-s, --server <url>', "the daemon's HTTP API (default: $NOTIFY_SERVER, else from the config's http.listen)")
    .option('--token <token>', 'bearer token for the HTTP API (default: $NOTIFY_TOKEN, else http.token from the config)')
    .option('--timeout <ms>', `how long to wait for ${waitFor}`, '30000');

/** The options of a command that only talks to the daemon: --config, then serverOptions. */
export const apiOptions = (cmd: Command) => serverOptions(cmd.addOption(configOption()), 'an answer');

/** A non-empty environment variable, else undefined. */
function fromEnv(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v === '' ? undefined : v;
}

/** The daemon's HTTP API base URL: --server, else $NOTIFY_SERVER, else the config's http.listen. */
function serverUrl(server: string | undefined, config: ApiConfig): string {
  const env = fromEnv('NOTIFY_SERVER');
  const given = server !== undefined ? { text: server, name: '--server' } : env !== undefined ? { text: env, name: 'NOTIFY_SERVER' } : undefined;
  if (given !== undefined) {
    let url: URL;
    try {
      url = new URL(given.text);
    } catch {
      throw new CliError(`${given.name} must be a URL like http://127.0.0.1:5680, got ${JSON.stringify(given.text)}`);
    }
    // Never echo what may be a password: say where it is, not what it is.
    if (url.username !== '' || url.password !== '') throw new CliError(`${given.name} must not carry a user or password; give the API token with --token or NOTIFY_TOKEN`);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CliError(`${given.name} must be an http:// or https:// URL, got ${JSON.stringify(given.text)}`);
    return url.toString().replace(/\/$/, '');
  }
  const { host, port } = parseListen(config.http.listen);
  const reachable = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return `http://${reachable.includes(':') ? `[${reachable}]` : reachable}:${port}`;
}

/**
 * Calls the running daemon's HTTP API; resolves with its JSON answer or throws a one-line
 * CliError. The address and token: flags, else $NOTIFY_SERVER / $NOTIFY_TOKEN, else the config
 * (of which only `http` is read).
 */
export async function callApi(o: ApiOptions, method: string, path: string, body?: unknown): Promise<unknown> {
  const config = readApiConfig(o.config);
  const base = serverUrl(o.server, config);
  const token = o.token ?? fromEnv('NOTIFY_TOKEN') ?? config.http.token ?? undefined;
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
