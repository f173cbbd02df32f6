import { test, describe, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { setImmediate as flush } from 'node:timers/promises';
import { tcpProbe, ProbeTimeoutError } from '../../src/balancer/health.js';
import { BackendPool, type BackendPoolOptions } from '../../src/balancer/pool.js';
import type { BackendConfig, BackendStateChange, HealthCheckOptions } from '../../src/balancer/types.js';
import { goAwayOrWait } from '../helpers/drain-strategy.js';

const HOST = '127.0.0.1';

/** A loopback server on an ephemeral port; closed (with all its sockets) after the test. */
async function listen(t: TestContext, onConnection: (s: net.Socket) => void = () => {}): Promise<{ server: net.Server; port: number }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    onConnection(s);
  });
  server.listen(0, HOST);
  await once(server, 'listening');
  t.after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return { server, port: (server.address() as net.AddressInfo).port };
}

/** A loopback port nobody listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, HOST);
  await once(server, 'listening');
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

const backend = (name: string, port: number): BackendConfig => ({ name, host: HOST, port });

function mkPool(t: TestContext, backends: BackendConfig[], health: Partial<HealthCheckOptions>, opts: Partial<BackendPoolOptions> = {}): BackendPool {
  const pool = new BackendPool(backends, {
    defaultDrainDeadlineMs: 1000,
    strategy: goAwayOrWait,
    health: { intervalMs: 1000, timeoutMs: 500, rise: 1, fall: 1, enabled: true, ...health },
    ...opts,
  });
  t.after(() => pool.stop());
  return pool;
}

/** An injectable probe whose verdict the test controls. */
function controlledProbe() {
  const calls: { name: string; timeoutMs: number }[] = [];
  const state = { ok: true };
  const probe = async (b: BackendConfig, timeoutMs: number): Promise<void> => {
    calls.push({ name: b.name, timeoutMs });
    if (!state.ok) throw new Error('injected failure');
  };
  return { probe, calls, state };
}

describe('tcpProbe', () => {
  test('resolves against a listening server and closes its connection', async (t) => {
    let serverSaw: Promise<unknown> | undefined;
    const { port } = await listen(t, (s) => {
      serverSaw = once(s, 'close');
    });
    await tcpProbe(backend('up', port), 1000);
    // the probe destroys its socket: the server side sees the connection close
    while (!serverSaw) await flush();
    await serverSaw;
  });

  test('rejects on a closed port', async () => {
    const port = await closedPort();
    await assert.rejects(tcpProbe(backend('down', port), 1000), (err: NodeJS.ErrnoException) => err.code === 'ECONNREFUSED');
  });

  test('rejects with ProbeTimeoutError when the timeout elapses before connecting', async (t) => {
    const { port } = await listen(t);
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const p = tcpProbe(backend('slow', port), 1000);
    t.mock.timers.tick(1000); // fires synchronously, before the connect can complete
    await assert.rejects(p, (err: unknown) => err instanceof ProbeTimeoutError && /slow/.test(err.message));
  });

  test('rejects invalid ports instead of throwing', async () => {
    await assert.rejects(tcpProbe(backend('bad', 70000), 100));
  });
});

describe('pool active health checks', () => {
  test('real tcpProbe: listening backend stays up, closed port goes down after fall failures', async (t) => {
    const { port } = await listen(t);
    const dead = await closedPort();
    const pool = mkPool(t, [backend('live', port), backend('dead', dead)], { fall: 2 });
    const states: BackendStateChange[] = [];
    pool.on('backend-state', (s) => states.push(s));

    await pool.checkNow();
    assert.equal(pool.get('live')?.health, 'up');
    assert.equal(pool.get('live')?.consecutiveSuccesses, 1);
    assert.equal(typeof pool.get('live')?.lastCheckAt, 'number');
    assert.equal(pool.get('dead')?.health, 'up', 'one failure < fall');
    assert.equal(pool.get('dead')?.consecutiveFailures, 1);

    await pool.checkNow();
    const d = pool.get('dead')!;
    assert.equal(d.health, 'down');
    assert.equal(d.state, 'down');
    assert.match(d.lastCheckError ?? '', /ECONNREFUSED/);
    assert.deepEqual(states, [{ name: 'dead', from: 'up', to: 'down' }]);
    for (let i = 0; i < 3; i++) assert.equal(pool.pick()?.name, 'live');
  });

  test('rise/fall transitions with an injected probe', async (t) => {
    const { probe, calls, state } = controlledProbe();
    const pool = mkPool(t, [backend('a', 1935)], { fall: 2, rise: 3, timeoutMs: 123 }, { probe });
    const states: string[] = [];
    pool.on('backend-state', (s) => states.push(`${s.from}->${s.to}`));

    assert.equal(pool.get('a')?.health, 'up', 'optimistic initial state');
    state.ok = false;
    await pool.checkNow();
    assert.equal(pool.get('a')?.health, 'up');
    await pool.checkNow();
    assert.equal(pool.get('a')?.health, 'down');
    assert.equal(pool.pick(), null);
    assert.equal(pool.get('a')?.lastCheckError, 'injected failure');

    state.ok = true;
    await pool.checkNow();
    await pool.checkNow();
    assert.equal(pool.get('a')?.health, 'down', '2 successes < rise');
    state.ok = false;
    await pool.checkNow(); // resets the success streak
    state.ok = true;
    await pool.checkNow();
    await pool.checkNow();
    assert.equal(pool.get('a')?.health, 'down');
    await pool.checkNow();
    const snap = pool.get('a')!;
    assert.equal(snap.health, 'up');
    assert.equal(snap.consecutiveSuccesses, 3);
    assert.equal(snap.lastCheckError, undefined);
    assert.equal(pool.pick()?.name, 'a');
    assert.deepEqual(states, ['up->down', 'down->up']);
    assert.equal(calls.length, 8);
    assert.ok(calls.every((c) => c.name === 'a' && c.timeoutMs === 123));
  });

  test('active and passive failures share the fall counter; a success resets it', async (t) => {
    const { probe, state } = controlledProbe();
    const pool = mkPool(t, [backend('a', 1935)], { fall: 3 }, { probe });
    pool.reportConnectFailure('a', new Error('refused'));
    state.ok = false;
    await pool.checkNow();
    state.ok = true;
    await pool.checkNow();
    pool.reportConnectFailure('a', new Error('refused'));
    pool.reportConnectFailure('a', new Error('refused'));
    assert.equal(pool.get('a')?.health, 'up');
    pool.reportConnectFailure('a', new Error('refused'));
    assert.equal(pool.get('a')?.health, 'down');
  });

  test('at most one probe in flight per backend', async (t) => {
    let calls = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const pool = mkPool(
      t,
      [backend('a', 1935)],
      {},
      {
        probe: () => {
          calls++;
          return gate;
        },
      },
    );
    const p1 = pool.checkNow();
    const p2 = pool.checkNow();
    await flush();
    assert.equal(calls, 1);
    release();
    await Promise.all([p1, p2]);
    assert.equal(pool.get('a')?.consecutiveSuccesses, 1, 'one result recorded');
    await pool.checkNow();
    assert.equal(calls, 2);
  });

  test('start() checks now and every intervalMs; stop() ends it', async (t) => {
    const { probe, calls } = controlledProbe();
    const pool = mkPool(t, [backend('a', 1935), backend('b', 1936)], { intervalMs: 1000 }, { probe });
    t.mock.timers.enable({ apis: ['setInterval'] });
    pool.start();
    pool.start(); // idempotent
    await flush();
    assert.equal(calls.length, 2);
    t.mock.timers.tick(999);
    await flush();
    assert.equal(calls.length, 2);
    t.mock.timers.tick(1);
    await flush();
    assert.equal(calls.length, 4);
    pool.stop();
    t.mock.timers.tick(5000);
    await flush();
    assert.equal(calls.length, 4);
  });

  test('results of probes in flight at stop() are ignored', async (t) => {
    let fail!: (e: Error) => void;
    const pool = mkPool(
      t,
      [backend('a', 1935)],
      { fall: 1 },
      {
        probe: () => new Promise<void>((_resolve, reject) => (fail = reject)),
      },
    );
    const p = pool.checkNow();
    await flush();
    pool.stop();
    fail(new Error('late'));
    await p;
    assert.equal(pool.get('a')?.health, 'up');
    assert.equal(pool.get('a')?.consecutiveFailures, 0);
  });

  test('a probe that never settles counts as failed and frees the slot', async (t) => {
    let calls = 0;
    const pool = mkPool(
      t,
      [backend('a', 1935)],
      { fall: 1, timeoutMs: 10 },
      {
        probe: () => {
          calls++;
          return new Promise<void>(() => {});
        },
      },
    );
    // the pool's guard timer is unref'd and the hung probe holds no handle: keep the loop alive here
    const keepAlive = setInterval(() => {}, 1000);
    t.after(() => clearInterval(keepAlive));
    await pool.checkNow();
    assert.equal(pool.get('a')?.health, 'down');
    assert.match(pool.get('a')?.lastCheckError ?? '', /did not settle/);
    await pool.checkNow();
    assert.equal(calls, 2);
  });

  test('a probe that throws synchronously counts as failed', async (t) => {
    const pool = mkPool(
      t,
      [backend('a', 1935)],
      { fall: 1 },
      {
        probe: () => {
          throw new Error('sync');
        },
      },
    );
    await pool.checkNow();
    assert.equal(pool.get('a')?.lastCheckError, 'sync');
    assert.equal(pool.get('a')?.health, 'down');
  });

  test('checks disabled: up backends are never probed, a passively-downed one is probed until it rises', async (t) => {
    const { probe, calls } = controlledProbe();
    const pool = mkPool(t, [backend('a', 1935), backend('b', 1936)], { enabled: false, fall: 2, rise: 2 }, { probe });
    await pool.checkNow();
    assert.equal(calls.length, 0);
    pool.reportConnectFailure('a', new Error('refused'));
    pool.reportConnectFailure('a', new Error('refused'));
    assert.equal(pool.get('a')?.health, 'down');
    await pool.checkNow();
    assert.deepEqual(
      calls.map((c) => c.name),
      ['a'],
    );
    assert.equal(pool.get('a')?.health, 'down');
    await pool.checkNow();
    assert.equal(pool.get('a')?.health, 'up');
    await pool.checkNow();
    assert.equal(calls.length, 2, 'back up: no more probes');
  });

  test('changing a backend address resets its health to up', async (t) => {
    const { probe, state } = controlledProbe();
    const pool = mkPool(t, [backend('a', 1935)], { fall: 1 }, { probe });
    state.ok = false;
    await pool.checkNow();
    assert.equal(pool.get('a')?.health, 'down');
    pool.setBackends([backend('a', 1936)]);
    assert.equal(pool.get('a')?.health, 'up');
    assert.equal(pool.get('a')?.consecutiveFailures, 0);
    assert.equal(pool.pick()?.port, 1936);
  });
});
