/**
 * Media boundaries from the first bytes of an audio or video message body (FLV tag body,
 * docs/protocol.md#media-tag-heads; E-RTMP ExVideoTagHeader from veovera/enhanced-rtmp).
 */
import { MessageType } from './constants.js';

export interface VideoHead {
  keyframe: boolean;
  /** Decoder configuration (AVC/HEVC sequence header, or E-RTMP SequenceStart). */
  sequenceHeader: boolean;
  /** Legacy codec id (7 AVC, 12 HEVC) or the E-RTMP FourCC. */
  codec: number | string;
}

/** Reads the video tag header; null when the body is too short to tell. */
export function readVideoHead(head: Uint8Array): VideoHead | null {
  if (head.length < 1) return null;
  const b0 = head[0]!;
  if (b0 & 0x80) {
    // ExVideoTagHeader: IsExHeader bit, 3-bit frame type, 4-bit packet type, then FourCC.
    const frameType = (b0 >> 4) & 0x07;
    let packetType = b0 & 0x0f;
    let at = 1;
    if (packetType === 6) {
      // E-RTMP v2 Multitrack: byte 1 = multitrack type << 4 | the real packet type, then the
      // FourCC (one-track and same-codec multitrack carry it once, before the track data).
      if (head.length < 2) return null;
      packetType = head[1]! & 0x0f;
      at = 2;
    }
    if (head.length < at + 4) return null;
    const fourcc = String.fromCharCode(head[at]!, head[at + 1]!, head[at + 2]!, head[at + 3]!);
    return { keyframe: frameType === 1, sequenceHeader: packetType === 0, codec: fourcc };
  }
  const frameType = b0 >> 4;
  const codec = b0 & 0x0f;
  // AVC (7) and HEVC-in-FLV (12) carry a packet type byte: 0 = sequence header.
  const hasPacketType = codec === 7 || codec === 12;
  if (hasPacketType && head.length < 2) return null;
  return { keyframe: frameType === 1, sequenceHeader: hasPacketType && head[1] === 0, codec };
}

/** AAC (sound format 10) sequence header: byte 1 = AACPacketType 0. */
export function isAacSequenceHeader(head: Uint8Array): boolean {
  return head.length >= 2 && head[0]! >> 4 === 10 && head[1] === 0;
}

/** Allocation-free keyframe test for the hot path (legacy and E-RTMP headers). */
export function isVideoKeyframe(head: Uint8Array): boolean {
  if (head.length < 1) return false;
  const b0 = head[0]!;
  return (b0 & 0x80 ? (b0 >> 4) & 0x07 : b0 >> 4) === 1;
}

/**
 * Allocation-free: the message is video decoder configuration — an AVC/HEVC sequence header
 * (legacy codec 7/12, packet type 0) or an E-RTMP SequenceStart (also inside a Multitrack
 * packet). Reads `head[0..len)`; false when too short to tell.
 */
export function isVideoSequenceHeader(head: Uint8Array, len = head.length): boolean {
  if (len < 2) return false;
  const b0 = head[0]!;
  if (b0 & 0x80) {
    const packetType = b0 & 0x0f;
    return packetType === 0 || (packetType === 6 && (head[1]! & 0x0f) === 0);
  }
  const codec = b0 & 0x0f;
  return (codec === 7 || codec === 12) && head[1] === 0;
}

/**
 * Allocation-free: the message is audio decoder configuration — the AAC sequence header (sound
 * format 10, AACPacketType 0) or an E-RTMP ExAudioTagHeader (sound format 9) SequenceStart,
 * also inside a Multitrack (packet type 5) packet. Reads `head[0..len)`.
 */
export function isAudioSequenceHeader(head: Uint8Array, len = head.length): boolean {
  if (len < 1) return false;
  const b0 = head[0]!;
  const format = b0 >> 4;
  if (format === 10) return len >= 2 && head[1] === 0;
  if (format === 9) {
    const packetType = b0 & 0x0f;
    return packetType === 0 || (packetType === 5 && len >= 2 && (head[1]! & 0x0f) === 0);
  }
  return false;
}

/**
 * Allocation-free: a data message (type 18) that carries stream metadata, i.e. whose first AMF0
 * value is the string `@setDataFrame` or `onMetaData` (what publishers send once after publish).
 */
export function isMetadataMessage(payload: Uint8Array): boolean {
  if (payload.length < 3 || payload[0] !== 0x02) return false;
  const n = (payload[1]! << 8) | payload[2]!;
  if (payload.length < 3 + n) return false;
  return (n === 13 && asciiAt(payload, 3, '@setDataFrame')) || (n === 10 && asciiAt(payload, 3, 'onMetaData'));
}

function asciiAt(b: Uint8Array, at: number, s: string): boolean {
  for (let i = 0; i < s.length; i++) if (b[at + i] !== s.charCodeAt(i)) return false;
  return true;
}

/**
 * Allocation-free, from the first min(length, 8) payload bytes `head[0..len)` of a message:
 * decoder configuration (video or audio sequence header, see above) or stream metadata — a data
 * message (AMF0 type 18, or AMF3 type 15 with its leading 0 byte) whose first value is the string
 * `@setDataFrame` or `onMetaData` (the string's length and first 5 or 4 characters; isMetadataMessage
 * checks the whole name once the message is complete).
 */
export function isConfigurationHead(typeId: number, head: Uint8Array, len: number): boolean {
  if (typeId === MessageType.Video) return isVideoSequenceHeader(head, len);
  if (typeId === MessageType.Audio) return isAudioSequenceHeader(head, len);
  if (typeId !== MessageType.DataAmf0 && typeId !== MessageType.DataAmf3) return false;
  const at = typeId === MessageType.DataAmf3 ? 1 : 0;
  if (at === 1 && (len < 1 || head[0] !== 0)) return false;
  if (len < at + 7 || head[at] !== 0x02 || head[at + 1] !== 0) return false;
  const n = head[at + 2]!;
  return (
    (n === 13 && head[at + 3] === 0x40 && head[at + 4] === 0x73 && head[at + 5] === 0x65 && head[at + 6] === 0x74) ||
    (n === 10 && head[at + 3] === 0x6f && head[at + 4] === 0x6e && head[at + 5] === 0x4d && head[at + 6] === 0x65)
  );
}
