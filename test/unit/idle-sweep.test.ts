// The idle sweep: one timer for every session's idle timeouts.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { IdleSweep, idleSweepIntervalMs } from '../../src/proxy/idle-sweep.js';

describe('idle sweep', () => {
  test('interval: a quarter of the shortest timeout that is on, within [20 ms, 1 s]', () => {
    assert.equal(idleSweepIntervalMs([60_000, 0]), 1000);
    assert.equal(idleSweepIntervalMs([2000, 600]), 150);
    assert.equal(idleSweepIntervalMs([40]), 20);
    assert.equal(idleSweepIntervalMs([0, 0]), 1000);
  });

  test('each pass asks every session, with the time; sessions leaving during a pass do not break it', (t) => {
    t.mock.timers.enable({ apis: ['setInterval', 'Date'] });
    const seen: number[] = [];
    const sessions = new Map<string, { checkIdle(now: number): void }>();
    for (const id of ['a', 'b', 'c']) sessions.set(id, { checkIdle: (now) => (seen.push(now), id === 'a' && sessions.delete('b')) });
    const sweep = new IdleSweep(() => sessions.values(), 100);
    sweep.start();
    t.mock.timers.tick(100);
    assert.equal(seen.length, 2, 'a, then c (b left during the pass)');
    t.mock.timers.tick(100);
    assert.equal(seen.length, 4);
    sweep.stop();
    t.mock.timers.tick(1000);
    assert.equal(seen.length, 4);
  });
});
