/** Result types of the benchmark and their Markdown rendering (one table + targets). */
import type { MiddleName } from './middles.js';

export interface RunResult {
  rep: number;
  middle: MiddleName;
  /** RSS right after start, bytes (null for direct). */
  rssIdle: number | null;
  idle: {
    sessions: number;
    setupSeconds: number;
    rssBefore: number | null;
    rssAfter: number | null;
    /** (RSS with the sessions − RSS before) / sessions, as the process stands. */
    rssPerSession: number | null;
    /** The same with both readings taken after a full GC (Node middles only): live memory, not garbage. */
    rssPerSessionAfterGc: number | null;
  };
  /** Round trip of an 18-byte message through the middle, µs. */
  latency: { count: number; p50: number; p99: number; min: number; max: number };
  bulk: {
    connections: number;
    seconds: number;
    gbps: number;
    cpuSeconds: number | null;
    cpuPerGbit: number | null;
    cpuPercent: number | null;
    /** The middle's CPU split: its main thread, and every other thread (V8 GC helpers, libuv pool; HAProxy/nginx have one). */
    mainThreadCpuPercent: number | null;
    otherThreadsCpuPercent: number | null;
    loadgenCpuPercent: number;
    sinkCpuPercent: number;
    bytesSent: number;
    /** Every byte sent arrived at the sink (and, with verify, was the same byte). */
    complete: boolean;
    /** CPU used by processes other than the bench's own (other users of the machine) during the window, % of one core. */
    backgroundCpuPercent: number | null;
    /** The middle's read syscalls during the window: bytes per read, minor page faults per read (absent in older results). */
    bytesPerRead?: number | null;
    minorFaultsPerRead?: number | null;
  } | null;
  paced: {
    publishers: number;
    setupSeconds: number;
    offeredGbps: number;
    deliveredGbps: number;
    deliveredRatio: number;
    /** 5th percentile of the publishers' delivered rate, as a fraction of 6 Mbps. */
    p5PublisherRatio: number;
    sustained: boolean;
    cpuPercent: number | null;
    complete: boolean;
    /** Publishers whose connection failed (reset) during the phase. */
    dropped: number;
  }[];
}

export interface FanoutResult {
  rep: number;
  trigger: 'admin' | 'redis';
  sessions: number;
  setupSeconds: number;
  received: number;
  /** Time the drain command took to return (HTTP response / PUBLISH reply). */
  commandMs: number;
  /** From the command to the first / median / last client having read the Go Away. */
  firstMs: number | null;
  medianMs: number | null;
  lastMs: number | null;
  /** From the command to the last Go Away the proxy recorded as written (its own clock, ms resolution). */
  lastWrittenMs: number | null;
  rssBytes: number;
}

export interface BenchResult {
  date: string;
  command: string;
  argv: string[];
  machine: { cpu: string; cores: number; memoryGiB: number; kernel: string; node: string; haproxy: string | null; nginx: string | null };
  stream: { capture: string; preambleBytes: number; blockBytes: number; blockMessages: number; nominalBps: number };
  scale: Record<string, unknown>;
  verify: boolean;
  proxyCode: 'dist' | 'src';
  pin: { throughput: string; latency: string };
  /** Runtime settings (glibc malloc, V8 heap) of the Node middles (absent in results from before it existed). */
  runtime?: { middles: string; proxyB: string; tuned: { env: Record<string, string>; nodeArgs: string[] } };
  /** What the publishers' connect announced (--publishers; proxy-goaway: always goaway). Absent before it existed: goaway. */
  publishers?: string[];
  middles: MiddleName[];
  runs: RunResult[];
  fanout: FanoutResult[];
  problems: string[];
  seconds: number;
}

const LABEL: Record<MiddleName, string> = {
  direct: 'direct',
  'node-relay': 'Node pipe relay',
  'node-relay-untuned': 'Node pipe relay, plain node',
  proxy: 'this proxy',
  'proxy-goaway': 'this proxy, Go Away publishers',
  'proxy-b': 'proxy B',
  'proxy-tls': 'this proxy, RTMPS',
  'proxy-cluster': 'this proxy, 2 workers',
  haproxy: 'HAProxy',
  nginx: 'nginx stream',
};

interface Stat {
  median: number;
  min: number;
  max: number;
  n: number;
}

export function stat(values: (number | null | undefined)[]): Stat | null {
  const v = values.filter((x): x is number => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  const median = v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
  return { median, min: v[0]!, max: v.at(-1)!, n: v.length };
}

function num(x: number, digits: number): string {
  return x.toFixed(digits);
}

/** "median (min–max)", or just the value for one sample. */
export function cell(s: Stat | null, digits: number, unit = ''): string {
  if (s === null) return '—';
  if (s.n === 1 || s.min === s.max) return `${num(s.median, digits)}${unit}`;
  return `${num(s.median, digits)}${unit} (${num(s.min, digits)}–${num(s.max, digits)})`;
}

/** Per-repetition ratio of a middle's value to another middle's value in the same repetition. */
function perRep(result: BenchResult, m: MiddleName, ref: MiddleName, f: (r: RunResult) => number | null, op: (a: number, b: number) => number): Stat | null {
  const out: number[] = [];
  for (const r of result.runs.filter((x) => x.middle === m)) {
    const b = result.runs.find((x) => x.middle === ref && x.rep === r.rep);
    const va = f(r);
    const vb = b === undefined ? null : f(b);
    if (va !== null && vb !== null) out.push(op(va, vb));
  }
  return stat(out);
}

const ratio = (a: number, b: number): number => a / b;
const minus = (a: number, b: number): number => a - b;

/** Publishers one core could carry, from the largest level sustained in that repetition: N / CPU fraction. */
function perCore(r: RunResult): number | null {
  const ok = r.paced.filter((p) => p.sustained && p.cpuPercent !== null && p.cpuPercent > 0);
  if (ok.length === 0) return null;
  const best = ok.reduce((a, b) => (b.publishers > a.publishers ? b : a));
  return best.publishers / (best.cpuPercent! / 100);
}

export function summarize(result: BenchResult) {
  const of = (m: MiddleName, f: (r: RunResult) => number | null | undefined): Stat | null => stat(result.runs.filter((r) => r.middle === m).map(f));
  const fan = (trigger: 'admin' | 'redis', n: number): Stat | null =>
    stat(result.fanout.filter((f) => f.trigger === trigger && f.sessions === n).map((f) => f.lastMs));
  return { of, fan, perRep };
}

export function renderReport(result: BenchResult): string {
  const ms = result.middles;
  const has = (m: MiddleName): boolean => ms.includes(m);
  const { of, fan } = summarize(result);
  const rows: [string, (m: MiddleName) => string][] = [];
  const KiB = 1024;
  const MiB = 1024 * 1024;

  rows.push([
    `Bulk throughput, ${result.runs[0]?.bulk?.connections ?? 4} publishers (Gbps)`,
    (m) =>
      cell(
        of(m, (r) => r.bulk?.gbps ?? null),
        2,
      ),
  ]);
  if (has('node-relay'))
    rows.push([
      '… ratio to the Node relay',
      (m) =>
        m === 'node-relay'
          ? '1'
          : cell(
              perRep(result, m, 'node-relay', (r) => r.bulk?.gbps ?? null, ratio),
              2,
            ),
    ]);
  rows.push([
    'CPU-s per Gbit (middle process)',
    (m) =>
      cell(
        of(m, (r) => r.bulk?.cpuPerGbit ?? null),
        3,
      ),
  ]);
  if (has('node-relay'))
    rows.push([
      '… ratio to the Node relay',
      (m) =>
        m === 'direct'
          ? '—'
          : m === 'node-relay'
            ? '1'
            : cell(
                perRep(result, m, 'node-relay', (r) => r.bulk?.cpuPerGbit ?? null, ratio),
                2,
              ),
    ]);
  if (has('haproxy'))
    rows.push([
      '… ratio to HAProxy',
      (m) =>
        m === 'direct'
          ? '—'
          : m === 'haproxy'
            ? '1'
            : cell(
                perRep(result, m, 'haproxy', (r) => r.bulk?.cpuPerGbit ?? null, ratio),
                2,
              ),
    ]);
  rows.push([
    '… middle CPU % during bulk: main thread / other threads',
    (m) =>
      m === 'direct'
        ? '—'
        : `${cell(
            of(m, (r) => r.bulk?.mainThreadCpuPercent ?? null),
            0,
          )} / ${cell(
            of(m, (r) => r.bulk?.otherThreadsCpuPercent ?? null),
            0,
          )}`,
  ]);
  rows.push([
    '… middle: KiB per read syscall / minor page faults per read',
    (m) =>
      m === 'direct'
        ? '—'
        : `${cell(
            of(m, (r) => (r.bulk?.bytesPerRead == null ? null : r.bulk.bytesPerRead / KiB)),
            1,
          )} / ${cell(
            of(m, (r) => r.bulk?.minorFaultsPerRead ?? null),
            1,
          )}`,
  ]);
  rows.push([
    '… load generator / sink CPU % during bulk',
    (m) =>
      `${cell(
        of(m, (r) => r.bulk?.loadgenCpuPercent ?? null),
        0,
      )} / ${cell(
        of(m, (r) => r.bulk?.sinkCpuPercent ?? null),
        0,
      )}`,
  ]);
  rows.push([
    '… other processes on the machine, CPU % during bulk',
    (m) =>
      cell(
        of(m, (r) => r.bulk?.backgroundCpuPercent ?? null),
        0,
      ),
  ]);
  const levels = [...new Set(result.runs.flatMap((r) => r.paced.map((p) => p.publishers)))].sort((a, b) => a - b);
  for (const n of levels) {
    rows.push([
      `Paced ${n.toLocaleString('en-US')} × 6 Mbps: delivered %, middle CPU %`,
      (m) => {
        const ps = result.runs
          .filter((r) => r.middle === m)
          .map((r) => r.paced.find((p) => p.publishers === n))
          .filter((p) => p !== undefined);
        if (ps.length === 0) return '—';
        const ok = ps.filter((p) => p.sustained).length;
        const delivered = cell(stat(ps.map((p) => p.deliveredRatio * 100)), 0, ' %');
        const cpu = m === 'direct' ? '' : `, CPU ${cell(stat(ps.map((p) => p.cpuPercent)), 0, ' %')}`;
        return `${delivered}${cpu} ${ok === ps.length ? '✓' : ok === 0 ? '✗' : `${ok}/${ps.length} ✓`}`;
      },
    ]);
  }
  if (levels.length > 0) rows.push(['6 Mbps publishers per core (est., largest sustained level)', (m) => (m === 'direct' ? '—' : cell(of(m, perCore), 0))]);
  rows.push([
    'Ping-pong RTT p50 / p99 (µs)',
    (m) =>
      `${cell(
        of(m, (r) => r.latency.p50),
        0,
      )} / ${cell(
        of(m, (r) => r.latency.p99),
        0,
      )}`,
  ]);
  if (has('direct')) {
    rows.push([
      'Added latency p50 / p99 vs direct (µs)',
      (m) =>
        m === 'direct'
          ? '0 / 0'
          : `${cell(
              perRep(result, m, 'direct', (r) => r.latency.p50, minus),
              0,
            )} / ${cell(
              perRep(result, m, 'direct', (r) => r.latency.p99, minus),
              0,
            )}`,
    ]);
  }
  rows.push([
    'RSS at idle (MiB)',
    (m) =>
      cell(
        of(m, (r) => (r.rssIdle === null ? null : r.rssIdle / MiB)),
        1,
      ),
  ]);
  const idleN = result.runs[0]?.idle.sessions ?? 0;
  rows.push([
    `RSS per session at ${idleN.toLocaleString('en-US')} idle sessions (KiB)`,
    (m) =>
      cell(
        of(m, (r) => (r.idle.rssPerSession === null ? null : r.idle.rssPerSession / KiB)),
        1,
      ),
  ]);
  rows.push([
    '… the same, both readings after a full GC (KiB)',
    (m) =>
      cell(
        of(m, (r) => (r.idle.rssPerSessionAfterGc == null ? null : r.idle.rssPerSessionAfterGc / KiB)),
        1,
      ),
  ]);
  for (const trigger of ['admin', 'redis'] as const) {
    const sizes = [...new Set(result.fanout.filter((f) => f.trigger === trigger).map((f) => f.sessions))].sort((a, b) => a - b);
    for (const n of sizes) {
      rows.push([
        `Go Away fan-out, ${n.toLocaleString('en-US')} sessions, ${trigger === 'admin' ? 'admin POST' : 'Redis PUBLISH'} → last type 32 read (ms)`,
        (m) => (m === 'proxy' ? cell(fan(trigger, n), 1) : '—'),
      ]);
    }
  }

  const header = `| | ${ms.map((m) => LABEL[m]).join(' | ')} |`;
  const sep = `|---|${ms.map(() => '---:').join('|')}|`;
  const body = rows.map(([label, f]) => `| ${label} | ${ms.map((m) => f(m)).join(' | ')} |`);
  const lines = [header, sep, ...body];
  const smoke = result.command.includes('smoke');
  lines.push(
    '',
    smoke ? 'Targets (issues 8 and 17; smoke sizes: these lines only show that the report works, the figures mean nothing):' : 'Targets (issues 8 and 17):',
  );
  lines.push(...renderTargets(result).map((t) => `- ${t}`));
  if (result.problems.length > 0) lines.push('', '**Problems:**', ...result.problems.map((p) => `- ${p}`));
  return lines.join('\n');
}

/** Where this proxy stands against each target of issues 8 and 17. */
export function renderTargets(result: BenchResult): string[] {
  const { of, fan } = summarize(result);
  const out: string[] = [];
  const mark = (ok: boolean | null): string => (ok === null ? '(n/a)' : ok ? '✓ met' : '✗ not met');
  const has = (m: MiddleName): boolean => result.middles.includes(m);
  const x = (st: Stat | null, digits = 2): string =>
    st === null ? 'n/a' : `${st.median.toFixed(digits)}× (${st.min.toFixed(digits)}–${st.max.toFixed(digits)})`;
  if (!has('proxy')) return out;
  const plainKinds = (result.publishers ?? ['goaway']).join('+');
  for (const p of ['proxy', 'proxy-goaway'] as const) {
    if (!has(p) || !has('node-relay')) continue;
    const who = p === 'proxy' ? `${plainKinds} publishers` : 'goaway publishers';
    const t = perRep(result, p, 'node-relay', (r) => r.bulk?.gbps ?? null, ratio);
    out.push(`Throughput ≥ 1.0× the Node relay (same runtime settings), ${who}: ${x(t)} ${mark(t === null ? null : t.median >= 1.0)}`);
    const c = perRep(result, p, 'node-relay', (r) => r.bulk?.cpuPerGbit ?? null, ratio);
    out.push(`CPU-s/Gbit ≤ 1.05× the Node relay, ${who}: ${x(c)} ${mark(c === null ? null : c.median <= 1.05)}`);
  }
  const level = (r: RunResult): number | null => r.paced.find((q) => q.publishers === 200)?.cpuPercent ?? null;
  if (has('node-relay') && result.runs.some((r) => r.paced.some((q) => q.publishers === 200))) {
    const c = perRep(result, 'proxy', 'node-relay', level, ratio);
    out.push(`CPU at 200 × 6 Mbps ≤ 1.2× the tuned relay's: ${x(c)} ${mark(c === null ? null : c.median <= 1.2)}`);
  }
  if (has('haproxy')) {
    const c = perRep(result, 'proxy', 'haproxy', (r) => r.bulk?.cpuPerGbit ?? null, ratio);
    out.push(`CPU-s/Gbit vs HAProxy (issue 8: ≤ 1.5×): ${x(c)} ${mark(c === null ? null : c.median <= 1.5)}`);
  }
  if (has('node-relay')) {
    const d = perRep(result, 'proxy', 'node-relay', (r) => (r.rssIdle === null ? null : r.rssIdle / 2 ** 20), minus);
    out.push(
      `Idle RSS within 10 MiB of the relay's: ${d === null ? 'n/a' : `+${d.median.toFixed(1)} MiB (${d.min.toFixed(1)}–${d.max.toFixed(1)})`} ${mark(d === null ? null : d.median <= 10)}`,
    );
  }
  if (has('proxy-cluster')) {
    const t = perRep(result, 'proxy-cluster', 'proxy', (r) => r.bulk?.gbps ?? null, ratio);
    const c = perRep(result, 'proxy-cluster', 'proxy', (r) => r.bulk?.cpuPerGbit ?? null, ratio);
    out.push(`--workers 2 vs one process: throughput ${x(t)}, CPU-s/Gbit ${x(c)} (no target: see docs/performance.md for the projection)`);
  }
  const pc = of('proxy', perCore);
  const maxSustained = stat(
    result.runs.filter((r) => r.middle === 'proxy').map((r) => Math.max(0, ...r.paced.filter((p) => p.sustained).map((p) => p.publishers))),
  );
  if (result.runs.some((r) => r.paced.length > 0)) {
    out.push(
      `≥ 1,000 concurrent 6 Mbps publishers on one core: est. ${pc === null ? 'n/a' : pc.median.toFixed(0)} per core (largest level sustained on this 2-core box with load generator and sink: ${maxSustained?.median ?? 0}) ${mark(pc === null ? null : pc.median >= 1000)}`,
    );
  }
  const f5 = fan('admin', 5000) ?? fan('redis', 5000);
  const fAny = f5 ?? stat(result.fanout.map((f) => f.lastMs));
  out.push(
    `Go Away fan-out to 5,000 sessions < 250 ms: ${f5 === null ? (fAny === null ? 'n/a' : `n/a at 5,000 (largest measured: ${fAny.median.toFixed(1)} ms)`) : `${f5.median.toFixed(1)} ms`} ${mark(f5 === null ? null : f5.median < 250)}`,
  );
  const rss = of('proxy', (r) => (r.idle.rssPerSession === null ? null : r.idle.rssPerSession / 1024));
  out.push(`≤ 8 KiB RSS per idle session: ${rss === null ? 'n/a' : `${rss.median.toFixed(1)} KiB`} ${mark(rss === null ? null : rss.median <= 8)}`);
  if (has('haproxy') && has('direct')) {
    const p = perRep(result, 'proxy', 'haproxy', (r) => r.latency.p50, minus);
    out.push(
      `Added p50 latency within 20 µs of HAProxy's: ${p === null ? 'n/a' : `${p.median >= 0 ? '+' : ''}${p.median.toFixed(0)} µs`} ${mark(p === null ? null : p.median <= 20)}`,
    );
  }
  return out;
}
