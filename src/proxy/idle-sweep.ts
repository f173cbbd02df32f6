/**
 * One timer for the idle timeouts of every session (Session.checkIdle), instead of a socket
 * timer per socket: Node re-arms a socket's timeout on every read and write, which costs a timer
 * list update per buffer on the hot path; the sweep only compares byte counters the session
 * keeps anyway. Precision: a session is closed between `timeout` and `timeout + interval`.
 */
export interface IdleCheckable {
  checkIdle(now: number): void;
}

/** Sweep interval for these timeouts (0 = off): a quarter of the shortest, within [20 ms, 1 s]. */
export function idleSweepIntervalMs(timeoutsMs: readonly number[]): number {
  const on = timeoutsMs.filter((t) => t > 0);
  if (on.length === 0) return 1000;
  return Math.min(1000, Math.max(20, Math.floor(Math.min(...on) / 4)));
}

export class IdleSweep {
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly sessions: () => Iterable<IdleCheckable>,
    private interval: number,
  ) {}

  get intervalMs(): number {
    return this.interval;
  }

  /** A new interval (configuration reload of the timeouts): the running timer is re-armed with it. */
  setIntervalMs(ms: number): void {
    if (ms === this.interval) return;
    this.interval = ms;
    if (this.timer === null) return;
    this.stop();
    this.start();
  }

  start(): void {
    if (this.timer !== null) return;
    this.timer = setInterval(() => this.sweep(Date.now()), this.interval);
    this.timer.unref();
  }

  /** One pass (exposed for tests). A session closed during the pass may leave the collection: iterating a Map stays valid. */
  sweep(now: number): void {
    for (const s of this.sessions()) s.checkIdle(now);
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }
}
