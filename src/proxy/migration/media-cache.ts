import { type ByteBudget, type CollectPolicy, type MessageInfo, UNLIMITED_BUDGET } from '../../rtmp/chunk-reader.js';
import { MessageType } from '../../rtmp/constants.js';
import { isAudioSequenceHeader, isMetadataMessage, isVideoSequenceHeader } from '../../rtmp/media.js';

/**
 * C→S collect policy of a session that may migrate: control and commands (as always), and
 * audio, video and data messages only when their first bytes say they are decoder configuration
 * or metadata (the reader looks, ChunkReader `'head'`): other media messages cost nothing more
 * than for a session that is never migrated.
 */
export const migrationCollectPolicy: CollectPolicy = (typeId) => {
  if (typeId === MessageType.Video || typeId === MessageType.Audio || typeId === MessageType.DataAmf0 || typeId === MessageType.DataAmf3) return 'head';
  return typeId <= MessageType.SetPeerBandwidth || typeId === MessageType.CommandAmf0 || typeId === MessageType.CommandAmf3;
};

export interface CachedMessage {
  csid: number;
  typeId: number;
  timestamp: number;
  payload: Buffer;
}

/**
 * The last `@setDataFrame`/`onMetaData` and the last video and audio decoder configuration the
 * client sent, copied (never views of socket buffers), bounded by `maxBytes` in total and
 * charged to the session's buffer budget. A message that does not fit either sets `overflow`
 * (`refused` when the budget said no): the session can then not be migrated losslessly.
 */
export class MediaCache {
  metadata: CachedMessage | null = null;
  video: CachedMessage | null = null;
  audio: CachedMessage | null = null;
  overflow = false;
  /** The buffer budget refused a message. */
  refused = false;

  constructor(
    private readonly maxBytes: number,
    private readonly budget: ByteBudget = UNLIMITED_BUDGET,
  ) {}

  get bytes(): number {
    return (this.metadata?.payload.length ?? 0) + (this.video?.payload.length ?? 0) + (this.audio?.payload.length ?? 0);
  }

  /**
   * Offers a complete client message the reader collected as configuration; keeps a copy when it
   * is configuration and differs from the one kept (encoders that repeat their sequence headers at
   * every keyframe cost a comparison, not a copy).
   */
  offer(info: MessageInfo, payload: Buffer): void {
    const t = info.typeId;
    let slot: 'metadata' | 'video' | 'audio';
    if (t === MessageType.Video) {
      if (!isVideoSequenceHeader(payload)) return;
      slot = 'video';
    } else if (t === MessageType.Audio) {
      if (!isAudioSequenceHeader(payload)) return;
      slot = 'audio';
    } else if (t === MessageType.DataAmf0) {
      if (!isMetadataMessage(payload)) return;
      slot = 'metadata';
    } else if (t === MessageType.DataAmf3) {
      if (!(payload.length > 0 && payload[0] === 0 && isMetadataMessage(payload.subarray(1)))) return;
      slot = 'metadata';
    } else {
      return;
    }
    const kept = this[slot];
    if (kept !== null && kept.csid === info.csid && kept.typeId === t && kept.payload.equals(payload)) {
      kept.timestamp = info.timestamp;
      return;
    }
    const before = kept?.payload.length ?? 0;
    if (this.bytes - before + payload.length > this.maxBytes) {
      this.overflow = true;
      return;
    }
    if (payload.length > before && !this.budget.take(payload.length - before)) {
      this.overflow = true;
      this.refused = true;
      return;
    }
    if (payload.length < before) this.budget.give(before - payload.length);
    this[slot] = { csid: info.csid, typeId: t, timestamp: info.timestamp, payload: Buffer.from(payload) };
  }

  /** Drops everything, giving its bytes back to the budget (the session can no longer migrate). */
  clear(): void {
    this.budget.give(this.bytes);
    this.metadata = this.video = this.audio = null;
  }

  /** What a new backend needs before the first keyframe, in the order publishers send it. */
  replay(): CachedMessage[] {
    const out: CachedMessage[] = [];
    if (this.metadata !== null) out.push(this.metadata);
    if (this.video !== null) out.push(this.video);
    if (this.audio !== null) out.push(this.audio);
    return out;
  }
}
