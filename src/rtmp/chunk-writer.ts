import { DEFAULT_CHUNK_SIZE, EXTENDED_TIMESTAMP_MARK } from './constants.js';

/** An RTMP message to put on the wire. */
export interface OutgoingMessage {
  csid: number;
  timestamp: number;
  typeId: number;
  streamId: number;
  payload: Uint8Array;
}

/** Length of the basic header for a csid (spec §5.3.1.1). */
export function basicHeaderLength(csid: number): number {
  return csid < 64 ? 1 : csid < 320 ? 2 : 3;
}

function writeBasicHeader(out: Buffer, at: number, fmt: number, csid: number): number {
  if (csid < 2 || csid > 65599) throw new RangeError(`csid ${csid} out of range 2..65599`);
  if (csid < 64) {
    out[at] = (fmt << 6) | csid;
    return at + 1;
  }
  if (csid < 320) {
    out[at] = fmt << 6;
    out[at + 1] = csid - 64;
    return at + 2;
  }
  out[at] = (fmt << 6) | 1;
  out[at + 1] = (csid - 64) & 0xff; // low byte first (spec §5.3.1.1)
  out[at + 2] = (csid - 64) >> 8;
  return at + 3;
}

/**
 * Encodes a complete fmt 0 chunk header: basic header, 11-byte message header and, for
 * timestamps ≥ 0xFFFFFF, the extended timestamp (spec §5.3.1.2.1, §5.3.1.3).
 */
export function encodeFmt0Header(csid: number, timestamp: number, length: number, typeId: number, streamId: number): Buffer {
  const ext = timestamp >= EXTENDED_TIMESTAMP_MARK;
  const out = Buffer.alloc(basicHeaderLength(csid) + 11 + (ext ? 4 : 0));
  let p = writeBasicHeader(out, 0, 0, csid);
  out.writeUIntBE(ext ? EXTENDED_TIMESTAMP_MARK : timestamp, p, 3);
  out.writeUIntBE(length, p + 3, 3);
  out[p + 6] = typeId;
  out.writeUInt32LE(streamId, p + 7); // message stream id is little-endian
  p += 11;
  if (ext) out.writeUInt32BE(timestamp >>> 0, p);
  return out;
}

/**
 * Per-direction chunk writer. With `compress` it uses fmt 1/2/3 headers where the previous
 * message on the same csid allows (as FFmpeg and librtmp do); without, every message starts
 * with fmt 0, which every receiver accepts. Continuation chunks are fmt 3 and repeat the
 * extended timestamp, as FFmpeg, librtmp and nginx-rtmp expect (docs/protocol.md#extended-timestamps).
 */
export class ChunkWriter {
  chunkSize = DEFAULT_CHUNK_SIZE;
  private readonly last = new Map<number, { timestamp: number; delta: number; length: number; typeId: number; streamId: number }>();

  constructor(private readonly compress = false) {}

  /** Encodes one message into chunks; returns one Buffer. */
  write(msg: OutgoingMessage): Buffer {
    const { csid, typeId, streamId } = msg;
    const timestamp = msg.timestamp >>> 0;
    const length = msg.payload.length;
    const prev = this.last.get(csid);
    let fmt = 0;
    let field = timestamp;
    if (this.compress && prev !== undefined && prev.streamId === streamId && timestamp >= prev.timestamp) {
      const delta = timestamp - prev.timestamp;
      if (prev.length === length && prev.typeId === typeId) {
        fmt = delta === prev.delta ? 3 : 2;
      } else {
        fmt = 1;
      }
      field = delta;
    }
    const ext = field >= EXTENDED_TIMESTAMP_MARK;
    const basic = basicHeaderLength(csid);
    const msgHeader = fmt === 0 ? 11 : fmt === 1 ? 7 : fmt === 2 ? 3 : 0;
    const nChunks = Math.max(1, Math.ceil(length / this.chunkSize));
    const contHeader = basic + (ext ? 4 : 0);
    const out = Buffer.alloc(basic + msgHeader + (ext ? 4 : 0) + length + (nChunks - 1) * contHeader);
    let p = writeBasicHeader(out, 0, fmt, csid);
    if (fmt <= 2) {
      out.writeUIntBE(ext ? EXTENDED_TIMESTAMP_MARK : field, p, 3);
      p += 3;
    }
    if (fmt <= 1) {
      out.writeUIntBE(length, p, 3);
      out[p + 3] = typeId;
      p += 4;
    }
    if (fmt === 0) {
      out.writeUInt32LE(streamId, p);
      p += 4;
    }
    if (ext) p = out.writeUInt32BE(field, p);
    let sent = 0;
    for (;;) {
      const n = Math.min(this.chunkSize, length - sent);
      out.set(msg.payload.subarray(sent, sent + n), p);
      p += n;
      sent += n;
      if (sent >= length) break;
      p = writeBasicHeader(out, p, 3, csid);
      if (ext) p = out.writeUInt32BE(field, p);
    }
    this.last.set(csid, { timestamp, delta: fmt === 0 ? timestamp : field, length, typeId, streamId });
    return out;
  }
}
