import net from 'node:net';
import type { Logger } from 'pino';
import type { BackendPool } from '../balancer/pool.js';
import { isFdExhausted } from '../net/fd-exhausted.js';
import type { BackendConfig } from '../balancer/types.js';
import type { Amf0Limits } from '../rtmp/amf0.js';
import { type ChunkReaderHandler, type ChunkReaderLimits, type MessageInfo, ChunkReader } from '../rtmp/chunk-reader.js';
import { type OutgoingMessage, ChunkWriter } from '../rtmp/chunk-writer.js';
import { COMMAND_CSID, CONTROL_CSID, HANDSHAKE_PACKET_SIZE, MessageType } from '../rtmp/constants.js';
import { ProtocolError } from '../rtmp/errors.js';
import { HandshakeSkipper } from '../rtmp/handshake.js';
import { HandshakeEnd } from '../rtmp/handshake-peer.js';
import {
  CAPS_EX_RECONNECT,
  type Command,
  commandMessage,
  controlMessage,
  decodeCommand,
  encodeCommand,
  goAwayChunk,
  goAwayMessage,
  readCreateStreamResult,
  reconnectRequestMessage,
  withCapsEx,
} from '../rtmp/messages.js';
import { SessionView } from '../rtmp/session-view.js';
import type { StrategySession } from './drain-strategy.js';
import { ProcessBudget, SessionBudget } from './buffer-budget.js';
import type { ProxyObserver } from './observer.js';
import { ClientBoundInjector } from './injector.js';
import {
  type MigrationCoordinator,
  type MigrationTicket,
  type ReplayPlan,
  MediaCache,
  SwitchSplitter,
  UpstreamConnection,
  collectEverything,
  isSwitchMessage,
  keyframeSwitch,
  migrationCollectPolicy,
} from './migration.js';
import { LOCAL_CHUNK_SIZE, LOCAL_STREAM_ID, connectAnswer, createStreamAnswer, localChunkSize, rejection } from './local-answers.js';
import { type ClientTextView, clientTextView } from '../net/redact.js';
import type { RateLimitedLog } from '../net/rate-limited-log.js';
import { type Placement, type Router, rejectionDescription } from '../balancer/routing.js';
import { normalizeIp } from '../net/cidr.js';

export type SessionState = 'connecting' | 'handshake' | 'connected' | 'publishing' | 'going-away' | 'migrating' | 'closed';
export type Capability = 'goaway' | 'erpc' | 'none' | 'unknown';

export interface SessionSettings {
  handshakeTimeoutMs: number;
  /** No byte from the client for this long closes the session (checked by the proxy's idle sweep). */
  idleTimeoutMs: number;
  /** No byte from the backend for this long closes the session; 0 or absent = off. */
  backendIdleTimeoutMs?: number;
  connectTimeoutMs: number;
  maxPendingBytes: number;
  onParseError: 'forward' | 'close';
  /** Stream keys and query strings of the app and tcUrl in clear in logs, the API and the registry (`log.streamKeys`). */
  logStreamKeys: boolean;
  /** Warnings a peer can cause per connection or message go through this (rate-limited). */
  peerLog: RateLimitedLog;
  chunkLimits: Partial<ChunkReaderLimits>;
  amfLimits: Partial<Amf0Limits>;
  /** E-RTMP reconnect (docs/protocol.md#e-rtmp-reconnect); absent = not offered. */
  erpc?: { offer: boolean; tcUrl: string };
  /** Counters of E-RTMP and migration events. */
  metrics?: ProxyObserver;
  /** Proxy-side migration (drain.nonCapable: migrate); absent = off. */
  migration?: MigrationCoordinator | null;
  /** Routing rules (routing.ts); absent = least connections over every backend. */
  router?: Router | null;
  /** Bytes a session may hold between reads (limits.sessionBufferBytes); absent = no limit. */
  sessionBufferBytes?: number;
  /** The process's buffer budget every session draws from (limits.processBufferBytes); absent = one without a limit per session. */
  processBudget?: ProcessBudget;
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

/** Where a connection really comes from, when the listener knows better than the socket (PROXY protocol, TLS). */
export interface SessionOrigin {
  /** `address:port` of the client (the PROXY protocol source); default: the socket's peer. */
  clientAddress?: string;
  /** Written first on every backend connection of the session (the backend PROXY protocol header). */
  preamble?: Buffer | null;
  /** When the listener accepted the connection (before its PROXY header or TLS handshake): the handshake deadline counts from it. Default: the session's start. */
  acceptedAt?: number;
}

/** C0 + C1: what a client sends before it hears from the server. The backend is opened once they are in. */
const CLIENT_HELLO_BYTES = 1 + HANDSHAKE_PACKET_SIZE;

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
  /** Proxy-side migrations this session went through (its media now flows through the proxy's own RTMP). */
  migrations: number;
  /** The routing rule that placed the session and how (`live: sticky`), null without routing rules. */
  route: string | null;
}

/**
 * How client bytes travel:
 *  - `pass`: as they arrive, in the original Buffers (the hot path);
 *  - `armed`: a migration target is publishing; still raw to the old backend, but the tail of
 *    each buffer that could be the start of the switch message is held back (SwitchSplitter);
 *  - `relay`: after a migration the proxy terminates RTMP both ways: client messages are
 *    re-chunked for the backend, backend messages re-chunked for the client;
 *  - `drop`: the backend side is gone (backendGone): the client is read to its end, its bytes
 *    dropped and not counted.
 */
type Mode = 'pass' | 'armed' | 'relay' | 'drop';

/** One proxy-side migration of this session, from its start to its switch or failure. */
interface MigrationRun {
  from: string;
  startedAt: number;
  tried: Set<string>;
  ticket: MigrationTicket | null;
  /** The target being opened (or published and waiting for the switch). */
  attempt: UpstreamConnection | null;
  readyAt: number | null;
  readyTimer: NodeJS.Timeout | null;
  switchTimer: NodeJS.Timeout | null;
  /** Relay mode: switch at the next keyframe message. */
  armedInRelay: boolean;
  lastReason: string | null;
}

let nextId = 1;

/**
 * The session a socket belongs to. The sockets' listeners are Session's static methods (Node
 * calls them with the socket as `this`): no closures per session (11 of them, with their
 * contexts, were ~0.7 KiB of heap per session).
 */
const SESSION = Symbol('session');
type OwnedSocket = net.Socket & { [SESSION]?: Session };

/**
 * One publisher connection and its backend connection.
 *
 * Bytes are forwarded as they arrive, in the original Buffers, both ways; each direction is
 * also fed to a chunk reader (headers only) so the session knows its app, stream key and
 * whether it can be told to go away, and so server→client bytes can take an injected chunk.
 * Backpressure: a `write` that returns false pauses the other socket until `drain`.
 * Half-close is propagated (allowHalfOpen on both sockets); any error ends both.
 *
 * A session whose client supports neither Go Away nor E-RTMP reconnect can be migrated to
 * another backend by the proxy (`migrate`, see migration.ts); after that it runs in relay mode.
 */
export class Session implements StrategySession {
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
  /** Completed proxy-side migrations. */
  migrations = 0;

  readonly view: SessionView;
  /** What this session holds between reads (see buffer-budget.ts). */
  readonly budget: SessionBudget;
  private backend: net.Socket | null = null;
  private readonly c2sHandshake = new HandshakeSkipper();
  private c2sReader: ChunkReader | null;
  private readonly c2sHandler: ChunkReaderHandler;
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
  /** Runs from the start until `connect` is seen, whatever the client sends meanwhile (a parse fallback included). */
  private handshakeTimer: NodeJS.Timeout | null = null;
  /** The backend is opened once the client's C0+C1 are in (not late-bound): a silent connection costs no backend connection. */
  private awaitingHello = false;
  private detach: (() => void) | null = null;
  private finished = false;
  private clientClosed = false;
  /** The client sent FIN. */
  private clientEnded = false;
  private backendClosed = true;

  // ── migration ──
  private mode: Mode = 'pass';
  /** Metadata and sequence headers, kept when this session may migrate. */
  private cache: MediaCache | null = null;
  private migration: MigrationRun | null = null;
  private splitter: SwitchSplitter | null = null;
  /** Relay mode: the backend connection the proxy publishes to. */
  private upstream: UpstreamConnection | null = null;
  /** Relay mode: the proxy's writer towards the client (fmt 0 headers, the client's S→C chunk size). */
  private clientWriter: ChunkWriter | null = null;
  /** Relay messages for the client waiting until the old backend's stream is sealed. */
  private clientQueue: OutgoingMessage[] = [];
  /** Connections left behind by a switch, ending; created with the first (most sessions never switch). */
  private retired: Set<{ destroy(): void }> | null = null;
  /** The client's Window Ack Size (C→S type 5): relay mode acknowledges by it. */
  private clientWindowAck = 0;
  private lastAckToClient = 0;
  /** When the last switch happened; cleared when the switch message reached the new backend. */
  private switchedAt: number | null = null;
  private migrationRefusedCounted = false;
  /** Idle sweep: the byte count last seen in each direction and since when it has not moved. */
  private readonly idleIn = { bytes: 0, at: 0 };
  private readonly idleOut = { bytes: 0, at: 0 };

  // ── late binding (routing rules that need the app or the stream key) ──
  /**
   * The backend is chosen only once `connect` (app rules) or `publish` (stream-key rules, sticky)
   * is known. Until then the proxy is the server: it answers the handshake (and, for stream-key
   * rules, `connect` and `createStream`); then it opens the backend with its own handshake and
   * writes the client's RTMP bytes from the first chunk on, unchanged (C→S stays the hot path).
   * S→C, the backend's messages are relayed re-chunked by the proxy's writer, minus its replies to
   * what the proxy already answered.
   */
  private readonly late: boolean;
  private readonly router: Router | null;
  /** The proxy's server end of the client's handshake (late binding). */
  private front: HandshakeEnd | null = null;
  /** The proxy's client end of the backend's handshake (late binding). */
  private backendHandshake: HandshakeEnd | null = null;
  /** Late binding: client bytes wait in `pending` until the backend finished its handshake. */
  private holdClient = false;
  /** Late binding: routing started (connect or publish seen). */
  private routeStarted = false;
  /** Late binding: the transaction (and stream) of the command that triggered routing, for the rejection. */
  private routeTrigger: { transactionId: number; streamId: number } | null = null;
  /** Late binding: bytes received from the backend (client acks are translated by the difference). */
  private backendBytesIn = 0;
  /** Late binding: transactions the proxy answered itself; the backend's replies to them are dropped. Created with the first. */
  private localTxns: Set<number> | null = null;
  private createStreamTxn: number | null = null;
  private connectAnsweredLocally = false;
  private placement: Placement | null = null;
  private rejected = false;
  /** Admission: no backend could take the session when it arrived; it is refused at `connect` with this reason. */
  private refusal: string | null = null;
  private startLogged = false;

  constructor(
    private readonly client: net.Socket,
    private readonly pool: BackendPool,
    private readonly settings: SessionSettings,
    private readonly hooks: SessionHooks,
    private readonly log: Logger,
    private readonly origin: SessionOrigin = {},
  ) {
    this.id = `s${process.pid.toString(36)}-${(nextId++).toString(36)}`;
    this.clientAddress = origin.clientAddress ?? `${client.remoteAddress ?? '?'}:${client.remotePort ?? 0}`;
    this.view = new SessionView({ publishStarted: () => this.onPublishStarted() }, settings.amfLimits);
    this.budget = new SessionBudget(settings.sessionBufferBytes ?? Infinity, settings.processBudget ?? new ProcessBudget(Infinity));
    this.c2sHandler = { message: (info, payload) => this.onClientMessage(info, payload), messageStart: undefined };
    this.c2sReader = new ChunkReader(this.c2sHandler, undefined, settings.chunkLimits, this.budget);
    // The rules this session started with (a reload changes them for new sessions only).
    const router = settings.router ?? null;
    this.router = router;
    this.late = router !== null && router.needs !== 'accept';
    // Late binding relays whole server messages: collect them all.
    this.s2c = new ClientBoundInjector((info, payload) => this.onServerMessage(info, payload), this.late ? collectEverything : undefined, settings.chunkLimits, this.budget);
  }

  /** How the client's credentials (stream key, query strings) are shown. */
  private get shown(): ClientTextView {
    return clientTextView(this.settings.logStreamKeys);
  }

  /** The client's IP (the PROXY protocol source when accepted), for CIDR routing rules. */
  private get clientIp(): string {
    const a = this.clientAddress;
    const ip = a.slice(0, Math.max(0, a.lastIndexOf(':')));
    return normalizeIp(ip.startsWith('[') && ip.endsWith(']') ? ip.slice(1, -1) : ip);
  }

  // ── socket listeners (`this` is the socket; see SESSION) ──
  private static clientData(this: OwnedSocket, buf: Buffer): void {
    this[SESSION]!.onClientData(buf);
  }
  private static clientEnd(this: OwnedSocket): void {
    this[SESSION]!.onClientEnd();
  }
  private static clientError(this: OwnedSocket, err: Error): void {
    this[SESSION]!.fail('client-error', err);
  }
  private static clientDrain(this: OwnedSocket): void {
    const s = this[SESSION]!;
    s.backend?.resume();
    s.upstream?.socket.resume();
  }
  private static clientClose(this: OwnedSocket): void {
    const s = this[SESSION]!;
    s.clientClosed = true;
    s.backend?.destroy();
    s.upstream?.destroy();
    if (s.upstream !== null) s.backendClosed = true;
    s.maybeFinish();
  }
  private static backendData(this: OwnedSocket, buf: Buffer): void {
    const s = this[SESSION]!;
    if (this === s.backend) s.onBackendData(buf);
    else s.onRetiredBackendData(buf);
  }
  private static backendEnd(this: OwnedSocket): void {
    const s = this[SESSION]!;
    if (this !== s.backend) return;
    s.backendWentFirst();
    s.client.end();
  }
  private static backendError(this: OwnedSocket, err: Error): void {
    const s = this[SESSION]!;
    if (this === s.backend) s.fail('backend-error', err);
  }
  private static backendClose(this: OwnedSocket): void {
    const s = this[SESSION]!;
    if (this !== s.backend) {
      s.retired?.delete(this);
      s.onRetiredBackendClosed();
      return;
    }
    s.backendWentFirst();
    s.backendGone();
  }
  private static backendDrain(this: OwnedSocket): void {
    const s = this[SESSION]!;
    if (this === s.backend) s.client.resume();
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
    if (this.migration !== null) return 'migrating';
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
    // Idle timeouts are checked by one sweep over all sessions (checkIdle), not a socket timer
    // refreshed on every read and write.
    this.idleIn.at = this.idleOut.at = this.startedAt;
    (c as OwnedSocket)[SESSION] = this;
    c.on('data', Session.clientData);
    c.on('end', Session.clientEnd);
    c.on('error', Session.clientError);
    c.on('drain', Session.clientDrain);
    c.on('close', Session.clientClose);
    const deadline = (this.origin.acceptedAt ?? this.startedAt) + this.settings.handshakeTimeoutMs;
    this.handshakeTimer = setTimeout(() => this.close('handshake-timeout'), Math.max(0, deadline - Date.now()));
    this.handshakeTimer.unref();
    if (this.late) this.front = new HandshakeEnd('server');
    else this.awaitingHello = true;
  }

  /**
   * The next backend to try, not in `exclude`: by the routing rules when configured (a migration
   * stays in the session's group, a sticky key goes to its next preferred backend), else least
   * connections over every backend.
   */
  private choose(exclude: ReadonlySet<string>): { target: BackendConfig | null; placement: Placement | null } {
    const router = this.router;
    if (router === null) return { target: this.pool.pick(exclude), placement: null };
    const f = this.view.facts;
    return this.pool.place(router, { app: f.connect?.app ?? null, streamKey: f.streamKey, clientIp: this.clientIp }, exclude);
  }

  /** Routes to the least loaded healthy backend; on refusal tries the next (issue: "try the next"). */
  private connectBackend(tried: Set<string>): void {
    if (this.finished || this.clientClosed) return;
    const { target, placement } = this.choose(tried);
    this.placement = placement;
    if (target === null) {
      const p = placement;
      const reason = tried.size > 0 ? 'all-backends-failed' : p !== null && p.backend === null && p.reason === 'no-rule' ? 'no-route' : 'no-backend';
      if (this.late && this.routeTrigger !== null) this.reject(reason);
      else if (tried.size === 0 && !this.late && this.front === null && this.c2sReader !== null && !this.clientClosed) {
        // Admission (every backend draining, down or full): a clear RTMP error beats a silent
        // close — the proxy answers the handshake, then refuses the connect with the reason.
        this.refusal = reason;
        this.front = new HandshakeEnd('server');
        // The client's bytes before the current read (the start of C0+C1) were held for a backend.
        const early = this.pending;
        this.dropPending();
        for (const b of early) if (this.answerHandshake(b) < 0) return;
      } else this.close(reason);
      return;
    }
    tried.add(target.name);
    const sock = net.connect({ host: target.host, port: target.port, allowHalfOpen: true });
    if (this.origin.preamble) sock.write(this.origin.preamble);
    this.backendClosed = false;
    const timer = setTimeout(() => sock.destroy(new Error(`connect timeout after ${this.settings.connectTimeoutMs} ms`)), this.settings.connectTimeoutMs);
    timer.unref();
    const onConnectError = (err: Error): void => {
      clearTimeout(timer);
      this.backendClosed = true;
      this.hooks.connectFailed(this, target.name, err);
      if (isFdExhausted(err)) {
        // Out of file descriptors: our limit, not the backend's — it stays up, this session ends.
        this.close('fd-exhausted');
        return;
      }
      this.pool.reportConnectFailure(target.name, err);
      this.connectBackend(tried);
    };
    sock.once('error', onConnectError);
    sock.once('connect', () => {
      clearTimeout(timer);
      sock.off('error', onConnectError);
      if (this.finished || this.clientClosed) {
        sock.destroy();
        // The client left while this connect was in flight: nothing else will finish the session.
        this.backendClosed = true;
        this.maybeFinish();
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
    // Every handler checks that the socket is still the session's backend: a migration retires it.
    (sock as OwnedSocket)[SESSION] = this;
    sock.on('data', Session.backendData);
    sock.on('end', Session.backendEnd);
    sock.on('error', Session.backendError);
    sock.on('close', Session.backendClose);
    sock.on('drain', Session.backendDrain);
    this.detach = this.pool.attach(target.name, this);
    const p = this.placement;
    if (p !== null && p.backend !== null) this.settings.metrics?.routed.inc({ rule: p.rule.label, how: p.how });
    this.hooks.routed(this);
    if (this.late) {
      // Our own handshake first; the client's bytes follow once it is done (onLateBackendData).
      this.holdClient = true;
      this.backendHandshake = new HandshakeEnd('client');
      sock.write(this.backendHandshake.hello());
    } else {
      this.flushPending(sock);
    }
    this.client.resume();
  }

  private flushPending(sock: net.Socket): void {
    for (const buf of this.pending) sock.write(buf);
    this.dropPending();
    if (this.clientEnded) sock.end();
  }

  private dropPending(): void {
    this.budget.give(this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
  }

  private onClientData(buf: Buffer): void {
    if (this.mode === 'drop') return;
    this.bytesIn += buf.length;
    if (this.awaitingHello && this.bytesIn >= CLIENT_HELLO_BYTES) {
      this.awaitingHello = false;
      this.connectBackend(new Set());
      if (this.client.destroyed) return;
    }
    if (this.mode !== 'pass') {
      this.onClientDataMigrating(buf);
      return;
    }
    let fwd = buf;
    if (this.front !== null && !this.front.done) {
      // Late binding: the proxy answers the handshake; the backend gets its own.
      const next = this.answerHandshake(buf);
      if (next < 0) return;
      fwd = buf.subarray(next);
    }
    if (this.rejected) return;
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
        this.c2sFeeding = null;
        this.parseFailed('c2s', err);
        if (this.finished) return;
      }
    }
    const backend = this.backend;
    if (backend === null || this.holdClient) {
      if (fwd.length === 0 || this.finished || this.rejected) return;
      if (!this.budget.take(fwd.length)) {
        this.overBudget('closed', 'client bytes waiting for the backend');
        this.close('buffer-budget');
        return;
      }
      this.pending.push(fwd);
      this.pendingBytes += fwd.length;
      // The client only sends C0+C1 (1537 bytes) before it hears from the server, so this bound
      // is reached only by a peer that does not speak RTMP. Before C0+C1 nothing would resume it.
      if (this.pendingBytes > this.settings.maxPendingBytes && !this.awaitingHello) this.client.pause();
      return;
    }
    if (!backend.write(buf)) this.client.pause();
  }

  /** Late binding: C0+C1 → S0+S1+S2. Returns the offset after the handshake bytes, -1 when the session closed. */
  private answerHandshake(buf: Buffer): number {
    try {
      const r = this.front!.push(buf);
      if (r.reply !== null) this.writeToClient([r.reply]);
      return r.next;
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      this.parseFailed('c2s', err);
      if (!this.finished) this.close(`parse-error:${err.code}`);
      return -1;
    }
  }

  /** Client bytes while a migration is armed or after it (relay). */
  private onClientDataMigrating(buf: Buffer): void {
    const reader = this.c2sReader!;
    if (this.mode === 'armed') {
      const splitter = this.splitter!;
      let old: Buffer | null;
      try {
        old = splitter.push(buf);
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        const rest = splitter.unforwarded;
        if (splitter.switched) {
          // Already relaying: nothing to fall back to.
          if (rest !== null && rest.length > 0) this.backend?.write(rest);
          this.finishSwitchFromPass(null);
          this.close(`parse-error:${err.code}`);
          return;
        }
        this.migrationFailed(this.migration!, 'client-parse-error');
        if (rest !== null && rest.length > 0) this.backend?.write(rest);
        this.parseFailed('c2s', err);
        return;
      }
      if (splitter.switched) {
        this.finishSwitchFromPass(old);
      } else if (old !== null && this.backend !== null && !this.backend.write(old)) {
        this.client.pause();
      }
      if ((this.mode as Mode) === 'relay') this.ackClient();
      return;
    }
    try {
      reader.feed(buf);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      if (err.code === 'buffer-budget') this.overBudget('closed', 'relayed messages');
      else this.settings.peerLog.write(`relay-parse:${err.code}`, { session: this.id, reason: err.code, err: err.message }, 'RTMP parse failed in relay mode: closing');
      this.hooks.parseFallback(this, 'c2s', err);
      this.close(`parse-error:${err.code}`);
      return;
    }
    this.ackClient();
  }

  /** A complete client message (payload for the collected kinds). Runs for every message: keep it cheap. */
  private onClientMessage(info: MessageInfo, payload: Buffer | null): void {
    if (payload !== null) {
      const t = info.typeId;
      if (t === MessageType.Acknowledgement) {
        if (this.mode !== 'relay') this.translateAck(payload);
      } else if (this.cache !== null && (t === MessageType.Video || t === MessageType.Audio || t === MessageType.DataAmf0 || t === MessageType.DataAmf3)) {
        const refused = this.cache.refused;
        this.cache.offer(info, payload);
        if (!refused && this.cache.refused) this.overBudget('not-cached', 'migration cache');
      } else if (t === MessageType.WindowAckSize && payload.length >= 4) {
        this.clientWindowAck = payload.readUInt32BE(0);
      }
    }
    const cmd = this.view.clientMessage(info, payload);
    if (this.mode === 'relay') this.relayClientMessage(info, payload);
    else if (this.front !== null && !this.routeStarted && cmd !== null) this.onUnroutedCommand(info, cmd);
  }

  /**
   * Late binding, before routing: the proxy plays the server for as long as the rules need. App
   * rules route at `connect`; stream-key rules need `publish`, so `connect` and `createStream`
   * are answered here as nginx-rtmp would (the backend's own replies are dropped later);
   * `releaseStream` and `FCPublish` need no answer (clients do not wait for one).
   */
  private onUnroutedCommand(info: MessageInfo, cmd: Command): void {
    if (this.refusal !== null) {
      // No backend could take a session when it arrived: say so at connect.
      if (cmd.name === 'connect') {
        this.routeTrigger = { transactionId: cmd.transactionId, streamId: 0 };
        this.reject(this.refusal);
      }
      return;
    }
    const byKey = this.router?.needs === 'publish';
    if (cmd.name === 'connect' && this.view.facts.connectTransactionId === cmd.transactionId && !this.connectAnsweredLocally) {
      if (!byKey) {
        this.route(cmd.transactionId, 0);
        return;
      }
      const c = this.view.facts.connect!;
      this.connectAnsweredLocally = true;
      (this.localTxns ??= new Set()).add(cmd.transactionId);
      // E-RTMP: offer Reconnect in our own _result to clients that sent capsEx (docs/protocol.md#e-rtmp-reconnect).
      const capsEx = this.settings.erpc?.offer === true && c.capsEx !== null ? CAPS_EX_RECONNECT : null;
      if (capsEx !== null) this.settings.metrics?.capsExOffered.inc({ result: 'rewritten' });
      for (const m of connectAnswer(cmd.transactionId, { objectEncoding: c.objectEncoding, capsEx })) this.sendToClient(m);
    } else if (cmd.name === 'createStream' && byKey && this.connectAnsweredLocally && this.createStreamTxn === null) {
      this.createStreamTxn = cmd.transactionId;
      (this.localTxns ??= new Set()).add(cmd.transactionId);
      this.sendToClient(createStreamAnswer(cmd.transactionId));
    } else if (cmd.name === 'publish' && byKey && this.connectAnsweredLocally) {
      this.route(cmd.transactionId, info.streamId);
    }
  }

  /** Late binding: what routing needs is known. */
  private route(transactionId: number, streamId: number): void {
    this.routeStarted = true;
    this.routeTrigger = { transactionId, streamId };
    this.connectBackend(new Set());
  }

  /**
   * Late binding: no backend for this session. The client gets `_error` NetConnection.Connect.Rejected
   * with the reason (for its connect or its publish), then FIN; counted by its close reason.
   */
  private reject(reason: string): void {
    const p = this.placement;
    const f = this.view.facts;
    const description =
      p !== null && p.backend === null
        ? rejectionDescription(p, { app: f.connect?.app ?? null, streamKey: f.streamKey })
        : reason === 'no-backend'
          ? 'No ingest server available: all are draining, down or full'
          : 'No ingest server reachable for this stream: rejected by the ingest proxy';
    const trigger = this.routeTrigger!;
    this.rejected = true;
    this.closeReason = reason;
    this.settings.peerLog.write(
      `rejected:${reason}`,
      { session: this.id, client: this.clientAddress, rtmpApp: this.shown.appOrUrl(f.connect?.app ?? null), streamKey: this.streamKeyForDisplay(), reason, rule: p?.rule?.label ?? null },
      'session rejected by routing',
    );
    this.sendToClient(rejection(trigger.transactionId, trigger.streamId, description));
    this.dropPending();
    this.client.end();
    // A client that keeps its side open does not hold the session.
    setTimeout(() => this.close(reason), 2000).unref();
  }

  /**
   * The client acknowledges the bytes it received, which include what the proxy added to the
   * client-bound stream; the server must see its own count (docs/protocol.md#acknowledgement-translation). The payload of a
   * single-chunk message is a view of the buffer about to be forwarded: rewrite it in place.
   */
  private translateAck(payload: Buffer): void {
    // Late binding: the client counts what the proxy wrote, the backend what it sent.
    const added = this.late ? this.bytesOut - this.backendBytesIn : this.s2c.addedBytes;
    if (added === 0 || payload.length < 4) return;
    const buf = this.mode === 'armed' ? (this.splitter?.feeding ?? null) : this.c2sFeeding;
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
    if (this.late) {
      this.relayBackendMessage(info, payload);
      return;
    }
    if (this.capsExPending && this.view.facts.connectAnswered) {
      this.capsExPending = false;
      this.s2c.setCommandRewriter(null);
      // Held messages reach the rewriter right after this; one that was not held went out as it was.
      if (!this.s2c.holding) this.settings.metrics?.capsExOffered.inc({ result: 'interleaved' });
    }
  }

  /**
   * E-RTMP (docs/protocol.md#e-rtmp-reconnect): add capsEx Reconnect to the connect `_result` this client gets. The
   * client sent capsEx, so it reads the server's; nginx-rtmp sends none.
   */
  private offerCapsEx(): void {
    const txn = this.view.facts.connectTransactionId;
    if (this.late) {
      // Our own _result already has it, or relayBackendMessage adds it to the backend's.
      this.capsExPending = !this.connectAnsweredLocally;
      return;
    }
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
    if (this.late) {
      this.onLateBackendData(buf);
      return;
    }
    const hadFailure = this.s2c.failure;
    const overBudget = this.s2c.rewriteOverBudget;
    const out = this.s2c.push(buf);
    if (this.s2c.rewriteOverBudget !== overBudget) this.overBudget('unchanged', 'held connect _result');
    if (hadFailure === null && this.s2c.failure !== null) {
      this.parseFailed('s2c', this.s2c.failure);
      if (this.finished) return;
    }
    this.writeToClient(out);
  }

  /**
   * Late binding: the backend's S0+S1+S2 get C2, then the client's bytes follow. Its messages
   * (the injector parses them, handshake skipped) reach the client through relayBackendMessage;
   * the injector's byte output is not used.
   */
  private onLateBackendData(buf: Buffer): void {
    this.backendBytesIn += buf.length;
    const hs = this.backendHandshake!;
    if (!hs.done) {
      let r;
      try {
        r = hs.push(buf);
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        this.log.warn({ session: this.id, backend: this.backendName, err: err.message }, 'backend handshake failed');
        this.close('backend-handshake-failed');
        return;
      }
      if (r.reply !== null) this.backend!.write(r.reply);
      if (hs.done) {
        this.holdClient = false;
        this.flushPending(this.backend!);
        this.client.resume();
      }
    }
    const hadFailure = this.s2c.failure;
    this.s2c.push(buf);
    if (hadFailure === null && this.s2c.failure !== null) this.parseFailed('s2c', this.s2c.failure);
  }

  /**
   * Late binding: one backend message for the client, re-chunked by the proxy's writer. Chunking
   * control is per hop; replies to what the proxy answered itself are dropped (a refusal of
   * those ends the session: the client was told yes).
   */
  private relayBackendMessage(info: MessageInfo, payload: Buffer | null): void {
    const t = info.typeId;
    if (t === MessageType.SetChunkSize || t === MessageType.Abort || this.finished) return;
    if (payload === null) {
      this.close('relay-uncollected-message');
      return;
    }
    let body = payload;
    if ((t === MessageType.CommandAmf0 || t === MessageType.CommandAmf3) && ((this.localTxns !== null && this.localTxns.size > 0) || this.capsExPending)) {
      let cmd;
      try {
        cmd = decodeCommand(t, payload, this.settings.amfLimits);
      } catch {
        cmd = null;
      }
      const isReply = cmd !== null && (cmd.name === '_result' || cmd.name === '_error');
      if (isReply && this.localTxns?.delete(cmd!.transactionId) === true) {
        if (cmd!.name === '_error') {
          this.log.warn({ session: this.id, backend: this.backendName, command: cmd!.transactionId === this.createStreamTxn ? 'createStream' : 'connect' }, 'the backend refused what the proxy had answered for it');
          this.close('backend-rejected');
        } else if (cmd!.transactionId === this.createStreamTxn && readCreateStreamResult(cmd!) !== LOCAL_STREAM_ID) {
          // The client publishes on the stream id we gave it; its chunks reach the backend unchanged.
          this.log.warn({ session: this.id, backend: this.backendName, streamId: readCreateStreamResult(cmd!) }, `the backend gave createStream another stream id than ${LOCAL_STREAM_ID}`);
          this.close('backend-stream-id-mismatch');
        }
        return;
      }
      if (isReply && this.capsExPending && cmd!.name === '_result' && cmd!.transactionId === this.view.facts.connectTransactionId) {
        this.capsExPending = false;
        const out = withCapsEx(t, payload, CAPS_EX_RECONNECT, this.settings.amfLimits);
        this.settings.metrics?.capsExOffered.inc({ result: out === null ? 'unchanged' : 'rewritten' });
        if (out !== null) body = out;
      }
    }
    this.sendToClient({ csid: info.csid, timestamp: info.timestamp, typeId: t, streamId: info.streamId, payload: body });
  }

  private writeToClient(out: Buffer[]): void {
    let ok = true;
    for (const b of out) {
      this.bytesOut += b.length;
      ok = this.client.write(b) && ok;
    }
    if (!ok) {
      this.backend?.pause();
      this.upstream?.socket.pause();
    }
  }

  private onConnectSeen(): void {
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
    const c = this.view.facts.connect!;
    this.log.debug({ session: this.id, rtmpApp: this.shown.appOrUrl(c.app), tcUrl: this.shown.appOrUrl(c.tcUrl), flashVer: c.flashVer, goAway: c.supportsGoAway, goAwayKey: c.goAwayKey, capsEx: c.capsEx }, 'connect');
    this.logStart();
    const erpcOffered = this.settings.erpc?.offer === true;
    if (erpcOffered && c.capsEx !== null && this.s2c.failure === null) this.offerCapsEx();
    // A client that can be told to reconnect does not need migrating: only the others pay for the cache.
    const told = c.supportsGoAway || (erpcOffered && this.capability === 'erpc');
    if (!told && this.settings.migration && this.c2sReader !== null) {
      this.cache = new MediaCache(this.settings.migration.settings.maxCachedBytes, this.budget);
      this.c2sReader.setCollectPolicy(migrationCollectPolicy);
    }
    // A session that connects to a backend already draining is told at once.
    if (this.backendName !== null) this.pool.reapplyStrategy(this.backendName, this);
  }

  private onPublishStarted(): void {
    // A non-capable session on a draining backend can migrate only once it publishes.
    if (this.backendName !== null && !this.finished && this.mode === 'pass') this.pool.reapplyStrategy(this.backendName, this);
  }

  private parseFailed(direction: 'c2s' | 's2c', err: ProtocolError): void {
    if (this.fallback === null) this.fallback = err;
    // Counted and logged (rate-limited) by the listener.
    this.hooks.parseFallback(this, direction, err);
    if (direction === 'c2s') this.logStart();
    // Late binding: nothing to fall back to before routing (no backend), nor S→C (the client's chunk stream is ours).
    const closes = this.settings.onParseError === 'close' || (this.late && (direction === 's2c' || !this.routeStarted));
    if (err.code === 'buffer-budget') this.overBudget(closes ? 'closed' : 'fallback', `${direction} messages`);
    if (this.late && (direction === 's2c' || !this.routeStarted)) {
      this.close(`parse-error:${err.code}`);
      return;
    }
    if (direction === 'c2s') {
      // Blind forwarding from here on: nothing parsed is kept. The handshake timer keeps running:
      // a session that falls back before `connect` is closed at its deadline.
      this.c2sReader?.release();
      this.c2sReader = null;
      this.cache?.clear();
    }
    if (this.migration !== null) this.migrationFailed(this.migration, `${direction}-parse-error`);
    if (this.settings.onParseError === 'close') this.close(`parse-error:${err.code}`);
  }

  /** This session was refused buffer memory (its budget or the process's): counted, logged rate-limited. */
  private overBudget(outcome: 'fallback' | 'closed' | 'not-cached' | 'unchanged', what: string): void {
    const b = this.budget;
    const which = b.exceeded ?? 'session';
    this.settings.metrics?.bufferBudgetExceeded.inc({ budget: which, outcome });
    this.settings.peerLog.write(
      `buffer-budget:${which}:${outcome}`,
      { session: this.id, client: this.clientAddress, budget: which, outcome, what, sessionHeld: b.held, sessionLimit: b.limit, processHeld: b.process.held, processLimit: b.process.limit },
      'session over its buffer budget',
    );
  }

  private onClientEnd(): void {
    this.clientEnded = true;
    if (this.mode === 'armed' && this.migration !== null) this.migrationFailed(this.migration, 'client-ended');
    if (this.upstream !== null) this.upstream.socket.end();
    else if (this.backend !== null && !this.holdClient) this.backend.end();
    // A backend still being opened (or doing its handshake) gets the FIN after the held bytes (flushPending).
    else if (this.backendClosed) this.close('client-closed');
  }

  /**
   * Injects RTMP Go Away (type 32) into the client-bound stream at the next safe point
   * (docs/protocol.md#go-away, docs/protocol.md#injection). Only for clients that announced support. Idempotent.
   */
  goAway(): boolean {
    if (this.finished || !this.supportsGoAway) return false;
    if (this.goAwayRequested) return true;
    const written = (): void => {
      this.goAwaySentAt = Date.now();
      this.hooks.goAwayWritten(this);
      this.log.info({ session: this.id, backend: this.backendName }, 'go away sent');
    };
    return (this.goAwayRequested = this.tellClient(CONTROL_CSID, goAwayChunk, goAwayMessage, written));
  }

  /**
   * Injects the E-RTMP `NetConnection.Connect.ReconnectRequest` (docs/protocol.md#e-rtmp-reconnect) into the
   * client-bound stream at the next safe point, with the configured tcUrl if any. Only for
   * clients that announced capsEx Reconnect and not Go Away (Go Away is preferred). Idempotent.
   */
  reconnectRequest(): boolean {
    if (this.finished || this.capability !== 'erpc') return false;
    if (this.reconnectRequested) return true;
    const tcUrl = this.settings.erpc?.tcUrl;
    const msg = (): OutgoingMessage => reconnectRequestMessage(tcUrl ? { tcUrl } : {});
    const written = (): void => {
      this.reconnectRequestSentAt = Date.now();
      this.settings.metrics?.reconnectRequests.inc({ backend: this.backendName ?? 'none' });
      this.log.info({ session: this.id, backend: this.backendName, tcUrl: tcUrl || null }, 'reconnect request sent');
    };
    return (this.reconnectRequested = this.tellClient(COMMAND_CSID, msg, msg, written));
  }

  /**
   * Puts a message for the client between two chunks of the server's stream (the injector), or,
   * when the proxy writes this client's stream itself (late binding), between two messages: any
   * such point is a chunk boundary. `written` runs once it is in the client's write queue.
   */
  private tellClient(csid: number, injected: () => Buffer | OutgoingMessage, whole: () => OutgoingMessage, written: () => void): boolean {
    if (this.late) {
      this.sendToClient(whole());
      written();
      return true;
    }
    const out = this.s2c.inject(csid, injected(), written);
    if (out === null) return false;
    this.writeToClient(out);
    return true;
  }

  // ───────────────────────────── proxy-side migration ─────────────────────────────

  /** Why this session cannot migrate now, or null. */
  private cannotMigrate(): string | null {
    const f = this.view.facts;
    if (!f.publishing || f.unpublished) return 'not-publishing';
    if (f.connectReplay === null || f.streamKey === null || f.publishReplay === null || f.streamId === null) return 'not-publishing';
    if (this.c2sReader === null || this.fallback !== null || this.s2c.failure !== null) return 'unparsed-stream';
    if (this.cache === null) return 'no-cache';
    if (this.cache.overflow) return 'cache-overflow';
    if (this.mode === 'pass' && this.backend === null) return 'no-backend-connection';
    if (this.mode === 'relay' && this.upstream === null) return 'no-backend-connection';
    if (this.mode === 'drop') return 'no-backend-connection';
    return null;
  }

  /** Some other backend could take this session now (healthy, not draining, below its cap). */
  private hasMigrationTarget(exclude: string): boolean {
    if (this.router !== null) return this.choose(new Set([exclude])).target !== null;
    return this.pool.list().some((b) => b.name !== exclude && b.state === 'up' && !b.removing && (b.maxSessions === undefined || b.sessions < b.maxSessions));
  }

  /**
   * Proxy-side migration off `backend` (drain.nonCapable: migrate): queued for a slot
   * (migration.maxInFlight), then a healthy backend is opened and published to; the switch
   * happens at the client's next keyframe. Returns 'waiting' when the session cannot migrate
   * (yet): the drain deadline then applies.
   */
  migrate(backend: string): 'migrating' | 'waiting' {
    const coordinator = this.settings.migration;
    if (!coordinator || this.finished || this.clientClosed) return 'waiting';
    if (this.migration !== null) return 'migrating';
    const why = this.cannotMigrate();
    if (why !== null) {
      this.log.info({ session: this.id, backend, why }, 'cannot migrate this session');
      if (why !== 'not-publishing' && !this.migrationRefusedCounted) {
        this.migrationRefusedCounted = true;
        this.settings.metrics?.migrations.inc({ result: 'failed', reason: why });
      }
      return 'waiting';
    }
    if (!this.hasMigrationTarget(backend)) {
      this.log.warn({ session: this.id, backend }, 'no backend to migrate this session to: the drain deadline applies');
      this.settings.metrics?.migrations.inc({ result: 'failed', reason: 'no-backend' });
      return 'waiting';
    }
    const run: MigrationRun = {
      from: backend,
      startedAt: Date.now(),
      tried: new Set([backend]),
      ticket: null,
      attempt: null,
      readyAt: null,
      readyTimer: null,
      switchTimer: null,
      armedInRelay: false,
      lastReason: null,
    };
    this.migration = run;
    this.settings.metrics?.migrationsStarted.inc({ backend });
    this.log.info({ session: this.id, backend, queued: coordinator.inFlight >= coordinator.settings.maxInFlight }, 'migration started');
    run.ticket = coordinator.acquire(() => this.nextAttempt(run));
    return 'migrating';
  }

  /** Opens the next migration target (another healthy backend), or gives up. */
  private nextAttempt(run: MigrationRun): void {
    if (run !== this.migration || this.finished) return;
    const coordinator = this.settings.migration!;
    const why = this.cannotMigrate();
    if (why !== null) {
      this.migrationFailed(run, why);
      return;
    }
    const { target } = this.choose(run.tried);
    if (target === null) {
      this.migrationFailed(run, run.lastReason ?? 'no-backend');
      return;
    }
    run.tried.add(target.name);
    const f = this.view.facts;
    const plan: ReplayPlan = {
      connect: f.connectReplay!,
      publishArgs: f.publishReplay!,
      streamKey: f.streamKey!,
      chunkSize: coordinator.settings.chunkSize,
    };
    const up: UpstreamConnection = new UpstreamConnection(
      target,
      plan,
      {
        published: () => this.onAttemptPublished(run, up),
        failed: (reason, detail) => this.onUpstreamFailed(run, up, reason, detail),
        message: (info, payload) => this.relayServerMessage(up, info, payload),
        closed: (reason) => {
          if (up === this.upstream) this.onUpstreamClosed(up, reason);
          else if (this.migration !== null && this.migration.attempt === up) this.onUpstreamFailed(this.migration, up, reason, 'the backend closed the connection');
          else this.retired?.delete(up);
        },
        drain: () => {
          if (up === this.upstream) this.client.resume();
        },
      },
      {
        connectTimeoutMs: coordinator.settings.connectTimeoutMs,
        idleTimeoutMs: this.settings.idleTimeoutMs,
        chunkLimits: this.settings.chunkLimits,
        amfLimits: this.settings.amfLimits,
        preamble: this.origin.preamble ?? null,
        budget: this.budget,
      },
    );
    run.attempt = up;
    run.readyTimer = setTimeout(() => this.onUpstreamFailed(run, up, 'publish-timeout', `no NetStream.Publish.Start within ${coordinator.settings.timeoutMs} ms`), coordinator.settings.timeoutMs);
    run.readyTimer.unref();
    this.log.debug({ session: this.id, from: run.from, to: target.name }, 'migration attempt');
  }

  private onAttemptPublished(run: MigrationRun, up: UpstreamConnection): void {
    if (run !== this.migration || run.attempt !== up) return;
    const coordinator = this.settings.migration!;
    if (run.readyTimer !== null) clearTimeout(run.readyTimer);
    run.readyTimer = null;
    run.readyAt = Date.now();
    this.settings.metrics?.migrationReadySeconds.observe((run.readyAt - run.startedAt) / 1000);
    this.pool.reportConnectSuccess(up.target.name);
    this.log.debug({ session: this.id, to: up.target.name, readyMs: run.readyAt - run.startedAt }, 'migration target publishing; waiting for a keyframe');
    if (this.mode === 'pass') this.arm();
    else run.armedInRelay = true;
    run.switchTimer = setTimeout(() => this.migrationFailed(run, 'switch-timeout'), coordinator.settings.switchTimeoutMs);
    run.switchTimer.unref();
  }

  /** pass → armed: every client message is collected, and the switch point searched. */
  private arm(): void {
    const reader = this.c2sReader!;
    const splitter = new SwitchSplitter(reader, keyframeSwitch(reader, () => this.view.facts.videoMessages === 0), () => this.beginRelay());
    this.splitter = splitter;
    const maxMessageSize = this.settings.chunkLimits.maxMessageSize ?? 16 * 1024 * 1024 - 1;
    reader.setCollectPolicy(collectEverything, maxMessageSize);
    // From now on whole media messages are assembled: room for one of the largest on top.
    this.budget.limit = (this.settings.sessionBufferBytes ?? Infinity) + maxMessageSize;
    this.c2sHandler.messageStart = (csid, typeId, length, headerEnd, headerLength) => splitter.onMessageStart(csid, typeId, length, headerEnd, headerLength);
    this.mode = 'armed';
  }

  /** armed → pass, after a failed attempt: held bytes go to the old backend. */
  private disarm(run: MigrationRun): void {
    run.armedInRelay = false;
    if (this.mode !== 'armed') return;
    const held = this.splitter!.release();
    this.splitter = null;
    this.mode = 'pass';
    this.c2sHandler.messageStart = undefined;
    this.c2sReader?.setCollectPolicy(migrationCollectPolicy);
    this.budget.limit = this.settings.sessionBufferBytes ?? Infinity;
    if (held !== null && this.backend !== null && !this.backend.write(held)) this.client.pause();
  }

  /** Sends the cached metadata and decoder configuration to a new backend, before the keyframe. */
  private replayConfig(up: UpstreamConnection, keyframeTimestamp: number): void {
    // Not after any frame that follows: audio may trail video a little (nginx-rtmp `record`
    // cuts timestamps below its epoch to 0).
    const a = this.view.facts.lastAudioTimestamp;
    const ts = a !== null && a < keyframeTimestamp && keyframeTimestamp - a < 10_000 ? a : keyframeTimestamp;
    for (const m of this.cache!.replay()) up.send({ csid: m.csid, timestamp: ts, typeId: m.typeId, streamId: up.protocol.streamId, payload: m.payload });
  }

  /** The switch point was found (inside the reader's feed): from now on client messages go to the new backend. */
  private beginRelay(): void {
    const run = this.migration!;
    const up = run.attempt!;
    this.clearRunTimers(run);
    run.attempt = null;
    this.mode = 'relay';
    this.upstream = up;
    up.protocol.forwarding = true;
    this.c2sHandler.messageStart = undefined;
    this.replayConfig(up, this.splitter!.switchTimestamp);
    this.switchedAt = Date.now();
  }

  /** After the feed that found the switch point: the old backend gets the bytes before it, then a clean unpublish. */
  private finishSwitchFromPass(old: Buffer | null): void {
    const splitter = this.splitter!;
    this.splitter = null;
    const oldSock = this.backend;
    this.backend = null;
    if (oldSock !== null) {
      (this.retired ??= new Set()).add(oldSock);
      if (old !== null) oldSock.write(old);
      const w = new ChunkWriter();
      w.chunkSize = splitter.chunkSizeAtSwitch;
      const f = this.view.facts;
      oldSock.write(w.write(commandMessage(COMMAND_CSID, 0, 'FCUnpublish', 0, null, f.streamKey)));
      oldSock.write(w.write(commandMessage(COMMAND_CSID, 0, 'deleteStream', 0, null, f.streamId)));
      oldSock.end();
      setTimeout(() => oldSock.destroy(), 5000).unref();
    }
    // The old backend's client-bound stream ends at its next message boundary (now, normally).
    if (this.s2c.seal()) this.onS2CSealed();
    const run = this.migration;
    if (run !== null && this.upstream !== null) this.completeMigration(run, this.upstream);
  }

  /** Relay mode with a migration armed: the keyframe message switches to the new backend. */
  private switchInRelay(info: MessageInfo): void {
    const run = this.migration!;
    const up = run.attempt!;
    const old = this.upstream!;
    this.clearRunTimers(run);
    run.attempt = null;
    run.armedInRelay = false;
    (this.retired ??= new Set()).add(old);
    old.end(true);
    up.protocol.forwarding = true;
    this.upstream = up;
    this.replayConfig(up, info.timestamp);
    this.switchedAt = Date.now();
    // A pause for the old connection's backpressure would wait for a `drain` nobody listens to any more.
    if (!up.socket.writableNeedDrain) this.client.resume();
    this.completeMigration(run, up);
  }

  private completeMigration(run: MigrationRun, up: UpstreamConnection): void {
    const now = Date.now();
    run.ticket?.release();
    this.migration = null;
    this.migrations++;
    this.settings.metrics?.migrations.inc({ result: 'ok', reason: 'ok' });
    this.settings.metrics?.migrationSwitchSeconds.observe((now - run.startedAt) / 1000);
    this.log.info(
      { session: this.id, from: run.from, to: up.target.name, switchMs: now - run.startedAt, readyMs: run.readyAt === null ? null : run.readyAt - run.startedAt, attempts: run.tried.size - 1 },
      'migration switched',
    );
    this.detach?.();
    this.detach = null;
    this.backendName = up.target.name;
    try {
      this.detach = this.pool.attach(up.target.name, this);
    } catch (err) {
      this.log.warn({ session: this.id, backend: up.target.name, err: (err as Error).message }, 'migrated session not attached to its new backend');
    }
  }

  private clearRunTimers(run: MigrationRun): void {
    if (run.readyTimer !== null) clearTimeout(run.readyTimer);
    if (run.switchTimer !== null) clearTimeout(run.switchTimer);
    run.readyTimer = null;
    run.switchTimer = null;
  }

  /** An attempt failed (before the switch): try another backend. After the switch: the session's backend is gone. */
  private onUpstreamFailed(run: MigrationRun, up: UpstreamConnection, reason: string, detail: string): void {
    if (up === this.upstream) {
      this.onUpstreamClosed(up, reason);
      return;
    }
    if (run !== this.migration || run.attempt !== up) return;
    if (run.readyTimer !== null) clearTimeout(run.readyTimer);
    if (run.switchTimer !== null) clearTimeout(run.switchTimer);
    run.readyTimer = null;
    run.switchTimer = null;
    up.destroy();
    run.attempt = null;
    run.lastReason = reason;
    this.settings.metrics?.migrationAttemptsFailed.inc({ backend: up.target.name, reason });
    if (reason === 'refused' || reason === 'connect-timeout') this.pool.reportConnectFailure(up.target.name, new Error(detail));
    this.log.warn({ session: this.id, to: up.target.name, reason, detail }, 'migration attempt failed');
    this.disarm(run);
    if (this.finished) return;
    this.nextAttempt(run);
  }

  /** The migration is given up: the session stays where it is (the drain deadline applies). */
  private migrationFailed(run: MigrationRun, reason: string): void {
    if (run !== this.migration) return;
    this.clearRunTimers(run);
    run.attempt?.destroy();
    run.attempt = null;
    this.disarm(run);
    run.ticket?.release();
    this.migration = null;
    this.settings.metrics?.migrations.inc({ result: 'failed', reason });
    this.log.warn({ session: this.id, from: run.from, reason, tried: [...run.tried].slice(1), elapsedMs: Date.now() - run.startedAt }, 'migration failed');
  }

  /** The connection the session relays to ended (after a switch). */
  private onUpstreamClosed(up: UpstreamConnection, reason: string): void {
    if (up !== this.upstream) {
      this.retired?.delete(up);
      return;
    }
    if (this.backendClosed) return;
    this.backendClosed = true;
    // The backend going first (not after the client's own end) is the reason the session ends.
    if (this.closeReason === null && !this.clientClosed && !this.clientEnded) this.closeReason = reason.startsWith('backend-') ? reason : `backend-${reason}`;
    this.backendGone();
  }

  /**
   * The session's backend connection (or, relaying, its upstream) closed: the session ends once
   * the client has gone too. What the server sent reaches the client, then FIN. From now on the
   * client is read to its end and its bytes dropped (`drop`): a client paused for the
   * backpressure of that connection, which will never drain, would otherwise never see its own
   * peer leave, and the session would never end. A client that does not close its side is ended
   * by the idle timeout (dropped bytes do not count as activity).
   */
  private backendGone(): void {
    this.backendClosed = true;
    if (this.migration !== null) this.migrationFailed(this.migration, 'session-ended');
    this.mode = 'drop';
    this.client.end();
    this.client.resume();
    this.maybeFinish();
  }

  /** Relay mode: one complete client message to the backend the session publishes to. */
  private relayClientMessage(info: MessageInfo, payload: Buffer | null): void {
    const t = info.typeId;
    // Protocol control is per connection: the proxy speaks for itself on each side.
    if (t <= MessageType.SetPeerBandwidth) return;
    if (payload === null) {
      this.close('relay-uncollected-message');
      return;
    }
    const run = this.migration;
    if (run !== null && run.armedInRelay && run.attempt !== null && isSwitchMessage(info, this.view.facts.videoMessages === 0)) this.switchInRelay(info);
    const up = this.upstream;
    if (up === null) return;
    const clientSid = this.view.facts.streamId;
    const upSid = up.protocol.streamId;
    let body = payload;
    if ((t === MessageType.CommandAmf0 || t === MessageType.CommandAmf3) && clientSid !== upSid) body = this.mapCommandStreamId(t, payload, clientSid, upSid);
    const ok = up.send({ csid: info.csid, timestamp: info.timestamp, typeId: t, streamId: info.streamId === clientSid ? upSid : info.streamId, payload: body });
    if (!ok) this.client.pause();
    if (this.switchedAt !== null && t === MessageType.Video) {
      this.settings.metrics?.migrationGapSeconds.observe((Date.now() - this.switchedAt) / 1000);
      this.switchedAt = null;
    }
  }

  /** deleteStream / closeStream name the stream id in an argument: the backend knows its own. */
  private mapCommandStreamId(typeId: number, payload: Buffer, from: number | null, to: number): Buffer {
    let cmd;
    try {
      cmd = decodeCommand(typeId, payload, this.settings.amfLimits);
    } catch {
      return payload;
    }
    if (cmd === null || cmd.name !== 'deleteStream' || cmd.args[0] !== from) return payload;
    const body = encodeCommand(cmd.name, cmd.transactionId, cmd.commandObject, to, ...cmd.args.slice(1));
    return typeId === MessageType.CommandAmf3 ? Buffer.concat([Buffer.of(0), body]) : body;
  }

  /** Relay mode: a backend message for the client, stream id mapped back. */
  private relayServerMessage(up: UpstreamConnection, info: MessageInfo, payload: Buffer): void {
    if (up !== this.upstream) return;
    const clientSid = this.view.facts.streamId ?? 0;
    this.sendToClient({ csid: info.csid, timestamp: info.timestamp, typeId: info.typeId, streamId: info.streamId === up.protocol.streamId ? clientSid : info.streamId, payload });
  }

  private sendToClient(msg: OutgoingMessage): void {
    if (this.clientWriter === null) {
      if (this.front === null) {
        this.clientQueue.push(msg);
        return;
      }
      // Late binding or a refusal: the client-bound stream is the proxy's from the handshake on; our chunk size first.
      const w = new ChunkWriter();
      this.clientWriter = w;
      this.writeToClient([w.write(localChunkSize())]);
      w.chunkSize = LOCAL_CHUNK_SIZE;
    }
    this.writeToClient([this.clientWriter.write(msg)]);
  }

  /** Relay mode: acknowledge the client's bytes by the window it asked for. */
  private ackClient(): void {
    if (this.clientWindowAck <= 0 || this.bytesIn - this.lastAckToClient < this.clientWindowAck) return;
    this.lastAckToClient = this.bytesIn;
    this.sendToClient(controlMessage(MessageType.Acknowledgement, this.bytesIn >>> 0));
  }

  /** The old backend's stream to the client ended at a message boundary: the proxy writes to the client now. */
  private onS2CSealed(): void {
    if (this.clientWriter !== null) return;
    if (this.s2c.sealBroken) {
      this.close('migration-s2c-desync');
      return;
    }
    const w = new ChunkWriter();
    w.chunkSize = this.s2c.reader.chunkSize;
    this.clientWriter = w;
    const queued = this.clientQueue;
    this.clientQueue = [];
    for (const m of queued) this.sendToClient(m);
  }

  /** A retired (old) backend still talking while its stream to the client is being sealed. */
  private onRetiredBackendData(buf: Buffer): void {
    if (this.s2c.sealed) return;
    const out = this.s2c.push(buf);
    // Late binding: its messages were relayed whole (relayBackendMessage), not its bytes.
    if (!this.late) this.writeToClient(out);
    if (this.s2c.sealed) this.onS2CSealed();
  }

  /** The old backend closed before its stream to the client reached a message boundary. */
  private onRetiredBackendClosed(): void {
    // Late binding: the client only ever got whole messages of it.
    if (this.s2c.sealed || this.mode !== 'relay' || this.finished || this.late) return;
    const reader = this.s2c.reader;
    if (!reader.atChunkBoundary) {
      this.close('migration-s2c-desync');
      return;
    }
    // Abort (spec §5.4.2) what the client holds half of, then the proxy takes over.
    const w = new ChunkWriter();
    w.chunkSize = reader.chunkSize;
    this.writeToClient(reader.partialMessages().map((csid) => w.write(controlMessage(MessageType.Abort, csid))));
    this.s2c.seal();
    this.clientWriter = w;
    const queued = this.clientQueue;
    this.clientQueue = [];
    for (const m of queued) this.sendToClient(m);
  }

  /** The backend ended the connection before the client did: that is why the session ends. */
  private backendWentFirst(): void {
    if (this.closeReason === null && !this.clientEnded && !this.clientClosed) this.closeReason = 'backend-closed';
  }

  /**
   * Idle timeouts, per direction, called by the proxy's sweep every few hundred ms: no new byte
   * from the client for `idleTimeoutMs`, or from the backend for `backendIdleTimeoutMs`, closes
   * the session. When the client is silent because the proxy paused it (the backend stopped
   * reading: a blackholed backend), the backend is named: `backend-stalled`.
   */
  checkIdle(now: number): void {
    if (this.finished) return;
    const inn = this.idleIn;
    if (inn.bytes !== this.bytesIn) {
      inn.bytes = this.bytesIn;
      inn.at = now;
    } else if (now - inn.at >= this.settings.idleTimeoutMs) {
      const stalled = this.client.isPaused() && ((this.backend?.writableLength ?? 0) > 0 || (this.upstream?.socket.writableLength ?? 0) > 0);
      this.close(stalled ? 'backend-stalled' : 'client-idle');
      return;
    }
    const limit = this.settings.backendIdleTimeoutMs ?? 0;
    if (limit <= 0 || this.backendName === null) return;
    const out = this.idleOut;
    if (out.bytes !== this.bytesOut) {
      out.bytes = this.bytesOut;
      out.at = now;
    } else if (now - out.at >= limit) {
      this.close('backend-idle');
    }
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
    if (this.migration !== null) this.migrationFailed(this.migration, reason === 'drain-deadline' ? 'drain-deadline' : 'session-closed');
    this.client.destroy();
    this.backend?.destroy();
    if (this.upstream !== null) {
      this.upstream.destroy();
      this.backendClosed = true;
    }
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
    this.budget.close();
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
    if (this.migration !== null) this.migrationFailed(this.migration, 'session-ended');
    if (this.retired !== null) for (const r of this.retired) r.destroy();
    this.retired = null;
    this.detach?.();
    this.detach = null;
    if (this.closeReason === null) this.closeReason = this.goAwaySentAt !== null || this.reconnectRequestSentAt !== null ? 'client-went-away' : 'client-closed';
    const f = this.view.facts;
    this.log.info(
      {
        session: this.id,
        client: this.clientAddress,
        backend: this.backendName,
        rtmpApp: this.shown.appOrUrl(f.connect?.app ?? null),
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
        migrations: this.migrations,
        parseFallback: this.fallback?.code ?? null,
      },
      'session end',
    );
    this.hooks.closed(this);
  }

  /** Bytes this process holds for the session in userland: socket write queues and the pre-connect buffer. */
  get bufferedBytes(): number {
    return this.pendingBytes + this.client.writableLength + (this.backend?.writableLength ?? 0) + (this.upstream?.socket.writableLength ?? 0);
  }

  /**
   * `session start`, once, when both the backend and the client's `connect` (app, capability) are
   * known, whichever comes last; or with the backend alone when the client's stream stopped parsing
   * before a `connect`. A session that ends before that has only its `session end` line.
   */
  logStart(): void {
    if (this.startLogged || this.backendName === null) return;
    const c = this.view.facts.connect;
    if (c === null && this.fallback === null) return;
    this.startLogged = true;
    this.log.info({ session: this.id, client: this.clientAddress, backend: this.backendName, rtmpApp: this.shown.appOrUrl(c?.app ?? null), capability: this.capability }, 'session start');
  }

  streamKeyForDisplay(): string | null {
    return this.shown.streamKey(this.view.facts.streamKey);
  }

  snapshot(): SessionSnapshot {
    const c = this.view.facts.connect;
    return {
      id: this.id,
      client: this.clientAddress,
      backend: this.backendName,
      app: this.shown.appOrUrl(c?.app ?? null),
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
      migrations: this.migrations,
      route: this.routeLabel(),
    };
  }

  /** `rule: how` of the routing placement, null without routing rules. */
  routeLabel(): string | null {
    const p = this.placement;
    return p === null ? null : p.backend === null ? `${p.rule?.label ?? 'no rule'}: ${p.reason}` : `${p.rule.label}: ${p.how}`;
  }
}
