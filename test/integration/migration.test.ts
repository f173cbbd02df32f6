// Proxy-side migration through real sockets: publishers that know neither Go Away nor E-RTMP
// reconnect are moved to another backend at a keyframe, without noticing and without losing or
// duplicating a frame.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RtmpPublisher } from '../../src/client/rtmp-client.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { type Command, controlMessage, readStatusCode } from '../../src/rtmp/messages.js';
import { type TestProxy, eventually, startTestProxy } from '../helpers/proxy.js';
import { type RecordingConnection, RecordingRtmpServer } from '../helpers/recording-rtmp-server.js';
import { type MediaMessage, SyntheticMedia } from '../helpers/synthetic-media.js';

interface ApiSession {
  id: string;
  backend: string;
  capability: string;
  state: string;
  migrations: number;
  streamKey: string;
}

/** A publisher sending synthetic media in real time-ish (every `intervalMs`, `perTick` messages). */
class Feeder {
  readonly sent: MediaMessage[] = [];
  private timer: NodeJS.Timeout | null = null;
  constructor(
    readonly pub: RtmpPublisher,
    readonly media: SyntheticMedia,
  ) {}
  config(): void {
    for (const c of this.media.config()) this.pub.sendMedia(c.typeId, 0, c.payload);
  }
  send(n: number): void {
    for (let i = 0; i < n; i++) {
      const m = this.media.next();
      this.pub.sendMedia(m.typeId, m.timestamp, m.payload);
      this.sent.push(m);
    }
  }
  run(intervalMs: number, perTick: number): void {
    this.timer = setInterval(() => this.send(perTick), intervalMs);
  }
  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}

const frames = (c: RecordingConnection) => c.messages.filter((m) => m.kind === 'keyframe' || m.kind === 'video' || m.kind === 'audio');

/** Asserts the two connections together hold exactly `sent`, in order, the second starting at a keyframe with its config first. */
function assertLossless(first: RecordingConnection, second: RecordingConnection, sent: MediaMessage[]): void {
  const a = frames(first);
  const b = frames(second);
  assert.deepEqual(
    [...a, ...b].map((m) => m.hash),
    sent.map((m) => m.hash),
    'every frame exactly once, in order',
  );
  assert.deepEqual(
    [...a, ...b].map((m) => m.timestamp),
    sent.map((m) => m.timestamp),
    'timestamps unchanged',
  );
  assert.ok(b.length > 0, 'the new backend got frames');
  assert.equal(b.find((m) => m.typeId === MessageType.Video)!.kind, 'keyframe', 'the new backend’s video starts at a keyframe');
  const kinds = second.messages.map((m) => m.kind);
  const firstFrame = kinds.findIndex((k) => k === 'keyframe' || k === 'video' || k === 'audio');
  assert.deepEqual(kinds.slice(0, firstFrame), ['metadata', 'video-config', 'audio-config'], 'metadata and sequence headers before the first frame');
  const replayTs = second.messages[0]!.timestamp;
  assert.ok(
    b.every((m) => m.timestamp >= replayTs),
    'no frame before the replayed headers’ timestamp',
  );
}

describe('proxy-side migration between two backends', () => {
  let b1: RecordingRtmpServer;
  let b2: RecordingRtmpServer;
  let tp: TestProxy;

  before(async () => {
    b1 = new RecordingRtmpServer({ chunkSize: 4096, pingEveryMs: 100 });
    b2 = new RecordingRtmpServer({ chunkSize: 4096, pingEveryMs: 100 });
    await b1.listen();
    await b2.listen();
    tp = await startTestProxy({ b1: b1.port, b2: b2.port }, { healthEnabled: 'false', drainDeadlineMs: '20s' });
  });
  after(async () => {
    await tp.stop();
    await b1.close();
    await b2.close();
  });

  for (const kind of [
    { name: 'OBS-like (chunk size 4096)', opts: { chunkSize: 4096 } },
    { name: 'FFmpeg-like (chunk size 128, compressed headers)', opts: { compressHeaders: true } },
  ]) {
    test(`${kind.name}: moved at a keyframe, lossless, and the client never notices`, async () => {
      const key = `mig-${kind.opts.chunkSize ?? 128}`;
      const pub = new RtmpPublisher(tp.url('live', key), kind.opts);
      const commands: Command[] = [];
      pub.on('command', (c) => commands.push(c));
      let closed = false;
      pub.on('close', () => (closed = true));
      await pub.publish();
      pub.sendMessage(controlMessage(MessageType.WindowAckSize, 50_000));
      const feeder = new Feeder(pub, new SyntheticMedia({ gop: 10, seed: kind.opts.chunkSize ?? 7 }));
      feeder.config();
      feeder.send(25);
      const s = await eventually(async () => (await tp.api<ApiSession[]>('/api/sessions')).find((x) => x.state === 'publishing'), 'publishing');
      assert.equal(s.capability, 'none');
      const from = s.backend;
      const [fromServer, toServer] = from === 'b1' ? [b1, b2] : [b2, b1];
      feeder.run(10, 3);
      const drained = await tp.api<{ outcomes: Record<string, number> }>(`/api/backends/${from}/drain`, { method: 'POST' });
      assert.deepEqual(drained.outcomes, { migrating: 1 });
      try {
        await eventually(async () => (await tp.api<ApiSession[]>('/api/sessions')).find((x) => x.migrations === 1 && x.backend !== from), 'switched', 3000);
      } catch (e) {
        for (const l of tp.logs.filter((l) => /migrat|session/.test(String(l['msg'])))) console.log('DBG', JSON.stringify(l));
        throw e;
      }
      await new Promise((r) => setTimeout(r, 300));
      feeder.stop();
      feeder.send(5);
      const acksBefore = pub.received.filter((m) => m.typeId === MessageType.Acknowledgement).length;
      await pub.unpublish();
      assert.equal(closed, true);
      const first = fromServer.publishersOf(key)[0]!;
      const second = toServer.publishersOf(key)[0]!;
      await eventually(() => first.closed && second.closed, 'both backend connections closed');
      assertLossless(first, second, feeder.sent);
      assert.deepEqual(
        first.commands.slice(-2).map((c) => c.name),
        ['FCUnpublish', 'deleteStream'],
        'the old backend got a clean unpublish',
      );
      assert.deepEqual(
        second.commands.map((c) => c.name),
        ['connect', 'releaseStream', 'FCPublish', 'createStream', 'publish', 'FCUnpublish', 'deleteStream'],
        'replayed commands, then the client’s own unpublish',
      );
      assert.deepEqual(second.connectObject, first.connectObject, 'the same connect command object');
      assert.ok(second.pongs.length > 0, 'the proxy answered the new backend’s pings');
      assert.ok(acksBefore > 0, 'the proxy acknowledged the client’s bytes by its window');
      assert.equal(first.parseError, null);
      assert.equal(second.parseError, null);
      const statuses = commands.filter((c) => c.name === 'onStatus').map((c) => readStatusCode(c));
      assert.equal(statuses.filter((c) => c === 'NetStream.Publish.Start').length, 1, 'the client saw one Publish.Start (the replayed one was swallowed)');
      await tp.api(`/api/backends/${from}/undrain`, { method: 'POST' });
    });
  }

  test('a migrated session migrates again (relay → relay) when its new backend is drained', async () => {
    const key = 'twice';
    const pub = new RtmpPublisher(tp.url('live', key), { chunkSize: 4096 });
    await pub.publish();
    const feeder = new Feeder(pub, new SyntheticMedia({ gop: 8, seed: 3 }));
    feeder.config();
    feeder.send(20);
    feeder.run(10, 3);
    const s = await eventually(async () => (await tp.api<ApiSession[]>('/api/sessions')).find((x) => x.state === 'publishing'), 'publishing');
    const from = s.backend;
    const to = from === 'b1' ? 'b2' : 'b1';
    await tp.api(`/api/backends/${from}/drain`, { method: 'POST' });
    await eventually(async () => (await tp.api<ApiSession[]>('/api/sessions')).find((x) => x.migrations === 1 && x.backend === to), 'first switch');
    await tp.api(`/api/backends/${from}/undrain`, { method: 'POST' });
    await new Promise((r) => setTimeout(r, 200));
    await tp.api(`/api/backends/${to}/drain?force=1`, { method: 'POST' });
    await eventually(async () => (await tp.api<ApiSession[]>('/api/sessions')).find((x) => x.migrations === 2 && x.backend === from), 'second switch');
    await new Promise((r) => setTimeout(r, 200));
    feeder.stop();
    await pub.unpublish();
    const server = (n: string) => (n === 'b1' ? b1 : b2);
    const conns = [...server(from).publishersOf(key), ...server(to).publishersOf(key)].sort((x, y) => x.messages[0]!.at - y.messages[0]!.at);
    assert.equal(conns.length, 3);
    await eventually(() => conns.every((c) => c.closed), 'all closed');
    const all = conns.flatMap(frames);
    assert.deepEqual(
      all.map((m) => m.hash),
      feeder.sent.map((m) => m.hash),
    );
    await tp.api(`/api/backends/${to}/undrain`, { method: 'POST' });
  });
});
