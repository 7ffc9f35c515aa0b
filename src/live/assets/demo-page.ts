/**
 * The demo page served at `GET /` on the WebSocket port, after the original web.html: it binds
 * the uid from its URL (`/?uid=uid1`, default uid1) and lists every push as it arrives. It uses
 * the browser client (`/notify-client.js`): it resumes from the last message it saw, so pushes
 * sent while it was closed or reconnecting appear too, and it acks each one. When the daemon has a
 * webpush transport, its "enable notifications" button subscribes the browser to Web Push for the
 * uid (subscribePush), so pushes arrive as notifications when the tab is closed.
 */
export const DEMO_PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>notify demo</title>
<style>
  body { font: 15px/1.4 system-ui, sans-serif; margin: 2rem auto; max-width: 46rem; padding: 0 1rem; color: #222; }
  code, #pushes li { font-family: ui-monospace, monospace; }
  #state { padding: .1rem .5rem; border-radius: .3rem; background: #eee; }
  #state.open { background: #cfc; } #state.closed { background: #fcc; }
  #pushes { padding-left: 1.5rem; } #pushes li { white-space: pre-wrap; word-break: break-all; margin: .2rem 0; }
  #pushes li.gap { color: #a60; list-style: none; }
  .hint { color: #666; }
</style>
</head>
<body>
<h1>notify</h1>
<p>uid <code id="uid"></code>: <span id="state">connecting</span></p>
<p class="hint">Push to this page: <code id="cmd"></code><br>
Another uid: open this page with <code>?uid=NAME</code>.</p>
<p id="push-row"><button id="push" type="button" hidden>enable notifications</button> <span id="push-state" class="hint"></span></p>
<h2>Pushes</h2>
<ol id="pushes"></ol>
<script src="/notify-client.js"></script>
<script>
(function () {
  var uid = new URLSearchParams(location.search).get('uid') || 'uid1';
  var stateEl = document.getElementById('state');
  var list = document.getElementById('pushes');
  document.getElementById('uid').textContent = uid;
  document.getElementById('cmd').textContent = 'notify send --uid ' + JSON.stringify(uid) + ' --msg "hello"';
  function setState(text, cls) { stateEl.textContent = text; stateEl.className = cls; }
  var client = NotifyClient({
    uid: uid,
    onState: function (s, d) {
      if (s === 'open') setState('connected', 'open');
      else if (s === 'closed') setState('disconnected (' + d.code + (d.reason ? ' ' + d.reason : '') + '), retrying', 'closed');
      else if (s === 'gap') {
        var note = document.createElement('li');
        note.className = 'gap';
        note.textContent = '(older messages were no longer stored)';
        list.appendChild(note);
      }
    },
    onMessage: function (data, id) {
      var li = document.createElement('li');
      li.textContent = typeof data === 'string' ? data : JSON.stringify(data);
      li.title = id;
      list.appendChild(li);
    }
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
