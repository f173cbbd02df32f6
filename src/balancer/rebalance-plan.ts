/**
 * The rebalance planner (pure): which sessions to move, from which backend to which, so that every
 * backend that may take sessions holds its weighted share (docs/operations.md#rebalancing).
 *
 * What is balanced (`by`):
 *  - `sessions`: the load of a session is 1. Targets are the sessions on backends that may take
 *    sessions (`routable`), split by weight (unset = 1) and rounded to whole sessions so that each
 *    target is the floor or the ceiling of the exact share and they sum to the total. Which
 *    backends get a ceiling is chosen to move the fewest sessions: the ones holding the most keep
 *    the extra session.
 *  - `bitrate`: the load of a session is its measured bitrate (`PlanSession.load`, bits/s; see
 *    `sessionLoads` for sessions not measured yet). Targets are the exact weighted shares of the
 *    summed load; a plan ends with every backend within one session's load of its target, as
 *    whole sessions cannot split.
 * Backends that are not routable (down, draining, being removed) are left to their drain: nothing
 * moves to or from them.
 *
 * Moves: from each over-loaded backend, the oldest movable sessions first, each to the most
 * under-loaded backend it may go to (below its target and its cap, in its `allowed` set: a sticky
 * key's rendezvous backend, a routing group's members). A move is made only when it brings both
 * backends closer to their targets than the farther of the two was (so no move makes the spread
 * worse; with unit loads this is "from above its target to below its target"). A session that may
 * not move (too young, moved recently, not movable) stays; the plan then converges as far as the
 * others allow.
 */

/** What a rebalance balances: sessions per backend, or their summed bitrate. */
export type RebalanceBy = 'sessions' | 'bitrate';
export const REBALANCE_BY = ['sessions', 'bitrate'] as const;

/** The load (bits/s) of a session whose bitrate is not measured, when no session of the plan is measured. */
export const UNMEASURED_BITRATE = 1_000_000;

export interface PlanBackend {
  name: string;
  /** BackendConfig.weight; unset = 1; 0 = takes nothing. */
  weight?: number;
  /** Healthy, not draining, not being removed (eligibility.ts isRoutable). */
  routable: boolean;
  maxSessions?: number;
}

export interface PlanSession {
  id: string;
  backend: string;
  /** ms since the session started. */
  ageMs: number;
  /** Can be moved at all (it told its capability, or it can be migrated). */
  movable: boolean;
  /** The backends it may go to (sticky key: its rendezvous backend only; routing group: the members); undefined = any. */
  allowed?: ReadonlySet<string>;
  /** Its load when balancing by bitrate (bits/s, ≥ 0; `sessionLoads`); ignored by sessions. */
  load?: number;
}

export interface PlanOptions {
  /** Sessions younger than this stay. */
  minAgeMs: number;
  /** Ids of sessions moved within the window: they stay. */
  recentlyMoved?: ReadonlySet<string>;
  /** Default sessions. */
  by?: RebalanceBy;
}

export interface PlannedMove {
  session: string;
  from: string;
  to: string;
}

export interface RebalancePlan {
  by: RebalanceBy;
  /** The load each routable backend should hold: sessions, or bits/s (rounded). */
  targets: Record<string, number>;
  /** Sessions each backend holds now (every backend). */
  counts: Record<string, number>;
  /** The load each backend holds now, in the unit of `targets` (by sessions: `counts`). */
  loads: Record<string, number>;
  /** How far off its target a balanced backend may stay: the largest load of one session (by sessions: 0, targets are whole). */
  tolerance: number;
  moves: PlannedMove[];
  /** Sessions on over-loaded backends that could not move (young, recent, not movable, nowhere allowed). */
  stuck: number;
}

/**
 * Each session's load by bitrate, in order: its measured bitrate (bits/s), else the mean of the
 * measured ones (a session not measured yet is taken as a typical one of the fleet), else
 * `UNMEASURED_BITRATE` when none is measured.
 */
export function sessionLoads(bitrates: readonly (number | null | undefined)[]): number[] {
  const measured = bitrates.filter((b): b is number => typeof b === 'number' && Number.isFinite(b) && b >= 0);
  const mean = measured.length === 0 ? UNMEASURED_BITRATE : measured.reduce((a, b) => a + b, 0) / measured.length;
  return bitrates.map((b) => (typeof b === 'number' && Number.isFinite(b) && b >= 0 ? b : mean));
}

/**
 * How unbalanced a plan's backends are: the most loaded routable backend's load over its target
 * (1 = balanced; 1.5 = half again its share). Backends with a zero target are left out; 0 when no
 * backend has a target.
 */
export function spreadOf(plan: Pick<RebalancePlan, 'targets' | 'loads'>): number {
  let worst = 0;
  for (const [name, t] of Object.entries(plan.targets)) if (t > 0) worst = Math.max(worst, (plan.loads[name] ?? 0) / t);
  return worst;
}

const weightOf = (b: PlanBackend): number => (b.weight === undefined ? 1 : Math.max(0, b.weight));

/** Whole-session targets within one of the weighted share, chosen to need the fewest moves. */
export function weightedTargets(backends: readonly { name: string; weight: number; count: number }[], total: number): Record<string, number> {
  const sumW = backends.reduce((a, b) => a + b.weight, 0);
  const targets: Record<string, number> = {};
  if (backends.length === 0) return targets;
  if (sumW <= 0) {
    for (const b of backends) targets[b.name] = b.count;
    return targets;
  }
  let given = 0;
  const fractional: { name: string; count: number; frac: number }[] = [];
  for (const b of backends) {
    const share = (total * b.weight) / sumW;
    const floor = Math.floor(share + 1e-9);
    targets[b.name] = floor;
    given += floor;
    if (share - floor > 1e-9) fractional.push({ name: b.name, count: b.count, frac: share - floor });
  }
  // The extra sessions go where sessions already are (fewest moves), then to the largest remainder.
  fractional.sort((a, b) => b.count - targets[b.name]! - (a.count - targets[a.name]!) || b.frac - a.frac || (a.name < b.name ? -1 : 1));
  for (let i = 0; i < total - given && i < fractional.length; i++) targets[fractional[i]!.name]! += 1;
  return targets;
}

/** The moves that bring the backends to their weighted targets (see the file comment). */
export function planRebalance(backends: readonly PlanBackend[], sessions: readonly PlanSession[], opts: PlanOptions): RebalancePlan {
  const by = opts.by ?? 'sessions';
  const loadOf = (s: PlanSession): number => (by === 'sessions' ? 1 : Math.max(0, s.load ?? 0));
  const counts: Record<string, number> = {};
  const loads: Record<string, number> = {};
  for (const b of backends) counts[b.name] = loads[b.name] = 0;
  for (const s of sessions) {
    if (counts[s.backend] === undefined) continue;
    counts[s.backend]! += 1;
    loads[s.backend]! += loadOf(s);
  }
  const routable = backends.filter((b) => b.routable);
  const byName = new Map(routable.map((b) => [b.name, b]));
  let tolerance = 0;
  if (by === 'bitrate') for (const s of sessions) if (byName.has(s.backend)) tolerance = Math.max(tolerance, loadOf(s));
  const total = routable.reduce((a, b) => a + loads[b.name]!, 0);
  const targets: Record<string, number> = {};
  if (by === 'sessions') {
    Object.assign(
      targets,
      weightedTargets(
        routable.map((b) => ({ name: b.name, weight: weightOf(b), count: counts[b.name]! })),
        total,
      ),
    );
  } else {
    const sumW = routable.reduce((a, b) => a + weightOf(b), 0);
    // No weight at all: nothing is anyone's share, every backend keeps what it has.
    for (const b of routable) targets[b.name] = sumW <= 0 ? loads[b.name]! : (total * weightOf(b)) / sumW;
  }
  const now = { ...loads };
  const held = { ...counts };
  const moves: PlannedMove[] = [];
  let stuck = 0;
  const excess = (name: string): number => now[name]! - targets[name]!;
  const over = routable.filter((b) => excess(b.name) > 0).sort((a, b) => excess(b.name) - excess(a.name));
  for (const src of over) {
    const candidates = sessions.filter((s) => s.backend === src.name).sort((a, b) => b.ageMs - a.ageMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    let skipped = 0;
    for (const s of candidates) {
      if (excess(src.name) <= 0) break;
      const eligible = s.movable && s.ageMs >= opts.minAgeMs && !(opts.recentlyMoved?.has(s.id) ?? false);
      const to = eligible ? destination(s, src.name) : null;
      if (to === null) {
        skipped++;
        continue;
      }
      const load = loadOf(s);
      if (!improves(excess(src.name), targets[to]! - now[to]!, load)) continue;
      moves.push({ session: s.id, from: src.name, to });
      now[src.name]! -= load;
      now[to]! += load;
      held[src.name]! -= 1;
      held[to]! += 1;
    }
    const left = excess(src.name);
    if (left > 0 && skipped > 0) {
      const mean = held[src.name]! > 0 ? now[src.name]! / held[src.name]! : 1;
      stuck += Math.min(skipped, by === 'sessions' ? left : Math.round(left / Math.max(mean, 1e-9)));
    }
  }
  const shown = (r: Record<string, number>): Record<string, number> =>
    by === 'sessions' ? r : Object.fromEntries(Object.entries(r).map(([k, v]) => [k, Math.round(v)]));
  return { by, targets: shown(targets), counts, loads: shown(loads), tolerance: Math.round(tolerance), moves, stuck };

  /** The most under-loaded backend `s` may go to (below its target and its cap), or null. */
  function destination(s: PlanSession, from: string): string | null {
    let best: string | null = null;
    let bestDeficit = 0;
    for (const b of byName.values()) {
      if (b.name === from || (s.allowed !== undefined && !s.allowed.has(b.name))) continue;
      if (b.maxSessions !== undefined && held[b.name]! >= b.maxSessions) continue;
      const deficit = targets[b.name]! - now[b.name]!;
      if (deficit > bestDeficit || (deficit === bestDeficit && deficit > 0 && best !== null && b.name < best)) {
        best = b.name;
        bestDeficit = deficit;
      }
    }
    return best;
  }
}

/**
 * A move of `load` from a backend `excess` above its target to one `deficit` below its own brings
 * both closer than the farther of the two was: the spread of the plan never grows.
 */
function improves(excess: number, deficit: number, load: number): boolean {
  return Math.max(Math.abs(excess - load), Math.abs(load - deficit)) < Math.max(excess, deficit) - 1e-9;
}
