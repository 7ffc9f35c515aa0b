import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { buildNode } from '../../src/node/node.js';
import { silentLogger } from '../../src/obs/log.js';
import { streamOf } from '../../src/store/stream.js';
import { tempDir, testConfig } from '../helpers/daemon.js';
import { startFakeHttp } from '../helpers/fake-http.js';

// buildNode, the composition root, without a daemon around it (as `notify send --direct` uses it).

test('buildNode live:false: no WebSocket transport; start() seeds the YAML devices; a publish reaches them through the push transport and is stored', async (t) => {
  const fake = await startFakeHttp(t);
  const config = testConfig({
    transports: { hook: { type: 'http', url: `${fake.url}/p/{{token}}`, perDevice: true } },
    devices: { alice: { hook: ['tok-1'] } },
  }, t);
  const node = await buildNode(config, { live: false, log: silentLogger, name: 'n1' });
  t.after(() => node.stop());
  assert.equal(node.websocket, undefined);
  assert.deepEqual(node.transports.map((x) => x.name), ['hook']);
  assert.deepEqual(node.dispatcher.transports.map((x) => x.name), ['hook']);
  assert.deepEqual(await node.backends.devices.targets('hook', 'alice'), [], 'nothing seeded before start');

  await node.start();
  assert.deepEqual(await node.backends.devices.targets('hook', 'alice'), ['tok-1']);
  const report = await node.publisher.publish({ uids: ['alice'] }, { frame: 'hi', json: false, msg: 'hi' });
  assert.equal(report.sent, 1, JSON.stringify(report));
  assert.deepEqual(fake.requests.map((r) => r.path), ['/p/tok-1']);
  assert.equal(report.stored, true);
  const page = await node.backends.streams?.history(streamOf('alice'), { limit: 10 });
  assert.deepEqual(page?.publications.map((p) => p.id), [report.id]);
});

test('buildNode: stop() closes the store (idempotently): publishing rejects with NOTIFY_ERR_STORE, the database is closed', async (t) => {
  const node = await buildNode(testConfig({}, t), { live: false, log: silentLogger });
  await node.start();
  const stopping = node.stop();
  assert.equal(node.stop(), stopping, 'stop() twice is the same stop');
  await stopping;
  const streams = node.backends.streams;
  assert.ok(streams);
  await assert.rejects(streams.publish([streamOf('alice')], { id: 'late', frame: 'x', json: false }), { code: 'NOTIFY_ERR_STORE' });
  assert.throws(() => node.backends.devices.register('hook', 'alice', 'tok'), /not open/);
  await assert.rejects(node.publisher.publish({ uids: ['alice'] }, { frame: 'x', json: false }), { code: 'NOTIFY_ERR_STORE' }, 'a publish after stop is refused, never ok');
});

test('buildNode: what one node stored is there for the next on the same state dir: a retired YAML token stays out, a registration stays in', async (t) => {
  const fake = await startFakeHttp(t);
  const dir = join(tempDir(t), 'state');
  const config = () => testConfig({
    transports: { hook: { type: 'http', url: `${fake.url}/p/{{token}}`, perDevice: true } },
    devices: { alice: { hook: ['tok-1', 'tok-2'] } },
    state: { dir },
  }, t);
  const one = await buildNode(config(), { live: false, log: silentLogger });
  await one.start();
  await one.backends.devices.retire('hook', 'tok-1', '410 Unregistered');
  await one.backends.devices.register('hook', 'bob', 'tok-b');
  await one.stop();

  const two = await buildNode(config(), { live: false, log: silentLogger });
  t.after(() => two.stop());
  await two.start();
  assert.deepEqual(await two.backends.devices.targets('hook', 'alice'), ['tok-2']);
  assert.deepEqual(await two.backends.devices.targets('hook', 'bob'), ['tok-b']);
  const report = await two.publisher.publish({ uids: ['alice', 'bob'] }, { frame: 'hi', json: false, msg: 'hi' });
  assert.equal(report.sent, 2);
  assert.deepEqual(fake.requests.map((r) => r.path).sort(), ['/p/tok-2', '/p/tok-b']);
});
