import { type Amf0Limits, isAmf0Object } from './amf0.js';
import type { MessageInfo } from './chunk-reader.js';
import { MessageType } from './constants.js';
import { ProtocolError } from './errors.js';
import { isVideoKeyframe } from './media.js';
import { type Command, type ConnectInfo, decodeCommand, readConnect, readCreateStreamResult, readPublish, readStatusCode } from './messages.js';

/** What a session does once it said so: `publish` makes a publisher, `play`/`play2`/`FCSubscribe` a player. */
export type SessionRole = 'publisher' | 'player';

/** What the proxy knows about one RTMP session, from both directions' messages. */
export interface SessionFacts {
  /** Set by the first `publish` or `play` (`play2`, `FCSubscribe`); null before. */
  role: SessionRole | null;
  connect: ConnectInfo | null;
  /** Transaction id of `connect`, to recognise its `_result`. */
  connectTransactionId: number | null;
  /**
   * The `connect` command object and arguments, AMF0 bytes as the client sent them (a copy of at
   * most MAX_REPLAY_BYTES), replayed by a proxy-side migration. Never the decoded values: a
   * session lives for hours.
   */
  connectReplay: Buffer | null;
  /** The server answered `connect` (`_result` or `_error`). */
  connectAnswered: boolean;
  /** Arguments of `publish` after the command object (key, type …), AMF0 bytes as sent (a copy), for replay. */
  publishReplay: Buffer | null;
  streamKey: string | null;
  publishType: string | null;
  /** Message stream id the server returned for createStream. */
  streamId: number | null;
  /** The server answered NetStream.Publish.Start. */
  publishing: boolean;
  /** The server answered NetStream.Play.Start (a player is receiving its stream). */
  playing: boolean;
  /** The server said the played stream ended (Stream EOF, NetStream.Play.UnpublishNotify, NetStream.Play.Stop) since it last began. */
  playStopped: boolean;
  /** The client ended its publish cleanly (FCUnpublish / deleteStream / closeStream). */
  unpublished: boolean;
  videoMessages: number;
  audioMessages: number;
  keyframes: number;
  /** Timestamp of the last media message from the client. */
  lastMediaTimestamp: number | null;
  /** Timestamp of the last audio message from the client. */
  lastAudioTimestamp: number | null;
}

export interface SessionViewEvents {
  connect?(info: ConnectInfo): void;
  publish?(streamKey: string | null): void;
  /** `play`, `play2` or `FCSubscribe` named the stream (the first one only). */
  play?(streamKey: string | null): void;
  publishStarted?(): void;
  statusCode?(code: string): void;
  /** A player's stream ended on this backend (Stream EOF, Play.UnpublishNotify or Play.Stop). */
  streamStopped?(): void;
  /** It started again (Stream Begin, Play.PublishNotify) after it had stopped. */
  streamStarted?(): void;
}

/** User Control events (RTMP 7.1.7): Stream Begin, Stream EOF. */
const USER_CONTROL_STREAM_BEGIN = 0;
const USER_CONTROL_STREAM_EOF = 1;

/**
 * Most bytes of a `connect` (command object + arguments) or `publish` (arguments) a session
 * keeps for replay; a larger one is refused as bad-amf. Real ones are a few hundred bytes (a
 * tcUrl carrying a token twice, in `app` and `tcUrl`, stays well below).
 */
export const MAX_REPLAY_BYTES = 8 * 1024;

/** Client commands the view reads; the others are decoded only as far as their name. */
const CLIENT_COMMANDS: ReadonlySet<string> = new Set([
  'connect',
  'createStream',
  'publish',
  'play',
  'play2',
  'FCSubscribe',
  'FCUnpublish',
  'deleteStream',
  'closeStream',
]);
/** Server commands the view reads. */
const SERVER_COMMANDS: ReadonlySet<string> = new Set(['_result', '_error', 'onStatus']);

/**
 * The stream a player names: `play(name, start, duration, reset)` and `FCSubscribe(name)` carry it
 * as the first argument, `play2` as `streamName` of its parameters object.
 */
function readPlayKey(cmd: Command): string | null {
  const a = cmd.args[0] ?? null;
  if (cmd.name === 'play2') {
    if (!isAmf0Object(a)) return null;
    const n = a['streamName'];
    return typeof n === 'string' ? n : null;
  }
  return typeof a === 'string' ? a : null;
}

/** A copy of `bytes` for replay, refused (bad-amf) above MAX_REPLAY_BYTES. */
function replayCopy(what: string, bytes: Buffer): Buffer {
  if (bytes.length > MAX_REPLAY_BYTES)
    throw new ProtocolError('bad-amf', `${what} of ${bytes.length} bytes: more than the ${MAX_REPLAY_BYTES} a session keeps`);
  return Buffer.from(bytes);
}

/**
 * Pure interpretation of a publisher session: fed the complete messages of both directions
 * (from two ChunkReaders), it keeps the facts the proxy logs, exposes and acts on.
 * Command flow (docs/protocol.md#publisher-command-flow): connect → _result · releaseStream · FCPublish · createStream →
 * _result(stream id) · publish(key) → onStatus NetStream.Publish.Start.
 */
export class SessionView {
  readonly facts: SessionFacts = {
    role: null,
    connect: null,
    connectTransactionId: null,
    connectReplay: null,
    connectAnswered: false,
    publishReplay: null,
    streamKey: null,
    publishType: null,
    streamId: null,
    publishing: false,
    playing: false,
    playStopped: false,
    unpublished: false,
    videoMessages: 0,
    audioMessages: 0,
    keyframes: 0,
    lastMediaTimestamp: null,
    lastAudioTimestamp: null,
  };
  /** Transaction ids of createStream calls awaiting their _result (null when none: sessions live long, the list is short-lived). */
  private createStreamTxns: number[] | null = null;

  constructor(
    private readonly events: SessionViewEvents = {},
    private readonly amfLimits?: Partial<Amf0Limits>,
  ) {}

  /**
   * A complete client→server message. Returns the command when it is one the view reads (valid
   * during the call: its `body` is a view of `payload`), else null. Throws ProtocolError('bad-amf')
   * on undecodable commands.
   */
  clientMessage(info: MessageInfo, payload: Buffer | null): Command | null {
    const t = info.typeId;
    if (t === MessageType.Video) {
      this.facts.videoMessages++;
      if (isVideoKeyframe(info.head)) this.facts.keyframes++;
      this.facts.lastMediaTimestamp = info.timestamp;
      return null;
    }
    if (t === MessageType.Audio) {
      this.facts.audioMessages++;
      this.facts.lastMediaTimestamp = info.timestamp;
      this.facts.lastAudioTimestamp = info.timestamp;
      return null;
    }
    if (payload === null || (t !== MessageType.CommandAmf0 && t !== MessageType.CommandAmf3)) return null;
    const cmd = decodeCommand(t, payload, this.amfLimits, CLIENT_COMMANDS);
    if (cmd !== null) this.clientCommand(cmd);
    return cmd;
  }

  /** A complete server→client message. */
  serverMessage(info: MessageInfo, payload: Buffer | null): void {
    const t = info.typeId;
    if (t === MessageType.UserControl && payload !== null && payload.length >= 2 && this.facts.role === 'player') {
      this.streamEvent(payload.readUInt16BE(0));
      return;
    }
    if (payload === null || (t !== MessageType.CommandAmf0 && t !== MessageType.CommandAmf3)) return;
    const cmd = decodeCommand(t, payload, this.amfLimits, SERVER_COMMANDS);
    if (cmd !== null) this.serverCommand(cmd);
  }

  private clientCommand(cmd: Command): void {
    switch (cmd.name) {
      case 'connect':
        // Only the first connect counts: a second one on the same TCP connection is a protocol
        // error the server will answer; the session's identity must not change under us.
        if (this.facts.connect !== null) return;
        this.facts.connectReplay = replayCopy('connect', cmd.body.subarray(cmd.objectAt));
        this.facts.connect = readConnect(cmd);
        this.facts.connectTransactionId = cmd.transactionId;
        this.events.connect?.(this.facts.connect);
        return;
      case 'createStream':
        {
          const txns = (this.createStreamTxns ??= []);
          if (txns.length < 16 && !txns.includes(cmd.transactionId)) txns.push(cmd.transactionId);
        }
        return;
      case 'publish': {
        if (this.facts.role === 'player') return;
        this.facts.role = 'publisher';
        const replay = replayCopy('publish', cmd.body.subarray(cmd.argsAt));
        const p = readPublish(cmd);
        this.facts.streamKey = p.streamKey;
        this.facts.publishType = p.publishType;
        this.facts.publishReplay = replay;
        this.events.publish?.(p.streamKey);
        return;
      }
      case 'play':
      case 'play2':
      case 'FCSubscribe': {
        // The first one names the stream; a player's later `play` (a playlist, a seek) or a
        // publisher's `play` does not change what the session is.
        if (this.facts.role !== null) return;
        this.facts.role = 'player';
        this.facts.streamKey = readPlayKey(cmd);
        this.events.play?.(this.facts.streamKey);
        return;
      }
      case 'FCUnpublish':
      case 'deleteStream':
      case 'closeStream':
        this.facts.unpublished = true;
        return;
      default:
        return;
    }
  }

  /** Removes `txn` from the awaited createStream transactions; true if it was there. */
  private takeCreateStreamTxn(txn: number): boolean {
    const txns = this.createStreamTxns;
    const i = txns === null ? -1 : txns.indexOf(txn);
    if (i < 0) return false;
    txns!.splice(i, 1);
    if (txns!.length === 0) this.createStreamTxns = null;
    return true;
  }

  /**
   * A player's stream events: Stream EOF is how nginx-rtmp tells players their publisher left
   * (UnpublishNotify only with `publish_notify on`), Stream Begin that one (re)started.
   */
  private streamEvent(event: number): void {
    if (event === USER_CONTROL_STREAM_EOF && this.facts.playing && !this.facts.playStopped) {
      this.facts.playStopped = true;
      this.events.streamStopped?.();
    } else if (event === USER_CONTROL_STREAM_BEGIN) {
      this.restarted();
    }
  }

  private restarted(): void {
    if (!this.facts.playStopped) return;
    this.facts.playStopped = false;
    this.events.streamStarted?.();
  }

  private serverCommand(cmd: Command): void {
    if ((cmd.name === '_result' || cmd.name === '_error') && cmd.transactionId === this.facts.connectTransactionId && this.facts.connect !== null) {
      this.facts.connectAnswered = true;
    }
    if (cmd.name === '_result' && this.takeCreateStreamTxn(cmd.transactionId)) {
      const id = readCreateStreamResult(cmd);
      if (id !== null) this.facts.streamId = id;
      return;
    }
    if (cmd.name === 'onStatus') {
      const code = readStatusCode(cmd);
      if (code === null) return;
      if (code === 'NetStream.Publish.Start') {
        this.facts.publishing = true;
        this.events.publishStarted?.();
      } else if (code === 'NetStream.Play.Start' && this.facts.role === 'player') {
        this.facts.playing = true;
        this.facts.playStopped = false;
      } else if ((code === 'NetStream.Play.UnpublishNotify' || code === 'NetStream.Play.Stop') && this.facts.role === 'player' && !this.facts.playStopped) {
        this.facts.playStopped = true;
        this.events.streamStopped?.();
      } else if (code === 'NetStream.Play.PublishNotify' && this.facts.role === 'player') {
        this.restarted();
      }
      this.events.statusCode?.(code);
    }
  }
}
