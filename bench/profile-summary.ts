/**
 * Summarizes a V8 CPU profile (`node --cpu-prof`) by function: self time, and inclusive time
 * (the function anywhere on the stack), highest first.
 *
 *   node dist/bench/profile-summary.js FILE.cpuprofile [--top N] [--phase FUNCTION]
 *
 * --phase keeps only the samples between the first and the last one whose stack holds
 * FUNCTION (e.g. `answerLine` for notify's push phase), so connecting the sessions does not
 * count. Idle samples ((idle), (program) while waiting) are left out of the percentages.
 *
 * Profile the daemon under the benchmark:
 *   NOTIFY_BENCH_NODE_ARGS="--cpu-prof --cpu-prof-dir=prof" node dist/bench/bench.js --only ws --server notify --runs 1 --c1 0
 */
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  samples: number[];
  timeDeltas: number[];
}

const { values, positionals } = parseArgs({ allowPositionals: true, options: { top: { type: 'string', default: '30' }, phase: { type: 'string' } } });
const file = positionals[0];
if (file === undefined) {
  process.stderr.write('usage: profile-summary FILE.cpuprofile [--top N] [--phase FUNCTION]\n');
  process.exit(2);
}
const prof = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const label = (n: Node) => {
  const f = n.callFrame;
  const where = f.url ? `${f.url.replace(/^.*\/(node_modules|dist)\//, '$1/')}:${f.lineNumber + 1}` : '';
  return `${f.functionName || '(anonymous)'} ${where}`.trim();
};
const stacks = new Map<number, string[]>();
const stackOf = (id: number): string[] => {
  let s = stacks.get(id);
  if (s !== undefined) return s;
  const out: string[] = [];
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) out.push(label(byId.get(cur) as Node));
  stacks.set(id, out);
  return out;
};

let from = 0;
let to = prof.samples.length;
if (values.phase !== undefined) {
  const phase = values.phase;
  const hits = prof.samples.map((id, i) => (stackOf(id).some((l) => l.startsWith(`${phase} `) || l === phase) ? i : -1)).filter((i) => i >= 0);
  if (hits.length === 0) {
    process.stderr.write(`no sample has ${phase} on its stack\n`);
    process.exit(1);
  }
  from = hits[0] as number;
  to = (hits.at(-1) as number) + 1;
}
const self = new Map<string, number>();
const incl = new Map<string, number>();
let total = 0;
let idle = 0;
for (let i = from; i < to; i++) {
  const dt = (prof.timeDeltas[i + 1] ?? 0) / 1000;
  const stack = stackOf(prof.samples[i] as number);
  const top = stack[0] as string;
  if (top.startsWith('(idle)')) {
    idle += dt;
    continue;
  }
  total += dt;
  self.set(top, (self.get(top) ?? 0) + dt);
  for (const l of new Set(stack)) incl.set(l, (incl.get(l) ?? 0) + dt);
}
const top = Number(values.top);
const show = (title: string, m: Map<string, number>) => {
  process.stdout.write(`\n${title}\n`);
  for (const [k, v] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    process.stdout.write(`${((100 * v) / total).toFixed(1).padStart(5)}%  ${v.toFixed(0).padStart(6)} ms  ${k}\n`);
  }
};
process.stdout.write(`busy ${total.toFixed(0)} ms, idle ${idle.toFixed(0)} ms, samples ${to - from}\n`);
show('self time', self);
show('inclusive time', incl);
