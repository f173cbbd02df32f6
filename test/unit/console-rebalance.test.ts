import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { CONSOLE_REBALANCE_LIMITS, consoleRebalance } from '../../src/control/console/console-rebalance.js';

describe('consoleRebalance: the rebalance part of a console snapshot', () => {
  test('a status as GET /api/rebalance answers it: progress, counts, targets and moves are kept', () => {
    const status = {
      running: true,
      startedAt: 1_700_000_000_000,
      planned: 2,
      pending: 1,
      inFlight: 1,
      results: { moved: 0, migrated: 0, failed: 0, timeout: 0, skipped: 0 },
      plan: {
        targets: { b1: 1, b2: 1 },
        counts: { b1: 2, b2: 0, b3: 4 },
        moves: [{ session: 's-1', from: 'b1', to: 'b2' }],
        stuck: 0,
      },
    };
    assert.deepEqual(consoleRebalance(status), {
      running: true,
      startedAt: 1_700_000_000_000,
      planned: 2,
      pending: 1,
      inFlight: 1,
      results: { moved: 0, migrated: 0, failed: 0, timeout: 0, skipped: 0 },
      plan: { counts: { b1: 2, b2: 0, b3: 4 }, targets: { b1: 1, b2: 1 }, moves: [{ session: 's-1', from: 'b1', to: 'b2' }], movesTotal: 1, stuck: 0 },
    });
  });

  test('never run, and no rebalancer: idle, and null', () => {
    const idle = consoleRebalance({ running: false, startedAt: null, planned: 0, pending: 0, inFlight: 0, results: {}, plan: null });
    assert.equal(idle?.startedAt, null);
    assert.equal(idle?.plan, null);
    assert.deepEqual(idle?.results, { moved: 0, migrated: 0, failed: 0, timeout: 0, skipped: 0 });
    for (const v of [null, undefined, 'x', 3, []]) assert.equal(consoleRebalance(v), null);
  });

  test('only known fields pass: a stream key or any other field in the answer does not reach the page', () => {
    const secret = 'live/s3cr3t-key';
    const out = consoleRebalance({
      running: false,
      startedAt: 1,
      streamKey: secret,
      results: { moved: 1, extra: secret },
      plan: { counts: { b1: 1 }, targets: { b1: 1 }, moves: [{ session: 's', from: 'b1', to: 'b2', streamKey: secret }], stuck: 0, keys: [secret] },
    });
    assert.ok(!JSON.stringify(out).includes(secret));
    assert.deepEqual(out?.plan?.moves, [{ session: 's', from: 'b1', to: 'b2' }]);
  });

  test('bounded: at most 100 moves (movesTotal counts them all) and 256 backends', () => {
    const moves = Array.from({ length: 5000 }, (_, i) => ({ session: `s${i}`, from: 'b1', to: 'b2' }));
    const counts = Object.fromEntries(Array.from({ length: 1000 }, (_, i) => [`b${i}`, i]));
    const out = consoleRebalance({ plan: { moves, counts, targets: counts } })!;
    assert.equal(out.plan!.moves.length, CONSOLE_REBALANCE_LIMITS.moves);
    assert.equal(out.plan!.movesTotal, 5000);
    assert.equal(Object.keys(out.plan!.counts).length, CONSOLE_REBALANCE_LIMITS.backends);
    assert.equal(Object.keys(out.plan!.targets).length, CONSOLE_REBALANCE_LIMITS.backends);
  });

  test('a backend named __proto__ stays a plain entry', () => {
    const out = consoleRebalance({ plan: JSON.parse('{"counts":{"__proto__":3},"targets":{},"moves":[]}') as unknown })!;
    assert.equal(Object.getPrototypeOf(out.plan!.counts), Object.prototype);
    assert.deepEqual(Object.entries(out.plan!.counts), [['__proto__', 3]]);
  });

  test('property: any JSON gives null or a bounded view of counts ≥ 0 and names of bounded length', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.jsonValue(),
          fc.record({
            running: fc.jsonValue(),
            startedAt: fc.jsonValue(),
            planned: fc.jsonValue(),
            pending: fc.jsonValue(),
            results: fc.dictionary(fc.string(), fc.jsonValue()),
            plan: fc.record({
              counts: fc.dictionary(fc.string({ maxLength: 300 }), fc.jsonValue()),
              moves: fc.array(fc.record({ session: fc.jsonValue(), from: fc.string({ maxLength: 300 }), to: fc.string() }), { maxLength: 150 }),
            }),
          }),
        ),
        (raw) => {
          const out = consoleRebalance(raw);
          if (out === null) return;
          const nums = [out.planned, out.pending, out.inFlight, ...Object.values(out.results)];
          if (out.plan !== null) {
            assert.ok(out.plan.moves.length <= CONSOLE_REBALANCE_LIMITS.moves);
            nums.push(out.plan.movesTotal, out.plan.stuck, ...Object.values(out.plan.counts), ...Object.values(out.plan.targets));
            for (const m of out.plan.moves)
              for (const s of [m.session, m.from, m.to]) assert.ok(typeof s === 'string' && s.length <= CONSOLE_REBALANCE_LIMITS.name);
            for (const k of Object.keys(out.plan.counts)) assert.ok(k.length <= CONSOLE_REBALANCE_LIMITS.name);
          }
          for (const n of nums) assert.ok(Number.isSafeInteger(n) && n >= 0);
          assert.equal(typeof out.running, 'boolean');
        },
      ),
    );
  });
});
