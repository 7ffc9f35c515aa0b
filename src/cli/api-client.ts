import { readFileSync } from 'node:fs';
import { rootCertificates } from 'node:tls';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Command } from 'commander';
import { type ApiConfig, parseListen } from '../config/load.js';
import { redactUrl } from '../config/redact.js';
import { errorMessage } from '../errors.js';
import { CliError } from './io.js';
import { configOption, readApiConfig } from './options.js';

/** How the CLI reaches the daemon's HTTP API. */
export interface ApiOptions {
  config?: string;
  server?: string;
  token?: string;
  /** A PEM file of the CA (or the certificate itself) an https:// daemon's certificate is checked against. */
  ca?: string;
  timeout: string;
}

/** --server, --token and --timeout; `waitFor` says what --timeout waits for. */
export const serverOptions = (cmd: Command, waitFor: string) =>
  cmd
    .option('-s, --server <url>', "the daemon's HTTP API (default: $NOTIFY_SERVER, else from the config's http.listen)")
    .option('--token <token>', 'bearer token for the HTTP API (default: $NOTIFY_TOKEN, else http.token from the config)')
    .option('--ca <file>', "PEM file of the CA that signed an https:// daemon's certificate, added to the system's (default: $NOTIFY_CA)")
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
      // Not a URL, but it may still hold a password or a token: those parts are not echoed.
      throw new CliError(`${given.name} must be a URL like http://127.0.0.1:5680, got ${JSON.stringify(redactUrl(given.text.slice(0, 200)))}`);
    }
    // Never echo what may be a password: say where it is, not what it is.
    if (url.username !== '' || url.password !== '') throw new CliError(`${given.name} must not carry a user or password; give the API token with --token or NOTIFY_TOKEN`);
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new CliError(`${given.name} must be an http:// or https:// URL, got ${JSON.stringify(redactUrl(given.text.slice(0, 200)))}`);
    // The API path is appended to it: a query (a token put there?) or a fragment would end up
    // in the middle of the request target, and in every error message.
    if (url.search !== '' || url.hash !== '') throw new CliError(`${given.name} must not carry a query string or fragment; give the API token with --token or NOTIFY_TOKEN`);
    return url.toString().replace(/\/$/, '');
  }
  const { host, port } = parseListen(config.http.listen);
  const reachable = host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '::1' : host;
  return `${config.http.tls ? 'https' : 'http'}://${reachable.includes(':') ? `[${reachable}]` : reachable}:${port}`;
}

/**
 * Calls the running daemon's HTTP API; resolves with its JSON answer or throws a one-line
 * CliError. The address and token: flags, else $NOTIFY_SERVER / $NOTIFY_TOKEN, else the config
 * (of which only `http` is read). With `notFound`, a 404 NOTIFY_ERR_NOT_FOUND answer resolves
 * undefined instead.
 */
export async function callApi(o: ApiOptions, method: string, path: string, body?: unknown, opts: { notFound?: boolean } = {}): Promise<unknown> {
  const config = readApiConfig(o.config);
  const base = serverUrl(o.server, config);
  const token = o.token ?? fromEnv('NOTIFY_TOKEN') ?? config.http.token ?? undefined;
  const timeoutMs = Number(o.timeout);
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) throw new CliError('--timeout must be a positive number of milliseconds');
  const ca = o.ca ?? (process.env.NOTIFY_CA || undefined);
  const trusted = ca !== undefined ? readCa(ca, o.ca !== undefined ? '--ca' : 'NOTIFY_CA') : undefined;
  let res: { status: number; statusText: string; ok: boolean; text: string };
  try {
    res = await request(`${base}${path}`, {
      method,
      headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      timeoutMs,
      ...(trusted !== undefined ? { ca: trusted } : {}),
    });
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? '';
    if (UNTRUSTED.has(code)) {
      const hint = ca !== undefined ? `it does not chain up to the CA in ${ca}` : 'give the CA that signed it with --ca FILE (or NOTIFY_CA)';
      throw new CliError(`the TLS certificate of ${base} is not trusted (${code}); ${hint}`);
    }
    if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') throw new CliError(`the TLS certificate of ${base} is not valid now (${code})`);
    if (code.startsWith('ERR_TLS_CERT_ALTNAME')) throw new CliError(`the TLS certificate of ${base} is not for that host name (${errorMessage(err)})`);
    const why = code === 'ETIMEDOUT_NOTIFY' ? `no answer within ${timeoutMs} ms` : code || errorMessage(err);
    throw new CliError(`cannot reach the notify daemon at ${base} (${why}); is "notify serve" running?`);
  }
  const text = res.text;
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

/** Certificate errors that mean "signed by nobody you trust" (OpenSSL's verify codes as Node names them). */
const UNTRUSTED = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_SIGNATURE_FAILURE',
]);

/** The CA file of --ca (or NOTIFY_CA), with the system's roots: a public certificate still verifies. */
function readCa(file: string, from: string): (string | Buffer)[] {
  let pem: Buffer;
  try {
    pem = readFileSync(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CliError(`${from}: cannot read ${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (code ?? errorMessage(err))}`);
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new CliError(`${from}: ${file} holds no PEM certificate`);
  return [...rootCertificates, pem];
}

/**
 * One HTTP(S) request with its whole answer. node:http(s) rather than fetch: Node 20's fetch
 * takes no CA of its own (that needs undici's Agent, not a dependency here).
 */
function request(
  url: string,
  o: { method: string; headers: Record<string, string>; body?: string; timeoutMs: number; ca?: (string | Buffer)[] },
): Promise<{ status: number; statusText: string; ok: boolean; text: string }> {
  return new Promise((resolve, reject) => {
    const target = new URL(url);
    const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
    const headers = { ...o.headers, ...(o.body !== undefined ? { 'content-length': String(Buffer.byteLength(o.body)) } : {}) };
    const req = send(target, { method: o.method, headers, ...(o.ca ? { ca: o.ca } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const status = res.statusCode ?? 0;
        resolve({ status, statusText: res.statusMessage ?? '', ok: status >= 200 && status < 300, text: Buffer.concat(chunks).toString('utf8') });
      });
    });
    // The whole exchange, as fetch's AbortSignal.timeout bounded it before.
    const timer = setTimeout(() => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT_NOTIFY' })), o.timeoutMs);
    req.on('close', () => clearTimeout(timer));
    req.on('error', reject);
    req.end(o.body);
  });
}
