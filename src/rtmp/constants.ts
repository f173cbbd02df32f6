/**
 * RTMP wire constants. Section numbers refer to the Adobe RTMP 1.0 specification
 * ("RTMP spec") and to docs/protocol.md.
 */

/** Message type ids (RTMP spec §5.4, §7.1; Go Away from the facebookarchive spec). */
export const MessageType = {
  SetChunkSize: 1,
  Abort: 2,
  Acknowledgement: 3,
  UserControl: 4,
  WindowAckSize: 5,
  SetPeerBandwidth: 6,
  Audio: 8,
  Video: 9,
  DataAmf3: 15,
  SharedObjectAmf3: 16,
  CommandAmf3: 17,
  DataAmf0: 18,
  SharedObjectAmf0: 19,
  CommandAmf0: 20,
  Aggregate: 22,
  GoAway: 32,
} as const;

/** Chunk stream id reserved for protocol control messages (RTMP spec §5.4). */
export const CONTROL_CSID = 2;
/** Chunk stream id used by convention for NetConnection commands (librtmp, FFmpeg, nginx-rtmp). */
export const COMMAND_CSID = 3;

/** Default chunk size until a Set Chunk Size arrives (RTMP spec §5.4.1). */
export const DEFAULT_CHUNK_SIZE = 128;
/** Largest message length the 3-byte length field of a chunk header can carry (RTMP spec §5.3.1.2): 16 MiB − 1. */
export const MAX_MESSAGE_SIZE = 0xffffff;
/** Largest chunk size the spec allows: 31 bits, top bit must be 0 (RTMP spec §5.4.1). */
export const MAX_SPEC_CHUNK_SIZE = 0x7fffffff;
/** 3-byte timestamp value meaning "an extended 4-byte timestamp follows" (RTMP spec §5.3.1.3). */
export const EXTENDED_TIMESTAMP_MARK = 0xffffff;

/** Handshake (RTMP spec §5.2): C0/S0 is one byte, C1/S1 and C2/S2 are 1536 bytes each. */
export const HANDSHAKE_PACKET_SIZE = 1536;
export const HANDSHAKE_TOTAL = 1 + 2 * HANDSHAKE_PACKET_SIZE;
export const RTMP_VERSION_PLAIN = 3;
/** C0 = 6 announces RTMPE (encrypted): the proxy cannot parse it (docs/protocol.md#handshake). */
export const RTMP_VERSION_ENCRYPTED = 6;
