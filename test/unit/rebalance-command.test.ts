// The rebalance control message: parsed strictly and bounded like drain; the fleet plan split by
// replica, each move given to the replica holding the session.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { rebalanceOptions } from '../../src/control/admin-routes.js';
import { MAX_REBALANCE_REPLICAS, isRebalanceText, parseRebalanceMessage, planFleet } from '../../src/control/rebalance-command.js';
import { parseControlMessage } from '../../src/control/commands.js';
import type { SessionRecord } from '../../src/control/bus.js';

describe('parseRebalanceMessage', () => {
  test('JSON with moves per replica, and plain text', () => {
    const text = JSON.stringify({
      action: 'rebalance',
      moves: { r1: [{ from: 'b1', to: 'b3', count: 2 }] },
      maxInFlight: 2,
      minAgeMs: 0,
      reason: 'x',
      id: 'i',
      at: 1,
      origin: 'cli@h',
    });
    assert.ok(isRebalanceText(text));
    assert.deepEqual(parseRebalanceMessage(text), {
      ok: true,
      message: {
        action: 'rebalance',
        moves: { r1: [{ from: 'b1', to: 'b3', count: 2 }] },
        maxInFlight: 2,
        minAgeMs: 0,
        reason: 'x',
        id: 'i',
        at: 1,
        origin: 'cli@h',
      },
    });
    assert.deepEqual(parseRebalanceMessage('  rebalance scale out '), { ok: true, message: { action: 'rebalance', reason: 'scale out' } });
    assert.ok(isRebalanceText('rebalance'));
    assert.ok(!isRebalanceText('drain b1'));
    assert.ok(!isRebalanceText('{"action":"drain","backend":"b1"}'));
  });

  test('malformed: each problem named', () => {
    const bad: [unknown, RegExp][] = [
      [{ action: 'rebalance', extra: 1 }, /unknown field "extra"/],
      [{ action: 'rebalance', moves: [] }, /"moves" must be an object/],
      [{ action: 'rebalance', moves: { r: [{ from: 'b1', to: 'b1', count: 1 }] } }, /two backend names/],
      [{ action: 'rebalance', moves: { r: [{ from: 'b 1', to: 'b2', count: 1 }] } }, /two backend names/],
      [{ action: 'rebalance', moves: { r: [{ from: 'b1', to: 'b2', count: 0 }] } }, /"count"/],
      [{ action: 'rebalance', moves: { r: [{ from: 'b1', to: 'b2', count: 1, x: 1 }] } }, /unknown field "x"/],
      [
        { action: 'rebalance', moves: Object.fromEntries(Array.from({ length: MAX_REBALANCE_REPLICAS + 1 }, (_, i) => [`r${i}`, []])) },
        /more than 64 replicas/,
      ],
      [{ action: 'rebalance', maxInFlight: 0 }, /maxInFlight/],
      [{ action: 'rebalance', minAgeMs: -1 }, /minAgeMs/],
      [{ action: 'rebalance', reason: 'x'.repeat(201) }, /reason/],
    ];
    for (const [v, re] of bad) {
      const r = parseRebalanceMessage(JSON.stringify(v));
      assert.ok(!r.ok && re.test(r.error), `${JSON.stringify(v).slice(0, 80)} → ${JSON.stringify(r)}`);
    }
    const long = parseRebalanceMessage(`rebalance ${'x'.repeat(5000)}`);
    assert.ok(!long.ok && /longer than/.test(long.error));
  });

  test('property: never throws, and what the drain parser accepts is never taken for a rebalance', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.json()), (s) => {
        const r = parseRebalanceMessage(s);
        assert.equal(typeof r.ok, 'boolean');
        if (parseControlMessage(s).ok) assert.ok(!isRebalanceText(s));
      }),
      { numRuns: 1000 },
    );
  });
});

describe('planFleet', () => {
  const up = (name: string, state = 'up') => ({ name, state: state as 'up', sessions: 0, drainReason: null, drainDeadlineAt: null });
  const old = new Date(0).toISOString();
  test('each move goes to the replica holding the session; sticky sessions and backends down somewhere stay', () => {
    const replicas = [
      { replicaId: 'r1', backends: [up('b1'), up('b2'), up('b3'), up('b4', 'down')] },
      { replicaId: 'r2', backends: [up('b1'), up('b2'), up('b3'), up('b4')] },
    ];
    const sessions = [
      ...Array.from({ length: 4 }, (_, i) => ({ id: `a${i}`, replica: 'r1', backend: 'b1', capability: 'goaway', startedAt: old, route: null })),
      ...Array.from({ length: 4 }, (_, i) => ({ id: `b${i}`, replica: 'r2', backend: 'b2', capability: 'none', startedAt: old, route: null })),
      { id: 's', replica: 'r2', backend: 'b2', capability: 'goaway', startedAt: old, route: 'live: sticky' },
    ];
    const plan = planFleet(replicas, sessions, { minAgeMs: 0, now: Date.now() });
    assert.deepEqual(plan.targets, { b1: 3, b2: 3, b3: 3 });
    assert.deepEqual(plan.moves, { r1: [{ from: 'b1', to: 'b3', count: 1 }], r2: [{ from: 'b2', to: 'b3', count: 2 }] });
    assert.equal(plan.planned, 3);
    // r2's sessions announced nothing: they migrate at their next keyframe.
    assert.deepEqual(
      plan.estimates.map((m) => [m.replica, m.how]),
      [
        ['r2', 'migrate'],
        ['r2', 'migrate'],
        ['r1', 'reconnect'],
      ],
    );
  });

  test('by bitrate: the measured bitrates of the registry records, the keyframe estimate of each move', () => {
    const replicas = [{ replicaId: 'r1', backends: [up('b1'), up('b2')] }];
    const media = (bitrate: number | null) => ({ bitrate, nextKeyframeInMs: 700, keyframeIntervalMs: 2000 }) as unknown as NonNullable<SessionRecord['media']>;
    const sessions = [
      { id: 'heavy', replica: 'r1', backend: 'b1', capability: 'none', startedAt: old, route: null, media: media(6_000_000) },
      ...Array.from({ length: 4 }, (_, i) => ({
        id: `l${i}`,
        replica: 'r1',
        backend: 'b1',
        capability: 'goaway',
        startedAt: old,
        route: null,
        media: media(1_000_000),
      })),
      // Not measured yet: counts as the mean (2 Mb/s); players are not planned.
      { id: 'new', replica: 'r1', backend: 'b1', capability: 'goaway', startedAt: new Date().toISOString(), route: null, media: null },
      { id: 'p', replica: 'r1', backend: 'b1', capability: 'none', startedAt: old, route: null, role: 'player' as const, media: media(9_000_000) },
    ];
    const plan = planFleet(replicas, sessions, { minAgeMs: 60_000, now: Date.now(), by: 'bitrate' });
    assert.deepEqual(plan.loads, { b1: 12_000_000, b2: 0 });
    assert.deepEqual(plan.targets, { b1: 6_000_000, b2: 6_000_000 });
    assert.deepEqual(plan.estimates, [
      { session: 'heavy', replica: 'r1', from: 'b1', to: 'b2', how: 'migrate', nextKeyframeInMs: 700, keyframeIntervalMs: 2000 },
    ]);
    assert.deepEqual(plan.moves, { r1: [{ from: 'b1', to: 'b2', count: 1, ids: ['heavy'] }] }, 'by bitrate the quota names the session');
    const bySessions = planFleet(replicas, sessions, { minAgeMs: 60_000, now: Date.now() });
    assert.equal(bySessions.planned, 3, 'by sessions: 3 of the 6');
    assert.equal(bySessions.moves['r1']![0]!.ids, undefined, 'by sessions any session of the backend will do');
    assert.ok(parseRebalanceMessage(JSON.stringify({ action: 'rebalance', moves: plan.moves, by: 'bitrate' })).ok);
    assert.equal(parseRebalanceMessage('{"action":"rebalance","by":"bitrate"}').ok, true);
    assert.equal(parseRebalanceMessage('{"action":"rebalance","by":"cpu"}').ok, false);
  });
});

describe('POST /api/rebalance body', () => {
  test('known fields only, bounded', () => {
    assert.deepEqual(rebalanceOptions('{"dryRun":true,"maxInFlight":2,"minAgeMs":0,"reason":"x"}'), { dryRun: true, maxInFlight: 2, minAgeMs: 0, reason: 'x' });
    assert.deepEqual(rebalanceOptions(''), {});
    assert.deepEqual(rebalanceOptions('{"by":"bitrate","quota":[{"from":"b1","to":"b2","count":2}]}'), {
      by: 'bitrate',
      quota: [{ from: 'b1', to: 'b2', count: 2 }],
    });
    const tooMany = '{"quota":[{"from":"b1","to":"b2","count":1,"ids":["a","b"]}]}';
    for (const body of [
      '[]',
      '{"dryRun":1}',
      '{"maxInFlight":0}',
      '{"minAgeMs":-5}',
      '{"other":1}',
      'nope',
      '{"by":"cpu"}',
      '{"quota":[{"from":"b1","to":"b1","count":1}]}',
      '{"quota":{}}',
      tooMany,
      '{"quota":[{"from":"b1","to":"b2","count":1,"ids":[7]}]}',
    ])
      assert.throws(() => rebalanceOptions(body), /must|unknown|body/);
  });
});
