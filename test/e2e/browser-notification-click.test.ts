import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { BrowserContext, CDPSession, Page } from 'playwright-core';
import { SKIP as NO_CHROMIUM, SLOW_MS, persistentBrowser } from '../helpers/browser.js';
import { until } from '../helpers/clients.js';
import { SKIP as NO_DBUS, notificationDaemon } from '../helpers/fake-notification-daemon.js';
import { webpushWorld } from '../helpers/webpush.js';

// A click on a notification of /notify-sw.js, in Debian's Chromium. Chromium on Linux shows web
// notifications through the desktop's notification service on D-Bus; the test runs that service
// (test/helpers/fake-notification-daemon.ts) and clicks the way a desktop does, with the
// ActionInvoked signal: Chromium then runs the worker's `notificationclick` as for a user's click,
// allowed to focus and open windows. (A NotificationEvent dispatched by script inside the worker is
// refused: "Not allowed to focus a window." / "Not allowed to open a window.") Pushes reach the
// worker through the DevTools protocol, as in browser-webpush.test.ts.

const SKIP = NO_CHROMIUM || NO_DBUS;

interface World {
  context: BrowserContext;
  origin: string;
  /** A tab on about:blank: not a page of the origin, and the DevTools session for pushes. */
  blank: Page;
  push(payload: unknown): Promise<void>;
  nd: Awaited<ReturnType<typeof notificationDaemon>>;
  pageErrors: string[];
  foreign: string[];
}

/** The daemon, the desktop notification service, Chromium with the origin's page open and the worker registered and active. */
async function world(t: Parameters<typeof notificationDaemon>[0]): Promise<World & { page: Page }> {
  const browser = persistentBrowser(t); // closed first when the test ends, before its D-Bus
  const nd = await notificationDaemon(t);
  const w = await webpushWorld(t);
  const d = await w.daemon();
  const origin = `http://${d.addresses().ws}`;
  const { context, page, pageErrors, foreign } = await browser.launch({ DBUS_SESSION_BUS_ADDRESS: nd.address });
  await context.grantPermissions(['notifications'], { origin });
  await page.goto(`${origin}/?uid=uid1`, { waitUntil: 'load' });
  await page.evaluate(`navigator.serviceWorker.register('/notify-sw.js').then(() => navigator.serviceWorker.ready).then(() => true)`);

  const blank = await context.newPage();
  await blank.goto('about:blank');
  const cdp: CDPSession = await context.newCDPSession(blank);
  const regs = new Map<string, { registrationId: string; scopeURL: string; isDeleted: boolean }>();
  cdp.on('ServiceWorker.workerRegistrationUpdated', (e) => {
    for (const r of e.registrations) regs.set(r.registrationId, r);
  });
  await cdp.send('ServiceWorker.enable');
  const find = () => [...regs.values()].find((r) => !r.isDeleted && r.scopeURL === `${origin}/`);
  await until(() => find() !== undefined, `a service worker registration for ${origin}`, SLOW_MS);
  const registrationId = (find() as { registrationId: string }).registrationId;
  return {
    context,
    origin,
    page,
    blank,
    nd,
    pageErrors,
    foreign,
    async push(payload) {
      await cdp.send('ServiceWorker.deliverPushMessage', { origin, registrationId, data: JSON.stringify(payload) });
    },
  };
}

/** Turns off Playwright's focus emulation (every page thinks it has focus) so that `document.hasFocus()` tells the truth. */
async function realFocus(context: BrowserContext, page: Page): Promise<void> {
  await (await context.newCDPSession(page)).send('Emulation.setFocusEmulationEnabled', { enabled: false });
}

test('notification click, a page of the origin open in another tab: the click closes the notification and focuses that page (opens nothing)', { skip: SKIP }, async (t) => {
  const { context, origin, page, blank, nd, push, pageErrors, foreign } = await world(t);
  await realFocus(context, page);
  await realFocus(context, blank);
  // The blank tab, opened last, has the focus; the origin's page has not.
  await blank.bringToFront();
  assert.equal(await blank.evaluate('document.hasFocus()'), true, 'the other tab has the focus before the click');
  assert.equal(await page.evaluate('document.hasFocus()'), false, 'the origin’s page has no focus before the click');
  const blurred = blank.evaluate(`new Promise((resolve) => window.addEventListener('blur', () => resolve(true), { once: true }))`);

  await push({ id: 'm1', title: 'Build', body: 'passed' });
  const n = await nd.waitFor('Build');
  assert.match(n.body, /passed$/);
  assert.ok(n.actions.includes('default'), `Chromium offers the click ("default" action): ${JSON.stringify(n.actions)}`);
  const pagesBefore = context.pages().map((p) => p.url());

  nd.click(n.id);
  await nd.waitClosed(n.id); // the worker's notification.close(): Chromium asks the desktop to close it
  assert.equal(await blurred, true, 'focusing the origin’s page takes the focus from the other tab');
  assert.equal(await blank.evaluate('document.hasFocus()'), false);
  assert.deepEqual(await page.evaluate(`navigator.serviceWorker.ready.then((r) => r.getNotifications()).then((ns) => ns.map((x) => x.title))`), []);
  assert.deepEqual(
    context.pages().map((p) => p.url()),
    pagesBefore,
    'no window opened',
  );
  assert.deepEqual(pagesBefore, [`${origin}/?uid=uid1`, 'about:blank']);
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(foreign, []);
});

test('notification click, no page of the origin open: the click opens the scope, or data.url when the message carries an http(s) url', { skip: SKIP }, async (t) => {
  const { context, origin, page, nd, push, pageErrors, foreign } = await world(t);
  await page.close();

  const clickOpens = async (payload: { id: string; title: string; data?: unknown }, expected: string): Promise<void> => {
    await push(payload);
    const n = await nd.waitFor(payload.title);
    const opened = context.waitForEvent('page', { timeout: SLOW_MS });
    nd.click(n.id);
    const p = await opened;
    await p.waitForURL(expected, { waitUntil: 'load' });
    assert.equal(p.url(), expected, `the click on ${payload.title} opened ${expected}`);
    await nd.waitClosed(n.id);
    // Leave no page of the origin for the next click.
    await p.close();
  };

  await clickOpens({ id: 'm1', title: 'Scope' }, `${origin}/`);
  await clickOpens({ id: 'm2', title: 'Deep link', data: { url: `${origin}/?uid=uid7` } }, `${origin}/?uid=uid7`);
  await clickOpens({ id: 'm3', title: 'Not a web link', data: { url: 'javascript:alert(1)' } }, `${origin}/`);
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(foreign, []);
});
