import type { IncomingMessage, ServerResponse } from 'node:http';
import { NotifyError } from '../errors.js';
import { CONSOLE_CSS, CONSOLE_HTML, CONSOLE_JS } from './assets.js';

/**
 * The console's pages carry no data (everything comes from the API, with the token): the
 * headers keep them from being framed (clickjacking), from running any script but ours, and
 * from being cached.
 * https://developer.mozilla.org/en-US/docs/Web/HTTP/Headers/Content-Security-Policy
 */
export const CONSOLE_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

interface Asset {
  type: string;
  body: Buffer;
}

function asset(type: string, text: string): Asset {
  return { type, body: Buffer.from(text, 'utf8') };
}

const ASSETS = new Map<string, Asset>([
  ['/console', asset('text/html; charset=utf-8', CONSOLE_HTML)],
  ['/console/', asset('text/html; charset=utf-8', CONSOLE_HTML)],
  ['/console/console.js', asset('text/javascript; charset=utf-8', CONSOLE_JS)],
  ['/console/console.css', asset('text/css; charset=utf-8', CONSOLE_CSS)],
]);

/** True for the paths the console owns. */
export function isConsolePath(path: string): boolean {
  return path === '/console' || path.startsWith('/console/');
}

/** Answers a request for one of the console's static files (GET or HEAD); throws a NotifyError (404, 405) otherwise. */
export function serveConsole(req: IncomingMessage, res: ServerResponse, path: string): void {
  const a = ASSETS.get(path);
  if (!a) throw new NotifyError('NOTIFY_ERR_NOT_FOUND', `no such console file: ${path}; the console is at /console`, { status: 404 });
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('allow', 'GET, HEAD');
    throw new NotifyError('NOTIFY_ERR_METHOD', `${path} takes GET`, { status: 405 });
  }
  res.writeHead(200, { ...CONSOLE_HEADERS, 'content-type': a.type, 'content-length': a.body.length });
  res.end(req.method === 'HEAD' ? undefined : a.body);
}
