import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ChunkWriter, basicHeaderLength, encodeFmt0Header } from '../../src/rtmp/chunk-writer.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { UserControlEvent, controlMessage, goAwayChunk, userControlMessage } from '../../src/rtmp/messages.js';
import { collectAll, hex, pseudoRandomBytes, recordMessages } from '../helpers/rtmp-fixtures.js';

const fill = (n: number, byte: number): Buffer => Buffer.alloc(n, byte);
const cat = (...parts: Buffer[]): Buffer => Buffer.concat(parts);
const hexOf = (b: Buffer): string => b.toString('hex');

describe('encodeFmt0Header', () => {
  // RTMP spec §5.3.1.2.1: timestamp 3, length 3, type 1, msid 4 little-endian.
  it('writes the 12-byte fmt 0 header exactly', () => {
    assert.equal(hexOf(encodeFmt0Header(3, 0x123456, 0xabcd, 20, 1)), '03' + '123456' + '00abcd' + '14' + '01000000');
    assert.equal(hexOf(encodeFmt0Header(4, 0, 0, 9, 0x01020304)), '04' + '000000' + '000000' + '09' + '04030201');
    assert.equal(hexOf(encodeFmt0Header(63, 0xfffffe, 0xffffff, 0xff, 0xffffffff)), '3f' + 'fffffe' + 'ffffff' + 'ff' + 'ffffffff');
  });

  // RTMP spec §5.3.1.3: timestamps ≥ 0xFFFFFF put 0xFFFFFF in the field and 4 more bytes after.
  it('uses the extended timestamp from 0xFFFFFF up', () => {
    assert.equal(hexOf(encodeFmt0Header(3, 0xffffff, 1, 8, 1)), '03' + 'ffffff' + '000001' + '08' + '01000000' + '00ffffff');
    assert.equal(hexOf(encodeFmt0Header(3, 0xffffffff, 1, 8, 1)), '03' + 'ffffff' + '000001' + '08' + '01000000' + 'ffffffff');
    assert.equal(encodeFmt0Header(3, 0xfffffe, 1, 8, 1).length, 12);
  });

  // RTMP spec §5.3.1.1: 2-byte (csid 64..319) and 3-byte (low byte first) basic headers.
  it('basic header: csid 64 → 00 00, 319 → 00 FF, 320 → 01 00 01, 65599 → 01 FF FF', () => {
    const basic = (csid: number) => hexOf(encodeFmt0Header(csid, 0, 0, 8, 0).subarray(0, basicHeaderLength(csid)));
    assert.equal(basic(2), '02');
    assert.equal(basic(63), '3f');
    assert.equal(basic(64), '0000');
    assert.equal(basic(319), '00ff');
    assert.equal(basic(320), '010001');
    assert.equal(basic(65599), '01ffff');
    assert.deepEqual([2, 63, 64, 319, 320, 65599].map(basicHeaderLength), [1, 1, 2, 2, 3, 3]);
    assert.equal(encodeFmt0Header(65599, 0, 0, 8, 0).length, 3 + 11);
  });

  // csid 0 and 1 are the escape values of the basic header; above 65599 cannot be encoded.
  it('refuses csid 0, 1 and 65600', () => {
    for (const csid of [0, 1, 65600]) assert.throws(() => encodeFmt0Header(csid, 0, 0, 8, 0), RangeError);
    assert.throws(() => new ChunkWriter().write({ csid: 1, timestamp: 0, typeId: 8, streamId: 0, payload: Buffer.alloc(0) }), RangeError);
  });
});

describe('goAwayChunk and control builders', () => {
  // docs/protocol.md#go-away: the complete Go Away chunk, 13 bytes, one zero payload byte (OBS needs ≥ 1).
  it('goAwayChunk() is exactly 02 000000 000001 20 00000000 00', () => {
    const chunk = goAwayChunk();
    assert.equal(hexOf(chunk), '02' + '000000' + '000001' + '20' + '00000000' + '00');
    assert.equal(chunk.length, 13);
    const { messages } = recordMessages([chunk], { collect: collectAll });
    assert.deepEqual(messages, [{ csid: 2, timestamp: 0, typeId: MessageType.GoAway, length: 1, streamId: 0, head: '00', payload: '00' }]);
  });

  // RTMP spec §5.4: protocol control messages go on csid 2, msid 0, 4-byte big-endian value.
  it('controlMessage(Set Chunk Size, 4096) encodes as the 16-byte chunk nginx-rtmp sends', () => {
    const m = controlMessage(MessageType.SetChunkSize, 4096);
    assert.deepEqual([m.csid, m.timestamp, m.typeId, m.streamId, hexOf(Buffer.from(m.payload))], [2, 0, 1, 0, '00001000']);
    assert.equal(hexOf(new ChunkWriter().write(m)), '02000000000004010000000000001000');
  });

  // RTMP spec §7.1.7: User Control = 2-byte event type then 4-byte values.
  it('userControlMessage(PingResponse, t) and StreamBegin', () => {
    const ping = userControlMessage(UserControlEvent.PingResponse, 0x01020304);
    assert.deepEqual([ping.csid, ping.typeId, ping.streamId, hexOf(Buffer.from(ping.payload))], [2, 4, 0, '000701020304']);
    assert.equal(hexOf(Buffer.from(userControlMessage(UserControlEvent.StreamBegin, 1).payload)), '000000000001');
  });
});

describe('ChunkWriter', () => {
  // RTMP spec §5.3.1: a message above the chunk size continues in fmt 3 chunks.
  it('without compression: fmt 0 header, then fmt 3 continuation chunks at 128 bytes', () => {
    const w = new ChunkWriter(false);
    const payload = cat(fill(128, 1), fill(128, 2), fill(44, 3));
    const out = w.write({ csid: 4, timestamp: 40, typeId: 9, streamId: 1, payload });
    assert.equal(hexOf(out), hexOf(cat(hex('04 000028 00012c 09 01000000'), fill(128, 1), hex('c4'), fill(128, 2), hex('c4'), fill(44, 3))));
    // the next message on the same csid is fmt 0 again
    assert.equal(w.write({ csid: 4, timestamp: 80, typeId: 9, streamId: 1, payload })[0], 0x04);
  });

  // Chunk boundaries at exactly chunkSize: no empty trailing chunk.
  it('payload of exactly chunkSize is one chunk, chunkSize + 1 is two', () => {
    const w = new ChunkWriter();
    assert.equal(w.write({ csid: 3, timestamp: 0, typeId: 20, streamId: 0, payload: fill(128, 7) }).length, 12 + 128);
    const two = w.write({ csid: 3, timestamp: 0, typeId: 20, streamId: 0, payload: fill(129, 7) });
    assert.equal(two.length, 12 + 128 + 1 + 1);
    assert.equal(two[12 + 128], 0xc3);
  });

  // RTMP spec §5.3.1.2: a zero-length message is a bare header.
  it('zero-length payload: header only', () => {
    assert.equal(
      hexOf(new ChunkWriter().write({ csid: 5, timestamp: 1, typeId: 18, streamId: 1, payload: Buffer.alloc(0) })),
      '05' + '000001' + '000000' + '12' + '01000000',
    );
  });

  // docs/protocol.md#extended-timestamps: the extended timestamp is repeated after every fmt 3 basic header.
  it('extended timestamp repeated on continuation chunks', () => {
    const out = new ChunkWriter().write({ csid: 4, timestamp: 0x01000000, typeId: 9, streamId: 1, payload: fill(300, 0x5a) });
    assert.equal(
      hexOf(out),
      hexOf(cat(hex('04 ffffff 00012c 09 01000000 01000000'), fill(128, 0x5a), hex('c4 01000000'), fill(128, 0x5a), hex('c4 01000000'), fill(44, 0x5a))),
    );
  });

  // Continuation basic headers use the same 2/3-byte form as the first one.
  it('continuation chunks of csid 320 and 64 use 3- and 2-byte fmt 3 basic headers', () => {
    const w = new ChunkWriter();
    const o320 = w.write({ csid: 320, timestamp: 0, typeId: 9, streamId: 1, payload: fill(130, 1) });
    assert.equal(hexOf(o320.subarray(3 + 11 + 128, 3 + 11 + 128 + 3)), 'c10001');
    const o64 = w.write({ csid: 64, timestamp: 0, typeId: 9, streamId: 1, payload: fill(130, 1) });
    assert.equal(hexOf(o64.subarray(2 + 11 + 128, 2 + 11 + 128 + 2)), 'c000');
  });

  // RTMP spec §5.4.1: the sender switches its chunk size right after sending Set Chunk Size.
  it('chunkSize set between writes applies to the next message', () => {
    const w = new ChunkWriter();
    w.chunkSize = 4096;
    assert.equal(w.write({ csid: 6, timestamp: 0, typeId: 9, streamId: 1, payload: fill(4096, 1) }).length, 12 + 4096);
    w.chunkSize = 32;
    assert.equal(w.write({ csid: 6, timestamp: 0, typeId: 9, streamId: 1, payload: fill(64, 1) }).length, 12 + 32 + 1 + 32);
  });

  // Header compression as FFmpeg/librtmp do it (RTMP spec §5.3.1.2.2–4), byte for byte.
  it('compression: fmt 1 on new length, fmt 3 on repeated delta, fmt 2 on new delta, fmt 0 on msid change or time going back', () => {
    const w = new ChunkWriter(true);
    const m = (timestamp: number, len: number, streamId = 1, typeId = 9) => hexOf(w.write({ csid: 6, timestamp, typeId, streamId, payload: fill(len, 0xee) }));
    assert.equal(m(0, 2), '06' + '000000' + '000002' + '09' + '01000000' + 'eeee');
    assert.equal(m(40, 3), '46' + '000028' + '000003' + '09' + 'eeeeee');
    assert.equal(m(80, 3), 'c6' + 'eeeeee');
    assert.equal(m(100, 3), '86' + '000014' + 'eeeeee');
    assert.equal(m(100, 3, 1, 8), '46' + '000000' + '000003' + '08' + 'eeeeee');
    assert.equal(m(120, 3, 2, 8), '06' + '000078' + '000003' + '08' + '02000000' + 'eeeeee');
    assert.equal(m(50, 3, 2, 8), '06' + '000032' + '000003' + '08' + '02000000' + 'eeeeee');
    // other csids are independent
    assert.equal(hexOf(w.write({ csid: 7, timestamp: 50, typeId: 8, streamId: 2, payload: fill(3, 0xee) })).slice(0, 2), '07');
  });

  // Extended deltas in fmt 2 and fmt 3 headers (RTMP spec §5.3.1.3).
  it('compression with extended deltas: fmt 2 and fmt 3 carry the 4-byte delta', () => {
    const w = new ChunkWriter(true);
    const m = (timestamp: number) => hexOf(w.write({ csid: 4, timestamp, typeId: 9, streamId: 1, payload: hex('aa') }));
    assert.equal(m(0), '04' + '000000' + '000001' + '09' + '01000000' + 'aa');
    assert.equal(m(0x1000000), '84' + 'ffffff' + '01000000' + 'aa');
    assert.equal(m(0x2000000), 'c4' + '01000000' + 'aa');
  });

  // Without compression every message is self-contained: both modes decode to the same messages.
  it('compress=true and compress=false decode to the same messages (property)', () => {
    const msgArb = fc.record({
      csid: fc.constantFrom(2, 3, 4, 64, 320),
      timestamp: fc.oneof(fc.integer({ min: 0, max: 500 }), fc.integer({ min: 0xfffff0, max: 0x1000010 })),
      typeId: fc.constantFrom(8, 9, 20),
      streamId: fc.constantFrom(0, 1),
      length: fc.constantFrom(0, 1, 127, 128, 129, 300),
      seed: fc.integer(),
    });
    fc.assert(
      fc.property(fc.array(msgArb, { maxLength: 20 }), (msgs) => {
        const streams = [true, false].map((compress) => {
          const w = new ChunkWriter(compress);
          return cat(...msgs.map((m) => w.write({ ...m, payload: pseudoRandomBytes(m.length, m.seed) })));
        });
        const [a, b] = streams.map((s) => recordMessages([s], { collect: collectAll }).messages);
        assert.deepStrictEqual(a, b);
        assert.equal(a!.length, msgs.length);
        assert.ok(streams[0]!.length <= streams[1]!.length, 'compression never makes the stream longer');
      }),
      { numRuns: 200 },
    );
  });
});
