// Drain across replicas: two (three) proxies in this process, distinct replica ids, one real
// redis-server, scriptable fake RTMP backends, publishers that announce Go Away.
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { RtmpPublisher } from '../../src/client/rtmp-client.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { FakeRtmpServer } from '../helpers/fake-rtmp-server.js';
import { requirePeer, tempDir } from '../helpers/peers.js';
import { type TestProxy, eventually, startTestProxy } from '../helpers/proxy.js';
import { type TestRedis, startRedis } from '../helpers/redis.js';

interface ApiSession {
  id: string;
  backend: string | null;
  goAway: boolean;
  state: string;
}
interface ApiBackend {
  name: string;
  state: string;
  draining: boolean;
}

function replicaFlags(redis: TestRedis, id: string, prefix: string): Record<string, unknown> {
  return { redisUrl: redis.url, redisPrefix: prefix, replicaId: id, redisHeartbeatMs: '200ms', redisSessionTtlMs: '1s', healthEnabled: 'false' };
}

async function sessionOf(tp: TestProxy, pub: RtmpPublisher): Promise<ApiSession> {
  const port = pub.socket!.localPort;
  return eventually(async () => {
    const list = await tp.api<(ApiSession & { client: string })[]>('/api/sessions');
    return list.find((s) => s.client.endsWith(`:${port}`) && s.backend !== null && s.state === 'publishing');
  }, 'the publisher session on the proxy');
}

async function backendState(tp: TestProxy, name: string): Promise<ApiBackend | undefined> {
  return (await tp.api<ApiBackend[]>('/api/backends')).find((b) => b.name === name);
}

async function metric(tp: TestProxy, re: RegExp): Promise<number | null> {
  const m = re.exec(await (await tp.admin('/metrics')).text());
  return m === null ? null : Number(m[1]);
}

const MALFORMED = /rtmp_goaway_control_messages_total\{source="bus",result="malformed"\} (\d+)/;
const REJECTED = /rtmp_goaway_control_messages_total\{source="bus",result="rejected"\} (\d+)/;
const BUS_CONNECTED = /^rtmp_goaway_bus_connected (\d+)$/m;

describe('drain across replicas through Redis', () => {
  let redis: TestRedis | null = null;
  const b1 = new FakeRtmpServer();
  const b2 = new FakeRtmpServer();
  const proxies: TestProxy[] = [];
  const pubs: RtmpPublisher[] = [];
  const prefix = 'rgp-test';
  const channel = `${prefix}:control`;
  const hash = `${prefix}:backends`;
  let r1: TestProxy;
  let r2: TestProxy;

  before(async (ctx) => {
    const exe = requirePeer(ctx as never, 'redis-server');
    if (exe === null) return;
    redis = await startRedis(exe);
    await b1.listen();
    await b2.listen();
    r1 = await startTestProxy({ b1: b1.port, b2: b2.port }, replicaFlags(redis, 'r1', prefix));
    r2 = await startTestProxy({ b1: b1.port, b2: b2.port }, replicaFlags(redis, 'r2', prefix));
    proxies.push(r1, r2);
  });
  after(async () => {
    for (const p of pubs) p.destroy();
    for (const p of proxies) await p.stop();
    await b1.close();
    await b2.close();
    await redis?.remove();
  });

  /** A capable publisher through `tp`, with its session as the proxy sees it. */
  async function publisher(tp: TestProxy, key: string, supportsGoAway = true): Promise<{ pub: RtmpPublisher; session: ApiSession; wentAway: Promise<void> }> {
    const pub = new RtmpPublisher(tp.url('live', key), { supportsGoAway });
    pubs.push(pub);
    const wentAway = new Promise<void>((r) => pub.once('goaway', () => r()));
    await pub.publish();
    return { pub, session: await sessionOf(tp, pub), wentAway };
  }

  /**
   * A publisher through `tp` whose session landed on `backend` (round robin may send the first
   * one elsewhere; that one stays connected, so least-connections picks `backend` next).
   */
  async function publisherOn(tp: TestProxy, backend: string, key: string): Promise<{ pub: RtmpPublisher; session: ApiSession; wentAway: Promise<void> }> {
    for (let i = 0; i < 3; i++) {
      const p = await publisher(tp, `${key}-${i}`);
      if (p.session.backend === backend) return p;
    }
    throw new Error(`no session landed on ${backend}`);
  }

  async function endAll(): Promise<void> {
    for (const p of pubs.splice(0)) p.destroy();
    await noSessions();
  }

  async function noSessions(): Promise<void> {
    for (const tp of proxies) await eventually(async () => (await tp.api<ApiSession[]>('/api/sessions')).length === 0, 'no session left');
  }

  test('a JSON drain PUBLISH drains every replica: the capable publisher on each gets type 32', async (t) => {
    if (redis === null) return t.skip('no redis-server');
    const a = await publisherOn(r1, 'b1', 'json-a');
    const b = await publisherOn(r2, 'b1', 'json-b');

    const receivers = await redis.client.publish(channel, JSON.stringify({ action: 'drain', backend: 'b1', deadlineMs: 60_000, reason: 'json test' }));
    assert.equal(receivers, 2, 'both replicas are subscribed');
    await Promise.all([a.wentAway, b.wentAway]);
    assert.ok(a.pub.received.some((m) => m.typeId === MessageType.GoAway));
    assert.ok(b.pub.received.some((m) => m.typeId === MessageType.GoAway));
    for (const tp of [r1, r2]) assert.equal((await backendState(tp, 'b1'))?.state, 'draining');

    // Replicas persist what they receive: a bare PUBLISH is remembered in the hash.
    const stored = await eventually(() => redis!.client.hget(hash, 'b1'), 'the drain persisted in the hash');
    assert.deepEqual({ ...JSON.parse(stored), at: 0 }, { action: 'drain', backend: 'b1', deadlineMs: 60_000, reason: 'json test', at: 0 });

    // New sessions avoid b1 on every replica.
    const c = await publisher(r2, 'json-c');
    assert.equal(c.session.backend, 'b2');

    await redis.client.publish(channel, JSON.stringify({ action: 'undrain', backend: 'b1' }));
    for (const tp of [r1, r2]) await eventually(async () => (await backendState(tp, 'b1'))?.state === 'up', 'b1 undrained');
    await eventually(async () => (await redis!.client.hexists(hash, 'b1')) === 0, 'the undrain persisted (field deleted)');
    await endAll();
  });

  test('plain-text `drain b1` typed in redis-cli drains every replica too', async (t) => {
    if (redis === null) return t.skip('no redis-server');
    const target = 'b1';
    const a = await publisherOn(r1, target, 'plain-a');
    const b = await publisherOn(r2, target, 'plain-b');
    assert.equal(await redis.client.publish(channel, `drain ${target} 1m plain text test`), 2);
    await Promise.all([a.wentAway, b.wentAway]);
    for (const tp of [r1, r2]) assert.equal((await backendState(tp, target))?.draining, true);
    const stored = JSON.parse(await eventually(() => redis!.client.hget(hash, target), 'persisted')) as Record<string, unknown>;
    assert.equal(stored['deadlineMs'], 60_000);
    assert.equal(stored['reason'], 'plain text test');
    await redis.client.publish(channel, `undrain ${target}`);
    for (const tp of [r1, r2]) await eventually(async () => (await backendState(tp, target))?.draining === false, 'undrained');
    await endAll();
  });

  test('a replica started after the drain converges from the hash before it takes a session', async (t) => {
    if (redis === null) return t.skip('no redis-server');
    await redis.client.publish(channel, JSON.stringify({ action: 'drain', backend: 'b1', deadlineMs: 60_000 }));
    await eventually(() => redis!.client.hget(hash, 'b1'), 'persisted');
    const r3 = await startTestProxy({ b1: b1.port, b2: b2.port }, replicaFlags(redis, 'r3', prefix));
    proxies.push(r3);
    // No waiting: startProxy resolves after the first sync.
    assert.equal((await backendState(r3, 'b1'))?.state, 'draining');
    assert.equal(await metric(r3, BUS_CONNECTED), 1);
    const p = await publisher(r3, 'late');
    assert.equal(p.session.backend, 'b2', 'the late replica never routes to the drained backend');
    await redis.client.publish(channel, 'undrain b1');
    for (const tp of proxies) await eventually(async () => (await backendState(tp, 'b1'))?.draining === false, 'undrained');
    await endAll();
  });

  test('the admin API of one replica drains the whole fleet', async (t) => {
    if (redis === null) return t.skip('no redis-server');
    const b = await publisher(r2, 'admin-b');
    const res = await r1.api<{ backend: string; fleet: { published: boolean; receivers: number; bus: string } }>(`/api/backends/${b.session.backend}/drain`, {
      method: 'POST',
      body: JSON.stringify({ deadlineMs: 60_000, reason: 'via admin' }),
    });
    assert.equal(res.fleet.published, true);
    assert.equal(res.fleet.bus, 'redis');
    assert.equal(res.fleet.receivers, proxies.length);
    await b.wentAway;
    for (const tp of proxies) assert.equal((await backendState(tp, b.session.backend!))?.draining, true);
    assert.ok(await redis.client.hget(hash, b.session.backend!));
    await r2.api(`/api/backends/${b.session.backend}/undrain`, { method: 'POST' });
    for (const tp of proxies) await eventually(async () => (await backendState(tp, b.session.backend!))?.draining === false, 'undrained everywhere');
    await endAll();
  });

  test('malformed messages are logged and counted on every replica, never fatal', async (t) => {
    if (redis === null) return t.skip('no redis-server');
    const before = await Promise.all([r1, r2].map((tp) => metric(tp, MALFORMED)));
    for (const msg of ['hello', '{"action":"nuke","backend":"b1"}', '{not json', 'drain', 'drain b1 30', '{"action":"drain","backend":"b1","deadline":5}']) {
      await redis.client.publish(channel, msg);
    }
    for (const [i, tp] of [r1, r2].entries()) {
      await eventually(async () => (await metric(tp, MALFORMED)) === (before[i] ?? 0) + 6, 'six malformed messages counted');
      assert.ok(tp.logs.some((l) => l['msg'] === 'malformed control message ignored' && l['message'] === 'hello'));
      assert.equal((await backendState(tp, 'b1'))?.draining, false, 'nothing was drained');
    }
    // Still listening to valid commands.
    await redis.client.publish(channel, 'drain b2 1m');
    for (const tp of [r1, r2]) await eventually(async () => (await backendState(tp, 'b2'))?.draining === true, 'valid command after garbage');
    await redis.client.publish(channel, 'undrain b2');
    for (const tp of [r1, r2]) await eventually(async () => (await backendState(tp, 'b2'))?.draining === false, 'undrained');
  });

  test('a flood of drains naming backends no replica has: counted, a bounded number of log lines, nothing persisted', async (t) => {
    if (redis === null) return t.skip('no redis-server');
    const N = 10_000;
    const fieldsBefore = await redis.client.hlen(hash);
    const before = await Promise.all([r1, r2].map((tp) => metric(tp, REJECTED)));
    const linesBefore = [r1, r2].map((tp) => tp.logs.length);
    const started = Date.now();
    const p = redis.client.pipeline();
    for (let i = 0; i < N; i++)
      p.publish(channel, i % 2 === 0 ? `drain ghost-${i} 1m` : JSON.stringify({ action: 'drain', backend: `ghost-${i}`, deadlineMs: 60_000 }));
    await p.exec();
    for (const [i, tp] of [r1, r2].entries()) {
      await eventually(async () => (await metric(tp, REJECTED)) === (before[i] ?? 0) + N, `${N} unknown-backend commands counted`, 60_000);
    }
    const ignored = (i: number) =>
      [r1, r2][i]!.logs.slice(linesBefore[i]).filter((l) => l['msg'] === 'bus command for a backend this replica does not have: ignored');
    // What was not logged is reported as suppressed: in the next line of that kind, or in a
    // summary line once the bucket allows one (within a second of the flood).
    for (const i of [0, 1]) await eventually(() => ignored(i).some((l) => Number(l['suppressed']) > 0), 'the dropped lines reported as suppressed', 30_000);
    const seconds = (Date.now() - started) / 1000;
    for (const [i, tp] of [r1, r2].entries()) {
      const lines = ignored(i);
      // Token bucket: 10 at once, then 1 per second (summaries included).
      assert.ok(lines.length <= 10 + Math.ceil(seconds) + 1, `${lines.length} lines in ${seconds.toFixed(1)} s`);
      console.log(`# ${tp.proxy.replicaId}: ${N} unknown-backend drains → ${lines.length} log lines in ${seconds.toFixed(1)} s`);
    }
    assert.equal(await redis.client.hlen(hash), fieldsBefore, 'no field for a backend nobody has');
    // Nor kept in memory: a resync-free reload does not try to apply them.
    for (const tp of [r1, r2]) assert.equal((await backendState(tp, 'b1'))?.draining, false);
  });

  test('a command issued with an id is written by its issuer only: the replicas that receive it do not persist it', async (t) => {
    if (redis === null) return t.skip('no redis-server');
    // As a buggy or hostile issuer would: PUBLISH without the HSET of publishCommand.
    await redis.client.publish(channel, JSON.stringify({ action: 'drain', backend: 'b2', deadlineMs: 60_000, id: 'x-1', origin: 'test' }));
    for (const tp of [r1, r2]) await eventually(async () => (await backendState(tp, 'b2'))?.draining === true, 'applied on every replica');
    // A later bare command on the same connection: once it is persisted, the first one would have been too.
    await redis.client.publish(channel, 'drain b1 1m');
    await eventually(() => redis!.client.hget(hash, 'b1'), 'the bare drain persisted by the replicas');
    assert.equal(await redis.client.hexists(hash, 'b2'), 0, 'the command with an id was not written by the replicas');
    await redis.client.publish(channel, 'undrain b1');
    await redis.client.publish(channel, JSON.stringify({ action: 'undrain', backend: 'b2', id: 'x-2' }));
    for (const tp of [r1, r2]) await eventually(async () => (await tp.api<ApiBackend[]>('/api/backends')).every((b) => !b.draining), 'undrained');
  });
});

describe('Redis going away mid-stream', () => {
  test('forwarding continues, the bus reconnects, resynchronises and publishes what was given meanwhile', async (t) => {
    const exe = requirePeer(t, 'redis-server');
    if (exe === null) return;
    const prefix = 'rgp-outage';
    const b1 = new FakeRtmpServer();
    const b2 = new FakeRtmpServer();
    await b1.listen();
    await b2.listen();
    let redis = await startRedis(exe);
    const port = redis.port;
    const stash = tempDir('redis-stash');
    const tp = await startTestProxy({ b1: b1.port, b2: b2.port }, replicaFlags(redis, 'r1', prefix));
    const pubs: RtmpPublisher[] = [];
    try {
      const pub = new RtmpPublisher(tp.url('live', 'outage'), { supportsGoAway: true });
      pubs.push(pub);
      const wentAway = new Promise<void>((r) => pub.once('goaway', () => r()));
      await pub.publish();
      assert.equal((await sessionOf(tp, pub)).backend, 'b1');
      assert.equal(await metric(tp, BUS_CONNECTED), 1);

      await redis.remove();
      await eventually(async () => (await metric(tp, BUS_CONNECTED)) === 0, 'rtmp_goaway_bus_connected 0 while redis is down');

      // Forwarding does not care: media still flows, and a new publisher gets in.
      const conn = b1.connections.at(-1)!;
      const mediaBefore = conn.media;
      for (let i = 0; i < 20; i++) pub.sendMedia(MessageType.Audio, i * 20, Buffer.from([0xaf, 1, 2, 3]));
      await eventually(() => conn.media >= mediaBefore + 20, 'media forwarded while redis is down');
      const other = new RtmpPublisher(tp.url('live', 'during-outage'));
      pubs.push(other);
      await other.publish();
      assert.equal((await sessionOf(tp, other)).backend, 'b2');

      // An operator drains b2 through this replica's admin API meanwhile: applied here at once, queued for the fleet.
      const res = await tp.api<{ fleet: { published: boolean } }>('/api/backends/b2/drain', { method: 'POST', body: JSON.stringify({ deadlineMs: 60_000 }) });
      assert.equal(res.fleet.published, false);
      assert.equal((await backendState(tp, 'b2'))?.draining, true);

      // The desired state changes while the replica is cut off: b1 drained (written to an RDB the
      // restarted server loads, so no live message can deliver it: only the resync can).
      const side = await startRedis(exe, { dir: stash.path });
      await side.client.hset(
        `${prefix}:backends`,
        'b1',
        JSON.stringify({ action: 'drain', backend: 'b1', deadlineMs: 60_000, reason: 'changed while down', at: Date.now() }),
      );
      await side.client.save();
      await side.stop();
      redis = await startRedis(exe, { port, dir: stash.path });

      await wentAway;
      await eventually(async () => (await metric(tp, BUS_CONNECTED)) === 1, 'rtmp_goaway_bus_connected 1 again');
      assert.equal((await backendState(tp, 'b1'))?.draining, true, 'the state changed while down was applied');
      assert.ok(tp.logs.some((l) => l['msg'] === 'synchronised with the desired state in redis' && JSON.stringify(l['drained']).includes('b1')));
      // The drain given while Redis was down reached the fleet's desired state, and was not undone.
      await eventually(() => redis.client.hget(`${prefix}:backends`, 'b2'), 'the queued drain published on reconnect');
      assert.equal((await backendState(tp, 'b2'))?.draining, true);
      // Registry heartbeats resume.
      await eventually(() => redis.client.exists(`${prefix}:replica:r1`), 'registry record written again');
      assert.equal(tp.logs.filter((l) => l['level'] === 60).length, 0, 'nothing fatal');
    } finally {
      for (const p of pubs) p.destroy();
      await tp.stop();
      await b1.close();
      await b2.close();
      await redis.remove();
      stash.remove();
    }
  });

  test('a proxy starts, and forwards, with Redis unreachable', async (t) => {
    const exe = requirePeer(t, 'redis-server');
    if (exe === null) return;
    const b1 = new FakeRtmpServer();
    await b1.listen();
    // A port nobody listens on.
    const dead = await new Promise<number>((r) => {
      const s = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (s.address() as net.AddressInfo).port;
        s.close(() => r(p));
      });
    });
    const tp = await startTestProxy({ b1: b1.port }, { redisUrl: `redis://127.0.0.1:${dead}`, replicaId: 'lonely', healthEnabled: 'false' });
    const pub = new RtmpPublisher(tp.url('live', 'k'));
    try {
      await pub.publish();
      assert.equal(await metric(tp, BUS_CONNECTED), 0);
      // Its only backend: forced.
      const res = await tp.api<{ fleet: { published: boolean }; sessions: number }>('/api/backends/b1/drain', {
        method: 'POST',
        body: JSON.stringify({ deadlineMs: 60_000, force: true }),
      });
      assert.equal(res.fleet.published, false);
      assert.equal(res.sessions, 1);
    } finally {
      pub.destroy();
      await tp.stop();
      await b1.close();
    }
  });
});
