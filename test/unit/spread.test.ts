// Storm-free closes (spreadOver): 200 items over a window, with the clock mocked.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { spreadOver } from '../../src/balancer/spread.js';

describe('spreadOver', () => {
  test('200 closes: in order, item i not before i × window / n, the span is the window minus one step', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
    const t0 = Date.now();
    const at: number[] = [];
    let doneWith = -1;
    spreadOver(
      Array.from({ length: 200 }, (_, i) => i),
      2000,
      (i) => (at.push(Date.now() - t0), assert.equal(i, at.length - 1), true),
      (n) => (doneWith = n),
    );
    for (let k = 0; k < 250 && doneWith < 0; k++) t.mock.timers.tick(10);
    assert.equal(doneWith, 200);
    at.forEach((ms, i) => assert.ok(ms >= i * 10, `item ${i} at ${ms} ms, not before ${i * 10}`));
    assert.equal(at[0], 0);
    assert.equal(at.at(-1), 1990);
    // Evenly: every 10% of the window holds 10% of the closes.
    for (let d = 0; d < 10; d++) assert.equal(at.filter((ms) => ms >= d * 200 && ms < (d + 1) * 200).length, 20);
  });

  test('skipped items do not count; cancel stops the rest and the completion', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'Date'] });
    const seen: number[] = [];
    let done = -1;
    const cancel = spreadOver(
      [0, 1, 2, 3, 4, 5],
      600,
      (i) => (seen.push(i), true),
      (n) => (done = n),
    );
    assert.deepEqual(seen, [0]);
    t.mock.timers.tick(250);
    assert.deepEqual(seen, [0, 1, 2]);
    cancel();
    t.mock.timers.tick(1000);
    assert.deepEqual(seen, [0, 1, 2]);
    assert.equal(done, -1, 'no completion after cancel');
    const all: number[] = [];
    spreadOver(
      [0, 1, 2, 3],
      400,
      (i) => (all.push(i), i !== 1),
      (n) => (done = n),
    );
    t.mock.timers.tick(1000);
    assert.deepEqual(all, [0, 1, 2, 3]);
    assert.equal(done, 3, 'three acted on, one skipped');
  });

  test('an empty list completes at once', () => {
    let done = -1;
    spreadOver(
      [],
      1000,
      () => true,
      (n) => (done = n),
    );
    assert.equal(done, 0);
  });
});
