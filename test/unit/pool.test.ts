import { test, describe, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { BackendPool, UnknownBackendError, type BackendPoolOptions } from '../../src/balancer/pool.js';
import type { BackendConfig, BackendStateChange, DrainableSession, DrainComplete, DeadlineClose, DrainResult } from '../../src/balancer/types.js';
import { goAwayOrWait } from '../helpers/drain-strategy.js';
import { Router } from '../../src/balancer/routing.js';

class FakeSession implements DrainableSession {
  goAwayCalls = 0;
  closed: string[] = [];
  detach: (() => void) | undefined;
  constructor(
    readonly id: string,
    readonly supportsGoAway: boolean,
    public goAwayOk = true,
  ) {}
  goAway(): boolean {
    this.goAwayCalls++;
    return this.goAwayOk;
  }
  close(reason: string): void {
    this.closed.push(reason);
    this.detach?.(); // a real session detaches when its sockets are gone
  }
}

const A: BackendConfig = { name: 'a', host: '127.0.0.1', port: 1935 };
const B: BackendConfig = { name: 'b', host: '127.0.0.1', port: 1936 };
const C: BackendConfig = { name: 'c', host: '127.0.0.1', port: 1937 };

function mkPool(t: TestContext, backends: BackendConfig[], opts: Partial<BackendPoolOptions> = {}): BackendPool {
  const pool = new BackendPool(backends, {
    defaultDrainDeadlineMs: 1000,
    strategy: goAwayOrWait,
    health: { intervalMs: 1000, timeoutMs: 100, rise: 2, fall: 3, enabled: true },
    probe: async () => {
      throw new Error('probe must not run in pool tests');
    },
    ...opts,
  });
  t.after(() => pool.stop());
  return pool;
}

function attach(pool: BackendPool, backend: string, s: FakeSession): FakeSession {
  s.detach = pool.attach(backend, s);
  return s;
}

function record<T>(
  pool: BackendPool,
  event: 'backend-state' | 'drain' | 'undrain' | 'drain-complete' | 'deadline-close' | 'backend-removed' | 'backend-added',
): T[] {
  const seen: T[] = [];
  pool.on(event, (x: unknown) => seen.push(x as T));
  return seen;
}

function mockTimers(t: TestContext): void {
  t.mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'] });
}

describe('pick', () => {
  test('two idle backends alternate (round-robin tie-break), deterministically', (t) => {
    const pool = mkPool(t, [A, B]);
    const picks = Array.from({ length: 6 }, () => pool.pick()?.name);
    assert.deepEqual(picks, ['a', 'b', 'a', 'b', 'a', 'b']);
    const pool2 = mkPool(t, [A, B]);
    assert.deepEqual(
      Array.from({ length: 6 }, () => pool2.pick()?.name),
      picks,
    );
  });

  test('least connections wins over round-robin', (t) => {
    const pool = mkPool(t, [A, B, C]);
    attach(pool, 'a', new FakeSession('1', false));
    attach(pool, 'a', new FakeSession('2', false));
    attach(pool, 'b', new FakeSession('3', false));
    assert.equal(pool.pick()?.name, 'c');
    assert.equal(pool.pick()?.name, 'c', 'pick without attach does not change load');
    attach(pool, 'c', new FakeSession('4', false));
    // b and c have 1, a has 2: tie between b and c, broken round-robin
    const next = [pool.pick()?.name, pool.pick()?.name];
    assert.deepEqual([...next].sort(), ['b', 'c']);
  });

  test('pick + attach spreads sessions evenly', (t) => {
    const pool = mkPool(t, [A, B, C]);
    for (let i = 0; i < 9; i++) {
      const b = pool.pick();
      assert.ok(b);
      attach(pool, b.name, new FakeSession(String(i), false));
    }
    assert.deepEqual(
      pool.list().map((s) => s.sessions),
      [3, 3, 3],
    );
  });

  test('exclude set, maxSessions, draining and health down are skipped; null when none', (t) => {
    const pool = mkPool(t, [A, { ...B, maxSessions: 1 }, C]);
    assert.equal(pool.pick(new Set(['a', 'c']))?.name, 'b');
    attach(pool, 'b', new FakeSession('1', false));
    assert.equal(pool.pick(new Set(['a', 'c'])), null, 'b is full');
    pool.drain('a');
    for (let i = 0; i < 3; i++) assert.equal(pool.pick()?.name, 'c');
    for (let i = 0; i < 3; i++) pool.reportConnectFailure('c', new Error('ECONNREFUSED'));
    assert.equal(pool.pick(), null);
    pool.undrain('a');
    assert.equal(pool.pick()?.name, 'a');
  });

  test('preview: where the next session would go, without placing it (no turn of the round robin, no reservation taken)', (t) => {
    const pool = mkPool(t, [A, B, C]);
    attach(pool, 'a', new FakeSession('1', false));
    const req = { app: 'live', streamKey: 'k', clientIp: '127.0.0.1' };
    const seen = Array.from({ length: 3 }, () => pool.preview(null, req));
    assert.deepEqual(seen, ['b', 'b', 'b'], 'the same answer every time');
    assert.equal(pool.pick()?.name, 'b', 'pick agrees, and its round robin was not moved by the previews');
    attach(pool, 'b', new FakeSession('2', false));
    assert.equal(pool.preview(null, req, new Set(['b', 'c'])), 'a');
    pool.reserve('a', 10_000);
    assert.equal(pool.preview(null, req), 'c', 'a reservation is not taken by a preview');
    assert.equal(pool.pick()?.name, 'a', 'the reservation is still there for the next session');
    pool.drain('c');
    assert.equal(pool.preview(null, req, new Set(['b'])), 'a', 'a draining backend takes no new session');
    const sticky = Router.compile({ groups: { all: { backends: ['*'] } }, rules: [{ group: 'all', sticky: true }] });
    const placed = pool.place(sticky, req).target?.name;
    assert.equal(pool.preview(sticky, req), placed, 'with rules: where they place the key');
    const balanced = Router.compile({ groups: { all: { backends: ['*'] } }, rules: [{ group: 'all' }] });
    const ahead = pool.preview(balanced, req);
    assert.equal(pool.preview(balanced, req), ahead, 'a balanced rule’s turn is not taken');
    assert.equal(pool.place(balanced, req).target?.name, ahead);
  });

  test('maxSessions 0 is never picked; returned config is frozen', (t) => {
    const pool = mkPool(t, [{ ...A, maxSessions: 0 }, B]);
    const picked = pool.pick();
    assert.equal(picked?.name, 'b');
    assert.equal(pool.pick()?.name, 'b');
    assert.throws(() => {
      (picked as BackendConfig).port = 1;
    }, TypeError);
  });
});

describe('attach/detach', () => {
  test('detach is idempotent and counts never go negative', (t) => {
    const pool = mkPool(t, [A]);
    const s1 = attach(pool, 'a', new FakeSession('1', true));
    attach(pool, 'a', new FakeSession('2', true));
    assert.equal(pool.get('a')?.sessions, 2);
    s1.detach!();
    s1.detach!();
    assert.equal(pool.get('a')?.sessions, 1);
    assert.deepEqual(
      pool.sessionsOn('a').map((s) => s.id),
      ['2'],
    );
  });
});

describe('drain', () => {
  test('calls goAway only on capable sessions and returns counts', (t) => {
    mockTimers(t);
    const pool = mkPool(t, [A, B]);
    const capable = attach(pool, 'a', new FakeSession('cap', true));
    const failing = attach(pool, 'a', new FakeSession('cap-closing', true, false));
    const legacy = attach(pool, 'a', new FakeSession('legacy', false));
    const other = attach(pool, 'b', new FakeSession('other', true));
    const states = record<BackendStateChange>(pool, 'backend-state');
    const drains = record<DrainResult>(pool, 'drain');

    const r = pool.drain('a', { deadlineMs: 500, reason: 'deploy' });

    assert.equal(r.backend, 'a');
    assert.equal(r.sessions, 3);
    assert.equal(r.goAwaySent, 1);
    assert.equal(r.waiting, 2);
    assert.deepEqual(r.outcomes, { 'go-away': 1, waiting: 2 });
    assert.equal(r.deadlineAt, Date.now() + 500);
    assert.equal(capable.goAwayCalls, 1);
    assert.equal(failing.goAwayCalls, 1);
    assert.equal(legacy.goAwayCalls, 0, 'never goAway a client that did not announce support');
    assert.equal(other.goAwayCalls, 0, 'other backends untouched');
    assert.deepEqual(states, [{ name: 'a', from: 'up', to: 'draining' }]);
    assert.deepEqual(drains, [r]);
    const snap = pool.get('a')!;
    assert.equal(snap.state, 'draining');
    assert.equal(snap.health, 'up');
    assert.equal(snap.draining, true);
    assert.equal(snap.drainReason, 'deploy');
    assert.equal(snap.drainDeadlineAt, r.deadlineAt);
    assert.equal(capable.closed.length + failing.closed.length + legacy.closed.length, 0, 'drain does not cut');
  });

  test('deadline closes every remaining session (capable-but-ignoring and non-capable) with drain-deadline', (t) => {
    mockTimers(t);
    const pool = mkPool(t, [A, B]);
    const obeys = attach(pool, 'a', new FakeSession('obeys', true));
    const ignores = attach(pool, 'a', new FakeSession('ignores', true));
    const legacy = attach(pool, 'a', new FakeSession('legacy', false));
    const other = attach(pool, 'b', new FakeSession('other', false));
    const closes = record<DeadlineClose>(pool, 'deadline-close');
    const completes = record<DrainComplete>(pool, 'drain-complete');

    pool.drain('a', { deadlineMs: 50 });
    obeys.detach!(); // reconnected elsewhere after Go Away
    t.mock.timers.tick(49);
    assert.deepEqual(ignores.closed, []);
    t.mock.timers.tick(1);

    assert.deepEqual(obeys.closed, []);
    assert.deepEqual(ignores.closed, ['drain-deadline']);
    assert.deepEqual(legacy.closed, ['drain-deadline']);
    assert.deepEqual(other.closed, []);
    assert.deepEqual(closes, [{ name: 'a', closed: 2 }]);
    assert.equal(completes.length, 1, 'the closes detached the last sessions');
    assert.equal(pool.get('a')?.sessions, 0);
    assert.equal(pool.get('a')?.state, 'draining', 'stays draining until undrain');
    t.mock.timers.tick(10_000);
    assert.equal(closes.length, 1, 'one timer, fires once');
  });

  test('sessions whose close is asynchronous are closed only once', (t) => {
    mockTimers(t);
    const pool = mkPool(t, [A]);
    const slow = new FakeSession('slow', false);
    slow.detach = undefined;
    const detach = pool.attach('a', slow); // does not detach inside close()
    pool.drain('a', { deadlineMs: 10 });
    t.mock.timers.tick(10);
    assert.deepEqual(slow.closed, ['drain-deadline']);
    // a racing attach re-arms the (already passed) deadline: only the new session gets closed
    const late = attach(pool, 'a', new FakeSession('late', false));
    t.mock.timers.tick(0);
    assert.deepEqual(late.closed, ['drain-deadline']);
    assert.deepEqual(slow.closed, ['drain-deadline']);
    detach();
    assert.equal(pool.get('a')?.sessions, 0);
  });

  test('undrain cancels the deadline and makes the backend pickable again', (t) => {
    mockTimers(t);
    const pool = mkPool(t, [A]);
    const legacy = attach(pool, 'a', new FakeSession('legacy', false));
    const undrains = record<string>(pool, 'undrain');
    const states = record<BackendStateChange>(pool, 'backend-state');
    pool.drain('a', { deadlineMs: 50 });
    assert.equal(pool.pick(), null);
    assert.equal(pool.undrain('a'), true);
    assert.equal(pool.undrain('a'), false, 'idempotent');
    t.mock.timers.tick(1000);
    assert.deepEqual(legacy.closed, []);
    assert.equal(pool.pick()?.name, 'a');
    assert.deepEqual(undrains, ['a']);
    assert.deepEqual(
      states.map((s) => s.to),
      ['draining', 'up'],
    );
    const snap = pool.get('a')!;
    assert.equal(snap.draining, false);
    assert.equal(snap.drainDeadlineAt, undefined);
  });

  test('drain-complete fires once when the last session detaches', (t) => {
    mockTimers(t);
    const pool = mkPool(t, [A]);
    const s1 = attach(pool, 'a', new FakeSession('1', true));
    const s2 = attach(pool, 'a', new FakeSession('2', true));
    const completes = record<DrainComplete>(pool, 'drain-complete');
    const closes = record<DeadlineClose>(pool, 'deadline-close');
    pool.drain('a', { deadlineMs: 100 });
    t.mock.timers.tick(30);
    s1.detach!();
    assert.equal(completes.length, 0);
    t.mock.timers.tick(10);
    s2.detach!();
    s2.detach!();
    assert.equal(completes.length, 1);
    assert.equal(completes[0]!.name, 'a');
    assert.equal(typeof completes[0]!.durationMs, 'number');
    t.mock.timers.tick(1000);
    assert.equal(closes.length, 0, 'deadline timer cleared once empty');
  });

  test('draining an empty backend completes immediately, after the drain event', (t) => {
    const pool = mkPool(t, [A]);
    const order: string[] = [];
    pool.on('drain', () => order.push('drain'));
    pool.on('drain-complete', () => order.push('drain-complete'));
    const r = pool.drain('a');
    assert.equal(r.sessions, 0);
    assert.deepEqual(order, ['drain', 'drain-complete']);
    pool.drain('a');
    assert.deepEqual(order, ['drain', 'drain-complete', 'drain'], 'no second completion for the same drain');
  });

  test('re-drain retries sessions not yet told, keeps told ones, and moves the deadline', (t) => {
    mockTimers(t);
    const pool = mkPool(t, [A]);
    const told = attach(pool, 'a', new FakeSession('told', true));
    const busy = attach(pool, 'a', new FakeSession('busy', true, false));
    const legacy = attach(pool, 'a', new FakeSession('legacy', false));

    const r1 = pool.drain('a', { deadlineMs: 1000 });
    assert.equal(r1.goAwaySent, 1);
    busy.goAwayOk = true;
    t.mock.timers.tick(100);
    const r2 = pool.drain('a');
    assert.equal(told.goAwayCalls, 1, 'not told twice');
    assert.equal(busy.goAwayCalls, 2, 'retried');
    assert.equal(legacy.goAwayCalls, 0);
    assert.equal(r2.goAwaySent, 2);
    assert.equal(r2.waiting, 1);
    assert.equal(r2.deadlineAt, r1.deadlineAt, 'omitted deadlineMs keeps the deadline');

    const r3 = pool.drain('a', { deadlineMs: 50 }); // shorten
    assert.equal(r3.deadlineAt, Date.now() + 50);
    t.mock.timers.tick(50);
    assert.deepEqual(legacy.closed, ['drain-deadline']);
    assert.deepEqual(told.closed, ['drain-deadline']);
    assert.equal(pool.get('a')?.sessions, 0);
  });

  test('re-drain can extend the deadline', (t) => {
    mockTimers(t);
    const pool = mkPool(t, [A]);
    const legacy = attach(pool, 'a', new FakeSession('legacy', false));
    pool.drain('a', { deadlineMs: 50 });
    pool.drain('a', { deadlineMs: 500 });
    t.mock.timers.tick(100);
    assert.deepEqual(legacy.closed, []);
    t.mock.timers.tick(400);
    assert.deepEqual(legacy.closed, ['drain-deadline']);
  });

  test('a session attached to an already-draining backend gets the strategy immediately', (t) => {
    mockTimers(t);
    const pool = mkPool(t, [A]);
    const completes = record<DrainComplete>(pool, 'drain-complete');
    pool.drain('a', { deadlineMs: 100 });
    assert.equal(completes.length, 1);
    const racer = attach(pool, 'a', new FakeSession('racer', true));
    const legacy = attach(pool, 'a', new FakeSession('legacy', false));
    assert.equal(racer.goAwayCalls, 1);
    assert.equal(legacy.goAwayCalls, 0);
    t.mock.timers.tick(100);
    assert.deepEqual(racer.closed, ['drain-deadline']);
    assert.deepEqual(legacy.closed, ['drain-deadline']);
    assert.equal(completes.length, 2, 'emptied again');
  });

  test('reapplyStrategy tells a session whose capability became known after attach', (t) => {
    const pool = mkPool(t, [A]);
    const s = new FakeSession('s', false);
    attach(pool, 'a', s);
    pool.drain('a');
    assert.equal(s.goAwayCalls, 0);
    (s as { supportsGoAway: boolean }).supportsGoAway = true;
    assert.equal(pool.reapplyStrategy('a', s), 'go-away');
    assert.equal(pool.reapplyStrategy('a', s), 'go-away');
    assert.equal(s.goAwayCalls, 1);
  });

  test('custom strategy outcomes are counted; a throwing strategy counts as waiting', (t) => {
    let n = 0;
    const pool = mkPool(t, [A], {
      strategy: {
        begin(session) {
          n++;
          if (session.id === 'boom') throw new Error('boom');
          return 'reconnect-request';
        },
      },
    });
    attach(pool, 'a', new FakeSession('x', true));
    attach(pool, 'a', new FakeSession('boom', true));
    const r = pool.drain('a');
    assert.equal(n, 2);
    assert.deepEqual(r.outcomes, { 'reconnect-request': 1, waiting: 1 });
    assert.equal(r.goAwaySent, 0);
    assert.equal(r.waiting, 1);
  });

  test('a throwing event listener does not break the drain', (t) => {
    const pool = mkPool(t, [A]);
    const s = attach(pool, 'a', new FakeSession('s', true));
    pool.on('backend-state', () => {
      throw new Error('listener bug');
    });
    const r = pool.drain('a');
    assert.equal(r.goAwaySent, 1);
    assert.equal(s.goAwayCalls, 1);
  });

  test('stop() clears deadline timers; start() re-arms them', (t) => {
    mockTimers(t);
    const pool = mkPool(t, [A], { health: { intervalMs: 1000, timeoutMs: 100, rise: 1, fall: 1, enabled: false } });
    const legacy = attach(pool, 'a', new FakeSession('legacy', false));
    pool.drain('a', { deadlineMs: 50 });
    pool.stop();
    t.mock.timers.tick(100);
    assert.deepEqual(legacy.closed, []);
    pool.start();
    t.mock.timers.tick(0);
    assert.deepEqual(legacy.closed, ['drain-deadline']);
    pool.stop();
  });

  test('invalid deadline is rejected', (t) => {
    const pool = mkPool(t, [A]);
    assert.throws(() => pool.drain('a', { deadlineMs: -1 }), RangeError);
    assert.throws(() => pool.drain('a', { deadlineMs: Number.NaN }), RangeError);
    assert.equal(pool.get('a')?.draining, false);
  });
});

describe('unknown backends', () => {
  test('drain/undrain/attach/sessionsOn throw UnknownBackendError; reports are ignored', (t) => {
    const pool = mkPool(t, [A]);
    const s = new FakeSession('s', true);
    for (const fn of [
      () => pool.drain('nope'),
      () => pool.undrain('nope'),
      () => pool.attach('nope', s),
      () => pool.sessionsOn('nope'),
      () => pool.reapplyStrategy('nope', s),
    ]) {
      assert.throws(fn, (err: unknown) => err instanceof UnknownBackendError && err.backend === 'nope');
    }
    pool.reportConnectFailure('nope', new Error('x'));
    pool.reportConnectSuccess('nope');
    assert.equal(pool.get('nope'), undefined);
    assert.deepEqual(pool.names(), ['a']);
  });

  test('constructor rejects duplicate names and bad ports', () => {
    const opts: BackendPoolOptions = {
      defaultDrainDeadlineMs: 1000,
      strategy: goAwayOrWait,
      health: { intervalMs: 1000, timeoutMs: 100, rise: 1, fall: 1, enabled: false },
    };
    assert.throws(() => new BackendPool([A, { ...A, port: 2 }], opts), /duplicate/);
    assert.throws(() => new BackendPool([{ ...A, port: 70000 }], opts), /port/);
  });
});

describe('passive health', () => {
  test('fall consecutive connect failures mark the backend down', (t) => {
    const pool = mkPool(t, [A, B]);
    const states = record<BackendStateChange>(pool, 'backend-state');
    pool.reportConnectFailure('a', new Error('ECONNREFUSED'));
    pool.reportConnectFailure('a', new Error('ECONNREFUSED'));
    pool.reportConnectSuccess('a'); // streak broken
    pool.reportConnectFailure('a', new Error('ECONNREFUSED'));
    pool.reportConnectFailure('a', new Error('ECONNREFUSED'));
    assert.equal(pool.get('a')?.health, 'up');
    pool.reportConnectFailure('a', new Error('ECONNREFUSED'));
    const snap = pool.get('a')!;
    assert.equal(snap.health, 'down');
    assert.equal(snap.state, 'down');
    assert.equal(snap.connectFailures, 5);
    assert.equal(snap.consecutiveFailures, 3);
    assert.equal(snap.lastConnectError, 'ECONNREFUSED');
    assert.deepEqual(states, [{ name: 'a', from: 'up', to: 'down' }]);
    for (let i = 0; i < 4; i++) assert.equal(pool.pick()?.name, 'b');
  });

  test('draining wins over health in the reported state', (t) => {
    const pool = mkPool(t, [A]);
    pool.drain('a');
    for (let i = 0; i < 3; i++) pool.reportConnectFailure('a', new Error('x'));
    const snap = pool.get('a')!;
    assert.equal(snap.health, 'down');
    assert.equal(snap.state, 'draining');
    pool.undrain('a');
    assert.equal(pool.get('a')?.state, 'down');
  });
});

describe('setBackends (reload)', () => {
  test('adds new backends and updates address for new sessions', (t) => {
    const pool = mkPool(t, [A]);
    const old = attach(pool, 'a', new FakeSession('old', true));
    const added = record<string>(pool, 'backend-added');
    const r = pool.setBackends([{ ...A, port: 2935 }, B]);
    assert.deepEqual(r, { added: ['b'], updated: ['a'], removed: [], removing: [] });
    assert.deepEqual(added, ['b']);
    assert.deepEqual(pool.names(), ['a', 'b']);
    assert.equal(pool.pick()?.name, 'b'); // a has 1 session
    attach(pool, 'b', new FakeSession('x', true));
    const picked = pool.pick(new Set(['b']));
    assert.equal(picked?.port, 2935);
    assert.deepEqual(old.closed, [], 'live sessions are not touched');
    assert.equal(pool.get('a')?.sessions, 1);
  });

  test('a removed backend without sessions is deleted at once', (t) => {
    const pool = mkPool(t, [A, B]);
    const removed = record<string>(pool, 'backend-removed');
    const r = pool.setBackends([B]);
    assert.deepEqual(r.removed, ['a']);
    assert.deepEqual(removed, ['a']);
    assert.deepEqual(pool.names(), ['b']);
    assert.throws(() => pool.drain('a'), UnknownBackendError);
  });

  test('a removed backend with sessions is drained, not cut, and deleted after its last session', (t) => {
    const pool = mkPool(t, [A, B]);
    const s1 = attach(pool, 'a', new FakeSession('1', true));
    const s2 = attach(pool, 'a', new FakeSession('2', false));
    const removed = record<string>(pool, 'backend-removed');
    const completes = record<DrainComplete>(pool, 'drain-complete');
    const r = pool.setBackends([B]);
    assert.deepEqual(r.removing, ['a']);
    const snap = pool.get('a')!;
    assert.equal(snap.state, 'draining');
    assert.equal(snap.drainReason, 'removed');
    assert.equal(snap.removing, true);
    assert.equal(s1.goAwayCalls, 1);
    assert.deepEqual([...s1.closed, ...s2.closed], []);
    for (let i = 0; i < 3; i++) assert.equal(pool.pick()?.name, 'b');
    assert.equal(pool.undrain('a'), false, 'cannot undrain a backend being removed');
    s1.detach!();
    assert.deepEqual(pool.names(), ['a', 'b']);
    s2.detach!();
    assert.equal(completes.length, 1);
    assert.deepEqual(removed, ['a']);
    assert.deepEqual(pool.names(), ['b']);
  });

  test('re-adding a backend pending removal cancels the removal and its drain', (t) => {
    const pool = mkPool(t, [A, B]);
    const s = attach(pool, 'a', new FakeSession('1', false));
    pool.setBackends([B]);
    assert.equal(pool.get('a')?.removing, true);
    pool.setBackends([A, B]);
    const snap = pool.get('a')!;
    assert.equal(snap.removing, false);
    assert.equal(snap.draining, false);
    s.detach!();
    assert.deepEqual(pool.names(), ['a', 'b'], 'not deleted');
  });

  test('an operator drain survives removal + re-add', (t) => {
    const pool = mkPool(t, [A, B]);
    attach(pool, 'a', new FakeSession('1', false));
    pool.drain('a', { reason: 'maintenance' });
    pool.setBackends([B]);
    pool.setBackends([A, B]);
    const snap = pool.get('a')!;
    assert.equal(snap.draining, true);
    assert.equal(snap.drainReason, 'maintenance');
  });

  test('a session attaching to a backend deleted during its connect is drained, not rejected', (t) => {
    mockTimers(t);
    const pool = mkPool(t, [A, B], { defaultDrainDeadlineMs: 100 });
    const removed = record<string>(pool, 'backend-removed');
    assert.equal(pool.pick()?.name, 'a'); // proxy starts connecting to a…
    pool.setBackends([B]); // …a reload deletes a (it has no session yet)…
    assert.deepEqual(removed, ['a']);
    const legacy = attach(pool, 'a', new FakeSession('legacy', false)); // …then the connect completes
    const late = attach(pool, 'a', new FakeSession('late', true));
    assert.equal(late.goAwayCalls, 1);
    const snap = pool.get('a')!;
    assert.equal(snap.state, 'draining');
    assert.equal(snap.removing, true);
    assert.equal(snap.drainReason, 'removed');
    for (let i = 0; i < 3; i++) assert.equal(pool.pick()?.name, 'b');
    late.detach!();
    t.mock.timers.tick(100);
    assert.deepEqual(legacy.closed, ['drain-deadline']);
    assert.deepEqual(removed, ['a', 'a']);
    assert.deepEqual(pool.names(), ['b']);
    assert.throws(() => pool.attach('never-configured', legacy), UnknownBackendError);
  });

  test('invalid reload leaves the pool unchanged', (t) => {
    const pool = mkPool(t, [A, B]);
    assert.throws(() => pool.setBackends([C, C]), /duplicate/);
    assert.deepEqual(pool.names(), ['a', 'b']);
  });
});

describe('routability (fail-safe drains, /readyz)', () => {
  test('isLastRoutable: only when no other backend can take a session', (t) => {
    const pool = mkPool(t, [A, B]);
    assert.equal(pool.isLastRoutable('a'), false);
    pool.drain('b');
    assert.equal(pool.isLastRoutable('a'), true);
    assert.equal(pool.isLastRoutable('b'), false, 'already draining: a re-drain takes nothing away');
    assert.throws(() => pool.isLastRoutable('zz'), /unknown backend/);
    assert.equal(pool.allRoutableDraining, false);
    pool.drain('a');
    assert.equal(pool.allRoutableDraining, true);
  });

  test('hasProvenRoutable: the starting "up" is not proof until a probe succeeds (or checks are off)', async (t) => {
    let ok = false;
    const pool = mkPool(t, [A], {
      probe: async () => {
        if (!ok) throw new Error('refused');
      },
    });
    assert.equal(pool.hasProvenRoutable, false);
    await pool.checkNow();
    assert.equal(pool.list()[0]!.health, 'up');
    assert.equal(pool.hasProvenRoutable, false, 'one failed probe: still nominally up, not proven');
    ok = true;
    await pool.checkNow();
    assert.equal(pool.hasProvenRoutable, true);
    const off = mkPool(t, [A], { health: { intervalMs: 1000, timeoutMs: 100, rise: 2, fall: 3, enabled: false } });
    assert.equal(off.hasProvenRoutable, true);
  });
});

describe('active health checks and reloaded drain settings', () => {
  test("'health-check' says the result and how long the probe took", async (t) => {
    let release: () => void = () => {};
    const pool = mkPool(t, [A, B], {
      probe: (cfg) => (cfg.name === 'a' ? new Promise<void>((r) => (release = r)) : Promise.reject(new Error('refused'))),
    });
    const seen: { name: string; ok: boolean; durationMs: number }[] = [];
    pool.on('health-check', (e) => seen.push(e));
    const started = performance.now();
    const done = pool.checkNow();
    await new Promise<void>((r) => setImmediate(r));
    release();
    await done;
    const byName = Object.fromEntries(seen.map((e) => [e.name, e]));
    assert.equal(byName['a']!.ok, true);
    assert.equal(byName['b']!.ok, false);
    for (const e of seen) assert.ok(e.durationMs >= 0 && e.durationMs <= performance.now() - started, `${e.name}: ${e.durationMs} ms`);
  });

  test('setDrainSettings: the next drain gets the new default deadline; a drain in progress keeps its own', (t) => {
    mockTimers(t);
    const pool = mkPool(t, [A, B]);
    const first = pool.drain('a');
    pool.setDrainSettings({ defaultDrainDeadlineMs: 5000, closeSpreadMs: 0 });
    const second = pool.drain('b');
    assert.equal(pool.get('a')?.drainDeadlineAt, first.deadlineAt);
    assert.equal(first.deadlineAt - Date.now(), 1000);
    assert.equal(second.deadlineAt - Date.now(), 5000);
    assert.throws(() => pool.setDrainSettings({ defaultDrainDeadlineMs: -1 }), RangeError);
  });
});
