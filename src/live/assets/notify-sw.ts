/**
 * The service worker served at `/notify-sw.js` (plain ES5, no build step), registered by
 * `subscribePush()` of the browser client. For each push it shows a notification:
 * - the payload is the Web Push transport's JSON `{id, title, body, badge, data}`
 *   (push/webpush/payload.ts); the title is `title` (default "notify"), the body is `body`, or
 *   the custom data as JSON when the message has no text (a data-only message);
 * - the notification's tag is the message id, so a message shown twice replaces itself;
 * - it then posts `{type: "notify-push", id, title, body, data}` to the open pages of its scope;
 * - a click closes it and focuses an open page of the scope (the one at `data.url` if open),
 *   or opens `data.url` (an http(s) URL in the message's data), else the scope.
 * A push whose data is not JSON is shown as text.
 */
export const NOTIFY_SW_JS = `/* notify service worker: shows Web Push messages as notifications. */
'use strict';
self.addEventListener('install', function () { self.skipWaiting(); });
self.addEventListener('activate', function (event) { event.waitUntil(self.clients.claim()); });

self.addEventListener('push', function (event) {
  var p = {};
  if (event.data) {
    try { p = event.data.json(); } catch (e) { p = { body: event.data.text() }; }
  }
  if (p === null || typeof p !== 'object') p = { body: String(p) };
  var data = p.data && typeof p.data === 'object' ? p.data : undefined;
  var title = typeof p.title === 'string' && p.title !== '' ? p.title : 'notify';
  var body = typeof p.body === 'string' ? p.body : data !== undefined ? JSON.stringify(data) : '';
  var url = data && typeof data.url === 'string' && /^https?:/i.test(data.url) ? data.url : self.registration.scope;
  var options = { body: body, data: { id: p.id, url: url, data: data } };
  if (typeof p.id === 'string') options.tag = p.id;
  event.waitUntil(
    self.registration.showNotification(title, options)
      .then(function () { return self.clients.matchAll({ type: 'window', includeUncontrolled: true }); })
      .then(function (pages) {
        pages.forEach(function (c) { c.postMessage({ type: 'notify-push', id: p.id, title: title, body: body, data: data }); });
      })
  );
});

self.addEventListener('notificationclick', function (event) {
  event.notification.close();
  var d = event.notification.data || {};
  var url = typeof d.url === 'string' ? d.url : self.registration.scope;
  event.waitUntil(
    self.clients.matchAll({ type: 'window', includeUncontrolled: true }).then(function (pages) {
      var best = null;
      for (var i = 0; i < pages.length; i++) {
        if (pages[i].url === url) { best = pages[i]; break; }
        if (best === null && pages[i].url.indexOf(self.registration.scope) === 0) best = pages[i];
      }
      if (best && 'focus' in best) return best.focus();
      return self.clients.openWindow(url);
    })
  );
});
`;
