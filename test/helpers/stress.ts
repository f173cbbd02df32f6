import { Worker } from 'node:worker_threads';

/**
 * Stress mode for the session tests (`node scripts/run-tests.mjs stress`), off unless asked:
 *  - `TEST_LOOP_STALL_MS=N`: the event loop is blocked for N ms every 1.5 N ms, so socket events
 *    pile up and are handled in the same loop turn (one peer's close next to the other's data):
 *    the races a loaded machine produces, on any machine. With N = 10 the race of a session
 *    whose end was never accounted (a client paused for a backend that died) showed in 13 of 24
 *    runs of "target dies at the switch", against 7 of 30 with two busy processes beside it;
 *  - `TEST_CPU_LOAD=N`: N threads spin for as long as the test file runs.
 */
export function stressFromEnv(): void {
  const stallMs = Number(process.env['TEST_LOOP_STALL_MS'] ?? 0);
  if (Number.isFinite(stallMs) && stallMs > 0) {
    setInterval(() => {
      const until = Date.now() + stallMs;
      while (Date.now() < until);
    }, stallMs * 1.5).unref();
  }
  const threads = Number(process.env['TEST_CPU_LOAD'] ?? 0);
  // Unref'd: the file's process exits when its tests are done.
  if (Number.isInteger(threads) && threads > 0) for (let i = 0; i < threads; i++) new Worker('for (;;);', { eval: true }).unref();
}
