// DNS discovery against a real (tiny, loopback) UDP DNS responder whose answers change during the
// tests, plus the pool additions it relies on (join once healthy, source/weight in snapshots) and
// storm-free deadline closes.
import assert from 'node:assert/strict';
import { after, before, describe, test, type TestContext } from 'node:test';
import { DnsDiscovery, dnsServerSpec, mergeBackends, nameForAddress, nameForTarget } from '../../src/balancer/discovery.js';
import { BackendPool } from '../../src/balancer/pool.js';
import type { BackendConfig, DeadlineClose, DrainableSession } from '../../src/balancer/types.js';
import { TestDnsServer } from '../helpers/dns-server.js';
import { goAwayOrWait } from '../helpers/drain-strategy.js';

let dns: TestDnsServer;
before(async () => {
  dns = await new TestDnsServer().start();
});
after(() => dns.stop());

function discovery(t: TestContext, opts: Partial<ConstructorParameters<typeof DnsDiscovery>[0]> & { name: string }): DnsDiscovery {
  const d = new DnsDiscovery({ intervalMs: 60_000, servers: [dns.address], timeoutMs: 300, ...opts });
  t.after(() => d.stop());
  return d;
}

const brief = (list: BackendConfig[]) =>
  list.map((b) => `${b.name}=${b.host}:${b.port}${b.weight !== undefined ? ` w${b.weight}` : ''}${b.maxSessions !== undefined ? ` max${b.maxSessions}` : ''}`);

describe('names', () => {
  test('addresses and SRV targets give stable backend names', () => {
    assert.equal(nameForAddress('10.1.2.3'), '10.1.2.3');
    assert.equal(nameForAddress('fd00::1'), 'fd00--1');
    assert.equal(nameForTarget('ingest-0.ingest.live.svc.cluster.local.'), 'ingest-0.ingest.live.svc.cluster.local');
    assert.equal(nameForTarget('Ingest-0.ingest-headless-service.livestreaming-namespace.svc.cluster.local.'), 'ingest-0');
  });
  test('DNS server specs: ip, ip:port, [ipv6]:port; anything else throws', () => {
    assert.equal(dnsServerSpec('127.0.0.1'), '127.0.0.1');
    assert.equal(dnsServerSpec('127.0.0.1:5353'), '127.0.0.1:5353');
    assert.equal(dnsServerSpec('[::1]:53'), '[::1]:53');
    assert.throws(() => dnsServerSpec('dns.example.com:53'), /IP address/);
  });
});

describe('DnsDiscovery', () => {
  test('A/AAAA of a headless Service: every address on the fixed port, named by IP, source dns:<name>', async (t) => {
    dns.set('ingest.a.test', { A: ['10.0.0.2', '10.0.0.1'], AAAA: ['fd00::1'] });
    const d = discovery(t, { name: 'ingest.a.test', port: 1935, maxSessions: 50 });
    assert.equal(d.type, 'a');
    const list = await d.resolve();
    assert.deepEqual(brief(list), ['10.0.0.1=10.0.0.1:1935 max50', '10.0.0.2=10.0.0.2:1935 max50', 'fd00--1=fd00::1:1935 max50']);
    assert.ok(list.every((b) => b.source === 'dns:ingest.a.test'));
  });

  test('SRV: targets resolved through the same server, ports and weights; maxSessions from weight', async (t) => {
    dns.set('_rtmp._tcp.ingest.srv.test', {
      SRV: [
        { target: 'pod-0.ingest.srv.test', port: 1936, weight: 10 },
        { target: 'pod-1.ingest.srv.test.', port: 1937, weight: 30 },
        { target: 'pod-2.ingest.srv.test', port: 1938, weight: 5 },
        { target: 'pod-2.ingest.srv.test', port: 1939, weight: 5 },
        { target: 'gone.ingest.srv.test', port: 1940, weight: 5 },
      ],
    });
    dns.set('pod-0.ingest.srv.test', { A: ['127.0.0.10'] });
    dns.set('pod-1.ingest.srv.test', { AAAA: ['::1'] });
    dns.set('pod-2.ingest.srv.test', { A: ['127.0.0.12'] });
    const d = discovery(t, { name: '_rtmp._tcp.ingest.srv.test', sessionsPerWeight: 10 });
    assert.equal(d.type, 'srv');
    assert.deepEqual(
      brief(await d.resolve()),
      [
        'pod-0.ingest.srv.test=127.0.0.10:1936 w10 max100',
        'pod-1.ingest.srv.test=::1:1937 w30 max300',
        'pod-2.ingest.srv.test-1938=127.0.0.12:1938 w5 max50',
        'pod-2.ingest.srv.test-1939=127.0.0.12:1939 w5 max50',
      ],
      'a target without address is skipped; one target on two ports gets -<port>',
    );
  });

  test('refresh emits update only when the answer changed', async (t) => {
    dns.set('ingest.change.test', { A: ['10.0.1.1'] });
    const d = discovery(t, { name: 'ingest.change.test', port: 1935 });
    const updates: string[][] = [];
    d.on('update', (l) => updates.push(l.map((b) => b.name)));
    assert.equal(await d.refresh(), true);
    assert.equal(await d.refresh(), false);
    dns.set('ingest.change.test', { A: ['10.0.1.1', '10.0.1.2'] });
    assert.equal(await d.refresh(), true);
    dns.set('ingest.change.test', { A: ['10.0.1.2'] });
    assert.equal(await d.refresh(), true);
    assert.deepEqual(updates, [['10.0.1.1'], ['10.0.1.1', '10.0.1.2'], ['10.0.1.2']]);
  });

  test('SERVFAIL and timeouts keep the last set; NXDOMAIN empties it only when confirmed by a second round', async (t) => {
    dns.set('ingest.flaky.test', { A: ['10.0.2.1'] });
    const d = discovery(t, { name: 'ingest.flaky.test', port: 1935 });
    const errors: Error[] = [];
    d.on('error', (e) => errors.push(e));
    await d.refresh();
    dns.fail = true;
    try {
      assert.equal(await d.refresh(), false);
    } finally {
      dns.fail = false;
    }
    dns.drop = true;
    try {
      assert.equal(await d.refresh(), false);
    } finally {
      dns.drop = false;
    }
    assert.equal(errors.length, 2);
    assert.equal(d.failures, 2);
    assert.deepEqual(
      d.current?.map((b) => b.name),
      ['10.0.2.1'],
    );
    dns.delete('ingest.flaky.test');
    assert.equal(await d.refresh(), false, 'first empty answer: kept');
    assert.deepEqual(
      d.current?.map((b) => b.name),
      ['10.0.2.1'],
    );
    assert.equal(await d.refresh(), true, 'second empty answer: applied');
    assert.deepEqual(d.current, []);
  });

  test('periodic re-resolution with jitter picks up changes; stop() ends it', async (t) => {
    dns.set('ingest.periodic.test', { A: ['10.0.3.1'] });
    const d = discovery(t, { name: 'ingest.periodic.test', port: 1935, intervalMs: 30, jitterMs: 20 });
    const seen: string[][] = [];
    d.on('update', (l) => seen.push(l.map((b) => b.name)));
    d.start();
    const until = Date.now() + 5000;
    while (seen.length < 1 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    dns.set('ingest.periodic.test', { A: ['10.0.3.2'] });
    while (seen.length < 2 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    assert.deepEqual(seen, [['10.0.3.1'], ['10.0.3.2']]);
    d.stop();
    const rounds = d.rounds;
    await new Promise((r) => setTimeout(r, 120));
    assert.ok(d.rounds <= rounds + 1, 'no more rounds after stop (one may have been in flight)');
  });

  test('bad options throw', () => {
    assert.throws(() => new DnsDiscovery({ name: 'x.test', intervalMs: 1000 }), /port/);
    assert.throws(() => new DnsDiscovery({ name: '', intervalMs: 1000, port: 1 }), /name/);
    assert.throws(() => new DnsDiscovery({ name: 'x.test', intervalMs: 0, port: 1 }), /intervalMs/);
  });
});

describe('mergeBackends', () => {
  test('static first; a discovered name already used is left out as a conflict', () => {
    const s: BackendConfig[] = [{ name: 'b1', host: 'h', port: 1 }];
    const d: BackendConfig[] = [
      { name: 'b1', host: '10.0.0.1', port: 2, source: 'dns:x' },
      { name: '10.0.0.2', host: '10.0.0.2', port: 2, source: 'dns:x' },
    ];
    const m = mergeBackends(s, [d]);
    assert.deepEqual(
      m.backends.map((b) => b.name),
      ['b1', '10.0.0.2'],
    );
    assert.deepEqual([...m.discoveredNames], ['10.0.0.2']);
    assert.deepEqual(
      m.conflicts.map((b) => b.name),
      ['b1'],
    );
  });
});

class Sess implements DrainableSession {
  closed: string[] = [];
  closedAt = 0;
  detach: (() => void) | undefined;
  constructor(
    readonly id: string,
    readonly supportsGoAway = false,
  ) {}
  goAway(): boolean {
    return this.supportsGoAway;
  }
  close(reason: string): void {
    this.closed.push(reason);
    this.closedAt = Date.now();
    this.detach?.();
  }
}

describe('BackendPool additions for discovery', () => {
  const health = { intervalMs: 1000, timeoutMs: 100, rise: 3, fall: 3, enabled: true };

  test('pendingHealth: a new backend is not picked until its first successful probe (even with rise 3)', async (t) => {
    let healthy = false;
    const probed: string[] = [];
    const pool = new BackendPool([{ name: 's', host: '127.0.0.1', port: 1 }], {
      defaultDrainDeadlineMs: 1000,
      strategy: goAwayOrWait,
      health,
      probe: async (b) => {
        probed.push(b.name);
        if (b.name === 'd' && !healthy) throw new Error('refused');
      },
    });
    t.after(() => pool.stop());
    pool.start();
    pool.drain('s');
    pool.setBackends(
      [
        { name: 's', host: '127.0.0.1', port: 1 },
        { name: 'd', host: '10.0.0.1', port: 1935, source: 'dns:x', weight: 7 },
      ],
      { pendingHealth: new Set(['d']) },
    );
    const snap = pool.get('d')!;
    assert.equal(snap.health, 'down');
    assert.equal(snap.awaitingHealth, true);
    assert.equal(snap.source, 'dns:x');
    assert.equal(snap.weight, 7);
    assert.equal(pool.get('s')!.source, 'static');
    assert.equal(pool.pick(), null);
    await pool.checkNow();
    assert.equal(pool.pick(), null, 'failed probe: still out');
    healthy = true;
    await pool.checkNow();
    assert.equal(pool.get('d')!.health, 'up');
    assert.equal(pool.get('d')!.awaitingHealth, undefined);
    assert.equal(pool.pick()?.name, 'd');
    assert.ok(probed.includes('d'));
  });

  test('a static backend added by reload still joins at once', (t) => {
    const pool = new BackendPool([], { defaultDrainDeadlineMs: 1000, health, strategy: goAwayOrWait, probe: async () => {} });
    t.after(() => pool.stop());
    pool.setBackends([{ name: 'x', host: 'h', port: 1 }]);
    assert.equal(pool.pick()?.name, 'x');
  });

  test('storm-free closes: deadline closes are spread evenly over closeSpreadMs', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'] });
    const pool = new BackendPool([{ name: 'a', host: 'h', port: 1 }], {
      defaultDrainDeadlineMs: 100,
      health,
      strategy: goAwayOrWait,
      probe: async () => {},
      closeSpreadMs: 1000,
    });
    t.after(() => pool.stop());
    const closes: DeadlineClose[] = [];
    pool.on('deadline-close', (e) => closes.push(e));
    const sessions = Array.from({ length: 5 }, (_, i) => new Sess(`s${i}`));
    for (const s of sessions) s.detach = pool.attach('a', s);
    const t0 = Date.now();
    pool.drain('a');
    t.mock.timers.tick(100);
    assert.deepEqual(
      sessions.map((s) => s.closed.length),
      [1, 0, 0, 0, 0],
      'the first one at the deadline',
    );
    sessions[2]!.detach!(); // leaves on its own meanwhile: skipped
    t.mock.timers.tick(100);
    t.mock.timers.tick(100);
    assert.deepEqual(
      sessions.map((s) => s.closed.length),
      [1, 1, 0, 0, 0],
    );
    for (let i = 0; i < 6; i++) t.mock.timers.tick(100);
    assert.deepEqual(
      sessions.map((s) => s.closed.length),
      [1, 1, 0, 1, 1],
    );
    assert.deepEqual(
      sessions.map((s) => (s.closedAt === 0 ? null : s.closedAt - t0)),
      [100, 300, null, 700, 900],
    );
    assert.deepEqual(closes, [{ name: 'a', closed: 4 }]);
  });

  test('storm-free closes: undrain cancels the closes still planned', (t) => {
    t.mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'] });
    const pool = new BackendPool([{ name: 'a', host: 'h', port: 1 }], {
      defaultDrainDeadlineMs: 100,
      health,
      strategy: goAwayOrWait,
      probe: async () => {},
      closeSpreadMs: 1000,
    });
    t.after(() => pool.stop());
    const sessions = Array.from({ length: 4 }, (_, i) => new Sess(`s${i}`));
    for (const s of sessions) s.detach = pool.attach('a', s);
    pool.drain('a');
    t.mock.timers.tick(100);
    pool.undrain('a');
    t.mock.timers.tick(2000);
    assert.deepEqual(
      sessions.map((s) => s.closed.length),
      [1, 0, 0, 0],
    );
  });
});
