import { DEFAULT_CHUNK_SIZE, MAX_MESSAGE_SIZE, MessageType } from './constants.js';
import { ProtocolError } from './errors.js';
import { isConfigurationHead } from './media.js';

/**
 * Streaming RTMP chunk reader for one direction (RTMP spec §5.3, docs/protocol.md#chunk-headers).
 *
 * Pure: bytes in, callbacks out; no sockets, no timers. Built for the proxy's hot path:
 * - chunk headers are parsed in place in the caller's Buffer; only a header split across two
 *   `feed` calls is copied, into an 18-byte scratch area;
 * - payloads are skipped by offset arithmetic; they are kept (as zero-copy views, joined once
 *   when the message ends) only for messages the `collect` policy asks for (a table lookup per
 *   message; for `'head'` types a look at the first bytes, no callback);
 * - nothing is allocated per chunk or per message (one info object per reader, reused); per
 *   collected message, its parts list and the joined payload;
 * - per reader: a few small objects per chunk stream; limits objects are shared (see limitsFor),
 *   the split-header scratch area is allocated the first time a header straddles two reads.
 * The caller keeps forwarding its original buffers; the reader never changes them.
 *
 * Memory held between two `feed` calls is what a peer controls: a collected message that is not
 * finished when a feed ends is copied out of the fed buffer (a view would pin the whole read, up
 * to 64 KiB for a 32-byte chunk) into a buffer of its own, grown as it fills and charged to the
 * reader's ByteBudget; over budget, `feed` throws ProtocolError('buffer-budget').
 */

/** Bytes of each message's start kept for every message (video: frame type, codec, AVC packet type or E-RTMP FourCC). */
export const HEAD_BYTES = 8;
/** Largest possible chunk header: 3-byte basic header + 11-byte fmt 0 header + 4-byte extended timestamp. */
export const MAX_CHUNK_HEADER = 18;

export interface ChunkReaderLimits {
  /** Largest Set Chunk Size accepted from the peer (spec max is 2^31-1). */
  maxChunkSize: number;
  /** Smallest Set Chunk Size accepted: tiny chunks multiply per-chunk work (a DoS vector), and no real client goes below 128. */
  minChunkSize: number;
  /** Largest declared message length (the field allows 16 MiB - 1; nginx-rtmp defaults to 1 MiB). */
  maxMessageSize: number;
  /** Largest message whose payload is collected for decoding (commands, control). */
  maxCollectedSize: number;
  /** Distinct chunk stream ids tracked per direction. */
  maxChunkStreams: number;
}

export const DEFAULT_CHUNK_READER_LIMITS: ChunkReaderLimits = {
  maxChunkSize: 16 * 1024 * 1024,
  minChunkSize: 32,
  maxMessageSize: MAX_MESSAGE_SIZE,
  maxCollectedSize: 256 * 1024,
  maxChunkStreams: 64,
};

/**
 * Bytes a reader (and whatever else shares the budget) may hold between two feeds. `take`
 * returns false, taking nothing, when that would go over.
 */
export interface ByteBudget {
  take(n: number): boolean;
  give(n: number): void;
}

/** No budget: every take succeeds. */
export const UNLIMITED_BUDGET: ByteBudget = Object.freeze({ take: () => true, give: () => {} });

/** Smallest own buffer of a partly collected message (then doubled as it fills, up to its length). */
const MIN_OWNED = 256;

/** A message whose last chunk was just read. Valid only during the `message` callback. */
export interface MessageInfo {
  csid: number;
  /** Absolute timestamp in ms (uint32, wraps). */
  timestamp: number;
  typeId: number;
  length: number;
  streamId: number;
  /** First min(length, HEAD_BYTES) bytes of the payload. A view reused by the reader: copy to keep. */
  head: Buffer;
}

export interface ChunkReaderHandler {
  /**
   * Called once per complete message, in wire order. `payload` is the whole message for
   * messages the collect policy chose, otherwise null.
   */
  message(info: MessageInfo, payload: Buffer | null): void;
  /**
   * Optional, for the injector: a chunk header was fully read. It spans `headerLength` bytes
   * ending at `end` in the buffer being fed (it may have started in an earlier buffer).
   */
  chunkHeader?(csid: number, fmt: number, headerLength: number, end: number): void;
  /** Optional, for the injector: a chunk (header + payload) ended at offset `end` of the buffer being fed. */
  chunkEnd?(csid: number, end: number): void;
  /**
   * Optional: the first chunk header of a new message was read (called before `chunkHeader`
   * for the same header). The header spans `headerLength` bytes ending at `headerEnd` in the
   * buffer being fed (it may have started in an earlier buffer: then `headerEnd - headerLength`
   * is negative). None of the payload has been read yet.
   */
  messageStart?(csid: number, typeId: number, length: number, headerEnd: number, headerLength: number): void;
}

/**
 * Told of every message start (as ChunkReaderHandler.messageStart) while set with
 * `ChunkReader.watchMessageStarts`: for a caller that needs it for a while only (the switch
 * search of a migration), without changing the handler the reader was built with.
 */
export interface MessageStartWatcher {
  onMessageStart(csid: number, typeId: number, length: number, headerEnd: number, headerLength: number): void;
}

/**
 * Which messages have their payload collected, by message type: true, false, or `'head'` =
 * only when its first bytes say it is decoder configuration or stream metadata (see
 * isConfigurationHead: AVC/HEVC/E-RTMP sequence headers, AAC/E-RTMP audio sequence start,
 * `@setDataFrame`/`onMetaData`). Lets a caller keep just those without allocating anything for
 * the other media messages. Decided by type alone: the reader asks the policy once per type id
 * when it is set and looks the answer up per message, so a policy costs nothing per message.
 */
export type CollectPolicy = (typeId: number) => boolean | 'head';

/** Protocol control and command messages; media is skipped. */
export const collectControlAndCommands: CollectPolicy = (typeId) =>
  typeId <= MessageType.SetPeerBandwidth || typeId === MessageType.CommandAmf0 || typeId === MessageType.CommandAmf3;

/** Every message whole (a session the proxy relays or may switch, a client end of a publish). */
export const collectEverything: CollectPolicy = () => true;

/** Per type id (0–255): 0 skip, 1 collect, 2 decide by the head. */
const SKIP = 0;
const COLLECT = 1;
const BY_HEAD = 2;
/** One table per policy, shared by every reader using it. */
const policyTables = new WeakMap<CollectPolicy, Uint8Array>();
function tableOf(policy: CollectPolicy): Uint8Array {
  let t = policyTables.get(policy);
  if (t === undefined) {
    t = new Uint8Array(256);
    for (let i = 0; i < 256; i++) {
      const c = policy(i);
      t[i] = c === true ? COLLECT : c === 'head' ? BY_HEAD : SKIP;
    }
    // Set Chunk Size and Abort change how this direction is framed: always read them, whatever
    // the policy, or the reader loses sync with the peer.
    t[MessageType.SetChunkSize] = COLLECT;
    t[MessageType.Abort] = COLLECT;
    policyTables.set(policy, t);
  }
  return t;
}

const LOW_CSIDS = 16;
/**
 * Chunk streams below this csid (all the low ones: FFmpeg publishes on 8) keep their head bytes at
 * csid × HEAD_BYTES of one slab per reader, found by offset: no Buffer object per chunk stream.
 */
const SLAB_CSIDS = LOW_CSIDS;
const EMPTY = Buffer.alloc(0);

/**
 * Limits merged with the defaults, shared by every reader given the same `limits` object (a
 * proxy passes one settings object to the two readers of every session: no copy per reader).
 */
const mergedLimits = new WeakMap<Partial<ChunkReaderLimits>, ChunkReaderLimits>();
const NO_LIMITS: Partial<ChunkReaderLimits> = Object.freeze({});
function limitsFor(limits: Partial<ChunkReaderLimits>): ChunkReaderLimits {
  let m = mergedLimits.get(limits);
  if (m === undefined) {
    m = Object.freeze({ ...DEFAULT_CHUNK_READER_LIMITS, ...limits });
    mergedLimits.set(limits, m);
  }
  return m;
}

/** Per chunk stream state (RTMP spec §5.3.1.2: later headers inherit from earlier ones). */
class ChunkStream {
  timestamp = 0;
  /** Timestamp field of the last header: for fmt 0 the absolute value, else the delta (as librtmp/FFmpeg do). */
  delta = 0;
  length = 0;
  typeId = 0;
  streamId = 0;
  /** The last header of this csid carried an extended timestamp, so type-3 chunks carry one too (docs/protocol.md#extended-timestamps). */
  extended = false;
  hasHeader = false;
  /** Payload bytes of the current message still to come; 0 = between messages. */
  remaining = 0;
  collect = false;
  /** Collection is decided by isConfigurationHead once the first bytes are in. */
  headFilter = false;
  /** Payload pieces of the message being collected, views of the buffer being fed; null when none. */
  parts: Buffer[] | null = null;
  /** The collected message's bytes from earlier feeds (copied; capacity charged to the budget). */
  owned: Buffer | null = null;
  ownedLen = 0;
  /** `feed` number that last added to `parts` (the stream is then in the reader's `pinned` list). */
  pinnedIn = 0;
  headLen = 0;
  constructor(
    readonly csid: number,
    /** Holds the first HEAD_BYTES bytes of the current message at `headAt`: the reader's slab for low csids, else its own. */
    readonly headBuf: Buffer,
    readonly headAt: number,
  ) {}
}

export class ChunkReader {
  /** Chunk size of this direction: 128 until the sender's Set Chunk Size (spec §5.4.1). */
  chunkSize = DEFAULT_CHUNK_SIZE;
  /** Total bytes fed, handshake excluded: the peer's Acknowledgement sequence counts these (plus the handshake). */
  bytesRead = 0;
  messagesRead = 0;
  chunksRead = 0;

  private readonly limits: ChunkReaderLimits;
  /** Chunk streams of the low csids every publisher uses (2–15): an array read per chunk, no Map. */
  private readonly low: (ChunkStream | undefined)[] = new Array<ChunkStream | undefined>(LOW_CSIDS);
  /** Chunk streams with csid ≥ LOW_CSIDS (rare), created with the first of them. */
  private high: Map<number, ChunkStream> | null = null;
  /** Chunk streams tracked (limits.maxChunkStreams). */
  private streamCount = 0;
  /** Stream whose chunk payload is being read, and how many payload bytes of that chunk are left. */
  private current: ChunkStream | null = null;
  private chunkLeft = 0;
  /** A chunk header split across two `feed` calls; allocated the first time one is. */
  private scratch: Buffer | null = null;
  private scratchLen = 0;
  private watcher: MessageStartWatcher | null = null;
  /**
   * Head bytes of chunk streams 0..SLAB_CSIDS-1, then the bytes `info.head` shows (copied there
   * per message); allocated with the first chunk stream, as is `headOut`, the view of the last part.
   */
  private headSlab: Buffer | null = null;
  private headOut: Buffer = EMPTY;
  private readonly info: MessageInfo = {
    csid: 0,
    timestamp: 0,
    typeId: 0,
    length: 0,
    streamId: 0,
    head: EMPTY,
  };

  // Fields written by parseHeader (kept on the instance so parsing allocates nothing).
  private hFmt = 0;
  private hCsid = 0;
  private hLen = 0;
  private hBasic = 0;
  private hExtended = false;
  /** The header just applied starts a new message. */
  private hNew = false;
  /** The collect policy's answer per type id (tableOf). */
  private collectTable: Uint8Array;
  /** Largest message collected; starts as limits.maxCollectedSize. */
  private maxCollected: number;
  /** Bytes of own buffers of partly collected messages (charged to `budget`). */
  heldBytes = 0;
  /** Streams whose `parts` got a view during the current feed (copied out when it ends). */
  private readonly pinned: ChunkStream[] = [];
  private feedNo = 1;

  constructor(
    private readonly handler: ChunkReaderHandler,
    collect: CollectPolicy = collectControlAndCommands,
    limits: Partial<ChunkReaderLimits> = NO_LIMITS,
    private readonly budget: ByteBudget = UNLIMITED_BUDGET,
  ) {
    this.limits = limitsFor(limits);
    this.maxCollected = this.limits.maxCollectedSize;
    this.collectTable = tableOf(collect);
  }

  /**
   * Replaces the collect policy for messages that start from now on. `maxCollectedSize` overrides
   * limits.maxCollectedSize (e.g. a proxy that re-chunks every message must collect even the
   * largest, up to limits.maxMessageSize).
   */
  /** Every message start from now on is told to `watcher` too (null: no longer). */
  watchMessageStarts(watcher: MessageStartWatcher | null): void {
    this.watcher = watcher;
  }

  setCollectPolicy(policy: CollectPolicy, maxCollectedSize = this.limits.maxCollectedSize): void {
    this.collectTable = tableOf(policy);
    this.maxCollected = maxCollectedSize;
  }

  /** True when no message is partly read on any chunk stream (a message boundary for every csid). */
  get idle(): boolean {
    if (this.chunkLeft !== 0 || this.scratchLen !== 0) return false;
    return this.findPartial(-1) === null;
  }

  /** Chunk stream ids with a partly read message. */
  partialMessages(): number[] {
    const out: number[] = [];
    for (const s of this.low) if (s !== undefined && s.remaining > 0) out.push(s.csid);
    if (this.high !== null) for (const s of this.high.values()) if (s.remaining > 0) out.push(s.csid);
    return out;
  }

  /** True when no chunk stream other than `csid` has a partly read message. */
  idleExcept(csid: number): boolean {
    return this.findPartial(csid) === null;
  }

  /** A chunk stream other than `except` with a partly read message, or null. */
  private findPartial(except: number): ChunkStream | null {
    for (const s of this.low) if (s !== undefined && s.remaining > 0 && s.csid !== except) return s;
    if (this.high !== null) for (const s of this.high.values()) if (s.remaining > 0 && s.csid !== except) return s;
    return null;
  }

  private stream(csid: number): ChunkStream | undefined {
    return csid < LOW_CSIDS ? this.low[csid] : (this.high?.get(csid) ?? undefined);
  }

  /** True between chunks: no chunk header or payload partly read. */
  get atChunkBoundary(): boolean {
    return this.chunkLeft === 0 && this.scratchLen === 0;
  }

  /** Bytes of an incomplete chunk header held from the end of the last fed buffer. */
  get pendingHeaderBytes(): number {
    return this.scratchLen;
  }

  /** True while a message on `csid` has been started but not finished. */
  inMessage(csid: number): boolean {
    const s = this.stream(csid);
    return s !== undefined && s.remaining > 0;
  }

  /** The last header seen on `csid` (for re-encoding a chunk header as fmt 0). */
  lastHeader(csid: number): { timestamp: number; length: number; typeId: number; streamId: number } | null {
    const s = this.stream(csid);
    if (s === undefined || !s.hasHeader) return null;
    return { timestamp: s.timestamp, length: s.length, typeId: s.typeId, streamId: s.streamId };
  }

  /**
   * Reads `buf` from `start`. Throws ProtocolError when the stream stops making sense (or its
   * collected messages go over the budget); the reader is then unusable: the caller calls
   * `release` and falls back to blind forwarding.
   */
  feed(buf: Buffer, start = 0): void {
    this.read(buf, start);
    if (this.pinned.length > 0) this.unpin();
    this.feedNo++;
  }

  /** Drops every partly collected message and gives its bytes back to the budget. */
  release(): void {
    for (const s of this.low) if (s !== undefined) this.dropCollected(s);
    if (this.high !== null) for (const s of this.high.values()) this.dropCollected(s);
    this.pinned.length = 0;
  }

  private dropCollected(st: ChunkStream): void {
    st.parts = null;
    if (st.owned !== null) {
      this.heldBytes -= st.owned.length;
      this.budget.give(st.owned.length);
      st.owned = null;
      st.ownedLen = 0;
    }
  }

  /** End of a feed: unfinished collected messages move out of the fed buffer into their own. */
  private unpin(): void {
    const pinned = this.pinned;
    for (let i = 0; i < pinned.length; i++) {
      const st = pinned[i]!;
      if (st.parts !== null && st.parts.length > 0) this.own(st, 0);
    }
    pinned.length = 0;
  }

  /**
   * Copies `st.parts` after the bytes already owned, growing the own buffer (doubling, at least
   * to `atLeast`, at most to the message length) and charging the growth to the budget.
   */
  private own(st: ChunkStream, atLeast: number): void {
    const parts = st.parts!;
    let need = st.ownedLen;
    for (let i = 0; i < parts.length; i++) need += parts[i]!.length;
    const had = st.owned;
    const cap = had === null ? 0 : had.length;
    if (need > cap) {
      const size = Math.min(st.length, Math.max(need, atLeast, cap * 2, MIN_OWNED));
      if (!this.budget.take(size - cap)) {
        throw new ProtocolError('buffer-budget', `${size - cap} more bytes for a ${st.length}-byte message on csid ${st.csid}: over the buffer budget`);
      }
      this.heldBytes += size - cap;
      const next = Buffer.allocUnsafe(size);
      if (had !== null) had.copy(next, 0, 0, st.ownedLen);
      st.owned = next;
    }
    const owned = st.owned!;
    let at = st.ownedLen;
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      p.copy(owned, at);
      at += p.length;
    }
    st.ownedLen = at;
    st.parts = null;
  }

  private read(buf: Buffer, start: number): void {
    const len = buf.length;
    let off = start;
    this.bytesRead += len - start;
    while (off < len) {
      if (this.chunkLeft > 0) {
        const st = this.current!;
        const n = this.chunkLeft < len - off ? this.chunkLeft : len - off;
        if (st.headLen < HEAD_BYTES) {
          const before = st.headLen;
          const k = HEAD_BYTES - before < n ? HEAD_BYTES - before : n;
          // A byte loop: Buffer.copy's native call costs more than copying ≤ 8 bytes.
          const head = st.headBuf;
          const at = st.headAt + before;
          for (let i = 0; i < k; i++) head[at + i] = buf[off + i]!;
          st.headLen += k;
          if (st.headFilter && (st.headLen === HEAD_BYTES || st.headLen === st.length)) this.decideByHead(st, before);
        }
        if (st.collect) {
          (st.parts ??= []).push(buf.subarray(off, off + n));
          if (st.pinnedIn !== this.feedNo) {
            st.pinnedIn = this.feedNo;
            this.pinned.push(st);
          }
        }
        off += n;
        this.chunkLeft -= n;
        st.remaining -= n;
        if (this.chunkLeft === 0) this.endChunk(st, off);
        continue;
      }

      // At a chunk header.
      let headerEnd: number;
      if (this.scratchLen === 0) {
        if (!this.parseHeader(buf, off, len - off)) {
          buf.copy((this.scratch ??= Buffer.alloc(MAX_CHUNK_HEADER)), 0, off, len);
          this.scratchLen = len - off;
          return;
        }
        headerEnd = off + this.hLen;
        this.applyHeader(buf, off);
      } else {
        const had = this.scratchLen;
        const take = Math.min(MAX_CHUNK_HEADER - had, len - off);
        const scratch = this.scratch!;
        buf.copy(scratch, had, off, off + take);
        if (!this.parseHeader(scratch, 0, had + take)) {
          this.scratchLen = had + take;
          return;
        }
        this.scratchLen = 0;
        headerEnd = off + (this.hLen - had);
        this.applyHeader(scratch, 0);
      }
      off = headerEnd;
      if (this.hNew) {
        this.handler.messageStart?.(this.hCsid, this.current!.typeId, this.current!.length, off, this.hLen);
        this.watcher?.onMessageStart(this.hCsid, this.current!.typeId, this.current!.length, off, this.hLen);
      }
      this.handler.chunkHeader?.(this.hCsid, this.hFmt, this.hLen, off);
      if (this.chunkLeft === 0) this.endChunk(this.current!, off); // zero-length message
    }
  }

  /**
   * Works out the header at `src[at..]` with `avail` bytes available. Returns false if more
   * bytes are needed. Sets hFmt, hCsid, hLen. Reads only; state changes in applyHeader.
   */
  private parseHeader(src: Buffer, at: number, avail: number): boolean {
    if (avail < 1) return false;
    const b0 = src[at]!;
    const fmt = b0 >> 6;
    let csid = b0 & 0x3f;
    let basic = 1;
    if (csid === 0) {
      // 2-byte form: csid 64..319 (spec §5.3.1.1)
      if (avail < 2) return false;
      csid = src[at + 1]! + 64;
      basic = 2;
    } else if (csid === 1) {
      // 3-byte form: csid 64..65599, second byte is the low byte
      if (avail < 3) return false;
      csid = src[at + 1]! + src[at + 2]! * 256 + 64;
      basic = 3;
    }
    let total = basic + (fmt === 0 ? 11 : fmt === 1 ? 7 : fmt === 2 ? 3 : 0);
    if (avail < total) return false;
    let extended: boolean;
    if (fmt === 3) {
      const st = csid < LOW_CSIDS ? this.low[csid] : this.high?.get(csid);
      extended = st !== undefined && st.extended;
    } else {
      extended = src[at + basic] === 0xff && src[at + basic + 1] === 0xff && src[at + basic + 2] === 0xff;
    }
    if (extended) total += 4;
    if (avail < total) return false;
    this.hFmt = fmt;
    this.hCsid = csid;
    this.hLen = total;
    this.hBasic = basic;
    this.hExtended = extended;
    return true;
  }

  private applyHeader(src: Buffer, at: number): void {
    const fmt = this.hFmt;
    const csid = this.hCsid;
    const p = at + this.hBasic;
    let st = csid < LOW_CSIDS ? this.low[csid] : this.high?.get(csid);
    if (st === undefined) {
      if (this.streamCount >= this.limits.maxChunkStreams) {
        throw new ProtocolError('too-many-chunk-streams', `more than ${this.limits.maxChunkStreams} chunk streams`);
      }
      if (this.headSlab === null) {
        // allocUnsafe: a slice of Node's shared pool, so the slab and its view need no ArrayBuffer of their own.
        this.headSlab = Buffer.allocUnsafe((SLAB_CSIDS + 1) * HEAD_BYTES).fill(0);
        this.headOut = this.headSlab.subarray(SLAB_CSIDS * HEAD_BYTES);
      }
      st = csid < SLAB_CSIDS ? new ChunkStream(csid, this.headSlab, csid * HEAD_BYTES) : new ChunkStream(csid, Buffer.alloc(HEAD_BYTES), 0);
      this.streamCount++;
      if (csid < LOW_CSIDS) this.low[csid] = st;
      else (this.high ??= new Map()).set(csid, st);
    }
    if (fmt !== 0 && !st.hasHeader) {
      throw new ProtocolError('missing-header', `fmt ${fmt} chunk on csid ${csid} without a previous fmt 0 header`);
    }
    if (fmt !== 3 && st.remaining > 0) {
      throw new ProtocolError('interleaved-header', `new fmt ${fmt} header on csid ${csid} inside an unfinished message`);
    }
    const newMessage = st.remaining === 0;
    this.hNew = newMessage;
    if (fmt === 3) {
      if (newMessage) st.timestamp = (st.timestamp + st.delta) >>> 0;
      // A continuation chunk's extended timestamp repeats the header's: nothing to update.
    } else {
      st.extended = this.hExtended;
      const ts = this.hExtended ? src.readUInt32BE(at + this.hLen - 4) : (src[p]! << 16) | (src[p + 1]! << 8) | src[p + 2]!;
      st.delta = ts;
      st.timestamp = fmt === 0 ? ts : (st.timestamp + ts) >>> 0;
      if (fmt <= 1) {
        st.length = (src[p + 3]! << 16) | (src[p + 4]! << 8) | src[p + 5]!;
        st.typeId = src[p + 6]!;
        if (fmt === 0) st.streamId = src.readUInt32LE(p + 7); // the only little-endian field (spec §5.3.1.2.1)
      }
      st.hasHeader = true;
    }
    if (newMessage) {
      if (st.length > this.limits.maxMessageSize) {
        throw new ProtocolError('message-too-large', `message of ${st.length} bytes on csid ${csid} exceeds ${this.limits.maxMessageSize}`);
      }
      st.remaining = st.length;
      st.headLen = 0;
      const c = st.length > this.maxCollected ? SKIP : this.collectTable[st.typeId]!;
      st.collect = c === COLLECT;
      st.headFilter = c === BY_HEAD;
    }
    this.current = st;
    this.chunkLeft = st.remaining < this.chunkSize ? st.remaining : this.chunkSize;
    this.chunksRead++;
  }

  /** Decides a `'head'` message by its first bytes; `before` payload bytes were read earlier (all in the stream's head bytes). */
  private decideByHead(st: ChunkStream, before: number): void {
    st.headFilter = false;
    const head = this.headOf(st);
    if (!isConfigurationHead(st.typeId, head, st.headLen)) return;
    st.collect = true;
    if (before > 0) (st.parts ??= []).push(Buffer.from(head.subarray(0, before)));
  }

  /** The stream's head bytes copied to `headOut` (a byte loop: cheaper than a native copy of ≤ 8 bytes). */
  private headOf(st: ChunkStream): Buffer {
    const out = this.headOut;
    const src = st.headBuf;
    const at = st.headAt;
    const n = st.headLen;
    for (let i = 0; i < n; i++) out[i] = src[at + i]!;
    return out;
  }

  private endChunk(st: ChunkStream, end: number): void {
    this.current = null;
    this.handler.chunkEnd?.(st.csid, end);
    if (st.remaining === 0) this.endMessage(st);
  }

  private endMessage(st: ChunkStream): void {
    this.messagesRead++;
    let payload: Buffer | null = null;
    if (st.collect) {
      if (st.owned !== null) {
        // Began in an earlier feed: the rest joins its own buffer, which becomes the payload.
        if (st.parts !== null) this.own(st, st.length);
        const owned = st.owned;
        payload = owned.length === st.length ? owned : owned.subarray(0, st.length);
        this.heldBytes -= owned.length;
        this.budget.give(owned.length);
        st.owned = null;
        st.ownedLen = 0;
      } else {
        const parts = st.parts;
        payload = parts === null ? EMPTY : parts.length === 1 ? parts[0]! : Buffer.concat(parts, st.length);
      }
      st.parts = null;
      st.collect = false;
      this.applyControl(st, payload);
    }
    const info = this.info;
    info.csid = st.csid;
    info.timestamp = st.timestamp;
    info.typeId = st.typeId;
    info.length = st.length;
    info.streamId = st.streamId;
    const head = this.headOf(st);
    info.head = st.headLen === HEAD_BYTES ? head : head.subarray(0, st.headLen);
    this.handler.message(info, payload);
  }

  /** The two control messages that change how this direction is chunked (spec §5.4.1, §5.4.2). */
  private applyControl(st: ChunkStream, payload: Buffer): void {
    // The spec puts control messages on msid 0 / csid 2 (§5.4), but nginx-rtmp dispatches them by
    // type alone, so a Set Chunk Size elsewhere still changes the framing the server reads.
    if (st.typeId === MessageType.SetChunkSize) {
      if (payload.length < 4) throw new ProtocolError('bad-message', 'Set Chunk Size shorter than 4 bytes');
      const size = payload.readUInt32BE(0);
      if (size & 0x80000000 || size < this.limits.minChunkSize || size > this.limits.maxChunkSize) {
        throw new ProtocolError('chunk-size', `Set Chunk Size ${size} outside [${this.limits.minChunkSize}, ${this.limits.maxChunkSize}]`);
      }
      this.chunkSize = size;
    } else if (st.typeId === MessageType.Abort) {
      if (payload.length < 4) throw new ProtocolError('bad-message', 'Abort shorter than 4 bytes');
      const id = payload.readUInt32BE(0);
      const target = id <= 65599 ? this.stream(id) : undefined;
      if (target !== undefined && target !== st) {
        target.remaining = 0;
        this.dropCollected(target);
        target.collect = false;
        target.headFilter = false;
      }
    }
  }
}
