import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const run = promisify(execFile);

/** Files of the package as `npm pack` lists them (paths inside the tarball, without `package/`). */
export interface Packed {
  filename: string;
  name: string;
  files: string[];
}

/**
 * `npm pack` of the working tree into `dest` (or a dry run when `dest` is undefined). With
 * --ignore-scripts: `prepare` would run `npm run build`, which deletes and rebuilds dist/ under
 * the tests that are running from it; the suite has just built dist/ (`npm test` builds first),
 * so the tarball holds the same dist/src that prepare would make.
 */
export async function npmPack(dest?: string): Promise<Packed> {
  const args = ['pack', '--json', '--ignore-scripts', ...(dest === undefined ? ['--dry-run'] : ['--pack-destination', dest])];
  const { stdout } = await run('npm', args, { cwd: ROOT, maxBuffer: 16 * 1024 * 1024, timeout: 120_000 });
  const [entry] = JSON.parse(stdout) as { filename: string; name: string; files: { path: string }[] }[];
  if (!entry) throw new Error(`npm pack printed no entry: ${stdout}`);
  return { filename: entry.filename, name: entry.name, files: entry.files.map((f) => f.path).sort() };
}

/** What must not be in the package: tests, the benchmark, sources, CI, built tests. */
export const NOT_SHIPPED = /^(test|bench|src|\.ci|dist\/test|dist\/bench|node_modules)\//;
