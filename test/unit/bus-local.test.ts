import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import type { BusHandlers, ReplicaRecord } from '../../src/control/bus.js';
import type { ControlCommand, DesiredDrain } from '../../src/control/commands.js';
import { LocalBus } from '../../src/control/local-bus.js';
import { RegistryHeartbeat } from '../../src/control/registry.js';

function recorder() {
  const events: { commands: ControlCommand[]; syncs: DesiredDrain[][]; connection: boolean[]; malformed: string[] } = {
    commands: [],
    syncs: [],
    connection: [],
    malformed: [],
  };
  const handlers: BusHandlers = {
    command: (c) => events.commands.push(c) > 0,
    sync: (d) => events.syncs.push(d),
    connection: (c) => events.connection.push(c),
    malformed: (t) => events.malformed.push(t),
  };
  return { events, handlers };
}

const replica: ReplicaRecord = { replicaId: 'r1', startedAt: 'x', heartbeatAt: 'y', listen: '127.0.0.1:1935', admin: null, shuttingDown: false, backends: [] };

describe('LocalBus', () => {
  test('start reports connected and an empty desired state', async () => {
    const bus = new LocalBus();
    const { events, handlers } = recorder();
    await bus.start(handlers);
    assert.equal(bus.connected, true);
    assert.deepEqual(events.connection, [true]);
    assert.deepEqual(events.syncs, [[]]);
    await bus.stop();
    assert.equal(bus.connected, false);
  });

  test('publish keeps the desired state and delivers the command asynchronously, like a bus', async () => {
    const bus = new LocalBus();
    const { events, handlers } = recorder();
    await bus.start(handlers);
    const out = await bus.publish({ action: 'drain', backend: 'b1', deadlineMs: 5000, at: 42, id: 'a' });
    assert.deepEqual(out, { published: true, receivers: 1 });
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(
      events.commands.map((c) => c.id),
      ['a'],
    );
    assert.deepEqual((await bus.fleet()).desired, [{ backend: 'b1', at: 42, deadlineMs: 5000 }]);
    await bus.publish({ action: 'undrain', backend: 'b1' });
    assert.deepEqual((await bus.fleet()).desired, []);
    await bus.stop();
  });

  test('fleet shows the last report as the only replica', async () => {
    const bus = new LocalBus();
    await bus.start(recorder().handlers);
    assert.deepEqual((await bus.fleet()).replicas, []);
    await bus.report(replica, [
      {
        id: 's1',
        replica: 'r1',
        backend: 'b1',
        app: 'live',
        capability: 'goaway',
        state: 'publishing',
        startedAt: 'z',
        goAwaySentAt: null,
        client: 'c',
        streamKey: null,
        parseFallback: null,
      },
    ]);
    const f = await bus.fleet();
    assert.equal(f.source, 'local');
    assert.deepEqual(
      f.replicas.map((r) => r.replicaId),
      ['r1'],
    );
    assert.deepEqual(
      f.sessions.map((s) => s.id),
      ['s1'],
    );
    await bus.stop();
  });
});

describe('RegistryHeartbeat', () => {
  const log = pino({ level: 'silent' });

  test('writes one batch per interval and coalesces flushSoon calls made during a write', async () => {
    let flushes = 0;
    let release: (() => void) | null = null;
    const hb = new RegistryHeartbeat({
      intervalMs: 60_000,
      fastIntervalMs: 60_000,
      fast: () => false,
      flush: () => {
        flushes++;
        return new Promise<void>((r) => (release = r));
      },
      log,
    });
    hb.start();
    while (release === null) await new Promise((r) => setTimeout(r, 1));
    // Three requests while the first write is in flight → exactly one more write after it.
    hb.flushSoon();
    hb.flushSoon();
    hb.flushSoon();
    const first = release as () => void;
    release = null;
    first();
    while (release === null) await new Promise((r) => setTimeout(r, 1));
    assert.equal(flushes, 2);
    (release as () => void)();
    await hb.stop();
    assert.equal(flushes, 2);
  });

  test('a failing write is logged, not thrown, and the next one still runs', async () => {
    let flushes = 0;
    const hb = new RegistryHeartbeat({
      intervalMs: 60_000,
      fastIntervalMs: 60_000,
      fast: () => false,
      flush: async () => {
        flushes++;
        if (flushes === 1) throw new Error('redis down');
      },
      log,
    });
    await hb.flushNow();
    await hb.flushNow();
    assert.equal(flushes, 2);
    await hb.stop();
  });
});
