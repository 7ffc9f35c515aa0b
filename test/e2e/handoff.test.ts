import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { setTimeout as delay } from 'node:timers/promises';
import { stringify } from 'yaml';
import type { PublishReport } from '../../src/types.js';
import { send } from '../helpers/api.js';
import { type Child, startChild } from '../helpers/child.js';
import { HANG_MS, until, within } from '../helpers/clients.js';
import { tempDir } from '../helpers/daemon.js';
import { type FakeHttp, startFakeHttp } from '../helpers/fake-http.js';

// Deliveries queued behind a transport's concurrency cap are handed over, not failed: at a
// reload to the transport that replaces theirs, at a stop to the next process (retry queue).
// Counts, not timing: the fake is slow so that a queue builds up; waits are on events.

const N = 200;
const RELOADED = 'SIGHUP: config reloaded; sessions kept';
const KEPT = 'deliveries kept in the retry queue for the next start';
const HANDED = /handed to the next transport or process/;

/** A child's config: port-0 listeners, state next to the file, and `extra` on top. */
function writeConfig(file: string, extra: Record<string, unknown>): void {
  writeFileSync(
    file,
    stringify({
      ws: { listen: '127.0.0.1:0' },
      text: { listen: '127.0.0.1:0' },
      http: { listen: '127.0.0.1:0' },
      state: { dir: './state' },
      shutdown: { timeoutMs: 5000, graceMs: '5s' },
      ...extra,
    }),
  );
}

/** A webhook posting `{msg}`, one request at a time; `gen` goes in a header to tell instances apart. */
const webhook = (fake: FakeHttp, gen: string) => ({
  type: 'http',
  url: `${fake.url}/hook`,
  headers: { 'x-gen': gen },
  body: { msg: '{{msg}}' },
  maxConcurrentRequests: 1,
});

const msgOf = (r: { json: unknown }) => (r.json as { msg: string }).msg;

function counts(list: readonly string[]): Map<string, number> {
  const m = new Map<string, number>();
  for (const x of list) m.set(x, (m.get(x) ?? 0) + 1);
  return m;
}

async function stopChild(child: Child): Promise<void> {
  child.proc.kill('SIGTERM');
  assert.equal(await within(child.exited, HANG_MS, 'notify serve to exit after SIGTERM'), 0);
}

test('handoff (child): a SIGHUP that changes a webhook transport while 200 messages queue behind maxConcurrentRequests 1: all 200 reach the webhook, each exactly once; the reports of those handed over say so', { timeout: HANG_MS * 3 }, async (t) => {
  const fake = await startFakeHttp(t, async () => {
    await delay(10);
    return undefined;
  });
  const file = join(tempDir(t, 'notify-handoff-'), 'notify.yaml');
  // The reports wait for the deliveries (a long deadline), so a handed-over one shows in its report.
  const dispatch = { deliverTimeoutMs: 120_000 };
  writeConfig(file, { dispatch, transports: { hook: webhook(fake, '1') } });
  const child = await startChild(t, file);
  const base = `http://${child.http}`;

  const reports = Array.from({ length: N }, (_, i) => send(base, { uid: 'alice', msg: `m${i}` }));
  await until(() => fake.requests.length >= 20, 'the webhook to get its first requests');

  writeConfig(file, { dispatch, transports: { hook: webhook(fake, '2') } });
  child.proc.kill('SIGHUP');
  await until(() => child.logs.some((l) => l.msg === RELOADED), 'the reload to be logged');
  const reload = child.logs.find((l) => l.msg === RELOADED) as { changed?: string[] };
  assert.deepEqual(reload.changed, ['hook']);

  const all: PublishReport[] = await within(Promise.all(reports), HANG_MS, 'the 200 reports');
  await until(() => new Set(fake.requests.map(msgOf)).size === N, `all ${N} messages at the webhook`);
  // Stopped: nothing is on its way any more, so the counts below are final.
  await stopChild(child);

  const seen = counts(fake.requests.map(msgOf));
  assert.equal(seen.size, N, 'every message arrived');
  assert.deepEqual([...seen].filter(([, n]) => n > 1), [], 'none arrived twice');
  assert.equal(fake.requests.length, N);

  const entries = all.map((r) => {
    assert.equal(r.results.length, 1, JSON.stringify(r));
    return r.results[0] as PublishReport['results'][number];
  });
  const handed = entries.filter((e) => e.status === 'failed' && HANDED.test(e.reason ?? ''));
  const sent = entries.filter((e) => e.status === 'sent');
  assert.equal(sent.length + handed.length, N, `every report is sent or handed over: ${JSON.stringify(entries.filter((e) => e.status !== 'sent' && !HANDED.test(e.reason ?? '')).slice(0, 3))}`);
  assert.ok(handed.length > 0, 'the reload caught deliveries queued on the old transport');
  const byGen = counts(fake.requests.map((r) => String(r.headers['x-gen'])));
  assert.ok((byGen.get('2') ?? 0) >= handed.length, `the successor sent the handed-over ones: ${JSON.stringify([...byGen])}, handed ${handed.length}`);
  assert.equal((byGen.get('1') ?? 0) + (byGen.get('2') ?? 0), N);
  t.diagnostic(`reload: sent by the old transport ${byGen.get('1') ?? 0}, handed over ${handed.length}, sent by the successor ${byGen.get('2') ?? 0}`);
});

test('handoff (child): SIGTERM with a slow webhook and 200 queued: the process exits 0 keeping the rest in the retry queue; a restart on the same state dir sends them; every message arrives, and none the webhook answered before the stop arrives again', { timeout: HANG_MS * 3 }, async (t) => {
  let slow = true;
  const answeredBeforeStop = new Set<string>();
  const fake = await startFakeHttp(t, async (req) => {
    if (!slow) return undefined;
    await delay(25);
    answeredBeforeStop.add(msgOf(req));
    return undefined;
  });
  const file = join(tempDir(t, 'notify-handoff-'), 'notify.yaml');
  writeConfig(file, { dispatch: { deliverTimeoutMs: 1000 }, transports: { hook: webhook(fake, '1') } });
  const first = await startChild(t, file);
  const base = `http://${first.http}`;

  const reports = await within(Promise.all(Array.from({ length: N }, (_, i) => send(base, { uid: 'alice', msg: `m${i}` }))), HANG_MS, 'the 200 reports');
  assert.ok(reports.some((r) => r.results[0]?.status !== 'sent'), 'some were still queued at the report deadline');
  assert.ok(fake.requests.length < N, `the webhook is slow: ${fake.requests.length} of ${N} so far`);

  await stopChild(first);
  const before = fake.requests.length;
  const sentBefore = answeredBeforeStop.size;
  const keptLog = first.logs.find((l) => l.msg === KEPT) as { count?: number } | undefined;
  const held = keptLog?.count ?? 0;
  assert.ok(held > 0, 'the stop kept the queued deliveries');
  assert.equal(before, sentBefore, 'every request sent before the stop was answered (shutdown.graceMs)');
  assert.equal(sentBefore + held, N, 'each message was either answered or kept');

  slow = false;
  const second = await startChild(t, file);
  await until(() => new Set(fake.requests.map(msgOf)).size === N, `all ${N} messages at the webhook after the restart`);
  await stopChild(second);
  assert.equal(second.logs.find((l) => l.msg === KEPT), undefined, 'nothing left over at the second stop');

  const after = fake.requests.slice(before).map(msgOf);
  const seen = counts(fake.requests.map(msgOf));
  assert.equal(seen.size, N, 'every message arrived at least once');
  assert.deepEqual([...answeredBeforeStop].filter((m) => seen.get(m) !== 1), [], 'none answered before the stop was sent again');
  assert.equal(after.length, held, 'the restart sent what was kept, once each');
  t.diagnostic(`stop: sent before the stop ${sentBefore}, held ${held}, delivered after the restart ${after.length}`);
});
