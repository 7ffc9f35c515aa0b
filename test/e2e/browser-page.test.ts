import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import type { Page } from 'playwright-core';
import { makeJwt, makeToken } from '../../src/auth.js';
import { SKIP, SLOW_MS, openContext, openPage } from '../helpers/browser.js';
import { textClient, until, wsClient } from '../helpers/clients.js';
import { type TestDaemon, startDaemon } from '../helpers/daemon.js';
import { shownPushes, shownValues } from '../helpers/demo-page.js';
import { refusals } from '../helpers/metrics.js';

// The demo page (GET / on the WebSocket port) and /notify-client.js in Chromium: how pushes are
// shown (time, title and body, raw JSON, live or replayed, escaped), ws.auth: token from the
// page URL, permanent refusals that stop the retries, and "connected" only once the daemon
// accepted the bind.

const SECRET = 's'.repeat(32);
const OTHER_SECRET = 'o'.repeat(32);
const TOKEN_WS = { ws: { auth: 'token', secret: SECRET } } as const;
const nowS = () => Math.floor(Date.now() / 1000);
/** How long a refused client is watched for a retry it must not make (its first would come within 250 ms). */
const WATCH_MS = 3000;
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

async function publish(d: TestDaemon, body: Record<string, unknown>): Promise<{ id: string; delivered: boolean }> {
  const res = await fetch(`${d.httpUrl}/v1/send`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  assert.equal(res.status, 200);
  return (await res.json()) as { id: string; delivered: boolean };
}

async function openDemo(page: Page, d: TestDaemon, query: string): Promise<void> {
  const res = await page.goto(`http://${d.addresses().ws}/${query}`, { waitUntil: 'load' });
  assert.equal(res?.status(), 200);
}

const connected = (page: Page) => page.locator('#state', { hasText: /^connected$/ }).waitFor();

/** HH:MM:SS of an ISO time in this machine's time zone (the browser's too). */
function clock(iso: string): string {
  const at = new Date(iso);
  return [at.getHours(), at.getMinutes(), at.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}

test('browser: the demo page shows each push with its time, a structured push as title and body with the raw JSON one click away, a text push as text', { skip: SKIP }, async (t) => {
  const d = await startDaemon(t);
  const { page, pageErrors, foreign, checkHost } = await openPage(t);
  page.on('websocket', (ws) => checkHost(ws.url()));
  await openDemo(page, d, '?uid=uid1');
  await connected(page);

  const before = Date.now();
  const backend = await textClient(t, d.textPort);
  const lines = [
    { uid: 'uid1', title: 'Build', msg: 'done', percent: '88%' },
    { uid: 'uid1', percent: '88%', stage: { n: 2, of: 3 } },
    { uid: 'uid1', title: 'Deploy', body: 'green\nall 3 hosts' },
  ];
  backend.write(lines.map((l) => `${JSON.stringify(l)}\n`).join(''));
  assert.deepEqual(await backend.replies(3), ['ok', 'ok', 'ok']);
  assert.equal((await publish(d, { uid: 'uid1', msg: 'plain text push' })).delivered, true);
  await page.locator('#pushes li.push').nth(3).waitFor();
  const after = Date.now();

  const shown = await shownPushes(page);
  assert.deepEqual(
    shown.map(({ title, body, text }) => ({ title, body, text })),
    [
      { title: 'Build', body: 'done', text: null },
      { title: null, body: 'percent: 88%\nstage: {"n":2,"of":3}', text: null },
      { title: 'Deploy', body: 'green\nall 3 hosts', text: null },
      { title: null, body: null, text: 'plain text push' },
    ],
  );
  assert.deepEqual(await shownValues(page), [...lines, 'plain text push']);
  for (const p of shown) {
    // The time is the publish time, read from the message id (a ULID).
    const at = Date.parse(p.datetime);
    assert.ok(at >= before - 1000 && at <= after + 1000, `time ${p.datetime} between publish and display`);
    // HH:MM:SS (after the date when it is not today: a run across midnight).
    assert.match(p.time, /^(\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d$/);
    assert.ok(p.time.endsWith(clock(p.datetime)), `${p.time} shows ${p.datetime}`);
    assert.equal(p.kind, 'live');
    assert.equal(p.mark, 'live');
  }

  // The raw JSON is in a closed <details>: hidden until its summary is clicked.
  const first = page.locator('#pushes li.push').first();
  assert.equal(await first.locator('.raw').isVisible(), false);
  await first.locator('summary', { hasText: 'raw JSON' }).click();
  assert.equal(await first.locator('.raw').isVisible(), true);
  assert.deepEqual(JSON.parse((await first.locator('.raw').textContent()) ?? ''), lines[0]);
  assert.equal(await page.locator('#pushes li.push').nth(3).locator('details').count(), 0, 'a text push has no raw JSON');

  assert.deepEqual(pageErrors, []);
  assert.deepEqual(foreign, []);
});

test('browser: markup in a push is shown as text, never run: title, body, a field name, a text push', { skip: SKIP }, async (t) => {
  const d = await startDaemon(t);
  const { page, pageErrors } = await openPage(t);
  await openDemo(page, d, '?uid=uid1');
  await connected(page);
  const evil = '<img src=x onerror="window.__pwned=1">';
  const backend = await textClient(t, d.textPort);
  backend.write(`${JSON.stringify({ uid: 'uid1', title: evil, msg: evil })}\n${JSON.stringify({ uid: 'uid1', [evil]: `${evil}</pre><script>window.__pwned=2</script>` })}\n`);
  assert.deepEqual(await backend.replies(2), ['ok', 'ok']);
  await publish(d, { uid: 'uid1', msg: evil });
  await page.locator('#pushes li.push').nth(2).waitFor();
  for (const summary of await page.locator('#pushes summary').all()) await summary.click();

  const shown = await shownPushes(page);
  assert.equal(shown[0]?.title, evil);
  assert.equal(shown[0]?.body, evil);
  assert.equal(shown[1]?.body, `${evil}: ${evil}</pre><script>window.__pwned=2</script>`);
  assert.equal(shown[2]?.text, evil);
  assert.deepEqual(await shownValues(page), [{ uid: 'uid1', title: evil, msg: evil }, { uid: 'uid1', [evil]: `${evil}</pre><script>window.__pwned=2</script>` }, evil]);
  assert.equal(await page.locator('#pushes img').count(), 0, 'no element made from a push');
  assert.equal(await page.locator('#pushes script').count(), 0);
  assert.equal(await page.evaluate(() => (globalThis as unknown as { __pwned?: number }).__pwned), undefined, 'no script of a push ran');
  assert.deepEqual(pageErrors, []);
});

test('browser: a push with a 100 KB title of one word stays inside the page (no horizontal scrolling)', { skip: SKIP }, async (t) => {
  const d = await startDaemon(t);
  const { page, pageErrors } = await openPage(t);
  await page.setViewportSize({ width: 390, height: 800 });
  await openDemo(page, d, '?uid=uid1');
  await connected(page);
  const long = 'W'.repeat(100_000);
  await publish(d, { uid: 'uid1', title: long, msg: long });
  await page.locator('#pushes li.push').first().waitFor();
  const shown = await shownPushes(page);
  assert.equal(shown[0]?.title, long);
  const widths = (await page.evaluate('({ scroll: document.documentElement.scrollWidth, view: document.documentElement.clientWidth })')) as { scroll: number; view: number };
  assert.ok(widths.scroll <= widths.view, `the page is ${widths.scroll} px wide in a ${widths.view} px window`);
  assert.deepEqual(pageErrors, []);
});

test('browser: pushes replayed from the store when the page opens are marked "replayed", later ones "live"', { skip: SKIP }, async (t) => {
  const d = await startDaemon(t);
  // Published while no page is open: stored only.
  const stored = [await publish(d, { uid: 'uid1', msg: 'while away 1' }), await publish(d, { uid: 'uid1', title: 'While away', msg: '2' })];
  assert.deepEqual(stored.map((r) => r.delivered), [false, false]);
  const { page } = await openPage(t);
  await openDemo(page, d, '?uid=uid1');
  await connected(page);
  await page.locator('#pushes li.push').nth(1).waitFor();
  const live = await publish(d, { uid: 'uid1', msg: 'live one' });
  assert.equal(live.delivered, true);
  await page.locator('#pushes li.push').nth(2).waitFor();

  const shown = await shownPushes(page);
  assert.deepEqual(
    shown.map((p) => [p.id, p.kind, p.mark]),
    [
      [stored[0]?.id, 'replay', 'replayed'],
      [stored[1]?.id, 'replay', 'replayed'],
      [live.id, 'live', 'live'],
    ],
  );
  // A replayed push shows when it was published, not when it was replayed.
  assert.ok(Date.parse(shown[0]?.datetime ?? '') <= Date.parse(shown[2]?.datetime ?? ''));
});

test('browser: with ws.auth: token the demo page binds with ?token= from its URL (a JWT from notify token --jwt, an nt1. token)', { skip: SKIP }, async (t) => {
  const d = await startDaemon(t, TOKEN_WS);
  const { context, open } = await openContext(t);
  const jwt = await makeJwt(SECRET, 'alice', nowS() + 600);
  const nt1 = makeToken(SECRET, 'bob', nowS() + 600);
  const sent: string[] = [];
  open.page.on('websocket', (ws) => ws.on('framesent', (f) => sent.push(String(f.payload))));
  await openDemo(open.page, d, `?uid=alice&token=${encodeURIComponent(jwt)}`);
  const bobPage = await context.newPage();
  await openDemo(bobPage, d, `?uid=bob&token=${encodeURIComponent(nt1)}`);
  await connected(open.page);
  await connected(bobPage);
  assert.deepEqual(JSON.parse(sent[0] ?? 'null'), { type: 'bind', uid: 'alice', since: null, v: 2, token: jwt });

  assert.equal((await publish(d, { uid: 'alice', msg: 'for alice' })).delivered, true);
  assert.equal((await publish(d, { uid: 'bob', msg: 'for bob' })).delivered, true);
  await open.page.locator('#pushes li.push').first().waitFor();
  await bobPage.locator('#pushes li.push').first().waitFor();
  assert.deepEqual(await shownValues(open.page), ['for alice']);
  assert.deepEqual(await shownValues(bobPage), ['for bob']);
  assert.equal(await refusals(d, 'auth'), 0);
  assert.deepEqual(open.pageErrors, []);
});

test('browser: the demo page stops on each permanent refusal (4400, 4401, 4403, 4406, 4410, 1008) and says why; the daemon sees one attempt each', { skip: SKIP }, async (t) => {
  const d = await startDaemon(t, TOKEN_WS);
  const { context, open } = await openContext(t);
  const cases: { query: string; state: string }[] = [
    { query: '?uid=victim&token=garbage', state: 'refused: malformed token (4400)' },
    { query: '?uid=victim', state: 'refused: a token is required (ws.auth: token) (4401)' },
    { query: `?uid=victim&token=${await makeJwt(OTHER_SECRET, 'victim', nowS() + 600)}`, state: 'refused: token signature does not match (4403)' },
    { query: `?uid=victim&token=${await makeJwt(SECRET, 'someone-else', nowS() + 600)}`, state: 'refused: token is for another uid (4406)' },
    { query: `?uid=victim&token=${makeToken(SECRET, 'victim', nowS() - 60)}`, state: 'refused: token expired (4410)' },
    // Not an auth refusal: a bind the daemon cannot take (1008) would be refused again too.
    { query: `?uid=${'v'.repeat(257)}&token=${makeToken(SECRET, 'v'.repeat(257), nowS() + 600)}`, state: 'refused: uid longer than 256 bytes (1008)' },
  ];
  const pages: { page: Page; sockets: number }[] = [];
  for (const [i, c] of cases.entries()) {
    const page = i === 0 ? open.page : await context.newPage();
    const entry = { page, sockets: 0 };
    page.on('websocket', () => entry.sockets++);
    pages.push(entry);
    await openDemo(page, d, c.query);
  }
  for (const [i, c] of cases.entries()) {
    await (pages[i] as { page: Page }).page.locator('#state.refused').waitFor();
    assert.equal(await (pages[i] as { page: Page }).page.textContent('#state'), c.state);
  }
  // Watched for a few seconds: a client that retried would have come back several times.
  await sleep(WATCH_MS);
  assert.equal(await refusals(d, 'auth'), cases.length - 1, 'one connection attempt per page reached the daemon (the 1008 one is no auth refusal)');
  for (const [i, c] of cases.entries()) {
    const { page, sockets } = pages[i] as { page: Page; sockets: number };
    assert.equal(sockets, 1, `${c.state}: one WebSocket, no retry`);
    assert.equal(await page.textContent('#state'), c.state, 'the reason stays shown');
  }
  assert.equal(d.registry.index('websocket').has('victim'), false);
  assert.deepEqual(open.pageErrors, []);
});

/**
 * A backend's web server (real, on 127.0.0.1 port 0), serving `html` at every path; its origin.
 * (A page that playwright fulfils itself has no address, and Chromium's local network access
 * checks then block its WebSocket to 127.0.0.1.)
 */
async function backendServer(t: TestContext, html: string): Promise<string> {
  const server = createServer((_req, res) => res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' }).end(html));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  server.on('connection', (socket) => t.after(() => socket.destroy()));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

// A backend's own page, on its own origin, with the daemon's /notify-client.js (the client
// connects to the host it was loaded from). It logs, in order, every state the client reports
// and every frame and close its WebSocket sees.
const backendHtml = (d: TestDaemon): string => `<!doctype html><meta charset="utf-8"><title>backend</title>
<script src="http://${d.addresses().ws}/notify-client.js"></script>
<script>
  window.log = [];
  var Native = WebSocket;
  window.WebSocket = function (url) {
    var ws = new Native(url);
    ws.addEventListener('message', function (e) { log.push('frame ' + e.data); });
    ws.addEventListener('close', function (e) { log.push('close ' + e.code); });
    return ws;
  };
  window.start = function (uid, tokens) {
    var n = 0;
    window.client = NotifyClient({
      uid: uid,
      storage: null,
      token: Array.isArray(tokens) ? function () { return tokens[Math.min(n++, tokens.length - 1)]; } : tokens,
      onState: function (s, d) { log.push(s + (d && d.code ? ' ' + d.code : '')); }
    });
  };
</script>`;

async function backendPage(t: TestContext, page: Page, d: TestDaemon, uid: string, tokens: string | string[] | undefined): Promise<{ log: () => Promise<string[]>; sockets: () => number }> {
  let sockets = 0;
  page.on('websocket', () => sockets++);
  await page.goto(`${await backendServer(t, backendHtml(d))}/backend.html`, { waitUntil: 'load' });
  await page.evaluate(([u, tk]) => (globalThis as unknown as { start: (u: string, t: unknown) => void }).start(u as string, tk), [uid, tokens] as const);
  return { log: () => page.evaluate(() => (globalThis as unknown as { log: string[] }).log), sockets: () => sockets };
}

test('browser: notify-client.js reports "connected" only after the daemon accepted the bind; a refusal is never "connected", stops retries and exposes its reason', { skip: SKIP }, async (t) => {
  const d = await startDaemon(t, { ...TOKEN_WS, limits: { sessionsPerUid: 1 } });
  const { context, open } = await openContext(t);

  // Accepted: open (bind sent), then the daemon's answer, then connected.
  const good = await backendPage(t, open.page, d, 'alice', await makeJwt(SECRET, 'alice', nowS() + 600));
  await open.page.waitForFunction(() => (globalThis as unknown as { log: string[] }).log.includes('connected'));
  assert.deepEqual(await good.log(), ['connecting', 'open', 'frame {"type":"bound"}', 'connected']);
  assert.equal(await open.page.evaluate(() => (globalThis as unknown as { client: { state(): string } }).client.state()), 'connected');

  // Refused for good (a token for another uid): open, the close, refused; never connected, no retry.
  const refusedPage = await context.newPage();
  const refused = await backendPage(t, refusedPage, d, 'alice', await makeJwt(SECRET, 'mallory', nowS() + 600));
  await refusedPage.waitForFunction(() => (globalThis as unknown as { log: string[] }).log.includes('refused 4406'));
  await sleep(WATCH_MS);
  assert.deepEqual(await refused.log(), ['connecting', 'open', 'close 4406', 'refused 4406']);
  assert.equal(refused.sockets(), 1);
  assert.deepEqual(await refusedPage.evaluate(() => (globalThis as unknown as { client: { refusal(): unknown } }).client.refusal()), {
    code: 4406,
    reason: 'token is for another uid',
    message: 'refused: token is for another uid (4406)',
  });

  // Refused for now (limits.sessionsPerUid: 1, and alice is bound): closed 4429, retried, not
  // connected; once alice's first page closes, the retry is accepted and only then "connected".
  const busyPage = await context.newPage();
  const busy = await backendPage(t, busyPage, d, 'alice', await makeJwt(SECRET, 'alice', nowS() + 600));
  await until(() => busy.sockets() >= 3, 'two retries after 4429', 30_000);
  const whileBusy = await busy.log();
  assert.ok(!whileBusy.includes('connected'), `not connected while refused: ${JSON.stringify(whileBusy)}`);
  assert.ok(whileBusy.filter((l) => l === 'closed 4429').length >= 2, JSON.stringify(whileBusy));
  assert.equal(d.registry.index('websocket').targets('alice').length, 1);
  await open.page.close();
  await busyPage.waitForFunction(() => (globalThis as unknown as { log: string[] }).log.includes('connected'), undefined, { timeout: SLOW_MS });
  const finalLog = await busy.log();
  assert.deepEqual(finalLog.slice(-4), ['connecting', 'open', 'frame {"type":"bound"}', 'connected']);
  assert.equal((await publish(d, { uid: 'alice', msg: 'hi' })).delivered, true);
});

test('browser: notify-client.js with a token function retries an expired token (4410) with a fresh one, and stops when it gets the same one again', { skip: SKIP }, async (t) => {
  const d = await startDaemon(t, TOKEN_WS);
  const { context, open } = await openContext(t);
  const expired = await makeJwt(SECRET, 'carol', nowS() - 60);
  const renewed = await backendPage(t, open.page, d, 'carol', [expired, await makeJwt(SECRET, 'carol', nowS() + 600)]);
  await open.page.waitForFunction(() => (globalThis as unknown as { log: string[] }).log.includes('connected'));
  const log = await renewed.log();
  assert.deepEqual(log.filter((l) => !l.startsWith('frame')), ['connecting', 'open', 'close 4410', 'closed 4410', 'connecting', 'open', 'connected']);

  const stuckPage = await context.newPage();
  const stuck = await backendPage(t, stuckPage, d, 'carol', [expired]);
  await stuckPage.waitForFunction(() => (globalThis as unknown as { log: string[] }).log.includes('refused 4410'));
  await sleep(WATCH_MS);
  assert.deepEqual(await stuck.log(), ['connecting', 'open', 'close 4410', 'closed 4410', 'connecting', 'refused 4410']);
  assert.equal(stuck.sockets(), 1, 'the same expired token is not sent again');
});

test('browser: a page written for the original protocol still works unchanged: nothing is sent to it on bind', { skip: SKIP }, async (t) => {
  const d = await startDaemon(t);
  const { page } = await openPage(t);
  const received: string[] = [];
  page.on('websocket', (ws) => ws.on('framereceived', (f) => received.push(String(f.payload))));
  // The Workerman example's page script, as it is, on a backend's own origin.
  const origin = await backendServer(
    t,
    `<!doctype html><script>
      var ws = new WebSocket('ws://${d.addresses().ws}');
      ws.onopen = function () { ws.send('uid1'); };
      window.got = [];
      ws.onmessage = function (e) { window.got.push(e.data); };
    </script>`,
  );
  await page.goto(`${origin}/web.html`);
  await until(() => d.registry.index('websocket').has('uid1'), 'the page to bind', SLOW_MS);
  const probe = await wsClient(t, d.wsUrl, { bind: 'probe' });
  await until(() => d.registry.index('websocket').has('probe'), 'probe', SLOW_MS);
  assert.deepEqual(probe.frames, []);
  assert.deepEqual(received, [], 'no bind answer to the original protocol');
  const backend = await textClient(t, d.textPort);
  backend.write('{"uid":"uid1","percent":"88%"}\n');
  assert.deepEqual(await backend.replies(1), ['ok']);
  await page.waitForFunction(() => (globalThis as unknown as { got: string[] }).got.length === 1);
  assert.deepEqual(received, ['{"uid":"uid1","percent":"88%"}']);
});
