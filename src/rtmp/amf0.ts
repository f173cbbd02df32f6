/**
 * AMF0 decoder/encoder for untrusted input (Adobe "Action Message Format -- AMF 0", 2006;
 * section numbers below refer to that document, "AMF0 spec").
 *
 * Pure: no I/O, no timers. The decoder reads bytes that come straight off a TCP socket, so it
 *  - throws nothing but {@link Amf0Error}, on any input;
 *  - checks every length/count against the bytes actually left before it reads or allocates;
 *  - bounds nesting depth, items per container, string length and top-level values;
 *  - and, per call, the values decoded at any depth and the string/key bytes decoded in total
 *    (one budget per message: a container limit alone lets nested containers multiply it).
 *
 * Values are kept faithful enough for a byte-exact re-encode: references are not resolved,
 * dates keep their time zone, ECMA arrays and typed objects keep their own classes. Known
 * lossy cases (only for bytes the encoder never produces): long strings shorter than 64 KiB
 * re-encode as 0x02, non-canonical NaNs and non-1 `true` bytes are normalised, ECMA array counts
 * are recomputed, invalid UTF-8 becomes U+FFFD, and integer-like keys ("0", "1") are reordered
 * first by JavaScript's own property order.
 */
import { Buffer, constants as bufferConstants } from 'node:buffer';

/** Type markers (AMF0 spec §2.1). */
const enum Marker {
  Number = 0x00,
  Boolean = 0x01,
  String = 0x02,
  Object = 0x03,
  // 0x04 MovieClip: reserved, not supported (§2.1) -> unknown-marker.
  Null = 0x05,
  Undefined = 0x06,
  Reference = 0x07,
  EcmaArray = 0x08,
  ObjectEnd = 0x09,
  StrictArray = 0x0a,
  Date = 0x0b,
  LongString = 0x0c,
  Unsupported = 0x0d,
  // 0x0E RecordSet: reserved, not supported (§2.1) -> unknown-marker.
  XmlDocument = 0x0f,
  TypedObject = 0x10,
  AvmPlus = 0x11,
}

const U16_MAX = 0xffff;
const U32_MAX = 0xffffffff;

/**
 * Absolute ceiling on nesting, whatever the caller's limits say: the decoder and encoder
 * recurse, and a caller passing `maxDepth: Infinity` must still get an Amf0Error, not a
 * RangeError from a blown stack.
 */
const HARD_MAX_DEPTH = 1000;

export type Amf0Value =
  | number
  | boolean
  | string
  | null
  | undefined
  | Amf0Object
  | Amf0EcmaArray
  | Amf0Value[]
  | Amf0Date
  | Amf0TypedObject
  | Amf0Xml
  | Amf0Unsupported
  | Amf0Reference;

/** Anonymous object (§2.5). Decoded objects have a null prototype, so "__proto__" is plain data. */
export type Amf0Object = { [key: string]: Amf0Value };

/** ECMA array (§2.10): associative entries; the wire count is recomputed on encode. */
export class Amf0EcmaArray {
  constructor(public entries: Amf0Object) {}
}

/** Typed object (§2.18): class name plus entries. */
export class Amf0TypedObject {
  constructor(
    public className: string,
    public entries: Amf0Object,
  ) {}
}

/** Date (§2.13): ms since the epoch (UTC) plus the reserved S16 time zone, kept for round trips. */
export class Amf0Date {
  constructor(
    public ms: number,
    public timezone = 0,
  ) {}
}

/** XML document (§2.17): UTF-8 text with a U32 length. */
export class Amf0Xml {
  constructor(public xml: string) {}
}

/** Reference (§2.9): U16 index into the message's complex objects; kept unresolved. */
export class Amf0Reference {
  constructor(public index: number) {}
}

/** Unsupported marker (§2.14). */
export class Amf0Unsupported {}
export const AMF0_UNSUPPORTED: Amf0Unsupported = new Amf0Unsupported();

export interface Amf0Limits {
  /** Most nested containers (object, ECMA array, strict array, typed object); 0 = none. */
  maxDepth: number;
  /** Most entries/elements in one container. */
  maxItems: number;
  /** Longest string, key, class name or XML document, in UTF-8 bytes. */
  maxStringBytes: number;
  /** Most top-level values {@link decodeAmf0} accepts. */
  maxValues: number;
  /**
   * Most values decoded by one call, at any depth (every object property, array element and
   * top-level value counts once): bounds the work and the heap of one message whatever its shape.
   */
  maxTotalValues: number;
  /** Most UTF-8 bytes of strings, keys, class names and XML decoded by one call, in total. */
  maxTotalStringBytes: number;
}

export const DEFAULT_AMF0_LIMITS: Readonly<Amf0Limits> = Object.freeze({
  maxDepth: 16,
  maxItems: 1024,
  maxStringBytes: 65536 * 4,
  maxValues: 64,
  maxTotalValues: 4096,
  maxTotalStringBytes: 256 * 1024,
});

export type Amf0ErrorCode = 'truncated' | 'depth' | 'too-many-items' | 'string-too-long' | 'unknown-marker' | 'amf3-unsupported' | 'over-budget' | 'invalid';

export class Amf0Error extends Error {
  override readonly name = 'Amf0Error';
  readonly code: Amf0ErrorCode;
  /** Input byte offset where decoding failed; -1 for encoder and argument errors. */
  readonly offset: number;

  constructor(code: Amf0ErrorCode, offset: number, detail?: string) {
    super(`AMF0 ${code}${offset >= 0 ? ` at offset ${offset}` : ''}${detail ? `: ${detail}` : ''}`);
    this.code = code;
    this.offset = offset;
  }
}

// ---------------------------------------------------------------------------------------------
// Decoder
// ---------------------------------------------------------------------------------------------

interface Reader {
  readonly b: Buffer;
  readonly dv: DataView;
  readonly end: number;
  pos: number;
  readonly maxDepth: number;
  readonly maxItems: number;
  readonly maxStringBytes: number;
  readonly budget: Amf0Budget;
}

/**
 * What is left of one message's decode budget (limits.maxTotalValues, maxTotalStringBytes).
 * Each decode call takes from it; pass the same object to several calls on one message (say, the
 * command name first, the rest only when needed) so they share one budget.
 */
export interface Amf0Budget {
  values: number;
  stringBytes: number;
}

/** A fresh message budget from `limits` (defaults for what they leave out). */
export function amf0Budget(limits?: Partial<Amf0Limits>): Amf0Budget {
  const l = resolveLimits(limits);
  return { values: l.maxTotalValues, stringBytes: l.maxTotalStringBytes };
}

function resolveLimits(limits: Partial<Amf0Limits> | undefined): Amf0Limits {
  const out: Amf0Limits = { ...DEFAULT_AMF0_LIMITS };
  if (limits === undefined) return out;
  if (typeof limits !== 'object' || limits === null) throw new Amf0Error('invalid', -1, 'limits must be an object');
  for (const key of Object.keys(DEFAULT_AMF0_LIMITS) as (keyof Amf0Limits)[]) {
    const v = limits[key];
    if (v === undefined) continue;
    // Infinity means "no limit"; NaN or negatives are caller bugs.
    if (typeof v !== 'number' || !(v >= 0)) throw new Amf0Error('invalid', -1, `limits.${key} must be a number >= 0`);
    out[key] = v;
  }
  return out;
}

function makeReader(buf: Uint8Array, offset: number, limits: Amf0Limits, budget: Amf0Budget | undefined): Reader {
  if (!(buf instanceof Uint8Array)) throw new Amf0Error('invalid', -1, 'input must be a Uint8Array');
  if (!Number.isInteger(offset) || offset < 0 || offset > buf.length) {
    throw new Amf0Error('invalid', -1, `offset ${String(offset)} outside the buffer`);
  }
  // Views over the same memory, no copy: Buffer for utf8 slicing, DataView for doubles.
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  return {
    b,
    dv: new DataView(b.buffer, b.byteOffset, b.byteLength),
    end: b.length,
    pos: offset,
    maxDepth: Math.min(limits.maxDepth, HARD_MAX_DEPTH),
    maxItems: limits.maxItems,
    maxStringBytes: limits.maxStringBytes,
    budget: budget ?? { values: limits.maxTotalValues, stringBytes: limits.maxTotalStringBytes },
  };
}

function need(r: Reader, n: number): void {
  if (r.end - r.pos < n) throw new Amf0Error('truncated', r.end, `need ${n} bytes at ${r.pos}`);
}

function readU16(r: Reader): number {
  need(r, 2);
  const v = (r.b[r.pos] << 8) | r.b[r.pos + 1];
  r.pos += 2;
  return v;
}

function readU32(r: Reader): number {
  need(r, 4);
  const v = r.dv.getUint32(r.pos);
  r.pos += 4;
  return v;
}

function readDouble(r: Reader): number {
  need(r, 8);
  const v = r.dv.getFloat64(r.pos);
  r.pos += 8;
  return v;
}

/** UTF-8 payload of `len` bytes (§1.3 UTF-8, §2.4 String, §2.14 Long String). */
function readUtf8(r: Reader, len: number, at: number): string {
  // The limit check comes before the bounds check so a huge claimed length is reported as
  // such; V8's string ceiling keeps Buffer#toString from throwing its own error.
  if (len > r.maxStringBytes || len > bufferConstants.MAX_STRING_LENGTH) {
    throw new Amf0Error('string-too-long', at, `${len} bytes`);
  }
  if (len > r.budget.stringBytes) throw new Amf0Error('over-budget', at, 'more string bytes than the message budget');
  need(r, len);
  r.budget.stringBytes -= len;
  const s = len === 0 ? '' : r.b.toString('utf8', r.pos, r.pos + len);
  r.pos += len;
  return s;
}

function enterContainer(r: Reader, depth: number, at: number): number {
  const inner = depth + 1;
  if (inner > r.maxDepth) throw new Amf0Error('depth', at, `nesting deeper than ${r.maxDepth}`);
  return inner;
}

/**
 * Key/value pairs until the empty key followed by the object-end marker `00 00 09`
 * (§2.5 object-property, §2.11). An empty key followed by any other marker is an ordinary
 * property named "", which keeps encoder output for `{"": x}` decodable.
 */
function readEntries(r: Reader, depth: number, at: number): Amf0Object {
  const obj = Object.create(null) as Amf0Object;
  let count = 0;
  for (;;) {
    const keyAt = r.pos;
    const keyLen = readU16(r);
    if (keyLen === 0) {
      need(r, 1);
      if (r.b[r.pos] === Marker.ObjectEnd) {
        r.pos++;
        return obj;
      }
    }
    const key = readUtf8(r, keyLen, keyAt);
    if (++count > r.maxItems) throw new Amf0Error('too-many-items', at, `more than ${r.maxItems} entries`);
    // Null prototype: assigning "__proto__" creates an own data property, no pollution.
    obj[key] = readValue(r, depth);
  }
}

function readValue(r: Reader, depth: number): Amf0Value {
  const at = r.pos;
  if (r.budget.values <= 0) throw new Amf0Error('over-budget', at, 'more values than the message budget');
  r.budget.values--;
  need(r, 1);
  const marker = r.b[r.pos++];
  switch (marker) {
    case Marker.Number: // §2.2: IEEE-754 double, network byte order
      return readDouble(r);
    case Marker.Boolean: // §2.3: U8, 0 is false, anything else true
      need(r, 1);
      return r.b[r.pos++] !== 0;
    case Marker.String: // §2.4: U16 length
      return readUtf8(r, readU16(r), at);
    case Marker.Object: // §2.5
      return readEntries(r, enterContainer(r, depth, at), at);
    case Marker.Null: // §2.7
      return null;
    case Marker.Undefined: // §2.8
      return undefined;
    case Marker.Reference: // §2.9: U16 index, left unresolved
      return new Amf0Reference(readU16(r));
    case Marker.EcmaArray: {
      // §2.10: the U32 associative-count is often wrong in the wild (FFmpeg, FMLE), so it is
      // skipped and the entries are read up to the object end like an anonymous object.
      const inner = enterContainer(r, depth, at);
      readU32(r);
      return new Amf0EcmaArray(readEntries(r, inner, at));
    }
    case Marker.ObjectEnd: // §2.11: only valid as the terminator of an object's properties
      throw new Amf0Error('invalid', at, 'object-end marker outside an object');
    case Marker.StrictArray: {
      // §2.12: U32 count, then that many values.
      const inner = enterContainer(r, depth, at);
      const count = readU32(r);
      if (count > r.maxItems) throw new Amf0Error('too-many-items', at, `strict array of ${count}`);
      if (count > r.budget.values) throw new Amf0Error('over-budget', at, `strict array of ${count}: more values than the message budget`);
      // Every value takes at least one byte: reject impossible counts before looping.
      need(r, count);
      const arr: Amf0Value[] = [];
      for (let i = 0; i < count; i++) arr.push(readValue(r, inner));
      return arr;
    }
    case Marker.Date: {
      // §2.13: double ms, then S16 time-zone (reserved, should be 0; kept for round trips).
      need(r, 10);
      const ms = r.dv.getFloat64(r.pos);
      const tz = r.dv.getInt16(r.pos + 8);
      r.pos += 10;
      return new Amf0Date(ms, tz);
    }
    case Marker.LongString: // §2.14: U32 length
      return readUtf8(r, readU32(r), at);
    case Marker.Unsupported: // §2.15
      return AMF0_UNSUPPORTED;
    case Marker.XmlDocument: // §2.17: U32 length UTF-8
      return new Amf0Xml(readUtf8(r, readU32(r), at));
    case Marker.TypedObject: {
      // §2.18: U16 class name, then properties like an anonymous object.
      const inner = enterContainer(r, depth, at);
      const className = readUtf8(r, readU16(r), at);
      return new Amf0TypedObject(className, readEntries(r, inner, at));
    }
    case Marker.AvmPlus: // §3.1: switch to AMF3 for the rest of the value; not implemented
      throw new Amf0Error('amf3-unsupported', at);
    default: // 0x04 MovieClip, 0x0E RecordSet (reserved, §2.6/§2.16) and anything > 0x11
      throw new Amf0Error('unknown-marker', at, `0x${marker.toString(16).padStart(2, '0')}`);
  }
}

/**
 * Decodes one value at `offset`; `next` is the offset just past it. Throws only Amf0Error
 * ('truncated' when the value runs past the end of `buf`). `budget`: shared with other calls on
 * the same message (default: a fresh one from `limits`).
 */
export function decodeAmf0Value(buf: Uint8Array, offset: number, limits?: Partial<Amf0Limits>, budget?: Amf0Budget): { value: Amf0Value; next: number } {
  const r = makeReader(buf, offset, resolveLimits(limits), budget);
  const value = readValue(r, 0);
  return { value, next: r.pos };
}

/**
 * Decodes every value in `buf` from `offset` (e.g. an AMF0 command message body). Throws only
 * Amf0Error. `budget` as for {@link decodeAmf0Value}.
 */
export function decodeAmf0(buf: Uint8Array, limits?: Partial<Amf0Limits>, budget?: Amf0Budget, offset = 0): Amf0Value[] {
  const lim = resolveLimits(limits);
  const r = makeReader(buf, offset, lim, budget);
  const values: Amf0Value[] = [];
  while (r.pos < r.end) {
    if (values.length >= lim.maxValues) {
      throw new Amf0Error('too-many-items', r.pos, `more than ${lim.maxValues} values`);
    }
    values.push(readValue(r, 0));
  }
  return values;
}

// ---------------------------------------------------------------------------------------------
// Encoder
// ---------------------------------------------------------------------------------------------

class Writer {
  private buf = Buffer.allocUnsafe(256);
  private pos = 0;
  /** Containers being written, to turn a cycle into an Amf0Error instead of a stack overflow. */
  readonly open = new Set<object>();

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  u8(v: number): void {
    this.ensure(1);
    this.buf[this.pos++] = v;
  }

  u16(v: number): void {
    this.ensure(2);
    this.buf.writeUInt16BE(v, this.pos);
    this.pos += 2;
  }

  u32(v: number): void {
    this.ensure(4);
    this.buf.writeUInt32BE(v, this.pos);
    this.pos += 4;
  }

  f64(v: number): void {
    this.ensure(8);
    this.buf.writeDoubleBE(v, this.pos);
    this.pos += 8;
  }

  s16(v: number): void {
    this.ensure(2);
    this.buf.writeInt16BE(v, this.pos);
    this.pos += 2;
  }

  utf8(s: string, byteLen: number): void {
    this.ensure(byteLen);
    this.buf.write(s, this.pos, byteLen, 'utf8');
    this.pos += byteLen;
  }

  /** Exact-size copy, so callers never see the spare (uninitialised) capacity. */
  finish(): Buffer {
    const out = Buffer.allocUnsafe(this.pos);
    this.buf.copy(out, 0, 0, this.pos);
    return out;
  }
}

/** UTF-8 with a U16 length prefix: keys (§2.5) and class names (§2.18). */
function writeShortUtf8(w: Writer, s: unknown, what: string): void {
  if (typeof s !== 'string') throw new Amf0Error('invalid', -1, `${what} must be a string`);
  const len = Buffer.byteLength(s, 'utf8');
  if (len > U16_MAX) throw new Amf0Error('invalid', -1, `${what} is ${len} UTF-8 bytes, over 65535`);
  w.u16(len);
  w.utf8(s, len);
}

function writeLongUtf8(w: Writer, s: string): void {
  const len = Buffer.byteLength(s, 'utf8');
  if (len > U32_MAX) throw new Amf0Error('invalid', -1, 'string longer than 2^32-1 bytes');
  w.u32(len);
  w.utf8(s, len);
}

function isEntries(v: unknown): v is Amf0Object {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function writeEntries(w: Writer, entries: Amf0Object, depth: number): void {
  // Object.keys: own enumerable string keys in insertion order (integer-like keys first).
  for (const key of Object.keys(entries)) {
    writeShortUtf8(w, key, 'object key');
    writeValue(w, entries[key], depth);
  }
  w.u16(0); // §2.5: empty UTF-8 key followed by the object-end marker
  w.u8(Marker.ObjectEnd);
}

function enterWrite(w: Writer, container: object, depth: number): number {
  if (w.open.has(container)) throw new Amf0Error('invalid', -1, 'circular structure');
  if (depth >= HARD_MAX_DEPTH) throw new Amf0Error('depth', -1, `nesting deeper than ${HARD_MAX_DEPTH}`);
  w.open.add(container);
  return depth + 1;
}

function writeValue(w: Writer, v: Amf0Value, depth: number): void {
  switch (typeof v) {
    case 'undefined':
      w.u8(Marker.Undefined);
      return;
    case 'number': // AMF0 has no integer type: every number is a double (§2.2)
      w.u8(Marker.Number);
      w.f64(v);
      return;
    case 'boolean':
      w.u8(Marker.Boolean);
      w.u8(v ? 1 : 0);
      return;
    case 'string': {
      const len = Buffer.byteLength(v, 'utf8');
      if (len <= U16_MAX) {
        w.u8(Marker.String);
        w.u16(len);
        w.utf8(v, len);
      } else {
        w.u8(Marker.LongString); // §2.14: strings over 65535 bytes need the U32 form
        writeLongUtf8(w, v);
      }
      return;
    }
    case 'object':
      break;
    default:
      throw new Amf0Error('invalid', -1, `cannot encode a ${typeof v}`);
  }
  if (v === null) {
    w.u8(Marker.Null);
    return;
  }
  if (v instanceof Amf0Date) {
    if (typeof v.ms !== 'number') throw new Amf0Error('invalid', -1, 'Amf0Date.ms must be a number');
    const tz = v.timezone;
    if (!Number.isInteger(tz) || tz < -0x8000 || tz > 0x7fff) {
      throw new Amf0Error('invalid', -1, 'Amf0Date.timezone must be an S16 integer');
    }
    w.u8(Marker.Date);
    w.f64(v.ms);
    w.s16(tz);
    return;
  }
  if (v instanceof Amf0Xml) {
    if (typeof v.xml !== 'string') throw new Amf0Error('invalid', -1, 'Amf0Xml.xml must be a string');
    w.u8(Marker.XmlDocument);
    writeLongUtf8(w, v.xml);
    return;
  }
  if (v instanceof Amf0Reference) {
    const i = v.index;
    if (!Number.isInteger(i) || i < 0 || i > U16_MAX) {
      throw new Amf0Error('invalid', -1, 'Amf0Reference.index must be a U16 integer');
    }
    w.u8(Marker.Reference);
    w.u16(i);
    return;
  }
  if (v instanceof Amf0Unsupported) {
    w.u8(Marker.Unsupported);
    return;
  }

  // Containers.
  const inner = enterWrite(w, v, depth);
  if (Array.isArray(v)) {
    w.u8(Marker.StrictArray);
    w.u32(v.length);
    for (let i = 0; i < v.length; i++) writeValue(w, v[i], inner);
  } else if (v instanceof Amf0EcmaArray) {
    const entries = v.entries;
    if (!isEntries(entries)) throw new Amf0Error('invalid', -1, 'Amf0EcmaArray.entries must be an object');
    w.u8(Marker.EcmaArray);
    w.u32(Object.keys(entries).length);
    writeEntries(w, entries, inner);
  } else if (v instanceof Amf0TypedObject) {
    if (!isEntries(v.entries)) throw new Amf0Error('invalid', -1, 'Amf0TypedObject.entries must be an object');
    w.u8(Marker.TypedObject);
    writeShortUtf8(w, v.className, 'typed object class name');
    writeEntries(w, v.entries, inner);
  } else if (isAmf0Object(v)) {
    w.u8(Marker.Object);
    writeEntries(w, v, inner);
  } else {
    throw new Amf0Error('invalid', -1, `cannot encode an instance of ${String((v as object).constructor?.name)}`);
  }
  w.open.delete(v);
}

/** Encodes values back to back (a command message body). Throws only Amf0Error. */
export function encodeAmf0(values: readonly Amf0Value[]): Buffer {
  if (!Array.isArray(values)) throw new Amf0Error('invalid', -1, 'values must be an array');
  const w = new Writer();
  for (let i = 0; i < values.length; i++) writeValue(w, values[i], 0);
  return w.finish();
}

/** Encodes a single value. Throws only Amf0Error. */
export function encodeAmf0Value(value: Amf0Value): Buffer {
  const w = new Writer();
  writeValue(w, value, 0);
  return w.finish();
}

/**
 * True for an anonymous AMF0 object (§2.5): a null-prototype or plain `{}` object; false for
 * arrays, null and the Amf0* classes.
 */
export function isAmf0Object(v: Amf0Value): v is Amf0Object {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === null || proto === Object.prototype;
}

/** Null-prototype copy of `entries`, in their key order, for building values to encode. */
export function amf0Object(entries: Record<string, Amf0Value>): Amf0Object {
  const obj = Object.create(null) as Amf0Object;
  for (const key of Object.keys(entries)) obj[key] = entries[key];
  return obj;
}
