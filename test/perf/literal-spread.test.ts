import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

// An object literal that starts with a spread and has anything after it (`{ ...a, b }`,
// `{ ...a, ...b }`) sends V8 in Node 20 down a slow path: each object gets a hidden class of its
// own, and those objects outlive the young generation. On the publish path (`{ ...body, id }`
// for every message) it cost a fifth of the CPU per push and tens of MB of heap growth per
// 100,000 pushes (see the README's benchmark section). The source keeps to forms V8 handles
// well: `{ a, ...b }` (properties first) or `Object.assign({}, a, { b })`.

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

function* sources(dir: string): Generator<string> {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) yield* sources(p);
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) yield p;
  }
}

/** `file:line: text` of every object literal in `file` that starts with a spread and goes on. */
export function spreadFirst(file: string, text = readFileSync(file, 'utf8')): string[] {
  const sf = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isObjectLiteralExpression(node) && node.properties.length > 1 && ts.isSpreadAssignment(node.properties[0] as ts.Node)) {
      const { line } = sf.getLineAndCharacterOfPosition(node.getStart(sf));
      found.push(`${relative(ROOT, file)}:${line + 1}: ${node.getText(sf).replace(/\s+/g, ' ').slice(0, 80)}`);
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return found;
}

test('the checker finds spread-first literals and passes the forms V8 handles well', () => {
  const bad = spreadFirst('x.ts', 'const a = { ...b, c };\nconst d = { ...e, ...f };\nconst g = f({ ...h, i: 1 });');
  assert.equal(bad.length, 3);
  assert.deepEqual(spreadFirst('y.ts', 'const a = { c, ...b };\nconst d = { ...e };\nconst g = Object.assign({}, h, { i: 1 });\nconst k = { t: 1, ...m, n: 2 };'), []);
});

/**
 * The code a message runs through: the rule holds there. src/cli, src/node, src/net and
 * src/console run per start, reload, CLI invocation or console page, not per message.
 */
const MESSAGE_PATH = ['delivery', 'ingress', 'live', 'store', 'push', 'obs'];

test('no object literal on the message path (src/*.ts and src/{delivery,ingress,live,store,push,obs}) starts with a spread and goes on', () => {
  const found: string[] = [];
  for (const e of readdirSync(join(ROOT, 'src'), { withFileTypes: true })) {
    if (e.isFile() && e.name.endsWith('.ts')) found.push(...spreadFirst(join(ROOT, 'src', e.name)));
  }
  for (const dir of MESSAGE_PATH) for (const f of sources(join(ROOT, 'src', dir))) found.push(...spreadFirst(f));
  assert.deepEqual(found, [], `rewrite these as { props, ...spread } or Object.assign({}, a, { b }):\n${found.join('\n')}`);
});
