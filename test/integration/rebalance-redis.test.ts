// `rebalance --redis` across two replicas: the CLI plans over the fleet registry and each replica
// moves its share of the plan (its own sessions), told with Go Away; their reconnects land on the
// new backend; `--wait` reads the registry until the fleet holds its targets. A replica named in
// no share moves nothing.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RtmpPublisher } from '../../src/client/rtmp-client.js';
import { readRegistry, registryKeys } from '../../src/control/registry.js';
import { FakeRtmpServer } from '../helpers/fake-rtmp-server.js';
import { requirePeer } from '../helpers/peers.js';
import { type TestProxy, eventually, startTestProxy } from '../helpers/proxy.js';
import { type TestRedis, runCli, startRedis } from '../helpers/redis.js';

interface ApiSession {
  id: string;
  backend: string | null;
  streamKey: string | null;
  state: string;
}

describe('rebalance across replicas through Redis', () => {
  let redis: TestRedis | null = null;
  const servers = { b1: new FakeRtmpServer(), b2: new FakeRtmpServer(), b3: new FakeRtmpServer() };
  const proxies: TestProxy[] = [];
  const pubs: RtmpPublisher[] = [];
  const prefix = 'rgp-rebalance';

  before(async (ctx) => {
    const exe = requirePeer(ctx as never, 'redis-server');
    if (exe === null) return;
    redis = await startRedis(exe);
    for (const s of Object.values(servers)) await s.listen();
  });
  after(async () => {
    for (const p of pubs) p.destroy();
    for (const p of proxies) await p.stop();
    for (const s of Object.values(servers)) await s.close();
    await redis?.remove();
  });

  test('each replica moves its share; the fleet ends at its targets', async (t) => {
    if (redis === null) return t.skip('no redis-server');
    const flags = (id: string) => ({
      redisUrl: redis!.url,
      redisPrefix: prefix,
      replicaId: id,
      redisHeartbeatMs: '200ms',
      redisSessionTtlMs: '2s',
      healthEnabled: 'false',
      rebalanceMinAgeMs: '0s',
      logStreamKeys: 'true',
    });
    const two = { b1: servers.b1.port, b2: servers.b2.port };
    const r1 = await startTestProxy(two, flags('r1'));
    const r2 = await startTestProxy(two, flags('r2'));
    proxies.push(r1, r2);
    interface Publisher {
      tp: TestProxy;
      pub: RtmpPublisher;
      told: boolean;
    }
    /** Publishes `key` through `tp`; resolves once its session publishes; `told` turns true on Go Away. */
    const publish = async (tp: TestProxy, key: string): Promise<Publisher> => {
      const pub = new RtmpPublisher(tp.url('live', key), { supportsGoAway: true });
      pubs.push(pub);
      const p: Publisher = { tp, pub, told: false };
      pub.once('goaway', () => (p.told = true));
      await pub.publish();
      await eventually(
        async () => (await tp.api<ApiSession[]>('/api/sessions')).some((s) => s.streamKey === key && s.state === 'publishing'),
        `${key} publishing`,
      );
      return p;
    };
    // r1: 4 sessions over b1/b2 (least connections: 2/2); r2: 2 (1/1). Fleet: b1 3, b2 3.
    const publishers = new Map<string, Publisher>();
    for (let i = 0; i < 4; i++) publishers.set(`r1k${i}`, await publish(r1, `r1k${i}`));
    for (let i = 0; i < 2; i++) publishers.set(`r2k${i}`, await publish(r2, `r2k${i}`));
    // Scale-out on both replicas.
    const three = { ...two, b3: servers.b3.port };
    const list = Object.entries(three).map(([name, port]) => ({ name, host: '127.0.0.1', port }));
    for (const tp of [r1, r2]) tp.proxy.reloadBackends(list);
    const keys = registryKeys(prefix);
    await eventually(async () => {
      const reg = await readRegistry(redis!.client, keys);
      return reg.sessions.length === 6 && reg.replicas.length === 2 && reg.replicas.every((r) => r.backends.length === 3);
    }, 'the registry shows 6 sessions and b3 on both replicas');

    const target = ['--redis', redis.url, '--redis-prefix', prefix];
    const dry = await runCli(['rebalance', '--dry-run', '--min-age', '0s', ...target]);
    assert.equal(dry.code, 0, dry.stderr);
    const plan = JSON.parse(dry.stdout) as {
      targets: Record<string, number>;
      moves: Record<string, { from: string; to: string; count: number }[]>;
      planned: number;
      published: boolean;
    };
    assert.deepEqual(plan.targets, { b1: 2, b2: 2, b3: 2 });
    assert.equal(plan.planned, 2);
    assert.equal(plan.published, false, '--dry-run publishes nothing');
    // A line per planned move, with how and when it is expected: Go Away publishers move when they reconnect.
    assert.equal((dry.stderr.match(/^ {2}\S+ b[12] -> b3: told to reconnect: moves when it reconnects$/gm) ?? []).length, 2, dry.stderr);
    // By bitrate: the fake publishers send no media, each counts as 1 Mb/s: the same moves.
    const dryBitrate = await runCli(['rebalance', '--dry-run', '--by', 'bitrate', '--min-age', '0s', ...target]);
    const byBitrate = JSON.parse(dryBitrate.stdout) as { by: string; targets: Record<string, number>; planned: number };
    assert.deepEqual([byBitrate.by, byBitrate.targets, byBitrate.planned], ['bitrate', { b1: 2_000_000, b2: 2_000_000, b3: 2_000_000 }, 2]);
    // The oldest sessions move first: r1's.
    assert.deepEqual(Object.keys(plan.moves), ['r1']);

    const run = runCli(['rebalance', '--wait', '--min-age', '0s', '--timeout', '20s', ...target], { timeoutMs: 40_000 });
    // The told publishers reconnect (what a Go Away publisher does) through the same replica.
    const goneAway = await eventually(
      () => {
        const keysTold = [...publishers].filter(([, p]) => p.told).map(([key]) => key);
        return keysTold.length === 2 ? keysTold : null;
      },
      'two publishers told to go away',
      15_000,
    );
    for (const key of goneAway) {
      const p = publishers.get(key)!;
      p.pub.destroy();
      await publish(p.tp, key);
    }
    const res = await run;
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stderr, /balanced: b1=2 b2=2 b3=2/);
    assert.ok(
      goneAway.every((k) => k.startsWith('r1')),
      `only r1 moved (its share): ${goneAway.join(', ')}`,
    );
    const onB3 = (await r1.api<ApiSession[]>('/api/sessions')).filter((s) => s.backend === 'b3').map((s) => s.streamKey);
    assert.deepEqual(onB3.sort(), goneAway.sort(), 'the reconnects landed on b3');
    assert.equal((await r2.api<ApiSession[]>('/api/sessions')).filter((s) => s.backend === 'b3').length, 0);
    assert.match(await (await r1.admin('/metrics')).text(), /rtmp_goaway_rebalance_moves_total\{result="moved"\} 2/);
  });
});
