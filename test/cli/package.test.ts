import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { NOT_SHIPPED, ROOT, npmPack } from '../helpers/pack.js';

/**
 * The npm package (issue 14, item 7): its name is not the unrelated `notify` package, its
 * command is `notify`, and it ships the built code and nothing of the tests. The install from
 * the tarball and a run of the installed command are in test/load/package.test.ts (it builds
 * better-sqlite3, which takes minutes on a small machine).
 */
test('package: named notify-push-daemon, command notify, prepare builds, files hold dist/src and no tests', async () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
    name: string;
    bin: Record<string, string>;
    files: string[];
    scripts: Record<string, string>;
  };
  assert.equal(pkg.name, 'notify-push-daemon');
  assert.deepEqual(pkg.bin, { notify: 'bin/notify' });
  assert.equal(pkg.scripts.prepare, 'npm run build');
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { name: string; packages: Record<string, { name?: string }> };
  assert.equal(lock.name, pkg.name);
  assert.equal(lock.packages['']?.name, pkg.name);

  const packed = await npmPack();
  assert.equal(packed.name, 'notify-push-daemon');
  for (const f of ['bin/notify', 'dist/src/cli/main.js', 'dist/src/version.js', 'dist/src/live/assets/demo-page.js', 'package.json', 'README.md', 'config.example.yaml']) {
    assert.ok(packed.files.includes(f), `ships ${f}`);
  }
  const stray = packed.files.filter((f) => NOT_SHIPPED.test(f) || f.endsWith('.ts') && !f.endsWith('.d.ts'));
  assert.deepEqual(stray, [], 'no tests, benchmark, sources or CI files');
});
