/**
 * The demo page served at `GET /` on the WebSocket port, after the original web.html: it binds
 * the uid from its URL (`/?uid=uid1`, default uid1; with ws.auth: token, `&token=` from
 * `notify token`, an `nt1.` token or a JWT) and lists every push as it arrives, newest last, each
 * with its time (when it was published, read from its id; else when it arrived) and a mark:
 * `live`, or `replayed` for one caught up from the store. A structured push (a JSON object) shows
 * as a title (`title`) and a body (`msg`, `body`, or else its fields as `key: value`), with its
 * raw JSON in a <details>; a text push as its text. Everything is set as text, never as HTML.
 * It uses the browser client (`/notify-client.js`): it resumes from the last message it saw, so
 * pushes sent while it was closed or reconnecting appear too, and it acks each one; a permanent
 * refusal (a bad token) stops it, with the reason shown. When the daemon has a webpush transport,
 * its "enable notifications" button subscribes the browser to Web Push for the uid
 * (subscribePush), so pushes arrive as notifications when the tab is closed.
 */
export const DEMO_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>notify demo</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 2rem auto; max-width: 46rem; padding: 0 1rem; color: #222; }
  code { font-family: ui-monospace, monospace; }
  #state { padding: .1rem .5rem; border-radius: .3rem; background: #eee; }
  #state.open { background: #cfc; } #state.closed, #state.refused { background: #fcc; }
  #state.refused { font-weight: 600; }
  #pushes { padding-left: 1.5rem; } #pushes li { margin: .4rem 0; }
  #pushes li.gap { color: #a60; list-style: none; }
  .meta { font-size: .8rem; color: #666; }
  .mark { padding: 0 .35rem; border-radius: .25rem; margin-left: .4rem; font-size: .75rem; }
  li.live .mark { background: #dfd; color: #050; } li.replay .mark { background: #eef; color: #336; }
  li.replay { opacity: .85; }
  .title { display: block; font-weight: 600; overflow-wrap: anywhere; }
  .body, .text, .raw { white-space: pre-wrap; word-break: break-word; }
  .text, .raw { font-family: ui-monospace, monospace; }
  details summary { cursor: pointer; font-size: .8rem; color: #666; }
  .raw { margin: .2rem 0 0; padding: .3rem .5rem; background: #f6f6f6; }
  .hint { color: #666; }
</style>
</head>
<body>
<h1>notify</h1>
<p>uid <code id="uid"></code>: <span id="state">connecting</span></p>
<p class="hint">Push to this page: <code id="cmd"></code><br>
Another uid: open this page with <code>?uid=NAME</code>; with <code>ws.auth: token</code>, add
<code>&amp;token=</code> a token from <code>notify token --uid NAME</code>.</p>
<p id="push-row"><button id="push" type="button" hidden>enable notifications</button> <span id="push-state" class="hint"></span></p>
<h2>Pushes</h2>
<ol id="pushes"></ol>
<script src="/notify-client.js"></script>
<script>
(function () {
  var params = new URLSearchParams(location.search);
  var uid = params.get('uid') || 'uid1';
  var token = params.get('token') || undefined;
  var stateEl = document.getElementById('state');
  var list = document.getElementById('pushes');
  document.getElementById('uid').textContent = uid;
  document.getElementById('cmd').textContent = 'notify send --uid ' + JSON.stringify(uid) + ' --msg "hello"';
  function setState(text, cls) { stateEl.textContent = text; stateEl.className = cls; }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  }
  function pad(n) { return (n < 10 ? '0' : '') + n; }
  var CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
  // A message id is a ULID: its first 10 characters are the publish time in ms. Other ids (a
  // publisher's own) say nothing: then the time it arrived.
  function publishedAt(id) {
    if (typeof id !== 'string' || !/^[0-9A-HJKMNP-TV-Z]{26}$/.test(id)) return null;
    var ms = 0;
    for (var i = 0; i < 10; i++) ms = ms * 32 + CROCKFORD.indexOf(id.charAt(i));
    return ms > Date.UTC(2020, 0, 1) && ms < Date.now() + 86400000 ? ms : null;
  }
  function timeEl(id) {
    var ms = publishedAt(id);
    var at = new Date(ms === null ? Date.now() : ms);
    var today = new Date().toDateString() === at.toDateString();
    var text = (today ? '' : at.getFullYear() + '-' + pad(at.getMonth() + 1) + '-' + pad(at.getDate()) + ' ') +
      pad(at.getHours()) + ':' + pad(at.getMinutes()) + ':' + pad(at.getSeconds());
    var t = el('time', '', text);
    t.setAttribute('datetime', at.toISOString());
    t.title = (ms === null ? 'received ' : 'published ') + at.toString();
    return t;
  }
  function short(v) {
    var s = typeof v === 'string' ? v : JSON.stringify(v);
    return s.length > 200 ? s.slice(0, 200) + '…' : s;
  }
  // A structured push: title from "title", body from "msg" or "body", else its other fields.
  function structured(li, data) {
    if (typeof data.title === 'string' || typeof data.title === 'number') li.appendChild(el('span', 'title', String(data.title)));
    var body;
    if (typeof data.msg === 'string') body = data.msg;
    else if (typeof data.body === 'string') body = data.body;
    else {
      var fields = [];
      for (var k in data) if (Object.prototype.hasOwnProperty.call(data, k) && k !== 'title' && k !== 'uid') fields.push(k + ': ' + short(data[k]));
      body = fields.join('\\n');
    }
    if (body !== '') li.appendChild(el('div', 'body', body));
    var raw = el('details', 'json');
    raw.appendChild(el('summary', '', 'raw JSON'));
    raw.appendChild(el('pre', 'raw', JSON.stringify(data, null, 2)));
    li.appendChild(raw);
  }
  function show(data, id, info) {
    var replay = !!(info && info.replay);
    var li = el('li', 'push ' + (replay ? 'replay' : 'live'));
    li.title = id;
    li.setAttribute('data-id', id);
    var meta = el('div', 'meta');
    meta.appendChild(timeEl(id));
    meta.appendChild(el('span', 'mark', replay ? 'replayed' : 'live'));
    li.appendChild(meta);
    if (data !== null && typeof data === 'object' && !Array.isArray(data)) structured(li, data);
    else li.appendChild(el('div', 'text', typeof data === 'string' ? data : JSON.stringify(data)));
    list.appendChild(li);
  }
  var client = NotifyClient({
    uid: uid,
    token: token,
    onState: function (s, d) {
      if (s === 'open') setState('binding', 'binding');
      else if (s === 'connected') setState('connected', 'open');
      else if (s === 'refused') setState(d.message, 'refused');
      else if (s === 'closed') setState('disconnected (' + d.code + (d.reason ? ' ' + d.reason : '') + '), retrying', 'closed');
      else if (s === 'gap') {
        var note = el('li', 'gap', '(older messages were no longer stored)');
        list.appendChild(note);
      }
    },
    onMessage: show
  });
  // Browser notifications: a push reaches this uid even when no tab is open.
  var pushButton = document.getElementById('push');
  var pushState = document.getElementById('push-state');
  if (!NotifyClient.pushAvailable) {
    pushState.textContent = 'Browser notifications: configure a webpush transport (notify vapid) to enable them.';
  } else {
    pushButton.hidden = false;
    pushButton.addEventListener('click', function () {
      pushButton.disabled = true;
      pushState.textContent = 'subscribing…';
      client.subscribePush().then(function () {
        pushState.textContent = 'notifications on: pushes to ' + uid + ' arrive even with this tab closed';
      }, function (err) {
        pushButton.disabled = false;
        pushState.textContent = 'not enabled: ' + (err && err.message ? err.message : String(err));
      });
    });
  }
})();
</script>
</body>
</html>
`;
