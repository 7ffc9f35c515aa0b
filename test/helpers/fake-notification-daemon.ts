/**
 * A desktop notification daemon for Chromium on a private D-Bus session bus, so that a test can
 * click a notification the way a Linux desktop does.
 *
 * Chromium on Linux shows web notifications through the freedesktop notification service
 * (`org.freedesktop.Notifications` on the session bus, NotificationPlatformBridgeLinux) when a
 * process owns that name, headless too. A click on the desktop is that service's `ActionInvoked`
 * signal with the action key "default"; Chromium turns it into the service worker's
 * `notificationclick` event, with the permission to focus or open a window that only a user's
 * click grants (a `NotificationEvent` dispatched by script gets "Not allowed to open a window").
 *
 * `notificationDaemon(t)` starts `dbus-daemon` on a socket of its own (a minimal config: nothing is
 * activated, no system bus), owns `org.freedesktop.Notifications` on it, answers `GetCapabilities`,
 * `GetServerInformation`, `Notify` and `CloseNotification` and records the notifications, and
 * `click(id)` emits `ActionInvoked(id, "default")`. Chromium is started with `env.DBUS_SESSION_BUS_ADDRESS`.
 * The wire protocol (little-endian messages, EXTERNAL auth) is written out here: the suite has no
 * D-Bus library, and a notification server needs only a handful of types.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { type Socket, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';

export const DBUS_DAEMON = '/usr/bin/dbus-daemon';
// CI installs dbus-daemon, so there a missing binary is a failure, not a skip.
export const SKIP = existsSync(DBUS_DAEMON) || process.env.CI ? false : `${DBUS_DAEMON} not installed (.ci/run installs it)`;
const SLOW_MS = 20_000;

// ---- marshalling (little-endian; alignment counted from the start of the message) ----

/** The end of the single complete type starting at sig[i]. */
function typeEnd(sig: string, i: number): number {
  const c = sig[i];
  if (c === 'a') return typeEnd(sig, i + 1);
  if (c === '(' || c === '{') {
    const close = c === '(' ? ')' : '}';
    let j = i + 1;
    while (sig[j] !== close) j = typeEnd(sig, j);
    return j + 1;
  }
  if (c === undefined) throw new Error(`bad D-Bus signature ${JSON.stringify(sig)}`);
  return i + 1;
}

function splitTypes(sig: string): string[] {
  const out: string[] = [];
  for (let i = 0; i < sig.length; ) {
    const e = typeEnd(sig, i);
    out.push(sig.slice(i, e));
    i = e;
  }
  return out;
}

function alignment(type: string): number {
  switch (type[0]) {
    case 'y':
    case 'g':
    case 'v':
      return 1;
    case 'n':
    case 'q':
      return 2;
    case 'x':
    case 't':
    case 'd':
    case '(':
    case '{':
      return 8;
    default:
      return 4;
  }
}

/** A variant's value: its signature and the value. */
type Variant = [string, unknown];

class Writer {
  private buf = Buffer.alloc(256);
  pos = 0;
  private room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const bigger = Buffer.alloc(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(bigger);
    this.buf = bigger;
  }
  align(n: number): void {
    const pad = (n - (this.pos % n)) % n;
    this.room(pad);
    this.buf.fill(0, this.pos, this.pos + pad);
    this.pos += pad;
  }
  u8(v: number): void {
    this.room(1);
    this.buf.writeUInt8(v, this.pos++);
  }
  u32(v: number): void {
    this.align(4);
    this.room(4);
    this.buf.writeUInt32LE(v, this.pos);
    this.pos += 4;
  }
  bytes(b: Buffer): void {
    this.room(b.length);
    b.copy(this.buf, this.pos);
    this.pos += b.length;
  }
  patchU32(at: number, v: number): void {
    this.buf.writeUInt32LE(v, at);
  }
  done(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
  write(type: string, value: unknown): void {
    const c = type[0];
    switch (c) {
      case 'y':
        return this.u8(value as number);
      case 'b':
        return this.u32(value ? 1 : 0);
      case 'u':
        return this.u32(value as number);
      case 'i':
        this.align(4);
        this.room(4);
        this.buf.writeInt32LE(value as number, this.pos);
        this.pos += 4;
        return;
      case 's':
      case 'o': {
        const b = Buffer.from(value as string, 'utf8');
        this.u32(b.length);
        this.bytes(b);
        return this.u8(0);
      }
      case 'g': {
        const b = Buffer.from(value as string, 'ascii');
        this.u8(b.length);
        this.bytes(b);
        return this.u8(0);
      }
      case 'v': {
        const [sig, v] = value as Variant;
        this.write('g', sig);
        return this.write(sig, v);
      }
      case 'a': {
        const elem = type.slice(1);
        this.u32(0);
        const lenAt = this.pos - 4;
        this.align(alignment(elem));
        const start = this.pos;
        for (const e of value as unknown[]) this.write(elem, e);
        return this.patchU32(lenAt, this.pos - start);
      }
      case '(':
      case '{': {
        this.align(8);
        const types = splitTypes(type.slice(1, -1));
        types.forEach((t, k) => this.write(t, (value as unknown[])[k]));
        return;
      }
      default:
        throw new Error(`D-Bus type ${type} is not written by this helper`);
    }
  }
}

class Reader {
  constructor(
    private readonly buf: Buffer,
    public pos: number,
  ) {}
  align(n: number): void {
    this.pos += (n - (this.pos % n)) % n;
  }
  read(type: string): unknown {
    const c = type[0];
    this.align(alignment(type));
    switch (c) {
      case 'y':
        return this.buf.readUInt8(this.pos++);
      case 'b':
      case 'u': {
        const v = this.buf.readUInt32LE(this.pos);
        this.pos += 4;
        return c === 'b' ? v !== 0 : v;
      }
      case 'i': {
        const v = this.buf.readInt32LE(this.pos);
        this.pos += 4;
        return v;
      }
      case 'n':
      case 'q': {
        const v = c === 'n' ? this.buf.readInt16LE(this.pos) : this.buf.readUInt16LE(this.pos);
        this.pos += 2;
        return v;
      }
      case 'x':
      case 't':
      case 'd': {
        const v = c === 'x' ? this.buf.readBigInt64LE(this.pos) : c === 't' ? this.buf.readBigUInt64LE(this.pos) : this.buf.readDoubleLE(this.pos);
        this.pos += 8;
        return v;
      }
      case 's':
      case 'o': {
        const n = this.buf.readUInt32LE(this.pos);
        const s = this.buf.toString('utf8', this.pos + 4, this.pos + 4 + n);
        this.pos += 4 + n + 1;
        return s;
      }
      case 'g': {
        const n = this.buf.readUInt8(this.pos);
        const s = this.buf.toString('ascii', this.pos + 1, this.pos + 1 + n);
        this.pos += 1 + n + 1;
        return s;
      }
      case 'v': {
        const sig = this.read('g') as string;
        return [sig, this.read(sig)] as Variant;
      }
      case 'a': {
        const elem = type.slice(1);
        const n = this.buf.readUInt32LE(this.pos);
        this.pos += 4;
        this.align(alignment(elem));
        const end = this.pos + n;
        const out: unknown[] = [];
        while (this.pos < end) out.push(this.read(elem));
        return out;
      }
      case '(':
      case '{':
        return splitTypes(type.slice(1, -1)).map((t) => this.read(t));
      default:
        throw new Error(`D-Bus type ${type} is not read by this helper`);
    }
  }
}

const enum Kind {
  Call = 1,
  Return = 2,
  Error = 3,
  Signal = 4,
}

interface Message {
  kind: number;
  flags: number;
  serial: number;
  path?: string;
  iface?: string;
  member?: string;
  errorName?: string;
  replySerial?: number;
  destination?: string;
  sender?: string;
  signature: string;
  body: unknown[];
}

const FIELDS: [keyof Message, number, string][] = [
  ['path', 1, 'o'],
  ['iface', 2, 's'],
  ['member', 3, 's'],
  ['errorName', 4, 's'],
  ['replySerial', 5, 'u'],
  ['destination', 6, 's'],
  ['sender', 7, 's'],
];

function encode(m: Message): Buffer {
  const body = new Writer();
  splitTypes(m.signature).forEach((t, k) => body.write(t, m.body[k]));
  const b = body.done();
  const fields: [number, Variant][] = [];
  for (const [key, code, sig] of FIELDS) if (m[key] !== undefined) fields.push([code, [sig, m[key]]]);
  if (m.signature !== '') fields.push([8, ['g', m.signature]]);
  const w = new Writer();
  w.u8('l'.charCodeAt(0));
  w.u8(m.kind);
  w.u8(m.flags);
  w.u8(1);
  w.u32(b.length);
  w.u32(m.serial);
  w.write('a(yv)', fields);
  w.align(8);
  w.bytes(b);
  return w.done();
}

/** The length of the first whole message in buf, or 0 while it is incomplete. */
function messageLength(buf: Buffer): number {
  if (buf.length < 16) return 0;
  if (buf[0] !== 'l'.charCodeAt(0)) throw new Error('a big-endian D-Bus message: not read by this helper');
  const fieldsLen = buf.readUInt32LE(12);
  const total = Math.ceil((16 + fieldsLen) / 8) * 8 + buf.readUInt32LE(4);
  return buf.length >= total ? total : 0;
}

function decode(buf: Buffer): Message {
  const r = new Reader(buf, 12);
  const fields = r.read('a(yv)') as [number, Variant][];
  const m: Message = { kind: buf[1] as number, flags: buf[2] as number, serial: buf.readUInt32LE(8), signature: '', body: [] };
  for (const [code, [, v]] of fields) {
    const f = FIELDS.find(([, c]) => c === code);
    if (f) (m as unknown as Record<string, unknown>)[f[0]] = v;
    if (code === 8) m.signature = v as string;
  }
  r.align(8);
  m.body = splitTypes(m.signature).map((t) => r.read(t));
  return m;
}

// ---- the notification daemon ----

export interface DesktopNotification {
  id: number;
  appName: string;
  summary: string;
  body: string;
  /** Action keys and labels, alternating, as Chromium sent them ("default" is the click). */
  actions: string[];
  /** True once Chromium asked to close it (CloseNotification). */
  closed: boolean;
}

export interface NotificationDaemon {
  /** For Chromium's environment: `DBUS_SESSION_BUS_ADDRESS`. */
  address: string;
  /** Every notification Chromium showed, in order. */
  shown: DesktopNotification[];
  /** Resolves with the first notification shown whose summary is `summary` (waits up to the safety timeout). */
  waitFor(summary: string): Promise<DesktopNotification>;
  /** Resolves once Chromium has closed notification `id` (waits up to the safety timeout). */
  waitClosed(id: number): Promise<void>;
  /** What a user's click on notification `id` sends: ActionInvoked(id, "default"). */
  click(id: number): void;
}

const NAME = 'org.freedesktop.Notifications';
const PATH = '/org/freedesktop/Notifications';

/**
 * Starts dbus-daemon on a socket of its own and the notification service on it; both stop when
 * the test ends (registered first, so after what the test starts later, such as the browser).
 */
export async function notificationDaemon(t: TestContext): Promise<NotificationDaemon> {
  const dir = mkdtempSync(join(tmpdir(), 'notify-dbus-'));
  const socketPath = join(dir, 'bus');
  const address = `unix:path=${socketPath}`;
  let bus: ChildProcess | undefined;
  let sock: Socket | undefined;
  t.after(async () => {
    sock?.destroy();
    if (bus && bus.exitCode === null && bus.signalCode === null) {
      const b = bus;
      const exited = new Promise<void>((r) => b.once('exit', () => r()));
      b.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });
  writeFileSync(
    join(dir, 'bus.conf'),
    `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>${address}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
`,
  );

  // dbus-daemon prints its address once it listens.
  const b = spawn(DBUS_DAEMON, ['--config-file', join(dir, 'bus.conf'), '--nofork', '--nopidfile', '--print-address=1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  bus = b;
  let err = '';
  b.stderr?.setEncoding('utf8');
  b.stderr?.on('data', (c: string) => (err += c));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`dbus-daemon printed no address within ${SLOW_MS} ms; stderr:\n${err}`)), SLOW_MS);
    let out = '';
    b.stdout?.setEncoding('utf8');
    b.stdout?.on('data', (c: string) => {
      out += c;
      if (out.includes('\n')) {
        clearTimeout(timer);
        resolve();
      }
    });
    b.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`dbus-daemon exited (${code ?? signal}); stderr:\n${err}`));
    });
  });

  // Connect and authenticate (EXTERNAL: our uid), then speak binary messages.
  const s = connect(socketPath);
  sock = s;
  await new Promise<void>((resolve, reject) => {
    s.once('connect', () => resolve());
    s.once('error', reject);
  });
  s.write(Buffer.concat([Buffer.from([0]), Buffer.from(`AUTH EXTERNAL ${Buffer.from(String(process.getuid?.() ?? 0)).toString('hex')}\r\n`)]));
  await new Promise<void>((resolve, reject) => {
    let line = '';
    const onData = (c: Buffer): void => {
      line += c.toString('latin1');
      if (!line.includes('\r\n')) return;
      s.off('data', onData);
      if (line.startsWith('OK ')) resolve();
      else reject(new Error(`dbus-daemon refused EXTERNAL auth: ${line.trim()}`));
    };
    s.on('data', onData);
  });
  s.write('BEGIN\r\n');

  let serial = 0;
  const replies = new Map<number, { resolve(m: Message): void; reject(e: Error): void }>();
  const send = (m: Omit<Message, 'serial' | 'flags'> & { flags?: number }): number => {
    const n = ++serial;
    s.write(encode({ flags: 0, ...m, serial: n }));
    return n;
  };
  const call = (member: string, signature: string, body: unknown[]): Promise<Message> =>
    new Promise((resolve, reject) => {
      const n = send({ kind: Kind.Call, path: '/org/freedesktop/DBus', iface: 'org.freedesktop.DBus', member, destination: 'org.freedesktop.DBus', signature, body });
      replies.set(n, { resolve, reject });
    });
  const signal = (member: string, signature: string, body: unknown[]): void => {
    send({ kind: Kind.Signal, path: PATH, iface: NAME, member, signature, body });
  };

  const shown: DesktopNotification[] = [];
  let nextId = 1;
  const changed = new Set<() => void>();
  const notify = (): void => {
    for (const f of changed) f();
  };
  const waitUntil = <T>(find: () => T | undefined, what: string): Promise<T> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const v = find();
        if (v === undefined) return;
        changed.delete(check);
        clearTimeout(timer);
        resolve(v);
      };
      const timer = setTimeout(() => {
        changed.delete(check);
        reject(new Error(`${what} within ${SLOW_MS} ms; shown: ${JSON.stringify(shown)}`));
      }, SLOW_MS);
      changed.add(check);
      check();
    });

  const answer = (m: Message): void => {
    const reply = (signature: string, body: unknown[]): void => {
      if (m.flags & 1) return; // NO_REPLY_EXPECTED
      send({ kind: Kind.Return, replySerial: m.serial, destination: m.sender, signature, body });
    };
    const key = `${m.iface ?? ''}.${m.member ?? ''}`;
    if (m.path === PATH && key === `${NAME}.GetCapabilities`) return reply('as', [['actions', 'body']]);
    if (m.path === PATH && key === `${NAME}.GetServerInformation`) return reply('ssss', ['notify-test', 'notify', '1', '1.2']);
    if (m.path === PATH && key === `${NAME}.Notify`) {
      const [appName, replaces, , summary, body, actions] = m.body as [string, number, string, string, string, string[]];
      const id = replaces !== 0 ? replaces : nextId++;
      const prev = shown.find((n) => n.id === id);
      if (prev) Object.assign(prev, { appName, summary, body, actions, closed: false });
      else shown.push({ id, appName, summary, body, actions, closed: false });
      reply('u', [id]);
      return notify();
    }
    if (m.path === PATH && key === `${NAME}.CloseNotification`) {
      const id = m.body[0] as number;
      const n = shown.find((x) => x.id === id);
      reply('', []);
      if (n && !n.closed) {
        n.closed = true;
        signal('NotificationClosed', 'uu', [id, 3]); // 3: closed by a call to CloseNotification
      }
      return notify();
    }
    if (m.flags & 1) return;
    send({ kind: Kind.Error, errorName: 'org.freedesktop.DBus.Error.UnknownMethod', replySerial: m.serial, destination: m.sender, signature: 's', body: [`no ${key} at ${m.path}`] });
  };

  let pending = Buffer.alloc(0);
  s.on('data', (c: Buffer) => {
    pending = Buffer.concat([pending, c]);
    for (let n = messageLength(pending); n > 0; n = messageLength(pending)) {
      const m = decode(pending.subarray(0, n));
      pending = pending.subarray(n);
      if (m.kind === Kind.Call) answer(m);
      else if ((m.kind === Kind.Return || m.kind === Kind.Error) && m.replySerial !== undefined) {
        const p = replies.get(m.replySerial);
        replies.delete(m.replySerial);
        if (m.kind === Kind.Return) p?.resolve(m);
        else p?.reject(new Error(`D-Bus ${m.errorName}: ${String(m.body[0])}`));
      }
    }
  });

  await call('Hello', '', []);
  const owned = await call('RequestName', 'su', [NAME, 4]); // 4: DO_NOT_QUEUE
  if (owned.body[0] !== 1) throw new Error(`could not own ${NAME} on the test bus (RequestName answered ${String(owned.body[0])})`);

  return {
    address,
    shown,
    waitFor: (summary) => waitUntil(() => shown.find((n) => n.summary === summary), `no notification ${JSON.stringify(summary)} shown on the desktop bus`),
    waitClosed: (id) => waitUntil(() => (shown.find((n) => n.id === id)?.closed ? true : undefined), `notification ${id} was not closed`).then(() => undefined),
    click: (id) => signal('ActionInvoked', 'us', [id, 'default']),
  };
}
