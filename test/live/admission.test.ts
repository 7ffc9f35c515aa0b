import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type AddressInfo, type Server, type Socket, connect, createServer } from 'node:net';
import { type TestContext, test } from 'node:test';
import { Admission, NO_LIMITS } from '../../src/live/admission.js';
import { noTelemetry } from '../../src/obs/metrics.js';

// What a connection keeps for as long as it lives: the Admission's handlers are shared by every
// socket (no closure, once-wrapper or bound function per connection), and a connection taken
// over (a WebSocket handshake, an HTTP request) keeps no timeout listener.

async function server(t: TestContext, admission: Admission): Promise<{ srv: Server; accepted: Socket[]; connectOne: () => Promise<Socket> }> {
  const accepted: Socket[] = [];
  const srv = createServer((s) => {
    s.on('error', () => {});
    if (admission.accept(s)) accepted.push(s);
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const clients: Socket[] = [];
  t.after(() => {
    for (const c of clients) c.destroy();
    for (const s of accepted) s.destroy();
    srv.close();
  });
  const connectOne = async () => {
    const before = accepted.length;
    const c = connect((srv.address() as AddressInfo).port, '127.0.0.1');
    c.on('error', () => {});
    clients.push(c);
    await once(c, 'connect');
    for (let i = 0; i < 500 && accepted.length === before; i++) await new Promise((r) => setTimeout(r, 10));
    return accepted[accepted.length - 1] as Socket;
  };
  return { srv, accepted, connectOne };
}

test('admission: every accepted socket shares one close handler and one silence handler; takenOver leaves no timeout listener', async (t) => {
  const admission = new Admission({ limits: { ...NO_LIMITS, silentTimeout: 60_000 }, behindProxy: false, telemetry: noTelemetry });
  const { connectOne } = await server(t, admission);
  const a = await connectOne();
  const b = await connectOne();
  assert.equal(admission.open, 2);
  const [closeA] = a.listeners('close');
  const [closeB] = b.listeners('close');
  assert.equal(typeof closeA, 'function');
  assert.equal(closeA, closeB, 'one close handler for all sockets');
  assert.equal(a.listenerCount('timeout'), 1, 'silence is timed until taken over');
  admission.takenOver(a);
  assert.equal(a.listenerCount('timeout'), 0, 'no timeout listener left once taken over');
  assert.equal(a.timeout, 0);
  assert.equal(b.listenerCount('timeout'), 1);
  const closed = once(a, 'close');
  a.destroy();
  await closed;
  assert.equal(admission.open, 1, 'the shared close handler released the right socket');
});

test('admission: a connection not taken over is closed after silentTimeout (the shared handler destroys the right socket)', async (t) => {
  const refused: string[] = [];
  const telemetry = { ...noTelemetry, refused: (l: string) => refused.push(l) };
  const admission = new Admission({ limits: { ...NO_LIMITS, silentTimeout: 200 }, behindProxy: false, telemetry });
  const { connectOne } = await server(t, admission);
  const quiet = await connectOne();
  const kept = await connectOne();
  admission.takenOver(kept);
  await once(quiet, 'close');
  assert.deepEqual(refused, ['silent']);
  assert.equal(kept.destroyed, false, 'the one taken over is kept');
  assert.equal(admission.open, 1);
});
