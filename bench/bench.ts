/**
 * `npm run bench`: notify next to a bare ws + net server (bench/bare-server.ts) on the
 * workload of the original Workerman push example, in one invocation.
 *
 * One run = one fresh server process (notify or bare) and this workload:
 * 1. Idle RSS of the server 1 s after it listens.
 * 2. N WebSocket sessions (500 handshakes at a time), each sending its uid as its first text
 *    frame (the original protocol): uids u0..u(N-1). The bench waits until the server has
 *    bound all N (notify: GET /healthz; bare: GET /sessions), waits 2 s, and reads the RSS
 *    with sessions: KB RSS/session = (RSS with sessions - idle RSS) / N.
 * 3. Push phase: M pushes, each to a uniformly random uid of u0..u(N-1) (a seeded PRNG: run r
 *    sends the same sequence to notify and bare), as lines `{"uid":"uNNN","seq":S}\n` over K
 *    persistent Text connections with C lines in flight in all (C split as evenly as possible
 *    over min(K, C) connections; C=1 is one connection with one line in flight). Each
 *    connection writes its whole window in one socket.write, then on each reply line writes a
 *    new line at once, the refills of one 'data' event in one write. Both servers send the
 *    line itself as the frame, so its seq identifies the push. A push is delivered when its
 *    frame arrives at the session of the uid it was addressed to; latency runs from the write
 *    of its line to that arrival. Counted: lost (never delivered), dup (delivered again),
 *    misrouted (a frame at a session whose uid is not the one addressed), and the replies
 *    (ok / fail / error; all must be ok). The phase ends when every push is delivered and
 *    answered, or after 5 s without progress.
 *    Server CPU µs/push: utime+stime of the server (/proc/PID/stat, in CLK_TCK ticks) over the
 *    push phase only, divided by M. RSS growth MB = RSS after the pushes - RSS with sessions.
 *    pushes/s = delivered / push-phase seconds. clientCpuPct (JSON) is this process's CPU over
 *    the push phase, in % of one core: near 100 means the client, not the server, was the limit.
 * The server is pinned to CPU 0 (`taskset -c 0`) and this process to CPU 1 (`taskset -cp 1`)
 * when taskset exists and there are 2+ CPUs.
 *
 * Order: the main case (C = --inflight) runs notify run 1, bare run 1, notify run 2, bare run
 * 2, ... (R runs each; a history-off notify run, when asked for, follows the bare run of its
 * round); then the C=1 case the same way (one push at a time, --c1 pushes). Figures are the
 * medians of each server's runs; lost/dup/misrouted and non-ok replies are summed over runs.
 * notify runs with its default config except: listeners on 127.0.0.1:0, state.dir in a temp
 * dir, the per-address connection limits lifted (every bench client is 127.0.0.1),
 * text.maxPipelinedLines = max(4096, C), and history.enabled as the run says.
 *
 * Then the APNs row: a notify daemon whose `apns` transport points at a fake APNs server (HTTP/2
 * over TLS, in this process) and whose config lists T device tokens for one uid; one message
 * to that uid through the HTTP API; notifications per second until the report, and the
 * daemon's peak RSS (VmHWM), also just before the message. Over that time, the daemon's CPU per
 * notification (utime + stime from /proc) and in % of a core, and this process's CPU (where the
 * fake runs) in % of a core: near 100 means the fake, not the daemon, was the limit. R runs, medians.
 *
 * Then the Web Push row, the same way: a `webpush` transport trusting a fake push service
 * (HTTPS, in this process, which verifies each VAPID JWT and decrypts each body), W subscriptions
 * of one uid listed in the config, one message to that uid.
 *
 * Then the FCM row, the same way: a notify daemon whose `fcm` transport points at a fake FCM
 * and OAuth token endpoint (HTTPS, in this process; the daemon trusts its certificate with `ca`)
 * and whose config lists T registration tokens for one uid; one message to that uid through the
 * HTTP API; notifications per second until the report (the access token fetch included), and
 * the daemon's peak RSS. The transport runs with its defaults (maxConcurrentRequests 32,
 * HTTP/1.1 keep-alive). R runs, medians.
 *
 * Then, with --cluster NODES (or --only cluster), the cluster case: the main case's workload
 * (N sessions, M pushes, K connections, C in flight) against a single notify node with the
 * embedded store, then against a cluster, alternating run by run (R runs each). A cluster run
 * starts a redis-server of its own (`redis-server` on PATH, or NOTIFY_BENCH_REDIS_SERVER: a free
 * loopback port, `--save '' --appendonly no`, a temp dir of its own; stopped at the end of the run)
 * and NODES notify nodes on it (each `notify serve` with cluster.redis and cluster.node
 * bench-1, bench-2, ...; the rest of the config as above). Session i connects to node i % NODES,
 * Text connection k to node k % NODES, so with two nodes half the sessions and half the
 * connections are on each node and about half of the pushes cross nodes. The sessions count as
 * bound when every node's /healthz has its share and every uid is in the cluster's presence
 * (ZCARD notify:uids). Measured as above (latency from the line's write to the frame's arrival,
 * whichever node the session is on; lost/dup/misrouted and every reply ok), plus: the latency of
 * the cross-node pushes (written to one node, session on another) and of the same-node ones;
 * per node its KB RSS/session (over its own sessions), CPU µs/push (its CPU over the push phase /
 * all M pushes) and CPU % of one core; Redis's CPU (/proc of the redis-server over the push
 * phase) per push and in % of one core. CPU µs/push of the cluster row is nodes + Redis. The
 * JSON's `cluster` holds the ratios cluster/single and the issue's targets (nothing lost,
 * cross-node p99 under 20 ms at C in flight, cluster pushes/s at least 0.5x the single node's),
 * each with met true or false. Pinning (--cluster-pin): free (default): the single node on CPU 0
 * and this process on CPU 1 as in the other cases, while for the cluster runs nothing is pinned
 * (redis-server, the nodes and this process share both cores); split: the single node, and the
 * cluster's redis-server and nodes, all on CPU 0, this process on CPU 1 (the same server CPU
 * budget); none: nothing pinned in either.
 *
 * Options:
 *   --sessions N      WebSocket sessions, uids u0..u(N-1) (10000)
 *   --pushes M        pushes per run of the main case (200000); the per-push state is typed
 *                     arrays of M entries, so 500000 works for the RSS-growth check
 *   --connections K   persistent Text connections of the main case (8)
 *   --inflight C      lines in flight in all in the main case, split over the connections (64)
 *   --runs R          runs per server and case (3)
 *   --c1 M1           pushes per run of the C=1 case (20000); 0 skips the C=1 case
 *   --history MODE    notify's message store in the main case (the C=1 case always runs it on):
 *                       default: on for the R runs, plus one history-off notify run (round 1)
 *                       on: on only; off: off only (R runs); both: R runs on and R runs off
 *   --server S        notify | bare | both (both): which servers the WebSocket cases run
 *   --apns-tokens T   device tokens of the APNs row (10000); 0 skips the APNs row
 *   --webpush-subs W  subscriptions of the Web Push row (10000); 0 skips the Web Push row
 *   --fcm-tokens T    registration tokens of the FCM row (10000); 0 skips the FCM row
 *   --only ws|apns|webpush|fcm|cluster  run only the WebSocket cases, or only the APNs, the Web Push
 *                     or the FCM row, or only the cluster case
 *   --cluster NODES   add the cluster case with NODES nodes (0: none, the default; --only cluster
 *                     alone means 2)
 *   --cluster-pin P   free | split | none (free): pinning of the cluster case, see above
 *   --seed X          PRNG seed of the uid choice (1); run r uses X + r - 1
 * Env: NOTIFY_BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=prof" adds node flags to the server
 * processes (notify and bare, and each node of a cluster).
 *
 * Output: one JSON object on stdout (config, every run's raw figures, medians per case and
 * server, ratios notify/bare, the APNs, Web Push and FCM rows, the cluster case's ratios and targets); progress
 * lines and a table of the medians on stderr (and one of the cluster case's own figures). npm prints its own "> notify@..." lines (and the build's) on stdout: for clean JSON,
 * `npm run -s bench -- ... > bench.json`, or `node dist/bench/bench.js ...` after a build.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { WebSocket } from 'ws';
import { freePort, spawnRedis } from '../test/helpers/redis.js';

/** This file's own header comment, as text: the usage. */
function usage(): string {
  const source = readFileSync(new URL(import.meta.url), 'utf8');
  const block = /\/\*\*([\s\S]*?)\*\//.exec(source)?.[1] ?? '';
  return block.split('\n').map((l) => l.replace(/^ \* ?/, '').replace(/^ \*$/, '')).join('\n').trim() + '\n';
}

function parseOptions() {
  try {
    return parseArgs({
  options: {
    help: { type: 'boolean', short: 'h', default: false },
    sessions: { type: 'string', default: '10000' },
    pushes: { type: 'string', default: '200000' },
    connections: { type: 'string', default: '8' },
    inflight: { type: 'string', default: '64' },
    runs: { type: 'string', default: '3' },
    c1: { type: 'string', default: '20000' },
    history: { type: 'string', default: 'default' },
    server: { type: 'string', default: 'both' },
    'apns-tokens': { type: 'string', default: '10000' },
    'webpush-subs': { type: 'string', default: '10000' },
    'fcm-tokens': { type: 'string', default: '10000' },
    only: { type: 'string' },
    cluster: { type: 'string', default: '0' },
    'cluster-pin': { type: 'string', default: 'free' },
    seed: { type: 'string', default: '1' },
  },
    });
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message} (see --help)\n`);
    process.exit(2);
  }
}
const { values: args } = parseOptions();
if (args.help) {
  process.stdout.write(usage());
  process.exit(0);
}

function intArg(name: string, min: number): number {
  const v = Number(args[name as keyof typeof args]);
  if (!Number.isInteger(v) || v < min) throw new Error(`--${name} must be an integer >= ${min}`);
  return v;
}
const N = intArg('sessions', 1);
const M = intArg('pushes', 1);
const K = intArg('connections', 1);
const C = intArg('inflight', 1);
const RUNS = intArg('runs', 1);
const M1 = intArg('c1', 0);
const APNS_TOKENS = intArg('apns-tokens', 0);
const WEBPUSH_SUBS = intArg('webpush-subs', 0);
const FCM_TOKENS = intArg('fcm-tokens', 0);
const SEED = intArg('seed', 0);
const HISTORY = args.history as string;
if (!['default', 'on', 'off', 'both'].includes(HISTORY)) throw new Error('--history must be default, on, off or both');
const SERVERS: ServerKind[] =
  args.server === 'both' ? ['notify', 'bare'] : args.server === 'notify' || args.server === 'bare' ? [args.server] : [];
if (SERVERS.length === 0) throw new Error('--server must be notify, bare or both');
const ONLY = args.only as 'ws' | 'apns' | 'webpush' | 'fcm' | 'cluster' | undefined;
if (ONLY !== undefined && !['ws', 'apns', 'webpush', 'fcm', 'cluster'].includes(ONLY)) throw new Error('--only must be ws, apns, webpush, fcm or cluster');
/** Nodes of the cluster case (0: no cluster case); `--only cluster` alone means 2. */
const CLUSTER = ONLY === 'cluster' && intArg('cluster', 0) === 0 ? 2 : intArg('cluster', 0);
if (CLUSTER === 1) throw new Error('--cluster must be 0 (no cluster case) or 2 or more nodes');
const CLUSTER_PIN = args['cluster-pin'] as string;
if (!['free', 'split', 'none'].includes(CLUSTER_PIN)) throw new Error('--cluster-pin must be free, split or none');
const REDIS_SERVER = process.env.NOTIFY_BENCH_REDIS_SERVER ?? 'redis-server';
/** History-on runs and history-off runs of notify in the main case. */
const ON_RUNS = HISTORY === 'off' ? 0 : RUNS;
const OFF_RUNS = HISTORY === 'on' ? 0 : HISTORY === 'default' ? 1 : RUNS;
const ROOT = new URL('../../', import.meta.url).pathname;
const NODE_ARGS = (process.env.NOTIFY_BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);

type ServerKind = 'notify' | 'bare';

function hasTaskset(): boolean {
  try {
    execFileSync('taskset', ['-V'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}
const PIN = hasTaskset() && availableParallelism() >= 2;

function clockTicks(): number {
  try {
    const v = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
    return v > 0 ? v : 100;
  } catch {
    return 100;
  }
}
const CLK_TCK = clockTicks();

function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** utime + stime of a process in seconds (/proc/PID/stat fields 14 and 15). */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) is in parentheses and may hold spaces: count from after it.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Server {
  kind: ServerKind;
  child: ChildProcess;
  ws: string;
  text: string;
  http: string | undefined;
  /** cluster.node, in a cluster run. */
  node?: string;
}

/**
 * Starts a server and reads its listener addresses from its JSON log lines. `extraYaml` is appended to notify's config.
 * `cpus`: the taskset CPU list it runs on (default: CPU 0 when pinning; null: not pinned).
 */
async function startServer(
  kind: ServerKind,
  dir: string,
  opts: { history?: boolean; extraYaml?: string; cpus?: string | null; label?: string } = {},
): Promise<Server> {
  const node = [process.execPath, ...NODE_ARGS];
  let cmd: string[];
  if (kind === 'bare') {
    cmd = [...node, join(ROOT, 'dist/bench/bare-server.js')];
  } else {
    const config = join(dir, 'bench.yaml');
    writeFileSync(
      config,
      `ws: {listen: "127.0.0.1:0"}\ntext: {listen: "127.0.0.1:0", maxPipelinedLines: ${Math.max(4096, C)}}\n` +
        'http: {listen: "127.0.0.1:0"}\n' +
        `state: {dir: ${JSON.stringify(join(dir, 'state'))}}\nhistory: {enabled: ${opts.history ?? true}}\n` +
        // Every bench client connects from 127.0.0.1: lift the per-address caps.
        `limits: {connections: 1000000, connectionsPerIp: 1000000, connectRatePerIp: 1000000}\n${opts.extraYaml ?? ''}`,
    );
    cmd = [...node, join(ROOT, 'bin/notify'), 'serve', '--config', config];
  }
  const cpus = opts.cpus === undefined ? (PIN ? '0' : null) : opts.cpus;
  if (cpus !== null) cmd = ['taskset', '-c', cpus, ...cmd];
  const label = opts.label ?? kind;
  const child = spawn(cmd[0] as string, cmd.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  const found: Record<string, string> = {};
  let buf = '';
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`${label} server exited with ${code} before listening`)));
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) !== -1) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          const e = JSON.parse(line) as { listener?: string; address?: string; level?: string };
          if (e.listener && e.address) found[e.listener] = e.address;
          if (e.level === 'error' || e.level === 'warn') process.stderr.write(`${label}: ${line}\n`);
        } catch {
          process.stderr.write(`${label}: ${line}\n`);
        }
        if (found.ws && found.text && (kind === 'bare' || found.http)) resolve();
      }
    });
  });
  return { kind, child, ws: found.ws as string, text: found.text as string, http: found.http };
}

async function stopServer(s: Server): Promise<void> {
  if (s.child.exitCode !== null || s.child.signalCode !== null) return;
  s.child.kill('SIGTERM');
  const timer = setTimeout(() => s.child.kill('SIGKILL'), 15_000);
  await once(s.child, 'exit');
  clearTimeout(timer);
}

/** Sessions the server has bound. */
async function boundSessions(s: Server): Promise<number> {
  if (s.kind === 'bare') return Number(await (await fetch(`http://${s.ws}/sessions`)).text());
  const h = (await (await fetch(`http://${s.http}/healthz`)).json()) as { transports: { websocket: { sessions: number } } };
  return h.transports.websocket.sessions;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface CaseSpec {
  name: string;
  pushes: number;
  /** Lines in flight per connection. */
  windows: number[];
}

function caseSpec(name: string, pushes: number, connections: number, inflight: number): CaseSpec {
  const k = Math.min(connections, inflight);
  const windows = Array.from({ length: k }, (_, i) => Math.floor(inflight / k) + (i < inflight % k ? 1 : 0));
  return { name, pushes, windows };
}

interface RunResult {
  server: ServerKind;
  history: 'on' | 'off' | null;
  run: number;
  sessions: number;
  connectPerSec: number;
  pushes: number;
  connections: number;
  inflight: number;
  seconds: number;
  pushesPerSec: number;
  serverCpuSeconds: number;
  cpuUsPerPush: number;
  clientCpuPct: number;
  latencyMs: { p50: number; p99: number; max: number };
  serverRssBytes: { idle: number; withSessions: number; afterPushes: number };
  rssPerSessionBytes: number;
  rssGrowthMB: number;
  /** notify only: growth of the V8 heap (total, used, new space) and external memory over the push phase, from /metrics. */
  heapGrowthMB: Record<string, number> | undefined;
  delivered: number;
  lost: number;
  duplicates: number;
  misrouted: number;
  badFrames: number;
  replies: { ok: number; fail: number; error: number; missing: number; firstError?: string };
  /** The cluster case's cluster runs: per node, Redis, and the latency of cross-node and same-node pushes. */
  cluster?: ClusterFigures;
}

/** notify's V8 heap figures (bytes) from its /metrics; undefined for the bare server. */
async function heapOf(s: { kind: ServerKind; http: string | undefined }): Promise<Record<string, number> | undefined> {
  if (s.kind !== 'notify' || s.http === undefined) return undefined;
  const text = await (await fetch(`http://${s.http}/metrics`)).text();
  const read = (re: RegExp) => Number(re.exec(text)?.[1] ?? NaN);
  return {
    heapTotal: read(/^notify_nodejs_heap_size_total_bytes (\S+)/m),
    heapUsed: read(/^notify_nodejs_heap_size_used_bytes (\S+)/m),
    newSpace: read(/^notify_nodejs_heap_space_size_total_bytes\{space="new"\} (\S+)/m),
    oldSpace: read(/^notify_nodejs_heap_space_size_total_bytes\{space="old"\} (\S+)/m),
    external: read(/^notify_nodejs_external_memory_bytes (\S+)/m),
  };
}

/** Parses the seq of a frame `{"uid":"uNNN","seq":S}`: the digits before the final `}`; -1 when absent. */
function seqOf(data: Buffer): number {
  let i = data.length - 1;
  if (i < 0 || data[i] !== 0x7d) return -1;
  let seq = 0;
  let mul = 1;
  let digits = 0;
  for (i--; i >= 0; i--) {
    const c = data[i] as number;
    if (c < 0x30 || c > 0x39) break;
    seq += (c - 0x30) * mul;
    mul *= 10;
    digits++;
  }
  return digits > 0 && i >= 0 && data[i] === 0x3a ? seq : -1;
}

async function run(kind: ServerKind, spec: CaseSpec, runIndex: number, history: boolean, cpus?: string | null): Promise<RunResult> {
  const dir = mkdtempSync(join(tmpdir(), 'notify-bench-'));
  const server = await startServer(kind, dir, { history, cpus });
  try {
    return await measure([server], spec, runIndex, history);
  } finally {
    await stopServer(server);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** The per-node figures of a cluster run. */
interface NodeFigures {
  node: string;
  sessions: number;
  /** Pushes written to this node's Text port. */
  published: number;
  rssBytes: { idle: number; withSessions: number; afterPushes: number };
  rssPerSessionBytes: number;
  cpuSeconds: number;
  cpuUsPerPush: number;
  /** Its CPU over the push phase, in % of one core. */
  cpuPct: number;
}

interface LatencyFigures {
  pushes: number;
  p50: number;
  p99: number;
  max: number;
}

/** What a cluster run adds to a RunResult. */
interface ClusterFigures {
  nodes: NodeFigures[];
  redis: { cpuSeconds: number; cpuUsPerPush: number; cpuPct: number; rssBytes: { withSessions: number; afterPushes: number } };
  /** Pushes written to one node for a session on another, and those whose session was on the node written to. */
  crossNode: LatencyFigures;
  sameNode: LatencyFigures;
}

function latencyOf(sorted: Float64Array): LatencyFigures {
  return {
    pushes: sorted.length,
    p50: round(percentile(sorted, 50), 3),
    p99: round(percentile(sorted, 99), 3),
    max: round(sorted[sorted.length - 1] ?? NaN, 3),
  };
}

/**
 * The workload of one run against servers that are started (one, or the nodes of a cluster).
 * Session i connects to servers[i % n], Text connection k to servers[k % n]. With a cluster,
 * `redis` is the redis-server: its CPU over the push phase is measured, and the sessions count
 * as bound once every uid is in the cluster's presence too.
 */
async function measure(servers: Server[], spec: CaseSpec, runIndex: number, history: boolean, redis?: RedisServer): Promise<RunResult> {
  const n = servers.length;
  const kind = (servers[0] as Server).kind;
  const pids = servers.map((s) => s.child.pid as number);
  const clients: WebSocket[] = [];
  const texts: Socket[] = [];
  try {
    await sleep(1000);
    const idle = pids.map(rssBytes);

    const P = spec.pushes;
    const sendTime = new Float64Array(P);
    const target = new Uint32Array(P);
    /** The index of the server whose Text port the push was written to. */
    const via = new Uint8Array(P);
    /** 1 once the push has been delivered. */
    const arrivals = new Uint8Array(P);
    const latency = new Float64Array(P);
    /** Cluster: 1 when the delivered push (in delivery order) crossed nodes. */
    const crossed = new Uint8Array(n > 1 ? P : 0);
    let delivered = 0;
    let duplicates = 0;
    let misrouted = 0;
    let badFrames = 0;
    let lastProgress = Date.now();
    let checkDone = () => {};

    // Connect and bind N sessions, at most 500 handshakes at a time.
    const connectStart = performance.now();
    let next = 0;
    let opened = 0;
    await new Promise<void>((resolve, reject) => {
      const open = () => {
        if (next >= N) return;
        const i = next++;
        const ws = new WebSocket(`ws://${(servers[i % n] as Server).ws}/`, { perMessageDeflate: false });
        clients.push(ws);
        ws.on('open', () => {
          ws.send(`u${i}`);
          if (++opened === N) resolve();
          else open();
        });
        ws.on('message', (data: Buffer) => {
          const now = performance.now();
          const seq = seqOf(data);
          if (seq < 0 || seq >= P) {
            badFrames++;
            return;
          }
          lastProgress = Date.now();
          if (target[seq] !== i) {
            misrouted++;
            return;
          }
          if (arrivals[seq] !== 0) {
            duplicates++;
            return;
          }
          arrivals[seq] = 1;
          if (n > 1) crossed[delivered] = via[seq] === i % n ? 0 : 1;
          latency[delivered++] = now - (sendTime[seq] as number);
          checkDone();
        });
        ws.on('error', reject);
      };
      for (let k = 0; k < 500; k++) open();
    });
    const expected = servers.map((_, j) => Math.floor(N / n) + (j < N % n ? 1 : 0));
    for (const deadline = Date.now() + 60_000; ; await sleep(50)) {
      const bound = await Promise.all(servers.map(boundSessions));
      if (bound.every((b, j) => b >= (expected[j] as number)) && (redis === undefined || redis.presentUids() >= N)) break;
      if (Date.now() > deadline) throw new Error(`${kind}: sessions not all bound after 60 s`);
    }
    const connectSec = (performance.now() - connectStart) / 1000;
    await sleep(2000);
    const withSessions = pids.map(rssBytes);
    const redisWithSessions = redis ? rssBytes(redis.pid) : NaN;
    const heap0 = n === 1 ? await heapOf(servers[0] as Server) : undefined;

    // The Text connections: connection k to server k % n.
    const textVia: number[] = [];
    for (let k = 0; k < spec.windows.length; k++) {
      const addr = (servers[k % n] as Server).text;
      const [host, port] = [addr.slice(0, addr.lastIndexOf(':')), Number(addr.split(':').pop())];
      const s = connect({ host, port, noDelay: true });
      texts.push(s);
      textVia.push(k % n);
      await once(s, 'connect');
    }
    const published = servers.map(() => 0);

    const rand = prng(SEED + runIndex - 1);
    const replies = { ok: 0, fail: 0, error: 0, missing: 0, firstError: undefined as string | undefined };
    let sent = 0;
    /** Appends the next push's line to `out` and records its target; its time is set at the write. */
    const nextLine = (k: number): string => {
      const seq = sent++;
      const uid = Math.floor(rand() * N);
      target[seq] = uid;
      via[seq] = textVia[k] as number;
      return `{"uid":"u${uid}","seq":${seq}}\n`;
    };
    const write = (s: Socket, k: number, from: number, lines: string) => {
      const now = performance.now();
      for (let q = from; q < sent; q++) sendTime[q] = now;
      const j = textVia[k] as number;
      published[j] = (published[j] as number) + sent - from;
      s.write(lines);
    };
    const answered = () => replies.ok + replies.fail + replies.error;
    let resolveDone = () => {};
    const done = new Promise<void>((resolve) => (resolveDone = resolve));
    checkDone = () => {
      if (delivered === P && answered() === P) resolveDone();
    };
    texts.forEach((s, k) => {
      let buf = '';
      s.setEncoding('latin1');
      s.on('data', (chunk: string) => {
        buf += chunk;
        const from = sent;
        let lines = '';
        let start = 0;
        for (let nl = buf.indexOf('\n'); nl !== -1; nl = buf.indexOf('\n', start)) {
          if (nl - start === 2 && buf.startsWith('ok', start)) replies.ok++;
          else if (nl - start === 4 && buf.startsWith('fail', start)) replies.fail++;
          else {
            replies.error++;
            replies.firstError ??= buf.slice(start, nl);
          }
          start = nl + 1;
          if (sent < P) lines += nextLine(k);
        }
        buf = buf.slice(start);
        if (start > 0) lastProgress = Date.now();
        if (lines) write(s, k, from, lines);
        checkDone();
      });
      s.on('error', (err) => {
        replies.firstError ??= `connection error: ${err.message}`;
      });
    });

    const cpu0 = pids.map(cpuSeconds);
    const redisCpu0 = redis ? cpuSeconds(redis.pid) : 0;
    const client0 = process.cpuUsage();
    const pushStart = performance.now();
    let pushEnd = pushStart;
    const watchdog = setInterval(() => {
      if (Date.now() - lastProgress > 5000) resolveDone();
    }, 200);
    lastProgress = Date.now();
    // Each connection writes its whole window in one write.
    texts.forEach((s, k) => {
      const from = sent;
      let lines = '';
      for (let j = 0; j < (spec.windows[k] as number) && sent < P; j++) lines += nextLine(k);
      if (lines) write(s, k, from, lines);
    });
    await done;
    pushEnd = delivered === P && answered() === P ? performance.now() : lastProgressPerf(lastProgress, pushStart);
    const cpu1 = pids.map(cpuSeconds);
    const redisCpu1 = redis ? cpuSeconds(redis.pid) : 0;
    const client1 = process.cpuUsage(client0);
    clearInterval(watchdog);
    const afterPushes = pids.map(rssBytes);
    const redisAfterPushes = redis ? rssBytes(redis.pid) : NaN;
    const heap1 = n === 1 ? await heapOf(servers[0] as Server) : undefined;
    // A short grace for late duplicates or misrouted frames.
    await sleep(200);
    const seconds = (pushEnd - pushStart) / 1000;
    replies.missing = P - answered();

    const lat = latency.slice(0, delivered).sort();
    const nodeCpu = cpu1.map((c, j) => c - (cpu0[j] as number));
    const redisCpu = redisCpu1 - redisCpu0;
    const serverCpu = nodeCpu.reduce((a, b) => a + b, 0) + redisCpu;
    const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
    const { firstError, ...counts } = replies;
    let cluster: ClusterFigures | undefined;
    if (n > 1 && redis) {
      const cross: number[] = [];
      const same: number[] = [];
      for (let d = 0; d < delivered; d++) (crossed[d] ? cross : same).push(latency[d] as number);
      cluster = {
        nodes: servers.map((s, j) => ({
          node: s.node ?? `node${j + 1}`,
          sessions: expected[j] as number,
          published: published[j] as number,
          rssBytes: { idle: idle[j] as number, withSessions: withSessions[j] as number, afterPushes: afterPushes[j] as number },
          rssPerSessionBytes: Math.round(((withSessions[j] as number) - (idle[j] as number)) / (expected[j] as number)),
          cpuSeconds: round(nodeCpu[j] as number, 2),
          cpuUsPerPush: round(((nodeCpu[j] as number) * 1e6) / P, 2),
          cpuPct: Math.round(((nodeCpu[j] as number) / seconds) * 100),
        })),
        redis: {
          cpuSeconds: round(redisCpu, 2),
          cpuUsPerPush: round((redisCpu * 1e6) / P, 2),
          cpuPct: Math.round((redisCpu / seconds) * 100),
          rssBytes: { withSessions: redisWithSessions, afterPushes: redisAfterPushes },
        },
        crossNode: latencyOf(Float64Array.from(cross).sort()),
        sameNode: latencyOf(Float64Array.from(same).sort()),
      };
    }
    return {
      server: kind,
      history: kind === 'notify' ? (history ? 'on' : 'off') : null,
      run: runIndex,
      sessions: N,
      connectPerSec: Math.round(N / connectSec),
      pushes: P,
      connections: spec.windows.length,
      inflight: spec.windows.reduce((a, b) => a + b, 0),
      seconds: round(seconds, 3),
      pushesPerSec: Math.round(delivered / seconds),
      serverCpuSeconds: round(serverCpu, 2),
      cpuUsPerPush: round((serverCpu * 1e6) / P, 2),
      clientCpuPct: Math.round(((client1.user + client1.system) / 1e6 / seconds) * 100),
      latencyMs: { p50: round(percentile(lat, 50), 3), p99: round(percentile(lat, 99), 3), max: round(lat[lat.length - 1] ?? NaN, 3) },
      serverRssBytes: { idle: sum(idle), withSessions: sum(withSessions), afterPushes: sum(afterPushes) },
      rssPerSessionBytes: Math.round((sum(withSessions) - sum(idle)) / N),
      rssGrowthMB: round((sum(afterPushes) - sum(withSessions)) / 2 ** 20, 1),
      heapGrowthMB: heap0 && heap1 ? Object.fromEntries(Object.entries(heap1).map(([k, v]) => [k, round((v - (heap0[k] ?? 0)) / 2 ** 20, 1)])) : undefined,
      delivered,
      lost: P - delivered,
      duplicates,
      misrouted,
      badFrames,
      replies: firstError === undefined ? counts : { ...counts, firstError },
      ...(cluster && { cluster }),
    };
  } finally {
    for (const s of texts) s.destroy();
    for (const ws of clients) ws.terminate();
  }
}

/** The cluster case's redis-server. */
interface RedisServer {
  child: ChildProcess;
  pid: number;
  port: number;
  url: string;
  dir: string;
  /** Uids in the cluster's presence (the `notify:uids` index). */
  presentUids(): number;
}


/** A redis-server of the bench's own: a free loopback port, no persistence, a temp dir of its own. */
async function startRedis(cpus: string | null): Promise<RedisServer> {
  const dir = mkdtempSync(join(tmpdir(), 'notify-bench-redis-'));
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    let child: ChildProcess;
    try {
      child = await spawnRedis(port, dir, [], { prefix: cpus !== null ? ['taskset', '-c', cpus] : [], binary: REDIS_SERVER });
    } catch (err) {
      lastError = err;
      continue;
    }
    return {
      child,
      pid: child.pid as number,
      port,
      url: `redis://127.0.0.1:${port}`,
      dir,
      presentUids: () => Number(execFileSync('redis-cli', ['-p', String(port), 'ZCARD', 'notify:uids'], { encoding: 'utf8' }).trim()),
    };
  }
  rmSync(dir, { recursive: true, force: true });
  throw lastError;
}

async function stopRedis(r: RedisServer): Promise<void> {
  if (r.child.exitCode === null && r.child.signalCode === null) {
    const exited = once(r.child, 'exit');
    r.child.kill('SIGTERM');
    const timer = setTimeout(() => r.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
  rmSync(r.dir, { recursive: true, force: true });
}

/** One run of the cluster case's cluster: a fresh redis-server and `nodes` notify nodes on it, each `notify serve` with cluster.redis. */
async function runCluster(nodes: number, spec: CaseSpec, runIndex: number, cpus: string | null): Promise<RunResult> {
  const redis = await startRedis(cpus);
  const dirs: string[] = [];
  const servers: Server[] = [];
  try {
    for (let j = 1; j <= nodes; j++) {
      const dir = mkdtempSync(join(tmpdir(), 'notify-bench-'));
      dirs.push(dir);
      const node = `bench-${j}`;
      const server = await startServer('notify', dir, { history: true, cpus, label: node, extraYaml: `cluster: {redis: ${JSON.stringify(redis.url)}, node: ${node}}\n` });
      server.node = node;
      servers.push(server);
    }
    return await measure(servers, spec, runIndex, true, redis);
  } finally {
    await Promise.all(servers.map(stopServer));
    await stopRedis(redis);
    for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
  }
}

/** The performance.now() of a Date.now() timestamp (the last progress, when the phase stalled). */
function lastProgressPerf(dateMs: number, floor: number): number {
  return Math.max(floor, performance.now() - (Date.now() - dateMs));
}

interface ApnsRunResult {
  tokens: number;
  sent: number;
  failed: number;
  seconds: number;
  notificationsPerSec: number;
  daemonPeakRssBytes: number;
  /** The daemon's CPU (utime + stime) from the request to the report, per notification sent. */
  daemonCpuUsPerNotification: number;
  /** The daemon's and this process's (the fake's) CPU over that time, in % of one core. */
  daemonCpuPct: number;
  fakeCpuPct: number;
  /** The daemon's VmHWM just before the message (startup: config, store, transports). */
  daemonPeakRssBeforeBytes: number;
}

function peakRssBytes(pid: number): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/**
 * One message through the daemon's HTTP API to a uid with `targets` provider targets: the rate
 * until the report, the daemon's CPU over that time (and this process's, where the fake runs),
 * and the daemon's peak RSS before the message and after it.
 */
async function sendAndMeasure(server: Server, targets: number, body: Record<string, string>): Promise<ApnsRunResult> {
  await sleep(500);
  const pid = server.child.pid as number;
  const rssBefore = peakRssBytes(pid);
  const cpu0 = cpuSeconds(pid);
  const self0 = process.cpuUsage();
  const started = performance.now();
  const res = await fetch(`http://${server.http}/v1/send`, { method: 'POST', body: JSON.stringify(body) });
  const report = (await res.json()) as { sent: number; failed: number; rejected: number };
  const seconds = (performance.now() - started) / 1000;
  const cpu = cpuSeconds(pid) - cpu0;
  const self = process.cpuUsage(self0);
  return {
    tokens: targets,
    sent: report.sent,
    failed: report.failed + report.rejected,
    seconds: round(seconds, 3),
    notificationsPerSec: Math.round(report.sent / seconds),
    daemonPeakRssBytes: peakRssBytes(pid),
    daemonPeakRssBeforeBytes: rssBefore,
    daemonCpuUsPerNotification: round((cpu * 1e6) / Math.max(1, report.sent), 1),
    daemonCpuPct: Math.round((cpu / seconds) * 100),
    fakeCpuPct: Math.round(((self.user + self.system) / 1e6 / seconds) * 100),
  };
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
  const server = await startServer('notify', dir, { extraYaml: yaml });
  try {
    return await sendAndMeasure(server, APNS_TOKENS, { uid: 'ios-bench', title: 'bench', msg: 'notify apns bench' });
  } finally {
    await stopServer(server);
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One message to a uid with W Web Push subscriptions, delivered through a fake push service. */
async function runWebPush(): Promise<ApnsRunResult> {
  const { startFakeWebPush } = await import('../test/helpers/fake-webpush.js');
  const { generateVapidKeys } = await import('../src/push/webpush/vapid.js');
  const vapid = generateVapidKeys();
  const fake = await startFakeWebPush({ vapidPublicKey: vapid.publicKey });
  const dir = mkdtempSync(join(tmpdir(), 'notify-bench-webpush-'));
  writeFileSync(join(dir, 'ca.pem'), fake.ca);
  const subs = Array.from({ length: WEBPUSH_SUBS }, () => fake.subscribe().target);
  const yaml =
    'dispatch: {deliverTimeoutMs: 600000}\n' +
    'transports:\n  webpush:\n    type: webpush\n' +
    `    vapid: {subject: "mailto:bench@example.com", publicKey: ${vapid.publicKey}, privateKey: ${vapid.privateKey}}\n` +
    `    ca: ${JSON.stringify(join(dir, 'ca.pem'))}\n` +
    `devices:\n  web-bench:\n    webpush:\n${subs.map((s) => `      - ${s}\n`).join('')}`;
  const server = await startServer('notify', dir, { extraYaml: yaml });
  try {
    const out = await sendAndMeasure(server, WEBPUSH_SUBS, { uid: 'web-bench', title: 'bench', msg: 'notify webpush bench' });
    if (fake.refused.length > 0) process.stderr.write(`webpush: the fake refused ${fake.refused.length}, e.g. ${JSON.stringify(fake.refused[0])}\n`);
    return out;
  } finally {
    await stopServer(server);
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One message to a uid with T FCM registration tokens, delivered through a fake FCM (HTTPS). */
async function runFcm(): Promise<ApnsRunResult> {
  const { makeFcmAccount, serviceAccountJson, startFakeFcm } = await import('../test/helpers/fake-fcm.js');
  const { fcmToken } = await import('../test/helpers/fcm.js');
  const account = makeFcmAccount('notify-bench');
  const fake = await startFakeFcm({ account, tls: true });
  const dir = mkdtempSync(join(tmpdir(), 'notify-bench-fcm-'));
  writeFileSync(join(dir, 'sa.json'), serviceAccountJson(account, fake.tokenUrl));
  writeFileSync(join(dir, 'ca.pem'), fake.ca as string);
  const tokens = Array.from({ length: FCM_TOKENS }, () => fcmToken());
  const yaml =
    'dispatch: {deliverTimeoutMs: 600000}\n' +
    `transports:\n  fcm:\n    type: fcm\n    serviceAccount: ${JSON.stringify(join(dir, 'sa.json'))}\n` +
    `    url: ${fake.url}\n    ca: ${JSON.stringify(join(dir, 'ca.pem'))}\n` +
    `devices:\n  android-bench:\n    fcm:\n${tokens.map((t) => `      - ${t}\n`).join('')}`;
  const server = await startServer('notify', dir, { extraYaml: yaml });
  try {
    const out = await sendAndMeasure(server, FCM_TOKENS, { uid: 'android-bench', title: 'bench', msg: 'notify fcm bench' });
    if (fake.violations.length > 0) process.stderr.write(`fcm: the fake refused ${fake.violations.length} messages: ${fake.violations[0]}\n`);
    return out;
  } finally {
    await stopServer(server);
    await fake.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

function summarize(results: RunResult[]) {
  const med = (f: (r: RunResult) => number) => round(median(results.map(f)), 3);
  const sum = (f: (r: RunResult) => number) => results.reduce((n, r) => n + f(r), 0);
  return {
    runs: results.length,
    history: results[0]?.history ?? null,
    median: {
      pushesPerSec: med((r) => r.pushesPerSec),
      cpuUsPerPush: round(med((r) => r.cpuUsPerPush), 2),
      rssPerSessionBytes: med((r) => r.rssPerSessionBytes),
      rssGrowthMB: round(med((r) => r.rssGrowthMB), 1),
      latencyMs: { p50: med((r) => r.latencyMs.p50), p99: med((r) => r.latencyMs.p99), max: med((r) => r.latencyMs.max) },
      connectPerSec: med((r) => r.connectPerSec),
      clientCpuPct: med((r) => r.clientCpuPct),
      rssWithSessionsBytes: med((r) => r.serverRssBytes.withSessions),
    },
    lost: sum((r) => r.lost),
    duplicates: sum((r) => r.duplicates),
    misrouted: sum((r) => r.misrouted),
    badFrames: sum((r) => r.badFrames),
    notOkReplies: sum((r) => r.replies.fail + r.replies.error + r.replies.missing),
    ...(results[0]?.cluster && { cluster: clusterMedians(results.map((r) => r.cluster as ClusterFigures)) }),
    raw: results,
  };
}
type Summary = ReturnType<typeof summarize>;

/** Medians of the cluster figures of a cluster's runs (per node by position). */
function clusterMedians(runs: ClusterFigures[]) {
  const med = (f: (c: ClusterFigures) => number, digits = 3) => round(median(runs.map(f)), digits);
  const lat = (f: (c: ClusterFigures) => LatencyFigures) => ({
    pushes: med((c) => f(c).pushes, 0),
    p50: med((c) => f(c).p50),
    p99: med((c) => f(c).p99),
    max: med((c) => f(c).max),
  });
  return {
    crossNodeLatencyMs: lat((c) => c.crossNode),
    sameNodeLatencyMs: lat((c) => c.sameNode),
    nodes: (runs[0] as ClusterFigures).nodes.map((n0, j) => ({
      node: n0.node,
      sessions: n0.sessions,
      published: med((c) => (c.nodes[j] as NodeFigures).published, 0),
      rssPerSessionBytes: med((c) => (c.nodes[j] as NodeFigures).rssPerSessionBytes, 0),
      rssWithSessionsBytes: med((c) => (c.nodes[j] as NodeFigures).rssBytes.withSessions, 0),
      cpuUsPerPush: med((c) => (c.nodes[j] as NodeFigures).cpuUsPerPush, 2),
      cpuPct: med((c) => (c.nodes[j] as NodeFigures).cpuPct, 0),
    })),
    redis: {
      cpuUsPerPush: med((c) => c.redis.cpuUsPerPush, 2),
      cpuPct: med((c) => c.redis.cpuPct, 0),
      rssAfterPushesBytes: med((c) => c.redis.rssBytes.afterPushes, 0),
    },
  };
}

/** The cluster case against the issue's targets: nothing lost, cross-node p99 under 20 ms, at least 0.5x the single node's pushes/s. */
function clusterVerdict(byServer: Record<string, Summary>, clusterLabel: string) {
  const single = byServer['single node'];
  const cl = byServer[clusterLabel];
  if (!single || !cl?.cluster) return undefined;
  const ratio = round(cl.median.pushesPerSec / single.median.pushesPerSec, 3);
  const wrong = (s: Summary) => s.lost + s.duplicates + s.misrouted + s.badFrames + s.notOkReplies;
  const p99 = cl.cluster.crossNodeLatencyMs.p99;
  return {
    nodes: CLUSTER,
    ratio: { pushesPerSec: ratio, cpuUsPerPush: round(cl.median.cpuUsPerPush / single.median.cpuUsPerPush, 3), p50Ms: round(cl.median.latencyMs.p50 / single.median.latencyMs.p50, 3) },
    targets: {
      nothingLost: { lostDupMisroutedNotOk: wrong(cl) + wrong(single), met: wrong(cl) + wrong(single) === 0 },
      crossNodeP99Under20Ms: { p99Ms: p99, inflight: C, met: p99 < 20 },
      throughputAtLeastHalf: { ratio, met: ratio >= 0.5 },
    },
  };
}

async function main(): Promise<void> {
  const cpus = availableParallelism();
  if (PIN) execFileSync('taskset', ['-cp', '1', String(process.pid)], { stdio: 'ignore' });
  const main = caseSpec(`C=${C}`, M, K, C);
  const c1 = caseSpec('C=1', M1, 1, 1);
  const historyText =
    HISTORY === 'on' ? `on (${RUNS} runs)` : HISTORY === 'off' ? `off (${RUNS} runs)` : `on (${ON_RUNS} runs) + off (${OFF_RUNS} run${OFF_RUNS === 1 ? '' : 's'})`;
  const config = {
    sessions: N,
    pushes: M,
    connections: main.windows.length,
    inflight: C,
    windows: main.windows,
    c1Pushes: M1,
    runs: RUNS,
    servers: SERVERS,
    history: `notify main case: history ${historyText}; C=1 case: history on`,
    seed: SEED,
    node: process.version,
    cpus,
    pinned: PIN ? 'server cpu0, client cpu1' : 'no',
    ...(CLUSTER > 0 && {
      cluster: {
        nodes: CLUSTER,
        pinned: !PIN
          ? 'no'
          : CLUSTER_PIN === 'free'
            ? 'single node cpu0 and client cpu1 (as the other cases); cluster: nothing pinned (redis-server, the nodes and the client share every CPU)'
            : CLUSTER_PIN === 'split'
              ? 'single node cpu0, client cpu1; cluster: redis-server and every node on cpu0, client cpu1'
              : 'nothing pinned (servers and client float over every CPU)',
      },
    }),
    clkTck: CLK_TCK,
    serverNodeArgs: NODE_ARGS,
  };
  process.stderr.write(`bench: ${JSON.stringify(config)}\n`);

  const rows = new Map<string, { case: string; server: string; results: RunResult[] }>();
  const record = (caseName: string, label: string, res: RunResult) => {
    const key = `${caseName}|${label}`;
    if (!rows.has(key)) rows.set(key, { case: caseName, server: label, results: [] });
    rows.get(key)?.results.push(res);
    process.stderr.write(
      `${caseName} ${label} run ${res.run}: ${res.pushesPerSec} pushes/s, ${res.cpuUsPerPush} µs CPU/push, ` +
        `p50 ${res.latencyMs.p50} ms, p99 ${res.latencyMs.p99} ms, ${Math.round(res.rssPerSessionBytes / 102.4) / 10} KB/session, ` +
        `growth ${res.rssGrowthMB} MB${res.heapGrowthMB ? ` (heap ${JSON.stringify(res.heapGrowthMB)})` : ''}, client ${res.clientCpuPct}%, lost/dup/misrouted ${res.lost}/${res.duplicates}/${res.misrouted}, ` +
        `replies ${JSON.stringify(res.replies)}` +
        (res.cluster
          ? `; cross-node ${res.cluster.crossNode.pushes} p50 ${res.cluster.crossNode.p50} ms p99 ${res.cluster.crossNode.p99} ms, ` +
            `same-node p99 ${res.cluster.sameNode.p99} ms, nodes ${res.cluster.nodes.map((x) => `${x.node} ${x.cpuUsPerPush} µs/push ${x.cpuPct}% ${Math.round(x.rssPerSessionBytes / 102.4) / 10} KB/session`).join(', ')}, ` +
            `redis ${res.cluster.redis.cpuUsPerPush} µs/push ${res.cluster.redis.cpuPct}%`
          : '') +
        '\n',
    );
  };
  if (ONLY === undefined || ONLY === 'ws') {
    for (let r = 1; r <= RUNS; r++) {
      if (SERVERS.includes('notify') && r <= ON_RUNS) record(main.name, 'notify', await run('notify', main, r, true));
      if (SERVERS.includes('bare')) record(main.name, 'bare', await run('bare', main, r, false));
      if (SERVERS.includes('notify') && r <= OFF_RUNS) record(main.name, 'notify history off', await run('notify', main, r, false));
    }
    if (M1 > 0) {
      for (let r = 1; r <= RUNS; r++) {
        for (const kind of SERVERS) record(c1.name, kind, await run(kind, c1, r, true));
      }
    }
  }
  const clusterCase = caseSpec(`cluster C=${C}`, M, K, C);
  const clusterLabel = `cluster of ${CLUSTER}`;
  if (CLUSTER > 0 && (ONLY === undefined || ONLY === 'cluster')) {
    // free: the single node on CPU 0 and the client on CPU 1 as in the other cases; the cluster
    // (redis-server and the nodes) and the client float over every CPU. split: every server
    // process on CPU 0 (the cluster's nodes and redis-server share it), the client on CPU 1.
    // none: nothing pinned.
    const pinClient = (on: boolean) => {
      if (PIN) execFileSync('taskset', ['-cp', on ? '1' : `0-${cpus - 1}`, String(process.pid)], { stdio: 'ignore' });
    };
    const singleCpus = PIN && CLUSTER_PIN !== 'none' ? '0' : null;
    const clusterCpus = PIN && CLUSTER_PIN === 'split' ? '0' : null;
    for (let r = 1; r <= RUNS; r++) {
      pinClient(CLUSTER_PIN !== 'none');
      record(clusterCase.name, 'single node', await run('notify', clusterCase, r, true, singleCpus));
      pinClient(CLUSTER_PIN === 'split');
      record(clusterCase.name, clusterLabel, await runCluster(CLUSTER, clusterCase, r, clusterCpus));
    }
    pinClient(true);
  }
  // The provider rows: one message to one uid with many device targets, through each fake.
  const providers = [
    { key: 'apns', label: 'APNs', count: APNS_TOKENS, unit: 'tokens', countKey: 'tokens', run: runApns },
    { key: 'webpush', label: 'Web Push', count: WEBPUSH_SUBS, unit: 'subscriptions', countKey: 'subscriptions', run: runWebPush },
    { key: 'fcm', label: 'FCM', count: FCM_TOKENS, unit: 'tokens', countKey: 'tokens', run: runFcm },
  ] as const;
  const providerRuns = new Map<string, ApnsRunResult[]>();
  for (const p of providers) {
    if ((ONLY !== undefined && ONLY !== p.key) || !SERVERS.includes('notify') || p.count === 0) continue;
    const results: ApnsRunResult[] = [];
    for (let r = 1; r <= RUNS; r++) {
      const res = await p.run();
      results.push(res);
      process.stderr.write(`${p.key} run ${r}: ${JSON.stringify(res)}\n`);
    }
    providerRuns.set(p.key, results);
  }

  const cases: Record<string, Record<string, Summary>> = {};
  for (const row of rows.values()) (cases[row.case] ??= {})[row.server] = summarize(row.results);
  const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || b === 0 ? null : round(a / b, 3));
  const ratios: Record<string, Record<string, number | null>> = {};
  for (const [name, byServer] of Object.entries(cases)) {
    if (name === clusterCase.name) continue;
    const bare = byServer.bare?.median;
    if (!bare) continue;
    for (const label of Object.keys(byServer).filter((l) => l !== 'bare')) {
      const n = byServer[label]?.median;
      if (!n) continue;
      ratios[`${name} ${label}/bare`] = {
        pushesPerSec: ratio(n.pushesPerSec, bare.pushesPerSec),
        cpuUsPerPush: ratio(n.cpuUsPerPush, bare.cpuUsPerPush),
        rssPerSessionBytes: ratio(n.rssPerSessionBytes, bare.rssPerSessionBytes),
        p50Ms: ratio(n.latencyMs.p50, bare.latencyMs.p50),
      };
    }
  }
  const providerRows: Record<string, unknown> = {};
  for (const p of providers) {
    const results = providerRuns.get(p.key);
    if (!results) continue;
    const med = (f: (r: ApnsRunResult) => number) => median(results.map(f));
    providerRows[p.key] = {
      [p.countKey]: p.count,
      median: {
        notificationsPerSec: med((r) => r.notificationsPerSec),
        seconds: med((r) => r.seconds),
        daemonPeakRssBytes: med((r) => r.daemonPeakRssBytes),
        daemonPeakRssBeforeBytes: med((r) => r.daemonPeakRssBeforeBytes),
        daemonCpuUsPerNotification: med((r) => r.daemonCpuUsPerNotification),
        daemonCpuPct: med((r) => r.daemonCpuPct),
        fakeCpuPct: med((r) => r.fakeCpuPct),
      },
      notSent: results.reduce((n, r) => n + (r.tokens - r.sent), 0),
      raw: results,
    };
  }
  const clusterSummary = cases[clusterCase.name] ? clusterVerdict(cases[clusterCase.name] as Record<string, Summary>, clusterLabel) : undefined;
  const summary = {
    config,
    cases,
    ratios,
    ...(clusterSummary && { cluster: clusterSummary }),
    ...providerRows,
  };
  process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  if (rows.size > 0) process.stderr.write(`\n${table(cases, ratios)}`);
  if (clusterSummary) process.stderr.write(`\n${clusterTable(cases[clusterCase.name] as Record<string, Summary>, clusterSummary)}`);
  for (const p of providers) {
    const row = providerRows[p.key] as { median: Omit<ApnsRunResult, 'tokens' | 'sent' | 'failed'>; notSent: number } | undefined;
    if (!row) continue;
    const m = row.median;
    process.stderr.write(
      `\n${p.label}: ${p.count} ${p.unit}, median ${m.notificationsPerSec} notifications/s, ` +
        `peak RSS ${round(m.daemonPeakRssBytes / 2 ** 20, 1)} MB (${round(m.daemonPeakRssBeforeBytes / 2 ** 20, 1)} MB before the message), ` +
        `daemon CPU ${m.daemonCpuUsPerNotification} µs/notification (${m.daemonCpuPct}% of a core), fake ${m.fakeCpuPct}% of a core, not sent ${row.notSent}\n`,
    );
  }
  process.exit(0);
}

/** The cluster case's own figures as a Markdown table, then its targets. */
function clusterTable(byServer: Record<string, Summary>, v: NonNullable<ReturnType<typeof clusterVerdict>>): string {
  const head = ['cluster case', 'pushes/s', 'p50 ms', 'p99 ms', 'cross-node p50/p99 ms', 'same-node p50/p99 ms', 'KB RSS/session per node', 'CPU µs/push per node', 'Redis CPU µs/push (% core)', 'CPU µs/push all', 'lost/dup/misrouted', 'not ok'];
  const lines = [head, head.map(() => '---')];
  for (const [label, s] of Object.entries(byServer)) {
    const m = s.median;
    const c = s.cluster;
    lines.push([
      `${label} (${s.runs} run${s.runs === 1 ? '' : 's'})`,
      String(m.pushesPerSec),
      String(m.latencyMs.p50),
      String(m.latencyMs.p99),
      c ? `${c.crossNodeLatencyMs.p50}/${c.crossNodeLatencyMs.p99}` : '-',
      c ? `${c.sameNodeLatencyMs.p50}/${c.sameNodeLatencyMs.p99}` : `${m.latencyMs.p50}/${m.latencyMs.p99}`,
      c ? c.nodes.map((n) => round(n.rssPerSessionBytes / 1024, 2)).join(' / ') : String(round(m.rssPerSessionBytes / 1024, 2)),
      c ? c.nodes.map((n) => n.cpuUsPerPush).join(' / ') : String(m.cpuUsPerPush),
      c ? `${c.redis.cpuUsPerPush} (${c.redis.cpuPct}%)` : '-',
      String(m.cpuUsPerPush),
      `${s.lost}/${s.duplicates}/${s.misrouted}`,
      String(s.notOkReplies + s.badFrames),
    ]);
  }
  const t = v.targets;
  const yes = (b: boolean) => (b ? 'met' : 'NOT met');
  return (
    `${lines.map((l) => `| ${l.join(' | ')} |`).join('\n')}\n` +
    `targets: nothing lost (${t.nothingLost.lostDupMisroutedNotOk} lost/dup/misrouted/not ok): ${yes(t.nothingLost.met)}; ` +
    `cross-node p99 ${t.crossNodeP99Under20Ms.p99Ms} ms < 20 ms at ${C} in flight: ${yes(t.crossNodeP99Under20Ms.met)}; ` +
    `cluster/single pushes/s ${t.throughputAtLeastHalf.ratio}x >= 0.5x: ${yes(t.throughputAtLeastHalf.met)}\n`
  );
}

/** The medians as a Markdown table, with the notify/bare ratios. */
function table(cases: Record<string, Record<string, Summary>>, ratios: Record<string, Record<string, number | null>>): string {
  const head = ['case', 'server', 'pushes/s', 'CPU µs/push', 'KB RSS/session', 'RSS growth MB', 'p50 ms', 'p99 ms', 'lost/dup/misrouted', 'not ok', 'client CPU %'];
  const lines = [head, head.map(() => '---')];
  for (const [name, byServer] of Object.entries(cases)) {
    for (const [label, s] of Object.entries(byServer)) {
      const m = s.median;
      lines.push([
        name,
        `${label}${label === 'notify' ? ' history on' : ''} (${s.runs} run${s.runs === 1 ? '' : 's'})`,
        String(m.pushesPerSec),
        String(m.cpuUsPerPush),
        String(round(m.rssPerSessionBytes / 1024, 2)),
        String(m.rssGrowthMB),
        String(m.latencyMs.p50),
        String(m.latencyMs.p99),
        `${s.lost}/${s.duplicates}/${s.misrouted}`,
        String(s.notOkReplies + s.badFrames),
        String(m.clientCpuPct),
      ]);
    }
  }
  for (const [name, r] of Object.entries(ratios)) {
    const x = (v: number | null | undefined) => (v === null || v === undefined ? '-' : `${v}x`);
    lines.push([name.slice(0, name.indexOf(' ')), name.slice(name.indexOf(' ') + 1), x(r.pushesPerSec), x(r.cpuUsPerPush), x(r.rssPerSessionBytes), '', x(r.p50Ms), '', '', '', '']);
  }
  return `${lines.map((l) => `| ${l.join(' | ')} |`).join('\n')}\n`;
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
