import type { DeviceDirectory } from '../store/devices.js';
import type { Uid } from '../types.js';

/** One push transport's view of the device directory: its own targets. */
export interface TransportTargets {
  has(uid: Uid): boolean | Promise<boolean>;
  targets(uid: Uid): string[] | Promise<string[]>;
  count(): { devices: number; uids: number } | Promise<{ devices: number; uids: number }>;
}

export function targetsOf(directory: DeviceDirectory, transport: string): TransportTargets {
  return {
    has: (uid) => directory.has(transport, uid),
    targets: (uid) => directory.targets(transport, uid),
    count: () => directory.count(transport),
  };
}
