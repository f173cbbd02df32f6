/**
 * The rebalance part of a console snapshot (pure): what `GET /api/rebalance` answers, cut down to
 * what the page shows and bounded, whatever the answer holds (a worker's JSON in a cluster is read
 * here too). Only known fields are copied: progress counts, the plan's per-backend counts and
 * targets, and its first moves. A move names a session by its id; the page finds its app and
 * (redacted) key in the snapshot's sessions, so no stream key travels here.
 */

export type ConsoleMoveResult = 'moved' | 'migrated' | 'failed' | 'timeout' | 'skipped';

export interface ConsoleRebalance {
  running: boolean;
  startedAt: number | null;
  planned: number;
  pending: number;
  inFlight: number;
  results: Record<ConsoleMoveResult, number>;
  plan: ConsoleRebalancePlan | null;
}

export interface ConsoleRebalancePlan {
  /** Sessions each backend holds (when planned) and should hold. */
  counts: Record<string, number>;
  targets: Record<string, number>;
  /** The first CONSOLE_REBALANCE_LIMITS.moves moves; `movesTotal` counts them all. */
  moves: { session: string; from: string; to: string }[];
  movesTotal: number;
  stuck: number;
}

export const CONSOLE_REBALANCE_LIMITS = { moves: 100, backends: 256, name: 256 } as const;

const RESULTS: readonly ConsoleMoveResult[] = ['moved', 'migrated', 'failed', 'timeout', 'skipped'];

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v);
const count = (v: unknown): number => (typeof v === 'number' && Number.isSafeInteger(v) && v >= 0 ? v : 0);
const name = (v: unknown): string | null => (typeof v === 'string' && v.length > 0 && v.length <= CONSOLE_REBALANCE_LIMITS.name ? v : null);

/** A `{backend: number}` map: at most CONSOLE_REBALANCE_LIMITS.backends names, each a bounded string. */
function perBackend(v: unknown): Record<string, number> {
  const out: [string, number][] = [];
  if (!isObject(v)) return {};
  let seen = 0;
  for (const k of Object.keys(v)) {
    if (seen++ >= CONSOLE_REBALANCE_LIMITS.backends) break;
    if (name(k) !== null) out.push([k, count(v[k])]);
  }
  // fromEntries defines own properties: a backend named "__proto__" stays data.
  return Object.fromEntries(out);
}

function plan(v: unknown): ConsoleRebalancePlan | null {
  if (!isObject(v)) return null;
  const all = Array.isArray(v['moves']) ? (v['moves'] as unknown[]) : [];
  const moves: ConsoleRebalancePlan['moves'] = [];
  for (const m of all.slice(0, CONSOLE_REBALANCE_LIMITS.moves)) {
    if (!isObject(m)) continue;
    const [session, from, to] = [name(m['session']), name(m['from']), name(m['to'])];
    if (session !== null && from !== null && to !== null) moves.push({ session, from, to });
  }
  return { counts: perBackend(v['counts']), targets: perBackend(v['targets']), moves, movesTotal: all.length, stuck: count(v['stuck']) };
}

/** The page's view of a rebalance status; null for anything that is not one (no rebalancer here). */
export function consoleRebalance(raw: unknown): ConsoleRebalance | null {
  if (!isObject(raw)) return null;
  const r = isObject(raw['results']) ? raw['results'] : {};
  const results = Object.fromEntries(RESULTS.map((k) => [k, count(r[k])])) as Record<ConsoleMoveResult, number>;
  const startedAt = raw['startedAt'];
  return {
    running: raw['running'] === true,
    startedAt: typeof startedAt === 'number' && Number.isFinite(startedAt) ? startedAt : null,
    planned: count(raw['planned']),
    pending: count(raw['pending']),
    inFlight: count(raw['inFlight']),
    results,
    plan: plan(raw['plan']),
  };
}
