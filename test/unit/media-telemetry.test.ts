// MediaTelemetry and the codec-config readers, against real publishers' bytes and ffprobe.
//
// Expected values are ffprobe's (Debian FFmpeg 5.1) view of the same media:
// - the three captures: `node --import tsx scripts/probe-capture-media.ts` rebuilds each
//   capture's client messages into an FLV and prints ffprobe's streams and packets (the numbers
//   in CAPTURES below are copied from its output);
// - the HEVC E-RTMP fixture: scripts/make-hevc-ertmp-fixture.ts writes ffprobe's view of the
//   libx265 source next to the fixture (hevc-ertmp.expected.json), read here.
// Frame rates are measured from millisecond timestamps (±1 ms over about a second) and bitrates
// count whole message bodies (the 2–8 byte FLV/E-RTMP tag header included, which ffprobe's
// packets leave out), hence the small tolerances.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { parseFlv } from '../../src/client/flv.js';
import { amf0Object, Amf0EcmaArray, encodeAmf0 } from '../../src/rtmp/amf0.js';
import {
  mp3Channels,
  mp3SampleRate,
  readAudioSpecificConfig,
  readAv1Config,
  readAvcConfig,
  readAvcSps,
  readHevcConfig,
  readOpusHead,
} from '../../src/rtmp/codec-config.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { isAudioSequenceHeader, isVideoSequenceHeader } from '../../src/rtmp/media.js';
import { MAX_GAP_MS, MAX_METADATA_BYTES, MediaTelemetry, type MediaTelemetrySnapshot } from '../../src/rtmp/media-telemetry.js';
import { FIXTURE_DIR, type Publisher, chunkBytes, collectAll, hex, loadCapture, recordMessages } from '../helpers/rtmp-fixtures.js';

interface Msg {
  typeId: number;
  timestamp: number;
  payload: Buffer;
}

/** Feeds messages the way the proxy does: head bytes always, the body only for configs and metadata. */
function feed(t: MediaTelemetry, msgs: readonly Msg[], everyPayload = false): void {
  for (const m of msgs) {
    const head = m.payload.subarray(0, 8);
    const wanted =
      everyPayload ||
      m.typeId === MessageType.DataAmf0 ||
      m.typeId === MessageType.DataAmf3 ||
      (m.typeId === MessageType.Video && isVideoSequenceHeader(head)) ||
      (m.typeId === MessageType.Audio && isAudioSequenceHeader(head));
    t.message(m.typeId, m.timestamp, m.payload.length, head, wanted ? m.payload : null);
  }
}

function captureMessages(p: Publisher): Msg[] {
  const { messages } = recordMessages([chunkBytes(loadCapture(p, 'c2s'))], { collect: collectAll });
  return messages.map((m) => ({ typeId: m.typeId, timestamp: m.timestamp, payload: Buffer.from(m.payload!, 'hex') }));
}

function near(actual: number | null | undefined, expected: number, relative: number, what: string): void {
  assert.ok(typeof actual === 'number', `${what}: ${String(actual)}`);
  assert.ok(Math.abs(actual - expected) <= expected * relative, `${what}: ${actual} is not within ${relative * 100}% of ${expected}`);
}

/** ffprobe's view (scripts/probe-capture-media.ts). */
const FFMPEG_EXPECTED = {
  video: { codec: 'h264', profile: 'High', level: 30, width: 640, height: 360, fps: 30, bitrate: 1252159, keyframes: [0, 1000] },
  audio: { codec: 'aac', profile: 'LC', sampleRate: 44100, channels: 1, bitrate: 70059 },
};
const CAPTURES: Record<Publisher, typeof FFMPEG_EXPECTED> = {
  'obs29-publish': {
    video: { codec: 'h264', profile: 'Main', level: 30, width: 640, height: 360, fps: 30, bitrate: 2577125, keyframes: [0] },
    audio: { codec: 'aac', profile: 'LC', sampleRate: 48000, channels: 2, bitrate: 114890 },
  },
  'ffmpeg-goaway-fork-publish': FFMPEG_EXPECTED,
  'ffmpeg51-publish': FFMPEG_EXPECTED,
};

describe('MediaTelemetry: the captured publishers match ffprobe', () => {
  for (const [publisher, want] of Object.entries(CAPTURES) as [Publisher, typeof FFMPEG_EXPECTED][]) {
    it(publisher, () => {
      const t = new MediaTelemetry();
      feed(t, captureMessages(publisher));
      const s = t.snapshot();
      const v = s.video!;
      assert.equal(v.codec, want.video.codec);
      assert.equal(v.fourcc, null, 'legacy FLV codec id, no FourCC');
      assert.equal(v.profile, want.video.profile);
      assert.equal(v.level, want.video.level);
      assert.equal(v.width, want.video.width);
      assert.equal(v.height, want.video.height);
      near(v.fps, want.video.fps, 0.005, 'fps');
      near(v.bitrate, want.video.bitrate, 0.01, 'video bitrate');
      assert.equal(v.lastKeyframeTimestamp, want.video.keyframes.at(-1));
      assert.equal(v.keyframeIntervalMs, want.video.keyframes.length > 1 ? want.video.keyframes[1]! - want.video.keyframes[0]! : null);
      const a = s.audio!;
      assert.equal(a.codec, want.audio.codec);
      assert.equal(a.profile, want.audio.profile);
      assert.equal(a.sampleRate, want.audio.sampleRate);
      assert.equal(a.channels, want.audio.channels);
      near(a.bitrate, want.audio.bitrate, 0.02, 'audio bitrate');
      assert.equal(s.bitrate, v.bitrate! + a.bitrate!);
    });
  }

  // What the publisher claimed in @setDataFrame onMetaData (OBS: 2500 kbit/s target, 30 fps).
  it('keeps the metadata, bounded and typed', () => {
    const t = new MediaTelemetry();
    feed(t, captureMessages('obs29-publish'));
    assert.deepEqual(t.snapshot().metadata, {
      width: 640,
      height: 360,
      framerate: 30,
      videoBitrate: 2_500_000,
      audioBitrate: 160_000,
      audioSampleRate: 48000,
      audioChannels: 2,
      videoCodec: 'h264',
      audioCodec: 'aac',
      encoder: 'obs-output module (libobs version 29.0.2.1-1+b1)',
    });
  });

  // The proxy collects only decoder configurations and metadata: every other message gives the
  // tracker just its head bytes. The result must be the same as with every body.
  it('heads alone suffice for everything but configurations and metadata', () => {
    for (const p of Object.keys(CAPTURES) as Publisher[]) {
      const msgs = captureMessages(p);
      const a = new MediaTelemetry();
      const b = new MediaTelemetry();
      feed(a, msgs);
      feed(b, msgs, true);
      assert.deepEqual(a.snapshot(), b.snapshot(), p);
    }
  });

  it('without the configuration bodies, size and fps fall back to onMetaData', () => {
    const t = new MediaTelemetry();
    for (const m of captureMessages('obs29-publish')) {
      t.message(m.typeId, m.timestamp, m.payload.length, m.payload.subarray(0, 8), m.typeId === MessageType.DataAmf0 ? m.payload : null);
    }
    const s = t.snapshot();
    assert.equal(s.video!.profile, null);
    assert.equal(s.video!.width, 640);
    assert.equal(s.video!.height, 360);
    assert.equal(s.audio!.sampleRate, 48000);
  });
});

// ── HEVC over E-RTMP ──────────────────────────────────────────────────────────────────────────

const hevcExpected = JSON.parse(readFileSync(`${FIXTURE_DIR}hevc-ertmp.expected.json`, 'utf8')) as {
  video: { codec_name: string; profile: string; level: number; width: number; height: number; r_frame_rate: string; keyframes: number[]; bitrate: number };
};
const hevcTags = parseFlv(readFileSync(`${FIXTURE_DIR}hevc-ertmp.flv`)).tags;
const hevcMessages: Msg[] = hevcTags.map((tag) => ({ typeId: tag.type, timestamp: tag.timestamp, payload: tag.data }));
/** The HEVCDecoderConfigurationRecord in the fixture's SequenceStart (after 0x90 'hvc1'). */
const hvcc = hevcTags[0]!.data.subarray(5);

describe('MediaTelemetry: HEVC from an E-RTMP publisher (hvc1) matches ffprobe', () => {
  it('codec, profile, size, fps, bitrate, keyframes', () => {
    const want = hevcExpected.video;
    const [num, den] = want.r_frame_rate.split('/').map(Number) as [number, number];
    const t = new MediaTelemetry();
    feed(t, hevcMessages);
    const v = t.snapshot().video!;
    assert.equal(v.codec, want.codec_name);
    assert.equal(v.fourcc, 'hvc1');
    assert.equal(v.profile, want.profile);
    assert.equal(v.level, want.level);
    assert.equal(v.width, want.width);
    assert.equal(v.height, want.height);
    assert.equal(v.fps, num / den);
    // 15 small frames: the 5–8 byte E-RTMP headers and the 116-byte SequenceStart are ~3% of it.
    near(v.bitrate, want.bitrate, 0.04, 'bitrate');
    assert.equal(v.keyframeIntervalMs, want.keyframes[1]! - want.keyframes[0]!);
    assert.equal(v.lastKeyframeTimestamp, want.keyframes.at(-1));
    assert.equal(t.snapshot().audio, null);
  });

  // The record's VPS/SPS contain 00 00 03 sequences: the size is right only if they are removed.
  it('the SPS carries emulation-prevention bytes', () => {
    assert.ok(hvcc.includes(hex('000003')));
    assert.deepEqual(readHevcConfig(hvcc, 0, hvcc.length), { width: 640, height: 360, profile: 'Main', level: hevcExpected.video.level });
  });

  it('the same record in a Multitrack packet (OneTrack, ManyTracks) and as legacy codec 12', () => {
    const fourcc = Buffer.from('hvc1', 'latin1');
    const size = Buffer.from([hvcc.length >> 16, (hvcc.length >> 8) & 0xff, hvcc.length & 0xff]);
    const bodies = {
      oneTrack: Buffer.concat([Buffer.from([0x96, 0x00]), fourcc, Buffer.from([0]), hvcc]),
      manyTracks: Buffer.concat([Buffer.from([0x96, 0x10]), fourcc, Buffer.from([3]), size, hvcc, Buffer.from([4, 0, 0, 1, 0xff])]),
      manyCodecs: Buffer.concat([Buffer.from([0x96, 0x20]), fourcc, Buffer.from([0]), size, hvcc]),
      legacy: Buffer.concat([hex('1c 00 000000'), hvcc]),
    };
    for (const [name, body] of Object.entries(bodies)) {
      const t = new MediaTelemetry();
      feed(t, [{ typeId: MessageType.Video, timestamp: 0, payload: body }]);
      const v = t.snapshot().video!;
      assert.equal(v.codec, 'hevc', name);
      assert.equal(v.width, 640, name);
      assert.equal(v.height, 360, name);
    }
  });
});

// ── codec configuration readers ───────────────────────────────────────────────────────────────

/** Writes H.264 SPS syntax (u(n), ue(v), se(v)) and escapes it with emulation-prevention bytes. */
class SpsWriter {
  private bits: number[] = [];
  u(n: number, v: number): this {
    for (let i = n - 1; i >= 0; i--) this.bits.push(Math.floor(v / 2 ** i) % 2);
    return this;
  }
  ue(v: number): this {
    const len = Math.floor(Math.log2(v + 1));
    return this.u(len, 0).u(len + 1, v + 1);
  }
  se(v: number): this {
    return this.ue(v > 0 ? 2 * v - 1 : -2 * v);
  }
  nal(header: number): Buffer {
    const bits = [...this.bits, 1]; // rbsp_stop_one_bit
    while (bits.length % 8 !== 0) bits.push(0);
    const out = [header];
    let zeros = 0;
    for (let i = 0; i < bits.length; i += 8) {
      const byte = bits.slice(i, i + 8).reduce((a, b) => a * 2 + b, 0);
      if (zeros >= 2 && byte <= 3) {
        out.push(3);
        zeros = 0;
      }
      out.push(byte);
      zeros = byte === 0 ? zeros + 1 : 0;
    }
    return Buffer.from(out);
  }
}

describe('codec-config: H.264 SPS', () => {
  // Made with Debian ffmpeg/libx264 (-f h264, the SPS NAL copied out); sizes from ffprobe.
  it('libx264 High 4:4:4 interlaced with scaling matrices (1916x1076) and 10-bit 4:2:2 (1278x718)', () => {
    const a = hex('67f40028919b280f0089e59f011000000300100000030321f162d960');
    assert.deepEqual(readAvcSps(a, 0, a.length), { width: 1916, height: 1076, profile: 'High 4:4:4 Predictive', level: 40 });
    const b = hex('677a001fb6cd9405005beaf011000003000100000300320f183196');
    assert.deepEqual(readAvcSps(b, 0, b.length), { width: 1278, height: 718, profile: 'High 4:2:2', level: 31 });
  });

  it('the captures: FFmpeg High 640x360 (cropped from 368), OBS Main', () => {
    const ffmpeg = hex('0164001effe1001a6764001eacd940a02ff970110000030001000003003c0f162d9601000568ebecb22cfdf8f800');
    assert.deepEqual(readAvcConfig(ffmpeg, 0, ffmpeg.length), { width: 640, height: 360, profile: 'High', level: 30 });
    assert.equal(readAvcConfig(ffmpeg, 0, 20), null, 'SPS cut short');
    assert.equal(readAvcConfig(hex('0264001effe1'), 0, 6), null, 'not version 1');
  });

  // Any SPS the syntax allows: size, cropping, chroma format, scaling lists, POC type, fields.
  it('property: the size of any generated SPS is read back', () => {
    fc.assert(
      fc.property(
        fc.record({
          high: fc.constantFrom(66, 77, 100, 110, 122, 244),
          chroma: fc.integer({ min: 0, max: 3 }),
          separate: fc.boolean(),
          scaling: fc.array(fc.option(fc.array(fc.integer({ min: -128, max: 127 }), { minLength: 1, maxLength: 64 })), { minLength: 12, maxLength: 12 }),
          poc: fc.constantFrom(0, 1, 2),
          cycle: fc.array(fc.integer({ min: -1000, max: 1000 }), { maxLength: 20 }),
          widthMbs: fc.integer({ min: 1, max: 256 }),
          heightUnits: fc.integer({ min: 1, max: 128 }),
          frameMbsOnly: fc.boolean(),
          crop: fc.option(fc.tuple(fc.nat(3), fc.nat(3), fc.nat(3), fc.nat(3))),
        }),
        (p) => {
          const w = new SpsWriter().u(8, p.high).u(8, 0).u(8, 31).ue(0);
          const highSyntax = p.high >= 100;
          const chroma = highSyntax ? p.chroma : 1;
          const separate = chroma === 3 && p.separate;
          if (highSyntax) {
            w.ue(chroma);
            if (chroma === 3) w.u(1, separate ? 1 : 0);
            w.ue(0).ue(0).u(1, 0).u(1, 1);
            for (let i = 0; i < (chroma === 3 ? 12 : 8); i++) {
              const list = p.scaling[i];
              w.u(1, list ? 1 : 0);
              if (!list) continue;
              // Deltas until nextScale hits 0 or the list is full (§7.3.2.1.1.1).
              let last = 8;
              let next = 8;
              const size = i < 6 ? 16 : 64;
              for (let j = 0; j < size && next !== 0; j++) {
                const delta = list[j % list.length]!;
                w.se(delta);
                next = (last + delta + 256) % 256;
                if (next !== 0) last = next;
              }
            }
          }
          w.ue(0).ue(p.poc);
          if (p.poc === 0) w.ue(2);
          if (p.poc === 1) {
            w.u(1, 0).se(-3).se(2).ue(p.cycle.length);
            for (const c of p.cycle) w.se(c);
          }
          w.ue(1)
            .u(1, 0)
            .ue(p.widthMbs - 1)
            .ue(p.heightUnits - 1)
            .u(1, p.frameMbsOnly ? 1 : 0);
          if (!p.frameMbsOnly) w.u(1, 0);
          w.u(1, 1);
          const arrayType = separate ? 0 : chroma;
          const cropX = arrayType === 1 || arrayType === 2 ? 2 : 1;
          const cropY = (arrayType === 1 ? 2 : 1) * (p.frameMbsOnly ? 1 : 2);
          let width = p.widthMbs * 16;
          let height = p.heightUnits * 16 * (p.frameMbsOnly ? 1 : 2);
          if (p.crop) {
            const [l, r, t, b] = p.crop;
            w.u(1, 1).ue(l).ue(r).ue(t).ue(b);
            width -= cropX * (l + r);
            height -= cropY * (t + b);
          } else {
            w.u(1, 0);
          }
          w.u(1, 0); // vui_parameters_present_flag
          const nal = w.nal(0x67);
          const info = readAvcSps(nal, 0, nal.length);
          if (width <= 0 || height <= 0) assert.equal(info, null);
          else assert.deepEqual([info?.width, info?.height], [width, height]);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('codec-config: AV1', () => {
  // av1C records from Debian ffmpeg (libaom-av1, libsvtav1, librav1e 4:4:4, libaom with
  // timing-info=1: a timing_info() block before the operating points), read back by ffprobe.
  it('libaom, SVT-AV1, rav1e and a record with timing info', () => {
    const cases: [string, number, number, string, number][] = [
      ['81000c000a0b000000043ea7bcdaf90040', 426, 240, 'Main', 0],
      ['81050c000a0b0000002d4cffb3c02f8004', 1280, 720, 'Main', 5],
      ['813f00000a0e200000fa627db28842a408080940', 638, 358, 'High', 31],
      ['81000c000a14040000000400000067400000bc3cffbcdaf90040', 320, 240, 'Main', 0],
    ];
    for (const [h, width, height, profile, level] of cases) {
      const b = hex(h);
      assert.deepEqual(readAv1Config(b, 0, b.length), { width, height, profile, level }, h);
      assert.equal(readAv1Config(b, 0, b.length - 4), null, `${h} cut short`);
    }
  });

  it('an E-RTMP av01 SequenceStart gives the size to the tracker', () => {
    const t = new MediaTelemetry();
    feed(t, [
      {
        typeId: MessageType.Video,
        timestamp: 0,
        payload: Buffer.concat([hex('90'), Buffer.from('av01', 'latin1'), hex('81050c000a0b0000002d4cffb3c02f8004')]),
      },
    ]);
    const v = t.snapshot().video!;
    assert.deepEqual([v.codec, v.fourcc, v.width, v.height, v.profile], ['av1', 'av01', 1280, 720, 'Main']);
  });
});

describe('codec-config: audio', () => {
  it('AudioSpecificConfig: the captures, explicit HE-AAC, escape rate, PCE channels', () => {
    assert.deepEqual(readAudioSpecificConfig(hex('1190'), 0, 2), { sampleRate: 48000, channels: 2, profile: 'LC' });
    assert.deepEqual(readAudioSpecificConfig(hex('1208'), 0, 2), { sampleRate: 44100, channels: 1, profile: 'LC' });
    // AOT 5, 24 kHz core, stereo, 48 kHz extension → decoded at 48 kHz.
    assert.deepEqual(readAudioSpecificConfig(hex('2b1188'), 0, 3), { sampleRate: 48000, channels: 2, profile: 'HE-AAC' });
    // Index 15: a 24-bit rate follows (44000 = 0x00abe0); channel configuration 0 = in a PCE.
    assert.deepEqual(readAudioSpecificConfig(hex('17 80 55 f0 00 00'), 0, 6), { sampleRate: 44000, channels: null, profile: 'LC' });
    assert.equal(readAudioSpecificConfig(hex('17 80'), 0, 2), null, 'escape rate cut short');
  });

  it('Opus ID header and MPEG audio frame headers', () => {
    const head = Buffer.concat([Buffer.from('OpusHead', 'latin1'), hex('01 06 3801 80bb0000 0000 01')]);
    assert.deepEqual(readOpusHead(head, 0, head.length), { sampleRate: 48000, channels: 6, profile: null });
    assert.equal(readOpusHead(head, 1, head.length), null);
    assert.equal(mp3SampleRate(hex('fffb9064'), 0, 4), 44100);
    assert.equal(mp3Channels(hex('fffb9064'), 0, 4), 2);
    assert.equal(mp3SampleRate(hex('fff394c4'), 0, 4), 24000, 'MPEG-2');
    assert.equal(mp3Channels(hex('fffb94c4'), 0, 4), 1, 'mode 3 = mono');
    assert.equal(mp3SampleRate(hex('fffb9c64'), 0, 4), 0, 'reserved rate index');
    assert.equal(mp3SampleRate(hex('fffb90'), 0, 3), 0, 'short');
  });
});

// ── tracker behaviour ─────────────────────────────────────────────────────────────────────────

const AVC_CONFIG = hex('1700000000 0164001effe1001a6764001eacd940a02ff970110000030001000003003c0f162d9601000568ebecb22cfdf8f800');

/** Video frames every `step` ms from `from`, a keyframe every `gop` frames. */
function frames(from: number, count: number, step: number, gop: number, size = 1000): Msg[] {
  const out: Msg[] = [];
  for (let i = 0; i < count; i++) {
    const payload = Buffer.alloc(size);
    payload[0] = i % gop === 0 ? 0x17 : 0x27;
    payload[1] = 1;
    out.push({ typeId: MessageType.Video, timestamp: (from + i * step) >>> 0, payload });
  }
  return out;
}

describe('MediaTelemetry: windows and timestamps', () => {
  it('bitrate and fps over a steady stream; keyframe interval is the median', () => {
    const t = new MediaTelemetry();
    feed(t, [{ typeId: MessageType.Video, timestamp: 0, payload: AVC_CONFIG }, ...frames(0, 400, 40, 50, 2500)]);
    const v = t.snapshot().video!;
    assert.equal(v.fps, 25);
    assert.equal(v.bitrate, 2500 * 8 * 25);
    assert.equal(v.keyframeIntervalMs, 2000);
    assert.equal(v.lastKeyframeTimestamp, 350 * 40);
    assert.equal(v.lastTimestamp, 399 * 40);
  });

  it('keeps counting across the 32-bit timestamp wrap', () => {
    const t = new MediaTelemetry();
    feed(t, frames(2 ** 32 - 400, 20, 40, 5));
    const v = t.snapshot().video!;
    assert.equal(v.fps, 25);
    assert.equal(v.keyframeIntervalMs, 200);
    assert.equal(v.lastKeyframeTimestamp, (2 ** 32 - 400 + 15 * 40) % 2 ** 32);
  });

  it('a jump of the timestamps starts the windows over', () => {
    const t = new MediaTelemetry();
    feed(t, frames(0, 50, 40, 10));
    assert.equal(t.snapshot().video!.fps, 25);
    const base = 49 * 40 + MAX_GAP_MS + 1;
    feed(t, frames(base, 1, 20, 10));
    assert.deepEqual([t.snapshot().video!.fps, t.snapshot().video!.bitrate], [null, null], 'one frame since the jump');
    feed(t, frames(base, 30, 20, 10).slice(1));
    const v = t.snapshot().video!;
    assert.equal(v.fps, 50, 'measured on the new timeline only');
    assert.equal(v.keyframeIntervalMs, 400, 'the median of 4 × 400 ms before and 2 × 200 ms after');
    // Going back by more than the late-message tolerance is a jump too (a publisher restarting at 0).
    feed(t, frames(0, 1, 20, 10));
    assert.equal(t.snapshot().video!.fps, null);
  });

  it('a long pause in the frames, with other video messages in between, is no frame interval', () => {
    const t = new MediaTelemetry();
    feed(t, frames(0, 2, 40, 10));
    const config = (ts: number): Msg => ({ typeId: MessageType.Video, timestamp: ts, payload: AVC_CONFIG });
    feed(
      t,
      Array.from({ length: 10 }, (_, i) => config(40 + (i + 1) * 9000)),
    );
    feed(t, frames(40 + 10 * 9000 + 40, 9, 40, 10));
    assert.equal(t.snapshot().video!.fps, 25);
    // An audio message a little older than the first one (players interleave loosely).
    const a = new MediaTelemetry();
    feed(
      a,
      [1000, 990, 23, 1023].map((ts) => ({ typeId: MessageType.Audio, timestamp: ts, payload: hex('af01 2100') })),
    );
    assert.ok(a.snapshot().audio!.bitrate! > 0);
  });

  it('the age of the last keyframe comes from the clock the caller gives', () => {
    let now = 1_000_000;
    const t = new MediaTelemetry({ clock: () => now });
    feed(t, frames(0, 7, 40, 5));
    now += 1234;
    assert.equal(t.snapshot().video!.keyframeAgeMs, 1234);
    assert.equal(t.snapshot(now + 10).video!.keyframeAgeMs, 1244);
    assert.equal(t.snapshot(now - 1234 + 50).video!.nextKeyframeInMs, 150, 'interval 200 ms, keyframe 50 ms ago');
    assert.equal(t.snapshot().video!.nextKeyframeInMs, 0, 'overdue');
    // Without a clock, the age is in stream time: frame 6 of a 5-frame GOP is 40 ms after its keyframe.
    const s = new MediaTelemetry();
    feed(s, frames(0, 7, 40, 5));
    assert.deepEqual([s.snapshot().video!.keyframeAgeMs, s.snapshot().video!.nextKeyframeInMs], [null, 160]);
    assert.equal(new MediaTelemetry().snapshot().video, null);
  });

  it('legacy MP3 and PCM, and E-RTMP Opus', () => {
    const mp3 = new MediaTelemetry();
    feed(mp3, [{ typeId: MessageType.Audio, timestamp: 0, payload: hex('2f fffb94c4 00000000') }]);
    assert.deepEqual([mp3.snapshot().audio!.codec, mp3.snapshot().audio!.sampleRate, mp3.snapshot().audio!.channels], ['mp3', 48000, 1]);
    const pcm = new MediaTelemetry();
    feed(pcm, [{ typeId: MessageType.Audio, timestamp: 0, payload: hex('39 0000') }]);
    assert.deepEqual([pcm.snapshot().audio!.codec, pcm.snapshot().audio!.sampleRate, pcm.snapshot().audio!.channels], ['pcm_u8', 22050, 2]);
    const opus = new MediaTelemetry();
    const opusHead = Buffer.concat([hex('90'), Buffer.from('OpusOpusHead', 'latin1'), hex('01 02 3801 80bb0000 0000 00')]);
    feed(opus, [{ typeId: MessageType.Audio, timestamp: 0, payload: opusHead }]);
    const a = opus.snapshot().audio!;
    assert.deepEqual([a.codec, a.fourcc, a.sampleRate, a.channels], ['opus', 'Opus', 48000, 2]);
  });

  it('AV1 and VP9 FourCCs are named; a new codec forgets the old picture size', () => {
    const t = new MediaTelemetry();
    feed(t, [{ typeId: MessageType.Video, timestamp: 0, payload: AVC_CONFIG }]);
    assert.equal(t.snapshot().video!.width, 640);
    feed(t, [{ typeId: MessageType.Video, timestamp: 40, payload: Buffer.concat([hex('90'), Buffer.from('av01', 'latin1'), hex('81000c00')]) }]);
    assert.deepEqual([t.snapshot().video!.codec, t.snapshot().video!.fourcc, t.snapshot().video!.width], ['av1', 'av01', null]);
    feed(t, [{ typeId: MessageType.Video, timestamp: 80, payload: Buffer.concat([hex('93'), Buffer.from('vp09', 'latin1'), hex('00')]) }]);
    assert.equal(t.snapshot().video!.codec, 'vp9');
    feed(t, [{ typeId: MessageType.Video, timestamp: 120, payload: Buffer.concat([hex('93'), hex('00 ff 41 42')]) }]);
    assert.deepEqual([t.snapshot().video!.codec, t.snapshot().video!.fourcc], [null, null], 'unprintable FourCC');
    // ModEx (packet type 7): modifier bytes stand where the FourCC would; the codec stays.
    feed(t, [{ typeId: MessageType.Video, timestamp: 160, payload: Buffer.concat([hex('97 02 000000'), Buffer.from('31vp09', 'latin1')]) }]);
    feed(t, [{ typeId: MessageType.Video, timestamp: 200, payload: Buffer.concat([hex('93'), Buffer.from('vp09', 'latin1')]) }]);
    feed(t, [{ typeId: MessageType.Video, timestamp: 240, payload: Buffer.concat([hex('97 02 000000'), Buffer.from('31vp09', 'latin1')]) }]);
    assert.equal(t.snapshot().video!.codec, 'vp9');
  });
});

describe('MediaTelemetry: metadata', () => {
  const meta = (entries: Record<string, unknown>): Msg => ({
    typeId: MessageType.DataAmf0,
    timestamp: 0,
    payload: encodeAmf0(['@setDataFrame', 'onMetaData', new Amf0EcmaArray(amf0Object(entries as never))]),
  });

  it('implausible values are unknown, strings are bounded and printable', () => {
    const t = new MediaTelemetry();
    feed(t, [
      meta({
        width: -5,
        height: Number.NaN,
        framerate: 1e9,
        videodatarate: 'x',
        stereo: true,
        videocodecid: 'hvc1',
        audiocodecid: 0x4f707573,
        encoder: `a\u0000b${'x'.repeat(500)}`,
      }),
    ]);
    const m = t.snapshot().metadata!;
    assert.deepEqual(
      [m.width, m.height, m.framerate, m.videoBitrate, m.audioChannels, m.videoCodec, m.audioCodec],
      [null, null, null, null, 2, 'hevc', 'opus'],
    );
    assert.equal(m.encoder, `a?b${'x'.repeat(61)}`);
  });

  it('plain onMetaData and the AMF3 data message (type 15) are read; oversized or undecodable metadata is ignored', () => {
    const plain = new MediaTelemetry();
    feed(plain, [
      { typeId: MessageType.DataAmf3, timestamp: 0, payload: Buffer.concat([hex('00'), encodeAmf0(['onMetaData', amf0Object({ width: 1280, height: 720 })])]) },
    ]);
    assert.deepEqual([plain.snapshot().metadata!.width, plain.snapshot().metadata!.height], [1280, 720]);
    const big = new MediaTelemetry();
    feed(big, [meta({ width: 1280, pad: 'x'.repeat(MAX_METADATA_BYTES) })]);
    assert.equal(big.snapshot().metadata, null);
    const deep = new MediaTelemetry();
    let nested: Record<string, unknown> = { width: 1 };
    for (let i = 0; i < 10; i++) nested = { n: amf0Object(nested as never) };
    feed(deep, [meta(nested)]);
    assert.equal(deep.snapshot().metadata, null, 'deeper than the budget');
  });
});

// ── hostile input ─────────────────────────────────────────────────────────────────────────────

/** Bytes a tracker holds: typed arrays by their whole backing buffer (a retained view of a socket buffer would show), strings by length. */
function retainedBytes(root: unknown): number {
  const seen = new Set<unknown>();
  let total = 0;
  const walk = (v: unknown): void => {
    if (typeof v === 'string') total += v.length * 2;
    if (typeof v !== 'object' || v === null || seen.has(v)) return;
    seen.add(v);
    if (ArrayBuffer.isView(v)) {
      total += v.buffer.byteLength;
      return;
    }
    total += 16;
    for (const key of Object.keys(v)) walk((v as Record<string, unknown>)[key]);
  };
  walk(root);
  return total;
}

function assertWellFormed(s: MediaTelemetrySnapshot): void {
  const check = (v: unknown, path: string): void => {
    if (v === null) return;
    if (typeof v === 'number') assert.ok(Number.isFinite(v) && v >= 0, `${path} = ${v}`);
    else if (typeof v === 'string') assert.ok(v.length <= 64 && /^[\x20-\x7e]*$/.test(v), `${path} = ${JSON.stringify(v)}`);
    else if (typeof v === 'object') for (const [k, x] of Object.entries(v)) check(x, `${path}.${k}`);
    else assert.fail(`${path}: ${typeof v}`);
  };
  check(s, 'snapshot');
  for (const side of [s.video?.width, s.video?.height, s.metadata?.width, s.metadata?.height]) assert.ok(side == null || side <= 16384);
}

const anyMessage = fc.record({
  typeId: fc.constantFrom(8, 9, 9, 18, 15, 20, 0, 255),
  timestamp: fc.oneof(fc.nat(200_000), fc.constantFrom(0, 0xffffffff, 0x7fffffff, 0x80000000), fc.integer({ min: 0, max: 0xffffffff })),
  payload: fc.oneof(
    fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
    // Plausible heads over random bodies: configs, multitrack, ex headers, metadata markers.
    fc
      .tuple(
        fc.constantFrom('1700000000', '1c00000000', '90', '9600', '9610', '9620', 'af00', '9000', '9510', '0200', '02000a'),
        fc.uint8Array({ maxLength: 200 }),
      )
      .map(([h, b]) => Buffer.concat([hex(h), Buffer.from(b)])),
    // A real configuration with one byte changed or cut short.
    fc
      .tuple(fc.constantFrom(AVC_CONFIG, Buffer.concat([hex('90'), Buffer.from('hvc1', 'latin1'), hvcc])), fc.nat(), fc.nat(255), fc.boolean())
      .map(([b, at, v, cut]) => {
        const c = Buffer.from(b);
        if (cut) return c.subarray(0, at % c.length);
        c[at % c.length] = v;
        return c;
      }),
  ),
  claimedLength: fc.option(fc.integer({ min: 0, max: 0xffffff })),
  withPayload: fc.boolean(),
});

describe('MediaTelemetry: hostile input', () => {
  it('property: any messages never throw, the snapshot stays well-formed and the tracker bounded', () => {
    const baseline = retainedBytes(new MediaTelemetry());
    fc.assert(
      fc.property(fc.array(anyMessage, { maxLength: 120 }), (msgs) => {
        let now = 0;
        const t = new MediaTelemetry({ clock: () => (now += 7) });
        for (const m of msgs) {
          t.message(m.typeId, m.timestamp, m.claimedLength ?? m.payload.length, m.payload.subarray(0, 8), m.withPayload ? m.payload : null);
        }
        const s = t.snapshot();
        assertWellFormed(s);
        assert.ok(JSON.stringify(s).length < 2048);
        // Fixed arrays and numbers, plus at most one short encoder string and a few names.
        assert.ok(retainedBytes(t) <= baseline + 1024, `retained ${retainedBytes(t)} vs ${baseline} empty`);
      }),
      { numRuns: 2000 },
    );
  });

  it('property: the readers return null or a plausible value for any bytes at any offset', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('', '01', '81', '810000000a', '0164001effe1', '67640029'),
        fc.uint8Array({ maxLength: 300 }),
        fc.nat(300),
        fc.nat(300),
        (prefix, tail, a, b) => {
          // Plausible starts (record versions, AV1 marker and OBU header, an SPS) so the parsers get deep.
          const bytes = Buffer.concat([hex(prefix), tail]);
          const at = Math.min(a, b) % 8 === 0 ? 0 : Math.min(a, b);
          const end = Math.max(a, b);
          for (const read of [readAvcConfig, readHevcConfig, readAvcSps, readAv1Config]) {
            const info = read(bytes, at, end);
            if (info !== null) assert.ok(info.width >= 1 && info.width <= 16384 && info.height >= 1 && info.height <= 16384);
          }
          const aac = readAudioSpecificConfig(bytes, at, end);
          if (aac?.sampleRate != null) assert.ok(aac.sampleRate > 0 && aac.sampleRate < 2 ** 24);
          readOpusHead(bytes, at, end);
          assert.ok(mp3SampleRate(bytes, at, end) >= 0);
        },
      ),
      { numRuns: 5000 },
    );
  });

  it('a config claiming 31 SPS of 64 KiB each, or 255 arrays, is refused after a bounded look', () => {
    const avc = Buffer.concat([hex('0164001effff ffff'), Buffer.alloc(100)]);
    assert.equal(readAvcConfig(avc, 0, avc.length), null);
    const hevc = Buffer.concat([Buffer.from([1]), Buffer.alloc(21), Buffer.from([255]), Buffer.alloc(3000, 0x20)]);
    assert.equal(readHevcConfig(hevc, 0, hevc.length), null);
  });
});
