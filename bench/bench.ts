/**
 * `npm run bench`: end-to-end throughput, latency and memory of the daemon.
 *
 * Per run: start a daemon child process (pinned to CPU 0 when taskset exists and there are two
 * CPUs; this process pins itself to CPU 1), connect N WebSocket sessions each bound to its own
 * uid, then push M targeted messages through one pipelined Text ingress connection keeping W
 * in flight (a push is in flight from its line's write until its frame arrives). Prints one
 * JSON object per run on stderr and the medians of all runs on stdout.
 *
 * Then the APNs row: a daemon whose `apns` transport points at a fake APNs server (HTTP/2 over
 * TLS, in this process) and whose config lists T device tokens for one uid; one message to that
 * uid through the HTTP API; notifications per second until the report, and the daemon's peak RSS.
 *
 * Options: --sessions N (10000) --pushes M (200000) --inflight W (64) --runs R (3)
 *          --apns-tokens T (10000; 0 skips the APNs row) --only ws|apns
 *          --history on|off|both (both: the targeted-push runs with the message store on, then off)
 *          --server notify|bare (notify; bare = a ws + net server that does nothing else; no APNs row)
 * Env: NOTIFY_BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=prof" adds node flags to the server.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { WebSocket } from 'ws';

const { values: args } = parseArgs({
  options: {
    sessions: { type: 'string', default: '10000' },
    pushes: { type: 'string', default: '200000' },
    inflight: { type: 'string', default: '64' },
    runs: { type: 'string', default: '3' },
    server: { type: 'string', default: 'notify' },
    'apns-tokens': { type: 'string', default: '10000' },
    history: { type: 'string', default: 'both' },
    only: { type: 'string' },
  },
});
const APNS_TOKENS = Number(args['apns-tokens']);
const ONLY = args.only as 'ws' | 'apns' | undefined;
const HISTORY_MODES: boolean[] = args.history === 'on' ? [true] : args.history === 'off' ? [false] : [true, false];
const N = Number(args.sessions);
const M = Number(args.pushes);
const W = Number(args.inflight);
const RUNS = Number(args.runs);
const SERVER = args.server as 'notify' | 'bare';
const ROOT = new URL('../../', import.meta.url).pathname;

function hasTaskset(): boolean {
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const PIN = hasTaskset() && availableParallelism() >= 2;

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Server {
  child: ChildProcess;
  ws: string;
  text: string;
  http: string | undefined;
}

/**
 * Starts the server under test and reads its listener addresses from its JSON log lines.
 * `extraYaml` is appended to the notify config.
 */
async function startServer(dir: string, extraYaml = '', history = true): Promise<Server> {
  const node = [process.execPath, ...(process.env.NOTIFY_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean)];
  let cmd: string[];
  if (SERVER === 'bare') {
    cmd = [...node, join(ROOT, 'dist/bench/bare-server.js')];
  } else {
    const config = join(dir, 'bench.yaml');
    writeFileSync(
      config,
      'ws: {listen: "127.0.0.1:0"}\ntext: {listen: "127.0.0.1:0", maxPipelinedLines: 4096}\nhttp: {listen: "127.0.0.1:0"}\n' +
        `state: {dir: ${JSON.stringify(join(dir, 'state'))}}\nhistory: {enabled: ${history}}\n` +
        // Every bench client connects from 127.0.0.1: lift the per-address caps.
        `limits: {connections: 1000000, connectionsPerIp: 1000000, connectRatePerIp: 1000000}\n${extraYaml}`,
    );
    cmd = [...node, join(ROOT, 'bin/notify'), 'serve', '--config', config];
  }
  if (PIN) cmd = ['taskset', '-c', '0', ...cmd];
  const child = spawn(cmd[0] as string, cmd.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  const found: Record<string, string> = {};
  let buf = '';
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`server exited with ${code} before listening`)));
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const e = JSON.parse(line) as { listener?: string; address?: string; level?: string; msg?: string };
          if (e.listener && e.address) found[e.listener] = e.address;
          if (e.level === 'error' || e.level === 'warn') process.stderr.write(`server: ${line}\n`);
        } catch {
          process.stderr.write(`server: ${line}\n`);
        }
        if (found.ws && found.text && (SERVER === 'bare' || found.http)) resolve();
      }
    });
  });
  return { child, ws: found.ws as string, text: found.text as string, http: found.http };
}

async function stopServer(s: Server): Promise<void> {
  if (s.child.exitCode !== null) return;
  s.child.kill('SIGTERM');
  const timer = setTimeout(() => s.child.kill('SIGKILL'), 15_000);
  await once(s.child, 'exit');
  clearTimeout(timer);
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;

interface RunResult {
  sessions: number;
  connectPerSec: number;
  pushes: number;
  inflight: number;
  pushesPerSec: number;
  latencyMs: { p50: number; p99: number; max: number };
  daemonRssBytes: { idle: number; withSessions: number; afterPushes: number };
  rssPerSessionBytes: number;
  lost: number;
  duplicates: number;
  replies: { ok: number; fail: number; error: number };
}

async function run(history: boolean): Promise<RunResult> {
  const dir = mkdtempSync(join(tmpdir(), 'notify-bench-'));
  const server = await startServer(dir, '', history);
  const pid = server.child.pid as number;
  try {
    await sleep(1000);
    const idle = rssBytes(pid);

    // Connect and bind N sessions, at most 500 handshakes at a time.
    const clients: WebSocket[] = new Array(N);
    const sendTime = new Float64Array(M);
    const latency = new Float64Array(M);
    const seen = new Uint8Array(M);
    let received = 0;
    let duplicates = 0;
    let onFrame: () => void = () => {};
    const connectStart = performance.now();
    let next = 0;
    let opened = 0;
    await new Promise<void>((resolve, reject) => {
      const open = () => {
        if (next >= N) return;
        const i = next++;
        const ws = new WebSocket(`ws://${server.ws}/`, { perMessageDeflate: false });
        clients[i] = ws;
        ws.on('open', () => {
          ws.send(`u${i}`);
          if (++opened === N) resolve();
          else open();
        });
        ws.on('message', (data: Buffer) => {
          const text = data.toString();
          const seq = Number(text.slice(text.lastIndexOf(':') + 1, -1));
          if (seen[seq]) duplicates++;
          else {
            seen[seq] = 1;
            latency[received++] = performance.now() - (sendTime[seq] as number);
          }
          onFrame();
        });
        ws.on('error', reject);
      };
      for (let k = 0; k < 500; k++) open();
    });
    // Binding is one frame after open; wait until the server has them all (or a short grace for bare).
    if (server.http) {
      for (;;) {
        const h = (await (await fetch(`http://${server.http}/healthz`)).json()) as { transports: { websocket: { sessions: number } } };
        if (h.transports.websocket.sessions >= N) break;
        await sleep(50);
      }
    } else await sleep(500);
    const connectSec = (performance.now() - connectStart) / 1000;
    await sleep(2000);
    const withSessions = rssBytes(pid);

    // Push M messages over one pipelined Text connection, W in flight.
    const [host, port] = [server.text.slice(0, server.text.lastIndexOf(':')), Number(server.text.split(':').pop())];
    const text: Socket = connect({ host, port });
    text.setNoDelay(true);
    await once(text, 'connect');
    const replies = { ok: 0, fail: 0, error: 0 };
    let replyBuf = '';
    text.setEncoding('utf8');
    text.on('data', (chunk: string) => {
      replyBuf += chunk;
      let nl: number;
      while ((nl = replyBuf.indexOf('\n')) !== -1) {
        const line = replyBuf.slice(0, nl);
        replyBuf = replyBuf.slice(nl + 1);
        if (line === 'ok') replies.ok++;
        else if (line === 'fail') replies.fail++;
        else replies.error++;
      }
    });
    let sent = 0;
    let pending = '';
    let flushQueued = false;
    const flush = () => {
      flushQueued = false;
      text.write(pending);
      pending = '';
    };
    const sendOne = () => {
      const seq = sent++;
      pending += `{"uid":"u${seq % N}","seq":${seq}}\n`;
      sendTime[seq] = performance.now();
      if (!flushQueued) {
        flushQueued = true;
        setImmediate(flush);
      }
    };
    const pushStart = performance.now();
    let lastProgress = Date.now();
    const done = new Promise<void>((resolve) => {
      onFrame = () => {
        lastProgress = Date.now();
        if (sent < M) sendOne();
        if (received === M) resolve();
      };
      const watchdog = setInterval(() => {
        if (received === M || Date.now() - lastProgress > 5000) {
          clearInterval(watchdog);
          resolve();
        }
      }, 200);
    });
    for (let k = 0; k < Math.min(W, M); k++) sendOne();
    await done;
    const pushSec = (performance.now() - pushStart) / 1000;
    await sleep(200);
    const afterPushes = rssBytes(pid);
    text.destroy();
    for (const ws of clients) ws?.terminate();

    const lat = latency.slice(0, received).sort();
    return {
      sessions: N,
      connectPerSec: Math.round(N / connectSec),
      pushes: M,
      inflight: W,
      pushesPerSec: Math.round(received / pushSec),
      latencyMs: { p50: round(percentile(lat, 50), 3), p99: round(percentile(lat, 99), 3), max: round(lat[lat.length - 1] ?? NaN, 3) },
      daemonRssBytes: { idle, withSessions, afterPushes },
      rssPerSessionBytes: Math.round((withSessions - idle) / N),
      lost: M - received,
      duplicates,
      replies,
    };
  } finally {
    await stopServer(server);
    rmSync(dir, { recursive: true, force: true });
  }
}

interface ApnsRunResult {
  tokens: number;
  sent: number;
  failed: number;
  seconds: number;
  notificationsPerSec: number;
  daemonPeakRssBytes: number;
}

function peakRssBytes(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** One message to a uid with T APNs device tokens, delivered through a fake APNs server. */
async function runApns(): Promise<ApnsRunResult> {
  const { makeApnsKey, startFakeApns } = await import('../test/helpers/fake-apns.js');
  const { randomBytes } = await import('node:crypto');
  const key = makeApnsKey();
  const fake = await startFakeApns({ key, initialMaxConcurrentStreams: 1, maxConcurrentStreams: 1000 });
  const dir = mkdtempSync(join(tmpdir(), 'notify-bench-apns-'));
  writeFileSync(join(dir, 'AuthKey.p8'), key.pem);
  writeFileSync(join(dir, 'ca.pem'), fake.ca);
  const tokens = Array.from({ length: APNS_TOKENS }, () => randomBytes(32).toString('hex'));
  const yaml =
    'dispatch: {deliverTimeoutMs: 600000}\n' +
    'transports:\n  apns:\n    topic: com.example.bench\n' +
    `    token: {key: ${JSON.stringify(join(dir, 'AuthKey.p8'))}, keyId: ${key.keyId}, teamId: ${key.teamId}}\n` +
    `    address: localhost\n    port: ${fake.port}\n    ca: ${JSON.stringify(join(dir, 'ca.pem'))}\n` +
    `devices:\n  ios-bench:\n    apns:\n${tokens.map((t) => `      - ${t}\n`).join('')}`;
  const server = await startServer(dir, yaml);
  try {
    await sleep(500);
    const started = performance.now();
    const res = await fetch(`http://${server.http}/v1/send`, {
      method: 'POST',
      body: JSON.stringify({ uid: 'ios-bench', title: 'bench', msg: 'notify apns bench' }),
    });
    const report = (await res.json()) as { sent: number; failed: number; rejected: number };
    const seconds = (performance.now() - started) / 1000;
    return {
      tokens: APNS_TOKENS,
      sent: report.sent,
      failed: report.failed + report.rejected,
      seconds: round(seconds, 3),
      notificationsPerSec: Math.round(report.sent / seconds),
      daemonPeakRssBytes: peakRssBytes(server.child.pid as number),
    };
  } finally {
    await stopServer(server);
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

async function main(): Promise<void> {
  const cpus = availableParallelism();
  if (PIN) execFileSync('taskset', ['-cp', '1', String(process.pid)], { stdio: 'ignore' });
  process.stderr.write(
    `bench: server=${SERVER} sessions=${N} pushes=${M} inflight=${W} runs=${RUNS} node=${process.version} ` +
      `cpus=${cpus} pinned=${PIN ? 'server cpu0, client cpu1' : 'no'}\n`,
  );
  const byMode = new Map<boolean, RunResult[]>();
  if (ONLY !== 'apns') {
    for (const history of SERVER === 'bare' ? [false] : HISTORY_MODES) {
      const list: RunResult[] = [];
      for (let r = 1; r <= RUNS; r++) {
        const res = await run(history);
        list.push(res);
        process.stderr.write(`run ${r}${SERVER === 'bare' ? '' : ` (history ${history ? 'on' : 'off'})`}: ${JSON.stringify(res)}\n`);
      }
      byMode.set(history, list);
    }
  }
  const apnsResults: ApnsRunResult[] = [];
  if (ONLY !== 'ws' && SERVER === 'notify' && APNS_TOKENS > 0) {
    for (let r = 1; r <= RUNS; r++) {
      const res = await runApns();
      apnsResults.push(res);
      process.stderr.write(`apns run ${r}: ${JSON.stringify(res)}\n`);
    }
  }
  const amed = (f: (r: ApnsRunResult) => number) => median(apnsResults.map(f));
  const targeted = (results: RunResult[]) => {
    const med = (f: (r: RunResult) => number) => median(results.map(f));
    return {
      median: {
        connectPerSec: med((r) => r.connectPerSec),
        pushesPerSec: med((r) => r.pushesPerSec),
        latencyMs: { p50: med((r) => r.latencyMs.p50), p99: med((r) => r.latencyMs.p99), max: med((r) => r.latencyMs.max) },
        rssPerSessionBytes: med((r) => r.rssPerSessionBytes),
        daemonRssWithSessionsBytes: med((r) => r.daemonRssBytes.withSessions),
      },
      lost: results.reduce((n, r) => n + r.lost, 0),
      duplicates: results.reduce((n, r) => n + r.duplicates, 0),
      notOkReplies: results.reduce((n, r) => n + r.replies.fail + r.replies.error, 0),
    };
  };
  const on = byMode.get(true);
  const off = byMode.get(false);
  const summary = {
    server: SERVER,
    runs: RUNS,
    ...(byMode.size > 0 && { sessions: N, pushes: M, inflight: W }),
    ...(on && { historyOn: targeted(on) }),
    ...(off && { [SERVER === 'bare' ? 'bare' : 'historyOff']: targeted(off) }),
    ...(on && off && SERVER === 'notify' && {
      historyOnVsOff: round(median(on.map((r) => r.pushesPerSec)) / median(off.map((r) => r.pushesPerSec)), 3),
    }),
    ...(apnsResults.length > 0 && {
      apns: {
        tokens: APNS_TOKENS,
        median: {
          notificationsPerSec: amed((r) => r.notificationsPerSec),
          seconds: amed((r) => r.seconds),
          daemonPeakRssBytes: amed((r) => r.daemonPeakRssBytes),
        },
        notSent: apnsResults.reduce((n, r) => n + (r.tokens - r.sent), 0),
      },
    }),
  };
  process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  process.exit(0);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
