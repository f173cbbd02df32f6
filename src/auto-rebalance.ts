/**
 * Automatic rebalancing (`rebalance.onBackendUp`, off by default): when a backend becomes healthy
 * (a new pod, one back up) or is added by a reload or discovery, this replica rebalances its own
 * sessions once `rebalance.minAgeMs` later (the new backend's health settles, a burst of new
 * backends makes one run). Only one run is pending at a time.
 */
import type { BackendPool } from './balancer/pool.js';
import type { DrainableSession } from './balancer/types.js';
import type { RebalanceSettings } from './proxy/rebalancer.js';

export class AutoRebalance<S extends DrainableSession> {
  private timer: NodeJS.Timeout | undefined;
  private readonly onState = (e: { name: string; to: string }): void => {
    if (e.to === 'up') this.soon(`backend ${e.name} up`);
  };
  private readonly onAdded = (name: string): void => this.soon(`backend ${name} added`);

  constructor(
    private readonly pool: BackendPool<S>,
    private readonly settings: () => RebalanceSettings & { onBackendUp: boolean },
    private readonly run: (why: string) => void,
  ) {
    pool.on('backend-state', this.onState);
    pool.on('backend-added', this.onAdded);
  }

  stop(): void {
    this.pool.off('backend-state', this.onState);
    this.pool.off('backend-added', this.onAdded);
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private soon(why: string): void {
    const s = this.settings();
    if (!s.onBackendUp || this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.run(`automatic: ${why}`);
    }, s.minAgeMs);
    this.timer.unref();
  }
}
