import assert from 'node:assert/strict';
import { test } from 'node:test';
import { silentLogger } from '../../src/obs/log.js';
import { openRedis, parseRedisUrl } from '../../src/store/redis.js';
import { SKIP_REDIS, startRedis } from '../helpers/redis.js';

test('redis URL: the three forms, with their defaults; what is shown never has the password', () => {
  const plain = parseRedisUrl('redis://cache.internal');
  assert.equal(plain.display, 'redis://cache.internal:6379');
  assert.deepEqual({ host: plain.options.host, port: plain.options.port, db: plain.options.db }, { host: 'cache.internal', port: 6379, db: 0 });
  assert.equal(plain.sentinel, false);

  const full = parseRedisUrl('redis://notify:s3cr%40t@10.0.0.5:6380/2');
  assert.equal(full.display, 'redis://10.0.0.5:6380/2');
  assert.deepEqual(
    { host: full.options.host, port: full.options.port, db: full.options.db, username: full.options.username, password: full.options.password },
    { host: '10.0.0.5', port: 6380, db: 2, username: 'notify', password: 's3cr@t' },
  );

  const onlyPassword = parseRedisUrl('redis://:hunter22@127.0.0.1:7000');
  assert.equal(onlyPassword.options.username, undefined);
  assert.equal(onlyPassword.options.password, 'hunter22');
  assert.ok(!onlyPassword.display.includes('hunter22'));

  const tls = parseRedisUrl('rediss://redis.example.com:6390');
  assert.deepEqual(tls.options.tls, { servername: 'redis.example.com' });
  assert.equal(tls.display, 'rediss://redis.example.com:6390');

  const v6 = parseRedisUrl('redis://[::1]:6379');
  assert.equal(v6.options.host, '::1');
  assert.equal(v6.display, 'redis://[::1]:6379');

  const s = parseRedisUrl('redis+sentinel://:pw@s1:26379,s2,10.0.0.9:26380/mymaster/3');
  assert.equal(s.sentinel, true);
  assert.deepEqual(s.options.sentinels, [
    { host: 's1', port: 26379 },
    { host: 's2', port: 26379 },
    { host: '10.0.0.9', port: 26380 },
  ]);
  assert.equal(s.options.name, 'mymaster');
  assert.equal(s.options.db, 3);
  assert.equal(s.options.password, 'pw');
  assert.equal(s.options.failoverDetector, true, 'a Sentinel failover is noticed from +switch-master');
  assert.equal(s.display, 'redis+sentinel://s1:26379,s2:26379,10.0.0.9:26380/mymaster/3');
});

test('redis URL: each mistake gets its own message, and the password is never in it', () => {
  const cases: [string, RegExp][] = [
    ['http://user:topsecret@host:6379', /expected redis:\/\/\[user:pass@\]host:port\[\/db\].*got "http:\/\/user:\[redacted\]@host:6379"/],
    ['localhost:6379', /expected redis:\/\//],
    ['redis://', /"" is not a host\[:port\]/],
    ['redis://host:0', /port 0 is out of range/],
    ['redis://host:99999', /port 99999 is out of range/],
    ['redis://host:port', /"host:port" is not a host\[:port\]/],
    ['redis://a:topsecret@h1,h2', /one host in a redis:\/\/ URL; several are for redis\+sentinel/],
    ['redis://host/zero', /the database after the port must be a number .*"zero"/],
    ['redis://host/1/2', /unexpected "\/2"/],
    ['redis://host?db=1', /query strings and fragments are not supported/],
    ['redis+sentinel://s1:26379', /names the primary after the hosts/],
    ['redis+sentinel://s1:26379/', /names the primary after the hosts/],
    ['redis+sentinel://s1/master/x', /the database after the primary name must be a number/],
    ['redis://:%E0%A4%A@host', /password in the Redis URL is not valid percent-encoding/],
  ];
  for (const [url, expected] of cases) {
    assert.throws(() => parseRedisUrl(url), (err: Error) => {
      assert.match(err.message, expected, url);
      assert.ok(!err.message.includes('topsecret'), `no password in: ${err.message}`);
      return true;
    });
  }
});

test('openRedis: connects to a real redis-server and checks it', { skip: SKIP_REDIS }, async (t) => {
  const redis = await startRedis(t);
  const client = await openRedis(parseRedisUrl(redis.url), { log: silentLogger });
  t.after(() => client.disconnect());
  assert.equal(await client.ping(), 'PONG');
  assert.match(redis.cli('CLIENT', 'LIST'), /name=notify-commands/);
});

test('openRedis: an unreachable Redis fails the start with what to fix, promptly', { skip: SKIP_REDIS }, async (t) => {
  const redis = await startRedis(t);
  await redis.stop();
  await assert.rejects(openRedis(parseRedisUrl(`redis://user:pw1234@127.0.0.1:${redis.port}`), { log: silentLogger, startTimeoutMs: 60_000 }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'NOTIFY_ERR_CONFIG');
    assert.match(err.message, new RegExp(`^cannot reach Redis at redis://127\\.0\\.0\\.1:${redis.port} \\(cluster\\.redis\\): .*ECONNREFUSED`));
    assert.ok(!err.message.includes('pw1234'));
    return true;
  });
});

test('openRedis: a Redis whose maxmemory-policy evicts keys is refused at start, naming the setting', { skip: SKIP_REDIS }, async (t) => {
  for (const policy of ['allkeys-lru', 'volatile-ttl']) {
    const redis = await startRedis(t, ['--maxmemory-policy', policy]);
    await assert.rejects(openRedis(parseRedisUrl(redis.url), { log: silentLogger }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'NOTIFY_ERR_CONFIG');
      assert.match(err.message, new RegExp(`has maxmemory-policy ${policy}, which evicts keys notify needs .*set maxmemory-policy noeviction`));
      return true;
    });
    // The refused connection is closed (the server may take a moment to see it go).
    const deadline = Date.now() + 10_000;
    while (/name=notify-commands/.test(redis.cli('CLIENT', 'LIST'))) {
      if (Date.now() > deadline) assert.fail('the refused connection is still open');
      await new Promise((r) => setTimeout(r, 50));
    }
  }
});

test('openRedis: while Redis is down a command fails at once (nothing queued in memory); when it is back, the same client works again', { skip: SKIP_REDIS }, async (t) => {
  const redis = await startRedis(t);
  const warnings: string[] = [];
  const log = { ...silentLogger, warn: (msg: string) => void warnings.push(msg) };
  const client = await openRedis(parseRedisUrl(redis.url), { log });
  t.after(() => client.disconnect());
  await client.set('k', 'v');
  await redis.stop();
  // Several commands while it is away: each is refused, none waits for Redis to come back.
  const refused = await Promise.allSettled(Array.from({ length: 1000 }, () => client.get('k')));
  assert.equal(refused.filter((r) => r.status === 'rejected').length, 1000, 'every command while it is away is refused');
  assert.equal((client as unknown as { offlineQueue: { length: number } }).offlineQueue.length, 0, 'no command waits in ioredis\'s offline queue');
  assert.equal(warnings.filter((w) => w.startsWith('redis connection lost')).length, 1, 'one warning per outage');
  await redis.restart();
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      assert.equal(await client.get('k'), null, 'back, empty: this server keeps nothing across a restart');
      break;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
});
