/**
 * What the proxy layer reports, as it reports it: counts and durations under bounded labels. The
 * layer above implements it (control/metrics.ts, over prom-client); prom-client's Counter and
 * Histogram satisfy these shapes, so a report is one call on the hot path, with no adapter.
 *
 * Label values stay bounded: backends are the configured and discovered ones, every other label
 * is a fixed set (the help text of each metric in control/metrics.ts lists them).
 */
export type Labels<L extends string> = Partial<Record<L, string | number>>;

/** A monotonic count, by labels. */
export interface Count<L extends string> {
  inc(labels: Labels<L>, value?: number): void;
}

/** Durations in seconds, without labels. */
export interface Durations {
  observe(seconds: number): void;
}

/** Everything the listener, the sessions and their migrations count. */
export interface ProxyObserver {
  /** Sessions routed to a backend, counted at close. */
  readonly sessionsTotal: Count<'backend' | 'capability'>;
  /** Sessions ended, by backend (`none` = never routed) and close reason. */
  readonly sessionsClosed: Count<'backend' | 'reason'>;
  /** Connections refused before reaching a backend. */
  readonly sessionsRejected: Count<'reason'>;
  readonly goAwaySent: Count<'backend' | 'connect_flag'>;
  readonly parseFallbacks: Count<'direction' | 'reason'>;
  readonly backendConnectFailures: Count<'backend'>;
  readonly reconnectRequests: Count<'backend'>;
  readonly capsExOffered: Count<'result'>;
  readonly ackTranslations: Count<'result'>;
  readonly migrationsStarted: Count<'backend'>;
  readonly migrations: Count<'result' | 'reason'>;
  readonly migrationAttemptsFailed: Count<'backend' | 'reason'>;
  readonly migrationSwitchSeconds: Durations;
  readonly migrationReadySeconds: Durations;
  readonly migrationGapSeconds: Durations;
  readonly routed: Count<'rule' | 'how'>;
  /**
   * Players routed by the stream they named: `local` (its publisher on this replica), `fleet` (on
   * another replica), `rule` (no publisher yet: the rule the publisher will get).
   */
  readonly playersRouted: Count<'how'>;
  /** A player's stream left its backend: `switched` (it follows it on another backend), `closed` (it could not: player-stream-moved). */
  readonly playerSwitches: Count<'result'>;
  readonly bufferBudgetExceeded: Count<'budget' | 'outcome'>;
}
