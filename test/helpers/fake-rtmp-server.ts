import net from 'node:net';
import { amf0Object } from '../../src/rtmp/amf0.js';
import { ChunkReader, collectControlAndCommands } from '../../src/rtmp/chunk-reader.js';
import { ChunkWriter, type OutgoingMessage } from '../../src/rtmp/chunk-writer.js';
import { HANDSHAKE_PACKET_SIZE, MessageType } from '../../src/rtmp/constants.js';
import { controlMessage, decodeCommand, encodeCommand } from '../../src/rtmp/messages.js';

/**
 * A scriptable RTMP ingest server for tests: plain handshake, answers connect / createStream /
 * publish like nginx-rtmp, counts media, and lets a test write raw bytes to a connection (to
 * exercise header forms a real server rarely uses).
 */
export interface FakeConnection {
  socket: net.Socket;
  writer: ChunkWriter;
  /** Media messages received (audio + video). */
  media: number;
  commands: string[];
  bytesReceived: number;
  /** Every byte received, in order (handshake included), for byte-exact checks. */
  raw: Buffer[];
  /** The client stream stopped parsing here (the connection is kept open and recorded). */
  parseError: Error | null;
  /** Writes chunked messages to the client. */
  send(msg: OutgoingMessage): void;
}

export class FakeRtmpServer {
  readonly connections: FakeConnection[] = [];
  /** Parse errors of client streams (a test asserts none). */
  readonly errors: Error[] = [];
  private readonly server: net.Server;
  port = 0;

  constructor(private readonly opts: { chunkSize?: number; compress?: boolean } = {}) {
    this.server = net.createServer((s) => this.accept(s));
  }

  async listen(): Promise<number> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as net.AddressInfo).port;
    return this.port;
  }

  async close(): Promise<void> {
    for (const c of this.connections) c.socket.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  private accept(socket: net.Socket): void {
    const writer = new ChunkWriter(this.opts.compress ?? false);
    const conn: FakeConnection = {
      socket,
      writer,
      media: 0,
      commands: [],
      bytesReceived: 0,
      raw: [],
      parseError: null,
      send: (msg) => {
        if (!socket.destroyed) socket.write(writer.write(msg));
      },
    };
    socket.on('error', () => {});
    this.connections.push(conn);
    let handshake = Buffer.alloc(0);
    let handshaken = false;
    let answered = false;
    const reader = new ChunkReader(
      {
        message: (info, payload) => {
          if (info.typeId === MessageType.Audio || info.typeId === MessageType.Video) conn.media++;
          if (payload === null || info.typeId !== MessageType.CommandAmf0) return;
          const cmd = decodeCommand(info.typeId, payload);
          if (cmd === null) return;
          conn.commands.push(cmd.name);
          this.answer(conn, cmd.name, cmd.transactionId, info.streamId);
        },
      },
      collectControlAndCommands,
    );
    socket.on('data', (buf: Buffer) => {
      conn.bytesReceived += buf.length;
      conn.raw.push(buf);
      if (conn.parseError !== null) return;
      if (!handshaken) {
        handshake = Buffer.concat([handshake, buf]);
        if (!answered && handshake.length >= 1 + HANDSHAKE_PACKET_SIZE) {
          answered = true;
          // S0 + S1 + S2 (S2 echoes C1), as soon as C0+C1 are in.
          const s1 = Buffer.alloc(HANDSHAKE_PACKET_SIZE, 7);
          socket.write(Buffer.concat([Buffer.of(3), s1, handshake.subarray(1, 1 + HANDSHAKE_PACKET_SIZE)]));
        }
        const total = 1 + 2 * HANDSHAKE_PACKET_SIZE;
        if (handshake.length < total) return;
        handshaken = true;
        const rest = handshake.subarray(total);
        handshake = Buffer.alloc(0);
        if (this.opts.chunkSize !== undefined) {
          conn.send(controlMessage(MessageType.SetChunkSize, this.opts.chunkSize));
          writer.chunkSize = this.opts.chunkSize;
        }
        try {
          if (rest.length > 0) reader.feed(rest);
        } catch (err) {
          conn.parseError = err as Error;
          this.errors.push(err as Error);
        }
        return;
      }
      try {
        reader.feed(buf);
      } catch (err) {
        conn.parseError = err as Error;
        this.errors.push(err as Error);
      }
    });
  }

  private answer(conn: FakeConnection, name: string, txn: number, streamId: number): void {
    const cmd = (csid: number, sid: number, payload: Buffer): OutgoingMessage => ({
      csid,
      timestamp: 0,
      typeId: MessageType.CommandAmf0,
      streamId: sid,
      payload,
    });
    if (name === 'connect') {
      conn.send(controlMessage(MessageType.WindowAckSize, 5_000_000));
      conn.send(
        cmd(
          3,
          0,
          encodeCommand(
            '_result',
            txn,
            amf0Object({ fmsVer: 'FMS/3,0,1,123', capabilities: 31 }),
            amf0Object({ level: 'status', code: 'NetConnection.Connect.Success', description: 'Connection succeeded.' }),
          ),
        ),
      );
    } else if (name === 'createStream') {
      conn.send(cmd(3, 0, encodeCommand('_result', txn, null, 1)));
    } else if (name === 'publish') {
      conn.send(
        cmd(5, streamId, encodeCommand('onStatus', 0, null, amf0Object({ level: 'status', code: 'NetStream.Publish.Start', description: 'Start publishing' }))),
      );
    }
  }
}
