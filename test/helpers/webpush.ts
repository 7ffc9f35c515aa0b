import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { stringify } from 'yaml';
import { type Config, parseConfig } from '../../src/config/load.js';
import type { Daemon } from '../../src/node/daemon.js';
import { generateVapidKeys, type VapidKeys } from '../../src/push/webpush/vapid.js';
import { runDaemon, tempDir } from './daemon.js';
import { type FakeWebPush, type FakeWebPushOptions, startFakeWebPush } from './fake-webpush.js';

export interface WebPushWorld {
  vapid: VapidKeys;
  fake: FakeWebPush;
  /** Folder with the fake's CA and the state directory. */
  dir: string;
  /** The config object (before validation) the daemons are built from; tweak and call config(). */
  raw: Record<string, unknown>;
  config(): Config;
  /** Starts a daemon on this world's config (stopped when the test ends); call again for a "restart". */
  daemon(): Promise<Daemon & { logs: Record<string, unknown>[]; logText: string[]; httpUrl: string; wsUrl: string; textPort: number }>;
}

/**
 * A fake Web Push service and a config whose `webpush` transport trusts it (its certificate as
 * `ca`), with a fresh VAPID key pair and `devices` (subscription objects) as given. Torn down
 * when the test ends.
 */
export async function webpushWorld(
  t: TestContext,
  opts: {
    devices?: (fake: FakeWebPush) => Record<string, unknown[]>;
    respond?: FakeWebPushOptions['respond'];
    webpush?: Record<string, unknown>;
    dispatch?: Record<string, unknown>;
    ws?: Record<string, unknown>;
  } = {},
): Promise<WebPushWorld> {
  const vapid = generateVapidKeys();
  const fake = await startFakeWebPush({ vapidPublicKey: vapid.publicKey, ...(opts.respond ? { respond: opts.respond } : {}) });
  t.after(() => fake.close());
  const dir = tempDir(t, 'notify-webpush-');
  writeFileSync(join(dir, 'fake-ca.pem'), fake.ca);
  const raw: Record<string, unknown> = {
    ws: { listen: '127.0.0.1:0', ...opts.ws },
    text: { listen: '127.0.0.1:0' },
    http: { listen: '127.0.0.1:0' },
    state: { dir: './state' },
    ...(opts.dispatch ? { dispatch: opts.dispatch } : {}),
    transports: {
      webpush: {
        type: 'webpush',
        vapid: { subject: 'mailto:ops@example.com', ...vapid },
        ca: './fake-ca.pem',
        retry: { limit: 3, baseDelayMs: 20, maxDelayMs: 5000 },
        ...opts.webpush,
      },
    },
    devices: Object.fromEntries(Object.entries(opts.devices?.(fake) ?? {}).map(([uid, subs]) => [uid, { webpush: subs }])),
  };
  const world: WebPushWorld = {
    vapid,
    fake,
    dir,
    raw,
    config: () => parseConfig(stringify(raw), 'webpush test config', dir),
    daemon: () => runDaemon(t, world.config()),

  };
  return world;
}
