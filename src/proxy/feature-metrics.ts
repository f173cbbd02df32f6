import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

/**
 * Metrics of E-RTMP reconnect and proxy-side migration, all prefixed `rtmp_goaway_`. Created
 * unregistered, so sessions can count before (or without) an app registry; `register` adds them
 * to one. Sessions by capability are `rtmp_goaway_sessions_active{capability}` (control/metrics.ts).
 */
export class FeatureMetrics {
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
  readonly bufferBudgetExceeded: Counter<'budget' | 'outcome'>;
  private readonly all: (Counter<string> | Gauge<string> | Histogram<string>)[];

  constructor(
    inFlight: () => { inFlight: number; queued: number } = () => ({ inFlight: 0, queued: 0 }),
    /** Bytes held against the process buffer budget, and its limit (buffer-budget.ts). */
    buffered: () => { held: number; limit: number } = () => ({ held: 0, limit: 0 }),
  ) {
    const p = 'rtmp_goaway_';
    const registers: Registry[] = [];
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
      help: 'Sessions placed by the routing rules, by rule and how (least-connections, weighted, sticky, sticky-moved: the key\'s preferred backend was not usable).',
      labelNames: ['rule', 'how'] as const,
      registers,
    });
    this.bufferBudgetExceeded = new Counter({
      name: `${p}buffer_budget_exceeded_total`,
      help:
        'Sessions refused more buffer memory, by the budget that was full (session: limits.sessionBufferBytes, process: limits.processBufferBytes) and what happened to that session: ' +
        'fallback (stopped parsing, forwarded blindly), closed, not-cached (migration cache left incomplete: the session cannot migrate), unchanged (the connect _result went out without capsEx).',
      labelNames: ['budget', 'outcome'] as const,
      registers,
    });
    const bufferedGauge = new Gauge({
      name: `${p}buffered_bytes`,
      help: 'Bytes the proxy holds for sessions between reads (partial messages, migration caches, pre-connect client bytes), counted against limits.processBufferBytes.',
      registers,
      collect() {
        this.set(buffered().held);
      },
    });
    const bufferLimitGauge = new Gauge({
      name: `${p}buffered_bytes_limit`,
      help: 'The process buffer budget (limits.processBufferBytes).',
      registers,
      collect() {
        this.set(buffered().limit);
      },
    });
    const inFlightGauge = new Gauge({
      name: `${p}migrations_in_flight`,
      help: 'Proxy-side migrations in progress (new backend being opened, or waiting for the keyframe).',
      registers,
      collect() {
        this.set(inFlight().inFlight);
      },
    });
    const queuedGauge = new Gauge({
      name: `${p}migrations_queued`,
      help: 'Sessions waiting for a migration slot (migration.maxInFlight).',
      registers,
      collect() {
        this.set(inFlight().queued);
      },
    });
    this.all = [
      this.reconnectRequests,
      this.capsExOffered,
      this.ackTranslations,
      this.migrationsStarted,
      this.migrations,
      this.migrationAttemptsFailed,
      this.migrationSwitchSeconds,
      this.migrationReadySeconds,
      this.migrationGapSeconds,
      this.routed,
      this.bufferBudgetExceeded,
      bufferedGauge,
      bufferLimitGauge,
      inFlightGauge,
      queuedGauge,
    ];
  }

  /** Adds every metric to `registry` (once). */
  register(registry: Registry): void {
    for (const m of this.all) registry.registerMetric(m);
  }
}
