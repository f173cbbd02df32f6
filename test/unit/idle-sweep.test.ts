// The idle sweep: one timer for every session's idle timeouts.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { IdleSweep, idleSweepIntervalMs } from '../../src/proxy/idle-sweep.js';
import { ProcessBudget, SessionBudget } from '../../src/proxy/buffer-budget.js';
import { SocketPair } from '../../src/proxy/session/socket-pair.js';
import { memPair } from '../helpers/mem-socket.js';

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

describe('client idle timeout of a player', () => {
  const owner = {
    clientData() {},
    clientEnd() {},
    clientError() {},
    clientClosed() {},
    backendData() {},
    backendEnd() {},
    backendError() {},
    backendClosed() {},
    retiredData() {},
    retiredClosed() {},
  };
  const pairOf = (): SocketPair => new SocketPair(memPair()[0].asSocket, owner, new SessionBudget(Infinity, new ProcessBudget(Infinity)));

  test('a silent client that takes what it is sent is alive when it receives (a player); a publisher is idle', () => {
    for (const receives of [true, false]) {
      const p = pairOf();
      p.start(0);
      let result: string | null = null;
      for (let now = 100; now <= 1000 && result === null; now += 100) {
        p.bytesOut += 4096; // the backend's stream reaches the client; the client says nothing
        result = p.idle(now, 300, 0, receives);
      }
      assert.equal(result, receives ? null : 'client-idle');
    }
  });

  test('a player receiving nothing is idle like any client', () => {
    const p = pairOf();
    p.start(0);
    p.bytesOut = 100;
    assert.equal(p.idle(100, 300, 0, true), null, 'the first bytes it took');
    assert.equal(p.idle(300, 300, 0, true), null);
    assert.equal(p.idle(400, 300, 0, true), 'client-idle');
  });
});
