import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** The open-file limits of this process, from /proc (Linux); undefined elsewhere. */
export function fileLimits(): { soft: number; hard: number } | undefined {
  try {
    const m = /^Max open files\s+(\d+|unlimited)\s+(\d+|unlimited)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    if (!m) return undefined;
    const n = (v: string) => (v === 'unlimited' ? Infinity : Number(v));
    return { soft: n(m[1] as string), hard: n(m[2] as string) };
  } catch {
    return undefined;
  }
}

/**
 * Raises this process's soft limit on open files to its hard limit (each session is one
 * descriptor), with util-linux's prlimit (Node has no setrlimit). Returns the limits after, and
 * whether it was raised; undefined where the limits cannot be read.
 */
export function raiseFileLimit(): { soft: number; hard: number; raisedFrom?: number } | undefined {
  const before = fileLimits();
  if (before === undefined || before.soft >= before.hard) return before;
  const hard = Number.isFinite(before.hard) ? String(before.hard) : 'unlimited';
  spawnSync('prlimit', ['--pid', String(process.pid), `--nofile=${hard}:${hard}`], { stdio: 'ignore' });
  const after = fileLimits() ?? before;
  return after.soft > before.soft ? { ...after, raisedFrom: before.soft } : after;
}
