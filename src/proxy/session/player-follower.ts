import type net from 'node:net';
import type { MessageInfo } from '../../rtmp/chunk-reader.js';
import { MessageType } from '../../rtmp/constants.js';
import { isAudioSequenceHeader, isMetadataMessage, isVideoKeyframe, isVideoSequenceHeader } from '../../rtmp/media.js';
import { type PlayFailure, PlayerProtocol } from '../../rtmp/player-protocol.js';
import { dialTcp } from '../dial.js';
import { LOCAL_STREAM_ID } from '../local-answers.js';
import type { Session } from './session.js';

/** How long a player waits for its stream to appear on another backend (and to play there) before it is closed, unless configured. */
export const FOLLOW_TIMEOUT_MS = 15_000;
/** How often the stream directory is asked while following. */
const SEEK_INTERVAL_MS = 100;
/** A backend where playing the stream failed is not tried again for this long. */
const RETRY_AFTER_MS = 1000;
/** A connection the player left is closed gracefully, then destroyed after this long. */
const RETIRED_CLOSE_MS = 5000;
/** Metadata and sequence headers above this are not kept for comparison (sent again at a switch). */
const MAX_KEPT_CONFIG_BYTES = 64 * 1024;

type Config = 'meta' | 'video' | 'audio';

function configKind(typeId: number, payload: Buffer): Config | null {
  if (typeId === MessageType.Video) return isVideoSequenceHeader(payload) ? 'video' : null;
  if (typeId === MessageType.Audio) return isAudioSequenceHeader(payload) ? 'audio' : null;
  if (typeId === MessageType.DataAmf0 || typeId === MessageType.DataAmf3) return isMetadataMessage(payload) ? 'meta' : null;
  return null;
}

/** A backend connection of the proxy's own, playing the stream there. */
interface Upstream {
  backend: string;
  sock: net.Socket;
  protocol: PlayerProtocol;
}

/**
 * A late-bound player following its stream (docs/architecture.md#players). When the player's
 * backend drains, or the stream ends there, the proxy plays the stream itself (PlayerProtocol
 * over its own connection) on the backend that carries it — its publisher's, found in the stream
 * directory, or, while the publisher has not arrived anywhere else yet, the backend a new
 * publisher of the key would be routed to — and switches the player over at the first keyframe
 * there. Until then the old backend's stream still reaches the player, so a publisher that moves
 * make-before-break (proxy-side migration, a pulled or pushed copy) costs it no stall at all, and
 * one that reconnects (Go Away) only its reconnect. The player keeps its TCP connection and its
 * chunk stream (the proxy writes it); its timestamps go on from the last one it got, plus the
 * time that passed; metadata and sequence headers are sent again only when they differ from the
 * ones it has; what the old backend says about the end of the stream never reaches it. Every step
 * is bounded: one connection being prepared at a time, the messages before the keyframe dropped
 * except the configuration, `players.followTimeoutMs` once the stream has left the player's
 * backend (then it is closed: `player-stream-moved`).
 */
export class PlayerFollower {
  /** Last media timestamp the player got, and when. */
  private lastTs: number | null = null;
  private lastAt = 0;
  /** The metadata and sequence headers the player has now. */
  private readonly sent = new Map<Config, Buffer>();
  /** The new backend's configuration, until the keyframe. */
  private readonly pending = new Map<Config, { info: MessageInfo; payload: Buffer }>();
  /** The backend being left; null while not following. */
  private from: string | null = null;
  /**
   * Why: the player's backend is draining (the player is closed if the stream cannot be
   * followed), or the stream ended on a backend in service (it then stays).
   */
  private reason: 'draining' | 'stopped' = 'draining';
  /** When the stream ended on the player's backend (nothing more of it comes from there); null while it plays there. */
  private stoppedAt: number | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** The proxy's connection carrying the player since its last switch; null before the first. */
  private current: Upstream | null = null;
  /** The connection being prepared, switched to at its first keyframe. */
  private next: Upstream | null = null;
  /** Backends whose play failed lately: not tried again before the time given. */
  private readonly avoid = new Map<string, number>();
  /** ts(current) + offset = ts(player). */
  private offset = 0;
  switches = 0;

  constructor(private readonly s: Session) {}

  private get timeoutMs(): number {
    return this.s.settings.playerFollowTimeoutMs ?? FOLLOW_TIMEOUT_MS;
  }

  /** What the player's backend says about its stream is not for the player: the stream left it (or the player was switched off it). */
  get silencesBackend(): boolean {
    return this.current !== null || this.stoppedAt !== null;
  }

  /** The player's backend is the proxy's own connection: the client's bytes are read, not forwarded (its chunk stream is not that connection's). */
  get switched(): boolean {
    return this.current !== null;
  }

  /** A message the player got through the proxy's writer (FrontDoor.relay, or after a switch). */
  sentToClient(typeId: number, timestamp: number, payload: Buffer): void {
    if (typeId !== MessageType.Video && typeId !== MessageType.Audio && typeId !== MessageType.DataAmf0 && typeId !== MessageType.DataAmf3) return;
    const kind = configKind(typeId, payload);
    if (kind !== null) {
      if (payload.length <= MAX_KEPT_CONFIG_BYTES) this.sent.set(kind, Buffer.from(payload));
      else this.sent.delete(kind);
    }
    if (typeId !== MessageType.DataAmf0 && typeId !== MessageType.DataAmf3) {
      this.lastTs = timestamp;
      this.lastAt = Date.now();
    }
  }

  /** False when this player cannot follow its stream (the caller decides what becomes of it). */
  get able(): boolean {
    const f = this.s.view.facts;
    return this.s.settings.streams != null && f.streamKey !== null && f.connectReplay !== null && this.s.streamRef !== null;
  }

  /** The player's backend drains: the stream is looked for elsewhere while it goes on playing here. */
  leave(): void {
    if (this.s.finished || !this.able) return;
    this.reason = 'draining';
    this.begin();
  }

  /**
   * The stream ended on the player's backend (`inService`: a backend not draining, where it may
   * come back: then the player is moved only if the publisher shows up elsewhere, and otherwise
   * stays). Nothing more of the old backend reaches the player.
   */
  streamStopped(inService: boolean): void {
    if (this.s.finished || !this.able) return;
    if (this.stoppedAt === null) this.stoppedAt = Date.now();
    if (this.from === null) this.reason = inService ? 'stopped' : 'draining';
    else if (!inService) this.reason = 'draining';
    this.begin();
  }

  /** The stream started again on the player's backend: it plays from there again. */
  streamStarted(): void {
    if (this.from === null) return;
    this.stoppedAt = null;
    if (this.reason === 'stopped') this.cancel();
  }

  /** Ends what this follower holds (the session ended). */
  stop(): void {
    this.clearTimer();
    this.next?.sock.destroy();
    this.next = null;
  }

  private begin(): void {
    if (this.from !== null) return;
    this.from = this.s.backendName;
    if (this.from === null) return;
    this.tick();
  }

  /** No more following: the player stays where it is. */
  private cancel(): void {
    this.clearTimer();
    this.next?.sock.destroy();
    this.next = null;
    this.pending.clear();
    this.from = null;
    this.stoppedAt = null;
  }

  private clearTimer(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  /** Where the stream is (or will be), every SEEK_INTERVAL_MS until the switch. */
  private tick(): void {
    this.timer = null;
    const s = this.s;
    const from = this.from;
    if (s.finished || from === null) return;
    const now = Date.now();
    const draining = s.pool.get(from)?.draining === true;
    // Undrained while the stream still plays there: the player stays.
    if (this.stoppedAt === null && this.reason === 'draining' && !draining) return this.cancel();
    if (this.stoppedAt !== null && now - this.stoppedAt >= this.timeoutMs) {
      if (this.reason === 'draining') return this.give(this.next === null ? 'no backend carries the stream' : 'the stream did not start in time');
      return this.cancel();
    }
    // The player's own play must be answered before it is moved.
    if (s.view.facts.playing) this.seek(from, now);
    this.timer = setTimeout(() => this.tick(), SEEK_INTERVAL_MS);
    this.timer.unref();
  }

  private seek(from: string, now: number): void {
    const s = this.s;
    const exclude = new Set([from]);
    for (const [b, until] of this.avoid)
      if (until > now) exclude.add(b);
      else this.avoid.delete(b);
    const found = s.settings.streams!.publisherOf(s.streamRef!, s.pool, exclude, s)?.backend ?? null;
    if (found === null && this.reason === 'stopped') return;
    const waiting = this.next === null ? undefined : s.pool.get(this.next.backend);
    // Already waiting on a backend that takes new sessions: the publisher may go there (no churn as loads change).
    if (found === null && waiting !== undefined && waiting.state === 'up' && !exclude.has(waiting.name)) return;
    // No publisher elsewhere yet: wait where a publisher of the key would go now, to catch its first keyframe.
    const f = s.view.facts;
    const want = found ?? s.pool.preview(s.router, { app: f.connect?.app ?? null, streamKey: f.streamKey, clientIp: s.clientIp }, exclude);
    if (want === null || this.next?.backend === want) return;
    this.next?.sock.destroy();
    this.next = null;
    this.pending.clear();
    this.join(want);
  }

  /** Plays the stream on `backend` with the proxy's own connection. */
  private join(backend: string): void {
    const s = this.s;
    const b = s.pool.get(backend)!;
    const sock = (s.settings.dial ?? dialTcp)({ name: b.name, host: b.host, port: b.port });
    if (s.origin.preamble) sock.write(s.origin.preamble);
    const f = s.view.facts;
    const up: Upstream = { backend, sock, protocol: null! };
    up.protocol = new PlayerProtocol(
      { connect: f.connectReplay!, streamKey: f.streamKey! },
      {
        write: (buf) => (sock.destroyed ? false : sock.write(buf)),
        playing: () => undefined,
        failed: (reason: PlayFailure, detail) => this.lost(up, `${reason}: ${detail}`),
        message: (info, payload) => this.upstreamMessage(up, info, payload),
        stopped: (stopped) => {
          if (up !== this.current) return;
          if (stopped) this.streamStopped(s.pool.get(up.backend)?.draining !== true);
          else this.streamStarted();
        },
      },
      s.settings.chunkLimits,
      s.settings.amfLimits,
      s.budget,
    );
    this.next = up;
    sock.setNoDelay(true);
    sock.once('connect', () => up.protocol.start());
    sock.on('data', (buf: Buffer) => up.protocol.receive(buf));
    sock.on('error', (err: Error) => {
      if (up === this.current) s.end('backend-error');
      else this.lost(up, err.message);
    });
    sock.on('close', () => {
      // Whatever the reader still collects goes back to the session's byte budget.
      up.protocol.release();
      if (up === this.current) s.backendClosed();
      else this.lost(up, 'the backend closed the connection');
    });
  }

  /** The connection being prepared failed: that backend is left alone a while; the next tick looks again. */
  private lost(up: Upstream, detail: string): void {
    if (up !== this.next) return;
    up.sock.destroy();
    this.next = null;
    this.pending.clear();
    this.avoid.set(up.backend, Date.now() + RETRY_AFTER_MS);
    this.s.log.debug({ session: this.s.id, backend: up.backend, detail }, 'player follow: play on the backend failed');
  }

  /** A message of the stream on one of the proxy's connections. */
  private upstreamMessage(up: Upstream, info: MessageInfo, payload: Buffer): void {
    const s = this.s;
    if (s.finished) return;
    const t = info.typeId;
    if (up === this.next) {
      const kind = configKind(t, payload);
      if (kind !== null) {
        // The reader reuses its MessageInfo: a copy.
        this.pending.set(kind, { info: { ...info }, payload: Buffer.from(payload) });
        return;
      }
      if (t !== MessageType.Video || !isVideoKeyframe(payload)) return;
      this.switchAt(up, info);
    } else if (up !== this.current || this.stoppedAt !== null) return;
    if (t !== MessageType.Video && t !== MessageType.Audio && t !== MessageType.DataAmf0 && t !== MessageType.DataAmf3) return;
    this.toClient(info, payload);
  }

  private toClient(info: MessageInfo, payload: Buffer): void {
    const s = this.s;
    const timestamp = (info.timestamp + this.offset) >>> 0;
    s.out.send({ csid: info.csid, timestamp, typeId: info.typeId, streamId: s.view.facts.streamId ?? LOCAL_STREAM_ID, payload });
    this.sentToClient(info.typeId, timestamp, payload);
  }

  /** The first keyframe on the new backend: the player goes on from here. */
  private switchAt(up: Upstream, keyframe: MessageInfo): void {
    const s = this.s;
    const now = Date.now();
    const from = this.from;
    const stallMs = this.lastTs === null ? 0 : now - this.lastAt;
    // The player's clock goes on by the time that passed: its timestamps stay continuous and tell the stall.
    this.offset = this.lastTs === null ? 0 : (this.lastTs + stallMs - keyframe.timestamp) | 0;
    this.retire();
    this.current = up;
    this.next = null;
    s.pair.backend = up.sock;
    s.backendName = up.backend;
    s.detach?.();
    s.detach = s.pool.attach(up.backend, s);
    for (const kind of ['meta', 'video', 'audio'] as const) {
      const m = this.pending.get(kind);
      if (m === undefined) continue;
      const had = this.sent.get(kind);
      if (had === undefined || !had.equals(m.payload)) this.toClient({ ...m.info, timestamp: keyframe.timestamp }, m.payload);
    }
    this.pending.clear();
    const waitedMs = this.stoppedAt === null ? 0 : now - this.stoppedAt;
    this.clearTimer();
    this.from = null;
    this.stoppedAt = null;
    this.switches++;
    s.settings.metrics?.playerSwitches.inc({ result: 'switched' });
    s.log.info({ session: s.id, from, to: up.backend, stallMs, waitedMs }, 'player switched');
  }

  /** The connection the player leaves: nothing more of it reaches the player; it is closed. */
  private retire(): void {
    const old = this.current?.sock ?? this.s.pair.backend;
    if (old === null || old === this.next?.sock) return;
    this.current?.protocol.stop();
    old.end();
    setTimeout(() => old.destroy(), RETIRED_CLOSE_MS).unref();
  }

  /** The stream could not be followed: the player is closed now, with the reason. */
  private give(detail: string): void {
    const s = this.s;
    if (s.finished) return;
    this.cancel();
    s.settings.metrics?.playerSwitches.inc({ result: 'closed' });
    s.log.info({ session: s.id, backend: s.backendName, streamKey: s.streamKeyForDisplay(), detail }, 'player closed: its stream left the draining backend');
    s.end('player-stream-moved');
  }
}
