import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const CLI = fileURLToPath(new URL('../../../src/cli/', import.meta.url));

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));
}

// STYLE 12: the CLI talks to the daemon over HTTP; `send --direct` goes through node/ (buildNode).
test('cli: no file under src/cli imports delivery/', () => {
  const offenders = sources(CLI).filter((f) => /from\s+'[./]*delivery\//.test(readFileSync(f, 'utf8')));
  assert.deepEqual(offenders.map((f) => relative(CLI, f)), []);
});
