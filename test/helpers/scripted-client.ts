import { type Amf0Value, amf0Object } from '../../src/rtmp/amf0.js';
import { ChunkReader, type MessageInfo } from '../../src/rtmp/chunk-reader.js';
import { ChunkWriter, type OutgoingMessage } from '../../src/rtmp/chunk-writer.js';
import { HANDSHAKE_PACKET_SIZE, MessageType } from '../../src/rtmp/constants.js';
import { type Command, controlMessage, decodeCommand, encodeCommand } from '../../src/rtmp/messages.js';
import type { MemSocket } from './mem-socket.js';

export interface ReceivedMessage {
  typeId: number;
  csid: number;
  streamId: number;
  payload: Buffer;
  command: Command | null;
}

/**
 * An RTMP publisher driven step by step by a test, over an in-memory socket: plain handshake,
 * then whatever messages the test sends (its own chunk writer); everything the server side sends
 * is parsed and kept, and a test waits for a message by predicate.
 */
export class ScriptedClient {
  readonly writer = new ChunkWriter();
  readonly received: ReceivedMessage[] = [];
  private readonly reader: ChunkReader;
  private hs: Buffer | null = Buffer.alloc(0);
  private readonly waiters: { match: (m: ReceivedMessage) => boolean; resolve: (m: ReceivedMessage) => void }[] = [];
  private readonly c1 = Buffer.alloc(HANDSHAKE_PACKET_SIZE, 0x5a);
  private handshaken: (() => void) | null = null;
  ended = false;

  constructor(readonly sock: MemSocket) {
    this.reader = new ChunkReader({ message: (info, payload) => this.onMessage(info, payload) }, () => true);
    sock.on('data', (buf: Buffer) => this.onData(buf));
    sock.on('end', () => {
      this.ended = true;
    });
    sock.on('error', () => {});
  }

  /** C0+C1, then C2 once S0+S1+S2 are in; resolves then. */
  handshake(): Promise<void> {
    this.sock.write(Buffer.concat([Buffer.of(3), this.c1]));
    return new Promise((r) => (this.handshaken = r));
  }

  send(msg: OutgoingMessage): void {
    this.sock.write(this.writer.write(msg));
  }

  setChunkSize(size: number): void {
    this.send(controlMessage(MessageType.SetChunkSize, size));
    this.writer.chunkSize = size;
  }

  command(name: string, txn: number, obj: Amf0Value, ...args: Amf0Value[]): void {
    this.send({ csid: 3, timestamp: 0, typeId: MessageType.CommandAmf0, streamId: 0, payload: encodeCommand(name, txn, obj, ...args) });
  }

  connect(app: string, extra: Record<string, Amf0Value> = {}): void {
    this.command('connect', 1, amf0Object({ app, type: 'nonprivate', flashVer: 'FMLE/3.0', tcUrl: `rtmp://proxy/${app}`, ...extra }));
  }

  /** releaseStream, FCPublish, createStream (txn 4). */
  prepare(key: string): void {
    this.command('releaseStream', 2, null, key);
    this.command('FCPublish', 3, null, key);
    this.command('createStream', 4, null);
  }

  publish(streamId: number, key: string): void {
    this.send({ csid: 8, timestamp: 0, typeId: MessageType.CommandAmf0, streamId, payload: encodeCommand('publish', 5, null, key, 'live') });
  }

  media(streamId: number, typeId: number, timestamp: number, payload: Buffer): void {
    this.send({ csid: typeId === MessageType.Audio ? 4 : 6, timestamp, typeId, streamId, payload });
  }

  /** The first message received (already or later) that matches. */
  waitFor(match: (m: ReceivedMessage) => boolean): Promise<ReceivedMessage> {
    const seen = this.received.find(match);
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve) => this.waiters.push({ match, resolve }));
  }

  /** A command by name (and, for `onStatus`, its info code). */
  waitCommand(name: string, code?: string): Promise<ReceivedMessage> {
    return this.waitFor((m) => m.command !== null && m.command.name === name && (code === undefined || statusCode(m.command) === code));
  }

  private onData(buf: Buffer): void {
    if (this.hs !== null) {
      this.hs = Buffer.concat([this.hs, buf]);
      const need = 1 + 2 * HANDSHAKE_PACKET_SIZE;
      if (this.hs.length < need) return;
      const rest = this.hs.subarray(need);
      this.sock.write(Buffer.from(this.hs.subarray(1, 1 + HANDSHAKE_PACKET_SIZE)));
      this.hs = null;
      this.handshaken?.();
      if (rest.length === 0) return;
      buf = rest;
    }
    this.reader.feed(buf);
  }

  private onMessage(info: MessageInfo, payload: Buffer | null): void {
    const p = Buffer.from(payload ?? Buffer.alloc(0));
    let command: Command | null = null;
    if (info.typeId === MessageType.CommandAmf0) command = decodeCommand(info.typeId, p);
    const m: ReceivedMessage = { typeId: info.typeId, csid: info.csid, streamId: info.streamId, payload: p, command };
    this.received.push(m);
    for (const w of [...this.waiters]) {
      if (!w.match(m)) continue;
      this.waiters.splice(this.waiters.indexOf(w), 1);
      w.resolve(m);
    }
  }
}

export function statusCode(cmd: Command): string | null {
  const info = cmd.args[0];
  if (info === null || typeof info !== 'object' || Array.isArray(info)) return null;
  const code = (info as Record<string, unknown>)['code'];
  return typeof code === 'string' ? code : null;
}
