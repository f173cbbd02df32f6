// Cluster mode through real processes: `serve --workers 2` (a primary and two workers sharing the
// listener), publishers spread over both workers, and one admin API that stays coherent: every
// session listed, metrics summed, a drain reaching the publishers of every worker, a rebalance
// planned over every worker's sessions, SIGTERM stopping them all.
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, test } from 'node:test';
import { RtmpPublisher } from '../../src/client/rtmp-client.js';
import { eventually } from '../helpers/proxy.js';
import { RecordingRtmpServer } from '../helpers/recording-rtmp-server.js';
import { type ServeChild, spawnServe } from '../helpers/redis.js';

interface ApiSession {
  id: string;
  backend: string | null;
  state: string;
}

describe('cluster mode: serve --workers 2', () => {
  const b1 = new RecordingRtmpServer();
  const b2 = new RecordingRtmpServer();
  let proxy: ServeChild;
  const pubs: RtmpPublisher[] = [];
  // The primary checks the token, and presents it to its workers (their admin APIs have the same policy).
  const TOKEN = 'cluster-admin-token-7d1e';
  const auth = { authorization: `Bearer ${TOKEN}` };
  const api = async <T>(path: string, init: RequestInit = {}): Promise<T> => {
    const r = await fetch(`http://127.0.0.1:${proxy.adminPort}${path}`, {
      ...init,
      headers: { ...auth, ...(init.headers as Record<string, string> | undefined) },
    });
    assert.ok(r.ok, `${path}: HTTP ${r.status} ${await r.clone().text()}`);
    return (await r.json()) as T;
  };

  before(async () => {
    await b1.listen();
    await b2.listen();
    proxy = await spawnServe(
      [
        '--workers',
        '2',
        '--backend',
        `b1=127.0.0.1:${b1.port}`,
        '--backend',
        `b2=127.0.0.1:${b2.port}`,
        '--health-enabled',
        'false',
        '--drain-deadline-ms',
        '30s',
      ],
      { env: { RTMP_GOAWAY_ADMIN_TOKEN: TOKEN } },
    );
  });
  after(async () => {
    for (const p of pubs) p.destroy();
    await proxy?.kill();
    await b1.close();
    await b2.close();
  });

  test('sessions spread over both workers; the primary lists them all and sums the metrics', async (t) => {
    for (let i = 0; i < 8; i++) {
      const pub = new RtmpPublisher(`rtmp://127.0.0.1:${proxy.port}/live/c${i}`, { supportsGoAway: true });
      pub.on('error', () => {});
      pubs.push(pub);
      await pub.publish();
    }
    const sessions = await eventually(async () => {
      const s = await api<ApiSession[]>('/api/sessions');
      return s.length === 8 && s.every((x) => x.state === 'publishing') ? s : null;
    }, 'eight publishing sessions');
    // Session ids start with the worker's pid (s<pid base 36>-<n>).
    const pids = new Set(sessions.map((s) => s.id.split('-')[0]));
    t.diagnostic(`sessions per worker: ${[...pids].map((p) => `${p}=${sessions.filter((s) => s.id.startsWith(`${p}-`)).length}`).join(' ')}`);
    assert.equal(pids.size, 2, 'both workers took sessions');
    // Each worker's admin API on a port of its own: the primary reaches a given worker, not whichever takes the connection.
    const workerAdmins = proxy
      .logs()
      .filter((l) => l['msg'] === 'worker listening')
      .map((l) => l['workerAdmin']);
    assert.equal(workerAdmins.length, 2);
    assert.equal(new Set(workerAdmins).size, 2, `worker admin addresses: ${workerAdmins.join(', ')}`);
    assert.equal(new Set(sessions.map((s) => s.id)).size, 8, 'each session listed once');
    const backends = await api<{ name: string; sessions: number }[]>('/api/backends');
    assert.equal(
      backends.reduce((n, b) => n + b.sessions, 0),
      8,
      'backend session counts summed over the workers',
    );
    const metrics = await (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text();
    const active = [...metrics.matchAll(/^rtmp_goaway_sessions_active\{[^}]*\} (\d+)/gm)].reduce((n, m) => n + Number(m[1]), 0);
    assert.equal(active, 8, 'sessions_active summed');
    assert.match(metrics, /^rtmp_goaway_backend_up\{backend="b1"\} 1$/m, 'gauges combined, not summed');
    const ready = await fetch(`http://127.0.0.1:${proxy.adminPort}/readyz`);
    assert.equal(ready.status, 200);
  });

  test('a drain through the primary reaches the publishers of every worker', async () => {
    const sessions = await api<ApiSession[]>('/api/sessions');
    const onB1 = sessions.filter((s) => s.backend === 'b1');
    assert.ok(onB1.length > 0);
    const res = await api<{ backend: string }>('/api/backends/b1/drain', {
      method: 'POST',
      body: JSON.stringify({ deadlineMs: 30_000 }),
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(res.backend, 'b1');
    await eventually(
      () => pubs.filter((p) => p.goAwayReceived).length === onB1.length,
      `Go Away to the ${onB1.length} publishers on b1, whichever worker holds them`,
    );
    const backends = await api<{ name: string; state: string }[]>('/api/backends');
    assert.equal(backends.find((b) => b.name === 'b1')?.state, 'draining');
    // A new session, on whichever worker, avoids b1.
    const pub = new RtmpPublisher(`rtmp://127.0.0.1:${proxy.port}/live/after-drain`);
    pubs.push(pub);
    await pub.publish();
    await eventually(() => b2.publishersOf('after-drain').length === 1, 'the new session on b2');
  });

  test('a rebalance through the primary plans over both workers and each moves its share', async () => {
    // b1 drained above: new publishers all go to b2; then b1 serves again.
    const fresh: RtmpPublisher[] = [];
    for (let i = 0; i < 6; i++) {
      const pub = new RtmpPublisher(`rtmp://127.0.0.1:${proxy.port}/live/rb${i}`, { supportsGoAway: true });
      pub.on('error', () => {});
      pubs.push(pub);
      fresh.push(pub);
      await pub.publish();
    }
    await api('/api/backends/b1/undrain', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    const sessions = await eventually(async () => {
      const s = (await api<(ApiSession & { role: string | null })[]>('/api/sessions')).filter((x) => x.role !== 'player');
      return s.filter((x) => x.state === 'publishing' || x.state === 'going-away').length === 15 ? s : null;
    }, 'fifteen sessions');
    const onB2 = sessions.filter((x) => x.backend === 'b2').length;
    type Plan = { targets: Record<string, number>; counts: Record<string, number>; moves: { replica: string; how: string }[]; shares: Record<string, unknown> };
    const post = (body: unknown) =>
      api<{ planned: number; running: boolean; plan: Plan }>('/api/rebalance', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
      });
    const dry = (await post({ dryRun: true, minAgeMs: 0 })).plan;
    assert.deepEqual(
      Object.values(dry.targets).reduce((a, b) => a + b, 0),
      15,
      `the targets cover the sessions of both workers: ${JSON.stringify({ dry, sessions })}`,
    );
    assert.equal(dry.counts['b2'], onB2);
    const expected = onB2 - dry.targets['b2']!;
    assert.ok(expected > 0, `b2 holds ${onB2}: over its target ${dry.targets['b2']}`);
    assert.equal(dry.moves.length, expected);
    assert.ok(
      dry.moves.every((m) => /^w\d+$/.test(m.replica)),
      'each move given to the worker holding its session',
    );
    const toldBefore = new Set(pubs.filter((p) => p.goAwayReceived));
    const started = await post({ minAgeMs: 0, reason: 'cluster test' });
    assert.equal(started.planned, expected, 'the workers planned their shares');
    await eventually(() => pubs.filter((p) => p.goAwayReceived && !toldBefore.has(p)).length === expected, `${expected} publishers on b2 told to go away`);
    const status = await api<{ running: boolean; plan: Plan | null; workers: number }>('/api/rebalance');
    assert.equal(status.workers, 2);
    assert.deepEqual(status.plan?.targets, dry.targets);
  });

  test('the primary applies the same access policy as a single proxy', async () => {
    const at = (path: string, init?: RequestInit) => fetch(`http://127.0.0.1:${proxy.adminPort}${path}`, init);
    assert.equal((await at('/api/sessions')).status, 401, 'no token');
    assert.equal((await at('/api/backends/b2/drain', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' })).status, 401);
    assert.equal((await at('/api/backends/b2/drain', { method: 'POST', headers: { ...auth, 'content-type': 'text/plain' }, body: '{}' })).status, 415);
    assert.equal(
      (
        await at('/api/backends/b2/drain', {
          method: 'POST',
          headers: { ...auth, 'content-type': 'application/json', origin: 'http://evil.example' },
          body: '{}',
        })
      ).status,
      403,
    );
    const rebound = await new Promise<number>((resolve, reject) => {
      http
        .get({ host: '127.0.0.1', port: proxy.adminPort, path: '/api/sessions', headers: { ...auth, host: `rebind.example:${proxy.adminPort}` } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        })
        .on('error', reject);
    });
    assert.equal(rebound, 403, 'a rebinding Host on the loopback admin');
    assert.equal((await api<{ name: string; state: string }[]>('/api/backends')).find((b) => b.name === 'b2')?.state, 'up', 'nothing drained');
    assert.ok(
      proxy.logs().some((l) => l['msg'] === 'admin mutation' && String(l['remote']).startsWith('127.0.0.1:') && l['status'] === 200),
      'the drain above was logged with its caller',
    );
  });

  test('SIGTERM: the primary stops every worker and exits 0', async () => {
    proxy.child.kill('SIGTERM');
    const { code } = await proxy.exited(30_000);
    assert.equal(code, 0);
    await eventually(() => pubs.every((p) => p.socket === null || p.socket.destroyed || p.socket.readyState === 'closed'), 'every publisher disconnected');
  });
});
