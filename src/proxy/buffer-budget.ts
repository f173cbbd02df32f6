import type { ByteBudget } from '../rtmp/chunk-reader.js';

/**
 * The bytes a peer can make the proxy hold: one budget per session inside one per process.
 * Everything a session keeps between two reads draws from its SessionBudget — partly collected
 * messages of its chunk readers (both directions, and the backend of a migration), the client
 * bytes waiting for the backend connection, the held connect `_result`, the migration cache —
 * and every session budget draws from the process one. A refusal touches the session that asked
 * only: it falls back (stops parsing, forwards blindly) or closes, and gives back all it held.
 *
 * Not counted here because bounded elsewhere: socket write queues (backpressure pauses the other
 * side after one read), the ≤ 18-byte held-back chunk headers, the per-message AMF0 decode
 * (limits.amfMaxItems / amfMaxStringBytes, freed when the message is handled).
 */
export class ProcessBudget {
  held = 0;
  /** Highest `held` seen. */
  peak = 0;
  /** Refusals, by which budget said no. */
  readonly refused = { session: 0, process: 0 };

  /** `limits.processBufferBytes`; a configuration reload may change it (takes from then on). */
  constructor(public limit: number) {}

  take(n: number): boolean {
    if (this.held + n > this.limit) return false;
    this.held += n;
    if (this.held > this.peak) this.peak = this.held;
    return true;
  }

  give(n: number): void {
    this.held = Math.max(0, this.held - n);
  }
}

/** One session's share; `exceeded` says which budget refused last. */
export class SessionBudget implements ByteBudget {
  held = 0;
  exceeded: 'session' | 'process' | null = null;
  private closed = false;

  constructor(
    /** Current limit: `limits.sessionBufferBytes`, widened while the session relays whole messages (migration). */
    public limit: number,
    readonly process: ProcessBudget,
  ) {}

  take(n: number): boolean {
    if (n <= 0) return true;
    if (this.closed) return false;
    if (this.held + n > this.limit) {
      this.exceeded = 'session';
      this.process.refused.session++;
      return false;
    }
    if (!this.process.take(n)) {
      this.exceeded = 'process';
      this.process.refused.process++;
      return false;
    }
    this.held += n;
    return true;
  }

  give(n: number): void {
    const k = Math.min(n, this.held);
    if (k <= 0) return;
    this.held -= k;
    this.process.give(k);
  }

  /** The session ended: everything it held goes back to the process; later takes are refused. */
  close(): void {
    this.process.give(this.held);
    this.held = 0;
    this.closed = true;
  }
}
