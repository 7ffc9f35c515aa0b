import type { Journal } from '../delivery/journal.js';
import type { DeviceService } from '../push/devices.js';
import type { Presence, SessionInfo } from '../store/presence.js';
import { type MessageStreams, streamOf } from '../store/stream.js';
import { type MessageTrace, type RetiredEvent, foldTrace, retiredKey } from '../store/trace.js';
import type { Uid } from '../types.js';

/** Recent message ids listed per uid at most. */
export const RECENT_MESSAGES = 20;

/** What `GET /v1/uids/{uid}` answers. */
export interface UidFacts {
  uid: Uid;
  online: boolean;
  sessions: { session: string; node: string; address: string | null; connectedAt: string | null; protocol: 'original' | 'resume'; resuming: boolean }[];
  devices: { transport: string; token: string; lastOutcome?: { status: string; reason?: string; at: string; messageId: string } }[];
  retired: { transport: string; token: string; reason: string; at: string }[];
  /** `at` is null when the message's trace is gone (older than the history, or a restart of a memory store). */
  recentMessages: { id: string; at: string | null }[];
}

/** The lookups of the trace API, over a node's journal and state. */
export interface Lookup {
  message(id: string): Promise<MessageTrace | undefined>;
  uid(uid: Uid): Promise<UidFacts>;
}

const iso = (ms: number) => new Date(ms).toISOString();

/** Builds the lookups from what a node has (any backend: each read may be sync or a promise). */
export function lookupOf(n: {
  journal: Journal;
  presence: Presence;
  devices: DeviceService;
  streams: MessageStreams | undefined;
  /** This node's own sessions, when presence keeps no info of them (one node). */
  local?: { node: string; describe(sid: string): SessionInfo | undefined };
}): Lookup {
  return {
    async message(id) {
      const trace = n.journal.trace;
      if (trace === undefined) return undefined;
      const { events, dropped } = await trace.events(id);
      return foldTrace(id, events, dropped);
    },
    async uid(uid) {
      const trace = n.journal.trace;
      const [sessions, devices, retired, recent] = await Promise.all([
        n.presence.sessions(uid),
        n.devices.list({ uid }),
        trace === undefined ? { events: [] } : trace.events(retiredKey(uid)),
        recentOf(n.streams, uid, n.journal),
      ]);
      const byTransport = new Map<string, string[]>();
      for (const d of devices) {
        let l = byTransport.get(d.transport);
        if (l === undefined) byTransport.set(d.transport, (l = []));
        l.push(d.token);
      }
      const last = new Map<string, Awaited<ReturnType<NonNullable<typeof trace>['lastOutcome']>>[number]>();
      if (trace !== undefined) {
        for (const [transport, tokens] of byTransport) {
          const outs = await trace.lastOutcome(transport, tokens);
          tokens.forEach((t, i) => last.set(`${transport}\u0000${t}`, outs[i]));
        }
      }
      // Newest retirement of each token, newest first.
      const seen = new Set<string>();
      const retiredList: UidFacts['retired'] = [];
      for (const e of [...retired.events].reverse()) {
        if (e.type !== 'retired') continue;
        const r = e as RetiredEvent;
        const k = `${r.transport}\u0000${r.token}`;
        if (seen.has(k)) continue;
        seen.add(k);
        retiredList.push({ transport: r.transport, token: r.token, reason: r.reason, at: iso(r.at) });
      }
      return {
        uid,
        online: sessions.length > 0,
        sessions: sessions.map((s) => {
          const info = s.info ?? (n.local && s.node === n.local.node ? n.local.describe(s.sid) : undefined);
          return {
            session: s.sid,
            node: s.node,
            address: info?.address ?? null,
            connectedAt: info ? iso(info.connectedAt) : null,
            protocol: info?.protocol ?? (s.sid.startsWith('r') ? 'resume' : 'original'),
            resuming: info?.resuming ?? false,
          };
        }),
        devices: devices.map((d) => {
          const o = last.get(`${d.transport}\u0000${d.token}`);
          return {
            transport: d.transport,
            token: d.token,
            ...(o ? { lastOutcome: { status: o.status, ...(o.reason !== undefined ? { reason: o.reason } : {}), at: iso(o.at), messageId: o.messageId } } : {}),
          };
        }),
        retired: retiredList,
        recentMessages: recent,
      };
    },
  };
}

/**
 * The newest RECENT_MESSAGES ids of the uid's history stream, newest first, each with its publish
 * time from its trace (a stream's `at` orders publications; it is not a time everywhere).
 */
async function recentOf(streams: MessageStreams | undefined, uid: Uid, journal: Journal): Promise<{ id: string; at: string | null }[]> {
  if (streams === undefined) return [];
  const stream = streamOf(uid);
  const { top } = await streams.history(stream, { limit: 0 });
  const page = await streams.history(stream, { limit: RECENT_MESSAGES, after: { offset: Math.max(0, top.offset - RECENT_MESSAGES), epoch: top.epoch } });
  const trace = journal.trace;
  return Promise.all(
    page.publications.reverse().map(async (p) => {
      const events = trace === undefined ? [] : (await trace.events(p.id)).events;
      const published = events.find((e) => e.type === 'published');
      return { id: p.id, at: published ? iso(published.at) : null };
    }),
  );
}
