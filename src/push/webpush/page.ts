import type { Config } from '../../config/load.js';
import { NotifyError } from '../../errors.js';
import type { Uid } from '../../types.js';
import type { DeviceService } from '../devices.js';
import type { WebPushSettings } from './transport.js';
import { parseSubscription, subscriptionTarget } from './subscription.js';

/**
 * Web Push registration for pages, behind the session's push-* frames (live/websocket.ts): a
 * page registers its browser's subscription for the uid its session is bound to (with
 * `ws.auth: token`, the token proved that uid), without an API token.
 */
export interface PagePush {
  /** The VAPID public key pages subscribe with; undefined when no webpush transport is configured. */
  publicKey(): string | undefined;
  /** Registers `subscription` for `uid`; rejects (NOTIFY_ERR_INVALID_DEVICE) with a readable reason. */
  subscribe(uid: Uid, subscription: unknown): Promise<{ endpoint: string; added: boolean }>;
  /** Removes `subscription` from `uid`; `removed` is false when the uid did not have it. */
  unsubscribe(uid: Uid, subscription: unknown): Promise<{ endpoint: string; removed: boolean }>;
}

function refused(message: string): NotifyError {
  return new NotifyError('NOTIFY_ERR_INVALID_DEVICE', message, { status: 400 });
}

/**
 * Page registrations go to the first `type: webpush` transport of the config in force (read at
 * each call, so a reload applies). The transport's `subscriptionsPerUid` caps what pages may
 * register for one uid (a subscription already registered for it may always be registered
 * again); the YAML and the HTTP API are not capped.
 */
export function pagePush(o: { config: () => Config; devices: DeviceService }): PagePush {
  const transport = (): { name: string; settings: WebPushSettings } | undefined => {
    for (const [name, settings] of Object.entries(o.config().transports)) {
      if (settings.type === 'webpush') return { name, settings: settings as unknown as WebPushSettings };
    }
    return undefined;
  };
  const need = () => {
    const t = transport();
    if (!t) throw refused('Web Push is not configured on this daemon (no transport with type: webpush)');
    return t;
  };
  const parse = (subscription: unknown) => {
    const s = parseSubscription(subscription);
    if ('error' in s) throw refused(s.error);
    return s;
  };
  return {
    publicKey: () => transport()?.settings.vapid.publicKey,
    async subscribe(uid, subscription) {
      const t = need();
      const s = parse(subscription);
      const target = subscriptionTarget(s);
      const mine = await o.devices.list({ uid, transport: t.name });
      const cap = t.settings.subscriptionsPerUid;
      if (mine.length >= cap && !mine.some((d) => d.token === target)) {
        throw refused(`this uid has ${mine.length} Web Push subscriptions already (transports.${t.name}.subscriptionsPerUid: ${cap})`);
      }
      const r = await o.devices.register(uid, t.name, target);
      return { endpoint: s.endpoint, added: r.added };
    },
    async unsubscribe(uid, subscription) {
      const t = need();
      const s = parse(subscription);
      const r = await o.devices.unregister(uid, t.name, subscriptionTarget(s));
      return { endpoint: s.endpoint, removed: r.removed };
    },
  };
}
