import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createDaemon, type Daemon } from '../../src/node/daemon.js';
import { SKIP, SLOW_MS, openPage } from '../helpers/browser.js';
import { textClient, until } from '../helpers/clients.js';
import { tempDir, testConfig } from '../helpers/daemon.js';
import { deadPort } from '../helpers/net.js';
import { shownValues } from '../helpers/demo-page.js';

// The demo page (GET / on the WebSocket port) uses /notify-client.js: when its socket drops, it
// reconnects with backoff and binds with the last id it saw, so pushes sent while it was away
// appear too, each once, in order. Here the daemon restarts (same state dir) and two pushes are
// published to the new daemon before the page has reconnected.
test('browser: the demo page resumes after a daemon restart: pushes sent while it was away appear, each once, in order', { skip: SKIP }, async (t) => {
  // The one fixed port in the tests: the page was loaded from the WebSocket port and reconnects
  // to that same host:port (as a real page does when its daemon restarts), so the new daemon
  // must listen there. A port bound to 0 and released a moment ago is free in practice; the
  // other listeners stay on port 0.
  const port = await deadPort();
  const stateDir = tempDir(t, 'notify-browser-resume-');
  const config = testConfig({ ws: { listen: `127.0.0.1:${port}` }, state: { dir: stateDir } }, t);

  const daemons: Daemon[] = [];
  const startDaemon = async (): Promise<Daemon> => {
    const d = await createDaemon(config);
    daemons.push(d);
    await d.start();
    return d;
  };
  t.after(() => Promise.all(daemons.map((d) => d.stop())));
  const d1 = await startDaemon();
  assert.equal(d1.addresses().ws, `127.0.0.1:${port}`);

  const { page, pageErrors, foreign, checkHost } = await openPage(t);
  // Every WebSocket the page opens: whether it failed to connect, and the frames both ways.
  interface Socket {
    failed: boolean;
    closed: boolean;
    sent: string[];
    received: string[];
  }
  const sockets: Socket[] = [];
  page.on('websocket', (ws) => {
    checkHost(ws.url());
    const s: Socket = { failed: false, closed: false, sent: [], received: [] };
    sockets.push(s);
    ws.on('socketerror', () => (s.failed = true));
    ws.on('close', () => (s.closed = true));
    ws.on('framesent', (f) => s.sent.push(String(f.payload)));
    ws.on('framereceived', (f) => s.received.push(String(f.payload)));
  });

  const res = await page.goto(`http://127.0.0.1:${port}/?uid=uid1`, { waitUntil: 'load' });
  assert.equal(res?.status(), 200);
  await page.locator('#state', { hasText: /^connected$/ }).waitFor();
  await until(() => d1.registry.index('websocket').has('uid1'), 'the page to bind uid1', SLOW_MS);

  const pushes = page.locator('#pushes li.push');
  const items = (): Promise<unknown[]> => shownValues(page);
  const line = (n: number): string => JSON.stringify({ uid: 'uid1', n, text: `push ${n}` });
  const shown = (...ns: number[]): unknown[] => ns.map((n) => JSON.parse(line(n)));

  // Two pushes while the page is connected.
  const before = await textClient(t, Number(d1.addresses().text.split(':').pop()));
  before.write(`${line(1)}\n${line(2)}\n`);
  assert.deepEqual(await before.replies(2, SLOW_MS), ['ok', 'ok']);
  await pushes.nth(1).waitFor();
  assert.deepEqual(await items(), shown(1, 2));

  // The daemon goes away: the page's socket closes and its reconnects fail. Wait for the second
  // failed attempt: the backoff then waits 0.5-1 s before the next one, a window in which the
  // new daemon starts and takes the next two pushes before the page is back.
  await d1.stop();
  await page.locator('#state', { hasText: /^disconnected/ }).waitFor();
  await until(() => sockets.filter((s) => s.failed || (s.closed && s !== sockets[0])).length >= 2, 'two failed reconnect attempts', SLOW_MS);
  const attemptsBefore = sockets.length;

  const d2 = await startDaemon();
  assert.equal(d2.addresses().ws, `127.0.0.1:${port}`, 'the new daemon listens where the page reconnects');
  const after = await textClient(t, Number(d2.addresses().text.split(':').pop()));
  after.write(`${line(3)}\n${line(4)}\n`);
  assert.deepEqual(
    await after.replies(2, SLOW_MS),
    ['fail', 'fail'],
    'published while the page was not connected (only stored); if this is ok, the page reconnected first and the test proved nothing',
  );
  assert.equal(sockets.length, attemptsBefore, 'the page had not started a new connection when the pushes were published');

  // The page reconnects on its own, resumes from the last id it saw, and lists the two it missed.
  await pushes.nth(3).waitFor();
  await page.locator('#state', { hasText: /^connected$/ }).waitFor();
  await until(() => d2.registry.index('websocket').has('uid1'), 'the page to bind uid1 again', SLOW_MS);

  // One more live push, then the list must be every push exactly once, in order.
  after.write(`${line(5)}\n`);
  assert.deepEqual((await after.replies(3, SLOW_MS))[2], 'ok');
  await pushes.nth(4).waitFor();
  assert.deepEqual(await items(), shown(1, 2, 3, 4, 5));
  assert.equal(await page.locator('#pushes li.gap').count(), 0, 'no gap: the last id seen was still stored');
  // Each item's title is its message id: five different ids, increasing.
  const titles = await pushes.evaluateAll((els) => els.map((e) => e.getAttribute('title') ?? ''));
  assert.equal(new Set(titles).size, 5);
  assert.deepEqual(titles, [...titles].sort());

  // On the wire: the page bound with the last id it had seen (resume protocol revision 2), and
  // the new daemon accepted the bind, then sent only what came after it (not pushes 1 and 2
  // again: 3 and 4 replayed from the store, 5 live), each acked.
  const resumed = sockets.filter((s) => !s.failed && s.received.length > 0);
  assert.equal(resumed.length, 2, 'one socket to each daemon');
  const [first, second] = resumed as [Socket, Socket];
  assert.deepEqual(JSON.parse(first.sent[0] ?? 'null'), { type: 'bind', uid: 'uid1', since: null, v: 2 });
  assert.deepEqual(JSON.parse(second.sent[0] ?? 'null'), { type: 'bind', uid: 'uid1', since: titles[1], v: 2 });
  assert.equal(second.received[0], '{"type":"bound"}');
  assert.deepEqual(
    second.received.slice(1).map((f) => {
      const e = JSON.parse(f) as { data: { n: number }; replay?: boolean };
      return [e.data.n, e.replay === true];
    }),
    [[3, true], [4, true], [5, false]],
  );
  assert.deepEqual(await pushes.evaluateAll((els) => els.map((e) => e.className)), ['push live', 'push live', 'push replay', 'push replay', 'push live']);
  await until(() => second.sent.length === 4, 'the page to ack 3, 4 and 5', SLOW_MS);
  assert.deepEqual(
    second.sent.slice(1).map((f) => JSON.parse(f) as unknown),
    titles.slice(2).map((id) => ({ type: 'ack', id })),
  );

  assert.deepEqual(pageErrors, [], 'no uncaught errors in the page');
  assert.deepEqual(foreign, [], 'no request to any host but 127.0.0.1');
});
