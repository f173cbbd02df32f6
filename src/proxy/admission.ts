/**
 * Per-client-IP admission: concurrent sessions per IP and a connect-rate token bucket per IP.
 * Checked once per accepted connection (never per byte). IPv6 clients are grouped by /64 (one
 * host usually owns a whole /64), IPv4-mapped IPv6 addresses count as their IPv4 address.
 * Memory is bounded: an IP with no session whose bucket is full again is forgotten.
 */
import net from 'node:net';

export interface AdmissionLimits {
  /** Concurrent sessions per IP; 0 = unlimited. */
  maxSessionsPerIp: number;
  /** Tokens added per second per IP; 0 = no rate limit. */
  connectRatePerIp: number;
  /** Bucket size. */
  connectBurstPerIp: number;
}

export type AdmissionRefusal = 'per-ip-sessions' | 'per-ip-rate';

interface Entry {
  sessions: number;
  tokens: number;
  at: number;
}

/** The IP an address is limited as: IPv4 as is, IPv4-mapped as IPv4, other IPv6 as its /64 (`2001:db8:1:2::/64`). */
export function limitKey(address: string): string {
  if (address.startsWith('::ffff:') && net.isIPv4(address.slice(7))) return address.slice(7);
  if (!net.isIPv6(address)) return address;
  const a = address.split('%')[0]!;
  const [head, tail] = a.includes('::') ? (a.split('::') as [string, string]) : [a, null];
  const h = head === '' ? [] : head.split(':');
  const t = tail === null || tail === '' ? [] : tail.split(':');
  // An embedded IPv4 tail takes two groups; it only matters for the count, never for the /64.
  const tailGroups = t.reduce((n, g) => n + (g.includes('.') ? 2 : 1), 0);
  const groups = tail === null ? h : [...h, ...new Array<string>(Math.max(0, 8 - h.length - tailGroups)).fill('0'), ...t];
  return `${groups
    .slice(0, 4)
    .map((g) => parseInt(g, 16).toString(16))
    .join(':')}::/64`;
}

export class Admission {
  private readonly byIp = new Map<string, Entry>();
  private sweepTimer: NodeJS.Timeout | null = null;

  constructor(
    private limits: AdmissionLimits,
    private readonly now: () => number = Date.now,
  ) {}

  /** New limits (configuration reload): IPs keep their session counts; buckets are clamped to the new burst. */
  setLimits(limits: AdmissionLimits): void {
    this.limits = { ...limits };
    for (const e of this.byIp.values()) e.tokens = Math.min(e.tokens, limits.connectBurstPerIp);
    if (this.byIp.size > 0) this.scheduleSweep();
  }

  get enabled(): boolean {
    return this.limits.maxSessionsPerIp > 0 || this.limits.connectRatePerIp > 0;
  }

  /** IPs currently tracked (tests, memory bound). */
  get tracked(): number {
    return this.byIp.size;
  }

  /**
   * Admits one connection from `key` (see limitKey) or says why not. An admitted connection
   * holds a session slot until `release(key)`.
   */
  admit(key: string): AdmissionRefusal | null {
    const { maxSessionsPerIp, connectRatePerIp, connectBurstPerIp } = this.limits;
    const t = this.now();
    let e = this.byIp.get(key);
    if (e === undefined) {
      e = { sessions: 0, tokens: connectBurstPerIp, at: t };
      this.byIp.set(key, e);
      this.scheduleSweep();
    } else if (connectRatePerIp > 0) {
      e.tokens = Math.min(connectBurstPerIp, e.tokens + ((t - e.at) / 1000) * connectRatePerIp);
      e.at = t;
    }
    if (connectRatePerIp > 0) {
      if (e.tokens < 1) return 'per-ip-rate';
      // A refused attempt costs no token (else a flood would lock the IP out for longer).
    }
    if (maxSessionsPerIp > 0 && e.sessions >= maxSessionsPerIp) return 'per-ip-sessions';
    if (connectRatePerIp > 0) e.tokens -= 1;
    e.sessions++;
    return null;
  }

  release(key: string): void {
    const e = this.byIp.get(key);
    if (e === undefined) return;
    e.sessions--;
    if (e.sessions <= 0 && this.limits.connectRatePerIp === 0) this.byIp.delete(key);
  }

  /** Forgets idle IPs whose bucket has refilled. */
  sweep(): void {
    const { connectRatePerIp, connectBurstPerIp } = this.limits;
    const t = this.now();
    for (const [k, e] of this.byIp) {
      if (e.sessions > 0) continue;
      const tokens = connectRatePerIp > 0 ? e.tokens + ((t - e.at) / 1000) * connectRatePerIp : connectBurstPerIp;
      if (tokens >= connectBurstPerIp) this.byIp.delete(k);
    }
    if (this.byIp.size === 0 && this.sweepTimer !== null) {
      clearInterval(this.sweepTimer);
      this.sweepTimer = null;
    }
  }

  stop(): void {
    if (this.sweepTimer !== null) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
  }

  private scheduleSweep(): void {
    if (this.sweepTimer !== null || this.limits.connectRatePerIp === 0) return;
    this.sweepTimer = setInterval(() => this.sweep(), 10_000);
    this.sweepTimer.unref();
  }
}
