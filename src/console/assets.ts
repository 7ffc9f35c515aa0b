/**
 * The operator console served at `/console` on the HTTP API port: one page, its script and its
 * style sheet, plain ES2020 for current Chromium and Firefox, no framework, nothing fetched from
 * elsewhere. The files carry no data: the script asks the API for everything (`/v1/status`,
 * `/metrics`, `/v1/failures`, `/v1/send`, `/v1/tokens`, `/v1/messages/{id}`, `/v1/uids/{uid}`)
 * with `Authorization: Bearer <http.token>` when the daemon has one (kept in sessionStorage).
 * Everything it shows is set as text (`textContent`), never parsed as HTML.
 */

export const CONSOLE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>notify console</title>
<link rel="stylesheet" href="/console/console.css">
<script src="/console/console.js" defer></script>
</head>
<body>
<header class="bar">
  <h1>notify <span class="muted">console</span></h1>
  <span id="conn" class="pill">loading</span>
  <span id="version" class="muted"></span>
  <button id="logout" type="button" hidden>Log out</button>
</header>
<main>
<p id="loading" class="muted">Loading…</p>
<p id="fatal" class="error" role="alert" hidden></p>

<section id="login" class="card narrow" hidden>
  <h2>Log in</h2>
  <p>This daemon's API needs its token: the value of <code>http.token</code> in its config.</p>
  <form id="login-form" autocomplete="off">
    <label for="login-token">API token</label>
    <input id="login-token" name="token" type="password" required spellcheck="false">
    <button type="submit">Log in</button>
  </form>
  <p id="login-error" class="error" role="alert"></p>
</section>

<div id="app" hidden>
  <section class="card wide" aria-labelledby="h-live">
    <h2 id="h-live">Live</h2>
    <div class="figures">
      <div class="fig"><span class="fig-v" id="f-sessions">–</span><span class="fig-l">sessions</span></div>
      <div class="fig"><span class="fig-v" id="f-uids">–</span><span class="fig-l">uids online</span></div>
      <div class="fig"><span class="fig-v" id="f-connections">–</span><span class="fig-l">connections</span></div>
      <div class="fig"><span class="fig-v" id="f-pub-rate">–</span><span class="fig-l">publishes/s</span></div>
      <div class="fig"><span class="fig-v" id="f-del-rate">–</span><span class="fig-l">deliveries/s</span></div>
      <div class="fig"><span class="fig-v" id="f-published">–</span><span class="fig-l">published since start</span></div>
      <div class="fig"><span class="fig-v" id="f-uptime">–</span><span class="fig-l">uptime</span></div>
      <div class="fig"><span class="fig-v" id="f-history">–</span><span class="fig-l">messages stored</span></div>
    </div>
    <div class="chart-box">
      <div class="chart-head">
        <span class="legend"><span class="key pub"></span>publishes/s <span class="key del"></span>deliveries/s (sent)</span>
        <span id="chart-max" class="muted"></span>
      </div>
      <svg id="chart" viewBox="0 0 600 160" preserveAspectRatio="none" role="img" aria-label="publishes and deliveries per second over the last 5 minutes">
        <line class="grid" x1="0" y1="5" x2="600" y2="5"></line>
        <line class="grid" x1="0" y1="82.5" x2="600" y2="82.5"></line>
        <line class="grid" x1="0" y1="160" x2="600" y2="160"></line>
        <polyline id="line-del" class="del" points=""></polyline>
        <polyline id="line-pub" class="pub" points=""></polyline>
      </svg>
      <div class="chart-foot muted"><span>5 min ago</span><span>sampled every 2 s</span><span>now</span></div>
    </div>
  </section>

  <section class="card wide" aria-labelledby="h-transports">
    <h2 id="h-transports">Transports</h2>
    <div class="scroll"><table id="transports">
      <thead><tr><th>transport</th><th>state</th><th>sent</th><th>failed</th><th>rejected</th><th>retries</th><th>details</th></tr></thead>
      <tbody></tbody>
    </table></div>
  </section>

  <section class="card wide" aria-labelledby="h-failures">
    <h2 id="h-failures">Recent failures</h2>
    <p class="muted">Provider deliveries that were rejected or given up, newest first (this node, since it started).</p>
    <p id="failures-empty" class="muted">None.</p>
    <div class="scroll"><table id="failures" hidden>
      <thead><tr><th>at</th><th>uid</th><th>transport</th><th>status</th><th>reason</th><th>attempts</th><th>message</th><th>target</th></tr></thead>
      <tbody></tbody>
    </table></div>
  </section>

  <section class="card" aria-labelledby="h-send" id="send-card">
    <h2 id="h-send">Send</h2>
    <form id="send-form" autocomplete="off">
      <fieldset>
        <legend>To</legend>
        <label class="inline"><input type="radio" name="audience" value="uid" checked> a uid</label>
        <label class="inline"><input type="radio" name="audience" value="broadcast"> everyone (broadcast)</label>
      </fieldset>
      <label for="send-uid">uid</label>
      <input id="send-uid" name="uid" spellcheck="false">
      <label for="send-msg">text</label>
      <textarea id="send-msg" name="msg" rows="3" required></textarea>
      <label for="send-route">route</label>
      <select id="send-route" name="route">
        <option value="">daemon default</option>
        <option value="all">all: every transport at once</option>
        <option value="live-first">live-first: live sessions, push if none acks</option>
      </select>
      <button type="submit">Send</button>
    </form>
    <div id="send-report" aria-live="polite"></div>
  </section>

  <section class="card" aria-labelledby="h-token" id="token-card" hidden>
    <h2 id="h-token">Connection token</h2>
    <p class="muted">ws.auth is token: a page binds a uid with a token signed with ws.secret.</p>
    <form id="token-form" autocomplete="off">
      <label for="token-uid">uid</label>
      <input id="token-uid" name="uid" required spellcheck="false">
      <label for="token-ttl">valid for</label>
      <input id="token-ttl" name="ttl" value="1h" spellcheck="false">
      <button type="submit">Generate</button>
    </form>
    <div id="token-out" aria-live="polite"></div>
  </section>

  <section class="card wide" aria-labelledby="h-message">
    <h2 id="h-message">Message</h2>
    <form id="message-form" class="row" autocomplete="off">
      <label for="message-id" class="sr">message id</label>
      <input id="message-id" name="id" placeholder="message id" required spellcheck="false">
      <button type="submit">Look up</button>
    </form>
    <div id="message-out" aria-live="polite"></div>
  </section>

  <section class="card wide" aria-labelledby="h-uid">
    <h2 id="h-uid">Uid</h2>
    <form id="uid-form" class="row" autocomplete="off">
      <label for="uid-id" class="sr">uid</label>
      <input id="uid-id" name="uid" placeholder="uid" required spellcheck="false">
      <button type="submit">Look up</button>
    </form>
    <div id="uid-out" aria-live="polite"></div>
  </section>
</div>
</main>
</body>
</html>
`;

export const CONSOLE_CSS = `*, *::before, *::after { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; text-size-adjust: 100%; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1d232a; background: #f3f5f7; }
code, pre, td, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 12.5px; }
h1 { font-size: 18px; margin: 0; white-space: nowrap; }
h2 { font-size: 15px; margin: 0 0 .6rem; }
h3 { font-size: 13px; margin: .9rem 0 .3rem; }
.muted { color: #5f6b76; }
.error { color: #a4161a; font-weight: 600; }
.error:empty { display: none; }
.ok { color: #1b6e2c; }
.sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
.bar { display: flex; flex-wrap: wrap; align-items: center; gap: .4rem .8rem; padding: .6rem 1rem; background: #14202b; color: #fff; }
.bar .muted { color: #a9b6c2; }
.bar #logout { margin-left: auto; }
.pill { padding: .05rem .55rem; border-radius: 1rem; background: #44515d; font-size: 12px; }
.pill.live { background: #1f7a3a; }
.pill.down { background: #a4161a; }
main { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 1rem; padding: 1rem; max-width: 1400px; margin: 0 auto; }
main > p, #app { grid-column: 1 / -1; }
#app { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 1rem; }
#app[hidden], [hidden] { display: none !important; }
.card { background: #fff; border: 1px solid #dde3e8; border-radius: 8px; padding: .9rem 1rem; min-width: 0; }
.card.wide { grid-column: 1 / -1; }
.card.narrow { grid-column: 1 / -1; max-width: 28rem; width: 100%; justify-self: center; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(9rem, 1fr)); gap: .5rem; }
.fig { background: #f6f8fa; border-radius: 6px; padding: .45rem .6rem; min-width: 0; }
.fig-v { display: block; font-size: 22px; font-weight: 600; overflow-wrap: anywhere; }
.fig-l { display: block; color: #5f6b76; font-size: 12px; }
.chart-box { margin-top: .8rem; }
.chart-head, .chart-foot { display: flex; flex-wrap: wrap; justify-content: space-between; gap: .2rem 1rem; font-size: 12px; }
.legend .key { display: inline-block; width: .9rem; height: .22rem; vertical-align: middle; margin: 0 .25rem 0 .5rem; border-radius: 1px; }
.legend .key:first-child { margin-left: 0; }
.key.pub { background: #2563c9; } .key.del { background: #e07b00; }
#chart { display: block; width: 100%; height: 170px; background: #fbfcfd; border: 1px solid #e6eaee; border-radius: 4px; margin: .3rem 0; }
#chart .grid { stroke: #e3e8ed; stroke-width: 1; vector-effect: non-scaling-stroke; }
#chart polyline { fill: none; stroke-width: 2; vector-effect: non-scaling-stroke; stroke-linejoin: round; }
#chart polyline.pub { stroke: #2563c9; } #chart polyline.del { stroke: #e07b00; stroke-width: 4; }
.scroll { overflow-x: auto; max-width: 100%; -webkit-overflow-scrolling: touch; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: .3rem .5rem; border-bottom: 1px solid #edf0f3; vertical-align: top; white-space: nowrap; }
th { font-size: 12px; color: #5f6b76; font-weight: 600; }
td.wrap { white-space: normal; min-width: 12rem; overflow-wrap: anywhere; }
td.clip { max-width: 12rem; overflow: hidden; text-overflow: ellipsis; }
.st-sent, .st-running { color: #1b6e2c; } .st-failed, .st-gave-up, .st-closed { color: #a4161a; } .st-rejected { color: #8a3ffc; } .st-retrying, .st-pending { color: #9a5b00; }
form { display: grid; gap: .35rem; }
form.row { grid-template-columns: minmax(0, 1fr) auto; max-width: 40rem; }
#send-form, #token-form { max-width: 40rem; }
fieldset { border: 0; padding: 0; margin: 0 0 .2rem; display: flex; flex-wrap: wrap; gap: .2rem 1rem; }
legend { padding: 0; font-size: 12px; color: #5f6b76; margin-bottom: .15rem; }
label { font-size: 12px; color: #5f6b76; }
label.inline { font-size: 14px; color: inherit; }
input:not([type=radio]), textarea, select { width: 100%; min-width: 0; font: inherit; padding: .4rem .5rem; border: 1px solid #c3ccd5; border-radius: 5px; background: #fff; color: inherit; }
textarea { resize: vertical; }
button { font: inherit; padding: .4rem .9rem; border-radius: 5px; border: 1px solid #1d4f9c; background: #2563c9; color: #fff; cursor: pointer; justify-self: start; }
button:disabled { opacity: .6; cursor: default; }
.bar button { background: transparent; border-color: #6b7b89; }
button.link { background: none; border: 0; padding: 0; color: #1d4f9c; text-decoration: underline; font: inherit; cursor: pointer; text-align: left; }
td button.link { display: inline-block; max-width: 11rem; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; vertical-align: bottom; }
input:disabled { background: #eef1f4; color: #8a96a1; }
dl.kv { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: .15rem .8rem; margin: .6rem 0; }
dl.kv dt { color: #5f6b76; font-size: 12px; }
dl.kv dd { margin: 0; overflow-wrap: anywhere; }
.result { margin-top: .8rem; border-top: 1px solid #edf0f3; padding-top: .6rem; min-width: 0; }
.token { display: block; padding: .4rem; background: #f6f8fa; border-radius: 4px; overflow-wrap: anywhere; user-select: all; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; background: #f6f8fa; padding: .5rem; border-radius: 4px; max-height: 20rem; overflow: auto; }
details summary { cursor: pointer; font-size: 12px; color: #5f6b76; margin-top: .4rem; }
@media (max-width: 760px) {
  main, #app { grid-template-columns: minmax(0, 1fr); padding: 0; gap: .7rem; }
  main { padding: .6rem; }
  .card { padding: .7rem .75rem; }
  .figures { grid-template-columns: repeat(2, minmax(0, 1fr)); }
  .fig-v { font-size: 19px; }
  #chart { height: 140px; }
}
`;

/*
 * The script. Kept free of backticks and of "${" so it can live in this template literal;
 * String.raw keeps its backslashes as written.
 */
export const CONSOLE_JS = String.raw`/* notify operator console: every figure comes from the API, with the token. */
(function () {
  'use strict';
  var TOKEN_KEY = 'notify.console.token';
  var SAMPLE_MS = 2000;
  var KEEP = 150; // 5 minutes of 2 s samples
  var CHART_W = 600, CHART_H = 160, CHART_TOP = 5;

  var token = '';
  try { token = sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { token = ''; }
  var needsToken = true;
  var timer = null;
  var samples = []; // {pub, del}: rates per second
  var prev = null;  // {t, pub, del}: counters at the previous sample
  var status = null;
  var running = false;

  function $(id) { return document.getElementById(id); }

  /** An element with text children only: nothing given here is ever parsed as HTML. */
  function el(tag, props, kids) {
    var e = document.createElement(tag);
    if (props) {
      Object.keys(props).forEach(function (k) {
        var v = props[k];
        if (v === undefined || v === null) return;
        if (k === 'text') e.textContent = String(v);
        else if (k === 'cls') e.className = v;
        else if (k === 'onclick') e.addEventListener('click', v);
        else e.setAttribute(k, String(v));
      });
    }
    (kids || []).forEach(function (c) {
      if (c === undefined || c === null || c === false) return;
      e.appendChild(typeof c === 'object' ? c : document.createTextNode(String(c)));
    });
    return e;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); return node; }
  function show(node, on) { node.hidden = !on; }

  // --- the API -------------------------------------------------------------------------------
  function ApiError(status, code, message) { this.status = status; this.code = code; this.message = message; }

  /** Calls the API; resolves {status, data} for any HTTP answer, rejects ApiError(0) when the daemon cannot be reached. */
  function call(method, path, body, withToken) {
    var headers = {};
    var t = withToken === undefined ? token : withToken;
    if (t) headers.authorization = 'Bearer ' + t;
    if (body !== undefined) headers['content-type'] = 'application/json';
    var init = { method: method, headers: headers, cache: 'no-store', credentials: 'omit', redirect: 'error' };
    if (body !== undefined) init.body = JSON.stringify(body);
    return fetch(path, init).then(function (res) {
      var type = res.headers.get('content-type') || '';
      return (type.indexOf('json') >= 0 ? res.json() : res.text()).then(function (data) {
        if (res.status === 401 && withToken === undefined && running) loggedOut('The daemon refused the token (401): it may have changed. Log in again.');
        return { status: res.status, data: data };
      });
    }, function (err) {
      throw new ApiError(0, 'NETWORK', 'cannot reach the daemon (' + (err && err.message ? err.message : String(err)) + ')');
    });
  }
  function errorText(a) {
    var d = a.data;
    if (d && typeof d === 'object' && d.error) return d.error + (d.code ? ' (' + d.code + ')' : '');
    return 'HTTP ' + a.status;
  }

  // --- login ---------------------------------------------------------------------------------
  function showLogin(message) {
    running = false;
    stopPolling();
    show($('loading'), false);
    show($('app'), false);
    show($('logout'), false);
    show($('login'), true);
    $('login-error').textContent = message || '';
    setConn('logged out', '');
    $('login-token').focus();
  }
  function loggedOut(message) {
    token = '';
    try { sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* private mode */ }
    showLogin(message);
  }

  $('login-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var input = $('login-token');
    var given = input.value.trim();
    var button = ev.target.querySelector('button');
    if (given === '') { $('login-error').textContent = 'Enter the API token.'; return; }
    button.disabled = true;
    $('login-error').textContent = '';
    call('GET', '/v1/status', undefined, given).then(function (a) {
      button.disabled = false;
      if (a.status === 401) {
        input.value = '';
        $('login-error').textContent = 'Wrong token: the daemon refused it (401). Enter the value of http.token from its config.';
        input.focus();
        return;
      }
      if (a.status !== 200) { $('login-error').textContent = 'The daemon answered: ' + errorText(a); return; }
      token = given;
      input.value = '';
      try { sessionStorage.setItem(TOKEN_KEY, token); } catch (e) { /* kept in memory only */ }
      enter(a.data);
    }, function (err) {
      button.disabled = false;
      $('login-error').textContent = err.message;
    });
  });

  $('logout').addEventListener('click', function () { loggedOut('Logged out.'); });

  function start() {
    call('GET', '/v1/status', undefined, token).then(function (a) {
      if (a.status === 401) {
        if (token) loggedOut('The saved token was refused (401). Log in again.');
        else showLogin('');
        return;
      }
      if (a.status !== 200) { fatal('The daemon answered /v1/status with ' + errorText(a)); return; }
      if (!token) needsToken = false;
      enter(a.data);
    }, function (err) { fatal(err.message); });
  }
  function fatal(message) {
    show($('loading'), false);
    var f = $('fatal');
    f.textContent = message;
    show(f, true);
    setConn('unreachable', 'down');
  }

  function enter(st) {
    running = true;
    show($('loading'), false);
    show($('fatal'), false);
    show($('login'), false);
    show($('app'), true);
    show($('logout'), needsToken);
    samples = [];
    prev = null;
    drawChart();
    renderStatus(st);
    poll();
  }

  // --- live figures ------------------------------------------------------------------------
  function stopPolling() { if (timer !== null) { clearTimeout(timer); timer = null; } }
  function poll() {
    stopPolling();
    var t0 = Date.now();
    Promise.all([call('GET', '/v1/status'), call('GET', '/metrics'), call('GET', '/v1/failures?limit=50')]).then(function (r) {
      if (!running) return;
      if (r[0].status === 200) renderStatus(r[0].data);
      if (r[1].status === 200 && typeof r[1].data === 'string') sample(parseMetrics(r[1].data), t0);
      if (r[2].status === 200) renderFailures(r[2].data && r[2].data.failures);
      setConn('live', 'live');
    }, function () {
      if (running) setConn('unreachable', 'down');
    }).then(function () {
      if (running) timer = setTimeout(poll, Math.max(0, SAMPLE_MS - (Date.now() - t0)));
    });
  }
  function setConn(text, cls) { var c = $('conn'); c.textContent = text; c.className = 'pill' + (cls ? ' ' + cls : ''); }

  /** The few counters the console needs from the Prometheus text format. */
  function parseMetrics(text) {
    var m = { published: 0, sent: 0, byTransport: {}, retries: {} };
    text.split('\n').forEach(function (line) {
      if (line === '' || line.charAt(0) === '#') return;
      var p = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
      if (!p) return;
      var name = p[1], value = Number(p[3]);
      if (!isFinite(value)) return;
      var labels = {};
      if (p[2]) p[2].replace(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g, function (_, k, v) {
        labels[k] = v.replace(/\\(.)/g, function (_, c) { return c === 'n' ? '\n' : c; });
        return '';
      });
      if (name === 'notify_messages_in_total') m.published += value;
      else if (name === 'notify_deliveries_total') {
        var t = m.byTransport[labels.transport] || (m.byTransport[labels.transport] = { sent: 0, failed: 0, rejected: 0 });
        t[labels.result] = (t[labels.result] || 0) + value;
        if (labels.result === 'sent') m.sent += value;
      } else if (name === 'notify_provider_retries_total') m.retries[labels.transport] = value;
    });
    return m;
  }

  function sample(m, t) {
    if (prev !== null && t > prev.t) {
      var dt = (t - prev.t) / 1000;
      // A counter that went down is a restarted daemon: count from zero.
      var rate = function (now, before) { return Math.max(0, (now >= before ? now - before : now) / dt); };
      samples.push({ pub: rate(m.published, prev.pub), del: rate(m.sent, prev.del) });
      if (samples.length > KEEP) samples.shift();
      var last = samples[samples.length - 1];
      $('f-pub-rate').textContent = fmtRate(last.pub);
      $('f-del-rate').textContent = fmtRate(last.del);
      drawChart();
    }
    prev = { t: t, pub: m.published, del: m.sent };
    $('f-published').textContent = String(m.published);
    renderTransports(m);
  }
  function fmtRate(v) { return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2); }

  function niceMax(v) {
    if (v <= 1) return 1;
    var p = Math.pow(10, Math.floor(Math.log10(v)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (steps[i] * p >= v) return steps[i] * p;
    return 10 * p;
  }
  function drawChart() {
    var max = 0;
    samples.forEach(function (s) { max = Math.max(max, s.pub, s.del); });
    max = niceMax(max);
    var n = samples.length;
    var points = function (key) {
      return samples.map(function (s, i) {
        var x = (CHART_W * (KEEP - n + i)) / (KEEP - 1);
        var y = CHART_H - ((CHART_H - CHART_TOP) * s[key]) / max;
        return x.toFixed(1) + ',' + y.toFixed(1);
      }).join(' ');
    };
    $('line-pub').setAttribute('points', points('pub'));
    $('line-del').setAttribute('points', points('del'));
    $('chart-max').textContent = 'top: ' + max + '/s, middle: ' + (max / 2) + '/s';
  }

  function fmtUptime(s) {
    if (typeof s !== 'number') return '–';
    var d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60);
    return d > 0 ? d + 'd ' + h + 'h' : h > 0 ? h + 'h ' + m + 'm' : m + 'm ' + (s % 60) + 's';
  }
  function num(v) { return typeof v === 'number' ? String(v) : '–'; }

  function renderStatus(st) {
    if (!st || typeof st !== 'object') return;
    status = st;
    $('version').textContent = st.version ? 'v' + st.version : '';
    $('f-sessions').textContent = num(st.sessions);
    $('f-uids').textContent = num(st.uids);
    $('f-connections').textContent = num(st.connections);
    $('f-uptime').textContent = fmtUptime(st.uptimeS);
    $('f-history').textContent = st.history && typeof st.history.rows === 'number' ? String(st.history.rows) : 'off';
    show($('token-card'), st.wsAuth === 'token');
    $('send-card').className = st.wsAuth === 'token' ? 'card' : 'card wide';
  }

  function renderTransports(m) {
    var body = clear($('transports').tBodies[0]);
    var health = (status && status.transports) || {};
    var names = Object.keys(health);
    Object.keys(m.byTransport).forEach(function (n) { if (names.indexOf(n) < 0) names.push(n); });
    names.forEach(function (name) {
      var h = health[name] || {};
      var c = m.byTransport[name] || {};
      var details = Object.keys(h).filter(function (k) { return k !== 'state' && h[k] !== undefined && h[k] !== null; }).map(function (k) {
        var v = h[k];
        return k + ': ' + (typeof v === 'object' ? JSON.stringify(v) : String(v));
      }).join(', ');
      var state = typeof h.state === 'string' ? h.state : health[name] ? '?' : 'removed';
      body.appendChild(el('tr', null, [
        el('td', { text: name }),
        el('td', { text: state, cls: 'st-' + state }),
        el('td', { text: c.sent || 0 }),
        el('td', { text: c.failed || 0, cls: c.failed ? 'st-failed' : '' }),
        el('td', { text: c.rejected || 0, cls: c.rejected ? 'st-rejected' : '' }),
        el('td', { text: m.retries[name] || 0 }),
        el('td', { text: details, cls: 'wrap' })
      ]));
    });
  }

  function when(iso) {
    if (typeof iso !== 'string' && typeof iso !== 'number') return '–';
    var d = new Date(iso);
    if (isNaN(d.getTime())) return String(iso);
    var pad = function (x) { return (x < 10 ? '0' : '') + x; };
    return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate()) + ' ' + pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  }
  function idButton(id) { return el('button', { type: 'button', cls: 'link mono', text: id, title: 'look up message ' + id, onclick: function () { lookupMessage(id); } }); }
  function uidButton(uid) { return el('button', { type: 'button', cls: 'link mono', text: uid, title: 'look up uid ' + uid, onclick: function () { lookupUid(uid); } }); }
  function cell(v, cls) { return el('td', { text: v === undefined || v === null ? '' : v, cls: cls || '' }); }
  function statusCell(s) { return el('td', { text: s === undefined ? '' : s, cls: 'st-' + s }); }

  function renderFailures(list) {
    if (!Array.isArray(list)) return;
    var table = $('failures');
    var body = clear(table.tBodies[0]);
    show(table, list.length > 0);
    show($('failures-empty'), list.length === 0);
    list.forEach(function (f) {
      body.appendChild(el('tr', null, [
        el('td', { text: when(f.at), title: f.at }),
        el('td', null, [uidButton(f.uid)]),
        cell(f.transport),
        statusCell(f.status),
        cell(f.reason, 'wrap'),
        cell(f.attempts),
        el('td', null, [idButton(f.id)]),
        el('td', { text: f.target, title: f.target, cls: 'clip' })
      ]));
    });
  }

  // --- send --------------------------------------------------------------------------------
  var sendForm = $('send-form');
  function audience() { var r = sendForm.querySelector('input[name=audience]:checked'); return r ? r.value : 'uid'; }
  function syncAudience() { var one = audience() === 'uid'; $('send-uid').disabled = !one; $('send-uid').required = one; }
  Array.prototype.forEach.call(sendForm.querySelectorAll('input[name=audience]'), function (r) { r.addEventListener('change', syncAudience); });
  syncAudience();

  sendForm.addEventListener('submit', function (ev) {
    ev.preventDefault();
    var out = clear($('send-report'));
    var body = { msg: $('send-msg').value };
    if (audience() === 'broadcast') body.broadcast = true;
    else body.uid = $('send-uid').value;
    var route = $('send-route').value;
    if (route) body.route = route;
    var button = sendForm.querySelector('button[type=submit]');
    button.disabled = true;
    call('POST', '/v1/send', body).then(function (a) {
      button.disabled = false;
      out.appendChild(a.status === 200 ? renderReport(a.data) : el('p', { cls: 'error', text: 'Not sent: ' + errorText(a) }));
    }, function (err) {
      button.disabled = false;
      out.appendChild(el('p', { cls: 'error', text: err.message }));
    });
  });

  function renderReport(r) {
    var box = el('div', { cls: 'result report' });
    var summary = (r.delivered ? 'delivered' : 'not delivered') + ': ' + (r.sent || 0) + ' sent, ' + (r.failed || 0) + ' failed, ' + (r.rejected || 0) + ' rejected' + (r.duplicate ? ' (a repeat of an earlier id: nothing sent again)' : '');
    box.appendChild(el('p', { cls: r.delivered ? 'ok summary' : 'error summary', text: summary }));
    var kv = el('dl', { cls: 'kv' });
    kv.appendChild(el('dt', { text: 'message' }));
    kv.appendChild(el('dd', null, [idButton(r.id)]));
    pairs(kv, [['route', r.route], ['stored', r.stored === undefined ? undefined : r.stored ? 'yes' : 'no'],
      ['unreached', Array.isArray(r.unreached) && r.unreached.length ? r.unreached.join(', ') : undefined],
      ['paths', r.paths ? Object.keys(r.paths).map(function (u) { return u + ': ' + r.paths[u]; }).join(', ') : undefined]]);
    box.appendChild(kv);
    if (Array.isArray(r.results) && r.results.length) {
      box.appendChild(table(['uid', 'transport', 'status', 'target', 'reason', 'node'], r.results.map(function (e) {
        return [uidButton(e.uid), cell(e.transport), statusCell(e.status), el('td', { text: e.target, title: e.target, cls: 'clip' }), cell(e.reason, 'wrap'), cell(e.node)];
      })));
    }
    box.appendChild(raw(r));
    return box;
  }

  function pairs(dl, list) {
    list.forEach(function (p) {
      if (p[1] === undefined || p[1] === null || p[1] === '') return;
      dl.appendChild(el('dt', { text: p[0] }));
      dl.appendChild(el('dd', { text: p[1] }));
    });
    return dl;
  }
  /** A table in a horizontally scrolling box; rows are arrays of cells (td elements, or values). */
  function table(head, rows) {
    var t = el('table', null, [el('thead', null, [el('tr', null, head.map(function (h) { return el('th', { text: h }); }))])]);
    var body = el('tbody');
    rows.forEach(function (cells) {
      body.appendChild(el('tr', null, cells.map(function (c) {
        if (c && typeof c === 'object' && c.tagName === 'TD') return c;
        if (c && typeof c === 'object') return el('td', null, [c]);
        return cell(c);
      })));
    });
    t.appendChild(body);
    return el('div', { cls: 'scroll' }, [t]);
  }
  function raw(data) {
    return el('details', null, [el('summary', { text: 'raw JSON' }), el('pre', { text: JSON.stringify(data, null, 2) })]);
  }

  // --- lookups -----------------------------------------------------------------------------
  function lookup(form, input, out, path, render) {
    var value = input.value.trim();
    var box = clear(out);
    if (value === '') return;
    box.appendChild(el('p', { cls: 'muted', text: 'Looking up…' }));
    call('GET', path + encodeURIComponent(value)).then(function (a) {
      clear(box);
      if (a.status === 200 && a.data && typeof a.data === 'object') box.appendChild(render(a.data));
      else if (a.status === 404) box.appendChild(el('p', { cls: 'error notfound', text: 'not found: ' + value + (a.data && a.data.error ? ' (' + a.data.error + ')' : '') }));
      else box.appendChild(el('p', { cls: 'error', text: errorText(a) }));
    }, function (err) {
      clear(box);
      box.appendChild(el('p', { cls: 'error', text: err.message }));
    });
  }
  function lookupMessage(id) { $('message-id').value = id; submitLookup('message'); $('message-out').scrollIntoView({ block: 'nearest' }); }
  function lookupUid(uid) { $('uid-id').value = uid; submitLookup('uid'); $('uid-out').scrollIntoView({ block: 'nearest' }); }
  function submitLookup(which) {
    if (which === 'message') lookup($('message-form'), $('message-id'), $('message-out'), '/v1/messages/', renderMessage);
    else lookup($('uid-form'), $('uid-id'), $('uid-out'), '/v1/uids/', renderUid);
  }
  $('message-form').addEventListener('submit', function (ev) { ev.preventDefault(); submitLookup('message'); });
  $('uid-form').addEventListener('submit', function (ev) { ev.preventDefault(); submitLookup('uid'); });

  function audienceText(a) {
    if (!a || typeof a !== 'object') return undefined;
    if (a.broadcast) return 'broadcast (everyone)';
    if (Array.isArray(a.uids)) return a.uids.join(', ');
    return undefined;
  }
  function arr(v) { return Array.isArray(v) ? v : []; }

  function renderMessage(m) {
    var box = el('div', { cls: 'result message' });
    box.appendChild(pairs(el('dl', { cls: 'kv' }), [
      ['id', m.id], ['published', m.publishedAt === undefined ? undefined : when(m.publishedAt)], ['ingress', m.ingress],
      ['audience', audienceText(m.audience)], ['audience size', m.audienceSize], ['route', m.route],
      ['stored', m.stored === undefined ? undefined : m.stored ? 'yes' : 'no'], ['publisher id', m.publisherId]
    ]));
    var targets = arr(m.targets);
    box.appendChild(el('h3', { text: 'Targets (' + targets.length + ')' }));
    if (targets.length) {
      box.appendChild(table(['uid', 'transport', 'status', 'attempts', 'reason', 'target', 'node', 'at', 'next attempt'], targets.map(function (t) {
        return [uidButton(t.uid), cell(t.transport), statusCell(t.status), cell(t.attempts), cell(t.reason, 'wrap'), el('td', { text: t.target, title: t.target, cls: 'clip' }), cell(t.node),
          cell(when(t.at)), cell(t.nextAttemptAt === undefined ? '' : when(t.nextAttemptAt))];
      })));
    } else box.appendChild(el('p', { cls: 'muted', text: 'No target.' }));
    var acks = arr(m.acks);
    box.appendChild(el('h3', { text: 'Acks (' + acks.length + ')' }));
    if (acks.length) box.appendChild(table(['uid', 'session', 'at'], acks.map(function (k) { return [uidButton(k.uid), cell(k.session), cell(when(k.at))]; })));
    else box.appendChild(el('p', { cls: 'muted', text: 'No ack.' }));
    box.appendChild(raw(m));
    return box;
  }

  function renderUid(u) {
    var box = el('div', { cls: 'result uid' });
    var sessions = arr(u.sessions), devices = arr(u.devices), retired = arr(u.retired), recent = arr(u.recentMessages);
    box.appendChild(pairs(el('dl', { cls: 'kv' }), [['uid', u.uid], ['online', u.online ? 'yes' : 'no']]));
    box.appendChild(el('h3', { text: 'Sessions (' + sessions.length + ')' }));
    if (sessions.length) {
      box.appendChild(table(['session', 'node', 'address', 'connected', 'protocol', 'resuming'], sessions.map(function (s) {
        return [s.session, s.node, s.address, when(s.connectedAt), s.protocol, s.resuming === undefined ? '' : s.resuming ? 'resuming' : 'plain'];
      })));
    } else box.appendChild(el('p', { cls: 'muted', text: 'No live session.' }));
    box.appendChild(el('h3', { text: 'Devices (' + devices.length + ')' }));
    if (devices.length) {
      box.appendChild(table(['transport', 'last outcome', 'reason', 'token', 'at', 'message'], devices.map(function (d) {
        var o = d.lastOutcome || {};
        return [cell(d.transport), statusCell(o.status), cell(o.reason, 'wrap'), el('td', { text: d.token, title: d.token, cls: 'clip' }), cell(o.at === undefined ? '' : when(o.at)),
          o.messageId ? idButton(o.messageId) : cell('')];
      })));
    } else box.appendChild(el('p', { cls: 'muted', text: 'No device.' }));
    if (retired.length) {
      box.appendChild(el('h3', { text: 'Retired tokens (' + retired.length + ')' }));
      box.appendChild(table(['transport', 'token', 'reason', 'at'], retired.map(function (r) {
        return [cell(r.transport), el('td', { text: r.token, title: r.token, cls: 'clip' }), cell(r.reason, 'wrap'), cell(when(r.at))];
      })));
    }
    box.appendChild(el('h3', { text: 'Recent messages (' + recent.length + ')' }));
    if (recent.length) box.appendChild(table(['message', 'at'], recent.map(function (r) { return [idButton(r.id), when(r.at)]; })));
    else box.appendChild(el('p', { cls: 'muted', text: 'None.' }));
    box.appendChild(raw(u));
    return box;
  }

  // --- connection tokens ---------------------------------------------------------------------
  $('token-form').addEventListener('submit', function (ev) {
    ev.preventDefault();
    var out = clear($('token-out'));
    var uid = $('token-uid').value;
    var ttl = $('token-ttl').value.trim();
    var body = { uid: uid };
    if (ttl) body.ttl = ttl;
    call('POST', '/v1/tokens', body).then(function (a) {
      if (a.status !== 200) { out.appendChild(el('p', { cls: 'error', text: 'No token: ' + errorText(a) })); return; }
      var query = '/?uid=' + encodeURIComponent(a.data.uid) + '&token=' + encodeURIComponent(a.data.token);
      var url;
      if (status && status.wsBehindProxy) {
        // Behind a proxy (contrib/nginx.conf) sessions come in where this console does.
        url = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + query;
      } else {
        // The WebSocket port of this host, with its own TLS setting (ws.tls), not the console's.
        var ws = status && status.listeners && status.listeners.ws ? String(status.listeners.ws) : '';
        var port = ws.slice(ws.lastIndexOf(':') + 1);
        var host = location.hostname.indexOf(':') >= 0 ? '[' + location.hostname + ']' : location.hostname;
        var secure = status && typeof status.wsTls === 'boolean' ? status.wsTls : location.protocol === 'https:';
        url = (secure ? 'wss://' : 'ws://') + host + (port ? ':' + port : '') + query;
      }
      var box = el('div', { cls: 'result' });
      box.appendChild(el('code', { cls: 'token', id: 'token-value', text: a.data.token }));
      box.appendChild(pairs(el('dl', { cls: 'kv' }), [['uid', a.data.uid], ['expires', when(a.data.expiresAt)], ['connect', url]]));
      out.appendChild(box);
    }, function (err) { out.appendChild(el('p', { cls: 'error', text: err.message })); });
  });

  start();
})();
`;
