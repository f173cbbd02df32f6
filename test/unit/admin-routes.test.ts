import assert from 'node:assert/strict';
import type http from 'node:http';
import { describe, test, type TestContext } from 'node:test';
import { pino } from 'pino';
import { Counter, Registry } from 'prom-client';
import { LastRoutableBackendError, UnknownBackendError } from '../../src/balancer/pool.js';
import { AdminAccess } from '../../src/control/admin-access.js';
import { type AdminApi, type AdminDrainOptions, adminRoutes, drainOptions, rebalanceOptions } from '../../src/control/admin-routes.js';
import { HttpError, createAdminHttpServer, listenAdmin } from '../../src/control/admin-server.js';

/** An AdminApi that records what the routes asked of it. */
function recordingApi() {
  const asked: string[] = [];
  const registry = new Registry();
  new Counter({ name: 'routes_test_total', help: 'x', registers: [registry] }).inc(3);
  const api: AdminApi = {
    health: () => ({ workers: 2 }),
    readiness: () => ({ ready: false, reason: 'no healthy backend' }),
    metrics: () => registry,
    backends: () => [{ name: 'b1' }],
    sessions: (backend) => (asked.push(`sessions ${backend}`), []),
    async drain(name: string, opts: AdminDrainOptions) {
      asked.push(`drain ${name} ${JSON.stringify(opts)}`);
      if (name === 'nope') throw new UnknownBackendError(name);
      if (name === 'last') throw new LastRoutableBackendError(name);
      if (name === 'relayed') return { status: 202, text: '{"from":"worker"}', headers: { 'x-rtmp-goaway-workers': '2' } };
      return { status: 200, json: { backend: name } };
    },
    async undrain(name) {
      asked.push(`undrain ${name}`);
      return { status: 200, json: { backend: name, undrained: true } };
    },
  };
  return { api, asked };
}

async function serve(t: TestContext, api: AdminApi): Promise<(path: string, init?: RequestInit) => Promise<Response>> {
  const log = pino({ level: 'silent' });
  const server: http.Server = createAdminHttpServer({ access: new AdminAccess('127.0.0.1', ''), log }, adminRoutes(api));
  const a = await listenAdmin(server, { host: '127.0.0.1', port: 0 }, log);
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  return (path, init = {}) => {
    const headers = new Headers(init.headers);
    if (init.method === 'POST' && !headers.has('content-type')) headers.set('content-type', 'application/json');
    return fetch(`http://127.0.0.1:${a.port}${path}`, { ...init, headers });
  };
}

describe('admin routes (one table for the proxy and the cluster primary)', () => {
  test("probes: health with the server's details, readiness 503 with its reason, metrics as text or JSON", async (t) => {
    const { api } = recordingApi();
    const at = await serve(t, api);
    assert.deepEqual(await (await at('/healthz')).json(), { status: 'ok', workers: 2 });
    const ready = await at('/readyz/');
    assert.equal(ready.status, 503);
    assert.deepEqual(await ready.json(), { status: 'not ready', reason: 'no healthy backend' });
    assert.match(await (await at('/metrics')).text(), /routes_test_total 3/);
    const json = (await (await at('/metrics?format=json')).json()) as { name: string }[];
    assert.deepEqual(
      json.map((m) => m.name),
      ['routes_test_total'],
    );
  });

  test('drain: body or query parsed here, errors mapped (404 unknown, 409 last routable with the hint), answers passed on', async (t) => {
    const { api, asked } = recordingApi();
    const at = await serve(t, api);
    assert.equal((await at('/api/backends/b1/drain', { method: 'POST', body: '{"deadlineMs":5000,"reason":"deploy"}' })).status, 200);
    assert.equal((await at('/api/backends/b1/drain?force=1&deadlineMs=7', { method: 'POST', body: '' })).status, 200);
    const bad = await at('/api/backends/b1/drain', { method: 'POST', body: '[1]' });
    assert.equal(bad.status, 400);
    assert.equal((await at('/api/backends/b1/drain', { method: 'POST', body: '{"deadlineMs":-1}' })).status, 400);
    assert.equal((await at('/api/backends/b1/drain')).status, 405, 'GET on a command');
    assert.equal((await at('/api/backends/nope/drain', { method: 'POST', body: '{}' })).status, 404);
    const last = await at('/api/backends/last/drain', { method: 'POST', body: '{}' });
    assert.equal(last.status, 409);
    assert.match(((await last.json()) as { hint: string }).hint, /force/);
    const relayed = await at('/api/backends/relayed/drain', { method: 'POST', body: '{}' });
    assert.equal(relayed.status, 202);
    assert.equal(relayed.headers.get('x-rtmp-goaway-workers'), '2');
    assert.deepEqual(await relayed.json(), { from: 'worker' });
    assert.deepEqual(await (await at('/api/backends/b%2D1/undrain', { method: 'POST', body: '{}' })).json(), { backend: 'b-1', undrained: true });
    assert.deepEqual(asked, [
      'drain b1 {"deadlineMs":5000,"reason":"deploy"}',
      'drain b1 {"deadlineMs":7,"force":true}',
      'drain nope {}',
      'drain last {}',
      'drain relayed {}',
      'undrain b-1',
    ]);
  });

  test('reads: backends, sessions filtered by ?backend=; anything else 404', async (t) => {
    const { api, asked } = recordingApi();
    const at = await serve(t, api);
    assert.deepEqual(await (await at('/api/backends')).json(), [{ name: 'b1' }]);
    await at('/api/sessions?backend=b2');
    await at('/api/sessions');
    assert.deepEqual(asked, ['sessions b2', 'sessions null']);
    assert.equal((await at('/api/nothing')).status, 404);
    assert.equal((await at('/healthz', { method: 'POST', body: '{}' })).status, 404);
  });
});

describe('request bodies', () => {
  test('drain and rebalance take an empty body or a JSON object; anything else is a 400 that shows an example', () => {
    assert.deepEqual(drainOptions('', new URLSearchParams()), {});
    assert.deepEqual(rebalanceOptions('  '), {});
    assert.deepEqual(drainOptions('{"deadlineMs":5000}', new URLSearchParams()), { deadlineMs: 5000 });
    for (const bad of ['[1]', 'null', '"x"', '7', '{"deadlineMs":', 'true']) {
      assert.throws(
        () => drainOptions(bad, new URLSearchParams()),
        (e: unknown) => e instanceof HttpError && e.status === 400 && e.message.includes('{"deadlineMs":30000'),
        bad,
      );
      assert.throws(
        () => rebalanceOptions(bad),
        (e: unknown) => e instanceof HttpError && e.status === 400 && e.message.includes('{"dryRun":true'),
        bad,
      );
    }
  });
});
