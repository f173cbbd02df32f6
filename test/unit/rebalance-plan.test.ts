// The rebalance planner: the targets are the weighted shares, the moves reach them with the fewest
// moves, and nothing moves where routing or eligibility forbids.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import {
  type PlanBackend,
  type PlanSession,
  UNMEASURED_BITRATE,
  planRebalance,
  sessionLoads,
  spreadOf,
  weightedTargets,
} from '../../src/balancer/rebalance-plan.js';

const NAMES = ['b1', 'b2', 'b3', 'b4', 'b5'];

const backendsArb = fc
  .integer({ min: 1, max: 5 })
  .chain((n) =>
    fc.tuple(...NAMES.slice(0, n).map((name) => fc.record({ name: fc.constant(name), weight: fc.integer({ min: 1, max: 4 }), routable: fc.boolean() }))),
  );

function sessionsArb(backends: PlanBackend[], constrained: boolean): fc.Arbitrary<PlanSession[]> {
  const names = backends.map((b) => b.name);
  const one = fc.record({
    backend: fc.constantFrom(...names),
    ageMs: fc.integer({ min: 0, max: 10_000 }),
    movable: constrained ? fc.boolean() : fc.constant(true),
    sticky: constrained ? fc.option(fc.constantFrom(...names), { nil: undefined }) : fc.constant(undefined),
  });
  return fc.array(one, { maxLength: 60 }).map((list) =>
    list.map((s, i) => {
      const out: PlanSession = { id: `s${i}`, backend: s.backend, ageMs: s.ageMs, movable: s.movable };
      if (s.sticky !== undefined) out.allowed = new Set([s.sticky]);
      return out;
    }),
  );
}

function after(counts: Record<string, number>, moves: { from: string; to: string }[]): Record<string, number> {
  const c = { ...counts };
  for (const m of moves) {
    c[m.from]! -= 1;
    c[m.to]! += 1;
  }
  return c;
}

/** The fewest moves that bring every routable backend within one session of its exact share (brute force). */
function minimumMoves(backends: PlanBackend[], counts: Record<string, number>): number {
  const r = backends.filter((b) => b.routable);
  const total = r.reduce((a, b) => a + counts[b.name]!, 0);
  const sumW = r.reduce((a, b) => a + (b.weight ?? 1), 0);
  const shares = r.map((b) => (total * (b.weight ?? 1)) / sumW);
  let best = Infinity;
  for (let mask = 0; mask < 1 << r.length; mask++) {
    const t = shares.map((q, i) => (mask & (1 << i) ? Math.ceil(q - 1e-9) : Math.floor(q + 1e-9)));
    if (t.reduce((a, b) => a + b, 0) !== total) continue;
    best = Math.min(
      best,
      r.reduce((a, b, i) => a + Math.max(0, counts[b.name]! - t[i]!), 0),
    );
  }
  return best;
}

describe('rebalance plan', () => {
  test('3 backends, 6/6/0: two from each of b1 and b2 to b3', () => {
    const backends = ['b1', 'b2', 'b3'].map((name) => ({ name, routable: true }));
    const sessions = Array.from({ length: 12 }, (_, i) => ({ id: `s${i}`, backend: i < 6 ? 'b1' : 'b2', ageMs: 5000 + i, movable: true }));
    const plan = planRebalance(backends, sessions, { minAgeMs: 1000 });
    assert.deepEqual(plan.targets, { b1: 4, b2: 4, b3: 4 });
    assert.equal(plan.moves.length, 4);
    assert.ok(plan.moves.every((m) => m.to === 'b3'));
    assert.deepEqual(after(plan.counts, plan.moves), { b1: 4, b2: 4, b3: 4 });
    // Oldest first.
    assert.deepEqual(plan.moves.map((m) => m.session).sort(), ['s10', 's11', 's4', 's5']);
  });

  test('weights: 2:1 over 9 sessions is 6/3', () => {
    assert.deepEqual(
      weightedTargets(
        [
          { name: 'a', weight: 2, count: 0 },
          { name: 'b', weight: 1, count: 9 },
        ],
        9,
      ),
      { a: 6, b: 3 },
    );
  });

  test('young, recently moved and non-movable sessions stay; stuck counts them', () => {
    const backends = ['b1', 'b2'].map((name) => ({ name, routable: true }));
    const sessions: PlanSession[] = [
      { id: 'young', backend: 'b1', ageMs: 10, movable: true },
      { id: 'recent', backend: 'b1', ageMs: 9000, movable: true },
      { id: 'fixed', backend: 'b1', ageMs: 9000, movable: false },
      { id: 'old', backend: 'b1', ageMs: 9000, movable: true },
    ];
    const plan = planRebalance(backends, sessions, { minAgeMs: 1000, recentlyMoved: new Set(['recent']) });
    assert.deepEqual(plan.moves, [{ session: 'old', from: 'b1', to: 'b2' }]);
    assert.equal(plan.stuck, 1);
  });

  test('property: never to a non-routable backend, never from one, a session moves at most once, within its allowed set, never below a target', () => {
    fc.assert(
      fc.property(
        backendsArb.chain((backends) => fc.tuple(fc.constant(backends), sessionsArb(backends, true))),
        ([backends, sessions]) => {
          const plan = planRebalance(backends, sessions, { minAgeMs: 1000 });
          const routable = new Set(backends.filter((b) => b.routable).map((b) => b.name));
          const byId = new Map(sessions.map((s) => [s.id, s]));
          const seen = new Set<string>();
          for (const m of plan.moves) {
            const s = byId.get(m.session)!;
            assert.ok(routable.has(m.to) && routable.has(m.from), 'between routable backends only');
            assert.equal(m.from, s.backend);
            assert.ok(!seen.has(m.session), 'moved twice');
            seen.add(m.session);
            assert.ok(s.movable && s.ageMs >= 1000);
            if (s.allowed !== undefined) assert.ok(s.allowed.has(m.to), 'sticky key moved away from its rendezvous backend');
          }
          const final = after(plan.counts, plan.moves);
          for (const name of routable) {
            if (plan.counts[name]! > plan.targets[name]!) assert.ok(final[name]! >= plan.targets[name]!, 'a source went below its target');
            else assert.ok(final[name]! <= plan.targets[name]!, 'a destination went above its target');
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  test('property: unconstrained, the plan ends within one session of the weighted share with the fewest moves', () => {
    fc.assert(
      fc.property(
        backendsArb.chain((backends) => fc.tuple(fc.constant(backends), sessionsArb(backends, false))),
        ([backends, sessions]) => {
          const plan = planRebalance(backends, sessions, { minAgeMs: 0 });
          const r = backends.filter((b) => b.routable);
          const total = r.reduce((a, b) => a + plan.counts[b.name]!, 0);
          const sumW = r.reduce((a, b) => a + (b.weight ?? 1), 0);
          const final = after(plan.counts, plan.moves);
          for (const b of r) assert.ok(Math.abs(final[b.name]! - (total * (b.weight ?? 1)) / sumW) < 1, `${b.name} not within one of its share`);
          assert.equal(plan.stuck, 0);
          assert.equal(plan.moves.length, minimumMoves(backends, plan.counts));
        },
      ),
      { numRuns: 500 },
    );
  });

  // ─── by bitrate ───

  /** Sessions with a bitrate each (100 kb/s to 8 Mb/s), as the proxy measures them. */
  function loadedArb(backends: PlanBackend[], constrained: boolean): fc.Arbitrary<PlanSession[]> {
    return fc
      .tuple(sessionsArb(backends, constrained), fc.array(fc.integer({ min: 100_000, max: 8_000_000 }), { minLength: 60, maxLength: 60 }))
      .map(([list, rates]) => list.map((s, i) => ({ ...s, load: rates[i]! })));
  }

  /** Loads per backend after each move, in order: the first is before any move. */
  function loadSteps(plan: { loads: Record<string, number>; moves: { session: string; from: string; to: string }[] }, sessions: PlanSession[]) {
    const byId = new Map(sessions.map((s) => [s.id, s]));
    const steps = [{ ...plan.loads }];
    for (const m of plan.moves) {
      const next = { ...steps.at(-1)! };
      next[m.from]! -= byId.get(m.session)!.load!;
      next[m.to]! += byId.get(m.session)!.load!;
      steps.push(next);
    }
    return steps;
  }

  const worstDeviation = (loads: Record<string, number>, targets: Record<string, number>): number =>
    Math.max(0, ...Object.entries(targets).map(([n, t]) => Math.abs(loads[n]! - t)));

  test('by bitrate: a 6 Mb/s publisher and four 1 Mb/s ones over two backends end 5/5', () => {
    const backends = ['b1', 'b2'].map((name) => ({ name, routable: true }));
    const sessions: PlanSession[] = [
      { id: 'big', backend: 'b1', ageMs: 9000, movable: true, load: 6_000_000 },
      ...[0, 1, 2, 3].map((i) => ({ id: `s${i}`, backend: 'b1', ageMs: 5000, movable: true, load: 1_000_000 })),
    ];
    const plan = planRebalance(backends, sessions, { minAgeMs: 0, by: 'bitrate' });
    assert.equal(plan.by, 'bitrate');
    assert.deepEqual(plan.targets, { b1: 5_000_000, b2: 5_000_000 });
    assert.deepEqual(plan.counts, { b1: 5, b2: 0 });
    assert.equal(plan.tolerance, 6_000_000);
    // By sessions this would be 3/2; by bitrate the big one moves alone (oldest first, and it fits).
    assert.deepEqual(plan.moves, [{ session: 'big', from: 'b1', to: 'b2' }]);
    assert.equal(spreadOf(plan), 2);
  });

  test('by bitrate: weights split the summed bitrate like routing (2:1)', () => {
    const backends = [
      { name: 'a', routable: true, weight: 2 },
      { name: 'b', routable: true, weight: 1 },
    ];
    const sessions = Array.from({ length: 9 }, (_, i): PlanSession => ({ id: `s${i}`, backend: 'b', ageMs: 5000 + i, movable: true, load: 2_000_000 }));
    const plan = planRebalance(backends, sessions, { minAgeMs: 0, by: 'bitrate' });
    assert.deepEqual(plan.targets, { a: 12_000_000, b: 6_000_000 });
    assert.equal(plan.moves.length, 6);
  });

  test('sessionLoads: a session not measured counts as the mean of the measured ones, or 1 Mb/s when none is', () => {
    assert.deepEqual(sessionLoads([2_000_000, null, 4_000_000, undefined]), [2_000_000, 3_000_000, 4_000_000, 3_000_000]);
    assert.deepEqual(sessionLoads([null, null]), [UNMEASURED_BITRATE, UNMEASURED_BITRATE]);
    assert.deepEqual(sessionLoads([0, null]), [0, 0]);
  });

  test('property (bitrate): totals preserved, every move within the rules, no move makes the worst deviation from a target larger', () => {
    fc.assert(
      fc.property(
        backendsArb.chain((backends) => fc.tuple(fc.constant(backends), loadedArb(backends, true))),
        ([backends, sessions]) => {
          const plan = planRebalance(backends, sessions, { minAgeMs: 1000, by: 'bitrate' });
          const routable = new Set(backends.filter((b) => b.routable).map((b) => b.name));
          const byId = new Map(sessions.map((s) => [s.id, s]));
          const seen = new Set<string>();
          for (const m of plan.moves) {
            const s = byId.get(m.session)!;
            assert.ok(routable.has(m.to) && routable.has(m.from) && m.from === s.backend && m.from !== m.to);
            assert.ok(!seen.has(m.session), 'moved twice');
            seen.add(m.session);
            assert.ok(s.movable && s.ageMs >= 1000);
            if (s.allowed !== undefined) assert.ok(s.allowed.has(m.to));
          }
          const steps = loadSteps(plan, sessions);
          const sum = (r: Record<string, number>) => Object.values(r).reduce((a, b) => a + b, 0);
          for (const step of steps) assert.ok(Math.abs(sum(step) - sum(plan.loads)) < 1e-6, 'total load changed');
          // The targets are rounded to whole bits/s: one bit per backend of slack.
          for (let i = 1; i < steps.length; i++) {
            assert.ok(
              worstDeviation(steps[i]!, plan.targets) <= worstDeviation(steps[i - 1]!, plan.targets) + backends.length,
              `move ${i} made the spread worse`,
            );
          }
          const shares = Object.values(plan.targets).reduce((a, b) => a + b, 0);
          const routableLoad = [...routable].reduce((a, n) => a + plan.loads[n]!, 0);
          assert.ok(Math.abs(shares - routableLoad) <= backends.length, 'targets do not sum to the load');
        },
      ),
      { numRuns: 500 },
    );
  });

  test("property (bitrate): unconstrained, every backend ends within one session's load of its target", () => {
    fc.assert(
      fc.property(
        backendsArb.chain((backends) => fc.tuple(fc.constant(backends), loadedArb(backends, false))),
        ([backends, sessions]) => {
          const plan = planRebalance(backends, sessions, { minAgeMs: 0, by: 'bitrate' });
          const final = loadSteps(plan, sessions).at(-1)!;
          for (const [name, t] of Object.entries(plan.targets)) {
            assert.ok(Math.abs(final[name]! - t) <= plan.tolerance + 1, `${name}: ${final[name]} vs target ${t} (one session: ${plan.tolerance})`);
          }
          assert.equal(plan.stuck, 0);
        },
      ),
      { numRuns: 500 },
    );
  });
});
