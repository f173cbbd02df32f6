/**
 * Where the idle memory of a middle goes (docs/performance.md, "Memory"): starts one middle as
 * `npm run bench` does (the proxy through bin/ of `--root`, tuned; the Node relay tuned), opens
 * idle publishers in two batches (the bench's loadgen: handshake … publish, then silent) and
 * prints, at idle, after a full GC, after each batch and after a full GC: RSS split into V8
 * heap spaces, other anonymous memory and file-backed pages, plus the live heap per session.
 * The second batch gives the marginal cost of a session, without start-up slack or the JIT code
 * of the first sessions. `--snapshots` also writes heap snapshots (idle after GC, and after the
 * first batch after GC) to the system's temp dir, to diff by constructor.
 *
 *   npm run build
 *   node --import tsx test/bench/idle-memory.ts [--middle proxy|node-relay] [--sessions 1000] [--root DIR] [--snapshots]
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { RUNTIME_TUNED, startMiddle } from './lib/middles.js';
import { forkRpc, sleep } from './lib/proc.js';

const { values: opts } = parseArgs({
  options: {
    middle: { type: 'string', default: 'proxy' },
    sessions: { type: 'string', default: '1000' },
    root: { type: 'string' },
    snapshots: { type: 'boolean', default: false },
  },
});
const n = Number(opts.sessions);
const dir = tmpdir();
const HOOK = join(import.meta.dirname, 'memory-hook.mjs');

interface Reading {
  mu: NodeJS.MemoryUsage;
  spaces: Record<string, number>;
  smaps: Record<string, number>;
}

const gen = forkRpc(join(import.meta.dirname, 'loadgen.ts'));
const sink = forkRpc(join(import.meta.dirname, 'sink.ts'));
let seq = 0;
/** SIGUSR2 → the hook writes its reading to `dir` (after a heap snapshot when the flag file is there). */
async function read(pid: number, snapshot: boolean): Promise<Reading> {
  seq++;
  const file = join(dir, `idle-memory-${pid}-${seq}.json`);
  rmSync(file, { force: true });
  const flag = join(dir, `idle-memory-${pid}.snapshot`);
  if (snapshot) writeFileSync(flag, '');
  else rmSync(flag, { force: true });
  process.kill(pid, 'SIGUSR2');
  while (!existsSync(file)) await sleep(50);
  return JSON.parse(readFileSync(file, 'utf8')) as Reading;
}
const mib = (b: number): string => (b / 1048576).toFixed(2);
function show(label: string, r: Reading): void {
  const heap = Object.values(r.spaces).reduce((a, b) => a + b, 0);
  const anonKiB = r.smaps['Anonymous']!;
  const rssKiB = r.smaps['Rss']!;
  const spaces = Object.entries(r.spaces)
    .filter(([, v]) => v > 0)
    .map(([k, v]) => `${k.replace('_space', '')} ${mib(v)}`)
    .join(', ');
  console.log(
    `${label.padEnd(22)} RSS ${(rssKiB / 1024).toFixed(1)} MiB = file ${((rssKiB - anonKiB) / 1024).toFixed(1)} + anon ${(anonKiB / 1024).toFixed(1)} (V8 heap ${mib(heap)}: ${spaces}; other ${(anonKiB / 1024 - heap / 1048576).toFixed(1)}); heap used ${mib(r.mu.heapUsed)}, external ${mib(r.mu.external)}`,
  );
}
const perSession = (a: Reading, b: Reading, k: number): string =>
  `RSS ${((b.smaps['Rss']! - a.smaps['Rss']!) / k).toFixed(1)} KiB, heap used ${((b.mu.heapUsed - a.mu.heapUsed) / 1024 / k).toFixed(1)} KiB per session`;

try {
  const { port: sinkPort } = await sink.call<{ port: number }>('listen', {});
  const relay = opts.middle === 'node-relay';
  const hook = ['--import', HOOK];
  const m = await startMiddle(relay ? 'node-relay' : 'proxy-b', sinkPort, {
    proxyCode: 'dist',
    proxyBRoot: resolve(opts.root ?? '.'),
    nodeArgs: relay ? [...RUNTIME_TUNED.nodeArgs, ...hook] : hook,
    env: { ...(relay ? RUNTIME_TUNED.env : {}), IDLE_MEMORY_DIR: dir },
  });
  const pid = m.pid!;
  await sleep(300);
  show('idle', await read(pid, false));
  process.kill(pid, 'SIGWINCH');
  await sleep(400);
  const idle = await read(pid, opts.snapshots!);
  show('idle, after GC', idle);
  const open = async (idBase: number): Promise<number> => {
    const r = await gen.call<{ opened: number; failed: number }>('idleOpen', { port: m.port, n, idBase, parallel: 100, publishers: ['plain'] });
    if (r.failed > 0) console.log(`${r.failed} of ${n} sessions failed`);
    await sleep(1000);
    return r.opened;
  };
  const k1 = await open(1);
  const first = await read(pid, false);
  show(`${k1} sessions`, first);
  const k2 = await open(1 + n);
  const second = await read(pid, false);
  show(`${k1 + k2} sessions`, second);
  process.kill(pid, 'SIGWINCH');
  await sleep(400);
  const end = await read(pid, opts.snapshots!);
  show(`${k1 + k2}, after GC`, end);
  console.log(`first ${k1}: ${perSession(idle, first, k1)}; next ${k2}: ${perSession(first, second, k2)}; live after GC: ${perSession(idle, end, k1 + k2)}`);
  if (opts.snapshots) console.log(`heap snapshots: ${dir}/idle-memory-${pid}-{2,${seq}}.heapsnapshot`);
  rmSync(join(dir, `idle-memory-${pid}.snapshot`), { force: true });
  await gen.call('idleClose');
  await m.stop();
} finally {
  gen.child.kill();
  sink.child.kill();
}
