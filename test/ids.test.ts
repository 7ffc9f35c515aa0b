import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseDuration } from '../src/duration.js';
import { MAX_ID_LENGTH, UlidGenerator, checkMessageId } from '../src/ids.js';

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const ULID = /^[0-9A-HJKMNP-TV-Z]{26}$/;

/** The value of Crockford base32 digits, as a bigint. */
function decode(chars: string): bigint {
  let v = 0n;
  for (const c of chars) {
    const d = CROCKFORD.indexOf(c);
    assert.ok(d >= 0, `${JSON.stringify(c)} is not a Crockford base32 digit`);
    v = v * 32n + BigInt(d);
  }
  return v;
}

/** The milliseconds a ULID's first 10 characters encode. */
const timeOf = (id: string): number => Number(decode(id.slice(0, 10)));

function assertStrictlyIncreasing(ids: readonly string[], what: string): void {
  for (let i = 1; i < ids.length; i++) {
    const a = ids[i - 1] as string;
    const b = ids[i] as string;
    assert.ok(a < b, `${what}: id #${i} ${b} must sort after id #${i - 1} ${a}`);
  }
}

// ---------------------------------------------------------------------------------------------
// ULIDs

test('ulid: 26 Crockford base32 characters, and the first 10 encode the milliseconds', () => {
  for (const ms of [0, 1, 31, 32, 1_700_000_000_123, Date.UTC(2100, 0, 1), 2 ** 48 - 1]) {
    const id = new UlidGenerator(() => ms).next();
    assert.match(id, ULID, `id for ${ms}`);
    assert.equal(timeOf(id), ms, `time prefix of ${id}`);
  }
  // Known encodings (ULID spec): the time is big-endian base32, 10 characters.
  assert.equal(new UlidGenerator(() => 0).next().slice(0, 10), '0000000000');
  assert.equal(new UlidGenerator(() => 32).next().slice(0, 10), '0000000010');
  assert.equal(new UlidGenerator(() => 2 ** 48 - 1).next().slice(0, 10), '7ZZZZZZZZZ');
  // The real clock by default.
  const before = Date.now();
  const id = new UlidGenerator().next();
  const after = Date.now();
  assert.ok(timeOf(id) >= before && timeOf(id) <= after, `default clock: ${timeOf(id)} within [${before}, ${after}]`);
});

test('ulid: strictly increasing within one millisecond, each the previous plus one in its random part', () => {
  const gen = new UlidGenerator(() => 1_700_000_000_000);
  const ids = Array.from({ length: 5000 }, () => gen.next());
  for (const id of ids) assert.match(id, ULID);
  assertStrictlyIncreasing(ids, 'same millisecond');
  assert.equal(new Set(ids).size, ids.length, 'no id twice');
  for (const id of ids) assert.equal(timeOf(id), 1_700_000_000_000, 'every id carries the one millisecond');
  for (let i = 1; i < ids.length; i++) {
    assert.equal(decode((ids[i] as string).slice(10)) - decode((ids[i - 1] as string).slice(10)), 1n, `random part of #${i} is the previous plus one`);
  }
});

test('ulid: strictly increasing across milliseconds, and when the clock stands still or goes back', () => {
  let now = 1_000_000;
  const gen = new UlidGenerator(() => now);
  const ids: string[] = [];
  // Several ids per millisecond, then the next millisecond: a fresh random part may be smaller
  // than the last one, but the later time still sorts after.
  for (let ms = 0; ms < 300; ms++) {
    now = 1_000_000 + ms;
    for (let k = 0; k < 1 + (ms % 4); k++) ids.push(gen.next());
  }
  assertStrictlyIncreasing(ids, 'across milliseconds');
  assert.equal(timeOf(ids[ids.length - 1] as string), 1_000_299);
  // The clock steps back (NTP): ids keep increasing, on the last time seen.
  now = 999_000;
  const back = [gen.next(), gen.next()];
  assertStrictlyIncreasing([...ids, ...back], 'clock stepped back');
  for (const id of back) assert.equal(timeOf(id), 1_000_299, 'the time part never goes back');
  // And once the clock passes the last time again, that time is used.
  now = 1_000_400;
  const later = gen.next();
  assert.equal(timeOf(later), 1_000_400);
  assertStrictlyIncreasing([...back, later], 'clock caught up');
});

test('ulid: two generators in the same millisecond make different ids (80 random bits)', () => {
  const a = new UlidGenerator(() => 5).next();
  const b = new UlidGenerator(() => 5).next();
  assert.equal(a.slice(0, 10), b.slice(0, 10));
  assert.notEqual(a, b);
  // Many fresh milliseconds: the random parts are not all alike.
  let now = 0;
  const gen = new UlidGenerator(() => ++now);
  const randoms = new Set(Array.from({ length: 200 }, () => gen.next().slice(10)));
  assert.ok(randoms.size > 190, `random parts should differ, got ${randoms.size} distinct of 200`);
});

// ---------------------------------------------------------------------------------------------
// Publisher ids

test('checkMessageId: accepts letters, digits and . _ : ~ - up to 128 characters', () => {
  assert.equal(MAX_ID_LENGTH, 128);
  for (const id of ['a', '0', 'order-42', 'A.b_c:d~e-f', 'tenant:42:order.7~retry_1', '01ARZ3NDEKTSV4RRFFQ69G5FAV', 'x'.repeat(128)]) {
    assert.equal(checkMessageId(id), undefined, `${JSON.stringify(id)} is a good id`);
  }
});

test('checkMessageId: refuses what is not a non-empty string of the allowed characters, saying what is wrong', () => {
  for (const bad of [undefined, null, 42, true, ['a'], { id: 'a' }, '']) {
    assert.equal(checkMessageId(bad), '"id" must be a non-empty string', `${JSON.stringify(bad)}`);
  }
  assert.equal(checkMessageId('x'.repeat(129)), '"id" is longer than 128 characters');
  assert.equal(checkMessageId('é'.repeat(129)), '"id" is longer than 128 characters');
  for (const bad of ['has space', 'a/b', 'a\nb', 'a\u0000b', 'quote"', "it's", 'café', '😀', 'a+b', 'a=b', 'a?b', 'a#b', 'a%20b', '<b>', 'a,b', ' lead', 'trail ']) {
    assert.equal(checkMessageId(bad), '"id" may use letters, digits and . _ : ~ - only', `${JSON.stringify(bad)} is refused`);
  }
});

// ---------------------------------------------------------------------------------------------
// Durations

test('parseDuration: units, combinations, fractions, and bare numbers (or numeric strings) as seconds', () => {
  const cases: [unknown, number][] = [
    ['500ms', 500],
    ['30s', 30_000],
    ['15m', 900_000],
    ['24h', 86_400_000],
    ['7d', 604_800_000],
    ['1h30m', 5_400_000],
    ['1m30s', 90_000],
    ['1d2h3m4s5ms', 86_400_000 + 7_200_000 + 180_000 + 4000 + 5],
    ['1.5s', 1500],
    ['0.5m', 30_000],
    ['0s', 0],
    ['  30s ', 30_000],
    [30, 30_000],
    [0, 0],
    [0.25, 250],
    [1.5, 1500],
    ['30', 30_000],
    ['2.5', 2500],
    ['0', 0],
  ];
  for (const [input, ms] of cases) assert.equal(parseDuration(input), ms, `parseDuration(${JSON.stringify(input)})`);
});

test('parseDuration: refuses what is not a duration, with a message that shows what is expected and what was given', () => {
  for (const bad of ['', '   ', 'soon', 's', 'ms', '30x', '30 sec', '1h30', '-5s', '+5s', '5s-', 'h1', '1e3', '1,5s', 'Infinity', 'NaN', '30S']) {
    assert.throws(
      () => parseDuration(bad),
      (err: Error) => {
        assert.match(err.message, /must be a duration such as "500ms", "30s", "15m", "24h" or "7d"/, `message for ${JSON.stringify(bad)}`);
        assert.ok(err.message.includes(JSON.stringify(bad)), `the message names the input ${JSON.stringify(bad)}: ${err.message}`);
        return true;
      },
      `${JSON.stringify(bad)} is refused`,
    );
  }
  for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY, null, undefined, true, {}, ['30s']]) {
    assert.throws(() => parseDuration(bad), /must be a duration such as "30s" or "24h"/, `${String(bad)} is refused`);
  }
});
