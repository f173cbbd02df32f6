/**
 * Short-lived reservations of a backend for the next new session (a rebalance steers the reconnect
 * of a publisher it told to go away): a publisher's reconnect is a new connection that arrives
 * before its stream key is read, so it cannot be recognised; the next session the pool places
 * takes the reservation instead, which keeps the per-backend counts the plan asked for. Bounded:
 * at most `MAX_RESERVATIONS` live at once (the oldest dropped first); expired ones are dropped
 * when looked at.
 */
export const MAX_RESERVATIONS = 10_000;

export class Reservations {
  /** Expiry (epoch ms) of each reservation, per backend, oldest first. */
  private readonly byBackend = new Map<string, number[]>();
  private size = 0;

  constructor(private readonly now: () => number = Date.now) {}

  add(backend: string, ttlMs: number): void {
    if (this.size >= MAX_RESERVATIONS) this.dropOldest();
    const list = this.byBackend.get(backend) ?? [];
    list.push(this.now() + ttlMs);
    this.byBackend.set(backend, list);
    this.size++;
  }

  /** Live reservations of `backend`. */
  count(backend: string): number {
    this.expire(backend);
    return this.byBackend.get(backend)?.length ?? 0;
  }

  /** Takes one reservation of the first backend (in reservation order) that `accepts`; its name, or null. */
  take(accepts: (backend: string) => boolean): string | null {
    for (const name of [...this.byBackend.keys()]) {
      if (this.count(name) === 0 || !accepts(name)) continue;
      this.byBackend.get(name)!.shift();
      this.size--;
      if (this.byBackend.get(name)!.length === 0) this.byBackend.delete(name);
      return name;
    }
    return null;
  }

  private expire(backend: string): void {
    const list = this.byBackend.get(backend);
    if (list === undefined) return;
    const t = this.now();
    let n = 0;
    while (n < list.length && list[n]! <= t) n++;
    if (n > 0) list.splice(0, n);
    this.size -= n;
    if (list.length === 0) this.byBackend.delete(backend);
  }

  private dropOldest(): void {
    let oldest: string | null = null;
    let at = Infinity;
    for (const [name, list] of this.byBackend) if (list[0]! < at) [oldest, at] = [name, list[0]!];
    if (oldest !== null) {
      this.byBackend.get(oldest)!.shift();
      this.size--;
      if (this.byBackend.get(oldest)!.length === 0) this.byBackend.delete(oldest);
    }
  }
}
