import net from 'node:net';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import type { Logger } from 'pino';
import type { BackendPool } from '../balancer/pool.js';
import { isFdExhausted } from '../net/fd-exhausted.js';
import type { ProxyObserver } from './observer.js';
import { RateLimitedLog } from '../net/rate-limited-log.js';
import { type AdmissionLimits, Admission, limitKey } from './admission.js';
import type { CidrSet } from '../net/cidr.js';
import { type BackendProxyProtocol, type ProxyEndpoint, MAX_PROXY_HEADER, encodeProxyHeader, parseProxyHeader } from '../net/proxy-protocol.js';
import { type SessionHooks, type SessionOrigin, type SessionSettings, Session } from './session/session.js';

export interface ProxyServerOptions {
  host: string;
  port: number;
  maxSessions: number;
  session: SessionSettings;
  /** PROXY protocol header expected from a front balancer (both listeners); default off. */
  acceptProxyProtocol?: 'off' | 'optional' | 'required';
  /** The sources whose PROXY header is believed (the balancers); required unless acceptProxyProtocol is off. */
  acceptProxyProtocolFrom?: CidrSet;
  /** PROXY protocol header sent to backends; default off. */
  backendProxyProtocol?: BackendProxyProtocol;
  /** Per-client-IP limits; absent or all 0 = none. */
  admission?: AdmissionLimits;
}

/** Why a connection was refused before it became a session (`rtmp_goaway_sessions_rejected_total{reason}`). */
export type RejectReason =
  | 'max-sessions'
  | 'per-ip-sessions'
  | 'per-ip-rate'
  | 'proxy-protocol-missing'
  | 'proxy-protocol-invalid'
  | 'proxy-protocol-timeout'
  /** A PROXY header (or, in `required` mode, any connection) from a source not in acceptProxyProtocolFrom. */
  | 'proxy-protocol-untrusted'
  | 'tls-handshake-failed'
  | 'tls-handshake-timeout'
  /** Out of file descriptors: `accept` failed with EMFILE/ENFILE, or the session's backend connect did (never routed). */
  | 'fd-exhausted';

/** A listener logs the same accept error at most once per this interval (with how many it saw). */
export const LISTENER_ERROR_LOG_INTERVAL_MS = 5_000;

/** A connection between accept and its session: PROXY header, admission, TLS handshake. */
interface Opening {
  sock: net.Socket;
  /** The session's handshake deadline counts from here: the PROXY header and the TLS handshake spend it too. */
  acceptedAt: number;
  timer: NodeJS.Timeout;
  done: boolean;
  stage: 'proxy' | 'tls';
  /** Gives back the per-IP slot if the connection fails before it is a session. */
  release: (() => void) | null;
  /** The TLS socket once the handshake started (it owns the connection's handle from then on). */
  tls: tls.TLSSocket | null;
}

/**
 * The RTMP listener: accepts publishers, creates a Session per connection, and keeps the live
 * set (for the admin API, metrics, the fleet registry and sidecar shutdown).
 */
export class ProxyServer {
  readonly sessions = new Map<string, Session>();
  /** Bytes of sessions that have ended, by the backend they ended on (`none`: never routed); live sessions add their own counts (metrics). */
  private readonly closedBytes = new Map<string, { c2s: number; s2c: number }>();
  private readonly server: net.Server;
  private metrics: ProxyObserver | null = null;
  private readonly closeWaiters = new Set<() => void>();
  /** Connections accepted but not yet sessions (they count towards limits.maxSessions). */
  private readonly opening = new Set<Opening>();

  /** Connections accepted but not yet sessions (reading a PROXY header or in the TLS handshake). */
  get openingCount(): number {
    return this.opening.size;
  }
  readonly admission: Admission;
  private readonly acceptPP: 'off' | 'optional' | 'required';
  private readonly ppFrom: CidrSet | null;
  private readonly backendPP: BackendProxyProtocol;
  private tlsServer: net.Server | null = null;
  private tlsContext: tls.SecureContext | null = null;
  /** Cleared by stopAccepting: connections still queued in the backlog are not turned into sessions after closeAll(). */
  private accepting = true;
  /** Accept errors and backend connects out of descriptors: one line per key per interval, the rest counted as `suppressed`. */
  private readonly fdLog: RateLimitedLog;
  /** What a remote peer causes per connection (refusals, parse failures): token bucket per kind. */
  private readonly peerLog: RateLimitedLog;
  /** Sessions whose backend connect failed because this process is out of file descriptors. */
  private readonly fdStarved = new WeakSet<Session>();

  constructor(
    private opts: ProxyServerOptions,
    readonly pool: BackendPool,
    private readonly log: Logger,
  ) {
    // allowHalfOpen: a publisher's FIN is passed on to the backend while the backend's last
    // bytes still flow back, instead of Node closing both halves at once.
    this.server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false }, (sock) => this.accept(sock));
    this.server.on('error', (err) => this.listenerError('rtmp', err));
    this.fdLog = new RateLimitedLog(log, { burst: 1, perSecond: 1000 / LISTENER_ERROR_LOG_INTERVAL_MS });
    this.peerLog = opts.session.peerLog;
    this.admission = new Admission(opts.admission ?? { maxSessionsPerIp: 0, connectRatePerIp: 0, connectBurstPerIp: 1 });
    this.acceptPP = opts.acceptProxyProtocol ?? 'off';
    this.ppFrom = opts.acceptProxyProtocolFrom ?? null;
    if (this.acceptPP !== 'off' && (this.ppFrom === null || this.ppFrom.empty))
      throw new Error('acceptProxyProtocol needs acceptProxyProtocolFrom: the sources whose PROXY header is believed');
    this.backendPP = opts.backendProxyProtocol ?? 'off';
  }

  /** Nothing to do between accept and session (the common case): the plain path. */
  private get direct(): boolean {
    return this.acceptPP === 'off' && this.backendPP === 'off' && !this.admission.enabled;
  }

  /**
   * Limits from a configuration reload, for connections accepted from now on: live sessions keep
   * the settings object they started with.
   */
  setLimits(limits: { maxSessions: number; admission: AdmissionLimits; session: SessionSettings }): void {
    this.opts = { ...this.opts, maxSessions: limits.maxSessions, admission: limits.admission, session: limits.session };
    this.admission.setLimits(limits.admission);
  }

  setMetrics(metrics: ProxyObserver): void {
    this.metrics = metrics;
  }

  listen(): Promise<net.AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.server.once('error', onError);
      this.server.listen({ host: this.opts.host, port: this.opts.port }, () => {
        this.server.off('error', onError);
        resolve(this.server.address() as net.AddressInfo);
      });
    });
  }

  get listening(): boolean {
    return this.server.listening;
  }

  address(): net.AddressInfo | null {
    const a = this.server.address();
    return a !== null && typeof a === 'object' ? a : null;
  }

  /**
   * Opens the RTMPS listener: TLS is terminated here (after the PROXY header, when accepted),
   * then the session is the same as on the plain listener. `setTlsContext` swaps the certificate.
   */
  listenTls(host: string, port: number, context: tls.SecureContext): Promise<net.AddressInfo> {
    this.tlsContext = context;
    const server = net.createServer({ allowHalfOpen: true }, (sock) => this.accept(sock, true));
    server.on('error', (err) => this.listenerError('rtmps', err));
    this.tlsServer = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port }, () => {
        server.off('error', reject);
        resolve(server.address() as net.AddressInfo);
      });
    });
  }

  /** New TLS connections use `context` (certificate reload); established ones keep theirs. */
  setTlsContext(context: tls.SecureContext): void {
    this.tlsContext = context;
  }

  tlsAddress(): net.AddressInfo | null {
    const a = this.tlsServer?.address();
    return a !== null && typeof a === 'object' ? a : null;
  }

  /** Stops accepting; live sessions continue. */
  stopAccepting(): Promise<void> {
    const close = (srv: net.Server | null) =>
      new Promise<void>((resolve) => {
        if (srv === null || !srv.listening) return resolve();
        srv.close(() => resolve());
      });
    this.accepting = false;
    for (const o of [...this.opening]) this.abandon(o);
    this.admission.stop();
    return Promise.all([close(this.server), close(this.tlsServer)]).then(() => undefined);
  }

  /** Resolves once no session is left (or immediately). */
  whenEmpty(): Promise<void> {
    if (this.sessions.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.closeWaiters.add(resolve));
  }

  closeAll(reason: string): void {
    for (const s of [...this.sessions.values()]) s.close(reason);
  }

  /**
   * An error on a listening socket after it listens: `accept` failed. It must not crash the
   * process nor stop the listener (libuv goes on accepting). Out of descriptors, libuv first
   * accepts and closes the pending connections with a descriptor it keeps in reserve, without
   * telling Node; it reports EMFILE/ENFILE here when it cannot. Counted as `fd-exhausted`; logged
   * at most once per LISTENER_ERROR_LOG_INTERVAL_MS per listener and code, with the count.
   */
  private listenerError(listener: 'rtmp' | 'rtmps', err: NodeJS.ErrnoException): void {
    // Before it listens, an error is the listen failing: listen() / listenTls() report it.
    if (!(listener === 'rtmp' ? this.server : this.tlsServer)?.listening) return;
    const fd = isFdExhausted(err);
    if (fd) this.metrics?.sessionsRejected.inc({ reason: 'fd-exhausted' });
    this.fdLog.write(
      `${listener}:${err.code ?? err.message}`,
      { listener, code: err.code, err: err.message, sessions: this.sessions.size },
      fd ? 'out of file descriptors: connection refused' : 'listener error',
    );
  }

  private reject(sock: net.Socket, reason: RejectReason, fields: Record<string, unknown> = {}): void {
    this.metrics?.sessionsRejected.inc({ reason });
    this.peerLog.write(`refused:${reason}`, { client: `${sock.remoteAddress}:${sock.remotePort}`, reason, ...fields }, 'connection refused');
    sock.destroy();
  }

  private accept(sock: net.Socket, secure = false): void {
    if (!this.accepting) {
      sock.destroy();
      return;
    }
    if (this.sessions.size + this.opening.size >= this.opts.maxSessions) {
      this.reject(sock, 'max-sessions', { limit: this.opts.maxSessions });
      return;
    }
    if (this.direct && !secure) {
      this.startSession(sock, {}, null);
      return;
    }
    // Between accept and session: bounded by the handshake timeout, no backend connection yet.
    sock.on('error', () => {});
    const o: Opening = {
      sock,
      acceptedAt: Date.now(),
      done: false,
      stage: 'proxy',
      release: null,
      tls: null,
      timer: setTimeout(() => this.timedOut(o), this.opts.session.handshakeTimeoutMs),
    };
    o.timer.unref();
    this.opening.add(o);
    sock.once('close', () => this.abandon(o));
    // A client that half-closes before it is a session has nothing left to say (allowHalfOpen would keep it until the timeout).
    sock.once('end', () => this.abandon(o));
    if (this.acceptPP === 'off') {
      this.admitted(
        o,
        { address: sock.remoteAddress ?? '?', port: sock.remotePort ?? 0 },
        { address: sock.localAddress ?? '?', port: sock.localPort ?? 0 },
        secure,
      );
      return;
    }
    const trusted = this.ppFrom!.has(sock.remoteAddress);
    // `required`: only the balancers may connect at all; anyone else would be refused after their first bytes anyway.
    if (!trusted && this.acceptPP === 'required') return this.fail(o, 'proxy-protocol-untrusted', { why: 'source not in acceptProxyProtocolFrom' });
    this.readProxyHeader(o, secure, trusted);
  }

  private timedOut(o: Opening): void {
    if (o.done) return;
    this.fail(o, o.stage === 'tls' ? 'tls-handshake-timeout' : 'proxy-protocol-timeout', { timeoutMs: this.opts.session.handshakeTimeoutMs });
  }

  /** The connection goes on as a session (or is refused by the caller). */
  private finishOpening(o: Opening): void {
    o.done = true;
    clearTimeout(o.timer);
    this.opening.delete(o);
  }

  /** Refused before it became a session: counted, logged once, its per-IP slot given back. */
  private fail(o: Opening, reason: RejectReason, fields: Record<string, unknown> = {}): void {
    if (o.done) return;
    this.finishOpening(o);
    o.release?.();
    o.release = null;
    o.tls?.destroy();
    this.reject(o.sock, reason, fields);
  }

  /** Closed by the peer (or shutdown) before it became a session. */
  private abandon(o: Opening): void {
    if (o.done) return;
    this.finishOpening(o);
    o.release?.();
    o.release = null;
    o.tls?.destroy();
    o.sock.destroy();
  }

  /**
   * Reads the PROXY header (at most MAX_PROXY_HEADER bytes); what follows it is put back for the
   * session. From an untrusted source (`optional` mode) nothing is taken from the bytes: a client
   * whose first bytes start a PROXY signature is refused (neither RTMP's C0 nor a TLS record
   * begins with `P` or CR, so no real client is), any other goes on as itself.
   */
  private readProxyHeader(o: Opening, secure: boolean, trusted: boolean): void {
    const sock = o.sock;
    let acc: Buffer = Buffer.alloc(0);
    const onData = (buf: Buffer): void => {
      acc = acc.length === 0 ? buf : Buffer.concat([acc, buf]);
      const r = parseProxyHeader(acc.length > MAX_PROXY_HEADER ? acc.subarray(0, MAX_PROXY_HEADER) : acc);
      if (!trusted) {
        sock.off('data', onData);
        sock.pause();
        if (r.kind !== 'none') return this.fail(o, 'proxy-protocol-untrusted', { why: 'PROXY header from a source not in acceptProxyProtocolFrom' });
        sock.unshift(acc);
        this.admitted(
          o,
          { address: sock.remoteAddress ?? '?', port: sock.remotePort ?? 0 },
          { address: sock.localAddress ?? '?', port: sock.localPort ?? 0 },
          secure,
        );
        return;
      }
      if (r.kind === 'incomplete') {
        if (acc.length < MAX_PROXY_HEADER) return;
        sock.off('data', onData);
        this.fail(o, 'proxy-protocol-invalid', { why: `no complete header in ${MAX_PROXY_HEADER} bytes` });
        return;
      }
      sock.off('data', onData);
      sock.pause();
      if (r.kind === 'invalid') return this.fail(o, 'proxy-protocol-invalid', { why: r.reason });
      if (r.kind === 'none' && this.acceptPP === 'required') return this.fail(o, 'proxy-protocol-missing');
      let src: ProxyEndpoint = { address: sock.remoteAddress ?? '?', port: sock.remotePort ?? 0 };
      let dst: ProxyEndpoint = { address: sock.localAddress ?? '?', port: sock.localPort ?? 0 };
      let rest = acc;
      if (r.kind === 'ok') {
        rest = acc.subarray(r.length);
        if (r.header.source !== null) src = r.header.source;
        if (r.header.destination !== null) dst = r.header.destination;
      }
      if (rest.length > 0) sock.unshift(rest);
      this.admitted(o, src, dst, secure);
    };
    sock.on('data', onData);
    sock.resume();
  }

  private admitted(o: Opening, src: ProxyEndpoint, dst: ProxyEndpoint, secure: boolean): void {
    const sock = o.sock;
    const key = limitKey(src.address);
    if (this.admission.enabled) {
      const refused = this.admission.admit(key);
      if (refused !== null) return this.fail(o, refused, { ip: key, via: sock.remoteAddress });
      o.release = () => this.admission.release(key);
    }
    // Same `address:port` form as a session without a PROXY header.
    const origin: SessionOrigin = {
      clientAddress: `${src.address}:${src.port}`,
      preamble: encodeProxyHeader(this.backendPP, src, dst),
      acceptedAt: o.acceptedAt,
    };
    if (!secure) {
      const release = o.release;
      this.finishOpening(o);
      this.startSession(sock, origin, release);
      sock.resume();
      return;
    }
    o.stage = 'tls';
    const context = this.tlsContext!;
    // After a PROXY header, TLS runs over a stream wrapper of the raw socket, not over its handle:
    // bytes already read (the header's tail) are kept, and closing the raw socket closes
    // everything. Without one nothing was read ahead, so TLS runs natively on the socket's handle
    // (bench: 0.19–0.23 vs 0.26 CPU-s/Gbit, 63 vs 73 KiB per idle TLS session).
    const tsock = new tls.TLSSocket(this.acceptPP === 'off' ? sock : (streamOf(sock) as unknown as net.Socket), { isServer: true, secureContext: context });
    o.tls = tsock;
    // Before `secure` the pending connection's timer covers the handshake; once a session, the session's handlers take over.
    tsock.on('error', (err) => this.fail(o, 'tls-handshake-failed', { err: err.message }));
    // Natively wrapped, the raw socket may no longer report the peer leaving mid-handshake.
    tsock.once('close', () => this.abandon(o));
    tsock.once('end', () => this.abandon(o));
    tsock.once('secure', () => {
      if (o.done) return void tsock.destroy();
      const release = o.release;
      this.finishOpening(o);
      tsock.pause();
      this.startSession(tsock, origin, release);
      tsock.resume();
    });
    sock.resume();
  }

  private startSession(sock: net.Socket, origin: SessionOrigin, release: (() => void) | null): void {
    const session = new Session(sock, this.pool, this.opts.session, this.sessionHooks, this.log, origin);
    if (release !== null) this.releases.set(session, release);
    this.sessions.set(session.id, session);
    session.start();
  }

  /** Per-IP admission slots to give back when their session ends. */
  private readonly releases = new Map<Session, () => void>();

  /** One hooks object for every session (no closures per session). */
  private readonly sessionHooks: SessionHooks = {
    routed: (s) => s.logStart(),
    closed: (s) => {
      const m = this.metrics;
      this.sessions.delete(s.id);
      const release = this.releases.get(s);
      if (release !== undefined) {
        this.releases.delete(s);
        release();
      }
      const backend = s.backendName ?? 'none';
      let closed = this.closedBytes.get(backend);
      if (closed === undefined) this.closedBytes.set(backend, (closed = { c2s: 0, s2c: 0 }));
      closed.c2s += s.bytesIn;
      closed.s2c += s.bytesOut;
      if (m !== null) {
        if (s.backendName !== null) m.sessionsTotal.inc({ backend: s.backendName, capability: s.capability });
        else if (
          s.closeReason === 'no-backend' ||
          s.closeReason === 'all-backends-failed' ||
          s.closeReason === 'fd-exhausted' ||
          s.closeReason === 'no-route'
        ) {
          // Never routed: a backend connect that failed for want of a descriptor is our limit, not the backends'.
          m.sessionsRejected.inc({ reason: this.fdStarved.has(s) ? 'fd-exhausted' : s.closeReason });
        }
        m.sessionsClosed.inc({ backend, reason: s.closeReason ?? 'unknown' });
      }
      if (this.sessions.size === 0) {
        for (const w of this.closeWaiters) w();
        this.closeWaiters.clear();
      }
    },
    goAwayWritten: (s) => this.metrics?.goAwaySent.inc({ backend: s.backendName ?? 'none', connect_flag: s.view.facts.connect?.goAwayKey ?? 'unknown' }),
    parseFallback: (s, direction, err) => {
      this.metrics?.parseFallbacks.inc({ direction, reason: err.code });
      this.peerLog.write(
        `parse:${direction}:${err.code}`,
        { session: s.id, direction, reason: err.code, err: err.message, action: this.opts.session.onParseError },
        'RTMP parse failed',
      );
    },
    connectFailed: (s, backend, err) => {
      if (isFdExhausted(err)) {
        this.fdStarved.add(s);
        this.fdLog.write(
          `backend-connect:${(err as NodeJS.ErrnoException).code}`,
          { session: s.id, backend, err: err.message, sessions: this.sessions.size },
          'out of file descriptors: backend connect failed',
        );
        return;
      }
      this.metrics?.backendConnectFailures.inc({ backend });
      this.peerLog.write(`backend-connect:${backend}`, { session: s.id, backend, err: err.message }, 'backend connect failed');
    },
  };

  /** Bytes ever forwarded (closed + live sessions) by backend, monotonic per backend until forgetBackend. */
  bytesTotal(): { backend: string; c2s: number; s2c: number }[] {
    const out = new Map<string, { backend: string; c2s: number; s2c: number }>();
    const add = (backend: string, c2s: number, s2c: number): void => {
      const e = out.get(backend);
      if (e === undefined) out.set(backend, { backend, c2s, s2c });
      else {
        e.c2s += c2s;
        e.s2c += s2c;
      }
    };
    for (const [backend, b] of this.closedBytes) add(backend, b.c2s, b.s2c);
    for (const s of this.sessions.values()) add(s.backendName ?? 'none', s.bytesIn, s.bytesOut);
    return [...out.values()];
  }

  /** A backend left the pool: its byte counts stop being reported (label values stay bounded). */
  forgetBackend(name: string): void {
    this.closedBytes.delete(name);
  }

  activePlayers(): { backend: string; count: number }[] {
    const counts = new Map<string, number>();
    for (const s of this.sessions.values())
      if (s.view.facts.role === 'player') counts.set(s.backendName ?? 'none', (counts.get(s.backendName ?? 'none') ?? 0) + 1);
    return [...counts].map(([backend, count]) => ({ backend, count }));
  }

  activeByBackendAndCapability(): { backend: string; capability: string; count: number }[] {
    const counts = new Map<string, { backend: string; capability: string; count: number }>();
    for (const s of this.sessions.values()) {
      const backend = s.backendName ?? 'none';
      const k = `${backend}\u0000${s.capability}`;
      const e = counts.get(k);
      if (e) e.count++;
      else counts.set(k, { backend, capability: s.capability, count: 1 });
    }
    return [...counts.values()];
  }
}

/** A plain Duplex over a socket (what a TLSSocket then reads through, including unshifted bytes). */
function streamOf(sock: net.Socket): Duplex {
  const d = new Duplex({
    read() {
      sock.resume();
    },
    write(chunk: Buffer, _enc, cb) {
      sock.write(chunk, cb);
    },
    final(cb) {
      sock.end();
      cb();
    },
    destroy(err, cb) {
      sock.destroy(err ?? undefined);
      cb(err);
    },
  });
  sock.on('data', (b: Buffer) => {
    if (!d.push(b)) sock.pause();
  });
  sock.on('end', () => d.push(null));
  sock.on('close', () => d.destroy());
  return d;
}
