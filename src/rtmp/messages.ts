import {
  type Amf0Limits,
  type Amf0Object,
  type Amf0Value,
  Amf0Error,
  amf0Budget,
  amf0Object,
  decodeAmf0,
  decodeAmf0Value,
  encodeAmf0,
  isAmf0Object,
} from './amf0.js';
import { COMMAND_CSID, CONTROL_CSID, MessageType } from './constants.js';
import { type OutgoingMessage, encodeFmt0Header } from './chunk-writer.js';
import { ProtocolError } from './errors.js';

/**
 * Typed views of the few messages the proxy reads, and builders for the few it writes.
 * Command layout (RTMP spec §7.1.1 / §7.2): name, transaction id, command object, arguments.
 */

export interface Command {
  name: string;
  transactionId: number;
  commandObject: Amf0Value;
  args: Amf0Value[];
  /**
   * The AMF0 body (after type 17's format byte): a view of the message, valid while it is. The
   * command object starts at `objectAt`, the arguments at `argsAt` (= body.length when none):
   * replay keeps those bytes, never the decoded values.
   */
  body: Buffer;
  objectAt: number;
  argsAt: number;
}

/**
 * Decodes a command message (type 20, or type 17 whose first byte is a 0x00 format marker
 * followed by AMF0 — what Flash clients send with objectEncoding 3). Returns null when the
 * values are not a command (first value not a string), or when `only` is given and does not
 * hold its name (then only the name was decoded). The whole message shares one AMF0 budget
 * (limits.maxTotalValues, maxTotalStringBytes). Throws ProtocolError('bad-amf').
 */
export function decodeCommand(typeId: number, payload: Buffer, limits?: Partial<Amf0Limits>, only?: ReadonlySet<string>): Command | null {
  const body = typeId === MessageType.CommandAmf3 && payload.length > 0 && payload[0] === 0 ? payload.subarray(1) : payload;
  if (body.length === 0) return null;
  try {
    const budget = amf0Budget(limits);
    const name = decodeAmf0Value(body, 0, limits, budget);
    if (typeof name.value !== 'string' || (only !== undefined && !only.has(name.value))) return null;
    let at = name.next;
    let txn: Amf0Value = 0;
    let obj: Amf0Value = null;
    let objectAt = body.length;
    if (at < body.length) {
      const t = decodeAmf0Value(body, at, limits, budget);
      txn = t.value;
      at = t.next;
    }
    if (at < body.length) {
      objectAt = at;
      const o = decodeAmf0Value(body, at, limits, budget);
      obj = o.value;
      at = o.next;
    }
    const argsAt = at;
    const args = at < body.length ? decodeAmf0(body, limits, budget, at) : [];
    return { name: name.value, transactionId: typeof txn === 'number' ? txn : 0, commandObject: obj ?? null, args, body, objectAt, argsAt };
  } catch (err) {
    if (err instanceof Amf0Error) throw new ProtocolError('bad-amf', `command: ${err.message}`);
    throw err;
  }
}

/** What the `connect` command object tells about a publisher (docs/protocol.md#capabilities-in-connect). */
export interface ConnectInfo {
  app: string | null;
  tcUrl: string | null;
  flashVer: string | null;
  /** Client announced RTMP Go Away support. */
  supportsGoAway: boolean;
  /** Which key announced it: the spec's `supportsGoAway` or the early FFmpeg patch's `goaway`. */
  goAwayKey: 'supportsGoAway' | 'goaway' | null;
  /** E-RTMP capsEx bitmask (0x01 = Reconnect), null when absent. */
  capsEx: number | null;
  objectEncoding: number | null;
}

/** capsEx bit for E-RTMP Reconnect (enhanced-rtmp-v2 "capsEx"). */
export const CAPS_EX_RECONNECT = 0x01;

/**
 * Go Away support is announced as AMF0 boolean true by OBS and the FFmpeg patch, as the
 * number 1 in the spec's example; accept any non-zero number too (docs/protocol.md#capabilities-in-connect).
 */
function truthyFlag(v: Amf0Value): boolean {
  return v === true || (typeof v === 'number' && v !== 0 && !Number.isNaN(v));
}

function str(v: Amf0Value): string | null {
  return typeof v === 'string' ? v : null;
}

export function readConnect(cmd: Command): ConnectInfo {
  const o: Amf0Object | null = isAmf0Object(cmd.commandObject) ? cmd.commandObject : null;
  let goAwayKey: ConnectInfo['goAwayKey'] = null;
  if (o !== null) {
    if (truthyFlag(o['supportsGoAway'] ?? false)) goAwayKey = 'supportsGoAway';
    else if (truthyFlag(o['goaway'] ?? false)) goAwayKey = 'goaway';
  }
  const capsEx = o !== null && typeof o['capsEx'] === 'number' && Number.isFinite(o['capsEx']) ? o['capsEx'] : null;
  const enc = o?.['objectEncoding'];
  return {
    app: o ? str(o['app'] ?? null) : null,
    tcUrl: o ? str(o['tcUrl'] ?? null) : null,
    flashVer: o ? str(o['flashVer'] ?? null) : null,
    supportsGoAway: goAwayKey !== null,
    goAwayKey,
    capsEx,
    objectEncoding: typeof enc === 'number' ? enc : null,
  };
}

/** `publish(streamKey, type)`: the key is the first argument after the null command object. */
export function readPublish(cmd: Command): { streamKey: string | null; publishType: string | null } {
  return { streamKey: str(cmd.args[0] ?? null), publishType: str(cmd.args[1] ?? null) };
}

/** `_result` of `createStream`: the first argument is the new message stream id. */
export function readCreateStreamResult(cmd: Command): number | null {
  const id = cmd.args[0];
  return typeof id === 'number' && Number.isInteger(id) && id >= 0 ? id : null;
}

/** `onStatus(0, null, {level, code, description})`: the info object's code. */
export function readStatusCode(cmd: Command): string | null {
  const info = cmd.args[0];
  return isAmf0Object(info ?? null) ? str((info as Amf0Object)['code'] ?? null) : null;
}

export function encodeCommand(name: string, transactionId: number, commandObject: Amf0Value, ...args: Amf0Value[]): Buffer {
  return encodeAmf0([name, transactionId, commandObject, ...args]);
}

/**
 * The complete Go Away chunk, byte for byte as docs/protocol.md#go-away: fmt 0, csid 2, timestamp 0,
 * length 1, type 32, msid 0, and one zero byte of payload — OBS ignores type 32 with an empty
 * body, FFmpeg ignores the body.
 */
export function goAwayChunk(): Buffer {
  const m = goAwayMessage();
  return Buffer.concat([encodeFmt0Header(m.csid, m.timestamp, m.payload.length, m.typeId, m.streamId), m.payload]);
}

/** Go Away as a message, for a writer that owns the client-bound stream (late binding, relay). */
export function goAwayMessage(): OutgoingMessage {
  return { csid: CONTROL_CSID, timestamp: 0, typeId: MessageType.GoAway, streamId: 0, payload: Buffer.of(0) };
}

/** Protocol control message with a 4-byte big-endian value (Set Chunk Size, Ack, Window Ack Size). */
export function controlMessage(typeId: number, value: number): OutgoingMessage {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(value >>> 0);
  return { csid: CONTROL_CSID, timestamp: 0, typeId, streamId: 0, payload };
}

/** User Control event (type 4, spec §6.2 / §7.1.7): 2-byte event type then its data. */
export const UserControlEvent = {
  StreamBegin: 0,
  StreamEOF: 1,
  StreamDry: 2,
  SetBufferLength: 3,
  StreamIsRecorded: 4,
  PingRequest: 6,
  PingResponse: 7,
} as const;

export function userControlMessage(event: number, ...values: number[]): OutgoingMessage {
  const payload = Buffer.alloc(2 + 4 * values.length);
  payload.writeUInt16BE(event);
  values.forEach((v, i) => payload.writeUInt32BE(v >>> 0, 2 + 4 * i));
  return { csid: CONTROL_CSID, timestamp: 0, typeId: MessageType.UserControl, streamId: 0, payload };
}

/** A command message (type 20) ready for a ChunkWriter. */
export function commandMessage(
  csid: number,
  streamId: number,
  name: string,
  transactionId: number,
  commandObject: Amf0Value,
  ...args: Amf0Value[]
): OutgoingMessage {
  return { csid, timestamp: 0, typeId: MessageType.CommandAmf0, streamId, payload: encodeCommand(name, transactionId, commandObject, ...args) };
}

export const RECONNECT_REQUEST_CODE = 'NetConnection.Connect.ReconnectRequest';

/**
 * E-RTMP v2 reconnect request (docs/protocol.md#e-rtmp-reconnect): `onStatus(0, null, {level: "status", code:
 * "NetConnection.Connect.ReconnectRequest", description, tcUrl?})`, type 20, msid 0, csid 3.
 * Without `tcUrl` the client reconnects to the URL it used.
 */
export function reconnectRequestMessage(opts: { tcUrl?: string; description?: string } = {}): OutgoingMessage {
  const info: Record<string, Amf0Value> = {
    level: 'status',
    code: RECONNECT_REQUEST_CODE,
    description: opts.description ?? 'The server is going away: reconnect.',
  };
  if (opts.tcUrl !== undefined && opts.tcUrl !== '') info['tcUrl'] = opts.tcUrl;
  return commandMessage(COMMAND_CSID, 0, 'onStatus', 0, null, amf0Object(info));
}

/**
 * Re-encodes a connect `_result` with E-RTMP `capsEx` (bits OR-ed into any value the server
 * gave) in its properties object — the command object; a null or non-object one becomes
 * `{capsEx}`. Returns null when the bits are already there (nothing to change). AMF0 only:
 * type 17 bodies keep their leading 0x00. Throws ProtocolError('bad-amf').
 */
export function withCapsEx(typeId: number, payload: Buffer, bits: number, limits?: Partial<Amf0Limits>): Buffer | null {
  const cmd = decodeCommand(typeId, payload, limits);
  if (cmd === null) return null;
  let props: Amf0Object;
  if (isAmf0Object(cmd.commandObject)) {
    const prev = cmd.commandObject['capsEx'];
    const had = typeof prev === 'number' && Number.isFinite(prev) ? prev : 0;
    if ((had & bits) === bits) return null;
    props = amf0Object(cmd.commandObject);
    props['capsEx'] = had | bits;
  } else {
    props = amf0Object({ capsEx: bits });
  }
  const body = encodeCommand(cmd.name, cmd.transactionId, props, ...cmd.args);
  return typeId === MessageType.CommandAmf3 && payload.length > 0 && payload[0] === 0 ? Buffer.concat([Buffer.of(0), body]) : body;
}
