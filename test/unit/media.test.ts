import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MessageType } from '../../src/rtmp/constants.js';
import { isAacSequenceHeader, readVideoHead } from '../../src/rtmp/media.js';
import { PUBLISHERS, chunkBytes, hex, loadCapture, recordMessages } from '../helpers/rtmp-fixtures.js';

const video = (s: string) => readVideoHead(hex(s));

describe('readVideoHead: legacy FLV video tags', () => {
  // docs/protocol.md#media-tag-heads: frame type 1 + AVC (7) + AVCPacketType 0 = the decoder configuration.
  it('AVC keyframe sequence header (17 00)', () => {
    assert.deepEqual(video('17 00 000000 01644d'), { keyframe: true, sequenceHeader: true, codec: 7 });
  });

  // A switch must start the new connection's media at an IDR: 17 01 is a keyframe NALU.
  it('AVC keyframe NALU (17 01) is a keyframe, not a sequence header', () => {
    assert.deepEqual(video('17 01 000042'), { keyframe: true, sequenceHeader: false, codec: 7 });
  });

  // Frame type 2 (inter) and 3 (disposable inter) are not switch points.
  it('AVC inter frames (27 01, 37 01)', () => {
    assert.deepEqual(video('27 01 000021'), { keyframe: false, sequenceHeader: false, codec: 7 });
    assert.deepEqual(video('37 01'), { keyframe: false, sequenceHeader: false, codec: 7 });
  });

  // docs/protocol.md#media-tag-heads: HEVC-in-FLV uses codec id 12 with the same packet-type byte.
  it('HEVC codec 12: sequence header (1c 00) and inter frame (2c 01)', () => {
    assert.deepEqual(video('1c 00 000000'), { keyframe: true, sequenceHeader: true, codec: 12 });
    assert.deepEqual(video('2c 01 000000'), { keyframe: false, sequenceHeader: false, codec: 12 });
  });

  // Codecs without a packet-type byte (Sorenson H.263 = 2, VP6 = 4) have no sequence header.
  it('codecs without a packet type byte: one byte is enough', () => {
    assert.deepEqual(video('12'), { keyframe: true, sequenceHeader: false, codec: 2 });
    assert.deepEqual(video('24 00'), { keyframe: false, sequenceHeader: false, codec: 4 });
  });

  // Too short to tell: null rather than a guess.
  it('empty body, or AVC/HEVC without the packet type byte → null', () => {
    assert.equal(readVideoHead(Buffer.alloc(0)), null);
    assert.equal(video('17'), null);
    assert.equal(video('1c'), null);
  });
});

describe('readVideoHead: E-RTMP ExVideoTagHeader', () => {
  // docs/protocol.md#media-tag-heads: bit 0x80 = ex header; frame type (b0 >> 4) & 7; packet type b0 & 0x0F; FourCC.
  it("keyframe SequenceStart 'hvc1' (90 'hvc1')", () => {
    assert.deepEqual(video('90 68766331'), { keyframe: true, sequenceHeader: true, codec: 'hvc1' });
  });

  // CodedFrames (1) and CodedFramesX (3) are media, not configuration.
  it("keyframe CodedFrames 'hvc1', inter CodedFramesX 'av01', keyframe SequenceStart 'vp09'", () => {
    assert.deepEqual(video('91 68766331 000000'), { keyframe: true, sequenceHeader: false, codec: 'hvc1' });
    assert.deepEqual(video('a3 61763031'), { keyframe: false, sequenceHeader: false, codec: 'av01' });
    assert.deepEqual(video('90 76703039'), { keyframe: true, sequenceHeader: true, codec: 'vp09' });
    assert.deepEqual(video('90 61766331'), { keyframe: true, sequenceHeader: true, codec: 'avc1' });
  });

  // The ex-header bit must not be read as legacy frame type 8/9.
  it('frame type ignores the ex-header bit', () => {
    assert.equal(video('91 68766331')!.keyframe, true);
    assert.equal(video('a1 68766331')!.keyframe, false);
  });

  // FourCC incomplete → null.
  it('ex header shorter than 5 bytes → null', () => {
    assert.equal(video('90'), null);
    assert.equal(video('90 687663'), null);
  });

  // enhanced-rtmp-v2 "Multitrack": packet type 6, then UB[4] multitrack type + UB[4] packet type,
  // then the FourCC (OneTrack / ManyTracks). A one-track HEVC SequenceStart must be recognised.
  it("Multitrack (packet type 6) one-track 'hvc1' SequenceStart", {}, () => {
    assert.deepEqual(video('96 00 68766331 00'), { keyframe: true, sequenceHeader: true, codec: 'hvc1' });
  });
});

describe('isAacSequenceHeader', () => {
  // docs/protocol.md#media-tag-heads: sound format 10 (AAC) + AACPacketType 0 = AudioSpecificConfig.
  it('AAC sequence header (af 00) vs raw AAC (af 01)', () => {
    assert.equal(isAacSequenceHeader(hex('af 00 1190')), true);
    assert.equal(isAacSequenceHeader(hex('af 01 214c')), false);
    // only the high nibble names the format: rate/size/channel bits do not matter
    assert.equal(isAacSequenceHeader(hex('a0 00')), true);
  });

  // Other formats whose second byte happens to be 0 are not AAC configuration.
  it('MP3 (2f 00), Speex (bf 00), too short → false', () => {
    assert.equal(isAacSequenceHeader(hex('2f 00')), false);
    assert.equal(isAacSequenceHeader(hex('bf 00')), false);
    assert.equal(isAacSequenceHeader(hex('af')), false);
    assert.equal(isAacSequenceHeader(Buffer.alloc(0)), false);
  });
});

describe('media heads in the wire captures', () => {
  for (const publisher of PUBLISHERS) {
    // docs/protocol.md#media-tag-heads: what a seamless switch must keep (sequence headers) and where it may start (keyframes).
    it(`${publisher}: first video is an AVC keyframe sequence header, first audio an AAC sequence header`, () => {
      const { messages } = recordMessages([chunkBytes(loadCapture(publisher, 'c2s'))]);
      const videos = messages.filter((m) => m.typeId === MessageType.Video);
      const audios = messages.filter((m) => m.typeId === MessageType.Audio);
      assert.ok(videos.length > 10 && audios.length > 10);

      const heads = videos.map((m) => readVideoHead(Buffer.from(m.head, 'hex')));
      assert.deepEqual(heads[0], { keyframe: true, sequenceHeader: true, codec: 7 });
      // the next one is the first IDR, then inter frames follow
      assert.deepEqual(heads[1], { keyframe: true, sequenceHeader: false, codec: 7 });
      assert.deepEqual(heads[2], { keyframe: false, sequenceHeader: false, codec: 7 });
      assert.equal(heads.filter((h) => h?.sequenceHeader).length, 1, 'one sequence header per publish');
      assert.ok(heads.every((h) => h !== null && h.codec === 7));

      const aac = audios.map((m) => isAacSequenceHeader(Buffer.from(m.head, 'hex')));
      assert.equal(aac[0], true);
      assert.equal(aac.filter(Boolean).length, 1);
      assert.equal(audios[0]!.length, 7, 'AudioSpecificConfig message: 2 header bytes + 5 bytes');
    });
  }
});
