import type { Command } from 'commander';
import { type ApiOptions, apiOptions, callApi } from '../api-client.js';
import type { Io, Result } from '../io.js';

interface StatusAnswer {
  version: string;
  uptimeS: number;
  listeners: Record<string, string>;
  sessions: number;
  uids: number;
  connections: number;
  history: { rows?: number; enabled?: boolean };
  transports: Record<string, Record<string, unknown>>;
}

/** `notify status`: the running daemon's /v1/status. */
export function addStatusCommand(program: Command, io: Io, result: Result): void {
  apiOptions(
    program
      .command('status')
      .description('what the running daemon is doing: listeners, sessions, the store, each transport')
      .option('--json', 'print the status as JSON'),
  ).action(async (o: ApiOptions & { json?: boolean }) => {
    result.code = await statusCommand(io, o);
  });
}

async function statusCommand(io: Io, o: ApiOptions & { json?: boolean }): Promise<number> {
  const st = (await callApi(o, 'GET', '/v1/status')) as StatusAnswer;
  io.out(o.json ? `${JSON.stringify(st)}\n` : formatStatus(st));
  return 0;
}

function duration(s: number): string {
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  return [d ? `${d}d` : '', h ? `${h}h` : '', m ? `${m}m` : '', `${s % 60}s`].filter(Boolean).join(' ');
}

/** What a human wants from /v1/status: listeners, sessions, the store, each transport's state. */
export function formatStatus(st: StatusAnswer): string {
  const lines = [`notify ${st.version}, up ${duration(st.uptimeS)}`];
  lines.push(`listening   ${Object.entries(st.listeners).map(([k, v]) => `${k} ${v}`).join('   ')}`);
  lines.push(`sessions    ${st.sessions} session${st.sessions === 1 ? '' : 's'} of ${st.uids} uid${st.uids === 1 ? '' : 's'} (${st.connections} connection${st.connections === 1 ? '' : 's'})`);
  lines.push(`store       ${st.history.enabled === false ? 'off' : `${st.history.rows ?? 0} stored message rows`}`);
  lines.push('transports');
  const width = Math.max(...Object.keys(st.transports).map((n) => n.length));
  for (const [name, h] of Object.entries(st.transports)) {
    const { state, ...rest } = h;
    const details = Object.entries(rest)
      .map(([k, v]) => `${k} ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
      .join(', ');
    lines.push(`  ${name.padEnd(width)}  ${String(state ?? '?')}${details ? `  ${details}` : ''}`);
  }
  return `${lines.join('\n')}\n`;
}
