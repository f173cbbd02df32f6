/**
 * Backend discovery from DNS: the A/AAAA records of a headless Service name (every address is a
 * backend on a fixed port), or SRV records (`_rtmp._tcp.ingest.ns.svc.cluster.local`: targets,
 * ports and weights). The name is re-resolved periodically (interval ± jitter); every change of
 * the resolved set is emitted as `'update'` with the full list, which the app merges with the
 * statically configured backends and hands to `BackendPool.setBackends` — so a backend that
 * disappears from DNS is drained (Go Away / migration) rather than cut, and a new one joins once
 * its first health check passes.
 *
 * Names are stable so drain commands can name them: the IP address for A/AAAA records (IPv6 with
 * `-` for `:`), the SRV target without its trailing dot (its first label when the full name is not
 * a valid backend name; `-<port>` appended when one target is listed with several ports).
 *
 * Failures never empty the pool by accident: a resolution error (timeout, SERVFAIL, refused) keeps
 * the last known set; an authoritative "no such name / no records" answer is applied only after
 * `emptyAfter` consecutive rounds (default 2).
 */
import { EventEmitter } from 'node:events';
import { Resolver } from 'node:dns/promises';
import net from 'node:net';
import type { Logger } from 'pino';
import type { BackendConfig } from './types.js';

export type DiscoveryRecordType = 'auto' | 'a' | 'srv';

const BACKEND_NAME_RE = /^[A-Za-z0-9._-]{1,63}$/;
/** DNS answers meaning "the name has no such records" (as opposed to "could not ask"). */
const EMPTY_ANSWER_CODES = new Set(['ENOTFOUND', 'ENODATA']);

/** The subset of `dns.promises.Resolver` discovery uses (injectable for tests). */
export interface DiscoveryResolver {
  resolve4(name: string): Promise<string[]>;
  resolve6(name: string): Promise<string[]>;
  resolveSrv(name: string): Promise<{ name: string; port: number; priority: number; weight: number }[]>;
}

export interface DnsDiscoveryOptions {
  /** DNS name to resolve. */
  name: string;
  /** `srv`: SRV records; `a`: A + AAAA records on `port`; `auto`: SRV when the name starts with `_`, else A/AAAA. */
  type?: DiscoveryRecordType;
  /** Port of A/AAAA backends. */
  port?: number;
  intervalMs: number;
  /** Each interval is intervalMs + a uniform random 0..jitterMs (so replicas do not resolve in lockstep). */
  jitterMs?: number;
  /** DNS servers, `ip` or `ip:port` / `[ipv6]:port`; default: the system's. */
  servers?: string[];
  /** Per query timeout (ms) of the built-in resolver. */
  timeoutMs?: number;
  /** maxSessions of every discovered backend; 0/undefined = unlimited. */
  maxSessions?: number;
  /** When > 0, an SRV backend's maxSessions is weight × sessionsPerWeight (overrides maxSessions). */
  sessionsPerWeight?: number;
  /** Consecutive empty answers before the discovered set is emptied. Default 2. */
  emptyAfter?: number;
  resolver?: DiscoveryResolver;
  random?: () => number;
  log?: Logger;
}

export type DiscoveryEvents = {
  /** The resolved set changed (full list, sorted by name). */
  update: [BackendConfig[]];
  /** A round failed; the last known set is kept. */
  error: [Error];
};

/** `'dns:<name>'`, the `source` of every backend found through `name`. */
export function dnsSource(name: string): string {
  return `dns:${name}`;
}

/** Backend name for an address: IPv4 as is, IPv6 with `-` for `:` (names cannot hold `:`). */
export function nameForAddress(ip: string): string {
  return ip.includes(':') ? ip.replace(/:/g, '-').replace(/%.*$/, '') : ip;
}

/** Backend name for an SRV target: the FQDN without its trailing dot, or its first label when too long. */
export function nameForTarget(target: string): string {
  const t = target.replace(/\.$/, '').toLowerCase();
  if (BACKEND_NAME_RE.test(t)) return t;
  const first = t.split('.')[0] ?? t;
  return BACKEND_NAME_RE.test(first) ? first : first.replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 63);
}

function sortByName(list: BackendConfig[]): BackendConfig[] {
  return list.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Parses `ip`, `ip:port` or `[ipv6]:port` into the form `Resolver.setServers` takes. */
export function dnsServerSpec(s: string): string {
  const t = s.trim();
  if (net.isIP(t) !== 0) return t;
  const m = /^\[([^\]]+)\]:(\d{1,5})$/.exec(t) ?? /^([^:]+):(\d{1,5})$/.exec(t);
  if (!m || net.isIP(m[1]!) === 0) throw new TypeError(`DNS server must be an IP address with an optional port, got "${s}"`);
  return t;
}

export class DnsDiscovery extends EventEmitter<DiscoveryEvents> {
  readonly name: string;
  readonly source: string;
  readonly type: 'a' | 'srv';
  /** The last applied set (null before the first successful round). */
  current: BackendConfig[] | null = null;
  /** Rounds done, failed rounds, epoch ms of the last successful one (for status/metrics). */
  rounds = 0;
  failures = 0;
  lastError: string | undefined;
  lastSuccessAt: number | undefined;
  private readonly opts: DnsDiscoveryOptions;
  private readonly resolver: DiscoveryResolver;
  private readonly random: () => number;
  private readonly log: Logger | undefined;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private emptyRounds = 0;
  private inflight: Promise<boolean> | undefined;

  constructor(opts: DnsDiscoveryOptions) {
    super();
    if (typeof opts.name !== 'string' || opts.name.trim() === '') throw new TypeError('discovery name must be a non-empty DNS name');
    if (!(opts.intervalMs > 0)) throw new RangeError('discovery intervalMs must be > 0');
    this.opts = opts;
    this.name = opts.name.trim().replace(/\.$/, '');
    this.source = dnsSource(this.name);
    const type = opts.type ?? 'auto';
    this.type = type === 'auto' ? (this.name.startsWith('_') ? 'srv' : 'a') : type;
    if (this.type === 'a' && !(Number.isInteger(opts.port) && opts.port! >= 1 && opts.port! <= 65535)) {
      throw new RangeError('discovery of A/AAAA records needs a port in 1..65535');
    }
    if (opts.resolver) this.resolver = opts.resolver;
    else {
      const r = new Resolver({ timeout: opts.timeoutMs ?? 2_000, tries: 2 });
      if (opts.servers && opts.servers.length > 0) r.setServers(opts.servers.map(dnsServerSpec));
      this.resolver = r;
    }
    this.random = opts.random ?? Math.random;
    this.log = opts.log?.child({ component: 'discovery', dns: this.name });
  }

  /** One resolution, no state change. Throws on failure; an empty list means "no such records". */
  async resolve(): Promise<BackendConfig[]> {
    return this.type === 'srv' ? this.resolveSrv() : this.resolveAddresses();
  }

  /**
   * One round: resolves, applies the failure rules, emits `'update'` when the set changed.
   * Resolves to whether it changed; never rejects. Concurrent calls share one round.
   */
  refresh(): Promise<boolean> {
    this.inflight ??= this.round().finally(() => {
      this.inflight = undefined;
    });
    return this.inflight;
  }

  /** Periodic re-resolution (first round now unless `immediate` is false). Timers are unref'd. */
  start(immediate = true): void {
    if (this.running) return;
    this.running = true;
    if (immediate) void this.refresh().then(() => this.schedule());
    else this.schedule();
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private schedule(): void {
    if (!this.running) return;
    const jitter = Math.floor(this.random() * (this.opts.jitterMs ?? 0));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.refresh().then(() => this.schedule());
    }, this.opts.intervalMs + jitter);
    this.timer.unref?.();
  }

  private async round(): Promise<boolean> {
    this.rounds++;
    let list: BackendConfig[];
    try {
      list = await this.resolve();
    } catch (err) {
      this.failures++;
      const e = err instanceof Error ? err : new Error(String(err));
      this.lastError = e.message;
      this.log?.warn({ err: e.message, kept: this.current?.length ?? 0 }, 'DNS discovery failed; keeping the last known backends');
      if (this.listenerCount('error') > 0) this.emit('error', e);
      return false;
    }
    this.lastError = undefined;
    this.lastSuccessAt = Date.now();
    if (list.length === 0 && this.current !== null && this.current.length > 0) {
      this.emptyRounds++;
      const needed = this.opts.emptyAfter ?? 2;
      if (this.emptyRounds < needed) {
        this.log?.warn({ rounds: this.emptyRounds, needed }, 'DNS discovery found no backend; keeping the last known ones until confirmed');
        return false;
      }
    } else this.emptyRounds = 0;
    if (this.current !== null && sameBackends(this.current, list)) return false;
    const before = new Set((this.current ?? []).map((b) => b.name));
    const after = new Set(list.map((b) => b.name));
    this.log?.info(
      { added: [...after].filter((n) => !before.has(n)), removed: [...before].filter((n) => !after.has(n)), backends: list.length },
      'DNS discovery: backends changed',
    );
    this.current = list;
    this.emit('update', list);
    return true;
  }

  private limit(weight: number | undefined): number | undefined {
    const per = this.opts.sessionsPerWeight ?? 0;
    if (per > 0 && weight !== undefined) return weight * per;
    const max = this.opts.maxSessions ?? 0;
    return max > 0 ? max : undefined;
  }

  private backend(name: string, host: string, port: number, weight?: number): BackendConfig {
    const b: BackendConfig = { name, host, port, source: this.source };
    if (weight !== undefined) b.weight = weight;
    const max = this.limit(weight);
    if (max !== undefined) b.maxSessions = max;
    return b;
  }

  private async resolveAddresses(): Promise<BackendConfig[]> {
    const [v4, v6] = await Promise.allSettled([this.resolver.resolve4(this.name), this.resolver.resolve6(this.name)]);
    const errors = [v4, v6].filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as NodeJS.ErrnoException);
    const hard = errors.find((e) => !EMPTY_ANSWER_CODES.has(e?.code ?? ''));
    if (hard) throw hard;
    const ips = [...(v4.status === 'fulfilled' ? v4.value : []), ...(v6.status === 'fulfilled' ? v6.value : [])];
    const port = this.opts.port!;
    const seen = new Set<string>();
    const out: BackendConfig[] = [];
    for (const ip of ips) {
      const name = nameForAddress(ip);
      if (seen.has(name)) continue;
      seen.add(name);
      out.push(this.backend(name, ip, port));
    }
    return sortByName(out);
  }

  private async resolveSrv(): Promise<BackendConfig[]> {
    let records: { name: string; port: number; priority: number; weight: number }[];
    try {
      records = await this.resolver.resolveSrv(this.name);
    } catch (err) {
      if (EMPTY_ANSWER_CODES.has((err as NodeJS.ErrnoException)?.code ?? '')) return [];
      throw err;
    }
    // Targets are resolved with the same resolver (the system's getaddrinfo may not know them).
    const targets = [...new Set(records.map((r) => r.name.replace(/\.$/, '').toLowerCase()))];
    const previous = new Map((this.current ?? []).map((b) => [b.name, b.host]));
    const addresses = new Map<string, string | null>();
    await Promise.all(
      targets.map(async (t) => {
        if (net.isIP(t) !== 0) {
          addresses.set(t, t);
          return;
        }
        const [v4, v6] = await Promise.allSettled([this.resolver.resolve4(t), this.resolver.resolve6(t)]);
        const ip = (v4.status === 'fulfilled' ? v4.value[0] : undefined) ?? (v6.status === 'fulfilled' ? v6.value[0] : undefined);
        if (ip !== undefined) addresses.set(t, ip);
        else {
          const hard = [v4, v6].some((r) => r.status === 'rejected' && !EMPTY_ANSWER_CODES.has((r.reason as NodeJS.ErrnoException)?.code ?? ''));
          if (hard) addresses.set(t, null);
        }
      }),
    );
    const perTarget = new Map<string, number>();
    for (const r of records) {
      const t = r.name.replace(/\.$/, '').toLowerCase();
      perTarget.set(t, (perTarget.get(t) ?? 0) + 1);
    }
    const out = new Map<string, BackendConfig>();
    for (const r of records) {
      const t = r.name.replace(/\.$/, '').toLowerCase();
      let name = nameForTarget(t);
      if ((perTarget.get(t) ?? 0) > 1) name = `${name.slice(0, 57)}-${r.port}`;
      if (out.has(name)) continue;
      let host = addresses.get(t);
      if (host === null) {
        // Transient failure resolving this target: keep its last known address, else skip it this round.
        host = previous.get(name);
        if (host === undefined) continue;
      }
      if (host === undefined) {
        this.log?.debug({ target: t }, 'SRV target has no address; skipped');
        continue;
      }
      out.set(name, this.backend(name, host, r.port, r.weight));
    }
    return sortByName([...out.values()]);
  }
}

function sameBackends(a: readonly BackendConfig[], b: readonly BackendConfig[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((x, i) => {
    const y = b[i]!;
    return x.name === y.name && x.host === y.host && x.port === y.port && x.weight === y.weight && x.maxSessions === y.maxSessions;
  });
}

/**
 * Static backends first, then each discovered set; a discovered backend whose name a static one (or
 * an earlier source) already uses is left out and reported in `conflicts`.
 */
export function mergeBackends(
  staticBackends: readonly BackendConfig[],
  discovered: readonly (readonly BackendConfig[])[],
): { backends: BackendConfig[]; discoveredNames: Set<string>; conflicts: BackendConfig[] } {
  const backends: BackendConfig[] = staticBackends.map((b) => ({ ...b }));
  const names = new Set(backends.map((b) => b.name));
  const discoveredNames = new Set<string>();
  const conflicts: BackendConfig[] = [];
  for (const list of discovered) {
    for (const b of list) {
      if (names.has(b.name)) {
        conflicts.push(b);
        continue;
      }
      names.add(b.name);
      discoveredNames.add(b.name);
      backends.push({ ...b });
    }
  }
  return { backends, discoveredNames, conflicts };
}
