// Automatic rebalancing on the spread: off by default, two checks above the ratio in a row, never
// while a rebalance runs, a cooldown after any automatic run, counted and logged; driven by a fake
// clock and a fake pool (the checks are called directly, the timers never fire in the test).
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { describe, test } from 'node:test';
import pino from 'pino';
import { AutoRebalance, type AutoRebalanceSettings } from '../../src/auto-rebalance.js';
import { type PlanSession, planRebalance } from '../../src/balancer/rebalance-plan.js';
import { loadConfig } from '../../src/config.js';

function harness(auto: Partial<AutoRebalanceSettings['auto']>, extra: Partial<AutoRebalanceSettings> = {}) {
  const base = loadConfig({ env: {} }).rebalance;
  const settings: AutoRebalanceSettings = { ...base, ...extra, auto: { ...base.auto, intervalMs: 3_600_000, ...auto } };
  const clock = { t: 1_000_000 };
  // b1 holds `onB1` sessions, b2 `onB2`: the plan is the real planner's.
  const fleet = { onB1: 6, onB2: 0, running: false, movable: true };
  const runs: string[] = [];
  const counted: string[] = [];
  const logged: string[] = [];
  const pool = new EventEmitter();
  const auto_ = new AutoRebalance(pool as never, {
    settings: () => settings,
    plan: () => {
      const sessions: PlanSession[] = [];
      for (let i = 0; i < fleet.onB1 + fleet.onB2; i++)
        sessions.push({ id: `s${i}`, backend: i < fleet.onB1 ? 'b1' : 'b2', ageMs: 60_000, movable: fleet.movable });
      return planRebalance(
        [
          { name: 'b1', routable: true },
          { name: 'b2', routable: true },
        ],
        sessions,
        { minAgeMs: 0 },
      );
    },
    running: () => fleet.running,
    run: (why) => {
      runs.push(why);
      // The run moves sessions until balanced.
      const total = fleet.onB1 + fleet.onB2;
      fleet.onB1 = Math.ceil(total / 2);
      fleet.onB2 = total - fleet.onB1;
    },
    runs: { inc: (l) => counted.push(String(l.trigger)) },
    log: pino({ level: 'info' }, { write: (line: string) => logged.push(JSON.parse(line).msg as string) }),
    now: () => clock.t,
  });
  return { auto: auto_, settings, clock, fleet, runs, counted, logged, pool };
}

describe('automatic rebalance on the spread', () => {
  test('off by default: no plan looked at, nothing runs', (t) => {
    const h = harness({});
    t.after(() => h.auto.stop());
    assert.equal(h.settings.auto.spreadRatio, 0);
    assert.equal(h.auto.check(), 'off');
    assert.equal(h.auto.check(), 'off');
    assert.deepEqual(h.runs, []);
  });

  test('runs at the second check in a row above the ratio, counted and logged; balanced afterwards', (t) => {
    const h = harness({ spreadRatio: 1.5 });
    t.after(() => h.auto.stop());
    // 6/0: b1 holds twice its share.
    assert.equal(h.auto.check(), 'once');
    assert.deepEqual(h.runs, []);
    assert.equal(h.auto.check(), 'started');
    assert.deepEqual(h.runs, ['automatic: spread 2 over 1.5']);
    assert.deepEqual(h.counted, ['spread']);
    assert.ok(h.logged.includes('automatic rebalance'));
    assert.equal(h.auto.check(), 'balanced');
  });

  test('hysteresis: a spike seen once, then gone, does not run', (t) => {
    const h = harness({ spreadRatio: 1.5 });
    t.after(() => h.auto.stop());
    assert.equal(h.auto.check(), 'once');
    h.fleet.onB1 = 3;
    h.fleet.onB2 = 3;
    assert.equal(h.auto.check(), 'balanced');
    h.fleet.onB1 = 6;
    h.fleet.onB2 = 0;
    assert.equal(h.auto.check(), 'once', 'the count of checks above starts again');
    assert.deepEqual(h.runs, []);
  });

  test('at the ratio is not above it (4/2 is 1.33 of the share; 1.5 is the threshold)', (t) => {
    const h = harness({ spreadRatio: 1.5 });
    t.after(() => h.auto.stop());
    h.fleet.onB1 = 4;
    h.fleet.onB2 = 2;
    assert.equal(h.auto.check(), 'balanced');
    h.fleet.onB1 = 3;
    h.fleet.onB2 = 1;
    // 3/1: share 2, b1 at 1.5: not above.
    assert.equal(h.auto.check(), 'balanced');
  });

  test('cooldown: a spread back right after a run waits; never while a rebalance runs', (t) => {
    const h = harness({ spreadRatio: 1.5, cooldownMs: 300_000 });
    t.after(() => h.auto.stop());
    h.auto.check();
    assert.equal(h.auto.check(), 'started');
    // New publishers all land on b1 again: 15/3.
    h.fleet.onB1 += 12;
    h.clock.t += 60_000;
    assert.equal(h.auto.check(), 'once');
    assert.equal(h.auto.check(), 'cooldown');
    assert.equal(h.auto.check(), 'cooldown');
    assert.equal(h.logged.filter((m) => m.includes('cooldown')).length, 1, 'a lasting state is logged once');
    h.clock.t += 240_000;
    h.fleet.running = true;
    assert.equal(h.auto.check(), 'running');
    h.fleet.running = false;
    assert.equal(h.auto.check(), 'started');
    assert.equal(h.runs.length, 2);
  });

  test('a spread the plan cannot fix does not run (nothing to move)', (t) => {
    const h = harness({ spreadRatio: 1.5 });
    t.after(() => h.auto.stop());
    // 6/0, but every session is sticky or not movable.
    h.fleet.movable = false;
    assert.equal(h.auto.check(), 'once');
    assert.equal(h.auto.check(), 'nothing-to-move');
    assert.deepEqual(h.runs, []);
  });

  test('a run on a backend coming up starts the cooldown of the spread trigger too', async (t) => {
    const h = harness({ spreadRatio: 1.5, cooldownMs: 300_000 }, { onBackendUp: true, minAgeMs: 0 });
    t.after(() => h.auto.stop());
    const ran = new Promise<void>((resolve) => {
      const wait = () => (h.runs.length > 0 ? resolve() : setImmediate(wait));
      wait();
    });
    h.pool.emit('backend-state', { name: 'b2', from: 'down', to: 'up' });
    await ran;
    assert.deepEqual(h.counted, ['backend-up']);
    h.fleet.onB1 += 12;
    h.auto.check();
    assert.equal(h.auto.check(), 'cooldown');
  });
});
