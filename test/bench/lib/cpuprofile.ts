/**
 * Reads the .cpuprofile files `node --cpu-prof` wrote and prints the hottest functions by self
 * time and by total (inclusive) time, plus a per-file breakdown — enough to see what the proxy's
 * hot path spends beyond a plain relay.
 *
 * Usage (standalone): node --import tsx test/bench/lib/cpuprofile.ts <dir-or-file> [top]
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

interface Row {
  key: string;
  self: number;
  total: number;
}

function where(cf: CallFrame, root: string): string {
  if (cf.url === '') return '';
  let u = cf.url.startsWith('file://') ? fileURLToPath(cf.url) : cf.url;
  if (u.startsWith(root)) u = relative(root, u);
  return `${u}:${cf.lineNumber + 1}`;
}

function label(cf: CallFrame, root: string): string {
  const w = where(cf, root);
  return `${cf.functionName || '(anonymous)'}${w === '' ? '' : ` ${w}`}`;
}

export function analyze(p: Profile, root: string): { rows: Row[]; files: Map<string, number>; totalUs: number } {
  const byId = new Map<number, ProfileNode>();
  for (const n of p.nodes) byId.set(n.id, n);
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const selfUs = new Map<number, number>();
  for (let i = 0; i < p.samples.length; i++) {
    const d = p.timeDeltas[i + 1] ?? p.timeDeltas[i] ?? 0;
    selfUs.set(p.samples[i]!, (selfUs.get(p.samples[i]!) ?? 0) + Math.max(0, d));
  }
  const rows = new Map<string, Row>();
  const files = new Map<string, number>();
  let totalUs = 0;
  for (const [id, us] of selfUs) {
    const n = byId.get(id)!;
    const name = n.callFrame.functionName;
    if (name === '(idle)') continue;
    totalUs += us;
    const key = label(n.callFrame, root);
    const r = rows.get(key) ?? { key, self: 0, total: 0 };
    r.self += us;
    rows.set(key, r);
    const file = n.callFrame.url === '' ? name : where(n.callFrame, root).replace(/:\d+$/, '');
    files.set(file, (files.get(file) ?? 0) + us);
    // Inclusive: credit every distinct function on the stack once.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const k = label(byId.get(cur)!.callFrame, root);
      if (seen.has(k)) continue;
      seen.add(k);
      const rr = rows.get(k) ?? { key: k, self: 0, total: 0 };
      rr.total += us;
      rows.set(k, rr);
    }
  }
  return { rows: [...rows.values()], files, totalUs };
}

export function summarizeProfiles(path: string, root: string, top = 25): string {
  const files = statSync(path).isDirectory()
    ? readdirSync(path)
        .filter((f) => f.endsWith('.cpuprofile'))
        .map((f) => join(path, f))
    : [path];
  const out: string[] = [];
  for (const f of files) {
    const { rows, files: perFile, totalUs } = analyze(JSON.parse(readFileSync(f, 'utf8')) as Profile, root);
    const pct = (us: number): string => `${((us / totalUs) * 100).toFixed(1).padStart(5)} %`;
    out.push(`## ${f} — ${(totalUs / 1e6).toFixed(2)} s of CPU sampled (idle excluded)`, '', 'Top by self time:');
    for (const r of [...rows].sort((a, b) => b.self - a.self).slice(0, top)) out.push(`  ${pct(r.self)}  ${r.key}`);
    out.push('', 'Top by total time (inclusive):');
    for (const r of [...rows].filter((r) => !/^\((root|program)\)/.test(r.key)).sort((a, b) => b.total - a.total).slice(0, top)) out.push(`  ${pct(r.total)}  ${r.key}`);
    out.push('', 'Self time by file:');
    for (const [file, us] of [...perFile].sort((a, b) => b[1] - a[1]).slice(0, 15)) out.push(`  ${pct(us)}  ${file}`);
    out.push('');
  }
  return out.join('\n');
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const root = fileURLToPath(new URL('../../..', import.meta.url));
  process.stdout.write(summarizeProfiles(process.argv[2] ?? '.', root, Number(process.argv[3] ?? 25)) + '\n');
}
