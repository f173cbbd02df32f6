/**
 * The client end of an RTMP publish, as a pure state machine: the connection (ClientEnd:
 * handshake, Set Chunk Size, `connect`, `createStream`, acknowledgements, pings) with
 * `releaseStream` and `FCPublish` before `createStream`, then `publish` — until
 * `NetStream.Publish.Start` — while the owner sends media with `send`. Bytes in (`receive`), bytes
 * and outcomes out (the sink). The proxy uses it to publish a migrating session on its new backend
 * (proxy/migration/upstream-connection.ts) and the RTMP client of the CLI and the tests uses it
 * for every publish (client/rtmp-client.ts), so both speak the same exchange.
 */
import { type Amf0Limits, encodeAmf0 } from './amf0.js';
import type { ByteBudget, ChunkReader, ChunkReaderLimits, MessageInfo } from './chunk-reader.js';
import type { OutgoingMessage } from './chunk-writer.js';
import { type ClientEndFailure, ClientEnd } from './client-end.js';
import { COMMAND_CSID, MessageType } from './constants.js';
import { commandMessage, readStatusCode } from './messages.js';

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

export type PublishFailure = ClientEndFailure | 'publish-rejected';

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
 * takes the backend's bytes; the sink gets bytes to write and the outcome. After `published`,
 * `send` re-chunks messages for the backend; server messages other than the connection's business
 * and the replies to the replayed commands are passed to `sink.message` once `forwarding` is set
 * (the switch), otherwise dropped: the client never learns about this connection before.
 */
export class PublisherProtocol {
  private readonly end: ClientEnd<'publish-rejected'>;
  /** Set at `NetStream.Publish.Start`. */
  private published = false;
  /** Set at the switch (startForwarding): server messages go to the client from now on. */
  private forwarding = false;

  constructor(
    private readonly plan: PublishPlan,
    private readonly sink: PublisherSink,
    limits: Partial<ChunkReaderLimits> = {},
    amfLimits?: Partial<Amf0Limits>,
    budget?: ByteBudget,
  ) {
    this.end = new ClientEnd<'publish-rejected'>(
      plan.connect,
      { chunkSize: plan.chunkSize, compressHeaders: plan.compressHeaders ?? true, txn: TXN },
      {
        write: (buf) => sink.write(buf),
        observe: sink.observe?.bind(sink),
        failed: (reason, detail) => sink.failed(reason, detail),
        connected: () => {
          const key = this.plan.streamKey;
          this.end.send(commandMessage(COMMAND_CSID, 0, 'releaseStream', TXN.releaseStream, null, key));
          this.end.send(commandMessage(COMMAND_CSID, 0, 'FCPublish', TXN.FCPublish, null, key));
        },
        streamCreated: (id) => {
          const payload = Buffer.concat([encodeAmf0(['publish', TXN.publish, null]), this.plan.publishArgs]);
          this.end.send({ csid: STREAM_COMMAND_CSID, timestamp: 0, typeId: MessageType.CommandAmf0, streamId: id, payload });
        },
        message: (info, payload) => this.onStreamMessage(info, payload),
      },
      limits,
      amfLimits,
      budget,
    );
  }

  get phase(): PublisherPhase {
    const p = this.end.phase;
    return p === 'stream' ? (this.published ? 'published' : 'publish') : p;
  }

  get streamId(): number {
    return this.end.streamId;
  }

  /** Bytes received from the backend, handshake included (the acknowledgement sequence number). */
  get bytesIn(): number {
    return this.end.bytesIn;
  }

  /** Bytes written to the backend. */
  get bytesOut(): number {
    return this.end.bytesOut;
  }

  get reader(): ChunkReader {
    return this.end.reader;
  }

  get streamIdKnown(): boolean {
    return this.end.phase === 'stream';
  }

  /** Writes C0 + C1. */
  start(): void {
    this.end.start();
  }

  receive(buf: Buffer): void {
    this.end.receive(buf);
  }

  /** Re-chunks one message for the backend (ours: chunk size, header compression). */
  send(msg: OutgoingMessage): boolean {
    return this.end.send(msg);
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

  /** After createStream: the publish exchange until Publish.Start, then forwarding (from the switch). */
  private onStreamMessage(info: MessageInfo, payload: Buffer): void {
    // Stream Begin and the other user control events belong to this connection, never to the client.
    if (info.typeId === MessageType.UserControl) return;
    if (this.published) {
      if (this.forwarding) this.sink.message(info, payload);
      return;
    }
    if (info.typeId !== MessageType.CommandAmf0 && info.typeId !== MessageType.CommandAmf3) return;
    const cmd = this.end.decode(info, payload);
    if (cmd === null) return;
    if (cmd.name === '_error' && cmd.transactionId === TXN.publish) return this.end.fail('publish-rejected', readStatusCode(cmd) ?? 'publish _error');
    if (cmd.name !== 'onStatus') return; // onFCPublish, replies to releaseStream …: this connection's own
    const code = readStatusCode(cmd) ?? '';
    const info0 = cmd.args[0] as Record<string, unknown> | null | undefined;
    const level = info0 !== null && typeof info0 === 'object' ? info0['level'] : undefined;
    if (code === 'NetStream.Publish.Start') {
      this.published = true;
      this.sink.published(this.streamId);
    } else if (level === 'error' || code.startsWith('NetStream.Publish.')) {
      this.end.fail('publish-rejected', code || 'onStatus error');
    }
  }
}
