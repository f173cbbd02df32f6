import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { isRoutable } from '../../src/balancer/eligibility.js';
import { LastRoutableBackendError, UnknownBackendError } from '../../src/balancer/pool.js';
import type { BackendSnapshot, DrainOptions, DrainResult } from '../../src/balancer/types.js';
import type { BusHandlers, ControlBus, FleetView, PublishOutcome } from '../../src/control/bus.js';
import type { ControlCommand, DesiredDrain } from '../../src/control/commands.js';
import { type ControlCounters, type ControlledPool, ControlPlane, controlCommand } from '../../src/control/control-plane.js';
import { LocalBus } from '../../src/control/local-bus.js';

const NOW = 1_000_000;
const DEFAULT_DEADLINE = 60_000;

/** A pool without sockets: backends with a health and a drain flag; records every drain and undrain it was asked. */
class FakePool implements ControlledPool {
  readonly calls: string[] = [];
  private readonly backends = new Map<string, { health: 'up' | 'down'; draining: boolean; removing: boolean; drain?: DrainOptions }>();

  constructor(names: string[]) {
    for (const n of names) this.add(n);
  }

  add(name: string, health: 'up' | 'down' = 'up'): void {
    this.backends.set(name, { health, draining: false, removing: false });
  }

  set(name: string, facts: Partial<{ health: 'up' | 'down'; draining: boolean; removing: boolean }>): void {
    Object.assign(this.get(name), facts);
  }

  drainOf(name: string): DrainOptions | undefined {
    const b = this.get(name);
    return b.draining ? b.drain : undefined;
  }

  list(): BackendSnapshot[] {
    return [...this.backends].map(([name, b]) => ({
      name,
      host: 'h',
      port: 1,
      state: b.draining ? 'draining' : b.health,
      health: b.health,
      draining: b.draining,
      sessions: 0,
      consecutiveFailures: 0,
      consecutiveSuccesses: 0,
      connectFailures: 0,
      removing: b.removing,
      source: 'static',
    }));
  }

  isLastRoutable(name: string): boolean {
    const me = this.get(name);
    return isRoutable(me) && ![...this.backends.values()].some((b) => b !== me && isRoutable(b));
  }

  drain(name: string, opts: DrainOptions = {}): DrainResult {
    const b = this.get(name);
    this.calls.push(`drain ${name}${opts.deadlineMs === undefined ? '' : ` ${opts.deadlineMs}`}`);
    b.draining = true;
    b.drain = opts;
    return { backend: name, sessions: 0, goAwaySent: 0, waiting: 0, deadlineAt: NOW + (opts.deadlineMs ?? DEFAULT_DEADLINE), outcomes: {} };
  }

  undrain(name: string): boolean {
    const b = this.get(name);
    this.calls.push(`undrain ${name}`);
    const was = b.draining;
    b.draining = false;
    return was;
  }

  private get(name: string) {
    const b = this.backends.get(name);
    if (b === undefined) throw new UnknownBackendError(name);
    return b;
  }
}

/**
 * The in-process bus, with what a Redis connection adds: it can drop and come back (delivering the
 * desired state the store holds then, as RedisBus does after every reconnect), and a publish can fail.
 */
class FlakyBus implements ControlBus {
  readonly kind = 'local' as const;
  readonly inner = new LocalBus();
  private handlers: BusHandlers | null = null;
  publishError: Error | null = null;

  get connected(): boolean {
    return this.inner.connected;
  }
  start(handlers: BusHandlers): Promise<void> {
    this.handlers = handlers;
    return this.inner.start(handlers);
  }
  publish(cmd: ControlCommand): Promise<PublishOutcome> {
    return this.publishError === null ? this.inner.publish(cmd) : Promise.reject(this.publishError);
  }
  report(): Promise<void> {
    return Promise.resolve();
  }
  fleet(): Promise<FleetView> {
    return this.inner.fleet();
  }
  stop(): Promise<void> {
    return this.inner.stop();
  }
  /** A command another replica published. */
  deliver(cmd: ControlCommand): boolean {
    return this.handlers!.command(cmd);
  }
  deliverText(text: string, error: string): void {
    this.handlers!.malformed(text, error);
  }
  reconnect(desired: DesiredDrain[]): void {
    this.handlers!.connection(false);
    this.handlers!.connection(true);
    this.handlers!.sync(desired);
  }
}

function counters() {
  const seen: string[] = [];
  const c: ControlCounters = {
    controlMessages: { inc: (l) => void seen.push(`${l.source}:${l.result}`) },
    drains: { inc: (l) => void seen.push(`${l.action}:${l.backend}`) },
  };
  return { c, seen };
}

async function setup(names = ['b1', 'b2'], desired: DesiredDrain[] = []) {
  const pool = new FakePool(names);
  const bus = new FlakyBus();
  for (const d of desired)
    await bus.inner.publish({ action: 'drain', backend: d.backend, at: d.at, ...(d.deadlineMs === undefined ? {} : { deadlineMs: d.deadlineMs }) });
  const { c, seen } = counters();
  let changes = 0;
  let now = NOW;
  const plane = new ControlPlane({
    pool,
    bus,
    log: pino({ level: 'silent' }),
    replicaId: 'r1',
    counters: c,
    defaultDeadlineMs: () => DEFAULT_DEADLINE,
    changed: () => void changes++,
    now: () => now,
  });
  await plane.start();
  return {
    pool,
    bus,
    plane,
    seen,
    changes: () => changes,
    advance: (ms: number) => void (now += ms),
    /** Lets the local bus deliver what was published (it delivers in a microtask, as a bus would). */
    settle: () => new Promise<void>((r) => setImmediate(r)),
  };
}

describe('ControlPlane: commands given on this replica', () => {
  test('an admin drain applies at once, is published, and its echo from the bus is not applied again', async () => {
    const { pool, bus, plane, seen, settle, changes } = await setup();
    const out = await plane.control(controlCommand('drain', 'b1', { deadlineMs: 5_000, reason: 'deploy' }), 'admin');
    assert.equal(out.action, 'drain');
    assert.equal(out.result.deadlineAt, NOW + 5_000);
    assert.deepEqual(out.fleet, { published: true, receivers: 1, bus: 'local' });
    assert.equal(out.command.origin, 'r1');
    assert.equal(out.command.at, NOW);
    assert.ok(out.command.id !== undefined);
    await settle();
    assert.deepEqual(pool.calls, ['drain b1 5000'], 'applied once: the echo is recognised by its id');
    assert.deepEqual(seen, ['drain:b1', 'admin:ok']);
    assert.deepEqual((await bus.fleet()).desired, [{ backend: 'b1', at: NOW, deadlineMs: 5_000, reason: 'deploy', origin: 'r1' }]);
    assert.deepEqual(
      plane.desired.map((d) => d.backend),
      ['b1'],
    );
    assert.ok(changes() >= 1, 'the registry is told');
  });

  test('the same id delivered a second time is a new command (an id is forgotten once its echo came back)', async () => {
    const { pool, bus, plane, settle } = await setup();
    const out = await plane.control(controlCommand('drain', 'b1'), 'admin');
    await settle();
    pool.undrain('b1');
    assert.equal(bus.deliver(out.command), true);
    assert.deepEqual(pool.calls, ['drain b1', 'undrain b1', 'drain b1']);
  });

  test('undrain from a signal and from the programmatic API: applied, published, counted under its source (api: not counted)', async () => {
    const { pool, bus, plane, seen, settle } = await setup();
    plane.drain('b1', { force: true });
    const undrained = await plane.control(controlCommand('undrain', 'b1'), 'signal');
    assert.equal(undrained.action, 'undrain');
    assert.equal(undrained.result, true);
    await settle();
    assert.deepEqual(pool.calls, ['drain b1', 'undrain b1']);
    assert.deepEqual(seen, ['drain:b1', 'undrain:b1', 'signal:ok']);
    assert.deepEqual((await bus.fleet()).desired, []);
    assert.deepEqual(plane.desired, []);
    assert.equal(plane.undrain('b1'), false, 'not draining any more');
  });

  test('fail-safe: a drain of the last routable backend is refused unless forced, and nothing is published', async () => {
    const { pool, bus, plane, seen, settle } = await setup();
    pool.set('b2', { health: 'down' });
    await assert.rejects(plane.control(controlCommand('drain', 'b1'), 'admin'), LastRoutableBackendError);
    assert.throws(() => plane.drain('b1'), LastRoutableBackendError);
    await assert.rejects(plane.control(controlCommand('drain', 'b1'), 'signal'), LastRoutableBackendError);
    await settle();
    assert.deepEqual(pool.calls, []);
    assert.deepEqual(seen, ['admin:rejected', 'api:rejected', 'signal:rejected']);
    assert.deepEqual((await bus.fleet()).desired, []);
    const forced = await plane.control(controlCommand('drain', 'b1'), 'admin', { force: true });
    assert.equal(forced.fleet.published, true);
    assert.deepEqual(pool.calls, ['drain b1']);
  });

  test('a drain that leaves another routable backend is not refused; a down backend can always be drained', async () => {
    const { pool, plane } = await setup(['b1', 'b2', 'b3']);
    plane.drain('b1');
    pool.set('b3', { health: 'down' });
    plane.drain('b3');
    assert.throws(() => plane.drain('b2'), LastRoutableBackendError);
    assert.deepEqual(pool.calls, ['drain b1', 'drain b3']);
  });

  test('an unknown backend given here throws and is neither published nor persisted', async () => {
    const { bus, plane } = await setup();
    await assert.rejects(plane.control(controlCommand('drain', 'nope'), 'admin'), UnknownBackendError);
    assert.throws(() => plane.undrain('nope'), UnknownBackendError);
    assert.deepEqual((await bus.fleet()).desired, []);
    assert.deepEqual(plane.desired, []);
  });

  test('a bus that cannot publish: the command still applies here and the outcome says so', async () => {
    const { pool, bus, plane } = await setup();
    bus.publishError = new Error('connection is closed');
    const out = await plane.control(controlCommand('drain', 'b1'), 'admin');
    assert.deepEqual(out.fleet, { published: false, receivers: 0, error: 'connection is closed', bus: 'local' });
    assert.deepEqual(pool.calls, ['drain b1']);
    assert.deepEqual(
      plane.desired.map((d) => d.backend),
      ['b1'],
      'kept: re-applied on reload',
    );
  });
});

describe('ControlPlane: commands from the fleet bus', () => {
  test('a drain from another replica is applied as it is (forced past the last-routable check) and remembered', async () => {
    const { pool, bus, plane, seen } = await setup(['b1']);
    assert.equal(bus.deliver({ action: 'drain', backend: 'b1', id: 'x', origin: 'r2', at: NOW - 1_000, deadlineMs: 3_000 }), true);
    assert.deepEqual(pool.calls, ['drain b1 3000']);
    assert.deepEqual(seen, ['drain:b1', 'bus:ok']);
    assert.deepEqual(plane.desired, [{ backend: 'b1', at: NOW - 1_000, deadlineMs: 3_000, origin: 'r2' }]);
    assert.equal(bus.deliver({ action: 'undrain', backend: 'b1', id: 'y', origin: 'r2' }), true);
    assert.deepEqual(plane.desired, []);
  });

  test('unknown backends are counted, ignored and not persisted; an undrain of one still clears the desired drain', async () => {
    const { pool, bus, plane, seen } = await setup(['b1']);
    for (let i = 0; i < 50; i++) assert.equal(bus.deliver({ action: 'drain', backend: `made-up-${i}`, id: `m${i}` }), false);
    assert.equal(plane.desired.length, 0, 'a flood of made-up names does not grow memory');
    assert.deepEqual(pool.calls, []);
    assert.equal(seen.filter((s) => s === 'bus:rejected').length, 50);
    bus.reconnect([{ backend: 'gone', at: NOW }]);
    assert.deepEqual(
      plane.desired.map((d) => d.backend),
      ['gone'],
      'the store says so: kept for a reload that brings it back',
    );
    assert.equal(bus.deliver({ action: 'undrain', backend: 'gone', id: 'u' }), false);
    assert.deepEqual(plane.desired, []);
  });

  test('malformed messages are counted, never fatal', async () => {
    const { bus, seen } = await setup();
    bus.deliverText('drain', '"drain" needs a backend name');
    assert.deepEqual(seen, ['bus:malformed']);
  });
});

describe('ControlPlane: convergence to the desired state', () => {
  test('at start: a desired drain is applied with what is left of its deadline', async () => {
    const { pool } = await setup(['b1', 'b2'], [{ backend: 'b1', at: NOW - 10_000, deadlineMs: 30_000 }]);
    assert.deepEqual(pool.calls, ['drain b1 20000']);
  });

  test('after a reconnect: drains lifted meanwhile are undrained, new ones drained; a backend a reload removes stays draining', async () => {
    const { pool, bus, plane, advance, changes } = await setup(['b1', 'b2', 'b3']);
    plane.drain('b1');
    plane.drain('b3', { force: true });
    pool.set('b3', { removing: true });
    advance(5_000);
    const before = changes();
    // While disconnected, another replica undrained b1 and drained b2 (no deadline: the default applies).
    bus.reconnect([{ backend: 'b2', at: NOW + 1_000 }]);
    assert.deepEqual(pool.calls, ['drain b1', 'drain b3', 'undrain b1', `drain b2 ${DEFAULT_DEADLINE - 4_000}`]);
    assert.deepEqual(
      plane.desired.map((d) => d.backend),
      ['b2'],
    );
    assert.ok(changes() > before);
    // A second sync with the same state changes nothing.
    bus.reconnect([{ backend: 'b2', at: NOW + 1_000 }]);
    assert.equal(pool.calls.length, 4);
  });

  test('a backend added by a reload or discovery takes its desired drain on converge', async () => {
    const { pool, plane } = await setup(['b1'], [{ backend: 'b9', at: NOW, deadlineMs: 1_000 }]);
    assert.deepEqual(pool.calls, []);
    pool.add('b9');
    plane.converge('reload');
    assert.deepEqual(pool.calls, ['drain b9 1000']);
    assert.deepEqual(pool.drainOf('b9'), { deadlineMs: 1_000 });
  });
});
