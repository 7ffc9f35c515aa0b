import type { DeviceDirectory } from '../store/devices.js';
import type { Uid } from '../types.js';

/** One push transport's view of the device directory: its own targets. */
export interface TransportTargets {
  has(uid: Uid): boolean | Promise<boolean>;
  targets(uid: Uid): string[] | Promise<string[]>;
  count(): { devices: number; uids: number } | Promise<{ devices: number; uids: number }>;
}

/** The counts for a synchronous health report: undefined where the directory answers only asynchronously. */
export function countNow(t: TransportTargets): { devices: number; uids: number } | undefined {
  const c = t.count();
  if (c instanceof Promise) {
    c.catch(() => {});
    return undefined;
  }
  return c;
}

export function targetsOf(directory: DeviceDirectory, transport: string): TransportTargets {
  return {
    has: (uid) => directory.has(transport, uid),
    targets: (uid) => directory.targets(transport, uid),
    count: () => directory.count(transport),
  };
}
