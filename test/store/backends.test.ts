import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { test } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);

// In a process of its own: what a daemon has loaded is only visible from inside it.
const probe = `
import { createRequire } from 'node:module';
const { testConfig, runDaemon } = await import(process.argv[1]);
const t = { after() {}, diagnostic() {} };
const config = testConfig({}, t);
await runDaemon(t, config);
const loaded = Object.keys(createRequire(import.meta.url).cache).filter((k) => k.includes('/node_modules/ioredis/'));
process.stdout.write(JSON.stringify({ loaded: loaded.length }));
process.exit(0);
`;

test('a node with the embedded store (no cluster.redis) does not load ioredis', async () => {
  const helpers = new URL('../helpers/daemon.js', import.meta.url).pathname;
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', probe, helpers], { timeout: 60_000 });
  assert.deepEqual(JSON.parse(stdout), { loaded: 0 });
});
