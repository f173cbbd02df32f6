// Routing rules and sticky placement (pure): table-driven matching, balancing within a group, and
// rendezvous stickiness over 100 stream keys (spread reported, stable across reconnects, only the
// keys of a drained backend move).
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  type BackendView,
  type RouteRequest,
  type RoutingSpec,
  Router,
  RoutingConfigError,
  hrwScore,
  leastLoaded,
  rejectionDescription,
  rendezvous,
} from '../../src/balancer/routing.js';

const spec: RoutingSpec = {
  groups: {
    dvr: { backends: ['dvr-*'] },
    live: { sources: ['dns:_rtmp._tcp.ingest'] },
    office: { backends: ['office-1'] },
    all: { backends: ['*'] },
  },
  rules: [
    { name: 'office', match: { cidr: ['10.1.0.0/16', 'fd00:1::/32'] }, group: 'office' },
    { name: 'record', match: { app: ['record', 'dvr'] }, group: 'dvr', sticky: true },
    { name: 'vip', match: { app: 'live', keyPrefix: 'vip-' }, group: 'live', balance: 'weighted' },
    { name: 'test-keys', match: { keyRegex: '^test-[0-9]+$' }, group: 'all' },
    { name: 'live', match: { app: 'live' }, group: 'live' },
  ],
};

describe('rules: first match, in order', () => {
  const router = Router.compile(spec);
  const cases: [RouteRequest, string | null][] = [
    [{ app: 'live', streamKey: 'abc', clientIp: '10.1.2.3' }, 'office'],
    [{ app: 'live', streamKey: 'abc', clientIp: '::ffff:10.1.2.3' }, 'office'],
    [{ app: 'live', streamKey: 'abc', clientIp: 'fd00:1:2::5' }, 'office'],
    [{ app: 'live', streamKey: 'abc', clientIp: '10.2.0.1' }, 'live'],
    [{ app: 'record', streamKey: 'abc', clientIp: '192.0.2.1' }, 'record'],
    [{ app: 'dvr?token=1', streamKey: 'abc', clientIp: '192.0.2.1' }, 'record'],
    [{ app: 'live', streamKey: 'vip-7?sig=x', clientIp: '192.0.2.1' }, 'vip'],
    [{ app: 'other', streamKey: 'vip-7', clientIp: '192.0.2.1' }, null],
    [{ app: 'other', streamKey: 'test-42', clientIp: '192.0.2.1' }, 'test-keys'],
    [{ app: 'other', streamKey: 'test-42x', clientIp: '192.0.2.1' }, null],
    [{ app: 'LIVE', streamKey: 'abc', clientIp: '192.0.2.1' }, null],
    [{ app: null, streamKey: null, clientIp: null }, null],
  ];
  for (const [req, want] of cases) {
    test(`${JSON.stringify(req)} → ${want ?? 'no rule'}`, () => {
      assert.equal(router.match(req)?.label ?? null, want);
    });
  }
  test('needs: the latest stage any rule needs', () => {
    assert.equal(router.needs, 'publish');
    assert.equal(
      Router.compile({ groups: { a: { backends: ['*'] } }, rules: [{ match: { cidr: '10.0.0.0/8' }, group: 'a' }, { group: 'a' }] }).needs,
      'accept',
    );
    assert.equal(Router.compile({ groups: { a: { backends: ['*'] } }, rules: [{ match: { app: 'live' }, group: 'a' }] }).needs, 'connect');
  });
  test('invalid specs list every problem', () => {
    const err = (() => {
      try {
        Router.compile({
          groups: { empty: {} },
          rules: [
            { match: { keyRegex: '(' }, group: 'nope' },
            { match: { cidr: ['10.0.0.0/33', 'x/8'] }, group: 'empty', balance: 'random' as never },
          ],
        });
      } catch (e) {
        return e as RoutingConfigError;
      }
      return null;
    })();
    assert.ok(err instanceof RoutingConfigError);
    assert.equal(err.issues.length, 6, err.message);
  });
});

const view = (name: string, extra: Partial<BackendView> = {}): BackendView => ({ name, sessions: 0, usable: true, ...extra });

describe('placement within a group', () => {
  const backends: BackendView[] = [
    view('dvr-1'),
    view('dvr-2'),
    view('10.0.0.1', { source: 'dns:_rtmp._tcp.ingest', weight: 10, sessions: 10 }),
    view('10.0.0.2', { source: 'dns:_rtmp._tcp.ingest', weight: 30, sessions: 20 }),
    view('10.0.0.3', { source: 'dns:_rtmp._tcp.ingest', weight: 10, sessions: 5, usable: false }),
    view('office-1', { maxSessions: 1, sessions: 1 }),
  ];
  const router = Router.compile(spec);
  test('least connections among usable group members', () => {
    const p = router.place({ app: 'live', streamKey: 'k', clientIp: '192.0.2.1' }, backends);
    assert.equal(p.backend, '10.0.0.1');
    assert.ok(p.backend !== null && p.how === 'least-connections');
  });
  test('weighted: fewest sessions per unit of weight', () => {
    const p = router.place({ app: 'live', streamKey: 'vip-1', clientIp: '192.0.2.1' }, backends);
    assert.equal(p.backend, '10.0.0.2', '21/30 < 11/10');
  });
  test('a full or unusable group is unavailable; no rule is "no-rule"; descriptions say which', () => {
    const full = router.place({ app: 'live', streamKey: 'k', clientIp: '10.1.0.9' }, backends);
    assert.equal(full.backend, null);
    assert.ok(full.backend === null && full.reason === 'group-unavailable');
    assert.match(rejectionDescription(full, { app: 'live' }), /rule office, group office/);
    const none = router.place({ app: 'nope', streamKey: 'k', clientIp: '192.0.2.1' }, backends);
    assert.ok(none.backend === null && none.reason === 'no-rule');
    assert.match(rejectionDescription(none, { app: 'nope', streamKey: 'k' }), /No route for this stream \(app "nope", stream key given\)/);
    assert.doesNotMatch(rejectionDescription(none, { app: 'nope', streamKey: 'k' }), /"k"/, 'the key is never echoed');
  });
  test('leastLoaded: idle ties rotate with the cursor', () => {
    const idle = [view('a'), view('b'), view('c')];
    assert.deepEqual(
      [0, 1, 2, 3].map((c) => leastLoaded(idle, false, c)?.name),
      ['a', 'b', 'c', 'a'],
    );
    assert.equal(leastLoaded([view('z', { weight: 0 })], true), null, 'weight 0 never takes sessions');
  });
});

describe('stickiness (rendezvous hashing)', () => {
  const names = ['dvr-1', 'dvr-2', 'dvr-3', 'dvr-4'];
  const keys = Array.from({ length: 100 }, (_, i) => `stream-${i}-${(i * 2654435761) % 1000}`);
  const router = Router.compile(spec);
  const place = (key: string, backends: BackendView[]) => router.place({ app: 'record', streamKey: key, clientIp: '192.0.2.1' }, backends);

  test('100 stream keys spread evenly over 4 backends (spread reported)', (t) => {
    const backends = names.map((n) => view(n));
    const counts = new Map(names.map((n) => [n, 0]));
    for (const k of keys) {
      const p = place(k, backends);
      assert.ok(p.backend !== null && p.how === 'sticky');
      counts.set(p.backend, counts.get(p.backend)! + 1);
    }
    const values = [...counts.values()];
    t.diagnostic(
      `spread of 100 keys over 4 backends: ${[...counts].map(([n, c]) => `${n}=${c}`).join(' ')} (min ${Math.min(...values)}, max ${Math.max(...values)}, ideal 25)`,
    );
    assert.ok(Math.min(...values) >= 15 && Math.max(...values) <= 35, `uneven: ${values.join(',')}`);
  });

  test('a reconnecting publisher maps back to the same backend, whatever the loads', () => {
    const before = new Map(
      keys.map((k) => [
        k,
        place(
          k,
          names.map((n) => view(n)),
        ).backend,
      ]),
    );
    const loaded = names.map((n, i) => view(n, { sessions: 100 * i }));
    for (const k of keys) {
      assert.equal(place(k, loaded).backend, before.get(k));
      assert.equal(place(`${k}?token=${Math.random()}`, loaded).backend, before.get(k), 'the query string is not part of the key');
    }
  });

  test('keys move only when their backend drains, and come back when it is undrained', () => {
    const all = names.map((n) => view(n));
    const before = new Map(keys.map((k) => [k, place(k, all).backend!]));
    const drained = names.map((n) => view(n, { usable: n !== 'dvr-2' }));
    let moved = 0;
    for (const k of keys) {
      const p = place(k, drained);
      assert.ok(p.backend !== null);
      if (before.get(k) === 'dvr-2') {
        assert.notEqual(p.backend, 'dvr-2');
        assert.equal(p.how, 'sticky-moved');
        moved++;
      } else {
        assert.equal(p.backend, before.get(k), `${k} moved although its backend did not drain`);
        assert.equal(p.how, 'sticky');
      }
    }
    assert.ok(moved > 0);
    for (const k of keys) assert.equal(place(k, all).backend, before.get(k));
  });

  test('a full backend is skipped like a draining one; weights bias the share', () => {
    assert.equal(rendezvous('k', []), null);
    const heavy = [view('a', { weight: 3 }), view('b', { weight: 1 })];
    const share = keys.filter((k) => rendezvous(k, heavy)?.name === 'a').length;
    assert.ok(share >= 62 && share <= 88, `weight 3:1 gave ${share}/100 to a`);
    assert.equal(hrwScore('k', 'x', 0), -Infinity);
    const k = keys[0]!;
    const top = place(
      k,
      names.map((n) => view(n)),
    )!.backend!;
    const p = place(
      k,
      names.map((n) => view(n, n === top ? { maxSessions: 1, sessions: 1 } : {})),
    );
    assert.ok(p.backend !== null && p.backend !== top && p.how === 'sticky-moved');
  });
});
