import {
  type ByteBudget,
  type ChunkReaderHandler,
  type ChunkReaderLimits,
  type CollectPolicy,
  type MessageInfo,
  ChunkReader,
  UNLIMITED_BUDGET,
} from '../rtmp/chunk-reader.js';
import { type OutgoingMessage, ChunkWriter, encodeFmt0Header } from '../rtmp/chunk-writer.js';
import { MessageType } from '../rtmp/constants.js';
import { ProtocolError } from '../rtmp/errors.js';
import { HandshakeSkipper } from '../rtmp/handshake.js';

const EMPTY = Buffer.alloc(0);
/**
 * Decides what to do with a held server command message (see `setCommandRewriter`): a new
 * payload replaces the message, null lets the original bytes through unchanged.
 */
export type CommandRewriter = (info: MessageInfo, payload: Buffer) => Buffer | null;

interface Injection {
  csid: number;
  /** Pre-encoded chunk(s), or null: `msg` is encoded at placement with the chunk size then in force. */
  bytes: Buffer | null;
  msg: OutgoingMessage | null;
  onWritten: (() => void) | undefined;
}

/**
 * The injector's reader callbacks as prototype methods of one small object (four closures per
 * session would cost more memory, and a session lives for hours).
 */
class InjectorEvents implements ChunkReaderHandler {
  constructor(private readonly inj: ClientBoundInjector) {}
  message(info: MessageInfo, payload: Buffer | null): void {
    this.inj.onServerMessage(info, payload);
  }
  chunkEnd(_csid: number, end: number): void {
    this.inj.onChunkEnd(end);
  }
  chunkHeader(csid: number, fmt: number, headerLength: number, end: number): void {
    this.inj.onChunkHeader(csid, fmt, headerLength, end);
  }
  messageStart(csid: number, typeId: number, _length: number, headerEnd: number, headerLength: number): void {
    this.inj.onMessageStart(csid, typeId, headerEnd - headerLength);
  }
}

/** Encodes one message with fmt 0 and the given chunk size. */
export function encodeMessage(msg: OutgoingMessage, chunkSize: number): Buffer {
  const w = new ChunkWriter();
  w.chunkSize = chunkSize;
  return w.write(msg);
}

/**
 * The server→client byte stream, with the ability to insert whole messages into it and to
 * replace one command message.
 *
 * Pure (no sockets, no timers): `push` takes what the server sent and returns what to write to
 * the client, in order — normally the very same Buffer, untouched. `inject` inserts complete
 * chunks only where that is safe (docs/protocol.md#injection):
 * - between two chunks, never inside one, and after the handshake;
 * - when no message is half-sent on the csid the injected chunk uses.
 * After an injection on csid N the client resolves the server's next fmt 1/2/3 header on csid N
 * against *our* header, so that one header is rewritten to fmt 0 from the server's own state.
 * To be able to rewrite a header that straddles two TCP reads, the few bytes of a trailing
 * partial header are held back while such a rewrite is pending.
 *
 * `setCommandRewriter` holds each server command message from its first chunk until it is
 * complete and lets the caller replace it (the connect `_result` gets E-RTMP `capsEx`): the new
 * message is written fmt 0 with the current chunk size, and the server's next header on that csid
 * is fixed up as after an injection. If another csid's chunk interleaves with the held message,
 * the held bytes go out unchanged (`rewriteInterleaved` counts it); so do they when holding them
 * would go over the buffer budget (`rewriteOverBudget`). Held bytes are copies, charged to it.
 *
 * `addedBytes` counts what the proxy changed in the byte count of this direction (injected
 * chunks, the size change of replaced messages): the client's Acknowledgements count it too.
 *
 * `seal` (proxy-side migration) ends the server's stream at the next point where no message is
 * half-sent on any csid; from there on nothing more of it reaches the client.
 */
export class ClientBoundInjector {
  readonly handshake = new HandshakeSkipper();
  readonly reader: ChunkReader;
  /** Set once the server's stream stopped parsing; from then on bytes pass through untouched and nothing is injected. */
  failure: ProtocolError | null = null;
  /** Bytes added to (or, if negative, removed from) the client-bound stream by the proxy. */
  addedBytes = 0;
  /** Messages that could not be replaced because another chunk stream interleaved with them. */
  rewriteInterleaved = 0;
  /** Messages replaced by the rewriter. */
  rewritten = 0;
  /** Messages let through unchanged because holding them would have gone over the buffer budget. */
  rewriteOverBudget = 0;
  /** Chunks waiting for a safe point, in order. */
  private readonly queue: Injection[] = [];
  /** csids whose next server header must become fmt 0 (null until the first injection). */
  private fixup: Set<number> | null = null;
  private held: Buffer | null = null;
  private rewriter: CommandRewriter | null = null;
  /** The command message being held for the rewriter: its bytes so far (what would have gone out). */
  private capture: { csid: number; parts: Buffer[]; bytes: number } | null = null;
  private lastChunkEnd = 0;
  private sealState: 'open' | 'sealing' | 'sealed' = 'open';
  /** The server stream stopped parsing while sealing: the client may hold a half message. */
  sealBroken = false;
  // State of the push in progress.
  private data: Buffer = EMPTY;
  private cut = 0;
  private out: Buffer[] = [];

  constructor(
    private readonly onMessage: (info: MessageInfo, payload: Buffer | null) => void,
    collect?: CollectPolicy,
    limits?: Partial<ChunkReaderLimits>,
    private readonly budget: ByteBudget = UNLIMITED_BUDGET,
  ) {
    this.reader = new ChunkReader(new InjectorEvents(this), collect, limits, budget);
  }

  /** Chunks queued but not yet placed in the stream. */
  get pending(): number {
    return this.queue.length;
  }

  /** True while a command message is held for the rewriter (during `onMessage`: the message being delivered). */
  get holding(): boolean {
    return this.capture !== null;
  }

  /** True once `seal` took effect: nothing more of the server's stream is returned. */
  get sealed(): boolean {
    return this.sealState === 'sealed';
  }

  /**
   * Holds every server command message (type 20/17) until it is complete and passes it to
   * `fn` (null: stop). Meant for a short phase (the connect `_result`), where S→C traffic is a
   * few small messages.
   */
  setCommandRewriter(fn: CommandRewriter | null): void {
    this.rewriter = fn;
  }

  /** Server bytes in, client bytes out. Never throws: a parse failure switches to pass-through (see `failure`). */
  push(buf: Buffer): Buffer[] {
    if (this.sealState === 'sealed') return [];
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
      this.reader.release();
      this.releaseCapture();
      if (this.sealState === 'sealing') {
        // The client may hold a half message of the server's; the caller decides.
        this.sealState = 'sealed';
        this.sealBroken = true;
      }
    }
    if (this.sealState !== 'sealed') {
      let end = data.length;
      if (
        this.failure === null &&
        ((this.fixup !== null && this.fixup.size > 0) || this.rewriter !== null || this.capture !== null) &&
        this.reader.pendingHeaderBytes > 0
      ) {
        // The partial header may have begun in bytes already returned (before holding was needed).
        end = Math.max(0, end - this.reader.pendingHeaderBytes);
        this.held = Buffer.from(data.subarray(end));
      }
      this.emitRange(this.cut, end);
      this.cut = end;
    }
    const out = this.out;
    this.out = [];
    // Drop the reference to the server's read: an idle session must not pin its last 64 KiB.
    this.data = EMPTY;
    return out;
  }

  /**
   * Queues `what` (one or more complete pre-encoded chunks on `csid`, or a message encoded when
   * it is placed, with the chunk size then in force) for the client. Returns what to write now:
   * the bytes themselves when the stream is at a safe point, else nothing — they will come out
   * of a later `push`. `onWritten` runs when the bytes are placed. Returns null when the stream
   * can no longer be injected into (parse failure, sealed).
   */
  inject(csid: number, what: Buffer | OutgoingMessage, onWritten?: () => void): Buffer[] | null {
    if (this.failure !== null || this.sealState !== 'open') return null;
    const isBytes = Buffer.isBuffer(what);
    this.queue.push({ csid, bytes: isBytes ? what : null, msg: isBytes ? null : what, onWritten });
    if (!this.handshake.done || !this.reader.atChunkBoundary || this.capture !== null) return [];
    const out: Buffer[] = [];
    this.drainQueue(out);
    return out;
  }

  /**
   * Ends the server's stream for the client at the next point where no message is half-sent on
   * any csid (now, usually: S→C traffic of a publisher is a few small messages). Queued
   * injections are dropped. Returns true when that point is now.
   */
  seal(): boolean {
    if (this.sealState !== 'open') return this.sealState === 'sealed';
    this.queue.length = 0;
    this.rewriter = null;
    if (this.failure !== null) {
      this.sealState = 'sealed';
      this.sealBroken = !this.reader.idle;
      return true;
    }
    this.sealState = 'sealing';
    if (this.handshake.done && this.capture === null && this.reader.idle && this.held === null) {
      this.sealState = 'sealed';
      return true;
    }
    return false;
  }

  private emit(b: Buffer): void {
    if (this.sealState === 'sealed') return;
    const c = this.capture;
    if (c === null) {
      this.out.push(b);
    } else if (this.budget.take(b.length)) {
      // A copy: a view would pin the server's whole read for as long as the message is held.
      c.parts.push(Buffer.from(b));
      c.bytes += b.length;
    } else {
      this.rewriteOverBudget++;
      this.releaseCapture();
      this.out.push(b);
    }
  }

  private emitRange(from: number, to: number): void {
    if (to <= from) return;
    this.emit(from === 0 && to === this.data.length ? this.data : this.data.subarray(from, to));
  }

  /** @internal (InjectorEvents) */
  onChunkEnd(end: number): void {
    this.lastChunkEnd = end;
    if (this.sealState === 'sealing') {
      if (this.capture === null && this.reader.idle) {
        this.emitRange(this.cut, end);
        this.cut = end;
        this.sealState = 'sealed';
      }
      return;
    }
    if (this.queue.length > 0 && this.capture === null) this.placeQueued(end);
  }

  private placeQueued(at: number): void {
    if (this.sealState === 'sealed') return;
    const placed: Buffer[] = [];
    this.drainQueue(placed);
    if (placed.length === 0) return;
    this.emitRange(this.cut, at);
    for (const b of placed) this.emit(b);
    if (at > this.cut) this.cut = at;
  }

  /** Moves every queued chunk whose csid has no half-sent message into `out`, keeping order. */
  private drainQueue(out: Buffer[]): void {
    while (this.queue.length > 0) {
      const next = this.queue[0]!;
      if (this.reader.inMessage(next.csid)) return;
      this.queue.shift();
      const bytes = next.bytes ?? encodeMessage(next.msg!, this.reader.chunkSize);
      out.push(bytes);
      this.addedBytes += bytes.length;
      (this.fixup ??= new Set()).add(next.csid);
      next.onWritten?.();
    }
  }

  /** @internal (InjectorEvents) */
  onMessageStart(csid: number, typeId: number, start: number): void {
    if (this.capture !== null && csid !== this.capture.csid) this.abandonCapture(start);
    if (
      this.rewriter !== null &&
      this.capture === null &&
      this.sealState === 'open' &&
      start >= this.cut &&
      (typeId === MessageType.CommandAmf0 || typeId === MessageType.CommandAmf3)
    ) {
      this.emitRange(this.cut, start);
      this.cut = start;
      this.capture = { csid, parts: [], bytes: 0 };
    }
  }

  /** @internal (InjectorEvents) */
  onChunkHeader(csid: number, fmt: number, headerLength: number, end: number): void {
    const start = end - headerLength;
    if (this.capture !== null && csid !== this.capture.csid) this.abandonCapture(start);
    if (this.fixup === null || !this.fixup.delete(csid) || fmt === 0) return;
    const h = this.reader.lastHeader(csid)!;
    this.emitRange(this.cut, start);
    const header = encodeFmt0Header(csid, h.timestamp, h.length, h.typeId, h.streamId);
    this.emit(header);
    this.addedBytes += header.length - headerLength;
    this.cut = end;
  }

  /** @internal (InjectorEvents) */
  onServerMessage(info: MessageInfo, payload: Buffer | null): void {
    // The rewriter in force when the message began decides, even if onMessage clears it.
    const fn = this.rewriter;
    this.onMessage(info, payload);
    const c = this.capture;
    if (c === null || info.csid !== c.csid) return;
    const end = this.lastChunkEnd;
    this.emitRange(this.cut, end);
    this.cut = end;
    this.capture = null;
    this.budget.give(c.bytes);
    let replacement: Buffer | null = null;
    if (fn !== null && payload !== null && this.sealState === 'open') {
      try {
        replacement = fn(info, payload);
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        replacement = null;
      }
    }
    if (replacement === null) {
      for (const b of c.parts) this.emit(b);
    } else {
      const bytes = encodeMessage(
        { csid: info.csid, timestamp: info.timestamp, typeId: info.typeId, streamId: info.streamId, payload: replacement },
        this.reader.chunkSize,
      );
      let raw = 0;
      for (const b of c.parts) raw += b.length;
      this.addedBytes += bytes.length - raw;
      this.rewritten++;
      this.emit(bytes);
      (this.fixup ??= new Set()).add(info.csid);
    }
    if (this.sealState === 'sealing' && this.reader.idle) {
      this.sealState = 'sealed';
      return;
    }
    if (this.queue.length > 0) this.placeQueued(end);
  }

  /** Another csid interleaved with the held message: let its bytes through unchanged. */
  private abandonCapture(at: number): void {
    const c = this.capture!;
    this.emitRange(this.cut, at);
    if (at > this.cut) this.cut = at;
    this.capture = null;
    this.budget.give(c.bytes);
    this.rewriteInterleaved++;
    for (const b of c.parts) this.emit(b);
  }

  private releaseCapture(): void {
    const c = this.capture;
    if (c === null) return;
    this.capture = null;
    this.budget.give(c.bytes);
    for (const b of c.parts) this.out.push(b);
  }
}
