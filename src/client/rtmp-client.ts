import { EventEmitter } from 'node:events';
import net from 'node:net';
import { type Amf0Value, amf0Object } from '../rtmp/amf0.js';
import { type MessageInfo, ChunkReader, collectControlAndCommands } from '../rtmp/chunk-reader.js';
import { ChunkWriter } from '../rtmp/chunk-writer.js';
import { COMMAND_CSID, MessageType } from '../rtmp/constants.js';
import { HandshakeEnd } from '../rtmp/handshake-peer.js';
import {
  type Command,
  controlMessage,
  decodeCommand,
  encodeCommand,
  readStatusCode,
  readCreateStreamResult,
  userControlMessage,
  UserControlEvent,
} from '../rtmp/messages.js';

/** Chunk stream ids for a publisher's media, as FFmpeg uses them (audio 4, video 6, data 4). */
const CSID_AUDIO = 4;
const CSID_VIDEO = 6;
const CSID_DATA = 4;
const CSID_STREAM_COMMAND = 8;

export interface RtmpUrl {
  host: string;
  port: number;
  app: string;
  streamKey: string;
  tcUrl: string;
}

/** rtmp://host[:port]/app[/inst]/key — the last path segment is the key, the rest the app (as FFmpeg splits it). */
export function parseRtmpUrl(url: string): RtmpUrl {
  const u = new URL(url);
  if (u.protocol !== 'rtmp:') throw new Error(`not an rtmp:// URL: ${url}`);
  const parts = u.pathname.split('/').filter((p) => p !== '');
  if (parts.length < 2) throw new Error(`RTMP URL needs /app/streamKey: ${url}`);
  const streamKey = decodeURIComponent(parts.pop()! + u.search);
  const app = parts.map(decodeURIComponent).join('/');
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const port = u.port === '' ? 1935 : Number(u.port);
  return { host, port, app, streamKey, tcUrl: `rtmp://${u.host}/${app}` };
}

export interface PublisherOptions {
  /** Announce RTMP Go Away support in connect (docs/protocol.md#capabilities-in-connect). */
  supportsGoAway?: boolean;
  /** Key used to announce it: the spec's `supportsGoAway` (default) or the early FFmpeg patch's `goaway`. */
  goAwayKey?: 'supportsGoAway' | 'goaway';
  /** E-RTMP capsEx bitmask to announce (0x01 Reconnect). */
  capsEx?: number;
  /** Set Chunk Size sent before connect, like OBS (4096). */
  chunkSize?: number;
  /** Use fmt 1/2/3 headers where possible, like FFmpeg/librtmp. */
  compressHeaders?: boolean;
  flashVer?: string;
  /** Timeout for the whole handshake + connect … publish exchange. */
  timeoutMs?: number;
}

export interface RtmpClientEvents {
  /** Type 32 from the server side. */
  goaway: [];
  /** Every complete server→client message (payload for control and commands only). */
  message: [MessageInfo, Buffer | null];
  command: [Command];
  close: [];
  error: [Error];
}

/**
 * A minimal RTMP publisher over the project's own src/rtmp reader and writer: plain handshake,
 * connect (announcing Go Away / capsEx as asked), releaseStream, FCPublish, createStream,
 * publish, then media. Used by the reference publisher CLI and by the tests.
 */
export class RtmpPublisher extends EventEmitter<RtmpClientEvents> {
  readonly url: RtmpUrl;
  socket: net.Socket | null = null;
  streamId = 0;
  goAwayReceived = false;
  /** Every message received from the server, in order (type id and timestamp), for assertions. */
  readonly received: { typeId: number; csid: number; length: number; payload: Buffer | null }[] = [];
  private readonly writer: ChunkWriter;
  private readonly reader: ChunkReader;
  private txn = 1;
  private readonly waiting = new Map<number, (cmd: Command) => void>();
  private statusWaiters: ((code: string) => void)[] = [];
  private bytesReceived = 0;

  constructor(
    url: string,
    private readonly opts: PublisherOptions = {},
  ) {
    super();
    this.url = parseRtmpUrl(url);
    this.writer = new ChunkWriter(opts.compressHeaders ?? false);
    this.reader = new ChunkReader({ message: (info, payload) => this.onMessage(info, payload) }, collectControlAndCommands);
  }

  /** Connects and runs the command exchange up to NetStream.Publish.Start. */
  async publish(): Promise<void> {
    const timeoutMs = this.opts.timeoutMs ?? 10_000;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`RTMP publish not started within ${timeoutMs} ms`)), timeoutMs);
    });
    try {
      await Promise.race([this.doPublish(), timeout]);
    } catch (err) {
      this.destroy();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  private async doPublish(): Promise<void> {
    const sock = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host: this.url.host, port: this.url.port }, () => {
        s.off('error', reject);
        resolve(s);
      });
      s.once('error', reject);
    });
    sock.setNoDelay(true);
    this.socket = sock;
    sock.on('error', (err) => this.emit('error', err));
    sock.on('close', () => this.emit('close'));
    await this.handshake(sock);
    sock.on('data', (buf: Buffer) => this.onData(buf));

    if (this.opts.chunkSize !== undefined) {
      this.sendRaw(controlMessage(MessageType.SetChunkSize, this.opts.chunkSize));
      this.writer.chunkSize = this.opts.chunkSize;
    }
    const cmdObj: Record<string, Amf0Value> = {
      app: this.url.app,
      type: 'nonprivate',
      flashVer: this.opts.flashVer ?? 'FMLE/3.0 (compatible; rtmp-goaway-proxy)',
      tcUrl: this.url.tcUrl,
    };
    if (this.opts.supportsGoAway) cmdObj[this.opts.goAwayKey ?? 'supportsGoAway'] = true;
    if (this.opts.capsEx !== undefined) cmdObj['capsEx'] = this.opts.capsEx;
    const connectResult = await this.request('connect', amf0Object(cmdObj));
    if (connectResult.name !== '_result') throw new Error(`connect refused: ${JSON.stringify(readStatusCode(connectResult))}`);
    this.notify('releaseStream', this.url.streamKey);
    this.notify('FCPublish', this.url.streamKey);
    const created = await this.request('createStream');
    const id = readCreateStreamResult(created);
    if (id === null) throw new Error('createStream returned no stream id');
    this.streamId = id;
    const started = this.waitStatus((c) => c === 'NetStream.Publish.Start' || c.startsWith('NetStream.Publish.Bad') || c === 'NetStream.Publish.BadName');
    this.sendRaw({
      csid: CSID_STREAM_COMMAND,
      timestamp: 0,
      typeId: MessageType.CommandAmf0,
      streamId: id,
      payload: encodeCommand('publish', 0, null, this.url.streamKey, 'live'),
    });
    const code = await started;
    if (code !== 'NetStream.Publish.Start') throw new Error(`publish refused: ${code}`);
  }

  /** Plain handshake (RTMP spec §5.2), the client end of rtmp/handshake-peer: C0+C1, then C2 once S0+S1 are in. */
  private handshake(sock: net.Socket): Promise<void> {
    return new Promise((resolve, reject) => {
      const end = new HandshakeEnd('client');
      sock.write(end.hello());
      const onData = (buf: Buffer): void => {
        let step: { next: number; reply: Buffer | null };
        try {
          step = end.push(buf);
        } catch (err) {
          sock.off('data', onData);
          sock.off('close', onClose);
          reject(err as Error);
          return;
        }
        if (step.reply !== null) sock.write(step.reply);
        if (!end.done) return;
        sock.off('data', onData);
        sock.off('close', onClose);
        resolve();
        if (step.next < buf.length) queueMicrotask(() => this.onData(buf.subarray(step.next)));
      };
      const onClose = (): void => reject(new Error('connection closed during handshake'));
      sock.on('data', onData);
      sock.once('close', onClose);
    });
  }

  private onData(buf: Buffer): void {
    this.bytesReceived += buf.length;
    try {
      this.reader.feed(buf);
    } catch (err) {
      this.emit('error', err as Error);
      this.destroy();
    }
  }

  private onMessage(info: MessageInfo, payload: Buffer | null): void {
    this.received.push({ typeId: info.typeId, csid: info.csid, length: info.length, payload: payload === null ? null : Buffer.from(payload) });
    this.emit('message', info, payload);
    switch (info.typeId) {
      case MessageType.SetChunkSize:
      case MessageType.Abort:
        return; // applied by the reader itself
      case MessageType.WindowAckSize:
        return;
      case MessageType.UserControl:
        if (payload !== null && payload.length >= 6 && payload.readUInt16BE(0) === UserControlEvent.PingRequest) {
          this.sendRaw(userControlMessage(UserControlEvent.PingResponse, payload.readUInt32BE(2)));
        }
        return;
      case MessageType.GoAway:
        this.goAwayReceived = true;
        this.emit('goaway');
        return;
      case MessageType.CommandAmf0:
      case MessageType.CommandAmf3: {
        if (payload === null) return;
        const cmd = decodeCommand(info.typeId, payload);
        if (cmd === null) return;
        this.emit('command', cmd);
        if ((cmd.name === '_result' || cmd.name === '_error') && this.waiting.has(cmd.transactionId)) {
          const w = this.waiting.get(cmd.transactionId)!;
          this.waiting.delete(cmd.transactionId);
          w(cmd);
        } else if (cmd.name === 'onStatus') {
          const code = readStatusCode(cmd);
          if (code !== null) for (const w of this.statusWaiters.splice(0)) w(code);
        }
        return;
      }
      default:
        return;
    }
  }

  /** Sends a NetConnection command and resolves with its `_result` / `_error`. */
  request(name: string, commandObject: Amf0Value = null, ...args: Amf0Value[]): Promise<Command> {
    const txn = this.txn++;
    const p = new Promise<Command>((resolve) => this.waiting.set(txn, resolve));
    this.sendRaw({ csid: COMMAND_CSID, timestamp: 0, typeId: MessageType.CommandAmf0, streamId: 0, payload: encodeCommand(name, txn, commandObject, ...args) });
    return p;
  }

  private notify(name: string, ...args: Amf0Value[]): void {
    this.sendRaw({ csid: COMMAND_CSID, timestamp: 0, typeId: MessageType.CommandAmf0, streamId: 0, payload: encodeCommand(name, this.txn++, null, ...args) });
  }

  private waitStatus(match: (code: string) => boolean): Promise<string> {
    return new Promise((resolve) => {
      const w = (code: string): void => {
        if (match(code)) resolve(code);
        else this.statusWaiters.push(w);
      };
      this.statusWaiters.push(w);
    });
  }

  private sendRaw(msg: Parameters<ChunkWriter['write']>[0]): boolean {
    // After end() the server may still be talking (a ping in flight): nothing more is sent.
    if (this.socket === null || this.socket.destroyed || this.socket.writableEnded) return false;
    return this.socket.write(this.writer.write(msg));
  }

  /** Sends any message as it is (control messages, acknowledgements: tests and tools). */
  sendMessage(msg: Parameters<ChunkWriter['write']>[0]): boolean {
    return this.sendRaw(msg);
  }

  /** Sends one FLV tag body as an RTMP message on the publish stream. Returns the socket's write result (false = back off). */
  sendMedia(typeId: number, timestamp: number, payload: Uint8Array): boolean {
    const csid = typeId === MessageType.Audio ? CSID_AUDIO : typeId === MessageType.Video ? CSID_VIDEO : CSID_DATA;
    return this.sendRaw({ csid, timestamp, typeId, streamId: this.streamId, payload });
  }

  /** Clean end: FCUnpublish + deleteStream, then TCP close (what a publisher does when it stops). */
  async unpublish(): Promise<void> {
    this.notify('FCUnpublish', this.url.streamKey);
    this.notify('deleteStream', this.streamId);
    await this.end();
  }

  /** TCP close without FCUnpublish/deleteStream, as a Go Away client does (docs/protocol.md#client-reconnect). */
  end(): Promise<void> {
    const s = this.socket;
    if (s === null || s.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      s.once('close', () => resolve());
      s.end();
      setTimeout(() => s.destroy(), 2000).unref();
    });
  }

  destroy(): void {
    this.socket?.destroy();
  }

  get totalBytesReceived(): number {
    return this.bytesReceived;
  }
}
