import type net from 'node:net';
import type { Logger } from 'pino';
import type { BackendPool } from '../../balancer/pool.js';
import { ChunkReader } from '../../rtmp/chunk-reader.js';
import { HANDSHAKE_PACKET_SIZE } from '../../rtmp/constants.js';
import type { ProtocolError } from '../../rtmp/errors.js';
import { HandshakeSkipper } from '../../rtmp/handshake.js';
import { CAPS_EX_RECONNECT } from '../../rtmp/messages.js';
import { SessionView } from '../../rtmp/session-view.js';
import { ProcessBudget, SessionBudget } from '../buffer-budget.js';
import type { StrategySession } from '../drain-strategy.js';
import type { MediaCache } from '../migration/media-cache.js';
import { type ClientTextView, clientTextView, streamRef } from '../../net/redact.js';
import { type Placement, type RouteStage, type Router } from '../../balancer/routing.js';
import type { StreamSource } from '../stream-directory.js';
import { normalizeIp } from '../../net/cidr.js';
import { connectBackend } from './backend-connector.js';
import { ClientStream } from './client-stream.js';
import { type CloseReason, requestedClose } from './close-reason.js';
import { FrontDoor } from './front-door.js';
import { MigrationController } from './migration-controller.js';
import { Notices } from './notices.js';
import { PlayerFollower } from './player-follower.js';
import { type Phase, DROP, PASS } from './phase.js';
import { type PairOwner, SocketPair } from './socket-pair.js';
import { logEnd, snapshotOf } from './report.js';
import { Traffic } from './traffic.js';
import type { Capability, SessionHooks, SessionOrigin, SessionSettings, SessionSnapshot, SessionState } from './types.js';

export type { CloseReason } from './close-reason.js';
export type { Capability, SessionHooks, SessionOrigin, SessionSettings, SessionSnapshot, SessionState } from './types.js';

/** C0 + C1: what a client sends before it hears from the server. The backend is opened once they are in. */
const CLIENT_HELLO_BYTES = 1 + HANDSHAKE_PACKET_SIZE;

let nextId = 1;

/**
 * When the backend is chosen: as late as the routing rules need; and at the stream key (`publish`
 * or `play`) whenever players are routed to their stream and the pool has more than one backend
 * that could carry the session in its life — one draining or down now included: it may be undrained
 * or come back (a rolling restart takes each backend down in turn), and a player must be able to
 * follow its stream to it. A player must name its stream before its backend is chosen. With one
 * backend (a sidecar) there is no choice to make, and the session stays a plain pass-through.
 */
export function routeStage(router: Router | null, settings: Pick<SessionSettings, 'streams'>, pool: BackendPool): RouteStage {
  if (settings.streams != null) {
    let backends = 0;
    for (const b of pool.list()) if (!b.removing && ++backends > 1) return 'publish';
  }
  return router?.needs ?? 'accept';
}

/**
 * One publisher connection and its backend connection: the facade the listener, the pool and
 * the drain strategy see. What it delegates to (files in this folder):
 *  - SocketPair: both sockets, backpressure, half-close, byte counts, idle accounting;
 *  - Traffic: what is read of both directions, and the `pass` phase's hot path (`phase`:
 *    pass | armed | relay | drop, phase.ts);
 *  - ClientStream: everything that reaches the client (the server's stream, or the proxy's);
 *  - backend-connector: choosing and opening the backend; FrontDoor: the proxy as the client's
 *    server before one is chosen (late binding) or when none can be (a refusal);
 *  - Notices: Go Away, ReconnectRequest, capsEx; MigrationController: proxy-side migration.
 * The parts a session may never need (front door, notices, migration) are created with their
 * first use: an idle session holds the pair, the client stream, the two readers and the view.
 * Members without `private` are shared with those parts, not an interface for other modules.
 */
export class Session implements StrategySession, PairOwner {
  readonly id: string;
  readonly clientAddress: string;
  readonly startedAt = Date.now();
  backendName: string | null = null;
  goAwaySentAt: number | null = null;
  reconnectRequestSentAt: number | null = null;
  closeReason: CloseReason | null = null;
  fallback: ProtocolError | null = null;
  /** Completed proxy-side migrations. */
  migrations = 0;
  readonly view: SessionView;
  /** What this session holds between reads (see buffer-budget.ts). */
  readonly budget: SessionBudget;
  readonly pair: SocketPair;
  readonly out: ClientStream;
  readonly traffic: Traffic;
  phase: Phase = PASS;
  front: FrontDoor | null = null;
  notices: Notices | null = null;
  /** A late-bound player's stream switch (created with its first relayed message when players are routed by stream). */
  follower: PlayerFollower | null = null;
  migrator: MigrationController | null = null;
  /** Metadata and sequence headers, kept when this session may migrate. */
  cache: MediaCache | null = null;
  /** The client's Window Ack Size (C→S type 5): the relay acknowledges by it. */
  clientWindowAck = 0;
  /** The client→server reader (headers; commands and control collected); null after a parse fallback. */
  c2sReader: ChunkReader | null;
  readonly c2sHandshake = new HandshakeSkipper();
  placement: Placement | null = null;
  /** How much of the session is known before its backend is chosen (late binding unless `accept`). */
  readonly routeAt: RouteStage;
  /** A player routed by its stream: where its publisher was found, or `rule` (none yet). Null otherwise. */
  playerRoute: StreamSource | 'rule' | null = null;
  /** The rules this session started with (a reload changes them for new sessions only). */
  readonly router: Router | null;
  detach: (() => void) | null = null;
  finished = false;
  /** Runs from the start until `connect` is seen, whatever the client sends meanwhile (a parse fallback included). */
  private handshakeTimer: NodeJS.Timeout | null = null;
  /** The backend is opened once the client's C0+C1 are in (not late-bound): a silent connection costs no backend connection. */
  awaitingHello = false;
  private deadlineExempt = false;
  private startLogged = false;

  constructor(
    client: net.Socket,
    readonly pool: BackendPool,
    readonly settings: SessionSettings,
    readonly hooks: SessionHooks,
    readonly log: Logger,
    readonly origin: SessionOrigin = {},
  ) {
    this.id = `s${process.pid.toString(36)}-${(nextId++).toString(36)}`;
    this.clientAddress = origin.clientAddress ?? `${client.remoteAddress ?? '?'}:${client.remotePort ?? 0}`;
    this.budget = new SessionBudget(settings.sessionBufferBytes ?? Infinity, settings.processBudget ?? new ProcessBudget(Infinity));
    this.pair = new SocketPair(client, this, this.budget);
    // Traffic is the handler of the C→S reader and of the view's events: no closures per session.
    this.traffic = new Traffic(this);
    this.view = new SessionView(this.traffic, settings.amfLimits);
    this.c2sReader = new ChunkReader(this.traffic, undefined, settings.chunkLimits, this.budget);
    const router = settings.router ?? null;
    this.router = router;
    this.routeAt = routeStage(router, settings, pool);
    // Late binding relays whole server messages.
    this.out = new ClientStream(
      this,
      this.routeAt !== 'accept',
      (info, payload) => this.traffic.serverMessage(info, payload),
      settings.chunkLimits,
      this.budget,
    );
  }

  /** Late binding: the backend is chosen once the app or the stream key is known (front-door.ts). */
  get late(): boolean {
    return this.out.relaysWhole;
  }

  get bytesIn(): number {
    return this.pair.bytesIn;
  }

  get bytesOut(): number {
    return this.pair.bytesOut;
  }

  /** How the client's credentials (stream key, query strings) are shown. */
  get shown(): ClientTextView {
    return clientTextView(this.settings.logStreamKeys);
  }

  /** The client's IP (the PROXY protocol source when accepted), for CIDR routing rules. */
  get clientIp(): string {
    const a = this.clientAddress;
    const ip = a.slice(0, Math.max(0, a.lastIndexOf(':')));
    return normalizeIp(ip.startsWith('[') && ip.endsWith(']') ? ip.slice(1, -1) : ip);
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
    if (this.migrator?.running === true) return 'migrating';
    if (this.view.facts.publishing) return 'publishing';
    if (this.view.facts.playing) return 'playing';
    if (this.view.facts.connect !== null) return 'connected';
    return this.pair.backend === null ? 'connecting' : 'handshake';
  }

  get capability(): Capability {
    const c = this.view.facts.connect;
    if (c === null) return 'unknown';
    if (c.supportsGoAway) return 'goaway';
    if (c.capsEx !== null && (c.capsEx & CAPS_EX_RECONNECT) !== 0) return 'erpc';
    return 'none';
  }

  start(): void {
    // Idle timeouts are checked by one sweep over all sessions (checkIdle), not a socket timer
    // refreshed on every read and write.
    this.pair.start(this.startedAt);
    const deadline = (this.origin.acceptedAt ?? this.startedAt) + this.settings.handshakeTimeoutMs;
    this.handshakeTimer = setTimeout(() => this.end('handshake-timeout'), Math.max(0, deadline - Date.now()));
    this.handshakeTimer.unref();
    if (this.late) this.front = new FrontDoor(this);
    else this.awaitingHello = true;
  }

  /** Opens the backend (backend-connector.ts), skipping the ones `tried`. */
  connectBackend(tried: Set<string>): void {
    connectBackend(this, tried);
  }

  /** `connect` was parsed: the handshake deadline is met. */
  handshakeDone(): void {
    if (this.handshakeTimer !== null) clearTimeout(this.handshakeTimer);
    this.handshakeTimer = null;
  }

  // ── socket events (SocketPair) ──
  clientData(buf: Buffer): void {
    const phase = this.phase;
    if (phase.kind === 'drop') return;
    this.pair.bytesIn += buf.length;
    if (this.awaitingHello && this.pair.bytesIn >= CLIENT_HELLO_BYTES) {
      this.awaitingHello = false;
      this.connectBackend(new Set());
      if (this.pair.client.destroyed) return;
    }
    if (phase.kind === 'pass') this.traffic.passData(buf);
    else phase.clientData(buf);
  }
  clientEnd(): void {
    const p = this.pair;
    if (this.phase.kind === 'armed') this.phase.controller.abandon('client-ended');
    if (p.relayed !== null) p.relayed.socket.end();
    else if (p.backend !== null && this.front?.holdClient !== true) p.backend.end();
    // A backend still being opened (or doing its handshake) gets the FIN after the held bytes (flushPending).
    else if (p.backendClosed) this.end('client-closed');
  }
  clientError(err: Error): void {
    this.fail('client-error', err);
  }
  clientClosed(): void {
    this.maybeFinish();
  }
  backendData(buf: Buffer): void {
    this.traffic.backendData(buf);
  }
  backendEnd(): void {
    this.backendWentFirst();
  }
  backendError(err: Error): void {
    this.fail('backend-error', err);
  }
  backendClosed(): void {
    this.backendWentFirst();
    this.backendGone();
  }
  retiredData(buf: Buffer): void {
    this.out.retiredData(buf);
  }
  retiredClosed(sock: net.Socket): void {
    this.migrator?.retiredClosed(sock);
    this.out.retiredClosed(this.phase.kind === 'relay' && !this.finished);
  }

  /** The backend ended the connection before the client did: that is why the session ends. */
  private backendWentFirst(): void {
    if (this.closeReason === null && !this.pair.clientEnded && !this.pair.clientClosed) this.closeReason = 'backend-closed';
  }

  /**
   * The session's backend connection (or, relaying, its upstream) closed: the session ends once
   * the client has gone too. What the server sent reaches the client, then FIN. From now on the
   * client is read to its end and its bytes dropped (`drop`): a client paused for the
   * backpressure of that connection, which will never drain, would otherwise never see its own
   * peer leave, and the session would never end. A client that does not close its side is ended
   * by the idle timeout (dropped bytes do not count as activity).
   */
  backendGone(): void {
    this.pair.backendClosed = true;
    this.migrator?.abandon('session-ended');
    this.phase = DROP;
    this.pair.client.end();
    this.pair.client.resume();
    this.maybeFinish();
  }

  /** Idle timeouts, per direction, called by the proxy's sweep every few hundred ms (SocketPair.idle). */
  checkIdle(now: number): void {
    if (this.finished) return;
    const idle = this.pair.idle(
      now,
      this.settings.idleTimeoutMs,
      this.backendName === null ? 0 : (this.settings.backendIdleTimeoutMs ?? 0),
      this.view.facts.role === 'player',
    );
    if (idle !== null) this.end(idle);
  }

  goAway(): boolean {
    if (this.finished || !this.supportsGoAway) return false;
    return (this.notices ??= new Notices(this)).goAway();
  }

  /** Only for clients that announced capsEx Reconnect and not Go Away (Go Away is preferred). */
  reconnectRequest(): boolean {
    if (this.finished || this.capability !== 'erpc') return false;
    return (this.notices ??= new Notices(this)).reconnectRequest();
  }

  /** Proxy-side migration off `backend`, to `to` when given (drain.nonCapable: migrate, a rebalance; migration-controller.ts). */
  migrate(backend: string, to: string | null = null): 'migrating' | 'waiting' {
    const coordinator = this.settings.migration;
    if (!coordinator || this.finished || this.pair.clientClosed) return 'waiting';
    return (this.migrator ??= new MigrationController(this, coordinator)).migrate(backend, to);
  }

  get role(): 'publisher' | 'player' | null {
    return this.view.facts.role;
  }

  /**
   * A late-bound player routed by its stream can follow it (player-follower.ts): created with
   * its first relayed message or its first need. Null for other sessions.
   */
  playerFollower(): PlayerFollower | null {
    if (this.follower === null && this.late && this.view.facts.role === 'player' && this.settings.streams != null) this.follower = new PlayerFollower(this);
    return this.follower;
  }

  /**
   * The drain strategy's answer for a player: nothing is sent to it. One that can follow its
   * stream is moved by the proxy to a backend carrying it (while it goes on playing here); one
   * that cannot stays while its stream is here, and goes when it is gone.
   */
  drainPlayer(): 'player' {
    const follower = this.playerFollower();
    if (follower?.able === true) queueMicrotask(() => follower.leave());
    else if (this.view.facts.playStopped) queueMicrotask(() => this.playerStreamStopped());
    return 'player';
  }

  /**
   * The player's backend said its stream ended (Stream EOF, Play.UnpublishNotify or Play.Stop).
   * A player that can follow its stream looks for it elsewhere (player-follower.ts). One that
   * cannot, on a draining backend, is closed at once with a clear reason rather than left on a
   * dead stream until the drain deadline; on a backend in service it is the broadcast pausing:
   * the player waits for it as the backend lets it.
   */
  playerStreamStopped(): void {
    if (this.finished || this.view.facts.role !== 'player' || !this.view.facts.playStopped || this.backendName === null) return;
    const follower = this.playerFollower();
    // Switched: the view reads only the connection the player left, which is not its backend any more.
    if (follower?.switched === true) return;
    const draining = this.pool.get(this.backendName)?.draining === true;
    if (follower?.able === true) return follower.streamStopped(!draining);
    if (!draining) return;
    this.settings.metrics?.playerSwitches.inc({ result: 'closed' });
    this.log.info(
      { session: this.id, backend: this.backendName, streamKey: this.streamKeyForDisplay() },
      'player closed: its stream left the draining backend',
    );
    this.end('player-stream-moved');
  }

  /** The player's backend said its stream started again (Stream Begin, Play.PublishNotify). */
  playerStreamStarted(): void {
    if (this.finished || this.follower === null || this.follower.switched) return;
    this.follower.streamStarted();
  }

  /** A player whose stream stopped on its draining backend, or who was switched off it: what that backend still says is not for it. */
  get streamLeftBackend(): boolean {
    const f = this.view.facts;
    return (
      f.role === 'player' &&
      (this.follower?.silencesBackend === true || (f.playStopped && this.backendName !== null && this.pool.get(this.backendName)?.draining === true))
    );
  }

  /** drain.nonCapable: ignore — the drain deadline leaves this session alone. */
  exemptFromDeadline(): void {
    this.deadlineExempt = true;
  }

  /** The drainable surface: ends the session for a reason given by its caller (`drain-deadline`, a shutdown …). */
  close(reason: string): void {
    this.end(reason === 'drain-deadline' ? reason : requestedClose(reason));
  }

  end(reason: CloseReason): void {
    if (this.finished) return;
    if (reason === 'drain-deadline' && this.deadlineExempt) {
      this.log.info({ session: this.id, backend: this.backendName }, 'drain deadline: session left on the draining backend (drain.nonCapable: ignore)');
      return;
    }
    if (this.closeReason === null) this.closeReason = reason;
    this.follower?.stop();
    this.migrator?.abandon(reason === 'drain-deadline' ? 'drain-deadline' : 'session-closed');
    const p = this.pair;
    p.client.destroy();
    p.backend?.destroy();
    if (p.relayed !== null) {
      p.relayed.destroy();
      p.backendClosed = true;
    }
    this.maybeFinish();
  }

  private fail(reason: 'client-error' | 'backend-error', err: Error): void {
    if (this.closeReason === null) this.closeReason = reason;
    this.log.debug({ session: this.id, err: err.message }, reason);
    this.end(reason);
  }

  maybeFinish(): void {
    if (this.finished || !this.pair.clientClosed || !this.pair.backendClosed) return;
    this.finished = true;
    this.budget.close();
    this.handshakeDone();
    this.migrator?.sessionEnded();
    this.detach?.();
    this.detach = null;
    if (this.closeReason === null) this.closeReason = this.goAwaySentAt !== null || this.reconnectRequestSentAt !== null ? 'client-went-away' : 'client-closed';
    logEnd(this);
    this.hooks.closed(this);
  }

  /** Bytes this process holds for the session in userland: socket write queues and the pre-connect buffer. */
  get bufferedBytes(): number {
    return this.pair.bufferedBytes;
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
    this.log.info(
      {
        session: this.id,
        client: this.clientAddress,
        backend: this.backendName,
        rtmpApp: this.shown.appOrUrl(c?.app ?? null),
        capability: this.capability,
        role: this.view.facts.role,
      },
      'session start',
    );
  }

  /** The stream's comparable name (app and key without queries, hashed): how players find its publisher. */
  get streamRef(): string | null {
    const f = this.view.facts;
    return streamRef(f.connect?.app ?? null, f.streamKey);
  }

  streamKeyForDisplay(): string | null {
    return this.shown.streamKey(this.view.facts.streamKey);
  }

  snapshot(): SessionSnapshot {
    return snapshotOf(this);
  }

  /** `rule: how` of the routing placement, null without routing rules. */
  routeLabel(): string | null {
    const p = this.placement;
    if (this.playerRoute === 'local' || this.playerRoute === 'fleet') return `stream: ${this.playerRoute}`;
    return p === null ? null : p.backend === null ? `${p.rule?.label ?? 'no rule'}: ${p.reason}` : `${p.rule.label}: ${p.how}`;
  }
}
