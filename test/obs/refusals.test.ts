import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLogger } from '../../src/obs/log.js';
import { RefusalLog } from '../../src/obs/refusals.js';

test('RefusalLog: one line per kind per second at info; the next line of a kind says how many were left out; kinds are apart', () => {
  const lines: Record<string, unknown>[] = [];
  const log = createLogger({ level: 'info', write: (l) => void lines.push(JSON.parse(l) as Record<string, unknown>) });
  let now = 1_000_000;
  const r = new RefusalLog(log, { now: () => now });
  for (let i = 0; i < 1000; i++) r.refused('auth', 'websocket bind refused', { reason: 'forged token', uid: `u${i}` });
  r.refused('sessionsPerUid', 'websocket bind refused', { reason: 'too many sessions' });
  assert.equal(lines.length, 2, 'a flood of 1000 is one line, another kind its own');
  assert.deepEqual(
    lines.map((l) => [l.level, l.refused, l.reason, l.uid, l.suppressed]),
    [
      ['info', 'auth', 'forged token', 'u0', undefined],
      ['info', 'sessionsPerUid', 'too many sessions', undefined, undefined],
    ],
  );
  now += 999;
  r.refused('auth', 'websocket bind refused', { reason: 'forged token' });
  assert.equal(lines.length, 2, 'still within the second');
  now += 1;
  r.refused('auth', 'websocket bind refused', { reason: 'forged token', uid: 'late' });
  assert.equal(lines.length, 3);
  assert.equal(lines[2]?.suppressed, 1000, 'the 999 of the flood and the one after');
  assert.equal(lines[2]?.uid, 'late');
});
