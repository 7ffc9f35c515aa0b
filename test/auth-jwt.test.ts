import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { SignJWT, UnsecuredJWT, decodeJwt, decodeProtectedHeader, generateKeyPair } from 'jose';
import { WebSocket } from 'ws';
import { AUTH_CLOSE, JWT_CLOCK_SKEW_S, checkBindToken, checkJwt, makeJwt, makeToken } from '../src/auth.js';
import { type TestDaemon, startDaemon, writeTemp } from './helpers/daemon.js';
import { HANG_MS, type WsClient, bound, roundTrip, within, wsClient } from './helpers/clients.js';
import { cli } from './helpers/cli.js';
import { refusals } from './helpers/metrics.js';

const SECRET = 'x'.repeat(32);
const OTHER_SECRET = 'y'.repeat(32);
const KEY = new TextEncoder().encode(SECRET);
const nowS = () => Math.floor(Date.now() / 1000);
const README = fileURLToPath(new URL('../../README.md', import.meta.url));

/** A JWT as a backend's library makes one: jose's SignJWT, HS256 with the secret. */
function libraryJwt(claims: Record<string, unknown>, secret = KEY, alg = 'HS256'): Promise<string> {
  return new SignJWT(claims).setProtectedHeader({ alg, typ: 'JWT' }).sign(secret);
}

/** A JWT built by hand (any header, any payload), signed with HMAC `hash` over `secret`. */
function handJwt(header: Record<string, unknown>, payload: Record<string, unknown>, secret = SECRET, hash = 'sha256'): string {
  const b = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const signing = `${b(header)}.${b(payload)}`;
  return `${signing}.${createHmac(hash, secret).update(signing).digest('base64url')}`;
}

// ---------------------------------------------------------------------------------------------
// checkJwt, pure

test('jwt: an HS256 JWT from a library, signed with the secret, with sub and exp, is accepted with its exp', async () => {
  const exp = nowS() + 600;
  const token = await libraryJwt({ sub: 'uid1', exp });
  assert.deepEqual(await checkJwt(SECRET, token, 'uid1'), { ok: true, exp });
  // Other claims (iat, iss, aud, custom ones) do not matter.
  assert.deepEqual(await checkJwt(SECRET, await libraryJwt({ sub: 'uid1', exp, iat: nowS(), iss: 'backend', info: { plan: 'pro' } }), 'uid1'), { ok: true, exp });
  // A uid with non-ASCII and spaces round-trips through sub.
  assert.deepEqual(await checkJwt(SECRET, await libraryJwt({ sub: 'uid 进度', exp }), 'uid 进度'), { ok: true, exp });
  // checkBindToken hands it to checkJwt (a promise); nt1. tokens stay synchronous.
  const viaBind = checkBindToken(SECRET, token, 'uid1');
  assert.ok(viaBind instanceof Promise, 'a JWT is checked asynchronously');
  assert.deepEqual(await viaBind, { ok: true, exp });
  const nt1 = checkBindToken(SECRET, makeToken(SECRET, 'uid1', exp), 'uid1');
  assert.deepEqual(nt1, { ok: true, exp }, 'an nt1. token is checked synchronously, as before');
  assert.deepEqual(checkBindToken(SECRET, undefined, 'uid1'), { ok: false, code: 4401, reason: 'a token is required (ws.auth: token)' });
  assert.deepEqual(checkBindToken(SECRET, 'not-a-token', 'uid1'), { ok: false, code: 4400, reason: 'malformed token' });
});

test('jwt: makeJwt (notify token --jwt) makes a standard HS256 JWT: typ JWT, sub, iat, exp', async () => {
  const exp = nowS() + 3600;
  const token = await makeJwt(SECRET, 'uid1', exp);
  assert.deepEqual(decodeProtectedHeader(token), { alg: 'HS256', typ: 'JWT' });
  const claims = decodeJwt(token);
  assert.deepEqual(Object.keys(claims).sort(), ['exp', 'iat', 'sub']);
  assert.equal(claims.sub, 'uid1');
  assert.equal(claims.exp, exp);
  assert.ok(Math.abs((claims.iat ?? 0) - nowS()) <= 5);
  assert.deepEqual(await checkJwt(SECRET, token, 'uid1'), { ok: true, exp });
});

test('jwt: each refusal has its close code and a specific reason', async () => {
  const now = nowS();
  const { privateKey } = await generateKeyPair('RS256');
  const cases: [string, string, number, string][] = [
    ['alg none', new UnsecuredJWT({ sub: 'uid1', exp: now + 600 }).encode(), 4403, 'token alg "none" is not accepted: sign with HS256'],
    ['HS512 with the right secret', handJwt({ alg: 'HS512', typ: 'JWT' }, { sub: 'uid1', exp: now + 600 }, SECRET, 'sha512'), 4403, 'token alg "HS512" is not accepted: sign with HS256'],
    ['RS256', await new SignJWT({ sub: 'uid1', exp: now + 600 }).setProtectedHeader({ alg: 'RS256' }).sign(privateKey), 4403, 'token alg "RS256" is not accepted: sign with HS256'],
    ['no alg', handJwt({ typ: 'JWT' }, { sub: 'uid1', exp: now + 600 }), 4400, 'malformed token'],
    ['another secret', await libraryJwt({ sub: 'uid1', exp: now + 600 }, new TextEncoder().encode(OTHER_SECRET)), 4403, 'token signature does not match'],
    ['an edited payload', (() => {
      const [h, , s] = handJwt({ alg: 'HS256' }, { sub: 'uid2', exp: now + 600 }).split('.');
      return `${h}.${Buffer.from(JSON.stringify({ sub: 'uid1', exp: now + 600 })).toString('base64url')}.${s}`;
    })(), 4403, 'token signature does not match'],
    ['no exp', await libraryJwt({ sub: 'uid1' }), 4400, 'malformed token: no exp claim (required)'],
    ['no sub', await libraryJwt({ exp: now + 600 }), 4400, 'malformed token: no sub claim (required)'],
    ['exp not a number', handJwt({ alg: 'HS256' }, { sub: 'uid1', exp: 'tomorrow' }), 4400, 'malformed token: exp must be a number'],
    ['sub not a string', handJwt({ alg: 'HS256' }, { sub: 42, exp: now + 600 }), 4400, 'malformed token: sub must be a string'],
    ['another uid', await libraryJwt({ sub: 'uid2', exp: now + 600 }), 4406, 'token is for another uid'],
    ['expired', await libraryJwt({ sub: 'uid1', exp: now - 60 }), 4410, 'token expired'],
    ['not valid yet', await libraryJwt({ sub: 'uid1', exp: now + 600, nbf: now + 300 }), 4410, 'token not valid yet (nbf)'],
    ['nbf not a number', handJwt({ alg: 'HS256' }, { sub: 'uid1', exp: now + 600, nbf: 'soon' }), 4400, 'malformed token: nbf must be a number'],
    ['garbage in three parts', 'abc.def.ghi', 4400, 'malformed token'],
    ['a payload that is not JSON', `${Buffer.from('{"alg":"HS256"}').toString('base64url')}.bm90IGpzb24.${'A'.repeat(43)}`, 4403, 'token signature does not match'],
  ];
  for (const [what, token, code, reason] of cases) {
    const r = await checkBindToken(SECRET, token, 'uid1');
    assert.deepEqual(r, { ok: false, code, reason }, what);
    assert.ok(!reason.includes(SECRET), 'the secret is never in a reason');
  }
  assert.equal(AUTH_CLOSE.forged, 4403);
});

test(`jwt: exp and nbf are checked with ${JWT_CLOCK_SKEW_S} s of clock skew either way`, async () => {
  const exp = 2_000_000_000;
  const token = await libraryJwt({ sub: 'uid1', exp, nbf: exp - 600 });
  // nowS is the check's clock: just past exp, within the skew, still passes; past the skew, expired.
  assert.deepEqual(await checkJwt(SECRET, token, 'uid1', exp + JWT_CLOCK_SKEW_S - 1), { ok: true, exp });
  assert.deepEqual(await checkJwt(SECRET, token, 'uid1', exp + JWT_CLOCK_SKEW_S + 1), { ok: false, code: 4410, reason: 'token expired' });
  // A backend clock a little ahead: nbf a few seconds in our future passes, further does not.
  assert.deepEqual(await checkJwt(SECRET, token, 'uid1', exp - 600 - JWT_CLOCK_SKEW_S + 1), { ok: true, exp });
  assert.deepEqual(await checkJwt(SECRET, token, 'uid1', exp - 600 - JWT_CLOCK_SKEW_S - 1), { ok: false, code: 4410, reason: 'token not valid yet (nbf)' });
});

// ---------------------------------------------------------------------------------------------
// ws.auth: token with JWTs, end to end

const TOKEN_WS = { ws: { auth: 'token', secret: SECRET } } as const;

function url(d: TestDaemon, params: Record<string, string>): string {
  return `${d.wsUrl}?${new URLSearchParams(params).toString()}`;
}

/** The three ways a page presents uid and token. */
const WAYS: { name: string; open: (t: TestContext, d: TestDaemon, uid: string, token: string) => Promise<WsClient> }[] = [
  { name: '?uid=&token=', open: (t, d, uid, token) => wsClient(t, url(d, { uid, token })) },
  { name: 'JSON bind frame', open: (t, d, uid, token) => wsClient(t, d.wsUrl, { bind: JSON.stringify({ type: 'bind', uid, token }) }) },
  { name: '?token= + plain frame', open: (t, d, uid, token) => wsClient(t, url(d, { token }), { bind: uid }) },
];

async function send(d: TestDaemon, body: Record<string, unknown>): Promise<Record<string, unknown>> {
  const res = await fetch(`${d.httpUrl}/v1/send`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  assert.equal(res.status, 200);
  return (await res.json()) as Record<string, unknown>;
}

test('ws auth: a JWT from a library (jose SignJWT) binds in each of the three ways and the session gets pushes; nt1. tokens still bind', async (t) => {
  const d = await startDaemon(t, TOKEN_WS);
  const clients: WsClient[] = [];
  for (const [i, way] of WAYS.entries()) {
    const uid = `jwt-user-${i}`;
    const c = await way.open(t, d, uid, await libraryJwt({ sub: uid, exp: nowS() + 600 }));
    await bound(d, uid);
    const r = await send(d, { uid, msg: `hello ${way.name}` });
    assert.equal(r.delivered, true, `${way.name}: ${JSON.stringify(r)}`);
    const frame = await c.frame(1);
    assert.equal(way.name === 'JSON bind frame' ? (JSON.parse(frame) as { data: string }).data : frame, `hello ${way.name}`, way.name);
    clients.push(c);
  }
  const old = await wsClient(t, url(d, { uid: 'nt1-user', token: makeToken(SECRET, 'nt1-user', nowS() + 600) }));
  await bound(d, 'nt1-user');
  assert.equal((await send(d, { uid: 'nt1-user', msg: 'still works' })).delivered, true);
  assert.equal(await old.frame(1), 'still works');
  assert.equal(await refusals(d, 'auth'), 0);
  for (const c of clients) assert.equal(c.ws.readyState, WebSocket.OPEN);
});

test('ws auth: refused JWTs close with their code and reason in each way, bind nothing, and the daemon keeps serving', async (t) => {
  const d = await startDaemon(t, TOKEN_WS);
  const now = nowS();
  const bad: [string, () => Promise<string> | string, number, string][] = [
    ['alg none', () => new UnsecuredJWT({ sub: 'victim', exp: now + 600 }).encode(), 4403, 'token alg "none" is not accepted: sign with HS256'],
    ['HS384', () => handJwt({ alg: 'HS384' }, { sub: 'victim', exp: now + 600 }, SECRET, 'sha384'), 4403, 'token alg "HS384" is not accepted: sign with HS256'],
    ['no exp', () => libraryJwt({ sub: 'victim' }), 4400, 'malformed token: no exp claim (required)'],
    ['expired', () => libraryJwt({ sub: 'victim', exp: now - 60 }), 4410, 'token expired'],
    ['another uid', () => libraryJwt({ sub: 'thief', exp: now + 600 }), 4406, 'token is for another uid'],
    ['bad signature', () => libraryJwt({ sub: 'victim', exp: now + 600 }, new TextEncoder().encode(OTHER_SECRET)), 4403, 'token signature does not match'],
  ];
  let refused = 0;
  for (const [what, make, code, reason] of bad) {
    for (const way of WAYS) {
      const c = await way.open(t, d, 'victim', await make());
      assert.deepEqual(await within(c.closed, HANG_MS, `${what} via ${way.name}`), [code, reason], `${what} via ${way.name}`);
      assert.deepEqual(c.frames, []);
      assert.equal(d.registry.index('websocket').has('victim'), false);
      refused++;
    }
  }
  assert.equal(await refusals(d, 'auth'), refused, 'each refusal is counted');
  const owner = await wsClient(t, url(d, { uid: 'victim', token: await libraryJwt({ sub: 'victim', exp: now + 600 }) }));
  await bound(d, 'victim');
  assert.equal((await send(d, { uid: 'victim', msg: 'yours' })).sent, 1);
  assert.equal(await owner.frame(1), 'yours');
});

test('ws auth: frames sent while a JWT is being verified are not taken as a second bind', async (t) => {
  const d = await startDaemon(t, TOKEN_WS);
  const token = await libraryJwt({ sub: 'uid1', exp: nowS() + 600 });
  const c = await wsClient(t, d.wsUrl);
  // In one go: a bind with a JWT (checked asynchronously), then frames that would bind other uids
  // if they were read as first frames.
  c.ws.send(JSON.stringify({ type: 'bind', uid: 'uid1', token }));
  c.ws.send('uid2');
  c.ws.send(JSON.stringify({ type: 'bind', uid: 'uid3' }));
  await bound(d, 'uid1');
  await roundTrip(c.ws);
  const index = d.registry.index('websocket');
  assert.equal(index.has('uid2'), false);
  assert.equal(index.has('uid3'), false);
  assert.equal(index.targets('uid1').length, 1);
  assert.equal(c.ws.readyState, WebSocket.OPEN);
  assert.equal(await refusals(d, 'auth'), 0);
});

test('ws auth: a JWT bind of revision 2 is answered {"type":"bound"} only once verified', async (t) => {
  const d = await startDaemon(t, TOKEN_WS);
  const good = await wsClient(t, d.wsUrl, { bind: JSON.stringify({ type: 'bind', uid: 'uid1', v: 2, token: await libraryJwt({ sub: 'uid1', exp: nowS() + 600 }) }) });
  assert.equal(await good.frame(1), '{"type":"bound"}');
  const badOne = await wsClient(t, d.wsUrl, { bind: JSON.stringify({ type: 'bind', uid: 'uid1', v: 2, token: await libraryJwt({ sub: 'uid9', exp: nowS() + 600 }) }) });
  assert.deepEqual(await within(badOne.closed, HANG_MS, 'refusal'), [4406, 'token is for another uid']);
  assert.deepEqual(badOne.frames, [], 'no bound frame before the refusal');
});

// ---------------------------------------------------------------------------------------------
// notify token --jwt

test('cli: notify token --jwt prints a JWT (HS256, sub, exp from --ttl) that binds on a daemon with the same secret', async (t) => {
  const file = writeTemp(t, 'notify.yaml', `ws:\n  auth: token\n  secret: ${SECRET}\n`);
  const r = await cli(['token', '--jwt', '--uid', 'uid1', '--ttl', '15m', '--config', file]);
  assert.equal(r.code, 0, r.err);
  assert.equal(r.err, '');
  assert.match(r.out, /^eyJ[\w-]+\.eyJ[\w-]+\.[\w-]{43}\n$/, 'one line, a compact JWS');
  const token = r.out.trim();
  assert.deepEqual(decodeProtectedHeader(token), { alg: 'HS256', typ: 'JWT' });
  const check = await checkJwt(SECRET, token, 'uid1');
  assert.ok(check.ok && Math.abs(check.exp - (nowS() + 900)) <= 5, `exp ≈ now + 15m: ${JSON.stringify(check)}`);

  const j = await cli(['token', '--jwt', '--json', '-u', 'uid 2', '--config', file]);
  assert.equal(j.code, 0, j.err);
  const obj = JSON.parse(j.out) as { uid: string; token: string; expiresAt: string };
  assert.equal(obj.uid, 'uid 2');
  assert.equal(decodeJwt(obj.token).sub, 'uid 2');
  assert.equal(Date.parse(obj.expiresAt), (decodeJwt(obj.token).exp ?? 0) * 1000);

  const d = await startDaemon(t, TOKEN_WS);
  const c = await wsClient(t, url(d, { uid: 'uid1', token }));
  await bound(d, 'uid1');
  assert.equal((await send(d, { uid: 'uid1', msg: 'minted by notify token --jwt' })).delivered, true);
  assert.equal(await c.frame(1), 'minted by notify token --jwt');
});

// ---------------------------------------------------------------------------------------------
// The README's snippets: a backend with no JWT library

/** The README code block in `lang` that contains `marker`. */
function readmeSnippet(lang: string, marker: string): string {
  const text = readFileSync(README, 'utf8');
  for (const m of text.matchAll(new RegExp('```' + lang + '\\n([\\s\\S]*?)```', 'g'))) {
    if ((m[1] as string).includes(marker)) return m[1] as string;
  }
  throw new Error(`README has no \`\`\`${lang} block with ${marker}`);
}

/** Binds uid1 with `token` through ?uid=&token= and checks a push arrives. */
async function bindsWith(t: TestContext, token: string): Promise<void> {
  const d = await startDaemon(t, TOKEN_WS);
  const c = await wsClient(t, url(d, { uid: 'uid1', token }));
  await bound(d, 'uid1');
  assert.equal((await send(d, { uid: 'uid1', msg: 'hello backend' })).delivered, true);
  assert.equal(await c.frame(1), 'hello backend');
  assert.equal(await refusals(d, 'auth'), 0);
}

const PHP = ['/usr/bin/php', '/usr/local/bin/php'].find((p) => existsSync(p));
const PYTHON = ['/usr/bin/python3', '/usr/local/bin/python3'].find((p) => existsSync(p)) ?? (process.env.PATH ?? '').split(':').map((p) => `${p}/python3`).find((p) => existsSync(p));
// Skipped without php or python3, except under CI (.ci/run installs both), where a missing one fails.
const skipPhp = PHP || process.env.CI ? false : 'php is not installed (.ci/run installs php-cli)';
const skipPython = PYTHON || process.env.CI ? false : 'python3 is not installed (.ci/run installs it)';

test('README: the plain-PHP JWT snippet (hash_hmac, base64url) mints a token that binds', { skip: skipPhp }, async (t) => {
  const snippet = readmeSnippet('php', 'function notify_jwt');
  const { stdout } = await promisify(execFile)(PHP ?? 'php', ['-r', `${snippet}\necho notify_jwt(getenv('NOTIFY_WS_SECRET'), 'uid1', 600);`], {
    timeout: 10_000,
    env: { ...process.env, NOTIFY_WS_SECRET: SECRET },
  });
  assert.deepEqual(decodeProtectedHeader(stdout), { alg: 'HS256', typ: 'JWT' });
  assert.ok(Math.abs((decodeJwt(stdout).exp ?? 0) - (nowS() + 600)) <= 5);
  await bindsWith(t, stdout);
});

test('README: the Python standard-library JWT snippet mints a token that binds', { skip: skipPython }, async (t) => {
  const snippet = readmeSnippet('python', 'def notify_jwt');
  const { stdout } = await promisify(execFile)(PYTHON ?? 'python3', ['-c', `${snippet}\nimport os\nprint(notify_jwt(os.environ["NOTIFY_WS_SECRET"], "uid1", 600), end="")\n`], {
    timeout: 10_000,
    env: { ...process.env, NOTIFY_WS_SECRET: SECRET },
  });
  assert.deepEqual(decodeProtectedHeader(stdout), { alg: 'HS256', typ: 'JWT' });
  assert.ok(Math.abs((decodeJwt(stdout).exp ?? 0) - (nowS() + 600)) <= 5);
  await bindsWith(t, stdout);
});
