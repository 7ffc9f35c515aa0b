import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryRegistry, MemoryTargetIndex } from '../../src/store/target-index.js';

test('MemoryTargetIndex: add returns true only when the pair is new', () => {
  const idx = new MemoryTargetIndex();
  assert.equal(idx.add('uid1', 's1'), true);
  assert.equal(idx.add('uid1', 's1'), false, 'same pair again');
  assert.equal(idx.add('uid1', 's2'), true, 'a second target of the same uid');
  assert.equal(idx.add('uid1', 's2'), false, 'same pair again, uid with several targets');
  assert.deepEqual(idx.targets('uid1').sort(), ['s1', 's2']);
  assert.equal(idx.targetCount, 2);
  assert.equal(idx.uidCount, 1);
});

test('MemoryTargetIndex: several targets per uid, none evicts another', () => {
  const idx = new MemoryTargetIndex();
  for (const t of ['s1', 's2', 's3']) idx.add('uid1', t);
  assert.deepEqual(idx.targets('uid1').sort(), ['s1', 's2', 's3']);
  for (const t of ['s1', 's2', 's3']) assert.equal(idx.uidOf(t), 'uid1');
  assert.equal(idx.targetCount, 3);
  assert.equal(idx.uidCount, 1);
});

test('MemoryTargetIndex: adding a target under another uid moves it', () => {
  const idx = new MemoryTargetIndex();
  idx.add('a', 's1');
  assert.equal(idx.add('b', 's1'), true, 'the move is a new pair');
  assert.equal(idx.uidOf('s1'), 'b');
  assert.equal(idx.has('a'), false, 'a lost its only target');
  assert.deepEqual(idx.targets('a'), []);
  assert.deepEqual(idx.targets('b'), ['s1']);
  assert.equal(idx.targetCount, 1);
  assert.equal(idx.uidCount, 1);

  // Moving one of several targets leaves the others with the old uid.
  idx.add('b', 's2');
  idx.add('b', 's3');
  idx.add('c', 's2');
  assert.deepEqual(idx.targets('b').sort(), ['s1', 's3']);
  assert.deepEqual(idx.targets('c'), ['s2']);
  assert.equal(idx.uidOf('s2'), 'c');
  assert.equal(idx.targetCount, 3);
  assert.equal(idx.uidCount, 2);
  // And the remaining ones still remove cleanly (the multi-target -> single-target path).
  assert.equal(idx.remove('s1'), 'b');
  assert.equal(idx.remove('s3'), 'b');
  assert.equal(idx.has('b'), false);
});

test('MemoryTargetIndex: remove by target returns the uid; unknown targets return undefined', () => {
  const idx = new MemoryTargetIndex();
  idx.add('uid1', 's1');
  idx.add('uid2', 's2');
  assert.equal(idx.remove('s1'), 'uid1');
  assert.equal(idx.remove('s1'), undefined, 'already removed');
  assert.equal(idx.remove('nope'), undefined);
  assert.equal(idx.uidOf('s1'), undefined);
  assert.equal(idx.uidOf('s2'), 'uid2', 'other uids untouched');
  assert.equal(idx.targetCount, 1);
});

test('MemoryTargetIndex: removing an old target never unbinds the newer ones of the same uid', () => {
  const idx = new MemoryTargetIndex();
  idx.add('uid1', 'old');
  idx.add('uid1', 'new');
  assert.equal(idx.remove('old'), 'uid1');
  assert.equal(idx.has('uid1'), true);
  assert.deepEqual(idx.targets('uid1'), ['new']);
  assert.equal(idx.uidOf('new'), 'uid1');
});

test('MemoryTargetIndex: a uid disappears when its last target goes', () => {
  const idx = new MemoryTargetIndex();
  idx.add('uid1', 's1');
  idx.add('uid1', 's2');
  idx.add('uid1', 's3');
  idx.remove('s2');
  assert.equal(idx.has('uid1'), true);
  assert.deepEqual(idx.targets('uid1').sort(), ['s1', 's3']);
  idx.remove('s3');
  assert.equal(idx.has('uid1'), true);
  assert.deepEqual(idx.targets('uid1'), ['s1']);
  idx.remove('s1');
  assert.equal(idx.has('uid1'), false);
  assert.deepEqual(idx.targets('uid1'), []);
  assert.deepEqual([...idx.uids()], []);
  assert.equal(idx.targetCount, 0);
  assert.equal(idx.uidCount, 0);
  // And it can come back.
  assert.equal(idx.add('uid1', 's1'), true);
  assert.deepEqual(idx.targets('uid1'), ['s1']);
});

test('MemoryTargetIndex: targets() is a snapshot, safe while targets come and go', () => {
  const idx = new MemoryTargetIndex();
  idx.add('uid1', 's1');
  const one = idx.targets('uid1');
  idx.add('uid1', 's2');
  assert.deepEqual(one, ['s1'], 'single-target snapshot unchanged by an add');

  const two = idx.targets('uid1');
  idx.add('uid1', 's3');
  idx.remove('s1');
  assert.deepEqual(two.sort(), ['s1', 's2'], 'multi-target snapshot unchanged');

  // Removing every target while iterating a snapshot visits each exactly once.
  const seen: string[] = [];
  for (const t of idx.targets('uid1')) {
    seen.push(t);
    idx.remove(t);
    idx.add('other', `${t}-moved`);
  }
  assert.deepEqual(seen.sort(), ['s2', 's3']);
  assert.equal(idx.has('uid1'), false);

  // Mutating the returned array does not touch the index.
  const snap = idx.targets('other');
  snap.push('bogus');
  snap.length = 0;
  assert.deepEqual(idx.targets('other').sort(), ['s2-moved', 's3-moved']);
  assert.equal(idx.uidOf('bogus'), undefined);
});

test('MemoryTargetIndex: counts and uids() across many uids', () => {
  const idx = new MemoryTargetIndex();
  for (let u = 0; u < 10; u++) for (let s = 0; s <= u % 3; s++) idx.add(`u${u}`, `u${u}-s${s}`);
  // u%3: 0 -> 1 target, 1 -> 2, 2 -> 3. u=0..9: 4 uids with 1, 3 with 2, 3 with 3 = 4 + 6 + 9.
  assert.equal(idx.targetCount, 19);
  assert.equal(idx.uidCount, 10);
  assert.deepEqual([...idx.uids()].sort(), Array.from({ length: 10 }, (_, u) => `u${u}`).sort());
  for (let u = 0; u < 10; u++) assert.equal(idx.targets(`u${u}`).length, (u % 3) + 1);
  for (let u = 0; u < 10; u += 2) for (const t of idx.targets(`u${u}`)) idx.remove(t);
  assert.equal(idx.uidCount, 5);
  assert.deepEqual([...idx.uids()].sort(), ['u1', 'u3', 'u5', 'u7', 'u9']);
  assert.equal(idx.targetCount, [1, 3, 5, 7, 9].reduce((n, u) => n + (u % 3) + 1, 0));
  assert.equal(idx.has('u0'), false);
  assert.equal(idx.has('u1'), true);
});

test('MemoryTargetIndex: uids and targets are opaque strings (unicode, empty-looking, prototype names)', () => {
  const idx = new MemoryTargetIndex();
  idx.add('__proto__', 'constructor');
  idx.add('ünï €', 'toString');
  assert.equal(idx.uidOf('constructor'), '__proto__');
  assert.deepEqual(idx.targets('__proto__'), ['constructor']);
  assert.equal(idx.has('hasOwnProperty'), false);
  assert.equal(idx.uidOf('valueOf'), undefined);
  assert.deepEqual(idx.targets('ünï €'), ['toString']);
  assert.equal(idx.remove('toString'), 'ünï €');
  assert.equal(idx.uidCount, 1);
});

test('MemoryRegistry: index() creates one index per transport and returns the same one after', () => {
  const reg = new MemoryRegistry();
  const ws = reg.index('websocket');
  assert.equal(reg.index('websocket'), ws);
  assert.notEqual(reg.index('apns'), ws);
  ws.add('uid1', 's1');
  assert.equal(reg.index('websocket').has('uid1'), true);
  assert.equal(reg.index('apns').has('uid1'), false, 'indexes are independent');
});

test('MemoryRegistry: where() lists the uid targets by transport, leaving out transports with none', () => {
  const reg = new MemoryRegistry();
  reg.index('websocket').add('uid1', 's1');
  reg.index('websocket').add('uid1', 's2');
  reg.index('apns').add('uid1', 'tok1');
  reg.index('apns').add('uid2', 'tok2');
  reg.index('fcm'); // created, empty
  const w = reg.where('uid1');
  assert.deepEqual(Object.keys(w).sort(), ['apns', 'websocket']);
  assert.deepEqual(w.websocket?.sort(), ['s1', 's2']);
  assert.deepEqual(w.apns, ['tok1']);
  assert.deepEqual(reg.where('uid2'), { apns: ['tok2'] });
  assert.deepEqual(reg.where('nobody'), {});

  reg.index('apns').remove('tok1');
  assert.deepEqual(Object.keys(reg.where('uid1')), ['websocket'], 'a transport whose last target went is left out');
  // where() is a snapshot too.
  const before = reg.where('uid1');
  reg.index('websocket').remove('s1');
  assert.deepEqual(before.websocket?.sort(), ['s1', 's2']);
});

test('MemoryRegistry: uids() is the union across transports, without duplicates', () => {
  const reg = new MemoryRegistry();
  assert.deepEqual([...reg.uids()], []);
  reg.index('websocket').add('uid1', 's1');
  reg.index('websocket').add('uid2', 's2');
  reg.index('apns').add('uid2', 'tok2');
  reg.index('apns').add('uid3', 'tok3');
  reg.index('empty');
  const all = reg.uids();
  assert.ok(all instanceof Set);
  assert.deepEqual([...all].sort(), ['uid1', 'uid2', 'uid3']);

  reg.index('websocket').remove('s2');
  assert.deepEqual([...reg.uids()].sort(), ['uid1', 'uid2', 'uid3'], 'uid2 still reachable through apns');
  reg.index('apns').remove('tok2');
  assert.deepEqual([...reg.uids()].sort(), ['uid1', 'uid3']);
  // The returned set is a copy.
  all.clear();
  assert.equal(reg.uids().size, 2);
});
