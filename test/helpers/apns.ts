import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { type Config, parseConfig } from '../../src/config/load.js';
import type { Daemon } from '../../src/node/daemon.js';
import { type ApnsTestKey, type FakeApns, type FakeApnsOptions, makeApnsKey, startFakeApns } from './fake-apns.js';
import { runDaemon, tempDir } from './daemon.js';
import { stringify } from 'yaml';

/** A random 64-hex-character device token. */
export function deviceToken(): string {
  return randomBytes(32).toString('hex');
}

export interface ApnsWorld {
  key: ApnsTestKey;
  fake: FakeApns;
  /** Folder with the .p8 key, the fake's CA and the state directory. */
  dir: string;
  /** The config object (before validation) the daemons are built from; tweak and call config(). */
  raw: Record<string, unknown>;
  config(): Config;
  /** Starts a daemon on this world's config (stopped when the test ends); call again for a "restart". */
  daemon(): Promise<Daemon & { logs: Record<string, unknown>[]; httpUrl: string; wsUrl: string; textPort: number }>;
}

/**
 * A fake APNs server and a config whose `apns` transport points at it (token auth with a
 * throwaway .p8), with `devices` as given. Everything is torn down when the test ends.
 */
export async function apnsWorld(
  t: TestContext,
  opts: {
    devices?: Record<string, string[]>;
    fake?: Omit<FakeApnsOptions, 'key'>;
    apns?: Record<string, unknown>;
    dispatch?: Record<string, unknown>;
  } = {},
): Promise<ApnsWorld> {
  const key = makeApnsKey();
  const fake = await startFakeApns({ key, ...opts.fake });
  t.after(() => fake.close());
  const dir = tempDir(t, 'notify-apns-');
  writeFileSync(join(dir, 'AuthKey.p8'), key.pem);
  writeFileSync(join(dir, 'fake-ca.pem'), fake.ca);
  const raw: Record<string, unknown> = {
    ws: { listen: '127.0.0.1:0' },
    text: { listen: '127.0.0.1:0' },
    http: { listen: '127.0.0.1:0' },
    state: { dir: './state' },
    ...(opts.dispatch ? { dispatch: opts.dispatch } : {}),
    transports: {
      apns: {
        topic: 'com.example.app',
        token: { key: './AuthKey.p8', keyId: key.keyId, teamId: key.teamId },
        address: 'localhost',
        port: fake.port,
        ca: './fake-ca.pem',
        retry: { limit: 3, baseDelayMs: 20, maxDelayMs: 5000 },
        ...opts.apns,
      },
    },
    devices: Object.fromEntries(Object.entries(opts.devices ?? {}).map(([uid, tokens]) => [uid, { apns: tokens }])),
  };
  const world: ApnsWorld = {
    key,
    fake,
    dir,
    raw,
    config: () => parseConfig(stringify(raw), 'apns test config', dir),
    daemon: () => runDaemon(t, world.config()),

  };
  return world;
}

/** Writes the world's config to a YAML file in its folder (relative paths in it resolve there). */
export function writeWorldConfig(w: ApnsWorld, name = 'notify.yaml'): string {
  const file = join(w.dir, name);
  writeFileSync(file, stringify(w.raw));
  return file;
}
