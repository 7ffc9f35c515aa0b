/** Log levels, quietest last. */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export type LogFields = Record<string, unknown>;

export interface Logger {
  debug(msg: string, fields?: LogFields): void;
  info(msg: string, fields?: LogFields): void;
  warn(msg: string, fields?: LogFields): void;
  error(msg: string, fields?: LogFields): void;
  /** Whether lines of `level` are written now: a hot path builds a line's fields only then. */
  enabled(level: LogLevel): boolean;
}

export interface LoggerOptions {
  /** @default 'info' */
  level?: LogLevel;
  /** Where lines go. @default process.stderr */
  write?: (line: string) => void;
  /** @default () => new Date() */
  now?: () => Date;
}

/**
 * A leveled logger writing one JSON object per line: `{"time","level","msg",...fields}`.
 * Values of keys that name secrets (token, secret, password, authorization, key) are replaced
 * by "[redacted]", so a careless field never leaks a credential.
 */
export function createLogger(opts: LoggerOptions = {}): Logger & { setLevel(level: LogLevel): void } {
  let min = LOG_LEVELS.indexOf(opts.level ?? 'info');
  const write = opts.write ?? ((line: string) => process.stderr.write(line));
  const now = opts.now ?? (() => new Date());
  const emit = (level: LogLevel) => (msg: string, fields?: LogFields) => {
    if (LOG_LEVELS.indexOf(level) < min) return;
    const entry = { time: now().toISOString(), level, msg, ...redactFields(fields) };
    write(`${JSON.stringify(entry, jsonSafe)}\n`);
  };
  return {
    debug: emit('debug'),
    info: emit('info'),
    warn: emit('warn'),
    error: emit('error'),
    enabled: (level: LogLevel) => LOG_LEVELS.indexOf(level) >= min,
    setLevel(level: LogLevel) {
      min = LOG_LEVELS.indexOf(level);
    },
  };
}

/**
 * Sends process warnings (deprecations, MaxListenersExceededWarning, `process.emitWarning`) to
 * `log` as warn lines. Node prints them to stderr in plain text from its own 'warning'
 * listener, which would break the one-JSON-object-per-line log; that listener is taken off
 * while ours is on (https://nodejs.org/docs/latest-v20.x/api/process.html#event-warning).
 * Returns a function that puts the previous listeners back.
 */
export function logProcessWarnings(log: Logger, proc: NodeJS.Process = process): () => void {
  const previous = proc.listeners('warning');
  proc.removeAllListeners('warning');
  const onWarning = (w: Error & { code?: string; detail?: string }) => log.warn('node warning', { name: w.name, code: w.code, warning: w.message, detail: w.detail });
  proc.on('warning', onWarning);
  return () => {
    proc.off('warning', onWarning);
    for (const listener of previous) proc.on('warning', listener);
  };
}

/** A logger that drops everything (tests, library use). */
export const silentLogger: Logger = createLogger({ level: 'silent' });

const SECRET_KEY = /token|secret|password|passphrase|authorization|bearer|(^|[-_.])key$|private[-_]?key|apikey|api_key/i;

/** True for a key whose value must never be printed. */
export function isSecretKey(key: string): boolean {
  return SECRET_KEY.test(key);
}

function redactFields(fields: LogFields | undefined): LogFields | undefined {
  if (fields === undefined) return undefined;
  let out: LogFields | undefined;
  for (const key of Object.keys(fields)) {
    if (isSecretKey(key) && fields[key] !== undefined) (out ??= { ...fields })[key] = '[redacted]';
  }
  return out ?? fields;
}

function jsonSafe(_key: string, value: unknown): unknown {
  if (value instanceof Error) return value.message;
  if (typeof value === 'bigint') return value.toString();
  return value;
}

/**
 * A device token as logs show it: long ones cut to their ends (enough to tell them apart, not
 * enough to use one), a Web Push subscription to its push service's host.
 */
export function shortToken(token: string): string {
  if (token.startsWith('{')) {
    const m = /"endpoint"\s*:\s*"https?:\/\/([^/"]+)/.exec(token);
    return m ? `subscription at ${m[1]}` : 'subscription';
  }
  return token.length > 16 ? `${token.slice(0, 8)}…${token.slice(-4)}` : token;
}
