import { createHash } from 'node:crypto';
import net from 'node:net';
import { amf0Object } from '../../src/rtmp/amf0.js';
import { ChunkReader, type MessageInfo } from '../../src/rtmp/chunk-reader.js';
import { ChunkWriter, type OutgoingMessage } from '../../src/rtmp/chunk-writer.js';
import { HANDSHAKE_PACKET_SIZE, MessageType } from '../../src/rtmp/constants.js';
import { isAudioSequenceHeader, isMetadataMessage, isVideoKeyframe, isVideoSequenceHeader } from '../../src/rtmp/media.js';
import { type Command, controlMessage, decodeCommand, encodeCommand, userControlMessage, UserControlEvent } from '../../src/rtmp/messages.js';

/**
 * A scriptable RTMP ingest server for the E-RTMP and migration tests: plain handshake, answers
 * connect / createStream / publish like nginx-rtmp (configurable chunk size, header
 * compression, pings), records every media and data message it receives with a hash of its
 * body, and can misbehave on purpose (bad handshake, rejected connect or publish, silence, dying
 * after N media messages) for the failure paths.
 */

export interface RecordedMessage {
  typeId: number;
  timestamp: number;
  streamId: number;
  length: number;
  /** sha1 of the body, hex (first 16 chars). */
  hash: string;
  kind: 'keyframe' | 'video' | 'audio' | 'video-config' | 'audio-config' | 'metadata' | 'data' | 'other';
  at: number;
}

export interface ServerScript {
  /** S→C chunk size, sent right after the handshake (nginx-rtmp: 4096). */
  chunkSize?: number;
  /** fmt 1/2/3 headers where possible. */
  compress?: boolean;
  handshake?: 'ok' | 'bad-version' | 'close';
  connect?: 'accept' | 'reject' | 'ignore';
  publish?: 'accept' | 'reject' | 'ignore';
  /** Destroy the connection after this many media messages. */
  dieAfterMedia?: number;
  /** Stop reading after this many media messages (a stalled ingest: the sender's writes back up). */
  stallAfterMedia?: number;
  /** Destroy the connection this many ms after answering Publish.Start. */
  dieAfterPublishMs?: number;
  /** Send a User Control PingRequest every this many ms once publishing (nginx-rtmp `ping`). */
  pingEveryMs?: number;
  /** Window Ack Size sent at connect. */
  windowAckSize?: number;
  /** Acknowledge received bytes by this window (as nginx-rtmp does for the client's window). */
  ackReceived?: boolean;
}

export interface RecordingConnection {
  id: number;
  socket: net.Socket;
  writer: ChunkWriter;
  commands: Command[];
  /** Media and data messages, in arrival order. */
  messages: RecordedMessage[];
  streamKey: string | null;
  app: string | null;
  connectObject: Record<string, unknown> | null;
  published: boolean;
  publishStreamId: number;
  /** Acknowledgement sequence numbers received from the client. */
  acks: number[];
  /** Ping responses received (timestamps echoed). */
  pongs: number[];
  bytesReceived: number;
  closed: boolean;
  parseError: Error | null;
  send(msg: OutgoingMessage): void;
}

export function hashBody(b: Uint8Array): string {
  return createHash('sha1').update(b).digest('hex').slice(0, 16);
}

export function classify(typeId: number, body: Buffer): RecordedMessage['kind'] {
  if (typeId === MessageType.Video) return isVideoSequenceHeader(body) ? 'video-config' : isVideoKeyframe(body) ? 'keyframe' : 'video';
  if (typeId === MessageType.Audio) return isAudioSequenceHeader(body) ? 'audio-config' : 'audio';
  if (typeId === MessageType.DataAmf0) return isMetadataMessage(body) ? 'metadata' : 'data';
  return 'other';
}

export class RecordingRtmpServer {
  readonly connections: RecordingConnection[] = [];
  script: ServerScript;
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  port = 0;

  constructor(script: ServerScript = {}) {
    this.script = script;
    this.server = net.createServer((s) => this.accept(s));
  }

  async listen(port = 0): Promise<number> {
    await new Promise<void>((r) => this.server.listen(port, '127.0.0.1', () => r()));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  /** Connections that published `key`. */
  publishersOf(key: string): RecordingConnection[] {
    return this.connections.filter((c) => c.published && c.streamKey === key);
  }

  /** Serves a connection that did not come through the listener (an in-memory socket, test/helpers/mem-socket.ts). */
  adopt(socket: net.Socket): void {
    this.accept(socket);
  }

  private accept(socket: net.Socket): void {
    const script = { ...this.script };
    this.sockets.add(socket);
    const writer = new ChunkWriter(script.compress ?? false);
    let ping: NodeJS.Timeout | null = null;
    const conn: RecordingConnection = {
      id: this.connections.length + 1,
      socket,
      writer,
      commands: [],
      messages: [],
      streamKey: null,
      app: null,
      connectObject: null,
      published: false,
      publishStreamId: 0,
      acks: [],
      pongs: [],
      bytesReceived: 0,
      closed: false,
      parseError: null,
      send: (msg) => {
        if (!socket.destroyed) socket.write(writer.write(msg));
      },
    };
    this.connections.push(conn);
    socket.on('error', () => {});
    socket.on('close', () => {
      conn.closed = true;
      this.sockets.delete(socket);
      if (ping !== null) clearInterval(ping);
    });
    let media = 0;
    let clientWindow = 0;
    let lastAck = 0;
    const reader = new ChunkReader(
      {
        message: (info: MessageInfo, payload: Buffer | null) => {
          const t = info.typeId;
          if (t === MessageType.Audio || t === MessageType.Video || t === MessageType.DataAmf0 || t === MessageType.DataAmf3) {
            const body = payload ?? Buffer.alloc(0);
            conn.messages.push({
              typeId: t,
              timestamp: info.timestamp,
              streamId: info.streamId,
              length: info.length,
              hash: hashBody(body),
              kind: classify(t, body),
              at: Date.now(),
            });
            if (t === MessageType.DataAmf0) return;
            media++;
            if (script.dieAfterMedia !== undefined && media >= script.dieAfterMedia) socket.destroy();
            if (script.stallAfterMedia !== undefined && media >= script.stallAfterMedia) socket.pause();
            return;
          }
          if (payload === null) return;
          if (t === MessageType.Acknowledgement) conn.acks.push(payload.readUInt32BE(0));
          else if (t === MessageType.WindowAckSize) clientWindow = payload.readUInt32BE(0);
          else if (t === MessageType.UserControl && payload.readUInt16BE(0) === UserControlEvent.PingResponse) conn.pongs.push(payload.readUInt32BE(2));
          else if (t === MessageType.CommandAmf0 || t === MessageType.CommandAmf3) {
            const cmd = decodeCommand(t, payload);
            if (cmd === null) return;
            conn.commands.push(cmd);
            this.answer(conn, script, cmd, info.streamId);
            if (conn.published && ping === null && script.pingEveryMs !== undefined) {
              ping = setInterval(() => conn.send(userControlMessage(UserControlEvent.PingRequest, Date.now() & 0x7fffffff)), script.pingEveryMs);
            }
          }
        },
      },
      () => true,
      { maxCollectedSize: 16 * 1024 * 1024 },
    );
    let handshake = Buffer.alloc(0);
    let handshaken = false;
    let answered = false;
    socket.on('data', (buf: Buffer) => {
      conn.bytesReceived += buf.length;
      if (conn.parseError !== null) return;
      let rest = buf;
      if (!handshaken) {
        handshake = Buffer.concat([handshake, buf]);
        if (!answered && handshake.length >= 1 + HANDSHAKE_PACKET_SIZE) {
          answered = true;
          if (script.handshake === 'close') {
            socket.destroy();
            return;
          }
          const s1 = Buffer.alloc(HANDSHAKE_PACKET_SIZE, 7);
          socket.write(Buffer.concat([Buffer.of(script.handshake === 'bad-version' ? 6 : 3), s1, handshake.subarray(1, 1 + HANDSHAKE_PACKET_SIZE)]));
        }
        const total = 1 + 2 * HANDSHAKE_PACKET_SIZE;
        if (handshake.length < total) return;
        handshaken = true;
        rest = handshake.subarray(total);
        handshake = Buffer.alloc(0);
        if (script.chunkSize !== undefined) {
          conn.send(controlMessage(MessageType.SetChunkSize, script.chunkSize));
          writer.chunkSize = script.chunkSize;
        }
      }
      try {
        if (rest.length > 0) reader.feed(rest);
      } catch (err) {
        conn.parseError = err as Error;
      }
      if (script.ackReceived && clientWindow > 0 && conn.bytesReceived - lastAck >= clientWindow) {
        lastAck = conn.bytesReceived;
        conn.send(controlMessage(MessageType.Acknowledgement, lastAck));
      }
    });
  }

  private answer(conn: RecordingConnection, script: ServerScript, cmd: Command, streamId: number): void {
    const reply = (csid: number, sid: number, payload: Buffer): OutgoingMessage => ({
      csid,
      timestamp: 0,
      typeId: MessageType.CommandAmf0,
      streamId: sid,
      payload,
    });
    switch (cmd.name) {
      case 'connect': {
        const o = cmd.commandObject as Record<string, unknown> | null;
        conn.connectObject = o === null ? null : { ...o };
        conn.app = typeof o?.['app'] === 'string' ? (o['app'] as string) : null;
        if (script.connect === 'ignore') return;
        conn.send(controlMessage(MessageType.WindowAckSize, script.windowAckSize ?? 5_000_000));
        conn.send({ ...controlMessage(MessageType.SetPeerBandwidth, 5_000_000), payload: Buffer.of(0, 0x4c, 0x4b, 0x40, 2) });
        if (script.connect === 'reject') {
          conn.send(
            reply(
              3,
              0,
              encodeCommand('_error', cmd.transactionId, null, amf0Object({ level: 'error', code: 'NetConnection.Connect.Rejected', description: 'rejected' })),
            ),
          );
          return;
        }
        conn.send(
          reply(
            3,
            0,
            encodeCommand(
              '_result',
              cmd.transactionId,
              amf0Object({ fmsVer: 'FMS/3,0,1,123', capabilities: 31 }),
              amf0Object({ level: 'status', code: 'NetConnection.Connect.Success', description: 'Connection succeeded.', objectEncoding: 0 }),
            ),
          ),
        );
        return;
      }
      case 'createStream':
        conn.send(reply(3, 0, encodeCommand('_result', cmd.transactionId, null, 1)));
        return;
      case 'publish': {
        conn.streamKey = typeof cmd.args[0] === 'string' ? cmd.args[0] : null;
        conn.publishStreamId = streamId;
        if (script.publish === 'ignore') return;
        if (script.publish === 'reject') {
          conn.send(
            reply(
              5,
              streamId,
              encodeCommand('onStatus', 0, null, amf0Object({ level: 'error', code: 'NetStream.Publish.BadName', description: 'Already publishing' })),
            ),
          );
          return;
        }
        conn.send(userControlMessage(UserControlEvent.StreamBegin, streamId));
        conn.send(
          reply(
            5,
            streamId,
            encodeCommand('onStatus', 0, null, amf0Object({ level: 'status', code: 'NetStream.Publish.Start', description: 'Start publishing' })),
          ),
        );
        conn.published = true;
        if (script.dieAfterPublishMs !== undefined) setTimeout(() => conn.socket.destroy(), script.dieAfterPublishMs);
        return;
      }
      case 'FCUnpublish':
        conn.send(reply(3, 0, encodeCommand('onFCUnpublish', 0, null, amf0Object({ code: 'NetStream.Unpublish.Success' }))));
        return;
      case 'deleteStream':
        conn.send(
          reply(
            5,
            streamId === 0 ? conn.publishStreamId : streamId,
            encodeCommand('onStatus', 0, null, amf0Object({ level: 'status', code: 'NetStream.Unpublish.Success', description: 'Stop publishing' })),
          ),
        );
        return;
      default:
        return;
    }
  }
}
