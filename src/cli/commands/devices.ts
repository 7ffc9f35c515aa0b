import type { Command } from 'commander';
import type { DeviceEntry } from '../../push/devices.js';
import { type ApiOptions, apiOptions, callApi } from '../api-client.js';
import { EXIT, type Io, type Result } from '../io.js';

interface DevicesOptions extends ApiOptions {
  transport?: string;
  uid?: string;
  json?: boolean;
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
      .description('list device tokens: uid, transport, token, source (config or api)')
      .option('-u, --uid <uid>', 'only this uid')
      .option('--transport <name>', 'only this transport')
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
  const q = new URLSearchParams();
  if (o.uid !== undefined) q.set('uid', o.uid);
  if (o.transport !== undefined) q.set('transport', o.transport);
  const { devices } = (await callApi(o, 'GET', `/v1/devices${q.size ? `?${q}` : ''}`)) as { devices: DeviceEntry[] };
  if (o.json) io.out(`${JSON.stringify(devices)}\n`);
  else if (devices.length === 0) io.err('no device tokens (configure a push transport under transports:, then devices: or notify devices add)\n');
  else for (const d of devices) io.out(`${d.uid}\t${d.transport}\t${d.token}\t${d.source}\n`);
  return EXIT.delivered;
}
