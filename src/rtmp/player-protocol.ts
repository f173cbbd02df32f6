/**
 * The client end of an RTMP play, as a pure state machine: the connection (ClientEnd: handshake,
 * `connect` with the player's own command object replayed, `createStream`, acknowledgements, pings),
 * then Set Buffer Length and `play` — until `NetStream.Play.Start` — while the stream's messages go
 * to the sink. Bytes in (`receive`), bytes and outcomes out. The proxy uses it to subscribe a
 * player to its stream on another backend (proxy/session/player-follower.ts), the way
 * PublisherProtocol publishes a migrating session.
 */
import type { Amf0Limits } from './amf0.js';
import type { ByteBudget, ChunkReaderLimits, MessageInfo } from './chunk-reader.js';
import { type ClientEndFailure, ClientEnd } from './client-end.js';
import { COMMAND_CSID, MessageType } from './constants.js';
import { commandMessage, readStatusCode, userControlMessage, UserControlEvent } from './messages.js';

export interface PlayPlan {
  /** The player's `connect` command object and arguments (SessionFacts.connectReplay). */
  connect: Buffer;
  /** The stream name as the player gave it to `play` (its query included: tokens). */
  streamKey: string;
  /** Set Buffer Length sent before `play`, in ms (what ffmpeg asks for: 3000). */
  bufferMs?: number;
}

export type PlayFailure = ClientEndFailure | 'play-rejected';

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
  private readonly end: ClientEnd<'play-rejected'>;
  /** Set at `NetStream.Play.Start`. */
  private playing = false;
  /** The stream's publisher left since Play.Start (and has not started again). */
  private stopped = false;

  constructor(
    private readonly plan: PlayPlan,
    private readonly sink: PlayerSink,
    limits: Partial<ChunkReaderLimits> = {},
    amfLimits?: Partial<Amf0Limits>,
    budget?: ByteBudget,
  ) {
    this.end = new ClientEnd<'play-rejected'>(
      plan.connect,
      { chunkSize: null, txn: TXN },
      {
        write: (buf) => sink.write(buf),
        failed: (reason, detail) => sink.failed(reason, detail),
        streamCreated: (id) => {
          this.end.send(userControlMessage(UserControlEvent.SetBufferLength, id, this.plan.bufferMs ?? 3000));
          this.end.send(commandMessage(STREAM_COMMAND_CSID, id, 'play', TXN.play, null, this.plan.streamKey, -2));
        },
        message: (info, payload) => this.onStreamMessage(info, payload),
      },
      limits,
      amfLimits,
      budget,
    );
  }

  get phase(): PlayerPhase {
    const p = this.end.phase;
    return p === 'stream' ? (this.playing ? 'playing' : 'play') : p;
  }

  get streamId(): number {
    return this.end.streamId;
  }

  /** Bytes received from the backend, handshake included (the acknowledgement sequence number). */
  get bytesIn(): number {
    return this.end.bytesIn;
  }

  /** Writes C0 + C1. */
  start(): void {
    this.end.start();
  }

  receive(buf: Buffer): void {
    this.end.receive(buf);
  }

  /** What the reader holds back to the byte budget, when the connection is given up. */
  release(): void {
    this.end.reader.release();
  }

  /** A clean end of the play: deleteStream (no reply expected). */
  stop(): void {
    if (this.phase !== 'playing') return;
    this.end.send(commandMessage(COMMAND_CSID, 0, 'deleteStream', 0, null, this.streamId));
  }

  /** Said once per change: nginx-rtmp tells a publisher's end with both Stream EOF and UnpublishNotify. */
  private streamStopped(stopped: boolean): void {
    if (this.stopped === stopped) return;
    this.stopped = stopped;
    this.sink.stopped?.(stopped);
  }

  /** After createStream: the play exchange until Play.Start, then the stream's messages and its stop/start notices. */
  private onStreamMessage(info: MessageInfo, p: Buffer): void {
    switch (info.typeId) {
      case MessageType.UserControl:
        if (p.length >= 2 && this.playing) {
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
        if (this.playing) this.sink.message(info, p);
    }
  }

  private onCommand(info: MessageInfo, payload: Buffer): void {
    const cmd = this.end.decode(info, payload);
    if (cmd === null || cmd.name !== 'onStatus') return; // onBWDone, |RtmpSampleAccess …: this connection's own
    const code = readStatusCode(cmd) ?? '';
    if (this.playing) {
      if (code === 'NetStream.Play.UnpublishNotify' || code === 'NetStream.Play.Stop') this.streamStopped(true);
      else if (code === 'NetStream.Play.PublishNotify') this.streamStopped(false);
    } else if (code === 'NetStream.Play.Start') {
      this.playing = true;
      this.sink.playing(this.streamId);
    } else if (code === 'NetStream.Play.StreamNotFound' || code === 'NetStream.Play.Failed') {
      this.end.fail('play-rejected', code);
    }
  }
}
