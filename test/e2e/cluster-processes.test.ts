import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import type { PublishReport } from '../../src/types.js';
import { type Child, startChild } from '../helpers/child.js';
import { HANG_MS, textClient, until, wsClient } from '../helpers/clients.js';
import { runNotify } from '../helpers/cli.js';
import { tempDir } from '../helpers/daemon.js';
import { startFakeHttp } from '../helpers/fake-http.js';
import { SKIP_REDIS, startRedis } from '../helpers/redis.js';

// The cross-node basics with three separate `notify serve` processes (the in-process tests in
// cluster.test.ts, cluster-livefirst.test.ts and cluster-devices.test.ts go into more detail).

const portOf = (address: string) => Number(address.slice(address.lastIndexOf(':') + 1));

async function send(node: Child, body: Record<string, unknown>): Promise<PublishReport> {
  const res = await fetch(`http://${node.http}/v1/send`, { method: 'POST', body: JSON.stringify(body) });
  assert.equal(res.status, 200, await res.clone().text());
  return (await res.json()) as PublishReport;
}

async function nodes(t: TestContext, more: string[]): Promise<{ children: Child[]; present: (uid: string) => Promise<void> }> {
  const children: Child[] = [];
  t.after(() => {
    for (const c of children) if (c.proc.exitCode === null && c.proc.signalCode === null) c.proc.kill('SIGKILL');
  });
  const redis = await startRedis(t);
  const dir = tempDir(t, 'notify-procs-');
  for (const name of ['node-a', 'node-b', 'node-c']) {
    const file = join(dir, `${name}.yaml`);
    writeFileSync(
      file,
      ['ws: {listen: "127.0.0.1:0"}', 'text: {listen: "127.0.0.1:0"}', 'http: {listen: "127.0.0.1:0"}', `state: {dir: ./state-${name}}`, `cluster: {redis: "${redis.url}", node: ${name}}`, ...more, ''].join('\n'),
    );
    children.push(await startChild(t, file));
  }
  /** Waits until a session of `uid` is in presence (its node follows the uid's stream by then). */
  const present = (uid: string) => until(() => Number(redis.cli('ZCARD', `notify:{u:${uid}}:p`)) > 0, `${uid} to enter presence`);
  return { children, present };
}

test('cluster processes: three notify serve processes on one Redis: original protocol across nodes (ok/fail), the report names the node, broadcast, live-first acks across nodes, a device registered on one used by another', { skip: SKIP_REDIS }, async (t) => {
  const hook = await startFakeHttp(t);
  const { children, present } = await nodes(t, [
    'dispatch: {ackTimeout: 30s}',
    'transports:',
    '  hook:',
    '    type: http',
    `    url: "${hook.url}/push/{{uid}}"`,
    '    body: {uid: "{{uid}}", msg: "{{msg}}"}',
    '  devs:',
    '    type: http',
    '    perDevice: true',
    `    url: "${hook.url}/device/{{token}}"`,
    '    body: {uid: "{{uid}}", msg: "{{msg}}"}',
  ]);
  const [a, b, c] = children as [Child, Child, Child];

  // Item 3: a page on B, a backend on A's Text port.
  const page = await wsClient(t, `ws://${b.ws}/`, { bind: 'uid1' });
  await present('uid1');
  const live = await send(a, { uid: 'uid1', msg: 'first', route: 'live-first' });
  assert.deepEqual(live.results.filter((e) => e.transport === 'websocket').map((e) => e.node), ['node-b']);
  assert.equal(await page.frame(1), 'first');
  const backend = await textClient(t, portOf(a.text));
  backend.write('{"uid":"uid1","percent":"88%"}\n{"uid":"nobody-here","percent":"1%"}\n');
  // "nobody-here" has no session on any node, but the webhook (type: http) reaches every uid:
  // the original protocol's fail needs no session and no provider; the webhook takes it, so ok.
  assert.deepEqual(await backend.replies(2), ['ok', 'ok']);
  assert.equal(await page.frame(2), '{"uid":"uid1","percent":"88%"}');

  // Broadcast through C reaches the page on B and one on A.
  const onA = await wsClient(t, `ws://${a.ws}/`, { bind: 'uid2' });
  await present('uid2');
  assert.equal((await send(c, { uid: 'uid2', msg: 'hello uid2', route: 'live-first' })).delivered, true);
  assert.equal(await onA.frame(1), 'hello uid2');
  await send(c, { broadcast: true, msg: 'to everyone' });
  assert.equal(await page.frame(3), 'to everyone');
  assert.equal(await onA.frame(2), 'to everyone');

  // Item 5: a resume-protocol page on C acks; live-first through A takes the live path, no push.
  const acker = await wsClient(t, `ws://${c.ws}/`, { bind: JSON.stringify({ type: 'bind', uid: 'uid3' }) });
  acker.ws.on('message', (data) => {
    const { id } = JSON.parse(data.toString()) as { id?: string };
    if (id) acker.ws.send(JSON.stringify({ type: 'ack', id }));
  });
  await present('uid3');
  const acked = await send(a, { uid: 'uid3', msg: 'ack me', route: 'live-first' });
  assert.deepEqual((acked as PublishReport & { paths?: Record<string, string> }).paths, { uid3: 'live' });
  assert.equal(hook.requests.filter((r) => r.path === '/push/uid3').length, 0, 'no push fallback for a page that acked on another node');

  // Item 6: a device registered through A is used when B publishes.
  const add = await fetch(`http://${a.http}/v1/devices`, { method: 'POST', body: JSON.stringify({ uid: 'uid4', transport: 'devs', token: 'device-4' }) });
  assert.equal(add.status, 200, await add.clone().text());
  const list = (await (await fetch(`http://${b.http}/v1/devices?uid=uid4`)).json()) as { devices: { token: string }[] };
  assert.deepEqual(list.devices.map((d) => d.token), ['device-4'], 'node B lists the device registered through node A');
  const viaB = await send(b, { uid: 'uid4', msg: 'to the device' });
  assert.deepEqual(viaB.results.filter((e) => e.transport === 'devs').map((e) => [e.target, e.status]), [['device-4', 'sent']]);
  assert.equal(hook.requests.filter((r) => r.path === '/device/device-4').length, 1, 'node B sent to the device node A registered');
});

test('cluster processes: notify serve with an unreachable Redis exits 2 naming it, without the password', { skip: SKIP_REDIS }, async (t) => {
  const redis = await startRedis(t);
  await redis.stop();
  const dir = tempDir(t, 'notify-procs-');
  const file = join(dir, 'notify.yaml');
  writeFileSync(file, `ws: {listen: "127.0.0.1:0"}\ntext: {listen: "127.0.0.1:0"}\nhttp: {listen: "127.0.0.1:0"}\nstate: {dir: ./state}\ncluster: {redis: "redis://:hunter2hunter2@127.0.0.1:${redis.port}"}\n`);
  const r = await runNotify(t, ['serve', '--config', file], HANG_MS);
  assert.equal(r.code, 2);
  assert.match(r.err, new RegExp(`cannot reach Redis at redis://127\\.0\\.0\\.1:${redis.port} \\(cluster\\.redis\\)`));
  assert.doesNotMatch(r.err, /hunter2hunter2/);
});
