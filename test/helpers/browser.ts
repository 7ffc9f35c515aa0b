import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { type BrowserContext, type Page, chromium } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
// CI installs Chromium, so there a missing binary is a failure, not a skip.
export const SKIP = existsSync(CHROMIUM) || process.env.CI ? false : `${CHROMIUM} not installed (.ci/run installs it)`;
// A noisy 2-core machine: generous bounds for launch, load and connect; normally it takes a few seconds.
export const SLOW_MS = 20_000;

export interface BrowserPage {
  page: Page;
  /** Uncaught errors in the page. */
  pageErrors: string[];
  /** Every URL the page requested (or opened a WebSocket to, via checkHost) on a host but 127.0.0.1. */
  foreign: string[];
  /** Records `url` in `foreign` unless its host is 127.0.0.1. */
  checkHost(url: string): void;
}

/**
 * A page in headless Chromium, with SLOW_MS as its default timeout, recording uncaught errors and
 * requests to any host but 127.0.0.1 (a test that wants WebSocket URLs checked too passes them to
 * checkHost). The browser is closed when the test ends. t.after hooks run in the order they were
 * added (Node 20), so what the test started before opening the page (a daemon) stops first.
 */
export async function openPage(t: TestContext, opts: LaunchOptions = {}): Promise<BrowserPage> {
  return (await openContext(t, opts)).open;
}

export interface LaunchOptions {
  /** Command-line switches added to the usual ones (e.g. --ignore-certificate-errors-spki-list=…). */
  args?: string[];
}

/**
 * Like openPage, in a browser context of its own (`context.newPage()` opens more pages in it;
 * a page of `browser.newPage()` cannot). Its pages share service workers and permissions.
 */
export async function openContext(t: TestContext, opts: LaunchOptions = {}): Promise<{ context: BrowserContext; open: BrowserPage }> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', ...(opts.args ?? [])],
    timeout: SLOW_MS,
  });
  t.after(() => browser.close());
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(SLOW_MS);

  const pageErrors: string[] = [];
  const foreign: string[] = [];
  page.on('pageerror', (err) => pageErrors.push(String(err)));
  const checkHost = (url: string): void => {
    if (new URL(url).hostname !== '127.0.0.1') foreign.push(url);
  };
  page.on('request', (req) => checkHost(req.url()));
  return { context, open: { page, pageErrors, foreign, checkHost } };
}

export interface PersistentBrowser {
  context: BrowserContext;
  page: Page;
  /** Uncaught errors in any page of the context. */
  pageErrors: string[];
  /** Every URL a page of the context requested on a host but 127.0.0.1. */
  foreign: string[];
}

/**
 * Chromium on its default profile (a fresh user-data dir), for what needs the browser's own
 * profile: a click on a desktop notification (test/helpers/fake-notification-daemon.ts) is routed
 * to the profile that showed it, and a `browser.newContext()` context is an off-the-record profile
 * of DevTools' that the click does not find (the service worker's `notificationclick` never runs).
 *
 * In two steps, because node:test runs `t.after` hooks in the order they were registered: this
 * registers the hook that closes the browser and removes the profile, so call it before starting
 * what the browser needs to outlive (such as its D-Bus); `launch(env)` then starts Chromium with
 * `env` added to its environment. Its first page is `page`.
 */
export function persistentBrowser(t: TestContext): { launch(env: Record<string, string>): Promise<PersistentBrowser> } {
  const dir = mkdtempSync(join(tmpdir(), 'notify-chromium-'));
  let context: BrowserContext | undefined;
  t.after(async () => {
    await context?.close();
    rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
  });
  return {
    async launch(env) {
      const c = await chromium.launchPersistentContext(dir, {
        executablePath: CHROMIUM,
        args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
        env: { ...process.env, ...env } as Record<string, string>,
        timeout: SLOW_MS,
      });
      context = c;
      c.setDefaultTimeout(SLOW_MS);
      const pageErrors: string[] = [];
      const foreign: string[] = [];
      c.on('weberror', (e) => pageErrors.push(String(e.error())));
      c.on('request', (req) => {
        if (!/^(about|data|blob):/.test(req.url()) && new URL(req.url()).hostname !== '127.0.0.1') foreign.push(req.url());
      });
      const page = c.pages()[0] ?? (await c.newPage());
      return { context: c, page, pageErrors, foreign };
    },
  };
}
