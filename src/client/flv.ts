/**
 * FLV reader (and a minimal writer for tests and fixtures), per Adobe's "Video File Format
 * Specification" v10 (Annex E): a 9-byte header (`FLV`, version 1, flags 0x04 audio / 0x01 video,
 * header size), then `PreviousTagSize0` and tags, each followed by its own size:
 *
 *   tag = type (1: 8 audio, 9 video, 18 script data; bit 0x20 = filtered/encrypted)
 *         data size (3) · timestamp (3, low bits) · timestamp extended (1, high bits) · stream id (3, always 0)
 *         data (data size bytes) · previous tag size (4 = 11 + data size)
 *
 * The tag bodies are exactly RTMP audio/video/data message bodies (docs/protocol.md#media-tag-heads), which is
 * why a publisher can send them as they are. Pure: bytes in, tags out.
 */
import { isAacSequenceHeader, isVideoKeyframe, readVideoHead } from '../rtmp/media.js';

export const FLV_TAG_AUDIO = 8;
export const FLV_TAG_VIDEO = 9;

const TAG_HEADER_SIZE = 11;
const PREV_TAG_SIZE = 4;
/** An RTMP message length is 24 bits, so an FLV tag body never exceeds 16 MiB - 1. */
const MAX_TAG_DATA = 0xffffff;

export interface FlvHeader {
  version: number;
  hasAudio: boolean;
  hasVideo: boolean;
}

export interface FlvTag {
  /** 8 audio, 9 video, 18 script data (the filter bit removed). */
  type: number;
  /** Milliseconds (32-bit: 24 low bits + the extended byte as high bits). */
  timestamp: number;
  /** The tag body: an RTMP message body of the same type. */
  data: Buffer;
}

export class FlvError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FlvError';
  }
}

/**
 * Incremental FLV demuxer: `push` bytes as they arrive (any split), get the complete tags.
 * Tags are copied out of the input so callers may keep them.
 */
export class FlvDemuxer {
  header: FlvHeader | null = null;
  /** Bytes consumed so far (header and tags). */
  offset = 0;
  tagsRead = 0;
  private buf: Buffer = Buffer.alloc(0);
  private headerSkip = 0;

  push(chunk: Uint8Array): FlvTag[] {
    this.buf = this.buf.length === 0 ? Buffer.from(chunk) : Buffer.concat([this.buf, chunk]);
    const out: FlvTag[] = [];
    let p = 0;
    if (this.header === null) {
      if (this.buf.length < 9) return out;
      if (this.buf.toString('latin1', 0, 3) !== 'FLV') throw new FlvError('not an FLV stream (no "FLV" signature)');
      const flags = this.buf[4]!;
      const headerSize = this.buf.readUInt32BE(5);
      if (headerSize < 9) throw new FlvError(`FLV header size ${headerSize} < 9`);
      this.header = { version: this.buf[3]!, hasAudio: (flags & 0x04) !== 0, hasVideo: (flags & 0x01) !== 0 };
      this.headerSkip = headerSize - 9 + PREV_TAG_SIZE; // extra header bytes, then PreviousTagSize0
      p = 9;
    }
    if (this.headerSkip > 0) {
      const n = Math.min(this.headerSkip, this.buf.length - p);
      this.headerSkip -= n;
      p += n;
      if (this.headerSkip > 0) return this.keep(p, out);
    }
    while (this.buf.length - p >= TAG_HEADER_SIZE) {
      const type = this.buf[p]! & 0x1f;
      const size = this.buf.readUIntBE(p + 1, 3);
      if (size > MAX_TAG_DATA) throw new FlvError(`tag data size ${size} too large`);
      const total = TAG_HEADER_SIZE + size + PREV_TAG_SIZE;
      if (this.buf.length - p < total) break;
      const timestamp = (this.buf.readUIntBE(p + 4, 3) | (this.buf[p + 7]! << 24)) >>> 0;
      const data = Buffer.from(this.buf.subarray(p + TAG_HEADER_SIZE, p + TAG_HEADER_SIZE + size));
      out.push({ type, timestamp, data });
      this.tagsRead++;
      p += total;
    }
    return this.keep(p, out);
  }

  /** Bytes held back: a partial tag at the end of what was pushed (a recording cut mid-write). */
  get pendingBytes(): number {
    return this.buf.length;
  }

  private keep(p: number, out: FlvTag[]): FlvTag[] {
    this.offset += p;
    this.buf = p >= this.buf.length ? Buffer.alloc(0) : this.buf.subarray(p);
    return out;
  }
}

/** Whole-file parse (recordings, fixtures). `truncated` is true when the file ends inside a tag. */
export function parseFlv(bytes: Uint8Array): { header: FlvHeader; tags: FlvTag[]; truncated: boolean } {
  const d = new FlvDemuxer();
  const tags = d.push(bytes);
  if (d.header === null) throw new FlvError('FLV stream shorter than its header');
  return { header: d.header, tags, truncated: d.pendingBytes > 0 };
}

/**
 * Tags from a byte stream (a file stream, `process.stdin`, ffmpeg's stdout). Stops at the end
 * of the input; a partial last tag is reported as an error (the producer died mid-tag).
 */
export async function* readFlvTags(input: AsyncIterable<Uint8Array | string>): AsyncGenerator<FlvTag> {
  const d = new FlvDemuxer();
  for await (const chunk of input) {
    if (typeof chunk === 'string') throw new FlvError('FLV input must be a byte stream, not text');
    for (const tag of d.push(chunk)) yield tag;
  }
  if (d.header === null) throw new FlvError('input ended before the FLV header');
  if (d.pendingBytes > 0) throw new FlvError(`input ended inside a tag (${d.pendingBytes} bytes left over)`);
}

// ── classification ────────────────────────────────────────────────────────────────────────────

/**
 * What a tag is for the Go Away logic:
 * - `metadata`: script data `onMetaData` (sent as `@setDataFrame onMetaData`, replayed after a reconnect);
 * - `video-config` / `audio-config`: AVC/HEVC/E-RTMP sequence start, AAC sequence header (replayed);
 * - `keyframe`: a video keyframe that is not a sequence header (a clean place to switch connections);
 * - `video`, `audio`: other media frames; `data`: other script data (cue points, text);
 * - `sequence-end`: AVC/HEVC end of sequence (packet type 2, which FFmpeg writes last with the
 *   keyframe bit set): neither a frame nor a place to switch.
 */
export type TagKind = 'metadata' | 'video-config' | 'audio-config' | 'keyframe' | 'video' | 'audio' | 'data' | 'sequence-end';

export function classifyTag(tag: FlvTag): TagKind {
  if (tag.type === FLV_TAG_VIDEO) {
    const head = readVideoHead(tag.data);
    if (head?.sequenceHeader) return 'video-config';
    if (isSequenceEnd(tag.data)) return 'sequence-end';
    return isVideoKeyframe(tag.data) ? 'keyframe' : 'video';
  }
  if (tag.type === FLV_TAG_AUDIO) return isAacSequenceHeader(tag.data) ? 'audio-config' : 'audio';
  return isOnMetaData(tag.data) ? 'metadata' : 'data';
}

/** AVCPacketType / HEVC packet type 2, or E-RTMP PacketType SequenceEnd (2). */
function isSequenceEnd(data: Buffer): boolean {
  if (data.length < 2) return false;
  const b0 = data[0]!;
  if (b0 & 0x80) return (b0 & 0x0f) === 2;
  const codec = b0 & 0x0f;
  return (codec === 7 || codec === 12) && data[1] === 2;
}

/** Media frames are what "zero frames lost" counts: audio and video tags that are not decoder configuration. */
export function isMediaFrame(kind: TagKind): kind is 'keyframe' | 'video' | 'audio' {
  return kind === 'keyframe' || kind === 'video' || kind === 'audio';
}

/** AMF0 string "onMetaData" at the start of a script tag (or after "@setDataFrame" on the RTMP side). */
const ON_METADATA = Buffer.from([0x02, 0x00, 0x0a, ...Buffer.from('onMetaData', 'latin1')]);
const SET_DATA_FRAME = Buffer.from([0x02, 0x00, 0x0d, ...Buffer.from('@setDataFrame', 'latin1')]);

function isOnMetaData(data: Buffer): boolean {
  if (data.subarray(0, ON_METADATA.length).equals(ON_METADATA)) return true;
  return (
    data.subarray(0, SET_DATA_FRAME.length).equals(SET_DATA_FRAME) &&
    data.subarray(SET_DATA_FRAME.length, SET_DATA_FRAME.length + ON_METADATA.length).equals(ON_METADATA)
  );
}

/**
 * The RTMP data message for an FLV `onMetaData` script tag: `@setDataFrame` prepended, as FFmpeg
 * and OBS publish it (the server stores it and serves it to players as `onMetaData`).
 */
export function setDataFrameBody(data: Buffer): Buffer {
  if (data.subarray(0, SET_DATA_FRAME.length).equals(SET_DATA_FRAME)) return data;
  return Buffer.concat([SET_DATA_FRAME, data]);
}

// ── writer (fixtures, tests) ──────────────────────────────────────────────────────────────────

export function encodeFlvHeader(opts: { audio?: boolean; video?: boolean } = {}): Buffer {
  const b = Buffer.alloc(13);
  b.write('FLV', 0, 'latin1');
  b[3] = 1;
  b[4] = ((opts.audio ?? true) ? 0x04 : 0) | ((opts.video ?? true) ? 0x01 : 0);
  b.writeUInt32BE(9, 5);
  b.writeUInt32BE(0, 9); // PreviousTagSize0
  return b;
}

export function encodeFlvTag(tag: FlvTag): Buffer {
  if (tag.data.length > MAX_TAG_DATA) throw new FlvError(`tag data size ${tag.data.length} too large`);
  const b = Buffer.alloc(TAG_HEADER_SIZE + tag.data.length + PREV_TAG_SIZE);
  b[0] = tag.type;
  b.writeUIntBE(tag.data.length, 1, 3);
  b.writeUIntBE(tag.timestamp & 0xffffff, 4, 3);
  b[7] = (tag.timestamp >>> 24) & 0xff;
  tag.data.copy(b, TAG_HEADER_SIZE);
  b.writeUInt32BE(TAG_HEADER_SIZE + tag.data.length, TAG_HEADER_SIZE + tag.data.length);
  return b;
}

export function encodeFlv(tags: readonly FlvTag[], opts?: { audio?: boolean; video?: boolean }): Buffer {
  return Buffer.concat([encodeFlvHeader(opts), ...tags.map(encodeFlvTag)]);
}
