import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FCM_MAX_PAYLOAD_BYTES, classifyFcmAnswer, fcmRequestBody, toFcmMessage } from '../../../src/push/fcm/payload.js';
import { fcmError } from '../../helpers/fake-fcm.js';
import { messageProblem } from '../../helpers/fake-fcm.js';

const base = { frame: '', json: false } as const;
/** The message as it goes on the wire (data has no prototype). */
const wire = (m: unknown): unknown => JSON.parse(JSON.stringify(m));

test('fcm payload: title and msg become notification {title, body} with the data beside it', () => {
  const pkg = toFcmMessage({ ...base, title: 'Export', msg: 'done', data: { file: 'a.csv' } });
  assert.ok(!('error' in pkg));
  assert.deepEqual(wire(pkg.message), { notification: { title: 'Export', body: 'done' }, data: { file: 'a.csv' } });
  const body = JSON.parse(fcmRequestBody(pkg, 'tok-123456')) as unknown;
  assert.deepEqual(body, { message: { token: 'tok-123456', notification: { title: 'Export', body: 'done' }, data: { file: 'a.csv' } } });
  assert.equal(messageProblem(body), undefined, 'the fake FCM finds nothing wrong');
});

test('fcm payload: msg alone is a notification with a body only; sound and badge go to android.notification', () => {
  const pkg = toFcmMessage({ ...base, msg: 'hi', sound: 'default', badge: 3 });
  assert.ok(!('error' in pkg));
  assert.deepEqual(wire(pkg.message), { notification: { body: 'hi' }, android: { notification: { sound: 'default', notification_count: 3 } } });
});

test('fcm payload: a data-only message is a data message with android.priority HIGH (the original {"uid","percent"} line)', () => {
  const pkg = toFcmMessage({ ...base, data: { percent: '88%' } });
  assert.ok(!('error' in pkg));
  assert.deepEqual(wire(pkg.message), { data: { percent: '88%' }, android: { priority: 'HIGH' } });
  assert.equal(messageProblem(JSON.parse(fcmRequestBody(pkg, 'tok-123456'))), undefined);
});

test('fcm payload: data values are strings on the wire: numbers and booleans as written, objects, arrays and null as JSON', () => {
  const pkg = toFcmMessage({ ...base, data: { n: 42, f: 1.5, yes: true, no: false, s: 'text', o: { a: [1, 'b'] }, l: [1, 2], z: null, __proto__x: 'p' } });
  assert.ok(!('error' in pkg));
  assert.deepEqual({ ...pkg.message.data }, { n: '42', f: '1.5', yes: 'true', no: 'false', s: 'text', o: '{"a":[1,"b"]}', l: '[1,2]', z: 'null', __proto__x: 'p' });
  const proto = JSON.parse('{"__proto__": {"x": 1}}') as Record<string, unknown>;
  const p2 = toFcmMessage({ ...base, data: proto });
  assert.ok(!('error' in p2));
  assert.equal(JSON.parse(fcmRequestBody(p2, 'tok-123456')).message.data.__proto__, '{"x":1}', 'a "__proto__" data key is kept as a key');
});

for (const key of ['from', 'message_type', 'collapse_key', 'google.c.a.e', 'gcm.notification.body', 'GCM.n.e']) {
  test(`fcm payload: the reserved data key ${JSON.stringify(key)} is refused with a reason`, () => {
    const pkg = toFcmMessage({ ...base, msg: 'hi', data: { ok: '1', [key]: 'x' } });
    assert.ok('error' in pkg);
    assert.match(pkg.error, new RegExp(`^data key "${key.replace(/\./g, '\\.')}" is reserved by FCM`));
  });
}

test('fcm payload: keys that only look like reserved ones pass (fromage, googled, gcmx)', () => {
  const pkg = toFcmMessage({ ...base, data: { fromage: 'brie', googled: 'y', gcmx: 'z' } });
  assert.ok(!('error' in pkg));
});

test('fcm payload: ttl maps to android.ttl in whole seconds, rounded up, at most 28 days; 0 is "0s"', () => {
  const ttl = (ttlMs: number) => {
    const pkg = toFcmMessage({ ...base, msg: 'x', ttlMs });
    assert.ok(!('error' in pkg));
    return pkg.message.android?.ttl;
  };
  assert.equal(ttl(3_600_000), '3600s');
  assert.equal(ttl(1500), '2s');
  assert.equal(ttl(0), '0s');
  assert.equal(ttl(90 * 86_400_000), '2419200s');
  const none = toFcmMessage({ ...base, msg: 'x' });
  assert.ok(!('error' in none));
  assert.equal(none.message.android, undefined, 'no ttl: FCM keeps its default (4 weeks)');
});

test('fcm payload: exactly 4096 bytes passes; one more is refused with the size', () => {
  const overhead = Buffer.byteLength(JSON.stringify({ notification: { body: '' } }));
  const fits = toFcmMessage({ ...base, msg: 'x'.repeat(FCM_MAX_PAYLOAD_BYTES - overhead) });
  assert.ok(!('error' in fits));
  assert.equal(fits.bytes, 4096);
  const over = toFcmMessage({ ...base, msg: 'x'.repeat(FCM_MAX_PAYLOAD_BYTES - overhead + 1) });
  assert.ok('error' in over);
  assert.equal(over.error, 'payload too large: the FCM payload (notification and data) would be 4097 bytes; FCM takes at most 4096');
  const multibyte = toFcmMessage({ ...base, data: { t: 'é'.repeat(2100) } });
  assert.ok('error' in multibyte, 'bytes, not characters');
});

const headers = (h: Record<string, string> = {}) => new Headers(h);
const answer = (a: { status: number; body: unknown }, h?: Record<string, string>) => classifyFcmAnswer(a.status, JSON.stringify(a.body), headers(h));

test('fcm answers: 200 is sent with the message name as id', () => {
  assert.deepEqual(classifyFcmAnswer(200, '{"name":"projects/p/messages/0:1"}', headers()), { kind: 'sent', id: 'projects/p/messages/0:1' });
});

test('fcm answers: UNREGISTERED, SENDER_ID_MISMATCH and a token INVALID_ARGUMENT retire the token; another INVALID_ARGUMENT does not', () => {
  assert.deepEqual(answer(fcmError(404, 'NOT_FOUND', 'Requested entity was not found.', 'UNREGISTERED')), {
    kind: 'rejected',
    reason: '404 UNREGISTERED (Requested entity was not found.)',
    prune: true,
  });
  assert.deepEqual(answer(fcmError(403, 'PERMISSION_DENIED', 'SenderId mismatch', 'SENDER_ID_MISMATCH')), {
    kind: 'rejected',
    reason: '403 SENDER_ID_MISMATCH (SenderId mismatch)',
    prune: true,
  });
  const bad = answer(fcmError(400, 'INVALID_ARGUMENT', 'The registration token is not a valid FCM registration token', 'INVALID_ARGUMENT'));
  assert.deepEqual(bad, { kind: 'rejected', reason: '400 INVALID_ARGUMENT (The registration token is not a valid FCM registration token)', prune: true });
  const byField = answer(
    fcmError(400, 'INVALID_ARGUMENT', 'Request contains an invalid argument.', undefined, [
      { '@type': 'type.googleapis.com/google.rpc.BadRequest', fieldViolations: [{ field: 'message.token', description: 'Invalid registration token' }] },
    ]),
  );
  assert.equal(byField.kind === 'rejected' && byField.prune, true, 'a fieldViolation on message.token is about the token');
  const message = answer(
    fcmError(400, 'INVALID_ARGUMENT', 'Request contains an invalid argument.', 'INVALID_ARGUMENT', [
      { '@type': 'type.googleapis.com/google.rpc.BadRequest', fieldViolations: [{ field: 'message.android.ttl', description: 'Invalid duration' }] },
    ]),
  );
  assert.deepEqual(message, { kind: 'rejected', reason: '400 INVALID_ARGUMENT (Request contains an invalid argument.)', prune: false });
});

test('fcm answers: QUOTA_EXCEEDED, UNAVAILABLE, INTERNAL are retried, with Retry-After as seconds or an HTTP date', () => {
  assert.deepEqual(answer(fcmError(429, 'RESOURCE_EXHAUSTED', 'Quota exceeded.', 'QUOTA_EXCEEDED'), { 'retry-after': '7' }), {
    kind: 'retry',
    reason: '429 QUOTA_EXCEEDED (Quota exceeded.)',
    retryAfterMs: 7000,
  });
  const dated = answer(fcmError(503, 'UNAVAILABLE', 'down', 'UNAVAILABLE'), { 'retry-after': new Date(Date.now() + 30_000).toUTCString() });
  assert.equal(dated.kind, 'retry');
  assert.ok(dated.kind === 'retry' && dated.retryAfterMs !== undefined && dated.retryAfterMs > 25_000 && dated.retryAfterMs <= 30_000);
  assert.deepEqual(answer(fcmError(500, 'INTERNAL', 'Internal error encountered.', 'INTERNAL')), { kind: 'retry', reason: '500 INTERNAL (Internal error encountered.)' });
  assert.deepEqual(classifyFcmAnswer(502, '<html>Bad Gateway</html>', headers()), { kind: 'retry', reason: '502 (<html>Bad Gateway</html>)' });
});

test('fcm answers: THIRD_PARTY_AUTH_ERROR, PERMISSION_DENIED and a 404 without UNREGISTERED are configuration errors; a 401 is unauthenticated', () => {
  const third = answer(fcmError(401, 'UNAUTHENTICATED', 'Auth error from APNS or Web Push Service', 'THIRD_PARTY_AUTH_ERROR'));
  assert.equal(third.kind, 'config');
  assert.match(third.kind === 'config' ? third.reason : '', /^401 THIRD_PARTY_AUTH_ERROR \(Auth error from APNS or Web Push Service\): the APNs or Web Push credentials/);
  assert.equal(answer(fcmError(403, 'PERMISSION_DENIED', 'Permission denied')).kind, 'config');
  assert.equal(answer(fcmError(404, 'NOT_FOUND', 'Requested entity was not found.')).kind, 'config');
  assert.deepEqual(answer(fcmError(401, 'UNAUTHENTICATED', 'Request had invalid authentication credentials.')), {
    kind: 'unauthenticated',
    reason: '401 UNAUTHENTICATED (Request had invalid authentication credentials.)',
  });
});
