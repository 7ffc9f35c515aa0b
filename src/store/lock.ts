import { closeSync, mkdirSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { NotifyError, errorMessage } from '../errors.js';

/** Who holds a state directory. */
export interface LockHolder {
  pid: number;
  host: string;
  /** ISO time it was taken. */
  since: string;
}

/** The state directory is held by another live notify process. */
export class StateLockedError extends NotifyError {
  readonly holder: LockHolder;

  constructor(dir: string, holder: LockHolder) {
    super(
      'NOTIFY_ERR_STATE_LOCKED',
      `state.dir ${dir} is in use by another notify (pid ${holder.pid} on ${holder.host}, since ${holder.since}); stop it, or give this one its own state.dir`,
    );
    this.holder = holder;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readHolder(file: string): LockHolder | undefined {
  try {
    const h = JSON.parse(readFileSync(file, 'utf8')) as Partial<LockHolder>;
    return typeof h.pid === 'number' && typeof h.host === 'string' ? { pid: h.pid, host: h.host, since: String(h.since ?? '?') } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Takes the state directory for this process: one directory, one notify. The lock is a file
 * naming its holder; a holder that is gone (a crashed daemon) does not keep it: its lock is taken
 * over. Returns the release function. Throws StateLockedError while a live process holds it.
 */
export function lockStateDir(dir: string): () => void {
  try {
    mkdirSync(dir, { recursive: true });
  } catch (err) {
    throw new NotifyError('NOTIFY_ERR_CONFIG', `cannot open the state directory ${dir} (state.dir): ${errorMessage(err)}`, { cause: err });
  }
  const file = join(dir, 'notify.lock');
  const me: LockHolder = { pid: process.pid, host: hostname(), since: new Date().toISOString() };
  for (let attempt = 0; attempt < 3; attempt++) {
    let fd: number;
    try {
      fd = openSync(file, 'wx', 0o644);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
        throw new NotifyError('NOTIFY_ERR_CONFIG', `cannot take the lock ${file} on the state directory (state.dir): ${errorMessage(err)}`, { cause: err });
      }
      const holder = readHolder(file);
      // A holder on this host that is still running keeps it; one that is gone, or a file that
      // was never completed, is stale.
      if (holder !== undefined && (holder.host !== me.host || alive(holder.pid)) && holder.pid !== process.pid) {
        throw new StateLockedError(dir, holder);
      }
      try {
        unlinkSync(file);
      } catch {
        // Someone else took it over first: try again.
      }
      continue;
    }
    writeSync(fd, JSON.stringify(me));
    closeSync(fd);
    return () => {
      if (readHolder(file)?.pid === process.pid) {
        try {
          unlinkSync(file);
        } catch {
          // Already gone.
        }
      }
    };
  }
  throw new NotifyError('NOTIFY_ERR_STATE_LOCKED', `cannot take the lock on state.dir ${dir} (${file})`);
}
