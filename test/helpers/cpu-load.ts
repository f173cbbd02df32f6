import { Worker } from 'node:worker_threads';

/**
 * Stress mode: with `TEST_CPU_LOAD=N`, N threads spin for as long as the test file runs, so the
 * event loop competes for the cores as on a loaded machine and races between socket events
 * (one peer's close handled in the same loop turn as the other's data) show up. Without the
 * variable nothing runs. `node scripts/run-tests.mjs stress` runs the session tests this way.
 */
export function cpuLoadFromEnv(): void {
  const n = Number(process.env['TEST_CPU_LOAD'] ?? 0);
  if (!Number.isInteger(n) || n <= 0) return;
  // Unref'd: the file's process exits when its tests are done.
  for (let i = 0; i < n; i++) new Worker('for (;;);', { eval: true }).unref();
}
