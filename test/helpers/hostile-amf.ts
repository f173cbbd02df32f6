import { type Amf0Value, amf0Object, encodeAmf0Value } from '../../src/rtmp/amf0.js';
import { encodeCommand } from '../../src/rtmp/messages.js';

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
