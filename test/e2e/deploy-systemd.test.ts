import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { stringify } from 'yaml';
import { DEFAULTS } from '../../src/config/load.js';
import { parseDuration } from '../../src/duration.js';
import { startChild } from '../helpers/child.js';
import { HANG_MS, until } from '../helpers/clients.js';
import { tempDir } from '../helpers/daemon.js';

const run = promisify(execFile);
const UNIT = fileURLToPath(new URL('../../../contrib/notify.service', import.meta.url));
const BIN = fileURLToPath(new URL('../../../bin/notify', import.meta.url));
const ANALYZE = '/usr/bin/systemd-analyze';
// CI installs systemd (.ci/run), so there a missing systemd-analyze is a failure, not a skip.
const NO_ANALYZE = existsSync(ANALYZE) || process.env.CI ? false : `${ANALYZE} not installed (.ci/run installs the systemd package)`;

/** The unit file as systemd reads it: section -> key -> values (a key may repeat), comments and blank lines left out. */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const head = /^\[(.+)\]$/.exec(line);
    if (head) {
      current = new Map();
      sections.set(head[1] as string, current);
      continue;
    }
    const eq = line.indexOf('=');
    assert.ok(current && eq > 0, `a key=value line inside a section: ${raw}`);
    const key = line.slice(0, eq).trim();
    current.set(key, [...(current.get(key) ?? []), line.slice(eq + 1).trim()]);
  }
  return sections;
}

const unitText = () => readFileSync(UNIT, 'utf8');

/** The one value of `key` in [Service]. */
function service(key: string): string {
  const values = parseUnit(unitText()).get('Service')?.get(key);
  assert.ok(values && values.length === 1, `[Service] has one ${key}=, got ${JSON.stringify(values)}`);
  return values[0] as string;
}

/** A systemd time span ("30", "30s", "1min 30s") in ms. */
function timeSpanMs(v: string): number {
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  let ms = 0;
  for (const m of v.matchAll(/(\d+)\s*(ms|s|sec|min|m|h)\b/g)) {
    ms += Number(m[1]) * ({ ms: 1, s: 1000, sec: 1000, min: 60_000, m: 60_000, h: 3_600_000 } as Record<string, number>)[m[2] as string]!;
  }
  assert.ok(ms > 0, `a time span: ${v}`);
  return ms;
}

const EXEC_START = '/usr/bin/notify serve --config /etc/notify/notify.yaml';

test('deploy: contrib/notify.service passes systemd-analyze verify (ExecStart pointed at this checkout\'s bin/notify, which verify needs to exist)', { skip: NO_ANALYZE, timeout: 60_000 }, async (t) => {
  const text = unitText();
  assert.ok(text.includes(`ExecStart=${EXEC_START}\n`));
  // verify checks that ExecStart's program exists: the copy runs this checkout's bin/notify,
  // everything else is the committed unit byte for byte.
  const dir = tempDir(t, 'notify-unit-');
  const copy = join(dir, 'notify.service');
  writeFileSync(copy, text.replace(`ExecStart=/usr/bin/notify `, `ExecStart=${BIN} `));
  const r = await run(ANALYZE, ['verify', copy]).then(
    (o) => ({ code: 0, ...o }),
    (e: { code: number; stdout: string; stderr: string }) => e,
  );
  // Unknown keys and bad values are only warnings to verify (exit 0): none may name the unit.
  const about = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => l.includes('notify.service'));
  assert.deepEqual(about, [], 'systemd-analyze verify says nothing about the unit');
  assert.equal(r.code, 0, r.stderr);

  // The check is real: the unit as committed names a program this machine lacks, and verify says so.
  if (!existsSync('/usr/bin/notify')) {
    writeFileSync(copy, text);
    const missing = await run(ANALYZE, ['verify', copy]).then(
      () => 'accepted',
      (e: { stderr: string }) => e.stderr,
    );
    assert.match(missing, /Command \/usr\/bin\/notify is not executable/);
  }
});

test('deploy: contrib/notify.service runs notify serve as user notify, reloads with SIGHUP, stops with SIGTERM in time, restarts on failure, raises LimitNOFILE and keeps the store in its StateDirectory', () => {
  const units = parseUnit(unitText());
  assert.deepEqual([...units.keys()], ['Unit', 'Service', 'Install']);
  assert.equal(service('ExecStart'), EXEC_START);
  assert.equal(service('User'), 'notify');
  assert.equal(service('Group'), 'notify');
  assert.equal(service('ExecReload'), '/bin/kill -HUP $MAINPID');
  assert.equal(service('KillSignal'), 'SIGTERM');
  assert.equal(service('Restart'), 'on-failure');
  assert.ok(Number(service('LimitNOFILE')) >= 65536, 'room for many sessions');
  // notify's own bound on a stop (daemon.ts): shutdown.timeoutMs + shutdown.graceMs + 1 s.
  const stopMs = Number(DEFAULTS.shutdown.timeoutMs) + parseDuration(DEFAULTS.shutdown.graceMs) + 1000;
  assert.ok(timeSpanMs(service('TimeoutStopSec')) > stopMs, `TimeoutStopSec above ${stopMs} ms`);
  assert.equal(service('StateDirectory'), 'notify');
  assert.equal(service('WorkingDirectory'), '/var/lib/notify');
  for (const [key, value] of [['NoNewPrivileges', 'yes'], ['ProtectSystem', 'strict'], ['ProtectHome', 'yes'], ['PrivateTmp', 'yes']]) {
    assert.equal(service(key as string), value, `${key}=${value}`);
  }
  assert.equal(units.get('Service')?.has('MemoryDenyWriteExecute'), false, "Node's JIT needs writable executable memory");
  assert.deepEqual(units.get('Install')?.get('WantedBy'), ['multi-user.target']);
});

test("deploy: the unit's commands do what it says: ExecStart's arguments start notify serve, ExecReload's command reloads it, KillSignal stops it with exit 0 (no restart under Restart=on-failure)", { timeout: 120_000 }, async (t) => {
  const [program, ...args] = service('ExecStart').split(/\s+/);
  assert.equal(program, '/usr/bin/notify');
  assert.deepEqual(args.slice(0, 2), ['serve', '--config']);
  // The same arguments with a config of this test's (listeners on port 0, the store in a temp folder).
  const dir = tempDir(t, 'notify-unit-');
  const config = join(dir, 'notify.yaml');
  const body = { ws: { listen: '127.0.0.1:0' }, text: { listen: '127.0.0.1:0' }, http: { listen: '127.0.0.1:0' }, state: { dir: join(dir, 'state') } };
  writeFileSync(config, stringify(body));
  const child = await startChild(t, config);
  const pid = child.proc.pid as number;

  writeFileSync(config, stringify({ ...body, log: { level: 'debug' } }));
  const [kill, ...killArgs] = service('ExecReload').replace('$MAINPID', String(pid)).split(/\s+/);
  await run(kill as string, killArgs);
  await until(() => child.logs.some((l) => String(l.msg).startsWith('SIGHUP: config reloaded')), 'the reload', HANG_MS);

  process.kill(pid, service('KillSignal') as NodeJS.Signals);
  const stopped = await Promise.race([child.exited, new Promise((resolve) => setTimeout(() => resolve('not stopped'), timeSpanMs(service('TimeoutStopSec'))))]);
  assert.equal(stopped, 0, 'a stop by SIGTERM exits 0, so Restart=on-failure does not restart it');
  assert.ok(child.logs.some((l) => l.msg === 'stopped'));
});
