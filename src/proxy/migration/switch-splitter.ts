import type { ChunkReader, MessageInfo, MessageStartWatcher } from '../../rtmp/chunk-reader.js';
import { MessageType } from '../../rtmp/constants.js';
import { isVideoKeyframe } from '../../rtmp/media.js';

/**
 * Pure: finds the switch point in the client→server bytes of an armed session, without ever
 * forwarding the first header byte of the switch message to the old backend.
 *
 * The session's C→S ChunkReader calls `onMessageStart` (watchMessageStarts) while `push`
 * feeds it. The switch happens at the first message start for which `accept(csid, firstByte)`
 * holds (a video keyframe with no other csid half-received), at the first byte of its header.
 * To see the first payload byte of a message whose header ends a buffer, and the whole header of
 * a message whose header is split across buffers, the trailing bytes of such a header are held
 * back (≤ 18 bytes) until the next buffer.
 *
 * `push` returns the bytes for the old backend; once `switched`, the caller routes every message
 * completed from then on (the reader's message callbacks, during and after this push) to the new
 * backend; none of them started before the switch point.
 */
export class SwitchSplitter implements MessageStartWatcher {
  switched = false;
  /** The C→S chunk size in force at the switch point (for the FCUnpublish written to the old backend). */
  chunkSizeAtSwitch = 0;
  /** Timestamp of the switch message (the keyframe). */
  switchTimestamp = 0;
  private held: Buffer | null = null;
  private data: Buffer = Buffer.alloc(0);
  private switchAt = -1;
  /** A video message whose header ended the last buffer: its header start, in held-bytes coordinates. */
  private pendingStart = -1;
  private pendingCsid = 0;
  private pendingType = 0;
  /** Set during push: header of a message start that ended exactly at the end of data. */
  private lastStartAt = -1;
  private lastStartCsid = 0;
  private lastStartType = 0;

  constructor(
    private readonly reader: ChunkReader,
    private readonly accept: (csid: number, typeId: number, firstByte: number) => boolean,
    /** Called at the switch point, before any later message completes (inside `push`). */
    private readonly onSwitch: () => void = () => {},
  ) {}

  /** The buffer being fed (held bytes + the new buffer): collected payloads are views of it. */
  get feeding(): Buffer {
    return this.data;
  }

  /**
   * Feeds one client buffer to the reader. Returns the bytes the old backend gets now (null for
   * none). A ProtocolError from the reader is rethrown after `unforwarded` was set to the bytes
   * of this push not given to the old backend yet.
   */
  push(buf: Buffer): Buffer | null {
    let data = buf;
    let start = 0;
    if (this.held !== null) {
      data = Buffer.concat([this.held, buf]);
      start = this.held.length;
      this.held = null;
    }
    this.data = data;
    this.switchAt = -1;
    this.lastStartAt = -1;
    this.unforwarded = null;
    if (this.pendingStart >= 0) {
      const at = this.pendingStart;
      this.pendingStart = -1;
      if (!this.switched && start < data.length && this.accept(this.pendingCsid, this.pendingType, data[start]!)) this.decide(at, this.pendingCsid);
    }
    const wasSwitched = this.switched && this.switchAt < 0;
    try {
      if (start < data.length) this.reader.feed(data, start);
    } catch (err) {
      this.unforwarded = wasSwitched ? null : this.switchAt >= 0 ? data.subarray(0, this.switchAt) : data;
      throw err;
    }
    if (wasSwitched) return null;
    if (this.switchAt >= 0) return this.switchAt > 0 ? data.subarray(0, this.switchAt) : null;
    // Not switched: hold back a trailing partial header, or a whole header with no payload byte yet.
    let end = data.length;
    if (this.reader.pendingHeaderBytes > 0) {
      // The partial header may have begun in bytes already forwarded (before arming).
      end = Math.max(0, end - this.reader.pendingHeaderBytes);
    } else if (this.lastStartAt >= 0) {
      end = this.lastStartAt;
      this.pendingStart = 0;
      this.pendingCsid = this.lastStartCsid;
      this.pendingType = this.lastStartType;
    }
    if (end < data.length) this.held = Buffer.from(data.subarray(end));
    return end === data.length ? data : end > 0 ? data.subarray(0, end) : null;
  }

  /** Bytes of the failed push not given to the old backend (see `push`). */
  unforwarded: Buffer | null = null;

  /** Abandoning the switch: the held bytes, for the old backend. */
  release(): Buffer | null {
    const h = this.held;
    this.held = null;
    this.pendingStart = -1;
    return h;
  }

  /** Told by the reader (watchMessageStarts) while armed. */
  onMessageStart(csid: number, typeId: number, length: number, headerEnd: number, headerLength: number): void {
    if (this.switched || length === 0 || (typeId !== MessageType.Video && typeId !== MessageType.Audio)) return;
    const start = headerEnd - headerLength;
    if (start < 0) return; // its header began in bytes already forwarded (before arming)
    if (headerEnd < this.data.length) {
      if (this.accept(csid, typeId, this.data[headerEnd]!)) this.decide(start, csid);
    } else {
      this.lastStartAt = start;
      this.lastStartCsid = csid;
      this.lastStartType = typeId;
    }
  }

  private decide(at: number, csid: number): void {
    this.switchAt = at;
    this.switched = true;
    this.chunkSizeAtSwitch = this.reader.chunkSize;
    this.switchTimestamp = this.reader.lastHeader(csid)?.timestamp ?? 0;
    this.onSwitch();
  }
}

/**
 * The switch criterion: a video keyframe (by its first byte) starting while no other csid has a
 * half message — or, for a stream that has no video (`audioOnly()`), any audio message: every
 * AAC/MP3/Opus frame decodes on its own.
 */
export function keyframeSwitch(reader: ChunkReader, audioOnly: () => boolean = () => false): (csid: number, typeId: number, firstByte: number) => boolean {
  const one = Buffer.alloc(1);
  return (csid, typeId, firstByte) => {
    if (typeId === MessageType.Video) {
      one[0] = firstByte;
      if (!isVideoKeyframe(one)) return false;
    } else if (typeId !== MessageType.Audio || !audioOnly()) {
      return false;
    }
    return reader.idleExcept(csid);
  };
}

/** Relay mode's criterion, on a complete message: a video keyframe, or any audio message of a stream without video. */
export function isSwitchMessage(info: MessageInfo, audioOnly: boolean): boolean {
  return info.typeId === MessageType.Video ? isVideoKeyframe(info.head) : info.typeId === MessageType.Audio && audioOnly && info.length > 0;
}
