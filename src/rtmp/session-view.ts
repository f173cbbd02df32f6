import type { Amf0Limits, Amf0Value } from './amf0.js';
import type { MessageInfo } from './chunk-reader.js';
import { MessageType } from './constants.js';
import { isVideoKeyframe } from './media.js';
import {
  type Command,
  type ConnectInfo,
  decodeCommand,
  readConnect,
  readCreateStreamResult,
  readPublish,
  readStatusCode,
} from './messages.js';

/** What the proxy knows about one RTMP session, from both directions' messages. */
export interface SessionFacts {
  connect: ConnectInfo | null;
  /** Transaction id of `connect`, to recognise its `_result`. */
  connectTransactionId: number | null;
  /** The decoded `connect` command, as the client sent it (replayed by a proxy-side migration). */
  connectCommand: Command | null;
  /** The server answered `connect` (`_result` or `_error`). */
  connectAnswered: boolean;
  /** Arguments of `publish` after the command object (key, type …), for replay. */
  publishArgs: Amf0Value[] | null;
  streamKey: string | null;
  publishType: string | null;
  /** Message stream id the server returned for createStream. */
  streamId: number | null;
  /** The server answered NetStream.Publish.Start. */
  publishing: boolean;
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
  publishStarted?(): void;
  statusCode?(code: string): void;
}

/**
 * Pure interpretation of a publisher session: fed the complete messages of both directions
 * (from two ChunkReaders), it keeps the facts the proxy logs, exposes and acts on.
 * Command flow (PROTOCOL.md §5): connect → _result · releaseStream · FCPublish · createStream →
 * _result(stream id) · publish(key) → onStatus NetStream.Publish.Start.
 */
export class SessionView {
  readonly facts: SessionFacts = {
    connect: null,
    connectTransactionId: null,
    connectCommand: null,
    connectAnswered: false,
    publishArgs: null,
    streamKey: null,
    publishType: null,
    streamId: null,
    publishing: false,
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

  /** A complete client→server message. Throws ProtocolError('bad-amf') on undecodable commands. */
  clientMessage(info: MessageInfo, payload: Buffer | null): void {
    const t = info.typeId;
    if (t === MessageType.Video) {
      this.facts.videoMessages++;
      if (isVideoKeyframe(info.head)) this.facts.keyframes++;
      this.facts.lastMediaTimestamp = info.timestamp;
      return;
    }
    if (t === MessageType.Audio) {
      this.facts.audioMessages++;
      this.facts.lastMediaTimestamp = info.timestamp;
      this.facts.lastAudioTimestamp = info.timestamp;
      return;
    }
    if (payload === null || (t !== MessageType.CommandAmf0 && t !== MessageType.CommandAmf3)) return;
    const cmd = decodeCommand(t, payload, this.amfLimits);
    if (cmd !== null) this.clientCommand(cmd);
  }

  /** A complete server→client message. */
  serverMessage(info: MessageInfo, payload: Buffer | null): void {
    const t = info.typeId;
    if (payload === null || (t !== MessageType.CommandAmf0 && t !== MessageType.CommandAmf3)) return;
    const cmd = decodeCommand(t, payload, this.amfLimits);
    if (cmd !== null) this.serverCommand(cmd);
  }

  private clientCommand(cmd: Command): void {
    switch (cmd.name) {
      case 'connect':
        // Only the first connect counts: a second one on the same TCP connection is a protocol
        // error the server will answer; the session's identity must not change under us.
        if (this.facts.connect !== null) return;
        this.facts.connect = readConnect(cmd);
        this.facts.connectTransactionId = cmd.transactionId;
        this.facts.connectCommand = cmd;
        this.events.connect?.(this.facts.connect);
        return;
      case 'createStream':
      {
        const txns = (this.createStreamTxns ??= []);
        if (txns.length < 16 && !txns.includes(cmd.transactionId)) txns.push(cmd.transactionId);
      }
        return;
      case 'publish': {
        const p = readPublish(cmd);
        this.facts.streamKey = p.streamKey;
        this.facts.publishType = p.publishType;
        this.facts.publishArgs = cmd.args;
        this.events.publish?.(p.streamKey);
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
      }
      this.events.statusCode?.(code);
    }
  }
}
