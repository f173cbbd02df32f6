// The media counters a chunk reader keeps (ChunkReader.media) and the telemetry read from them:
// the same numbers whatever the chunking, equal to counting the messages one by one, and the
// snapshot of real publishers (captures, HEVC E-RTMP fixture) matching ffprobe's view as the
// per-message telemetry does.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parseFlv } from '../../src/client/flv.js';
import { ChunkReader } from '../../src/rtmp/chunk-reader.js';
import { ChunkWriter } from '../../src/rtmp/chunk-writer.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { isVideoKeyframe } from '../../src/rtmp/media.js';
import { KEYFRAME_RING, MediaCounters, isCodedFrame } from '../../src/rtmp/media-counters.js';
import { CounterWindow, MediaTelemetry, keyframesOf, summarize } from '../../src/rtmp/media-telemetry.js';
import { migrationCollectPolicy } from '../../src/proxy/migration/media-cache.js';
import { FIXTURE_DIR, PUBLISHERS, chunkBytes, collectAll, loadCapture, recordMessages, splitAt } from '../helpers/rtmp-fixtures.js';

/** A reader as traffic.ts sets it up after `connect`: counters, configurations and metadata collected whole, only those given to the telemetry. */
function watch(pieces: readonly Buffer[]): { counters: MediaCounters; telemetry: MediaTelemetry; collected: number } {
  const counters = new MediaCounters();
  const telemetry = new MediaTelemetry({ counters });
  let collected = 0;
  const reader = new ChunkReader(
    {
      message(info, payload) {
        const t = info.typeId;
        if (payload === null || (t !== MessageType.Video && t !== MessageType.Audio && t !== MessageType.DataAmf0 && t !== MessageType.DataAmf3)) return;
        collected++;
        telemetry.message(t, info.timestamp, info.length, info.head, payload);
      },
    },
    migrationCollectPolicy,
  );
  reader.media = counters;
  for (const p of pieces) reader.feed(p);
  return { counters, telemetry, collected };
}

/** The same counts, one message at a time from the reader's full view. */
function reference(bytes: Buffer): Omit<MediaCounters, 'count' | 'keyframeTimestamps'> & { keyframeList: number[] } {
  const { messages } = recordMessages([bytes], { collect: collectAll });
  const ref = {
    videoMessages: 0,
    videoFrames: 0,
    videoBytes: 0,
    videoFirstTimestamp: 0,
    videoLastTimestamp: 0,
    videoHead0: -1,
    audioMessages: 0,
    audioBytes: 0,
    audioFirstTimestamp: 0,
    audioLastTimestamp: 0,
    audioHead0: -1,
    keyframes: 0,
    keyframeList: [] as number[],
  };
  for (const m of messages) {
    const head = Buffer.from(m.head, 'hex');
    if (m.typeId === MessageType.Video) {
      if (ref.videoMessages++ === 0) ref.videoFirstTimestamp = m.timestamp;
      ref.videoBytes += m.length;
      ref.videoLastTimestamp = m.timestamp;
      ref.videoHead0 = head[0]!;
      if (isCodedFrame(head, head.length)) {
        ref.videoFrames++;
        if (isVideoKeyframe(head)) {
          ref.keyframes++;
          ref.keyframeList.push(m.timestamp);
        }
      }
    } else if (m.typeId === MessageType.Audio) {
      if (ref.audioMessages++ === 0) ref.audioFirstTimestamp = m.timestamp;
      ref.audioBytes += m.length;
      ref.audioLastTimestamp = m.timestamp;
      ref.audioHead0 = head[0]!;
    }
  }
  return ref;
}

function countsOf(c: MediaCounters): ReturnType<typeof reference> {
  const n = Math.min(c.keyframes, KEYFRAME_RING);
  const keyframeList: number[] = [];
  for (let i = c.keyframes - n; i < c.keyframes; i++) keyframeList.push(c.keyframeTimestamps[i % KEYFRAME_RING]!);
  const { count: _count, keyframeTimestamps: _ring, ...plain } = c;
  return { ...plain, keyframeList };
}

/** The HEVC fixture as the chunk stream an E-RTMP publisher sends (chunk size 128, so frames span chunks). */
function hevcChunks(): Buffer {
  const w = new ChunkWriter();
  const tags = parseFlv(readFileSync(`${FIXTURE_DIR}hevc-ertmp.flv`)).tags;
  return Buffer.concat(tags.map((t) => w.write({ csid: 6, timestamp: t.timestamp, typeId: t.type, streamId: 1, payload: t.data })));
}

describe('MediaCounters in the chunk reader', () => {
  for (const p of PUBLISHERS) {
    const bytes = chunkBytes(loadCapture(p, 'c2s'));
    it(`${p}: the counts of every audio and video message, whatever the chunking`, () => {
      const want = reference(bytes);
      want.keyframeList = want.keyframeList.slice(-KEYFRAME_RING);
      assert.ok(want.videoFrames > 10 && want.audioMessages > 10 && want.keyframes >= 1, 'the capture has media');
      assert.deepEqual(countsOf(watch([bytes]).counters), want);
      fc.assert(
        fc.property(fc.array(fc.integer({ min: 0, max: bytes.length }), { maxLength: 40 }), (cuts) => {
          assert.deepEqual(countsOf(watch(splitAt(bytes, cuts)).counters), want);
        }),
        { numRuns: 40 },
      );
    });
  }

  it('counts only when set, and only audio and video', () => {
    const bytes = chunkBytes(loadCapture('ffmpeg51-publish', 'c2s'));
    const reader = new ChunkReader({ message() {} });
    reader.feed(bytes);
    assert.equal(reader.media, null);
    const { counters } = watch([bytes]);
    const { messages } = recordMessages([bytes], { collect: collectAll });
    const media = messages.filter((m) => m.typeId === MessageType.Video || m.typeId === MessageType.Audio).length;
    assert.equal(counters.videoMessages + counters.audioMessages, media);
    assert.ok(messages.length > media, 'the capture has commands and data too');
  });

  it('the E-RTMP HEVC SequenceStart is no frame; keyframes are the coded ones', () => {
    const { counters } = watch([hevcChunks()]);
    assert.equal(counters.videoMessages, 16, 'SequenceStart + 15 frames');
    assert.equal(counters.videoFrames, 15);
    assert.deepEqual(keyframesOf(counters), { last: 400, interval: 200 });
  });
});

describe('MediaTelemetry from the counters (what /api/sessions shows)', () => {
  it('ffmpeg 5.1 capture: h264 640x360 30 fps, aac 44.1 kHz mono, as ffprobe says', () => {
    const { telemetry, collected } = watch([chunkBytes(loadCapture('ffmpeg51-publish', 'c2s'))]);
    assert.equal(collected, 3, 'only @setDataFrame and the two sequence headers reach the telemetry');
    const m = summarize(telemetry.snapshot())!;
    assert.equal(m.videoCodec, 'h264');
    assert.equal(m.videoProfile, 'High');
    assert.deepEqual([m.width, m.height], [640, 360]);
    assert.ok(Math.abs(m.fps! - 30) <= 0.5, `fps ${m.fps}`);
    // ffprobe: 1 252 159 b/s of video, 70 059 b/s of audio (test/unit/media-telemetry.test.ts).
    assert.ok(Math.abs(m.videoBitrate! - 1_252_159) <= 1_252_159 * 0.03, `video ${m.videoBitrate}`);
    assert.ok(Math.abs(m.audioBitrate! - 70_059) <= 70_059 * 0.05, `audio ${m.audioBitrate}`);
    assert.deepEqual([m.audioCodec, m.sampleRate, m.channels], ['aac', 44100, 1]);
    assert.equal(m.keyframeIntervalMs, 1000);
    assert.equal(m.bitrate, m.videoBitrate! + m.audioBitrate!);
  });

  it('HEVC over E-RTMP (hvc1): codec, FourCC, size, fps, bitrate, keyframe interval, next keyframe', () => {
    const want = (JSON.parse(readFileSync(`${FIXTURE_DIR}hevc-ertmp.expected.json`, 'utf8')) as { video: { width: number; height: number; bitrate: number } })
      .video;
    const m = summarize(watch([hevcChunks()]).telemetry.snapshot())!;
    assert.deepEqual([m.videoCodec, m.videoFourcc, m.videoProfile, m.width, m.height, m.fps], ['hevc', 'hvc1', 'Main', want.width, want.height, 25]);
    assert.ok(Math.abs(m.videoBitrate! - want.bitrate) <= want.bitrate * 0.05, `bitrate ${m.videoBitrate} vs ${want.bitrate}`);
    assert.equal(m.keyframeIntervalMs, 200);
    // The last frame is at 560 ms, the last keyframe at 400: the next is due 40 ms of stream time later.
    assert.deepEqual([m.keyframeAgeMs, m.nextKeyframeInMs], [160, 40]);
    assert.equal(m.audioCodec, null);
  });

  it('the window moves with each read: a steady rate, then a change, are reported', () => {
    const w = new CounterWindow();
    // 25 fps, 4000 bytes a frame (800 kb/s), read every 500 ms of stream time.
    let ts = 0;
    let frames = 1;
    let bytes = 4000;
    let last = w.read(0, 0, bytes, frames);
    assert.deepEqual(last, { bitrate: null, rate: null }, 'one frame: no interval yet');
    const step = (ms: number, frameBytes: number): void => {
      for (let t = 0; t < ms; t += 40) {
        ts += 40;
        frames++;
        bytes += frameBytes;
      }
      last = w.read(ts, 0, bytes, frames);
    };
    step(500, 4000);
    // 14 frames over 520 ms: 13 intervals, and 13 frames' bytes (the first one's is the origin).
    assert.deepEqual(last, { bitrate: 800_000, rate: 25 }, 'since the first frame');
    for (let i = 0; i < 20; i++) step(500, 4000);
    assert.deepEqual(last, { bitrate: 800_000, rate: 25 });
    for (let i = 0; i < 20; i++) step(500, 2000);
    assert.deepEqual(last, { bitrate: 400_000, rate: 25 }, 'the window forgot the earlier rate');
  });

  it('a timestamp restart starts the window over instead of reporting a negative rate', () => {
    const w = new CounterWindow();
    w.read(0, 0, 0, 1);
    w.read(10_000, 0, 100_000, 251);
    assert.deepEqual(w.read(500, 0, 100_000, 251), { bitrate: null, rate: null });
    const r = w.read(2500, 0, 120_000, 301);
    assert.deepEqual(r, { bitrate: 80_000, rate: 25 });
  });
});
