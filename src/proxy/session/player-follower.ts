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
/** How often the stream directory is asked while the stream has no publisher anywhere. */
const SEEK_INTERVAL_MS = 100;
/** Metadata and sequence headers above this are not kept for comparison (sent again at a switch). */
const MAX_KEPT_CONFIG_BYTES = 64 * 1024;

type Config = 'meta' | 'video' | 'audio';

function configKind(typeId: number, payload: Buffer): Config | null {
  if (typeId === MessageType.Video) return isVideoSequenceHeader(payload) ? 'video' : null;
  if (typeId === MessageType.Audio) return isAudioSequenceHeader(payload) ? 'audio' : null;
  if (typeId === MessageType.DataAmf0 || typeId === MessageType.DataAmf3) return isMetadataMessage(payload) ? 'meta' : null;
  return null;
}

/**
 * A late-bound player following its stream (docs/architecture.md#players): when the stream leaves
 * the player's draining backend, the proxy plays it itself on the backend that now carries it
 * (PlayerProtocol over its own connection) and switches the player over at the first keyframe
 * there. The player keeps its TCP connection and its chunk stream (the proxy writes it); its
 * timestamps go on from the last one it got, plus the time that passed; metadata and sequence
 * headers are sent again only when they differ from the ones it has; what the old backend says
 * about the end of the stream never reaches it. Every step is bounded: one connection, the
 * messages before the keyframe are dropped except the configuration, `players.followTimeoutMs`.
 */
export class PlayerFollower {
  /** Last media timestamp the player got, and when. */
  private lastTs: number | null = null;
  private lastAt = 0;
  /** The metadata and sequence headers the player has now. */
  private readonly sent = new Map<Config, Buffer>();
  /** The new backend's configuration, until the keyframe. */
  private readonly pending = new Map<Config, { info: MessageInfo; payload: Buffer }>();
  private state: 'idle' | 'seeking' | 'joining' | 'switched' = 'idle';
  private from: string | null = null;
  private startedAt = 0;
  private timer: NodeJS.Timeout | null = null;
  private sock: net.Socket | null = null;
  private protocol: PlayerProtocol | null = null;
  /** ts(new) + offset = ts(player). */
  private offset = 0;
  switches = 0;

  constructor(private readonly s: Session) {}

  private get timeoutMs(): number {
    return this.s.settings.playerFollowTimeoutMs ?? FOLLOW_TIMEOUT_MS;
  }

  /** The proxy is switching (or switched) the player: the old backend's messages are not for it. */
  get active(): boolean {
    return this.state !== 'idle';
  }

  /** The player's backend is the proxy's own connection: the client's bytes are read, not forwarded (its chunk stream is not that connection's). */
  get switched(): boolean {
    return this.state === 'switched';
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

  /** The stream left the player's draining backend: find it elsewhere. False when it cannot be followed (closed by the caller). */
  follow(): boolean {
    const s = this.s;
    if (this.state === 'seeking' || this.state === 'joining') return true;
    if (s.settings.streams == null || s.streamRef === null || s.backendName === null || s.view.facts.streamKey === null || s.view.facts.connectReplay === null)
      return false;
    this.state = 'seeking';
    this.from = s.backendName;
    this.startedAt = Date.now();
    this.seek();
    return true;
  }

  /** Ends what this follower holds (the session ended). */
  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.state !== 'switched') this.sock?.destroy();
  }

  private seek(): void {
    const s = this.s;
    if (s.finished) return;
    if (Date.now() - this.startedAt >= this.timeoutMs) return this.give('no backend carries the stream');
    const found = s.settings.streams!.publisherOf(s.streamRef!, s.pool, new Set([this.from!]), s);
    if (found === null) {
      this.timer = setTimeout(() => this.seek(), SEEK_INTERVAL_MS);
      this.timer.unref();
      return;
    }
    this.join(found.backend);
  }

  /** Plays the stream on `backend` with the proxy's own connection. */
  private join(backend: string): void {
    const s = this.s;
    const b = s.pool.get(backend)!;
    const target = { name: b.name, host: b.host, port: b.port };
    this.state = 'joining';
    const sock = (s.settings.dial ?? dialTcp)(target);
    this.sock = sock;
    if (s.origin.preamble) sock.write(s.origin.preamble);
    const f = s.view.facts;
    const protocol = new PlayerProtocol(
      { connect: f.connectReplay!, streamKey: f.streamKey! },
      {
        write: (buf) => (sock.destroyed ? false : sock.write(buf)),
        playing: () => undefined,
        failed: (reason: PlayFailure, detail) => this.give(`${reason}: ${detail}`),
        message: (info, payload) => this.upstreamMessage(target.name, info, payload),
      },
      s.settings.chunkLimits,
      s.settings.amfLimits,
      s.budget,
    );
    this.protocol = protocol;
    sock.setNoDelay(true);
    sock.once('connect', () => protocol.start());
    sock.on('data', (buf: Buffer) => protocol.receive(buf));
    sock.on('error', (err: Error) => {
      if (this.state === 'switched') s.end('backend-error');
      else this.give(err.message);
    });
    sock.on('close', () => {
      if (this.state === 'switched') s.backendClosed();
      else if (this.state === 'joining') this.give('the backend closed the connection');
    });
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(() => this.give('the stream did not start in time'), Math.max(0, this.timeoutMs - (Date.now() - this.startedAt)));
    this.timer.unref();
  }

  /** A message of the stream on the new backend. */
  private upstreamMessage(backend: string, info: MessageInfo, payload: Buffer): void {
    const s = this.s;
    if (s.finished) return;
    const t = info.typeId;
    if (this.state === 'joining') {
      const kind = configKind(t, payload);
      if (kind !== null) {
        this.pending.set(kind, { info, payload: Buffer.from(payload) });
        return;
      }
      if (t !== MessageType.Video || !isVideoKeyframe(payload)) return;
      this.switchAt(backend, info);
    }
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
  private switchAt(backend: string, keyframe: MessageInfo): void {
    const s = this.s;
    const now = Date.now();
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const stallMs = this.lastTs === null ? 0 : now - this.lastAt;
    // The player's clock goes on by the time that passed: its timestamps stay continuous and tell the stall.
    this.offset = this.lastTs === null ? 0 : (this.lastTs + stallMs - keyframe.timestamp) | 0;
    this.retireOld();
    this.state = 'switched';
    s.pair.backend = this.sock;
    s.backendName = backend;
    s.detach?.();
    s.detach = s.pool.attach(backend, s);
    for (const kind of ['meta', 'video', 'audio'] as const) {
      const m = this.pending.get(kind);
      if (m === undefined) continue;
      const had = this.sent.get(kind);
      if (had === undefined || !had.equals(m.payload)) this.toClient({ ...m.info, timestamp: keyframe.timestamp }, m.payload);
    }
    this.pending.clear();
    this.switches++;
    s.settings.metrics?.playerSwitches.inc({ result: 'switched' });
    s.log.info({ session: s.id, from: this.from, to: backend, stallMs, switchMs: now - this.startedAt }, 'player switched');
  }

  /** The old backend: nothing more of it reaches the player; its connection is closed. */
  private retireOld(): void {
    const s = this.s;
    const old = s.pair.backend;
    if (old !== null && old !== this.sock) {
      old.end();
      setTimeout(() => old.destroy(), 5000).unref();
    }
  }

  /** The stream could not be followed: the player is closed now, with the reason. */
  private give(detail: string): void {
    const s = this.s;
    if (this.state === 'switched' || this.state === 'idle' || s.finished) return;
    this.state = 'idle';
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.sock?.destroy();
    this.sock = null;
    s.settings.metrics?.playerSwitches.inc({ result: 'closed' });
    s.log.info({ session: s.id, backend: s.backendName, streamKey: s.streamKeyForDisplay(), detail }, 'player closed: its stream left the draining backend');
    s.end('player-stream-moved');
  }
}
