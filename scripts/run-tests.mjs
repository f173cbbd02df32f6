#!/usr/bin/env node
// Runs the test suite with node's own test runner (TypeScript through tsx).
// Node 20's `--test` does not expand globs, so the files are listed here.
// Usage: node scripts/run-tests.mjs [unit|integration|deploy|e2e|stress ...]   (default: all)
//
// `stress` runs the session tests again with their event loop stalled (TEST_LOOP_STALL_MS,
// default 10; TEST_CPU_LOAD adds busy threads; test/helpers/stress.ts), STRESS_RUNS times
// (default 1): races between socket events (one peer's close handled in the same loop turn as
// the other's data) show up there as on a loaded machine, and each of these files checks that
// every session ends by itself once its peers are gone (TestProxy.settled).
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const STRESS_FILES = ['test/unit/migration-session.test.ts', 'test/integration/backpressure.test.ts'];
const args = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const all = args.length === 0;
const suites = all ? ['unit', 'integration', 'deploy', 'e2e'] : args.filter((s) => s !== 'stress');
const stress = all || args.includes('stress');
const dirs = suites.map((s) => join(root, 'test', s));

function walk(dir) {
  let out = [];
  let entries;
  try {
    entries = readdirSync(dir);
  } catch {
    return out;
  }
  for (const e of entries.sort()) {
    const p = join(dir, e);
    if (statSync(p).isDirectory()) out = out.concat(walk(p));
    else if (e.endsWith('.test.ts')) out.push(relative(root, p));
  }
  return out;
}

const files = dirs.flatMap(walk);
if (files.length === 0 && !stress) {
  console.error('no test files found');
  process.exit(1);
}
let status = 0;
if (files.length > 0) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', `--test-concurrency=${process.env.TEST_CONCURRENCY ?? 2}`, ...files], {
    cwd: root,
    stdio: 'inherit',
  });
  status = r.status ?? 1;
}
if (stress) {
  const runs = Number(process.env.STRESS_RUNS ?? 1);
  for (let i = 1; i <= runs; i++) {
    const env = { ...process.env, TEST_LOOP_STALL_MS: process.env.TEST_LOOP_STALL_MS ?? '10' };
    console.log(`# stress run ${i}/${runs}: ${STRESS_FILES.join(' ')} (TEST_LOOP_STALL_MS=${env.TEST_LOOP_STALL_MS}, TEST_CPU_LOAD=${env.TEST_CPU_LOAD ?? 0})`);
    // One file at a time: the stress is what the variables say.
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', ...STRESS_FILES], { cwd: root, stdio: 'inherit', env });
    if ((r.status ?? 1) !== 0) status = r.status ?? 1;
  }
}
process.exit(status);
