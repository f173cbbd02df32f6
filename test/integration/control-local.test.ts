// The in-process control bus (no Redis): the admin API is the control, through the same code path.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RtmpPublisher } from '../../src/client/rtmp-client.js';
import { FakeRtmpServer } from '../helpers/fake-rtmp-server.js';
import { type TestProxy, eventually, startTestProxy } from '../helpers/proxy.js';
import { runCli } from '../helpers/redis.js';

interface ApiSession {
  client: string;
  backend: string | null;
}
interface ApiBackend {
  name: string;
  state: string;
  health: string;
  draining: boolean;
}

describe('undrain with the in-process bus', () => {
  const b1 = new FakeRtmpServer();
  const b2 = new FakeRtmpServer();
  let tp: TestProxy;
  const pubs: RtmpPublisher[] = [];

  before(async () => {
    await b1.listen();
    await b2.listen();
    tp = await startTestProxy({ b1: b1.port, b2: b2.port }, { healthEnabled: 'false', replicaId: 'solo' });
  });
  after(async () => {
    for (const p of pubs) p.destroy();
    await tp.stop();
    await b1.close();
    await b2.close();
  });

  async function publishTo(key: string): Promise<string> {
    const pub = new RtmpPublisher(tp.url('live', key));
    pubs.push(pub);
    await pub.publish();
    const port = pub.socket!.localPort;
    const s = await eventually(
      async () => (await tp.api<ApiSession[]>('/api/sessions')).find((x) => x.client.endsWith(`:${port}`) && x.backend !== null),
      'session routed',
    );
    return s.backend!;
  }

  test('a drained backend takes new sessions again after undrain', async () => {
    const res = await tp.api<{ backend: string; fleet: { bus: string; published: boolean; receivers: number } }>('/api/backends/b1/drain', {
      method: 'POST',
      body: JSON.stringify({ deadlineMs: 60_000, reason: 'maintenance' }),
    });
    assert.deepEqual(res.fleet, { published: true, receivers: 1, bus: 'local' });
    assert.equal(await publishTo('while-drained-1'), 'b2');
    assert.equal(await publishTo('while-drained-2'), 'b2', 'b1 gets nothing while drained, even when less loaded');

    const un = await tp.api<{ undrained: boolean }>('/api/backends/b1/undrain', { method: 'POST' });
    assert.equal(un.undrained, true);
    assert.equal(await publishTo('after-undrain'), 'b1', 'least connections sends the next session to the undrained backend');
    const metrics = await (await tp.admin('/metrics')).text();
    assert.match(metrics, /^rtmp_goaway_bus_connected 1$/m);
    assert.match(metrics, /rtmp_goaway_drain_commands_total\{backend="b1",action="undrain"\} 1/);
    // The bus delivered the proxy's own commands back to it: applied once, not twice.
    assert.match(metrics, /rtmp_goaway_drain_commands_total\{backend="b1",action="drain"\} 1/);
    assert.doesNotMatch(metrics, /source="bus"/);
  });

  test('undrain does not bypass health checks: a backend that is down stays out of routing', async () => {
    await tp.api('/api/backends/b2/drain', { method: 'POST', body: JSON.stringify({ deadlineMs: 60_000 }) });
    // b2 fails: passive health marks it down after `fall` failed connects.
    const port = b2.port;
    await b2.close();
    for (let i = 0; i < 3; i++) tp.proxy.pool.reportConnectFailure('b2', new Error(`refused (${port})`));
    await tp.api('/api/backends/b2/undrain', { method: 'POST' });
    const b = (await tp.api<ApiBackend[]>('/api/backends')).find((x) => x.name === 'b2')!;
    assert.deepEqual([b.draining, b.health, b.state], [false, 'down', 'down']);
    assert.equal(await publishTo('health-still-applies'), 'b1');
  });

  test('drain --wait --admin follows one replica until its sessions left', async () => {
    for (const p of pubs.splice(0)) p.destroy();
    await eventually(async () => (await tp.api<ApiSession[]>('/api/sessions')).length === 0, 'earlier sessions gone');
    const pub = new RtmpPublisher(tp.url('live', 'admin-wait'), { supportsGoAway: true });
    pubs.push(pub);
    pub.once('goaway', () => void pub.end());
    await pub.publish();
    const port = pub.socket!.localPort;
    const s = await eventually(
      async () => (await tp.api<ApiSession[]>('/api/sessions')).find((x) => x.client.endsWith(`:${port}`) && x.backend !== null),
      'routed',
    );
    // b2 is down (previous test): b1 is the last routable backend, refused without --force.
    const refused = await runCli(['drain', s.backend!, '--admin', `127.0.0.1:${tp.proxy.adminAddress!.port}`]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /HTTP 409: refusing to drain "b1": it is the last backend that can take new sessions.*CLI: --force/);
    const res = await runCli(['drain', s.backend!, '--force', '--wait', '--deadline', '20s', '--admin', `127.0.0.1:${tp.proxy.adminAddress!.port}`]);
    assert.equal(res.code, 0, `stdout:\n${res.stdout}\nstderr:\n${res.stderr}`);
    assert.equal((JSON.parse(res.stdout) as { fleet: { bus: string } }).fleet.bus, 'local');
    assert.match(res.stderr, new RegExp(`${s.backend} holds no session`));
    const un = await runCli(['undrain', s.backend!, '--admin', `127.0.0.1:${tp.proxy.adminAddress!.port}`]);
    assert.equal(un.code, 0, un.stderr);
    assert.deepEqual(JSON.parse(un.stdout), { backend: s.backend, undrained: true });
  });

  test('the fleet view of a lone replica is itself', async () => {
    tp.proxy.flushRegistry();
    const f = await eventually(async () => {
      const v = await tp.proxy.fleet();
      return v.replicas.length === 1 && v.sessions.length === tp.proxy.server.sessions.size ? v : null;
    }, 'the registry report');
    assert.equal(f.source, 'local');
    assert.equal(f.replicas[0]!.replicaId, 'solo');
    assert.ok(f.sessions.every((s) => s.replica === 'solo'));
  });
});

describe('admin token', () => {
  test('the CLI sends RTMP_GOAWAY_ADMIN_TOKEN: refused without it, applied with it', async () => {
    const b = new FakeRtmpServer();
    await b.listen();
    const tp = await startTestProxy({ b1: b.port }, { healthEnabled: 'false', adminToken: 's3cret' });
    try {
      const admin = `127.0.0.1:${tp.proxy.adminAddress!.port}`;
      const refused = await runCli(['drain', 'b1', '--admin', admin]);
      assert.notEqual(refused.code, 0);
      assert.match(refused.stderr, /401/);
      // Reads need the token too.
      const backends = () => tp.api<{ draining: boolean }[]>('/api/backends', { headers: { authorization: 'Bearer s3cret' } });
      assert.equal((await backends())[0]!.draining, false);
      const ok = await runCli(['drain', 'b1', '--force', '--admin', admin], { env: { RTMP_GOAWAY_ADMIN_TOKEN: 's3cret' } });
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal((await backends())[0]!.draining, true);
    } finally {
      await tp.stop();
      await b.close();
    }
  });
});
