import net from 'node:net';
import type { Logger } from 'pino';
import type { BackendPool } from '../balancer/pool.js';
import type { BackendConfig, DrainableSession } from '../balancer/types.js';
import type { Amf0Limits } from '../rtmp/amf0.js';
import { type ChunkReaderLimits, type MessageInfo, ChunkReader } from '../rtmp/chunk-reader.js';
import { COMMAND_CSID, CONTROL_CSID, MessageType } from '../rtmp/constants.js';
import { ProtocolError } from '../rtmp/errors.js';
import { HandshakeSkipper } from '../rtmp/handshake.js';
import { CAPS_EX_RECONNECT, decodeCommand, goAwayChunk, reconnectRequestMessage, withCapsEx } from '../rtmp/messages.js';
import { SessionView } from '../rtmp/session-view.js';
import type { FeatureMetrics } from './feature-metrics.js';
import { ClientBoundInjector } from './injector.js';
import { redactStreamKey } from './redact.js';

export type SessionState = 'connecting' | 'handshake' | 'connected' | 'publishing' | 'going-away' | 'closed';
export type Capability = 'goaway' | 'erpc' | 'none' | 'unknown';

export interface SessionSettings {
  handshakeTimeoutMs: number;
  idleTimeoutMs: number;
  connectTimeoutMs: number;
  maxPendingBytes: number;
  onParseError: 'forward' | 'close';
  logStreamKeys: boolean;
  chunkLimits: Partial<ChunkReaderLimits>;
  amfLimits: Partial<Amf0Limits>;
  /** E-RTMP reconnect (PROTOCOL.md §2); absent = not offered. */
  erpc?: { offer: boolean; tcUrl: string };
  /** Counters of E-RTMP and migration events. */
  metrics?: FeatureMetrics;
}

export interface SessionHooks {
  /** Routed to a backend (the pool attach happened). */
  routed(session: Session): void;
  /** Both sockets are gone; called exactly once. */
  closed(session: Session): void;
  goAwayWritten(session: Session): void;
  parseFallback(session: Session, direction: 'c2s' | 's2c', err: ProtocolError): void;
  connectFailed(session: Session, backend: string, err: Error): void;
}

/** JSON view of a session for /api/sessions and the fleet registry. */
export interface SessionSnapshot {
  id: string;
  client: string;
  backend: string | null;
  app: string | null;
  streamKey: string | null;
  goAway: boolean;
  capsEx: number | null;
  capability: Capability;
  state: SessionState;
  bytesIn: number;
  bytesOut: number;
  startedAt: string;
  goAwaySentAt: string | null;
  /** When the E-RTMP ReconnectRequest was written. */
  reconnectRequestSentAt: string | null;
  parseFallback: string | null;
}

let nextId = 1;

/**
 * One publisher connection and its backend connection.
 *
 * Bytes are forwarded as they arrive, in the original Buffers, both ways; each direction is
 * also fed to a chunk reader (headers only) so the session knows its app, stream key and
 * whether it can be told to go away, and so server→client bytes can take an injected chunk.
 * Backpressure: a `write` that returns false pauses the other socket until `drain`.
 * Half-close is propagated (allowHalfOpen on both sockets); any error ends both.
 */
export class Session implements DrainableSession {
  readonly id: string;
  readonly clientAddress: string;
  readonly startedAt = Date.now();
  backendName: string | null = null;
  bytesIn = 0;
  bytesOut = 0;
  goAwaySentAt: number | null = null;
  reconnectRequestSentAt: number | null = null;
  closeReason: string | null = null;
  fallback: ProtocolError | null = null;

  readonly view: SessionView;
  private backend: net.Socket | null = null;
  private readonly c2sHandshake = new HandshakeSkipper();
  private c2sReader: ChunkReader | null;
  private readonly s2c: ClientBoundInjector;
  /** Client bytes that arrived before the backend connection was up. */
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private goAwayRequested = false;
  private reconnectRequested = false;
  private deadlineExempt = false;
  /** The connect `_result` is awaited to add capsEx to it. */
  private capsExPending = false;
  /** The client buffer being fed to the C→S reader (collected single-chunk payloads are views of it). */
  private c2sFeeding: Buffer | null = null;
  private handshakeTimer: NodeJS.Timeout | null = null;
  private detach: (() => void) | null = null;
  private finished = false;
  private clientClosed = false;
  private backendClosed = true;

  constructor(
    private readonly client: net.Socket,
    private readonly pool: BackendPool,
    private readonly settings: SessionSettings,
    private readonly hooks: SessionHooks,
    private readonly log: Logger,
  ) {
    this.id = `s${process.pid.toString(36)}-${(nextId++).toString(36)}`;
    this.clientAddress = `${client.remoteAddress ?? '?'}:${client.remotePort ?? 0}`;
    this.view = new SessionView({ publishStarted: () => this.onPublishStarted() }, settings.amfLimits);
    this.c2sReader = new ChunkReader({ message: (info, payload) => this.onClientMessage(info, payload) }, undefined, settings.chunkLimits);
    this.s2c = new ClientBoundInjector((info, payload) => this.onServerMessage(info, payload), undefined, settings.chunkLimits);
  }

  get supportsGoAway(): boolean {
    return this.view.facts.connect?.supportsGoAway === true;
  }

  get capsEx(): number | null {
    return this.view.facts.connect?.capsEx ?? null;
  }

  /** Derived from what has happened, so no code path can leave it stale. */
  get state(): SessionState {
    if (this.finished) return 'closed';
    if (this.goAwaySentAt !== null || this.reconnectRequestSentAt !== null) return 'going-away';
    if (this.view.facts.publishing) return 'publishing';
    if (this.view.facts.connect !== null) return 'connected';
    return this.backend === null ? 'connecting' : 'handshake';
  }

  get capability(): Capability {
    const c = this.view.facts.connect;
    if (c === null) return 'unknown';
    if (c.supportsGoAway) return 'goaway';
    if (c.capsEx !== null && (c.capsEx & CAPS_EX_RECONNECT) !== 0) return 'erpc';
    return 'none';
  }

  start(): void {
    const c = this.client;
    c.setNoDelay(true);
    c.setTimeout(this.settings.idleTimeoutMs);
    c.on('data', (buf: Buffer) => this.onClientData(buf));
    c.on('end', () => this.onClientEnd());
    c.on('timeout', () => this.close('client-idle'));
    c.on('error', (err) => this.fail('client-error', err));
    c.on('close', () => {
      this.clientClosed = true;
      this.backend?.destroy();
      this.maybeFinish();
    });
    this.handshakeTimer = setTimeout(() => this.close('handshake-timeout'), this.settings.handshakeTimeoutMs);
    this.handshakeTimer.unref();
    this.connectBackend(new Set());
  }

  /** Routes to the least loaded healthy backend; on refusal tries the next (issue: "try the next"). */
  private connectBackend(tried: Set<string>): void {
    if (this.finished || this.clientClosed) return;
    const target = this.pool.pick(tried);
    if (target === null) {
      this.close(tried.size === 0 ? 'no-backend' : 'all-backends-failed');
      return;
    }
    tried.add(target.name);
    const sock = net.connect({ host: target.host, port: target.port, allowHalfOpen: true });
    this.backendClosed = false;
    const timer = setTimeout(() => sock.destroy(new Error(`connect timeout after ${this.settings.connectTimeoutMs} ms`)), this.settings.connectTimeoutMs);
    timer.unref();
    const onConnectError = (err: Error): void => {
      clearTimeout(timer);
      this.backendClosed = true;
      this.hooks.connectFailed(this, target.name, err);
      this.pool.reportConnectFailure(target.name, err);
      this.connectBackend(tried);
    };
    sock.once('error', onConnectError);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.off('error', onConnectError);
      if (this.finished || this.clientClosed) {
        sock.destroy();
        return;
      }
      this.pool.reportConnectSuccess(target.name);
      this.attachBackend(sock, target);
    });
  }

  private attachBackend(sock: net.Socket, target: BackendConfig): void {
    this.backend = sock;
    this.backendName = target.name;
    sock.setNoDelay(true);
    sock.setTimeout(this.settings.idleTimeoutMs);
    sock.on('data', (buf: Buffer) => this.onBackendData(buf));
    sock.on('end', () => this.client.end());
    sock.on('timeout', () => this.close('backend-idle'));
    sock.on('error', (err) => this.fail('backend-error', err));
    sock.on('close', () => {
      this.backendClosed = true;
      // Let what the server sent reach the client, then FIN; a client that never closes its side
      // is ended by the idle timeout.
      this.client.end();
      this.maybeFinish();
    });
    sock.on('drain', () => this.client.resume());
    this.client.on('drain', () => sock.resume());
    this.detach = this.pool.attach(target.name, this);
    this.hooks.routed(this);
    for (const buf of this.pending) sock.write(buf);
    this.pending = [];
    this.pendingBytes = 0;
    this.client.resume();
  }

  private onClientData(buf: Buffer): void {
    this.bytesIn += buf.length;
    const reader = this.c2sReader;
    if (reader !== null) {
      try {
        let start = 0;
        if (!this.c2sHandshake.done) start = this.c2sHandshake.consume(buf, 0);
        if (start < buf.length) {
          const hadConnect = this.view.facts.connect !== null;
          this.c2sFeeding = buf;
          reader.feed(buf, start);
          this.c2sFeeding = null;
          if (!hadConnect && this.view.facts.connect !== null) this.onConnectSeen();
        }
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        this.parseFailed('c2s', err);
        if (this.finished) return;
      }
    }
    const backend = this.backend;
    if (backend === null) {
      this.pending.push(buf);
      this.pendingBytes += buf.length;
      // The client only sends C0+C1 (1537 bytes) before it hears from the server, so this bound
      // is reached only by a peer that does not speak RTMP.
      if (this.pendingBytes > this.settings.maxPendingBytes) this.client.pause();
      return;
    }
    if (!backend.write(buf)) this.client.pause();
  }

  /** A complete client message (payload for the collected kinds). Runs for every message: keep it cheap. */
  private onClientMessage(info: MessageInfo, payload: Buffer | null): void {
    if (payload !== null && info.typeId === MessageType.Acknowledgement) this.translateAck(payload);
    this.view.clientMessage(info, payload);
  }

  /**
   * The client acknowledges the bytes it received, which include what the proxy added to the
   * client-bound stream; the server must see its own count (PROTOCOL.md §8). The payload of a
   * single-chunk message is a view of the buffer about to be forwarded: rewrite it in place.
   */
  private translateAck(payload: Buffer): void {
    const added = this.s2c.addedBytes;
    if (added === 0 || payload.length < 4) return;
    const buf = this.c2sFeeding;
    if (buf === null || payload.buffer !== buf.buffer || payload.byteOffset < buf.byteOffset || payload.byteOffset + 4 > buf.byteOffset + buf.length) {
      // Straddled two reads: its first bytes are already forwarded.
      this.settings.metrics?.ackTranslations.inc({ result: 'straddled' });
      return;
    }
    payload.writeUInt32BE((payload.readUInt32BE(0) - added) >>> 0, 0);
    this.settings.metrics?.ackTranslations.inc({ result: 'rewritten' });
  }

  /** A complete server message, in the order the client gets them. */
  private onServerMessage(info: MessageInfo, payload: Buffer | null): void {
    this.view.serverMessage(info, payload);
    if (this.capsExPending && this.view.facts.connectAnswered) {
      this.capsExPending = false;
      this.s2c.setCommandRewriter(null);
      // Held messages reach the rewriter right after this; one that was not held went out as it was.
      if (!this.s2c.holding) this.settings.metrics?.capsExOffered.inc({ result: 'interleaved' });
    }
  }

  /**
   * E-RTMP (PROTOCOL.md §2): add capsEx Reconnect to the connect `_result` this client gets. The
   * client sent capsEx, so it reads the server's; nginx-rtmp sends none.
   */
  private offerCapsEx(): void {
    const txn = this.view.facts.connectTransactionId;
    this.capsExPending = true;
    this.s2c.setCommandRewriter((info, payload) => {
      if (info.streamId !== 0) return null;
      const cmd = decodeCommand(info.typeId, payload, this.settings.amfLimits);
      if (cmd === null || cmd.name !== '_result' || cmd.transactionId !== txn) return null;
      const out = withCapsEx(info.typeId, payload, CAPS_EX_RECONNECT, this.settings.amfLimits);
      this.settings.metrics?.capsExOffered.inc({ result: out === null ? 'unchanged' : 'rewritten' });
      if (out !== null) this.log.debug({ session: this.id }, 'capsEx Reconnect added to the connect _result');
      return out;
    });
  }

  private onBackendData(buf: Buffer): void {
    const hadFailure = this.s2c.failure;
    const out = this.s2c.push(buf);
    if (hadFailure === null && this.s2c.failure !== null) {
      this.parseFailed('s2c', this.s2c.failure);
      if (this.finished) return;
    }
    this.writeToClient(out);
  }

  private writeToClient(out: Buffer[]): void {
    let ok = true;
    for (const b of out) {
      this.bytesOut += b.length;
      ok = this.client.write(b) && ok;
    }
    if (!ok) this.backend?.pause();
  }

  private onConnectSeen(): void {
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
    const c = this.view.facts.connect!;
    this.log.debug({ session: this.id, app: c.app, tcUrl: c.tcUrl, flashVer: c.flashVer, goAway: c.supportsGoAway, goAwayKey: c.goAwayKey, capsEx: c.capsEx }, 'connect');
    if (this.settings.erpc?.offer === true && c.capsEx !== null && this.s2c.failure === null) this.offerCapsEx();
    // A session that connects to a backend already draining is told at once.
    if (this.backendName !== null) this.pool.reapplyStrategy(this.backendName, this);
  }

  private onPublishStarted(): void {
    // A non-capable session on a draining backend can migrate only once it publishes.
    if (this.backendName !== null && !this.finished) this.pool.reapplyStrategy(this.backendName, this);
  }

  private parseFailed(direction: 'c2s' | 's2c', err: ProtocolError): void {
    if (this.fallback === null) this.fallback = err;
    this.hooks.parseFallback(this, direction, err);
    this.log.warn({ session: this.id, direction, reason: err.code, err: err.message, action: this.settings.onParseError }, 'RTMP parse failed');
    if (direction === 'c2s') {
      this.c2sReader = null;
      // Without a parsed connect there is nothing to wait for.
      if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
      this.handshakeTimer = null;
    }
    if (this.settings.onParseError === 'close') this.close(`parse-error:${err.code}`);
  }

  private onClientEnd(): void {
    if (this.backend !== null) this.backend.end();
    else this.close('client-closed');
  }

  /**
   * Injects RTMP Go Away (type 32) into the client-bound stream at the next safe point
   * (PROTOCOL.md §1, §8). Only for clients that announced support. Idempotent.
   */
  goAway(): boolean {
    if (this.finished || !this.supportsGoAway) return false;
    if (this.goAwayRequested) return true;
    const out = this.s2c.inject(CONTROL_CSID, goAwayChunk(), () => {
      this.goAwaySentAt = Date.now();
      this.hooks.goAwayWritten(this);
      this.log.info({ session: this.id, backend: this.backendName }, 'go away sent');
    });
    if (out === null) return false;
    this.goAwayRequested = true;
    this.writeToClient(out);
    return true;
  }

  /**
   * Injects the E-RTMP `NetConnection.Connect.ReconnectRequest` (PROTOCOL.md §2) into the
   * client-bound stream at the next safe point, with the configured tcUrl if any. Only for
   * clients that announced capsEx Reconnect and not Go Away (Go Away is preferred). Idempotent.
   */
  reconnectRequest(): boolean {
    if (this.finished || this.capability !== 'erpc') return false;
    if (this.reconnectRequested) return true;
    const tcUrl = this.settings.erpc?.tcUrl;
    const msg = reconnectRequestMessage(tcUrl ? { tcUrl } : {});
    const out = this.s2c.inject(COMMAND_CSID, msg, () => {
      this.reconnectRequestSentAt = Date.now();
      this.settings.metrics?.reconnectRequests.inc({ backend: this.backendName ?? 'none' });
      this.log.info({ session: this.id, backend: this.backendName, tcUrl: tcUrl || null }, 'reconnect request sent');
    });
    if (out === null) return false;
    this.reconnectRequested = true;
    this.writeToClient(out);
    return true;
  }

  /** Proxy-side migration (drain.nonCapable: migrate). */
  migrate(_backend: string): 'migrating' | 'waiting' {
    return 'waiting';
  }

  /** drain.nonCapable: ignore — the drain deadline leaves this session alone. */
  exemptFromDeadline(): void {
    this.deadlineExempt = true;
  }

  close(reason: string): void {
    if (this.finished) return;
    if (reason === 'drain-deadline' && this.deadlineExempt) {
      this.log.info({ session: this.id, backend: this.backendName }, 'drain deadline: session left on the draining backend (drain.nonCapable: ignore)');
      return;
    }
    if (this.closeReason === null) this.closeReason = reason;
    this.client.destroy();
    this.backend?.destroy();
    this.maybeFinish();
  }

  private fail(reason: string, err: Error): void {
    if (this.closeReason === null) this.closeReason = reason;
    this.log.debug({ session: this.id, err: err.message }, reason);
    this.close(reason);
  }

  private maybeFinish(): void {
    if (this.finished || !this.clientClosed || !this.backendClosed) return;
    this.finished = true;
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
    this.detach?.();
    this.detach = null;
    if (this.closeReason === null) this.closeReason = this.goAwaySentAt !== null || this.reconnectRequestSentAt !== null ? 'client-went-away' : 'client-closed';
    const f = this.view.facts;
    this.log.info(
      {
        session: this.id,
        client: this.clientAddress,
        backend: this.backendName,
        app: f.connect?.app ?? null,
        streamKey: this.streamKeyForDisplay(),
        capability: this.capability,
        bytesIn: this.bytesIn,
        bytesOut: this.bytesOut,
        videoMessages: f.videoMessages,
        audioMessages: f.audioMessages,
        durationMs: Date.now() - this.startedAt,
        reason: this.closeReason,
        goAwaySent: this.goAwaySentAt !== null,
        reconnectRequestSent: this.reconnectRequestSentAt !== null,
        parseFallback: this.fallback?.code ?? null,
      },
      'session end',
    );
    this.hooks.closed(this);
  }

  /** Bytes this process holds for the session in userland: socket write queues and the pre-connect buffer. */
  get bufferedBytes(): number {
    return this.pendingBytes + this.client.writableLength + (this.backend?.writableLength ?? 0);
  }

  /** Logged once per session start, when the backend is known. */
  logStart(): void {
    this.log.info({ session: this.id, client: this.clientAddress, backend: this.backendName }, 'session start');
  }

  streamKeyForDisplay(): string | null {
    const k = this.view.facts.streamKey;
    return k === null || this.settings.logStreamKeys ? k : redactStreamKey(k);
  }

  snapshot(): SessionSnapshot {
    const c = this.view.facts.connect;
    return {
      id: this.id,
      client: this.clientAddress,
      backend: this.backendName,
      app: c?.app ?? null,
      streamKey: this.streamKeyForDisplay(),
      goAway: c?.supportsGoAway ?? false,
      capsEx: c?.capsEx ?? null,
      capability: this.capability,
      state: this.state,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      startedAt: new Date(this.startedAt).toISOString(),
      goAwaySentAt: this.goAwaySentAt === null ? null : new Date(this.goAwaySentAt).toISOString(),
      reconnectRequestSentAt: this.reconnectRequestSentAt === null ? null : new Date(this.reconnectRequestSentAt).toISOString(),
      parseFallback: this.fallback?.code ?? null,
    };
  }
}
