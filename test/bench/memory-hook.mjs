// Loaded into the middle by test/bench/idle-memory.ts (`--import`): on SIGUSR2 writes the process's
// memory (process.memoryUsage, V8 heap spaces, /proc/self/smaps_rollup) to
// $IDLE_MEMORY_DIR/idle-memory-<pid>-<n>.json, after writing a heap snapshot next to it when the file
// idle-memory-<pid>.snapshot exists there. It allocates only when asked.
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import v8 from 'node:v8';

const dir = process.env.IDLE_MEMORY_DIR ?? '/tmp';
let n = 0;
process.on('SIGUSR2', () => {
  n++;
  const base = join(dir, `idle-memory-${process.pid}-${n}`);
  if (existsSync(join(dir, `idle-memory-${process.pid}.snapshot`))) v8.writeHeapSnapshot(`${base}.heapsnapshot`);
  const smaps = Object.fromEntries([...readFileSync('/proc/self/smaps_rollup', 'utf8').matchAll(/^(\w+):\s+(\d+) kB/gm)].map((m) => [m[1], Number(m[2])]));
  const spaces = Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name, s.physical_space_size]));
  writeFileSync(`${base}.json.tmp`, JSON.stringify({ mu: process.memoryUsage(), spaces, smaps }));
  // Renamed when complete, so the reader never sees half a file.
  renameSync(`${base}.json.tmp`, `${base}.json`);
});
