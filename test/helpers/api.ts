import assert from 'node:assert/strict';
import type { PublishReport } from '../../src/types.js';

/** An answer of the daemon's HTTP API: the status and the parsed JSON body. */
export interface Answer {
  status: number;
  body: unknown;
}

/** Calls the daemon's HTTP API at `base`; a string body is sent as is, anything else as JSON. */
export async function api(
  base: string,
  method: 'GET' | 'POST' | 'DELETE',
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<Answer> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { 'content-type': 'application/json', ...headers },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: JSON.parse(text) as unknown };
}

/** POST /v1/send through the HTTP API at `base`, which must answer 200; the report. */
export async function send(base: string, body: Record<string, unknown>): Promise<PublishReport> {
  const a = await api(base, 'POST', '/v1/send', body);
  assert.equal(a.status, 200, JSON.stringify(a.body));
  return a.body as PublishReport;
}
