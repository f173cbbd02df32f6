// What `rebalance` prints: a line per planned move with how and when it is expected (the keyframe
// estimate `drain --wait` shows), and what `--wait` counts as left to move, by sessions or bitrate.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { backendLoads, leftToMove, moveLines } from '../../src/rebalance-cli.js';

describe('rebalance output', () => {
  test('a line per move: reconnects move when they reconnect, migrations at the next keyframe (estimated from the GOP)', () => {
    const lines = moveLines([
      { session: 's1', from: 'b1', to: 'b3', how: 'reconnect', nextKeyframeInMs: null, keyframeIntervalMs: null },
      { session: 's2', from: 'b1', to: 'b3', how: 'migrate', nextKeyframeInMs: 1200, keyframeIntervalMs: 2000 },
      { session: 's3\x1b[2J', from: 'b2', to: 'b3', how: 'migrate', nextKeyframeInMs: null, keyframeIntervalMs: null },
    ]);
    assert.deepEqual(lines, [
      '  s1 b1 -> b3: told to reconnect: moves when it reconnects\n',
      '  s2 b1 -> b3: migrated at its next keyframe: next keyframe in ~1.2s (gop 2.0s)\n',
      '  s3\\x1b[2J b2 -> b3: migrated at its next keyframe: keyframe interval not measured yet\n',
    ]);
  });

  test('--wait: what is left to move, by sessions exactly, by bitrate beyond one session of slack', () => {
    assert.equal(leftToMove({ b1: 6, b2: 6, b3: 0 }, { b1: 4, b2: 4, b3: 4 }), 4);
    assert.equal(leftToMove({ b1: 4, b2: 4, b3: 4 }, { b1: 4, b2: 4, b3: 4 }), 0);
    assert.equal(leftToMove({ b1: 7_000_000, b2: 3_000_000 }, { b1: 5_000_000, b2: 5_000_000 }, 1_500_000), 500_000);
    assert.equal(leftToMove({ b1: 6_000_000, b2: 4_000_000 }, { b1: 5_000_000, b2: 5_000_000 }, 1_500_000), 0);
  });

  test('--wait: the loads as the plan counts them (players left out; a session not measured is the mean)', () => {
    const m = (bitrate: number | null) => ({ bitrate }) as never;
    const sessions = [
      { id: 'a', app: 'live', capability: 'goaway', state: 'publishing', backend: 'b1', role: 'publisher', media: m(3_000_000) },
      { id: 'b', app: 'live', capability: 'goaway', state: 'publishing', backend: 'b2', role: 'publisher', media: m(1_000_000) },
      { id: 'c', app: 'live', capability: 'none', state: 'publishing', backend: 'b2', role: null, media: null },
      { id: 'p', app: 'live', capability: 'none', state: 'playing', backend: 'b1', role: 'player', media: null },
      { id: 'x', app: null, capability: 'unknown', state: 'handshake', backend: null, role: null, media: null },
    ];
    assert.deepEqual(backendLoads(sessions, 'sessions'), { b1: 1, b2: 2 });
    assert.deepEqual(backendLoads(sessions, 'bitrate'), { b1: 3_000_000, b2: 3_000_000 });
  });
});
