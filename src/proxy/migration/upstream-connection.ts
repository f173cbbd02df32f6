import type net from 'node:net';
import type { BackendConfig } from '../../balancer/types.js';
import type { Amf0Limits } from '../../rtmp/amf0.js';
import type { ByteBudget, ChunkReaderLimits, MessageInfo } from '../../rtmp/chunk-reader.js';
import type { OutgoingMessage } from '../../rtmp/chunk-writer.js';
import { type PublishFailure, type PublishPlan, PublisherProtocol } from '../../rtmp/publisher-protocol.js';
import { type Dial, dialTcp } from '../dial.js';

/** Why a connection to a migration target ended. */
export type UpstreamEnd = PublishFailure | 'refused' | 'connect-timeout' | 'backend-idle' | 'backend-error' | 'backend-closed';

export interface UpstreamEvents {
  published(streamId: number): void;
  /** The attempt failed before publishing (or the connection ended before the switch). */
  failed(reason: UpstreamEnd, detail: string): void;
  /** A server message for the client (after the switch). */
  message(info: MessageInfo, payload: Buffer): void;
  /** The connection ended after it was published. */
  closed(reason: UpstreamEnd): void;
  /** The socket's write buffer drained. */
  drain(): void;
}

/** One TCP connection to a migration target, speaking as the publisher (PublisherProtocol). */
export class UpstreamConnection {
  readonly protocol: PublisherProtocol;
  readonly socket: net.Socket;
  readonly startedAt = Date.now();
  /** Destroyed by us: no more events. */
  private aborted = false;
  /** `failed` or `closed` was emitted. */
  private reported = false;
  private connected = false;
  private lastError: string | null = null;
  private timeoutReason: 'connect-timeout' | 'backend-idle' | null = null;

  constructor(
    readonly target: BackendConfig,
    plan: PublishPlan,
    private readonly events: UpstreamEvents,
    opts: {
      connectTimeoutMs: number;
      idleTimeoutMs: number;
      chunkLimits?: Partial<ChunkReaderLimits>;
      amfLimits?: Partial<Amf0Limits>;
      preamble?: Buffer | null;
      /** The session's buffer budget: this connection's partial messages count in it. */
      budget?: ByteBudget;
      dial?: Dial;
    },
  ) {
    this.socket = (opts.dial ?? dialTcp)(target);
    // The backend PROXY protocol header, before any RTMP byte.
    if (opts.preamble) this.socket.write(opts.preamble);
    const sock = this.socket;
    this.protocol = new PublisherProtocol(
      plan,
      {
        write: (buf) => (sock.destroyed ? false : sock.write(buf)),
        published: (id) => events.published(id),
        failed: (reason, detail) => this.report(reason, detail),
        message: (info, payload) => events.message(info, payload),
      },
      opts.chunkLimits,
      opts.amfLimits,
      opts.budget,
    );
    sock.setNoDelay(true);
    const timer = setTimeout(() => {
      this.timeoutReason = 'connect-timeout';
      sock.destroy(new Error(`connect timeout after ${opts.connectTimeoutMs} ms`));
    }, opts.connectTimeoutMs);
    timer.unref();
    sock.once('connect', () => {
      clearTimeout(timer);
      this.connected = true;
      sock.setTimeout(opts.idleTimeoutMs);
      this.protocol.start();
    });
    sock.on('data', (buf: Buffer) => this.protocol.receive(buf));
    sock.on('drain', () => events.drain());
    sock.on('timeout', () => {
      this.timeoutReason = 'backend-idle';
      sock.destroy(new Error('idle timeout'));
    });
    sock.on('error', (err) => {
      this.lastError = err.message;
    });
    sock.on('end', () => {
      if (this.published) sock.end();
      else this.report('backend-closed', 'the backend closed the connection before publishing');
    });
    sock.on('close', () => {
      clearTimeout(timer);
      this.protocol.reader.release();
      const reason = this.timeoutReason ?? (this.connected ? (this.lastError !== null ? 'backend-error' : 'backend-closed') : 'refused');
      this.report(reason, this.lastError ?? 'connection closed');
    });
  }

  get published(): boolean {
    return this.protocol.phase === 'published';
  }

  send(msg: OutgoingMessage): boolean {
    return this.protocol.send(msg);
  }

  /** The switch: this connection's server messages reach the client from now on. */
  startForwarding(): void {
    this.protocol.startForwarding();
  }

  /** FIN after what was written (FCUnpublish + deleteStream first when asked); `closed` follows. */
  end(unpublish: boolean): void {
    if (unpublish) this.protocol.unpublish();
    this.socket.end();
    const s = this.socket;
    setTimeout(() => s.destroy(), 5000).unref();
  }

  /** Drops the connection; no event follows. */
  destroy(): void {
    this.aborted = true;
    this.socket.destroy();
    this.protocol.reader.release();
  }

  private report(reason: UpstreamEnd, detail: string): void {
    if (this.aborted || this.reported) return;
    this.reported = true;
    if (this.published) {
      this.events.closed(reason);
      return;
    }
    this.socket.destroy();
    this.events.failed(reason, detail);
  }
}
