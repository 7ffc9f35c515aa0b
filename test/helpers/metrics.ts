import type { Daemon } from '../../src/node/daemon.js';

/**
 * The value of one sample of the Prometheus text `text`: metric `name` with exactly `labels`
 * (undefined when there is no such sample).
 */
export function sample(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const lm of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) got[lm[1] as string] = lm[2] as string;
    const want = Object.entries(labels);
    if (want.length === Object.keys(got).length && want.every(([k, v]) => got[k] === v)) return Number(m[3]);
  }
  return undefined;
}

/** `notify_limit_refusals_total{limit="X"}` now (0 when the series does not exist yet). */
export async function refusals(d: Pick<Daemon, 'metrics'>, limit: string): Promise<number> {
  const text = await d.metrics.text();
  const m = new RegExp(`^notify_limit_refusals_total\\{limit="${limit}"\\} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}
