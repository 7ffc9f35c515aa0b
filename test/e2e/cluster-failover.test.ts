import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { stringify } from 'yaml';
import { type Child, startChild } from '../helpers/child.js';
import { HANG_MS, type TextClient, type WsClient, textClient, until, within, wsClient } from '../helpers/clients.js';
import { tempDir } from '../helpers/daemon.js';
import { SKIP_REDIS, startRedis } from '../helpers/redis.js';
import { SKIP_SENTINEL, startSentinels } from '../helpers/sentinel.js';

// Multi-process failures of a cluster (issue 12, items 4, 7 and 9): `notify serve` child
// processes on one Redis, a node killed with SIGKILL, Redis restarted empty, and a Sentinel
// failover. Waits are on events (frames, replies, processes exiting); HANG_MS is only a safety net.

/**
 * `notify serve` children (one per name) on the Redis at `redis`, each with its own state folder.
 * Call nodeSet before starting the Redis they use: it registers their SIGKILL at the test's end
 * first, so they die before Redis stops (t.after hooks run in the order they were added).
 */
function nodeSet(t: TestContext): { start(redis: string, names: string[]): Promise<Child[]> } {
  const children: Child[] = [];
  t.after(async () => {
    await Promise.all(
      children.map(async (c) => {
        if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
        await c.exited;
      }),
    );
  });
  return {
    async start(redis, names) {
      for (const node of names) {
        const file = join(tempDir(t, `notify-${node}-`), 'notify.yaml');
        writeFileSync(
          file,
          stringify({
            // A short heartbeat: a killed node's sessions leave presence within 3 of them (3 s),
            // and presence that Redis lost is written again at the next one. Not shorter: a
            // session that misses one pong on a busy machine is terminated.
            ws: { listen: '127.0.0.1:0', heartbeatIntervalMs: 1000 },
            text: { listen: '127.0.0.1:0' },
            http: { listen: '127.0.0.1:0' },
            state: { dir: './state' },
            // Room for everything a test publishes: a resume never runs past the history.
            history: { size: 100_000 },
            cluster: { redis, node },
          }),
        );
        children.push(await startChild(t, file));
      }
      return children.slice(-names.length);
    },
  };
}

const portOf = (address: string) => Number(address.slice(address.lastIndexOf(':') + 1));

/** An envelope of the resume protocol carrying a test message `{"uid","n"}`, or a control frame. */
interface Frame {
  id?: string;
  type?: string;
  since?: string | null;
  data?: { n?: number };
}

const parse = (f: string) => JSON.parse(f) as Frame;
/** The message numbers of a page's envelopes, in the order they came. */
const numbers = (frames: readonly string[]) => frames.map(parse).filter((f) => f.id !== undefined).map((f) => f.data?.n as number);
const ids = (frames: readonly string[]) => frames.map(parse).flatMap((f) => (f.id === undefined ? [] : [f.id]));
/** The id of the newest envelope a page has (what it resumes with). */
const lastId = (frames: readonly string[]) => ids(frames).at(-1) as string;

/** A resume-protocol page bound to `uid` on the WebSocket listener at `address`. */
function page(t: TestContext, address: string, uid: string, since: string | null = null): Promise<WsClient> {
  return wsClient(t, `ws://${address}/`, { bind: JSON.stringify({ type: 'bind', uid, since }) });
}

/**
 * A backend publishing a steady stream of `{"uid","n"}` lines to one Text connection, one at a
 * time (each line once the previous one is answered, so publish order is n order), and keeping
 * every reply by n.
 */
class Publisher {
  readonly replies: string[] = [];
  #stopped = false;
  readonly #done: Promise<void>;
  readonly #backend: TextClient;
  readonly #uid: string;

  constructor(backend: TextClient, uid: string, pauseMs = 5) {
    this.#backend = backend;
    this.#uid = uid;
    this.#done = (async () => {
      while (!this.#stopped) {
        await this.publish();
        await new Promise((r) => setTimeout(r, pauseMs));
      }
    })();
  }

  /** Publishes n = replies.length + 1 and resolves with its reply. */
  async publish(): Promise<string> {
    const n = this.replies.length + 1;
    this.#backend.write(`${JSON.stringify({ uid: this.#uid, n })}\n`);
    const reply = (await this.#backend.replies(n))[n - 1] as string;
    this.replies.push(reply);
    return reply;
  }

  /** Message numbers (1-based) whose reply matches. */
  answered(match: (reply: string) => boolean, from = 1, to = this.replies.length): number[] {
    const out: number[] = [];
    for (let n = from; n <= to; n++) if (match(this.replies[n - 1] as string)) out.push(n);
    return out;
  }

  /** Waits until `check` holds of the replies so far. */
  until(check: (replies: readonly string[]) => boolean, what: string): Promise<void> {
    return until(() => check(this.replies), what);
  }

  /** Stops after the line in flight; resolves once it is answered. */
  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#done;
  }
}

const stored = (r: string) => r === 'ok' || r === 'fail';
const isError = (r: string) => r.startsWith('error: ');
const range = (from: number, to: number) => Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);

test('cluster failover (3 child processes): node B is SIGKILLed mid-stream; the page resumes on node C with since and has every message answered ok (and fail: stored), exactly once by id, in publish order', { skip: SKIP_REDIS, timeout: HANG_MS * 4 }, async (t) => {
  const nodes = nodeSet(t);
  const redis = await startRedis(t);
  const [a, b, c] = (await nodes.start(redis.url, ['node-a', 'node-b', 'node-c'])) as [Child, Child, Child];

  const onB = await page(t, b.ws, 'uid1');
  const pub = new Publisher(await textClient(t, portOf(a.text)), 'uid1');
  // The page is in presence once a publish is answered ok; it gets a steady stream.
  await pub.until((r) => r.includes('ok'), 'a publish through node A to be answered ok (the page on B is in presence)');
  await onB.frame(20);

  b.proc.kill('SIGKILL');
  assert.equal(await within(b.exited, HANG_MS, 'node B to die'), 'SIGKILL');
  const atKill = pub.replies.length;
  // Publishing goes on while no node has the session: once B's presence has expired, fail.
  await pub.until((r) => r.slice(atKill).filter((x) => x === 'fail').length >= 5, 'publishes answered fail once the killed node\'s session left presence');

  const since = lastId(onB.frames);
  const atResume = pub.replies.length;
  const onC = await page(t, c.ws, 'uid1', since);
  // Publishing goes on across the resume's seam, until the resumed page gets live messages.
  await pub.until((r) => r.length >= atResume + 20, '20 more publishes after the resume');
  await until(() => numbers(onC.frames).includes(atResume + 20), 'the resumed page to get a message published after it bound');
  await pub.stop();
  // A marker published after everything: once it is in, anything sent before it is too.
  const marker = pub.replies.length + 1;
  assert.equal(await pub.publish(), 'ok');
  await until(() => numbers(onC.frames).includes(marker), 'the marker on the resumed page');

  const replies = pub.replies;
  const tally = (list: readonly string[]) => JSON.stringify(Object.fromEntries([...new Set(list)].map((r) => [r.slice(0, 40), list.filter((x) => x === r).length])));
  t.diagnostic(`B had ${numbers(onB.frames).length}; before the kill ${tally(replies.slice(0, atKill))}; B dead ${tally(replies.slice(atKill, atResume))}; after the resume ${tally(replies.slice(atResume))}; C got ${numbers(onC.frames).length}`);
  assert.deepEqual(replies.filter((r) => !stored(r)), [], 'Redis was up throughout: every publish was stored (ok or fail)');
  const got = [...numbers(onB.frames), ...numbers(onC.frames)];
  assert.ok(numbers(onB.frames).length >= 20 && atKill >= 20, 'B was killed mid-stream, the publisher running');
  assert.deepEqual(
    got,
    range(1, marker),
    `every message, once, in publish order (B had ${numbers(onB.frames).length}; ${atResume - atKill} published while B was dead, of them ${replies.slice(atKill, atResume).filter((r) => r === 'ok').length} ok, the rest fail)`,
  );
  for (const n of pub.answered((r) => r === 'ok')) assert.ok(got.includes(n), `message ${n} was answered ok and reached the page`);
  const allIds = [...ids(onB.frames), ...ids(onC.frames)];
  assert.equal(new Set(allIds).size, allIds.length, 'each id once');
  assert.ok(!onC.frames.some((f) => parse(f).type === 'gap'), 'since was stored: no gap');
});

test('cluster failover (3 child processes): Redis restarted without persistence mid-stream: positions move to a new epoch; the page connected throughout gets a gap, then what is stored; a page resuming with a since from before gets a gap first, never a reused position', { skip: SKIP_REDIS, timeout: HANG_MS * 4 }, async (t) => {
  const nodes = nodeSet(t);
  const redis = await startRedis(t);
  const [a, b, c] = (await nodes.start(redis.url, ['node-a', 'node-b', 'node-c'])) as [Child, Child, Child];

  const throughout = await page(t, b.ws, 'uid1');
  const pub = new Publisher(await textClient(t, portOf(a.text)), 'uid1');
  await pub.until((r) => r.includes('ok'), 'a publish through node A to be answered ok (the page on B is in presence)');
  // Far enough into the stream that the offsets after the restart (1, 2, …) are below its position.
  await throughout.frame(30);
  const epochBefore = redis.cli('HGET', 'notify:epoch', 'e');
  assert.match(epochBefore, /^[0-9a-f]{16}$/);

  // Counted before the stop and before the restart: a reply that comes in just after either may
  // still be of the time before it.
  const atStop = pub.replies.length;
  await redis.stop();
  await pub.until((r) => r.slice(atStop).some(isError), 'a publish answered with an error while Redis is down');
  const firstError = pub.replies.findIndex((r, i) => i >= atStop && isError(r));
  const beforeGap = lastId(throughout.frames);
  const atRestart = pub.replies.length;
  await redis.restart();
  // Fewer messages after the restart than the page had before it: a reused offset would look
  // like a message it already has.
  await pub.until((r) => r.slice(atRestart).filter(stored).length >= 10, '10 publishes stored after the restart');
  await pub.stop();

  const epochAfter = redis.cli('HGET', 'notify:epoch', 'e');
  assert.match(epochAfter, /^[0-9a-f]{16}$/);
  assert.notEqual(epochAfter, epochBefore, 'a new epoch after Redis came back empty');

  const resumed = await page(t, c.ws, 'uid1', beforeGap);
  const marker = pub.replies.length + 1;
  assert.ok(stored(await pub.publish()), 'the marker is stored');
  await until(() => numbers(throughout.frames).includes(marker), 'the marker on the page connected throughout');
  await until(() => numbers(resumed.frames).includes(marker), 'the marker on the resumed page');

  const replies = pub.replies;
  const tally = (list: readonly string[]) => JSON.stringify(Object.fromEntries([...new Set(list)].map((r) => [r.slice(0, 40), list.filter((x) => x === r).length])));
  t.diagnostic(`before the stop ${tally(replies.slice(0, atStop))}; while down ${tally(replies.slice(atStop, atRestart))}; after the restart ${tally(replies.slice(atRestart))}`);
  t.diagnostic(`page connected throughout: ${JSON.stringify(throughout.frames.slice(-14).map((f) => parse(f).data?.n ?? f))}`);
  t.diagnostic(`resumed page: ${JSON.stringify(resumed.frames.map((f) => parse(f).data?.n ?? f))}`);
  const whileDown = replies.slice(firstError, atRestart);
  assert.ok(whileDown.every((r) => r.startsWith('error: store unavailable (')), `while Redis was down every publish was an error: ${JSON.stringify([...new Set(whileDown)])}`);
  assert.ok(!replies.slice(0, atStop).some(isError), 'none before');
  const storedAfter = pub.answered(stored, atRestart + 1);
  const errorAfter = pub.answered(isError, atRestart + 1);
  // A publish answered with an error may still have been stored (its reply lost with the
  // connection): it may be there or not, but nothing else may.
  const isSubsequence = (got: number[], must: number[], may: number[]) => {
    const allowed = new Set([...must, ...may]);
    return got.every((n, i) => allowed.has(n) && (i === 0 || n > (got[i - 1] as number))) && must.every((n) => got.includes(n));
  };

  // The page connected throughout: its messages, one gap frame when the stream came back in a
  // new epoch, then every message stored since, in order, once.
  const frames = throughout.frames.map(parse);
  const gapAt = frames.findIndex((f) => f.type === 'gap');
  assert.ok(gapAt > 0, `a gap frame after the restart: ${JSON.stringify(throughout.frames.slice(-15))}`);
  assert.equal(frames.filter((f) => f.type === 'gap').length, 1, 'one gap');
  const before = numbers(throughout.frames.slice(0, gapAt));
  const after = numbers(throughout.frames.slice(gapAt + 1));
  assert.ok(before.length >= 30 && isSubsequence(before, pub.answered(stored, 1, firstError), pub.answered(isError, atStop + 1, atRestart)), `before the gap: every message stored before the stop, in order, once: ${JSON.stringify(before)}`);
  assert.ok(after.length > 0 && after.length < before.length, 'fewer after the restart than before (offsets below the old position)');
  assert.ok(isSubsequence(after, [...storedAfter, marker], errorAfter), `after the gap: every message stored since the restart, in order, once: ${JSON.stringify(after)} (stored ${JSON.stringify(storedAfter)})`);

  // The page that resumes with an id from before the restart: a gap first (that id is not in
  // the new epoch), then exactly what is stored, as the other page got it.
  const r = resumed.frames.map(parse);
  assert.deepEqual(r[0], { type: 'gap', since: beforeGap }, 'a gap frame comes first');
  assert.equal(r.filter((f) => f.type === 'gap').length, 1, 'one gap');
  assert.deepEqual(numbers(resumed.frames), after, 'then what is stored, as the page connected throughout got it');
  assert.deepEqual(ids(resumed.frames), ids(throughout.frames.slice(gapAt + 1)), 'the same ids');
});

test('cluster failover (3 child processes, Sentinel): the primary is SIGKILLed; publishes are errors during the failover, never ok; afterwards publishing works again without a restart, the page gets new messages, and a page resuming across the failover gets a gap', { skip: SKIP_SENTINEL, timeout: HANG_MS * 4 }, async (t) => {
  const nodes = nodeSet(t);
  const sentinel = await startSentinels(t);
  const [a, b, c] = (await nodes.start(sentinel.url, ['node-a', 'node-b', 'node-c'])) as [Child, Child, Child];

  const throughout = await page(t, b.ws, 'uid1');
  const pub = new Publisher(await textClient(t, portOf(a.text)), 'uid1', 10);
  await pub.until((r) => r.includes('ok'), 'a publish through node A to be answered ok (the page on B is in presence)');
  await throughout.frame(20);
  const epochBefore = sentinel.primary.cli('HGET', 'notify:epoch', 'e');
  assert.equal(sentinel.replica.cli('ROLE').split('\n')[0], 'slave');
  assert.deepEqual(sentinel.masterPorts(), [sentinel.primary.port, sentinel.primary.port, sentinel.primary.port]);

  const atKill = pub.replies.length;
  await sentinel.killPrimary();
  const beforeFailover = lastId(throughout.frames);
  // Publishing goes on through the failover (ioredis follows the sentinels' +switch-master).
  await pub.until((r) => r.slice(atKill).filter((x) => x === 'ok').length >= 10 && r.slice(atKill).some(isError), '10 publishes answered ok after the failover');
  await pub.stop();
  // The sentinels moved the primary to the replica (they tell each other: waited for, not assumed).
  await sentinel.agreeOn(sentinel.replica.port);
  assert.equal(sentinel.replica.cli('ROLE').split('\n')[0], 'master');
  // The same processes, each back on the new primary by itself (both its connections).
  for (const n of [a, b, c]) {
    assert.equal(n.proc.exitCode, null, 'no node was restarted');
    await until(() => ['commands', 'subscriber'].every((role) => n.logs.some((l) => l.msg === 'redis connection back' && l.role === role)), 'each node to log both its Redis connections back');
  }

  const replies = pub.replies;
  const tally = (list: readonly string[]) => JSON.stringify(Object.fromEntries([...new Set(list)].map((r) => [r.slice(0, 60), list.filter((x) => x === r).length])));
  t.diagnostic(`before the kill ${tally(replies.slice(0, atKill))}; after it ${tally(replies.slice(atKill))}`);
  // From the first error after the kill (a reply just after it may be of the time before) to the
  // first publish stored on the new primary.
  const firstError = replies.findIndex((r, i) => i >= atKill && isError(r));
  assert.ok(firstError >= 0, 'the outage was seen: publishes between the kill and the failover');
  const firstStored = replies.findIndex((r, i) => i > firstError && stored(r));
  const outage = replies.slice(firstError, firstStored);
  assert.ok(outage.every((r) => r.startsWith('error: store unavailable (')), `during the failover every publish was an error, never ok: ${JSON.stringify([...new Set(outage)])}`);
  assert.ok(!replies.slice(0, atKill).some(isError), 'none before');
  const epochAfter = sentinel.replica.cli('HGET', 'notify:epoch', 'e');
  assert.notEqual(epochAfter, epochBefore, 'the promoted replica has a new replication id: positions are in a new epoch');

  const resumed = await page(t, c.ws, 'uid1', beforeFailover);
  const marker = pub.replies.length + 1;
  assert.equal(await pub.publish(), 'ok');
  await until(() => numbers(throughout.frames).includes(marker), 'the marker on the page connected throughout');
  await until(() => numbers(resumed.frames).includes(marker), 'the marker on the resumed page');

  // The page connected throughout: every message answered ok reached it, in order, once; the
  // stream's new epoch shows as one gap frame before the messages stored on the new primary.
  const okBefore = pub.answered(stored, 1, firstError);
  const okAfter = [...pub.answered(stored, firstStored + 1), marker];
  const mayBe = pub.answered(isError, atKill + 1);
  const frames = throughout.frames.map(parse);
  t.diagnostic(`page connected throughout: ${JSON.stringify(throughout.frames.slice(-14).map((f) => parse(f).data?.n ?? f))}`);
  t.diagnostic(`resumed page: ${JSON.stringify(resumed.frames.map((f) => parse(f).data?.n ?? f))}`);
  const gapAt = frames.findIndex((f) => f.type === 'gap');
  assert.ok(gapAt > 0, `a gap frame at the new epoch: ${JSON.stringify(throughout.frames.slice(-15))}`);
  assert.equal(frames.filter((f) => f.type === 'gap').length, 1, 'one gap');
  const before = numbers(throughout.frames.slice(0, gapAt));
  const after = numbers(throughout.frames.slice(gapAt + 1));
  const allowed = new Set([...okBefore, ...okAfter, ...mayBe]);
  const got = [...before, ...after];
  assert.ok(
    got.every((n, i) => allowed.has(n) && (i === 0 || n > (got[i - 1] as number))),
    `in publish order, once, nothing that was not published: ${JSON.stringify(got)}`,
  );
  // Before the kill the old primary PUBLISHed each message as it stored it, so the page has them
  // live (whether the replica had them too is replication's luck); after it, every one stored.
  // Every publish answered ok (or fail) once the outage began was stored on the new primary:
  // the page has it after the gap, in the new epoch. None was a lie from the old one.
  for (const n of okAfter) assert.ok(after.includes(n), `message ${n} was answered ok after the failover and reached the page`);
  for (const n of okBefore) assert.ok(before.includes(n), `message ${n} was answered before the kill and reached the page live`);

  // The page that resumes with an id from before the failover: a gap first, then what the new
  // primary stores, as the other page got it after its gap; never an old offset taken as new.
  const r = resumed.frames.map(parse);
  assert.deepEqual(r[0], { type: 'gap', since: beforeFailover }, 'a gap frame comes first');
  assert.equal(r.filter((f) => f.type === 'gap').length, 1, 'one gap');
  assert.deepEqual(numbers(resumed.frames), after, 'then what is stored in the new epoch, as the page connected throughout got it');
});
