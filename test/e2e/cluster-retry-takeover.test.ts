import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { test } from 'node:test';
import { until } from '../helpers/clients.js';
import { type Child, startChild } from '../helpers/child.js';
import { tempDir } from '../helpers/daemon.js';
import { startFakeHttp } from '../helpers/fake-http.js';
import { SKIP_REDIS, startRedis } from '../helpers/redis.js';


test('cluster: a delivery waiting for a retry on a node that is killed is completed by another node, exactly once (cluster.retryLease)', { skip: SKIP_REDIS }, async (t) => {
  // The webhook fails once (503), then takes everything.
  const hook = await startFakeHttp(t, (req) => (hook.requests.indexOf(req) === 0 ? { status: 503, body: 'busy' } : { status: 200, body: 'ok' }));
  const nodes: Child[] = [];
  const redis = await startRedis(t);
  const dir = tempDir(t, 'notify-takeover-');
  for (const name of ['node-a', 'node-b', 'node-c']) {
    const file = join(dir, `${name}.yaml`);
    writeFileSync(
      file,
      [
        'ws: {listen: "127.0.0.1:0"}',
        'text: {listen: "127.0.0.1:0"}',
        'http: {listen: "127.0.0.1:0"}',
        `state: {dir: ./state-${name}}`,
        `cluster: {redis: "${redis.url}", node: ${name}, retryLease: 1s}`,
        'transports:',
        '  hook:',
        '    type: http',
        `    url: "${hook.url}/push/{{uid}}"`,
        '    body: {uid: "{{uid}}", msg: "{{msg}}"}',
        // The retry waits in the queue long enough for its node to be killed first.
        '    retry: {limit: 5, baseDelayMs: 3000, maxDelayMs: 3000}',
        '',
      ].join('\n'),
    );
    nodes.push(await startChild(t, file));
  }
  const [a] = nodes as [Child, Child, Child];
  const published = fetch(`http://${a.http}/v1/send`, { method: 'POST', body: JSON.stringify({ uid: 'u1', msg: 'once' }) }).catch(() => undefined);
  await until(() => hook.requests.length >= 1, 'the first attempt (503)');
  // Node A holds the retry in the shared queue (leased to it), then dies without a word.
  await until(() => Number(redis.cli('ZCARD', 'notify:{rq}:leased')) === 1, 'the retry to be held in Redis');
  a.proc.kill('SIGKILL');
  await a.exited;
  await published;

  await until(() => hook.requests.length >= 2, 'another node to complete the delivery');
  // Well past another lease and claim round: nobody sends it again.
  await sleep(4000);
  assert.equal(hook.requests.length, 2, `one failed attempt and one delivery: ${JSON.stringify(hook.requests.map((r) => r.path))}`);
  assert.deepEqual(hook.requests.map((r) => r.json), [{ uid: 'u1', msg: 'once' }, { uid: 'u1', msg: 'once' }]);
  await until(() => Number(redis.cli('ZCARD', 'notify:{rq}:leased')) + Number(redis.cli('ZCARD', 'notify:{rq}:ready')) === 0, 'the queue to be empty');
  const by = nodes.slice(1).filter((n) => n.logs.some((l) => l.msg === 'resuming deliveries that were waiting for a retry'));
  assert.equal(by.length, 1, 'one node took it up');
});
