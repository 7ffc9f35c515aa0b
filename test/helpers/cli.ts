import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import type { TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Io, main } from '../../src/cli/main.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BIN = fileURLToPath(new URL('../../../bin/notify', import.meta.url));

/** What a CLI run left: its exit code and everything it wrote to stdout and stderr. */
export interface Run {
  code: number;
  out: string;
  err: string;
}

/** A fake Io that records what the CLI writes and lets the test deliver a stop signal. */
export function fakeIo(stdin?: Io['stdin']) {
  const out: string[] = [];
  const err: string[] = [];
  const handlers = new Set<(signal: string) => void>();
  const io: Io = {
    out: (s) => void out.push(s),
    err: (s) => void err.push(s),
    onStopSignal(handler) {
      handlers.add(handler);
      return () => void handlers.delete(handler);
    },
    ...(stdin !== undefined ? { stdin } : {}),
  };
  return {
    io,
    out: () => out.join(''),
    err: () => err.join(''),
    /** Parsed JSON log lines written to err so far. */
    logs: () => parseLogs(err.join('')),
    signal: (name: string) => {
      for (const h of handlers) h(name);
    },
    get listening() {
      return handlers.size;
    },
  };
}

/**
 * Runs the CLI in this process with a fake Io that records what it writes. `stdin`: what it
 * reads as standard input (absent: a terminal, never read).
 */
export async function cli(argv: string[], stdin?: Io['stdin']): Promise<Run> {
  const f = fakeIo(stdin);
  const code = await main(argv, f.io);
  return { code, out: f.out(), err: f.err() };
}

/** The lines of `text`, without the final newline. */
export function lines(text: string): string[] {
  return text.replace(/\n$/, '').split('\n');
}

/** Asserts exactly one stderr line, starting with "notify: ", and returns it. */
export function oneErrLine(r: Run, what: string): string {
  assert.ok(r.err.endsWith('\n'), `${what}: stderr ends with a newline: ${JSON.stringify(r.err)}`);
  const ls = lines(r.err);
  assert.equal(ls.length, 1, `${what}: one line on stderr, got ${JSON.stringify(r.err)}`);
  assert.match(ls[0] as string, /^notify: \S/, what);
  return ls[0] as string;
}

/** The JSON log lines in `text` (other lines and a partial last line left out). */
export function parseLogs(text: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a partial line: the rest is still coming
    }
  }
  return out;
}

/** A `bin/notify` child process. */
export interface Proc {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  logs(): Record<string, unknown>[];
  /** Resolves with the exit code (null when killed by a signal). */
  exited: Promise<number | null>;
}

/** How `spawnNotify` runs the child. */
export interface SpawnOptions {
  /** Working directory. @default the repository root */
  cwd?: string;
  /** Variables added to the environment. */
  env?: NodeJS.ProcessEnv;
  /** Written to its stdin, which is then closed (a pipe); absent: stdin is /dev/null. */
  input?: string | Buffer;
}

/** The CLI's own environment variables: the caller's are kept out of the tests. */
const CLI_ENV = ['NOTIFY_TOKEN', 'NOTIFY_SERVER', 'NOTIFY_CONFIG'];

/**
 * Starts `bin/notify args` (without the caller's $NOTIFY_TOKEN, $NOTIFY_SERVER and
 * $NOTIFY_CONFIG, plus `opts.env`); killed when the test ends.
 */
export function spawnNotify(t: TestContext, args: string[], opts: SpawnOptions = {}): Proc {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const name of CLI_ENV) delete env[name];
  Object.assign(env, opts.env);
  const stdin = opts.input === undefined ? 'ignore' : 'pipe';
  const child = spawn(process.execPath, [BIN, ...args], { cwd: opts.cwd ?? ROOT, env, stdio: [stdin, 'pipe', 'pipe'] });
  if (opts.input !== undefined) {
    child.stdin?.on('error', () => {}); // the CLI may stop reading early (a message over the limit)
    child.stdin?.end(opts.input);
  }
  let out = '';
  let err = '';
  child.stdout?.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr?.setEncoding('utf8').on('data', (s: string) => (err += s));
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { child, stdout: () => out, stderr: () => err, logs: () => parseLogs(err), exited };
}

/** Waits for the exit code of `p`, failing (and killing it) after `ms`. */
export async function exitCode(p: Proc, what: string, ms: number): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms)));
  const r = await Promise.race([p.exited, timeout]);
  clearTimeout(timer);
  if (r === 'timeout') {
    p.child.kill('SIGKILL');
    assert.fail(`${what} did not exit within ${ms} ms; stderr: ${p.stderr()}`);
  }
  return r;
}

/** Runs `bin/notify args` as a child process to completion (killed, and failing, after `ms`). */
export async function runNotify(t: TestContext, args: string[], ms: number, opts: SpawnOptions = {}): Promise<Run> {
  const p = spawnNotify(t, args, opts);
  const code = await exitCode(p, `notify ${args.join(' ')}`, ms);
  return { code: code ?? -1, out: p.stdout(), err: p.stderr() };
}
