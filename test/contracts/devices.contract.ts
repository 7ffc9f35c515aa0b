import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import type { DeviceDirectory } from '../../src/store/devices.js';
import type { Uid } from '../../src/types.js';

export interface DevicesSubject {
  directory: DeviceDirectory;
  /** The same backend as a new process opens it (after this one stopped). */
  reopen(): Promise<DeviceDirectory>;
}

export type MakeDevices = (t: TestContext) => DevicesSubject | Promise<DevicesSubject>;

/** A seed: transport -> uid -> tokens. */
function seedOf(tokens: Record<string, Record<Uid, string[]>>): Map<string, Map<Uid, string[]>> {
  return new Map(Object.entries(tokens).map(([transport, byUid]) => [transport, new Map(Object.entries(byUid))]));
}

const sorted = <T>(xs: readonly T[]): T[] => [...xs].sort();

/**
 * The DeviceDirectory contract (src/store/devices.ts), against the interface only. Every test
 * seeds the transports it uses first, as a node does at start (the YAML may list none).
 * `options.skip` skips every test with that reason (a backend whose server is not installed).
 */
export function devicesContract(name: string, make: MakeDevices, options: { skip?: string | false } = {}): void {
  const NONE = seedOf({ apns: {}, hook: {} });

  async function open(t: TestContext) {
    const s = await make(t);
    await s.directory.seed(NONE);
    return s;
  }

  test(`${name} contract: register adds a token to a uid (added once); targets/has/list/count read it`, options, async (t) => {
    const { directory: d } = await open(t);
    assert.deepEqual(await d.register('apns', 'alice', 'tok-a1'), { added: true });
    assert.deepEqual(await d.register('apns', 'alice', 'tok-a1'), { added: false }, 'registering again adds nothing');
    assert.deepEqual(await d.register('apns', 'alice', 'tok-a2'), { added: true });
    assert.deepEqual(await d.register('apns', 'bob', 'tok-b1'), { added: true });
    assert.deepEqual(sorted(await d.targets('apns', 'alice')), ['tok-a1', 'tok-a2']);
    assert.equal(await d.has('apns', 'alice'), true);
    assert.equal(await d.has('apns', 'carol'), false);
    assert.deepEqual(await d.targets('apns', 'carol'), []);
    assert.equal(await d.has('hook', 'alice'), false, 'per transport');
    assert.deepEqual(sorted((await d.list('apns')).map((e) => `${e.uid}/${e.token}`)), ['alice/tok-a1', 'alice/tok-a2', 'bob/tok-b1']);
    assert.deepEqual((await d.list('apns', 'bob')).map((e) => `${e.uid}/${e.token}`), ['bob/tok-b1']);
    assert.deepEqual(await d.list('apns', 'carol'), []);
    assert.deepEqual(await d.count('apns'), { devices: 3, uids: 2 });
    assert.deepEqual(await d.count('hook'), { devices: 0, uids: 0 });
  });

  test(`${name} contract: a token belongs to at most one uid per transport: registering it for another uid moves it`, options, async (t) => {
    const { directory: d } = await open(t);
    await d.register('apns', 'alice', 'tok');
    await d.register('hook', 'alice', 'tok');
    assert.deepEqual(await d.register('apns', 'bob', 'tok'), { added: true });
    assert.deepEqual(await d.targets('apns', 'alice'), [], 'alice no longer has it');
    assert.equal(await d.has('apns', 'alice'), false);
    assert.deepEqual(await d.targets('apns', 'bob'), ['tok']);
    assert.deepEqual(await d.targets('hook', 'alice'), ['tok'], 'the same token of another transport stays');
    assert.deepEqual(await d.count('apns'), { devices: 1, uids: 1 });
  });

  test(`${name} contract: remove takes a token from its uid (false when the uid did not have it)`, options, async (t) => {
    const { directory: d } = await open(t);
    await d.register('apns', 'alice', 'tok-a');
    await d.register('apns', 'bob', 'tok-b');
    assert.equal(await d.remove('apns', 'alice', 'tok-b'), false, "bob's token is not alice's to remove");
    assert.deepEqual(await d.targets('apns', 'bob'), ['tok-b']);
    assert.equal(await d.remove('apns', 'alice', 'unknown'), false);
    assert.equal(await d.remove('hook', 'alice', 'tok-a'), false, 'another transport');
    assert.equal(await d.remove('apns', 'alice', 'tok-a'), true);
    assert.deepEqual(await d.targets('apns', 'alice'), []);
    assert.equal(await d.remove('apns', 'alice', 'tok-a'), false, 'a second remove finds nothing');
  });

  test(`${name} contract: a YAML token removed stays removed when the YAML is seeded again`, options, async (t) => {
    const { directory: d } = await open(t);
    const yaml = seedOf({ apns: { alice: ['yaml-1', 'yaml-2'] } });
    await d.seed(yaml);
    assert.deepEqual(sorted(await d.targets('apns', 'alice')), ['yaml-1', 'yaml-2']);
    assert.equal(await d.remove('apns', 'alice', 'yaml-1'), true);
    await d.seed(yaml);
    assert.deepEqual(await d.targets('apns', 'alice'), ['yaml-2']);
  });

  test(`${name} contract: retire takes a token out of service and answers fresh only for the first retirement`, options, async (t) => {
    const { directory: d } = await open(t);
    await d.register('apns', 'alice', 'dead');
    await d.register('apns', 'alice', 'alive');
    assert.equal(await d.isRetired('apns', 'dead'), false);
    assert.deepEqual(await d.retire('apns', 'dead', '410 Unregistered'), { uid: 'alice', fresh: true });
    assert.deepEqual(await d.targets('apns', 'alice'), ['alive']);
    assert.equal(await d.isRetired('apns', 'dead'), true);
    assert.equal(await d.isRetired('hook', 'dead'), false, 'per transport');
    assert.deepEqual(await d.retire('apns', 'dead', 'again'), { uid: undefined, fresh: false }, 'a second retirement is not fresh');
    const together = await Promise.all([d.retire('apns', 'alive', 'a'), d.retire('apns', 'alive', 'b')]);
    assert.deepEqual(together.map((r) => r.fresh), [true, false], 'of concurrent retirements, one is fresh');
    const entries = await d.retired('apns');
    assert.deepEqual(sorted(entries.map((e) => `${e.transport}/${e.token}/${e.reason}`)), ['apns/alive/a', 'apns/dead/410 Unregistered'], 'the first reason is kept');
    for (const e of entries) assert.ok(Number.isFinite(e.at) && e.at > 0, `at is a time: ${e.at}`);
    await d.retire('hook', 'other', 'gone');
    assert.deepEqual(sorted((await d.retired()).map((e) => `${e.transport}/${e.token}`)), ['apns/alive', 'apns/dead', 'hook/other']);
    assert.deepEqual((await d.retired('hook')).map((e) => e.token), ['other']);
  });

  test(`${name} contract: a retired token stays out of a later seed; registering it again brings it back`, options, async (t) => {
    const { directory: d } = await open(t);
    const yaml = seedOf({ apns: { alice: ['yaml-tok'] } });
    await d.seed(yaml);
    assert.deepEqual(await d.retire('apns', 'yaml-tok', '410'), { uid: 'alice', fresh: true });
    await d.seed(yaml);
    assert.deepEqual(await d.targets('apns', 'alice'), [], 'retired: the YAML does not bring it back');
    assert.deepEqual(await d.register('apns', 'alice', 'yaml-tok'), { added: true });
    assert.equal(await d.isRetired('apns', 'yaml-tok'), false);
    assert.deepEqual(await d.targets('apns', 'alice'), ['yaml-tok']);
    assert.deepEqual(await d.retired('apns'), []);
    await d.seed(yaml);
    assert.deepEqual(await d.targets('apns', 'alice'), ['yaml-tok'], 'and it stays after the next seed');
  });

  test(`${name} contract: seed replaces the previous seed and keeps run-time registrations`, options, async (t) => {
    const { directory: d } = await open(t);
    await d.seed(seedOf({ apns: { alice: ['y1'], bob: ['y2'] }, hook: { carol: ['h1'] } }));
    await d.register('apns', 'dave', 'runtime');
    await d.seed(seedOf({ apns: { alice: ['y3'] }, hook: { carol: ['h1'] } }));
    assert.deepEqual(await d.targets('apns', 'alice'), ['y3']);
    assert.deepEqual(await d.targets('apns', 'bob'), [], 'no longer listed: gone');
    assert.deepEqual(await d.targets('apns', 'dave'), ['runtime'], 'a registration is not part of the seed');
    assert.deepEqual(await d.targets('hook', 'carol'), ['h1']);
  });

  test(`${name} contract: registrations, removals and retirements survive reopening`, options, async (t) => {
    const s = await open(t);
    const d = s.directory;
    const yaml = seedOf({ apns: { alice: ['yaml-1', 'yaml-2'] }, hook: {} });
    await d.seed(yaml);
    await d.register('apns', 'alice', 'run-1');
    await d.register('apns', 'bob', 'run-2');
    await d.register('apns', 'bob', 'moved');
    await d.register('apns', 'carol', 'moved');
    await d.remove('apns', 'alice', 'yaml-1');
    await d.retire('apns', 'run-2', '410 Unregistered');
    const d2 = await s.reopen();
    await d2.seed(yaml);
    assert.deepEqual(sorted(await d2.targets('apns', 'alice')), ['run-1', 'yaml-2']);
    assert.deepEqual(await d2.targets('apns', 'bob'), []);
    assert.deepEqual(await d2.targets('apns', 'carol'), ['moved']);
    assert.equal(await d2.isRetired('apns', 'run-2'), true);
    assert.deepEqual(await d2.retire('apns', 'run-2', 'again'), { uid: undefined, fresh: false }, 'retired once, across restarts');
    assert.deepEqual((await d2.retired('apns')).find((e) => e.token === 'run-2')?.reason, '410 Unregistered');
  });
}
