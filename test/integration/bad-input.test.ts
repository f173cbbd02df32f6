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
      // The blind-forwarded sessions below are closed at this deadline (no connect): long enough to see them forward.
      { healthEnabled: 'false', limitsHandshakeTimeoutMs: '2s', limitsIdleTimeoutMs: '5s', limitsMaxMessageSize: '1m', limitsMaxCommandSize: '64k' },
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
      Buffer.from([0x02, 0x00, 0x07]),
      Buffer.from('connect'),
      Buffer.from([0x00, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]),
      Buffer.from([0x03, 0x00, 0x03]),
      Buffer.from('app'),
      Buffer.from([0x0c, 0xff, 0xff, 0xff, 0xff]),
      Buffer.from('live'),
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
    assert.ok(
      sessions.some((x) => x.bytesIn === all.length && x.parseFallback === null),
      'the legal flood still parses',
    );
    legal.destroy();
    await goodStillWorks();
  });

  test('after all that the good publisher still gets Go Away on drain', async () => {
    await tp.api('/api/backends/fake/drain?force=1', { method: 'POST' });
    await eventually(() => good.goAwayReceived, 'Go Away to the good publisher');
    await tp.api('/api/backends/fake/undrain', { method: 'POST' });
  });
});

describe('the handshake deadline holds whatever the client sends', () => {
  let fake: FakeRtmpServer;
  let tp: TestProxy;

  before(async () => {
    fake = new FakeRtmpServer();
    await fake.listen();
    // The idle timeout is far: only the handshake deadline can end these sessions.
    tp = await startTestProxy({ fake: fake.port }, { healthEnabled: 'false', limitsHandshakeTimeoutMs: '300ms', limitsIdleTimeoutMs: '10m' });
  });

  after(async () => {
    await tp.stop();
    await fake.close();
  });

  /** Writes one byte every 20 ms until the proxy closes the socket; resolves then (bounded: the test fails instead of hanging). */
  async function trickleUntilClosed(s: net.Socket, what: string): Promise<void> {
    let gone = false;
    s.once('close', () => (gone = true));
    const drip = setInterval(() => {
      if (!s.destroyed) s.write(Buffer.of(0x41));
    }, 20);
    try {
      await eventually(() => gone, what, 15_000);
    } finally {
      clearInterval(drip);
    }
  }

  const endOf = (id: string) => eventually(() => tp.logs.find((l) => l['msg'] === 'session end' && l['session'] === id), `session end of ${id}`);

  test('one 0x00 byte (not RTMP: blind-forward fallback), then a byte now and then: closed at the deadline, no backend opened', async () => {
    const n0 = fake.connections.length;
    const s = await rawClient(tp.proxy.address.port);
    s.write(Buffer.of(0));
    const session = await eventually(() => [...tp.proxy.server.sessions.values()].find((x) => x.fallback !== null), 'the session fell back');
    await trickleUntilClosed(s, 'closed at the handshake deadline');
    const end = await endOf(session.id);
    assert.equal(end['reason'], 'handshake-timeout');
    assert.equal(end['parseFallback'], 'bad-version');
    assert.equal(fake.connections.length, n0, 'no backend connection for fewer bytes than C0+C1');
    assert.ok((await metric(tp, /rtmp_goaway_sessions_closed_total\{backend="none",reason="handshake-timeout"\} (\d+)/)) >= 1);
  });

  test('a valid handshake, then a malformed chunk (fallback), then a byte now and then: closed at the deadline, its backend connection too', async () => {
    const n0 = fake.connections.length;
    const s = await rawClient(tp.proxy.address.port);
    // fmt 1 on a chunk stream that never had a fmt 0 header.
    s.write(Buffer.concat([handshakeBytes(), Buffer.from([0x46, 0, 0, 0, 0, 0, 4, 1])]));
    const session = await eventually(() => [...tp.proxy.server.sessions.values()].find((x) => x.fallback?.code === 'missing-header'), 'the session fell back');
    await trickleUntilClosed(s, 'closed at the handshake deadline');
    const end = await endOf(session.id);
    assert.equal(end['reason'], 'handshake-timeout');
    assert.equal(end['parseFallback'], 'missing-header');
    assert.equal(fake.connections.length, n0 + 1, 'blind-forwarded to one backend connection');
    await eventually(() => fake.connections.at(-1)!.socket.destroyed, 'the backend connection closed with it');
  });
});

describe("no backend connection before the client's C0+C1", () => {
  test('50 silent connections open no backend connection; a publisher after them opens exactly one and works', async () => {
    const fake = new FakeRtmpServer();
    await fake.listen();
    const tp = await startTestProxy({ fake: fake.port }, { healthEnabled: 'false', limitsHandshakeTimeoutMs: '1m' });
    const silent: net.Socket[] = [];
    try {
      for (let i = 0; i < 50; i++) silent.push(await rawClient(tp.proxy.address.port));
      await eventually(() => tp.proxy.server.sessions.size === 50, '50 sessions');
      // One byte short of C0+C1 is still silence as far as the backend is concerned.
      silent[0]!.write(handshakeBytes().subarray(0, 1536));
      await eventually(() => [...tp.proxy.server.sessions.values()].some((x) => x.bytesIn === 1536), 'the 1536 bytes in');
      // Connections reach the backend in the order the proxy opens them: had any silent session
      // opened one, it would be there before the publisher's.
      const pub = new RtmpPublisher(tp.url('live', 'after-silence'), { supportsGoAway: true });
      pub.on('error', () => {});
      await pub.publish();
      assert.equal(fake.connections.length, 1, 'only the publisher reached the backend');
      for (let i = 0; i < 5; i++) pub.sendMedia(MessageType.Video, i * 33, Buffer.alloc(500, 0x27));
      await eventually(() => fake.connections[0]!.media === 5, "the publisher's frames at the backend");
      pub.destroy();
      for (const s of silent) s.destroy();
      await tp.settled();
    } finally {
      for (const s of silent) s.destroy();
      await tp.stop();
      await fake.close();
    }
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
