/**
 * The client end of an RTMP publish, as a pure state machine: plain handshake, Set Chunk Size,
 * `connect`, `releaseStream`, `FCPublish`, `createStream`, `publish` — until
 * `NetStream.Publish.Start` — then the protocol business of a publisher (acknowledgements,
 * ping answers) while the owner sends media with `send`. Bytes in (`receive`), bytes and outcomes
 * out (the sink). The proxy uses it to publish a migrating session on its new backend
 * (proxy/migration/upstream-connection.ts) and the RTMP client of the CLI and the tests uses it
 * for every publish (client/rtmp-client.ts), so both speak the same exchange.
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

/** What to replay on the new backend: the session's own commands, as AMF0 bytes the client sent. */
export interface PublishPlan {
  /** The client's `connect` command object and arguments (SessionFacts.connectReplay). */
  connect: Buffer;
  /** `publish` arguments after the command object: [key, type, …] (SessionFacts.publishReplay). */
  publishArgs: Buffer;
  streamKey: string;
  /** Our chunk size towards the server, sent with Set Chunk Size before connect as OBS does; null keeps 128 (librtmp). */
  chunkSize: number | null;
  /** fmt 1–3 chunk headers where possible, as FFmpeg and librtmp write them (default true). */
  compressHeaders?: boolean;
}

export type PublishFailure = 'handshake' | 'connect-rejected' | 'create-stream-failed' | 'publish-rejected' | 'protocol-error';

export interface PublisherSink {
  /** Bytes for the backend; returns the socket's write result. */
  write(buf: Buffer): boolean;
  published(streamId: number): void;
  failed(reason: PublishFailure, detail: string): void;
  /** A server message meant for the client (only while `forwarding`; control messages never). */
  message(info: MessageInfo, payload: Buffer): void;
  /** Every complete server message, before the exchange acts on it (a client that records what it received). */
  observe?(info: MessageInfo, payload: Buffer): void;
}

/** A clean end of a publish, as a publisher ends it: FCUnpublish then deleteStream (both without a reply expected). */
export function unpublishCommands(streamKey: string | null, streamId: number | null): OutgoingMessage[] {
  return [commandMessage(COMMAND_CSID, 0, 'FCUnpublish', 0, null, streamKey), commandMessage(COMMAND_CSID, 0, 'deleteStream', 0, null, streamId)];
}

/** Transaction ids of the replayed commands, as FFmpeg numbers them. */
const TXN = { connect: 1, releaseStream: 2, FCPublish: 3, createStream: 4, publish: 5 } as const;
/** Chunk stream for stream-level commands (publish), as FFmpeg / the reference publisher use it. */
const STREAM_COMMAND_CSID = 8;

export type PublisherPhase = 'init' | 'handshake' | 'connect' | 'create-stream' | 'publish' | 'published' | 'failed';

/**
 * Pure: the proxy as an RTMP publisher towards one backend. `start()` writes C0+C1, `receive()`
 * takes the backend's bytes; the sink gets bytes to write and the outcome. After
 * `published`, `send` re-chunks messages for the backend; server messages are handled here when
 * they are protocol business (Set Chunk Size, Window Ack Size → our acknowledgements, pings →
 * pongs, replies to the replayed commands) and passed to `sink.message` once `forwarding` is set
 * (the switch), otherwise dropped: the client never learns about this connection before.
 */
export class PublisherProtocol {
  phase: PublisherPhase = 'init';
  streamId = 0;
  /** Bytes received from the backend, handshake included (the acknowledgement sequence number). */
  bytesIn = 0;
  /** Bytes written to the backend. */
  bytesOut = 0;
  /** Set at the switch (startForwarding): server messages go to the client from now on. */
  private forwarding = false;
  readonly reader: ChunkReader;
  private readonly writer: ChunkWriter;
  private readonly hs = new HandshakeEnd('client');
  private windowAckSize = 0;
  private lastAck = 0;

  constructor(
    private readonly plan: PublishPlan,
    private readonly sink: PublisherSink,
    limits: Partial<ChunkReaderLimits> = {},
    private readonly amfLimits?: Partial<Amf0Limits>,
    budget: ByteBudget = UNLIMITED_BUDGET,
  ) {
    this.writer = new ChunkWriter(plan.compressHeaders ?? true);
    const maxMessageSize = limits.maxMessageSize ?? MAX_MESSAGE_SIZE;
    this.reader = new ChunkReader(
      { message: (info, payload) => this.onMessage(info, payload) },
      collectEverything,
      { ...limits, maxCollectedSize: maxMessageSize },
      budget,
    );
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

  private fail(reason: PublishFailure, detail: string): void {
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
    if (this.plan.chunkSize !== null) {
      this.send(controlMessage(MessageType.SetChunkSize, this.plan.chunkSize));
      this.writer.chunkSize = this.plan.chunkSize;
    }
    // The client's own bytes after a transaction id of ours (a connect without a command object gets null).
    const c = this.plan.connect;
    const payload = Buffer.concat([encodeAmf0(['connect', TXN.connect]), c.length > 0 ? c : encodeAmf0([null])]);
    this.send({ csid: COMMAND_CSID, timestamp: 0, typeId: MessageType.CommandAmf0, streamId: 0, payload });
    return buf.subarray(r.next);
  }

  private onMessage(info: MessageInfo, payload: Buffer | null): void {
    const t = info.typeId;
    const p = payload ?? Buffer.alloc(0);
    this.sink.observe?.(info, p);
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
