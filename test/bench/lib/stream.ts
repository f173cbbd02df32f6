/**
 * The RTMP byte streams the benchmark sends, built once from the real wire captures in
 * test/fixtures and then only sliced (no per-write encoding on the load generator's hot path).
 *
 * Client → server, per connection: `preamble` (C0+C1+C2, Set Chunk Size 4096, connect — announcing
 * Go Away, E-RTMP reconnect or neither, see PublisherKind —, releaseStream, FCPublish, createStream, publish, @setDataFrame, the AVC/AAC
 * sequence headers as fmt 0 messages), then `block` repeated forever. `block` holds every media
 * message of the ffmpeg capture, re-chunked (4096) with fmt 1 headers whose timestamps are
 * *deltas*: the block can be concatenated with itself and the timestamps keep increasing, so
 * any number of repetitions is still one valid, monotonic RTMP publish.
 *
 * Server → client: the captured nginx-rtmp answer (S0+S1+S2, Window Ack Size, Set Peer
 * Bandwidth, Set Chunk Size, the `_result`s and `NetStream.Publish.Start`), then one
 * Acknowledgement every ACK_WINDOW bytes received, as nginx-rtmp does.
 *
 * C1 carries a marker (bytes 8..15 "RGPBENCH"), a mode byte and the connection id, so the sink
 * knows what each connection is without any side channel through the middle under test.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { amf0Object } from '../../../src/rtmp/amf0.js';
import { ChunkReader } from '../../../src/rtmp/chunk-reader.js';
import { ChunkWriter } from '../../../src/rtmp/chunk-writer.js';
import { HANDSHAKE_PACKET_SIZE, MessageType } from '../../../src/rtmp/constants.js';
import { HandshakeSkipper } from '../../../src/rtmp/handshake.js';
import { CAPS_EX_RECONNECT, controlMessage, encodeCommand, goAwayChunk } from '../../../src/rtmp/messages.js';

const FIXTURES = fileURLToPath(new URL('../../fixtures/', import.meta.url));
/** The publish that is replayed: FFmpeg with the Go Away patch, H.264/AAC, `-c copy` (test/fixtures/README.md). */
export const CAPTURE = 'ffmpeg-goaway-fork-publish';

export const C0C1_LENGTH = 1 + HANDSHAKE_PACKET_SIZE;
export const HANDSHAKE_LENGTH = 1 + 2 * HANDSHAKE_PACKET_SIZE;
export const CHUNK_SIZE = 4096;
/** Bit rate the media timestamps are scaled to: a 6 Mbps publish (issue 8). */
export const NOMINAL_BPS = 6_000_000;
/** nginx-rtmp's default ack window: the server acknowledges every 5,000,000 bytes. */
export const ACK_WINDOW = 5_000_000;

/** Connection modes, carried in C1. */
export const Mode = {
  /** Publisher: the sink answers like nginx-rtmp and discards what follows. */
  Publish: 0x50, // 'P'
  /** Ping-pong: the sink answers the handshake, then echoes every byte after C2. */
  Echo: 0x45, // 'E'
} as const;
export type ModeByte = (typeof Mode)[keyof typeof Mode];

/**
 * What a publisher's `connect` announces (`--publishers`): `plain` nothing (OBS 30+, stock FFmpeg,
 * hardware encoders: the common case), `goaway` supportsGoAway (RTMP Go Away), `erpc` the E-RTMP
 * capsEx Reconnect bit.
 */
export const PUBLISHER_KINDS = ['plain', 'goaway', 'erpc'] as const;
export type PublisherKind = (typeof PUBLISHER_KINDS)[number];

export function parsePublisherKinds(s: string): PublisherKind[] {
  const kinds = s.split(',').map((k) => k.trim()) as PublisherKind[];
  for (const k of kinds) if (!PUBLISHER_KINDS.includes(k)) throw new Error(`--publishers ${PUBLISHER_KINDS.join('|')} (comma-separated for a mix), not ${k}`);
  return kinds;
}

/** A mix of kinds: connection `id` gets kinds[id % n]. */
export const kindOf = (kinds: readonly PublisherKind[], id: number): PublisherKind => kinds[id % kinds.length]!;

const MARKER = Buffer.from('RGPBENCH', 'latin1');
const MARKER_AT = 8;
const MODE_AT = MARKER_AT + MARKER.length;
const ID_AT = MODE_AT + 1;
const KIND_AT = ID_AT + 4;

function pseudoRandom(length: number, seed: number): Buffer {
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

/** C0 + C1 with the bench marker, mode, connection id and publisher kind. */
export function c0c1(mode: ModeByte, id: number, kind: PublisherKind = 'plain'): Buffer {
  const b = Buffer.alloc(C0C1_LENGTH);
  b[0] = 3;
  pseudoRandom(HANDSHAKE_PACKET_SIZE - 8, 7).copy(b, 1 + 8);
  MARKER.copy(b, 1 + MARKER_AT);
  b[1 + MODE_AT] = mode;
  b.writeUInt32BE(id >>> 0, 1 + ID_AT);
  b[1 + KIND_AT] = PUBLISHER_KINDS.indexOf(kind);
  return b;
}

/** Reads mode, id and publisher kind from C0+C1 (null when it is not a bench connection). */
export function parseC0C1(b: Buffer): { mode: number; id: number; kind: PublisherKind } | null {
  if (b.length < C0C1_LENGTH || b[0] !== 3) return null;
  if (!b.subarray(1 + MARKER_AT, 1 + MARKER_AT + MARKER.length).equals(MARKER)) return null;
  return { mode: b[1 + MODE_AT]!, id: b.readUInt32BE(1 + ID_AT), kind: PUBLISHER_KINDS[b[1 + KIND_AT]!] ?? 'plain' };
}

interface CapturedMessage {
  csid: number;
  timestamp: number;
  typeId: number;
  streamId: number;
  payload: Buffer;
}

function readCapture(name: string): CapturedMessage[] {
  const bytes = readFileSync(`${FIXTURES}${name}.bin`);
  const start = new HandshakeSkipper().consume(bytes, 0);
  const out: CapturedMessage[] = [];
  const reader = new ChunkReader(
    {
      message(info, payload) {
        out.push({ csid: info.csid, timestamp: info.timestamp, typeId: info.typeId, streamId: info.streamId, payload: Buffer.from(payload!) });
      },
    },
    () => true,
  );
  reader.feed(bytes.subarray(start));
  return out;
}

function isSequenceHeader(m: CapturedMessage): boolean {
  if (m.typeId === MessageType.Video) return (m.payload[0]! & 0x0f) === 7 && m.payload[1] === 0;
  if (m.typeId === MessageType.Audio) return m.payload[0]! >> 4 === 10 && m.payload[1] === 0;
  return false;
}

/** One message as fmt 1 (delta timestamp, length, type) + fmt 3 continuation chunks. */
function encodeFmt1(csid: number, delta: number, typeId: number, payload: Buffer, chunkSize: number): Buffer {
  if (csid < 2 || csid > 63) throw new RangeError('bench media uses one-byte csids');
  if (delta < 0 || delta >= 0xffffff) throw new RangeError(`delta ${delta}`);
  const n = Math.max(1, Math.ceil(payload.length / chunkSize));
  const out = Buffer.alloc(8 + payload.length + (n - 1));
  out[0] = (1 << 6) | csid;
  out.writeUIntBE(delta, 1, 3);
  out.writeUIntBE(payload.length, 4, 3);
  out[7] = typeId;
  let p = 8;
  for (let sent = 0; ;) {
    const k = Math.min(chunkSize, payload.length - sent);
    payload.copy(out, p, sent, sent + k);
    p += k;
    sent += k;
    if (sent >= payload.length) break;
    out[p++] = (3 << 6) | csid;
  }
  return out;
}

export interface PublishStream {
  /** Everything before the repeated media, C0+C1 included, for connection id 0 and a `plain` publisher (see `preambleFor`). */
  preamble: Buffer;
  /** One pass over the capture's media; repeatable. */
  block: Buffer;
  /** Media messages and media payload bytes in one block, and the timestamp advance per block (ms). */
  blockMessages: number;
  blockMediaBytes: number;
  blockPeriodMs: number;
  /** What the sink sends back: the captured nginx-rtmp answer, S0+S1+S2 included. */
  serverAnswer: Buffer;
  /** The preamble of a `kind` publisher, C1 carrying `id` (and `mode`). */
  preambleFor(id: number, mode?: ModeByte, kind?: PublisherKind): Buffer;
}

let cached: PublishStream | null = null;

export function publishStream(): PublishStream {
  if (cached !== null) return cached;
  const messages = readCapture(`${CAPTURE}.c2s`);
  const media = messages.filter((m) => m.typeId === MessageType.Audio || m.typeId === MessageType.Video);
  const seeds = media.filter(isSequenceHeader);
  const body = media.filter((m) => !isSequenceHeader(m));
  const metadata = messages.find((m) => m.typeId === MessageType.DataAmf0);
  if (seeds.length !== 2 || body.length < 10 || metadata === undefined) throw new Error(`unexpected capture layout in ${CAPTURE}`);

  // Timestamps of one block, normalised to start at 0 and scaled so that the block plays for as
  // long as it takes to send at NOMINAL_BPS (the capture's own media rate is lower); the next
  // block starts `period` later. Header sizes do not depend on timestamps, so the length is known first.
  const blockLength = body.reduce((a, m) => a + 8 + m.payload.length + Math.max(0, Math.ceil(m.payload.length / CHUNK_SIZE) - 1), 0);
  const period = Math.round((blockLength * 8 * 1000) / NOMINAL_BPS);
  const t0 = Math.min(...body.map((m) => m.timestamp));
  const span = Math.max(...body.map((m) => m.timestamp)) - t0;
  const scale = (period * 0.97) / span;
  const at = (m: CapturedMessage): number => Math.floor((m.timestamp - t0) * scale);
  const lastOnCsid = new Map<number, number>();
  for (const m of body) lastOnCsid.set(m.csid, at(m));
  const parts: Buffer[] = [];
  const prev = new Map<number, number>();
  for (const m of body) {
    const u = at(m);
    const before = prev.get(m.csid) ?? lastOnCsid.get(m.csid)! - period;
    parts.push(encodeFmt1(m.csid, u - before, m.typeId, m.payload, CHUNK_SIZE));
    prev.set(m.csid, u);
  }
  const block = Buffer.concat(parts);
  if (block.length !== blockLength) throw new Error('block length mismatch');

  // Preamble: the command exchange a publisher sends, then each media csid's sequence header as
  // fmt 0 at the timestamp of the block's last message on that csid (so the block's first delta holds).
  const preambleOf = (kind: PublisherKind): Buffer => {
    const w = new ChunkWriter(false);
    const cmd = (csid: number, streamId: number, payload: Buffer) => w.write({ csid, timestamp: 0, typeId: MessageType.CommandAmf0, streamId, payload });
    const pre: Buffer[] = [c0c1(Mode.Publish, 0, kind), pseudoRandom(HANDSHAKE_PACKET_SIZE, 11)];
    const announce = kind === 'goaway' ? { supportsGoAway: true } : kind === 'erpc' ? { capsEx: CAPS_EX_RECONNECT } : {};
    pre.push(w.write(controlMessage(MessageType.SetChunkSize, CHUNK_SIZE)));
    w.chunkSize = CHUNK_SIZE;
    pre.push(
      cmd(
        3,
        0,
        encodeCommand(
          'connect',
          1,
          amf0Object({ app: 'live', type: 'nonprivate', flashVer: 'FMLE/3.0 (compatible; Lavf58.76.100)', tcUrl: 'rtmp://127.0.0.1:1935/live', ...announce }),
        ),
      ),
      cmd(3, 0, encodeCommand('releaseStream', 2, null, 'bench')),
      cmd(3, 0, encodeCommand('FCPublish', 3, null, 'bench')),
      cmd(3, 0, encodeCommand('createStream', 4, null)),
      cmd(8, 1, encodeCommand('publish', 5, null, 'bench', 'live')),
      w.write({ csid: 4, timestamp: 0, typeId: MessageType.DataAmf0, streamId: 1, payload: metadata.payload }),
    );
    for (const s of seeds) {
      const last = lastOnCsid.get(s.csid);
      if (last === undefined) throw new Error(`capture has a sequence header on csid ${s.csid} but no media there`);
      pre.push(w.write({ csid: s.csid, timestamp: last, typeId: s.typeId, streamId: 1, payload: s.payload }));
    }
    return Buffer.concat(pre);
  };
  const preambles = new Map(PUBLISHER_KINDS.map((k) => [k, preambleOf(k)]));
  const preamble = preambles.get('plain')!;

  cached = {
    preamble,
    block,
    blockMessages: body.length,
    blockMediaBytes: body.reduce((a, m) => a + m.payload.length, 0),
    blockPeriodMs: period,
    serverAnswer: readFileSync(`${FIXTURES}${CAPTURE}.s2c.bin`),
    preambleFor(id: number, mode: ModeByte = Mode.Publish, kind: PublisherKind = 'plain'): Buffer {
      const b = Buffer.from(preambles.get(kind)!);
      c0c1(mode, id, kind).copy(b, 0);
      return b;
    },
  };
  return cached;
}

/** `block` repeated until at least `minBytes`: the buffer a connection writes slices of, cyclically. */
export function repeatedBlock(minBytes: number): Buffer {
  const { block } = publishStream();
  const n = Math.max(1, Math.ceil(minBytes / block.length));
  return Buffer.concat(Array.from({ length: n }, () => block));
}

/** Acknowledgement (type 3) as a complete fmt 0 chunk on csid 2. */
export function ackChunk(sequence: number): Buffer {
  const b = Buffer.alloc(16);
  b[0] = 2;
  b.writeUIntBE(4, 4, 3);
  b[7] = MessageType.Acknowledgement;
  b.writeUInt32BE(sequence >>> 0, 12);
  return b;
}

/** User Control Ping Request as a complete fmt 0 chunk on csid 2: the ping-pong probe (18 bytes). */
export function pingChunk(value: number): Buffer {
  const b = Buffer.alloc(18);
  b[0] = 2;
  b.writeUIntBE(6, 4, 3);
  b[7] = MessageType.UserControl;
  b.writeUInt16BE(6, 12);
  b.writeUInt32BE(value >>> 0, 14);
  return b;
}

/** S0 + S1 + S2 for the echo mode (S2 echoes C1). */
export function serverHandshake(c0c1Bytes: Buffer): Buffer {
  return Buffer.concat([Buffer.of(3), pseudoRandom(HANDSHAKE_PACKET_SIZE, 13), c0c1Bytes.subarray(1, C0C1_LENGTH)]);
}

/** The 13 bytes of the Go Away chunk the proxy injects (docs/protocol.md#go-away). */
export const GO_AWAY_CHUNK = goAwayChunk();
