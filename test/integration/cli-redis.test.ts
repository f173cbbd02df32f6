// The real CLI as a child process against a real redis-server: `status --json` over the fleet
// registry, registry records expiring with their TTL, `drain --wait` success and deadline.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RtmpPublisher } from '../../src/client/rtmp-client.js';
import { readRegistry, registryKeys } from '../../src/control/registry.js';
import { FakeRtmpServer } from '../helpers/fake-rtmp-server.js';
import { requirePeer } from '../helpers/peers.js';
import { type TestProxy, eventually, startTestProxy } from '../helpers/proxy.js';
import { type TestRedis, runCli, spawnServe, startRedis } from '../helpers/redis.js';

interface StatusJson {
  source: string;
  replicas: { replicaId: string; backends: { name: string; state: string }[] }[];
  sessions: { id: string; replica: string; backend: string | null; app: string | null; capability: string; state: string; startedAt: string }[];
  desired: { backend: string }[];
  backends: { name: string; desired: string; sessions: number; states: Record<string, string> }[];
}

describe('CLI over the fleet registry in Redis', () => {
  let redis: TestRedis | null = null;
  const b1 = new FakeRtmpServer();
  const b2 = new FakeRtmpServer();
  const prefix = 'rgp-cli';
  const keys = registryKeys(prefix);
  const proxies: TestProxy[] = [];
  const pubs: RtmpPublisher[] = [];
  let r1: TestProxy;
  let r2: TestProxy;

  const flags = (id: string) => ({
    redisUrl: redis!.url,
    redisPrefix: prefix,
    replicaId: id,
    redisHeartbeatMs: '200ms',
    redisSessionTtlMs: '1s',
    healthEnabled: 'false',
    // The deadline test needs a session that stays (no proxy-side migration).
    drainNonCapable: 'deadline-close',
  });
  const target = () => ['--redis', redis!.url, '--redis-prefix', prefix];

  before(async (ctx) => {
    const exe = requirePeer(ctx as never, 'redis-server');
    if (exe === null) return;
    redis = await startRedis(exe);
    await b1.listen();
    await b2.listen();
    r1 = await startTestProxy({ b1: b1.port, b2: b2.port }, flags('cli-r1'));
    r2 = await startTestProxy({ b1: b1.port, b2: b2.port }, flags('cli-r2'));
    proxies.push(r1, r2);
  });
  after(async () => {
    for (const p of pubs) p.destroy();
    for (const p of proxies) await p.stop();
    await b1.close();
    await b2.close();
    await redis?.remove();
  });

  async function publish(tp: TestProxy, key: string, supportsGoAway: boolean): Promise<RtmpPublisher> {
    const pub = new RtmpPublisher(tp.url('live', key), { supportsGoAway });
    pubs.push(pub);
    await pub.publish();
    return pub;
  }

  async function registrySessions(): Promise<StatusJson['sessions']> {
    return (await readRegistry(redis!.client, keys)).sessions;
  }

  async function endAll(): Promise<void> {
    for (const p of pubs.splice(0)) p.destroy();
    await eventually(async () => (await registrySessions()).length === 0, 'the registry shows no session');
  }

  test('status --json lists the sessions of both replicas', async (t) => {
    if (redis === null) return t.skip('no redis-server');
    await publish(r1, 'status-a', true);
    await publish(r2, 'status-b', false);
    await eventually(async () => {
      const s = await registrySessions();
      return s.length === 2 && s.every((x) => x.state === 'publishing');
    }, 'both sessions in the registry');

    const res = await runCli(['status', '--json', ...target()]);
    assert.equal(res.code, 0, res.stderr);
    const status = JSON.parse(res.stdout) as StatusJson;
    assert.equal(status.source, 'redis');
    assert.deepEqual(
      status.replicas.map((r) => r.replicaId),
      ['cli-r1', 'cli-r2'],
    );
    assert.deepEqual(status.sessions.map((s) => s.replica).sort(), ['cli-r1', 'cli-r2']);
    const byReplica = Object.fromEntries(status.sessions.map((s) => [s.replica, s]));
    assert.equal(byReplica['cli-r1']!.capability, 'goaway');
    assert.equal(byReplica['cli-r2']!.capability, 'none');
    for (const s of status.sessions) {
      assert.equal(s.app, 'live');
      assert.match(s.backend ?? '', /^b[12]$/);
      assert.ok(!Number.isNaN(Date.parse(s.startedAt)));
    }
    assert.deepEqual(
      status.backends.map((b) => b.name),
      ['b1', 'b2'],
    );
    assert.equal(
      status.backends.reduce((n, b) => n + b.sessions, 0),
      2,
    );

    const human = await runCli(['status', ...target()]);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, /2 replica\(s\), 2 session\(s\)/);
    assert.match(human.stdout, /cli-r1/);
    await endAll();
  });

  test('the records of a replica killed without cleanup expire with their TTL', async (t) => {
    if (redis === null) return t.skip('no redis-server');
    const doomed = await spawnServe([
      '--backend',
      `b1=127.0.0.1:${b1.port}`,
      '--no-health-enabled',
      '--redis',
      redis.url,
      '--redis-prefix',
      prefix,
      '--replica-id',
      'doomed',
      '--redis-heartbeat-ms',
      '200ms',
      '--redis-session-ttl-ms',
      '1s',
    ]);
    try {
      const pub = new RtmpPublisher(`rtmp://127.0.0.1:${doomed.port}/live/doomed-key`, { supportsGoAway: true });
      pubs.push(pub);
      await pub.publish();
      await eventually(async () => (await registrySessions()).some((s) => s.replica === 'doomed'), 'the child replica session in the registry');
      assert.equal(await redis.client.exists(keys.replica('doomed'), keys.sessions('doomed')), 2);

      await doomed.kill(); // SIGKILL: no cleanup
      pub.destroy();
      await eventually(async () => (await redis!.client.exists(keys.replica('doomed'), keys.sessions('doomed'))) === 0, 'records expired by TTL');
      const res = await runCli(['status', '--json', ...target()]);
      assert.equal(res.code, 0, res.stderr);
      const status = JSON.parse(res.stdout) as StatusJson;
      assert.ok(!status.replicas.some((r) => r.replicaId === 'doomed'));
      assert.ok(!status.sessions.some((s) => s.replica === 'doomed'));
      assert.equal(await redis.client.zscore(keys.replicas, 'doomed'), null, 'the index member was pruned by the reader');
    } finally {
      await doomed.kill();
    }
    await endAll();
  });

  test('drain --wait exits 0 once the capable sessions of every replica have left', async (t) => {
    if (redis === null) return t.skip('no redis-server');
    const a = await publish(r1, 'wait-a', true);
    const b = await publish(r2, 'wait-b', true);
    // A Go Away client reconnects elsewhere; these just leave.
    for (const p of [a, b]) p.once('goaway', () => void p.end());
    await eventually(async () => {
      const rs = await registrySessions();
      return rs.length === 2 && rs.every((s) => s.backend !== null);
    }, 'both sessions registered, with its backend (a heartbeat may write a session whose backend connection is still opening)');
    const backend = (await registrySessions())[0]!.backend!;
    const onBackend = (await registrySessions()).filter((s) => s.backend === backend).length;

    const res = await runCli(['drain', backend, '--wait', '--deadline', '30s', '--reason', 'cli wait', ...target()]);
    assert.equal(res.code, 0, `stdout:\n${res.stdout}\nstderr:\n${res.stderr}`);
    const out = JSON.parse(res.stdout) as { published: boolean; receivers: number; replicas: string[] };
    assert.equal(out.published, true);
    assert.equal(out.receivers, 2);
    assert.deepEqual(out.replicas.sort(), ['cli-r1', 'cli-r2']);
    assert.match(res.stderr, new RegExp(`${backend} holds no session`));
    // Progress lines (stderr is not a TTY here: one line per change instead of a bar).
    assert.match(res.stderr, new RegExp(`draining ${backend}: [0-${onBackend}] session\\(s\\) left`));
    assert.ok(!(await registrySessions()).some((s) => s.backend === backend));

    const un = await runCli(['undrain', backend, ...target()]);
    assert.equal(un.code, 0, un.stderr);
    for (const tp of proxies) {
      await eventually(async () => (await tp.api<{ name: string; draining: boolean }[]>('/api/backends')).every((x) => !x.draining), 'undrained');
    }
    await endAll();
  });

  test('drain --wait exits non-zero at the deadline, naming the session that stayed and why', async (t) => {
    if (redis === null) return t.skip('no redis-server');
    const plain = await publish(r1, 'stubborn', false);
    await eventually(async () => {
      const rs = await registrySessions();
      return rs.length === 1 && rs.every((s) => s.backend !== null);
    }, 'the session registered, with its backend (a heartbeat may write a session whose backend connection is still opening)');
    const session = (await registrySessions())[0]!;

    const res = await runCli(['drain', session.backend!, '--wait', '--deadline', '1s', ...target()]);
    assert.equal(res.code, 3, `stdout:\n${res.stdout}\nstderr:\n${res.stderr}`);
    assert.match(res.stderr, new RegExp(`${session.backend} still held 1 session\\(s\\) at the deadline`));
    assert.match(res.stderr, new RegExp(`${session.id} on replica cli-r1 .*capability none.*announced neither Go Away nor E-RTMP reconnect`));
    assert.equal(plain.goAwayReceived, false);
    // The replica closes it at the deadline it received.
    await eventually(() => plain.socket?.destroyed, 'closed by the proxy at the deadline');
    await runCli(['undrain', session.backend!, ...target()]);
    await endAll();
  });

  test('drain of a backend no live replica has: refused (exit 1, nothing published) unless --force; undrain warns', async (t) => {
    if (redis === null) return t.skip('no redis-server');
    const refused = await runCli(['drain', 'nowhere', '--deadline', '5s', ...target()]);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, /no live replica has a backend named "nowhere"/);
    assert.equal(await redis.client.hexists(`${prefix}:backends`, 'nowhere'), 0);
    const res = await runCli(['drain', 'nowhere', '--deadline', '5s', '--force', ...target()]);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stderr, /no live replica reports a backend named nowhere/);
    assert.ok(await redis.client.hget(`${prefix}:backends`, 'nowhere'));
    const un = await runCli(['undrain', 'nowhere', ...target()]);
    assert.equal(un.code, 0, un.stderr);
    assert.equal(await redis.client.hexists(`${prefix}:backends`, 'nowhere'), 0);
    const badName = await runCli(['drain', 'no/such', ...target()]);
    assert.equal(badName.code, 2);
    assert.match(badName.stderr, /backend names match/);
  });

  test('drain bl --wait (a typo of b1) exits non-zero, suggests b1, and leaves nothing in the hash', async (t) => {
    if (redis === null) return t.skip('no redis-server');
    const res = await runCli(['drain', 'bl', '--wait', '--deadline', '5s', ...target()]);
    assert.notEqual(res.code, 0, res.stderr);
    assert.doesNotMatch(res.stderr, /drained in/);
    assert.match(res.stderr, /no live replica has a backend named "bl".*Did you mean b1\? Nothing was published/s);
    assert.equal(res.stdout, '', 'nothing published');
    assert.equal(await redis.client.hexists(`${prefix}:backends`, 'bl'), 0);
    for (const tp of proxies) assert.ok((await tp.api<{ draining: boolean }[]>('/api/backends')).every((b) => !b.draining));
  });

  test('the last backend taking new sessions on a replica is not drained without --force', async (t) => {
    if (redis === null) return t.skip('no redis-server');
    const first = await runCli(['drain', 'b1', '--deadline', '30s', ...target()]);
    assert.equal(first.code, 0, first.stderr);
    // The CLI judges from the registry: wait until both replicas report b1 draining.
    await eventually(async () => {
      const reg = await readRegistry(redis!.client, keys);
      return reg.replicas.length === 2 && reg.replicas.every((r) => r.backends.find((b) => b.name === 'b1')?.state === 'draining');
    }, 'b1 draining in the registry');
    const refused = await runCli(['drain', 'b2', ...target()]);
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, /refusing to drain "b2": it is the last backend taking new sessions on replica\(s\) cli-r1, cli-r2/);
    assert.equal(await redis.client.hexists(`${prefix}:backends`, 'b2'), 0);
    for (const tp of proxies)
      assert.equal((await tp.api<{ name: string; draining: boolean }[]>('/api/backends')).find((b) => b.name === 'b2')?.draining, false);

    const forced = await runCli(['drain', 'b2', '--force', ...target()]);
    assert.equal(forced.code, 0, forced.stderr);
    for (const tp of proxies) {
      await eventually(async () => (await tp.api<{ name: string; draining: boolean }[]>('/api/backends')).every((b) => b.draining), 'everything drained');
      const ready = await tp.admin('/readyz');
      assert.equal(ready.status, 503);
      assert.equal(((await ready.json()) as { reason: string }).reason, 'all backends draining');
    }
    for (const b of ['b1', 'b2']) assert.equal((await runCli(['undrain', b, ...target()])).code, 0);
    for (const tp of proxies) await eventually(async () => (await tp.api<{ draining: boolean }[]>('/api/backends')).every((b) => !b.draining), 'undrained');
  });

  test('status prints client-chosen app names with control characters escaped (local and --redis)', async (t) => {
    if (redis === null) return t.skip('no redis-server');
    // App: live<ESC>]0;pwned<BEL><CR>forged<LF>line, plus a query string with a password.
    const hostileApp = 'live%1B%5D0%3Bpwned%07%0Dforged%0Aline%E2%80%AEx%C2%9B%3Fuser%3Dalice%26pass%3Dhunter2';
    const pub = new RtmpPublisher(`rtmp://127.0.0.1:${r1.proxy.address.port}/${hostileApp}/hostile-key`, { supportsGoAway: true });
    pubs.push(pub);
    await pub.publish();
    await eventually(async () => {
      const rs = await registrySessions();
      return rs.length === 1 && rs.every((s) => s.backend !== null);
    }, 'the session registered, with its backend (a heartbeat may write a session whose backend connection is still opening)');
    const fleet = await runCli(['status', ...target()]);
    const local = await runCli(['status', '--admin', `127.0.0.1:${r1.proxy.adminAddress!.port}`]);
    for (const [what, res] of [
      ['--redis', fleet],
      ['--admin', local],
    ] as const) {
      assert.equal(res.code, 0, res.stderr);
      for (const c of ['\x1b', '\x07', '\r', '\u202e', '\u009b']) assert.ok(!res.stdout.includes(c), `${what}: raw ${JSON.stringify(c)} printed`);
      const line = res.stdout.split('\n').find((l) => l.includes('pwned'));
      assert.ok(line, res.stdout);
      assert.ok(line.includes('live\\x1b]0;pwned\\x07\\rforged\\nline\\u202ex\\x9b?***(23)'), `${what}: ${line}`);
      assert.ok(!res.stdout.includes('hunter2'), `${what}: the query string is redacted`);
      assert.ok(!res.stdout.split('\n').some((l) => l.startsWith('forged') || l.startsWith('line')), `${what}: no forged line`);
    }
    await endAll();
  });
});
