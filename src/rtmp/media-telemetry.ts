/**
 * Per-stream media telemetry from a publisher's messages: video and audio codec (legacy FLV ids
 * and E-RTMP FourCCs), picture size and profile (from the AVC, HEVC or AV1 decoder configuration,
 * else `onMetaData`), sample rate and channels, frame rate and bitrate measured over a moving window,
 * keyframe interval and the last keyframe.
 *
 * How to feed it — once per complete client message, in wire order:
 *
 *     telemetry.message(info.typeId, info.timestamp, info.length, info.head, payload)
 *
 * - For every audio (8) and video (9) message only the chunk reader's head bytes (the first
 *   min(length, 8) of the body), the length and the timestamp are read: codec, frame and
 *   keyframe come from the tag head, bytes from the length. That work is O(1) and allocates
 *   nothing (a few integer operations and typed-array writes), so `payload` may be null.
 * - The body (`payload`) is read only for decoder configurations (video/audio SequenceStart, the
 *   messages `isVideoSequenceHeader` / `isAudioSequenceHeader` pick, i.e. what the chunk reader's
 *   `'head'` collection keeps, see isConfigurationHead) and for data messages (18, or 15 with its 0x00 marker) that are `@setDataFrame` /
 *   `onMetaData`. Those arrive once per publish (again after a reconnect or codec change), and
 *   their payload is parsed in place and not kept.
 * - Other message types are ignored at the cost of one comparison.
 *
 * All times are the stream's own timestamps (ms, 32-bit, wrapping), kept per track on an
 * extended clock. A jump forward by more than {@link MAX_GAP_MS} or back by more than
 * {@link MAX_LATE_MS} is a discontinuity: the track's windows start over. Wall-clock time is used
 * only for the age of the last keyframe, from the optional `clock` (called once per keyframe and
 * per snapshot).
 *
 * Bounded whatever the input: a fixed set of numbers and typed arrays (under 1 KiB), metadata
 * decoded only up to {@link MAX_METADATA_BYTES} under a strict AMF0 budget, its one string (the
 * encoder name) cut to 64 characters. Nothing here throws on any input; an undecodable
 * configuration or metadata leaves the fields it would have set unknown (null).
 */
import { type Amf0Limits, type Amf0Object, type Amf0Value, Amf0EcmaArray, decodeAmf0, isAmf0Object } from './amf0.js';
import { mp3Channels, mp3SampleRate, readAudioSpecificConfig, readAv1Config, readAvcConfig, readHevcConfig, readOpusHead } from './codec-config.js';
import { MessageType } from './constants.js';
import { isConfigurationHead, isMetadataMessage } from './media.js';
import { KEYFRAME_RING, type MediaCounters } from './media-counters.js';

/** Length of the bitrate window. */
export const TELEMETRY_WINDOW_MS = 5000;
const BUCKET_MS = 250;
const BUCKETS = TELEMETRY_WINDOW_MS / BUCKET_MS;
/** A forward timestamp jump larger than this between two messages of a track is a discontinuity. */
export const MAX_GAP_MS = 10_000;
/** A message this much older than its track's newest is a discontinuity (a restart at 0, a rewrite). */
export const MAX_LATE_MS = 5_000;
/** Frame intervals kept for the frame rate (about 2 s at 30 fps). */
const INTERVALS = 64;
/** Keyframe intervals kept; the reported interval is their median. */
const KEY_INTERVALS = 8;
/** Metadata larger than this is not decoded. */
export const MAX_METADATA_BYTES = 64 * 1024;
const METADATA_LIMITS: Amf0Limits = { maxDepth: 4, maxItems: 256, maxStringBytes: 4096, maxValues: 4, maxTotalValues: 1024, maxTotalStringBytes: 16 * 1024 };
const MAX_ENCODER_CHARS = 64;
/** Frame intervals needed before the measured rate is preferred to `onMetaData`'s framerate. */
const MIN_MEASURED_INTERVALS = 8;

export interface VideoTelemetry {
  /** ffprobe's codec_name (`h264`, `hevc`, `av1`, `vp9` …); null when unknown. */
  codec: string | null;
  /** The E-RTMP FourCC (`avc1`, `hvc1`, `av01`, `vp09` …); null for a legacy FLV codec id. */
  fourcc: string | null;
  profile: string | null;
  level: number | null;
  /** From the decoder configuration's SPS, else from `onMetaData`. */
  width: number | null;
  height: number | null;
  /** Frames per second measured from the timestamps, else `onMetaData`'s framerate. */
  fps: number | null;
  /** Bits per second over the last {@link TELEMETRY_WINDOW_MS} of stream time. */
  bitrate: number | null;
  /** Median of the last few intervals between keyframes, in ms of stream time. */
  keyframeIntervalMs: number | null;
  /** Timestamp (ms, as sent) of the last keyframe. */
  lastKeyframeTimestamp: number | null;
  /** Timestamp (ms, as sent) of the last video message: minus the above, the keyframe's age in stream time. */
  lastTimestamp: number | null;
  /** Wall-clock ms since the last keyframe arrived; null without a clock. */
  keyframeAgeMs: number | null;
  /**
   * When the next keyframe is expected, in ms from now: the keyframe interval minus the last
   * keyframe's age (wall clock when there is a clock, else stream time); 0 when overdue. What a
   * move that must start at a keyframe waits for.
   */
  nextKeyframeInMs: number | null;
}

export interface AudioTelemetry {
  /** ffprobe's codec_name (`aac`, `mp3`, `opus` …); null when unknown. */
  codec: string | null;
  /** The E-RTMP FourCC (`mp4a`, `Opus`, `.mp3` …); null for a legacy sound format. */
  fourcc: string | null;
  profile: string | null;
  sampleRate: number | null;
  channels: number | null;
  bitrate: number | null;
}

/** The publisher's own claims, from `onMetaData` (each null when absent or implausible). */
export interface StreamMetadata {
  width: number | null;
  height: number | null;
  framerate: number | null;
  /** bits/s (onMetaData says kbit/s). */
  videoBitrate: number | null;
  audioBitrate: number | null;
  audioSampleRate: number | null;
  audioChannels: number | null;
  videoCodec: string | null;
  audioCodec: string | null;
  /** Printable ASCII, at most 64 characters. */
  encoder: string | null;
}

export interface MediaTelemetrySnapshot {
  /** null until the first video message. */
  video: VideoTelemetry | null;
  /** null until the first audio message. */
  audio: AudioTelemetry | null;
  metadata: StreamMetadata | null;
  /** Video plus audio, bits per second. */
  bitrate: number | null;
}

export interface MediaTelemetryOptions {
  /** Wall clock in ms (e.g. `Date.now`), for the age of the last keyframe. */
  clock?: () => number;
  /**
   * Counts a chunk reader keeps of every audio and video message (ChunkReader.media). With them,
   * `message` is given only the messages the reader collects whole (decoder configurations and
   * metadata): frame rate, bitrate and keyframes come from the counters, read when a snapshot is
   * asked for (see CounterWindow), and the age of the last keyframe is in stream time.
   */
  counters?: MediaCounters;
}

// ── codec names ───────────────────────────────────────────────────────────────────────────────
// A codec is kept as a number: a legacy FLV id as -(id + 1), a FourCC as its big-endian uint32.

const NO_CODEC = Number.NaN;
const VIDEO_IDS: Record<number, string> = { 2: 'flv1', 3: 'flashsv', 4: 'vp6f', 5: 'vp6a', 6: 'flashsv2', 7: 'h264', 12: 'hevc' };
const VIDEO_FOURCCS: Record<string, string> = { avc1: 'h264', hvc1: 'hevc', av01: 'av1', vp09: 'vp9', vp08: 'vp8' };
const AUDIO_IDS: Record<number, string> = {
  0: 'pcm_s16le',
  1: 'adpcm_swf',
  2: 'mp3',
  3: 'pcm_s16le',
  4: 'nellymoser',
  5: 'nellymoser',
  6: 'nellymoser',
  7: 'pcm_alaw',
  8: 'pcm_mulaw',
  10: 'aac',
  11: 'speex',
  14: 'mp3',
};
const AUDIO_FOURCCS: Record<string, string> = { '.mp3': 'mp3', mp4a: 'aac', Opus: 'opus', fLaC: 'flac', 'ac-3': 'ac3', 'ec-3': 'eac3' };
const FOURCC = (s: string): number => ((s.charCodeAt(0) << 24) | (s.charCodeAt(1) << 16) | (s.charCodeAt(2) << 8) | s.charCodeAt(3)) >>> 0;
const AVC1 = FOURCC('avc1');
const HVC1 = FOURCC('hvc1');
const AV01 = FOURCC('av01');
const MP4A = FOURCC('mp4a');
const OPUS = FOURCC('Opus');
const DOT_MP3 = FOURCC('.mp3');
/** Legacy sound rates by the 2-bit SoundRate field. */
const SOUND_RATES = [5512, 11025, 22050, 44100];

function fourccAt(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}

/** The FourCC as text when all four bytes are printable ASCII, else null. */
function fourccText(key: number): string | null {
  if (!(key >= 0)) return null;
  let s = '';
  for (let shift = 24; shift >= 0; shift -= 8) {
    const c = (key >>> shift) & 0xff;
    if (c < 0x20 || c > 0x7e) return null;
    s += String.fromCharCode(c);
  }
  return s;
}

function codecName(key: number, ids: Record<number, string>, fourccs: Record<string, string>): string | null {
  if (Number.isNaN(key)) return null;
  if (key < 0) return ids[-key - 1] ?? null;
  const text = fourccText(key);
  return text === null ? null : (fourccs[text] ?? null);
}

/**
 * Where the first track's body starts in an E-RTMP packet whose FourCC is at `at`, or -1: a
 * Multitrack packet (`multitrack` ≥ 0) has a track id after the FourCC and, for ManyTracks (1)
 * and ManyTracksManyCodecs (2), a 24-bit body size.
 */
function exBodyStart(b: Uint8Array, at: number, multitrack: number): number {
  if (multitrack < 0) return at + 4;
  if (multitrack === 0) return at + 5;
  return b.length < at + 8 ? -1 : at + 8;
}

/** Where that body ends. */
function exBodyEnd(b: Uint8Array, at: number, multitrack: number): number {
  if (multitrack <= 0 || b.length < at + 8) return b.length;
  return Math.min(b.length, at + 8 + ((b[at + 5]! << 16) | (b[at + 6]! << 8) | b[at + 7]!));
}

// ── one track's clock and windows ─────────────────────────────────────────────────────────────

class Track {
  messages = 0;
  codec = NO_CODEC;
  lastTimestamp = 0;
  private started = false;
  /**
   * Extended time (ms) of the newest message. It starts at MAX_LATE_MS so that a late message's
   * time (at most that much earlier) is never negative.
   */
  now = MAX_LATE_MS;
  private readonly buckets = new Float64Array(BUCKETS);
  private head = -1;
  private firstT = 0;
  private lastT = 0;
  private readonly gaps = new Uint16Array(INTERVALS);
  private gapAt = 0;
  gapCount = 0;
  private gapSum = 0;
  private lastFrameT = -1;
  /** A frame has been seen since the last reset: the window then starts at the first frame. */
  private framed = false;
  /** Set by `time` when the message started a discontinuity. */
  jumped = false;

  /** Extended time of a message stamped `ts`; on a discontinuity, resets the windows. */
  time(ts: number): number {
    this.messages++;
    this.jumped = false;
    if (!this.started) {
      this.started = true;
      this.lastTimestamp = ts;
      return this.now;
    }
    const d = (ts - this.lastTimestamp) | 0; // signed difference across the 32-bit wrap
    if (d >= 0 && d <= MAX_GAP_MS) {
      this.lastTimestamp = ts;
      this.now += d;
      return this.now;
    }
    if (d < 0 && d >= -MAX_LATE_MS) return this.now + d;
    this.lastTimestamp = ts;
    this.reset();
    this.jumped = true;
    return this.now;
  }

  private reset(): void {
    this.buckets.fill(0);
    this.head = -1;
    this.gaps.fill(0);
    this.gapAt = 0;
    this.gapCount = 0;
    this.gapSum = 0;
    this.lastFrameT = -1;
    this.framed = false;
  }

  addBytes(t: number, n: number): void {
    const bucket = Math.floor(t / BUCKET_MS);
    if (this.head < 0) {
      this.head = bucket;
      this.firstT = t;
      this.lastT = t;
    } else if (bucket > this.head) {
      const clear = Math.min(bucket - this.head, BUCKETS);
      for (let i = 1; i <= clear; i++) this.buckets[(this.head + i) % BUCKETS] = 0;
      this.head = bucket;
    } else if (bucket <= this.head - BUCKETS) {
      return; // older than the window
    }
    this.buckets[bucket % BUCKETS]! += n;
    if (t > this.lastT) this.lastT = t;
    if (t < this.firstT) this.firstT = t;
  }

  /** A frame at `t`: its distance to the previous one is an interval (equal or older times are not frames). */
  addFrame(t: number): void {
    if (!this.framed) {
      // Decoder configuration sent ahead of the first frame does not stretch the window.
      this.framed = true;
      this.firstT = t;
    }
    if (this.lastFrameT >= 0) {
      if (t <= this.lastFrameT) return;
      const gap = t - this.lastFrameT;
      // A pause longer than a jump (other messages kept the clock going) is no frame interval.
      if (gap > MAX_GAP_MS) {
        this.lastFrameT = t;
        return;
      }
      if (this.gapCount === INTERVALS) this.gapSum -= this.gaps[this.gapAt]!;
      else this.gapCount++;
      this.gaps[this.gapAt] = gap;
      this.gapSum += gap;
      this.gapAt = (this.gapAt + 1) % INTERVALS;
    }
    this.lastFrameT = t;
  }

  frameRate(): number | null {
    return this.gapCount === 0 ? null : Math.round((100_000 * this.gapCount) / this.gapSum) / 100;
  }

  /**
   * Bits per second in the window: the bytes of the messages in it over the time they cover,
   * from the window start (or first message) to the newest message plus one frame interval (the
   * newest frame's own duration).
   */
  bitrate(): number | null {
    if (this.head < 0) return null;
    let bytes = 0;
    for (let i = 0; i < BUCKETS; i++) bytes += this.buckets[i]!;
    const start = Math.max(this.firstT, (this.head - BUCKETS + 1) * BUCKET_MS);
    const span = this.lastT - start + (this.gapCount === 0 ? 0 : this.gapSum / this.gapCount);
    return span > 0 ? Math.round((bytes * 8000) / span) : null;
  }
}

// ── the tracker ───────────────────────────────────────────────────────────────────────────────

export class MediaTelemetry {
  private readonly video = new Track();
  private readonly audio = new Track();
  // Video, from the decoder configuration.
  private width = 0;
  private height = 0;
  private videoProfile: string | null = null;
  private videoLevel = 0;
  // Keyframes.
  private readonly keyGaps = new Float64Array(KEY_INTERVALS);
  private keyGapAt = 0;
  private keyGapCount = 0;
  private lastKeyT = -1;
  private lastKeyTimestamp = -1;
  private lastKeyAt = Number.NaN;
  // Audio: the legacy header's rate/size/type bits, and what a configuration or MP3 header says.
  private soundFlags = 0;
  private sampleRate = 0;
  private channels = 0;
  private audioProfile: string | null = null;
  private metadata: StreamMetadata | null = null;

  constructor(private readonly options: MediaTelemetryOptions = {}) {}

  /**
   * One complete client message. `head` = its first min(length, 8) body bytes; `payload` = the
   * whole body, needed only for decoder configurations and metadata (null otherwise).
   */
  message(typeId: number, timestamp: number, length: number, head: Uint8Array, payload: Uint8Array | null = null): void {
    // With counters, only configurations and metadata are read (a relayed session may be given every message).
    if (this.options.counters !== undefined && !isConfigurationHead(typeId, head, head.length)) return;
    if (typeId === MessageType.Video) this.onVideo(timestamp >>> 0, length, head, payload);
    else if (typeId === MessageType.Audio) this.onAudio(timestamp >>> 0, length, head, payload);
    else if ((typeId === MessageType.DataAmf0 || typeId === MessageType.DataAmf3) && payload !== null) this.onData(typeId, payload);
  }

  private onVideo(ts: number, length: number, head: Uint8Array, payload: Uint8Array | null): void {
    const track = this.video;
    const t = track.time(ts);
    if (track.jumped) this.lastKeyT = -1;
    track.addBytes(t, length);
    const n = head.length;
    if (n < 1) return;
    const b0 = head[0]!;
    let frameType: number;
    let coded: boolean;
    let sequenceStart: boolean;
    if (b0 & 0x80) {
      // ExVideoTagHeader: frame type, packet type, then the FourCC (after a Multitrack byte).
      frameType = (b0 >> 4) & 0x07;
      let packetType = b0 & 0x0f;
      let at = 1;
      let multitrack = -1;
      if (packetType === 6) {
        if (n < 2) return;
        multitrack = head[1]! >> 4;
        packetType = head[1]! & 0x0f;
        at = 2;
      }
      // ModEx (7) puts modifier data before the FourCC; not read: bytes only.
      if (packetType === 7 || n < at + 4) return;
      this.setVideoCodec(fourccAt(head, at));
      coded = (packetType === 1 || packetType === 3) && frameType !== 5;
      sequenceStart = packetType === 0;
      if (sequenceStart && payload !== null) {
        const start = exBodyStart(payload, at, multitrack);
        if (start >= 0) this.videoConfig(track.codec, payload, start, exBodyEnd(payload, at, multitrack));
      }
    } else {
      frameType = b0 >> 4;
      const id = b0 & 0x0f;
      this.setVideoCodec(-(id + 1));
      // AVC and HEVC carry a packet type: 0 = sequence header, 1 = NAL units, 2 = end of sequence.
      const hasPacketType = id === 7 || id === 12;
      if (hasPacketType && n < 2) return;
      coded = frameType !== 5 && (!hasPacketType || head[1] === 1);
      sequenceStart = hasPacketType && head[1] === 0;
      if (sequenceStart && payload !== null) this.videoConfig(id === 7 ? AVC1 : HVC1, payload, 5, payload.length);
    }
    if (!coded) return;
    track.addFrame(t);
    if (frameType === 1) this.keyframe(t, ts);
  }

  /** A different codec: the picture of the previous one no longer holds. */
  private setVideoCodec(codec: number): void {
    if (codec === this.video.codec) return;
    this.video.codec = codec;
    this.width = 0;
    this.height = 0;
    this.videoProfile = null;
    this.videoLevel = 0;
  }

  private videoConfig(codec: number, b: Uint8Array, start: number, end: number): void {
    const info =
      codec === AVC1 ? readAvcConfig(b, start, end) : codec === HVC1 ? readHevcConfig(b, start, end) : codec === AV01 ? readAv1Config(b, start, end) : null;
    this.width = info?.width ?? 0;
    this.height = info?.height ?? 0;
    this.videoProfile = info?.profile ?? null;
    this.videoLevel = info?.level ?? 0;
  }

  private keyframe(t: number, ts: number): void {
    if (this.lastKeyT >= 0 && t > this.lastKeyT) {
      this.keyGaps[this.keyGapAt] = t - this.lastKeyT;
      this.keyGapAt = (this.keyGapAt + 1) % KEY_INTERVALS;
      if (this.keyGapCount < KEY_INTERVALS) this.keyGapCount++;
    }
    if (t >= this.lastKeyT) {
      this.lastKeyT = t;
      this.lastKeyTimestamp = ts;
      if (this.options.clock !== undefined) this.lastKeyAt = this.options.clock();
    }
  }

  private onAudio(ts: number, length: number, head: Uint8Array, payload: Uint8Array | null): void {
    const track = this.audio;
    const t = track.time(ts);
    track.addBytes(t, length);
    const n = head.length;
    if (n < 1) return;
    const b0 = head[0]!;
    const format = b0 >> 4;
    let coded: boolean;
    if (format === 9) {
      // ExAudioTagHeader: packet type, then the FourCC (after a Multitrack byte).
      let packetType = b0 & 0x0f;
      let at = 1;
      let multitrack = -1;
      if (packetType === 5) {
        if (n < 2) return;
        multitrack = head[1]! >> 4;
        packetType = head[1]! & 0x0f;
        at = 2;
      }
      if (packetType === 7 || n < at + 4) return;
      const codec = fourccAt(head, at);
      if (codec !== track.codec) this.resetSound();
      track.codec = codec;
      coded = packetType === 1;
      if (packetType === 0 && payload !== null) {
        const start = exBodyStart(payload, at, multitrack);
        if (start >= 0) this.audioConfig(codec, payload, start, exBodyEnd(payload, at, multitrack));
      } else if (coded && codec === DOT_MP3 && multitrack < 0) {
        this.mp3Frame(head, at + 4);
      }
    } else {
      const codec = -(format + 1);
      if (codec !== track.codec) this.resetSound();
      track.codec = codec;
      this.soundFlags = b0 & 0x0f;
      if (format === 10) {
        if (n < 2) return;
        coded = head[1] === 1;
        if (head[1] === 0 && payload !== null) this.audioConfig(MP4A, payload, 2, payload.length);
      } else {
        coded = true;
        if (format === 2 || format === 14) this.mp3Frame(head, 1);
      }
    }
    if (coded) track.addFrame(t);
  }

  private resetSound(): void {
    this.sampleRate = 0;
    this.channels = 0;
    this.audioProfile = null;
  }

  private audioConfig(codec: number, b: Uint8Array, start: number, end: number): void {
    const info = codec === MP4A ? readAudioSpecificConfig(b, start, end) : codec === OPUS ? readOpusHead(b, start, end) : null;
    this.sampleRate = info?.sampleRate ?? 0;
    this.channels = info?.channels ?? 0;
    this.audioProfile = info?.profile ?? null;
  }

  /** An MP3 frame header in the head bytes: allocation-free. */
  private mp3Frame(head: Uint8Array, at: number): void {
    const rate = mp3SampleRate(head, at, head.length);
    if (rate === 0) return;
    this.sampleRate = rate;
    this.channels = mp3Channels(head, at, head.length);
  }

  private onData(typeId: number, payload: Uint8Array): void {
    const body = typeId === MessageType.DataAmf3 && payload.length > 0 && payload[0] === 0 ? payload.subarray(1) : payload;
    if (body.length > MAX_METADATA_BYTES || !isMetadataMessage(body)) return;
    let values: Amf0Value[];
    try {
      values = decodeAmf0(body, METADATA_LIMITS);
    } catch {
      return; // undecodable within the budget: the metadata stays what it was
    }
    const data = values[0] === '@setDataFrame' ? (values[1] === 'onMetaData' ? values[2] : undefined) : values[1];
    const entries = data instanceof Amf0EcmaArray ? data.entries : data !== undefined && isAmf0Object(data) ? data : null;
    if (entries !== null) this.metadata = readMetadata(entries);
  }

  /** What is known now. `now` (ms, same clock as the `clock` option) defaults to that clock. */
  snapshot(now: number | undefined = this.options.clock?.()): MediaTelemetrySnapshot {
    const md = this.metadata;
    const v = this.video;
    const a = this.audio;
    let video: VideoTelemetry | null = null;
    if (v.messages > 0) {
      const measured = v.frameRate();
      const interval = this.keyframeInterval();
      const ageMs = now !== undefined && !Number.isNaN(this.lastKeyAt) ? Math.max(0, now - this.lastKeyAt) : null;
      const age = ageMs ?? (this.lastKeyTimestamp >= 0 ? (v.lastTimestamp - this.lastKeyTimestamp) | 0 : null);
      video = {
        codec: codecName(v.codec, VIDEO_IDS, VIDEO_FOURCCS),
        fourcc: v.codec >= 0 ? fourccText(v.codec) : null,
        profile: this.videoProfile,
        level: this.videoLevel || null,
        width: this.width || md?.width || null,
        height: this.height || md?.height || null,
        fps: v.gapCount >= MIN_MEASURED_INTERVALS ? measured : (md?.framerate ?? measured),
        bitrate: v.bitrate(),
        keyframeIntervalMs: interval,
        lastKeyframeTimestamp: this.lastKeyTimestamp >= 0 ? this.lastKeyTimestamp : null,
        lastTimestamp: v.lastTimestamp,
        keyframeAgeMs: ageMs,
        nextKeyframeInMs: interval === null || age === null ? null : Math.max(0, interval - Math.max(0, age)),
      };
    }
    let audio: AudioTelemetry | null = null;
    if (a.messages > 0) {
      const legacy = a.codec < 0 ? -a.codec - 1 : -1;
      let rate = this.sampleRate || null;
      let channels = this.channels || null;
      if (legacy >= 0 && legacy !== 10 && rate === null) {
        // The legacy header's own rate and type bits (FFmpeg's flvdec reads them the same way).
        rate = legacy === 4 ? 16000 : legacy === 5 || legacy === 7 || legacy === 8 || legacy === 14 ? 8000 : SOUND_RATES[(this.soundFlags >> 2) & 3]!;
        channels = (this.soundFlags & 1) + 1;
      }
      let codec = codecName(a.codec, AUDIO_IDS, AUDIO_FOURCCS);
      if ((legacy === 0 || legacy === 3) && (this.soundFlags & 2) === 0) codec = 'pcm_u8';
      audio = {
        codec,
        fourcc: a.codec >= 0 ? fourccText(a.codec) : null,
        profile: this.audioProfile,
        sampleRate: rate ?? md?.audioSampleRate ?? null,
        channels: channels ?? md?.audioChannels ?? null,
        bitrate: a.bitrate(),
      };
    }
    const counters = this.options.counters;
    if (counters !== undefined) {
      video = this.videoFromCounters(counters, video, md);
      audio = this.audioFromCounters(counters, audio);
    }
    const vb = video?.bitrate ?? null;
    const ab = audio?.bitrate ?? null;
    return { video, audio, metadata: md, bitrate: vb === null && ab === null ? null : (vb ?? 0) + (ab ?? 0) };
  }

  private readonly videoWindow = new CounterWindow();
  private readonly audioWindow = new CounterWindow();

  /** The video part of a snapshot from the reader's counters (`parsed`: what the collected messages said). */
  private videoFromCounters(c: MediaCounters, parsed: VideoTelemetry | null, md: StreamMetadata | null): VideoTelemetry | null {
    if (c.videoMessages === 0) return parsed;
    const w = this.videoWindow.read(c.videoLastTimestamp, c.videoFirstTimestamp, c.videoBytes, c.videoFrames);
    const legacy = c.videoHead0 >= 0 && (c.videoHead0 & 0x80) === 0 ? c.videoHead0 & 0x0f : -1;
    const key = keyframesOf(c);
    const interval = key.interval;
    const age = key.last === null ? null : Math.max(0, (c.videoLastTimestamp - key.last) | 0);
    return {
      codec: parsed?.codec ?? (legacy >= 0 ? (VIDEO_IDS[legacy] ?? null) : null),
      fourcc: parsed?.fourcc ?? null,
      profile: parsed?.profile ?? null,
      level: parsed?.level ?? null,
      width: parsed?.width ?? md?.width ?? null,
      height: parsed?.height ?? md?.height ?? null,
      fps: w.rate ?? md?.framerate ?? null,
      bitrate: w.bitrate,
      keyframeIntervalMs: interval,
      lastKeyframeTimestamp: key.last,
      lastTimestamp: c.videoLastTimestamp,
      keyframeAgeMs: age,
      nextKeyframeInMs: interval === null || age === null ? null : Math.max(0, interval - age),
    };
  }

  /** The audio part of a snapshot from the reader's counters. */
  private audioFromCounters(c: MediaCounters, parsed: AudioTelemetry | null): AudioTelemetry | null {
    if (c.audioMessages === 0) return parsed;
    const w = this.audioWindow.read(c.audioLastTimestamp, c.audioFirstTimestamp, c.audioBytes, c.audioMessages);
    if (parsed !== null) return { ...parsed, bitrate: w.bitrate };
    // No collected message yet (a legacy format without configuration): the header byte says what it is.
    const format = c.audioHead0 >= 0 ? c.audioHead0 >> 4 : -1;
    const flags = c.audioHead0 & 0x0f;
    const known = format >= 0 && format !== 9 && format !== 10;
    return {
      codec: known ? (AUDIO_IDS[format] ?? null) : null,
      fourcc: null,
      profile: null,
      sampleRate: known ? (format === 4 ? 16000 : format === 5 || format === 7 || format === 8 || format === 14 ? 8000 : SOUND_RATES[(flags >> 2) & 3]!) : null,
      channels: known ? (flags & 1) + 1 : null,
      bitrate: w.bitrate,
    };
  }

  private keyframeInterval(): number | null {
    const n = this.keyGapCount;
    if (n === 0) return null;
    const sorted = Array.from(this.keyGaps.subarray(0, n)).sort((x, y) => x - y);
    return n % 2 === 1 ? sorted[(n - 1) / 2]! : (sorted[n / 2 - 1]! + sorted[n / 2]!) / 2;
  }
}

// ── from the reader's counters ────────────────────────────────────────────────────────────────

function median(values: number[]): number | null {
  const n = values.length;
  if (n === 0) return null;
  values.sort((x, y) => x - y);
  return n % 2 === 1 ? values[(n - 1) / 2]! : (values[n / 2 - 1]! + values[n / 2]!) / 2;
}

/** The last keyframe's timestamp and the median interval of the keyframes the counters kept. */
export function keyframesOf(c: MediaCounters): { last: number | null; interval: number | null } {
  const n = Math.min(c.keyframes, KEYFRAME_RING);
  if (n === 0) return { last: null, interval: null };
  const ring = c.keyframeTimestamps;
  const first = c.keyframes - n;
  const gaps: number[] = [];
  for (let i = first + 1; i < c.keyframes; i++) {
    const gap = (ring[i % KEYFRAME_RING]! - ring[(i - 1) % KEYFRAME_RING]!) | 0;
    if (gap > 0 && gap <= MAX_GAP_MS * 6) gaps.push(gap);
  }
  return { last: ring[(c.keyframes - 1) % KEYFRAME_RING]!, interval: median(gaps) };
}

/** Samples kept per track, at least SAMPLE_SPACING_MS of stream time apart. */
const SAMPLES = 8;
const SAMPLE_SPACING_MS = 1000;

/**
 * Rates from running totals, measured when read: each read is a sample (stream time, bytes,
 * messages), and the rate is the difference to the kept sample nearest TELEMETRY_WINDOW_MS before
 * (at least SAMPLE_SPACING_MS). Until a read has such a sample, the rate is the average since the
 * first message. So the window moves as often as something asks (the registry heartbeat, a
 * metrics scrape, the API), and a session nobody asks about costs nothing.
 */
export class CounterWindow {
  private readonly t = new Float64Array(SAMPLES);
  private readonly bytes = new Float64Array(SAMPLES);
  private readonly messages = new Float64Array(SAMPLES);
  private count = 0;
  private at = 0;
  /** Stream time (extended, ms since the first message or the last discontinuity) of the newest read. */
  private now = 0;
  private lastTs = 0;
  private started = false;
  /** Counts at the origin of `now` (0 at the first message; the totals at a discontinuity). */
  private originBytes = 0;
  private originMessages = 0;
  /** The origin is the first message (its bytes are in the totals), not a sample. */
  private originIsFirst = true;

  read(lastTs: number, firstTs: number, bytes: number, messages: number): { bitrate: number | null; rate: number | null } {
    if (!this.started) {
      this.started = true;
      this.lastTs = firstTs;
    }
    const d = (lastTs - this.lastTs) | 0;
    if (d < -MAX_LATE_MS) {
      // Timestamps restarted: measure again from here.
      this.count = 0;
      this.at = 0;
      this.now = 0;
      this.originBytes = bytes;
      this.originMessages = messages;
      this.originIsFirst = false;
    } else if (d > 0) {
      this.now += d;
    }
    if (d > 0 || d < -MAX_LATE_MS) this.lastTs = lastTs;
    const now = this.now;
    let best = -1;
    let bestScore = Infinity;
    for (let i = 0; i < this.count; i++) {
      const age = now - this.t[i]!;
      if (age < SAMPLE_SPACING_MS) continue;
      const score = Math.abs(age - TELEMETRY_WINDOW_MS);
      if (score < bestScore) {
        bestScore = score;
        best = i;
      }
    }
    let result: { bitrate: number | null; rate: number | null };
    if (best >= 0) {
      const span = now - this.t[best]!;
      result = { bitrate: Math.round(((bytes - this.bytes[best]!) * 8000) / span), rate: round2(((messages - this.messages[best]!) * 1000) / span) };
    } else {
      // Since the origin: with the first message there, n messages cover n - 1 intervals.
      const n = messages - this.originMessages;
      const intervals = this.originIsFirst ? n - 1 : n;
      const b = bytes - this.originBytes;
      result =
        now <= 0 || intervals <= 0
          ? { bitrate: null, rate: null }
          : { bitrate: Math.round(((this.originIsFirst ? (b * intervals) / n : b) * 8000) / now), rate: round2((intervals * 1000) / now) };
    }
    const newest = this.count === 0 ? -1 : (this.at + SAMPLES - 1) % SAMPLES;
    if (newest < 0 || now - this.t[newest]! >= SAMPLE_SPACING_MS) {
      this.t[this.at] = now;
      this.bytes[this.at] = bytes;
      this.messages[this.at] = messages;
      this.at = (this.at + 1) % SAMPLES;
      if (this.count < SAMPLES) this.count++;
    }
    return result;
  }
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}

// ── onMetaData ────────────────────────────────────────────────────────────────────────────────

function num(v: Amf0Value, min: number, max: number): number | null {
  return typeof v === 'number' && v >= min && v <= max ? v : null;
}

function int(v: Amf0Value, min: number, max: number): number | null {
  const n = num(v, min, max);
  return n === null ? null : Math.round(n);
}

/** videocodecid / audiocodecid: a legacy id, or a FourCC as a number or a 4-character string. */
function metadataCodec(v: Amf0Value, ids: Record<number, string>, fourccs: Record<string, string>): string | null {
  if (typeof v === 'string') return v.length === 4 ? (fourccs[v] ?? null) : null;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) return null;
  return codecName(v < 16 ? -(v + 1) : v, ids, fourccs);
}

function printable(v: Amf0Value): string | null {
  if (typeof v !== 'string') return null;
  const s = v.slice(0, MAX_ENCODER_CHARS).replace(/[^\x20-\x7e]/g, '?');
  return s.length > 0 ? s : null;
}

function readMetadata(m: Amf0Object): StreamMetadata {
  const kbps = (v: Amf0Value): number | null => {
    const k = num(v, 0, 10_000_000);
    return k === null ? null : Math.round(k * 1000);
  };
  const stereo = m['stereo'];
  return {
    width: int(m['width'] ?? null, 1, 16384),
    height: int(m['height'] ?? null, 1, 16384),
    framerate: num(m['framerate'] ?? m['videoframerate'] ?? null, 0.001, 1000),
    videoBitrate: kbps(m['videodatarate'] ?? null),
    audioBitrate: kbps(m['audiodatarate'] ?? null),
    audioSampleRate: int(m['audiosamplerate'] ?? null, 1, 1_000_000),
    audioChannels: int(m['audiochannels'] ?? null, 1, 64) ?? (typeof stereo === 'boolean' ? (stereo ? 2 : 1) : null),
    videoCodec: metadataCodec(m['videocodecid'] ?? null, VIDEO_IDS, VIDEO_FOURCCS),
    audioCodec: metadataCodec(m['audiocodecid'] ?? null, AUDIO_IDS, AUDIO_FOURCCS),
    encoder: printable(m['encoder'] ?? null),
  };
}

// ── the summary the API, the registry and `status` show ───────────────────────────────────────

/** One publisher's media in a few flat, bounded fields (numbers rounded; null when unknown). */
export interface MediaSummary {
  videoCodec: string | null;
  /** The E-RTMP FourCC when the video came with one. */
  videoFourcc: string | null;
  videoProfile: string | null;
  width: number | null;
  height: number | null;
  fps: number | null;
  /** bits/s */
  videoBitrate: number | null;
  audioCodec: string | null;
  audioFourcc: string | null;
  sampleRate: number | null;
  channels: number | null;
  audioBitrate: number | null;
  /** Video plus audio, bits/s. */
  bitrate: number | null;
  keyframeIntervalMs: number | null;
  keyframeAgeMs: number | null;
  /** When the next keyframe is expected, ms from now (0: overdue): when a move that waits for one happens. */
  nextKeyframeInMs: number | null;
}

const whole = (x: number | null | undefined): number | null => (x === null || x === undefined ? null : Math.round(x));

export function summarize(s: MediaTelemetrySnapshot): MediaSummary | null {
  const v = s.video;
  const a = s.audio;
  if (v === null && a === null) return null;
  return {
    videoCodec: v?.codec ?? null,
    videoFourcc: v?.fourcc ?? null,
    videoProfile: v?.profile ?? null,
    width: v?.width ?? null,
    height: v?.height ?? null,
    fps: v?.fps ?? null,
    videoBitrate: whole(v?.bitrate),
    audioCodec: a?.codec ?? null,
    audioFourcc: a?.fourcc ?? null,
    sampleRate: a?.sampleRate ?? null,
    channels: a?.channels ?? null,
    audioBitrate: whole(a?.bitrate),
    bitrate: whole(s.bitrate),
    keyframeIntervalMs: whole(v?.keyframeIntervalMs),
    keyframeAgeMs: whole(v?.keyframeAgeMs),
    nextKeyframeInMs: whole(v?.nextKeyframeInMs),
  };
}
