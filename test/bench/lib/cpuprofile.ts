/**
 * Reads the .cpuprofile files `node --cpu-prof` wrote and prints the hottest functions by self
 * time and by total (inclusive) time, plus a per-file breakdown — enough to see what the proxy's
 * hot path spends beyond a plain relay.
 *
 * Usage (standalone): node --import tsx test/bench/lib/cpuprofile.ts <dir-or-file> [top]
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
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

// --- source maps (dist/*.js → src/*.ts), so hot spots are reported at TypeScript lines -------

const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** Decoded "mappings": per generated line, [generatedColumn, sourceIndex, originalLine] triples. */
type LineMap = [number, number, number][];
const maps = new Map<string, { sources: string[]; lines: LineMap[] } | null>();

function decodeMappings(mappings: string): LineMap[] {
  const lines: LineMap[] = [];
  let src = 0;
  let origLine = 0;
  for (const line of mappings.split(';')) {
    const segs: LineMap = [];
    let genCol = 0;
    for (const seg of line.split(',')) {
      if (seg === '') continue;
      const vals: number[] = [];
      let shift = 0;
      let value = 0;
      for (const ch of seg) {
        const d = B64.indexOf(ch);
        value += (d & 31) << shift;
        if (d & 32) shift += 5;
        else {
          vals.push(value & 1 ? -(value >>> 1) : value >>> 1);
          value = 0;
          shift = 0;
        }
      }
      genCol += vals[0]!;
      if (vals.length >= 4) {
        src += vals[1]!;
        origLine += vals[2]!; // vals[3], the original column, is not needed: the report names lines
        segs.push([genCol, src, origLine]);
      }
    }
    lines.push(segs);
  }
  return lines;
}

function loadMap(file: string): { sources: string[]; lines: LineMap[] } | null {
  if (maps.has(file)) return maps.get(file)!;
  let m: { sources: string[]; lines: LineMap[] } | null;
  try {
    const raw = JSON.parse(readFileSync(`${file}.map`, 'utf8')) as { sources: string[]; mappings: string };
    m = { sources: raw.sources.map((s) => join(dirname(file), s)), lines: decodeMappings(raw.mappings) };
  } catch {
    m = null;
  }
  maps.set(file, m);
  return m;
}

/** Original file and 1-based line of a generated position, when the file has a .map beside it. */
function original(file: string, line: number, col: number): { file: string; line: number } | null {
  const m = loadMap(file);
  const segs = m?.lines[line];
  if (m === null || segs === undefined || segs.length === 0) return null;
  let best = segs[0]!;
  for (const s of segs) if (s[0] <= col) best = s;
  return { file: m.sources[best[1]]!, line: best[2] + 1 };
}

function where(cf: CallFrame, root: string): string {
  if (cf.url === '') return '';
  let u = cf.url.startsWith('file://') ? fileURLToPath(cf.url) : cf.url;
  let line = cf.lineNumber + 1;
  if (u.endsWith('.js') && u.startsWith(join(root, 'dist'))) {
    const o = original(u, cf.lineNumber, cf.columnNumber);
    if (o !== null) {
      u = o.file;
      line = o.line;
    }
  }
  if (u.startsWith(root)) u = relative(root, u);
  return `${u}:${line}`;
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
    for (const r of [...rows]
      .filter((r) => !/^\((root|program)\)/.test(r.key))
      .sort((a, b) => b.total - a.total)
      .slice(0, top))
      out.push(`  ${pct(r.total)}  ${r.key}`);
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
