// The chunk reader features a proxy-side migration relies on: collection decided by the first
// payload bytes (sequence headers only, nothing allocated for other media), the messageStart
// hook with header offsets, idle checks; and the allocation-free media helpers.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { amf0Object, encodeAmf0 } from '../../src/rtmp/amf0.js';
import { ChunkReader, type CollectPolicy } from '../../src/rtmp/chunk-reader.js';
import { ChunkWriter, type OutgoingMessage } from '../../src/rtmp/chunk-writer.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { isAudioSequenceHeader, isMetadataMessage, isVideoSequenceHeader } from '../../src/rtmp/media.js';
import { controlMessage } from '../../src/rtmp/messages.js';
import { splitAt } from '../helpers/rtmp-fixtures.js';

const video = (b0: number, b1: number, size: number): Buffer => {
  const b = Buffer.alloc(size, 0x33);
  b[0] = b0;
  b[1] = b1;
  return b;
};

/** A publisher's stream at chunk size 128: config (some multi-chunk) among media, interleaving csids 4 and 6. */
function stream(): { bytes: Buffer; msgs: OutgoingMessage[] } {
  const w = new ChunkWriter(true);
  const msgs: OutgoingMessage[] = [
    {
      csid: 4,
      timestamp: 0,
      typeId: MessageType.DataAmf0,
      streamId: 1,
      payload: encodeAmf0(['@setDataFrame', 'onMetaData', amf0Object({ width: 1280, x: 'y'.repeat(200) })]),
    },
    { csid: 6, timestamp: 0, typeId: MessageType.Video, streamId: 1, payload: video(0x17, 0, 300) },
    { csid: 4, timestamp: 0, typeId: MessageType.Audio, streamId: 1, payload: Buffer.from([0xaf, 0, 0x12, 0x10]) },
    { csid: 6, timestamp: 0, typeId: MessageType.Video, streamId: 1, payload: video(0x17, 1, 1000) },
    { csid: 4, timestamp: 21, typeId: MessageType.Audio, streamId: 1, payload: Buffer.from([0xaf, 1, 5, 6, 7]) },
    { csid: 6, timestamp: 33, typeId: MessageType.Video, streamId: 1, payload: video(0x27, 1, 500) },
    // E-RTMP HEVC SequenceStart (0x80 | keyframe << 4 | 0) and a tiny audio message.
    { csid: 6, timestamp: 66, typeId: MessageType.Video, streamId: 1, payload: Buffer.from([0x90, 0x68, 0x76, 0x63, 0x31, 1, 2, 3, 4]) },
    { csid: 4, timestamp: 70, typeId: MessageType.Audio, streamId: 1, payload: Buffer.from([0xaf]) },
    // Data messages that are not metadata (captions, cue points), and metadata in AMF3 form (type 15: a 0 byte, then AMF0).
    { csid: 4, timestamp: 80, typeId: MessageType.DataAmf0, streamId: 1, payload: encodeAmf0(['onTextData', amf0Object({ text: 'hi' })]) },
    { csid: 4, timestamp: 81, typeId: MessageType.DataAmf0, streamId: 1, payload: encodeAmf0(['@setD']) },
    {
      csid: 4,
      timestamp: 90,
      typeId: MessageType.DataAmf3,
      streamId: 1,
      payload: Buffer.concat([Buffer.of(0), encodeAmf0(['onMetaData', amf0Object({ width: 640 })])]),
    },
  ];
  return { bytes: Buffer.concat(msgs.map((m) => w.write(m))), msgs };
}

const migrationPolicy: CollectPolicy = (typeId) =>
  typeId === MessageType.DataAmf0 || typeId === MessageType.DataAmf3 || typeId === MessageType.Video || typeId === MessageType.Audio
    ? 'head'
    : typeId <= 6 || typeId === 20;

describe("'head' collection: configuration found from the first payload bytes", () => {
  const { bytes, msgs } = stream();
  const expected = [0, 1, 2, 6, 10].map((i) => Buffer.from(msgs[i]!.payload).toString('hex'));

  it('collects exactly the metadata and sequence headers, whole, at any split', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: bytes.length }), { maxLength: 30 }), (cuts) => {
        const got: string[] = [];
        const r = new ChunkReader({ message: (_i, p) => p !== null && got.push(p.toString('hex')) }, migrationPolicy);
        for (const piece of splitAt(bytes, cuts)) r.feed(piece);
        assert.deepEqual(got, expected);
      }),
      { numRuns: 400 },
    );
  });

  it('every split into single bytes', () => {
    const got: string[] = [];
    const r = new ChunkReader({ message: (_i, p) => p !== null && got.push(p.toString('hex')) });
    r.setCollectPolicy(migrationPolicy);
    for (let i = 0; i < bytes.length; i++) r.feed(bytes.subarray(i, i + 1));
    assert.deepEqual(got, expected);
  });

  it('a policy is asked once per type id, never per message', () => {
    const asked: number[] = [];
    const policy: CollectPolicy = (t) => (asked.push(t), migrationPolicy(t));
    const r = new ChunkReader({ message: () => {} }, policy);
    assert.equal(asked.length, 256);
    r.feed(bytes);
    r.setCollectPolicy(policy);
    r.feed(bytes.subarray(0, 0));
    assert.equal(asked.length, 256, 'the table is kept per policy, shared by every reader');
  });

  it('the collect limit can be raised past limits.maxCollectedSize', () => {
    const w = new ChunkWriter();
    const big = { csid: 6, timestamp: 0, typeId: MessageType.Video, streamId: 1, payload: Buffer.alloc(5000, 1) };
    const lens: (number | null)[] = [];
    const r = new ChunkReader({ message: (_i, p) => lens.push(p === null ? null : p.length) }, () => true, { maxCollectedSize: 1000 });
    r.feed(w.write(big));
    r.setCollectPolicy(() => true, 1 << 20);
    r.feed(w.write(big));
    assert.deepEqual(lens, [null, 5000]);
  });
});

describe('messageStart hook and idle', () => {
  it('reports each message start once, before its chunkHeader, with the header offsets', () => {
    const { bytes, msgs } = stream();
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: bytes.length }), { maxLength: 20 }), (cuts) => {
        const starts: { csid: number; typeId: number; length: number; at: number }[] = [];
        const events: string[] = [];
        let base = 0;
        const r = new ChunkReader({
          message: () => {},
          messageStart: (csid, typeId, length, headerEnd, headerLength) => {
            starts.push({ csid, typeId, length, at: base + headerEnd - headerLength });
            events.push(`start ${csid}`);
          },
          chunkHeader: (csid) => events.push(`header ${csid}`),
        });
        for (const piece of splitAt(bytes, cuts)) {
          r.feed(piece);
          base += piece.length;
        }
        assert.deepEqual(
          starts.map((s) => [s.csid, s.typeId, s.length]),
          msgs.map((m) => [m.csid, m.typeId, m.payload.length]),
        );
        // Header offsets: the bytes there are a chunk header of that csid.
        for (const s of starts) assert.equal(bytes[s.at]! & 0x3f, s.csid);
        for (let i = 0; i < events.length; i++) if (events[i]!.startsWith('start')) assert.equal(events[i + 1], events[i]!.replace('start', 'header'));
      }),
      { numRuns: 200 },
    );
  });

  it('idle / idleExcept follow partly read messages on every csid', () => {
    const w = new ChunkWriter();
    const a = w.write({ csid: 4, timestamp: 0, typeId: MessageType.Audio, streamId: 1, payload: Buffer.alloc(300, 0xaf) });
    const v = w.write({ csid: 6, timestamp: 0, typeId: MessageType.Video, streamId: 1, payload: Buffer.alloc(10, 0x27) });
    const r = new ChunkReader({ message: () => {} });
    assert.equal(r.idle, true);
    r.feed(a.subarray(0, 12 + 128)); // first chunk of the audio message
    assert.equal(r.idle, false);
    assert.equal(r.idleExcept(4), true);
    assert.equal(r.idleExcept(6), false);
    r.feed(v.subarray(0, 5)); // a partial header
    assert.equal(r.idle, false);
    r.feed(Buffer.concat([v.subarray(5), a.subarray(12 + 128)]));
    assert.equal(r.idle, true);
    r.feed(w.write(controlMessage(MessageType.SetChunkSize, 4096)));
    assert.equal(r.idle, true);
  });
});

describe('media helpers', () => {
  it('video sequence headers: AVC, HEVC, E-RTMP SequenceStart and multitrack; not frames', () => {
    assert.equal(isVideoSequenceHeader(Buffer.from([0x17, 0])), true);
    assert.equal(isVideoSequenceHeader(Buffer.from([0x1c, 0])), true);
    assert.equal(isVideoSequenceHeader(Buffer.from([0x17, 1])), false);
    assert.equal(isVideoSequenceHeader(Buffer.from([0x27, 0])), true, 'an AVC seq header with inter frame type is still config');
    assert.equal(isVideoSequenceHeader(Buffer.from([0x12, 0])), false, 'Sorenson H.263 has no packet type');
    assert.equal(isVideoSequenceHeader(Buffer.from([0x90, 0x68, 0x76, 0x63, 0x31])), true);
    assert.equal(isVideoSequenceHeader(Buffer.from([0x91, 0x68])), false);
    assert.equal(isVideoSequenceHeader(Buffer.from([0x96, 0x00, 0x61])), true, 'multitrack one-track SequenceStart');
    assert.equal(isVideoSequenceHeader(Buffer.from([0x17, 0]), 1), false, 'too short to tell');
  });

  it('audio sequence headers: AAC and E-RTMP ExAudio', () => {
    assert.equal(isAudioSequenceHeader(Buffer.from([0xaf, 0])), true);
    assert.equal(isAudioSequenceHeader(Buffer.from([0xaf, 1])), false);
    assert.equal(isAudioSequenceHeader(Buffer.from([0x2f, 0])), false, 'MP3 has none');
    assert.equal(isAudioSequenceHeader(Buffer.from([0x90])), true);
    assert.equal(isAudioSequenceHeader(Buffer.from([0x91])), false);
    assert.equal(isAudioSequenceHeader(Buffer.from([0x95, 0x10])), true);
  });

  it('metadata data messages', () => {
    assert.equal(isMetadataMessage(encodeAmf0(['@setDataFrame', 'onMetaData', null])), true);
    assert.equal(isMetadataMessage(encodeAmf0(['onMetaData', null])), true);
    assert.equal(isMetadataMessage(encodeAmf0(['onCuePoint', null])), false);
    assert.equal(isMetadataMessage(Buffer.from([2, 0, 13, 0x40])), false);
  });
});
