import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { SqliteStreams } from '../../src/store/stream-sqlite.js';
import { bound, roundTrip, until, wsClient } from '../helpers/clients.js';
import { type TestDaemon, startDaemon } from '../helpers/daemon.js';

// Revision 2 of the resume protocol (a bind with "v":2): the accepted bind is answered
// {"type":"bound"} before anything else, and replayed envelopes carry "replay":true, so a page
// knows when it is connected and which pushes came from the store. Binds without it, and plain
// sessions of the original protocol, get exactly the bytes they got before.

async function publish(d: TestDaemon, body: Record<string, unknown>): Promise<string> {
  const res = await fetch(`${d.httpUrl}/v1/send`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  assert.equal(res.status, 200);
  return ((await res.json()) as { id: string }).id;
}

test('resume v2: bound first, replayed envelopes marked, live ones not; a v1 bind and a plain session get the same bytes as before', async (t) => {
  const d = await startDaemon(t);
  const one = await publish(d, { uid: 'uid1', msg: 'one' });
  const obj = await publish(d, { uid: 'uid1', title: 'Build', msg: 'done' });

  const v1 = await wsClient(t, d.wsUrl, { bind: JSON.stringify({ type: 'bind', uid: 'uid1', since: null }) });
  const v2 = await wsClient(t, d.wsUrl, { bind: JSON.stringify({ type: 'bind', uid: 'uid1', since: null, v: 2 }) });
  const plain = await wsClient(t, d.wsUrl, { bind: 'uid1' });
  await bound(d, 'uid1', 3);
  const stored = 2;
  await v1.frame(stored);
  await v2.frame(stored + 1);
  await roundTrip(plain.ws);
  assert.deepEqual(plain.frames, [], 'the original protocol: nothing is sent on a bind');

  const replayV1 = [`{"id":"${one}","data":"one"}`, `{"id":"${obj}","data":{"title":"Build","msg":"done"}}`];
  const replayV2 = ['{"type":"bound"}', `{"id":"${one}","data":"one","replay":true}`, `{"id":"${obj}","data":{"title":"Build","msg":"done"},"replay":true}`];
  assert.deepEqual(v1.frames, replayV1, 'revision 1: no bound answer, no replay mark');
  assert.deepEqual(v2.frames, replayV2);

  const two = await publish(d, { uid: 'uid1', msg: 'two' });
  assert.equal(await v1.frame(stored + 1), `{"id":"${two}","data":"two"}`);
  assert.equal(await v2.frame(stored + 2), `{"id":"${two}","data":"two"}`, 'a live envelope has no mark');
  assert.equal(await plain.frame(1), 'two');
});

test('resume v2: a bind whose since is no longer stored gets bound, then the gap frame, then the replay', async (t) => {
  const d = await startDaemon(t);
  const id = await publish(d, { uid: 'uid1', msg: 'kept' });
  const c = await wsClient(t, d.wsUrl, { bind: JSON.stringify({ type: 'bind', uid: 'uid1', since: '01ARZ3NDEKTSV4RRFFQ69G5FAV', v: 2 }) });
  await c.frame(3);
  assert.deepEqual(c.frames, ['{"type":"bound"}', '{"type":"gap","since":"01ARZ3NDEKTSV4RRFFQ69G5FAV"}', `{"id":"${id}","data":"kept","replay":true}`]);
});

test('resume v2: a refused bind (sessions per uid) gets no bound answer, only the close', async (t) => {
  const d = await startDaemon(t, { limits: { sessionsPerUid: 1 } });
  const first = await wsClient(t, d.wsUrl, { bind: JSON.stringify({ type: 'bind', uid: 'uid1', v: 2 }) });
  assert.equal(await first.frame(1), '{"type":"bound"}');
  const second = await wsClient(t, d.wsUrl, { bind: JSON.stringify({ type: 'bind', uid: 'uid1', v: 2 }) });
  const [code] = await second.closed;
  assert.equal(code, 4429);
  assert.deepEqual(second.frames, []);
});

test('resume v2: a session bound while its stream is swept empty (history.ttl) and leaves the index gets the next message live, with no gap', async (t) => {
  const d = await startDaemon(t, { history: { ttl: '1s' } });
  const c = await wsClient(t, d.wsUrl, { bind: JSON.stringify({ type: 'bind', uid: 'uid1', since: null, v: 2 }) });
  await c.frame(1);
  const one = await publish(d, { uid: 'uid1', msg: 'one' });
  assert.equal(await c.frame(2), `{"id":"${one}","data":"one"}`);
  const streams = d.node.backends.streams as SqliteStreams;
  // The sweep (every second with a ttl of 1 s) deletes the row, and the stream leaves the index.
  await until(() => streams.size === 0 && streams.streamCount === 0, 'the stream to be swept empty and dropped', 20_000);
  const two = await publish(d, { uid: 'uid1', msg: 'two' });
  assert.equal(await c.frame(3), `{"id":"${two}","data":"two"}`, 'its offset follows the one the session has');
  await roundTrip(c.ws);
  assert.deepEqual(c.frames, ['{"type":"bound"}', `{"id":"${one}","data":"one"}`, `{"id":"${two}","data":"two"}`], 'no gap frame, nothing twice');
});
