import { createPrivateKey, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { type Spec, type Validation, validate } from '../../config/schema.js';
import { errorMessage } from '../../errors.js';
import { type RetryPolicy, maxQueuedSpec, retrySpec } from '../retry.js';

/** FCM's API host; the send URL is `${url}/v1/projects/${projectId}/messages:send`. */
export const FCM_DEFAULT_URL = 'https://fcm.googleapis.com';
/** The OAuth2 scope that sending needs (firebase-admin asks for more; this one is enough). */
export const FCM_SCOPE = 'https://www.googleapis.com/auth/firebase.messaging';

/** Settings of a `type: fcm` transport, as validated (paths absolute). */
export interface FcmSettings {
  /** The service-account JSON file from the Firebase console (Project settings, Service accounts). */
  serviceAccount: string;
  /** The Firebase project id. @default the file's project_id */
  projectId?: string;
  /** FCM's API base URL. @default https://fcm.googleapis.com */
  url: string;
  /** Where access tokens are asked for. @default the file's token_uri */
  tokenUrl?: string;
  /** PEM file of the CA to trust for url and tokenUrl (a private deployment, a test server). */
  ca?: string;
  /** How long one request may take. @default 10000 */
  requestTimeoutMs: number;
  /** Requests in flight at most. @default 32 */
  maxConcurrentRequests: number;
  /** Requests waiting for a free slot at most; one more fails at once ("queue full"). @default 10000 */
  maxQueued: number;
  retry: RetryPolicy;
}

const httpUrl = (v: string): string | undefined => {
  try {
    const u = new URL(v);
    return u.protocol === 'http:' || u.protocol === 'https:' ? undefined : 'must be an http(s) URL';
  } catch {
    return 'must be an http(s) URL';
  }
};

const settingsSection: Spec = {
  type: 'section',
  keys: {
    serviceAccount: { type: 'string', required: true },
    projectId: { type: 'string', check: (v) => (/^[a-z0-9][a-z0-9-]{0,62}$/i.test(v) ? undefined : 'must be a Firebase project id (letters, digits and dashes)') },
    url: { type: 'string', default: FCM_DEFAULT_URL, check: httpUrl },
    tokenUrl: { type: 'string', check: httpUrl },
    ca: { type: 'string' },
    requestTimeoutMs: { type: 'integer', min: 1, default: 10_000 },
    maxConcurrentRequests: { type: 'integer', min: 1, max: 1000, default: 32 },
    maxQueued: maxQueuedSpec,
    retry: retrySpec,
  },
};

/** What notify uses of a service-account file. */
export interface ServiceAccount {
  projectId: string | undefined;
  clientEmail: string;
  /** The RSA private key. Never printed: not in errors, logs, reports or /healthz. */
  privateKey: KeyObject;
  /** The PEM text of the key, so that it can be scrubbed from anything shown. */
  privateKeyPem: string;
  privateKeyId: string | undefined;
  tokenUri: string | undefined;
}

/**
 * Reads and checks a service-account JSON file. Throws an Error that names the file and what is
 * wrong (a missing field, a key that is not an RSA private key) and never quotes the key.
 * `need` says which fields the settings do not supply themselves.
 */
export function loadServiceAccount(file: string, need: { projectId: boolean; tokenUri: boolean }): ServiceAccount {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'it is a folder' : errorMessage(err);
    throw new Error(`cannot read ${file}: ${why}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    // JSON.parse's message quotes the text around the error, which may be the key: say where only.
    throw new Error(`${file} is not JSON; use the service-account key file from the Firebase console (Project settings, Service accounts)`);
  }
  if (json === null || typeof json !== 'object' || Array.isArray(json)) throw new Error(`${file} is not a service-account key (a JSON object)`);
  const o = json as Record<string, unknown>;
  if (o.type !== undefined && o.type !== 'service_account') {
    throw new Error(`${file} has "type": ${JSON.stringify(String(o.type).slice(0, 40))}; a service-account key has "type": "service_account"`);
  }
  const field = (name: string, required: boolean): string | undefined => {
    const v = o[name];
    if (v === undefined || v === null || v === '') {
      if (required) throw new Error(`${file} has no "${name}"`);
      return undefined;
    }
    if (typeof v !== 'string') throw new Error(`${file}: "${name}" must be a string`);
    return v;
  };
  const clientEmail = field('client_email', true) as string;
  const privateKeyPem = field('private_key', true) as string;
  const projectId = field('project_id', need.projectId);
  const tokenUri = field('token_uri', need.tokenUri);
  const privateKeyId = field('private_key_id', false);
  if (tokenUri !== undefined && httpUrl(tokenUri)) throw new Error(`${file}: "token_uri" must be an http(s) URL`);
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(privateKeyPem);
  } catch {
    throw new Error(`${file}: "private_key" is not a PEM private key`);
  }
  if (privateKey.asymmetricKeyType !== 'rsa') {
    throw new Error(`${file}: "private_key" is not an RSA private key (it is ${privateKey.asymmetricKeyType ?? 'unknown'}); FCM signs with RS256`);
  }
  return { projectId, clientEmail, privateKey, privateKeyPem, privateKeyId, tokenUri };
}

/** Validates the settings of one FCM transport, the service-account file included. */
export function validateFcmSettings(value: unknown, path: string[], ctx: Validation): FcmSettings {
  const s = validate(settingsSection, value, path, ctx) as FcmSettings;
  const name = path.join('.');
  if (typeof s.serviceAccount === 'string') {
    const file = resolve(ctx.baseDir, s.serviceAccount);
    try {
      loadServiceAccount(file, { projectId: s.projectId === undefined, tokenUri: s.tokenUrl === undefined });
    } catch (err) {
      ctx.fail([...path, 'serviceAccount'], `${name}.serviceAccount: ${errorMessage(err)}`);
    }
    s.serviceAccount = file;
  }
  if (s.ca !== undefined) {
    const file = resolve(ctx.baseDir, s.ca);
    try {
      readFileSync(file);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      ctx.fail([...path, 'ca'], `${name}.ca: cannot read ${file}: ${code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a folder' : errorMessage(err)}`);
    }
    s.ca = file;
  }
  return s;
}
