/**
 * Proxy-side migration: moving a publish from a draining backend to a healthy one
 * inside the proxy, for publishers that support neither Go Away nor E-RTMP reconnect.
 *
 *   1. open a connection to a healthy backend and act as the client there: plain handshake, Set
 *      Chunk Size, the session's own `connect` replayed (same app/tcUrl/flashVer …),
 *      `releaseStream`, `FCPublish`, `createStream`, `publish` with the same key
 *      (UpstreamPublisher) — until `NetStream.Publish.Start`;
 *   2. arm the client→server path: at the client's next video keyframe (SwitchSplitter finds
 *      the first byte of that message's first chunk header), bytes before it go to the old
 *      backend untouched, followed by FCUnpublish + deleteStream; from the keyframe on, every
 *      client message is re-chunked for the new backend, preceded by the cached metadata and
 *      sequence headers (MediaCache);
 *   3. from then on the proxy terminates RTMP on both sides for that session (the session's
 *      relay mode): it answers the new backend's pings, acknowledges what the client sent, and
 *      forwards later server messages with the stream id mapped back.
 *
 * This module holds the parts that do not need the session's sockets: pure protocol state
 * machines (unit-tested with scripted peers), the in-flight limiter and the socket wrapper of
 * the new backend connection. The switching itself lives in session/migration-controller.ts.
 */
import type net from 'node:net';
import { type Amf0Limits, encodeAmf0 } from '../rtmp/amf0.js';
import type { BackendConfig } from '../balancer/types.js';
import {
  type ByteBudget,
  type ChunkReaderLimits,
  type CollectPolicy,
  type MessageInfo,
  type MessageStartWatcher,
  ChunkReader,
  UNLIMITED_BUDGET,
} from '../rtmp/chunk-reader.js';
import { type OutgoingMessage, ChunkWriter } from '../rtmp/chunk-writer.js';
import { COMMAND_CSID, MAX_MESSAGE_SIZE, MessageType } from '../rtmp/constants.js';
import { ProtocolError } from '../rtmp/errors.js';
import { HandshakeEnd } from '../rtmp/handshake-peer.js';
import { isAudioSequenceHeader, isMetadataMessage, isVideoKeyframe, isVideoSequenceHeader } from '../rtmp/media.js';
import {
  type Command,
  commandMessage,
  controlMessage,
  decodeCommand,
  readCreateStreamResult,
  readStatusCode,
  userControlMessage,
  UserControlEvent,
} from '../rtmp/messages.js';
import type { ProxyObserver } from './observer.js';
import { type Dial, dialTcp } from './dial.js';

export interface MigrationSettings {
  maxInFlight: number;
  /** The new backend must reach NetStream.Publish.Start within this. */
  timeoutMs: number;
  /** Once armed, the switch must happen (a keyframe) within this. */
  switchTimeoutMs: number;
  /** Per session, bytes of cached metadata + sequence headers. */
  maxCachedBytes: number;
  /** Chunk size towards a backend the proxy publishes to. */
  chunkSize: number;
  connectTimeoutMs: number;
}

// ───────────────────────────── what is collected, what is cached ─────────────────────────────

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

/** While armed or relaying: every message whole. */
export const collectEverything: CollectPolicy = () => true;

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

// ───────────────────────────── the client side, towards the new backend ─────────────────────────────

/** What to replay on the new backend: the session's own commands, as AMF0 bytes the client sent. */
export interface ReplayPlan {
  /** The client's `connect` command object and arguments (SessionFacts.connectReplay). */
  connect: Buffer;
  /** `publish` arguments after the command object: [key, type, …] (SessionFacts.publishReplay). */
  publishArgs: Buffer;
  streamKey: string;
  /** Our chunk size towards the backend (sent with Set Chunk Size before connect, as OBS does). */
  chunkSize: number;
}

export type UpstreamFailure = 'handshake' | 'connect-rejected' | 'create-stream-failed' | 'publish-rejected' | 'protocol-error';

export interface UpstreamSink {
  /** Bytes for the backend; returns the socket's write result. */
  write(buf: Buffer): boolean;
  published(streamId: number): void;
  failed(reason: UpstreamFailure, detail: string): void;
  /** A server message meant for the client (only while `forwarding`; control messages never). */
  message(info: MessageInfo, payload: Buffer): void;
}

/** A clean end of a publish, as a publisher ends it: FCUnpublish then deleteStream (both without a reply expected). */
export function unpublishCommands(streamKey: string | null, streamId: number | null): OutgoingMessage[] {
  return [commandMessage(COMMAND_CSID, 0, 'FCUnpublish', 0, null, streamKey), commandMessage(COMMAND_CSID, 0, 'deleteStream', 0, null, streamId)];
}

/** Transaction ids of the replayed commands, as FFmpeg numbers them. */
const TXN = { connect: 1, releaseStream: 2, FCPublish: 3, createStream: 4, publish: 5 } as const;
/** Chunk stream for stream-level commands (publish), as FFmpeg / the reference publisher use it. */
const STREAM_COMMAND_CSID = 8;

export type UpstreamPhase = 'init' | 'handshake' | 'connect' | 'create-stream' | 'publish' | 'published' | 'failed';

/**
 * Pure: the proxy as an RTMP publisher towards one backend. `start()` writes C0+C1, `receive()`
 * takes the backend's bytes; the sink gets bytes to write and the outcome. After
 * `published`, `send` re-chunks messages for the backend; server messages are handled here when
 * they are protocol business (Set Chunk Size, Window Ack Size → our acknowledgements, pings →
 * pongs, replies to the replayed commands) and passed to `sink.message` once `forwarding` is set
 * (the switch), otherwise dropped: the client never learns about this connection before.
 */
export class UpstreamPublisher {
  phase: UpstreamPhase = 'init';
  streamId = 0;
  /** Bytes received from the backend, handshake included (the acknowledgement sequence number). */
  bytesIn = 0;
  /** Bytes written to the backend. */
  bytesOut = 0;
  /** Set at the switch (startForwarding): server messages go to the client from now on. */
  private forwarding = false;
  readonly reader: ChunkReader;
  private readonly writer = new ChunkWriter(true);
  private readonly hs = new HandshakeEnd('client');
  private windowAckSize = 0;
  private lastAck = 0;

  constructor(
    private readonly plan: ReplayPlan,
    private readonly sink: UpstreamSink,
    limits: Partial<ChunkReaderLimits> = {},
    private readonly amfLimits?: Partial<Amf0Limits>,
    budget: ByteBudget = UNLIMITED_BUDGET,
  ) {
    const maxMessageSize = limits.maxMessageSize ?? MAX_MESSAGE_SIZE;
    this.reader = new ChunkReader({ message: (info, payload) => this.onMessage(info, payload) }, collectEverything, { ...limits, maxCollectedSize: maxMessageSize }, budget);
  }

  get streamIdKnown(): boolean {
    return this.phase === 'publish' || this.phase === 'published';
  }

  /** Writes C0 + C1 (plain handshake, docs/protocol.md#handshake: accepted by nginx-rtmp, SRS, node-media-server). */
  start(): void {
    if (this.phase !== 'init') return;
    this.phase = 'handshake';
    this.write(this.hs.hello());
  }

  receive(buf: Buffer): void {
    if (this.phase === 'failed' || this.phase === 'init') return;
    this.bytesIn += buf.length;
    let rest: Buffer | null = buf;
    if (this.phase === 'handshake') rest = this.handshake(buf);
    if (rest === null || rest.length === 0) return;
    try {
      this.reader.feed(rest);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.fail('protocol-error', `${err.code}: ${err.message}`);
      return;
    }
    if (this.windowAckSize > 0 && this.bytesIn - this.lastAck >= this.windowAckSize) {
      this.lastAck = this.bytesIn;
      this.write(this.writer.write(controlMessage(MessageType.Acknowledgement, this.bytesIn)));
    }
  }

  /** Re-chunks one message for the backend (ours: chunk size, header compression). */
  send(msg: OutgoingMessage): boolean {
    return this.write(this.writer.write(msg));
  }

  /** The switch: server messages (other than protocol business) go to the client from now on. */
  startForwarding(): void {
    this.forwarding = true;
  }

  /** A clean end of the publish: FCUnpublish + deleteStream. */
  unpublish(): void {
    if (this.phase !== 'published') return;
    for (const m of unpublishCommands(this.plan.streamKey, this.streamId)) this.send(m);
  }

  private write(buf: Buffer): boolean {
    this.bytesOut += buf.length;
    return this.sink.write(buf);
  }

  private fail(reason: UpstreamFailure, detail: string): void {
    if (this.phase === 'failed') return;
    this.phase = 'failed';
    this.sink.failed(reason, detail);
  }

  /** Takes S0+S1+S2 (answering C2), then starts the command exchange. Returns the bytes after S2. */
  private handshake(buf: Buffer): Buffer | null {
    let r;
    try {
      r = this.hs.push(buf);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.fail('handshake', err.message);
      return null;
    }
    if (r.reply !== null) this.write(r.reply);
    if (!this.hs.done) return null;
    this.phase = 'connect';
    this.send(controlMessage(MessageType.SetChunkSize, this.plan.chunkSize));
    this.writer.chunkSize = this.plan.chunkSize;
    // The client's own bytes after a transaction id of ours (a connect without a command object gets null).
    const c = this.plan.connect;
    const payload = Buffer.concat([encodeAmf0(['connect', TXN.connect]), c.length > 0 ? c : encodeAmf0([null])]);
    this.send({ csid: COMMAND_CSID, timestamp: 0, typeId: MessageType.CommandAmf0, streamId: 0, payload });
    return buf.subarray(r.next);
  }

  private onMessage(info: MessageInfo, payload: Buffer | null): void {
    const t = info.typeId;
    const p = payload ?? Buffer.alloc(0);
    switch (t) {
      case MessageType.SetChunkSize:
      case MessageType.Abort:
      case MessageType.Acknowledgement:
      case MessageType.SetPeerBandwidth:
        return; // the reader applies the first two; nothing to do for the others
      case MessageType.WindowAckSize:
        if (p.length >= 4) this.windowAckSize = p.readUInt32BE(0);
        return;
      case MessageType.UserControl:
        if (p.length >= 6 && p.readUInt16BE(0) === UserControlEvent.PingRequest) {
          this.send(userControlMessage(UserControlEvent.PingResponse, p.readUInt32BE(2)));
        }
        return;
      case MessageType.CommandAmf0:
      case MessageType.CommandAmf3:
        if (this.phase !== 'published' && this.onCommand(info, p)) return;
        break;
      default:
        break;
    }
    if (this.forwarding && this.phase === 'published') this.sink.message(info, p);
  }

  /** The replayed command exchange. Returns true when the message was consumed. */
  private onCommand(info: MessageInfo, payload: Buffer): boolean {
    let cmd: Command | null;
    try {
      cmd = decodeCommand(info.typeId, payload, this.amfLimits);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.fail('protocol-error', err.message);
      return true;
    }
    if (cmd === null) return true;
    const isReply = cmd.name === '_result' || cmd.name === '_error';
    if (this.phase === 'connect' && isReply && cmd.transactionId === TXN.connect) {
      if (cmd.name === '_error') {
        this.fail('connect-rejected', readStatusCode(cmd) ?? 'connect _error');
        return true;
      }
      this.phase = 'create-stream';
      const key = this.plan.streamKey;
      this.send(commandMessage(COMMAND_CSID, 0, 'releaseStream', TXN.releaseStream, null, key));
      this.send(commandMessage(COMMAND_CSID, 0, 'FCPublish', TXN.FCPublish, null, key));
      this.send(commandMessage(COMMAND_CSID, 0, 'createStream', TXN.createStream, null));
      return true;
    }
    if (this.phase === 'create-stream' && isReply && cmd.transactionId === TXN.createStream) {
      const id = cmd.name === '_result' ? readCreateStreamResult(cmd) : null;
      if (id === null) {
        this.fail('create-stream-failed', `createStream ${cmd.name}`);
        return true;
      }
      this.streamId = id;
      this.phase = 'publish';
      const payload = Buffer.concat([encodeAmf0(['publish', TXN.publish, null]), this.plan.publishArgs]);
      this.send({ csid: STREAM_COMMAND_CSID, timestamp: 0, typeId: MessageType.CommandAmf0, streamId: id, payload });
      return true;
    }
    if (this.phase === 'publish') {
      if (isReply && cmd.transactionId === TXN.publish && cmd.name === '_error') {
        this.fail('publish-rejected', readStatusCode(cmd) ?? 'publish _error');
        return true;
      }
      if (cmd.name === 'onStatus') {
        const code = readStatusCode(cmd) ?? '';
        const info0 = cmd.args[0] as Record<string, unknown> | null | undefined;
        const level = info0 !== null && typeof info0 === 'object' ? info0['level'] : undefined;
        if (code === 'NetStream.Publish.Start') {
          this.phase = 'published';
          this.sink.published(this.streamId);
          return true;
        }
        if (level === 'error' || code.startsWith('NetStream.Publish.')) {
          this.fail('publish-rejected', code || 'onStatus error');
          return true;
        }
      }
    }
    // Anything else before the switch (onBWDone, onFCPublish, replies to releaseStream …) is ours.
    return true;
  }
}

// ───────────────────────────── where the client's stream switches ─────────────────────────────

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

// ───────────────────────────── in-flight limit ─────────────────────────────

export interface MigrationTicket {
  /** Gives the slot back (or leaves the queue). Idempotent. */
  release(): void;
}

/**
 * At most `maxInFlight` migrations run at once per replica; the others wait in FIFO order. A
 * session holds a slot from the start of its first attempt to its switch or its failure.
 */
export class MigrationCoordinator {
  inFlight = 0;
  private readonly queue: { start: () => void; ticket: { released: boolean } }[] = [];

  constructor(
    readonly settings: MigrationSettings,
    readonly metrics: ProxyObserver | null = null,
  ) {}

  get queued(): number {
    return this.queue.length;
  }

  /** Runs `start` soon (a microtask) if a slot is free, else when one frees up. */
  acquire(start: () => void): MigrationTicket {
    const state = { released: false, running: false };
    const ticket: MigrationTicket = {
      release: () => {
        if (state.released) return;
        state.released = true;
        if (state.running) {
          this.inFlight--;
          this.next();
        } else {
          const i = this.queue.findIndex((q) => q.ticket === state);
          if (i >= 0) this.queue.splice(i, 1);
        }
      },
    };
    const run = (): void => {
      state.running = true;
      this.inFlight++;
      // Never inside the caller's stack (a drain iterating the pool's sessions).
      queueMicrotask(() => {
        if (!state.released) start();
      });
    };
    if (this.inFlight < this.settings.maxInFlight) run();
    else this.queue.push({ start: run, ticket: state });
    return ticket;
  }

  private next(): void {
    while (this.inFlight < this.settings.maxInFlight && this.queue.length > 0) {
      const q = this.queue.shift()!;
      if (!q.ticket.released) q.start();
    }
  }
}

// ───────────────────────────── the new backend's socket ─────────────────────────────

/** Why a connection to a migration target ended. */
export type UpstreamEnd = UpstreamFailure | 'refused' | 'connect-timeout' | 'backend-idle' | 'backend-error' | 'backend-closed';

export interface UpstreamEvents {
  published(streamId: number): void;
  /** The attempt failed before publishing (or the connection ended before the switch). */
  failed(reason: UpstreamEnd, detail: string): void;
  /** A server message for the client (after the switch). */
  message(info: MessageInfo, payload: Buffer): void;
  /** The connection ended after it was published. */
  closed(reason: UpstreamEnd): void;
  /** The socket's write buffer drained. */
  drain(): void;
}

/** One TCP connection to a migration target, speaking as the publisher (UpstreamPublisher). */
export class UpstreamConnection {
  readonly protocol: UpstreamPublisher;
  readonly socket: net.Socket;
  readonly startedAt = Date.now();
  /** Destroyed by us: no more events. */
  private aborted = false;
  /** `failed` or `closed` was emitted. */
  private reported = false;
  private connected = false;
  private lastError: string | null = null;
  private timeoutReason: 'connect-timeout' | 'backend-idle' | null = null;

  constructor(
    readonly target: BackendConfig,
    plan: ReplayPlan,
    private readonly events: UpstreamEvents,
    opts: {
      connectTimeoutMs: number;
      idleTimeoutMs: number;
      chunkLimits?: Partial<ChunkReaderLimits>;
      amfLimits?: Partial<Amf0Limits>;
      preamble?: Buffer | null;
      /** The session's buffer budget: this connection's partial messages count in it. */
      budget?: ByteBudget;
      dial?: Dial;
    },
  ) {
    this.socket = (opts.dial ?? dialTcp)(target);
    // The backend PROXY protocol header, before any RTMP byte.
    if (opts.preamble) this.socket.write(opts.preamble);
    const sock = this.socket;
    this.protocol = new UpstreamPublisher(
      plan,
      {
        write: (buf) => (sock.destroyed ? false : sock.write(buf)),
        published: (id) => events.published(id),
        failed: (reason, detail) => this.report(reason, detail),
        message: (info, payload) => events.message(info, payload),
      },
      opts.chunkLimits,
      opts.amfLimits,
      opts.budget,
    );
    sock.setNoDelay(true);
    const timer = setTimeout(() => {
      this.timeoutReason = 'connect-timeout';
      sock.destroy(new Error(`connect timeout after ${opts.connectTimeoutMs} ms`));
    }, opts.connectTimeoutMs);
    timer.unref();
    sock.once('connect', () => {
      clearTimeout(timer);
      this.connected = true;
      sock.setTimeout(opts.idleTimeoutMs);
      this.protocol.start();
    });
    sock.on('data', (buf: Buffer) => this.protocol.receive(buf));
    sock.on('drain', () => events.drain());
    sock.on('timeout', () => {
      this.timeoutReason = 'backend-idle';
      sock.destroy(new Error('idle timeout'));
    });
    sock.on('error', (err) => {
      this.lastError = err.message;
    });
    sock.on('end', () => {
      if (this.published) sock.end();
      else this.report('backend-closed', 'the backend closed the connection before publishing');
    });
    sock.on('close', () => {
      clearTimeout(timer);
      this.protocol.reader.release();
      const reason = this.timeoutReason ?? (this.connected ? (this.lastError !== null ? 'backend-error' : 'backend-closed') : 'refused');
      this.report(reason, this.lastError ?? 'connection closed');
    });
  }

  get published(): boolean {
    return this.protocol.phase === 'published';
  }

  send(msg: OutgoingMessage): boolean {
    return this.protocol.send(msg);
  }

  /** The switch: this connection's server messages reach the client from now on. */
  startForwarding(): void {
    this.protocol.startForwarding();
  }

  /** FIN after what was written (FCUnpublish + deleteStream first when asked); `closed` follows. */
  end(unpublish: boolean): void {
    if (unpublish) this.protocol.unpublish();
    this.socket.end();
    const s = this.socket;
    setTimeout(() => s.destroy(), 5000).unref();
  }

  /** Drops the connection; no event follows. */
  destroy(): void {
    this.aborted = true;
    this.socket.destroy();
    this.protocol.reader.release();
  }

  private report(reason: UpstreamEnd, detail: string): void {
    if (this.aborted || this.reported) return;
    this.reported = true;
    if (this.published) {
      this.events.closed(reason);
      return;
    }
    this.socket.destroy();
    this.events.failed(reason, detail);
  }
}
