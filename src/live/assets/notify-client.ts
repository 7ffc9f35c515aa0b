/**
 * The browser client served at `/notify-client.js` (plain ES5, no build step). It speaks the
 * resume protocol, revision 2 (`"v":2` in the bind): binds with the last id it saw, so a page
 * that drops for a while misses nothing; acks every message; skips any id it has already
 * handled; reconnects with exponential backoff and jitter, except after a permanent refusal.
 *
 * ```html
 * <script src="http://HOST:1234/notify-client.js"></script>
 * <script>
 *   var client = NotifyClient({ uid: 'uid1', onMessage: function (data, id) { ... } });
 * </script>
 * ```
 * Options: `uid` (required); `token` (with ws.auth: token: from `notify token`, an `nt1.` token
 * or a JWT, or a function returning one or a promise of one, called at each connect so an
 * expiring token can be renewed); `url` (default: the script's own host, ws/wss);
 * `onMessage(data, id, info)` with `info.replay` true for a message from the store (a resume
 * catching up) and false for a live one; `onState(state, detail)`; `storage` (default
 * localStorage, for the last id across reloads; null to keep it in memory).
 *
 * States: 'connecting'; 'open' (the socket is open and the bind sent, not yet accepted);
 * 'connected' (the daemon accepted the bind: its `{"type":"bound"}` answer); 'closed' (detail
 * `{code, reason}`; it retries); 'refused' (detail `{code, reason, message}`: a permanent refusal,
 * PERMANENT_CLOSE codes, after which it does not retry; 4410 (expired) is retried only when
 * `token` is a function and gives another token); 'gap'.
 * Returns `{ close(), lastId(), state(), refusal(), subscribePush(options), unsubscribePush() }`.
 *
 * Browser notifications (Web Push), when the daemon has a `type: webpush` transport (the script
 * is served with its VAPID public key; `NotifyClient.pushAvailable` says whether it has one):
 * `subscribePush({serviceWorker})` asks for notification permission, registers the service
 * worker (default `/notify-sw.js`, on the page's own origin: a page served elsewhere serves a
 * copy), subscribes with the daemon's key, and registers the subscription for this client's uid
 * over its session with a `push-subscribe` frame (queued until the session is bound). It
 * resolves with the subscription JSON once the daemon confirmed it, and rejects with the reason
 * the daemon or the browser gave. `unsubscribePush()` undoes it (`push-unsubscribe`).
 */
export const NOTIFY_CLIENT_JS = `/* notify browser client: resume, ack, reconnect. */
(function (root) {
  'use strict';
  var script = typeof document !== 'undefined' ? document.currentScript : null;
  var scriptUrl = script && script.src ? new URL(script.src) : null;
  var VAPID_PUBLIC_KEY = null; /* set by the daemon when it serves this script */
  /* Close codes that a new connection would get again: the client stops and says why. */
  var PERMANENT_CLOSE = {
    1008: 'the daemon cannot take this bind',
    4400: 'the token is malformed',
    4401: 'a token is required (ws.auth: token)',
    4403: 'the token signature does not match',
    4406: 'the token is for another uid',
    4410: 'the token has expired'
  };

  function keyBytes(b64) {
    var s = b64.replace(/-/g, '+').replace(/_/g, '/');
    while (s.length % 4) s += '=';
    var raw = atob(s);
    var out = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
    return out;
  }
  function sameKey(buffer, bytes) {
    if (!buffer) return false;
    var a = new Uint8Array(buffer);
    if (a.length !== bytes.length) return false;
    for (var i = 0; i < a.length; i++) if (a[i] !== bytes[i]) return false;
    return true;
  }

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
    var bound = false;
    var closed = false;
    var timer = null;
    var current = 'connecting';
    var refusal = null;
    /* The token of the latest connection, and the one an expiry refused (not offered again). */
    var sentToken = null;
    var expiredToken = null;
    /* push-subscribe / push-unsubscribe frames: sent one at a time, in order, resent after a reconnect until answered. */
    var pushQueue = [];
    var pushSent = false;

    function pushFlush() {
      if (pushSent || pushQueue.length === 0 || !ws || !bound || ws.readyState !== 1) return;
      pushSent = true;
      ws.send(pushQueue[0].frame);
    }
    function pushAnswer(frame) {
      var job = pushQueue.shift();
      pushSent = false;
      if (job) {
        if (frame.type === 'push-refused') job.reject(new Error(frame.reason || 'refused'));
        else job.resolve(frame);
      }
      pushFlush();
    }
    function pushFrame(frame) {
      return new Promise(function (resolve, reject) {
        pushQueue.push({ frame: JSON.stringify(frame), resolve: resolve, reject: reject });
        pushFlush();
      });
    }
    function pushRegistration(o) {
      if (typeof navigator === 'undefined' || !('serviceWorker' in navigator) || typeof PushManager === 'undefined') {
        return Promise.reject(new Error('this browser has no Web Push (or the page is not a secure context)'));
      }
      return navigator.serviceWorker.register((o && o.serviceWorker) || '/notify-sw.js').then(function () {
        return navigator.serviceWorker.ready;
      });
    }

    function state(s, detail) {
      current = s === 'gap' ? current : s;
      if (opts.onState) opts.onState(s, detail);
    }
    function refuse(code, reason) {
      closed = true;
      refusal = { code: code, reason: reason || '', message: 'refused: ' + (reason || PERMANENT_CLOSE[code]) + ' (' + code + ')' };
      pushQueue.splice(0).forEach(function (job) { job.reject(new Error(refusal.message)); });
      state('refused', refusal);
    }
    function accepted() {
      if (bound) return;
      bound = true;
      delayMs = 250;
      pushSent = false;
      state('connected');
      pushFlush();
    }
    function retry() {
      var wait = delayMs / 2 + Math.random() * delayMs / 2;
      delayMs = Math.min(delayMs * 2, 10000);
      timer = setTimeout(connect, wait);
    }
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
      var t;
      try { t = typeof opts.token === 'function' ? opts.token() : opts.token; } catch (err) { t = Promise.reject(err); }
      if (t && typeof t.then === 'function') {
        t.then(open, function (err) {
          state('closed', { code: 0, reason: 'token: ' + (err && err.message ? err.message : String(err)) });
          if (!closed) retry();
        });
      } else {
        open(t);
      }
    }
    function open(token) {
      if (closed) return;
      token = token || null;
      if (expiredToken !== null && token === expiredToken) { refuse(4410, 'token expired'); return; }
      sentToken = token;
      ws = new WebSocket(url);
      ws.onopen = function () {
        var bind = { type: 'bind', uid: opts.uid, since: last, v: 2 };
        if (token) bind.token = token;
        ws.send(JSON.stringify(bind));
        state('open');
      };
      ws.onmessage = function (e) {
        var frame;
        try { frame = JSON.parse(e.data); } catch (err) { return; }
        if (frame && frame.type === 'bound') { accepted(); return; }
        /* A daemon that does not answer binds (older than revision 2): its first frame says it took the bind. */
        accepted();
        if (frame && frame.type === 'gap') { state('gap', frame); return; }
        if (frame && typeof frame.type === 'string' && frame.type.indexOf('push-') === 0) { pushAnswer(frame); return; }
        if (!frame || typeof frame.id !== 'string') return;
        ws.send(JSON.stringify({ type: 'ack', id: frame.id }));
        if (seenSet[frame.id]) return;
        remember(frame.id);
        if (opts.onMessage) opts.onMessage(frame.data, frame.id, { replay: frame.replay === true });
      };
      ws.onclose = function (e) {
        ws = null;
        bound = false;
        pushSent = false;
        if (closed) { state('closed', { code: e.code, reason: e.reason }); return; }
        if (e.code === 4410 && typeof opts.token === 'function') {
          /* Expired: the token function may give a new one; the same one again is a refusal. */
          expiredToken = sentToken;
        } else if (PERMANENT_CLOSE[e.code]) {
          refuse(e.code, e.reason);
          return;
        }
        state('closed', { code: e.code, reason: e.reason });
        retry();
      };
    }
    connect();
    return {
      close: function () {
        closed = true;
        clearTimeout(timer);
        if (ws) ws.close(1000, 'closed by the page');
        pushQueue.splice(0).forEach(function (job) { job.reject(new Error('the client was closed')); });
      },
      lastId: function () { return last; },
      /* 'connecting' | 'open' | 'connected' | 'closed' | 'refused' */
      state: function () { return current; },
      /* After a permanent refusal: {code, reason, message}; else null. */
      refusal: function () { return refusal; },
      subscribePush: function (o) {
        var key = (o && o.vapidPublicKey) || VAPID_PUBLIC_KEY;
        if (!key) return Promise.reject(new Error('the daemon has no webpush transport (transports.NAME.type: webpush)'));
        var bytes = keyBytes(key);
        var reg;
        var perm = typeof Notification === 'undefined' ? Promise.resolve('denied') : Promise.resolve(Notification.requestPermission());
        return perm.then(function (p) {
          if (p !== 'granted') throw new Error('notifications are not allowed on this page (' + p + ')');
          return pushRegistration(o);
        }).then(function (r) {
          reg = r;
          return reg.pushManager.getSubscription();
        }).then(function (sub) {
          if (sub && sameKey(sub.options && sub.options.applicationServerKey, bytes)) return sub;
          /* None yet, or made with another key (the daemon's key changed): subscribe anew. */
          return (sub ? sub.unsubscribe() : Promise.resolve()).then(function () {
            return reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: bytes });
          });
        }).then(function (sub) {
          var json = typeof sub.toJSON === 'function' ? sub.toJSON() : sub;
          var subscription = { endpoint: json.endpoint, keys: { p256dh: json.keys.p256dh, auth: json.keys.auth } };
          return pushFrame({ type: 'push-subscribe', subscription: subscription }).then(function () { return subscription; });
        });
      },
      unsubscribePush: function (o) {
        return pushRegistration(o).then(function (reg) {
          return reg.pushManager.getSubscription();
        }).then(function (sub) {
          if (!sub) return false;
          var json = sub.toJSON();
          var subscription = { endpoint: json.endpoint, keys: { p256dh: json.keys.p256dh, auth: json.keys.auth } };
          return pushFrame({ type: 'push-unsubscribe', subscription: subscription }).then(function (answer) {
            return sub.unsubscribe().then(function () { return answer.removed === true; });
          });
        });
      }
    };
  }

  NotifyClient.pushAvailable = VAPID_PUBLIC_KEY !== null;
  NotifyClient.PERMANENT_CLOSE = PERMANENT_CLOSE;
  root.NotifyClient = NotifyClient;
  if (typeof module === 'object' && module.exports) module.exports = NotifyClient;
})(typeof self !== 'undefined' ? self : this);
`;

/** The client script as served: with the daemon's VAPID public key (null: no webpush transport). */
export function notifyClientJs(vapidPublicKey: string | undefined): string {
  if (vapidPublicKey === undefined) return NOTIFY_CLIENT_JS;
  return NOTIFY_CLIENT_JS.replace('var VAPID_PUBLIC_KEY = null;', `var VAPID_PUBLIC_KEY = ${JSON.stringify(vapidPublicKey)};`);
}
