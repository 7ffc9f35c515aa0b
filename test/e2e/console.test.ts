import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { Page } from 'playwright-core';
import { SKIP, SLOW_MS, openPage } from '../helpers/browser.js';
import { api } from '../helpers/api.js';
import { until, wsClient } from '../helpers/clients.js';
import { startDaemon, tempDir } from '../helpers/daemon.js';
import { startFakeHttp } from '../helpers/fake-http.js';
import { issueCert, makeTestCa } from '../helpers/tls.js';
import { WebSocket } from 'ws';

// openssl makes the test certificate; CI installs it (.ci/run).
const NO_OPENSSL = existsSync('/usr/bin/openssl') || process.env.CI ? false : 'openssl not installed (.ci/run installs it)';

// The operator console at /console on the HTTP API port, in Debian's Chromium: the login, the
// live figures and chart, the send form, the token generator, the lookups; screenshots at a
// desktop and a phone size (NOTIFY_SCREENSHOTS names the folder; else a temporary one, kept and
// named in the test output, so that they can be looked at).

const TOKEN = 'console-e2e-api-token-0123456789';
const SECRET = 'ws-secret-for-the-console-e2e-0123456789abcdef';
const XSS = '<img src=x onerror="window.__pwned=1">';

let shotDir: string | undefined;
function shots(t: TestContext): string {
  if (shotDir === undefined) {
    shotDir = process.env.NOTIFY_SCREENSHOTS ?? mkdtempSync(join(tmpdir(), 'notify-console-shots-'));
    mkdirSync(shotDir, { recursive: true });
  }
  t.diagnostic(`screenshots in ${shotDir}`);
  return shotDir;
}

async function screenshot(t: TestContext, page: Page, name: string, fullPage = true): Promise<void> {
  await page.screenshot({ path: join(shots(t), `${name}.png`), fullPage });
}

/** The page is no wider than the window: nothing sticks out sideways (tables scroll in their own box). */
async function assertNoHorizontalOverflow(page: Page, what: string): Promise<void> {
  const { scrollWidth, innerWidth } = await page.evaluate<{ scrollWidth: number; innerWidth: number }>(
    '({ scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth })',
  );
  assert.ok(scrollWidth <= innerWidth, `${what}: the page is ${scrollWidth} px wide in a ${innerWidth} px window`);
}

/** The y values of the chart's publishes line (160 is zero). */
async function publishLine(page: Page): Promise<number[]> {
  const points = (await page.getAttribute('#line-pub', 'points')) ?? '';
  return points
    .split(' ')
    .filter(Boolean)
    .map((p) => Number(p.split(',')[1]));
}

test('console: static files carry no data and are sent with CSP, no framing and no-store; the API refuses them without the token', async (t) => {
  const d = await startDaemon(t, { http: { token: TOKEN } });
  for (const path of ['/console', '/console/', '/console/console.js', '/console/console.css']) {
    const res = await fetch(`${d.httpUrl}${path}`);
    assert.equal(res.status, 200, path);
    const csp = res.headers.get('content-security-policy') ?? '';
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'(;|$)/, 'no inline script');
    assert.match(csp, /frame-ancestors 'none'/);
    assert.equal(res.headers.get('x-frame-options'), 'DENY');
    assert.equal(res.headers.get('cache-control'), 'no-store');
    assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
    const text = await res.text();
    assert.ok(!text.includes(TOKEN), 'no token in the static files');
  }
  const html = await (await fetch(`${d.httpUrl}/console`)).text();
  assert.ok(!/<script>/i.test(html) && !/\son[a-z]+=/i.test(html), 'no inline script or handler in the page');
  assert.equal((await fetch(`${d.httpUrl}/console/nothing`)).status, 404);
  const post = await api(d.httpUrl, 'POST', '/console', {});
  assert.equal(post.status, 405);
  // Without the token, every data endpoint the console uses is refused.
  for (const path of ['/v1/status', '/metrics', '/v1/failures']) {
    assert.equal((await fetch(`${d.httpUrl}${path}`)).status, 401, path);
  }
});

test('console in Chromium: login (wrong token first), live figures and chart, send form, token generator, escaping, phone layout', { skip: SKIP }, async (t) => {
  const d = await startDaemon(t, { http: { token: TOKEN }, ws: { auth: 'token', secret: SECRET } });
  const { page, pageErrors, foreign } = await openPage(t);
  await page.setViewportSize({ width: 1280, height: 800 });
  const res = await page.goto(`${d.httpUrl}/console`, { waitUntil: 'load' });
  assert.equal(res?.status(), 200);

  // Without the token: the login, nothing else.
  await page.locator('#login').waitFor({ state: 'visible' });
  assert.equal(await page.isVisible('#app'), false, 'no data view before login');
  assert.equal(await page.textContent('#f-sessions'), '–', 'no figure before login');
  await screenshot(t, page, 'login-1280');

  await page.fill('#login-token', 'not-the-token');
  await page.click('#login-form button');
  await page.locator('#login-error', { hasText: /Wrong token/ }).waitFor();
  assert.match((await page.textContent('#login-error')) ?? '', /refused it \(401\)/);
  assert.equal(await page.isVisible('#app'), false);
  await screenshot(t, page, 'login-wrong-1280');

  await page.fill('#login-token', TOKEN);
  await page.click('#login-form button');
  await page.locator('#app').waitFor({ state: 'visible' });
  await page.locator('#conn', { hasText: 'live' }).waitFor();
  assert.equal(await page.evaluate("sessionStorage.getItem('notify.console.token')"), TOKEN, 'kept for the tab');
  assert.equal(await page.textContent('#f-sessions'), '0');

  // The token generator (ws.auth: token): a token that binds its uid.
  await page.locator('#token-card').waitFor({ state: 'visible' });
  await page.fill('#token-uid', 'alice');
  await page.fill('#token-ttl', '10m');
  await page.click('#token-form button');
  const token = ((await page.locator('#token-value').textContent()) ?? '').trim();
  assert.match(token, /^nt1\./);
  assert.match((await page.textContent('#token-out')) ?? '', /uid=alice&token=nt1\./);
  const alice = await wsClient(t, `${d.wsUrl}?uid=alice&token=${encodeURIComponent(token)}`);
  await until(() => d.registry.index('websocket').has('alice'), 'alice to bind with the token from the console', SLOW_MS);
  await page.locator('#f-sessions', { hasText: /^1$/ }).waitFor();
  assert.equal(await page.textContent('#f-uids'), '1');

  // Pushes through the API: the publishes figure and the chart show them.
  const before = Number(await page.textContent('#f-published'));
  for (let i = 0; i < 12; i++) {
    const r = await api(d.httpUrl, 'POST', '/v1/send', { uid: 'alice', msg: `api ${i}` }, { authorization: `Bearer ${TOKEN}` });
    assert.equal(r.status, 200);
  }
  assert.equal(await alice.frame(12), 'api 11');
  // (waitForFunction evaluates a string, which the console's CSP forbids: poll from here.)
  const deadline = Date.now() + SLOW_MS;
  while (Number(await page.textContent('#f-published')) < before + 12 || !(await publishLine(page)).some((y) => y < 160)) {
    assert.ok(Date.now() < deadline, `the figure and the chart show the publishes (figure ${await page.textContent('#f-published')})`);
    await page.waitForTimeout(200);
  }
  assert.equal(await page.textContent('#transports tbody tr:first-child td:first-child'), 'websocket');
  assert.ok(Number(await page.textContent('#transports tbody tr:first-child td:nth-child(3)')) >= 12, 'websocket deliveries counted');
  await screenshot(t, page, 'live-1280');

  // The send form: to a uid, the session gets it and the report is shown.
  await page.fill('#send-uid', 'alice');
  await page.fill('#send-msg', 'from the form');
  await page.click('#send-form button[type=submit]');
  await page.locator('#send-report .summary', { hasText: 'delivered: 1 sent, 0 failed, 0 rejected' }).waitFor();
  assert.equal(await alice.frame(13), 'from the form');
  const reportId = ((await page.textContent('#send-report dd button')) ?? '').trim();
  assert.ok(reportId.length > 0, 'the report names the message id');
  assert.equal(await page.textContent('#send-report tbody td:nth-child(2)'), 'websocket');

  // Broadcast with route live-first.
  await page.check('#send-form input[value=broadcast]');
  assert.equal(await page.isDisabled('#send-uid'), true);
  await page.fill('#send-msg', 'to everyone');
  await page.selectOption('#send-route', 'live-first');
  await page.click('#send-form button[type=submit]');
  await page.locator('#send-report .summary', { hasText: 'delivered: 1 sent' }).waitFor();
  assert.equal(await alice.frame(14), 'to everyone');
  assert.match((await page.textContent('#send-report')) ?? '', /route\s*live-first/);
  await screenshot(t, page, 'send-1280');

  // A bad send shows the API's error; markup in what comes back is text, never HTML.
  await page.check('#send-form input[value=uid]');
  await page.fill('#send-uid', XSS);
  await page.fill('#send-msg', XSS);
  await page.selectOption('#send-route', '');
  await page.click('#send-form button[type=submit]');
  await page.locator('#send-report .summary', { hasText: 'not delivered' }).waitFor();
  assert.ok(((await page.textContent('#send-report')) ?? '').includes(XSS), 'the uid is shown as typed');
  assert.equal(await page.locator('#app img').count(), 0, 'no element made from the uid');
  assert.equal(await page.evaluate('typeof window.__pwned'), 'undefined', 'no handler from the data ran');

  await page.fill('#token-uid', 'bob');
  await page.fill('#token-ttl', 'soon');
  await page.click('#token-form button');
  await page.locator('#token-out .error', { hasText: /"ttl" must be a duration/ }).waitFor();

  // The phone: one column, no sideways overflow; tables scroll in their own box.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.fill('#send-uid', 'alice');
  await page.fill('#send-msg', 'from the phone');
  await page.click('#send-form button[type=submit]');
  await page.locator('#send-report .summary', { hasText: 'delivered: 1 sent' }).waitFor();
  assert.equal(await alice.frame(15), 'from the phone');
  await assertNoHorizontalOverflow(page, 'console at 390 px');
  const scrolls = await page.evaluate<string[]>("Array.from(document.querySelectorAll('.scroll')).map((e) => getComputedStyle(e).overflowX)");
  assert.ok(scrolls.length > 0 && scrolls.every((o) => o === 'auto'), 'tables sit in horizontally scrolling boxes');
  await screenshot(t, page, 'live-390');
  await screenshot(t, page, 'live-390-screen', false);

  // Logging out forgets the token.
  await page.click('#logout');
  await page.locator('#login').waitFor({ state: 'visible' });
  assert.equal(await page.evaluate("sessionStorage.getItem('notify.console.token')"), null);
  await assertNoHorizontalOverflow(page, 'login at 390 px');
  await screenshot(t, page, 'login-390');

  assert.deepEqual(pageErrors, [], 'no uncaught errors in the page');
  assert.deepEqual(foreign, [], 'no request to any host but 127.0.0.1');
});

/** Realistic answers of GET /v1/messages/{id} and GET /v1/uids/{uid} (built on another branch; faked here). */
function traceFixtures(now: number) {
  const iso = (ms: number) => new Date(now + ms).toISOString();
  const message = {
    id: '01JF3Q8ZK2M4V6X8Z0B2D4F6H8',
    publishedAt: iso(-60_000),
    ingress: 'http',
    audience: { uids: ['alice', XSS] },
    audienceSize: 2,
    route: 'live-first',
    stored: true,
    publisherId: 'order-4711-shipped',
    targets: [
      { uid: 'alice', transport: 'websocket', target: 's-7f3a9c', node: 'node-a', status: 'sent', attempts: 1, at: iso(-59_990) },
      {
        uid: 'alice',
        transport: 'apns',
        target: 'a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90',
        status: 'retrying',
        reason: '503 ServiceUnavailable',
        attempts: 2,
        at: iso(-30_000),
        nextAttemptAt: iso(5_000),
      },
      { uid: XSS, transport: 'hook', target: XSS, status: 'gave-up', reason: `500 ${XSS} (gave up after 4 attempts)`, attempts: 4, at: iso(-10_000) },
      { uid: 'alice', transport: 'fcm', target: 'fcm-token-1', status: 'rejected', reason: 'UNREGISTERED', attempts: 1, at: iso(-59_000), futureField: { x: 1 } },
    ],
    acks: [{ uid: 'alice', session: 's-7f3a9c', at: iso(-59_980) }],
    somethingNew: 'ignored',
  };
  const uid = {
    uid: 'alice',
    online: true,
    sessions: [
      { session: 's-7f3a9c', node: 'node-a', address: '203.0.113.7', connectedAt: iso(-3_600_000), protocol: 'resume', resuming: true },
      { session: 's-11aa22', node: 'node-b', address: '2001:db8::1', connectedAt: iso(-120_000), protocol: 'original', resuming: false },
    ],
    devices: [
      { transport: 'apns', token: 'a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90', lastOutcome: { status: 'sent', at: iso(-30_000), messageId: message.id } },
      { transport: 'webpush', token: 'https://push.example/wp/abc', lastOutcome: { status: 'failed', reason: `timeout ${XSS}`, at: iso(-20_000), messageId: '01JF3Q8ZK2M4V6X8Z0B2D4F6H9' } },
      { transport: 'fcm', token: 'fcm-token-2' },
    ],
    retired: [{ transport: 'fcm', token: 'fcm-token-1', reason: 'UNREGISTERED', at: iso(-59_000) }],
    recentMessages: [
      { id: message.id, at: iso(-60_000) },
      { id: '01JF3Q8ZK2M4V6X8Z0B2D4F6H9', at: iso(-20_000) },
    ],
  };
  return { message, uid };
}

test('console in Chromium: recent failures; message and uid lookup render the trace endpoints (faked with page.route); no login without http.token', { skip: SKIP }, async (t) => {
  const hook = await startFakeHttp(t, (req) => (req.path === '/gone' ? { status: 400, body: 'unknown user' } : undefined));
  const d = await startDaemon(t, { transports: { hook: { type: 'http', url: `${hook.url}/{{uid}}`, retry: { limit: 0 } } } });
  const { page, pageErrors, foreign } = await openPage(t);
  const { message, uid } = traceFixtures(Date.now());
  const json = (status: number, body: unknown) => ({ status, contentType: 'application/json; charset=utf-8', body: JSON.stringify(body) });
  const seen: string[] = [];
  await page.route(/\/v1\/messages\//, (route) => {
    const id = decodeURIComponent(new URL(route.request().url()).pathname.split('/').pop() ?? '');
    seen.push(`message ${id}`);
    return route.fulfill(id === message.id ? json(200, message) : json(404, { code: 'NOTIFY_ERR_NOT_FOUND', error: `no message ${id} in the history` }));
  });
  await page.route(/\/v1\/uids\//, (route) => {
    const u = decodeURIComponent(new URL(route.request().url()).pathname.split('/').pop() ?? '');
    seen.push(`uid ${u}`);
    return route.fulfill(json(200, u === 'alice' ? uid : { uid: u, online: false, sessions: [], devices: [], retired: [], recentMessages: [] }));
  });
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.goto(`${d.httpUrl}/console`, { waitUntil: 'load' });
  // No http.token: straight to the console, no login and no log out.
  await page.locator('#app').waitFor({ state: 'visible' });
  assert.equal(await page.isVisible('#login'), false);
  assert.equal(await page.isVisible('#logout'), false);
  assert.equal(await page.isVisible('#token-card'), false, 'no token generator with ws.auth: none');

  // A delivery the provider refuses shows in the recent failures, with its message id.
  assert.equal(await page.isVisible('#failures-empty'), true);
  await page.fill('#send-uid', 'gone');
  await page.fill('#send-msg', 'hello?');
  await page.click('#send-form button[type=submit]');
  await page.locator('#send-report .summary', { hasText: 'not delivered: 0 sent, 0 failed, 1 rejected' }).waitFor();
  const goneId = ((await page.textContent('#send-report dd button')) ?? '').trim();
  const failure = page.locator('#failures tbody tr').first();
  await failure.waitFor();
  const cells = await failure.locator('td').allTextContents();
  assert.deepEqual(cells.slice(1, 4), ['gone', 'hook', 'rejected']);
  assert.match(cells[4] ?? '', /400/);
  assert.equal(cells[6], goneId);
  assert.ok(Number(await page.textContent('#transports tbody tr:nth-child(2) td:nth-child(5)')) >= 1, 'the hook row counts the rejection');
  await screenshot(t, page, 'failures-1280');
  // Its message id opens the message lookup (a 404 from the faked endpoint here).
  await failure.locator('td:nth-child(7) button').click();
  await page.locator('#message-out .notfound', { hasText: `not found: ${goneId}` }).waitFor();
  assert.equal(await page.inputValue('#message-id'), goneId);

  await page.fill('#message-id', message.id);
  await page.click('#message-form button');
  const msg = page.locator('#message-out .result');
  await msg.waitFor();
  const text = (await msg.textContent()) ?? '';
  for (const s of ['order-4711-shipped', 'live-first', `alice, ${XSS}`, '503 ServiceUnavailable', 'UNREGISTERED', 'gave-up']) assert.ok(text.includes(s), `message view shows ${s}`);
  assert.equal(await page.locator('#message-out h3', { hasText: 'Targets (4)' }).count(), 1);
  assert.equal(await page.locator('#message-out h3', { hasText: 'Acks (1)' }).count(), 1);
  const targetRows = page.locator('#message-out .scroll').first().locator('tbody tr');
  assert.equal(await targetRows.count(), 4);
  assert.deepEqual(await page.locator('#message-out .scroll').first().locator('tbody td:nth-child(3)').allTextContents(), ['sent', 'retrying', 'gave-up', 'rejected']);
  assert.ok(((await targetRows.nth(1).textContent()) ?? '').includes('2'), 'attempts shown');
  assert.equal(await page.locator('#app img').count(), 0, 'markup in the trace is text');
  await screenshot(t, page, 'message-1280');

  // A 404 is "not found".
  await page.fill('#message-id', 'nope');
  await page.click('#message-form button');
  await page.locator('#message-out .notfound', { hasText: /^not found: nope/ }).waitFor();

  // A uid in the trace opens its lookup.
  await page.fill('#message-id', message.id);
  await page.click('#message-form button');
  await page.locator('#message-out .result').waitFor();
  await page.locator('#message-out tbody button', { hasText: /^alice$/ }).first().click();
  const who = page.locator('#uid-out .result');
  await who.waitFor();
  const whoText = (await who.textContent()) ?? '';
  for (const s of ['203.0.113.7', '2001:db8::1', 'resuming', 'plain', 'webpush', `timeout ${XSS}`, 'Retired tokens (1)', 'Recent messages (2)']) {
    assert.ok(whoText.includes(s), `uid view shows ${s}`);
  }
  assert.equal(await page.inputValue('#uid-id'), 'alice');
  assert.equal(await page.locator('#uid-out h3', { hasText: 'Sessions (2)' }).count(), 1);
  assert.equal(await page.locator('#uid-out h3', { hasText: 'Devices (3)' }).count(), 1);
  assert.equal(await page.locator('#app img').count(), 0);
  assert.equal(await page.evaluate('typeof window.__pwned'), 'undefined', 'no handler from the data ran');
  await screenshot(t, page, 'uid-1280');

  // A uid with markup goes into the URL encoded and comes back as text.
  await page.fill('#uid-id', XSS);
  await page.click('#uid-form button');
  await page.locator('#uid-out dd', { hasText: XSS }).waitFor();
  assert.ok(seen.includes(`uid ${XSS}`), `the uid reached the endpoint intact: ${JSON.stringify(seen)}`);
  assert.equal(await page.locator('#app img').count(), 0);

  await page.setViewportSize({ width: 390, height: 844 });
  await page.fill('#uid-id', 'alice');
  await page.click('#uid-form button');
  await page.locator('#uid-out h3', { hasText: 'Sessions (2)' }).waitFor();
  await assertNoHorizontalOverflow(page, 'lookups at 390 px');
  await screenshot(t, page, 'lookups-390');
  // What the phone shows at once, at its real size: the trace's tables.
  await page.locator('#h-message').scrollIntoViewIfNeeded();
  await page.evaluate('document.getElementById("h-message").scrollIntoView()');
  await screenshot(t, page, 'message-390-screen', false);

  assert.deepEqual(pageErrors, [], 'no uncaught errors in the page');
  assert.deepEqual(foreign, [], 'no request to any host but 127.0.0.1');
});

test('console in Chromium, end to end with the real trace: a push to a live session shows in the chart, then in the message lookup as sent on websocket, and the uid lookup lists the session', { skip: SKIP }, async (t) => {
  const d = await startDaemon(t, { http: { token: TOKEN } });
  const { page, pageErrors, foreign } = await openPage(t);
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.goto(`${d.httpUrl}/console`, { waitUntil: 'load' });
  await page.fill('#login-token', TOKEN);
  await page.click('#login-form button');
  await page.locator('#conn', { hasText: 'live' }).waitFor();

  const bob = await wsClient(t, d.wsUrl);
  bob.ws.send('bob');
  await until(() => d.registry.index('websocket').has('bob'), 'bob to bind', SLOW_MS);
  await page.locator('#f-sessions', { hasText: /^1$/ }).waitFor();

  const sent = await api(d.httpUrl, 'POST', '/v1/send', { uid: 'bob', msg: 'watch me', id: 'deploy-42' }, { authorization: `Bearer ${TOKEN}` });
  assert.equal(sent.status, 200);
  const report = sent.body as { id: string; results: { target: string }[] };
  assert.equal(await bob.frame(1), 'watch me');
  // The chart shows the publish.
  const deadline = Date.now() + SLOW_MS;
  while (!(await publishLine(page)).some((y) => y < 160)) {
    assert.ok(Date.now() < deadline, 'the chart shows the publish');
    await page.waitForTimeout(200);
  }

  // The message lookup, from the daemon's own trace.
  await page.fill('#message-id', report.id);
  await page.click('#message-form button');
  const msg = page.locator('#message-out .result');
  await msg.waitFor();
  const text = (await msg.textContent()) ?? '';
  for (const s of [report.id, 'http', 'bob', 'deploy-42']) assert.ok(text.includes(s), `message view shows ${s}: ${text}`);
  const targets = page.locator('#message-out .scroll').first().locator('tbody tr');
  assert.equal(await targets.count(), 1);
  const cells = await targets.first().locator('td').allTextContents();
  assert.ok(cells.includes('websocket') && cells.includes('sent'), `the websocket target is sent: ${JSON.stringify(cells)}`);
  assert.ok(cells.some((c) => c.includes((report.results[0] as { target: string }).target.slice(0, 8))), `the session id is shown: ${JSON.stringify(cells)}`);
  await screenshot(t, page, 'trace-real-1280');

  // The uid lookup lists bob's session, its address and protocol.
  await page.fill('#uid-id', 'bob');
  await page.click('#uid-form button');
  const who = page.locator('#uid-out .result');
  await who.waitFor();
  await page.locator('#uid-out h3', { hasText: 'Sessions (1)' }).waitFor();
  const whoText = (await who.textContent()) ?? '';
  for (const s of ['127.0.0.1', 'original', report.id]) assert.ok(whoText.includes(s), `uid view shows ${s}: ${whoText}`);

  assert.deepEqual(pageErrors, [], 'no uncaught errors in the page');
  assert.deepEqual(foreign, [], 'no request to any host but 127.0.0.1');
});

test('console in Chromium: the token generator\'s connect URL is wss:// when ws.tls is set though the console is on http://, and it binds; behind a proxy it is the console\'s own host', { skip: SKIP || NO_OPENSSL }, async (t) => {
  const ca = await makeTestCa(tempDir(t));
  const leaf = await issueCert(ca, 'notify', { serial: 1 });
  const d = await startDaemon(t, { ws: { auth: 'token', secret: SECRET, tls: { cert: leaf.certFile, key: leaf.keyFile } } });
  const { page, pageErrors } = await openPage(t);
  await page.goto(`${d.httpUrl}/console`, { waitUntil: 'load' });
  await page.locator('#token-card').waitFor({ state: 'visible' });
  await page.fill('#token-uid', 'carol');
  await page.click('#token-form button');
  const connect = ((await page.locator('#token-out dd').nth(2).textContent()) ?? '').trim();
  assert.match(connect, new RegExp(`^wss://127\\.0\\.0\\.1:${d.addresses().ws.split(':').pop()}/\\?uid=carol&token=nt1\\.`));
  const ws = new WebSocket(connect, { ca: [ca.pem] });
  t.after(() => ws.terminate());
  ws.on('error', () => {});
  await once(ws, 'open');
  await until(() => d.registry.index('websocket').has('carol'), 'carol to bind with the URL the console gave', SLOW_MS);

  const proxied = await startDaemon(t, { ws: { auth: 'token', secret: SECRET, behindProxy: true } });
  await page.goto(`${proxied.httpUrl}/console`, { waitUntil: 'load' });
  await page.locator('#token-card').waitFor({ state: 'visible' });
  await page.fill('#token-uid', 'dave');
  await page.click('#token-form button');
  const viaProxy = ((await page.locator('#token-out dd').nth(2).textContent()) ?? '').trim();
  assert.match(viaProxy, new RegExp(`^ws://${proxied.addresses().http.replace(/\./g, '\\.')}/\\?uid=dave&token=nt1\\.`));
  assert.deepEqual(pageErrors, []);
});
