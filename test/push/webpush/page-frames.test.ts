import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeToken } from '../../../src/auth.js';
import { PUSH_FRAMES_PER_SESSION } from '../../../src/live/websocket.js';
import { type WsClient, roundTrip, until, wsClient } from '../../helpers/clients.js';
import { startDaemon } from '../../helpers/daemon.js';
import { webpushWorld } from '../../helpers/webpush.js';

// The session frames a page registers its browser's Web Push subscription with (the client's
// subscribePush() sends them): push-subscribe / push-unsubscribe after a resume-protocol bind,
// answered push-subscribed / push-unsubscribed / push-refused.

/** A resume-protocol session bound to `uid` (optionally with a token). */
async function resumeSession(t: Parameters<typeof wsClient>[0], url: string, uid: string, token?: string): Promise<WsClient> {
  const c = await wsClient(t, url);
  c.ws.send(JSON.stringify({ type: 'bind', uid, since: null, ...(token ? { token } : {}) }));
  return c;
}

/** The push-* answers among what the session received (messages replayed or pushed are left out). */
const answers = (c: WsClient): Record<string, unknown>[] =>
  c.frames.map((f) => JSON.parse(f) as Record<string, unknown>).filter((f) => typeof f.type === 'string' && f.type.startsWith('push-'));

/** Sends a frame and returns the next push-* answer the session receives. */
async function ask(c: WsClient, frame: unknown): Promise<Record<string, unknown>> {
  const n = answers(c).length + 1;
  c.ws.send(JSON.stringify(frame));
  await until(() => answers(c).length >= n, 'the answer to a push frame');
  return answers(c)[n - 1] as Record<string, unknown>;
}

test('page push frames: push-subscribe registers the subscription for the bound uid; a push to the uid then reaches it; push-unsubscribe removes it', async (t) => {
  const w = await webpushWorld(t);
  const d = await w.daemon();
  const sub = w.fake.subscribe();
  const c = await resumeSession(t, d.wsUrl, 'uid1');
  const spelled = { ...sub.subscription, expirationTime: null };
  assert.deepEqual(await ask(c, { type: 'push-subscribe', subscription: spelled }), { type: 'push-subscribed', endpoint: sub.subscription.endpoint, added: true });
  assert.deepEqual(d.registry.index('webpush').targets('uid1'), [sub.target]);
  assert.deepEqual(await ask(c, { type: 'push-subscribe', subscription: sub.subscription }), { type: 'push-subscribed', endpoint: sub.subscription.endpoint, added: false });
  const registered = d.logs.filter((l) => l.msg === 'device registered');
  assert.equal(registered[0]?.uid, 'uid1');

  c.ws.close();
  await until(() => !d.registry.index('websocket').has('uid1'), 'the page to leave');
  const res = await fetch(`${d.httpUrl}/v1/send`, { method: 'POST', body: JSON.stringify({ uid: 'uid1', title: 'Hi', msg: 'closed tab' }) });
  const report = (await res.json()) as { results: { transport: string; status: string }[] };
  assert.deepEqual(report.results.map((r) => [r.transport, r.status]), [['webpush', 'sent']]);
  assert.equal(JSON.parse(w.fake.requests[0]?.plaintext ?? '{}').body, 'closed tab');

  const c2 = await resumeSession(t, d.wsUrl, 'uid1');
  assert.deepEqual(await ask(c2, { type: 'push-unsubscribe', subscription: sub.subscription }), { type: 'push-unsubscribed', endpoint: sub.subscription.endpoint, removed: true });
  assert.deepEqual(d.registry.index('webpush').targets('uid1'), []);
  assert.deepEqual(await ask(c2, { type: 'push-unsubscribe', subscription: sub.subscription }), { type: 'push-unsubscribed', endpoint: sub.subscription.endpoint, removed: false });
});

test('page push frames: an invalid subscription is refused with the reason; nothing is registered', async (t) => {
  const w = await webpushWorld(t);
  const d = await w.daemon();
  const sub = w.fake.subscribe();
  const c = await resumeSession(t, d.wsUrl, 'uid1');
  const cases: [unknown, RegExp][] = [
    [undefined, /is an object/],
    [{ ...sub.subscription, endpoint: 'http://127.0.0.1/push/x' }, /must be an https:\/\/ URL/],
    [{ ...sub.subscription, keys: { ...sub.subscription.keys, auth: 'AAAA' } }, /keys\.auth must be exactly 16 bytes/],
    [{ ...sub.subscription, keys: { ...sub.subscription.keys, p256dh: 'BAAA' } }, /keys\.p256dh must be an uncompressed P-256 point/],
  ];
  for (const [subscription, reason] of cases) {
    const answer = await ask(c, { type: 'push-subscribe', subscription });
    assert.equal(answer.type, 'push-refused');
    assert.match(String(answer.reason), reason);
  }
  assert.deepEqual(d.registry.index('webpush').targets('uid1'), []);
  assert.equal(c.ws.readyState, c.ws.OPEN, 'the session stays open');
});

test('page push frames: with ws.auth token the token proves the uid; the subscription goes to the bound uid only', async (t) => {
  const secret = 's'.repeat(40);
  const w = await webpushWorld(t, { ws: { auth: 'token', secret } });
  const d = await w.daemon();
  const sub = w.fake.subscribe();
  const token = makeToken(secret, 'alice', Math.floor(Date.now() / 1000) + 600);
  const c = await resumeSession(t, d.wsUrl, 'alice', token);
  // A uid in the frame is not read: the session's bound uid is the one.
  assert.equal((await ask(c, { type: 'push-subscribe', uid: 'mallory', subscription: sub.subscription })).type, 'push-subscribed');
  assert.deepEqual(d.registry.index('webpush').targets('alice'), [sub.target]);
  assert.deepEqual(d.registry.index('webpush').targets('mallory'), []);

  // Without a valid token the session never binds, so it cannot register anything.
  const intruder = await resumeSession(t, d.wsUrl, 'mallory', makeToken('x'.repeat(40), 'mallory', Math.floor(Date.now() / 1000) + 600));
  const [code] = await intruder.closed;
  assert.equal(code, 4403);
});

test('page push frames: subscriptionsPerUid caps what pages register for a uid; re-registering one it has is fine; the API is not capped', async (t) => {
  const w = await webpushWorld(t, { webpush: { subscriptionsPerUid: 2 } });
  const d = await w.daemon();
  const [a, b, c3] = [w.fake.subscribe(), w.fake.subscribe(), w.fake.subscribe()];
  const c = await resumeSession(t, d.wsUrl, 'uid1');
  assert.equal((await ask(c, { type: 'push-subscribe', subscription: a.subscription })).type, 'push-subscribed');
  assert.equal((await ask(c, { type: 'push-subscribe', subscription: b.subscription })).type, 'push-subscribed');
  assert.deepEqual(await ask(c, { type: 'push-subscribe', subscription: c3.subscription }), {
    type: 'push-refused',
    reason: 'this uid has 2 Web Push subscriptions already (transports.webpush.subscriptionsPerUid: 2)',
  });
  assert.equal((await ask(c, { type: 'push-subscribe', subscription: a.subscription })).type, 'push-subscribed');
  const res = await fetch(`${d.httpUrl}/v1/devices`, { method: 'POST', body: JSON.stringify({ uid: 'uid1', token: c3.subscription }) });
  assert.equal(res.status, 200);
  assert.equal(d.registry.index('webpush').targets('uid1').length, 3);
});

test(`page push frames: at most ${PUSH_FRAMES_PER_SESSION} per session, one at a time`, async (t) => {
  const w = await webpushWorld(t);
  const d = await w.daemon();
  const sub = w.fake.subscribe();
  const c = await resumeSession(t, d.wsUrl, 'uid1');
  // Two at once: the second is refused while the first is under way.
  c.ws.send(JSON.stringify({ type: 'push-subscribe', subscription: sub.subscription }));
  c.ws.send(JSON.stringify({ type: 'push-subscribe', subscription: sub.subscription }));
  await until(() => answers(c).length === 2, 'two answers');
  const two = answers(c);
  assert.deepEqual(two.map((a) => a.type).sort(), ['push-refused', 'push-subscribed']);
  assert.match(String(two.find((a) => a.type === 'push-refused')?.reason), /one push registration at a time/);
  // The refused one did not count: 1 so far; 15 more reach the cap.
  for (let i = 1; i < PUSH_FRAMES_PER_SESSION; i++) assert.equal((await ask(c, { type: 'push-unsubscribe', subscription: sub.subscription })).type, 'push-unsubscribed');
  assert.deepEqual(await ask(c, { type: 'push-subscribe', subscription: sub.subscription }), {
    type: 'push-refused',
    reason: `too many push registrations on this session (at most ${PUSH_FRAMES_PER_SESSION})`,
  });
  const metrics = await (await fetch(`${d.httpUrl}/metrics`)).text();
  assert.match(metrics, /notify_limit_refusals_total\{limit="pushFrames"\} 1/);
});

test('page push frames: the original protocol is unchanged (a plain session gets no answer); without a webpush transport they are refused', async (t) => {
  const d = await startDaemon(t);
  const plain = await wsClient(t, d.wsUrl, { bind: 'uid1' });
  await until(() => d.registry.index('websocket').has('uid1'), 'uid1 to bind');
  plain.ws.send(JSON.stringify({ type: 'push-subscribe', subscription: {} }));
  await roundTrip(plain.ws);
  assert.deepEqual(plain.frames, [], 'frames after a plain bind are ignored, as before');

  const c = await resumeSession(t, d.wsUrl, 'uid2');
  assert.deepEqual(await ask(c, { type: 'push-subscribe', subscription: {} }), {
    type: 'push-refused',
    reason: 'Web Push is not configured on this daemon (no transport with type: webpush)',
  });
});

test('page push assets: /notify-sw.js is served; /notify-client.js carries the VAPID public key (null without a webpush transport)', async (t) => {
  const w = await webpushWorld(t);
  const d = await w.daemon();
  const origin = `http://${d.addresses().ws}`;
  const sw = await fetch(`${origin}/notify-sw.js`);
  assert.equal(sw.status, 200);
  assert.equal(sw.headers.get('content-type'), 'text/javascript; charset=utf-8');
  const swText = await sw.text();
  assert.match(swText, /addEventListener\('push'/);
  assert.match(swText, /addEventListener\('notificationclick'/);
  const client = await (await fetch(`${origin}/notify-client.js`)).text();
  assert.ok(client.includes(`var VAPID_PUBLIC_KEY = ${JSON.stringify(w.vapid.publicKey)};`));
  assert.ok(!client.includes(w.vapid.privateKey));

  const plain = await startDaemon(t);
  const bare = await (await fetch(`http://${plain.addresses().ws}/notify-client.js`)).text();
  assert.ok(bare.includes('var VAPID_PUBLIC_KEY = null;'));
});

test('live-first with Web Push: an open page (that acks) gets the message on its socket; with its tabs closed the uid gets it through Web Push; paths says which', async (t) => {
  const w = await webpushWorld(t, { dispatch: { route: 'live-first', ackTimeout: '5s' } });
  const d = await w.daemon();
  const sub = w.fake.subscribe();
  const page = await resumeSession(t, d.wsUrl, 'uid1');
  page.ws.on('message', (data) => {
    const f = JSON.parse(data.toString()) as { id?: unknown };
    if (typeof f.id === 'string') page.ws.send(JSON.stringify({ type: 'ack', id: f.id }));
  });
  assert.equal((await ask(page, { type: 'push-subscribe', subscription: sub.subscription })).type, 'push-subscribed');
  const send = async (msg: string) =>
    (await (await fetch(`${d.httpUrl}/v1/send`, { method: 'POST', body: JSON.stringify({ uid: 'uid1', msg }) })).json()) as {
      route: string;
      paths: Record<string, string>;
      results: { transport: string; status: string }[];
    };
  const open = await send('open');
  assert.equal(open.route, 'live-first');
  assert.deepEqual(open.paths, { uid1: 'live' });
  assert.deepEqual(open.results.map((r) => [r.transport, r.status]), [['websocket', 'sent']]);
  assert.equal(w.fake.requests.length, 0, 'no browser push while the page is open');

  page.ws.close();
  await until(() => !d.registry.index('websocket').has('uid1'), 'the page to close');
  const closed = await send('closed');
  assert.deepEqual(closed.paths, { uid1: 'fallback' });
  assert.deepEqual(closed.results.map((r) => [r.transport, r.status]), [['webpush', 'sent']]);
  assert.equal(JSON.parse(w.fake.requests[0]?.plaintext ?? '{}').body, 'closed');
});
