import assert from 'node:assert/strict';
import { test } from 'node:test';
import { redact, redactUrl } from '../../src/config/redact.js';
import { parseRedisUrl } from '../../src/store/redis-url.js';
import { cli } from '../helpers/cli.js';
import { writeTemp } from '../helpers/daemon.js';

for (const name of ['NOTIFY_TOKEN', 'NOTIFY_SERVER', 'NOTIFY_CONFIG']) delete process.env[name];

test('redact: a URL password holding "@" is redacted whole, up to the last "@" before the host (as the Redis URL parser reads it)', () => {
  const url = 'redis://:hunter@2hunter2@127.0.0.1:6390/2';
  // The parser takes everything up to the last "@" as the password.
  assert.equal(parseRedisUrl(url).options.password, 'hunter@2hunter2');
  assert.equal(redactUrl(url), 'redis://:[redacted]@127.0.0.1:6390/2');
  assert.equal(redactUrl('redis://user:p@ss@w@rd@host:1/0'), 'redis://user:[redacted]@host:1/0');
  assert.deepEqual(redact({ redis: url }), { redis: 'redis://:[redacted]@127.0.0.1:6390/2' });
  // An "@" further on (after the host, in a path or a query) is not part of the password.
  assert.equal(redactUrl('http://u:pw@host/a@b'), 'http://u:[redacted]@host/a@b');
});

test('redact: config check --print of a Redis password with "@" shows none of it', async (t) => {
  const file = writeTemp(t, 'at.yaml', 'cluster:\n  redis: "redis://:hunter@2hunter2@127.0.0.1:6390"\n');
  const printed = await cli(['config', 'check', '--config', file, '--print']);
  assert.equal(printed.code, 0, printed.err);
  assert.ok(!printed.out.includes('hunter'), printed.out);
  assert.match(printed.out, /redis: redis:\/\/:\[redacted\]@127\.0\.0\.1:6390\n/);
});

test('redact: a Redis URL whose password holds an unencoded "/" is refused without quoting any of it', async (t) => {
  assert.throws(() => parseRedisUrl('redis://:hunter/2hunter2@127.0.0.1:6390'), (err: Error) => {
    assert.ok(!err.message.includes('hunter'), err.message);
    assert.match(err.message, /percent-encode/);
    return true;
  });
  const file = writeTemp(t, 'slash.yaml', 'cluster:\n  redis: "redis://:hunter/2hunter2@127.0.0.1:6390"\n');
  const r = await cli(['config', 'check', '--config', file]);
  assert.equal(r.code, 2);
  assert.ok(!r.err.includes('hunter'), r.err);
  assert.match(r.err, /cluster\.redis: .*percent-encode/);
});
