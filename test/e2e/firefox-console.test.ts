import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SKIP, launchFirefox, waitFor } from '../helpers/firefox.js';
import { api } from '../helpers/api.js';
import { wsClient } from '../helpers/clients.js';
import { startDaemon } from '../helpers/daemon.js';

// The operator console in Debian's Firefox ESR (the Chromium test covers the rest): the login
// with a wrong token first, the live figures, a send from the form, and no sideways overflow in a
// phone-wide window.

const TOKEN = 'console-firefox-api-token-0123456789';


test('firefox console: login (wrong token first), live figures, send from the form, no overflow at 390 px', { skip: SKIP }, async (t) => {
  const d = await startDaemon(t, { http: { token: TOKEN } });
  const ff = await launchFirefox(t);
  const { bidi } = ff;
  const tab = ff.firstTab;
  await bidi.navigate(tab, `${d.httpUrl}/console`);
  const text = (id: string) => `document.getElementById('${id}').textContent`;
  await waitFor<boolean>(bidi, tab, `!document.getElementById('login').hidden`, (v) => v, 'the login shows');
  assert.equal(await bidi.evaluate(tab, `document.getElementById('app').hidden`), true);

  const login = (token: string) =>
    bidi.evaluate(tab, `(() => { document.getElementById('login-token').value = ${JSON.stringify(token)}; document.querySelector('#login-form button').click(); return true; })()`, {
      userActivation: true,
    });
  await login('wrong');
  await waitFor<string>(bidi, tab, text('login-error'), (s) => /^Wrong token/.test(s), 'a wrong token is named');
  await login(TOKEN);
  await waitFor<string>(bidi, tab, text('conn'), (s) => s === 'live', 'the console polls the API');

  const alice = await wsClient(t, d.wsUrl, { bind: 'alice' });
  await waitFor<string>(bidi, tab, text('f-sessions'), (s) => s === '1', 'the session count');
  for (let i = 0; i < 5; i++) assert.equal((await api(d.httpUrl, 'POST', '/v1/send', { uid: 'alice', msg: `m${i}` }, { authorization: `Bearer ${TOKEN}` })).status, 200);
  await waitFor<string>(bidi, tab, text('f-published'), (s) => Number(s) >= 5, 'the publishes figure');
  await waitFor<boolean>(
    bidi,
    tab,
    `document.getElementById('line-pub').getAttribute('points').split(' ').some((p) => Number(p.split(',')[1]) < 160)`,
    (v) => v,
    'the chart shows the publishes',
  );

  await bidi.evaluate(
    tab,
    `(() => { document.getElementById('send-uid').value = 'alice'; document.getElementById('send-msg').value = 'from firefox'; document.querySelector('#send-form button[type=submit]').click(); return true; })()`,
    { userActivation: true },
  );
  await waitFor<string>(bidi, tab, `(document.querySelector('#send-report .summary') || {}).textContent || ''`, (s) => s.startsWith('delivered: 1 sent'), 'the report');
  assert.equal(await alice.frame(6), 'from firefox');

  await bidi.send('browsingContext.setViewport', { context: tab, viewport: { width: 390, height: 844 } });
  const widths = await waitFor<{ s: number; w: number }>(
    bidi,
    tab,
    `({ s: document.documentElement.scrollWidth, w: window.innerWidth })`,
    (v) => v.w === 390,
    'the window is 390 px wide',
  );
  assert.ok(widths.s <= widths.w, `the page is ${widths.s} px wide in a ${widths.w} px window`);
  assert.deepEqual(ff.foreign, [], 'no connection to any host but 127.0.0.1');
});
