import { parseDuration } from './duration.js';
import { NotifyError } from './errors.js';
import { checkMessageId } from './ids.js';
import type { Audience, MessageBody, PublishOptions, Route, Uid } from './types.js';

/** The longest uid accepted anywhere, in UTF-8 bytes. */
export const MAX_UID_BYTES = 256;

/**
 * How deep `data` may nest, counting the data object itself as level 1. Deeper data is
 * refused where the message is built: serializing it (the frame, the stored copy, push
 * payloads) recurses, and a thousands-deep value would overflow the stack.
 */
export const MAX_DATA_DEPTH = 32;

/** Top-level keys with a meaning of their own; every other key of a Text line is data. */
const FIELD_KEYS = ['title', 'msg', 'badge', 'sound'] as const;
const ADDRESS_KEYS = ['uid', 'uids', 'broadcast'] as const;
/** How to publish, not what: never data. `reply` is the Text ingress's. */
const OPTION_KEYS = ['id', 'route', 'ttl', 'reply'] as const;
const RESERVED = new Set<string>([...FIELD_KEYS, ...ADDRESS_KEYS, ...OPTION_KEYS, 'data']);
const ROUTES: readonly Route[] = ['all', 'live-first'];

type Json = Record<string, unknown>;

function invalid(message: string): NotifyError {
  return new NotifyError('NOTIFY_ERR_INVALID_MESSAGE', message, { status: 400 });
}

/** Checks one uid and returns it. */
/** What is wrong with a uid, if anything: the one rule every ingress and the WebSocket bind apply. */
export function uidProblem(uid: string): 'empty' | 'too long' | undefined {
  if (uid.length === 0) return 'empty';
  if (uid.length > MAX_UID_BYTES / 4 && Buffer.byteLength(uid) > MAX_UID_BYTES) return 'too long';
  return undefined;
}

export function checkUid(value: unknown, where = '"uid"'): Uid {
  if (typeof value !== 'string') throw invalid(`${where} must be a string or an array of strings`);
  const problem = uidProblem(value);
  if (problem === 'empty') throw invalid(`${where} must not be empty`);
  if (problem === 'too long') throw invalid(`${where} is longer than ${MAX_UID_BYTES} bytes`);
  return value;
}

function uidList(value: unknown, key: string): Uid[] {
  if (!Array.isArray(value)) return [checkUid(value, `"${key}"`)];
  if (value.length === 0) throw invalid(`"${key}" must not be an empty array`);
  return value.map((u, i) => checkUid(u, `"${key}[${i}]"`));
}

/**
 * Reads who a publish is for: `uid` (a string or an array of strings), `uids` (an array),
 * or `"broadcast": true`. Exactly one of them.
 */
export function parseAudience(obj: Json): Audience {
  // A loop, not a filter: this runs for every published line.
  let key: (typeof ADDRESS_KEYS)[number] | undefined;
  let count = 0;
  for (const k of ADDRESS_KEYS) {
    if (obj[k] === undefined) continue;
    key ??= k;
    count++;
  }
  if (key === undefined) throw invalid('missing "uid" (or "broadcast": true)');
  if (count > 1) throw invalid(`give only one of ${ADDRESS_KEYS.filter((k) => obj[k] !== undefined).map((k) => `"${k}"`).join(', ')}`);
  if (key === 'broadcast') {
    if (obj.broadcast !== true) throw invalid('"broadcast" must be true when given');
    return { broadcast: true };
  }
  const value = obj[key];
  // The usual case, one uid as a string: one array.
  return { uids: typeof value === 'string' ? [checkUid(value, `"${key}"`)] : uidList(value, key) };
}

interface Fields {
  title?: string;
  msg?: string;
  badge?: number;
  sound?: string;
}

function readFields(obj: Json): Fields {
  const out: Fields = {};
  for (const key of ['title', 'msg', 'sound'] as const) {
    const v = obj[key];
    if (v === undefined) continue;
    if (typeof v !== 'string') throw invalid(`"${key}" must be a string`);
    out[key] = v;
  }
  const badge = obj.badge;
  if (badge !== undefined) {
    if (typeof badge !== 'number' || !Number.isInteger(badge) || badge < 0) {
      throw invalid('"badge" must be a non-negative integer');
    }
    out.badge = badge;
  }
  return out;
}

/** True when `value` has objects or arrays nested more than `levels` deep; stops looking there. */
function deeperThan(value: unknown, levels: number): boolean {
  if (value === null || typeof value !== 'object') return false;
  if (levels === 0) return true;
  // for-in, not Object.values: no array per object (JSON values have no inherited keys).
  const obj = value as Record<string, unknown>;
  for (const k in obj) if (deeperThan(obj[k], levels - 1)) return true;
  return false;
}

function checkDepth(data: Json | undefined): void {
  if (deeperThan(data, MAX_DATA_DEPTH)) throw invalid(`"data" is nested deeper than ${MAX_DATA_DEPTH} levels`);
}

/** `data`: undefined, or an object with at least one key (both callers know which). */
function build(frame: string, json: boolean, fields: Fields, data: Json | undefined): MessageBody {
  // One literal (no property added afterwards): the shape V8 keeps on its fast path.
  return data !== undefined ? { frame, json, ...fields, data } : { frame, json, ...fields };
}

/**
 * A Text ingress line: the line itself is the frame; `title`, `msg`, `badge`, `sound` are fields
 * and every other key but the address is data (`{"uid":"uid1","percent":"88%"}` has data
 * `{percent: "88%"}`).
 */
export function messageFromLine(line: string, obj: Json): MessageBody {
  let data: Json | undefined;
  for (const key in obj) {
    if (RESERVED.has(key)) continue;
    data ??= {};
    // A "__proto__" key from JSON.parse is an ordinary key; plain assignment would set the prototype.
    if (key === '__proto__') Object.defineProperty(data, key, { value: obj[key], enumerable: true, writable: true, configurable: true });
    else data[key] = obj[key];
  }
  checkDepth(data);
  return build(line, true, readFields(obj), data);
}

/**
 * An HTTP API or CLI publish: `{msg?, title?, badge?, sound?, data?}`, at least one of msg,
 * title and data. A message with `msg` alone is framed as that text, byte for byte; any other is
 * framed as one flat JSON object, the same shape a Text line has (without the address).
 */
export function messageFromFields(obj: Json): MessageBody {
  const fields = readFields(obj);
  const data = obj.data;
  if (data !== undefined && (data === null || typeof data !== 'object' || Array.isArray(data))) {
    throw invalid('"data" must be a JSON object');
  }
  const dataObj = data as Json | undefined;
  checkDepth(dataObj);
  for (const key in dataObj) {
    if (RESERVED.has(key)) throw invalid(`"data" must not use the reserved key "${key}"`);
  }
  const hasData = dataObj !== undefined && Object.keys(dataObj).length > 0;
  if (fields.msg === undefined && fields.title === undefined && !hasData) {
    throw invalid('a message needs "msg", "title" or "data"');
  }
  const onlyMsg = fields.msg !== undefined && Object.keys(fields).length === 1 && !hasData;
  const frame = onlyMsg ? (fields.msg as string) : JSON.stringify(Object.assign(Object.create(null) as Json, fields, dataObj));
  return build(frame, !onlyMsg, fields, hasData ? dataObj : undefined);
}

/**
 * Reads how to publish: `id` (the publisher's own message id), `route` (`all` or
 * `live-first`) and `ttl` (a duration such as "1h", or seconds).
 */
export function parsePublishOptions(obj: Json): PublishOptions {
  const out: PublishOptions = {};
  if (obj.id !== undefined) {
    const bad = checkMessageId(obj.id);
    if (bad) throw invalid(bad);
    out.id = obj.id as string;
  }
  if (obj.route !== undefined) {
    if (!ROUTES.includes(obj.route as Route)) throw invalid(`"route" must be ${ROUTES.map((r) => `"${r}"`).join(' or ')}`);
    out.route = obj.route as Route;
  }
  if (obj.ttl !== undefined) {
    try {
      out.ttlMs = parseDuration(obj.ttl);
    } catch (err) {
      throw invalid(`"ttl" ${(err as Error).message}`);
    }
  }
  return out;
}

/** The fields an HTTP publish may carry. */
export const PUBLISH_KEYS: ReadonlySet<string> = new Set([...FIELD_KEYS, ...ADDRESS_KEYS, 'id', 'route', 'ttl', 'data']);
