import net from 'node:net';
import type { Logger } from 'pino';
import type { BackendPool } from '../balancer/pool.js';
import type { ProxyMetrics } from '../control/metrics.js';
import { type SessionSettings, Session } from './session.js';

export interface ProxyServerOptions {
  host: string;
  port: number;
  maxSessions: number;
  session: SessionSettings;
}

/**
 * The RTMP listener: accepts publishers, creates a Session per connection, and keeps the live
 * set (for the admin API, metrics, the fleet registry and sidecar shutdown).
 */
export class ProxyServer {
  readonly sessions = new Map<string, Session>();
  /** Bytes of sessions that have ended; live sessions add their own counts (metrics). */
  readonly closedBytes = { c2s: 0, s2c: 0 };
  private readonly server: net.Server;
  private metrics: ProxyMetrics | null = null;
  private readonly closeWaiters = new Set<() => void>();

  constructor(
    private readonly opts: ProxyServerOptions,
    readonly pool: BackendPool,
    private readonly log: Logger,
  ) {
    // allowHalfOpen: a publisher's FIN is passed on to the backend while the backend's last
    // bytes still flow back, instead of Node closing both halves at once.
    this.server = net.createServer({ allowHalfOpen: true, pauseOnConnect: false }, (sock) => this.accept(sock));
    this.server.on('error', (err) => this.log.error({ err }, 'listener error'));
  }

  setMetrics(metrics: ProxyMetrics): void {
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

  /** Stops accepting; live sessions continue. */
  stopAccepting(): Promise<void> {
    return new Promise((resolve) => {
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
    });
  }

  /** Resolves once no session is left (or immediately). */
  whenEmpty(): Promise<void> {
    if (this.sessions.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.closeWaiters.add(resolve));
  }

  closeAll(reason: string): void {
    for (const s of [...this.sessions.values()]) s.close(reason);
  }

  private accept(sock: net.Socket): void {
    if (this.sessions.size >= this.opts.maxSessions) {
      this.metrics?.sessionsRejected.inc({ reason: 'max-sessions' });
      this.log.warn({ client: `${sock.remoteAddress}:${sock.remotePort}`, limit: this.opts.maxSessions }, 'session limit reached, connection refused');
      sock.destroy();
      return;
    }
    const m = this.metrics;
    const session = new Session(sock, this.pool, this.opts.session, {
      routed: (s) => s.logStart(),
      closed: (s) => {
        this.sessions.delete(s.id);
        this.closedBytes.c2s += s.bytesIn;
        this.closedBytes.s2c += s.bytesOut;
        if (m !== null) {
          if (s.backendName !== null) m.sessionsTotal.inc({ backend: s.backendName, capability: s.capability });
          else if (s.closeReason === 'no-backend' || s.closeReason === 'all-backends-failed') m.sessionsRejected.inc({ reason: s.closeReason });
          m.sessionsClosed.inc({ reason: s.closeReason ?? 'unknown' });
        }
        if (this.sessions.size === 0) {
          for (const w of this.closeWaiters) w();
          this.closeWaiters.clear();
        }
      },
      goAwayWritten: (s) => m?.goAwaySent.inc({ backend: s.backendName ?? 'none', key: s.view.facts.connect?.goAwayKey ?? 'unknown' }),
      parseFallback: (_s, direction, err) => m?.parseFallbacks.inc({ direction, reason: err.code }),
      connectFailed: (s, backend, err) => {
        m?.backendConnectFailures.inc({ backend });
        this.log.warn({ session: s.id, backend, err: err.message }, 'backend connect failed');
      },
    }, this.log);
    this.sessions.set(session.id, session);
    session.start();
  }

  /** Bytes ever forwarded (closed + live sessions), monotonic. */
  bytesTotal(): { c2s: number; s2c: number } {
    let c2s = this.closedBytes.c2s;
    let s2c = this.closedBytes.s2c;
    for (const s of this.sessions.values()) {
      c2s += s.bytesIn;
      s2c += s.bytesOut;
    }
    return { c2s, s2c };
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
