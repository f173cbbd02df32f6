// Rebalancing one replica through its admin API, with Go Away publishers and fake backends: the
// pace (at most maxInFlight told at once, the next one only when one left), the window (a stream
// just moved is not moved again, even reconnected as a new session), the minimum age, and the
// automatic rebalance when a backend is added (rebalance.onBackendUp); by bitrate, the load of a
// publisher is the bitrate the proxy measures on its media, and each planned move says how and
// when it is expected.
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { RtmpPublisher } from '../../src/client/rtmp-client.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { FakeRtmpServer } from '../helpers/fake-rtmp-server.js';
import { type TestProxy, eventually, startTestProxy } from '../helpers/proxy.js';

interface ApiSession {
  backend: string | null;
  streamKey: string | null;
  state: string;
  media: { bitrate: number | null } | null;
}

/**
 * One second of AVC-looking video, 10 frames of `size` bytes (a keyframe first): the proxy measures
 * its bitrate from the timestamps, so it is the same on any machine (about size × 80 bits/s).
 */
function sendSecond(pub: RtmpPublisher, size: number): void {
  for (let i = 0; i <= 10; i++) {
    const b = Buffer.alloc(size, 0x55);
    b[0] = i % 10 === 0 ? 0x17 : 0x27;
    b[1] = 1;
    pub.sendMedia(MessageType.Video, i * 100, b);
  }
}

interface Publisher {
  key: string;
  pub: RtmpPublisher;
  told: boolean;
}

describe('rebalance on one replica (admin API)', () => {
  const servers = [new FakeRtmpServer(), new FakeRtmpServer()];
  const proxies: TestProxy[] = [];
  const pubs: RtmpPublisher[] = [];
  after(async () => {
    for (const p of pubs) p.destroy();
    for (const p of proxies) await p.stop();
    for (const s of servers) await s.close();
  });

  async function publish(tp: TestProxy, key: string): Promise<Publisher> {
    const pub = new RtmpPublisher(tp.url('live', key), { supportsGoAway: true });
    pubs.push(pub);
    const p: Publisher = { key, pub, told: false };
    pub.once('goaway', () => (p.told = true));
    await pub.publish();
    await eventually(
      async () => (await tp.api<ApiSession[]>('/api/sessions')).some((s) => s.streamKey === key && s.state === 'publishing'),
      `${key} publishing`,
    );
    return p;
  }

  const post = (tp: TestProxy, body: unknown) =>
    tp.api<{
      running: boolean;
      planned: number;
      plan: { by: string; targets: Record<string, number>; moves: { session: string; from: string; to: string; how: string }[]; stuck: number };
    }>('/api/rebalance', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });

  test('one move in flight at a time; a stream just moved stays; young sessions stay', async () => {
    for (const s of servers) await s.listen();
    const [s1, s2] = servers as [FakeRtmpServer, FakeRtmpServer];
    const flags = { healthEnabled: 'false', logStreamKeys: 'true', rebalanceMinAgeMs: '0s', rebalanceMaxInFlight: '1', rebalanceWindowMs: '10m' };
    const tp = await startTestProxy({ b1: s1.port }, flags);
    proxies.push(tp);
    const list: Publisher[] = [];
    for (let i = 0; i < 4; i++) list.push(await publish(tp, `k${i}`));
    tp.proxy.reloadBackends([
      { name: 'b1', host: '127.0.0.1', port: s1.port },
      { name: 'b2', host: '127.0.0.1', port: s2.port },
    ]);

    assert.equal((await post(tp, { minAgeMs: 3_600_000 })).planned, 0, 'every session is younger than an hour: nothing planned');
    const started = await post(tp, { reason: 'test' });
    assert.equal(started.planned, 2);
    const first = await eventually(() => list.find((p) => p.told), 'one publisher told');
    // The pace: the second is told only once the first left.
    const status = await tp.api<{ inFlight: number; pending: number }>('/api/rebalance');
    assert.deepEqual([status.inFlight, status.pending], [1, 1]);
    assert.equal(list.filter((p) => p.told).length, 1, 'one in flight');
    first.pub.destroy();
    await publish(tp, first.key);
    const second = await eventually(() => list.find((p) => p.told && p !== first), 'the second publisher told after the first left');
    second.pub.destroy();
    await publish(tp, second.key);
    await eventually(async () => !(await tp.api<{ running: boolean }>('/api/rebalance')).running, 'the run done');
    const sessions = await tp.api<ApiSession[]>('/api/sessions');
    assert.deepEqual(
      sessions
        .filter((s) => s.backend === 'b2')
        .map((s) => s.streamKey)
        .sort(),
      [first.key, second.key].sort(),
      'the reconnects landed on b2',
    );
    // Unbalance again: the publishers left on b1 end, b2 holds only the two streams just moved.
    for (const p of list) if (!p.told) p.pub.destroy();
    await eventually(async () => (await tp.api<ApiSession[]>('/api/sessions')).every((s) => s.backend === 'b2'), 'only b2 holds sessions');
    const plan = (await post(tp, { dryRun: true })).plan;
    assert.deepEqual([plan.moves.length, plan.stuck], [0, 1], 'a stream moved within the window is not moved again');
    assert.match(await (await tp.admin('/metrics')).text(), /rtmp_goaway_rebalance_moves_total\{result="moved"\} 2/);
    // A fleet share naming a backend this replica does not have moves nothing (and throws nothing).
    assert.equal(tp.proxy.control.rebalance({ quota: [{ from: 'b2', to: 'elsewhere', count: 1 }], minAgeMs: 0 }).planned, 0);
  });

  test('rebalance.onBackendUp: a backend added by a reload is filled without a command', async () => {
    const [s1, s2] = servers as [FakeRtmpServer, FakeRtmpServer];
    const flags = { healthEnabled: 'false', logStreamKeys: 'true', rebalanceMinAgeMs: '0s', rebalanceOnBackendUp: 'true' };
    const tp = await startTestProxy({ b1: s1.port }, flags);
    proxies.push(tp);
    const list: Publisher[] = [];
    for (let i = 0; i < 2; i++) list.push(await publish(tp, `auto${i}`));
    tp.proxy.reloadBackends([
      { name: 'b1', host: '127.0.0.1', port: s1.port },
      { name: 'b2', host: '127.0.0.1', port: s2.port },
    ]);
    const told = await eventually(() => list.find((p) => p.told), 'one publisher told to go away by the automatic rebalance');
    told.pub.destroy();
    await publish(tp, told.key);
    await eventually(
      async () => (await tp.api<ApiSession[]>('/api/sessions')).some((s) => s.streamKey === told.key && s.backend === 'b2'),
      'it reconnected onto b2',
    );
    assert.ok(tp.logs.some((l) => l['msg'] === 'rebalance started' && /automatic: backend b2 added/.test(String(l['reason']))));
  });

  test('rebalance.auto.spreadRatio: a backend holding twice its share is rebalanced without a command, counted', async () => {
    const [s1, s2] = servers as [FakeRtmpServer, FakeRtmpServer];
    const flags = {
      healthEnabled: 'false',
      logStreamKeys: 'true',
      rebalanceMinAgeMs: '0s',
      rebalanceAutoSpreadRatio: '1.5',
      rebalanceAutoIntervalMs: '1s',
    };
    const tp = await startTestProxy({ b1: s1.port }, flags);
    proxies.push(tp);
    const list: Publisher[] = [];
    for (let i = 0; i < 4; i++) list.push(await publish(tp, `spread${i}`));
    // b2 added by a reload, rebalance.onBackendUp off: only the spread (4/0, twice the share) triggers.
    tp.proxy.reloadBackends([
      { name: 'b1', host: '127.0.0.1', port: s1.port },
      { name: 'b2', host: '127.0.0.1', port: s2.port },
    ]);
    await eventually(() => list.filter((p) => p.told).length === 2, 'two publishers told to go away by the automatic rebalance', 20_000);
    const auto = tp.logs.find((l) => l['msg'] === 'automatic rebalance');
    assert.equal(auto?.['trigger'], 'spread');
    assert.equal(auto?.['spread'], 2);
    assert.match(await (await tp.admin('/metrics')).text(), /rtmp_goaway_rebalance_auto_total\{trigger="spread"\} 1/);
  });

  test('by bitrate: one heavy publisher balances four light ones; by sessions the same fleet moves two', async () => {
    const [s1, s2] = servers as [FakeRtmpServer, FakeRtmpServer];
    const flags = { healthEnabled: 'false', logStreamKeys: 'true', rebalanceMinAgeMs: '0s' };
    const tp = await startTestProxy({ b1: s1.port }, flags);
    proxies.push(tp);
    // The oldest is the heavy one (about 480 kb/s), then four of about 120 kb/s.
    const heavy = await publish(tp, 'heavy');
    sendSecond(heavy.pub, 6000);
    const light: Publisher[] = [];
    for (let i = 0; i < 4; i++) {
      const p = await publish(tp, `light${i}`);
      sendSecond(p.pub, 1500);
      light.push(p);
    }
    await eventually(
      async () => (await tp.api<ApiSession[]>('/api/sessions')).filter((s) => (s.media?.bitrate ?? 0) > 0).length === 5,
      'the five bitrates measured',
    );
    tp.proxy.reloadBackends([
      { name: 'b1', host: '127.0.0.1', port: s1.port },
      { name: 'b2', host: '127.0.0.1', port: s2.port },
    ]);
    const bySessions = (await post(tp, { dryRun: true, by: 'sessions' })).plan;
    assert.deepEqual([bySessions.by, bySessions.moves.length], ['sessions', 2]);
    const plan = (await post(tp, { dryRun: true, by: 'bitrate' })).plan;
    assert.equal(plan.by, 'bitrate');
    assert.equal(plan.moves.length, 1, 'the heavy publisher alone is half the load');
    const sessions = await tp.api<(ApiSession & { id: string })[]>('/api/sessions');
    assert.equal(plan.moves[0]!.session, sessions.find((s) => s.streamKey === 'heavy')!.id);
    assert.equal(plan.moves[0]!.how, 'reconnect', 'a Go Away publisher moves when it reconnects');
    const total = Object.values(plan.targets).reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(plan.targets['b1']! - plan.targets['b2']!) <= 1 && total > 800_000, JSON.stringify(plan.targets));
    // A bad `by` is refused.
    const bad = await tp.admin('/api/rebalance', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"by":"cpu"}' });
    assert.equal(bad.status, 400);

    // A fleet share naming a session: that one goes first, though older ones are on the same backend.
    const lightId = sessions.find((s) => s.streamKey === 'light2')!.id;
    const share = tp.proxy.control.rebalance({ quota: [{ from: 'b1', to: 'b2', count: 1, ids: [lightId] }], minAgeMs: 0, dryRun: true });
    assert.deepEqual(
      share.plan?.moves.map((m) => m.session),
      [lightId],
    );

    await post(tp, { by: 'bitrate' });
    await eventually(() => heavy.told, 'the heavy publisher told to go away');
    assert.ok(
      light.every((p) => !p.told),
      'the light ones stay',
    );
  });
});
