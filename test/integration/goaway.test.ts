// Through real sockets: publishers written with the project's own src/rtmp, the proxy, and a
// real node-media-server backend (or the scriptable fake server for header forms nobody real sends).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RtmpPublisher } from '../../src/client/rtmp-client.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { controlMessage } from '../../src/rtmp/messages.js';
import { FakeRtmpServer } from '../helpers/fake-rtmp-server.js';
import { type RunningPeer, startNodeMediaServer } from '../helpers/peers.js';
import { type TestProxy, eventually, startTestProxy } from '../helpers/proxy.js';

interface ApiSession {
  id: string;
  backend: string;
  app: string;
  streamKey: string;
  goAway: boolean;
  capsEx: number | null;
  state: string;
  bytesIn: number;
  bytesOut: number;
}

/** An AVC keyframe-looking video body: frame type 1, codec 7, NALU packet. */
function videoBody(keyframe: boolean, size = 3000): Buffer {
  const b = Buffer.alloc(size, 0x55);
  b[0] = keyframe ? 0x17 : 0x27;
  b[1] = 1;
  return b;
}

async function sendSomeMedia(pub: RtmpPublisher, from: number, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    pub.sendMedia(MessageType.Video, (from + i) * 33, videoBody((from + i) % 30 === 0));
    pub.sendMedia(MessageType.Audio, (from + i) * 33, Buffer.from([0xaf, 0x01, 1, 2, 3, 4]));
  }
  await new Promise((r) => setImmediate(r));
}

describe('Go Away through the proxy to node-media-server', () => {
  let nms: RunningPeer;
  let tp: TestProxy;
  const publishers: RtmpPublisher[] = [];

  before(async () => {
    nms = await startNodeMediaServer();
    tp = await startTestProxy({ nms: nms.port }, { drainDeadlineMs: '3s' });
  });
  after(async () => {
    for (const p of publishers) p.destroy();
    await tp.stop();
    await nms.stop();
  });

  test('a Go Away publisher is sniffed, told to go away on drain, and the S→C stream still parses afterwards', async () => {
    // OBS 29 style: Set Chunk Size 4096 before connect, supportsGoAway as AMF0 boolean.
    const pub = new RtmpPublisher(tp.url('live', 'goaway-key'), { supportsGoAway: true, chunkSize: 4096 });
    const plain = new RtmpPublisher(tp.url('live', 'plain-key'), { chunkSize: 4096 });
    publishers.push(pub, plain);
    await pub.publish();
    await plain.publish();
    await sendSomeMedia(pub, 0, 40);
    await sendSomeMedia(plain, 0, 40);

    const sessions = await eventually(async () => {
      const s = await tp.api<ApiSession[]>('/api/sessions');
      return s.length === 2 && s.every((x) => x.state === 'publishing') ? s : null;
    }, 'two publishing sessions');
    const capable = sessions.find((s) => s.goAway)!;
    const notCapable = sessions.find((s) => !s.goAway)!;
    assert.equal(capable.app, 'live');
    assert.equal(capable.backend, 'nms');
    assert.equal(capable.streamKey, 'go***(10)', 'stream keys are redacted by default');
    assert.equal(notCapable.goAway, false);
    assert.equal(notCapable.capsEx, null);

    const before = pub.received.length;
    const wentAway = new Promise<void>((r) => pub.once('goaway', () => r()));
    const drained = await tp.api<{ goAwaySent: number; waiting: number }>('/api/backends/nms/drain?force=1', { method: 'POST' });
    assert.equal(drained.goAwaySent, 1);
    assert.equal(drained.waiting, 1);
    await wentAway;
    const goAway = pub.received.slice(before).find((m) => m.typeId === MessageType.GoAway)!;
    assert.deepEqual({ csid: goAway.csid, length: goAway.length }, { csid: 2, length: 1 }, 'type 32 on csid 2 with a 1-byte body (docs/protocol.md#go-away)');

    // The server keeps talking to the client after the injection: its replies must still parse.
    const reply = await pub.request('createStream');
    assert.equal(reply.name, '_result');
    assert.equal(plain.goAwayReceived, false, 'a publisher that did not announce support never gets type 32');
    assert.ok(!plain.received.some((m) => m.typeId === MessageType.GoAway));

    const metrics = await (await tp.admin('/metrics')).text();
    assert.match(metrics, /rtmp_goaway_goaway_sent_total\{backend="nms",connect_flag="supportsGoAway"\} 1/);
    assert.match(metrics, /rtmp_goaway_backend_draining\{backend="nms"\} 1/);
    assert.match(metrics, /rtmp_goaway_sessions_active\{backend="nms",capability="none"\} 1/);

    // The non-capable publisher is closed at the drain deadline (migration comes later).
    await eventually(() => plain.socket?.destroyed, 'the non-capable session closed at the deadline');
    const end = await eventually(() => tp.logs.find((l) => l['msg'] === 'session end' && l['reason'] === 'drain-deadline'), 'deadline close logged');
    assert.equal(end['capability'], 'none');
    await pub.end();
    await tp.api('/api/backends/nms/undrain', { method: 'POST' });
  });
});

describe('Go Away injection against a server that uses fmt 1/2/3 on csid 2', () => {
  test('the server chunk after the injection is rewritten to fmt 0 and the client decodes it exactly', async () => {
    const fake = new FakeRtmpServer({ compress: true });
    await fake.listen();
    const tp = await startTestProxy({ fake: fake.port }, { healthEnabled: 'false' });
    const pub = new RtmpPublisher(tp.url('live', 'k'), { supportsGoAway: true });
    try {
      await pub.publish();
      const conn = fake.connections.at(-1)!;
      // The server sent Window Ack Size on csid 2 with fmt 0 at connect. Its next csid-2 message
      // of the same type and size goes out as fmt 3, which a client would resolve against our
      // injected header (type 32, length 1) unless the proxy rewrites it to fmt 0.
      const wentAway = new Promise<void>((r) => pub.once('goaway', () => r()));
      await tp.api('/api/backends/fake/drain?force=1', { method: 'POST', body: JSON.stringify({ deadlineMs: 60_000 }) });
      await wentAway;
      const before = pub.received.length;
      const wireA = conn.writer.write(controlMessage(MessageType.WindowAckSize, 111_111));
      const wireB = conn.writer.write(controlMessage(MessageType.Acknowledgement, 222_222));
      const wireC = conn.writer.write(controlMessage(MessageType.Acknowledgement, 333_333));
      assert.deepEqual([wireA[0]! >> 6, wireB[0]! >> 6, wireC[0]! >> 6], [3, 1, 3], 'the server really used fmt 3, 1, 3');
      // Split inside the first header's successor to exercise the held-back partial header path.
      const all = Buffer.concat([wireA, wireB, wireC]);
      conn.socket.write(all.subarray(0, wireA.length + 2));
      await new Promise((r) => setTimeout(r, 30));
      conn.socket.write(all.subarray(wireA.length + 2));
      await eventually(() => pub.received.length >= before + 3, 'three control messages through the proxy');
      const got = pub.received.slice(before, before + 3).map((m) => ({ typeId: m.typeId, value: m.payload!.readUInt32BE(0) }));
      assert.deepEqual(got, [
        { typeId: MessageType.WindowAckSize, value: 111_111 },
        { typeId: MessageType.Acknowledgement, value: 222_222 },
        { typeId: MessageType.Acknowledgement, value: 333_333 },
      ]);
    } finally {
      pub.destroy();
      await tp.stop();
      await fake.close();
    }
  });

  test('Go Away waits while a csid-2 message is half-sent, then lands after it', async () => {
    const fake = new FakeRtmpServer();
    await fake.listen();
    const tp = await startTestProxy({ fake: fake.port }, { healthEnabled: 'false' });
    const pub = new RtmpPublisher(tp.url('live', 'k'), { supportsGoAway: true });
    try {
      await pub.publish();
      const conn = fake.connections.at(-1)!;
      // A 300-byte message on csid 2 at chunk size 128: three chunks. Send only the first.
      const big = conn.writer.write({ csid: 2, timestamp: 0, typeId: 99, streamId: 0, payload: Buffer.alloc(300, 9) });
      const session = [...tp.proxy.server.sessions.values()][0]!;
      const sentBefore = session.bytesOut;
      conn.socket.write(big.subarray(0, 12 + 128));
      await eventually(() => session.bytesOut === sentBefore + 12 + 128, 'first chunk forwarded');
      await tp.api('/api/backends/fake/drain?force=1', { method: 'POST' });
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(pub.goAwayReceived, false, 'no injection inside a half-sent csid-2 message');
      conn.socket.write(big.subarray(12 + 128));
      await eventually(() => pub.goAwayReceived, 'Go Away after the message completed');
      const types = pub.received.map((m) => m.typeId);
      assert.deepEqual(types.slice(-2), [99, MessageType.GoAway]);
      assert.equal(pub.received.at(-2)!.length, 300);
    } finally {
      pub.destroy();
      await tp.stop();
      await fake.close();
    }
  });

  test('the legacy `goaway` key counts as support', async () => {
    const fake = new FakeRtmpServer();
    await fake.listen();
    const tp = await startTestProxy({ fake: fake.port }, { healthEnabled: 'false' });
    const pub = new RtmpPublisher(tp.url('live', 'k'), { supportsGoAway: true, goAwayKey: 'goaway' });
    try {
      await pub.publish();
      await tp.api('/api/backends/fake/drain?force=1', { method: 'POST' });
      await eventually(() => pub.goAwayReceived, 'Go Away');
      const metrics = await (await tp.admin('/metrics')).text();
      assert.match(metrics, /rtmp_goaway_goaway_sent_total\{backend="fake",connect_flag="goaway"\} 1/);
    } finally {
      pub.destroy();
      await tp.stop();
      await fake.close();
    }
  });
});
