import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { Dispatcher } from '../../src/delivery/dispatcher.js';
import { Publisher } from '../../src/delivery/publisher.js';
import { answerLine } from '../../src/ingress/text.js';
import { silentLogger } from '../../src/obs/log.js';
import { MemoryAckRelay } from '../../src/store/acks-memory.js';
import { MemoryDedupe } from '../../src/store/dedupe-memory.js';
import { GroupCommit, openState } from '../../src/store/sqlite.js';
import { MemoryStreams } from '../../src/store/stream-memory.js';
import { SqliteStreams } from '../../src/store/stream-sqlite.js';
import type { MessageStreams } from '../../src/store/stream.js';
import { MemoryRegistry } from '../../src/store/target-index.js';
import { tempDir } from '../helpers/daemon.js';
import { RecordingTransport } from '../helpers/recording-transport.js';

// answerLine, the Text ingress's one line in, one reply out, with a Publisher built directly.

function world(streams: MessageStreams = new MemoryStreams({ size: 100, ttlMs: 60_000 })) {
  const registry = new MemoryRegistry();
  const push = new RecordingTransport('push', registry.index('push'));
  registry.index('push').add('alice', 'd1');
  const dispatcher = new Dispatcher({ transports: [push], everyone: () => [...registry.uids()], deliverTimeoutMs: 10_000, log: silentLogger });
  const publisher = new Publisher({ dispatcher, streams, dedupe: new MemoryDedupe(), acks: new MemoryAckRelay(), route: 'all', ackTimeoutMs: 1000, dedupeWindowMs: 60_000, log: silentLogger });
  return { push, publisher };
}

test('answerLine: a line that cannot be a publish is answered at once (a string, not a promise) saying what is wrong; nothing is delivered', () => {
  const w = world();
  assert.equal(answerLine('', w.publisher), 'error: empty line; send one JSON object per line, e.g. {"uid":"uid1","msg":"hi"}');
  assert.equal(answerLine('[1,2]', w.publisher), 'error: expected a JSON object, e.g. {"uid":"uid1","msg":"hi"}');
  assert.equal(answerLine('null', w.publisher), 'error: expected a JSON object, e.g. {"uid":"uid1","msg":"hi"}');
  assert.equal(answerLine('{"msg":"hi"}', w.publisher), 'error: missing "uid" (or "broadcast": true)');
  assert.equal(answerLine('{"uid":"alice","reply":"xml"}', w.publisher), 'error: "reply" must be "json" when given');
  assert.equal(answerLine('{"uid":"alice","route":"fastest"}', w.publisher), 'error: "route" must be "all" or "live-first"');
  const notJson = answerLine('\u001b[31m\r\u0000', w.publisher);
  assert.equal(typeof notJson, 'string');
  assert.match(notJson as string, /^error: not JSON \(/);
  assert.doesNotMatch(notJson as string, /[\u0000-\u001f]/, 'control characters are escaped: the reply is one clean line');
  assert.match(notJson as string, /\\u001b/);
  assert.equal(w.push.calls.length, 0);
});

test('answerLine: ok when a target has it (the line itself is the frame), fail when none; "reply":"json" answers with the report', async () => {
  const w = world();
  const line = '{"uid":"alice","msg":"hi","percent":"88%"}';
  assert.equal(await answerLine(line, w.publisher), 'ok');
  assert.equal(w.push.calls[0]?.msg.frame, line, 'the frame is the line, byte for byte');
  assert.deepEqual(w.push.calls[0]?.msg.data, { percent: '88%' });
  assert.equal(await answerLine('{"uid":"ghost","msg":"hi"}', w.publisher), 'fail');
  const json = JSON.parse(await answerLine('{"uid":"alice","msg":"x","reply":"json","id":"order-1"}', w.publisher)) as Record<string, unknown>;
  assert.equal(json.id, 'order-1');
  assert.equal(json.delivered, true);
  assert.equal(json.stored, true);
  const again = JSON.parse(await answerLine('{"uid":"alice","msg":"x","reply":"json","id":"order-1"}', w.publisher)) as Record<string, unknown>;
  assert.deepEqual(again, { ...json, duplicate: true });
  assert.equal(w.push.calls.length, 2, 'the repeat was not delivered');
});

test('answerLine: a store that cannot take the message is an error line, and nothing is delivered', async (t: TestContext) => {
  const db = openState(join(tempDir(t), 'state'));
  t.after(() => db.close());
  const streams = new SqliteStreams(db, new GroupCommit(db), { size: 10, ttlMs: 60_000, maxMessages: 100, log: silentLogger });
  streams.close();
  const w = world(streams);
  assert.equal(await answerLine('{"uid":"alice","msg":"hi"}', w.publisher), 'error: store unavailable (the message store is closed)');
  assert.equal(w.push.calls.length, 0);
});
