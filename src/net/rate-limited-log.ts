/**
 * Warnings a remote peer can cause at will (a refused connection, a parse failure, a malformed
 * control message, an accept error) must not let that peer write log lines at its own rate. Each
 * kind of line (`key`) has a token bucket: `burst` lines at once, then `perSecond`. Lines over it
 * are counted, not written; the next line written for the key carries `suppressed: N` (how many
 * were dropped since the previous one), and when no other line comes a summary line with the
 * same message, the last fields, `suppressed: N` and `summary: true` is written as soon as the
 * bucket allows. Lines per key are therefore bounded by `burst + perSecond × seconds`, summaries
 * included, and no event goes uncounted.
 *
 * Keys name a kind of event (`refused:max-sessions`), never a client: at most `maxKeys` are kept,
 * further ones share one overflow bucket.
 */
import type { Logger } from 'pino';

export interface RateLimitedLogOptions {
  /** Lines per key written at once before limiting. Default 10. */
  burst?: number;
  /** Lines per key per second once the burst is spent. Default 1. */
  perSecond?: number;
  /** Keys tracked; more share one bucket. Default 256. */
  maxKeys?: number;
  /** Log level of the lines. Default `warn`. */
  level?: 'warn' | 'info' | 'error';
}

export const LOG_BURST_DEFAULT = 10;
export const LOG_PER_SECOND_DEFAULT = 1;
const MAX_KEYS_DEFAULT = 256;
const OVERFLOW_KEY = '(other)';

interface Bucket {
  tokens: number;
  refilledAt: number;
  suppressed: number;
  last: { fields: Record<string, unknown>; msg: string } | null;
}

export class RateLimitedLog {
  private readonly buckets = new Map<string, Bucket>();
  private readonly burst: number;
  private readonly perSecond: number;
  private readonly maxKeys: number;
  private readonly level: 'warn' | 'info' | 'error';
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly log: Logger,
    opts: RateLimitedLogOptions = {},
  ) {
    this.burst = Math.max(1, opts.burst ?? LOG_BURST_DEFAULT);
    this.perSecond = opts.perSecond ?? LOG_PER_SECOND_DEFAULT;
    if (!(this.perSecond > 0)) throw new RangeError('perSecond must be > 0');
    this.maxKeys = opts.maxKeys ?? MAX_KEYS_DEFAULT;
    this.level = opts.level ?? 'warn';
  }

  /** Writes the line now if the key's bucket allows, else counts it into the next line of the key. */
  write(key: string, fields: Record<string, unknown>, msg: string): void {
    const now = Date.now();
    const b = this.bucket(key, now);
    if (this.take(b, now)) {
      const n = b.suppressed;
      b.suppressed = 0;
      b.last = null;
      this.log[this.level](n > 0 ? { ...fields, suppressed: n } : fields, msg);
      return;
    }
    b.suppressed++;
    b.last = { fields, msg };
    this.schedule();
  }

  /** Lines counted but not written yet (all keys). */
  get pending(): number {
    let n = 0;
    for (const b of this.buckets.values()) n += b.suppressed;
    return n;
  }

  /** Cancels the summary timer (summaries still owed are dropped). */
  stop(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private bucket(key: string, now: number): Bucket {
    let b = this.buckets.get(key);
    if (b !== undefined) return b;
    if (this.buckets.size >= this.maxKeys) this.prune(now);
    if (this.buckets.size >= this.maxKeys) key = OVERFLOW_KEY;
    b = this.buckets.get(key);
    if (b === undefined) {
      b = { tokens: this.burst, refilledAt: now, suppressed: 0, last: null };
      this.buckets.set(key, b);
    }
    return b;
  }

  private take(b: Bucket, now: number): boolean {
    b.tokens = Math.min(this.burst, b.tokens + ((now - b.refilledAt) / 1000) * this.perSecond);
    b.refilledAt = now;
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  /** Forgets buckets that are full again and owe nothing: they are as good as new. */
  private prune(now: number): void {
    for (const [k, b] of this.buckets) {
      if (b.suppressed === 0 && b.tokens + ((now - b.refilledAt) / 1000) * this.perSecond >= this.burst) this.buckets.delete(k);
    }
  }

  private schedule(): void {
    if (this.timer !== null) return;
    this.timer = setTimeout(() => this.summarise(), Math.ceil(1000 / this.perSecond));
    this.timer.unref();
  }

  private summarise(): void {
    this.timer = null;
    const now = Date.now();
    let owed = false;
    for (const b of this.buckets.values()) {
      if (b.suppressed === 0 || b.last === null) continue;
      if (!this.take(b, now)) {
        owed = true;
        continue;
      }
      this.log[this.level]({ ...b.last.fields, suppressed: b.suppressed, summary: true }, b.last.msg);
      b.suppressed = 0;
      b.last = null;
    }
    if (owed) this.schedule();
    this.prune(now);
  }
}
