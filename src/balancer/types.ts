/**
 * Types shared by the backend pool (pool.ts), the health checker (health.ts) and their
 * consumers (proxy sessions, admin API, metrics).
 *
 * This file is type-only: it has no runtime code, so importing it never pulls in anything.
 */

/** One upstream RTMP ingest server (nginx-rtmp, SRS, node-media-server…). */
export interface BackendConfig {
  /** Unique, stable identifier (used by the admin API, metrics and logs). */
  name: string;
  host: string;
  port: number;
  /** Hard cap on concurrent sessions routed here; unset = unlimited. */
  maxSessions?: number;
  /**
   * Where the backend came from, `'static'` (configuration; the default when unset) or
   * `'dns:<name>'` (DNS discovery). Shown in snapshots, `/api/backends` and `status`.
   */
  source?: string;
  /** Relative weight for weighted balancing (SRV weight for discovered backends); unset = 1. */
  weight?: number;
}

/** Result of health checking (active probes + passive connect failures). */
export type HealthState = 'up' | 'down';

/** Reported state: `draining` wins over health (a draining backend that is also down reports `draining`). */
export type BackendState = 'up' | 'draining' | 'down';

/** What the pool needs from a live proxied session. */
export interface DrainableSession {
  readonly id: string;
  /** The client announced `supportsGoAway: true` in its `connect` command object. */
  readonly supportsGoAway: boolean;
  /** Inject the type-32 message; returns false if it could not be queued (e.g. session closing). Idempotent. */
  goAway(): boolean;
  /** Ends client + backend sockets. The session must call its detach function once it is gone. */
  close(reason: string): void;
}

export interface DrainOptions {
  /**
   * Time after which every session still on the backend is closed with reason `'drain-deadline'`.
   * First drain: defaults to the pool's `defaultDrainDeadlineMs`.
   * Re-drain of an already-draining backend: replaces the current deadline (now + deadlineMs) when given,
   * keeps the current deadline when omitted.
   */
  deadlineMs?: number;
  /** Free-form, shown in snapshots and logs (e.g. "admin", "removed", "deploy-1234"). */
  reason?: string;
}

/**
 * What a drain did to one session (counted per outcome in `DrainResult.outcomes`):
 *  - `go-away`            the client was told to reconnect elsewhere (RTMP Go Away);
 *  - `reconnect-request`  the client was told to reconnect (E-RTMP ReconnectRequest);
 *  - `migrating`          the proxy moves the stream to another backend itself;
 *  - `ignored`            the session stays past the deadline (`drain.nonCapable: ignore`);
 *  - `waiting`            nothing could be done yet; the session is closed at the drain deadline;
 *  - `player`             a player: sent nothing, closed when its stream leaves the backend (proxy/drain-strategy.ts).
 * `waiting` is the only outcome that is not final: such sessions get `begin` again on a re-drain
 * or through `BackendPool.reapplyStrategy` (e.g. once their `connect` is parsed).
 */
export type DrainOutcome = 'go-away' | 'reconnect-request' | 'migrating' | 'ignored' | 'waiting' | 'player';

/**
 * What to do with a session on a draining backend; `S` is what the strategy needs from a session
 * (the pool holding sessions of that type). `begin` must not throw; if it does, the pool logs it
 * and records `waiting`.
 */
export interface DrainStrategy<S extends DrainableSession = DrainableSession> {
  begin(session: S, backend: string): DrainOutcome;
}

/** Returned by `BackendPool.drain` and carried by the `'drain'` event. */
export interface DrainResult {
  backend: string;
  /** Sessions on the backend when the drain was (re)applied. */
  sessions: number;
  /** Of those, sessions whose outcome is `go-away` (including ones told by an earlier drain call). */
  goAwaySent: number;
  /** Of those, sessions that will only leave at the deadline (outcome `waiting`). */
  waiting: number;
  /** Epoch ms at which the remaining sessions are closed. */
  deadlineAt: number;
  /** Sessions per outcome (outcomes no session had are left out). */
  outcomes: Partial<Record<DrainOutcome, number>>;
}

export interface BackendSnapshot {
  name: string;
  host: string;
  port: number;
  state: BackendState;
  health: HealthState;
  draining: boolean;
  drainReason?: string;
  /** Epoch ms. */
  drainStartedAt?: number;
  /** Epoch ms. */
  drainDeadlineAt?: number;
  /** Live sessions attached to this backend. */
  sessions: number;
  maxSessions?: number;
  /** Epoch ms of the last completed active health check. */
  lastCheckAt?: number;
  /** Error message of the last active check; cleared by a successful check. */
  lastCheckError?: string;
  /** Shared by active checks and passive connect failures. */
  consecutiveFailures: number;
  consecutiveSuccesses: number;
  /** Total passive connect failures reported since the backend was added. */
  connectFailures: number;
  /** Message of the last reported passive connect failure. */
  lastConnectError?: string;
  /** Removed from config by `setBackends`; deleted once its last session detaches. */
  removing: boolean;
  /** `'static'` or `'dns:<name>'` (see BackendConfig.source). */
  source: string;
  /** BackendConfig.weight when set. */
  weight?: number;
  /** Added by `setBackends` with `pendingHealth` and not yet probed successfully (not picked until then). */
  awaitingHealth?: boolean;
}

export interface HealthCheckOptions {
  intervalMs: number;
  timeoutMs: number;
  /** Consecutive successes needed to go from down to up. */
  rise: number;
  /** Consecutive failures (active or passive) needed to go from up to down. */
  fall: number;
  /**
   * false ⇒ healthy backends are never probed and stay up unless passive connect failures mark them
   * down; a backend marked down that way is probed on the interval (after `start()`) until `rise`
   * successes bring it back, otherwise it could never recover (it is never picked).
   */
  enabled: boolean;
}

/** A health probe: resolves when the backend looks alive, rejects otherwise. Must settle within `timeoutMs`. */
export type HealthProbe = (backend: BackendConfig, timeoutMs: number) => Promise<void>;

/** Payload of the `'backend-state'` event. */
export interface BackendStateChange {
  name: string;
  from: BackendState;
  to: BackendState;
}

/** Payload of the `'drain-complete'` event. */
export interface DrainComplete {
  name: string;
  /** ms between the start of the drain and the last session detaching. */
  durationMs: number;
}

/** Payload of the `'deadline-close'` event. */
export interface DeadlineClose {
  name: string;
  /** Sessions `close('drain-deadline')` was called on. */
  closed: number;
}

/** Options of `BackendPool.setBackends`. */
export interface SetBackendsOptions {
  /**
   * Names that, when they are new (or their address changed), join only once healthy: they start
   * health 'down' (not picked), are probed at once, and turn 'up' on their first successful probe.
   * Used for discovered backends; statically configured ones join at once.
   */
  pendingHealth?: ReadonlySet<string>;
}

/** Returned by `BackendPool.setBackends`. */
export interface SetBackendsResult {
  added: string[];
  /** Existing backends whose host, port or maxSessions changed. */
  updated: string[];
  /** Backends deleted immediately (no sessions). */
  removed: string[];
  /** Backends draining until their last session detaches, then deleted. */
  removing: string[];
}
