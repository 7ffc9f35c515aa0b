import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NotifyError } from '../src/errors.js';
import { MAX_UID_BYTES, checkUid, messageFromFields, messageFromLine, parseAudience } from '../src/message.js';

/** An assert.throws matcher for a NOTIFY_ERR_INVALID_MESSAGE with this exact message. */
function invalid(message: string) {
  return (err: unknown): true => {
    assert.ok(err instanceof NotifyError, `expected a NotifyError, got ${String(err)}`);
    assert.equal(err.code, 'NOTIFY_ERR_INVALID_MESSAGE');
    assert.equal(err.status, 400);
    assert.equal(err.message, message);
    return true;
  };
}

/** What the Text ingress does with a line: parse it, then build the message from line and object. */
function fromLine(line: string) {
  return messageFromLine(line, JSON.parse(line) as Record<string, unknown>);
}

// ---------------------------------------------------------------------------------------------
// checkUid

test('checkUid: returns a valid uid unchanged', () => {
  assert.equal(checkUid('uid1'), 'uid1');
  assert.equal(checkUid(' spaced uid '), ' spaced uid ', 'no trimming');
  assert.equal(checkUid('ünïcødé 😀'), 'ünïcødé 😀');
  assert.equal(checkUid('x'), 'x');
});

test('checkUid: a non-string is rejected, named by `where`', () => {
  for (const v of [5, null, undefined, true, {}, ['a'], 0]) {
    assert.throws(() => checkUid(v), invalid('"uid" must be a string or an array of strings'), `value ${JSON.stringify(v)}`);
  }
  assert.throws(() => checkUid(5, '"uids[2]"'), invalid('"uids[2]" must be a string or an array of strings'));
});

test('checkUid: the empty string is rejected', () => {
  assert.throws(() => checkUid(''), invalid('"uid" must not be empty'));
  assert.throws(() => checkUid('', '"uid[3]"'), invalid('"uid[3]" must not be empty'));
});

test('checkUid: MAX_UID_BYTES is 256 and counts UTF-8 bytes, not characters', () => {
  assert.equal(MAX_UID_BYTES, 256);
  const tooLong = invalid(`"uid" is longer than ${MAX_UID_BYTES} bytes`);

  // ASCII: one byte per character.
  assert.equal(checkUid('a'.repeat(MAX_UID_BYTES)).length, MAX_UID_BYTES);
  assert.throws(() => checkUid('a'.repeat(MAX_UID_BYTES + 1)), tooLong);

  // 2-byte characters: 128 of them are exactly 256 bytes, 129 are 258.
  assert.equal(Buffer.byteLength('é'.repeat(128)), 256);
  assert.equal(checkUid('é'.repeat(128)), 'é'.repeat(128));
  assert.throws(() => checkUid('é'.repeat(129)), tooLong);

  // 3-byte characters: 85 are 255 bytes (ok), 86 are 258 (only 86 UTF-16 units long).
  assert.equal(checkUid('€'.repeat(85)), '€'.repeat(85));
  assert.throws(() => checkUid('€'.repeat(86)), tooLong);
  // 255 bytes of € plus one ASCII byte: exactly 256.
  assert.equal(checkUid(`${'€'.repeat(85)}a`), `${'€'.repeat(85)}a`);
  assert.throws(() => checkUid(`${'€'.repeat(85)}ab`), tooLong);

  // 4-byte characters (two UTF-16 units each): 64 are exactly 256 bytes, 65 are 260.
  assert.equal(checkUid('😀'.repeat(64)), '😀'.repeat(64));
  assert.throws(() => checkUid('😀'.repeat(65)), tooLong);

  // The message names `where`.
  assert.throws(() => checkUid('a'.repeat(300), '"uids[1]"'), invalid(`"uids[1]" is longer than ${MAX_UID_BYTES} bytes`));
});

// ---------------------------------------------------------------------------------------------
// parseAudience

test('parseAudience: uid as a string, an array of strings, uids, or broadcast', () => {
  assert.deepEqual(parseAudience({ uid: 'uid1' }), { uids: ['uid1'] });
  assert.deepEqual(parseAudience({ uid: ['uid1', 'uid2'] }), { uids: ['uid1', 'uid2'] });
  assert.deepEqual(parseAudience({ uids: ['a', 'b', 'c'] }), { uids: ['a', 'b', 'c'] });
  assert.deepEqual(parseAudience({ broadcast: true }), { broadcast: true });
  // Other keys do not matter to the audience.
  assert.deepEqual(parseAudience({ uid: 'uid1', msg: 'hi', percent: '88%' }), { uids: ['uid1'] });
  assert.deepEqual(parseAudience({ broadcast: true, msg: 'hi' }), { broadcast: true });
});

test('parseAudience: no address at all', () => {
  const missing = invalid('missing "uid" (or "broadcast": true)');
  assert.throws(() => parseAudience({}), missing);
  assert.throws(() => parseAudience({ msg: 'x' }), missing);
  assert.throws(() => parseAudience({ uid: undefined, msg: 'x' }), missing);
});

test('parseAudience: more than one of uid, uids, broadcast', () => {
  assert.throws(() => parseAudience({ uid: 'a', broadcast: true }), invalid('give only one of "uid", "broadcast"'));
  assert.throws(() => parseAudience({ uid: 'a', uids: ['b'] }), invalid('give only one of "uid", "uids"'));
  assert.throws(() => parseAudience({ uids: ['b'], broadcast: true }), invalid('give only one of "uids", "broadcast"'));
  assert.throws(
    () => parseAudience({ broadcast: true, uids: ['b'], uid: 'a' }),
    invalid('give only one of "uid", "uids", "broadcast"'),
  );
});

test('parseAudience: broadcast must be exactly true', () => {
  for (const v of [false, 'true', 1, null, {}, []]) {
    assert.throws(() => parseAudience({ broadcast: v }), invalid('"broadcast" must be true when given'), `broadcast ${JSON.stringify(v)}`);
  }
});

test('parseAudience: bad uid values', () => {
  const notString = invalid('"uid" must be a string or an array of strings');
  assert.throws(() => parseAudience({ uid: 5 }), notString);
  assert.throws(() => parseAudience({ uid: { a: 1 } }), notString);
  assert.throws(() => parseAudience({ uid: null }), notString);
  assert.throws(() => parseAudience({ uid: true }), notString);
  assert.throws(() => parseAudience({ uid: '' }), invalid('"uid" must not be empty'));
  assert.throws(() => parseAudience({ uid: [] }), invalid('"uid" must not be an empty array'));
  assert.throws(() => parseAudience({ uid: [1] }), invalid('"uid[0]" must be a string or an array of strings'));
  assert.throws(() => parseAudience({ uid: ['a', 5] }), invalid('"uid[1]" must be a string or an array of strings'));
  assert.throws(() => parseAudience({ uid: [['a']] }), invalid('"uid[0]" must be a string or an array of strings'));
  assert.throws(() => parseAudience({ uid: ['a', ''] }), invalid('"uid[1]" must not be empty'));
  assert.throws(() => parseAudience({ uid: 'a'.repeat(MAX_UID_BYTES + 1) }), invalid(`"uid" is longer than ${MAX_UID_BYTES} bytes`));
  assert.throws(
    () => parseAudience({ uid: ['ok', '€'.repeat(86)] }),
    invalid(`"uid[1]" is longer than ${MAX_UID_BYTES} bytes`),
  );
  // The same rules under "uids", named as such.
  assert.throws(() => parseAudience({ uids: [] }), invalid('"uids" must not be an empty array'));
  assert.throws(() => parseAudience({ uids: ['a', null] }), invalid('"uids[1]" must be a string or an array of strings'));
  assert.throws(() => parseAudience({ uids: 7 }), invalid('"uids" must be a string or an array of strings'));
});

test('parseAudience: a uid of exactly MAX_UID_BYTES bytes is accepted', () => {
  const uid = '😀'.repeat(MAX_UID_BYTES / 4);
  assert.equal(Buffer.byteLength(uid), MAX_UID_BYTES);
  assert.deepEqual(parseAudience({ uid }), { uids: [uid] });
  assert.deepEqual(parseAudience({ uid: [uid, 'b'] }), { uids: [uid, 'b'] });
});

// ---------------------------------------------------------------------------------------------
// messageFromLine

test('messageFromLine: the frame is the line itself, byte for byte', () => {
  const lines = [
    '{"uid":"uid1","percent":"88%"}',
    '  {"uid" : "uid1",   "msg":"spaced"}  ',
    '{"uid":"uid1","msg":"caf\\u00e9 \\ud83d\\ude00"}',
    '{"uid":"uid1","msg":"café 😀","nested":{"a":[1,2,{"b":null}]}}',
    '{"broadcast":true,"msg":"all"}',
  ];
  for (const line of lines) assert.equal(fromLine(line).frame, line);
});

test('messageFromLine: every key but the address and the fields is data', () => {
  const m = fromLine('{"uid":"uid1","percent":"88%"}');
  assert.deepEqual(m, { frame: '{"uid":"uid1","percent":"88%"}', json: true, data: { percent: '88%' } });

  const m2 = fromLine('{"uid":["a","b"],"title":"T","msg":"M","badge":3,"sound":"ping","percent":"88%","nested":{"x":[1,true,null]},"n":0}');
  assert.equal(m2.title, 'T');
  assert.equal(m2.msg, 'M');
  assert.equal(m2.badge, 3);
  assert.equal(m2.sound, 'ping');
  assert.deepEqual(m2.data, { percent: '88%', nested: { x: [1, true, null] }, n: 0 });
});

test('messageFromLine: reserved keys never become data', () => {
  for (const line of [
    '{"uid":"uid1","msg":"hi"}',
    '{"uids":["uid1"],"title":"t"}',
    '{"broadcast":true,"badge":0,"sound":"s"}',
    '{"uid":"uid1","title":"t","msg":"m","badge":1,"sound":"s"}',
  ]) {
    const m = fromLine(line);
    assert.equal(m.data, undefined, `no data for ${line}`);
    assert.equal(m.frame, line);
  }
  // Data values may be any JSON, including null and falsy ones.
  assert.deepEqual(fromLine('{"uid":"u","a":null,"b":false,"c":"","d":0}').data, { a: null, b: false, c: '', d: 0 });
});

test('messageFromLine: a line with the address alone has no fields and no data', () => {
  const m = fromLine('{"uid":"uid1"}');
  assert.deepEqual(m, { frame: '{"uid":"uid1"}', json: true });
});

test('messageFromLine: field types are checked', () => {
  assert.throws(() => fromLine('{"uid":"u","title":5}'), invalid('"title" must be a string'));
  assert.throws(() => fromLine('{"uid":"u","msg":null}'), invalid('"msg" must be a string'));
  assert.throws(() => fromLine('{"uid":"u","msg":{"a":1}}'), invalid('"msg" must be a string'));
  assert.throws(() => fromLine('{"uid":"u","sound":true}'), invalid('"sound" must be a string'));
  const badBadge = invalid('"badge" must be a non-negative integer');
  for (const b of ['-1', '1.5', '"3"', 'null', 'true', '[1]']) {
    assert.throws(() => fromLine(`{"uid":"u","badge":${b}}`), badBadge, `badge ${b}`);
  }
  assert.equal(fromLine('{"uid":"u","badge":0}').badge, 0);
  assert.equal(fromLine('{"uid":"u","badge":99}').badge, 99);
});

// ---------------------------------------------------------------------------------------------
// messageFromFields

test('messageFromFields: msg alone is the frame, byte for byte', () => {
  for (const msg of ['hi', 'café 😀', '{"looks":"like json"}', '  padded\n\ttext  ', '"quoted"', '', '\u2028']) {
    const m = messageFromFields({ msg });
    assert.equal(m.frame, msg);
    assert.deepEqual(m, { frame: msg, json: false, msg });
  }
});

test('messageFromFields: the address keys are not part of the message', () => {
  assert.deepEqual(messageFromFields({ uid: 'uid1', msg: 'hi' }), { frame: 'hi', json: false, msg: 'hi' });
  assert.deepEqual(messageFromFields({ broadcast: true, msg: 'hi' }), { frame: 'hi', json: false, msg: 'hi' });
  const m = messageFromFields({ uids: ['a'], title: 'T' });
  assert.deepEqual(JSON.parse(m.frame), { title: 'T' });
});

test('messageFromFields: anything more than msg is framed as one flat JSON object of the fields set plus data', () => {
  const cases: [Record<string, unknown>, Record<string, unknown>][] = [
    [{ msg: 'hi', title: 'T' }, { msg: 'hi', title: 'T' }],
    [{ title: 'T' }, { title: 'T' }],
    [{ msg: 'hi', badge: 3 }, { msg: 'hi', badge: 3 }],
    [{ msg: 'hi', sound: 'ping' }, { msg: 'hi', sound: 'ping' }],
    [{ msg: 'hi', badge: 0 }, { msg: 'hi', badge: 0 }],
    [{ data: { percent: '88%' } }, { percent: '88%' }],
    [{ msg: 'hi', data: { percent: '88%' } }, { msg: 'hi', percent: '88%' }],
    [
      { title: 'T', msg: 'M', badge: 2, sound: 's', data: { a: 1, nested: { b: [1, 2] } } },
      { title: 'T', msg: 'M', badge: 2, sound: 's', a: 1, nested: { b: [1, 2] } },
    ],
  ];
  for (const [input, frame] of cases) {
    const m = messageFromFields(input);
    assert.deepEqual(JSON.parse(m.frame), frame, `frame of ${JSON.stringify(input)}`);
    assert.ok(!('data' in (JSON.parse(m.frame) as object)), 'data is flattened, not nested');
  }
  // Exact bytes for a simple case: compact JSON, no spaces.
  assert.equal(messageFromFields({ data: { percent: '88%' } }).frame, '{"percent":"88%"}');
  assert.equal(messageFromFields({ msg: 'hi', badge: 3 }).frame, '{"msg":"hi","badge":3}');
});

test('messageFromFields: fields and data are carried on the message', () => {
  const m = messageFromFields({ title: 'T', msg: 'M', badge: 2, sound: 's', data: { percent: '88%' } });
  assert.equal(m.title, 'T');
  assert.equal(m.msg, 'M');
  assert.equal(m.badge, 2);
  assert.equal(m.sound, 's');
  assert.deepEqual(m.data, { percent: '88%' });
  // Only what was given is set.
  assert.deepEqual(Object.keys(messageFromFields({ title: 'T' })).sort(), ['frame', 'json', 'title']);
});

test('messageFromFields: empty data counts as no data', () => {
  assert.deepEqual(messageFromFields({ msg: 'hi', data: {} }), { frame: 'hi', json: false, msg: 'hi' });
  const m = messageFromFields({ title: 'T', data: {} });
  assert.equal(m.data, undefined);
  assert.deepEqual(JSON.parse(m.frame), { title: 'T' });
});

test('messageFromFields: a message needs msg, title or data', () => {
  const empty = invalid('a message needs "msg", "title" or "data"');
  assert.throws(() => messageFromFields({}), empty);
  assert.throws(() => messageFromFields({ data: {} }), empty);
  assert.throws(() => messageFromFields({ badge: 1 }), empty);
  assert.throws(() => messageFromFields({ sound: 'ping' }), empty);
  assert.throws(() => messageFromFields({ uid: 'uid1' }), empty);
});

test('messageFromFields: data must be a JSON object', () => {
  const notObject = invalid('"data" must be a JSON object');
  for (const data of [null, [], ['a'], 'str', 5, true]) {
    assert.throws(() => messageFromFields({ msg: 'hi', data }), notObject, `data ${JSON.stringify(data)}`);
  }
});

test('messageFromFields: data must not use a reserved key', () => {
  for (const key of ['title', 'msg', 'badge', 'sound', 'uid', 'uids', 'broadcast', 'data']) {
    assert.throws(
      () => messageFromFields({ msg: 'hi', data: { ok: 1, [key]: 'x' } }),
      invalid(`"data" must not use the reserved key "${key}"`),
      `reserved key ${key}`,
    );
  }
});

test('messageFromFields: field types are checked', () => {
  assert.throws(() => messageFromFields({ title: 5 }), invalid('"title" must be a string'));
  assert.throws(() => messageFromFields({ msg: 5 }), invalid('"msg" must be a string'));
  assert.throws(() => messageFromFields({ msg: 'hi', sound: 1 }), invalid('"sound" must be a string'));
  const badBadge = invalid('"badge" must be a non-negative integer');
  for (const badge of [-1, 1.5, '3', null, Number.NaN, Number.POSITIVE_INFINITY]) {
    assert.throws(() => messageFromFields({ msg: 'hi', badge }), badBadge, `badge ${String(badge)}`);
  }
});

test('messageFromLine: a "__proto__" key is data like any other key, never the prototype of data', () => {
  // JSON.parse makes "__proto__" an ordinary own key; it must stay one in data.
  const m = fromLine('{"uid":"u","a":1,"__proto__":{"x":1}}');
  assert.deepEqual(m.data, JSON.parse('{"a":1,"__proto__":{"x":1}}'));
  assert.equal(Object.getPrototypeOf(m.data), Object.prototype, 'a request line must not set the prototype of data');
  assert.deepEqual(fromLine('{"uid":"u","__proto__":"s"}').data, JSON.parse('{"__proto__":"s"}'));
});
