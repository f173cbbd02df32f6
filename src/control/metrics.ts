import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/**
 * Prometheus metrics, all prefixed `rtmp_goaway_`. Hot-path quantities (bytes) are not
 * incremented per read: sessions count in plain fields and the gauges/counters are filled at
 * scrape time through `collect()` callbacks given by the owner (see ProxyServer).
 */
export interface MetricsSources {
  /** Live sessions grouped by backend and capability. */
  activeSessions(): Iterable<{ backend: string; capability: string; count: number }>;
  /** Bytes ever forwarded, by direction (monotonic: closed sessions + live ones). */
  bytesTotal(): { c2s: number; s2c: number };
  /** Backend states, for `backend_up` and `backend_draining`. */
  backends(): Iterable<{ name: string; up: boolean; draining: boolean; sessions: number }>;
  /** Control bus connection: 1 connected, 0 not (in-process bus is always 1). */
  busConnected(): number;
  /** DNS discovery state, when configured. */
  discovery?(): { source: string; rounds: number; failures: number; backends: number; lastSuccessAt: number | undefined } | null;
}

export class ProxyMetrics {
  readonly registry = new Registry();
  readonly sessionsTotal: Counter<'backend' | 'capability'>;
  readonly sessionsClosed: Counter<'reason'>;
  readonly sessionsRejected: Counter<'reason'>;
  readonly goAwaySent: Counter<'backend' | 'key'>;
  readonly parseFallbacks: Counter<'direction' | 'reason'>;
  readonly backendConnectFailures: Counter<'backend'>;
  readonly drainDuration: Histogram<'backend'>;
  readonly drains: Counter<'backend' | 'action'>;
  readonly deadlineCloses: Counter<'backend'>;
  readonly controlMessages: Counter<'source' | 'result'>;

  constructor(sources: MetricsSources, opts: { defaultMetrics?: boolean } = {}) {
    const registers = [this.registry];
    const p = 'rtmp_goaway_';
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry, prefix: p });

    new Gauge({
      name: `${p}sessions_active`,
      help: 'Sessions currently proxied, by backend and client capability (goaway, erpc, none, unknown).',
      labelNames: ['backend', 'capability'] as const,
      registers,
      collect() {
        this.reset();
        for (const s of sources.activeSessions()) this.set({ backend: s.backend, capability: s.capability }, s.count);
      },
    });
    const bytes = new Counter({
      name: `${p}bytes_total`,
      help: 'Bytes forwarded, by direction: c2s = publisher to backend, s2c = backend to publisher (injected bytes included).',
      labelNames: ['direction'] as const,
      registers,
      collect() {
        const b = sources.bytesTotal();
        bytes.reset();
        bytes.inc({ direction: 'c2s' }, b.c2s);
        bytes.inc({ direction: 's2c' }, b.s2c);
      },
    });
    new Gauge({
      name: `${p}backend_up`,
      // Cluster: the primary combines its workers' values this way.
      aggregator: 'max',
      help: 'Backend health: 1 up, 0 down.',
      labelNames: ['backend'] as const,
      registers,
      collect() {
        this.reset();
        for (const b of sources.backends()) this.set({ backend: b.name }, b.up ? 1 : 0);
      },
    });
    new Gauge({
      name: `${p}backend_draining`,
      // Cluster: the primary combines its workers' values this way.
      aggregator: 'max',
      help: 'Backend drain flag: 1 draining (takes no new sessions), 0 not.',
      labelNames: ['backend'] as const,
      registers,
      collect() {
        this.reset();
        for (const b of sources.backends()) this.set({ backend: b.name }, b.draining ? 1 : 0);
      },
    });
    const rounds = new Counter({
      name: `${p}discovery_rounds_total`,
      help: 'DNS discovery resolutions, by source (dns:<name>) and result (ok, failed: the last known backends were kept).',
      labelNames: ['source', 'result'] as const,
      registers,
      collect() {
        const d = sources.discovery?.();
        rounds.reset();
        if (!d) return;
        rounds.inc({ source: d.source, result: 'ok' }, d.rounds - d.failures);
        rounds.inc({ source: d.source, result: 'failed' }, d.failures);
      },
    });
    new Gauge({
      name: `${p}discovery_backends`,
      // Cluster: the primary combines its workers' values this way.
      aggregator: 'max',
      help: 'Backends the last successful DNS discovery round found, by source.',
      labelNames: ['source'] as const,
      registers,
      collect() {
        this.reset();
        const d = sources.discovery?.();
        if (d) this.set({ source: d.source }, d.backends);
      },
    });
    new Gauge({
      name: `${p}discovery_last_success_timestamp_seconds`,
      // Cluster: the primary combines its workers' values this way.
      aggregator: 'max',
      help: 'When DNS discovery last resolved successfully (Unix time), by source; alert when it falls behind.',
      labelNames: ['source'] as const,
      registers,
      collect() {
        this.reset();
        const d = sources.discovery?.();
        if (d && d.lastSuccessAt !== undefined) this.set({ source: d.source }, d.lastSuccessAt / 1000);
      },
    });
    new Gauge({
      name: `${p}bus_connected`,
      // Cluster: the primary combines its workers' values this way.
      aggregator: 'min',
      help: 'Control bus connection state: 1 connected, 0 disconnected.',
      registers,
      collect() {
        this.set(sources.busConnected());
      },
    });
    this.sessionsTotal = new Counter({
      name: `${p}sessions_total`,
      help: 'Sessions accepted and routed to a backend, by backend and capability at close.',
      labelNames: ['backend', 'capability'] as const,
      registers,
    });
    this.sessionsClosed = new Counter({
      name: `${p}sessions_closed_total`,
      help: 'Sessions ended, by reason (client-closed, backend-closed, drain-deadline, idle-timeout, …).',
      labelNames: ['reason'] as const,
      registers,
    });
    this.sessionsRejected = new Counter({
      name: `${p}sessions_rejected_total`,
      help: 'Connections refused before reaching a backend, by reason (max-sessions, no-backend).',
      labelNames: ['reason'] as const,
      registers,
    });
    this.goAwaySent = new Counter({
      name: `${p}goaway_sent_total`,
      help: 'RTMP Go Away (type 32) messages written to publishers, by backend and the connect key that announced support.',
      labelNames: ['backend', 'key'] as const,
      registers,
    });
    this.parseFallbacks = new Counter({
      name: `${p}parse_fallbacks_total`,
      help: 'Sessions whose RTMP stopped parsing, by direction and reason; they were blind-forwarded or closed per onParseError.',
      labelNames: ['direction', 'reason'] as const,
      registers,
    });
    this.backendConnectFailures = new Counter({
      name: `${p}backend_connect_failures_total`,
      help: 'Failed TCP connects to a backend while routing a session.',
      labelNames: ['backend'] as const,
      registers,
    });
    this.drainDuration = new Histogram({
      name: `${p}drain_duration_seconds`,
      help: 'Time from a drain command to the last session leaving the backend.',
      labelNames: ['backend'] as const,
      buckets: [0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300],
      registers,
    });
    this.drains = new Counter({
      name: `${p}drain_commands_total`,
      help: 'Drain and undrain commands applied, by backend and action.',
      labelNames: ['backend', 'action'] as const,
      registers,
    });
    this.deadlineCloses = new Counter({
      name: `${p}drain_deadline_closes_total`,
      help: 'Sessions closed because they were still on a draining backend at its deadline.',
      labelNames: ['backend'] as const,
      registers,
    });
    this.controlMessages = new Counter({
      name: `${p}control_messages_total`,
      help: 'Control commands received, by source (admin, bus, signal) and result (ok, rejected, malformed).',
      labelNames: ['source', 'result'] as const,
      registers,
    });
  }
}
