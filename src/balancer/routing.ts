/**
 * Routing rules and sticky placement — pure functions and data, no sockets, no pool.
 *
 * A routing spec is a list of backend groups and an ordered list of rules. The first rule whose
 * conditions all hold wins (a rule without conditions matches everything); a request no rule
 * matches must be rejected by the caller (RTMP `_error` with `NetConnection.Connect.Rejected`).
 *
 *   groups:
 *     dvr:  { backends: ['dvr-*'] }                 # names or globs
 *     live: { sources: ['dns:_rtmp._tcp.ingest'] }  # or every backend of a source ('static', 'dns:<name>')
 *   rules:
 *     - { match: { app: [record] }, group: dvr, sticky: true }
 *     - { match: { keyPrefix: 'vip-', cidr: ['10.0.0.0/8'] }, group: live, balance: weighted }
 *     - { group: live }
 *
 * Conditions: `app` (exact, one or a list; the app's `?query` is ignored), `keyPrefix` / `keyRegex`
 * on the stream key without its `?query` (tokens in the query change between reconnects), `cidr`
 * (client address in any of the subnets; IPv4-mapped IPv6 counts as IPv4; `net.BlockList`).
 * Within a group: `least-connections` (default; ties rotate) or `weighted` (fewest sessions per
 * unit of weight, weight = SRV weight or 1). `sticky: true` places by rendezvous (highest random
 * weight) hashing of the stream key over the group's usable backends: a reconnecting publisher
 * lands on the same backend as long as it is usable, and when it drains only its keys move.
 *
 * `Router.needs` says how much of the session must be known before routing: `'accept'` (client
 * address only), `'connect'` (app) or `'publish'` (stream key).
 */
import { createHash } from 'node:crypto';
import { CidrSet } from '../net/cidr.js';

export type Balance = 'least-connections' | 'weighted';
export const BALANCES: readonly Balance[] = ['least-connections', 'weighted'];

export interface RouteMatch {
  app?: string | string[];
  keyPrefix?: string;
  keyRegex?: string;
  cidr?: string | string[];
}

export interface RouteRule {
  name?: string;
  match?: RouteMatch;
  group: string;
  balance?: Balance;
  sticky?: boolean;
}

export interface BackendGroup {
  /** Backend names, or globs with `*`. */
  backends?: string[];
  /** Every backend of these sources (`static`, `dns:<name>`). */
  sources?: string[];
}

export interface RoutingSpec {
  groups: Record<string, BackendGroup>;
  rules: RouteRule[];
}

/** What is known of a session when it is routed. */
export interface RouteRequest {
  app?: string | null;
  streamKey?: string | null;
  clientIp?: string | null;
}

/** A backend as routing sees it (from a pool snapshot). */
export interface BackendView {
  name: string;
  source?: string;
  sessions: number;
  maxSessions?: number;
  weight?: number;
  /** Health up, not draining, not pending removal. */
  usable: boolean;
}

export type RouteStage = 'accept' | 'connect' | 'publish';
const STAGE_ORDER: Record<RouteStage, number> = { accept: 0, connect: 1, publish: 2 };

export class RoutingConfigError extends Error {
  readonly issues: string[];
  constructor(issues: string[]) {
    super(issues.length === 1 ? issues[0]! : `${issues.length} routing errors:\n${issues.map((i) => `  - ${i}`).join('\n')}`);
    this.name = 'RoutingConfigError';
    this.issues = issues;
  }
}

export interface CompiledRule {
  index: number;
  /** `name`, else `rules[<index>]`. */
  label: string;
  group: string;
  balance: Balance;
  sticky: boolean;
  needs: RouteStage;
  test(req: RouteRequest): boolean;
}

export type Placement =
  | { backend: string; rule: CompiledRule; how: 'sticky' | 'sticky-moved' | Balance }
  | { backend: null; rule: CompiledRule | null; reason: 'no-rule' | 'group-unavailable' };

const asList = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** The name part of an app or stream key (before `?`). */
export function withoutQuery(s: string): string {
  const i = s.indexOf('?');
  return i < 0 ? s : s.slice(0, i);
}

function globToRegExp(glob: string): RegExp {
  return new RegExp(
    `^${glob
      .split('*')
      .map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
      .join('.*')}$`,
  );
}

/** Uniform in (0, 1) from (key, backend name): 53 bits of SHA-1. */
export function hashUnit(key: string, name: string): number {
  const h = createHash('sha1').update(key).update('\0').update(name).digest();
  const n = Number(h.readBigUInt64BE(0) >> 11n);
  return (n + 0.5) / 2 ** 53;
}

/** Weighted rendezvous score (Schindelhauer & Schomaker): highest wins; weight ≤ 0 never wins. */
export function hrwScore(key: string, name: string, weight = 1): number {
  if (!(weight > 0)) return -Infinity;
  return -weight / Math.log(hashUnit(key, name));
}

/** The backend `key` maps to among `backends` (highest score; ties by name), or null when empty. */
export function rendezvous<T extends { name: string; weight?: number }>(key: string, backends: readonly T[]): T | null {
  let best: T | null = null;
  let bestScore = -Infinity;
  for (const b of backends) {
    const s = hrwScore(key, b.name, b.weight ?? 1);
    if (best === null || s > bestScore || (s === bestScore && b.name < best.name)) {
      best = b;
      bestScore = s;
    }
  }
  return best === null || bestScore === -Infinity ? null : best;
}

const hasRoom = (b: BackendView): boolean => b.maxSessions === undefined || b.sessions < b.maxSessions;

/**
 * Least connections (or least sessions per unit of weight when `weighted`) among `backends`;
 * ties go to the first at or after `cursor` in name order, so idle backends alternate.
 */
export function leastLoaded(backends: readonly BackendView[], weighted: boolean, cursor = 0): BackendView | null {
  const sorted = [...backends].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const n = sorted.length;
  let best: BackendView | null = null;
  let bestLoad = Infinity;
  for (let k = 0; k < n; k++) {
    const b = sorted[(((cursor + k) % n) + n) % n]!;
    const w = weighted ? (b.weight ?? 1) : 1;
    if (!(w > 0)) continue;
    const load = (b.sessions + 1) / w;
    if (load < bestLoad) {
      best = b;
      bestLoad = load;
    }
  }
  return best;
}

export class Router {
  readonly rules: CompiledRule[];
  /** The latest stage any rule needs: route only once this much of the session is known. */
  readonly needs: RouteStage;
  private readonly groups: Map<string, (b: BackendView) => boolean>;
  private cursor = 0;

  private constructor(rules: CompiledRule[], groups: Map<string, (b: BackendView) => boolean>) {
    this.rules = rules;
    this.groups = groups;
    this.needs = rules.reduce<RouteStage>((m, r) => (STAGE_ORDER[r.needs] > STAGE_ORDER[m] ? r.needs : m), 'accept');
  }

  /** Validates and compiles a spec; throws RoutingConfigError listing every problem. */
  static compile(spec: RoutingSpec): Router {
    const issues: string[] = [];
    const groups = new Map<string, (b: BackendView) => boolean>();
    for (const [name, g] of Object.entries(spec.groups ?? {})) {
      const patterns = (g.backends ?? []).map(globToRegExp);
      const sources = new Set(g.sources ?? []);
      if (patterns.length === 0 && sources.size === 0) issues.push(`group ${name}: lists no backends and no sources`);
      groups.set(name, (b) => patterns.some((p) => p.test(b.name)) || sources.has(b.source ?? 'static'));
    }
    if (!Array.isArray(spec.rules) || spec.rules.length === 0) issues.push('routing needs at least one rule');
    const rules: CompiledRule[] = [];
    (spec.rules ?? []).forEach((r, index) => {
      const label = r.name ?? `rules[${index}]`;
      const m = r.match ?? {};
      if (!groups.has(r.group)) issues.push(`${label}: unknown group ${JSON.stringify(r.group)}`);
      const balance = r.balance ?? 'least-connections';
      if (!BALANCES.includes(balance)) issues.push(`${label}: balance must be one of ${BALANCES.join(', ')}, got ${JSON.stringify(balance)}`);
      const tests: ((req: RouteRequest) => boolean)[] = [];
      let needs: RouteStage = 'accept';
      const need = (s: RouteStage) => {
        if (STAGE_ORDER[s] > STAGE_ORDER[needs]) needs = s;
      };
      const apps = new Set(asList(m.app));
      if (apps.size > 0) {
        need('connect');
        tests.push((q) => q.app != null && apps.has(withoutQuery(q.app)));
      }
      if (m.keyPrefix !== undefined) {
        need('publish');
        const prefix = m.keyPrefix;
        tests.push((q) => q.streamKey != null && withoutQuery(q.streamKey).startsWith(prefix));
      }
      if (m.keyRegex !== undefined) {
        need('publish');
        try {
          const re = new RegExp(m.keyRegex);
          tests.push((q) => q.streamKey != null && re.test(withoutQuery(q.streamKey)));
        } catch (e) {
          issues.push(`${label}: invalid keyRegex: ${(e as Error).message}`);
        }
      }
      const cidrs = asList(m.cidr);
      if (cidrs.length > 0) {
        const { set, invalid } = CidrSet.parse(cidrs);
        for (const c of invalid) issues.push(`${label}: invalid CIDR ${JSON.stringify(c)}`);
        tests.push((q) => set.has(q.clientIp));
      }
      const sticky = r.sticky === true;
      if (sticky) need('publish');
      rules.push({ index, label, group: r.group, balance, sticky, needs, test: (q) => tests.every((t) => t(q)) });
    });
    if (issues.length > 0) throw new RoutingConfigError(issues);
    return new Router(rules, groups);
  }

  /** First matching rule, or null (the caller rejects the session). */
  match(req: RouteRequest): CompiledRule | null {
    for (const r of this.rules) if (r.test(req)) return r;
    return null;
  }

  /** Every backend of the rule's group (usable or not). */
  members(rule: CompiledRule, backends: readonly BackendView[]): BackendView[] {
    const inGroup = this.groups.get(rule.group)!;
    return backends.filter(inGroup);
  }

  /**
   * Where a session goes: the matching rule, then within its group the sticky (rendezvous) backend
   * or the least-loaded one. Only usable backends with room are chosen. `how` is `'sticky-moved'`
   * when the key's preferred backend (over every member) was not usable or full.
   */
  place(req: RouteRequest, backends: readonly BackendView[]): Placement {
    return this.decide(req, backends, this.cursor++);
  }

  /** Where `place` would put the session now, without taking a turn of the balance (nothing changes). */
  preview(req: RouteRequest, backends: readonly BackendView[]): Placement {
    return this.decide(req, backends, this.cursor);
  }

  private decide(req: RouteRequest, backends: readonly BackendView[], cursor: number): Placement {
    const rule = this.match(req);
    if (rule === null) return { backend: null, rule: null, reason: 'no-rule' };
    const members = this.members(rule, backends);
    const open = members.filter((b) => b.usable && hasRoom(b));
    if (open.length === 0) return { backend: null, rule, reason: 'group-unavailable' };
    if (rule.sticky && req.streamKey != null) {
      const key = withoutQuery(req.streamKey);
      const chosen = rendezvous(key, open);
      if (chosen !== null) {
        const preferred = rendezvous(key, members);
        return { backend: chosen.name, rule, how: preferred?.name === chosen.name ? 'sticky' : 'sticky-moved' };
      }
    }
    const chosen = leastLoaded(open, rule.balance === 'weighted', cursor);
    if (chosen === null) return { backend: null, rule, reason: 'group-unavailable' };
    return { backend: chosen.name, rule, how: rule.balance };
  }
}

/** The `description` of the `_error` a session gets when `place` found no backend. */
export function rejectionDescription(p: Extract<Placement, { backend: null }>, req: RouteRequest): string {
  const what = `app ${JSON.stringify(req.app ?? '')}${req.streamKey != null ? ', stream key given' : ''}`;
  return p.reason === 'no-rule'
    ? `No route for this stream (${what}): rejected by the ingest proxy`
    : `No ingest server available for this stream (rule ${p.rule?.label ?? '?'}, group ${p.rule?.group ?? '?'}): all are draining, down or full`;
}
