import { MessageType } from './constants.js';
import { isVideoKeyframe } from './media.js';

/** Keyframe timestamps kept (a ring): enough for the median of the last few intervals. */
export const KEYFRAME_RING = 8;

/**
 * What a chunk reader counts of the audio and video messages it reads, for the media telemetry
 * (media-telemetry.ts reads these lazily, when a snapshot is asked for).
 *
 * `count` runs once per complete message inside the reader's own per-message code, on what the
 * reader already holds (type, timestamp, length and the first bytes of the payload): integer
 * additions and stores and, for video, a look at its first one or two bytes (a coded frame? a
 * keyframe?); nothing allocated. Totals are plain numbers (exact up to 2^53 bytes).
 */
export class MediaCounters {
  videoMessages = 0;
  /** Video messages carrying a coded frame (what the frame rate counts). */
  videoFrames = 0;
  videoBytes = 0;
  /** Timestamp (ms, as sent) of the first and of the last video message. */
  videoFirstTimestamp = 0;
  videoLastTimestamp = 0;
  /** First payload byte of the last video message (legacy frame type and codec id, or the E-RTMP flag and packet type). */
  videoHead0 = -1;
  audioMessages = 0;
  audioBytes = 0;
  audioFirstTimestamp = 0;
  audioLastTimestamp = 0;
  /** First payload byte of the last audio message (sound format and flags). */
  audioHead0 = -1;
  /** Coded key frames (sequence headers and command frames excluded). */
  keyframes = 0;
  /** Timestamps of the last KEYFRAME_RING key frames; the newest at (keyframes - 1) % KEYFRAME_RING. */
  readonly keyframeTimestamps = new Float64Array(KEYFRAME_RING);

  /** One complete message: `head` holds its first `headLen` payload bytes. */
  count(typeId: number, timestamp: number, length: number, head: Uint8Array, headLen: number): void {
    if (typeId === MessageType.Video) {
      if (this.videoMessages++ === 0) this.videoFirstTimestamp = timestamp;
      this.videoBytes += length;
      this.videoLastTimestamp = timestamp;
      if (headLen === 0) return;
      const b0 = head[0]!;
      this.videoHead0 = b0;
      if (!isCodedFrame(head, headLen)) return;
      this.videoFrames++;
      if (isVideoKeyframe(head)) this.keyframeTimestamps[this.keyframes++ % KEYFRAME_RING] = timestamp;
    } else if (typeId === MessageType.Audio) {
      if (this.audioMessages++ === 0) this.audioFirstTimestamp = timestamp;
      this.audioBytes += length;
      this.audioLastTimestamp = timestamp;
      if (headLen > 0) this.audioHead0 = head[0]!;
    }
  }
}

/**
 * A video message carrying a coded frame, not decoder configuration or an end of sequence: legacy
 * AVC/HEVC packet type 1 (other legacy codecs have none), E-RTMP CodedFrames or CodedFramesX
 * (also inside a Multitrack packet).
 */
export function isCodedFrame(head: Uint8Array, len: number): boolean {
  const b0 = head[0]!;
  if (b0 & 0x80) {
    let packetType = b0 & 0x0f;
    if (packetType === 6) {
      if (len < 2) return false;
      packetType = head[1]! & 0x0f;
    }
    return packetType === 1 || packetType === 3;
  }
  const id = b0 & 0x0f;
  return id !== 7 && id !== 12 ? true : len >= 2 && head[1] === 1;
}
