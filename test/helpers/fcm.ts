import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { stringify } from 'yaml';
import { type Config, parseConfig } from '../../src/config/load.js';
import type { Daemon } from '../../src/node/daemon.js';
import { runDaemon, tempDir } from './daemon.js';
import { type FakeFcm, type FakeFcmOptions, type FcmTestAccount, makeFcmAccount, serviceAccountJson, startFakeFcm } from './fake-fcm.js';

/** A registration token that looks like FCM's (about 160 characters), after a script prefix such as `dead-`. */
export function fcmToken(prefix = 'ok-'): string {
  return `${prefix}${randomBytes(12).toString('hex')}:APA91b${randomBytes(100).toString('base64url')}`;
}

export type FcmDaemon = Daemon & { logs: Record<string, unknown>[]; httpUrl: string; wsUrl: string; textPort: number };

export interface FcmWorld {
  account: FcmTestAccount;
  fake: FakeFcm;
  /** Folder with sa.json, the fake's CA and the state directory. */
  dir: string;
  /** The config (before validation) daemons are built from; tweak before calling daemon(). */
  raw: Record<string, unknown>;
  config(): Config;
  /** Starts a daemon on this world's config (stopped when the test ends); again for a restart. */
  daemon(): Promise<FcmDaemon>;
}

/**
 * A fake FCM (and token endpoint) and a config whose `fcm` transport points at it, with a
 * service-account file generated for the test and `devices` as given. Torn down when the test ends.
 */
export async function fcmWorld(
  t: TestContext,
  opts: { devices?: Record<string, string[]>; fake?: Omit<FakeFcmOptions, 'account'>; fcm?: Record<string, unknown>; top?: Record<string, unknown> } = {},
): Promise<FcmWorld> {
  const account = makeFcmAccount();
  const fake = await startFakeFcm({ account, ...opts.fake });
  t.after(() => fake.close());
  const dir = tempDir(t, 'notify-fcm-');
  writeFileSync(join(dir, 'sa.json'), serviceAccountJson(account, fake.tokenUrl));
  if (fake.ca) writeFileSync(join(dir, 'fake-ca.pem'), fake.ca);
  const raw: Record<string, unknown> = {
    ws: { listen: '127.0.0.1:0' },
    text: { listen: '127.0.0.1:0' },
    http: { listen: '127.0.0.1:0' },
    state: { dir: './state' },
    ...opts.top,
    transports: {
      fcm: {
        type: 'fcm',
        serviceAccount: './sa.json',
        url: fake.url,
        ...(fake.ca ? { ca: './fake-ca.pem' } : {}),
        retry: { limit: 3, baseDelayMs: 20, maxDelayMs: 5000 },
        ...opts.fcm,
      },
    },
    devices: Object.fromEntries(Object.entries(opts.devices ?? {}).map(([uid, tokens]) => [uid, { fcm: tokens }])),
  };
  const world: FcmWorld = {
    account,
    fake,
    dir,
    raw,
    config: () => parseConfig(stringify(raw), 'fcm test config', dir),
    daemon: () => runDaemon(t, world.config()),

  };
  return world;
}
