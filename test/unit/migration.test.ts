// The pure parts of proxy-side migration, against scripted peers: the proxy's publisher towards
// the new backend (PublisherProtocol, every failure point), the switch point finder on the
// client's bytes (SwitchSplitter, at any split), the media cache and the in-flight limiter.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { amf0Object, encodeAmf0 } from '../../src/rtmp/amf0.js';
import { ChunkReader, type MessageInfo } from '../../src/rtmp/chunk-reader.js';
import { ChunkWriter, type OutgoingMessage } from '../../src/rtmp/chunk-writer.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { type Command, commandMessage, controlMessage, decodeCommand, encodeCommand, userControlMessage, UserControlEvent } from '../../src/rtmp/messages.js';
import { type PublishPlan, type PublishFailure, PublisherProtocol } from '../../src/rtmp/publisher-protocol.js';
import { MediaCache } from '../../src/proxy/migration/media-cache.js';
import { MigrationCoordinator } from '../../src/proxy/migration/coordinator.js';
import { SwitchSplitter, keyframeSwitch } from '../../src/proxy/migration/switch-splitter.js';
import { collectEverything } from '../../src/rtmp/chunk-reader.js';
import { splitAt } from '../helpers/rtmp-fixtures.js';

// ───────────────────────────── PublisherProtocol ─────────────────────────────

const plan: PublishPlan = {
  connect: encodeAmf0([amf0Object({ app: 'live', type: 'nonprivate', flashVer: 'FMLE/3.0 (compatible; FMSc/1.0)', tcUrl: 'rtmp://h/live' })]),
  publishArgs: encodeAmf0(['key', 'live']),
  streamKey: 'key',
  chunkSize: 4096,
};

/** The server side of a scripted exchange: decodes what the proxy wrote, writes replies. */
class ScriptedServer {
  readonly commands: { cmd: Command; streamId: number; csid: number }[] = [];
  readonly control: { typeId: number; value: number }[] = [];
  readonly media: MessageInfo[] = [];
  readonly writer = new ChunkWriter(true);
  private handshakeSeen = 0;
  private readonly reader = new ChunkReader(
    {
      message: (info, payload) => {
        if (info.typeId === MessageType.CommandAmf0)
          this.commands.push({ cmd: decodeCommand(info.typeId, payload!)!, streamId: info.streamId, csid: info.csid });
        else if (info.typeId <= 6) this.control.push({ typeId: info.typeId, value: info.typeId === 4 ? payload!.readUInt32BE(2) : payload!.readUInt32BE(0) });
        else this.media.push({ ...info });
      },
    },
    collectEverything,
  );
  c0c1: Buffer | null = null;
  c2: Buffer | null = null;
  /** Bytes the proxy wrote. */
  take(buf: Buffer): void {
    let b = buf;
    if (this.handshakeSeen < 1537) {
      const n = Math.min(1537 - this.handshakeSeen, b.length);
      this.c0c1 = Buffer.concat([this.c0c1 ?? Buffer.alloc(0), b.subarray(0, n)]);
      this.handshakeSeen += n;
      b = b.subarray(n);
    }
    if (this.handshakeSeen < 3073 && b.length > 0) {
      const n = Math.min(3073 - this.handshakeSeen, b.length);
      this.c2 = Buffer.concat([this.c2 ?? Buffer.alloc(0), b.subarray(0, n)]);
      this.handshakeSeen += n;
      b = b.subarray(n);
    }
    if (b.length > 0) this.reader.feed(b);
  }
  s0s1s2(version = 3): Buffer {
    return Buffer.concat([Buffer.of(version), Buffer.alloc(1536, 0x51), this.c0c1!.subarray(1)]);
  }
  msg(m: OutgoingMessage): Buffer {
    return this.writer.write(m);
  }
  names(): string[] {
    return this.commands.map((c) => c.cmd.name);
  }
}

function upstream(serverScript?: ScriptedServer) {
  const server = serverScript ?? new ScriptedServer();
  const events: string[] = [];
  let failure: { reason: PublishFailure; detail: string } | null = null;
  let published: number | null = null;
  const forwarded: MessageInfo[] = [];
  const up = new PublisherProtocol(plan, {
    write: (b) => {
      server.take(b);
      return true;
    },
    published: (id) => {
      published = id;
      events.push(`published ${id}`);
    },
    failed: (reason, detail) => {
      failure = { reason, detail };
      events.push(`failed ${reason}`);
    },
    message: (info) => forwarded.push({ ...info }),
  });
  return { up, server, events, forwarded, failure: () => failure, published: () => published };
}

const result = (txn: number, ...args: Parameters<typeof encodeCommand>[3][]) => commandMessage(3, 0, '_result', txn, null, ...args);
const status = (code: string, level = 'status', streamId = 1) => commandMessage(5, streamId, 'onStatus', 0, null, amf0Object({ level, code }));

/** Everything a well-behaved server sends back, as one byte stream after S0S1S2. */
function happyServerBytes(server: ScriptedServer): Buffer {
  return Buffer.concat([
    server.msg(controlMessage(MessageType.WindowAckSize, 5_000_000)),
    server.msg({ ...controlMessage(MessageType.SetPeerBandwidth, 0), payload: Buffer.of(0, 0x4c, 0x4b, 0x40, 2) }),
    server.msg(controlMessage(MessageType.SetChunkSize, 4096)),
    server.msg(
      commandMessage(3, 0, '_result', 1, amf0Object({ fmsVer: 'FMS/3,0,1,123' }), amf0Object({ level: 'status', code: 'NetConnection.Connect.Success' })),
    ),
    server.msg(commandMessage(3, 0, 'onBWDone', 0, null)),
    server.msg(commandMessage(3, 0, 'onFCPublish', 0, null, amf0Object({ code: 'NetStream.Publish.Start' }))),
    server.msg(result(4, 1)),
    server.msg(userControlMessage(UserControlEvent.StreamBegin, 1)),
    server.msg(status('NetStream.Publish.Start')),
  ]);
}

describe('PublisherProtocol (the proxy as publisher towards the new backend)', () => {
  it('plain handshake, Set Chunk Size, the replayed connect … publish, then Publish.Start', () => {
    const t = upstream();
    t.up.start();
    assert.equal(t.server.c0c1!.length, 1537);
    assert.equal(t.server.c0c1![0], 3);
    t.up.receive(t.server.s0s1s2());
    assert.deepEqual(t.server.c2, Buffer.alloc(1536, 0x51), 'C2 echoes S1');
    assert.deepEqual(t.server.control, [{ typeId: MessageType.SetChunkSize, value: 4096 }]);
    assert.deepEqual(t.server.names(), ['connect']);
    const replayed = t.server.commands[0]!.cmd;
    assert.equal(replayed.transactionId, 1);
    assert.deepEqual(replayed.body.subarray(replayed.objectAt), plan.connect, "the client's command object, byte for byte");
    t.up.receive(happyServerBytes(t.server));
    assert.deepEqual(t.server.names(), ['connect', 'releaseStream', 'FCPublish', 'createStream', 'publish']);
    const publish = t.server.commands[4]!;
    assert.deepEqual(publish.cmd.args, ['key', 'live']);
    assert.equal(publish.streamId, 1);
    assert.deepEqual(t.events, ['published 1']);
    assert.deepEqual(t.forwarded, [], 'nothing reaches the client before the switch');
  });

  it('reaches Publish.Start at any split of the server bytes', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 4000 }), { maxLength: 15 }), (cuts) => {
        const t = upstream();
        t.up.start();
        const all = Buffer.concat([t.server.s0s1s2(), happyServerBytes(t.server)]);
        for (const piece of splitAt(
          all,
          cuts.map((c) => c % all.length),
        ))
          t.up.receive(piece);
        assert.deepEqual(t.events, ['published 1']);
      }),
      { numRuns: 200 },
    );
  });

  it('fails on a bad handshake version (RTMPE or garbage)', () => {
    const t = upstream();
    t.up.start();
    t.up.receive(t.server.s0s1s2(6).subarray(0, 10));
    assert.equal(t.failure()?.reason, 'handshake');
    assert.equal(t.up.phase, 'failed');
  });

  it('fails when connect is answered with _error', () => {
    const t = upstream();
    t.up.start();
    t.up.receive(t.server.s0s1s2());
    t.up.receive(t.server.msg(commandMessage(3, 0, '_error', 1, null, amf0Object({ level: 'error', code: 'NetConnection.Connect.Rejected' }))));
    assert.deepEqual(t.failure(), { reason: 'connect-rejected', detail: 'NetConnection.Connect.Rejected' });
  });

  it('fails when createStream is answered with _error', () => {
    const t = upstream();
    t.up.start();
    t.up.receive(t.server.s0s1s2());
    t.up.receive(t.server.msg(result(1)));
    t.up.receive(t.server.msg(commandMessage(3, 0, '_error', 4, null)));
    assert.equal(t.failure()?.reason, 'create-stream-failed');
  });

  for (const [what, reply] of [
    ['onStatus BadName', status('NetStream.Publish.BadName', 'error')],
    ['onStatus with level error', status('NetStream.Something', 'error')],
    ['publish _error', commandMessage(3, 0, '_error', 5, null)],
  ] as const) {
    it(`fails when publish is rejected (${what})`, () => {
      const t = upstream();
      t.up.start();
      t.up.receive(t.server.s0s1s2());
      t.up.receive(Buffer.concat([t.server.msg(result(1)), t.server.msg(result(4, 1)), t.server.msg(reply)]));
      assert.equal(t.failure()?.reason, 'publish-rejected');
      assert.equal(t.published(), null);
    });
  }

  it('fails on a server stream that stops parsing', () => {
    const t = upstream();
    t.up.start();
    t.up.receive(t.server.s0s1s2());
    t.up.receive(Buffer.from([0x43, 0, 0, 0, 0, 0, 4, 20])); // fmt 1 on a csid with no fmt 0 before
    assert.equal(t.failure()?.reason, 'protocol-error');
  });

  it('answers pings, acknowledges by the server window, and forwards only once told to', () => {
    const t = upstream();
    t.up.start();
    t.up.receive(t.server.s0s1s2());
    t.up.receive(Buffer.concat([happyServerBytes(t.server), t.server.msg(controlMessage(MessageType.WindowAckSize, 5000))]));
    t.up.receive(t.server.msg(userControlMessage(UserControlEvent.PingRequest, 777)));
    assert.ok(
      t.server.control.some((c) => c.typeId === MessageType.UserControl && c.value === 777),
      'pong with the ping timestamp',
    );
    t.up.receive(t.server.msg(commandMessage(3, 0, 'onStatus', 0, null, amf0Object({ code: 'NetStream.Before.Switch' }))));
    assert.equal(t.forwarded.length, 0);
    t.up.startForwarding();
    t.up.receive(t.server.msg(commandMessage(5, 1, 'onStatus', 0, null, amf0Object({ code: 'NetStream.After.Switch' }))));
    t.up.receive(t.server.msg(controlMessage(MessageType.Acknowledgement, 1)));
    assert.deepEqual(
      t.forwarded.map((m) => [m.typeId, m.streamId]),
      [[20, 1]],
      'commands forwarded, control never',
    );
    t.up.receive(t.server.msg({ csid: 6, timestamp: 0, typeId: 9, streamId: 1, payload: Buffer.alloc(6000) }));
    const acks = t.server.control.filter((c) => c.typeId === MessageType.Acknowledgement);
    assert.ok(acks.length >= 1, 'acknowledged once the 5000-byte window was crossed');
    assert.equal(acks.at(-1)!.value, t.up.bytesIn);
  });

  it('re-chunks messages with its own chunk size and writes a clean unpublish', () => {
    const t = upstream();
    t.up.start();
    t.up.receive(Buffer.concat([t.server.s0s1s2(), happyServerBytes(t.server)]));
    t.up.send({ csid: 6, timestamp: 40, typeId: 9, streamId: 1, payload: Buffer.alloc(10_000, 0x17) });
    assert.equal(t.server.media.length, 1);
    assert.equal(t.server.media[0]!.length, 10_000);
    t.up.unpublish();
    assert.deepEqual(t.server.names().slice(-2), ['FCUnpublish', 'deleteStream']);
    assert.deepEqual(t.server.commands.at(-1)!.cmd.args, [1]);
  });
});

// ───────────────────────────── SwitchSplitter ─────────────────────────────

interface ClientMsg {
  m: OutgoingMessage;
  key: boolean;
}

/** A publisher's C→S stream (chunk size 128, fmt 1/2/3 like FFmpeg): video on 6, audio on 4, a keyframe every 4th video. */
function clientStream(n: number): { bytes: Buffer; msgs: ClientMsg[]; starts: number[] } {
  const w = new ChunkWriter(true);
  const msgs: ClientMsg[] = [];
  const parts: Buffer[] = [];
  const starts: number[] = [];
  let off = 0;
  for (let i = 0; i < n; i++) {
    const video = i % 2 === 0;
    const key = video && (i / 2) % 4 === 3;
    const size = video ? (key ? 900 : 300) : 60;
    const payload = Buffer.alloc(size, i & 0xff);
    payload[0] = video ? (key ? 0x17 : 0x27) : 0xaf;
    payload[1] = 1;
    payload.writeUInt16BE(i, 2);
    const m: OutgoingMessage = { csid: video ? 6 : 4, timestamp: i * 10, typeId: video ? 9 : 8, streamId: 1, payload };
    msgs.push({ m, key });
    const b = w.write(m);
    starts.push(off);
    parts.push(b);
    off += b.length;
  }
  return { bytes: Buffer.concat(parts), msgs, starts };
}

function runSplitter(bytes: Buffer, armAt: number, cuts: number[]) {
  const completed: { i: number; afterSwitch: boolean }[] = [];
  let splitter: SwitchSplitter | null = null;
  let switchedCalls = 0;
  const reader = new ChunkReader({
    message: (_info, payload) => {
      const i = payload === null ? -1 : payload.readUInt16BE(2);
      completed.push({ i, afterSwitch: splitter?.switched ?? false });
    },
    messageStart: (csid, typeId, length, headerEnd, headerLength) => splitter?.onMessageStart(csid, typeId, length, headerEnd, headerLength),
  });
  // Before arming: plain forwarding.
  const old: Buffer[] = [bytes.subarray(0, armAt)];
  reader.feed(bytes.subarray(0, armAt));
  reader.setCollectPolicy(collectEverything);
  splitter = new SwitchSplitter(reader, keyframeSwitch(reader), () => switchedCalls++);
  for (const piece of splitAt(bytes.subarray(armAt), cuts)) {
    const o = splitter.push(piece);
    if (o !== null) old.push(o);
  }
  return { old: Buffer.concat(old), completed, splitter, switchedCalls };
}

describe('SwitchSplitter (where the client stream switches)', () => {
  const { bytes, msgs, starts } = clientStream(60);

  it('old backend gets exactly the bytes before the first keyframe message started after arming; every later message is routed new', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: bytes.length }), fc.array(fc.integer({ min: 0, max: bytes.length }), { maxLength: 25 }), (armAt, rawCuts) => {
        const cuts = rawCuts.map((c) => c % (bytes.length - armAt + 1));
        const r = runSplitter(bytes, armAt, cuts);
        // The switch message: the first keyframe whose header begins at or after armAt.
        const k = msgs.findIndex((x, i) => x.key && starts[i]! >= armAt);
        if (k < 0) {
          assert.equal(r.splitter.switched, false);
          return;
        }
        assert.equal(r.splitter.switched, true);
        assert.equal(r.switchedCalls, 1);
        assert.deepEqual(r.old, bytes.subarray(0, starts[k]!), 'old = every byte before the keyframe header, nothing after');
        const before = r.completed.filter((c) => !c.afterSwitch);
        const after = r.completed.filter((c) => c.afterSwitch);
        assert.equal(before.length, k, 'messages before the keyframe completed before the switch');
        assert.deepEqual(
          after.map((c) => c.i),
          msgs.slice(k).map((_, j) => k + j),
          'the keyframe and everything after, whole and in order',
        );
        assert.equal(r.splitter.switchTimestamp, msgs[k]!.m.timestamp);
      }),
      { numRuns: 500 },
    );
  });

  it('one byte at a time', () => {
    const cuts = Array.from({ length: bytes.length }, (_, i) => i);
    const r = runSplitter(bytes, 0, cuts);
    const k = msgs.findIndex((x) => x.key);
    assert.deepEqual(r.old, bytes.subarray(0, starts[k]!));
  });

  it('audio-only streams switch at the first audio message after arming', () => {
    const w = new ChunkWriter(true);
    const msgs = [0, 1, 2, 3].map((i) => w.write({ csid: 4, timestamp: i * 21, typeId: 8, streamId: 1, payload: Buffer.from([0xaf, 1, i, i]) }));
    let s: SwitchSplitter | null = null;
    const reader = new ChunkReader({ message: () => {}, messageStart: (csid, t, l, e, h) => s?.onMessageStart(csid, t, l, e, h) }, collectEverything);
    reader.feed(msgs[0]!);
    s = new SwitchSplitter(
      reader,
      keyframeSwitch(reader, () => true),
    );
    const old = s.push(Buffer.concat(msgs.slice(1)));
    assert.equal(s.switched, true);
    assert.equal(s.switchTimestamp, 21);
    assert.equal(old, null, 'switched at the very first byte of this push');
    const withVideo = new SwitchSplitter(
      reader,
      keyframeSwitch(reader, () => false),
    );
    assert.equal(withVideo.switched, false);
  });

  it('holds a trailing partial header, and release() gives it back (for the old backend)', () => {
    const held = new SwitchSplitter(new ChunkReader({ message: () => {} }), () => false);
    assert.deepEqual(held.push(Buffer.from([0x06, 0, 0])), null, 'a 3-byte partial header is held');
    assert.deepEqual(held.release(), Buffer.from([0x06, 0, 0]));
  });

  it('does not switch at a keyframe that starts while an audio message is half-received', () => {
    // Audio (csid 4, 300 bytes = 3 chunks) starts, then a keyframe on csid 6 starts between its chunks.
    const w = new ChunkWriter();
    const audio = w.write({ csid: 4, timestamp: 0, typeId: 8, streamId: 1, payload: Buffer.alloc(300, 0xaf) });
    const key = w.write({ csid: 6, timestamp: 0, typeId: 9, streamId: 1, payload: Buffer.from([0x17, 1, 0, 0, 0]) });
    const key2 = w.write({ csid: 6, timestamp: 33, typeId: 9, streamId: 1, payload: Buffer.from([0x17, 1, 0, 0, 1]) });
    const stream = Buffer.concat([audio.subarray(0, 12 + 128), key, audio.subarray(12 + 128), key2]);
    let s: SwitchSplitter | null = null;
    const reader = new ChunkReader({ message: () => {}, messageStart: (csid, t, l, e, h) => s!.onMessageStart(csid, t, l, e, h) }, collectEverything);
    s = new SwitchSplitter(reader, keyframeSwitch(reader));
    const old = s.push(stream);
    assert.equal(s.switched, true);
    assert.equal(s.switchTimestamp, 33, 'switched at the second keyframe, not inside the audio message');
    assert.deepEqual(old, stream.subarray(0, stream.length - key2.length));
  });
});

// ───────────────────────────── MediaCache, coordinator ─────────────────────────────

const info = (typeId: number, csid = 6): MessageInfo => ({ csid, timestamp: 5, typeId, length: 0, streamId: 1, head: Buffer.alloc(0) });

describe('MediaCache', () => {
  it('keeps copies of the last metadata and sequence headers only, in replay order', () => {
    const c = new MediaCache(1000);
    const avc = Buffer.from([0x17, 0, 1, 2, 3]);
    c.offer(info(9), avc);
    avc[2] = 99; // a socket buffer being reused
    c.offer(info(9), Buffer.from([0x17, 1, 0, 0, 0])); // a frame: ignored
    c.offer(info(8, 4), Buffer.from([0xaf, 0, 0x12, 0x10]));
    c.offer(info(8, 4), Buffer.from([0xaf, 1, 5]));
    c.offer(info(18, 4), encodeAmf0(['@setDataFrame', 'onMetaData', null]));
    c.offer(info(18, 4), encodeAmf0(['onCuePoint', null]));
    assert.deepEqual(
      c.replay().map((m) => [m.typeId, m.payload[1]]),
      [
        [18, 0],
        [9, 0],
        [8, 0],
      ],
    );
    assert.equal(c.video!.payload[2], 1, 'a copy, not a view');
    assert.equal(c.overflow, false);
  });

  it('copies a sequence header only when it changes (encoders that repeat it at every keyframe)', () => {
    const c = new MediaCache(1000);
    c.offer(info(9), Buffer.from([0x17, 0, 1, 2, 3]));
    const kept = c.video!.payload;
    c.offer({ ...info(9), timestamp: 2000 }, Buffer.from([0x17, 0, 1, 2, 3]));
    assert.equal(c.video!.payload, kept, 'the same bytes again: nothing copied');
    assert.equal(c.video!.timestamp, 2000);
    c.offer(info(9), Buffer.from([0x17, 0, 1, 2, 4]));
    assert.notEqual(c.video!.payload, kept, 'new decoder configuration: kept');
    assert.equal(c.video!.payload[4], 4);
  });

  it('is bounded: what does not fit is not kept and marks the cache overflowed', () => {
    const c = new MediaCache(100);
    c.offer(info(9), Buffer.concat([Buffer.from([0x17, 0]), Buffer.alloc(90)]));
    c.offer(info(8, 4), Buffer.concat([Buffer.from([0xaf, 0]), Buffer.alloc(20)]));
    assert.equal(c.audio, null);
    assert.equal(c.overflow, true);
    assert.ok(c.bytes <= 100);
    c.offer(info(9), Buffer.from([0x17, 0, 1])); // a smaller replacement fits
    assert.equal(c.bytes, 3);
  });
});

describe('MigrationCoordinator', () => {
  const settings = { maxInFlight: 2, timeoutMs: 1, switchTimeoutMs: 1, maxCachedBytes: 1, chunkSize: 4096, connectTimeoutMs: 1 };
  const tick = () => new Promise((r) => setImmediate(r));

  it('runs at most maxInFlight at once, the rest in FIFO order as slots free', async () => {
    const c = new MigrationCoordinator(settings);
    const started: number[] = [];
    const tickets = [0, 1, 2, 3].map((i) => c.acquire(() => started.push(i)));
    await tick();
    assert.deepEqual(started, [0, 1]);
    assert.equal(c.inFlight, 2);
    assert.equal(c.queued, 2);
    tickets[2]!.release(); // leaves the queue
    tickets[0]!.release();
    tickets[0]!.release(); // idempotent
    await tick();
    assert.deepEqual(started, [0, 1, 3]);
    assert.equal(c.inFlight, 2);
    tickets[1]!.release();
    tickets[3]!.release();
    assert.equal(c.inFlight, 0);
    assert.equal(c.queued, 0);
  });

  it('never starts inside the caller, and not at all when released first', async () => {
    const c = new MigrationCoordinator(settings);
    let ran = false;
    const t = c.acquire(() => (ran = true));
    assert.equal(ran, false);
    t.release();
    await tick();
    assert.equal(ran, false);
    assert.equal(c.inFlight, 0);
  });
});
