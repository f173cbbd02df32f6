/**
 * Rebalancing in cluster mode, answered by the primary (`POST /api/rebalance`, `GET
 * /api/rebalance`): each worker sees only its own sessions, so the primary plans over all of them
 * the way `rebalance --redis` plans over the fleet registry (control/rebalance-command.ts
 * `planFleet`, each worker taken as a replica) and sends each worker its share (`quota`: at most
 * `count` of its own sessions from → to). The status sums the workers' runs. This is the pod's
 * plan: with Redis, `rebalance --redis` plans over every replica of the fleet (workers included).
 */
import type { Logger } from 'pino';
import type { RebalanceBy } from './balancer/rebalance-plan.js';
import type { AdminAnswer, AdminRebalanceOptions } from './control/admin-routes.js';
import type { ReplicaRecord, SessionRecord } from './control/bus.js';
import { type FleetPlan, planFleet } from './control/rebalance-command.js';
import type { RebalanceMoveResult, RebalanceStatus } from './proxy/rebalancer.js';

/** A worker's answer (status and body, as its admin API gave it). */
export interface WorkerAnswer {
  status: number;
  body: string;
}

/** How the primary reaches its workers' admin APIs. */
export interface WorkerLinks {
  /** The ids of the workers ready now. */
  workers(): string[];
  /** GET or POST `path` on one worker. */
  ask(worker: string, path: string, body?: unknown): Promise<WorkerAnswer>;
}

type WorkerSession = Pick<SessionRecord, 'id' | 'backend' | 'capability' | 'startedAt' | 'route' | 'role' | 'media'>;
type WorkerBackend = Pick<ReplicaRecord['backends'][number], 'name' | 'state'>;

/** What the primary answers: a worker's RebalanceStatus, summed over the workers, with the pod's plan. */
export type ClusterPlanView = Omit<FleetPlan, 'moves' | 'estimates' | 'planned'> & { moves: FleetPlan['estimates']; shares: FleetPlan['moves'] };
export type ClusterStatus = Omit<RebalanceStatus, 'plan'> & { plan: ClusterPlanView | null; workers: number };

/** A worker's JSON body, or null when it is not JSON (a worker dying mid-answer). */
function json(a: WorkerAnswer): unknown {
  try {
    return JSON.parse(a.body) as unknown;
  } catch {
    return null;
  }
}

export class ClusterRebalance {
  private last: ClusterPlanView | null = null;

  constructor(
    private readonly links: WorkerLinks,
    private readonly defaults: { by: RebalanceBy; minAgeMs: number },
    private readonly log: Logger,
  ) {}

  /** Plans over every worker's sessions and, unless `dryRun`, sends each worker its share. */
  async start(o: AdminRebalanceOptions): Promise<AdminAnswer> {
    if (o.quota !== undefined) return { status: 400, json: { error: 'quota is what the primary sends its workers: ask for a rebalance without it' } };
    const ids = this.links.workers();
    if (ids.length === 0) return { status: 503, json: { error: 'no worker' } };
    const replicas: Pick<ReplicaRecord, 'replicaId' | 'backends'>[] = [];
    const sessions: (WorkerSession & { replica: string })[] = [];
    for (const id of ids) {
      const [b, s] = await Promise.all([this.links.ask(id, '/api/backends'), this.links.ask(id, '/api/sessions')]);
      const backends = json(b);
      const list = json(s);
      if (b.status !== 200 || s.status !== 200 || !Array.isArray(backends) || !Array.isArray(list)) {
        return { status: 502, json: { error: `worker ${id} did not answer its backends and sessions` } };
      }
      replicas.push({ replicaId: id, backends: (backends as WorkerBackend[]).map((x) => ({ ...x, sessions: 0, drainReason: null, drainDeadlineAt: null })) });
      for (const x of list as WorkerSession[]) sessions.push({ ...x, replica: id });
    }
    const by = o.by ?? this.defaults.by;
    const minAgeMs = o.minAgeMs ?? this.defaults.minAgeMs;
    const plan = planFleet(replicas, sessions, { minAgeMs, now: Date.now(), by });
    const moves = plan.moves;
    const view: ClusterPlanView = {
      by: plan.by,
      targets: plan.targets,
      counts: plan.counts,
      loads: plan.loads,
      tolerance: plan.tolerance,
      stuck: plan.stuck,
      moves: plan.estimates,
      shares: moves,
    };
    if (o.dryRun === true) return { status: 200, json: { ...(await this.sum()), plan: view } };
    this.last = view;
    const sent = await Promise.all(
      Object.entries(moves).map(async ([id, quota]) => {
        const body: AdminRebalanceOptions = { quota, by, minAgeMs };
        if (o.maxInFlight !== undefined) body.maxInFlight = o.maxInFlight;
        if (o.reason !== undefined) body.reason = o.reason;
        return { id, answer: await this.links.ask(id, '/api/rebalance', body) };
      }),
    );
    const failed = sent.filter((x) => x.answer.status !== 200);
    this.log.info(
      { by, planned: plan.planned, targets: plan.targets, workers: sent.length, failed: failed.map((f) => f.id), reason: o.reason },
      'rebalance over the workers',
    );
    if (failed.length > 0) return { status: 502, json: { error: `worker(s) ${failed.map((f) => f.id).join(', ')} refused their share`, plan: view } };
    return { status: 200, json: await this.status() };
  }

  /** The workers' runs summed, with the last plan the primary sent. */
  async status(): Promise<ClusterStatus> {
    return { ...(await this.sum()), plan: this.last };
  }

  private async sum(): Promise<Omit<ClusterStatus, 'plan'>> {
    const results: Record<RebalanceMoveResult, number> = { moved: 0, migrated: 0, failed: 0, timeout: 0, skipped: 0 };
    const out: Omit<ClusterStatus, 'plan'> = { running: false, startedAt: null, planned: 0, pending: 0, inFlight: 0, results, workers: 0 };
    for (const id of this.links.workers()) {
      const a = await this.links.ask(id, '/api/rebalance');
      if (a.status !== 200) continue;
      const s = json(a) as RebalanceStatus | null;
      out.workers++;
      if (s === null || typeof s !== 'object' || s.results === undefined) continue;
      out.running ||= s.running;
      if (s.startedAt !== null) out.startedAt = Math.min(out.startedAt ?? s.startedAt, s.startedAt);
      out.planned += s.planned;
      out.pending += s.pending;
      out.inFlight += s.inFlight;
      for (const k of Object.keys(results) as RebalanceMoveResult[]) results[k] += s.results[k] ?? 0;
    }
    return out;
  }
}
