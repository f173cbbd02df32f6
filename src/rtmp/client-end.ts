/**
 * What an RTMP client end does whatever it came for, as a pure state machine: the plain
 * handshake, `connect` with a replayed command object, `createStream`, and the business of the
 * connection itself (Window Acknowledgement Size → acknowledgements, pings → pongs; the reader
 * applies Set Chunk Size and Abort). What follows the stream id — `publish` or `play` — is its
 * owner's: PublisherProtocol and PlayerProtocol each drive one ClientEnd, so both speak the same
 * connection exchange.
 */
import { type Amf0Limits, encodeAmf0 } from './amf0.js';
import { type ByteBudget, type ChunkReaderLimits, type MessageInfo, ChunkReader, UNLIMITED_BUDGET, collectEverything } from './chunk-reader.js';
import { type OutgoingMessage, ChunkWriter } from './chunk-writer.js';
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

export type ClientEndFailure = 'handshake' | 'connect-rejected' | 'create-stream-failed' | 'protocol-error';

/** `stream`: createStream answered; the owner's exchange (publish, play) runs from here. */
export type ClientEndPhase = 'init' | 'handshake' | 'connect' | 'create-stream' | 'stream' | 'failed';

/** `F`: the failures the owner's own exchange adds (`publish-rejected` …). */
export interface ClientEndOwner<F extends string> {
  /** Bytes for the server; returns the socket's write result. */
  write(buf: Buffer): boolean;
  /** The server accepted `connect`: what goes before `createStream` (FCPublish …), if anything. */
  connected?(): void;
  /** `createStream` answered with this stream id. */
  streamCreated(streamId: number): void;
  /**
   * From `stream` on: every message that is not the connection's business — commands (raw: the
   * owner decodes what it needs with `decode`), user control events other than pings, media, data.
   */
  message(info: MessageInfo, payload: Buffer): void;
  /** Every complete server message, before anything acts on it (a client that records what it received). */
  observe?(info: MessageInfo, payload: Buffer): void;
  failed(reason: ClientEndFailure | F, detail: string): void;
}

export interface ClientEndOptions {
  /** Our chunk size, sent with Set Chunk Size before `connect` as OBS does; null keeps 128 (librtmp, FFmpeg's player). */
  chunkSize: number | null;
  /** fmt 1–3 chunk headers where possible, as FFmpeg and librtmp write them (default true). */
  compressHeaders?: boolean;
  /** Transaction ids of `connect` and `createStream` (FFmpeg numbers a publisher's and a player's commands differently). */
  txn: { connect: number; createStream: number };
}

export class ClientEnd<F extends string = never> {
  phase: ClientEndPhase = 'init';
  streamId = 0;
  /** Bytes received from the server, handshake included (the acknowledgement sequence number). */
  bytesIn = 0;
  /** Bytes written to the server. */
  bytesOut = 0;
  readonly reader: ChunkReader;
  private readonly writer: ChunkWriter;
  private readonly hs = new HandshakeEnd('client');
  private windowAckSize = 0;
  private lastAck = 0;

  /** `connect`: the client's own command object and arguments (SessionFacts.connectReplay). */
  constructor(
    private readonly connect: Buffer,
    private readonly opts: ClientEndOptions,
    private readonly owner: ClientEndOwner<F>,
    limits: Partial<ChunkReaderLimits> = {},
    private readonly amfLimits?: Partial<Amf0Limits>,
    budget: ByteBudget = UNLIMITED_BUDGET,
  ) {
    this.writer = new ChunkWriter(opts.compressHeaders ?? true);
    const maxMessageSize = limits.maxMessageSize ?? MAX_MESSAGE_SIZE;
    this.reader = new ChunkReader(
      { message: (info, payload) => this.onMessage(info, payload) },
      collectEverything,
      { ...limits, maxCollectedSize: maxMessageSize },
      budget,
    );
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
    // At half the server's window, as librtmp does: the acknowledgement is there before the server waits for it.
    if (this.windowAckSize > 0 && this.bytesIn - this.lastAck >= this.windowAckSize / 2) {
      this.lastAck = this.bytesIn;
      this.send(controlMessage(MessageType.Acknowledgement, this.bytesIn % 2 ** 32));
    }
  }

  /** Chunks one message for the server (our chunk size, header compression). */
  send(msg: OutgoingMessage): boolean {
    return this.write(this.writer.write(msg));
  }

  /** A command of the owner's exchange, decoded within the AMF0 budget; a malformed one fails the connection (null). */
  decode(info: MessageInfo, payload: Buffer): Command | null {
    try {
      return decodeCommand(info.typeId, payload, this.amfLimits);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.fail('protocol-error', err.message);
      return null;
    }
  }

  /** Ends the exchange; the owner hears it once (a failure it found itself comes back to it here too). */
  fail(reason: ClientEndFailure | F, detail: string): void {
    if (this.phase === 'failed') return;
    this.phase = 'failed';
    this.owner.failed(reason, detail);
  }

  private write(buf: Buffer): boolean {
    this.bytesOut += buf.length;
    return this.owner.write(buf);
  }

  /** Takes S0+S1+S2 (answering C2), then sends `connect`. Returns the bytes after S2. */
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
    if (this.opts.chunkSize !== null) {
      this.send(controlMessage(MessageType.SetChunkSize, this.opts.chunkSize));
      this.writer.chunkSize = this.opts.chunkSize;
    }
    // The client's own bytes after a transaction id of ours (a connect without a command object gets null).
    const c = this.connect;
    const payload = Buffer.concat([encodeAmf0(['connect', this.opts.txn.connect]), c.length > 0 ? c : encodeAmf0([null])]);
    this.send({ csid: COMMAND_CSID, timestamp: 0, typeId: MessageType.CommandAmf0, streamId: 0, payload });
    return buf.subarray(r.next);
  }

  private onMessage(info: MessageInfo, payload: Buffer | null): void {
    const p = payload ?? Buffer.alloc(0);
    this.owner.observe?.(info, p);
    switch (info.typeId) {
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
          return;
        }
        break;
      case MessageType.CommandAmf0:
      case MessageType.CommandAmf3:
        if (this.phase !== 'stream') {
          this.onConnectionCommand(info, p);
          return;
        }
        break;
      default:
        break;
    }
    if (this.phase === 'stream') this.owner.message(info, p);
  }

  /** The replies to `connect` and `createStream`; every other command before the stream (onBWDone …) is this connection's own. */
  private onConnectionCommand(info: MessageInfo, payload: Buffer): void {
    const cmd = this.decode(info, payload);
    if (cmd === null) return;
    const isReply = cmd.name === '_result' || cmd.name === '_error';
    if (this.phase === 'connect' && isReply && cmd.transactionId === this.opts.txn.connect) {
      if (cmd.name === '_error') return this.fail('connect-rejected', readStatusCode(cmd) ?? 'connect _error');
      this.phase = 'create-stream';
      this.owner.connected?.();
      this.send(commandMessage(COMMAND_CSID, 0, 'createStream', this.opts.txn.createStream, null));
      return;
    }
    if (this.phase === 'create-stream' && isReply && cmd.transactionId === this.opts.txn.createStream) {
      const id = cmd.name === '_result' ? readCreateStreamResult(cmd) : null;
      if (id === null) return this.fail('create-stream-failed', `createStream ${cmd.name}`);
      this.streamId = id;
      this.phase = 'stream';
      this.owner.streamCreated(id);
    }
  }
}
