import { type ChunkReaderHandler, type ChunkReaderLimits, type CollectPolicy, type MessageInfo, ChunkReader } from '../rtmp/chunk-reader.js';
import { encodeFmt0Header } from '../rtmp/chunk-writer.js';
import { ProtocolError } from '../rtmp/errors.js';
import { HandshakeSkipper } from '../rtmp/handshake.js';

/**
 * The server→client byte stream, with the ability to insert whole chunks into it.
 *
 * Pure (no sockets, no timers): `push` takes what the server sent and returns what to write to
 * the client, in order — normally the very same Buffer, untouched. `inject` inserts a complete
 * chunk (header + payload) only where that is safe (PROTOCOL.md §8):
 * - between two chunks, never inside one, and after the handshake;
 * - when no message is half-sent on the csid the injected chunk uses.
 * After an injection on csid N the client resolves the server's next fmt 1/2/3 header on csid N
 * against *our* header, so that one header is rewritten to fmt 0 from the server's own state.
 * To be able to rewrite a header that straddles two TCP reads, the few bytes of a trailing
 * partial header are held back while such a rewrite is pending.
 */
export class ClientBoundInjector {
  readonly handshake = new HandshakeSkipper();
  readonly reader: ChunkReader;
  /** Set once the server's stream stopped parsing; from then on bytes pass through untouched and nothing is injected. */
  failure: ProtocolError | null = null;
  /** Chunks waiting for a safe point, in order. */
  private readonly queue: { csid: number; bytes: Buffer; onWritten?: () => void }[] = [];
  /** csids whose next server header must become fmt 0. */
  private readonly fixup = new Set<number>();
  private held: Buffer | null = null;
  // State of the push in progress.
  private data: Buffer = Buffer.alloc(0);
  private cut = 0;
  private out: Buffer[] = [];

  constructor(
    onMessage: (info: MessageInfo, payload: Buffer | null) => void,
    collect?: CollectPolicy,
    limits?: Partial<ChunkReaderLimits>,
  ) {
    const handler: ChunkReaderHandler = {
      message: onMessage,
      chunkEnd: (_csid, end) => this.onChunkEnd(end),
      chunkHeader: (csid, fmt, headerLength, end) => this.onChunkHeader(csid, fmt, headerLength, end),
    };
    this.reader = new ChunkReader(handler, collect, limits);
  }

  /** Chunks queued but not yet placed in the stream. */
  get pending(): number {
    return this.queue.length;
  }

  /** Server bytes in, client bytes out. Never throws: a parse failure switches to pass-through (see `failure`). */
  push(buf: Buffer): Buffer[] {
    if (this.failure !== null) return [buf];
    let data = buf;
    let start = 0;
    if (this.held !== null) {
      data = Buffer.concat([this.held, buf]);
      start = this.held.length;
      this.held = null;
    }
    this.data = data;
    this.cut = 0;
    this.out = [];
    try {
      if (!this.handshake.done) {
        start = this.handshake.consume(data, start);
        if (this.handshake.done) this.placeQueued(start);
      }
      if (start < data.length) this.reader.feed(data, start);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.failure = err;
      this.queue.length = 0;
    }
    let end = data.length;
    if (this.failure === null && this.fixup.size > 0 && this.reader.pendingHeaderBytes > 0) {
      end -= this.reader.pendingHeaderBytes;
      this.held = Buffer.from(data.subarray(end));
    }
    if (this.cut === 0 && end === data.length) {
      this.out.push(data);
    } else if (end > this.cut) {
      this.out.push(data.subarray(this.cut, end));
    }
    const out = this.out;
    this.out = [];
    return out;
  }

  /**
   * Queues `bytes` (one or more complete chunks on `csid`) for the client. Returns what to write
   * now: the bytes themselves when the stream is at a safe point, else nothing — they will come
   * out of a later `push`. `onWritten` runs when the bytes are placed. Returns null when the
   * stream can no longer be injected into (parse failure).
   */
  inject(csid: number, bytes: Buffer, onWritten?: () => void): Buffer[] | null {
    if (this.failure !== null) return null;
    this.queue.push(onWritten ? { csid, bytes, onWritten } : { csid, bytes });
    if (!this.handshake.done || !this.reader.atChunkBoundary) return [];
    const out: Buffer[] = [];
    this.drainQueue(out);
    return out;
  }

  private onChunkEnd(end: number): void {
    if (this.queue.length > 0) this.placeQueued(end);
  }

  private placeQueued(at: number): void {
    const placed: Buffer[] = [];
    this.drainQueue(placed);
    if (placed.length === 0) return;
    if (at > this.cut) this.out.push(this.data.subarray(this.cut, at));
    this.out.push(...placed);
    this.cut = at;
  }

  /** Moves every queued chunk whose csid has no half-sent message into `out`, keeping order. */
  private drainQueue(out: Buffer[]): void {
    while (this.queue.length > 0) {
      const next = this.queue[0]!;
      if (this.reader.inMessage(next.csid)) return;
      this.queue.shift();
      out.push(next.bytes);
      this.fixup.add(next.csid);
      next.onWritten?.();
    }
  }

  private onChunkHeader(csid: number, fmt: number, headerLength: number, end: number): void {
    if (!this.fixup.delete(csid) || fmt === 0) return;
    const h = this.reader.lastHeader(csid)!;
    const start = end - headerLength;
    if (start > this.cut) this.out.push(this.data.subarray(this.cut, start));
    this.out.push(encodeFmt0Header(csid, h.timestamp, h.length, h.typeId, h.streamId));
    this.cut = end;
  }
}
