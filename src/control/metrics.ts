import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ProxyObserver } from '../proxy/observer.js';
import type { MediaSummary } from '../rtmp/media-telemetry.js';

/**
 * Prometheus metrics of the proxy, prefixed `rtmp_goaway_`: the one implementation of what the
 * proxy layer reports (ProxyObserver), plus what the pool, discovery, control bus and reloads say
 * through the app's wiring. Node's default process metrics keep
 * their standard names (`process_cpu_seconds_total`, `process_open_fds`, `nodejs_*`) so stock
 * Node.js dashboards and alerts work. Hot-path quantities (bytes) are not incremented per read:
 * sessions count in plain fields and the gauges/counters are filled at scrape time through
 * `collect()` callbacks given by the owner (see ProxyServer).
 *
 * Label values are bounded: backends are the configured and discovered ones (series of a removed
 * backend are dropped), reasons and capabilities are fixed sets.
 */
export interface MetricsSources {
  /** Live sessions grouped by backend and capability. */
  activeSessions(): Iterable<{ backend: string; capability: string; count: number }>;
  /** Bytes ever forwarded, by backend and direction (monotonic per backend while it is configured). */
  bytesTotal(): Iterable<{ backend: string; c2s: number; s2c: number }>;
  /** Backend states, for `backend_up`, `backend_draining`, the zero `sessions_active` series and `backend_session_limit`. */
  backends(): Iterable<{ name: string; up: boolean; draining: boolean; sessions: number; maxSessions?: number | undefined }>;
  /** A removed backend's series are dropped (see ProxyMetrics.backendRemoved): the owner forgets what it counts for it. */
  forgetBackend?(name: string): void;
  /** Control bus connection: 1 connected, 0 not (in-process bus is always 1). */
  busConnected(): number;
  /** DNS discovery state, when configured. */
  discovery?(): { source: string; rounds: number; failures: number; backends: number; lastSuccessAt: number | undefined } | null;
  /** Proxy-side migrations in progress and waiting for a slot; absent = none. */
  migrations?(): { inFlight: number; queued: number };
  /** Live players (sessions that sent `play`) by backend; absent = none. */
  activePlayers?(): Iterable<{ backend: string; count: number }>;
  /** Bytes held against the process buffer budget, and its limit (proxy/buffer-budget.ts); absent = 0. */
  buffered?(): { held: number; limit: number };
  /** What each live publisher sends (session media telemetry), read at scrape time; absent = none. */
  media?(): Iterable<MediaSummary>;
}

/** Codec label values: the names media-telemetry.ts reports (a fixed set); anything else reads `other`, an unknown codec `unknown`. */
const VIDEO_CODECS = new Set(['h264', 'hevc', 'av1', 'vp9', 'vp8', 'flv1', 'flashsv', 'flashsv2', 'vp6f', 'vp6a']);
const AUDIO_CODECS = new Set(['aac', 'mp3', 'opus', 'flac', 'ac3', 'eac3', 'speex', 'nellymoser', 'pcm_s16le', 'pcm_u8', 'pcm_alaw', 'pcm_mulaw', 'adpcm_swf']);
const codecLabel = (codec: string | null, known: Set<string>): string => (codec === null ? 'unknown' : known.has(codec) ? codec : 'other');

/**
 * Removed backends whose counters are still reported (their last sessions' closes stay visible);
 * past this many, the oldest one's series are dropped, so backends coming and going through
 * discovery do not grow the label set without bound.
 */
export const MAX_RETIRED_BACKENDS = 64;

/** Client capabilities a session is counted under (`sessions_active{capability}`). */
const CAPABILITIES = ['goaway', 'erpc', 'none', 'unknown'] as const;

/** The configured per-replica session limits (`session_limit{limit}`; label values are the `sessions_rejected_total` reasons they cause). */
export interface SessionLimits {
  maxSessions: number;
  maxSessionsPerIp: number;
  connectRatePerIp: number;
  connectBurstPerIp: number;
}

export interface ProxyMetricsOptions {
  /** Register Node's default process metrics (default true). */
  defaultMetrics?: boolean;
  /** `build_info{version,node}`. */
  version?: string;
  /** Initial `session_limit` values (replaced by setLimits on a reload). */
  limits?: SessionLimits;
}

export class ProxyMetrics implements ProxyObserver {
  readonly registry = new Registry();
  readonly sessionsTotal: Counter<'backend' | 'capability'>;
  readonly sessionsClosed: Counter<'backend' | 'reason'>;
  readonly sessionsRejected: Counter<'reason'>;
  readonly goAwaySent: Counter<'backend' | 'connect_flag'>;
  readonly parseFallbacks: Counter<'direction' | 'reason'>;
  readonly backendConnectFailures: Counter<'backend'>;
  readonly drainDuration: Histogram<'backend'>;
  readonly drains: Counter<'backend' | 'action'>;
  readonly deadlineCloses: Counter<'backend'>;
  readonly controlMessages: Counter<'source' | 'result'>;
  readonly rebalanceMoves: Counter<'result'>;
  readonly rebalanceAuto: Counter<'trigger'>;
  readonly healthCheckDuration: Histogram<'backend' | 'result'>;
  readonly reconnectRequests: Counter<'backend'>;
  readonly capsExOffered: Counter<'result'>;
  readonly ackTranslations: Counter<'result'>;
  readonly migrationsStarted: Counter<'backend'>;
  readonly migrations: Counter<'result' | 'reason'>;
  readonly migrationAttemptsFailed: Counter<'backend' | 'reason'>;
  readonly migrationSwitchSeconds: Histogram;
  readonly migrationReadySeconds: Histogram;
  readonly migrationGapSeconds: Histogram;
  readonly routed: Counter<'rule' | 'how'>;
  readonly playersRouted: Counter<'how'>;
  readonly playerSwitches: Counter<'result'>;
  readonly bufferBudgetExceeded: Counter<'budget' | 'outcome'>;
  private readonly configReloads: Counter<'trigger' | 'result'>;
  private readonly configLastSuccess: Gauge;
  private readonly configLastSuccessful: Gauge;
  private readonly configRestartRequired: Gauge;
  private limits: SessionLimits | null;
  private readonly retired: string[] = [];
  private readonly forget: ((name: string) => void) | undefined;

  constructor(sources: MetricsSources, opts: ProxyMetricsOptions = {}) {
    const registers = [this.registry];
    const p = 'rtmp_goaway_';
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
    this.limits = opts.limits ?? null;
    this.forget = sources.forgetBackend?.bind(sources);
    const currentLimits = (): SessionLimits | null => this.limits;

    const build = new Gauge({
      name: `${p}build_info`,
      // Cluster: every worker reports 1 for the same labels.
      aggregator: 'max',
      help: 'Always 1; the labels say which version runs on which Node.js.',
      labelNames: ['version', 'node'] as const,
      registers,
    });
    build.set({ version: opts.version ?? 'unknown', node: process.version }, 1);
    new Gauge({
      name: `${p}session_limit`,
      help: 'Configured session limits of this replica (summed over cluster workers: each applies its own); 0 = no limit. The label is the sessions_rejected_total reason the limit causes.',
      labelNames: ['limit'] as const,
      registers,
      collect() {
        this.reset();
        const l = currentLimits();
        if (l === null) return;
        this.set({ limit: 'max-sessions' }, l.maxSessions);
        this.set({ limit: 'per-ip-sessions' }, l.maxSessionsPerIp);
        this.set({ limit: 'per-ip-rate' }, l.connectRatePerIp);
        this.set({ limit: 'per-ip-burst' }, l.connectBurstPerIp);
      },
    });
    new Gauge({
      name: `${p}backend_session_limit`,
      // Cluster: the primary combines its workers' values this way.
      aggregator: 'max',
      help: 'Concurrent sessions allowed on a backend (backends[].maxSessions, discovery.maxSessions); 0 = no limit.',
      labelNames: ['backend'] as const,
      registers,
      collect() {
        this.reset();
        for (const b of sources.backends()) this.set({ backend: b.name }, b.maxSessions ?? 0);
      },
    });

    new Gauge({
      name: `${p}sessions_active`,
      help: 'Sessions currently proxied, by backend and client capability (goaway, erpc, none, unknown).',
      labelNames: ['backend', 'capability'] as const,
      registers,
      collect() {
        this.reset();
        // Every backend reads 0 rather than having no series when it holds no session.
        for (const b of sources.backends()) for (const capability of CAPABILITIES) this.set({ backend: b.name, capability }, 0);
        for (const s of sources.activeSessions()) this.set({ backend: s.backend, capability: s.capability }, s.count);
      },
    });
    const bytes = new Counter({
      name: `${p}bytes_total`,
      help: 'Bytes forwarded, by backend (the one a session ended on; none = never routed) and direction: c2s = publisher to backend, s2c = backend to publisher (injected bytes included).',
      labelNames: ['backend', 'direction'] as const,
      registers,
      collect() {
        bytes.reset();
        for (const b of sources.bytesTotal()) {
          bytes.inc({ backend: b.backend, direction: 'c2s' }, b.c2s);
          bytes.inc({ backend: b.backend, direction: 's2c' }, b.s2c);
        }
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
      help: 'Sessions ended, by backend (none = never routed) and reason (client-closed, backend-closed, drain-deadline, idle-timeout, …).',
      labelNames: ['backend', 'reason'] as const,
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
      help: 'RTMP Go Away (type 32) messages written to publishers, by backend and the connect property that announced support (supportsGoAway or goaway).',
      labelNames: ['backend', 'connect_flag'] as const,
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
    this.rebalanceMoves = new Counter({
      name: `${p}rebalance_moves_total`,
      help: 'Rebalance moves, by result (moved: told to reconnect and gone; migrated; failed; timeout; skipped: the session left or could not be told).',
      labelNames: ['result'] as const,
      registers,
    });
    this.rebalanceAuto = new Counter({
      name: `${p}rebalance_auto_total`,
      help: 'Automatic rebalances started, by trigger (backend-up: rebalance.onBackendUp; spread: rebalance.auto.spreadRatio).',
      labelNames: ['trigger'] as const,
      registers,
    });
    this.healthCheckDuration = new Histogram({
      name: `${p}health_check_duration_seconds`,
      help: 'Duration of the active health probes, by backend and result (ok, failed).',
      labelNames: ['backend', 'result'] as const,
      buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.reconnectRequests = new Counter({
      name: `${p}reconnect_requests_sent_total`,
      help: 'E-RTMP NetConnection.Connect.ReconnectRequest messages written to publishers, by backend.',
      labelNames: ['backend'] as const,
      registers,
    });
    this.capsExOffered = new Counter({
      name: `${p}erpc_caps_offered_total`,
      help: 'Connect _result messages to clients that sent capsEx: rewritten (capsEx Reconnect added), unchanged (the server already offered it), interleaved (left as is: another chunk stream interleaved with it).',
      labelNames: ['result'] as const,
      registers,
    });
    this.ackTranslations = new Counter({
      name: `${p}ack_translations_total`,
      help: 'Client Acknowledgements whose sequence number was lowered by the bytes the proxy added to the client-bound stream (rewritten), or could not be because the message straddled two reads (straddled).',
      labelNames: ['result'] as const,
      registers,
    });
    this.migrationsStarted = new Counter({
      name: `${p}migrations_started_total`,
      help: 'Proxy-side migrations started, by the backend the session leaves.',
      labelNames: ['backend'] as const,
      registers,
    });
    this.migrations = new Counter({
      name: `${p}migrations_total`,
      help: 'Proxy-side migrations finished: result ok, or failed with the reason of the last attempt (the session then stays until the drain deadline).',
      labelNames: ['result', 'reason'] as const,
      registers,
    });
    this.migrationAttemptsFailed = new Counter({
      name: `${p}migration_attempts_failed_total`,
      help: 'Failed attempts to open a migration target (another backend is tried), by target backend and reason.',
      labelNames: ['backend', 'reason'] as const,
      registers,
    });
    this.migrationSwitchSeconds = new Histogram({
      name: `${p}migration_switch_seconds`,
      help: 'Time from the start of a migration to the switch of the client media to the new backend (dominated by the wait for the next keyframe).',
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 12, 20, 30],
      registers,
    });
    this.migrationReadySeconds = new Histogram({
      name: `${p}migration_ready_seconds`,
      help: 'Time from the start of a migration to the new backend answering NetStream.Publish.Start to the replayed commands.',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5],
      registers,
    });
    this.migrationGapSeconds = new Histogram({
      name: `${p}migration_gap_seconds`,
      help: 'At the switch, time between the last client bytes written to the old backend and the keyframe written to the new one.',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    });
    this.routed = new Counter({
      name: `${p}sessions_routed_total`,
      help: "Sessions placed by the routing rules, by rule and how (least-connections, weighted, sticky, sticky-moved: the key's preferred backend was not usable).",
      labelNames: ['rule', 'how'] as const,
      registers,
    });
    this.playersRouted = new Counter({
      name: `${p}players_routed_total`,
      help: 'Players routed by the stream they play: local (its publisher is on this replica), fleet (on another replica, from the registry), rule (no publisher yet: the backend the publisher will get).',
      labelNames: ['how'] as const,
      registers,
    });
    this.playerSwitches = new Counter({
      name: `${p}player_switches_total`,
      help: 'Players whose stream left their backend (its publisher moved, or the backend drained), by result: switched (it follows its stream on the backend now carrying it, same connection), closed (it could not follow and was closed at once, reason player-stream-moved).',
      labelNames: ['result'] as const,
      registers,
    });
    new Gauge({
      name: `${p}players_active`,
      help: 'Players (sessions that sent play) currently proxied, by backend.',
      labelNames: ['backend'] as const,
      registers,
      collect() {
        this.reset();
        for (const b of sources.backends()) this.set({ backend: b.name }, 0);
        for (const s of sources.activePlayers?.() ?? []) this.set({ backend: s.backend }, s.count);
      },
    });
    this.bufferBudgetExceeded = new Counter({
      name: `${p}buffer_budget_exceeded_total`,
      help:
        'Sessions refused more buffer memory, by the budget that was full (session: limits.sessionBufferBytes, process: limits.processBufferBytes) and what happened to that session: ' +
        'fallback (stopped parsing, forwarded blindly), closed, not-cached (migration cache left incomplete: the session cannot migrate), unchanged (the connect _result went out without capsEx).',
      labelNames: ['budget', 'outcome'] as const,
      registers,
    });
    new Gauge({
      name: `${p}buffered_bytes`,
      help: 'Bytes the proxy holds for sessions between reads (partial messages, migration caches, pre-connect client bytes), counted against limits.processBufferBytes.',
      registers,
      collect() {
        this.set(sources.buffered?.().held ?? 0);
      },
    });
    new Gauge({
      name: `${p}buffered_bytes_limit`,
      help: 'The process buffer budget (limits.processBufferBytes).',
      registers,
      collect() {
        this.set(sources.buffered?.().limit ?? 0);
      },
    });
    // Media telemetry: aggregates over the live publishers only (no per-session label).
    new Gauge({
      name: `${p}publishers_by_codec`,
      help: 'Live sessions sending media, by kind (video, audio) and codec (h264, hevc, av1, aac, opus… as ffprobe names them; unknown: not identified yet).',
      labelNames: ['kind', 'codec'] as const,
      registers,
      collect() {
        this.reset();
        const counts = new Map<string, number>();
        for (const m of sources.media?.() ?? []) {
          if (m.videoCodec !== null || m.width !== null || m.videoBitrate !== null) {
            const k = `video\0${codecLabel(m.videoCodec, VIDEO_CODECS)}`;
            counts.set(k, (counts.get(k) ?? 0) + 1);
          }
          if (m.audioCodec !== null || m.audioBitrate !== null) {
            const k = `audio\0${codecLabel(m.audioCodec, AUDIO_CODECS)}`;
            counts.set(k, (counts.get(k) ?? 0) + 1);
          }
        }
        for (const [k, n] of counts) {
          const [kind, codec] = k.split('\0') as [string, string];
          this.set({ kind, codec }, n);
        }
      },
    });
    const bitrates = new Histogram({
      name: `${p}publish_bitrate_bits`,
      help: 'Live publishers by their current bitrate (video plus audio, bits/s, over the telemetry window); a snapshot at each scrape.',
      buckets: [250e3, 500e3, 1e6, 2e6, 4e6, 8e6, 16e6, 32e6, 64e6],
      registers,
      collect() {
        bitrates.reset();
        for (const m of sources.media?.() ?? []) if (m.bitrate !== null) bitrates.observe(m.bitrate);
      },
    });
    const gops = new Histogram({
      name: `${p}publish_keyframe_interval_seconds`,
      help: 'Live publishers by their keyframe interval (seconds of stream time): how long a move that waits for a keyframe takes; a snapshot at each scrape.',
      buckets: [0.5, 1, 2, 4, 6, 8, 10, 15, 30],
      registers,
      collect() {
        gops.reset();
        for (const m of sources.media?.() ?? []) if (m.keyframeIntervalMs !== null) gops.observe(m.keyframeIntervalMs / 1000);
      },
    });
    new Gauge({
      name: `${p}migrations_in_flight`,
      help: 'Proxy-side migrations in progress (new backend being opened, or waiting for the keyframe).',
      registers,
      collect() {
        this.set(sources.migrations?.().inFlight ?? 0);
      },
    });
    new Gauge({
      name: `${p}migrations_queued`,
      help: 'Sessions waiting for a migration slot (migration.maxInFlight).',
      registers,
      collect() {
        this.set(sources.migrations?.().queued ?? 0);
      },
    });
    this.configReloads = new Counter({
      name: `${p}config_reloads_total`,
      help: 'Configuration reloads, by trigger (signal: SIGHUP, file: the watched config file changed) and result (ok: applied, invalid: refused, nothing changed).',
      labelNames: ['trigger', 'result'] as const,
      registers,
    });
    this.configLastSuccess = new Gauge({
      name: `${p}config_last_reload_success_timestamp_seconds`,
      // Cluster: the worker that applied a configuration longest ago.
      aggregator: 'min',
      help: 'When the configuration was last loaded successfully (at start or by a reload), Unix time.',
      registers,
    });
    this.configLastSuccess.setToCurrentTime();
    this.configLastSuccessful = new Gauge({
      name: `${p}config_last_reload_successful`,
      // Cluster: 0 when one worker refused the last configuration.
      aggregator: 'min',
      help: '1 when the last reload attempt applied the configuration, 0 when it was refused (the previous one still runs).',
      registers,
    });
    this.configLastSuccessful.set(1);
    this.configRestartRequired = new Gauge({
      name: `${p}config_restart_required`,
      // Cluster: the primary combines its workers' values this way.
      aggregator: 'max',
      help: "Settings of the last applied configuration that differ from the running ones but need a restart (listen, admin, tls, workers, redis, …); 0 = the running configuration is the file's.",
      registers,
    });
  }

  /** Counts a configuration reload attempt; `restartRequired`: settings ignored because they need a restart. */
  configReloaded(trigger: 'signal' | 'file', result: 'ok' | 'invalid', restartRequired?: number): void {
    this.configReloads.inc({ trigger, result });
    this.configLastSuccessful.set(result === 'ok' ? 1 : 0);
    if (result === 'ok') {
      this.configLastSuccess.setToCurrentTime();
      this.configRestartRequired.set(restartRequired ?? 0);
    }
  }

  /** A backend joined (again): its series are kept. */
  backendAdded(name: string): void {
    const i = this.retired.indexOf(name);
    if (i >= 0) this.retired.splice(i, 1);
  }

  /** A backend left the pool: once MAX_RETIRED_BACKENDS newer ones left, its series are dropped. */
  backendRemoved(name: string): Promise<void> {
    this.backendAdded(name);
    this.retired.push(name);
    const drops: Promise<void>[] = [];
    while (this.retired.length > MAX_RETIRED_BACKENDS) drops.push(this.dropBackend(this.retired.shift()!));
    return Promise.all(drops).then(() => undefined);
  }

  private async dropBackend(name: string): Promise<void> {
    this.forget?.(name);
    type Labelled = { labelNames?: string[]; get(): Promise<{ values: { labels: Record<string, string | number> }[] }>; remove(labels: object): void };
    for (const m of this.registry.getMetricsAsArray() as unknown as Labelled[]) {
      if (!(m.labelNames ?? []).includes('backend')) continue;
      const seen = new Set<string>();
      for (const v of (await m.get()).values) {
        if (v.labels['backend'] !== name) continue;
        const { le: _le, ...labels } = v.labels;
        const k = JSON.stringify(labels);
        if (seen.has(k)) continue;
        seen.add(k);
        m.remove(labels);
      }
    }
  }

  /** The configured session limits (at start and after a reload). */
  setLimits(limits: SessionLimits): void {
    this.limits = {
      maxSessions: limits.maxSessions,
      maxSessionsPerIp: limits.maxSessionsPerIp,
      connectRatePerIp: limits.connectRatePerIp,
      connectBurstPerIp: limits.connectBurstPerIp,
    };
  }
}
