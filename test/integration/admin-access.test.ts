// The admin API's access policy through real sockets, as a hostile web page, a DNS-rebinding page,
// a stranger on the network and a careless operator would meet it: closed without a token on a
// non-loopback address (probes and metrics open), JSON-only POSTs, foreign Origin refused, Host
// checked on loopback, the token on every /api request, the token from a file, the CLI sending it,
// and a log line naming the caller of every mutation.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RtmpPublisher } from '../../src/client/rtmp-client.js';
import { FakeRtmpServer } from '../helpers/fake-rtmp-server.js';
import { tempDir } from '../helpers/peers.js';
import { type TestProxy, startTestProxy } from '../helpers/proxy.js';
import { runCli } from '../helpers/redis.js';

interface Answer {
  status: number;
  body: string;
  /** The local port of the client's socket: the caller's port as the proxy sees it. */
  clientPort: number;
}

/** One request on its own connection, every header as given (Host included: fetch cannot set it). */
function request(port: number, path: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    let clientPort = 0;
    const req = http.request({ host: '127.0.0.1', port, path, method: opts.method ?? 'GET', headers: opts.headers ?? {}, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, clientPort }));
    });
    req.on('socket', (s) => s.once('connect', () => (clientPort = s.localPort ?? 0)));
    req.on('error', reject);
    req.end(opts.body);
  });
}

const JSON_CT = { 'content-type': 'application/json' };

async function metric(tp: TestProxy, name: string, labels: string): Promise<number> {
  const text = await (await tp.admin('/metrics')).text();
  const m = new RegExp(`${name}\\{${labels}\\} (\\d+)`).exec(text);
  return m === null ? 0 : Number(m[1]);
}

const draining = (tp: TestProxy): boolean => tp.proxy.pool.list().some((b) => b.draining);

describe('admin API on a non-loopback address without a token (the image binds 0.0.0.0:9935)', () => {
  let fake: FakeRtmpServer;
  let tp: TestProxy;
  before(async () => {
    fake = new FakeRtmpServer();
    await fake.listen();
    tp = await startTestProxy({ fake: fake.port }, { healthEnabled: 'false', admin: '0.0.0.0:0' });
  });
  after(async () => {
    await tp.stop();
    await fake.close();
  });

  test('/api/* and every POST answer 403 saying how to set a token; nothing is drained', async () => {
    const port = tp.proxy.adminAddress!.port;
    for (const path of ['/api/sessions', '/api/backends']) {
      const r = await request(port, path, { headers: { host: `127.0.0.1:${port}` } });
      assert.equal(r.status, 403, path);
      const error = (JSON.parse(r.body) as { error: string }).error;
      assert.match(error, /no token/);
      assert.match(error, /adminTokenFile/);
      assert.match(error, /RTMP_GOAWAY_ADMIN_TOKEN/);
      assert.doesNotMatch(error, /\n/, 'one line');
    }
    const drain = await request(port, '/api/backends/fake/drain?force=1', { method: 'POST', headers: JSON_CT, body: '{"deadlineMs":0}' });
    assert.equal(drain.status, 403);
    assert.equal(draining(tp), false);
    assert.equal(await metric(tp, 'rtmp_goaway_control_messages_total', 'source="admin",result="rejected"'), 3);
    assert.ok(
      tp.logs.some((l) => l['level'] === 40 && /no token/.test(String(l['msg']))),
      'a warning at start says the API is closed',
    );
  });

  test('probes and metrics stay open', async () => {
    const port = tp.proxy.adminAddress!.port;
    assert.equal((await request(port, '/healthz')).status, 200);
    assert.equal((await request(port, '/metrics')).status, 200);
    assert.notEqual((await request(port, '/readyz')).status, 403);
  });
});

describe('admin API on loopback without a token: cross-site pages and DNS rebinding', () => {
  let fake: FakeRtmpServer;
  let tp: TestProxy;
  let port: number;
  before(async () => {
    fake = new FakeRtmpServer();
    await fake.listen();
    tp = await startTestProxy({ fake: fake.port }, { healthEnabled: 'false' });
    port = tp.proxy.adminAddress!.port;
  });
  after(async () => {
    await tp.stop();
    await fake.close();
  });

  test('a browser-style cross-site POST (text/plain, foreign Origin) is refused and drains nothing; the publisher is untouched', async () => {
    const pub = new RtmpPublisher(tp.url('live', 'victim'), { supportsGoAway: true });
    await pub.publish();
    try {
      const host = `127.0.0.1:${port}`;
      const crossSite = await request(port, '/api/backends/fake/drain?force=1', {
        method: 'POST',
        headers: { host, origin: 'http://evil.example', 'content-type': 'text/plain' },
        body: '{"deadlineMs":0}',
      });
      assert.equal(crossSite.status, 403);
      assert.match(crossSite.body, /Origin/);
      // Even as JSON, a foreign (or opaque) origin is refused.
      for (const origin of ['http://evil.example', 'null', `http://127.0.0.1:${port + 1}`]) {
        assert.equal(
          (await request(port, '/api/backends/fake/drain?force=1', { method: 'POST', headers: { host, origin, ...JSON_CT }, body: '{}' })).status,
          403,
          origin,
        );
      }
      // Without Origin (an old browser, a form): text/plain and form bodies are not JSON.
      for (const ct of ['text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
        const r = await request(port, '/api/backends/fake/drain?deadlineMs=0', { method: 'POST', headers: { host, 'content-type': ct }, body: 'deadlineMs=0' });
        assert.equal(r.status, 415, ct);
      }
      assert.equal((await request(port, '/api/backends/fake/undrain', { method: 'POST', headers: { host } })).status, 415, 'no content type');
      assert.equal(draining(tp), false, 'nothing drained');
      assert.equal(pub.goAwayReceived, false);
      assert.equal(tp.proxy.server.sessions.size, 1);
      // The admin's own origin and a JSON body: accepted.
      const own = await request(port, '/api/backends/fake/drain?force=1', {
        method: 'POST',
        headers: { host, origin: `http://${host}`, ...JSON_CT },
        body: '{"deadlineMs":60000}',
      });
      assert.equal(own.status, 200, own.body);
      assert.equal(draining(tp), true);
      assert.equal(
        (await request(port, '/api/backends/fake/undrain', { method: 'POST', headers: { host, 'content-type': 'application/json; charset=utf-8' } })).status,
        200,
      );
    } finally {
      pub.destroy();
    }
  });

  test('a rebinding Host (a name that resolves to 127.0.0.1) is refused, probes included; loopback names with any port pass', async () => {
    for (const path of ['/api/sessions', '/api/backends', '/metrics', '/healthz']) {
      const r = await request(port, path, { headers: { host: `evil.example:${port}` } });
      assert.equal(r.status, 403, path);
      assert.match(r.body, /loopback/);
    }
    assert.equal((await request(port, '/api/sessions', { headers: { host: 'localhost.evil.example' } })).status, 403);
    assert.equal(
      (await request(port, '/api/backends/fake/drain?force=1', { method: 'POST', headers: { host: `evil.example:${port}`, ...JSON_CT }, body: '{}' })).status,
      403,
    );
    assert.equal(draining(tp), false);
    // An ssh tunnel or kubectl port-forward changes the port, not the loopback name.
    for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `[::1]:${port}`, 'LOCALHOST:8080', '127.0.0.2']) {
      assert.equal((await request(port, '/api/sessions', { headers: { host } })).status, 200, host);
    }
  });

  test("every mutation logs the caller's address and the outcome", async () => {
    const ok = await request(port, '/api/backends/fake/drain?force=1', { method: 'POST', headers: JSON_CT, body: '{"deadlineMs":60000,"reason":"audit"}' });
    assert.equal(ok.status, 200);
    const unknown = await request(port, '/api/backends/nope/undrain', { method: 'POST', headers: JSON_CT, body: '{}' });
    assert.equal(unknown.status, 404);
    await request(port, '/api/backends/fake/undrain', { method: 'POST', headers: JSON_CT, body: '{}' });
    const line = (p: number) => tp.logs.find((l) => l['msg'] === 'admin mutation' && l['remote'] === `127.0.0.1:${p}`);
    assert.deepEqual(
      { path: line(ok.clientPort)?.['path'], status: line(ok.clientPort)?.['status'] },
      { path: '/api/backends/fake/drain', status: 200 },
      JSON.stringify(tp.logs.filter((l) => l['msg'] === 'admin mutation')),
    );
    assert.equal(line(unknown.clientPort)?.['status'], 404);
    // Refusals are logged too (rate-limited), with the caller.
    const refused = await request(port, '/api/backends/fake/drain?force=1', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: '{}' });
    assert.ok(tp.logs.some((l) => l['msg'] === 'admin request refused' && l['remote'] === `127.0.0.1:${refused.clientPort}` && l['reason'] === 'content-type'));
  });
});

describe('admin API with a token (on 0.0.0.0)', () => {
  test('every /api request and every POST needs it (401, counted, constant-time); probes and metrics stay open; the token is never logged', async () => {
    const fake = new FakeRtmpServer();
    await fake.listen();
    const token = 'tok-3f9a1c7e5b';
    const tp = await startTestProxy({ fake: fake.port }, { healthEnabled: 'false', admin: '0.0.0.0:0', adminToken: token });
    const port = tp.proxy.adminAddress!.port;
    try {
      const drain = (auth?: string) =>
        request(port, '/api/backends/fake/drain?force=1', {
          method: 'POST',
          headers: { ...JSON_CT, ...(auth === undefined ? {} : { authorization: auth }) },
          body: '{}',
        });
      assert.equal((await drain()).status, 401);
      assert.equal((await drain('Bearer tok-3f9a1c7e5c')).status, 401, 'same length, one character off');
      assert.equal((await drain('Bearer tok')).status, 401, 'a prefix');
      assert.equal((await drain(`Basic ${token}`)).status, 401);
      assert.equal((await drain(`Bearer ${token} extra`)).status, 401);
      for (const path of ['/api/sessions', '/api/backends']) {
        const r = await tp.admin(path);
        assert.equal(r.status, 401, path);
        assert.match(r.headers.get('www-authenticate') ?? '', /^Bearer/);
      }
      assert.equal(draining(tp), false, 'nothing drained without the token');
      assert.equal(await metric(tp, 'rtmp_goaway_control_messages_total', 'source="admin",result="rejected"'), 7);
      for (const path of ['/healthz', '/readyz', '/metrics']) assert.equal((await tp.admin(path)).status, 200, path);
      assert.equal((await drain(`Bearer ${token}`)).status, 200);
      const auth = { authorization: `bearer ${token}` };
      assert.equal((await tp.admin('/api/backends/fake/undrain', { method: 'POST', headers: { ...auth, ...JSON_CT } })).status, 200);
      for (const path of ['/api/sessions', '/api/backends']) assert.equal((await tp.admin(path, { headers: auth })).status, 200, path);
      // With the token, a foreign Origin and a non-JSON POST are still refused.
      assert.equal((await tp.admin('/api/backends/fake/drain?force=1', { method: 'POST', headers: { ...auth, 'content-type': 'text/plain' } })).status, 415);
      assert.equal(
        (await tp.admin('/api/backends/fake/drain?force=1', { method: 'POST', headers: { ...auth, ...JSON_CT, origin: 'https://evil.example' } })).status,
        403,
      );
      assert.ok(!JSON.stringify(tp.logs).includes(token), 'token in the logs');
    } finally {
      await tp.stop();
      await fake.close();
    }
  });
});

describe('admin token from a file (a mounted Secret), and the CLI sending it', () => {
  let fake: FakeRtmpServer;
  let tp: TestProxy;
  const dir = tempDir('admin-token');
  const file = join(dir.path, 'token');
  const token = 'c2VjcmV0LWZyb20tYS1maWxl';
  before(async () => {
    writeFileSync(file, `\n  ${token}  \n`);
    fake = new FakeRtmpServer();
    await fake.listen();
    tp = await startTestProxy({ fake: fake.port }, { healthEnabled: 'false', admin: '0.0.0.0:0', adminTokenFile: file });
  });
  after(async () => {
    await tp.stop();
    await fake.close();
    dir.remove();
  });

  test("the file's token, trimmed, opens the API", async () => {
    assert.equal((await tp.admin('/api/backends')).status, 401);
    assert.equal((await tp.admin('/api/backends', { headers: { authorization: `Bearer ${token}` } })).status, 200);
  });

  test('drain/undrain/status --admin send the token from RTMP_GOAWAY_ADMIN_TOKEN, --admin-token-file or RTMP_GOAWAY_ADMIN_TOKEN_FILE', async () => {
    const admin = `127.0.0.1:${tp.proxy.adminAddress!.port}`;
    const without = await runCli(['status', '--admin', admin]);
    assert.equal(without.code, 1, without.stderr);
    assert.match(without.stderr, /HTTP 401/);
    const drained = await runCli(['drain', 'fake', '--force', '--admin', admin, '--deadline', '60s'], { env: { RTMP_GOAWAY_ADMIN_TOKEN: token } });
    assert.equal(drained.code, 0, drained.stderr);
    assert.equal(draining(tp), true);
    const undrained = await runCli(['undrain', 'fake', '--admin', admin, '--admin-token-file', file]);
    assert.equal(undrained.code, 0, undrained.stderr);
    assert.equal(draining(tp), false);
    const status = await runCli(['status', '--admin', admin, '--json'], { env: { RTMP_GOAWAY_ADMIN_TOKEN_FILE: file } });
    assert.equal(status.code, 0, status.stderr);
    assert.equal((JSON.parse(status.stdout) as { backends: { name: string }[] }).backends[0]!.name, 'fake');
  });

  test('serve with an unreadable token file is a configuration error (exit 2, naming the setting)', async () => {
    const r = await runCli(['serve', '--backend', 'a=127.0.0.1:1', '--admin-token-file', join(dir.path, 'missing')]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /adminTokenFile \(from flag --admin-token-file\): cannot read .*missing: no such file/);
  });
});
