import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import { type TestContext, test } from 'node:test';
import { silentLogger } from '../../../src/obs/log.js';
import { AccessTokenRefused, AccessTokenSource, REFRESH_EARLY_MS, REFUSAL_HOLD_MS } from '../../../src/push/fcm/oauth.js';
import { ProviderClient } from '../../../src/push/provider-client.js';
import { RETRY_DEFAULTS } from '../../../src/push/retry.js';
import { type FakeFcm, type FakeFcmOptions, makeFcmAccount, startFakeFcm } from '../../helpers/fake-fcm.js';

/** A token source against a fake token endpoint, through a real provider client, with a clock the test moves. */
async function source(t: TestContext, fake: Omit<FakeFcmOptions, 'account'> = {}): Promise<{ fake: FakeFcm; tokens: AccessTokenSource; clock: { now: number } }> {
  const account = makeFcmAccount();
  const f = await startFakeFcm({ account, ...fake });
  t.after(() => f.close());
  const client = new ProviderClient({
    name: 'fcm',
    requestTimeoutMs: 10_000,
    maxConcurrentRequests: 4,
    maxQueued: 10,
    retry: RETRY_DEFAULTS,
    secrets: [],
    log: silentLogger,
    ...(f.ca ? { ca: f.ca } : {}),
  });
  t.after(() => client.stop());
  const clock = { now: Date.now() };
  const tokens = new AccessTokenSource({
    clientEmail: account.clientEmail,
    privateKey: createPrivateKey(account.privateKeyPem),
    privateKeyId: account.privateKeyId,
    tokenUrl: f.tokenUrl,
    post: (req) => client.request(req),
    now: () => clock.now,
  });
  return { fake: f, tokens, clock };
}

test('fcm oauth: a token is fetched once and cached; concurrent callers share one request', async (t) => {
  const { fake, tokens } = await source(t);
  const got = await Promise.all(Array.from({ length: 20 }, () => tokens.get()));
  assert.equal(fake.tokenRequests.length, 1);
  assert.deepEqual(new Set(got), new Set([fake.issued[0]]));
  assert.equal(await tokens.get(), fake.issued[0]);
  assert.equal(fake.tokenRequests.length, 1);
  assert.equal(fake.tokenRequests[0]?.problem, undefined);
  assert.equal(tokens.state().fetched, 1);
});

test('fcm oauth: refreshed 5 minutes before it expires, not sooner', async (t) => {
  // The test's clock runs 55 minutes ahead for the refresh: the fake tolerates that much skew.
  const { fake, tokens, clock } = await source(t, { expiresInS: 3600, clockToleranceS: 3600 });
  const first = await tokens.get();
  const expiresAt = Date.parse(tokens.state().validUntil ?? '');
  clock.now = expiresAt - REFRESH_EARLY_MS - 1000;
  assert.equal(await tokens.get(), first, 'still well before expiry');
  clock.now = expiresAt - REFRESH_EARLY_MS + 1000;
  const second = await tokens.get();
  assert.notEqual(second, first);
  assert.equal(fake.tokenRequests.length, 2);
});

test('fcm oauth: a short-lived token is refreshed halfway, not on every call', async (t) => {
  const { fake, tokens, clock } = await source(t, { expiresInS: 60 });
  const first = await tokens.get();
  clock.now += 29_000;
  assert.equal(await tokens.get(), first);
  clock.now += 2000;
  assert.notEqual(await tokens.get(), first);
  assert.equal(fake.tokenRequests.length, 2);
});

test('fcm oauth: invalidate drops the token it names (a 401), not a newer one', async (t) => {
  const { fake, tokens } = await source(t);
  const first = await tokens.get();
  tokens.invalidate(first);
  const second = await tokens.get();
  assert.notEqual(second, first);
  tokens.invalidate(first);
  assert.equal(await tokens.get(), second, 'a stale invalidate leaves the newer token');
  assert.equal(fake.tokenRequests.length, 2);
});

test('fcm oauth: a refusal (400 invalid_grant) is AccessTokenRefused, remembered for a while, then asked again', async (t) => {
  const { fake, tokens, clock } = await source(t, {
    tokenRespond: (n) => (n === 1 ? { status: 400, body: { error: 'invalid_grant', error_description: 'Invalid JWT Signature.' } } : undefined),
  });
  await assert.rejects(tokens.get(), (err: unknown) => {
    assert.ok(err instanceof AccessTokenRefused);
    assert.match(err.message, /^access token refused by http:\/\/127\.0\.0\.1:\d+\/token: 400 invalid_grant: Invalid JWT Signature\. \(check the service account file/);
    return true;
  });
  await assert.rejects(tokens.get(), AccessTokenRefused);
  assert.equal(fake.tokenRequests.length, 1, 'remembered, not asked again at once');
  clock.now += REFUSAL_HOLD_MS + 1;
  assert.equal(await tokens.get(), fake.issued[0]);
  assert.equal(fake.tokenRequests.length, 2);
});

test('fcm oauth: a 503 or no answer is a plain error (not a refusal), and the next call asks again', async (t) => {
  const { fake, tokens } = await source(t, { tokenRespond: (n) => (n === 1 ? { status: 503, body: 'Service Unavailable' } : undefined) });
  await assert.rejects(tokens.get(), (err: unknown) => {
    assert.ok(!(err instanceof AccessTokenRefused));
    assert.match((err as Error).message, /^access token request to .* failed: 503 Service Unavailable$/);
    return true;
  });
  assert.equal(await tokens.get(), fake.issued[0]);

  await fake.close();
  const gone = await source(t);
  await gone.fake.close();
  await assert.rejects(gone.tokens.get(), /^Error: access token request to .* failed: request failed: ECONNREFUSED$/);
});

test('fcm oauth: a 200 without an access_token is a refusal naming tokenUrl', async (t) => {
  const { tokens } = await source(t, { tokenRespond: () => ({ status: 200, body: { hello: 'world' } }) });
  await assert.rejects(tokens.get(), /answered 200 without an access_token and expires_in \(is tokenUrl right\?\)/);
});

test('fcm oauth: over HTTPS with the fake CA (the provider client\'s ca)', async (t) => {
  const { fake, tokens } = await source(t, { tls: true });
  assert.match(fake.tokenUrl, /^https:/);
  assert.equal(await tokens.get(), fake.issued[0]);
});
