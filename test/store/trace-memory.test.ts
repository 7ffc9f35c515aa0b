import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import { MemoryTraceStore } from '../../src/store/trace-memory.js';
import { type JournalEvent, retiredKey } from '../../src/store/trace.js';

// The in-memory trace store (history off, `send --direct`): a ring of the newest records. What
// every trace store does is in test/contracts/trace.contract.ts; this is what the ring adds.

const published = (id: string, at = Date.now()): JournalEvent => ({ type: 'published', id, at, ingress: 'text', audience: { uids: ['alice'] }, audienceSize: 1, route: 'all', stored: false, node: 'n1' });
const ack = (id: string): JournalEvent => ({ type: 'ack', id, at: Date.now(), uid: 'alice', session: 's1' });
const types = (s: MemoryTraceStore, id: string) => s.events(id).events.map((e) => e.type);

test('memory trace: the newest maxMessages records are kept, the oldest overwritten first; news of a record no longer kept is dropped', () => {
  const s = new MemoryTraceStore({ ttlMs: 60_000, maxMessages: 5 });
  for (let i = 1; i <= 7; i++) s.append(published(`m${i}`));
  assert.deepEqual(types(s, 'm1'), [], 'm1 and m2 were overwritten');
  assert.deepEqual(types(s, 'm2'), []);
  for (let i = 3; i <= 7; i++) assert.deepEqual(types(s, `m${i}`), ['published'], `m${i} is kept`);
  s.append(ack('m3'));
  s.append(ack('m1'));
  assert.deepEqual(types(s, 'm3'), ['published', 'ack'], 'an event of the oldest kept record finds it');
  assert.deepEqual(types(s, 'm1'), [], 'an ack of a record no longer kept does not bring it back');
  // A duplicate goes to the first publish's record; a retirement to its message's and its uid's.
  s.append({ type: 'duplicate', id: 'm7', at: Date.now(), ingress: 'http', node: 'n1' });
  assert.deepEqual(types(s, 'm7'), ['published', 'duplicate']);
  s.append({ type: 'retired', id: 'm7', at: Date.now(), uid: 'alice', transport: 'apns', token: 'tok', reason: 'Unregistered', node: 'n1' });
  assert.deepEqual(types(s, 'm7'), ['published', 'duplicate', 'retired']);
  assert.deepEqual(types(s, retiredKey('alice')), ['retired']);
  assert.deepEqual(types(s, 'm3'), [], 'the retired record took the oldest slot');
  s.close();
  assert.deepEqual(types(s, 'm7'), []);
  assert.throws(() => new MemoryTraceStore({ ttlMs: 1000, maxMessages: 0 }), /maxMessages must be a positive integer/);
});

test('memory trace: its records do not outlive the young generation: 200,000 messages kept 1,000 at a time promote less than 125 bytes each to the old generation (a Map evicting its oldest promoted about 490)', (t) => {
  // Measured in a process of its own with v8.GCProfiler: the old space's growth at each scavenge.
  const url = JSON.stringify(new URL('../../src/store/trace-memory.js', import.meta.url).href);
  const script = `
    import v8 from 'node:v8';
    import { MemoryTraceStore } from ${url};
    const s = new MemoryTraceStore({ ttlMs: 86400000, maxMessages: 1000 });
    let sink = 0;
    function run(n, base) {
      for (let i = base; i < base + n; i++) {
        const id = '01KB2R3M9WJ8P4S6T0' + String(i).padStart(8, '0');
        const uid = 'u' + (i % 10000);
        const at = Date.now();
        s.append({ type: 'published', id, at, ingress: 'text', audience: { uids: [uid] }, audienceSize: 1, route: 'all', stored: false, node: 'n1' });
        s.append({ type: 'report', id, at, node: 'n1', audienceSize: 1, targets: [{ uid, transport: 'websocket', target: 's' + i, status: 'sent', attempts: 1 }], total: 1, sent: 1, failed: 0, rejected: 0, unreached: [] });
        // The rest of a push's short-lived garbage, so that scavenges come as in the daemon.
        for (let k = 0; k < 40; k++) sink += [k, i, 'x' + k].length;
      }
    }
    run(20000, 0);
    const p = new v8.GCProfiler();
    p.start();
    run(200000, 20000);
    const stats = p.stop();
    let promoted = 0, scavenges = 0;
    const used = (spaces) => spaces.find((x) => x.spaceName === 'old_space')?.spaceUsedSize ?? 0;
    for (const g of stats.statistics) {
      if (g.gcType !== 'Scavenge') continue;
      scavenges++;
      promoted += used(g.afterGC.heapSpaceStatistics) - used(g.beforeGC.heapSpaceStatistics);
    }
    const last = '01KB2R3M9WJ8P4S6T0' + String(219999).padStart(8, '0');
    process.stdout.write(JSON.stringify({ scavenges, promoted, last: s.events(last).events.length, sink: sink > 0 }));
  `;
  const out = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' })) as { scavenges: number; promoted: number; last: number };
  t.diagnostic(`${out.scavenges} scavenges promoted ${(out.promoted / 1e6).toFixed(1)} MB`);
  assert.ok(out.scavenges > 10, 'scavenges ran');
  assert.equal(out.last, 2, 'the newest message has its published and report events');
  assert.ok(out.promoted < 200_000 * 125, `promoted ${out.promoted} bytes`);
});
