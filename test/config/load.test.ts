import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { isMap, isScalar, parseDocument } from 'yaml';
import { type Config, ConfigError, DEFAULTS, defaultConfig, loadConfig, parseConfig, redact } from '../../src/config/load.js';
import { configError } from '../helpers/config.js';
import { HANG_MS } from '../helpers/clients.js';
import { runNotify } from '../helpers/cli.js';
import { tempDir } from '../helpers/daemon.js';

const EXAMPLE = new URL('../../../config.example.yaml', import.meta.url);

/** The single problem of `text`, checked to start with `source:line:col: `. */
function oneProblem(text: string, line: number, col: number, source = 'cfg.yaml'): string {
  const err = configError(text, source);
  assert.equal(err.problems.length, 1, `one problem expected, got ${JSON.stringify(err.problems)}`);
  const p = err.problems[0] as string;
  assert.ok(p.startsWith(`${source}:${line}:${col}: `), `expected ${source}:${line}:${col}, got ${JSON.stringify(p)}`);
  assert.equal(err.code, 'NOTIFY_ERR_CONFIG');
  assert.equal(err.message, p, 'with one problem the message is that problem');
  return p;
}

test('config: the defaults', () => {
  const c = defaultConfig();
  assert.deepEqual(c, {
    ws: {
      listen: '127.0.0.1:1234',
      maxPayloadBytes: 65536,
      maxBufferedBytes: 1048576,
      heartbeatIntervalMs: 30000,
      auth: 'none',
      secret: null,
      bindTimeout: 10_000,
      behindProxy: false,
      tls: null,
    },
    text: { listen: '127.0.0.1:5678', maxLineBytes: 65536, maxPipelinedLines: 1024, allow: [] },
    http: { listen: '127.0.0.1:5680', token: null, maxBodyBytes: 1048576, insecure: false, behindProxy: false, tls: null },
    limits: { connections: 100_000, connectionsPerIp: 1000, connectRatePerIp: 100, uidsPerMessage: 1000, sessionsPerUid: 100, silentTimeout: 10_000 },
    dispatch: { deliverTimeoutMs: 5000, route: 'all', ackTimeout: 2000 },
    history: { enabled: true, size: 100, ttl: 86_400_000, maxMessages: 1_000_000, maxBytes: 1024 ** 3, dedupeWindow: 3_600_000 },
    shutdown: { timeoutMs: 10000, graceMs: 5000 },
    cluster: { redis: null, node: null, retryLease: 60_000, prefix: 'notify' },
    state: { dir: resolve('notify-data') },
    log: { level: 'info' },
    transports: {},
    devices: {},
  });
  assert.deepEqual(parseConfig(''), c, 'an empty file is the defaults');
  assert.deepEqual(parseConfig('# only a comment\n'), c, 'a file of comments is the defaults');
});

test('config: a file sets what it names and keeps the defaults for the rest', () => {
  const c = parseConfig('ws:\n  listen: 0.0.0.0:9000\nhttp:\n  listen: 8080\n  token: abcdefghijklmnopqrstuvwxyz\nlog: {level: debug}\n');
  assert.equal(c.ws.listen, '0.0.0.0:9000');
  assert.equal(c.ws.maxPayloadBytes, 65536);
  assert.equal(c.http.listen, '8080', 'a bare port is accepted');
  assert.equal(c.http.token, 'abcdefghijklmnopqrstuvwxyz');
  assert.equal(c.http.maxBodyBytes, 1048576);
  assert.equal(c.text.listen, '127.0.0.1:5678');
  assert.equal(c.log.level, 'debug');
  assert.equal(parseConfig('ws: {listen: "[::1]:0"}\n').ws.listen, '[::1]:0');
});

test('config: config.example.yaml parses to exactly the defaults', () => {
  const example = loadConfig(fileURLToPath(EXAMPLE));
  assert.deepEqual(example, defaultConfig());
});

test('config: config.example.yaml documents every key of DEFAULTS, with its default value', () => {
  const doc = parseDocument(readFileSync(EXAMPLE, 'utf8'));
  assert.ok(isMap(doc.contents));
  const missing: string[] = [];
  const wrong: string[] = [];
  for (const [section, keys] of Object.entries(DEFAULTS)) {
    for (const [key, value] of Object.entries(keys as Record<string, unknown>)) {
      const node = doc.getIn([section, key], true);
      if (node === undefined || !isScalar(node)) {
        // A key with a null value is still written out ("token: null").
        if (!doc.hasIn([section, key])) missing.push(`${section}.${key}`);
        continue;
      }
      if (node.value !== value) wrong.push(`${section}.${key}: ${JSON.stringify(node.value)} != ${JSON.stringify(value)}`);
    }
  }
  for (const top of ['transports', 'devices']) if (!doc.has(top)) missing.push(top);
  assert.deepEqual(missing, [], 'keys missing from config.example.yaml');
  assert.deepEqual(wrong, [], 'keys whose example value is not the default');
});

test('config: an unknown key is an error naming it, with line:column, at the top level and nested', () => {
  const top = oneProblem('ws:\n  listen: 1234\nwss:\n  listen: 1\n', 3, 1);
  assert.match(top, /unknown key "wss"/);
  assert.match(top, /expected one of: .*\bws\b/, 'lists the known keys');

  const nested = oneProblem('ws:\n  listen: 1234\n  listn: 127.0.0.1:1\n', 3, 3);
  assert.match(nested, /ws\.listn/);
  assert.match(nested, /unknown key "listn"/);
  assert.match(nested, /listen/, 'suggests the known keys');
});

test('config: a value of the wrong type is an error naming the key and its line:column', () => {
  assert.match(oneProblem('ws:\n  maxPayloadBytes: "big"\n', 2, 20), /ws\.maxPayloadBytes must be an integer/);
  assert.match(oneProblem('ws:\n  maxPayloadBytes: 1.5\n', 2, 20), /ws\.maxPayloadBytes must be an integer/);
  assert.match(oneProblem('http:\n  token: [a, b]\n', 2, 10), /http\.token must be a string/);
  assert.match(oneProblem('log:\n  level: loud\n', 2, 10), /log\.level must be one of debug, info, warn, error, silent/);
  assert.match(oneProblem('ws: 5\n', 1, 5), /\bws must be a mapping/);
  assert.match(oneProblem('- a\n- b\n', 1, 1), /must be a mapping/);
  assert.match(oneProblem('devices:\n  uid1: [a]\n', 2, 9), /devices\.uid1 must be a mapping/);
});

test('config: integers out of range are errors naming the key, the range and the line:column', () => {
  assert.match(oneProblem('text:\n  maxPipelinedLines: 0\n', 2, 22), /text\.maxPipelinedLines must be at least 1, got 0/);
  assert.match(oneProblem('http:\n  maxBodyBytes: 1023\n', 2, 17), /http\.maxBodyBytes must be between 1024 and \d+, got 1023/);
  assert.match(oneProblem('http:\n  maxBodyBytes: 999999999999\n', 2, 17), /http\.maxBodyBytes must be between/);
  assert.match(oneProblem('shutdown:\n  timeoutMs: -1\n', 2, 14), /shutdown\.timeoutMs must be at least 0/);
  assert.equal(parseConfig('shutdown:\n  timeoutMs: 0\nhttp:\n  maxBodyBytes: 1024\n').http.maxBodyBytes, 1024, 'the bounds themselves are fine');
});

test('config: a bad listen address is an error naming the key and its line:column', () => {
  assert.match(oneProblem('ws:\n  listen: "host:99999"\n', 2, 11), /ws\.listen .*99999/);
  assert.match(oneProblem('http:\n  listen: nonsense\n', 2, 11), /http\.listen must be "host:port" or a port number, got "nonsense"/);
  assert.match(oneProblem('text:\n  listen: "127.0.0.1:"\n', 2, 11), /text\.listen/);
  assert.match(oneProblem('text:\n  listen: 70000\n', 2, 11), /text\.listen .*70000/);
});

test('config: a duplicate key is an error naming the key and its line:column', () => {
  const top = configError('ws:\n  listen: 1\nws:\n  listen: 2\n', 'cfg.yaml');
  assert.ok(top.problems.some((p) => p.startsWith('cfg.yaml:3:1: ')), JSON.stringify(top.problems));
  assert.ok(top.problems.some((p) => /\bws\b/.test(p.replace(/^cfg\.yaml:\d+:\d+: /, ''))), `the duplicate key "ws" is named: ${JSON.stringify(top.problems)}`);

  const nested = configError('ws:\n  listen: 1\n  listen: 2\n', 'cfg.yaml');
  assert.ok(nested.problems.some((p) => p.startsWith('cfg.yaml:3:3: ')), JSON.stringify(nested.problems));
  assert.ok(nested.problems.some((p) => /listen/.test(p)), `the duplicate key "listen" is named: ${JSON.stringify(nested.problems)}`);
});

test('config: a YAML syntax error is reported with its line:column', () => {
  const err = configError('ws:\n  listen: 1234\ntext:\n  listen: [1, 2\n', 'cfg.yaml');
  assert.ok(err.problems.length >= 1);
  for (const p of err.problems) assert.match(p, /^cfg\.yaml:\d+:\d+: \S/, p);
  const first = /^cfg\.yaml:(\d+):/.exec(err.problems[0] as string);
  assert.ok(first && Number(first[1]) >= 4, `points at or after the unclosed list: ${err.problems[0]}`);

  const quote = configError('ws:\n  listen: "127.0.0.1:1234\n', 'cfg.yaml');
  assert.match(quote.problems[0] as string, /^cfg\.yaml:\d+:\d+: .*quote/i);
});

test('config: an unknown transport type under transports is an error naming it and its line:column', () => {
  const p = oneProblem('transports:\n  ios:\n    type: apnz\n', 3, 11);
  assert.match(p, /transports\.ios\.type: unknown transport type "apnz" \(known: apns/);
  const byName = oneProblem('transports:\n  hms: {}\n', 2, 8);
  assert.match(byName, /transports\.hms\.type: unknown transport type "hms"/, 'the type defaults to the name');
  assert.match(oneProblem('transports:\n  fcm: {}\n', 2, 8), /transports\.fcm\.serviceAccount is required/, 'a known type by its name');
  const reserved = configError('transports:\n  websocket: {type: websocket}\n');
  assert.ok(reserved.problems.some((q) => /^cfg\.yaml:2:3: transports\.websocket: the name "websocket" is taken/.test(q)), JSON.stringify(reserved.problems));
});

test('config: devices naming a transport that is not configured is an error with its line:column', () => {
  const p = oneProblem('devices:\n  uid1:\n    apns: [abc123]\n', 3, 5);
  assert.match(p, /devices\.uid1\.apns: no transport named "apns"/);
});

test('config: http.token shorter than 16 characters is refused', () => {
  assert.match(oneProblem('http:\n  token: short\n', 2, 10), /http\.token must be at least 16 characters/);
  assert.equal(parseConfig('http:\n  token: "0123456789abcdef"\n').http.token, '0123456789abcdef', '16 is enough');
  assert.equal(parseConfig('http:\n  token: null\n').http.token, null);
});

test('config: a problem with a secret names the key and what is wrong, never the value', () => {
  // Unquoted digits are YAML numbers: a real secret written that way is "a number", and must not be echoed.
  const cases: [string, string, RegExp][] = [
    ['ws:\n  secret: 271828182845904\n', '271828182845904', /ws\.secret must be a string, got a number/],
    ['http:\n  token: 314159265358979\n', '314159265358979', /http\.token must be a string, got a number/],
    ['http:\n  token: sh0rt-Zq9x\n', 'sh0rt-Zq9x', /http\.token must be at least 16 characters/],
    ['transports:\n  jp:\n    type: jpush\n    appKey: abc\n    masterSecret: 161803398874989\n', '161803398874989', /transports\.jp\.masterSecret must be a string, got a number/],
    [
      'transports:\n  hook:\n    type: http\n    url: "https://example.test/x"\n    auth:\n      basic: {username: u, password: 141421356237309}\n',
      '141421356237309',
      /transports\.hook\.auth\.basic\.password must be a string, got a number/,
    ],
    ['transports:\n  hook:\n    type: http\n    url: "https://example.test/x"\n    headers:\n      Authorization: 173205080756887\n', '173205080756887', /headers\.Authorization must be a string, got a number/],
    ['transports:\n  ios:\n    type: apns\n    topic: t\n    passphrase: 223606797749978\n', '223606797749978', /transports\.ios\.passphrase must be a string, got a number/],
  ];
  for (const [yaml, value, expected] of cases) {
    const err = configError(yaml);
    const all = [err.message, ...err.problems].join('\n');
    assert.ok(err.problems.some((p) => expected.test(p)), `${expected} in ${JSON.stringify(err.problems)}`);
    assert.ok(!all.includes(value), `the value of the secret is not printed: ${all}`);
  }
});

test('config: every problem is listed, each with its own line:column', () => {
  const err = configError('ws:\n  listn: 1\ntext:\n  maxLineBytes: 1\nlog:\n  level: loud\nhttp:\n  listen: nonsense\n', 'multi.yaml');
  assert.equal(err.problems.length, 4, JSON.stringify(err.problems));
  const expected = [/^multi\.yaml:2:3: .*ws\.listn/, /^multi\.yaml:4:17: .*text\.maxLineBytes/, /^multi\.yaml:6:10: .*log\.level/, /^multi\.yaml:8:11: .*http\.listen/];
  for (const re of expected) assert.ok(err.problems.some((p) => re.test(p)), `${re} in ${JSON.stringify(err.problems)}`);
  assert.equal(err.message, `${err.problems[0]} (and 3 more problems)`);
});

test('config: loadConfig reads a file and names it in errors', (t) => {
  const dir = tempDir(t);
  const good = join(dir, 'good.yaml');
  writeFileSync(good, 'ws:\n  listen: 127.0.0.1:0\n');
  assert.equal(loadConfig(good).ws.listen, '127.0.0.1:0');

  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, '\nhttp:\n  listn: 1\n');
  assert.throws(
    () => loadConfig(bad),
    (err: unknown) => err instanceof ConfigError && (err.problems[0] ?? '').startsWith(`${bad}:3:3: `) && /http\.listn/.test(err.message),
  );
});

test('config: loadConfig on a missing file says no such file', (t) => {
  const missing = join(tempDir(t), 'nope.yaml');
  assert.throws(
    () => loadConfig(missing),
    (err: unknown) => err instanceof ConfigError && err.message.includes(missing) && /no such file/.test(err.message),
  );
});

test('config: a config path that is a folder (NOTIFY_CONFIG=/etc/notify) says so, in words', async (t) => {
  const dir = tempDir(t);
  assert.throws(() => loadConfig(dir), (err: unknown) => err instanceof ConfigError && err.message === `cannot read config file ${dir}: it is a folder; name the YAML file in it`);
  const r = await runNotify(t, ['status'], HANG_MS, { env: { NOTIFY_CONFIG: dir } });
  assert.equal(r.code, 2);
  assert.equal(r.err, `notify: cannot read config file ${dir}: it is a folder; name the YAML file in it\n`);
});

test('config: redact() hides http.token and leaves the rest', () => {
  const token = 'supersecret-token-123456';
  const c = parseConfig(`http:\n  token: ${token}\n`);
  const r = redact(c);
  assert.equal(r.http.token, '[redacted]');
  assert.ok(!JSON.stringify(r).includes(token));
  assert.equal(r.http.listen, c.http.listen);
  assert.deepEqual(r.ws, c.ws);
  assert.equal(c.http.token, token, 'the original is untouched');
  assert.equal(redact(defaultConfig()).http.token, null, 'no token: nothing to hide');
});

test('config: the result is deeply frozen', () => {
  const c: Config = parseConfig('devices: {}\n');
  assert.ok(Object.isFrozen(c));
  assert.ok(Object.isFrozen(c.ws));
  assert.ok(Object.isFrozen(c.http));
  assert.ok(Object.isFrozen(c.transports));
  assert.ok(Object.isFrozen(defaultConfig().log));
  assert.throws(() => {
    (c.ws as { listen: string }).listen = '0.0.0.0:1';
  }, TypeError);
  assert.throws(() => {
    (c as unknown as Record<string, unknown>).extra = 1;
  }, TypeError);
  assert.equal(c.ws.listen, '127.0.0.1:1234');
  assert.notEqual(defaultConfig(), defaultConfig(), 'each call gives its own copy');
});

test('config: history.maxBytes is a byte size: binary and decimal units or bytes; a bad or too small one is refused with its line:column', () => {
  assert.equal(parseConfig('history:\n  maxBytes: 512MiB\n').history.maxBytes, 512 * 1024 * 1024);
  assert.equal(parseConfig('history:\n  maxBytes: 2 GB\n').history.maxBytes, 2_000_000_000);
  assert.equal(parseConfig('history:\n  maxBytes: 1.5gib\n').history.maxBytes, 1.5 * 1024 ** 3);
  assert.equal(parseConfig('history:\n  maxBytes: 10485760\n').history.maxBytes, 10 * 1024 * 1024);
  assert.match(oneProblem('history:\n  maxBytes: lots\n', 2, 13), /history\.maxBytes must be a byte size such as "1GiB"/);
  assert.match(oneProblem('history:\n  maxBytes: 1KiB\n', 2, 13), /history\.maxBytes must be at least 1048576 bytes/);
});
