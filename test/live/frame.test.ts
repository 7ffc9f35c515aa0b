import assert from 'node:assert/strict';
import { once } from 'node:events';
import { type AddressInfo } from 'node:net';
import { type TestContext, test } from 'node:test';
import { WebSocket, WebSocketServer } from 'ws';
import { sendTextFrame, textFrame } from '../../src/live/frame.js';

// The live transport writes a message's frame, built once, straight to each session's socket
// when ws would have written it at once. These tests hold that to what ws itself sends: a real
// ws client reads every length class of the header, frames keep their order with ws's own sends
// (text, ping, close), and with compression negotiated ws sends it instead.

async function pair(t: TestContext, perMessageDeflate: boolean): Promise<{ server: WebSocket; client: WebSocket; texts: string[]; events: string[] }> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate });
  t.after(() => wss.close());
  await once(wss, 'listening');
  const port = (wss.address() as AddressInfo).port;
  const client = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate });
  t.after(() => client.terminate());
  const texts: string[] = [];
  const events: string[] = [];
  client.on('message', (data, isBinary) => {
    assert.equal(isBinary, false);
    const text = (data as Buffer).toString('utf8');
    texts.push(text);
    events.push(`text:${text.length}`);
  });
  client.on('ping', () => events.push('ping'));
  const [server] = (await once(wss, 'connection')) as [WebSocket];
  await once(client, 'open');
  return { server, client, texts, events };
}

async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 2000 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.ok(cond(), 'timed out');
}

test('textFrame: the header of each length class (7-bit, 16-bit, 64-bit) and UTF-8 payloads, read back by a real ws client', async (t) => {
  const { server, texts } = await pair(t, false);
  const sent = ['', 'a', 'x'.repeat(125), 'x'.repeat(126), 'é'.repeat(63), 'é'.repeat(64), 'y'.repeat(65535), 'z'.repeat(65536), `${'€'.repeat(30000)}😀`, '{"uid":"uid1","percent":"88%"}'];
  for (const text of sent) assert.equal(sendTextFrame(server, textFrame(text), text), true, 'written straight to the socket');
  await until(() => texts.length === sent.length);
  assert.deepEqual(texts, sent);
  // The bytes ws's own Sender would write for the same text.
  const f = textFrame('x'.repeat(300));
  assert.deepEqual([...f.subarray(0, 4)], [0x81, 126, 0x01, 0x2c]);
  const big = textFrame('z'.repeat(65536));
  assert.deepEqual([...big.subarray(0, 10)], [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
  assert.equal(big.length, 65536 + 10);
});

test('sendTextFrame keeps its frames in order with ws.send and ping, and counts in bufferedAmount until written', async (t) => {
  const { server, events, client } = await pair(t, false);
  sendTextFrame(server, textFrame('a'), 'a');
  server.send('bb');
  server.ping();
  sendTextFrame(server, textFrame('ccc'), 'ccc');
  await until(() => events.length === 4);
  assert.deepEqual(events, ['text:1', 'text:2', 'ping', 'text:3']);
  // A client that does not read: the direct writes pile up in the socket and bufferedAmount says so.
  (client as unknown as { _socket: { pause(): void } })._socket.pause();
  const chunk = 'w'.repeat(64 * 1024);
  const frame = textFrame(chunk);
  for (let i = 0; i < 200 && server.bufferedAmount === 0; i++) {
    for (let k = 0; k < 32; k++) sendTextFrame(server, frame, chunk);
    await new Promise((r) => setImmediate(r));
  }
  assert.ok(server.bufferedAmount > 0, 'unsent direct writes show in bufferedAmount');
});

test('with permessage-deflate negotiated, sendTextFrame leaves the frame to ws (compressed, in order)', async (t) => {
  const { server, texts } = await pair(t, true);
  assert.match(server.extensions, /permessage-deflate/);
  const text = 'q'.repeat(4000);
  assert.equal(sendTextFrame(server, textFrame(text), text), false, 'ws sends it');
  server.send('after');
  await until(() => texts.length === 2);
  assert.deepEqual(texts, [text, 'after']);
});

test('after close() nothing is written raw after the close frame: ws refuses the send', async (t) => {
  const { server, client, texts } = await pair(t, false);
  const closed = once(client, 'close');
  server.close(1000, 'bye');
  assert.equal(server.readyState, WebSocket.CLOSING);
  let refused: Error | undefined;
  server.once('error', (e) => (refused = e));
  assert.equal(sendTextFrame(server, textFrame('late'), 'late'), false);
  const [code] = (await closed) as [number];
  assert.equal(code, 1000);
  assert.deepEqual(texts, [], 'no frame after the close frame');
  assert.equal(refused, undefined);
});
