import { EventEmitter } from 'node:events';
import net from 'node:net';
import { type Amf0Value, amf0Object, encodeAmf0 } from '../rtmp/amf0.js';
import type { MessageInfo } from '../rtmp/chunk-reader.js';
import type { OutgoingMessage } from '../rtmp/chunk-writer.js';
import { COMMAND_CSID, MessageType } from '../rtmp/constants.js';
import { type Command, decodeCommand, encodeCommand } from '../rtmp/messages.js';
import { type PublishPlan, PublisherProtocol } from '../rtmp/publisher-protocol.js';

/** Chunk stream ids for a publisher's media, as FFmpeg uses them (audio 4, video 6, data 4). */
const CSID_AUDIO = 4;
const CSID_VIDEO = 6;
const CSID_DATA = 4;

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
 * A minimal RTMP publisher: a socket driving rtmp/publisher-protocol.ts (the same publish exchange
 * the proxy uses to migrate a session): plain handshake, connect (announcing Go Away / capsEx as
 * asked), releaseStream, FCPublish, createStream, publish, then media. It records what the server
 * sent and lets the caller send its own commands afterwards. Used by the reference publisher CLI
 * and by the tests.
 */
export class RtmpPublisher extends EventEmitter<RtmpClientEvents> {
  readonly url: RtmpUrl;
  socket: net.Socket | null = null;
  streamId = 0;
  goAwayReceived = false;
  /** Every message received from the server, in order (type id and timestamp), for assertions. */
  readonly received: { typeId: number; csid: number; length: number; payload: Buffer | null }[] = [];
  private protocol: PublisherProtocol | null = null;
  /** Transaction ids after the exchange's own (1–5). */
  private txn = 6;
  private readonly waiting = new Map<number, (cmd: Command) => void>();
  private bytesReceived = 0;

  constructor(
    url: string,
    private readonly opts: PublisherOptions = {},
  ) {
    super();
    this.url = parseRtmpUrl(url);
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
    const cmdObj: Record<string, Amf0Value> = {
      app: this.url.app,
      type: 'nonprivate',
      flashVer: this.opts.flashVer ?? 'FMLE/3.0 (compatible; rtmp-goaway-proxy)',
      tcUrl: this.url.tcUrl,
    };
    if (this.opts.supportsGoAway) cmdObj[this.opts.goAwayKey ?? 'supportsGoAway'] = true;
    if (this.opts.capsEx !== undefined) cmdObj['capsEx'] = this.opts.capsEx;
    const plan: PublishPlan = {
      connect: encodeAmf0([amf0Object(cmdObj)]),
      publishArgs: encodeAmf0([this.url.streamKey, 'live']),
      streamKey: this.url.streamKey,
      chunkSize: this.opts.chunkSize ?? null,
      compressHeaders: this.opts.compressHeaders ?? false,
    };
    const outcome = new Promise<void>((resolve, reject) => {
      const protocol = new PublisherProtocol(plan, {
        write: (buf) => this.write(buf),
        published: (id) => {
          this.streamId = id;
          resolve();
        },
        failed: (reason, detail) => {
          const err = new Error(`${reason === 'connect-rejected' ? 'connect refused' : reason === 'publish-rejected' ? 'publish refused' : reason}: ${detail}`);
          if (protocol.phase === 'failed' && this.streamId !== 0) this.emit('error', err);
          reject(err);
          this.destroy();
        },
        message: () => {},
        observe: (info, payload) => this.onMessage(info, payload),
      });
      this.protocol = protocol;
      sock.once('close', () => reject(new Error('connection closed before NetStream.Publish.Start')));
    });
    sock.on('error', (err) => this.emit('error', err));
    sock.on('close', () => this.emit('close'));
    sock.on('data', (buf: Buffer) => {
      this.bytesReceived += buf.length;
      this.protocol?.receive(buf);
    });
    this.protocol!.start();
    await outcome;
  }

  private onMessage(info: MessageInfo, payload: Buffer): void {
    this.received.push({ typeId: info.typeId, csid: info.csid, length: info.length, payload: Buffer.from(payload) });
    this.emit('message', info, payload);
    if (info.typeId === MessageType.GoAway) {
      this.goAwayReceived = true;
      this.emit('goaway');
      return;
    }
    if (info.typeId !== MessageType.CommandAmf0 && info.typeId !== MessageType.CommandAmf3) return;
    let cmd: Command | null;
    try {
      cmd = decodeCommand(info.typeId, payload);
    } catch {
      return; // the exchange reports a malformed command as a failure itself
    }
    if (cmd === null) return;
    this.emit('command', cmd);
    const w = (cmd.name === '_result' || cmd.name === '_error') && this.waiting.get(cmd.transactionId);
    if (w) {
      this.waiting.delete(cmd.transactionId);
      w(cmd);
    }
  }

  /** Sends a NetConnection command and resolves with its `_result` / `_error`. */
  request(name: string, commandObject: Amf0Value = null, ...args: Amf0Value[]): Promise<Command> {
    const txn = this.txn++;
    const p = new Promise<Command>((resolve) => this.waiting.set(txn, resolve));
    this.sendMessage({
      csid: COMMAND_CSID,
      timestamp: 0,
      typeId: MessageType.CommandAmf0,
      streamId: 0,
      payload: encodeCommand(name, txn, commandObject, ...args),
    });
    return p;
  }

  private write(buf: Buffer): boolean {
    // After end() the server may still be talking (a ping in flight): nothing more is sent.
    if (this.socket === null || this.socket.destroyed || this.socket.writableEnded) return false;
    return this.socket.write(buf);
  }

  /** Sends any message as it is (control messages, acknowledgements: tests and tools). */
  sendMessage(msg: OutgoingMessage): boolean {
    return this.protocol?.send(msg) ?? false;
  }

  /** Sends one FLV tag body as an RTMP message on the publish stream. Returns the socket's write result (false = back off). */
  sendMedia(typeId: number, timestamp: number, payload: Uint8Array): boolean {
    const csid = typeId === MessageType.Audio ? CSID_AUDIO : typeId === MessageType.Video ? CSID_VIDEO : CSID_DATA;
    return this.sendMessage({ csid, timestamp, typeId, streamId: this.streamId, payload });
  }

  /** Clean end: FCUnpublish + deleteStream, then TCP close (what a publisher does when it stops). */
  async unpublish(): Promise<void> {
    this.protocol?.unpublish();
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
