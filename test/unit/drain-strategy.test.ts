import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { canTakeSession, hasRoom, isRoutable } from '../../src/balancer/eligibility.js';
import { askToReconnect, createDrainStrategy, type StrategySession } from '../../src/proxy/drain-strategy.js';

/** A session whose announced capabilities and queueing the test sets, recording what it was told. */
class Fake implements StrategySession {
  readonly id = 's';
  told: string[] = [];
  queued = true;
  migrateAnswer: 'migrating' | 'waiting' = 'migrating';
  constructor(
    readonly capability: StrategySession['capability'],
    readonly role: StrategySession['role'] = 'publisher',
  ) {}
  get supportsGoAway(): boolean {
    return this.capability === 'goaway';
  }
  goAway(): boolean {
    this.told.push('goAway');
    return this.supportsGoAway && this.queued;
  }
  reconnectRequest(): boolean {
    this.told.push('reconnectRequest');
    return this.capability === 'erpc' && this.queued;
  }
  migrate(backend: string): 'migrating' | 'waiting' {
    this.told.push(`migrate:${backend}`);
    return this.migrateAnswer;
  }
  exemptFromDeadline(): void {
    this.told.push('exempt');
  }
  drainPlayer(): 'player' {
    this.told.push('player');
    return 'player';
  }
  close(): void {}
}

describe('askToReconnect', () => {
  test('Go Away where announced, else ReconnectRequest only when offered; nothing for the others', () => {
    const g = new Fake('goaway');
    assert.equal(askToReconnect(g, true), 'go-away');
    assert.deepEqual(g.told, ['goAway']);
    const e = new Fake('erpc');
    assert.equal(askToReconnect(e, true), 'reconnect-request');
    assert.equal(askToReconnect(new Fake('erpc'), false), 'not-capable');
    assert.equal(askToReconnect(new Fake('none'), true), 'not-capable');
    const u = new Fake('unknown');
    assert.equal(askToReconnect(u, true), 'unknown');
    assert.deepEqual(u.told, []);
    const full = new Fake('goaway');
    full.queued = false;
    assert.equal(askToReconnect(full, true), 'not-queued');
    assert.deepEqual(full.told, ['goAway'], 'a Go Away client is never sent a ReconnectRequest instead');
  });
});

describe('createDrainStrategy', () => {
  test('each non-capable policy', () => {
    const migrate = createDrainStrategy({ nonCapable: 'migrate', erpc: true });
    const m = new Fake('none');
    assert.equal(migrate.begin(m, 'b1'), 'migrating');
    assert.deepEqual(m.told, ['migrate:b1']);
    const notYet = new Fake('none');
    notYet.migrateAnswer = 'waiting';
    assert.equal(migrate.begin(notYet, 'b1'), 'waiting');
    const ignore = createDrainStrategy({ nonCapable: 'ignore', erpc: false });
    const i = new Fake('erpc');
    assert.equal(ignore.begin(i, 'b1'), 'ignored', 'erpc not offered: an erpc client is non-capable');
    assert.deepEqual(i.told, ['exempt']);
    const close = createDrainStrategy({ nonCapable: 'deadline-close', erpc: true });
    assert.equal(close.begin(new Fake('none'), 'b1'), 'waiting');
    assert.equal(close.begin(new Fake('erpc'), 'b1'), 'reconnect-request');
    assert.equal(close.begin(new Fake('goaway'), 'b1'), 'go-away');
  });

  test('a player is sent nothing, whatever it announced and whatever the policy', () => {
    for (const nonCapable of ['migrate', 'ignore', 'deadline-close'] as const) {
      for (const cap of ['goaway', 'erpc', 'none'] as const) {
        const p = new Fake(cap, 'player');
        assert.equal(createDrainStrategy({ nonCapable, erpc: true }).begin(p, 'b1'), 'player');
        assert.deepEqual(p.told, ['player'], `${nonCapable}/${cap}: no Go Away, ReconnectRequest or migration`);
      }
    }
  });

  test('connect not parsed, or the message not queued: waiting (re-applied later), never a migration', () => {
    const strategy = createDrainStrategy({ nonCapable: 'migrate', erpc: true });
    const u = new Fake('unknown');
    assert.equal(strategy.begin(u, 'b1'), 'waiting');
    const full = new Fake('erpc');
    full.queued = false;
    assert.equal(strategy.begin(full, 'b1'), 'waiting');
    assert.deepEqual([...u.told, ...full.told], ['reconnectRequest']);
  });
});

describe('backend eligibility', () => {
  const up = { health: 'up', draining: false, removing: false, sessions: 1 } as const;
  test('routable: up, not draining, not being removed; room: below the cap', () => {
    assert.equal(isRoutable(up), true);
    assert.equal(isRoutable({ ...up, health: 'down' }), false);
    assert.equal(isRoutable({ ...up, draining: true }), false);
    assert.equal(isRoutable({ ...up, removing: true }), false);
    assert.equal(hasRoom(1, undefined), true);
    assert.equal(hasRoom(1, 2), true);
    assert.equal(hasRoom(2, 2), false);
    assert.equal(canTakeSession({ ...up, maxSessions: 1 }), false);
    assert.equal(canTakeSession({ ...up, maxSessions: 2 }), true);
    assert.equal(canTakeSession({ ...up, draining: true }), false);
  });
});
