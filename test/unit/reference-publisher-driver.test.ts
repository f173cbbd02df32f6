// The reference publisher's socket driver against the scriptable fake server (real sockets,
// no proxy): Go Away → finish the GOP → TCP close without FCUnpublish → reconnect → replay.
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import type { FlvTag } from '../../src/client/flv.js';
import { ReferencePublisher } from '../../src/client/reference-publisher.js';
import { amf0Object, decodeAmf0, encodeAmf0 } from '../../src/rtmp/amf0.js';
import { ChunkReader } from '../../src/rtmp/chunk-reader.js';
import { HANDSHAKE_TOTAL, MessageType } from '../../src/rtmp/constants.js';
import { decodeCommand, encodeCommand, goAwayChunk } from '../../src/rtmp/messages.js';
import { FakeRtmpServer } from '../helpers/fake-rtmp-server.js';
import { eventually } from '../helpers/proxy.js';

let serial = 0;
function stream(gops: number, gop = 5): FlvTag[] {
  const out: FlvTag[] = [
    { type: 18, timestamp: 0, data: encodeAmf0(['onMetaData', { width: 320 }]) },
    { type: 9, timestamp: 0, data: Buffer.from([0x17, 0, 0, 0, 0, 1, 0x42]) },
    { type: 8, timestamp: 0, data: Buffer.from([0xaf, 0, 0x12, 0x10]) },
  ];
  for (let f = 0; f < gops * gop; f++) {
    const n = serial++;
    out.push({ type: 9, timestamp: f * 100, data: Buffer.from([f % gop === 0 ? 0x17 : 0x27, 1, 0, 0, 0, n & 0xff, n >> 8]) });
    out.push({ type: 8, timestamp: f * 100 + 10, data: Buffer.from([0xaf, 1, n & 0xff, n >> 8]) });
  }
  return out;
}

/** An async tag source that stops after `gateAt` tags until `open()` is called. */
function gatedSource(tags: FlvTag[], gateAt: number) {
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  let reached!: () => void;
  const atGate = new Promise<void>((r) => (reached = r));
  async function* gen(): AsyncGenerator<FlvTag> {
    for (let i = 0; i < tags.length; i++) {
      if (i === gateAt) {
        reached();
        await opened;
      }
      yield tags[i]!;
    }
  }
  return { source: gen(), atGate, open };
}

interface Msg {
  typeId: number;
  timestamp: number;
  streamId: number;
  payload: Buffer;
}

/** Every message a connection's client sent (after the handshake), payloads included. */
function clientMessages(raw: Buffer[]): Msg[] {
  const out: Msg[] = [];
  const reader = new ChunkReader(
    { message: (info, payload) => out.push({ typeId: info.typeId, timestamp: info.timestamp, streamId: info.streamId, payload: Buffer.from(payload!) }) },
    () => true,
  );
  reader.feed(Buffer.concat(raw).subarray(HANDSHAKE_TOTAL));
  return out;
}

const commandNames = (msgs: Msg[]): string[] => msgs.filter((m) => m.typeId === MessageType.CommandAmf0).map((m) => decodeCommand(m.typeId, m.payload)!.name);
const mediaOf = (msgs: Msg[]): Msg[] => msgs.filter((m) => (m.typeId === 8 || m.typeId === 9) && m.payload[1] !== 0);

describe('ReferencePublisher over sockets', () => {
  let fake: FakeRtmpServer | null = null;
  afterEach(async () => {
    await fake?.close().catch(() => undefined);
    fake = null;
  });

  test('Go Away: finishes the GOP, closes without FCUnpublish, reconnects, replays config, continues', async () => {
    fake = new FakeRtmpServer();
    const port = await fake.listen();
    const tags = stream(3);
    // Gate in the middle of the first GOP (after frame 2).
    const g = gatedSource(tags, 3 + 2 * 2);
    const pub = new ReferencePublisher(g.source, `rtmp://127.0.0.1:${port}/live/k1`, { speed: 0 });
    const running = pub.run();
    await g.atGate;
    await eventually(() => fake!.connections[0]?.media === 6, 'the first frames arrive');
    fake.connections[0]!.socket.write(goAwayChunk());
    await eventually(() => pub.state.goingAway === 'go-away', 'Go Away seen');
    g.open();
    const report = await running;
    assert.equal(report.ok, true, report.error ?? '');
    assert.equal(fake.connections.length, 2);

    const [m1, m2] = fake.connections.map((c) => clientMessages(c.raw));
    const connect = decodeCommand(MessageType.CommandAmf0, m1!.find((m) => m.typeId === MessageType.CommandAmf0)!.payload)!;
    assert.equal((connect.commandObject as Record<string, unknown>)['supportsGoAway'], true);
    assert.deepEqual(commandNames(m1!), ['connect', 'releaseStream', 'FCPublish', 'createStream', 'publish'], 'no FCUnpublish/deleteStream on a Go Away close');
    assert.deepEqual(
      commandNames(m2!),
      ['connect', 'releaseStream', 'FCPublish', 'createStream', 'publish', 'FCUnpublish', 'deleteStream'],
      'clean end at end of input',
    );

    // Connection 1 stops right before the keyframe at 500 ms; connection 2 replays metadata +
    // sequence headers at 500 ms and continues with the keyframe.
    assert.equal(mediaOf(m1!).at(-1)!.timestamp, 410);
    const firstOn2 = m2!.filter((m) => m.typeId === 8 || m.typeId === 9 || m.typeId === 18).slice(0, 4);
    assert.deepEqual(
      firstOn2.map((m) => [m.typeId, m.timestamp]),
      [
        [18, 500],
        [9, 500],
        [8, 500],
        [9, 500],
      ],
    );
    assert.deepEqual(decodeAmf0(firstOn2[0]!.payload).slice(0, 2), ['@setDataFrame', 'onMetaData']);
    assert.deepEqual(firstOn2[1]!.payload, tags[1]!.data);
    assert.deepEqual(firstOn2[2]!.payload, tags[2]!.data);
    assert.equal(firstOn2[3]!.payload[0], 0x17);

    // Union of both connections = the source's media, each exactly once, timestamps unchanged.
    const got = [...mediaOf(m1!), ...mediaOf(m2!)].map((m) => [m.typeId, m.timestamp, m.payload.toString('hex')]);
    const want = tags.filter((t) => t.type !== 18 && t.data[1] !== 0).map((t) => [t.type, t.timestamp, t.data.toString('hex')]);
    assert.deepEqual(got, want);

    assert.deepEqual(
      report.connections.map((c) => [c.index, c.video, c.audio, c.endReason, c.replayed]),
      [
        [1, 5, 5, 'go-away', 0],
        [2, 10, 10, 'end-of-input', 3],
      ],
    );
    assert.ok(report.connections[0]!.goAwayAt !== null);
    assert.ok(report.connections[1]!.reconnectMs !== null && report.connections[1]!.reconnectMs >= 0);
    assert.deepEqual(report.sent, { video: 15, audio: 15, data: 0, config: 6 });
    assert.deepEqual(report.dropped, { video: 0, audio: 0, data: 0, config: 0 });
  });

  test('E-RTMP: announces capsEx Reconnect and treats ReconnectRequest like Go Away', async () => {
    fake = new FakeRtmpServer();
    const port = await fake.listen();
    const tags = stream(2);
    const g = gatedSource(tags, 3 + 2);
    const pub = new ReferencePublisher(g.source, `rtmp://127.0.0.1:${port}/live/k2`, { speed: 0, erpc: true });
    const running = pub.run();
    await g.atGate;
    await eventually(() => fake!.connections[0]?.media === 4, 'the first frame arrives');
    fake.connections[0]!.send({
      csid: 3,
      timestamp: 0,
      typeId: MessageType.CommandAmf0,
      streamId: 0,
      payload: encodeCommand('onStatus', 0, null, amf0Object({ level: 'status', code: 'NetConnection.Connect.ReconnectRequest' })),
    });
    await eventually(() => pub.state.goingAway === 'reconnect-request', 'reconnect request seen');
    g.open();
    const report = await running;
    assert.equal(report.ok, true);
    assert.deepEqual(
      report.connections.map((c) => c.endReason),
      ['reconnect-request', 'end-of-input'],
    );
    const connect = decodeCommand(MessageType.CommandAmf0, clientMessages(fake.connections[0]!.raw).find((m) => m.typeId === 20)!.payload)!;
    assert.equal((connect.commandObject as Record<string, unknown>)['capsEx'], 1);
  });

  test('reconnect is retried with backoff and bounded: a dead URL ends the run with the unsent frames reported', async () => {
    fake = new FakeRtmpServer();
    const port = await fake.listen();
    const tags = stream(2);
    const g = gatedSource(tags, 3 + 2 * 2);
    const pub = new ReferencePublisher(g.source, `rtmp://127.0.0.1:${port}/live/k3`, {
      speed: 0,
      reconnectTimeoutMs: 400,
      initialBackoffMs: 20,
      maxBackoffMs: 80,
    });
    const retries: number[] = [];
    pub.on('retry', (r) => retries.push(r.delayMs));
    const running = pub.run();
    await g.atGate;
    await eventually(() => fake!.connections[0]?.media === 6, 'the first frames arrive');
    fake.connections[0]!.socket.write(goAwayChunk());
    await eventually(() => pub.state.goingAway !== null, 'Go Away seen');
    await fake.close(); // nobody to reconnect to
    fake = null;
    g.open();
    const report = await running;
    assert.equal(report.ok, false);
    assert.match(report.error ?? '', /could not publish .* within 400 ms/);
    assert.ok(retries.length >= 2, `retried (${retries.join(', ')})`);
    assert.deepEqual(retries.slice(0, 3), [20, 40, 80].slice(0, Math.min(3, retries.length)));
    assert.ok(report.unsent > 0, 'what was read but not sent is reported, not silently dropped');
    assert.equal(report.connections.length, 1);
  });

  test('a connection the server drops (no Go Away) is re-established at the next keyframe, skipped frames counted', async () => {
    fake = new FakeRtmpServer();
    const port = await fake.listen();
    const tags = stream(3);
    const g = gatedSource(tags, 3 + 2 * 2);
    const pub = new ReferencePublisher(g.source, `rtmp://127.0.0.1:${port}/live/k4`, { speed: 0 });
    const running = pub.run();
    await g.atGate;
    await eventually(() => fake!.connections[0]?.media === 6, 'the first frames arrive');
    fake.connections[0]!.socket.destroy();
    await eventually(() => pub.connections[0]?.endReason === 'connection-lost', 'loss noticed');
    g.open();
    const report = await running;
    assert.equal(report.ok, false, 'frames were skipped: not zero-loss');
    assert.deepEqual(report.dropped, { video: 3, audio: 3, data: 0, config: 0 });
    assert.equal(fake.connections.length, 2);
    assert.equal(mediaOf(clientMessages(fake.connections[1]!.raw))[0]!.payload[0], 0x17);
  });
});

describe('ReferencePublisher failure paths', () => {
  test('a source that fails mid-stream ends the publish cleanly (FCUnpublish) and reports the error', async () => {
    const fake = new FakeRtmpServer();
    const port = await fake.listen();
    try {
      const tags = stream(1);
      async function* broken(): AsyncGenerator<FlvTag> {
        yield* tags.slice(0, 6);
        throw new Error('input ended inside a tag');
      }
      const pub = new ReferencePublisher(broken(), `rtmp://127.0.0.1:${port}/live/k5`, { speed: 0 });
      const report = await pub.run();
      assert.equal(report.ok, false);
      assert.match(report.error ?? '', /inside a tag/);
      assert.equal(report.connections[0]!.endReason, 'failed');
      assert.ok(pub.progress().mediaMs > 0, 'media time is tracked at --speed 0 too');
      await eventually(() => fake.connections[0]!.socket.destroyed || fake.connections[0]!.commands.includes('deleteStream'), 'clean end');
      assert.deepEqual(fake.connections[0]!.commands.slice(-2), ['FCUnpublish', 'deleteStream']);
    } finally {
      await fake.close();
    }
  });
});
