import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { type FlvTag, FlvDemuxer, FlvError, classifyTag, encodeFlv, encodeFlvTag, parseFlv, readFlvTags, setDataFrameBody } from '../../src/client/flv.js';
import { encodeAmf0 } from '../../src/rtmp/amf0.js';
import { projectRoot } from '../helpers/peers.js';

const tag = (type: number, timestamp: number, ...bytes: number[]): FlvTag => ({ type, timestamp, data: Buffer.from(bytes) });

describe('FLV reader', () => {
  test('parses header and tags, including the extended timestamp byte', () => {
    const tags = [tag(9, 0, 0x17, 0, 1, 2), tag(8, 23, 0xaf, 1, 9), tag(9, 0x01abcdef, 0x27, 1, 5)];
    const { header, tags: got, truncated } = parseFlv(encodeFlv(tags));
    assert.deepEqual(header, { version: 1, hasAudio: true, hasVideo: true });
    assert.equal(truncated, false);
    assert.deepEqual(got, tags);
  });

  test('any split of the byte stream yields the same tags (incremental demuxer)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ type: fc.constantFrom(8, 9, 18), timestamp: fc.nat(), data: fc.uint8Array({ maxLength: 300 }) }), { maxLength: 12 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        (raw, cuts) => {
          const tags = raw.map((t) => ({ ...t, data: Buffer.from(t.data) }));
          const bytes = encodeFlv(tags);
          const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
          const d = new FlvDemuxer();
          const got: FlvTag[] = [];
          let prev = 0;
          for (const p of [...points, bytes.length]) {
            got.push(...d.push(bytes.subarray(prev, p)));
            prev = p;
          }
          assert.deepEqual(got, tags);
          assert.equal(d.pendingBytes, 0);
        },
      ),
    );
  });

  test('honours a header longer than 9 bytes and strips the filter bit from the tag type', () => {
    const header = Buffer.from([0x46, 0x4c, 0x56, 1, 5, 0, 0, 0, 12, 0xee, 0xee, 0xee, 0, 0, 0, 0]);
    const t = encodeFlvTag(tag(8, 5, 0xaf, 1));
    t[0] = 8 | 0x20;
    assert.deepEqual(parseFlv(Buffer.concat([header, t])).tags, [tag(8, 5, 0xaf, 1)]);
  });

  test('a file cut inside a tag reports truncated and keeps the complete tags', () => {
    const bytes = encodeFlv([tag(9, 0, 0x17, 1), tag(9, 100, 0x27, 1, 2, 3)]);
    const r = parseFlv(bytes.subarray(0, bytes.length - 3));
    assert.equal(r.truncated, true);
    assert.equal(r.tags.length, 1);
  });

  test('rejects input that is not FLV', () => {
    assert.throws(() => parseFlv(Buffer.from('RIFF0000WAVE....')), FlvError);
    assert.throws(() => new FlvDemuxer().push(Buffer.from('FLV\x01\x05\x00\x00\x00\x03')), /header size/);
  });

  test('readFlvTags streams a Readable and fails on a partial last tag', async () => {
    const bytes = encodeFlv([tag(9, 0, 0x17, 1), tag(8, 10, 0xaf, 1)]);
    const got: FlvTag[] = [];
    for await (const t of readFlvTags(Readable.from([bytes.subarray(0, 7), bytes.subarray(7, 30), bytes.subarray(30)]))) got.push(t);
    assert.equal(got.length, 2);
    await assert.rejects(async () => {
      for await (const _ of readFlvTags(Readable.from([bytes.subarray(0, bytes.length - 1)]))) void _;
    }, /inside a tag/);
    await assert.rejects(async () => {
      for await (const _ of readFlvTags(Readable.from([Buffer.from('FL')]))) void _;
    }, /before the FLV header/);
  });

  test('the committed sample is 320x180 H.264 + AAC with a keyframe every second', () => {
    const { tags, truncated } = parseFlv(readFileSync(join(projectRoot, 'test/fixtures/sample.flv')));
    assert.equal(truncated, false);
    const kinds = tags.map(classifyTag);
    assert.equal(kinds[0], 'metadata');
    assert.equal(kinds.filter((k) => k === 'video-config').length, 1);
    assert.equal(kinds.filter((k) => k === 'audio-config').length, 1);
    const keyTimes = tags.filter((_, i) => kinds[i] === 'keyframe').map((t) => t.timestamp);
    // AAC priming shifts video by 46 ms; then one keyframe per second.
    assert.deepEqual(
      keyTimes.map((t) => t - keyTimes[0]!),
      [0, 1000, 2000, 3000, 4000, 5000, 6000, 7000],
    );
    assert.equal(kinds.at(-1), 'sequence-end');
    assert.equal(kinds.filter((k) => k === 'keyframe' || k === 'video').length, 80);
    assert.ok(kinds.filter((k) => k === 'audio').length > 150);
  });
});

describe('tag classification', () => {
  test('AVC, HEVC, E-RTMP, AAC, metadata and other script data', () => {
    assert.equal(classifyTag(tag(9, 0, 0x17, 0, 0, 0, 0)), 'video-config');
    assert.equal(classifyTag(tag(9, 0, 0x17, 1, 0, 0, 0)), 'keyframe');
    assert.equal(classifyTag(tag(9, 0, 0x27, 1, 0, 0, 0)), 'video');
    assert.equal(classifyTag(tag(9, 0, 0x1c, 0)), 'video-config'); // HEVC-in-FLV sequence header
    assert.equal(classifyTag(tag(9, 0, 0x17, 2, 0, 0, 0)), 'sequence-end'); // FFmpeg writes it last, keyframe bit set
    assert.equal(classifyTag(tag(9, 0, 0x80 | 0x10 | 2, 0x68, 0x76, 0x63, 0x31)), 'sequence-end');
    // E-RTMP ExVideoTagHeader: 0x80 | frameType << 4 | packetType, then FourCC.
    assert.equal(classifyTag(tag(9, 0, 0x80 | 0x10 | 0, 0x68, 0x76, 0x63, 0x31)), 'video-config');
    assert.equal(classifyTag(tag(9, 0, 0x80 | 0x10 | 1, 0x68, 0x76, 0x63, 0x31)), 'keyframe');
    assert.equal(classifyTag(tag(9, 0, 0x80 | 0x20 | 1, 0x68, 0x76, 0x63, 0x31)), 'video');
    assert.equal(classifyTag(tag(8, 0, 0xaf, 0, 0x12, 0x10)), 'audio-config');
    assert.equal(classifyTag(tag(8, 0, 0xaf, 1, 0x21)), 'audio');
    assert.equal(classifyTag(tag(8, 0, 0x2f, 0xff)), 'audio'); // MP3 has no sequence header
    const meta = encodeAmf0(['onMetaData', { width: 320 }]);
    assert.equal(classifyTag({ type: 18, timestamp: 0, data: meta }), 'metadata');
    assert.equal(classifyTag({ type: 18, timestamp: 0, data: setDataFrameBody(meta) }), 'metadata');
    assert.equal(classifyTag({ type: 18, timestamp: 0, data: encodeAmf0(['onCuePoint', 1]) }), 'data');
  });

  test('setDataFrameBody prepends @setDataFrame once', () => {
    const meta = encodeAmf0(['onMetaData', 1]);
    const once = setDataFrameBody(meta);
    assert.deepEqual(once, Buffer.concat([encodeAmf0(['@setDataFrame']), meta]));
    assert.deepEqual(setDataFrameBody(once), once);
  });
});
