import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decodeAmf0 } from '../../src/rtmp/amf0.js';
import { ChunkReader, type ChunkReaderLimits, collectControlAndCommands } from '../../src/rtmp/chunk-reader.js';
import { ChunkWriter, basicHeaderLength } from '../../src/rtmp/chunk-writer.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { ProtocolError, type ProtocolErrorCode } from '../../src/rtmp/errors.js';
import { HandshakeSkipper } from '../../src/rtmp/handshake.js';
import { decodeCommand, readConnect, readCreateStreamResult, readPublish, readStatusCode } from '../../src/rtmp/messages.js';
import {
  type Publisher,
  type RecordedMessage,
  allCaptures,
  chunkBytes,
  collectAll,
  hex,
  loadCapture,
  parseSignature,
  plainHandshake,
  pseudoRandomBytes,
  recordMessages,
  recordedMessage,
  splitAt,
} from '../helpers/rtmp-fixtures.js';

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

const fill = (n: number, byte: number): Buffer => Buffer.alloc(n, byte);
const cat = (...parts: Buffer[]): Buffer => Buffer.concat(parts);

/** Decodes a recorded command message (payload collected by the default policy). */
function command(m: RecordedMessage) {
  assert.ok(m.payload !== null, `message type ${m.typeId} on csid ${m.csid} was not collected`);
  const cmd = decodeCommand(m.typeId, Buffer.from(m.payload, 'hex'));
  assert.ok(cmd !== null, 'not a command');
  return cmd;
}

function commands(messages: RecordedMessage[]) {
  return messages.filter((m) => m.typeId === MessageType.CommandAmf0 || m.typeId === MessageType.CommandAmf3).map(command);
}

/** Expects `fn` to throw a ProtocolError with `code`. */
function throwsProtocol(fn: () => unknown, code: ProtocolErrorCode): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof ProtocolError, `expected ProtocolError, got ${String(err)}`);
    assert.equal(err.code, code);
    return true;
  });
}

/** A reader that collects every payload, with its recorded message list. */
function freshReader(limits: Partial<ChunkReaderLimits> = {}) {
  return recordMessages([], { collect: collectAll, limits });
}

/** Chunk headers and chunk ends as the injector sees them, with offsets made absolute. */
function traceChunks(pieces: Buffer[]) {
  const events: string[] = [];
  let base = 0;
  const r = new ChunkReader(
    {
      message(info) {
        events.push(`msg csid=${info.csid} len=${info.length}`);
      },
      chunkHeader(csid, fmt, headerLength, end) {
        events.push(`hdr csid=${csid} fmt=${fmt} len=${headerLength} end=${base + end}`);
      },
      chunkEnd(csid, end) {
        events.push(`end csid=${csid} at=${base + end}`);
      },
    },
    collectAll,
  );
  for (const p of pieces) {
    r.feed(p);
    base += p.length;
  }
  return events;
}

// ---------------------------------------------------------------------------------------------
// 1. Wire captures of real publishers (test/fixtures/README.md)
// ---------------------------------------------------------------------------------------------

/** Parses a capture in one piece with the default collect policy; also notes each chunk header. */
function parseCapture(publisher: Publisher, direction: 'c2s' | 's2c') {
  const messages: RecordedMessage[] = [];
  const headers: { csid: number; fmt: number; messagesBefore: number }[] = [];
  const r = new ChunkReader(
    {
      message(info, payload) {
        messages.push(recordedMessage(info, payload));
      },
      chunkHeader(csid, fmt) {
        headers.push({ csid, fmt, messagesBefore: messages.length });
      },
    },
    collectControlAndCommands,
  );
  r.feed(chunkBytes(loadCapture(publisher, direction)));
  return { messages, reader: r, headers };
}

describe('fixtures: handshake skipping', () => {
  // docs/protocol.md#handshake: every capture starts with a plain version-3 handshake of 3073 bytes.
  it('every capture has C0/S0 = 3 and chunks start at 1 + 2×1536', () => {
    for (const c of allCaptures()) {
      assert.equal(c.bytes[0], 3, c.name);
      assert.equal(c.chunkStart, 3073, c.name);
    }
  });
});

describe('fixtures: OBS 29 → nginx-rtmp (c2s)', () => {
  const { messages, reader, headers } = parseCapture('obs29-publish', 'c2s');

  // docs/protocol.md#protocol-control-messages: OBS sends Set Chunk Size 4096 on csid 2 before connect.
  it('first message is Set Chunk Size 4096 on csid 2, msid 0, before connect', () => {
    assert.deepEqual(messages[0], {
      csid: 2,
      timestamp: 0,
      typeId: MessageType.SetChunkSize,
      length: 4,
      streamId: 0,
      head: '00001000',
      payload: '00001000',
    });
    assert.equal(command(messages[1]!).name, 'connect');
  });

  // docs/protocol.md#protocol-control-messages: connect (191 bytes > 128) already arrives in one 4096-byte chunk.
  it('connect is read with the new chunk size: one chunk on csid 3', () => {
    const connect = messages[1]!;
    assert.equal(connect.length, 191);
    assert.equal(connect.csid, 3);
    const connectChunks = headers.filter((h) => h.messagesBefore === 1);
    assert.deepEqual(connectChunks, [{ csid: 3, fmt: 0, messagesBefore: 1 }]);
  });

  // docs/protocol.md#capabilities-in-connect: OBS announces Go Away with an AMF0 boolean in the connect object.
  it('connect: app "live", supportsGoAway true, no capsEx', () => {
    const info = readConnect(command(messages[1]!));
    assert.equal(info.app, 'live');
    assert.equal(info.supportsGoAway, true);
    assert.equal(info.goAwayKey, 'supportsGoAway');
    assert.equal(info.capsEx, null);
    assert.equal(info.tcUrl, 'rtmp://127.0.0.1:19502/live');
    assert.equal(info.flashVer, 'FMLE/3.0 (compatible; FMSc/1.0)');
  });

  // docs/protocol.md#publisher-command-flow: publisher command flow; the stream key is publish's first argument.
  it('command flow connect → releaseStream → FCPublish → createStream → publish("obs", "live") on msid 1', () => {
    const cmds = commands(messages);
    assert.deepEqual(
      cmds.map((c) => [c.name, c.transactionId]),
      [
        ['connect', 1],
        ['releaseStream', 2],
        ['FCPublish', 3],
        ['createStream', 4],
        ['publish', 5],
      ],
    );
    assert.deepEqual(readPublish(cmds[4]!), { streamKey: 'obs', publishType: 'live' });
    const publish = messages.find((m) => m.head === '0200077075626c69')!;
    assert.equal(publish.streamId, 1);
  });

  // docs/protocol.md#media-tag-heads: the seamless switch re-sends the last @setDataFrame onMetaData.
  it('@setDataFrame onMetaData is a type 18 message on msid 1', () => {
    const data = messages.filter((m) => m.typeId === MessageType.DataAmf0);
    assert.equal(data.length, 1);
    assert.equal(data[0]!.streamId, 1);
    assert.equal(data[0]!.payload, null, 'data messages are not collected by the default policy');
    const full = recordMessages([chunkBytes(loadCapture('obs29-publish', 'c2s'))], { collect: collectAll }).messages;
    const meta = full.find((m) => m.typeId === MessageType.DataAmf0)!;
    const values = decodeAmf0(Buffer.from(meta.payload!, 'hex'));
    assert.deepEqual(values.slice(0, 2), ['@setDataFrame', 'onMetaData']);
  });

  // test/fixtures/README.md: the capture is cut mid-message; the reader holds it, never emits it.
  it('chunk size ends at 4096 and the cut last message is pending, not emitted', () => {
    assert.equal(reader.chunkSize, 4096);
    assert.equal(reader.messagesRead, messages.length);
    assert.equal(messages.length, 50);
    assert.equal(reader.bytesRead, 200_000 - 3073);
    assert.equal(reader.atChunkBoundary, false);
    assert.equal(reader.inMessage(4), true);
    assert.deepEqual(reader.lastHeader(4), { timestamp: 566, length: 7737, typeId: 9, streamId: 1 });
    assert.ok(!messages.some((m) => m.typeId === 9 && m.timestamp === 566 && m.length === 7737));
    assert.equal(reader.inMessage(2), false);
    assert.equal(reader.inMessage(3), false);
  });
});

describe('fixtures: FFmpeg Go Away fork → nginx-rtmp (c2s)', () => {
  const { messages, reader } = parseCapture('ffmpeg-goaway-fork-publish', 'c2s');

  // docs/protocol.md#capabilities-in-connect: the reference FFmpeg patch sends supportsGoAway as boolean true.
  it('connect comes first (128-byte chunks), then Set Chunk Size 4096; supportsGoAway true', () => {
    const info = readConnect(command(messages[0]!));
    assert.equal(messages[0]!.length, 157);
    assert.equal(info.app, 'live');
    assert.equal(info.supportsGoAway, true);
    assert.equal(info.goAwayKey, 'supportsGoAway');
    assert.equal(info.capsEx, null);
    assert.match(info.flashVer ?? '', /Lavf59\.4\.100/);
    assert.equal(messages[1]!.typeId, MessageType.SetChunkSize);
    assert.equal(messages[1]!.payload, '00001000');
  });

  // docs/protocol.md#publisher-command-flow: the stream key is the first publish argument. The capture's key is "fork"
  // (test/fixtures/README.md says "ffmpeg"; the bytes say otherwise).
  it('publish("fork", "live") on csid 8, msid 1', () => {
    const pub = commands(messages).find((c) => c.name === 'publish')!;
    assert.deepEqual(readPublish(pub), { streamKey: 'fork', publishType: 'live' });
    const m = messages.find((x) => x.head === '0200077075626c69')!;
    assert.deepEqual([m.csid, m.streamId], [8, 1]);
  });

  // README: cut at 200,000 bytes; the last video message stays pending.
  it('ends with chunk size 4096 and a pending video message on csid 6', () => {
    assert.equal(reader.chunkSize, 4096);
    assert.equal(messages.length, 93);
    assert.equal(reader.inMessage(6), true);
    assert.deepEqual(reader.lastHeader(6), { timestamp: 1167, length: 6700, typeId: 9, streamId: 1 });
  });
});

describe('fixtures: stock FFmpeg 5.1 → nginx-rtmp (c2s)', () => {
  const { messages, reader } = parseCapture('ffmpeg51-publish', 'c2s');

  // docs/protocol.md#capabilities-in-connect: the common legacy publisher announces neither Go Away nor E-RTMP caps.
  it('connect: supportsGoAway false, capsEx null, app "live"', () => {
    const info = readConnect(command(messages[0]!));
    assert.equal(info.app, 'live');
    assert.equal(info.supportsGoAway, false);
    assert.equal(info.goAwayKey, null);
    assert.equal(info.capsEx, null);
  });

  // docs/protocol.md#publisher-command-flow: stream key.
  it('publish key "stock"', () => {
    const pub = commands(messages).find((c) => c.name === 'publish')!;
    assert.equal(readPublish(pub).streamKey, 'stock');
  });

  // README: cut mid-message.
  it('ends with chunk size 4096 and one pending message', () => {
    assert.equal(reader.chunkSize, 4096);
    assert.equal(reader.inMessage(6), true);
    assert.equal(reader.atChunkBoundary, false);
  });
});

describe('fixtures: nginx-rtmp replies (s2c)', () => {
  for (const publisher of ['obs29-publish', 'ffmpeg-goaway-fork-publish', 'ffmpeg51-publish'] as const) {
    // docs/protocol.md#publisher-command-flow: server control messages, connect/createStream results, Publish.Start.
    it(`${publisher}: Window Ack Size, Set Peer Bandwidth, Set Chunk Size, _result ×2, onStatus Publish.Start`, () => {
      const { messages, reader } = parseCapture(publisher, 's2c');
      assert.deepEqual(
        messages.slice(0, 3).map((m) => [m.csid, m.typeId, m.streamId, m.payload]),
        [
          [2, MessageType.WindowAckSize, 0, '004c4b40'],
          [2, MessageType.SetPeerBandwidth, 0, '004c4b4002'],
          [2, MessageType.SetChunkSize, 0, '00001000'],
        ],
      );
      const [connectResult, createResult, publishStatus] = messages.slice(3, 6).map(command);
      assert.equal(connectResult!.name, '_result');
      assert.equal(connectResult!.transactionId, 1);
      assert.equal(readStatusCode(connectResult!), 'NetConnection.Connect.Success');
      // docs/protocol.md#e-rtmp-reconnect: nginx-rtmp does not echo capsEx in the connect _result.
      assert.equal((connectResult!.commandObject as Record<string, unknown>)['capsEx'], undefined);
      assert.equal(createResult!.name, '_result');
      assert.equal(createResult!.transactionId, 4);
      assert.equal(readCreateStreamResult(createResult!), 1);
      assert.equal(publishStatus!.name, 'onStatus');
      assert.equal(readStatusCode(publishStatus!), 'NetStream.Publish.Start');
      assert.equal(messages[5]!.streamId, 1);
      assert.equal(reader.chunkSize, 4096);
      assert.equal(reader.atChunkBoundary, true);
      assert.equal(reader.bytesRead, loadCapture(publisher, 's2c').bytes.length - 3073);
    });
  }

  // The stock FFmpeg session ended with FCUnpublish/deleteStream: nginx answered Unpublish.Success.
  it('ffmpeg51: a final onStatus NetStream.Unpublish.Success', () => {
    const { messages } = parseCapture('ffmpeg51-publish', 's2c');
    assert.equal(messages.length, 7);
    assert.equal(readStatusCode(command(messages[6]!)), 'NetStream.Unpublish.Success');
  });
});

describe('fixtures: reader invariants', () => {
  // MessageInfo.head: the first min(length, 8) payload bytes, for every message, collected or not.
  it('head equals the payload prefix and the default policy collects exactly control + commands', () => {
    for (const c of allCaptures()) {
      const all = recordMessages([chunkBytes(c)], { collect: collectAll }).messages;
      const dflt = recordMessages([chunkBytes(c)]).messages;
      assert.equal(all.length, dflt.length, c.name);
      for (let i = 0; i < all.length; i++) {
        const a = all[i]!;
        const d = dflt[i]!;
        assert.equal(a.payload!.length, a.length * 2, c.name);
        assert.equal(a.head, a.payload!.slice(0, 16), c.name);
        assert.deepEqual({ ...d, payload: null }, { ...a, payload: null });
        const control = a.typeId <= 6 || a.typeId === 17 || a.typeId === 20;
        assert.equal(d.payload, control ? a.payload : null, `${c.name} #${i} type ${a.typeId}`);
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
// 2. Any split of the byte stream gives the same result (README: "split at any byte boundary")
// ---------------------------------------------------------------------------------------------

describe('fixtures: split at every byte boundary', () => {
  for (const c of allCaptures()) {
    // Sockets deliver arbitrary pieces: one cut anywhere, incl. inside headers, must not matter.
    it(`${c.name}: feed [0,k) then [k,end) for every k`, () => {
      const buf = chunkBytes(c);
      const reference = parseSignature(buf, buf.length);
      assert.equal(parseSignature(buf, 0), reference);
      const bad: number[] = [];
      for (let k = 1; k < buf.length; k++) {
        if (parseSignature(buf, k) !== reference && bad.push(k) >= 10) break;
      }
      assert.deepEqual(bad, [], `splits that change the result: ${bad.join(', ')}`);
    });
  }
});

describe('fixtures: random multi-way splits', () => {
  const cutsFor = (len: number) =>
    fc.oneof(
      fc.array(fc.integer({ min: 0, max: len }), { maxLength: 40 }),
      fc.array(fc.integer({ min: 0, max: len }), { minLength: 200, maxLength: 2000 }),
      // a run of 1-byte pieces somewhere, plus a few other cuts
      fc
        .tuple(fc.integer({ min: 0, max: len }), fc.integer({ min: 1, max: 64 }), fc.array(fc.integer({ min: 0, max: len }), { maxLength: 10 }))
        .map(([at, n, rest]) => [...Array.from({ length: n }, (_, i) => at + i), ...rest]),
    );

  for (const c of allCaptures()) {
    // Same as above with many pieces and every payload collected and compared.
    it(`${c.name}: any set of cut points gives the identical message list`, () => {
      const buf = chunkBytes(c);
      const reference = recordMessages([buf], { collect: collectAll });
      fc.assert(
        fc.property(cutsFor(buf.length), (cuts) => {
          const got = recordMessages(splitAt(buf, cuts), { collect: collectAll });
          assert.deepStrictEqual(got.messages, reference.messages);
          assert.equal(got.reader.chunkSize, reference.reader.chunkSize);
          assert.equal(got.reader.atChunkBoundary, reference.reader.atChunkBoundary);
          assert.equal(got.reader.chunksRead, reference.reader.chunksRead);
        }),
        { numRuns: 200 },
      );
    });
  }
});

// ---------------------------------------------------------------------------------------------
// 3. Synthetic streams: ChunkWriter → random split → ChunkReader
// ---------------------------------------------------------------------------------------------

const csidArb = fc.oneof(
  fc.integer({ min: 2, max: 63 }),
  fc.integer({ min: 64, max: 319 }),
  fc.integer({ min: 320, max: 65599 }),
  fc.constantFrom(2, 3, 63, 64, 319, 320, 65599),
);

const timestampArb = fc.oneof(
  fc.integer({ min: 0, max: 2000 }),
  fc.integer({ min: 0xfffff0, max: 0x1000010 }),
  fc.constantFrom(0, 0xfffffe, 0xffffff, 0x1000000, 0xffffffff),
  fc.integer({ min: 0, max: 0xffffffff }),
);

const deltaArb = fc.oneof(fc.integer({ min: 0, max: 100 }), fc.integer({ min: 0xfffffd, max: 0x1000003 }));

const stepArb = fc.record({
  /** Set Chunk Size sent (and applied by the writer) just before this message. */
  setChunkSize: fc.option(fc.oneof(fc.integer({ min: 32, max: 300 }), fc.constantFrom(32, 64, 128, 1000, 4096)), {
    nil: null,
    freq: 6,
  }),
  csidIdx: fc.nat({ max: 7 }),
  /** Same length/type/msid as the previous message on this csid, so fmt 2/3 become possible. */
  reuseShape: fc.boolean(),
  tsMode: fc.constantFrom('repeat-delta', 'delta', 'absolute'),
  delta: deltaArb,
  timestamp: timestampArb,
  lengthChunks: fc.nat({ max: 2 }),
  lengthOffset: fc.oneof(fc.constantFrom(-1, 0, 1), fc.nat()),
  typeId: fc.constantFrom(3, 4, 5, 6, 8, 9, 15, 17, 18, 19, 20, 22, 32, 0x7f, 0xff),
  streamId: fc.oneof(fc.constantFrom(0, 1), fc.integer({ min: 0, max: 0xffffffff })),
  seed: fc.integer(),
});

interface ExpectedChunk {
  csid: number;
  fmt: number;
  headerLength: number;
}

interface Synthetic {
  bytes: Buffer;
  messages: RecordedMessage[];
  chunks: ExpectedChunk[];
  finalChunkSize: number;
  /** Coverage facts, read from the writer's bytes. */
  firstFmts: Set<number>;
  basicLengths: Set<number>;
  extendedContinuation: boolean;
}

type Step = typeof stepArb extends fc.Arbitrary<infer T> ? T : never;

/** Builds a stream with the writer; expectations come from the inputs and the first byte of each write. */
function buildSynthetic(compress: boolean, pool: number[], steps: Step[]): Synthetic {
  const writer = new ChunkWriter(compress);
  const out: Buffer[] = [];
  const messages: RecordedMessage[] = [];
  const chunks: ExpectedChunk[] = [];
  const last = new Map<number, { timestamp: number; field: number; length: number; typeId: number; streamId: number }>();
  const firstFmts = new Set<number>();
  const basicLengths = new Set<number>();
  let extendedContinuation = false;

  const emit = (csid: number, timestamp: number, typeId: number, streamId: number, payload: Buffer) => {
    const prev = last.get(csid);
    const bytes = writer.write({ csid, timestamp, typeId, streamId, payload });
    const fmt = bytes[0]! >> 6;
    firstFmts.add(fmt);
    basicLengths.add(basicHeaderLength(csid));
    // Timestamp field as written: absolute for fmt 0, else the delta (fmt 3 repeats the last one).
    const field = fmt === 0 ? timestamp : fmt === 3 ? prev!.field : timestamp - prev!.timestamp;
    const ext = field >= 0xffffff ? 4 : 0;
    const basic = basicHeaderLength(csid);
    const n = Math.max(1, Math.ceil(payload.length / writer.chunkSize));
    chunks.push({ csid, fmt, headerLength: basic + [11, 7, 3, 0][fmt]! + ext });
    for (let i = 1; i < n; i++) chunks.push({ csid, fmt: 3, headerLength: basic + ext });
    if (n > 1 && ext) extendedContinuation = true;
    messages.push({
      csid,
      timestamp,
      typeId,
      length: payload.length,
      streamId,
      head: payload.subarray(0, 8).toString('hex'),
      payload: payload.toString('hex'),
    });
    last.set(csid, { timestamp, field, length: payload.length, typeId, streamId });
    out.push(bytes);
  };

  for (const s of steps) {
    if (s.setChunkSize !== null) {
      const p = Buffer.alloc(4);
      p.writeUInt32BE(s.setChunkSize);
      emit(2, last.get(2)?.timestamp ?? 0, MessageType.SetChunkSize, 0, p);
      writer.chunkSize = s.setChunkSize; // the sender switches right after sending it
    }
    const csid = pool[s.csidIdx % pool.length]!;
    const prev = last.get(csid);
    const cs = writer.chunkSize;
    let typeId: number = s.typeId;
    let streamId = s.streamId;
    let length = Math.max(0, Math.min(3 * cs, s.lengthChunks * cs + (s.lengthOffset > 1 ? s.lengthOffset % cs : s.lengthOffset)));
    if (prev !== undefined && s.reuseShape && prev.typeId !== MessageType.SetChunkSize) {
      typeId = prev.typeId;
      streamId = prev.streamId;
      length = prev.length;
    }
    let timestamp = s.timestamp;
    if (prev !== undefined && s.tsMode !== 'absolute') {
      const t = prev.timestamp + (s.tsMode === 'delta' ? s.delta : prev.field);
      if (t <= 0xffffffff) timestamp = t;
    }
    emit(csid, timestamp, typeId, streamId, pseudoRandomBytes(length, s.seed));
  }
  return {
    bytes: Buffer.concat(out),
    messages,
    chunks,
    finalChunkSize: writer.chunkSize,
    firstFmts,
    basicLengths,
    extendedContinuation,
  };
}

/** Parses `bytes` cut at `cuts` (or byte by byte) and returns messages and chunk headers seen. */
function readSynthetic(bytes: Buffer, cuts: number[] | 'bytewise') {
  const messages: RecordedMessage[] = [];
  const chunks: ExpectedChunk[] = [];
  const r = new ChunkReader(
    {
      message(info, payload) {
        messages.push(recordedMessage(info, payload));
      },
      chunkHeader(csid, fmt, headerLength) {
        chunks.push({ csid, fmt, headerLength });
      },
    },
    collectAll,
  );
  if (cuts === 'bytewise') for (let i = 0; i < bytes.length; i++) r.feed(bytes.subarray(i, i + 1));
  else for (const p of splitAt(bytes, cuts)) r.feed(p);
  return { messages, chunks, reader: r };
}

describe('synthetic streams: ChunkWriter → ChunkReader round trip', () => {
  const scenarioArb = fc.record({
    pool: fc.array(csidArb, { minLength: 1, maxLength: 4 }),
    steps: fc.array(stepArb, { minLength: 1, maxLength: 30 }),
    cuts: fc.oneof({ weight: 8, arbitrary: fc.array(fc.nat(), { maxLength: 30 }) }, { weight: 1, arbitrary: fc.constant('bytewise' as const) }),
  });

  for (const compress of [true, false]) {
    // RTMP spec §5.3: header compression, 1/2/3-byte basic headers, extended timestamps and
    // mid-stream Set Chunk Size all decode to exactly what was written, however TCP splits it.
    it(`compress=${compress}: identical messages and chunk headers for any split`, () => {
      const coverage = { fmts: new Set<number>(), basic: new Set<number>(), extCont: false, scs: 0 };
      fc.assert(
        fc.property(scenarioArb, ({ pool, steps, cuts }) => {
          const s = buildSynthetic(compress, pool, steps);
          const cutPoints = cuts === 'bytewise' ? 'bytewise' : cuts.map((c) => c % (s.bytes.length + 1));
          const got = readSynthetic(s.bytes, cutPoints);
          assert.deepStrictEqual(got.messages, s.messages);
          assert.deepStrictEqual(got.chunks, s.chunks);
          assert.equal(got.reader.chunkSize, s.finalChunkSize);
          assert.equal(got.reader.atChunkBoundary, true);
          assert.equal(got.reader.bytesRead, s.bytes.length);
          for (const f of s.firstFmts) coverage.fmts.add(f);
          for (const b of s.basicLengths) coverage.basic.add(b);
          coverage.extCont ||= s.extendedContinuation;
          coverage.scs += steps.filter((x) => x.setChunkSize !== null).length;
        }),
        { numRuns: 200 },
      );
      // The generator must actually reach the interesting encodings.
      assert.deepEqual([...coverage.fmts].sort(), compress ? [0, 1, 2, 3] : [0]);
      assert.deepEqual([...coverage.basic].sort(), [1, 2, 3]);
      assert.equal(coverage.extCont, true, 'no extended timestamp on a continuation chunk was generated');
      assert.ok(coverage.scs > 20, 'too few Set Chunk Size messages generated');
    });
  }

  // Hand-picked sequence: the compressing writer uses all four fmts, and the reader agrees.
  it('compress=true writes fmt 0, 1, 2 and 3 first chunks for a typical media sequence', () => {
    const w = new ChunkWriter(true);
    const p = (n: number) => pseudoRandomBytes(n, n);
    const outs = [
      w.write({ csid: 6, timestamp: 0, typeId: 9, streamId: 1, payload: p(10) }), // fmt 0
      w.write({ csid: 6, timestamp: 33, typeId: 9, streamId: 1, payload: p(20) }), // new length → fmt 1
      w.write({ csid: 6, timestamp: 66, typeId: 9, streamId: 1, payload: p(20) }), // same delta → fmt 3
      w.write({ csid: 6, timestamp: 100, typeId: 9, streamId: 1, payload: p(20) }), // new delta → fmt 2
    ];
    assert.deepEqual(
      outs.map((b) => b[0]! >> 6),
      [0, 1, 3, 2],
    );
    const got = recordMessages([cat(...outs)], { collect: collectAll }).messages;
    assert.deepEqual(
      got.map((m) => [m.timestamp, m.length]),
      [
        [0, 10],
        [33, 20],
        [66, 20],
        [100, 20],
      ],
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Hand-written chunk layouts
// ---------------------------------------------------------------------------------------------

describe('hand-written chunk layouts', () => {
  // RTMP spec §5.3.1: chunks of different csids interleave; state is per csid.
  it('interleaved csids: chunk 1 of A (csid 4), whole B (csid 6), chunk 2 of A', () => {
    const aHead = hex('04 0003e8 0000c8 09 01000000'); // ts 1000, length 200, video, msid 1
    const bWhole = cat(hex('06 0003e9 00000a 08 01000000'), fill(10, 0xbb)); // ts 1001, length 10, audio
    const aRest = cat(hex('c4'), fill(72, 0xaa));
    const { messages, reader: r } = freshReader();
    r.feed(cat(aHead, fill(128, 0xaa)));
    assert.equal(r.inMessage(4), true);
    assert.equal(r.atChunkBoundary, true);
    r.feed(cat(bWhole, aRest));
    assert.equal(r.inMessage(4), false);
    assert.deepEqual(
      messages.map((m) => [m.csid, m.timestamp, m.typeId, m.length, m.payload]),
      [
        [6, 1001, 8, 10, 'bb'.repeat(10)],
        [4, 1000, 9, 200, 'aa'.repeat(200)],
      ],
    );
  });

  // The head bytes of low csids live at csid × 8 of one slab per reader, higher csids in their own
  // buffer: interleaved messages on both kinds, fed one byte at a time, each keep their own head.
  it('interleaved csids 4, 8, 15 and 70, fed byte by byte: each message gets its own head', () => {
    const seq = (n: number, from: number): Buffer => Buffer.from(Array.from({ length: n }, (_, i) => (from + i) & 0xff));
    const wire = cat(
      hex('04 000001 0000c8 09 01000000'),
      seq(128, 0x10), // csid 4: first chunk of 200 video bytes
      hex('08 000002 000006 08 01000000'),
      seq(6, 0x40), // csid 8: 6 audio bytes (a short head)
      hex('0f 000003 00000c 12 01000000'),
      seq(12, 0x60), // csid 15: 12 data bytes
      hex('00 06 000004 00000a 09 01000000'),
      seq(10, 0x80), // csid 70 (2-byte basic header)
      hex('c4'),
      seq(72, 0x90), // csid 4: the rest
    );
    const { messages, reader: r } = freshReader();
    for (let i = 0; i < wire.length; i++) r.feed(wire.subarray(i, i + 1));
    assert.deepEqual(
      messages.map((m) => [m.csid, m.length, m.head]),
      [
        [8, 6, seq(6, 0x40).toString('hex')],
        [15, 12, seq(8, 0x60).toString('hex')],
        [70, 10, seq(8, 0x80).toString('hex')],
        [4, 200, seq(8, 0x10).toString('hex')],
      ],
    );
  });

  // RTMP spec §5.4.2: Abort drops the partial message on the named csid.
  it('Abort (type 2) drops the partial message; the csid then accepts a new fmt 0 header', () => {
    const { messages, reader: r } = freshReader();
    r.feed(cat(hex('04 000000 0000c8 09 01000000'), fill(128, 0xaa))); // 128 of 200 bytes
    assert.equal(r.inMessage(4), true);
    r.feed(hex('02 000000 000004 02 00000000 | 00000004')); // Abort csid 4
    assert.equal(r.inMessage(4), false);
    r.feed(cat(hex('04 000005 000005 09 01000000'), fill(5, 0xcc)));
    assert.deepEqual(
      messages.map((m) => [m.csid, m.typeId, m.length, m.payload]),
      [
        [2, MessageType.Abort, 4, '00000004'],
        [4, 9, 5, 'cc'.repeat(5)],
      ],
    );
  });

  // RTMP spec §5.4.2: after Abort, a fmt 3 chunk on that csid starts a new message with the old header.
  it('Abort then fmt 3: a fresh message of the previous length', () => {
    const { messages, reader: r } = freshReader();
    r.feed(cat(hex('04 000000 0000c8 09 01000000'), fill(128, 0xaa)));
    r.feed(hex('02 000000 000004 02 00000000 00000004'));
    r.feed(cat(hex('c4'), fill(128, 0x11), hex('c4'), fill(72, 0x22)));
    const last = messages.at(-1)!;
    assert.deepEqual([last.csid, last.length, last.payload], [4, 200, '11'.repeat(128) + '22'.repeat(72)]);
  });

  // RTMP spec §5.3.1.2: a zero-length message is just a header; it completes at once.
  it('zero-length messages (fmt 0 and fmt 3) complete at their header', () => {
    const stream = hex('04 000010 000000 12 01000000 | c4 | 04 000030 000001 09 01000000 ff');
    const { messages, reader: r } = freshReader();
    r.feed(stream);
    const events = traceChunks([stream]);
    assert.deepEqual(
      messages.map((m) => [m.csid, m.timestamp, m.typeId, m.length, m.head, m.payload]),
      [
        [4, 0x10, 18, 0, '', ''],
        [4, 0x20, 18, 0, '', ''],
        [4, 0x30, 9, 1, 'ff', 'ff'],
      ],
    );
    assert.deepEqual(events.slice(0, 6), [
      'hdr csid=4 fmt=0 len=12 end=12',
      'end csid=4 at=12',
      'msg csid=4 len=0',
      'hdr csid=4 fmt=3 len=1 end=13',
      'end csid=4 at=13',
      'msg csid=4 len=0',
    ]);
  });

  // docs/protocol.md#extended-timestamps: FFmpeg/librtmp/nginx-rtmp repeat the extended timestamp on type-3 chunks.
  it('extended timestamp is repeated on continuation chunks and on a fmt 3 next message', () => {
    const { messages, reader: r } = freshReader();
    const msg = (a: number, b: number, c: number) => cat(fill(128, a), hex('c4 01000000'), fill(128, b), hex('c4 01000000'), fill(44, c));
    r.feed(cat(hex('04 ffffff 00012c 09 01000000 | 01000000'), msg(1, 2, 3), hex('c4 01000000'), msg(4, 5, 6)));
    assert.deepEqual(
      messages.map((m) => [m.timestamp, m.length, m.payload]),
      [
        [0x01000000, 300, '01'.repeat(128) + '02'.repeat(128) + '03'.repeat(44)],
        // fmt 3 next message: delta = the fmt 0 header's timestamp field (FFmpeg's ts_field rule)
        [0x02000000, 300, '04'.repeat(128) + '05'.repeat(128) + '06'.repeat(44)],
      ],
    );
  });

  // RTMP spec §5.3.1.2.2–4: fmt 1/2/3 timestamps are deltas added to the csid's last timestamp.
  it('fmt 1, 2 and 3 deltas accumulate; fmt 1 changes length and type, msid is inherited', () => {
    const { messages, reader: r } = freshReader();
    r.feed(hex('05 000064 000003 08 02000000 aabbcc | 45 00000a 000002 09 ddee | 85 000005 ff01 | c5 0102'));
    assert.deepEqual(
      messages.map((m) => [m.timestamp, m.typeId, m.length, m.streamId, m.payload]),
      [
        [100, 8, 3, 2, 'aabbcc'],
        [110, 9, 2, 2, 'ddee'],
        [115, 9, 2, 2, 'ff01'],
        [120, 9, 2, 2, '0102'],
      ],
    );
  });

  // RTMP spec §5.3.1.2.2: extended delta in a fmt 1 header.
  it('fmt 1 with an extended delta', () => {
    const { messages, reader: r } = freshReader();
    r.feed(hex('05 000001 000001 08 01000000 aa | 45 ffffff 000001 08 01000000 bb'));
    assert.deepEqual(
      messages.map((m) => m.timestamp),
      [1, 0x01000001],
    );
  });

  // Timestamps are uint32 and wrap (RTMP spec §5.3.1.3).
  it('timestamp deltas wrap at 2^32', () => {
    const { messages, reader: r } = freshReader();
    r.feed(hex('05 ffffff 000001 08 01000000 fffffff0 aa | 85 000020 bb'));
    assert.deepEqual(
      messages.map((m) => m.timestamp),
      [0xfffffff0, 0x10],
    );
  });

  // RTMP spec §5.3.1.1: 2-byte (csid 64..319) and 3-byte (low byte first) basic headers.
  it('basic headers: csid 64, 319, 320, 65599', () => {
    const { messages, reader: r } = freshReader();
    r.feed(
      hex(`00 00 | 000000 000001 08 01000000 01
           00 ff | 000000 000001 08 01000000 02
           01 00 01 | 000000 000001 08 01000000 03
           01 ff ff | 000000 000001 08 01000000 04
           41 00 01 | 000005 000001 08 05
           c1 ff ff 06`),
    );
    assert.deepEqual(
      messages.map((m) => [m.csid, m.timestamp, m.payload]),
      [
        [64, 0, '01'],
        [319, 0, '02'],
        [320, 0, '03'],
        [65599, 0, '04'],
        [320, 5, '05'],
        [65599, 0, '06'],
      ],
    );
  });

  // RTMP spec §5.3.1.2.1: the message stream id is the one little-endian field.
  it('message stream id is little-endian', () => {
    const { messages, reader: r } = freshReader();
    r.feed(hex('03 000000 000001 14 04030201 05'));
    assert.equal(messages[0]!.streamId, 0x01020304);
  });

  // RTMP spec §5.4.1: Set Chunk Size applies to every following chunk, also of a half-read message.
  it('Set Chunk Size between two chunks of a message on another csid applies to its next chunk', () => {
    const { messages, reader: r } = freshReader();
    r.feed(
      cat(
        hex('04 000000 00012c 09 01000000'),
        fill(128, 0xaa), // 128 of 300 at the old size
        hex('02 000000 000004 01 00000000 00000100'), // Set Chunk Size 256
        hex('c4'),
        fill(172, 0xab), // the remaining 172 in one chunk
        hex('06 000000 000001 08 01000000 77'),
      ),
    );
    assert.equal(r.chunkSize, 256);
    assert.deepEqual(
      messages.map((m) => [m.csid, m.typeId, m.length]),
      [
        [2, 1, 4],
        [4, 9, 300],
        [6, 8, 1],
      ],
    );
    assert.equal(r.chunksRead, 4);
  });

  // Injector API (docs/protocol.md#injection): chunk header/end offsets and the boundary state between feeds.
  it('chunkHeader/chunkEnd offsets, atChunkBoundary, pendingHeaderBytes, inMessage, lastHeader', () => {
    const stream = cat(hex('04 000064 0000c8 09 01000000'), fill(128, 1), hex('c4'), fill(72, 2));
    const pieces = splitAt(stream, [5, 22, 140, 141]);
    const states: unknown[] = [];
    const events: string[] = [];
    let base = 0;
    const r = new ChunkReader(
      {
        message: (i) => events.push(`msg ${i.csid} ${i.length}`),
        chunkHeader: (c, f, l, e) => events.push(`hdr ${c} ${f} ${l} ${base + e}`),
        chunkEnd: (c, e) => events.push(`end ${c} ${base + e}`),
      },
      collectAll,
    );
    for (const p of pieces) {
      r.feed(p);
      base += p.length;
      states.push([r.atChunkBoundary, r.pendingHeaderBytes, r.inMessage(4), r.lastHeader(4)?.length ?? null]);
    }
    assert.deepEqual(states, [
      [false, 5, false, null], // 5 of the 12 header bytes are held
      [false, 0, true, 200], // header + 10 payload bytes
      [true, 0, true, 200], // first chunk complete, message not
      [false, 0, true, 200], // a lone fmt 3 byte is a complete header: chunk 2 has started
      [true, 0, false, 200], // message complete
    ]);
    assert.deepEqual(events, ['hdr 4 0 12 12', 'end 4 140', 'hdr 4 3 1 141', 'end 4 213', 'msg 4 200']);
    assert.deepEqual(r.lastHeader(4), { timestamp: 100, length: 200, typeId: 9, streamId: 1 });
    assert.equal(r.lastHeader(5), null);
  });

  // ChunkReader.feed(buf, start): bytes before `start` (e.g. the handshake) are not counted or parsed.
  it('feed with a start offset skips the leading bytes', () => {
    const { messages, reader: r } = freshReader();
    const buf = cat(fill(7, 0xee), hex('03 000000 000001 14 00000000 05'));
    r.feed(buf, 7);
    assert.equal(r.bytesRead, buf.length - 7);
    assert.equal(messages.length, 1);
  });

  // Collect policy: media is skipped (payload null) but its head is always available.
  it('default policy: commands collected, media not; head still set; maxCollectedSize caps collection', () => {
    const stream = hex('04 000000 00000a 09 01000000 17000102030405060708 | 03 000000 000003 14 00000000 050505');
    const dflt = recordMessages([stream]).messages;
    assert.deepEqual(
      dflt.map((m) => [m.typeId, m.head, m.payload]),
      [
        [9, '1700010203040506', null],
        [20, '050505', '050505'],
      ],
    );
    const capped = recordMessages([stream], { limits: { maxCollectedSize: 2 } }).messages;
    assert.deepEqual(
      capped.map((m) => m.payload),
      [null, null],
    );
  });

  // setCollectPolicy takes effect from the next message start.
  it('setCollectPolicy switches what is collected', () => {
    const got: (string | null)[] = [];
    const r = new ChunkReader({ message: (_i, p) => got.push(p?.toString('hex') ?? null) }, () => false);
    r.feed(hex('04 000000 000001 09 01000000 aa'));
    r.setCollectPolicy(() => true);
    r.feed(hex('c4 bb'));
    assert.deepEqual(got, [null, 'bb']);
  });

  // RTMP spec §5.4.1: the sender's Set Chunk Size changes framing whatever the caller wants
  // collected; with a policy that collects nothing the reader must still apply it.
  it('Set Chunk Size is applied even when the collect policy does not collect it', {}, () => {
    const stream = cat(
      hex('02 000000 000004 01 00000000 00001000'),
      hex('04 000000 000190 09 01000000'),
      fill(400, 0x17),
      hex('04 000000 000001 08 01000000 aa'),
    );
    const lengths: number[] = [];
    const r = new ChunkReader({ message: (i) => lengths.push(i.length) }, () => false);
    r.feed(stream);
    assert.equal(r.chunkSize, 4096);
    assert.deepEqual(lengths, [4, 400, 1]);
  });

  // nginx-rtmp (ngx_rtmp_receive_message) dispatches protocol control messages by type alone,
  // whatever their csid and msid; a proxy that ignores one desynchronises from the server.
  it('Set Chunk Size on csid 3, msid 1 is honoured as nginx-rtmp/FFmpeg/librtmp honour it', {}, () => {
    const stream = cat(hex('03 000000 000004 01 01000000 00001000'), hex('04 000000 000190 09 01000000'), fill(400, 0x17));
    const { messages, reader: r } = freshReader();
    r.feed(stream);
    assert.equal(r.chunkSize, 4096);
    assert.deepEqual(
      messages.map((m) => m.length),
      [4, 400],
    );
  });
});

// ---------------------------------------------------------------------------------------------
// 4. Protocol errors
// ---------------------------------------------------------------------------------------------

describe('protocol errors', () => {
  // RTMP spec §5.3.1.2: fmt 1/2/3 inherit from an earlier header; without one, nothing is known.
  it("fmt 1, 2 or 3 as a csid's first chunk → 'missing-header'", () => {
    for (const bytes of ['44 000000 000001 09 aa', '84 000000', 'c4 aa']) {
      throwsProtocol(() => freshReader().reader.feed(hex(bytes)), 'missing-header');
    }
    // state is per csid: csid 4 having a header does not help csid 5
    throwsProtocol(() => freshReader().reader.feed(hex('04 000000 000001 09 01000000 aa | 85 000000')), 'missing-header');
  });

  // RTMP spec §5.3.1: a message continues in fmt 3 chunks only; a new header mid-message is corrupt.
  it("fmt 0, 1 or 2 header on a csid inside an unfinished message → 'interleaved-header'", () => {
    const start = cat(hex('04 000000 0000c8 09 01000000'), fill(128, 0));
    for (const next of ['04 000000 000001 09 01000000', '44 000000 000001 09', '84 000000']) {
      throwsProtocol(() => freshReader().reader.feed(cat(start, hex(next))), 'interleaved-header');
    }
  });

  // RTMP spec §5.4.1 + DoS bound: chunk size is 31 bits and at least minChunkSize.
  it("Set Chunk Size 0, 0x80000000, 0x80001000, below minChunkSize, above maxChunkSize → 'chunk-size'", () => {
    const scs = (v: string) => hex(`02 000000 000004 01 00000000 ${v}`);
    for (const v of ['00000000', '80000000', '80001000', '0000001f', '7fffffff']) {
      throwsProtocol(() => freshReader().reader.feed(scs(v)), 'chunk-size');
    }
    throwsProtocol(() => freshReader({ minChunkSize: 128 }).reader.feed(scs('0000007f')), 'chunk-size');
    throwsProtocol(() => freshReader({ maxChunkSize: 65536 }).reader.feed(scs('00010001')), 'chunk-size');
    // the bounds themselves are fine
    const { reader: ok } = freshReader({ maxChunkSize: 65536 });
    ok.feed(scs('00000020'));
    assert.equal(ok.chunkSize, 32);
    ok.feed(scs('00010000'));
    assert.equal(ok.chunkSize, 65536);
  });

  // Control messages of the wrong size.
  it("Set Chunk Size or Abort shorter than 4 bytes → 'bad-message'", () => {
    throwsProtocol(() => freshReader().reader.feed(hex('02 000000 000003 01 00000000 001000')), 'bad-message');
    throwsProtocol(() => freshReader().reader.feed(hex('02 000000 000002 02 00000000 0004')), 'bad-message');
  });

  // nginx-rtmp max_message (1M default): refuse absurd declared lengths before buffering anything.
  it("declared length over maxMessageSize → 'message-too-large' (fmt 0 and fmt 1)", () => {
    const limits = { maxMessageSize: 1000 };
    const { reader: ok } = freshReader(limits);
    ok.feed(hex('04 000000 0003e8 09 01000000')); // exactly 1000: fine
    throwsProtocol(() => freshReader(limits).reader.feed(hex('04 000000 0003e9 09 01000000')), 'message-too-large');
    throwsProtocol(() => freshReader(limits).reader.feed(hex('04 000000 000001 09 01000000 aa | 44 000000 0003e9 09')), 'message-too-large');
  });

  // DoS bound: per-csid state is limited.
  it("more distinct csids than maxChunkStreams → 'too-many-chunk-streams'", () => {
    const msg = (csid: number) => cat(Buffer.of(0, csid - 64), hex('000000 000001 08 01000000 aa'));
    const { reader: r } = freshReader({ maxChunkStreams: 4 });
    for (const c of [64, 65, 66, 67]) r.feed(msg(c));
    r.feed(msg(64)); // known csids stay fine
    throwsProtocol(() => r.feed(msg(68)), 'too-many-chunk-streams');
    // the default limit is 64
    const { reader: d } = freshReader();
    for (let c = 64; c < 128; c++) d.feed(msg(c));
    throwsProtocol(() => d.feed(msg(128)), 'too-many-chunk-streams');
  });
});

// ---------------------------------------------------------------------------------------------
// Robustness: hostile or random input after a valid handshake
// ---------------------------------------------------------------------------------------------

/** Runs bytes through HandshakeSkipper + ChunkReader as the proxy does; returns the error thrown, if any. */
function runHostile(pieces: Buffer[], limits: Partial<ChunkReaderLimits> = {}): unknown {
  const hs = new HandshakeSkipper();
  const maxMessage = limits.maxMessageSize ?? 16 * 1024 * 1024 - 1;
  const r = new ChunkReader(
    {
      message(info, payload) {
        // invariants of every emitted message
        assert.ok(info.length <= maxMessage);
        assert.equal(info.head.length, Math.min(8, info.length));
        if (payload !== null) assert.equal(payload.length, info.length);
      },
    },
    collectAll,
    limits,
  );
  try {
    for (const p of pieces) {
      const off = hs.consume(p);
      if (off < p.length) r.feed(p, off);
      assert.ok(r.chunkSize >= 32 && r.chunkSize <= 16 * 1024 * 1024);
    }
    return null;
  } catch (err) {
    if (err instanceof assert.AssertionError) throw err;
    return err;
  }
}

function assertOnlyProtocolError(err: unknown): void {
  if (err !== null && !(err instanceof ProtocolError)) {
    assert.fail(`non-ProtocolError thrown: ${err instanceof Error ? err.stack : String(err)}`);
  }
}

describe('robustness', () => {
  // Untrusted TCP input: the proxy falls back to blind forwarding on ProtocolError, so any other
  // exception would kill the session.
  it('random bytes (up to 100 kB) after a valid handshake throw nothing but ProtocolError', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a)),
          fc.record({ len: fc.integer({ min: 0, max: 100_000 }), seed: fc.integer() }).map(({ len, seed }) => pseudoRandomBytes(len, seed)),
        ),
        fc.array(fc.nat(), { maxLength: 20 }),
        (body, cuts) => {
          const all = cat(plainHandshake(), body);
          assertOnlyProtocolError(
            runHostile(
              splitAt(
                all,
                cuts.map((c) => c % (all.length + 1)),
              ),
            ),
          );
        },
      ),
      { numRuns: 500 },
    );
  });

  // Plausible-looking chunk headers with random fields reach deeper states than pure noise.
  it('random chunk-shaped input throws nothing but ProtocolError', () => {
    const chunkArb = fc.record({
      fmt: fc.nat({ max: 3 }),
      csid: fc.constantFrom(2, 3, 4, 64, 320),
      ts: fc.oneof(fc.nat({ max: 100 }), fc.constant(0xffffff)),
      len: fc.nat({ max: 300 }),
      type: fc.constantFrom(1, 2, 3, 4, 5, 6, 8, 9, 20),
      msid: fc.constantFrom(0, 1),
      payload: fc.uint8Array({ maxLength: 300 }),
    });
    fc.assert(
      fc.property(fc.array(chunkArb, { maxLength: 40 }), fc.array(fc.nat(), { maxLength: 10 }), (chunks, cuts) => {
        const parts: Buffer[] = [plainHandshake()];
        for (const c of chunks) {
          const basic =
            c.csid < 64
              ? Buffer.of((c.fmt << 6) | c.csid)
              : c.csid < 320
                ? Buffer.of(c.fmt << 6, c.csid - 64)
                : Buffer.of((c.fmt << 6) | 1, (c.csid - 64) & 0xff, (c.csid - 64) >> 8);
          const mh = Buffer.alloc(11);
          mh.writeUIntBE(c.ts, 0, 3);
          mh.writeUIntBE(c.len, 3, 3);
          mh[6] = c.type;
          mh.writeUInt32LE(c.msid, 7);
          const size = [11, 7, 3, 0][c.fmt]!;
          parts.push(basic, mh.subarray(0, size));
          if (c.ts === 0xffffff && c.fmt < 3) parts.push(hex('00ffffff'));
          parts.push(Buffer.from(c.payload));
        }
        const all = cat(...parts);
        assertOnlyProtocolError(
          runHostile(
            splitAt(
              all,
              cuts.map((x) => x % (all.length + 1)),
            ),
            { maxChunkStreams: 4 },
          ),
        );
      }),
      { numRuns: 500 },
    );
  });

  // Corrupted real traffic: byte flips in a real capture.
  it('a real capture with random byte flips throws nothing but ProtocolError', () => {
    const base = loadCapture('obs29-publish', 'c2s').bytes.subarray(0, 40_000);
    fc.assert(
      fc.property(
        fc.array(fc.record({ at: fc.integer({ min: 3073, max: base.length - 1 }), value: fc.nat({ max: 255 }) }), { minLength: 1, maxLength: 8 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        (flips, cuts) => {
          const buf = Buffer.from(base);
          for (const f of flips) buf[f.at] = f.value;
          assertOnlyProtocolError(
            runHostile(
              splitAt(
                buf,
                cuts.map((c) => c % (buf.length + 1)),
              ),
            ),
          );
        },
      ),
      { numRuns: 300 },
    );
  });

  // Same, without fast-check: 100 buffers of 64 KiB of noise.
  it('100 random 64 KiB buffers throw nothing but ProtocolError', () => {
    for (let i = 1; i <= 100; i++) {
      const body = pseudoRandomBytes(64 * 1024, i * 7919);
      assertOnlyProtocolError(runHostile([plainHandshake(i), body]));
      assertOnlyProtocolError(runHostile(splitAt(cat(plainHandshake(i), body), [3000, 3080, 3085, 40_000])));
    }
  });

  // Smallest legal chunk size: a 1 MiB message in 32-byte chunks (32,768 chunks).
  it('a 1 MiB message in 32-byte chunks parses completely', () => {
    const w = new ChunkWriter();
    const scs = w.write({ csid: 2, timestamp: 0, typeId: 1, streamId: 0, payload: hex('00000020') });
    w.chunkSize = 32;
    const payload = pseudoRandomBytes(1024 * 1024, 42);
    const big = w.write({ csid: 6, timestamp: 5, typeId: 9, streamId: 1, payload });
    let got: Buffer | null = null;
    const r = new ChunkReader({ message: (i, p) => (i.typeId === 9 ? (got = Buffer.from(p!)) : null) }, collectAll, {
      maxCollectedSize: 2 * 1024 * 1024,
    });
    r.feed(cat(scs, big));
    assert.equal(r.chunkSize, 32);
    assert.equal(r.chunksRead, 1 + 32_768);
    assert.equal(r.messagesRead, 2);
    assert.ok(got !== null && payload.equals(got));
  });

  // Many tiny messages: 100,000 one-byte messages (2-byte fmt 3 chunks after the first two).
  it('100,000 one-byte messages parse completely, in one piece and in 1000-byte pieces', () => {
    const w = new ChunkWriter(true);
    const parts: Buffer[] = [];
    for (let i = 0; i < 100_000; i++) parts.push(w.write({ csid: 4, timestamp: i, typeId: 8, streamId: 1, payload: Buffer.of(i & 0xff) }));
    const stream = cat(...parts);
    assert.equal(stream.length, 12 + 1 + (4 + 1) + 99_998 * 2);
    for (const pieces of [
      [stream],
      splitAt(
        stream,
        Array.from({ length: 200 }, (_, i) => i * 1000),
      ),
    ]) {
      let n = 0;
      let bad = 0;
      const r = new ChunkReader(
        {
          message(info, p) {
            if (info.timestamp !== n || p![0] !== (n & 0xff)) bad++;
            n++;
          },
        },
        collectAll,
      );
      for (const p of pieces) r.feed(p);
      assert.equal(n, 100_000);
      assert.equal(bad, 0);
      assert.equal(r.chunksRead, 100_000);
      assert.equal(r.atChunkBoundary, true);
    }
  });
});
