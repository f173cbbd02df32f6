/**
 * Shared helpers for the RTMP unit tests: loading the wire captures in test/fixtures, running a
 * ChunkReader over a byte stream cut into pieces, and a compact signature of everything the
 * reader reports (used by the split-at-every-byte properties, which parse a capture ~200k times).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ChunkReader, type ChunkReaderLimits, type CollectPolicy, type MessageInfo, collectControlAndCommands } from '../../src/rtmp/chunk-reader.js';
import { HandshakeSkipper } from '../../src/rtmp/handshake.js';

export const FIXTURE_DIR = fileURLToPath(new URL('../fixtures/', import.meta.url));

/** The three publishers captured against nginx-rtmp (test/fixtures/README.md). */
export const PUBLISHERS = ['obs29-publish', 'ffmpeg-goaway-fork-publish', 'ffmpeg51-publish'] as const;
export type Publisher = (typeof PUBLISHERS)[number];
export type Direction = 'c2s' | 's2c';

export interface Capture {
  name: string;
  publisher: Publisher;
  direction: Direction;
  /** The whole capture, handshake included. */
  bytes: Buffer;
  /** Offset of the first chunk byte (after C0+C1+C2 or S0+S1+S2), found by HandshakeSkipper. */
  chunkStart: number;
}

const cache = new Map<string, Capture>();

/** Loads `<publisher>.<direction>.bin` and locates the end of its handshake. */
export function loadCapture(publisher: Publisher, direction: Direction): Capture {
  const name = `${publisher}.${direction}`;
  let c = cache.get(name);
  if (c === undefined) {
    const bytes = readFileSync(`${FIXTURE_DIR}${name}.bin`);
    const chunkStart = new HandshakeSkipper().consume(bytes, 0);
    c = { name, publisher, direction, bytes, chunkStart };
    cache.set(name, c);
  }
  return c;
}

export function allCaptures(): Capture[] {
  const out: Capture[] = [];
  for (const p of PUBLISHERS) for (const d of ['c2s', 's2c'] as const) out.push(loadCapture(p, d));
  return out;
}

/** Chunk bytes of a capture (handshake removed). */
export function chunkBytes(c: Capture): Buffer {
  return c.bytes.subarray(c.chunkStart);
}

/** One message as the reader reported it, in a form assert.deepStrictEqual can compare. */
export interface RecordedMessage {
  csid: number;
  timestamp: number;
  typeId: number;
  length: number;
  streamId: number;
  /** Hex of the reader's head bytes (first min(length, 8) bytes). */
  head: string;
  /** Hex of the payload when the collect policy chose the message, else null. */
  payload: string | null;
}

/** The reader's view of a message (valid only during its callback), copied into a RecordedMessage. */
export function recordedMessage(info: MessageInfo, payload: Buffer | null): RecordedMessage {
  return {
    csid: info.csid,
    timestamp: info.timestamp,
    typeId: info.typeId,
    length: info.length,
    streamId: info.streamId,
    head: info.head.toString('hex'),
    payload: payload === null ? null : payload.toString('hex'),
  };
}

export const collectAll: CollectPolicy = () => true;

export interface RecordOptions {
  collect?: CollectPolicy;
  limits?: Partial<ChunkReaderLimits>;
}

/** Feeds `pieces` in order to a fresh reader and returns the messages it emitted. */
export function recordMessages(pieces: readonly Buffer[], opts: RecordOptions = {}): { messages: RecordedMessage[]; reader: ChunkReader } {
  const messages: RecordedMessage[] = [];
  const reader = new ChunkReader(
    {
      message(info, payload) {
        messages.push(recordedMessage(info, payload));
      },
    },
    opts.collect ?? collectControlAndCommands,
    opts.limits,
  );
  for (const p of pieces) reader.feed(p);
  return { messages, reader };
}

/** Cuts `buf` at the given offsets (any order, duplicates and out-of-range values allowed). */
export function splitAt(buf: Buffer, cuts: readonly number[]): Buffer[] {
  const points = [...new Set(cuts.map((c) => Math.max(0, Math.min(buf.length, c))))].sort((a, b) => a - b);
  const pieces: Buffer[] = [];
  let prev = 0;
  for (const p of points) {
    pieces.push(buf.subarray(prev, p));
    prev = p;
  }
  pieces.push(buf.subarray(prev));
  return pieces;
}

/**
 * Running pair of 32-bit multiplicative hashes over numbers and bytes: a cheap, allocation-free fingerprint of a
 * reader's whole output, so 200k re-parses of a capture can each be compared to the reference.
 */
export class Fingerprint {
  private a = 0x811c9dc5;
  private b = 0x01000193 ^ 0x5bd1e995;
  count = 0;

  num(n: number): void {
    const lo = n >>> 0;
    // Offsets and fields are below 2^32; mix the high word in too so nothing is silently folded.
    const hi = n > 0xffffffff || n < 0 ? Math.floor(n / 0x100000000) | 0 : 0;
    let a = Math.imul(this.a ^ lo, 0x01000193);
    let b = Math.imul(this.b + lo, 0x5bd1e995) ^ hi;
    a ^= a >>> 15;
    b ^= b >>> 13;
    this.a = a;
    this.b = Math.imul(b, 0x27d4eb2f);
    this.count++;
  }

  bytes(buf: Uint8Array): void {
    this.num(buf.length);
    let a = this.a;
    let b = this.b;
    for (let i = 0; i < buf.length; i++) {
      a = Math.imul(a ^ buf[i]!, 0x01000193);
      b = Math.imul(b ^ buf[i]!, 0x01000193) ^ (b >>> 15);
    }
    this.a = a;
    this.b = b;
  }

  toString(): string {
    return `${this.count}:${(this.a >>> 0).toString(16)}:${(this.b >>> 0).toString(16)}`;
  }
}

/**
 * Parses `buf` cut into pieces (at `cuts`, or exactly once at `cut`) and returns a fingerprint
 * of every message (fields, head bytes, collected payload), every chunk header and chunk end
 * (as absolute offsets in `buf`), and the reader's final state. Two splits of the same bytes must
 * give the same string.
 */
export function parseSignature(buf: Buffer, cuts: number | readonly number[], collect: CollectPolicy = collectControlAndCommands): string {
  const fp = new Fingerprint();
  let base = 0;
  const reader = new ChunkReader(
    {
      message(info, payload) {
        fp.num(1);
        fp.num(info.csid);
        fp.num(info.timestamp);
        fp.num(info.typeId);
        fp.num(info.length);
        fp.num(info.streamId);
        fp.bytes(info.head);
        if (payload !== null) fp.bytes(payload);
        else fp.num(0xdead);
      },
      chunkHeader(csid, fmt, headerLength, end) {
        fp.num(2);
        fp.num(csid);
        fp.num(fmt);
        fp.num(headerLength);
        fp.num(base + end);
      },
      chunkEnd(csid, end) {
        fp.num(3);
        fp.num(csid);
        fp.num(base + end);
      },
    },
    collect,
  );
  if (typeof cuts === 'number') {
    reader.feed(buf.subarray(0, cuts));
    base = cuts;
    reader.feed(buf.subarray(cuts));
  } else {
    for (const piece of splitAt(buf, cuts)) {
      reader.feed(piece);
      base += piece.length;
    }
  }
  fp.num(reader.chunkSize);
  fp.num(reader.bytesRead);
  fp.num(reader.messagesRead);
  fp.num(reader.chunksRead);
  fp.num(reader.atChunkBoundary ? 1 : 0);
  fp.num(reader.pendingHeaderBytes);
  return fp.toString();
}

/** Deterministic pseudo-random bytes (xorshift32), for payloads and fuzz input without fc overhead. */
export function pseudoRandomBytes(length: number, seed: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let x = seed | 0 || 0x9e3779b9;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** A plain RTMP handshake as one direction sends it: version 3 then 2×1536 bytes. */
export function plainHandshake(seed = 1): Buffer {
  const hs = pseudoRandomBytes(3073, seed);
  hs[0] = 3;
  return hs;
}

export function hex(s: string): Buffer {
  return Buffer.from(s.replace(/[\s|]+/g, ''), 'hex');
}
