import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SKIP, SLOW_MS, openPage } from '../helpers/browser.js';
import { startDaemon } from '../helpers/daemon.js';
import { textClient, until } from '../helpers/clients.js';
import { shownValues } from '../helpers/demo-page.js';

// The demo page served at GET / on the WebSocket port, in a real browser: it binds the uid from
// its URL, and every push through the Text ingress appears in its list as literal text.
test('browser: the demo page binds its uid and lists Text-ingress pushes as literal text', { skip: SKIP }, async (t) => {
  const d = await startDaemon(t);
  // The browser is closed when the test ends, before the daemon stops.
  const { page, pageErrors, foreign, checkHost } = await openPage(t);
  page.on('websocket', (ws) => checkHost(ws.url()));

  const origin = `http://${d.addresses().ws}`;
  const res = await page.goto(`${origin}/?uid=uid1`, { waitUntil: 'load' });
  assert.equal(res?.status(), 200);
  await page.locator('#state', { hasText: /^connected$/ }).waitFor();
  await until(() => d.registry.index('websocket').has('uid1'), 'the page to bind uid1', SLOW_MS);
  assert.equal(await page.textContent('#uid'), 'uid1');

  const backend = await textClient(t, d.textPort);
  const pushes = page.locator('#pushes li.push');
  const items = (): Promise<unknown[]> => shownValues(page);
  const waitForItems = (n: number): Promise<void> => pushes.nth(n - 1).waitFor();

  const first = JSON.stringify({ uid: 'uid1', percent: '88%' });
  backend.write(`${first}\n`);
  assert.deepEqual(await backend.replies(1), ['ok']);
  await waitForItems(1);
  assert.deepEqual(await items(), [JSON.parse(first)]);

  // Markup characters and non-ASCII: shown as typed, no element is created from them.
  const second = JSON.stringify({ uid: 'uid1', percent: `<b>&"'</b> 进度 88%` });
  backend.write(`${second}\n`);
  assert.deepEqual(await backend.replies(2), ['ok', 'ok']);
  await waitForItems(2);
  assert.deepEqual(await items(), [JSON.parse(first), JSON.parse(second)]);
  assert.equal(await page.locator('#pushes b').count(), 0, 'the push must not be parsed as HTML');
  const html = await pushes.nth(1).innerHTML();
  assert.ok(html.includes('&lt;b&gt;&amp;'), `expected escaped markup in the list item, got ${html}`);

  assert.equal(await page.textContent('#state'), 'connected', 'the page stayed connected');
  assert.deepEqual(pageErrors, [], 'no uncaught errors in the page');
  assert.deepEqual(foreign, [], 'no request to any host but 127.0.0.1');
});
