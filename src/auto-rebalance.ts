/**
 * Automatic rebalancing of this replica's sessions, off by default, on two triggers:
 *  - `backend-up` (`rebalance.onBackendUp`): a backend becomes healthy (a new pod, one back up) or
 *    is added by a reload or discovery; the run starts `rebalance.minAgeMs` later (the new
 *    backend's health settles, a burst of new backends makes one run). One run pending at a time.
 *  - `spread` (`rebalance.auto.spreadRatio`): every `rebalance.auto.intervalMs`, the plan as it
 *    would be now (`rebalance.by`); when the most loaded backend holds more than `spreadRatio`
 *    times its share (balancer/rebalance-plan.ts `spreadOf`) at two checks in a row, the plan has
 *    moves, no rebalance runs and the last automatic run is `rebalance.auto.cooldownMs` old, it
 *    runs. The two checks keep a burst of publishers from triggering it; the cooldown keeps a
 *    spread the plan cannot fix (sessions too young, sticky, not movable) from triggering again
 *    and again.
 * Every automatic run is counted (`rebalance_auto_total{trigger}`) and logged.
 */
import type { Logger } from 'pino';
import type { BackendPoolEvents } from './balancer/pool.js';
import { type RebalancePlan, spreadOf } from './balancer/rebalance-plan.js';
import type { Count } from './proxy/observer.js';
import type { RebalanceSettings } from './proxy/rebalancer.js';

export type AutoTrigger = 'backend-up' | 'spread';

export interface AutoRebalanceSettings extends RebalanceSettings {
  onBackendUp: boolean;
  auto: { spreadRatio: number; intervalMs: number; cooldownMs: number };
}

/** What one spread check found. */
export type SpreadCheck = 'off' | 'running' | 'balanced' | 'once' | 'nothing-to-move' | 'cooldown' | 'started';

/** The pool's events the trigger listens to. */
export interface PoolEvents {
  on<E extends 'backend-state' | 'backend-added'>(event: E, fn: (...args: BackendPoolEvents[E]) => void): unknown;
  off<E extends 'backend-state' | 'backend-added'>(event: E, fn: (...args: BackendPoolEvents[E]) => void): unknown;
}

export interface AutoRebalanceDeps {
  settings(): AutoRebalanceSettings;
  /** The plan over this replica's sessions now (nothing moves). */
  plan(): Pick<RebalancePlan, 'targets' | 'loads' | 'moves' | 'by'>;
  /** A rebalance is moving sessions. */
  running(): boolean;
  run(why: string): void;
  runs: Count<'trigger'>;
  log: Logger;
  now?: () => number;
}

export class AutoRebalance {
  private upTimer: NodeJS.Timeout | undefined;
  private spreadTimer: NodeJS.Timeout | undefined;
  /** Consecutive checks that found the spread above the ratio. */
  private above = 0;
  private lastRunAt = -Infinity;
  /** Last outcome logged, so a state that lasts is logged once. */
  private lastLogged: SpreadCheck | null = null;
  private readonly now: () => number;
  private readonly onState = (e: { name: string; to: string }): void => {
    if (e.to === 'up') this.soon(`backend ${e.name} up`);
  };
  private readonly onAdded = (name: string): void => this.soon(`backend ${name} added`);

  constructor(
    private readonly pool: PoolEvents,
    private readonly deps: AutoRebalanceDeps,
  ) {
    this.now = deps.now ?? Date.now;
    pool.on('backend-state', this.onState);
    pool.on('backend-added', this.onAdded);
    this.schedule();
  }

  stop(): void {
    this.pool.off('backend-state', this.onState);
    this.pool.off('backend-added', this.onAdded);
    if (this.upTimer) clearTimeout(this.upTimer);
    if (this.spreadTimer) clearTimeout(this.spreadTimer);
    this.upTimer = this.spreadTimer = undefined;
  }

  /** One spread check (the timer calls it every `rebalance.auto.intervalMs`). */
  check(): SpreadCheck {
    const s = this.deps.settings();
    const ratio = s.auto.spreadRatio;
    if (ratio <= 0) return this.outcome('off', {});
    if (this.deps.running()) return this.outcome('running', {});
    const plan = this.deps.plan();
    const spread = spreadOf(plan);
    const detail = { spread: Math.round(spread * 100) / 100, ratio, by: plan.by, loads: plan.loads, targets: plan.targets };
    if (spread <= ratio) {
      this.above = 0;
      return this.outcome('balanced', detail);
    }
    this.above++;
    if (this.above < 2) return this.outcome('once', detail);
    if (plan.moves.length === 0) return this.outcome('nothing-to-move', detail);
    if (this.now() - this.lastRunAt < s.auto.cooldownMs) return this.outcome('cooldown', detail);
    this.fire('spread', `automatic: spread ${detail.spread} over ${ratio}`, { ...detail, moves: plan.moves.length });
    return 'started';
  }

  private schedule(): void {
    this.spreadTimer = setTimeout(() => {
      try {
        this.check();
      } catch (err) {
        this.deps.log.error({ err }, 'automatic rebalance check failed');
      }
      this.schedule();
    }, this.deps.settings().auto.intervalMs);
    this.spreadTimer.unref();
  }

  private soon(why: string): void {
    const s = this.deps.settings();
    if (!s.onBackendUp || this.upTimer !== undefined) return;
    this.upTimer = setTimeout(() => {
      this.upTimer = undefined;
      this.fire('backend-up', `automatic: ${why}`, {});
    }, s.minAgeMs);
    this.upTimer.unref();
  }

  private fire(trigger: AutoTrigger, why: string, detail: object): void {
    this.lastRunAt = this.now();
    this.above = 0;
    this.lastLogged = null;
    this.deps.runs.inc({ trigger });
    this.deps.log.info({ trigger, ...detail }, 'automatic rebalance');
    this.deps.run(why);
  }

  /** Logs a spread above the ratio that does not start a run, once per state. */
  private outcome(o: SpreadCheck, detail: object): SpreadCheck {
    if ((o === 'nothing-to-move' || o === 'cooldown') && this.lastLogged !== o) {
      this.deps.log.info(
        { ...detail, outcome: o },
        o === 'cooldown' ? 'spread over the ratio: waiting for the cooldown' : 'spread over the ratio, but nothing can move now',
      );
    }
    if (o !== 'once') this.lastLogged = o;
    return o;
  }
}
