/**
 * The rebalance planner (pure): which sessions to move, from which backend to which, so that every
 * backend that may take sessions holds its weighted share (docs/operations.md#rebalancing).
 *
 * The load of a session is 1 (sessions per backend); `PlanSession.load` is where a per-session
 * bitrate can be plugged in later, the targets are then computed over the summed load the same way.
 *
 * Targets: the load on backends that may take sessions (`routable`), split by weight (unset = 1)
 * and rounded to whole sessions so that each target is the floor or the ceiling of the exact share
 * and they sum to the total. Which backends get a ceiling is chosen to move the fewest sessions:
 * the ones holding the most keep the extra session. Backends that are not routable (down, draining,
 * being removed) are left to their drain: nothing moves to or from them.
 *
 * Moves: from each over-loaded backend, the oldest movable sessions first, each to the most
 * under-loaded backend it may go to (below its target and its cap, in its `allowed` set: a sticky
 * key's rendezvous backend, a routing group's members). A session that may not move (too young,
 * moved recently, not movable) stays; the plan then converges as far as the others allow.
 */

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
}

export interface PlanOptions {
  /** Sessions younger than this stay. */
  minAgeMs: number;
  /** Ids of sessions moved within the window: they stay. */
  recentlyMoved?: ReadonlySet<string>;
}

export interface PlannedMove {
  session: string;
  from: string;
  to: string;
}

export interface RebalancePlan {
  /** Sessions each routable backend should hold. */
  targets: Record<string, number>;
  /** Sessions each backend holds now (every backend). */
  counts: Record<string, number>;
  moves: PlannedMove[];
  /** Sessions on over-loaded backends that could not move (young, recent, not movable, nowhere allowed). */
  stuck: number;
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
  const counts: Record<string, number> = {};
  for (const b of backends) counts[b.name] = 0;
  for (const s of sessions) if (counts[s.backend] !== undefined) counts[s.backend]! += 1;
  const routable = backends.filter((b) => b.routable);
  const byName = new Map(routable.map((b) => [b.name, b]));
  const total = routable.reduce((a, b) => a + counts[b.name]!, 0);
  const targets = weightedTargets(
    routable.map((b) => ({ name: b.name, weight: weightOf(b), count: counts[b.name]! })),
    total,
  );
  const now = { ...counts };
  const moves: PlannedMove[] = [];
  let stuck = 0;
  const over = routable.filter((b) => now[b.name]! > targets[b.name]!).sort((a, b) => now[b.name]! - targets[b.name]! - (now[a.name]! - targets[a.name]!));
  for (const src of over) {
    const candidates = sessions.filter((s) => s.backend === src.name).sort((a, b) => b.ageMs - a.ageMs || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
    for (const s of candidates) {
      if (now[src.name]! <= targets[src.name]!) break;
      const to = s.movable && s.ageMs >= opts.minAgeMs && !(opts.recentlyMoved?.has(s.id) ?? false) ? destination(s, src.name) : null;
      if (to === null) continue;
      moves.push({ session: s.id, from: src.name, to });
      now[src.name]! -= 1;
      now[to]! += 1;
    }
    stuck += Math.max(0, now[src.name]! - targets[src.name]!);
  }
  return { targets, counts, moves, stuck };

  /** The most under-loaded backend `s` may go to, or null. */
  function destination(s: PlanSession, from: string): string | null {
    let best: string | null = null;
    let bestDeficit = 0;
    for (const b of byName.values()) {
      if (b.name === from || (s.allowed !== undefined && !s.allowed.has(b.name))) continue;
      if (b.maxSessions !== undefined && now[b.name]! >= b.maxSessions) continue;
      const deficit = targets[b.name]! - now[b.name]!;
      if (deficit > bestDeficit || (deficit === bestDeficit && deficit > 0 && best !== null && b.name < best)) {
        best = b.name;
        bestDeficit = deficit;
      }
    }
    return best;
  }
}
