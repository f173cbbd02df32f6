import type { ChunkReaderHandler, MessageInfo } from '../../rtmp/chunk-reader.js';
import type { SessionViewEvents } from '../../rtmp/session-view.js';
import { MessageType } from '../../rtmp/constants.js';
import { ProtocolError } from '../../rtmp/errors.js';
import { MediaCounters } from '../../rtmp/media-counters.js';
import { type MediaSummary, MediaTelemetry, summarize } from '../../rtmp/media-telemetry.js';
import { MediaCache, migrationCollectPolicy } from '../migration/media-cache.js';
import { Notices } from './notices.js';
import type { Session } from './session.js';

/**
 * What the session reads of both byte directions, and the hot path of the `pass` phase.
 *
 * Client bytes are forwarded as they arrive, in the original Buffers; they are also fed to the
 * C→S chunk reader (headers only; control and commands collected) so the session knows its app,
 * stream key and whether it can be told to go away. Server bytes go through the client stream's
 * injector (ClientStream), which parses them the same way. As the reader's handler this object
 * gets every complete client message (`message`), whatever the phase.
 */
export class Traffic implements ChunkReaderHandler, SessionViewEvents {
  /** The client buffer being fed to the C→S reader (collected single-chunk payloads are views of it). */
  private feeding: Buffer | null = null;
  /**
   * What the client publishes: from `connect` on, the C→S reader counts audio and video messages
   * (ChunkReader.media) and collects decoder configurations and metadata whole (its `'head'`
   * policy), which alone reach the telemetry; the rest is read when a snapshot is asked for. The
   * telemetry is made with the first of those messages or snapshots: a session that sends no
   * media (a player, an idle connection) holds only the counters.
   */
  private counters: MediaCounters | null = null;
  private telemetry: MediaTelemetry | null = null;

  constructor(private readonly s: Session) {}

  /** `pass`: client bytes to the backend as they are (held until one is connected). */
  passData(buf: Buffer): void {
    const s = this.s;
    const front = s.front;
    let fwd = buf;
    if (front !== null && front.handshaking) {
      // The proxy answers the handshake; the backend gets its own.
      const next = front.answerHandshake(buf);
      if (next < 0) return;
      fwd = buf.subarray(next);
    }
    if (front?.hasRejected() === true) return;
    const reader = s.c2sReader;
    if (reader !== null) {
      try {
        let start = 0;
        if (!s.c2sHandshake.done) start = s.c2sHandshake.consume(buf, 0);
        if (start < buf.length) {
          const hadConnect = s.view.facts.connect !== null;
          this.feeding = buf;
          reader.feed(buf, start);
          this.feeding = null;
          if (!hadConnect && s.view.facts.connect !== null) this.connectSeen();
        }
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        this.feeding = null;
        this.parseFailed('c2s', err);
        if (s.finished) return;
      }
    }
    // After a player's switch its backend connection is the proxy's: the client's bytes were read, and stop here.
    if (s.follower?.switched === true) return;
    const p = s.pair;
    const backend = p.backend;
    if (backend === null || front?.holdClient === true) {
      if (fwd.length === 0 || s.finished || front?.hasRejected() === true) return;
      if (!p.hold(fwd)) {
        this.overBudget('closed', 'client bytes waiting for the backend');
        s.end('buffer-budget');
        return;
      }
      // The client only sends C0+C1 (1537 bytes) before it hears from the server, so this bound
      // is reached only by a peer that does not speak RTMP. Before C0+C1 nothing would resume it.
      if (p.pendingBytes > s.settings.maxPendingBytes && !s.awaitingHello) p.client.pause();
      return;
    }
    if (!backend.write(buf)) p.client.pause();
  }

  /** A complete client message (payload for the collected kinds). Runs for every message: keep it cheap. */
  message(info: MessageInfo, payload: Buffer | null): void {
    const s = this.s;
    const phase = s.phase;
    if (payload !== null) {
      const t = info.typeId;
      const cache = s.cache;
      if (t === MessageType.Acknowledgement) {
        if (phase.kind !== 'relay') this.translateAck(payload);
      } else if (t === MessageType.Video || t === MessageType.Audio || t === MessageType.DataAmf0 || t === MessageType.DataAmf3) {
        if (this.counters !== null) this.telemetryOf(this.counters).message(t, info.timestamp, info.length, info.head, payload);
        if (cache !== null) {
          const refused = cache.refused;
          cache.offer(info, payload);
          if (!refused && cache.refused) this.overBudget('not-cached', 'migration cache');
        }
      } else if (t === MessageType.WindowAckSize && payload.length >= 4) {
        s.clientWindowAck = payload.readUInt32BE(0);
      }
    }
    const cmd = s.view.clientMessage(info, payload);
    // The phase may have changed in the view's callbacks: read it again.
    const now = s.phase;
    if (now.kind === 'relay') now.clientMessage(info, payload);
    else if (s.front !== null && !s.front.routeStarted && cmd !== null) s.front.command(info, cmd);
  }

  /**
   * The client acknowledges the bytes it received, which include what the proxy added to the
   * client-bound stream; the server must see its own count (docs/protocol.md#acknowledgement-translation).
   * The payload of a single-chunk message is a view of the buffer about to be forwarded: rewritten in place.
   */
  private translateAck(payload: Buffer): void {
    const s = this.s;
    // Late binding: the client counts what the proxy wrote, the backend what it sent.
    const added = s.late && s.front !== null ? s.front.addedBytes : s.out.s2c.addedBytes;
    if (added === 0 || payload.length < 4) return;
    const phase = s.phase;
    const buf = phase.kind === 'armed' ? phase.splitter.feeding : this.feeding;
    const m = s.settings.metrics;
    if (buf === null || payload.buffer !== buf.buffer || payload.byteOffset < buf.byteOffset || payload.byteOffset + 4 > buf.byteOffset + buf.length) {
      // Straddled two reads: its first bytes are already forwarded.
      m?.ackTranslations.inc({ result: 'straddled' });
      return;
    }
    payload.writeUInt32BE((payload.readUInt32BE(0) - added) >>> 0, 0);
    m?.ackTranslations.inc({ result: 'rewritten' });
  }

  /** Backend bytes: to the client through the injector (spliced), or parsed and relayed whole (late binding). */
  backendData(buf: Buffer): void {
    const s = this.s;
    if (s.late) {
      s.front?.backendData(buf);
      return;
    }
    const s2c = s.out.s2c;
    const hadFailure = s2c.failure;
    const overBudget = s2c.rewriteOverBudget;
    const out = s2c.push(buf);
    if (s2c.rewriteOverBudget !== overBudget) this.overBudget('unchanged', 'held connect _result');
    if (hadFailure === null && s2c.failure !== null) {
      this.parseFailed('s2c', s2c.failure);
      if (s.finished) return;
    }
    s.out.write(out);
  }

  /** A complete server message, in the order the client gets them. */
  serverMessage(info: MessageInfo, payload: Buffer | null): void {
    const s = this.s;
    s.view.serverMessage(info, payload);
    if (s.late) s.front?.relay(info, payload);
    else s.notices?.serverMessage();
  }

  /** `connect` was parsed: the handshake deadline is met, and what the client can be told decides what it costs. */
  private connectSeen(): void {
    const s = this.s;
    s.handshakeDone();
    const c = s.view.facts.connect;
    if (c === null) return;
    s.log.debug(
      {
        session: s.id,
        rtmpApp: s.shown.appOrUrl(c.app),
        tcUrl: s.shown.appOrUrl(c.tcUrl),
        flashVer: c.flashVer,
        goAway: c.supportsGoAway,
        goAwayKey: c.goAwayKey,
        capsEx: c.capsEx,
      },
      'connect',
    );
    s.logStart();
    this.watchMedia();
    const erpcOffered = s.settings.erpc?.offer === true;
    if (erpcOffered && c.capsEx !== null && s.out.s2c.failure === null) (s.notices ??= new Notices(s)).offerCapsEx(s.front?.connectAnsweredLocally === true);
    // A client that can be told to reconnect does not need migrating: only the others pay for the cache.
    this.prepareMigration(c.supportsGoAway || (erpcOffered && s.capability === 'erpc'));
    // A session that connects to a backend already draining is told at once.
    if (s.backendName !== null) s.pool.reapplyStrategy(s.backendName, s);
  }

  /** After `connect`: counts of the media and its configurations whole (their first bytes decide: nothing more per message). */
  private watchMedia(): void {
    const reader = this.s.c2sReader;
    if (reader === null) return;
    this.counters = reader.media = new MediaCounters();
    reader.setCollectPolicy(migrationCollectPolicy);
  }

  /** The publisher's media now, null before its first audio or video message. */
  media(): MediaSummary | null {
    const c = this.counters;
    if (c === null || (this.telemetry === null && c.videoMessages + c.audioMessages === 0)) return null;
    return summarize(this.telemetryOf(c).snapshot());
  }

  /** Made with the first configuration, metadata or snapshot: until then the counters are all a session holds. */
  private telemetryOf(counters: MediaCounters): MediaTelemetry {
    return (this.telemetry ??= new MediaTelemetry({ counters }));
  }

  /** After `connect`: a client that cannot be told to reconnect keeps what a migration replays. */
  private prepareMigration(told: boolean): void {
    const s = this.s;
    if (told || !s.settings.migration || s.c2sReader === null) return;
    s.cache = new MediaCache(s.settings.migration.settings.maxCachedBytes, s.budget);
    s.c2sReader.setCollectPolicy(migrationCollectPolicy);
  }

  /** A player's stream ended on its backend (SessionView): it may have left for another. */
  streamStopped(): void {
    const s = this.s;
    // After the message is handled: the session ends outside the reader's callback.
    if (s.view.facts.playStopped) queueMicrotask(() => s.playerStreamStopped());
  }

  /** A player's stream started again on its backend (SessionView). */
  streamStarted(): void {
    const s = this.s;
    queueMicrotask(() => s.playerStreamStarted());
  }

  /** NetStream.Publish.Start (SessionView). */
  publishStarted(): void {
    const s = this.s;
    // A non-capable session on a draining backend can migrate only once it publishes.
    if (s.backendName !== null && !s.finished && s.phase.kind === 'pass') s.pool.reapplyStrategy(s.backendName, s);
  }

  /** A direction stopped parsing: fall back to blind forwarding, or close (onParseError, or nothing to fall back to). */
  parseFailed(direction: 'c2s' | 's2c', err: ProtocolError): void {
    const s = this.s;
    if (s.fallback === null) s.fallback = err;
    // Counted and logged (rate-limited) by the listener.
    s.hooks.parseFallback(s, direction, err);
    if (direction === 'c2s') s.logStart();
    // Late binding: nothing to fall back to before routing (no backend), nor S→C (the client's chunk stream is ours).
    const unroutable = s.late && (direction === 's2c' || s.front?.routeStarted !== true);
    const closes = s.settings.onParseError === 'close' || unroutable;
    if (err.code === 'buffer-budget') this.overBudget(closes ? 'closed' : 'fallback', `${direction} messages`);
    if (unroutable) {
      s.end(`parse-error:${err.code}`);
      return;
    }
    if (direction === 'c2s') {
      // Blind forwarding from here on: nothing parsed is kept. The handshake timer keeps running:
      // a session that falls back before `connect` is closed at its deadline.
      s.c2sReader?.release();
      s.c2sReader = null;
      s.cache?.clear();
    }
    s.migrator?.abandon(direction === 'c2s' ? 'c2s-parse-error' : 's2c-parse-error');
    if (s.settings.onParseError === 'close') s.end(`parse-error:${err.code}`);
  }

  /** This session was refused buffer memory (its budget or the process's): counted, logged rate-limited. */
  overBudget(outcome: 'fallback' | 'closed' | 'not-cached' | 'unchanged', what: string): void {
    const s = this.s;
    const b = s.budget;
    const which = b.exceeded ?? 'session';
    s.settings.metrics?.bufferBudgetExceeded.inc({ budget: which, outcome });
    s.settings.peerLog.write(
      `buffer-budget:${which}:${outcome}`,
      {
        session: s.id,
        client: s.clientAddress,
        budget: which,
        outcome,
        what,
        sessionHeld: b.held,
        sessionLimit: b.limit,
        processHeld: b.process.held,
        processLimit: b.process.limit,
      },
      'session over its buffer budget',
    );
  }
}
