import type net from 'node:net';
import type { MessageInfo } from '../../rtmp/chunk-reader.js';
import { MessageType } from '../../rtmp/constants.js';
import { ProtocolError } from '../../rtmp/errors.js';
import { HandshakeEnd } from '../../rtmp/handshake-peer.js';
import { type Command, CAPS_EX_RECONNECT, decodeCommand, readCreateStreamResult } from '../../rtmp/messages.js';
import { LOCAL_STREAM_ID, connectAnswer, createStreamAnswer, rejection } from '../local-answers.js';
import { rejectionDescription } from '../../balancer/routing.js';
import type { RefusalReason } from './close-reason.js';
import type { Session } from './session.js';

/** A player's commands naming its stream: the first one routes it (FCSubscribe comes before createStream with ffmpeg and librtmp). */
const PLAY_COMMANDS: ReadonlySet<string> = new Set(['play', 'play2', 'FCSubscribe']);

/**
 * The proxy as the client's server, before (or instead of) a backend.
 *
 * Late binding (routing rules that need the app or the stream key): the backend is chosen only
 * once `connect` (app rules) or `publish` (stream-key rules, sticky) is known. Until then the
 * proxy answers the handshake (and, for stream-key rules, `connect` and `createStream`); then it
 * opens the backend with its own handshake and writes the client's RTMP bytes from the first
 * chunk on, unchanged (C→S stays the hot path). S→C, the backend's messages are relayed
 * re-chunked by the proxy's writer, minus its replies to what the proxy already answered.
 *
 * Refusal (admission: every backend draining, down or full when the client arrived): a clear RTMP
 * error beats a silent close — the proxy answers the handshake, then refuses the `connect`.
 */
export class FrontDoor {
  /** The proxy's server end of the client's handshake. */
  private readonly handshake = new HandshakeEnd('server');
  /** The proxy's client end of the backend's handshake (created with the backend connection). */
  private backendHandshake: HandshakeEnd | null = null;
  /** Client bytes wait (SocketPair.hold) until the backend finished its handshake. */
  holdClient = false;
  /** Routing started (connect or publish seen). */
  routeStarted = false;
  /** No backend: the client was sent `_error`, its bytes are ignored. */
  private rejected = false;
  /** The transaction (and stream) of the command that triggered routing, for the rejection. */
  private routeTrigger: { transactionId: number; streamId: number } | null = null;
  /** Bytes received from the backend (client acks are translated by the difference). */
  private backendBytesIn = 0;
  /** Transactions the proxy answered itself; the backend's replies to them are dropped. Created with the first. */
  private localTxns: Set<number> | null = null;
  private createStreamTxn: number | null = null;
  connectAnsweredLocally = false;

  constructor(
    private readonly s: Session,
    /** Set for a refusal: the session is refused at `connect` with this reason. */
    private readonly refusal: RefusalReason | null = null,
  ) {}

  /** The client was sent `_error` (no backend): its bytes are ignored. A method: it changes while the client's bytes are parsed. */
  hasRejected(): boolean {
    return this.rejected;
  }

  get handshaking(): boolean {
    return !this.handshake.done;
  }

  /** What the proxy added to (or took from) the client-bound byte count: its client acks are translated by it. */
  get addedBytes(): number {
    return this.s.pair.bytesOut - this.backendBytesIn;
  }

  /** C0+C1 → S0+S1+S2. Returns the offset after the handshake bytes, -1 when the session closed. */
  answerHandshake(buf: Buffer): number {
    const s = this.s;
    try {
      const r = this.handshake.push(buf);
      if (r.reply !== null) s.out.write([r.reply]);
      return r.next;
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      s.traffic.parseFailed('c2s', err);
      if (!s.finished) s.end(`parse-error:${err.code}`);
      return -1;
    }
  }

  /**
   * Before routing the proxy plays the server for as long as the rules need. App rules route at
   * `connect`; stream-key rules need `publish`, so `connect` and `createStream` are answered here
   * as nginx-rtmp would (the backend's own replies are dropped later); `releaseStream` and
   * `FCPublish` need no answer (clients do not wait for one).
   */
  command(info: MessageInfo, cmd: Command): void {
    const s = this.s;
    if (this.refusal !== null) {
      if (cmd.name === 'connect') this.reject(this.refusal, { transactionId: cmd.transactionId, streamId: 0 });
      return;
    }
    const byKey = s.routeAt === 'publish';
    const f = s.view.facts;
    if (cmd.name === 'connect' && f.connectTransactionId === cmd.transactionId && !this.connectAnsweredLocally) {
      const c = f.connect;
      // Rules that do not read the key can refuse an app at `connect`, late binding or not.
      const router = s.router;
      const unrouted = router !== null && router.needs !== 'publish' && c !== null && router.match({ app: c.app, clientIp: s.clientIp }) === null;
      if (!byKey || c === null || unrouted) {
        this.route(cmd.transactionId, 0);
        return;
      }
      this.connectAnsweredLocally = true;
      (this.localTxns ??= new Set()).add(cmd.transactionId);
      // E-RTMP: offer Reconnect in our own _result to clients that sent capsEx (docs/protocol.md#e-rtmp-reconnect).
      const capsEx = s.settings.erpc?.offer === true && c.capsEx !== null ? CAPS_EX_RECONNECT : null;
      if (capsEx !== null) s.settings.metrics?.capsExOffered.inc({ result: 'rewritten' });
      for (const m of connectAnswer(cmd.transactionId, { objectEncoding: c.objectEncoding, capsEx })) s.out.send(m);
    } else if (cmd.name === 'createStream' && byKey && this.connectAnsweredLocally && this.createStreamTxn === null) {
      this.createStreamTxn = cmd.transactionId;
      (this.localTxns ??= new Set()).add(cmd.transactionId);
      s.out.send(createStreamAnswer(cmd.transactionId));
    } else if ((cmd.name === 'publish' || PLAY_COMMANDS.has(cmd.name)) && byKey && this.connectAnsweredLocally) {
      this.route(cmd.transactionId, info.streamId);
    }
  }

  /** What routing needs is known. */
  private route(transactionId: number, streamId: number): void {
    this.routeStarted = true;
    this.routeTrigger = { transactionId, streamId };
    this.s.connectBackend(new Set());
  }

  /** No backend was found for the route a command asked for: that command is rejected. False when no command asked (not routed yet). */
  rejectRoute(reason: RefusalReason): boolean {
    if (this.routeTrigger === null) return false;
    this.reject(reason, this.routeTrigger);
    return true;
  }

  /**
   * No backend for this session. The client gets `_error` NetConnection.Connect.Rejected with the
   * reason (for its connect or its publish), then FIN; counted by its close reason.
   */
  private reject(reason: RefusalReason, trigger: { transactionId: number; streamId: number }): void {
    const s = this.s;
    const p = s.placement;
    const f = s.view.facts;
    const description =
      p !== null && p.backend === null
        ? rejectionDescription(p, { app: f.connect?.app ?? null, streamKey: f.streamKey })
        : reason === 'no-backend'
          ? 'No ingest server available: all are draining, down or full'
          : 'No ingest server reachable for this stream: rejected by the ingest proxy';
    this.rejected = true;
    s.closeReason = reason;
    s.settings.peerLog.write(
      `rejected:${reason}`,
      {
        session: s.id,
        client: s.clientAddress,
        rtmpApp: s.shown.appOrUrl(f.connect?.app ?? null),
        streamKey: s.streamKeyForDisplay(),
        reason,
        rule: p?.rule?.label ?? null,
      },
      'session rejected by routing',
    );
    s.out.send(rejection(trigger.transactionId, trigger.streamId, description));
    s.pair.dropPending();
    s.pair.client.end();
    // A client that keeps its side open does not hold the session.
    setTimeout(() => s.end(reason), 2000).unref();
  }

  /** The backend is connected: our own handshake first; the client's bytes follow once it is done. */
  backendAttached(sock: net.Socket): void {
    this.holdClient = true;
    this.backendHandshake = new HandshakeEnd('client');
    sock.write(this.backendHandshake.hello());
  }

  /**
   * The backend's S0+S1+S2 get C2, then the client's bytes follow. Its messages (the injector
   * parses them, handshake skipped) reach the client through `relay`; the injector's byte output
   * is not used.
   */
  backendData(buf: Buffer): void {
    const s = this.s;
    this.backendBytesIn += buf.length;
    const hs = this.backendHandshake;
    const sock = s.pair.backend;
    if (hs !== null && sock !== null && !hs.done) {
      let r;
      try {
        r = hs.push(buf);
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        s.log.warn({ session: s.id, backend: s.backendName, err: err.message }, 'backend handshake failed');
        s.end('backend-handshake-failed');
        return;
      }
      if (r.reply !== null) sock.write(r.reply);
      if (hs.done) {
        this.holdClient = false;
        s.pair.flushPending(sock);
        s.pair.client.resume();
      }
    }
    const s2c = s.out.s2c;
    const hadFailure = s2c.failure;
    s2c.push(buf);
    if (hadFailure === null && s2c.failure !== null) s.traffic.parseFailed('s2c', s2c.failure);
  }

  /**
   * One backend message for the client, re-chunked by the proxy's writer. Chunking control is per
   * hop; replies to what the proxy answered itself are dropped (a refusal of those ends the
   * session: the client was told yes).
   */
  relay(info: MessageInfo, payload: Buffer | null): void {
    const s = this.s;
    const t = info.typeId;
    if (t === MessageType.SetChunkSize || t === MessageType.Abort || s.finished || s.streamLeftBackend) return;
    if (payload === null) {
      s.end('relay-uncollected-message');
      return;
    }
    let body = payload;
    const notices = s.notices;
    if (
      (t === MessageType.CommandAmf0 || t === MessageType.CommandAmf3) &&
      ((this.localTxns !== null && this.localTxns.size > 0) || notices?.capsExPending === true)
    ) {
      let cmd;
      try {
        cmd = decodeCommand(t, payload, s.settings.amfLimits);
      } catch {
        cmd = null;
      }
      if (cmd !== null && (cmd.name === '_result' || cmd.name === '_error')) {
        if (this.localTxns?.delete(cmd.transactionId) === true) {
          this.localReply(cmd);
          return;
        }
        const out = notices?.relayedReply(info, cmd, payload) ?? null;
        if (out !== null) body = out;
      }
    }
    s.out.send({ csid: info.csid, timestamp: info.timestamp, typeId: t, streamId: info.streamId, payload: body });
    // What a player has (timestamps, configuration), for a switch to its stream on another backend.
    s.playerFollower()?.sentToClient(t, info.timestamp, body);
  }

  /** The backend's reply to a command the proxy answered itself: dropped, unless it disagrees. */
  private localReply(cmd: Command): void {
    const s = this.s;
    if (cmd.name === '_error') {
      s.log.warn(
        { session: s.id, backend: s.backendName, command: cmd.transactionId === this.createStreamTxn ? 'createStream' : 'connect' },
        'the backend refused what the proxy had answered for it',
      );
      s.end('backend-rejected');
    } else if (cmd.transactionId === this.createStreamTxn && readCreateStreamResult(cmd) !== LOCAL_STREAM_ID) {
      // The client publishes on the stream id we gave it; its chunks reach the backend unchanged.
      s.log.warn(
        { session: s.id, backend: s.backendName, streamId: readCreateStreamResult(cmd) },
        `the backend gave createStream another stream id than ${LOCAL_STREAM_ID}`,
      );
      s.end('backend-stream-id-mismatch');
    }
  }
}
