/**
 * The client end of an RTMP play, as a pure state machine: plain handshake, `connect` (the
 * player's own command object, replayed), `createStream`, Set Buffer Length and `play` — until
 * `NetStream.Play.Start` — then the protocol business of a player (acknowledgements, ping
 * answers) while the stream's messages go to the sink. Bytes in (`receive`), bytes and outcomes
 * out. The proxy uses it to subscribe a player to its stream on another backend
 * (proxy/session/player-follower.ts), the way PublisherProtocol publishes a migrating session.
 */
import { type Amf0Limits, encodeAmf0 } from './amf0.js';
import { type ByteBudget, type ChunkReaderLimits, type MessageInfo, ChunkReader, UNLIMITED_BUDGET, collectEverything } from './chunk-reader.js';
import { ChunkWriter } from './chunk-writer.js';
import { COMMAND_CSID, MAX_MESSAGE_SIZE, MessageType } from './constants.js';
import { ProtocolError } from './errors.js';
import { HandshakeEnd } from './handshake-peer.js';
import {
  type Command,
  commandMessage,
  controlMessage,
  decodeCommand,
  readCreateStreamResult,
  readStatusCode,
  userControlMessage,
  UserControlEvent,
} from './messages.js';

export interface PlayPlan {
  /** The player's `connect` command object and arguments (SessionFacts.connectReplay). */
  connect: Buffer;
  /** The stream name as the player gave it to `play` (its query included: tokens). */
  streamKey: string;
  /** Set Buffer Length sent before `play`, in ms (what ffmpeg asks for: 3000). */
  bufferMs?: number;
}

export type PlayFailure = 'handshake' | 'connect-rejected' | 'create-stream-failed' | 'play-rejected' | 'protocol-error';

export interface PlayerSink {
  /** Bytes for the backend; returns the socket's write result. */
  write(buf: Buffer): boolean;
  /** `NetStream.Play.Start`: the stream's messages follow. */
  playing(streamId: number): void;
  failed(reason: PlayFailure, detail: string): void;
  /** A message of the stream (audio, video, data) once playing; control and commands never. */
  message(info: MessageInfo, payload: Buffer): void;
  /**
   * Once playing, the stream's publisher left (Stream EOF, Play.UnpublishNotify, Play.Stop):
   * `true`; it (re)started (Stream Begin, Play.PublishNotify): `false`.
   */
  stopped?(stopped: boolean): void;
}

/** Transaction ids, as FFmpeg numbers a player's commands. */
const TXN = { connect: 1, createStream: 2, play: 3 } as const;
/** Chunk stream of stream-level commands (play), as FFmpeg uses it. */
const STREAM_COMMAND_CSID = 8;

export type PlayerPhase = 'init' | 'handshake' | 'connect' | 'create-stream' | 'play' | 'playing' | 'failed';

/** Pure: the proxy as an RTMP player towards one backend (see the module comment). */
export class PlayerProtocol {
  phase: PlayerPhase = 'init';
  streamId = 0;
  /** Bytes received from the backend, handshake included (the acknowledgement sequence number). */
  bytesIn = 0;
  private readonly reader: ChunkReader;
  private readonly writer = new ChunkWriter(true);
  private readonly hs = new HandshakeEnd('client');
  private windowAckSize = 0;
  private lastAck = 0;
  /** The stream's publisher left since Play.Start (and has not started again). */
  private stopped = false;

  constructor(
    private readonly plan: PlayPlan,
    private readonly sink: PlayerSink,
    limits: Partial<ChunkReaderLimits> = {},
    private readonly amfLimits?: Partial<Amf0Limits>,
    budget: ByteBudget = UNLIMITED_BUDGET,
  ) {
    const maxMessageSize = limits.maxMessageSize ?? MAX_MESSAGE_SIZE;
    this.reader = new ChunkReader(
      { message: (info, payload) => this.onMessage(info, payload) },
      collectEverything,
      { ...limits, maxCollectedSize: maxMessageSize },
      budget,
    );
  }

  /** Writes C0 + C1. */
  start(): void {
    if (this.phase !== 'init') return;
    this.phase = 'handshake';
    this.sink.write(this.hs.hello());
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
    if (this.windowAckSize > 0 && this.bytesIn - this.lastAck >= this.windowAckSize / 2) {
      this.lastAck = this.bytesIn;
      this.sink.write(this.writer.write(controlMessage(MessageType.Acknowledgement, this.bytesIn % 2 ** 32)));
    }
  }

  /** A clean end of the play: deleteStream (no reply expected). */
  stop(): void {
    if (this.phase !== 'playing') return;
    this.sink.write(this.writer.write(commandMessage(COMMAND_CSID, 0, 'deleteStream', 0, null, this.streamId)));
  }

  /** Said once per change: nginx-rtmp tells a publisher's end with both Stream EOF and UnpublishNotify. */
  private streamStopped(stopped: boolean): void {
    if (this.stopped === stopped) return;
    this.stopped = stopped;
    this.sink.stopped?.(stopped);
  }

  private fail(reason: PlayFailure, detail: string): void {
    if (this.phase === 'failed') return;
    this.phase = 'failed';
    this.sink.failed(reason, detail);
  }

  private handshake(buf: Buffer): Buffer | null {
    let r;
    try {
      r = this.hs.push(buf);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.fail('handshake', err.message);
      return null;
    }
    if (r.reply !== null) this.sink.write(r.reply);
    if (!this.hs.done) return null;
    this.phase = 'connect';
    const c = this.plan.connect;
    const payload = Buffer.concat([encodeAmf0(['connect', TXN.connect]), c.length > 0 ? c : encodeAmf0([null])]);
    this.sink.write(this.writer.write({ csid: COMMAND_CSID, timestamp: 0, typeId: MessageType.CommandAmf0, streamId: 0, payload }));
    return buf.subarray(r.next);
  }

  private onMessage(info: MessageInfo, payload: Buffer | null): void {
    const p = payload ?? Buffer.alloc(0);
    switch (info.typeId) {
      case MessageType.SetChunkSize:
      case MessageType.Abort:
      case MessageType.Acknowledgement:
      case MessageType.SetPeerBandwidth:
        return; // the reader applies the first two
      case MessageType.WindowAckSize:
        if (p.length >= 4) this.windowAckSize = p.readUInt32BE(0);
        return;
      case MessageType.UserControl:
        if (p.length >= 6 && p.readUInt16BE(0) === UserControlEvent.PingRequest) {
          this.sink.write(this.writer.write(userControlMessage(UserControlEvent.PingResponse, p.readUInt32BE(2))));
        } else if (p.length >= 2 && this.phase === 'playing') {
          const event = p.readUInt16BE(0);
          if (event === UserControlEvent.StreamEOF) this.streamStopped(true);
          else if (event === UserControlEvent.StreamBegin) this.streamStopped(false);
        }
        return;
      case MessageType.CommandAmf0:
      case MessageType.CommandAmf3:
        this.onCommand(info, p);
        return;
      default:
        if (this.phase === 'playing') this.sink.message(info, p);
    }
  }

  private onCommand(info: MessageInfo, payload: Buffer): void {
    let cmd: Command | null;
    try {
      cmd = decodeCommand(info.typeId, payload, this.amfLimits);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.fail('protocol-error', err.message);
      return;
    }
    if (cmd === null) return;
    const isReply = cmd.name === '_result' || cmd.name === '_error';
    if (this.phase === 'connect' && isReply && cmd.transactionId === TXN.connect) {
      if (cmd.name === '_error') return this.fail('connect-rejected', readStatusCode(cmd) ?? 'connect _error');
      this.phase = 'create-stream';
      this.sink.write(this.writer.write(commandMessage(COMMAND_CSID, 0, 'createStream', TXN.createStream, null)));
      return;
    }
    if (this.phase === 'create-stream' && isReply && cmd.transactionId === TXN.createStream) {
      const id = cmd.name === '_result' ? readCreateStreamResult(cmd) : null;
      if (id === null) return this.fail('create-stream-failed', `createStream ${cmd.name}`);
      this.streamId = id;
      this.phase = 'play';
      this.sink.write(this.writer.write(userControlMessage(UserControlEvent.SetBufferLength, id, this.plan.bufferMs ?? 3000)));
      const play = commandMessage(STREAM_COMMAND_CSID, id, 'play', TXN.play, null, this.plan.streamKey, -2);
      this.sink.write(this.writer.write(play));
      return;
    }
    if (this.phase === 'playing' && cmd.name === 'onStatus') {
      const code = readStatusCode(cmd) ?? '';
      if (code === 'NetStream.Play.UnpublishNotify' || code === 'NetStream.Play.Stop') this.streamStopped(true);
      else if (code === 'NetStream.Play.PublishNotify') this.streamStopped(false);
      return;
    }
    if (this.phase === 'play' && cmd.name === 'onStatus') {
      const code = readStatusCode(cmd) ?? '';
      if (code === 'NetStream.Play.Start') {
        this.phase = 'playing';
        this.sink.playing(this.streamId);
      } else if (code === 'NetStream.Play.StreamNotFound' || code === 'NetStream.Play.Failed') {
        this.fail('play-rejected', code);
      }
    }
    // Every other command (onBWDone, Play.Reset, |RtmpSampleAccess …) is this connection's own.
  }
}
