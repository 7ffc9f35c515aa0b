import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CDPSession, Page } from 'playwright-core';
import type { PublishReport } from '../../src/types.js';
import { SKIP, SLOW_MS, openContext, openPage } from '../helpers/browser.js';
import { until } from '../helpers/clients.js';
import { shownValues } from '../helpers/demo-page.js';
import { webpushWorld } from '../helpers/webpush.js';

// The page side of Web Push in Debian's Chromium. Chromium cannot create a real push
// subscription offline (its push service is Google's), so pushes reach the service worker
// through the DevTools protocol (ServiceWorker.deliverPushMessage), which runs the worker's
// `push` handler with the data given, exactly as a decrypted push would.

/** A CDP session on `page` with the ServiceWorker domain on, and the id of the registration for `origin` once there is one. */
async function serviceWorkers(page: Page): Promise<{ cdp: CDPSession; registrationId(origin: string): Promise<string> }> {
  const cdp = await page.context().newCDPSession(page);
  const regs = new Map<string, { registrationId: string; scopeURL: string; isDeleted: boolean }>();
  cdp.on('ServiceWorker.workerRegistrationUpdated', (e) => {
    for (const r of e.registrations) regs.set(r.registrationId, r);
  });
  await cdp.send('ServiceWorker.enable');
  return {
    cdp,
    async registrationId(origin) {
      const find = () => [...regs.values()].find((r) => !r.isDeleted && r.scopeURL === `${origin}/`);
      await until(() => find() !== undefined, `a service worker registration for ${origin}`, SLOW_MS);
      return (find() as { registrationId: string }).registrationId;
    },
  };
}

/** The notifications the origin's service worker shows now: title, body, tag. (Page code as text: the test build has no DOM types.) */
function notifications(page: Page): Promise<{ title: string; body: string; tag: string }[]> {
  return page.evaluate(`(async () => {
    const reg = await navigator.serviceWorker.getRegistration('/');
    if (!reg) return [];
    return (await reg.getNotifications()).map((n) => ({ title: n.title, body: n.body, tag: n.tag }));
  })()`);
}

async function waitForNotification(page: Page, title: string): Promise<{ title: string; body: string; tag: string }> {
  const deadline = Date.now() + SLOW_MS;
  for (;;) {
    const found = (await notifications(page)).find((n) => n.title === title);
    if (found) return found;
    if (Date.now() > deadline) assert.fail(`no notification titled ${JSON.stringify(title)}; shown: ${JSON.stringify(await notifications(page))}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('browser webpush: /notify-sw.js from the daemon shows a push as a notification (pushed through CDP) and tells the open pages', { skip: SKIP }, async (t) => {
  const w = await webpushWorld(t);
  const d = await w.daemon();
  const { page, pageErrors, foreign } = await openPage(t);
  const origin = `http://${d.addresses().ws}`;
  await page.context().grantPermissions(['notifications'], { origin });
  await page.goto(`${origin}/?uid=uid1`, { waitUntil: 'load' });
  await page.locator('#state', { hasText: /^connected$/ }).waitFor();
  assert.equal(await page.locator('#push').isVisible(), true, 'the enable notifications button is shown when the daemon has a webpush transport');
  assert.equal(await page.textContent('#push'), 'enable notifications');

  const sw = await serviceWorkers(page);
  await page.evaluate(`navigator.serviceWorker.register('/notify-sw.js').then(() => navigator.serviceWorker.ready).then(() => true)`);
  const registrationId = await sw.registrationId(origin);
  const told = page.evaluate(`new Promise((resolve) => navigator.serviceWorker.addEventListener('message', (e) => resolve(e.data), { once: true }))`);

  await sw.cdp.send('ServiceWorker.deliverPushMessage', { origin, registrationId, data: JSON.stringify({ id: 'm1', title: 'Export', body: 'done', data: { file: 'a.csv' } }) });
  assert.deepEqual(await waitForNotification(page, 'Export'), { title: 'Export', body: 'done', tag: 'm1' });
  assert.deepEqual(await told, { type: 'notify-push', id: 'm1', title: 'Export', body: 'done', data: { file: 'a.csv' } });

  // A data-only message shows its data; a push that is not JSON shows its text.
  await sw.cdp.send('ServiceWorker.deliverPushMessage', { origin, registrationId, data: JSON.stringify({ id: 'm2', data: { percent: '88%' } }) });
  assert.deepEqual(await waitForNotification(page, 'notify'), { title: 'notify', body: '{"percent":"88%"}', tag: 'm2' });
  await sw.cdp.send('ServiceWorker.deliverPushMessage', { origin, registrationId, data: 'plain text' });
  const shown = async () => (await notifications(page)).some((n) => n.body === 'plain text');
  const deadline = Date.now() + SLOW_MS;
  while (!(await shown())) {
    if (Date.now() > deadline) assert.fail('the plain-text push was not shown');
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(foreign, []);
});

test('browser webpush, live-first: the demo page enables notifications (subscribePush registers over its session); open, a message arrives on the socket; tab closed, it goes to Web Push, which the service worker shows', { skip: SKIP }, async (t) => {
  const w = await webpushWorld(t, { dispatch: { route: 'live-first' } });
  const d = await w.daemon();
  const sub = w.fake.subscribe();
  const { context, open: { page, pageErrors, foreign } } = await openContext(t);
  const origin = `http://${d.addresses().ws}`;
  await context.grantPermissions(['notifications'], { origin });
  // Chromium cannot subscribe offline (its push service is Google's): the page's PushManager
  // hands out this test subscription instead, and records the key it was asked to subscribe with.
  await page.addInitScript(`(() => {
    const s = ${JSON.stringify(sub.subscription)};
    let current = null;
    PushManager.prototype.getSubscription = function () { return Promise.resolve(current); };
    PushManager.prototype.subscribe = function (opts) {
      const key = opts.applicationServerKey;
      window.__subscribedWith = Array.from(new Uint8Array(key.buffer, key.byteOffset, key.byteLength));
      current = {
        endpoint: s.endpoint,
        options: { applicationServerKey: key.buffer, userVisibleOnly: opts.userVisibleOnly },
        toJSON: () => ({ endpoint: s.endpoint, expirationTime: null, keys: s.keys }),
        unsubscribe: () => Promise.resolve(true),
      };
      return Promise.resolve(current);
    };
  })();`);

  await page.goto(`${origin}/?uid=uid1`, { waitUntil: 'load' });
  await page.locator('#state', { hasText: /^connected$/ }).waitFor();
  await page.click('#push');
  await page.locator('#push-state', { hasText: /^notifications on/ }).waitFor();
  const key = ((await page.evaluate('window.__subscribedWith')) as number[] | undefined) ?? [];
  assert.equal(Buffer.from(key).toString('base64url'), w.vapid.publicKey, 'the page subscribed with the daemon’s VAPID key');
  assert.deepEqual(d.registry.index('webpush').targets('uid1'), [sub.target], 'registered for the uid over the session');

  const send = async (msg: string): Promise<PublishReport> => {
    const res = await fetch(`${d.httpUrl}/v1/send`, { method: 'POST', body: JSON.stringify({ uid: 'uid1', title: 'Hi', msg }) });
    assert.equal(res.status, 200);
    return (await res.json()) as PublishReport;
  };

  // The tab is open: the message arrives on its socket; Web Push is not used.
  const open = await send('tab open');
  assert.deepEqual(open.paths, { uid1: 'live' });
  assert.deepEqual(open.results.map((r) => [r.transport, r.status]), [['websocket', 'sent']]);
  await page.locator('#pushes li.push').first().waitFor();
  assert.deepEqual(await shownValues(page), [{ title: 'Hi', msg: 'tab open' }]);
  assert.equal(w.fake.requests.length, 0);

  // Every tab of the uid closed (another page of the origin, bound to no uid, stays for DevTools).
  const other = await context.newPage();
  await other.goto(`${origin}/notify-sw.js`);
  const sw = await serviceWorkers(other);
  await page.close();
  await until(() => !d.registry.index('websocket').has('uid1'), 'the tab to leave', SLOW_MS);
  const closed = await send('tab closed');
  assert.deepEqual(closed.paths, { uid1: 'fallback' });
  assert.deepEqual(closed.results.map((r) => [r.transport, r.target, r.status]), [['webpush', sub.target, 'sent']]);
  assert.equal(w.fake.requests.length, 1);
  const plaintext = w.fake.requests[0]?.plaintext as string;
  assert.deepEqual(JSON.parse(plaintext), { id: closed.id, title: 'Hi', body: 'tab closed' });

  // What the push service decrypted is what the browser's push event carries: shown by the worker.
  await sw.cdp.send('ServiceWorker.deliverPushMessage', { origin, registrationId: await sw.registrationId(origin), data: plaintext });
  assert.deepEqual(await waitForNotification(other, 'Hi'), { title: 'Hi', body: 'tab closed', tag: closed.id });
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(foreign, []);
});
