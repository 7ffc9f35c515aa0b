import type { Command } from 'commander';
import type { DeviceEntry, RetiredDevice } from '../../push/devices.js';
import { type ApiOptions, apiOptions, callApi } from '../api-client.js';
import { CliError, EXIT, type Io, type Result } from '../io.js';

interface DevicesOptions extends ApiOptions {
  transport?: string;
  uid?: string;
  json?: boolean;
  retired?: boolean;
}

/** `notify devices add|remove|list`: device tokens of the push transports, through the daemon. */
export function addDevicesCommands(program: Command, io: Io, result: Result): void {
  const devices = program.command('devices').description('device tokens of the push transports, through the running daemon');
  apiOptions(
    devices
      .command('add')
      .description('register a device token for a uid (kept across restarts)')
      .argument('<uid>', 'the uid the device belongs to')
      .argument('<device-token>', 'the APNs device token (hex) or registration id')
      .option('--transport <name>', 'which transport (default: the only one configured)'),
  ).action(async (uid: string, device: string, o: DevicesOptions) => {
    result.code = await devicesChange(io, 'add', uid, device, o);
  });
  apiOptions(
    devices
      .command('remove')
      .description("remove a uid's device token (exit 1 if it was not registered)")
      .argument('<uid>')
      .argument('<device-token>')
      .option('--transport <name>', 'which transport (default: the only one configured)'),
  ).action(async (uid: string, device: string, o: DevicesOptions) => {
    result.code = await devicesChange(io, 'remove', uid, device, o);
  });
  apiOptions(
    devices
      .command('list')
      .description('list device tokens: uid, transport, token, source (config or api); with --retired, the retired ones')
      .option('-u, --uid <uid>', 'only this uid')
      .option('--transport <name>', 'only this transport')
      .option('--retired', 'list retired tokens instead: transport, token, reason, when (taken out of service for good)')
      .option('--json', 'print JSON'),
  ).action(async (o: DevicesOptions) => {
    result.code = await devicesList(io, o);
  });
}

async function devicesChange(io: Io, op: 'add' | 'remove', uid: string, device: string, o: DevicesOptions): Promise<number> {
  const body = { uid, token: device, ...(o.transport !== undefined ? { transport: o.transport } : {}) };
  const answer = (await callApi(o, op === 'add' ? 'POST' : 'DELETE', '/v1/devices', body)) as {
    added?: boolean;
    removed?: boolean;
    transport: string;
    token: string;
  };
  if (op === 'add') {
    io.out(`${answer.added ? 'registered' : 'already registered'}: ${uid} ${answer.transport} ${answer.token}\n`);
    return EXIT.delivered;
  }
  io.out(answer.removed ? `removed: ${uid} ${answer.transport} ${answer.token}\n` : `not registered for ${uid}: ${answer.token}\n`);
  return answer.removed ? EXIT.delivered : EXIT.none;
}

async function devicesList(io: Io, o: DevicesOptions): Promise<number> {
  if (o.retired) return retiredList(io, o);
  const q = new URLSearchParams();
  if (o.uid !== undefined) q.set('uid', o.uid);
  if (o.transport !== undefined) q.set('transport', o.transport);
  const { devices } = (await callApi(o, 'GET', `/v1/devices${q.size ? `?${q}` : ''}`)) as { devices: DeviceEntry[] };
  if (o.json) io.out(`${JSON.stringify(devices)}\n`);
  else if (devices.length === 0) io.err('no device tokens (configure a push transport under transports:, then devices: or notify devices add)\n');
  else io.out(table(['UID', 'TRANSPORT', 'TOKEN', 'SOURCE'], devices.map((d) => [d.uid, d.transport, d.token, d.source])));
  return EXIT.delivered;
}

async function retiredList(io: Io, o: DevicesOptions): Promise<number> {
  if (o.uid !== undefined) throw new CliError('--retired lists by --transport only: a retired token is not kept with its uid');
  const q = new URLSearchParams({ retired: '1' });
  if (o.transport !== undefined) q.set('transport', o.transport);
  const { retired } = (await callApi(o, 'GET', `/v1/devices?${q}`)) as { retired: RetiredDevice[] };
  if (o.json) io.out(`${JSON.stringify(retired)}\n`);
  else if (retired.length === 0) io.err('no retired device tokens\n');
  else io.out(table(['TRANSPORT', 'TOKEN', 'REASON', 'RETIRED'], retired.map((d) => [d.transport, d.token, d.reason, d.retiredAt])));
  return EXIT.delivered;
}

/** A header row and rows, tab-separated (`cut -f`, `column -t -s $'\t'` read them). */
function table(header: string[], rows: string[][]): string {
  return [header, ...rows].map((r) => `${r.join('\t')}\n`).join('');
}
