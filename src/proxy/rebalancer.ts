/**
 * Rebalancing on one replica: plans with `balancer/rebalance-plan.ts` over this replica's sessions,
 * then moves them at a pace (docs/operations.md#rebalancing):
 *  - a session that announced Go Away or E-RTMP reconnect is told to reconnect (`askToReconnect`,
 *    as a drain does) and its target backend is reserved in the pool for the next new session, so
 *    the reconnect lands there (pool.reserve; a reconnect cannot be recognised before its stream
 *    key is read, and steering by key would need late binding everywhere);
 *  - any other session is migrated proxy-side to the target (`Session.migrate(from, to)`) when
 *    migrations are configured (`drain.nonCapable: migrate`), else it is not movable.
 * At most `maxInFlight` moves at once; a move ends when the told session is gone (`moved`), the
 * migrated one relays to its target (`migrated`), it failed (`failed`), or after `moveTimeoutMs`
 * (`timeout`). A session younger than `minAgeMs`, or moved (its id or its stream) within
 * `windowMs`, is not moved. Every move is counted (`rebalance_moves_total{result}`) and logged.
 */
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import type { BackendPool } from '../balancer/pool.js';
import {
  type PlanBackend,
  type PlanSession,
  type PlannedMove,
  type RebalanceBy,
  type RebalancePlan,
  planRebalance,
  sessionLoads,
} from '../balancer/rebalance-plan.js';
import { isRoutable } from '../balancer/eligibility.js';
import { type BackendView, rendezvous, withoutQuery } from '../balancer/routing.js';
import { askToReconnect } from './drain-strategy.js';
import type { Count } from './observer.js';
import type { Session } from './session/session.js';

/** `rebalance_moves_total{result}`. */
export type RebalanceMoveResult = 'moved' | 'migrated' | 'failed' | 'timeout' | 'skipped';

export interface RebalanceSettings {
  by: RebalanceBy;
  maxInFlight: number;
  minAgeMs: number;
  windowMs: number;
  moveTimeoutMs: number;
}

/** What a caller may change for one run. */
export interface RebalanceRequest {
  dryRun?: boolean;
  /** Default `rebalance.by`. */
  by?: RebalanceBy;
  maxInFlight?: number;
  minAgeMs?: number;
  /**
   * Moves of this replica's share of a fleet plan: at most this many from → to, the sessions in
   * `ids` first (control/rebalance-command.ts `planFleet`); absent = the local plan.
   */
  quota?: readonly { from: string; to: string; count: number; ids?: readonly string[] }[];
  reason?: string;
}

/**
 * A planned move and when it is expected to happen once it starts: a publisher told to reconnect
 * moves when it reconnects; one migrated proxy-side moves at its next keyframe, predicted from the
 * keyframe interval the proxy measures (null when not measured yet).
 */
export interface MoveEstimate extends PlannedMove {
  how: 'reconnect' | 'migrate';
  nextKeyframeInMs: number | null;
  keyframeIntervalMs: number | null;
}

/** A plan whose moves say how and when each happens. */
export type EstimatedPlan = Omit<RebalancePlan, 'moves'> & { moves: MoveEstimate[] };

export interface RebalanceStatus {
  /** A run is moving sessions. */
  running: boolean;
  startedAt: number | null;
  planned: number;
  pending: number;
  inFlight: number;
  results: Record<RebalanceMoveResult, number>;
  plan: EstimatedPlan | null;
}

interface InFlight {
  move: PlannedMove;
  session: Session;
  kind: 'reconnect' | 'migrate';
  until: number;
}

const TICK_MS = 100;
/** Remembered moved sessions and streams (oldest dropped first). */
const MAX_RECENT = 10_000;

const emptyResults = (): Record<RebalanceMoveResult, number> => ({ moved: 0, migrated: 0, failed: 0, timeout: 0, skipped: 0 });

export class Rebalancer {
  private queue: PlannedMove[] = [];
  private readonly inFlight = new Map<string, InFlight>();
  /** Session ids and stream digests moved, with when. */
  private readonly recent = new Map<string, number>();
  private results = emptyResults();
  private plan: EstimatedPlan | null = null;
  private startedAt: number | null = null;
  private maxInFlight: number;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly pool: Pick<BackendPool, 'list' | 'reserve'>,
    private readonly sessions: () => Iterable<Session>,
    private readonly settingsNow: () => RebalanceSettings,
    private readonly erpc: () => boolean,
    private readonly moves: Count<'result'>,
    private readonly log: Logger,
  ) {
    this.maxInFlight = settingsNow().maxInFlight;
  }

  /** The settings as configured now (a reload changes them for the next run and move). */
  private get settings(): RebalanceSettings {
    return this.settingsNow();
  }

  /** The plan over this replica's sessions now (nothing moves), each move with how and when it is expected. */
  planNow(req: RebalanceRequest = {}): EstimatedPlan {
    const plan = this.planMoves(req);
    const byId = new Map<string, Session>();
    for (const s of this.sessions()) byId.set(s.id, s);
    return { ...plan, moves: plan.moves.map((m) => this.estimate(m, byId.get(m.session))) };
  }

  private estimate(m: PlannedMove, s: Session | undefined): MoveEstimate {
    const media = s?.traffic.media() ?? null;
    // As `begin` will ask (askToReconnect), without telling it anything now.
    const told = s !== undefined && (s.supportsGoAway || (s.capability === 'erpc' && this.erpc()));
    return {
      ...m,
      how: told ? 'reconnect' : 'migrate',
      nextKeyframeInMs: media?.nextKeyframeInMs ?? null,
      keyframeIntervalMs: media?.keyframeIntervalMs ?? null,
    };
  }

  private planMoves(req: RebalanceRequest): RebalancePlan {
    const now = Date.now();
    this.forget(now);
    const list = this.pool.list();
    const views: BackendView[] = list.map((b) => ({
      name: b.name,
      source: b.source,
      sessions: b.sessions,
      usable: isRoutable(b),
      ...(b.maxSessions !== undefined ? { maxSessions: b.maxSessions } : {}),
      ...(b.weight !== undefined ? { weight: b.weight } : {}),
    }));
    const backends: PlanBackend[] = list.map((b) => ({
      name: b.name,
      routable: isRoutable(b),
      ...(b.weight !== undefined ? { weight: b.weight } : {}),
      ...(b.maxSessions !== undefined ? { maxSessions: b.maxSessions } : {}),
    }));
    const recent = new Set<string>();
    const sessions: PlanSession[] = [];
    const bitrates: (number | null)[] = [];
    for (const s of this.sessions()) {
      // Players are not planned: they follow their stream's publisher (the load rebalanced is publishers).
      if (s.finished || s.backendName === null || s.view.facts.role === 'player') continue;
      if (this.recent.has(s.id) || this.recent.has(streamOf(s) ?? '')) recent.add(s.id);
      const p: PlanSession = { id: s.id, backend: s.backendName, ageMs: now - s.startedAt, movable: this.movable(s) };
      const allowed = allowedFor(s, views);
      if (allowed !== undefined) p.allowed = allowed;
      sessions.push(p);
      bitrates.push(s.traffic.media()?.bitrate ?? null);
    }
    const by = req.by ?? this.settings.by;
    if (by === 'bitrate') sessionLoads(bitrates).forEach((load, i) => (sessions[i]!.load = load));
    const plan = planRebalance(backends, sessions, { minAgeMs: req.minAgeMs ?? this.settings.minAgeMs, recentlyMoved: recent, by });
    if (req.quota === undefined) return plan;
    // A fleet plan's share: this replica's moves, at most `count` per (from, to), its own sessions picked by the local plan's order.
    const left = new Map(req.quota.map((q) => [`${q.from}\0${q.to}`, q.count]));
    const byFrom = new Map<string, PlanSession[]>();
    for (const s of sessions) {
      if (!s.movable || s.ageMs < (req.minAgeMs ?? this.settings.minAgeMs) || recent.has(s.id)) continue;
      byFrom.set(s.backend, [...(byFrom.get(s.backend) ?? []), s]);
    }
    const moves: PlannedMove[] = [];
    const takes = new Set(list.filter((b) => isRoutable(b)).map((b) => b.name));
    for (const q of req.quota) {
      // A backend this replica does not have, or that cannot take sessions here, gets nothing from it.
      if (!takes.has(q.to)) continue;
      // The sessions the fleet plan chose first (by bitrate they are not interchangeable), then the oldest.
      const named = new Set(q.ids ?? []);
      const candidates = (byFrom.get(q.from) ?? []).sort((a, b) => Number(named.has(b.id)) - Number(named.has(a.id)) || b.ageMs - a.ageMs);
      for (const s of [...candidates]) {
        const k = `${q.from}\0${q.to}`;
        if ((left.get(k) ?? 0) <= 0) break;
        if (s.allowed !== undefined && !s.allowed.has(q.to)) continue;
        moves.push({ session: s.id, from: q.from, to: q.to });
        left.set(k, left.get(k)! - 1);
        // Taken: not given to the next quota from the same backend.
        candidates.splice(candidates.indexOf(s), 1);
      }
    }
    return { ...plan, moves };
  }

  /** Plans and, unless `dryRun`, starts moving (a run in progress gets the new plan's moves instead of its pending ones). */
  start(req: RebalanceRequest = {}): RebalanceStatus {
    const plan = this.planNow(req);
    if (req.dryRun === true) return { ...this.status(), plan };
    this.plan = plan;
    this.queue = plan.moves.map((m) => ({ session: m.session, from: m.from, to: m.to })).filter((m) => !this.inFlight.has(m.session));
    this.results = emptyResults();
    this.startedAt = Date.now();
    this.maxInFlight = Math.max(1, req.maxInFlight ?? this.settings.maxInFlight);
    this.log.info(
      { by: plan.by, moves: plan.moves.length, targets: plan.targets, loads: plan.loads, counts: plan.counts, stuck: plan.stuck, reason: req.reason },
      'rebalance started',
    );
    this.pump();
    return this.status();
  }

  status(): RebalanceStatus {
    return {
      running: this.queue.length > 0 || this.inFlight.size > 0,
      startedAt: this.startedAt,
      planned: this.plan?.moves.length ?? 0,
      pending: this.queue.length,
      inFlight: this.inFlight.size,
      results: { ...this.results },
      plan: this.plan,
    };
  }

  stop(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.queue = [];
    this.inFlight.clear();
  }

  /** Movable at all: it can be told to reconnect, or migrated. */
  private movable(s: Session): boolean {
    if (s.supportsGoAway) return true;
    if (s.capability === 'erpc' && this.erpc()) return true;
    return s.capability === 'none' && s.settings.migration !== undefined && s.settings.migration !== null && s.view.facts.publishing;
  }

  private pump(): void {
    const now = Date.now();
    for (const f of [...this.inFlight.values()]) {
      const r = this.outcome(f, now);
      if (r !== null) this.finish(f.move, r, f.session);
    }
    while (this.inFlight.size < this.maxInFlight && this.queue.length > 0) this.begin(this.queue.shift()!, now);
    if (this.inFlight.size > 0 && this.timer === undefined) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        this.pump();
      }, TICK_MS);
      this.timer.unref();
    }
    if (this.inFlight.size === 0 && this.queue.length === 0 && this.startedAt !== null && this.plan !== null) {
      this.log.info({ results: this.results, durationMs: now - this.startedAt }, 'rebalance done');
    }
  }

  private begin(move: PlannedMove, now: number): void {
    const s = this.find(move);
    if (s === null) return this.finish(move, 'skipped', null);
    const ask = askToReconnect(s, this.erpc());
    if (ask === 'go-away' || ask === 'reconnect-request') {
      // Known: planned over this pool's backends (a reload since may have removed it: the reservation is then moot).
      if (this.pool.list().some((b) => b.name === move.to)) this.pool.reserve(move.to, this.settings.moveTimeoutMs);
      this.remember(s, now);
      this.inFlight.set(s.id, { move, session: s, kind: 'reconnect', until: now + this.settings.moveTimeoutMs });
      this.log.info({ session: s.id, from: move.from, to: move.to, how: ask }, 'rebalance: session told to reconnect');
      return;
    }
    if (ask === 'not-capable' && s.migrate(move.from, move.to) === 'migrating') {
      this.remember(s, now);
      this.inFlight.set(s.id, { move, session: s, kind: 'migrate', until: now + this.settings.moveTimeoutMs });
      this.log.info({ session: s.id, from: move.from, to: move.to, how: 'migration' }, 'rebalance: session migrating');
      return;
    }
    this.finish(move, ask === 'not-capable' ? 'failed' : 'skipped', s);
  }

  private outcome(f: InFlight, now: number): RebalanceMoveResult | null {
    const s = f.session;
    if (f.kind === 'reconnect') {
      if (s.finished) return 'moved';
    } else {
      if (s.backendName === f.move.to && s.migrator?.running !== true) return 'migrated';
      if (s.finished || s.migrator?.running !== true) return 'failed';
    }
    return now >= f.until ? 'timeout' : null;
  }

  private finish(move: PlannedMove, result: RebalanceMoveResult, s: Session | null): void {
    if (s !== null) this.inFlight.delete(s.id);
    this.results[result]++;
    this.moves.inc({ result });
    if (result !== 'moved' && result !== 'migrated')
      this.log.warn({ session: move.session, from: move.from, to: move.to, result }, 'rebalance move did not complete');
    else this.log.info({ session: move.session, from: move.from, to: move.to, result }, 'rebalance move done');
  }

  /** The session the move names, still on its source backend. */
  private find(move: PlannedMove): Session | null {
    for (const s of this.sessions()) if (s.id === move.session) return !s.finished && s.backendName === move.from ? s : null;
    return null;
  }

  private remember(s: Session, now: number): void {
    for (const k of [s.id, streamOf(s)]) {
      if (k === null) continue;
      if (this.recent.size >= MAX_RECENT) this.recent.delete(this.recent.keys().next().value!);
      this.recent.set(k, now);
    }
  }

  private forget(now: number): void {
    for (const [k, at] of this.recent) if (now - at >= this.settings.windowMs) this.recent.delete(k);
  }
}

/** A digest of the session's app and stream key (never the key itself): a reconnected publisher is the same stream. */
function streamOf(s: Session): string | null {
  const f = s.view.facts;
  if (f.streamKey === null) return null;
  return createHash('sha256')
    .update(`${f.connect?.app ?? ''}\0${withoutQuery(f.streamKey)}`)
    .digest('base64url');
}

/** Where the routing lets the session go: a sticky key its rendezvous backend only, a rule's group its members; undefined = anywhere. */
function allowedFor(s: Session, views: readonly BackendView[]): ReadonlySet<string> | undefined {
  const p = s.placement;
  const router = s.router;
  if (p === null || p.backend === null || router === null) return undefined;
  const members = router.members(p.rule, views);
  if (p.how === 'sticky' || p.how === 'sticky-moved') {
    const key = s.view.facts.streamKey;
    const home = key === null ? null : rendezvous(withoutQuery(key), members);
    return new Set(home === null ? [] : [home.name]);
  }
  return new Set(members.map((m) => m.name));
}
