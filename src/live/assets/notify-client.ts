/**
 * The browser client served at `/notify-client.js` (plain ES5, no build step). It speaks the
 * resume protocol: binds with the last id it saw, so a page that drops for a while misses
 * nothing; acks every message; skips any id it has already handled; reconnects with
 * exponential backoff and jitter.
 *
 * ```html
 * <script src="http://HOST:1234/notify-client.js"></script>
 * <script>
 *   var client = NotifyClient({ uid: 'uid1', onMessage: function (data, id) { ... } });
 * </script>
 * ```
 * Options: `uid` (required); `token` (with ws.auth: token: from `notify token`, or a function
 * returning one, called at each connect so an expiring token can be renewed); `url` (default:
 * the script's own host, ws/wss); `onMessage(data,
 * id)`; `onState(state, detail)` with 'connecting' | 'open' | 'closed' | 'gap'; `storage`
 * (default localStorage, for the last id across reloads; null to keep it in memory).
 * Returns `{ close(), lastId() }`.
 */
export const NOTIFY_CLIENT_JS = `/* notify browser client: resume, ack, reconnect. */
(function (root) {
  'use strict';
  var script = typeof document !== 'undefined' ? document.currentScript : null;
  var scriptUrl = script && script.src ? new URL(script.src) : null;

  function NotifyClient(opts) {
    if (!opts || typeof opts.uid !== 'string' || opts.uid === '') throw new TypeError('NotifyClient: uid is required');
    var base = scriptUrl || (typeof location !== 'undefined' ? new URL(location.href) : null);
    var url = opts.url || (base ? (base.protocol === 'https:' ? 'wss://' : 'ws://') + base.host + '/' : null);
    if (!url) throw new TypeError('NotifyClient: url is required');
    var storage = opts.storage === undefined ? (typeof localStorage !== 'undefined' ? localStorage : null) : opts.storage;
    var key = 'notify:lastId:' + opts.uid;
    var last = null;
    try { last = storage ? storage.getItem(key) : null; } catch (e) { last = null; }
    var seen = [];
    var seenSet = {};
    var delayMs = 250;
    var ws = null;
    var closed = false;
    var timer = null;

    function state(s, detail) { if (opts.onState) opts.onState(s, detail); }
    function remember(id) {
      last = id;
      try { if (storage) storage.setItem(key, id); } catch (e) { /* storage full or blocked */ }
      seenSet[id] = true;
      seen.push(id);
      if (seen.length > 1000) delete seenSet[seen.shift()];
    }
    function connect() {
      if (closed) return;
      state('connecting');
      ws = new WebSocket(url);
      ws.onopen = function () {
        delayMs = 250;
        var bind = { type: 'bind', uid: opts.uid, since: last };
        var token = typeof opts.token === 'function' ? opts.token() : opts.token;
        if (token) bind.token = token;
        ws.send(JSON.stringify(bind));
        state('open');
      };
      ws.onmessage = function (e) {
        var frame;
        try { frame = JSON.parse(e.data); } catch (err) { return; }
        if (frame && frame.type === 'gap') { state('gap', frame); return; }
        if (!frame || typeof frame.id !== 'string') return;
        ws.send(JSON.stringify({ type: 'ack', id: frame.id }));
        if (seenSet[frame.id]) return;
        remember(frame.id);
        if (opts.onMessage) opts.onMessage(frame.data, frame.id);
      };
      ws.onclose = function (e) {
        ws = null;
        state('closed', { code: e.code, reason: e.reason });
        if (closed) return;
        var wait = delayMs / 2 + Math.random() * delayMs / 2;
        delayMs = Math.min(delayMs * 2, 10000);
        timer = setTimeout(connect, wait);
      };
    }
    connect();
    return {
      close: function () { closed = true; clearTimeout(timer); if (ws) ws.close(1000, 'closed by the page'); },
      lastId: function () { return last; }
    };
  }

  root.NotifyClient = NotifyClient;
  if (typeof module === 'object' && module.exports) module.exports = NotifyClient;
})(typeof self !== 'undefined' ? self : this);
`;
