import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  PLACEHOLDERS,
  type TemplateValues,
  compileStructure,
  parseTemplate,
  renderHeader,
  renderJsonText,
  renderStructure,
  renderText,
  renderUrl,
} from '../../../src/push/http/template.js';

/** Every awkward character a message can carry (no NUL). */
const AWKWARD = 'He said "hi" \\ back\\slash \\n not a newline\nreal newline\ttab\rCR \u2028LS\u2029PS \u0001\u0008\u000b\u000c\u001f\u007f ctl 😀 进展 </script> {{uid}} {{msg}} ${HOME} \'single\'';

const base: TemplateValues = { uid: 'u1', frame: 'frame' };

test('template: an unknown placeholder is an error that lists every known one', () => {
  assert.throws(
    () => parseTemplate('https://x/{{uid}}/{{nope}}'),
    (err: Error) => {
      assert.match(err.message, /unknown placeholder \{\{nope\}\}/);
      for (const p of PLACEHOLDERS) assert.ok(err.message.includes(`{{${p}}}`), `${err.message} lists {{${p}}}`);
      return true;
    },
  );
  assert.deepEqual([...PLACEHOLDERS].sort(), ['badge', 'data', 'frame', 'msg', 'sound', 'title', 'token', 'uid']);
  // Spaces inside the braces are allowed; text that is not a placeholder stays literal.
  assert.equal(renderText(parseTemplate('a {{ uid }} b {x} {{1x}}'), base), 'a u1 b {x} {{1x}}');
});

test('template: renderUrl percent-encodes every value (slash, space, unicode, ? & #) so it stays one segment or value', () => {
  const parts = parseTemplate('https://push.example/topic/{{uid}}?t={{title}}&m={{msg}}');
  const v: TemplateValues = { ...base, uid: 'team a/b?c', title: 'x&y=z#frag', msg: 'Grüße 进 😀' };
  const url = renderUrl(parts, v);
  assert.equal(
    url,
    'https://push.example/topic/team%20a%2Fb%3Fc?t=x%26y%3Dz%23frag&m=Gr%C3%BC%C3%9Fe%20%E8%BF%9B%20%F0%9F%98%80',
  );
  const parsed = new URL(url);
  assert.equal(parsed.pathname, '/topic/team%20a%2Fb%3Fc', 'the uid is one path segment');
  assert.equal(decodeURIComponent(parsed.pathname.split('/')[2] ?? ''), 'team a/b?c');
  assert.equal(parsed.hash, '', 'no fragment was injected');
  assert.deepEqual([...parsed.searchParams], [
    ['t', 'x&y=z#frag'],
    ['m', 'Grüße 进 😀'],
  ]);
  // Absent values are empty; the data object is its JSON, encoded.
  assert.equal(renderUrl(parseTemplate('http://h/{{badge}}/{{data}}'), { ...base, data: { a: 1 } }), `http://h//${encodeURIComponent('{"a":1}')}`);
});

test('template: renderHeader turns CR/LF into spaces and sends non-ASCII as an RFC 2047 encoded word', () => {
  const parts = parseTemplate('Title: {{title}}');
  const injected = renderHeader(parts, { ...base, title: 'hi\r\nX-Evil: 1\nY: 2\rZ' });
  assert.doesNotMatch(injected, /[\r\n]/);
  assert.equal(injected, 'Title: hi X-Evil: 1 Y: 2 Z');

  const plain = renderHeader(parts, { ...base, title: 'plain ascii\ttab' });
  assert.equal(plain, 'Title: plain ascii\ttab', 'ASCII text is sent as is');

  const unicode = renderHeader(parts, { ...base, title: 'Grüße\n进展 😀' });
  const m = /^=\?UTF-8\?B\?([A-Za-z0-9+/=]+)\?=$/.exec(unicode);
  assert.ok(m, `an encoded word: ${unicode}`);
  assert.equal(Buffer.from(m[1] ?? '', 'base64').toString('utf8'), 'Title: Grüße 进展 😀', 'decodes to the text, line break as a space');
  // A header value is always legal for fetch/undici (no CR, LF, NUL, or non-Latin-1).
  assert.doesNotThrow(() => new Headers({ 'x-title': unicode, 'x-other': injected }));
});

test('template: renderJsonText escapes a value inside a JSON string (no quotes) and makes one outside a string a JSON value', () => {
  const parts = parseTemplate('{"text": "{{title}}: {{msg}}", "raw": {{msg}}, "data": {{data}}, "badge": {{badge}}, "sound": {{sound}}, "uid": "{{uid}}"}');
  const out = renderJsonText(parts, { ...base, title: 'T "q"', msg: 'line\nbreak', badge: 3, data: { k: 'v', n: [1, null] } });
  assert.equal(
    out,
    '{"text": "T \\"q\\": line\\nbreak", "raw": "line\\nbreak", "data": {"k":"v","n":[1,null]}, "badge": 3, "sound": null, "uid": "u1"}',
  );
  assert.deepEqual(JSON.parse(out), { text: 'T "q": line\nbreak', raw: 'line\nbreak', data: { k: 'v', n: [1, null] }, badge: 3, sound: null, uid: 'u1' });
  // Inside a string, the data object is its JSON text, escaped; absent is empty.
  const inString = renderJsonText(parseTemplate('{"d": "{{data}}", "b": "{{badge}}"}'), { ...base, data: { a: '"x"' } });
  assert.deepEqual(JSON.parse(inString), { d: '{"a":"\\"x\\""}', b: '' });
});

test('template: renderJsonText tracks escaped quotes in the literal text', () => {
  // The \" inside the first string must not end it: {{msg}} is still inside a string.
  const parts = parseTemplate('{"a": "say \\"{{msg}}\\" now", "b": "back\\\\", "c": {{msg}}, "d": "\\\\\\"{{title}}"}');
  const out = renderJsonText(parts, { ...base, msg: 'x"y', title: 't' });
  assert.deepEqual(JSON.parse(out), { a: 'say "x"y" now', b: 'back\\', c: 'x"y', d: '\\"t' });
});

test('template: a JSON text template round-trips the exact text of a message with every awkward character', () => {
  const data = { note: AWKWARD, [AWKWARD]: 1, nested: { list: [AWKWARD, 2, true] } };
  const parts = parseTemplate('{"text":"{{msg}}","combo":"{{title}} | {{msg}}","value":{{msg}},"data":{{data}},"frame":"{{frame}}","uid":"{{uid}}"}');
  const v: TemplateValues = { uid: AWKWARD, title: AWKWARD, msg: AWKWARD, data, frame: AWKWARD };
  const out = renderJsonText(parts, v);
  const parsed = JSON.parse(out) as Record<string, unknown>;
  assert.equal(parsed.text, AWKWARD);
  assert.equal(parsed.combo, `${AWKWARD} | ${AWKWARD}`);
  assert.equal(parsed.value, AWKWARD);
  assert.deepEqual(parsed.data, data);
  assert.equal(parsed.frame, AWKWARD);
  assert.equal(parsed.uid, AWKWARD);
  // Placeholder-looking text in a value is not expanded again.
  assert.ok((parsed.text as string).includes('{{uid}} {{msg}}'));
  // Every control character is escaped: nothing raw below U+0020 in the output.
  // eslint-disable-next-line no-control-regex
  assert.doesNotMatch(out, /[\u0000-\u001f]/);
});

test('template: renderText is the plain text; absent values are empty and data is its JSON', () => {
  const parts = parseTemplate('{{title}}|{{msg}}|{{badge}}|{{sound}}|{{data}}|{{token}}');
  assert.equal(renderText(parts, { ...base, title: 'T', badge: 0, data: { a: 1 } }), 'T||0||{"a":1}|');
  assert.equal(renderText(parseTemplate('{{msg}}'), { ...base, msg: AWKWARD }), AWKWARD);
});

test('template: renderStructure keeps native types for an exact placeholder, drops absent keys, interpolates mixed strings', () => {
  const s = compileStructure({
    to: '/topics/{{uid}}',
    text: '{{msg}}',
    title: '{{title}}',
    data: '{{data}}',
    badge: '{{badge}}',
    sound: '{{sound}}',
    mixed: 'Hi {{uid}}: {{badge}} new ({{sound}})',
    literal: { n: 5, t: true, z: null, s: 'plain' },
    list: ['{{title}}', '{{msg}}', 'x {{badge}}', 7],
    nested: { deep: { d: '{{data}}', b: '{{badge}}' } },
  });
  const data = { k: 'v', arr: [1, { x: null }] };
  const out = renderStructure(s, { ...base, msg: 'hello', badge: 3, data });
  assert.deepEqual(out, {
    to: '/topics/u1',
    text: 'hello',
    data,
    badge: 3,
    mixed: 'Hi u1: 3 new ()',
    literal: { n: 5, t: true, z: null, s: 'plain' },
    list: ['hello', 'x 3', 7],
    nested: { deep: { d: data, b: 3 } },
  });
  const obj = out as Record<string, unknown>;
  assert.equal(typeof obj.badge, 'number');
  assert.ok(!('title' in obj) && !('sound' in obj), 'absent values drop their key');
  assert.equal(JSON.stringify(out).includes('"title"'), false);
  // A badge of 0 is a value, not absent.
  assert.deepEqual(renderStructure(compileStructure({ b: '{{badge}}' }), { ...base, badge: 0 }), { b: 0 });
  // A whole body that is one absent placeholder is null.
  assert.equal(renderStructure(compileStructure('{{title}}'), base), null);
  // A value with placeholder-looking text is not expanded again.
  assert.deepEqual(renderStructure(compileStructure({ t: '{{msg}}', m: '> {{msg}}' }), { ...base, msg: '{{uid}}' }), { t: '{{uid}}', m: '> {{uid}}' });
});

test('template: a "__proto__" key in a structured body stays an own key and does not change the prototype', () => {
  const body = JSON.parse('{"__proto__": {"polluted": "{{msg}}"}, "constructor": "{{uid}}", "x": {"__proto__": "{{badge}}"}}') as unknown;
  const out = renderStructure(compileStructure(body), { ...base, msg: 'yes', badge: 2 }) as Record<string, unknown>;
  assert.ok(Object.hasOwn(out, '__proto__'), '__proto__ is an own key');
  assert.equal(Object.getPrototypeOf(out), Object.prototype, 'the prototype is untouched');
  assert.equal((out as { polluted?: unknown }).polluted, undefined);
  assert.equal(({} as { polluted?: unknown }).polluted, undefined, 'Object.prototype was not polluted');
  assert.equal(out.constructor, 'u1');
  assert.deepEqual(JSON.parse(JSON.stringify(out)), JSON.parse('{"__proto__": {"polluted": "yes"}, "constructor": "u1", "x": {"__proto__": 2}}'));
  assert.equal(JSON.stringify(out), '{"__proto__":{"polluted":"yes"},"constructor":"u1","x":{"__proto__":2}}');
});
