import type { ChunkReaderLimits, MessageInfo } from '../../rtmp/chunk-reader.js';
import { type OutgoingMessage, ChunkWriter } from '../../rtmp/chunk-writer.js';
import { MessageType } from '../../rtmp/constants.js';
import { controlMessage } from '../../rtmp/messages.js';
import type { SessionBudget } from '../buffer-budget.js';
import { ClientBoundInjector } from '../injector.js';
import { LOCAL_CHUNK_SIZE, localChunkSize } from '../local-answers.js';
import { collectEverything } from '../../rtmp/chunk-reader.js';
import type { CloseReason } from './close-reason.js';
import type { SocketPair } from './socket-pair.js';

/** What the client-bound stream needs of its session. */
export interface ClientStreamOwner {
  readonly pair: SocketPair;
  end(reason: CloseReason): void;
}

/**
 * The one way anything reaches the client. Two shapes, decided per session:
 *  - spliced (a backend chosen at accept): the server's bytes pass through untouched (`fromServer`),
 *    and the proxy's own messages are injected between two of its chunks (ClientBoundInjector);
 *  - owned (`relaysWhole`: late binding; or a refusal): the proxy writes the stream with its own
 *    writer from the handshake on, and the backend's messages are relayed whole, re-chunked.
 * A spliced stream becomes owned when a migration switches the session: the server's stream is
 * sealed at a message boundary, then the proxy's writer continues with the chunk size in force;
 * messages for the client wait meanwhile.
 */
export class ClientStream {
  /** The server's stream to the client: parsed (headers, control, commands), injected into, sealed. */
  readonly s2c: ClientBoundInjector;
  /** The proxy writes this client's stream itself from the handshake on (late binding or a refusal). */
  private ownedFromStart: boolean;
  private writer: ChunkWriter | null = null;
  /** Messages waiting until the server's stream is sealed; created with the first. */
  private queue: OutgoingMessage[] | null = null;

  constructor(
    private readonly owner: ClientStreamOwner,
    /** Late binding: the backend's messages are relayed whole (all collected); its bytes are never written to the client. */
    readonly relaysWhole: boolean,
    onServerMessage: (info: MessageInfo, payload: Buffer | null) => void,
    limits: Partial<ChunkReaderLimits>,
    budget: SessionBudget,
  ) {
    this.ownedFromStart = relaysWhole;
    this.s2c = new ClientBoundInjector(onServerMessage, relaysWhole ? collectEverything : undefined, limits, budget);
  }

  /** A refusal: the proxy answers the client itself from the handshake on. */
  own(): void {
    this.ownedFromStart = true;
  }

  get owned(): boolean {
    return this.writer !== null;
  }

  /** Raw client-bound bytes (handshake replies, or what the injector returned). */
  write(out: Buffer[]): void {
    this.owner.pair.writeToClient(out);
  }

  /** One whole message for the client, written by the proxy's writer. */
  send(msg: OutgoingMessage): void {
    let w = this.writer;
    if (w === null) {
      if (!this.ownedFromStart) {
        (this.queue ??= []).push(msg);
        return;
      }
      // The client-bound stream is the proxy's from the handshake on: our chunk size first.
      w = this.writer = new ChunkWriter();
      this.write([w.write(localChunkSize())]);
      w.chunkSize = LOCAL_CHUNK_SIZE;
    }
    this.write([w.write(msg)]);
  }

  /**
   * A notice for the client: between two chunks of the server's stream (the injector), or, when
   * the proxy relays whole messages, between two messages (any such point is a chunk boundary).
   * `written` runs once it is in the client's write queue. False when it cannot be placed.
   */
  tell(msg: OutgoingMessage, written: () => void): boolean {
    if (this.relaysWhole) {
      this.send(msg);
      written();
      return true;
    }
    const out = this.s2c.inject(msg.csid, msg, written);
    if (out === null) return false;
    this.write(out);
    return true;
  }

  /** Ends the server's stream at its next message boundary; the proxy writes to the client from there on. */
  seal(): void {
    if (this.s2c.seal()) this.sealed();
  }

  /** A server connection left behind by a switch, still talking while its stream to the client is being sealed. */
  retiredData(buf: Buffer): void {
    if (this.s2c.sealed) return;
    const out = this.s2c.push(buf);
    // Relaying whole messages: they were relayed by the session, not its bytes.
    if (!this.relaysWhole) this.write(out);
    if (this.s2c.sealed) this.sealed();
  }

  /** That connection closed; `relaying`: the session went on with another. */
  retiredClosed(relaying: boolean): void {
    if (this.s2c.sealed || !relaying || this.relaysWhole) return;
    const reader = this.s2c.reader;
    if (!reader.atChunkBoundary) {
      this.owner.end('migration-s2c-desync');
      return;
    }
    // Abort (spec §5.4.2) what the client holds half of, then the proxy takes over.
    const w = new ChunkWriter();
    w.chunkSize = reader.chunkSize;
    this.write(reader.partialMessages().map((csid) => w.write(controlMessage(MessageType.Abort, csid))));
    this.s2c.seal();
    this.takeOver(w);
  }

  /** The old server's stream ended at a message boundary: the proxy writes to the client now. */
  private sealed(): void {
    if (this.writer !== null) return;
    if (this.s2c.sealBroken) {
      this.owner.end('migration-s2c-desync');
      return;
    }
    const w = new ChunkWriter();
    w.chunkSize = this.s2c.reader.chunkSize;
    this.takeOver(w);
  }

  private takeOver(w: ChunkWriter): void {
    this.writer = w;
    const queued = this.queue;
    this.queue = null;
    if (queued !== null) for (const m of queued) this.send(m);
  }
}
