import { type Amf0Value, amf0Object, encodeAmf0Value } from '../../src/rtmp/amf0.js';
import { ChunkWriter } from '../../src/rtmp/chunk-writer.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { controlMessage, encodeCommand } from '../../src/rtmp/messages.js';

/**
 * The hostile `connect` of issue 14: a command object whose properties are strict arrays of
 * 1,024 empty objects, until the body reaches `bytes` (~256 KiB by default, the largest command
 * the proxy collects). Decoded without a per-message budget it is ~260,000 objects.
 */
export function hostileConnect(bytes = 255 * 1024): Buffer {
  const array: Amf0Value[] = Array.from({ length: 1024 }, () => amf0Object({}));
  const perArray = encodeAmf0Value(array).length + 4;
  const n = Math.max(1, Math.floor((bytes - 200) / perArray));
  const entries: Record<string, Amf0Value> = { app: 'live', tcUrl: 'rtmp://h/live', flashVer: 'FMLE/3.0' };
  for (let i = 0; i < n; i++) entries[`a${i}`] = array;
  return encodeCommand('connect', 1, amf0Object(entries));
}

/**
 * The other hostile client of issue 14: after the handshake, Set Chunk Size `chunkSize`, then
 * on each of `csids` chunk streams the first `chunks` chunks of a `declared`-byte command message
 * that never ends (a proxy collecting commands holds them all). Defaults: 28 streams × 192 KiB
 * of 256 KiB messages, ~5.4 MiB — the reproduction.
 */
export function incompleteCommands(opts: { csids?: number; declared?: number; chunkSize?: number; chunks?: number } = {}): Buffer[] {
  const { csids = 28, declared = 256 * 1024, chunkSize = 64 * 1024, chunks = 3 } = opts;
  const w = new ChunkWriter();
  const out: Buffer[] = [w.write(controlMessage(MessageType.SetChunkSize, chunkSize))];
  w.chunkSize = chunkSize;
  const payload = Buffer.alloc(declared, 0x05); // AMF0 nulls: would decode, were it ever complete
  for (let i = 0; i < csids; i++) {
    const csid = 3 + i; // one-byte basic headers up to 63: 12-byte fmt 0 header, 1-byte fmt 3
    const full = w.write({ csid, timestamp: 0, typeId: MessageType.CommandAmf0, streamId: 0, payload });
    out.push(full.subarray(0, 12 + chunkSize + (chunks - 1) * (1 + chunkSize)));
  }
  return out;
}
