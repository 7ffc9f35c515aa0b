import assert from 'node:assert/strict';
import { test } from 'node:test';
import { APNS_MAX_PAYLOAD_BYTES, classifyApnsResult, toApnsNotification } from '../../../src/push/apns/payload.js';
import { messageFromFields, messageFromLine } from '../../../src/message.js';

test('apns payload: title and msg make an alert push with badge, sound and data as custom keys', () => {
  const msg = messageFromFields({ title: 'Export', msg: 'done', badge: 3, sound: 'default', data: { file: 'a.csv', n: 2 } });
  assert.deepEqual(toApnsNotification(msg), {
    payload: { aps: { alert: { title: 'Export', body: 'done' }, badge: 3, sound: 'default' }, file: 'a.csv', n: 2 },
    pushType: 'alert',
    priority: 10,
    bytes: Buffer.byteLength('{"aps":{"alert":{"title":"Export","body":"done"},"badge":3,"sound":"default"},"file":"a.csv","n":2}'),
  });
});

test('apns payload: msg alone is an alert with a body only; title alone with a title only', () => {
  const body = toApnsNotification(messageFromFields({ msg: 'hi' }));
  assert.ok(!('error' in body));
  assert.deepEqual(body.payload, { aps: { alert: { body: 'hi' } } });
  const title = toApnsNotification(messageFromFields({ title: 'T' }));
  assert.ok(!('error' in title));
  assert.deepEqual(title.payload, { aps: { alert: { title: 'T' } } });
});

test('apns payload: the original data-only line becomes a background push (content-available, priority 5)', () => {
  const line = '{"uid":"uid1","percent":"88%"}';
  const pkg = toApnsNotification(messageFromLine(line, JSON.parse(line) as Record<string, unknown>));
  assert.deepEqual(pkg, {
    payload: { aps: { 'content-available': 1 }, percent: '88%' },
    pushType: 'background',
    priority: 5,
    bytes: Buffer.byteLength('{"aps":{"content-available":1},"percent":"88%"}'),
  });
});

test('apns payload: a badge-only message is an alert push that sets the badge, not a background push', () => {
  const pkg = toApnsNotification(messageFromLine('{"uid":"u","badge":0}', { uid: 'u', badge: 0 }));
  assert.ok(!('error' in pkg));
  assert.deepEqual(pkg.payload, { aps: { badge: 0 } });
  assert.equal(pkg.pushType, 'alert');
  assert.equal(pkg.priority, 10);
});

test('apns payload: over 4096 bytes is refused before sending, with the size; exactly 4096 is fine', () => {
  const overhead = Buffer.byteLength(JSON.stringify({ aps: { alert: { body: '' } } }));
  const fits = toApnsNotification(messageFromFields({ msg: 'x'.repeat(APNS_MAX_PAYLOAD_BYTES - overhead) }));
  assert.ok(!('error' in fits));
  assert.equal(fits.bytes, 4096);
  const big = toApnsNotification(messageFromFields({ msg: 'x'.repeat(APNS_MAX_PAYLOAD_BYTES - overhead + 1) }));
  assert.deepEqual(big, { error: 'PayloadTooLarge: the APNs payload would be 4097 bytes; APNs takes at most 4096' });
  const multibyte = toApnsNotification(messageFromFields({ msg: '进'.repeat(1400) }));
  assert.ok('error' in multibyte, 'bytes, not characters, are counted');
});

test('apns payload: a data key "aps" is refused', () => {
  assert.deepEqual(toApnsNotification(messageFromLine('{"uid":"u","aps":{}}', { uid: 'u', aps: {} })), {
    error: 'data key "aps" is reserved by APNs',
  });
});

test('apns results: sent carries the apns-id', () => {
  assert.deepEqual(classifyApnsResult({ device: 'a', 'apns-id': 'id-1' }), { kind: 'sent', apnsId: 'id-1' });
});

test('apns results: dead tokens are rejected and pruned; other 4xx rejected without pruning', () => {
  const dead = (status: number, reason: string, timestamp?: number) =>
    classifyApnsResult({ device: 'a', status, response: { reason, ...(timestamp !== undefined ? { timestamp } : {}) } });
  assert.deepEqual(dead(410, 'Unregistered', 1700000000000), {
    kind: 'rejected',
    reason: '410 Unregistered (since 2023-11-14T22:13:20.000Z)',
    prune: true,
  });
  assert.deepEqual(dead(410, 'ExpiredToken'), { kind: 'rejected', reason: '410 ExpiredToken', prune: true });
  assert.deepEqual(dead(400, 'BadDeviceToken'), { kind: 'rejected', reason: '400 BadDeviceToken', prune: true });
  assert.deepEqual(dead(400, 'DeviceTokenNotForTopic'), { kind: 'rejected', reason: '400 DeviceTokenNotForTopic', prune: true });
  assert.deepEqual(dead(400, 'BadTopic'), { kind: 'rejected', reason: '400 BadTopic', prune: false });
  assert.deepEqual(dead(403, 'InvalidProviderToken'), { kind: 'rejected', reason: '403 InvalidProviderToken', prune: false });
  assert.deepEqual(dead(413, 'PayloadTooLarge'), { kind: 'rejected', reason: '413 PayloadTooLarge', prune: false });
});

test('apns results: 429, 5xx and connection-level failures are retried; ExpiredProviderToken with a fresh JWT', () => {
  assert.deepEqual(classifyApnsResult({ device: 'a', status: 429, response: { reason: 'TooManyRequests' } }), {
    kind: 'retry',
    reason: '429 TooManyRequests',
    freshToken: false,
  });
  // node-apn's shapes: 500 without a reason arrives as an error; ExpiredProviderToken's reason is only in error.message.
  assert.deepEqual(classifyApnsResult({ device: 'a', status: 500, error: new Error('Error 500, stream ended unexpectedly') }), {
    kind: 'retry',
    reason: '500 Error 500, stream ended unexpectedly',
    freshToken: false,
  });
  assert.equal(classifyApnsResult({ device: 'a', status: 503, response: { reason: 'ServiceUnavailable' } }).kind, 'retry');
  assert.deepEqual(classifyApnsResult({ device: 'a', status: 403, error: new Error('ExpiredProviderToken') }), {
    kind: 'retry',
    reason: '403 ExpiredProviderToken',
    freshToken: true,
  });
  const refused = classifyApnsResult({ device: 'a', error: new Error('apn write failed: Stream closed with error code NGHTTP2_REFUSED_STREAM') });
  assert.equal(refused.kind, 'retry');
  assert.equal(classifyApnsResult({ device: 'a', error: new Error('client is destroyed') }).kind, 'failed');
});
