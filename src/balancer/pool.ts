/**
 * BackendPool: the set of RTMP ingest backends, their health, the sessions routed to each, and
 * the drain state machine (the drain strategy applied to each session, then a deadline).
 *
 * Events (typed, see `BackendPoolEvents`):
 *  - `'backend-state'`   ({ name, from, to })   reported state changed (`draining` wins over health)
 *  - `'drain'`           (DrainResult)          after every successful `drain()` call (also re-drains)
 *  - `'undrain'`         (name)                 a draining backend accepts new sessions again
 *  - `'drain-complete'`  ({ name, durationMs }) a draining backend has no session left (emitted once per
 *                                               drain; right after `'drain'` if it had none to begin with)
 *  - `'deadline-close'`  ({ name, closed })     the drain deadline fired and closed the remaining sessions
 *  - `'backend-added'`   (name)                 `setBackends` added a backend
 *  - `'backend-removed'` (name)                 a backend removed by `setBackends` was deleted
 *  - `'health-check'`    ({ name, ok, error?, durationMs }) an active probe finished (for metrics)
 * All events are emitted synchronously. A listener that throws is logged and otherwise ignored, so it
 * cannot leave the pool half-updated. The pool never emits `'error'`.
 *
 * Every timer is `unref()`'d; `stop()` clears them all.
 */
import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import type { BackendView, Placement, RouteRequest, Router } from './routing.js';
import { isFdExhausted } from '../net/fd-exhausted.js';
import { hasRoom, isRoutable } from './eligibility.js';
import { Reservations } from './reservations.js';
import { tcpProbe } from './health.js';
import { spreadOver } from './spread.js';
import type {
  BackendConfig,
  BackendSnapshot,
  BackendState,
  BackendStateChange,
  DeadlineClose,
  DrainComplete,
  DrainableSession,
  DrainOptions,
  DrainOutcome,
  DrainResult,
  DrainStrategy,
  HealthCheckOptions,
  HealthProbe,
  HealthState,
  SetBackendsOptions,
  SetBackendsResult,
} from './types.js';

/** Thrown by drain/undrain/attach/sessionsOn/reapplyStrategy for a name the pool does not know. */
export class UnknownBackendError extends Error {
  readonly backend: string;
  constructor(name: string) {
    super(`unknown backend "${name}"`);
    this.name = 'UnknownBackendError';
    this.backend = name;
  }
}

/**
 * Thrown by the control plane (src/control/control-plane.ts) for a drain that would leave no backend able to take a
 * new session, unless the caller forces it: a typo or a script draining "everything but one" must
 * not take the whole ingest down.
 */
export class LastRoutableBackendError extends Error {
  readonly backend: string;
  constructor(name: string) {
    super(`refusing to drain "${name}": it is the last backend that can take new sessions (healthy and not draining)`);
    this.name = 'LastRoutableBackendError';
    this.backend = name;
  }
}

export interface HealthCheckEvent {
  name: string;
  ok: boolean;
  error?: string;
  /** How long the probe took. */
  durationMs: number;
}

export type BackendPoolEvents = {
  'backend-state': [BackendStateChange];
  drain: [DrainResult];
  undrain: [string];
  'drain-complete': [DrainComplete];
  'deadline-close': [DeadlineClose];
  'backend-added': [string];
  'backend-removed': [string];
  'health-check': [HealthCheckEvent];
};

export interface BackendPoolOptions<S extends DrainableSession = DrainableSession> {
  defaultDrainDeadlineMs: number;
  health: HealthCheckOptions;
  /** What a drain does to each session on the backend (the proxy's: proxy/drain-strategy.ts). */
  strategy: DrainStrategy<S>;
  logger?: Logger;
  /** Injectable for tests; default = `tcpProbe` from health.ts. */
  probe?: HealthProbe;
  /**
   * Storm-free closes: when the drain deadline fires, the remaining sessions are closed
   * one by one, evenly spread over this many ms, instead of all at once. 0 (default) = all at once.
   */
  closeSpreadMs?: number;
}

/** setTimeout's maximum delay; larger values would fire immediately. */
const MAX_TIMER_MS = 2 ** 31 - 1;

interface Entry<S extends DrainableSession> {
  config: Readonly<BackendConfig>;
  health: HealthState;
  /** Last state announced through 'backend-state'. */
  reported: BackendState;
  draining: boolean;
  drainReason?: string;
  drainStartedAt?: number;
  drainDeadlineAt?: number;
  deadlineTimer?: NodeJS.Timeout;
  /** Storm-free closes: timer of the next spread deadline close. */
  cancelSpread?: () => void;
  /** Added with `pendingHealth`: down until its first successful probe. */
  awaitingHealth: boolean;
  drainCompleteEmitted: boolean;
  /** The drain was started by setBackends removing the backend (so re-adding it undrains). */
  drainedByRemoval: boolean;
  removing: boolean;
  sessions: Set<S>;
  /** Strategy outcome per session for the current drain. */
  outcomes: Map<S, DrainOutcome>;
  /** Sessions the deadline already called close() on (never closed twice). */
  deadlineClosed: WeakSet<S>;
  lastCheckAt?: number;
  lastCheckError?: string;
  lastConnectError?: string;
  consecutiveFailures: number;
  consecutiveSuccesses: number;
  connectFailures: number;
  /** A health probe has succeeded since the backend was (re)configured: 'up' is no longer just the starting assumption. */
  probedUp: boolean;
  inflight?: Promise<void>;
}

function toError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

function assertDelay(what: string, v: number): void {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0 || v > MAX_TIMER_MS) {
    throw new RangeError(`${what} must be a number of ms between 0 and ${MAX_TIMER_MS}, got ${v}`);
  }
}

function validateBackends(configs: readonly BackendConfig[]): void {
  if (!Array.isArray(configs)) throw new TypeError('backends must be an array');
  const seen = new Set<string>();
  for (const c of configs) {
    if (!c || typeof c.name !== 'string' || c.name === '') throw new TypeError('backend name must be a non-empty string');
    if (seen.has(c.name)) throw new TypeError(`duplicate backend name "${c.name}"`);
    seen.add(c.name);
    if (typeof c.host !== 'string' || c.host === '') throw new TypeError(`backend "${c.name}": host must be a non-empty string`);
    if (!Number.isInteger(c.port) || c.port < 1 || c.port > 65535) {
      throw new TypeError(`backend "${c.name}": port must be an integer in 1..65535, got ${c.port}`);
    }
    if (c.maxSessions !== undefined && (!Number.isInteger(c.maxSessions) || c.maxSessions < 0)) {
      throw new TypeError(`backend "${c.name}": maxSessions must be a non-negative integer, got ${c.maxSessions}`);
    }
    if (c.weight !== undefined && (typeof c.weight !== 'number' || !Number.isFinite(c.weight) || c.weight < 0)) {
      throw new TypeError(`backend "${c.name}": weight must be a non-negative number, got ${c.weight}`);
    }
  }
}

function freezeConfig(c: BackendConfig): Readonly<BackendConfig> {
  const copy: BackendConfig = { name: c.name, host: c.host, port: c.port };
  if (c.maxSessions !== undefined) copy.maxSessions = c.maxSessions;
  if (c.source !== undefined && c.source !== 'static') copy.source = c.source;
  if (c.weight !== undefined) copy.weight = c.weight;
  return Object.freeze(copy);
}

/** `S`: what the pool's sessions are (what its drain strategy may ask of them). */
export class BackendPool<S extends DrainableSession = DrainableSession> extends EventEmitter<BackendPoolEvents> {
  private readonly entries = new Map<string, Entry<S>>();
  /** Last config of backends deleted by setBackends, so a late attach (pick → connect → reload → attach) still works. */
  private readonly retired = new Map<string, Readonly<BackendConfig>>();
  private defaultDrainDeadlineMs: number;
  private readonly health: Readonly<HealthCheckOptions>;
  private strategy: DrainStrategy<S>;
  private readonly probe: HealthProbe;
  private closeSpreadMs: number;
  private readonly log: Logger | undefined;
  /** Round-robin cursor: index (in insertion order) where the next tie-break search starts. */
  private rr = 0;
  private interval: NodeJS.Timeout | undefined;
  /** Bumped by stop(): results of probes started before are ignored. */
  private generation = 0;
  /** Backends held for the next new sessions (a rebalance's reconnects): `pick` and `place` honour them first. */
  private readonly reservations = new Reservations();

  constructor(backends: BackendConfig[], opts: BackendPoolOptions<S>) {
    super();
    assertDelay('defaultDrainDeadlineMs', opts.defaultDrainDeadlineMs);
    const h = opts.health;
    if (!(h.intervalMs > 0) || !(h.timeoutMs > 0)) throw new RangeError('health intervalMs and timeoutMs must be > 0');
    if (!Number.isInteger(h.rise) || h.rise < 1 || !Number.isInteger(h.fall) || h.fall < 1) {
      throw new RangeError('health rise and fall must be integers >= 1');
    }
    validateBackends(backends);
    this.defaultDrainDeadlineMs = opts.defaultDrainDeadlineMs;
    this.health = Object.freeze({ ...h });
    this.strategy = opts.strategy;
    this.probe = opts.probe ?? tcpProbe;
    if (opts.closeSpreadMs !== undefined) assertDelay('closeSpreadMs', opts.closeSpreadMs);
    this.closeSpreadMs = opts.closeSpreadMs ?? 0;
    this.log = opts.logger?.child({ component: 'backend-pool' });
    for (const b of backends) this.entries.set(b.name, this.newEntry(b));
  }

  /**
   * Drain settings from a configuration reload: drains started from now on use them (a drain in
   * progress keeps its deadline; its sessions that are told later get the new strategy).
   */
  setDrainSettings(opts: Pick<BackendPoolOptions<S>, 'defaultDrainDeadlineMs' | 'closeSpreadMs'> & { strategy?: DrainStrategy<S> }): void {
    assertDelay('defaultDrainDeadlineMs', opts.defaultDrainDeadlineMs);
    if (opts.closeSpreadMs !== undefined) assertDelay('closeSpreadMs', opts.closeSpreadMs);
    this.defaultDrainDeadlineMs = opts.defaultDrainDeadlineMs;
    this.closeSpreadMs = opts.closeSpreadMs ?? 0;
    if (opts.strategy !== undefined) this.strategy = opts.strategy;
  }

  // ───────────────────────────── routing ─────────────────────────────

  /**
   * Least-connections among backends that are health 'up', not draining, below maxSessions and not in
   * `exclude`. Ties are broken round-robin (deterministic, in insertion order), so repeated picks over
   * idle backends alternate. Returns the backend's frozen config, or null when none is eligible.
   * Call `attach` right after (synchronously) so the next pick sees the new session.
   */
  pick(exclude?: ReadonlySet<string>): BackendConfig | null {
    const reserved = this.reservations.take((name) => this.takesNew(name, exclude));
    if (reserved !== null) return this.entries.get(reserved)!.config;
    const best = this.leastLoaded(exclude);
    if (best === null) return null;
    this.rr = (best.index + 1) % this.entries.size;
    return best.entry.config;
  }

  /** The least-connections choice of `pick` (reservations aside), the round robin left where it is. */
  private leastLoaded(exclude?: ReadonlySet<string>): { entry: Entry<S>; index: number } | null {
    const order = [...this.entries.values()];
    const n = order.length;
    let best: Entry<S> | undefined;
    let bestIdx = -1;
    let bestLoad = Infinity;
    let bestDist = Infinity;
    for (let i = 0; i < n; i++) {
      const e = order[i]!;
      if (!isRoutable(e) || !hasRoom(e.sessions.size, e.config.maxSessions)) continue;
      if (exclude?.has(e.config.name)) continue;
      const load = e.sessions.size;
      const dist = (((i - this.rr) % n) + n) % n;
      if (load < bestLoad || (load === bestLoad && dist < bestDist)) {
        best = e;
        bestIdx = i;
        bestLoad = load;
        bestDist = dist;
      }
    }
    return best === undefined ? null : { entry: best, index: bestIdx };
  }

  /**
   * Where a new session would be placed now (by `router`, else least connections), without
   * placing it: no reservation taken, no turn of the balance. A player following its stream
   * waits there for a publisher that is about to arrive (proxy/session/player-follower.ts).
   */
  preview(router: Router | null, req: RouteRequest, exclude?: ReadonlySet<string>): string | null {
    if (router === null) return this.leastLoaded(exclude)?.entry.config.name ?? null;
    return router.preview(req, this.views(exclude)).backend;
  }

  /**
   * Routed pick (routing rules, see routing.ts): the rule matching `req` chooses a group and
   * the group's balance or sticky placement chooses among its usable backends (health 'up', not
   * draining, below maxSessions, not in `exclude`). Call `attach` right after, as with `pick`.
   */
  place(router: Router, req: RouteRequest, exclude?: ReadonlySet<string>): { target: BackendConfig | null; placement: Placement } {
    const views = this.views(exclude);
    const placement = router.place(req, views);
    if (placement.backend !== null && placement.how !== 'sticky' && placement.how !== 'sticky-moved') {
      // A balanced (not sticky) placement may take a reservation among the members of its group.
      const members = new Set(router.members(placement.rule, views).map((v) => v.name));
      const reserved = this.reservations.take((name) => members.has(name) && this.takesNew(name, exclude));
      if (reserved !== null) return { target: this.entries.get(reserved)!.config, placement: { ...placement, backend: reserved } };
    }
    return { target: placement.backend === null ? null : this.entries.get(placement.backend)!.config, placement };
  }

  /** The backends as the routing rules see them. */
  private views(exclude?: ReadonlySet<string>): BackendView[] {
    const views: BackendView[] = [];
    for (const e of this.entries.values()) {
      const c = e.config;
      views.push({
        name: c.name,
        source: c.source ?? 'static',
        sessions: e.sessions.size,
        ...(c.maxSessions !== undefined ? { maxSessions: c.maxSessions } : {}),
        ...(c.weight !== undefined ? { weight: c.weight } : {}),
        usable: isRoutable(e) && !(exclude?.has(c.name) ?? false),
      });
    }
    return views;
  }

  /**
   * Registers a live session on a backend; returns an idempotent detach (call it when the session
   * ends). If the backend is already draining (pick/drain race), the strategy is applied immediately
   * and the session is closed at the existing drain deadline (immediately if it has passed).
   * A backend deleted by `setBackends` while the session was connecting is re-created as a draining,
   * pending-removal backend (reason 'removed', default deadline) holding just that session, and deleted
   * again when it detaches. Throws UnknownBackendError for a name the pool never had.
   */
  attach(backendName: string, session: S): () => void {
    const entry = this.entries.get(backendName) ?? this.resurrect(backendName);
    entry.sessions.add(session);
    if (entry.draining) {
      entry.drainCompleteEmitted = false;
      const outcome = this.applyStrategy(entry, session);
      this.log?.info({ backend: backendName, session: session.id, outcome }, 'session attached to a draining backend');
      if (entry.sessions.has(session) && !entry.deadlineTimer) this.armDeadline(entry);
    }
    let detached = false;
    return () => {
      if (detached) return;
      detached = true;
      this.detach(entry, session);
    };
  }

  /**
   * Passive health: a connection attempt to the backend failed. After `fall` consecutive failures
   * (shared with active checks) the backend is marked down. Unknown names are ignored (the backend may
   * have been removed by a reload in the meantime).
   */
  reportConnectFailure(name: string, err: Error): void {
    const entry = this.entries.get(name);
    if (!entry) return;
    entry.connectFailures++;
    entry.consecutiveFailures++;
    entry.consecutiveSuccesses = 0;
    entry.lastConnectError = err?.message ?? String(err);
    this.log?.warn({ backend: name, err: entry.lastConnectError, consecutiveFailures: entry.consecutiveFailures }, 'backend connect failed');
    if (entry.health === 'up' && entry.consecutiveFailures >= this.health.fall) {
      this.setHealth(entry, 'down', `${entry.consecutiveFailures} consecutive connect failures`);
    }
  }

  /** A connection attempt succeeded; resets the consecutive-failure streak. Unknown names ignored. */
  reportConnectSuccess(name: string): void {
    const entry = this.entries.get(name);
    if (entry) entry.consecutiveFailures = 0;
  }

  // ───────────────────────────── draining ─────────────────────────────

  /**
   * Whether `name` can take new sessions now (healthy, not draining, not being removed) and no other
   * backend can: draining it would leave none. Throws UnknownBackendError.
   */
  isLastRoutable(name: string): boolean {
    const entry = this.entries.get(name);
    if (!entry) throw new UnknownBackendError(name);
    if (!isRoutable(entry)) return false;
    for (const e of this.entries.values()) if (e !== entry && isRoutable(e)) return false;
    return true;
  }

  /** No backend can take a new session: every healthy one is draining (or being removed). */
  get allRoutableDraining(): boolean {
    let healthy = false;
    for (const e of this.entries.values()) {
      if (isRoutable(e)) return false;
      if (e.health === 'up') healthy = true;
    }
    return healthy;
  }

  /** Some backend is healthy by a probe (or checks are off), not draining: the first health round is in. */
  get hasProvenRoutable(): boolean {
    for (const e of this.entries.values()) if (isRoutable(e) && (e.probedUp || !this.health.enabled)) return true;
    return false;
  }

  /**
   * Marks the backend draining (no new sessions), applies the strategy to every session on it that has
   * not been told yet (outcome missing or 'waiting'), and arms one deadline timer that closes every
   * session still there with reason 'drain-deadline'.
   * Re-drain: `opts.deadlineMs` given ⇒ deadline = now + deadlineMs (shorten or extend); omitted ⇒ the
   * current deadline is kept. `opts.reason` replaces the reason when given.
   * Throws UnknownBackendError, or RangeError for an invalid deadline.
   */
  drain(name: string, opts: DrainOptions = {}): DrainResult {
    const entry = this.entries.get(name);
    if (!entry) throw new UnknownBackendError(name);
    const deadlineMs = opts.deadlineMs ?? this.defaultDrainDeadlineMs;
    assertDelay('deadlineMs', deadlineMs);
    const now = Date.now();
    const first = !entry.draining;
    if (first) {
      entry.draining = true;
      entry.drainStartedAt = now;
      entry.drainDeadlineAt = now + deadlineMs;
      entry.drainCompleteEmitted = false;
      entry.drainReason = opts.reason;
      entry.outcomes.clear();
    } else {
      if (opts.deadlineMs !== undefined) entry.drainDeadlineAt = now + deadlineMs;
      if (opts.reason !== undefined) entry.drainReason = opts.reason;
    }
    this.refreshState(entry);

    const sessions = [...entry.sessions];
    const outcomes: Partial<Record<DrainOutcome, number>> = {};
    for (const s of sessions) {
      const prev = entry.outcomes.get(s);
      const outcome = prev === undefined || prev === 'waiting' ? this.applyStrategy(entry, s) : prev;
      outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
    }
    const result: DrainResult = {
      backend: name,
      sessions: sessions.length,
      goAwaySent: outcomes['go-away'] ?? 0,
      waiting: outcomes['waiting'] ?? 0,
      deadlineAt: entry.drainDeadlineAt!,
      outcomes,
    };
    this.log?.info({ ...result, reason: entry.drainReason, redrain: !first }, 'draining backend');
    if (entry.sessions.size > 0) this.armDeadline(entry);
    this.fire('drain', result);
    if (entry.sessions.size === 0 && !entry.drainCompleteEmitted) this.completeDrain(entry);
    return result;
  }

  /**
   * Clears the draining flag and cancels the deadline; the backend takes new sessions again (sessions
   * already told to go away will still leave). Returns false when it was not draining (no-op), or when
   * the backend is pending removal (it stays draining). Throws UnknownBackendError.
   */
  undrain(name: string): boolean {
    const entry = this.entries.get(name);
    if (!entry) throw new UnknownBackendError(name);
    if (!entry.draining) return false;
    if (entry.removing) {
      this.log?.warn({ backend: name }, 'not undraining a backend that is pending removal');
      return false;
    }
    this.clearDeadline(entry);
    entry.draining = false;
    entry.drainReason = undefined;
    entry.drainStartedAt = undefined;
    entry.drainDeadlineAt = undefined;
    entry.drainCompleteEmitted = false;
    entry.drainedByRemoval = false;
    entry.outcomes.clear();
    entry.deadlineClosed = new WeakSet();
    this.log?.info({ backend: name }, 'undrained backend');
    this.refreshState(entry);
    this.fire('undrain', name);
    return true;
  }

  /**
   * Re-applies the strategy to one session if its backend is draining and the session was
   * not told yet (e.g. `supportsGoAway` only became known after attach, when the connect command was
   * parsed). Returns the session's outcome, or undefined if the backend is not draining or the
   * session is not attached to it.
   */
  reapplyStrategy(backendName: string, session: S): DrainOutcome | undefined {
    const entry = this.entries.get(backendName);
    if (!entry) throw new UnknownBackendError(backendName);
    if (!entry.draining || !entry.sessions.has(session)) return undefined;
    const prev = entry.outcomes.get(session);
    if (prev !== undefined && prev !== 'waiting') return prev;
    return this.applyStrategy(entry, session);
  }

  /**
   * Holds `name` for the next new session placed by least connections or a balanced rule, for
   * `ttlMs` (a rebalance steering the reconnect of a session it moves; see reservations.ts).
   * Throws UnknownBackendError.
   */
  reserve(name: string, ttlMs: number): void {
    if (!this.entries.has(name)) throw new UnknownBackendError(name);
    this.reservations.add(name, ttlMs);
  }

  /** Routable, below its cap, not excluded. */
  private takesNew(name: string, exclude?: ReadonlySet<string>): boolean {
    const e = this.entries.get(name);
    return e !== undefined && isRoutable(e) && hasRoom(e.sessions.size, e.config.maxSessions) && !(exclude?.has(name) ?? false);
  }

  // ───────────────────────────── inspection ─────────────────────────────

  /** Sessions currently attached to the backend (a copy). Throws UnknownBackendError. */
  sessionsOn(name: string): S[] {
    const entry = this.entries.get(name);
    if (!entry) throw new UnknownBackendError(name);
    return [...entry.sessions];
  }

  /** Snapshots of every backend (including ones pending removal), in insertion order. */
  list(): BackendSnapshot[] {
    return [...this.entries.values()].map((e) => this.snapshot(e));
  }

  get(name: string): BackendSnapshot | undefined {
    const entry = this.entries.get(name);
    return entry ? this.snapshot(entry) : undefined;
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  // ───────────────────────────── reload ─────────────────────────────

  /**
   * Reload (SIGHUP). New names are added (health 'up'). Existing names get the new config for NEW
   * sessions (live sessions keep their sockets); a host/port change also resets health to 'up' and the
   * check counters, as for a new backend. Names no longer present are drained with reason 'removed'
   * and the default deadline (an operator drain already in progress is kept as is) and deleted once
   * their last session detaches (immediately if they have none). Re-adding a backend that is pending
   * removal cancels the removal (and the drain, if the removal started it).
   * Throws TypeError on invalid or duplicate configs, leaving the pool unchanged.
   */
  setBackends(configs: BackendConfig[], opts: SetBackendsOptions = {}): SetBackendsResult {
    validateBackends(configs);
    const result: SetBackendsResult = { added: [], updated: [], removed: [], removing: [] };
    const wanted = new Set(configs.map((c) => c.name));
    const toProbe: Entry<S>[] = [];

    for (const c of configs) {
      const entry = this.entries.get(c.name);
      if (!entry) {
        this.retired.delete(c.name);
        const added = this.newEntry(c);
        if (opts.pendingHealth?.has(c.name)) {
          this.awaitHealth(added);
          toProbe.push(added);
        }
        this.entries.set(c.name, added);
        result.added.push(c.name);
        this.log?.info({ backend: c.name, host: c.host, port: c.port, source: c.source ?? 'static', awaitingHealth: added.awaitingHealth }, 'backend added');
        this.fire('backend-added', c.name);
        continue;
      }
      if (entry.removing) {
        entry.removing = false;
        if (entry.drainedByRemoval) this.undrain(c.name);
        this.log?.info({ backend: c.name }, 'backend re-added, removal cancelled');
      }
      const old = entry.config;
      if (old.host !== c.host || old.port !== c.port || old.maxSessions !== c.maxSessions) {
        entry.config = freezeConfig(c);
        result.updated.push(c.name);
        this.log?.info({ backend: c.name, from: old, to: entry.config }, 'backend updated');
        if (old.host !== c.host || old.port !== c.port) {
          entry.consecutiveFailures = 0;
          entry.consecutiveSuccesses = 0;
          entry.lastCheckError = undefined;
          if (opts.pendingHealth?.has(c.name)) {
            this.awaitHealth(entry);
            toProbe.push(entry);
          } else {
            entry.awaitingHealth = false;
            if (entry.health !== 'up') this.setHealth(entry, 'up', 'address changed');
          }
        }
      } else if ((old.source ?? 'static') !== (c.source ?? 'static') || old.weight !== c.weight) {
        // Not an "update" for the caller (sessions are unaffected): only what snapshots show and weighting.
        entry.config = freezeConfig(c);
      }
    }

    for (const entry of [...this.entries.values()]) {
      const name = entry.config.name;
      if (wanted.has(name) || entry.removing) continue;
      entry.removing = true;
      if (entry.sessions.size === 0) {
        this.deleteEntry(entry);
        result.removed.push(name);
        continue;
      }
      result.removing.push(name);
      entry.drainedByRemoval = !entry.draining;
      if (!entry.draining) this.drain(name, { reason: 'removed' });
    }
    // Backends that join once healthy: probe them now when checks are running (else start() does).
    if (this.interval) for (const e of toProbe) void this.checkEntry(e);
    return result;
  }

  // ───────────────────────────── health checks ─────────────────────────────

  /** Starts periodic health checks (one unref'd interval for the pool) and runs a first round now. */
  start(): void {
    if (this.interval) return;
    this.interval = setInterval(() => void this.checkNow(), this.health.intervalMs);
    this.interval.unref();
    for (const e of this.entries.values()) {
      if (e.draining && e.sessions.size > 0 && !e.deadlineTimer) this.armDeadline(e);
    }
    void this.checkNow();
  }

  /**
   * Clears every timer (health interval and drain deadlines) so the process can exit; results of probes
   * still in flight are ignored. Drain deadlines are re-armed by a later `start()`.
   */
  stop(): void {
    if (this.interval) clearInterval(this.interval);
    this.interval = undefined;
    this.generation++;
    for (const e of this.entries.values()) this.clearDeadline(e);
  }

  /**
   * Runs one round of health checks now (what each interval tick does) and resolves when the
   * probes settle. With checks disabled only backends marked down are probed. A backend with a probe
   * already in flight is not probed twice; its pending probe is awaited instead.
   */
  async checkNow(): Promise<void> {
    const pending: Promise<void>[] = [];
    for (const e of this.entries.values()) {
      if (e.removing) continue;
      if (!this.health.enabled && e.health === 'up') continue;
      pending.push(this.checkEntry(e));
    }
    await Promise.all(pending);
  }

  // ───────────────────────────── internals ─────────────────────────────

  private newEntry(c: BackendConfig): Entry<S> {
    return {
      config: freezeConfig(c),
      health: 'up',
      reported: 'up',
      draining: false,
      drainCompleteEmitted: false,
      drainedByRemoval: false,
      removing: false,
      awaitingHealth: false,
      sessions: new Set(),
      outcomes: new Map(),
      deadlineClosed: new WeakSet(),
      consecutiveFailures: 0,
      consecutiveSuccesses: 0,
      connectFailures: 0,
      probedUp: false,
    };
  }

  /** See attach(): a session routed to a backend that a reload deleted before the session attached. */
  private resurrect(name: string): Entry<S> {
    const config = this.retired.get(name);
    if (!config) throw new UnknownBackendError(name);
    this.retired.delete(name);
    const e = this.newEntry(config);
    const now = Date.now();
    e.removing = true;
    e.drainedByRemoval = true;
    e.draining = true;
    e.drainReason = 'removed';
    e.drainStartedAt = now;
    e.drainDeadlineAt = now + this.defaultDrainDeadlineMs;
    e.reported = 'draining';
    this.entries.set(name, e);
    this.log?.warn({ backend: name }, 'session attached to a backend removed by reload; draining it');
    return e;
  }

  private snapshot(e: Entry<S>): BackendSnapshot {
    const s: BackendSnapshot = {
      name: e.config.name,
      host: e.config.host,
      port: e.config.port,
      state: this.stateOf(e),
      health: e.health,
      draining: e.draining,
      sessions: e.sessions.size,
      consecutiveFailures: e.consecutiveFailures,
      consecutiveSuccesses: e.consecutiveSuccesses,
      connectFailures: e.connectFailures,
      removing: e.removing,
      source: e.config.source ?? 'static',
    };
    if (e.config.weight !== undefined) s.weight = e.config.weight;
    if (e.awaitingHealth) s.awaitingHealth = true;
    if (e.drainReason !== undefined) s.drainReason = e.drainReason;
    if (e.drainStartedAt !== undefined) s.drainStartedAt = e.drainStartedAt;
    if (e.drainDeadlineAt !== undefined) s.drainDeadlineAt = e.drainDeadlineAt;
    if (e.config.maxSessions !== undefined) s.maxSessions = e.config.maxSessions;
    if (e.lastCheckAt !== undefined) s.lastCheckAt = e.lastCheckAt;
    if (e.lastCheckError !== undefined) s.lastCheckError = e.lastCheckError;
    if (e.lastConnectError !== undefined) s.lastConnectError = e.lastConnectError;
    return s;
  }

  private stateOf(e: Entry<S>): BackendState {
    return e.draining ? 'draining' : e.health;
  }

  private refreshState(e: Entry<S>): void {
    const to = this.stateOf(e);
    if (to === e.reported) return;
    const from = e.reported;
    e.reported = to;
    this.fire('backend-state', { name: e.config.name, from, to });
  }

  private setHealth(e: Entry<S>, health: HealthState, why: string): void {
    if (e.health === health) return;
    e.health = health;
    const log = { backend: e.config.name, health, why };
    if (health === 'down') this.log?.warn(log, 'backend marked down');
    else this.log?.info(log, 'backend marked up');
    this.refreshState(e);
  }

  private applyStrategy(e: Entry<S>, session: S): DrainOutcome {
    let outcome: DrainOutcome;
    try {
      outcome = this.strategy.begin(session, e.config.name);
    } catch (err) {
      this.log?.error({ err: toError(err), backend: e.config.name, session: session.id }, 'drain strategy threw');
      outcome = 'waiting';
    }
    if (e.sessions.has(session)) e.outcomes.set(session, outcome);
    this.log?.debug({ backend: e.config.name, session: session.id, outcome }, 'drain strategy applied');
    return outcome;
  }

  private detach(e: Entry<S>, session: S): void {
    if (!e.sessions.delete(session)) return;
    e.outcomes.delete(session);
    if (e.sessions.size > 0) return;
    if (e.draining && !e.drainCompleteEmitted) this.completeDrain(e);
    if (e.removing && this.entries.get(e.config.name) === e) this.deleteEntry(e);
  }

  private completeDrain(e: Entry<S>): void {
    e.drainCompleteEmitted = true;
    this.clearDeadline(e);
    const durationMs = Date.now() - (e.drainStartedAt ?? Date.now());
    this.log?.info({ backend: e.config.name, durationMs, reason: e.drainReason }, 'drain complete: no session left on backend');
    this.fire('drain-complete', { name: e.config.name, durationMs });
  }

  private deleteEntry(e: Entry<S>): void {
    this.clearDeadline(e);
    this.entries.delete(e.config.name);
    this.retired.set(e.config.name, e.config);
    this.log?.info({ backend: e.config.name }, 'backend removed');
    this.fire('backend-removed', e.config.name);
  }

  private armDeadline(e: Entry<S>): void {
    this.clearDeadline(e);
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, (e.drainDeadlineAt ?? 0) - Date.now()));
    e.deadlineTimer = setTimeout(() => this.onDeadline(e), delay);
    e.deadlineTimer.unref?.();
  }

  private clearDeadline(e: Entry<S>): void {
    if (e.deadlineTimer) clearTimeout(e.deadlineTimer);
    e.deadlineTimer = undefined;
    e.cancelSpread?.();
    e.cancelSpread = undefined;
  }

  /** Down (not picked) until the first successful probe; see SetBackendsOptions.pendingHealth. */
  private awaitHealth(e: Entry<S>): void {
    e.awaitingHealth = true;
    e.lastCheckError = 'awaiting its first health check';
    if (e.health !== 'down') this.setHealth(e, 'down', 'joins once healthy');
  }

  private closeAtDeadline(e: Entry<S>, s: S): void {
    e.deadlineClosed.add(s);
    try {
      s.close('drain-deadline');
    } catch (err) {
      this.log?.error({ err: toError(err), backend: e.config.name, session: s.id }, 'session close threw');
    }
  }

  /**
   * Storm-free closes: the remaining sessions are closed one at a time, evenly over `closeSpreadMs`
   * (the first at once), so their clients do not all reconnect in the same instant. Sessions that
   * leave on their own meanwhile are skipped; undrain/stop cancel the closes still planned.
   */
  private spreadDeadlineCloses(e: Entry<S>, sessions: S[]): void {
    this.log?.warn(
      { backend: e.config.name, sessions: sessions.length, spreadMs: this.closeSpreadMs },
      'drain deadline reached, closing remaining sessions spread over the window',
    );
    e.cancelSpread = spreadOver(
      sessions,
      this.closeSpreadMs,
      (s) => {
        if (!e.draining || !e.sessions.has(s) || e.deadlineClosed.has(s)) return false;
        this.closeAtDeadline(e, s);
        return true;
      },
      (closed) => {
        e.cancelSpread = undefined;
        this.log?.warn({ backend: e.config.name, closed }, 'drain deadline: spread closes done');
        this.fire('deadline-close', { name: e.config.name, closed });
      },
    );
  }

  private onDeadline(e: Entry<S>): void {
    e.deadlineTimer = undefined;
    if (!e.draining) return;
    const remaining = [...e.sessions].filter((s) => !e.deadlineClosed.has(s));
    if (this.closeSpreadMs > 0 && remaining.length > 1) {
      this.spreadDeadlineCloses(e, remaining);
      return;
    }
    let closed = 0;
    for (const s of [...e.sessions]) {
      if (e.deadlineClosed.has(s)) continue;
      e.deadlineClosed.add(s);
      closed++;
      try {
        s.close('drain-deadline');
      } catch (err) {
        this.log?.error({ err: toError(err), backend: e.config.name, session: s.id }, 'session close threw');
      }
    }
    this.log?.warn({ backend: e.config.name, closed }, 'drain deadline reached, closed remaining sessions');
    this.fire('deadline-close', { name: e.config.name, closed });
  }

  /**
   * One probe for one backend. At most one in flight per backend. The probe must honour its timeout;
   * as a safety net a probe that has not settled after 2 × timeoutMs counts as failed and frees the slot.
   */
  private checkEntry(e: Entry<S>): Promise<void> {
    if (e.inflight) return e.inflight;
    const gen = this.generation;
    const cfg = e.config;
    const startedAt = performance.now();
    const p: Promise<void> = this.runProbe(cfg)
      .then(
        () => undefined,
        (err: unknown) => toError(err),
      )
      .then((err) => {
        if (gen !== this.generation || this.entries.get(cfg.name) !== e || e.config !== cfg) return;
        this.recordCheck(e, err, performance.now() - startedAt);
      })
      .finally(() => {
        if (e.inflight === p) e.inflight = undefined;
      });
    e.inflight = p;
    return p;
  }

  private runProbe(cfg: BackendConfig): Promise<void> {
    const { timeoutMs } = this.health;
    return new Promise<void>((resolve, reject) => {
      const guardMs = Math.min(MAX_TIMER_MS, timeoutMs * 2);
      const guard = setTimeout(() => reject(new Error(`health probe did not settle within ${guardMs} ms`)), guardMs);
      guard.unref?.();
      const done = (err?: unknown) => {
        clearTimeout(guard);
        if (err === undefined) resolve();
        else reject(err);
      };
      try {
        this.probe(cfg, timeoutMs).then(
          () => done(),
          (err: unknown) => done(err ?? new Error('probe failed')),
        );
      } catch (err) {
        done(err ?? new Error('probe failed'));
      }
    });
  }

  private recordCheck(e: Entry<S>, err: Error | undefined, durationMs: number): void {
    e.lastCheckAt = Date.now();
    const name = e.config.name;
    if (!err) {
      e.lastCheckError = undefined;
      e.consecutiveSuccesses++;
      e.consecutiveFailures = 0;
      e.probedUp = true;
      this.fire('health-check', { name, ok: true, durationMs });
      if (e.awaitingHealth) {
        e.awaitingHealth = false;
        this.setHealth(e, 'up', 'first successful health check');
      } else if (e.health === 'down' && e.consecutiveSuccesses >= this.health.rise) {
        this.setHealth(e, 'up', `${e.consecutiveSuccesses} consecutive successful checks`);
      }
    } else {
      if (isFdExhausted(err)) {
        // This process is out of file descriptors: the probe says nothing about the backend.
        this.log?.debug({ backend: name, err: err.message }, 'health check skipped: out of file descriptors');
        return;
      }
      e.lastCheckError = err.message;
      e.consecutiveFailures++;
      e.consecutiveSuccesses = 0;
      this.log?.debug({ backend: name, err: err.message }, 'health check failed');
      this.fire('health-check', { name, ok: false, error: err.message, durationMs });
      if (e.health === 'up' && e.consecutiveFailures >= this.health.fall) {
        this.setHealth(e, 'down', `${e.consecutiveFailures} consecutive failed checks: ${err.message}`);
      }
    }
  }

  private fire<K extends keyof BackendPoolEvents>(event: K, ...args: BackendPoolEvents[K]): void {
    try {
      (this.emit as (event: K, ...a: BackendPoolEvents[K]) => boolean).call(this, event, ...args);
    } catch (err) {
      this.log?.error({ err: toError(err), event }, 'BackendPool event listener threw');
    }
  }
}
