/**
 * Debian's Firefox ESR for tests, driven over its own WebDriver BiDi (playwright-core drives
 * only Playwright's patched Firefox builds). `firefox-esr --headless --remote-debugging-port=0
 * --profile DIR` prints `WebDriver BiDi listening on ws://127.0.0.1:PORT`; the driver here
 * opens `ws://127.0.0.1:PORT/session`, sends `session.new`, and then speaks plain BiDi commands
 * (`browsingContext.*`, `script.evaluate`, `permissions.setPermission`).
 *
 * The profile is fresh and offline: telemetry, updates, safe browsing, captive-portal and
 * connectivity checks, remote settings, DNS prefetch and DoH are off (user.js), and every
 * connection to a host but 127.0.0.1/localhost goes through a local "trap" proxy (Firefox never
 * proxies loopback), which refuses it and records it in `foreign`: a test asserts it is empty.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { WebSocket } from 'ws';

export const FIREFOX = '/usr/bin/firefox-esr';
// CI installs firefox-esr, so there a missing binary is a failure, not a skip.
export const SKIP = existsSync(FIREFOX) || process.env.CI ? false : `${FIREFOX} not installed (.ci/run installs it)`;
// A noisy 2-core machine: generous bounds for launch, load and connect; normally it takes a few seconds.
export const SLOW_MS = 30_000;

type PrefValue = string | number | boolean;

/** Prefs of a profile that talks to nobody on its own. */
const OFFLINE_PREFS: Record<string, PrefValue> = {
  'app.normandy.enabled': false,
  'app.normandy.api_url': '',
  'app.update.disabledForTesting': true,
  'app.update.auto': false,
  'app.update.enabled': false,
  'browser.aboutwelcome.enabled': false,
  'browser.discovery.enabled': false,
  'browser.newtabpage.enabled': false,
  'browser.newtabpage.activity-stream.feeds.system.topstories': false,
  'browser.newtabpage.activity-stream.feeds.section.topstories': false,
  'browser.newtabpage.activity-stream.feeds.snippets': false,
  'browser.newtabpage.activity-stream.showSponsored': false,
  'browser.newtabpage.activity-stream.showSponsoredTopSites': false,
  'browser.newtabpage.activity-stream.testing.shouldInitializeFeeds': false,
  'browser.ping-centre.telemetry': false,
  'browser.region.network.url': '',
  'browser.region.update.enabled': false,
  'browser.safebrowsing.blockedURIs.enabled': false,
  'browser.safebrowsing.downloads.enabled': false,
  'browser.safebrowsing.downloads.remote.enabled': false,
  'browser.safebrowsing.malware.enabled': false,
  'browser.safebrowsing.phishing.enabled': false,
  'browser.safebrowsing.provider.google4.updateURL': '',
  'browser.safebrowsing.provider.mozilla.updateURL': '',
  'browser.search.geoip.url': '',
  'browser.search.update': false,
  'browser.selfsupport.url': '',
  'browser.sessionstore.resume_from_crash': false,
  'browser.shell.checkDefaultBrowser': false,
  'browser.startup.homepage': 'about:blank',
  'browser.startup.homepage_override.mstone': 'ignore',
  'browser.startup.page': 0,
  'browser.tabs.warnOnClose': false,
  'browser.topsites.contile.enabled': false,
  'browser.translations.enable': false,
  'browser.urlbar.quicksuggest.enabled': false,
  'browser.urlbar.suggest.searches': false,
  'browser.urlbar.merino.endpointURL': '',
  'browser.ml.enable': false,
  'browser.contentblocking.report.lockwise.enabled': false,
  'captivedetect.canonicalURL': '',
  'datareporting.healthreport.uploadEnabled': false,
  'datareporting.policy.dataSubmissionEnabled': false,
  'datareporting.usage.uploadEnabled': false,
  'datareporting.policy.dataSubmissionPolicyBypassNotification': true,
  'extensions.getAddons.cache.enabled': false,
  'extensions.getAddons.discovery.api_url': 'data:, ',
  'extensions.systemAddon.update.enabled': false,
  'extensions.update.enabled': false,
  'extensions.blocklist.enabled': false,
  'geo.provider.network.url': '',
  'identity.fxaccounts.enabled': false,
  'media.gmp-manager.url': '',
  'media.gmp-gmpopenh264.enabled': false,
  'media.gmp-widevinecdm.enabled': false,
  'network.captive-portal-service.enabled': false,
  'network.connectivity-service.enabled': false,
  'network.dns.disablePrefetch': true,
  'network.http.speculative-parallel-limit': 0,
  'network.predictor.enabled': false,
  'network.prefetch-next': false,
  'network.trr.mode': 5,
  'security.OCSP.enabled': 0,
  'security.remote_settings.crlite_filters.enabled': false,
  'security.remote_settings.intermediates.enabled': false,
  'services.settings.server': 'data:,#remote-settings-dummy/v1',
  'services.sync.enabled': false,
  'toolkit.telemetry.enabled': false,
  'toolkit.telemetry.server': '',
  'toolkit.telemetry.unified': false,
  'toolkit.telemetry.archive.enabled': false,
  'toolkit.coverage.endpoint.base': '',
};

export interface BiDi {
  /** Sends a command and resolves with its result; rejects with the error BiDi answered. */
  send(method: string, params?: Record<string, unknown>): Promise<Record<string, unknown>>;
  /**
   * Evaluates `expression` (awaiting a promise) in the browsing context and returns its value as
   * JSON-ish data (BiDi remote values deserialised: primitives, arrays, objects); a thrown
   * exception rejects with its text. `userActivation` makes it count as a user gesture.
   */
  evaluate(context: string, expression: string, opts?: { userActivation?: boolean }): Promise<unknown>;
  /** Opens a new tab and returns its context id. */
  newTab(): Promise<string>;
  navigate(context: string, url: string): Promise<void>;
  close(context: string): Promise<void>;
}

export interface Firefox {
  bidi: BiDi;
  /** The tab the browser started with. */
  firstTab: string;
  /** Every connection Firefox tried to open to a host but 127.0.0.1/localhost (through the trap proxy). */
  foreign: string[];
  /** What Firefox wrote to stderr (for failure messages). */
  stderr(): string;
  version: string;
}

/** A local proxy that refuses everything and records what was asked of it; resolves with its port and how to close it. */
async function trapProxy(foreign: string[]): Promise<{ port: number; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    foreign.push(`${req.method} ${req.url}`);
    res.writeHead(403, { connection: 'close' }).end('offline test: no connections beyond 127.0.0.1');
  });
  const sockets = new Set<Socket>();
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('connect', (req, socket: Socket) => {
    foreign.push(`CONNECT ${req.url}`);
    socket.end('HTTP/1.1 403 Forbidden\r\n\r\n');
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as AddressInfo).port,
    async close() {
      const closed = new Promise<void>((r) => server.close(() => r()));
      for (const s of sockets) s.destroy();
      await closed;
    },
  };
}

const userJs = (prefs: Record<string, PrefValue>): string =>
  Object.entries(prefs)
    .map(([k, v]) => `user_pref(${JSON.stringify(k)}, ${JSON.stringify(v)});\n`)
    .join('');

/** The JSON value of a BiDi RemoteValue (what tests need: primitives, arrays, plain objects). */
function fromRemote(v: Record<string, unknown>): unknown {
  switch (v.type) {
    case 'undefined':
      return undefined;
    case 'null':
      return null;
    case 'string':
    case 'boolean':
      return v.value;
    case 'number':
      return typeof v.value === 'number' ? v.value : Number(v.value);
    case 'array':
      return ((v.value as Record<string, unknown>[] | undefined) ?? []).map(fromRemote);
    case 'object':
      return Object.fromEntries(((v.value as [unknown, Record<string, unknown>][] | undefined) ?? []).map(([k, val]) => [typeof k === 'string' ? k : String(fromRemote(k as Record<string, unknown>)), fromRemote(val)]));
    default:
      return { type: v.type };
  }
}

/**
 * Starts headless Firefox ESR on a fresh profile with `prefs` on top of the offline ones, and
 * a BiDi session on it. When the test ends (one hook, whatever order hooks run in), the session
 * closes, Firefox is stopped (SIGTERM, then SIGKILL after 10 s), then the profile and the trap
 * proxy go.
 */
export async function launchFirefox(t: TestContext, prefs: Record<string, PrefValue> = {}): Promise<Firefox> {
  const foreign: string[] = [];
  const trap = await trapProxy(foreign);
  const profile = mkdtempSync(join(tmpdir(), 'notify-firefox-'));
  let child: ChildProcess | undefined;
  let ws: WebSocket | undefined;
  t.after(async () => {
    ws?.terminate();
    if (child && child.exitCode === null && child.signalCode === null) {
      const c = child;
      const exited = new Promise<void>((r) => c.once('exit', () => r()));
      c.kill('SIGTERM');
      const timer = setTimeout(() => c.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(profile, { recursive: true, force: true });
    await trap.close();
  });
  writeFileSync(
    join(profile, 'user.js'),
    userJs({
      ...OFFLINE_PREFS,
      'network.proxy.type': 1,
      'network.proxy.http': '127.0.0.1',
      'network.proxy.http_port': trap.port,
      'network.proxy.ssl': '127.0.0.1',
      'network.proxy.ssl_port': trap.port,
      'network.proxy.share_proxy_settings': true,
      'network.proxy.no_proxies_on': '',
      'network.proxy.allow_hijacking_localhost': false,
      ...prefs,
    }),
  );

  // MOZ_DISABLE_NONLOCAL_CONNECTIONS is what Firefox's own test harness sets: a direct connection
  // to a non-local address (one that bypasses the proxy) is a fatal error in the socket layer,
  // and remote settings honour services.settings.server (a release build ignores the pref
  // otherwise and polls firefox.settings.services.mozilla.com, which the trap caught).
  const ff = spawn(FIREFOX, ['--headless', '--no-remote', '--remote-debugging-port=0', '--profile', profile, 'about:blank'], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, MOZ_CRASHREPORTER_DISABLE: '1', MOZ_DISABLE_AUTO_SAFE_MODE: '1', MOZ_DISABLE_NONLOCAL_CONNECTIONS: '1' },
  });
  child = ff;
  let err = '';
  const bidiUrl = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`firefox-esr printed no "WebDriver BiDi listening on" line within ${SLOW_MS} ms; stderr:\n${err}`)), SLOW_MS);
    ff.stderr?.setEncoding('utf8');
    ff.stderr?.on('data', (chunk: string) => {
      err += chunk;
      const m = /WebDriver BiDi listening on (ws:\/\/\S+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve(m[1] as string);
      }
    });
    ff.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`firefox-esr exited (${code ?? signal}) before BiDi listened; stderr:\n${err}`));
    });
    ff.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });

  const socket = new WebSocket(`${bidiUrl.replace(/\/$/, '')}/session`);
  ws = socket;
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
  });
  let nextId = 1;
  const pending = new Map<number, { resolve(v: Record<string, unknown>): void; reject(e: Error): void; method: string }>();
  socket.on('message', (raw) => {
    const msg = JSON.parse(String(raw)) as { id?: number; type: string; result?: Record<string, unknown>; error?: string; message?: string };
    if (msg.id === undefined) return; // events: none subscribed
    const p = pending.get(msg.id);
    if (!p) return;
    pending.delete(msg.id);
    if (msg.type === 'success') p.resolve(msg.result ?? {});
    else p.reject(new Error(`BiDi ${p.method}: ${msg.error}: ${msg.message}`));
  });
  socket.on('close', () => {
    for (const p of pending.values()) p.reject(new Error(`BiDi ${p.method}: the connection closed; firefox stderr:\n${err}`));
    pending.clear();
  });
  const send: BiDi['send'] = (method, params = {}) =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new Error(`BiDi ${method}: no answer within ${SLOW_MS} ms`));
      }, SLOW_MS);
      pending.set(id, {
        method,
        resolve: (v) => (clearTimeout(timer), resolve(v)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      });
      socket.send(JSON.stringify({ id, method, params }));
    });

  const session = await send('session.new', { capabilities: {} });
  const version = String((session.capabilities as Record<string, unknown>).browserVersion);
  const tree = await send('browsingContext.getTree', { maxDepth: 0 });
  const firstTab = ((tree.contexts as { context: string }[])[0] as { context: string }).context;
  const bidi: BiDi = {
    send,
    async evaluate(context, expression, opts = {}) {
      const r = await send('script.evaluate', { expression, target: { context }, awaitPromise: true, userActivation: opts.userActivation ?? false });
      if (r.type === 'exception') {
        const details = r.exceptionDetails as { text?: string };
        throw new Error(`in the page: ${details.text ?? JSON.stringify(details)}`);
      }
      return fromRemote(r.result as Record<string, unknown>);
    },
    async newTab() {
      return String((await send('browsingContext.create', { type: 'tab' })).context);
    },
    async navigate(context, url) {
      await send('browsingContext.navigate', { context, url, wait: 'complete' });
    },
    async close(context) {
      await send('browsingContext.close', { context });
    },
  };
  return { bidi, firstTab, foreign, stderr: () => err, version };
}

/** Polls `expression` (its value JSON-encoded by the page) in `context` until `done` holds; fails with the last value after SLOW_MS. */
export async function waitFor<T>(bidi: BiDi, context: string, expression: string, done: (v: T) => boolean, what: string): Promise<T> {
  const deadline = Date.now() + SLOW_MS;
  for (;;) {
    const v = JSON.parse(String(await bidi.evaluate(context, `Promise.resolve(${expression}).then((v) => JSON.stringify(v === undefined ? null : v))`))) as T;
    if (done(v)) return v;
    if (Date.now() > deadline) assert.fail(`${what}: still ${JSON.stringify(v)} after ${SLOW_MS} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
