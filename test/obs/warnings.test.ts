import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { until } from '../helpers/clients.js';
import { startChild } from '../helpers/child.js';
import { tempDir, writeTemp } from '../helpers/daemon.js';

// Preloaded into the child: on SIGUSR2 it raises two warnings, the way a dependency would.
const RAISE_WARNINGS = `
const { EventEmitter } = require('node:events');
process.on('SIGUSR2', () => {
  process.emitWarning('notify-test warning', { code: 'NOTIFY_TEST' });
  const e = new EventEmitter();
  for (let i = 0; i < 11; i++) e.on('x', () => {});
});
`;

test('serve (child): Node warnings (process.emitWarning, MaxListenersExceededWarning) are JSON warn lines; stderr stays one JSON object per line', { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t, 'notify-warnings-');
  const preload = writeTemp(t, 'raise-warnings.cjs', RAISE_WARNINGS);
  const config = writeTemp(
    t,
    'notify.yaml',
    stringify({ ws: { listen: '127.0.0.1:0' }, text: { listen: '127.0.0.1:0' }, http: { listen: '127.0.0.1:0' }, state: { dir: join(dir, 'state') } }),
  );
  const child = await startChild(t, config, undefined, { NODE_OPTIONS: `--require ${preload}` });
  child.proc.kill('SIGUSR2');
  const said = (text: string) => child.logs.some((l) => JSON.stringify(l).includes(text));
  await until(() => said('notify-test warning') && said('MaxListenersExceededWarning'), 'both warnings on stderr');

  assert.deepEqual(child.logs.filter((l) => 'raw' in l), [], 'every stderr line is JSON');
  const warnings = child.logs.filter((l) => l.msg === 'node warning');
  assert.deepEqual(
    warnings.map((l) => [l.level, l.name, l.code]),
    [
      ['warn', 'Warning', 'NOTIFY_TEST'],
      ['warn', 'MaxListenersExceededWarning', undefined],
    ],
  );
  assert.equal(warnings[0]?.warning, 'notify-test warning');
  assert.match(String(warnings[1]?.warning), /Possible EventEmitter memory leak detected/);
});
