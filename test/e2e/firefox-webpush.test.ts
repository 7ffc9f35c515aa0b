import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { PublishReport } from '../../src/types.js';
import { cli } from '../helpers/cli.js';
import { until } from '../helpers/clients.js';
import { startFakeAutopush } from '../helpers/fake-autopush.js';
import { SKIP, SLOW_MS, launchFirefox, waitFor } from '../helpers/firefox.js';
import { webpushWorld } from '../helpers/webpush.js';

// Web Push end to end in Debian's Firefox ESR, offline: Firefox's push service is pointed at a
// local fake of Mozilla's (dom.push.serverURL, WebSocket protocol plus the HTTPS endpoint), so
// the subscription is Firefox's own (its keys, the fake's endpoint), notify encrypts for those
// keys and POSTs to the endpoint, the fake relays the body over the WebSocket, and Firefox
// decrypts it and runs notify's service worker, which shows the notification.


test('firefox webpush: the demo page subscribes through Firefox’s PushManager (fake Mozilla push service); tab closed, `notify send` goes through Web Push and Firefox decrypts it and shows the notification', { skip: SKIP }, async (t) => {
  const autopush = await startFakeAutopush();
  t.after(() => autopush.close());
  const w = await webpushWorld(t, { dispatch: { route: 'live-first' } });
  // The transport trusts the fake Mozilla push service's certificate (its endpoints are https).
  writeFileSync(join(w.dir, 'autopush-ca.pem'), autopush.ca);
  (w.raw.transports as { webpush: Record<string, unknown> }).webpush.ca = './autopush-ca.pem';
  const d = await w.daemon();
  const origin = `http://${d.addresses().ws}`;

  const ff = await launchFirefox(t, {
    'dom.push.serverURL': autopush.serverUrl,
    'dom.push.testing.allowInsecureServerURL': true,
    // Firefox's automation defaults (applied when its remote agent starts) turn push off; a
    // value in user.js wins.
    'dom.push.connection.enabled': true,
    // Headless, with no desktop notification daemon, the system backend (libnotify) fails and
    // showNotification() rejects with NS_ERROR_FAILURE; Firefox's own (XUL) alerts work headless.
    'alerts.useSystemBackend': false,
  });
  const { bidi } = ff;
  const why = () => `firefox ${ff.version} stderr:\n${ff.stderr()}`;
  await bidi.send('permissions.setPermission', { descriptor: { name: 'notifications' }, state: 'granted', origin });

  const tab = ff.firstTab;
  await bidi.navigate(tab, `${origin}/?uid=uid1`);
  await waitFor<string>(bidi, tab, `document.getElementById('state').textContent`, (s) => s === 'connected', 'the demo page connects');
  assert.equal(await bidi.evaluate(tab, `document.getElementById('push').hidden`), false, 'the enable notifications button is shown');

  // A click (a user gesture) on "enable notifications": subscribePush() for real.
  await bidi.evaluate(tab, `document.getElementById('push').click()`, { userActivation: true });
  const state = await waitFor<string>(bidi, tab, `document.getElementById('push-state').textContent`, (s) => /^(notifications on|not enabled)/.test(s), 'subscribePush settles');
  assert.match(state, /^notifications on/, why());

  // The subscription is Firefox's: its endpoint is on the fake, made with the daemon's VAPID key.
  const sub = await waitFor<{ endpoint: string; keys: { p256dh: string; auth: string } } | null>(
    bidi,
    tab,
    `navigator.serviceWorker.ready.then((r) => r.pushManager.getSubscription()).then((s) => s && s.toJSON())`,
    (s) => s !== null,
    'the page has a push subscription',
  );
  assert.ok(sub);
  const channelID = sub.endpoint.slice(`${autopush.origin}/wpush/`.length);
  assert.equal(sub.endpoint, `${autopush.origin}/wpush/${channelID}`);
  assert.equal(autopush.channels.get(channelID), w.vapid.publicKey, 'Firefox registered the channel with the daemon’s VAPID key');
  assert.deepEqual(d.registry.index('webpush').targets('uid1'), [JSON.stringify({ endpoint: sub.endpoint, keys: { p256dh: sub.keys.p256dh, auth: sub.keys.auth } })], 'registered for the uid over the session');

  const send = async (args: string[]): Promise<PublishReport> => {
    const r = await cli(['send', '--server', d.httpUrl, '--uid', 'uid1', '--json', ...args]);
    assert.equal(r.code, 0, r.err);
    return JSON.parse(r.out) as PublishReport;
  };

  // The tab is open: the message goes to its socket, not through Web Push.
  const open = await send(['--title', 'Hi', '--msg', 'tab open']);
  assert.deepEqual(open.paths, { uid1: 'live' });
  assert.deepEqual(open.results.map((r) => [r.transport, r.status]), [['websocket', 'sent']]);
  assert.equal(autopush.messages.length, 0);

  // Another page of the origin, bound to no uid, listens to the service worker; the uid's tab closes.
  const other = await bidi.newTab();
  await bidi.navigate(other, `${origin}/notify-sw.js`);
  await bidi.evaluate(other, `window.__pushes = []; navigator.serviceWorker.onmessage = (e) => window.__pushes.push(e.data); true`);
  await bidi.close(tab);
  await until(() => !d.registry.index('websocket').has('uid1'), 'the tab to leave', SLOW_MS);

  const closed = await send(['--title', 'Hi', '--msg', 'tab closed: grüße ✓']);
  assert.deepEqual(closed.paths, { uid1: 'fallback' });
  assert.deepEqual(closed.results.map((r) => [r.transport, r.status]), [['webpush', 'sent']]);
  assert.equal(autopush.messages.length, 1);
  const first = autopush.messages[0] as (typeof autopush.messages)[number];
  assert.equal(first.channelID, channelID);
  assert.equal(await autopush.acked(first.version), 100, `Firefox acked the push as delivered (100; 101 is "did not decrypt"); ${why()}`);

  // What the service worker got from Firefox's decryption is what was sent.
  const pushes = await waitFor<unknown[]>(bidi, other, 'window.__pushes', (p) => p.length >= 1, 'the service worker tells the open page');
  assert.deepEqual(pushes, [{ type: 'notify-push', id: closed.id, title: 'Hi', body: 'tab closed: grüße ✓' }]);
  const shown = `navigator.serviceWorker.getRegistration('/').then((r) => r ? r.getNotifications() : []).then((ns) => ns.map((n) => ({ title: n.title, body: n.body, tag: n.tag })))`;
  assert.deepEqual(await waitFor<unknown[]>(bidi, other, shown, (n) => n.length >= 1, 'the notification is shown'), [{ title: 'Hi', body: 'tab closed: grüße ✓', tag: closed.id }]);

  // A data-only message: the worker shows its data.
  const dataOnly = await send(['--data', 'percent=88%']);
  assert.deepEqual(dataOnly.results.map((r) => [r.transport, r.status]), [['webpush', 'sent']]);
  const second = autopush.messages[1] as (typeof autopush.messages)[number];
  assert.equal(await autopush.acked(second.version), 100, why());
  assert.deepEqual((await waitFor<unknown[]>(bidi, other, 'window.__pushes', (p) => p.length >= 2, 'the second push'))[1], {
    type: 'notify-push',
    id: dataOnly.id,
    title: 'notify',
    body: '{"percent":"88%"}',
    data: { percent: '88%' },
  });

  assert.deepEqual(autopush.refused, []);
  const foreign = (): string[] => ff.foreign;
  assert.deepEqual(foreign(), [], 'Firefox tried to reach no host but 127.0.0.1');
  // ... and the trap does see an attempt: a page on another host is refused and recorded.
  const probe = await bidi.newTab();
  await bidi.navigate(probe, 'http://trap-check.invalid/');
  assert.ok(foreign().includes('GET http://trap-check.invalid/'), JSON.stringify(foreign()));
});
