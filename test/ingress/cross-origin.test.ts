import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test, type TestContext } from 'node:test';
import { SKIP, openPage } from '../helpers/browser.js';
import { until, wsClient } from '../helpers/clients.js';
import { startDaemon } from '../helpers/daemon.js';

// A web page of another site must not be able to drive the HTTP API through the operator's
// browser (cross-site request forgery): with no http.token, the API on 127.0.0.1 is open to
// whatever can reach it, and a browser can reach it for any page it shows.

/** A page server on 127.0.0.1 port 0: the "other site" (opened as http://localhost:PORT/). */
async function otherSite(t: TestContext, html: string): Promise<string> {
  const server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
    res.end(html);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => server.close());
  return `http://localhost:${(server.address() as AddressInfo).port}/`;
}

test('cross-origin: a page of another site cannot publish through the browser (no-cors POST /v1/send, a form post), nor mint a token; the daemon answers 403 and keeps serving', { skip: SKIP }, async (t) => {
  const d = await startDaemon(t, { ws: { auth: 'token', secret: 's'.repeat(40) } });
  const api = d.httpUrl;
  // A session of the victim uid, bound with a real token (minted by the API directly, as a backend would).
  const minted = (await (await fetch(`${api}/v1/tokens`, { method: 'POST', body: JSON.stringify({ uid: 'victim' }) })).json()) as { token: string };
  const victim = await wsClient(t, `${d.wsUrl}/?uid=victim&token=${encodeURIComponent(minted.token)}`);
  await until(() => d.registry.index('websocket').has('victim'), 'the victim to bind');

  const url = await otherSite(
    t,
    `<!doctype html><title>evil</title>
<form id="f" method="post" enctype="text/plain" action="${api}/v1/send" target="sink"><input name='{"uid":"victim","msg":"from a form","data":{"x":"' value='"}}'></form>
<iframe name="sink"></iframe>
<script>
window.attack = async function () {
  const out = [];
  out.push((await fetch(${JSON.stringify(`${api}/v1/send`)}, { method: 'POST', mode: 'no-cors', body: JSON.stringify({ uid: 'victim', msg: 'from another site' }) })).type);
  out.push((await fetch(${JSON.stringify(`${api}/v1/send`)}, { method: 'POST', mode: 'no-cors', headers: { 'content-type': 'text/plain' }, body: JSON.stringify({ broadcast: true, msg: 'to everyone' }) })).type);
  out.push((await fetch(${JSON.stringify(`${api}/v1/tokens`)}, { method: 'POST', mode: 'no-cors', body: JSON.stringify({ uid: 'victim', ttl: '366d' }) })).type);
  return out;
};
</script>`,
  );
  const { page } = await openPage(t);
  await page.goto(url, { waitUntil: 'load' });
  // Each request went out and came back (opaque: the page cannot read it; the daemon acted or not).
  assert.deepEqual(await page.evaluate('window.attack()'), ['opaque', 'opaque', 'opaque']);
  const posted = page.waitForEvent('requestfinished', (r) => r.url() === `${api}/v1/send`);
  await page.evaluate('document.getElementById("f").submit()');
  const formRequest = await posted;
  const formAnswer = await formRequest.response();
  assert.equal(formAnswer?.status(), 403);
  assert.deepEqual(await formAnswer?.json(), {
    code: 'NOTIFY_ERR_CROSS_ORIGIN',
    error: `requests from web pages of another origin are refused (Origin: ${JSON.stringify(new URL(url).origin)}); call the API from a backend, the CLI or the console at /console`,
  });

  // Nothing was published: the next frame the victim gets is a real publisher's.
  const res = await fetch(`${api}/v1/send`, { method: 'POST', body: JSON.stringify({ uid: 'victim', msg: 'from the backend' }) });
  assert.equal(res.status, 200);
  assert.equal(await victim.frame(1), 'from the backend');
  assert.deepEqual(victim.frames, ['from the backend']);
});

test('cross-origin: requests naming this host as their origin (the console), or none (curl, backends, the CLI), are served; any other Origin, or "null", is refused 403', async (t) => {
  const d = await startDaemon(t);
  const host = d.addresses().http;
  const send = (headers: Record<string, string>) =>
    fetch(`${d.httpUrl}/v1/send`, { method: 'POST', headers, body: JSON.stringify({ uid: 'nobody', msg: 'x' }) });
  assert.equal((await send({})).status, 200);
  assert.equal((await send({ origin: `http://${host}` })).status, 200, 'the console on this port');
  // A proxy may pass Host without the port the page was opened on (nginx's $host).
  const proxied = await startDaemon(t, { http: { behindProxy: true } });
  const viaProxy = await new Promise<number>((resolve, reject) => {
    const body = JSON.stringify({ uid: 'nobody', msg: 'x' });
    const req = httpRequest(`${proxied.httpUrl}/v1/send`, { method: 'POST', headers: { origin: 'https://push.example.com:8443', host: 'push.example.com', 'content-length': String(body.length) } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end(body);
  });
  assert.equal(viaProxy, 200);
  for (const origin of ['http://localhost:8080', 'https://evil.example', 'null', `http://${host}.evil.example`]) {
    const r = await send({ origin });
    assert.equal(r.status, 403, origin);
    assert.equal(((await r.json()) as { code: string }).code, 'NOTIFY_ERR_CROSS_ORIGIN');
  }
  const health = await fetch(`${d.httpUrl}/healthz`);
  assert.equal(health.status, 200);
});

/** POST /v1/send (or GET `path`) to the daemon at `address` with Host `host`: the status. */
function withHost(address: string, host: string, path = '/v1/send'): Promise<number> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ uid: 'nobody', msg: 'x' });
    const get = path !== '/v1/send';
    const req = httpRequest(`http://${address}${path}`, { method: get ? 'GET' : 'POST', headers: { host, ...(get ? {} : { 'content-length': String(body.length) }) } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', reject);
    req.end(get ? undefined : body);
  });
}

test('cross-origin: DNS rebinding: a page whose own name resolves to 127.0.0.1 cannot read or publish through a daemon on loopback without http.token', { skip: SKIP }, async (t) => {
  const d = await startDaemon(t);
  const victim = await wsClient(t, `${d.wsUrl}/?uid=victim`);
  await until(() => d.registry.index('websocket').has('victim'), 'the victim to bind');
  const apiPort = Number(d.addresses().http.split(':').pop());
  // The browser resolves rebind.test to 127.0.0.1, as the attacker's DNS does after the page loaded.
  const { page } = await openPage(t, { args: ['--host-resolver-rules=MAP rebind.test 127.0.0.1'] });
  const origin = `http://rebind.test:${apiPort}`;
  // A document of origin http://rebind.test:PORT; the script below is the attacker's, run in it
  // (in a real attack the document came from the attacker's server before the name was rebound).
  await page.goto(`${origin}/`, { waitUntil: 'load' });
  const seen = (await page.evaluate(`(async () => {
    const status = await fetch('/v1/status');
    const send = await fetch('/v1/send', { method: 'POST', body: JSON.stringify({ uid: 'victim', msg: 'rebound' }) });
    return { status: status.status, statusBody: await status.text(), send: send.status, sendBody: await send.json() };
  })()`)) as { status: number; statusBody: string; send: number; sendBody: { code: string; error: string } };
  assert.equal(seen.status, 403, 'GET /v1/status is not readable from the page');
  assert.doesNotMatch(seen.statusBody, /"sessions"/);
  assert.equal(seen.send, 403);
  assert.equal(seen.sendBody.code, 'NOTIFY_ERR_HOST');
  assert.equal(seen.sendBody.error, `this API listens on loopback without http.token and answers only requests to a loopback name (127.0.0.1, [::1], localhost), not "rebind.test:${apiPort}" (DNS rebinding); behind a reverse proxy set http.behindProxy: true`);
  const res = await fetch(`${d.httpUrl}/v1/send`, { method: 'POST', body: JSON.stringify({ uid: 'victim', msg: 'from the backend' }) });
  assert.equal(res.status, 200);
  assert.equal(await victim.frame(1), 'from the backend');
  assert.deepEqual(victim.frames, ['from the backend']);
});

test('cross-origin: on loopback without http.token only loopback Host names are answered; with a token, or with http.behindProxy, any', async (t) => {
  const open = await startDaemon(t);
  const a = open.addresses().http;
  const p = a.split(':').pop() as string;
  for (const host of [a, `localhost:${p}`, `LOCALHOST:${p}`, `app.localhost:${p}`, `[::1]:${p}`, `127.0.0.2:${p}`]) assert.equal(await withHost(a, host), 200, host);
  for (const host of [`evil.example:${p}`, 'evil.example', `127.0.0.1.evil.example:${p}`, `10.0.0.1:${p}`]) assert.equal(await withHost(a, host), 403, host);
  assert.equal(await withHost(a, 'evil.example', '/healthz'), 403);
  const withToken = await startDaemon(t, { http: { token: 't'.repeat(24) } });
  assert.equal(await withHost(withToken.addresses().http, 'push.example.com', '/healthz'), 200);
  const proxied = await startDaemon(t, { http: { behindProxy: true } });
  assert.equal(await withHost(proxied.addresses().http, 'push.example.com'), 200);
});
