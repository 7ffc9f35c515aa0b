/**
 * `{{name}}` templates for HTTP push transports, rendered per request in the context they are
 * used in, so that no value can break out of it: URL-encoded in a URL, CR/LF-free in a header,
 * JSON-escaped in a JSON body (a message with quotes, backslashes, newlines or any Unicode text
 * always gives valid JSON with exactly that text).
 */

/** The values a template can use. */
export interface TemplateValues {
  uid: string;
  title?: string | undefined;
  msg?: string | undefined;
  badge?: number | undefined;
  sound?: string | undefined;
  /** The message's custom data (an object). */
  data?: Readonly<Record<string, unknown>> | undefined;
  /** The exact frame a live session receives (a Text line, or the message text). */
  frame: string;
  /** The device token or topic, when the transport sends one request per device. */
  token?: string | undefined;
}

export const PLACEHOLDERS = ['uid', 'title', 'msg', 'badge', 'sound', 'data', 'frame', 'token'] as const;
export type Placeholder = (typeof PLACEHOLDERS)[number];

const PATTERN = /\{\{\s*([A-Za-z_][A-Za-z0-9_]*(?:\s*\|\s*[A-Za-z_][A-Za-z0-9_]*)*)\s*\}\}/g;

/** A placeholder: `{{msg}}`, or `{{msg|frame}}` for the first of them that the message has. */
export interface Slot {
  names: Placeholder[];
}

/** A template split into literal text and placeholders. */
export type Parts = (string | Slot)[];

/** Splits a template; throws with the unknown names listed. */
export function parseTemplate(text: string): Parts {
  const parts: Parts = [];
  let last = 0;
  for (const m of text.matchAll(PATTERN)) {
    const names = (m[1] as string).split('|').map((n) => n.trim());
    for (const name of names) {
      if (!(PLACEHOLDERS as readonly string[]).includes(name)) {
        throw new Error(`unknown placeholder {{${name}}}; use ${PLACEHOLDERS.map((p) => `{{${p}}}`).join(', ')}, or {{a|b}} for the first one set`);
      }
    }
    if (m.index > last) parts.push(text.slice(last, m.index));
    parts.push({ names: names as Placeholder[] });
    last = m.index + m[0].length;
  }
  if (last < text.length) parts.push(text.slice(last));
  return parts;
}

/** The placeholders a template uses. */
export function placeholdersOf(parts: Parts): Set<Placeholder> {
  return new Set(parts.flatMap((p) => (typeof p === 'string' ? [] : p.names)));
}

function valueOf(v: TemplateValues, slot: Slot): unknown {
  for (const name of slot.names) {
    const value = v[name];
    if (value !== undefined) return value;
  }
  return undefined;
}

/** A value as plain text: absent is empty, data is its JSON. */
function asText(value: unknown): string {
  if (value === undefined || value === null) return '';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** Plain text (a text body). */
export function renderText(parts: Parts, v: TemplateValues): string {
  let out = '';
  for (const p of parts) out += typeof p === 'string' ? p : asText(valueOf(v, p));
  return out;
}

/** A URL: every value percent-encoded, so it stays one path segment or query value. */
export function renderUrl(parts: Parts, v: TemplateValues): string {
  let out = '';
  for (const p of parts) out += typeof p === 'string' ? p : encodeURIComponent(asText(valueOf(v, p)));
  return out;
}

/**
 * A header value: line breaks become spaces (no header injection); text outside ASCII is sent
 * as an RFC 2047 encoded word (`=?UTF-8?B?…?=`), which ntfy and others decode.
 */
export function renderHeader(parts: Parts, v: TemplateValues): string {
  const raw = renderText(parts, v).replace(/[\r\n\0]+/g, ' ');
  // eslint-disable-next-line no-control-regex
  return /^[\x20-\x7e\t]*$/.test(raw) ? raw : `=?UTF-8?B?${Buffer.from(raw).toString('base64')}?=`;
}

/**
 * A JSON text template such as `{"text": "{{title}}: {{msg}}", "extra": {{data}}}`: a placeholder
 * inside a string literal is JSON-escaped (without quotes); one outside a string becomes a JSON
 * value (a string, a number, the data object, or null when absent).
 */
export function renderJsonText(parts: Parts, v: TemplateValues): string {
  let out = '';
  let inString = false;
  for (const p of parts) {
    if (typeof p === 'string') {
      out += p;
      for (let i = 0; i < p.length; i++) {
        if (p[i] === '\\') i++;
        else if (p[i] === '"') inString = !inString;
      }
      continue;
    }
    const value = valueOf(v, p);
    out += inString ? JSON.stringify(asText(value)).slice(1, -1) : JSON.stringify(value ?? null);
  }
  return out;
}

/** A body given as a YAML mapping or list, compiled: strings are templates, the rest literal. */
export type Structure = { kind: 'template'; parts: Parts } | { kind: 'list'; items: Structure[] } | { kind: 'map'; entries: [string, Structure][] } | { kind: 'literal'; value: unknown };

export function compileStructure(value: unknown): Structure {
  if (typeof value === 'string') return { kind: 'template', parts: parseTemplate(value) };
  if (Array.isArray(value)) return { kind: 'list', items: value.map(compileStructure) };
  if (value !== null && typeof value === 'object') {
    return { kind: 'map', entries: Object.entries(value).map(([k, v]) => [k, compileStructure(v)]) };
  }
  return { kind: 'literal', value };
}

const ABSENT = Symbol('absent');

/**
 * Fills a structured body: a string that is exactly one placeholder takes the value itself (the
 * data object stays an object, a badge a number), and a key whose value is absent is left out;
 * other strings are text templates.
 */
export function renderStructure(s: Structure, v: TemplateValues): unknown {
  const out = fill(s, v);
  return out === ABSENT ? null : out;
}

function fill(s: Structure, v: TemplateValues): unknown {
  switch (s.kind) {
    case 'literal':
      return s.value;
    case 'template': {
      const only = s.parts.length === 1 ? s.parts[0] : undefined;
      if (only !== undefined && typeof only !== 'string') {
        const value = valueOf(v, only);
        return value === undefined ? ABSENT : value;
      }
      return renderText(s.parts, v);
    }
    case 'list':
      return s.items.map((i) => fill(i, v)).filter((x) => x !== ABSENT);
    case 'map': {
      const obj: Record<string, unknown> = {};
      for (const [k, sub] of s.entries) {
        const x = fill(sub, v);
        if (x !== ABSENT) Object.defineProperty(obj, k, { value: x, enumerable: true, writable: true, configurable: true });
      }
      return obj;
    }
  }
}

/** Every placeholder a structure uses. */
export function placeholdersOfStructure(s: Structure): Set<Placeholder> {
  switch (s.kind) {
    case 'template':
      return placeholdersOf(s.parts);
    case 'list':
      return new Set(s.items.flatMap((i) => [...placeholdersOfStructure(i)]));
    case 'map':
      return new Set(s.entries.flatMap(([, i]) => [...placeholdersOfStructure(i)]));
    case 'literal':
      return new Set();
  }
}

/** Awkward sample values for checking a template at load time. */
export const SAMPLE_VALUES: TemplateValues = {
  uid: 'u"1\\',
  title: 'T "quoted" \\ back\nline',
  msg: 'm \u2028 \u00e9\u8fdb "x"',
  badge: 1,
  sound: 'default',
  data: { k: 'v "q"', n: 1 },
  frame: '{"uid":"u1"}',
  token: 't"ok',
};
