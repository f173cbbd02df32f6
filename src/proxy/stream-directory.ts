import type { BackendPool } from '../balancer/pool.js';

/** What the directory reads of a live session on this replica. */
export interface DirectorySession {
  readonly backendName: string | null;
  readonly streamRef: string | null;
  readonly startedAt: number;
  readonly finished: boolean;
  readonly view: { readonly facts: { readonly role: 'publisher' | 'player' | null; readonly publishing: boolean; readonly unpublished: boolean } };
}

/** A fleet registry session record, as far as the directory reads it (control/bus.ts SessionRecord). */
export interface FleetStreamRecord {
  replica: string;
  backend: string | null;
  role?: 'publisher' | 'player' | null;
  streamRef?: string | null;
  state: string;
  startedAt: string;
}

export type StreamSource = 'local' | 'fleet';

/**
 * Where a stream's publisher is: on this replica (its live sessions), else in the fleet (the
 * Redis session registry, as last read). Players are routed to that backend, so they meet the
 * stream at once. A publisher on a backend that is draining counts, a later one elsewhere
 * wins: a reconnected or migrated publisher replaces the old one in the answer.
 */
export class StreamDirectory {
  /** streamRef → the fleet's publishers of it (other replicas), newest first. */
  private fleet = new Map<string, { backend: string; startedAt: string }[]>();

  constructor(
    private readonly local: () => Iterable<DirectorySession>,
    private readonly replicaId: string,
  ) {}

  /** Replaces the fleet's publishers with those of `records` (this replica's own are read live instead). */
  setFleet(records: readonly FleetStreamRecord[]): void {
    const next = new Map<string, { backend: string; startedAt: string }[]>();
    for (const r of records) {
      if (r.replica === this.replicaId || r.role !== 'publisher' || r.state === 'closed' || typeof r.streamRef !== 'string' || typeof r.backend !== 'string')
        continue;
      const list = next.get(r.streamRef) ?? [];
      list.push({ backend: r.backend, startedAt: r.startedAt });
      next.set(r.streamRef, list);
    }
    for (const l of next.values()) l.sort((a, b) => b.startedAt.localeCompare(a.startedAt));
    this.fleet = next;
  }

  /**
   * The backend carrying `ref`'s publisher that can take a player now (health up, not in
   * `exclude`; draining allowed: the stream is there), preferring one not draining, then the
   * newest; null when none is known.
   */
  publisherOf(ref: string, pool: BackendPool, exclude: ReadonlySet<string>, except?: DirectorySession): { backend: string; source: StreamSource } | null {
    const ok = (name: string): { draining: boolean } | null => {
      if (exclude.has(name)) return null;
      const b = pool.get(name);
      return b === undefined || b.health !== 'up' || b.removing ? null : { draining: b.draining };
    };
    let best: { backend: string; draining: boolean; startedAt: number } | null = null;
    for (const s of this.local()) {
      if (s === except || s.finished || s.streamRef !== ref || s.backendName === null) continue;
      const f = s.view.facts;
      if (f.role !== 'publisher' || !f.publishing || f.unpublished) continue;
      const b = ok(s.backendName);
      if (b === null) continue;
      if (best === null || (best.draining && !b.draining) || (best.draining === b.draining && s.startedAt > best.startedAt))
        best = { backend: s.backendName, draining: b.draining, startedAt: s.startedAt };
    }
    if (best !== null && !best.draining) return { backend: best.backend, source: 'local' };
    for (const r of this.fleet.get(ref) ?? []) {
      const b = ok(r.backend);
      if (b !== null && !b.draining) return { backend: r.backend, source: 'fleet' };
    }
    return best === null ? null : { backend: best.backend, source: 'local' };
  }
}
