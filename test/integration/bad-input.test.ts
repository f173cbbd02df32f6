// Bad input through real sockets: each bad connection gets a bounded, counted outcome (blind
// forwarding or close) while a good Go Away publisher on the same proxy keeps working.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { RtmpPublisher } from '../../src/client/rtmp-client.js';
import { ChunkWriter } from '../../src/rtmp/chunk-writer.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { amf0Object } from '../../src/rtmp/amf0.js';
import { controlMessage, encodeCommand } from '../../src/rtmp/messages.js';
import { type FakeConnection, FakeRtmpServer } from '../helpers/fake-rtmp-server.js';
import { type TestProxy, eventually, startTestProxy } from '../helpers/proxy.js';

const HANDSHAKE = 1 + 1536 + 1536;

/** C0 (version 3) + C1 + C2 as a client would send once it has S1 (content irrelevant to the proxy). */
function handshakeBytes(version = 3): Buffer {
  const b = randomBytes(HANDSHAKE);
  b[0] = version;
  return b;
}

/** A raw client: writes `bytes`, resolves with what it got back when the proxy closes it (or `waitMs` passes). */
async function rawClient(port: number): Promise<net.Socket> {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => {});
  await new Promise<void>((r) => s.once('connect', () => r()));
  return s;
}

function closed(s: net.Socket): Promise<void> {
  return s.destroyed ? Promise.resolve() : new Promise((r) => s.once('close', () => r()));
}

async function metric(tp: TestProxy, re: RegExp): Promise<number> {
  const text = await (await tp.admin('/metrics')).text();
  const m = re.exec(text);
  return m === null ? 0 : Number(m[1]);
}

describe('bad input never harms another session', () => {
  let fake: FakeRtmpServer;
  let tp: TestProxy;
  let good: RtmpPublisher;
  let goodConn: FakeConnection;
  let sent = 0;

  /** The good publisher sends a few frames; the backend must receive every one. */
  async function goodStillWorks(): Promise<void> {
    for (let i = 0; i < 5; i++) {
      const body = Buffer.alloc(2000, 0x27);
      good.sendMedia(MessageType.Video, sent * 33, body);
      sent++;
    }
    await eventually(() => goodConn.media === sent, `good publisher's ${sent} frames at the backend`);
    assert.equal(goodConn.parseError, null);
  }

  before(async () => {
    fake = new FakeRtmpServer();
    await fake.listen();
    tp = await startTestProxy(
      { fake: fake.port },
      { healthEnabled: 'false', limitsHandshakeTimeoutMs: '400ms', limitsIdleTimeoutMs: '5s', limitsMaxMessageSize: '1m', limitsMaxCommandSize: '64k' },
    );
    good = new RtmpPublisher(tp.url('live', 'good'), { supportsGoAway: true, chunkSize: 4096 });
    await good.publish();
    goodConn = fake.connections.at(-1)!;
    await goodStillWorks();
  });

  after(async () => {
    good.destroy();
    await tp.stop();
    await fake.close();
  });

  test('random bytes: bad version byte ⇒ blind-forwarded untouched, counted', async () => {
    const junk = randomBytes(64 * 1024);
    junk[0] = 0x47; // 'G' as in "GET / HTTP/1.1": a scanner
    const before = await metric(tp, /rtmp_goaway_parse_fallbacks_total\{direction="c2s",reason="bad-version"\} (\d+)/);
    const n = fake.connections.length;
    const s = await rawClient(tp.proxy.address.port);
    s.write(junk);
    await eventually(() => fake.connections.length > n && fake.connections.at(-1)!.bytesReceived === junk.length, 'junk forwarded');
    assert.ok(Buffer.concat(fake.connections.at(-1)!.raw).equals(junk), 'blind forwarding is byte-exact');
    assert.equal(await metric(tp, /rtmp_goaway_parse_fallbacks_total\{direction="c2s",reason="bad-version"\} (\d+)/), before + 1);
    s.destroy();
    await goodStillWorks();
  });

  test('RTMPE (C0 = 6) ⇒ blind forwarding, never Go Away', async () => {
    const n = fake.connections.length;
    const s = await rawClient(tp.proxy.address.port);
    const bytes = handshakeBytes(6);
    s.write(bytes);
    await eventually(() => fake.connections.length > n && fake.connections.at(-1)!.bytesReceived === bytes.length, 'RTMPE bytes forwarded');
    const sessions = await tp.api<{ parseFallback: string | null; goAway: boolean }[]>('/api/sessions');
    assert.ok(sessions.some((x) => x.parseFallback === 'rtmpe' && !x.goAway));
    s.destroy();
    await goodStillWorks();
  });

  test('truncated handshake ⇒ closed by the handshake timeout', async () => {
    const s = await rawClient(tp.proxy.address.port);
    s.write(handshakeBytes().subarray(0, 700));
    await closed(s);
    await eventually(() => tp.logs.some((l) => l['msg'] === 'session end' && l['reason'] === 'handshake-timeout'), 'handshake-timeout logged');
    await goodStillWorks();
  });

  test('a 4 GiB AMF0 long string in connect ⇒ bad-amf fallback, no allocation, process alive', async () => {
    const s = await rawClient(tp.proxy.address.port);
    const w = new ChunkWriter();
    // connect command whose command object holds a long string declaring 0xFFFFFFFF bytes.
    const amf = Buffer.concat([
      Buffer.from([0x02, 0x00, 0x07]), Buffer.from('connect'),
      Buffer.from([0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]),
      Buffer.from([0x03, 0x00, 0x03]), Buffer.from('app'), Buffer.from([0x0c, 0xff, 0xff, 0xff, 0xff]), Buffer.from('live'),
    ]);
    s.write(Buffer.concat([handshakeBytes(), w.write({ csid: 3, timestamp: 0, typeId: MessageType.CommandAmf0, streamId: 0, payload: amf })]));
    await eventually(async () => (await metric(tp, /rtmp_goaway_parse_fallbacks_total\{direction="c2s",reason="bad-amf"\} (\d+)/)) >= 1, 'bad-amf counted');
    s.destroy();
    await goodStillWorks();
  });

  test('a 16 MiB declared message length over limits.maxMessageSize ⇒ message-too-large', async () => {
    const s = await rawClient(tp.proxy.address.port);
    const header = Buffer.from([0x06, 0, 0, 0, 0xff, 0xff, 0xff, MessageType.Video, 1, 0, 0, 0]);
    s.write(Buffer.concat([handshakeBytes(), header, randomBytes(100)]));
    await eventually(async () => (await metric(tp, /reason="message-too-large"\} (\d+)/)) >= 1, 'message-too-large counted');
    s.destroy();
    await goodStillWorks();
  });

  test('Set Chunk Size 1 (100 k tiny chunks) ⇒ chunk-size fallback; 100 k tiny legal messages parse', async () => {
    // Both floods are built before connecting: the handshake timeout runs from the accept, and
    // building 100 k chunks on a loaded machine can take longer than it.
    const w = new ChunkWriter();
    const parts = [handshakeBytes(), w.write(controlMessage(MessageType.SetChunkSize, 1))];
    w.chunkSize = 1;
    parts.push(w.write({ csid: 6, timestamp: 0, typeId: MessageType.Video, streamId: 1, payload: Buffer.alloc(100_000, 0x27) }));
    const flood = Buffer.concat(parts);
    const s = await rawClient(tp.proxy.address.port);
    s.write(flood);
    await eventually(async () => (await metric(tp, /reason="chunk-size"\} (\d+)/)) >= 1, 'chunk-size counted');
    s.destroy();

    // Legal but abusive: 100,000 one-byte audio messages at the default chunk size.
    const lw = new ChunkWriter(true);
    // A real connect first: the handshake timeout bounds the wait for it, not the flood.
    const connect = encodeCommand('connect', 1, amf0Object({ app: 'live', tcUrl: 'rtmp://127.0.0.1/live' }));
    const msgs: Buffer[] = [handshakeBytes(), lw.write({ csid: 3, timestamp: 0, typeId: MessageType.CommandAmf0, streamId: 0, payload: connect })];
    for (let i = 0; i < 100_000; i++) msgs.push(lw.write({ csid: 4, timestamp: i, typeId: MessageType.Audio, streamId: 1, payload: Buffer.of(0xaf) }));
    const all = Buffer.concat(msgs);
    const n = fake.connections.length;
    const legal = await rawClient(tp.proxy.address.port);
    legal.write(all);
    await eventually(() => fake.connections.length > n && fake.connections.at(-1)!.bytesReceived === all.length, '100k messages forwarded');
    const sessions = await tp.api<{ bytesIn: number; parseFallback: string | null }[]>('/api/sessions');
    assert.ok(sessions.some((x) => x.bytesIn === all.length && x.parseFallback === null), 'the legal flood still parses');
    legal.destroy();
    await goodStillWorks();
  });

  test('after all that the good publisher still gets Go Away on drain', async () => {
    await tp.api('/api/backends/fake/drain?force=1', { method: 'POST' });
    await eventually(() => good.goAwayReceived, 'Go Away to the good publisher');
    await tp.api('/api/backends/fake/undrain', { method: 'POST' });
  });
});

describe('onParseError: close', () => {
  test('a session whose stream stops parsing is closed, not forwarded', async () => {
    const fake = new FakeRtmpServer();
    await fake.listen();
    const tp = await startTestProxy({ fake: fake.port }, { healthEnabled: 'false', onParseError: 'close' });
    try {
      const s = await rawClient(tp.proxy.address.port);
      const header = Buffer.from([0x46, 0, 0, 0, 0, 0, 4, 1]); // fmt 1 on a csid with no fmt 0 before
      s.write(Buffer.concat([handshakeBytes(), header]));
      await closed(s);
      await eventually(() => tp.logs.some((l) => l['msg'] === 'session end' && l['reason'] === 'parse-error:missing-header'), 'closed for parse error');
    } finally {
      await tp.stop();
      await fake.close();
    }
  });
});
