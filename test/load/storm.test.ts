import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { WebSocket } from 'ws';
import { stringify } from 'yaml';
import { makeToken } from '../../src/auth.js';
import { startChild } from '../helpers/child.js';
import { HANG_MS, until } from '../helpers/clients.js';
import { tempDir } from '../helpers/daemon.js';

/**
 * The reconnect storm (issue 6, item 6): 10,000 token-authenticated sessions all drop and
 * rebind, and the daemon stays within its memory bound and answers every push throughout.
 * How fast is `npm run bench`'s question; this test reports the latencies it saw as
 * diagnostics and asserts what happened: every session rebound, every publish answered.
 *
 * The daemon is a child process (`notify serve`), so its RSS is its own; this process holds the
 * 10,000 client sockets. Publishes during the storm come from a worker thread, so that they keep
 * flowing while this event loop is busy with the clients.
 */

const SESSIONS = 10_000;
const IN_FLIGHT = 500;
/** Answers slower than this are listed in the diagnostics (not a bound: see bench/). */
const SLOW_NOTE_MS = 1000;
/** Publishes the worker sends before it may stop, so that they flow through the whole storm. */
const MIN_TEXT = 200;
const MIN_HTTP = 20;
const KB = 1024;
const MB = 1024 * KB;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** The soft limit on open files of this process. */
function fdLimit(): number {
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
  return m === null ? 0 : m[1] === 'unlimited' ? Infinity : Number(m[1]);
}

function rss(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, `VmRSS of ${pid}`);
  return Number(m[1]) * KB;
}

const mb = (bytes: number) => `${(bytes / MB).toFixed(1)} MB`;

/** Runs `fn` over 0..n-1 with at most `width` at once. */
async function pool(n: number, width: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, n) }, async () => {
      while (next < n) await fn(next++);
    }),
  );
}

interface Client {
  uid: string;
  ws: WebSocket | undefined;
  /** Frames received by the current connection. */
  frames: string[];
  /** Closes of a live connection that the test did not make (their codes). */
  unexpected: number[];
  /** Set while the test itself drops this client. */
  dropping: boolean;
}

/** Opens one session: resolves once the upgrade succeeded; rejects with the refusal otherwise. */
function connectClient(url: string, c: Client): Promise<void> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { perMessageDeflate: false });
    c.ws = ws;
    c.dropping = false;
    c.frames = [];
    ws.on('error', (err) => reject(new Error(`${c.uid}: ${err.message}`)));
    ws.once('unexpected-response', (req, res) => {
      req.destroy();
      reject(new Error(`${c.uid}: upgrade refused with HTTP ${res.statusCode}`));
    });
    ws.on('message', (data) => c.frames.push(data.toString()));
    ws.on('close', (code) => {
      if (c.ws === ws && !c.dropping) c.unexpected.push(code);
    });
    ws.once('open', () => resolve());
  });
}

interface Status {
  sessions: number;
  uids: number;
  connections: number;
}

async function status(http: string): Promise<Status> {
  const res = await fetch(`http://${http}/v1/status`, { signal: AbortSignal.timeout(5000) });
  assert.equal(res.status, 200);
  return (await res.json()) as Status;
}

async function untilStatus(http: string, check: (s: Status) => boolean, what: string, ms: number): Promise<Status> {
  const deadline = Date.now() + ms;
  let last: Status | undefined;
  for (;;) {
    last = await status(http);
    if (check(last)) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last status ${JSON.stringify(last)}`);
    await sleep(100);
  }
}

/**
 * The publishers, in a worker thread: a Text connection sends a line for a random uid every few
 * ms and an HTTP /v1/send goes out every 50 ms; each answer's latency is noted there. On
 * 'stop' it stops sending (once it has sent MIN_TEXT and MIN_HTTP), waits for the answers still
 * due (HANG_MS at most: a missing one fails the test), and reports.
 */
const PUBLISHER = `
const { parentPort, workerData } = require('node:worker_threads');
const net = require('node:net');
const { text, http, sessions, textEveryMs, httpEveryMs } = workerData;
const [host, port] = [text.slice(0, text.lastIndexOf(':')), Number(text.slice(text.lastIndexOf(':') + 1))];
const r = { textSent: 0, textAnswered: 0, textMaxMs: 0, httpSent: 0, httpAnswered: 0, httpMaxMs: 0, bad: [], slow: [] };
const pending = [];
let httpInFlight = new Set();
const started = performance.now();
const note = (kind, ms) => { if (ms > ${SLOW_NOTE_MS} && r.slow.length < 20) r.slow.push(kind + ' ' + Math.round(ms) + ' ms at +' + Math.round(performance.now() - started) + ' ms'); };
const sock = net.connect({ host, port });
sock.setNoDelay(true);
sock.setEncoding('utf8');
sock.on('error', (err) => r.bad.push('text socket: ' + err.message));
let rest = '';
sock.on('data', (chunk) => {
  rest += chunk;
  let nl;
  while ((nl = rest.indexOf('\\n')) !== -1) {
    const line = rest.slice(0, nl);
    rest = rest.slice(nl + 1);
    const at = pending.shift();
    const ms = performance.now() - at;
    r.textAnswered++;
    r.textMaxMs = Math.max(r.textMaxMs, ms);
    note('text', ms);
    if (line !== 'ok' && line !== 'fail' && r.bad.length < 20) r.bad.push('text reply: ' + line);
  }
});
let textTimer, httpTimer;
sock.on('connect', () => {
  textTimer = setInterval(() => {
    const uid = 'u' + Math.floor(Math.random() * sessions);
    pending.push(performance.now());
    r.textSent++;
    sock.write(JSON.stringify({ uid, msg: 'storm ' + r.textSent }) + '\\n');
  }, textEveryMs);
  parentPort.postMessage('started');
});
httpTimer = setInterval(() => {
  const uid = 'u' + Math.floor(Math.random() * sessions);
  const t0 = performance.now();
  r.httpSent++;
  const p = fetch('http://' + http + '/v1/send', { method: 'POST', body: JSON.stringify({ uid, msg: 'storm http ' + r.httpSent }), signal: AbortSignal.timeout(${HANG_MS}) })
    .then(async (res) => {
      const body = await res.json();
      const ms = performance.now() - t0;
      r.httpAnswered++;
      r.httpMaxMs = Math.max(r.httpMaxMs, ms);
      note('http', ms);
      if (res.status !== 200 || typeof body.delivered !== 'boolean') r.bad.push('http ' + res.status + ' ' + JSON.stringify(body));
    })
    .catch((err) => r.bad.push('http: ' + err.message))
    .finally(() => httpInFlight.delete(p));
  httpInFlight.add(p);
}, httpEveryMs);
parentPort.on('message', async (m) => {
  if (m !== 'stop') return;
  while ((r.textSent < ${MIN_TEXT} || r.httpSent < ${MIN_HTTP}) && performance.now() - started < ${HANG_MS}) await new Promise((res) => setTimeout(res, 20));
  clearInterval(textTimer);
  clearInterval(httpTimer);
  const deadline = performance.now() + ${HANG_MS};
  while ((pending.length > 0 || httpInFlight.size > 0) && performance.now() < deadline) await new Promise((res) => setTimeout(res, 20));
  // An answer that never came counts with the age it has now.
  if (pending.length > 0) r.textMaxMs = Math.max(r.textMaxMs, performance.now() - pending[0]);
  sock.destroy();
  parentPort.postMessage(r);
});
`;

interface PublisherReport {
  textSent: number;
  textAnswered: number;
  textMaxMs: number;
  httpSent: number;
  httpAnswered: number;
  httpMaxMs: number;
  bad: string[];
  slow: string[];
}

test('storm: 10,000 token-authenticated sessions drop and rebind at once; the daemon answers every push meanwhile and stays within its memory bound', { timeout: 300_000 }, async (t) => {
  const limit = fdLimit();
  if (limit < 12_000) {
    const why = `needs 10,000 client sockets in this process and ulimit -n is ${limit} (< 12,000); raise it (ulimit -n 20000) to run the storm`;
    if (process.env.CI) assert.fail(why);
    t.skip(why);
    return;
  }
  const began = Date.now();
  const secret = 'storm-secret-0123456789abcdefghijklmnopqrstuvwxyz';
  const dir = tempDir(t, 'notify-storm-');
  const config = join(dir, 'notify.yaml');
  writeFileSync(
    config,
    stringify({
      ws: { listen: '127.0.0.1:0', auth: 'token', secret },
      text: { listen: '127.0.0.1:0' },
      http: { listen: '127.0.0.1:0' },
      state: { dir: './state' },
      log: { level: 'info' },
      // Every client is 127.0.0.1: the per-IP caps must let all of them in, twice over.
      limits: { connections: 30_000, connectionsPerIp: 30_000, connectRatePerIp: 50_000 },
    }),
  );
  const child = await startChild(t, config);
  const pid = child.proc.pid as number;
  const wsBase = `ws://${child.ws}/`;
  const clients: Client[] = Array.from({ length: SESSIONS }, (_, i) => ({ uid: `u${i}`, ws: undefined, frames: [], unexpected: [], dropping: false }));
  t.after(() => {
    for (const c of clients) {
      c.dropping = true;
      c.ws?.terminate();
    }
  });
  const exp = Date.now() / 1000 + 3600;
  const urls = clients.map((c) => `${wsBase}?uid=${c.uid}&token=${encodeURIComponent(makeToken(secret, c.uid, exp))}`);

  // Tokens are really checked: one for another uid is refused (4406) and binds nothing.
  const forged = new WebSocket(`${wsBase}?uid=u0&token=${encodeURIComponent(makeToken(secret, 'u1', exp))}`);
  forged.on('error', () => {});
  const [forgedCode] = (await once(forged, 'close')) as [number];
  assert.equal(forgedCode, 4406, 'a token for another uid is refused');

  await sleep(500);
  const rssIdle = rss(pid);

  // --- 10,000 sessions, at most 500 handshakes in flight -------------------------------------
  let t0 = Date.now();
  await pool(SESSIONS, IN_FLIGHT, (i) => connectClient(urls[i] as string, clients[i] as Client));
  await untilStatus(child.http, (s) => s.sessions === SESSIONS && s.uids === SESSIONS, `${SESSIONS} sessions`, HANG_MS);
  const connectMs = Date.now() - t0;
  await sleep(500);
  const rssBound = rss(pid);
  t.diagnostic(`connected ${SESSIONS} sessions in ${connectMs} ms; daemon RSS ${mb(rssIdle)} idle -> ${mb(rssBound)} with ${SESSIONS} sessions (${((rssBound - rssIdle) / SESSIONS / KB).toFixed(1)} KB per session)`);

  // --- The storm: every client drops at once and reconnects at once, while publishes flow -----
  const worker = new Worker(PUBLISHER, { eval: true, workerData: { text: child.text, http: child.http, sessions: SESSIONS, textEveryMs: 3, httpEveryMs: 50 } });
  t.after(() => worker.terminate());
  const [startedMsg] = (await once(worker, 'message')) as [string];
  assert.equal(startedMsg, 'started');
  await sleep(300);

  let rssPeak = rssBound;
  const sampler = setInterval(() => {
    try {
      rssPeak = Math.max(rssPeak, rss(pid));
    } catch {
      // the child is gone; asserted below
    }
  }, 50);
  t.after(() => clearInterval(sampler));

  t0 = Date.now();
  for (const c of clients) {
    c.dropping = true;
    c.ws?.terminate();
  }
  await pool(SESSIONS, IN_FLIGHT, (i) => connectClient(urls[i] as string, clients[i] as Client));
  const reconnectMs = Date.now() - t0;
  const rebound = await untilStatus(child.http, (s) => s.sessions === SESSIONS && s.connections === SESSIONS, `${SESSIONS} sessions again, and no old connection left`, HANG_MS);
  const stormMs = Date.now() - t0;
  await sleep(500);
  worker.postMessage('stop');
  const [report] = (await once(worker, 'message')) as [PublisherReport];
  clearInterval(sampler);
  const rssAfter = rss(pid);
  t.diagnostic(`storm: all ${SESSIONS} reconnected in ${reconnectMs} ms, the daemon had them all bound again after ${stormMs} ms (${JSON.stringify(rebound)})`);
  t.diagnostic(`publishes: text ${report.textAnswered}/${report.textSent} answered, max ${Math.round(report.textMaxMs)} ms; http ${report.httpAnswered}/${report.httpSent}, max ${Math.round(report.httpMaxMs)} ms; slow: ${JSON.stringify(report.slow)}`);
  t.diagnostic(`daemon RSS: idle ${mb(rssIdle)}, ${SESSIONS} sessions ${mb(rssBound)}, storm peak ${mb(rssPeak)}, after the storm ${mb(rssAfter)}`);

  assert.equal(child.proc.exitCode, null, 'the daemon is alive');
  assert.equal(rebound.uids, SESSIONS);
  assert.deepEqual(
    clients.filter((c) => c.unexpected.length > 0).slice(0, 5).map((c) => `${c.uid}: ${c.unexpected}`),
    [],
    'no session was closed by the daemon (a refused token, a limit)',
  );

  // Every publish was answered, ok or fail, all through the storm.
  assert.deepEqual(report.bad, [], 'every answer was ok/fail (Text) or a 200 report (HTTP)');
  assert.ok(report.textSent >= MIN_TEXT && report.httpSent >= MIN_HTTP, `publishes flowed throughout (${report.textSent} text, ${report.httpSent} http)`);
  assert.equal(report.textAnswered, report.textSent, 'every Text publish was answered');
  assert.equal(report.httpAnswered, report.httpSent, 'every HTTP publish was answered');

  // Memory. The project aims at about 8 KB of daemon memory per idle session. RSS moves with
  // the garbage collector (freed sessions are not returned at once, the heap grows in steps),
  // so the bounds are twice that goal, plus slack:
  // - with 10,000 sessions bound, at most 16 KB per session above the idle daemon;
  // - after all of them dropped and rebound, at most 1.5 x the RSS with sessions, plus 32 MB
  //   for GC timing: the old sessions' memory is reused, not kept on top (a leak of a few KB
  //   per dropped session, 10,000 of them, shows);
  // - at the storm's peak (old sessions not yet collected while new ones arrive), at most twice
  //   the per-session bound above idle.
  assert.ok(rssBound - rssIdle < SESSIONS * 16 * KB, `RSS with ${SESSIONS} sessions ${mb(rssBound)} - idle ${mb(rssIdle)} < ${mb(SESSIONS * 16 * KB)}`);
  assert.ok(rssAfter < 1.5 * rssBound + 32 * MB, `RSS after the storm ${mb(rssAfter)} < 1.5 x ${mb(rssBound)} + 32 MB`);
  assert.ok(rssPeak - rssIdle < 2 * SESSIONS * 16 * KB, `RSS peak during the storm ${mb(rssPeak)} - idle ${mb(rssIdle)} < ${mb(2 * SESSIONS * 16 * KB)}`);

  // A push to a few random uids reaches their new sessions, and only those.
  for (const i of [0, SESSIONS - 1, ...Array.from({ length: 5 }, () => Math.floor(Math.random() * SESSIONS))]) {
    const c = clients[i] as Client;
    const msg = `after the storm ${i}`;
    const res = await fetch(`http://${child.http}/v1/send`, { method: 'POST', body: JSON.stringify({ uid: c.uid, msg }) });
    const r = (await res.json()) as { sent: number; delivered: boolean };
    assert.equal(res.status, 200);
    assert.equal(r.sent, 1, `${c.uid}: exactly one session (the new one): ${JSON.stringify(r)}`);
    await until(() => c.frames.includes(msg), `${c.uid}'s new session to get the push`);
  }

  assert.equal(child.proc.exitCode, null, 'the daemon is still alive');
  t.diagnostic(`storm test took ${Date.now() - began} ms`);
});
