#!/usr/bin/env node
// Checks that the folders of src/ only import downwards and form no cycle.
// Usage: node --import tsx scripts/check-layers.ts [srcDir]   (default: src); exits 1 on a violation.
//
// A layer may import itself and any layer listed before it; folders of the same layer may not
// import each other. Files directly in src/ and src/demo/ are the top level (the app, the CLI, the
// cluster primary, the sidecar, the configuration): they may import anything below and each other,
// so there each file counts as its own node in the cycle check. Type-only imports count: they are
// dependencies of the design all the same. A folder missing from the table fails the check, so a
// new folder gets a place in the layers when it is created.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

/** Bottom to top (docs/architecture.md#layers). */
export const LAYERS: readonly (readonly string[])[] = [
  ['rtmp'], // the protocol: bytes in, events out; no socket
  ['net'], // socket-level helpers: addresses, PROXY protocol, TLS, redaction, rate-limited logs
  ['balancer', 'client'], // backends, health, discovery, routing / the RTMP publisher
  ['proxy'], // listener, sessions, migration; reports through proxy/observer.ts
  ['control'], // metrics, control bus, fleet registry, admin HTTP
  ['.', 'demo'], // top level: app, cli, cluster, sidecar, config, reload
];

const TOP = LAYERS.length - 1;

export interface ImportEdge {
  from: string;
  to: string;
}

export interface LayerReport {
  /** Imports from a folder to a higher one, or between folders of the same layer. */
  upward: (ImportEdge & { why: string })[];
  /** Folders (top-level files count alone) that reach each other, with one import of each hop. */
  cycles: ImportEdge[][];
  /** Folders the table does not place. */
  unplaced: string[];
  /** Folder graph: folder -> folders it imports. */
  graph: Map<string, Set<string>>;
}

function walk(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir).sort()) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out.push(...walk(p));
    else if (e.endsWith('.ts') && !e.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

/** `src/proxy/session/x.ts` -> `proxy`; `src/app.ts` -> `.`. */
function folderOf(rel: string): string {
  const i = rel.indexOf('/');
  return i < 0 ? '.' : rel.slice(0, i);
}

/** Cycle-check node: the folder, or the file itself for a file directly in src/. */
function nodeOf(rel: string): string {
  return folderOf(rel) === '.' ? rel : folderOf(rel);
}

function rankOf(folder: string): number {
  return LAYERS.findIndex((l) => l.includes(folder));
}

/** The relative imports (static, dynamic, re-exports, type-only) of every file under `srcDir`, as paths relative to it. */
export function importEdges(srcDir: string): ImportEdge[] {
  const root = resolve(srcDir);
  const edges: ImportEdge[] = [];
  for (const file of walk(root)) {
    const from = relative(root, file).split(sep).join('/');
    const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    for (const imp of info.importedFiles) {
      if (!imp.fileName.startsWith('.')) continue;
      const target = relative(root, resolve(dirname(file), imp.fileName.replace(/\.js$/, '.ts')))
        .split(sep)
        .join('/');
      edges.push({ from, to: target });
    }
  }
  return edges;
}

/** Strongly connected components of size > 1 (Tarjan), each as one cycle through its nodes. */
function cyclesOf(nodes: Map<string, Set<string>>): string[][] {
  let index = 0;
  const idx = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string): void => {
    idx.set(v, index);
    low.set(v, index);
    index++;
    stack.push(v);
    onStack.add(v);
    for (const w of nodes.get(v) ?? []) {
      if (!idx.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, idx.get(w)!));
    }
    if (low.get(v) === idx.get(v)) {
      const scc: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        scc.push(w);
      } while (w !== v);
      if (scc.length > 1) out.push(scc.reverse());
    }
  };
  for (const v of [...nodes.keys()].sort()) if (!idx.has(v)) visit(v);
  return out;
}

export function checkLayers(srcDir: string): LayerReport {
  const edges = importEdges(srcDir);
  const upward: LayerReport['upward'] = [];
  const unplaced = new Set<string>();
  const graph = new Map<string, Set<string>>();
  const nodes = new Map<string, Set<string>>();
  const example = new Map<string, ImportEdge>();
  for (const e of edges) {
    const ff = folderOf(e.from);
    const ft = folderOf(e.to);
    for (const f of [ff, ft]) if (rankOf(f) < 0) unplaced.add(f);
    if (ff !== ft) {
      if (!graph.has(ff)) graph.set(ff, new Set());
      graph.get(ff)!.add(ft);
      const rf = rankOf(ff);
      const rt = rankOf(ft);
      if (rf >= 0 && rt >= 0) {
        if (rt > rf) upward.push({ ...e, why: `${ff} (layer ${rf}) imports ${ft} (layer ${rt})` });
        else if (rt === rf && rf !== TOP) upward.push({ ...e, why: `${ff} and ${ft} are the same layer (${rf}): neither may import the other` });
      }
    }
    const nf = nodeOf(e.from);
    const nt = nodeOf(e.to);
    if (nf === nt) continue;
    if (!nodes.has(nf)) nodes.set(nf, new Set());
    nodes.get(nf)!.add(nt);
    if (!example.has(`${nf} ${nt}`)) example.set(`${nf} ${nt}`, e);
  }
  const cycles = cyclesOf(nodes).map((scc) => {
    // The shortest way round from the component's first node back to it (breadth first, inside the component).
    const inScc = new Set(scc);
    const start = scc[0]!;
    const cameFrom = new Map<string, string>();
    const queue = [start];
    while (queue.length > 0 && !cameFrom.has(start)) {
      const v = queue.shift()!;
      for (const w of [...nodes.get(v)!].sort()) {
        if (!inScc.has(w) || cameFrom.has(w)) continue;
        cameFrom.set(w, v);
        queue.push(w);
      }
    }
    const path: ImportEdge[] = [];
    let v = start;
    do {
      const prev = cameFrom.get(v)!;
      path.unshift(example.get(`${prev} ${v}`)!);
      v = prev;
    } while (v !== start);
    return path;
  });
  return { upward, cycles, unplaced: [...unplaced].sort(), graph };
}

/** The report as lines for a terminal; empty when the layers hold. */
export function describe(r: LayerReport): string[] {
  const lines: string[] = [];
  for (const u of r.unplaced) lines.push(`unplaced folder src/${u}: add it to LAYERS in scripts/check-layers.ts (and docs/architecture.md#layers)`);
  for (const u of r.upward) lines.push(`upward import: src/${u.from} -> src/${u.to}: ${u.why}`);
  for (const c of r.cycles) lines.push(`folder cycle: ${c.map((e) => `src/${e.from} -> src/${e.to}`).join(', ')}`);
  return lines;
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const srcDir = process.argv[2] ?? join(fileURLToPath(new URL('..', import.meta.url)), 'src');
  const report = checkLayers(srcDir);
  const lines = describe(report);
  if (lines.length > 0) {
    for (const l of lines) console.error(l);
    process.exit(1);
  }
  const graph = [...report.graph].sort(([a], [b]) => a.localeCompare(b)).map(([f, to]) => `${f} -> ${[...to].sort().join(', ')}`);
  console.log(`layers: ok (${LAYERS.map((l) => l.join('/')).join(' < ')})\n  ${graph.join('\n  ')}`);
}
