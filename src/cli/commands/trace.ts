import type { Command } from 'commander';
import type { UidFacts } from '../../node/lookup.js';
import type { MessageTrace } from '../../store/trace.js';
import { type ApiOptions, apiOptions, callApi } from '../api-client.js';
import { EXIT, type Io, type Result } from '../io.js';

interface LookupOptions extends ApiOptions {
  json?: boolean;
}

/** `notify trace ID` and `notify who UID`: a message's story and a uid's state, from the running daemon. */
export function addTraceCommands(program: Command, io: Io, result: Result): void {
  apiOptions(
    program
      .command('trace')
      .description("a message's story: published how, to whom, each target's latest outcome (retries, give-ups), acks (exit 1: no such message in history)")
      .argument('<id>', 'the message id (from the publish report)')
      .option('--json', 'print the JSON the API answers'),
  ).action(async (id: string, o: LookupOptions) => {
    const trace = (await callApi(o, 'GET', `/v1/messages/${encodeURIComponent(id)}`, undefined, { notFound: true })) as MessageTrace | undefined;
    if (trace === undefined) {
      io.err(`no message ${id} in history (never published, or older than history.ttl)\n`);
      result.code = EXIT.none;
      return;
    }
    io.out(o.json ? `${JSON.stringify(trace)}\n` : formatTrace(trace));
    result.code = EXIT.delivered;
  });
  apiOptions(
    program
      .command('who')
      .description("a uid's live sessions, device tokens with their last outcome, retired tokens, recent messages")
      .argument('<uid>')
      .option('--json', 'print the JSON the API answers'),
  ).action(async (uid: string, o: LookupOptions) => {
    const facts = (await callApi(o, 'GET', `/v1/uids/${encodeURIComponent(uid)}`)) as UidFacts;
    io.out(o.json ? `${JSON.stringify(facts)}\n` : formatWho(facts));
    result.code = EXIT.delivered;
  });
}

/** Rows as aligned columns (two spaces apart), each line indented. */
function table(rows: readonly (readonly string[])[], indent = '  '): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, c.length)));
  return rows.map((r) => `${indent}${r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i] as number))).join('  ')}`.trimEnd()).join('\n');
}

/** A human summary of a trace. */
export function formatTrace(t: MessageTrace): string {
  const audience = 'broadcast' in t.audience ? `broadcast (${t.audienceSize} uids)` : `${t.audience.uids.join(', ')}${t.truncated?.audience ? ` and ${t.truncated.audience} more` : ''}`;
  const lines = [
    `message    ${t.id}`,
    `published  ${t.publishedAt} via ${t.ingress}${t.node ? ` on ${t.node}` : ''}, route ${t.route}, ${t.stored ? 'stored in history' : 'not stored'}${t.publisherId ? ', publisher id' : ''}`,
    `audience   ${audience}`,
    `outcome    ${t.counts.sent} sent, ${t.counts.failed} failed, ${t.counts.rejected} rejected${t.unreached.length ? `; unreached: ${t.unreached.join(', ')}` : ''}`,
  ];
  if (t.duplicates) lines.push(`duplicates ${t.duplicates} repeated publish${t.duplicates === 1 ? '' : 'es'} answered with this one's report`);
  if (t.targets.length > 0) {
    lines.push('targets');
    const rows = [['UID', 'TRANSPORT', 'TARGET', 'STATUS', 'ATTEMPTS', 'AT', 'DETAIL']];
    for (const x of t.targets) {
      const detail = [x.reason, x.nextAttemptAt ? `next attempt ${x.nextAttemptAt}` : undefined, x.node ? `node ${x.node}` : undefined].filter(Boolean).join('; ');
      rows.push([x.uid, x.transport, shorten(x.target), x.status, String(x.attempts), x.at, detail]);
    }
    lines.push(table(rows));
  } else lines.push('targets    none');
  if (t.truncated?.targets) lines.push(`  … and ${t.truncated.targets} more targets (counted in the outcome above)`);
  if (t.acks.length > 0) {
    lines.push('acks');
    lines.push(table([['UID', 'SESSION', 'AT'], ...t.acks.map((a) => [a.uid, a.session, a.at])]));
  }
  return `${lines.join('\n')}\n`;
}

/** A human summary of a uid's state. */
export function formatWho(f: UidFacts): string {
  const lines = [`uid       ${f.uid}`, `online    ${f.online ? `yes, ${f.sessions.length} session${f.sessions.length === 1 ? '' : 's'}` : 'no'}`];
  if (f.sessions.length > 0) {
    lines.push('sessions');
    lines.push(
      table([
        ['SESSION', 'NODE', 'ADDRESS', 'CONNECTED', 'PROTOCOL'],
        ...f.sessions.map((s) => [s.session, s.node, s.address ?? '?', s.connectedAt ?? '?', `${s.protocol}${s.resuming ? ' (resumed)' : ''}`]),
      ]),
    );
  }
  if (f.devices.length > 0) {
    lines.push('devices');
    lines.push(
      table([
        ['TRANSPORT', 'TOKEN', 'LAST OUTCOME'],
        ...f.devices.map((d) => [d.transport, shorten(d.token), d.lastOutcome ? `${d.lastOutcome.status}${d.lastOutcome.reason ? ` (${d.lastOutcome.reason})` : ''} at ${d.lastOutcome.at}, message ${d.lastOutcome.messageId}` : 'none yet']),
      ]),
    );
  } else lines.push('devices   none');
  if (f.retired.length > 0) {
    lines.push('retired');
    lines.push(table([['TRANSPORT', 'TOKEN', 'REASON', 'AT'], ...f.retired.map((r) => [r.transport, shorten(r.token), r.reason, r.at])]));
  }
  if (f.recentMessages.length > 0) {
    lines.push('recent messages (newest first)');
    lines.push(table(f.recentMessages.map((m) => [m.id, m.at ?? ''])));
  } else lines.push('recent    none');
  return `${lines.join('\n')}\n`;
}

/** A long target (a Web Push subscription's JSON) cut for a table; --json has it whole. */
function shorten(s: string): string {
  return s.length > 72 ? `${s.slice(0, 69)}...` : s;
}
