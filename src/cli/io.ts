/** Exit codes for shell scripts. */
export const EXIT = {
  /** Delivered to at least one target. */
  delivered: 0,
  /** Delivered to none. */
  none: 1,
  /** Usage, config or connection error. */
  error: 2,
} as const;

/** Where the CLI writes, and how a running `serve` learns it should stop. */
export interface Io {
  out(text: string): void;
  err(text: string): void;
  /** Resolves when the process is asked to stop (SIGINT/SIGTERM); given the signal name. */
  onStopSignal(handler: (signal: string) => void): () => void;
  /** Calls `handler` when the process is asked to reload (SIGHUP); returns an unsubscribe. */
  onReloadSignal?(handler: () => void): () => void;
  /**
   * Standard input, for `send` to read its message from a pipe or a file. Absent, or `isTTY`
   * true: a terminal, which is never read.
   */
  stdin?: NodeJS.ReadableStream & { isTTY?: boolean };
}

/** The real process: stdout, stderr and its signals. */
export const processIo: Io = {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  onStopSignal(handler) {
    process.on('SIGINT', handler);
    process.on('SIGTERM', handler);
    return () => {
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    };
  },
  onReloadSignal(handler) {
    process.on('SIGHUP', handler);
    return () => process.off('SIGHUP', handler);
  },
  get stdin() {
    return process.stdin;
  },
};

/** A failure that ends the command with exit code 2 and this one line on stderr. */
export class CliError extends Error {}

/** Where a command's action leaves its exit code. */
export interface Result {
  code: number;
}
