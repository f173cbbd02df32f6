// A rebalance steers the reconnect of a session it moves by reserving the target backend for the
// next new session: `pick` and a balanced `place` honour the reservation before least
// connections; a sticky placement, a backend that cannot take the session, or an expired
// reservation do not.
import assert from 'node:assert/strict';
import { describe, test, type TestContext } from 'node:test';
import { BackendPool } from '../../src/balancer/pool.js';
import { Reservations } from '../../src/balancer/reservations.js';
import { Router } from '../../src/balancer/routing.js';
import type { BackendConfig, DrainableSession } from '../../src/balancer/types.js';
import { goAwayOrWait } from '../helpers/drain-strategy.js';

const cfg = (name: string, port: number): BackendConfig => ({ name, host: '127.0.0.1', port });

function mkPool(t: TestContext): BackendPool {
  const pool = new BackendPool([cfg('a', 1935), cfg('b', 1936), cfg('c', 1937)], {
    defaultDrainDeadlineMs: 1000,
    strategy: goAwayOrWait,
    health: { intervalMs: 1000, timeoutMs: 100, rise: 1, fall: 1, enabled: false },
  });
  t.after(() => pool.stop());
  return pool;
}

const session = (id: string): DrainableSession => ({ id, supportsGoAway: true, goAway: () => true, close: () => undefined });

describe('reservations steer the next new session', () => {
  test('pick takes the reservation over least connections, once', (t) => {
    const pool = mkPool(t);
    // c is the most loaded: least connections would never pick it.
    for (let i = 0; i < 3; i++) pool.attach('c', session(`c${i}`));
    pool.reserve('c', 60_000);
    assert.equal(pool.pick()?.name, 'c');
    assert.notEqual(pool.pick()?.name, 'c', 'one reservation, one session');
  });

  test('a draining, excluded or unknown backend is not given by a reservation', (t) => {
    const pool = mkPool(t);
    pool.attach('c', session('c0'));
    pool.reserve('c', 60_000);
    assert.notEqual(pool.pick(new Set(['c']))?.name, 'c');
    pool.drain('c');
    assert.notEqual(pool.pick()?.name, 'c');
    assert.throws(() => pool.reserve('nope', 1000), /unknown backend/);
  });

  test('a reservation expires', () => {
    let now = 1000;
    const r = new Reservations(() => now);
    r.add('c', 500);
    assert.equal(r.count('c'), 1);
    now = 1500;
    assert.equal(r.count('c'), 0);
    assert.equal(
      r.take(() => true),
      null,
    );
  });

  test('a balanced rule takes it among its group; a sticky rule keeps the rendezvous backend', (t) => {
    const pool = mkPool(t);
    const router = Router.compile({
      groups: { main: { backends: ['a', 'c'] }, other: { backends: ['b'] } },
      rules: [
        { match: { app: ['sticky'] }, group: 'main', sticky: true },
        { match: { app: ['live'] }, group: 'main' },
      ],
    });
    for (let i = 0; i < 3; i++) pool.attach('c', session(`c${i}`));
    pool.reserve('b', 60_000);
    assert.equal(pool.place(router, { app: 'live', streamKey: null, clientIp: '127.0.0.1' }).target?.name, 'a', 'b is not in the group: its reservation stays');
    pool.reserve('c', 60_000);
    const sticky = pool.place(router, { app: 'sticky', streamKey: 'k', clientIp: '127.0.0.1' });
    assert.equal(sticky.placement.backend !== null && sticky.placement.how, 'sticky', 'sticky placement ignores reservations');
    const placed = pool.place(router, { app: 'live', streamKey: null, clientIp: '127.0.0.1' });
    assert.equal(placed.target?.name, 'c');
    assert.equal(placed.placement.backend, 'c');
  });
});
