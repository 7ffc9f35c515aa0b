import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { stringify } from 'yaml';
import { EXIT } from '../../src/cli/main.js';
import { startChild } from '../helpers/child.js';
import { cli } from '../helpers/cli.js';
import { webpushWorld } from '../helpers/webpush.js';

// The whole daemon: `notify serve` as a child process with a webpush transport whose private key
// comes from the environment, subscriptions registered with `notify devices add`, messages sent
// with `notify send`, and a restart after the push service said a subscription is gone.

test('e2e webpush: notify serve + notify devices add + notify send reach the push service, which decrypts; a 410 stays retired after a restart; the private key is never printed', async (t) => {
  const w = await webpushWorld(t, {
    respond: (req) => (req.id === gone ? { status: 410, body: 'Gone' } : undefined),
  });
  let gone = '';
  const keep = w.fake.subscribe();
  const dead = w.fake.subscribe();
  gone = dead.id;
  const privateKey = w.vapid.privateKey;
  const webpush = (w.raw.transports as { webpush: Record<string, unknown> }).webpush;
  webpush.vapid = { subject: 'mailto:ops@example.com', publicKey: w.vapid.publicKey, privateKey: '${NOTIFY_VAPID_PRIVATE_KEY}' };
  w.raw.log = { level: 'debug' };
  const file = join(w.dir, 'notify.yaml');
  writeFileSync(file, stringify(w.raw));
  const env = { NOTIFY_VAPID_PRIVATE_KEY: privateKey };

  const first = await startChild(t, file, undefined, env);
  const server = `http://${first.http}`;
  for (const s of [keep, dead]) {
    const add = await cli(['devices', 'add', 'uid1', JSON.stringify(s.subscription), '--server', server]);
    assert.equal(add.code, EXIT.delivered, add.err);
  }
  const sent = await cli(['send', '--server', server, '--uid', 'uid1', '--title', 'Build', '--msg', 'green', '--json']);
  assert.equal(sent.code, EXIT.delivered, sent.err);
  const report = JSON.parse(sent.out) as { id: string; results: { target: string; status: string; reason?: string }[] };
  assert.deepEqual(report.results.map((r) => [r.target, r.status]).sort(), [[keep.target, 'sent'], [dead.target, 'rejected']].sort());
  assert.match(report.results.find((r) => r.target === dead.target)?.reason ?? '', /^410 Gone/);
  assert.deepEqual(JSON.parse(w.fake.requests.find((r) => r.id === keep.id)?.plaintext ?? '{}'), { id: report.id, title: 'Build', body: 'green' });

  const status = await cli(['status', '--server', server, '--json']);
  assert.equal(status.code, 0, status.err);
  assert.ok(!status.out.includes(privateKey), 'not in notify status');
  first.proc.kill('SIGTERM');
  assert.equal(await first.exited, 0);
  assert.ok(first.logs.some((l) => l.msg === 'device token retired; it will not be used again'));
  assert.ok(!JSON.stringify(first.logs).includes(privateKey), 'not in the daemon log');

  // The next process: the retired subscription stays out; the other is still there.
  const second = await startChild(t, file, undefined, env);
  const list = await cli(['devices', 'list', '--server', `http://${second.http}`, '--json']);
  assert.deepEqual((JSON.parse(list.out) as { token: string }[]).map((e) => e.token), [keep.target]);
  const again = await cli(['send', '--server', `http://${second.http}`, '--uid', 'uid1', '--msg', 'again']);
  assert.equal(again.out, 'delivered to 1 target (webpush: 1)\n');
  assert.equal(w.fake.requests.filter((r) => r.id === dead.id).length, 1, 'the dead subscription was tried once, ever');
  second.proc.kill('SIGTERM');
  assert.equal(await second.exited, 0);
  assert.ok(!JSON.stringify(second.logs).includes(privateKey));
});
