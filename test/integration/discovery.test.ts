// DNS discovery end to end: the proxy resolves its backends from a loopback UDP DNS responder
// started by the test, whose answers change while publishers are connected.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { BackendSnapshot } from '../../src/balancer/types.js';
import { RtmpPublisher } from '../../src/client/rtmp-client.js';
import { type Command, readStatusCode } from '../../src/rtmp/messages.js';
import { TestDnsServer } from '../helpers/dns-server.js';
import { FakeRtmpServer } from '../helpers/fake-rtmp-server.js';
import { type TestProxy, eventually, startTestProxy } from '../helpers/proxy.js';

interface ApiSession {
  id: string;
  backend: string;
  state: string;
}

const SRV = '_rtmp._tcp.ingest.test';

describe('DNS discovery (SRV) through the proxy', () => {
  let dns: TestDnsServer;
  let f1: FakeRtmpServer;
  let f2: FakeRtmpServer;
  let tp: TestProxy;
  const publishers: RtmpPublisher[] = [];

  before(async () => {
    dns = await new TestDnsServer().start();
    f1 = new FakeRtmpServer();
    f2 = new FakeRtmpServer();
    await f1.listen();
    await f2.listen();
    dns.set(SRV, { SRV: [{ target: 'pod-1.ingest.test', port: f1.port, weight: 10 }] });
    dns.set('pod-1.ingest.test', { A: ['127.0.0.1'] });
    dns.set('pod-2.ingest.test', { A: ['127.0.0.1'] });
    tp = await startTestProxy(
      {},
      {
        discoveryDnsName: SRV,
        discoveryServers: dns.address,
        discoveryIntervalMs: '150ms',
        discoveryJitterMs: '50ms',
        drainDeadlineMs: '20s',
        drainNonCapable: 'deadline-close',
      },
    );
  });
  after(async () => {
    for (const p of publishers) p.destroy();
    await tp?.stop();
    await f1?.close();
    await f2?.close();
    await dns?.stop();
  });

  test('a backend removed from DNS is drained (its Go Away publisher is told), a new one takes new sessions once healthy', async () => {
    const first = await eventually(async () => {
      const list = await tp.api<BackendSnapshot[]>('/api/backends');
      return list.length === 1 && list[0]!.state === 'up' ? list[0] : null;
    }, 'the discovered backend up');
    assert.equal(first.name, 'pod-1.ingest.test', 'named by SRV target');
    assert.equal(first.source, `dns:${SRV}`);
    assert.equal(first.port, f1.port);
    assert.equal(first.weight, 10);

    const pub = new RtmpPublisher(tp.url('live', 'key-1'), { supportsGoAway: true });
    publishers.push(pub);
    await pub.publish();
    const s1 = await eventually(async () => {
      const s = await tp.api<ApiSession[]>('/api/sessions');
      return s.length === 1 && s[0]!.state === 'publishing' ? s[0] : null;
    }, 'a publishing session');
    assert.equal(s1.backend, 'pod-1.ingest.test');

    // The pool's view when the new backend is added: down until its first health check passes.
    const atAdd = new Map<string, BackendSnapshot>();
    tp.proxy.pool.on('backend-added', (name) => atAdd.set(name, tp.proxy.pool.get(name)!));
    const wentAway = new Promise<void>((r) => pub.once('goaway', () => r()));

    dns.set(SRV, { SRV: [{ target: 'pod-2.ingest.test', port: f2.port, weight: 20 }] });

    await wentAway;
    const list = await tp.api<BackendSnapshot[]>('/api/backends');
    const old = list.find((b) => b.name === 'pod-1.ingest.test')!;
    assert.equal(old.state, 'draining', 'drained, not cut');
    assert.equal(old.drainReason, 'removed');
    assert.equal(old.removing, true);
    assert.equal(old.sessions, 1, 'the session is still there until the publisher leaves');
    assert.equal(pub.socket?.destroyed, false);
    const added = atAdd.get('pod-2.ingest.test');
    assert.ok(added, 'pod-2 was added');
    assert.equal(added.health, 'down', 'not routable before its health check');
    assert.equal(added.awaitingHealth, true);
    assert.equal(added.source, `dns:${SRV}`);

    await eventually(
      async () => (await tp.api<BackendSnapshot[]>('/api/backends')).find((b) => b.name === 'pod-2.ingest.test' && b.state === 'up'),
      'pod-2 up after its health check',
    );
    const pub2 = new RtmpPublisher(tp.url('live', 'key-2'), { supportsGoAway: true });
    publishers.push(pub2);
    await pub2.publish();
    const s2 = await eventually(
      async () => (await tp.api<ApiSession[]>('/api/sessions')).find((s) => s.id !== s1.id && s.state === 'publishing'),
      'the second session',
    );
    assert.equal(s2.backend, 'pod-2.ingest.test');
    assert.ok(f2.connections.some((c) => c.commands.includes('publish')));

    // The Go Away publisher leaves: the removed backend is deleted.
    pub.destroy();
    await eventually(async () => {
      const l = await tp.api<BackendSnapshot[]>('/api/backends');
      return l.length === 1 && l[0]!.name === 'pod-2.ingest.test';
    }, 'pod-1 deleted once its last session left');
    // Discovery is observable: rounds, the backends found, the last success.
    const text = await (await tp.admin('/metrics')).text();
    const src = `source="dns:${SRV}"`;
    const value = (re: RegExp): number => Number(re.exec(text)?.[1] ?? NaN);
    assert.ok(value(new RegExp(`rtmp_goaway_discovery_rounds_total\\{${src},result="ok"\\} (\\d+)`)) >= 2, text);
    assert.equal(value(new RegExp(`rtmp_goaway_discovery_backends\\{${src}\\} (\\d+)`)), 1);
    assert.ok(value(new RegExp(`rtmp_goaway_discovery_last_success_timestamp_seconds\\{${src}\\} ([\\d.e+]+)`)) > Date.now() / 1000 - 60);
  });
});

describe('DNS discovery (A records) through the proxy', () => {
  let dns: TestDnsServer;
  let f1: FakeRtmpServer;
  let tp: TestProxy;
  const publishers: RtmpPublisher[] = [];

  before(async () => {
    dns = await new TestDnsServer().start();
    f1 = new FakeRtmpServer();
    await f1.listen();
    dns.set('ingest.headless.test', { A: ['127.0.0.1'] });
    tp = await startTestProxy(
      { fixed: f1.port },
      {
        discoveryDnsName: 'ingest.headless.test',
        discoveryPort: String(f1.port),
        discoveryServers: dns.address,
        discoveryIntervalMs: '150ms',
        discoveryJitterMs: '0ms',
        healthTimeoutMs: '300ms',
        healthIntervalMs: '1s',
      },
    );
  });
  after(async () => {
    for (const p of publishers) p.destroy();
    await tp?.stop();
    await f1?.close();
    await dns?.stop();
  });

  test('pod IPs on the fixed port, merged with static backends; an unhealthy new pod never takes sessions', async () => {
    const list = await eventually(async () => {
      const l = await tp.api<BackendSnapshot[]>('/api/backends');
      return l.length === 2 && l.every((b) => b.state === 'up') ? l : null;
    }, 'static + discovered backends up');
    assert.deepEqual(
      list.map((b) => [b.name, b.source]),
      [
        ['fixed', 'static'],
        ['127.0.0.1', 'dns:ingest.headless.test'],
      ],
    );

    // The pod moves to an address where nothing listens (127.0.0.2 on the same port: the fake server is on 127.0.0.1 only).
    dns.set('ingest.headless.test', { A: ['127.0.0.2'] });
    await eventually(async () => {
      const l = await tp.api<BackendSnapshot[]>('/api/backends');
      const pod = l.find((b) => b.name === '127.0.0.2');
      return pod && pod.lastCheckAt !== undefined && !l.some((b) => b.name === '127.0.0.1') ? pod : null;
    }, 'the new pod probed and the old one removed');
    const pod = (await tp.api<BackendSnapshot[]>('/api/backends')).find((b) => b.name === '127.0.0.2')!;
    assert.equal(pod.state, 'down');
    for (let i = 0; i < 3; i++) {
      const p = new RtmpPublisher(tp.url('live', `k${i}`));
      publishers.push(p);
      await p.publish();
    }
    const sessions = await tp.api<ApiSession[]>('/api/sessions');
    assert.deepEqual(
      sessions.map((s) => s.backend),
      ['fixed', 'fixed', 'fixed'],
    );
  });
});

describe('admission from SRV weights', () => {
  let dns: TestDnsServer;
  let f1: FakeRtmpServer;
  let tp: TestProxy;
  const publishers: RtmpPublisher[] = [];

  before(async () => {
    dns = await new TestDnsServer().start();
    f1 = new FakeRtmpServer();
    await f1.listen();
    dns.set(SRV, { SRV: [{ target: 'pod-1.ingest.test', port: f1.port, weight: 2 }] });
    dns.set('pod-1.ingest.test', { A: ['127.0.0.1'] });
    tp = await startTestProxy({}, { discoveryDnsName: SRV, discoveryServers: dns.address, discoverySessionsPerWeight: '1' });
  });
  after(async () => {
    for (const p of publishers) p.destroy();
    await tp?.stop();
    await f1?.close();
    await dns?.stop();
  });

  test('weight 2 × 1 session per weight: the third publisher is refused at connect with _error, counted', async () => {
    const b = await eventually(async () => (await tp.api<BackendSnapshot[]>('/api/backends')).find((x) => x.state === 'up'), 'backend up');
    assert.equal(b.maxSessions, 2);
    for (const key of ['a', 'b']) {
      const p = new RtmpPublisher(tp.url('live', key));
      publishers.push(p);
      await p.publish();
    }
    const third = new RtmpPublisher(tp.url('live', 'c'), { timeoutMs: 3000 });
    publishers.push(third);
    const errors: Command[] = [];
    third.on('command', (cmd) => {
      if (cmd.name === '_error') errors.push(cmd);
    });
    third.on('error', () => {});
    await assert.rejects(third.publish());
    // Refused at connect with a clear RTMP error (the proxy answered the handshake itself).
    assert.equal(errors.length, 1);
    assert.equal(readStatusCode(errors[0]!), 'NetConnection.Connect.Rejected');
    assert.match(String((errors[0]!.args[0] as Record<string, unknown>)['description']), /all are draining, down or full/);
    const metrics = await eventually(async () => {
      const text = await (await tp.admin('/metrics')).text();
      return /rtmp_goaway_sessions_rejected_total\{reason="no-backend"\} 1/.test(text) ? text : null;
    }, 'the refusal counted');
    assert.ok(metrics);
    assert.equal(
      f1.connections.filter((c) => c.commands.includes('connect')).length,
      2,
      'the full backend never saw a third RTMP connect (health probes aside)',
    );
  });
});
