/**
 * The rebalance control message of the fleet bus (docs/operations.md#rebalancing). Pure: no I/O.
 *
 *   JSON        {"action":"rebalance","moves":{"<replica>":[{"from":"b1","to":"b3","count":2}]},"by":"bitrate",
 *                "maxInFlight":4,"minAgeMs":10000,"reason":"scale-out","id":"…","at":…,"origin":"cli@host"}
 *   plain text  rebalance [reason words…]
 *
 * With `moves`, each replica moves its share (its own sessions, at most `count` from → to, the ones
 * in `ids` first) of the plan its issuer made over the fleet registry (`planFleet`); a replica not
 * named moves nothing.
 * Without, each replica plans over its own sessions. Not persisted: a rebalance is an action, not
 * a desired state. Anything else is malformed (logged and counted by the caller, never fatal).
 */
import { type PlanBackend, type PlanSession, REBALANCE_BY, type RebalanceBy, planRebalance, sessionLoads } from '../balancer/rebalance-plan.js';
import type { ReplicaRecord, SessionRecord } from './bus.js';
import { BACKEND_NAME_RE, MAX_CONTROL_MESSAGE_LENGTH, MAX_REASON_LENGTH, type MessageEnvelope, parseJsonMessage, readEnvelope } from './commands.js';

export interface RebalanceQuota {
  from: string;
  to: string;
  count: number;
  /** The sessions the plan chose (at most `count`): moved first when still there (by bitrate, sessions are not interchangeable). */
  ids?: string[];
}

export interface RebalanceMessage extends MessageEnvelope {
  action: 'rebalance';
  /** Per replica id, its share of the fleet plan; absent = every replica plans locally. */
  moves?: Record<string, RebalanceQuota[]>;
  /** What the plan balances (without `moves`: each replica's own plan); absent = each replica's `rebalance.by`. */
  by?: RebalanceBy;
  maxInFlight?: number;
  minAgeMs?: number;
}

export type RebalanceParse = { ok: true; message: RebalanceMessage } | { ok: false; error: string };

/** Bounds of one message (it is also bounded by MAX_CONTROL_MESSAGE_LENGTH). */
export const MAX_REBALANCE_REPLICAS = 64;
export const MAX_QUOTAS_PER_REPLICA = 64;
export const MAX_QUOTA_COUNT = 100_000;
const MAX_SESSION_ID_LENGTH = 100;
const MAX_MIN_AGE_MS = 2 ** 31 - 1;

const KNOWN = new Set(['action', 'moves', 'by', 'maxInFlight', 'minAgeMs', 'reason', 'id', 'at', 'origin']);
const fail = (error: string): RebalanceParse => ({ ok: false, error });
const isInt = (v: unknown, min: number, max: number): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= min && v <= max;

/** A message meant as a rebalance (the bus routes it here instead of parseControlMessage). */
export function isRebalanceText(text: string): boolean {
  const t = text.trimStart();
  return /^rebalance(\s|$)/i.test(t) || (t.startsWith('{') && /"action"\s*:\s*"rebalance"/.test(t.slice(0, MAX_CONTROL_MESSAGE_LENGTH)));
}

/** Parses one rebalance message. Never throws. */
export function parseRebalanceMessage(text: string): RebalanceParse {
  if (typeof text !== 'string') return fail('message is not text');
  if (text.length > MAX_CONTROL_MESSAGE_LENGTH) return fail(`message longer than ${MAX_CONTROL_MESSAGE_LENGTH} characters`);
  const t = text.trim();
  if (!t.startsWith('{')) {
    const words = t.split(/\s+/).filter((w) => w !== '');
    if (words[0]?.toLowerCase() !== 'rebalance') return fail('expected "rebalance [reason]" or JSON');
    const reason = words.slice(1).join(' ');
    if (reason.length > MAX_REASON_LENGTH) return fail(`reason must be at most ${MAX_REASON_LENGTH} characters`);
    return { ok: true, message: reason === '' ? { action: 'rebalance' } : { action: 'rebalance', reason } };
  }
  const o = parseJsonMessage(t, KNOWN);
  if (typeof o === 'string') return fail(o);
  if (o['action'] !== 'rebalance') return fail('"action" must be "rebalance"');
  const message: RebalanceMessage = { action: 'rebalance' };
  if (o['moves'] !== undefined) {
    const m = o['moves'];
    if (m === null || typeof m !== 'object' || Array.isArray(m)) return fail('"moves" must be an object of replica id → [{from, to, count}]');
    const entries = Object.entries(m as Record<string, unknown>);
    if (entries.length > MAX_REBALANCE_REPLICAS) return fail(`"moves" names more than ${MAX_REBALANCE_REPLICAS} replicas`);
    const moves: Record<string, RebalanceQuota[]> = {};
    for (const [replica, list] of entries) {
      if (replica.length === 0 || replica.length > 200) return fail('replica ids in "moves" must be 1 to 200 characters');
      const quotas = parseQuotas(list);
      if (typeof quotas === 'string') return fail(quotas);
      moves[replica] = quotas;
    }
    message.moves = moves;
  }
  if (o['by'] !== undefined) {
    if (!(REBALANCE_BY as readonly unknown[]).includes(o['by'])) return fail(`"by" must be one of ${REBALANCE_BY.join(', ')}`);
    message.by = o['by'] as RebalanceBy;
  }
  if (o['maxInFlight'] !== undefined) {
    if (!isInt(o['maxInFlight'], 1, 10_000)) return fail('"maxInFlight" must be an integer between 1 and 10000');
    message.maxInFlight = o['maxInFlight'];
  }
  if (o['minAgeMs'] !== undefined) {
    if (!isInt(o['minAgeMs'], 0, MAX_MIN_AGE_MS)) return fail(`"minAgeMs" must be an integer between 0 and ${MAX_MIN_AGE_MS}`);
    message.minAgeMs = o['minAgeMs'];
  }
  const bad = readEnvelope(o, message);
  return bad === null ? { ok: true, message } : fail(bad);
}

/** One replica's share of a fleet plan, `[{from, to, count}]` (a message's `moves` entry, or the admin API's `quota`): the quotas, or why not. */
export function parseQuotas(list: unknown): RebalanceQuota[] | string {
  if (!Array.isArray(list) || list.length > MAX_QUOTAS_PER_REPLICA) return `the moves of a replica must be an array of at most ${MAX_QUOTAS_PER_REPLICA}`;
  const quotas: RebalanceQuota[] = [];
  for (const q of list as unknown[]) {
    if (q === null || typeof q !== 'object' || Array.isArray(q)) return 'a move must be {from, to, count}';
    const { from, to, count, ids, ...rest } = q as Record<string, unknown>;
    if (Object.keys(rest).length > 0) return `unknown field "${Object.keys(rest)[0]}" in a move`;
    if (typeof from !== 'string' || !BACKEND_NAME_RE.test(from) || typeof to !== 'string' || !BACKEND_NAME_RE.test(to) || from === to) {
      return `"from" and "to" must be two backend names matching ${BACKEND_NAME_RE}`;
    }
    if (!isInt(count, 1, MAX_QUOTA_COUNT)) return `"count" must be an integer between 1 and ${MAX_QUOTA_COUNT}`;
    const quota: RebalanceQuota = { from, to, count };
    if (ids !== undefined) {
      if (!Array.isArray(ids) || ids.length > count || !ids.every((id) => typeof id === 'string' && id.length > 0 && id.length <= MAX_SESSION_ID_LENGTH)) {
        return `"ids" must be at most "count" session ids of 1 to ${MAX_SESSION_ID_LENGTH} characters`;
      }
      quota.ids = ids as string[];
    }
    quotas.push(quota);
  }
  return quotas;
}

/** A move of a fleet plan as planned (the replica may move another of its sessions on the same backend), with when it is expected. */
export interface FleetMove {
  session: string;
  replica: string;
  from: string;
  to: string;
  /** Told to reconnect (Go Away, E-RTMP reconnect) or migrated proxy-side at its next keyframe. */
  how: 'reconnect' | 'migrate';
  nextKeyframeInMs: number | null;
  keyframeIntervalMs: number | null;
}

export interface FleetPlan {
  by: RebalanceBy;
  moves: Record<string, RebalanceQuota[]>;
  /** Moves planned. */
  planned: number;
  /** Each planned move, how and when it is expected (for the plan's output; the message carries `moves`). */
  estimates: FleetMove[];
  targets: Record<string, number>;
  counts: Record<string, number>;
  loads: Record<string, number>;
  tolerance: number;
  stuck: number;
}

/**
 * The issuer's plan over the fleet registry, split by replica: the planner runs over every live
 * session of the fleet (a backend is a target when every live replica that has it reports it up),
 * and each planned move is given to the replica holding the session it chose. A replica then moves
 * that many of its own sessions from → to (the one planned may have left; another of its sessions
 * on the same backend goes instead). Sessions placed by a sticky rule are left where they are: the
 * registry does not tell their rendezvous backend (a replica's local plan does). By bitrate, each
 * session's load is the bitrate its replica measured (`media.bitrate`; see `sessionLoads`), and
 * each quota names the sessions chosen (`ids`), which the replica moves first.
 */
export function planFleet(
  replicas: readonly Pick<ReplicaRecord, 'replicaId' | 'backends'>[],
  sessions: readonly Pick<SessionRecord, 'id' | 'replica' | 'backend' | 'capability' | 'startedAt' | 'route' | 'role' | 'media'>[],
  opts: { minAgeMs: number; now: number; by?: RebalanceBy },
): FleetPlan {
  const by = opts.by ?? 'sessions';
  const state = new Map<string, boolean>();
  for (const r of replicas) for (const b of r.backends) state.set(b.name, (state.get(b.name) ?? true) && b.state === 'up');
  const backends: PlanBackend[] = [...state].map(([name, up]) => ({ name, routable: up }));
  const owner = new Map<string, (typeof sessions)[number]>();
  const plan: PlanSession[] = [];
  const bitrates: (number | null)[] = [];
  for (const s of sessions) {
    // Players follow their stream's publisher: only publishers (and sessions not yet known) are planned.
    if (s.backend === null || !state.has(s.backend) || s.role === 'player') continue;
    owner.set(s.id, s);
    const started = Date.parse(s.startedAt);
    plan.push({
      id: s.id,
      backend: s.backend,
      ageMs: Number.isFinite(started) ? opts.now - started : 0,
      movable: s.capability !== 'unknown' && !/sticky/.test(s.route ?? ''),
    });
    bitrates.push(s.media?.bitrate ?? null);
  }
  if (by === 'bitrate') sessionLoads(bitrates).forEach((load, i) => (plan[i]!.load = load));
  const p = planRebalance(backends, plan, { minAgeMs: opts.minAgeMs, by });
  const moves: Record<string, RebalanceQuota[]> = {};
  const estimates: FleetMove[] = [];
  for (const m of p.moves) {
    const s = owner.get(m.session)!;
    const list = (moves[s.replica] ??= []);
    let q = list.find((x) => x.from === m.from && x.to === m.to);
    if (q !== undefined) q.count++;
    else list.push((q = { from: m.from, to: m.to, count: 1 }));
    // By bitrate the replica must move the sessions chosen, not any of the same backend.
    if (by === 'bitrate') (q.ids ??= []).push(m.session);
    estimates.push({
      ...m,
      replica: s.replica,
      // The registry tells the capability; whether a replica offers E-RTMP reconnect it does not: `erpc` counts as told.
      how: s.capability === 'goaway' || s.capability === 'erpc' ? 'reconnect' : 'migrate',
      nextKeyframeInMs: s.media?.nextKeyframeInMs ?? null,
      keyframeIntervalMs: s.media?.keyframeIntervalMs ?? null,
    });
  }
  return { by, moves, planned: p.moves.length, estimates, targets: p.targets, counts: p.counts, loads: p.loads, tolerance: p.tolerance, stuck: p.stuck };
}
