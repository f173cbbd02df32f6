import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { buildCli, oneLineUsageError, resolveTarget, serveConfig, whyRemained } from '../../src/cli.js';

describe('cli: control target', () => {
  test('--redis and --admin pick the target; both at once is an error', () => {
    assert.deepEqual(resolveTarget({ redis: 'redis://h:1' }, {}), { kind: 'redis', url: 'redis://h:1', prefix: 'rtmp-goaway' });
    assert.deepEqual(resolveTarget({ admin: '0.0.0.0:9935' }, { REDIS_URL: 'redis://h:1' }), { kind: 'admin', base: 'http://127.0.0.1:9935' });
    assert.throws(() => resolveTarget({ redis: 'redis://h:1', admin: 'h:1' }, {}), /either --redis or --admin/);
  });

  test("--config: the proxy file's redis.url and prefix, else its admin address; flags still win", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rgp-cli-'));
    after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const file = (name: string, text: string) => {
      const f = path.join(dir, name);
      fs.writeFileSync(f, text);
      return f;
    };
    const withRedis = file('redis.yaml', 'redis: { url: "redis://10.0.0.5:6379/0", prefix: fleet }\n');
    assert.deepEqual(resolveTarget({ config: withRedis }, { REDIS_URL: 'redis://other:1' }), {
      kind: 'redis',
      url: 'redis://10.0.0.5:6379/0',
      prefix: 'fleet',
    });
    assert.deepEqual(resolveTarget({ config: withRedis, admin: '10.0.0.1:9935' }, {}), { kind: 'admin', base: 'http://10.0.0.1:9935' });
    const adminOnly = file('admin.yaml', 'admin: "[::]:9000"\n');
    assert.deepEqual(resolveTarget({ config: adminOnly }, { RTMP_GOAWAY_ADMIN: 'ignored:1' }), { kind: 'admin', base: 'http://127.0.0.1:9000' });
    assert.throws(() => resolveTarget({ config: file('none.yaml', 'admin: ""\n') }, {}), /neither redis\.url nor an admin address/);
  });

  test('usage errors become one line', () => {
    assert.equal(
      oneLineUsageError("error: unknown option '--bakend'\n(Did you mean --backend?)\n"),
      "error: unknown option '--bakend' (did you mean --backend?) (see --help)",
    );
  });

  test('without flags: REDIS_URL or RTMP_GOAWAY_REDIS_URL, else the admin API', () => {
    assert.deepEqual(resolveTarget({}, { REDIS_URL: 'redis://a:1', RTMP_GOAWAY_REDIS_PREFIX: 'p' }), { kind: 'redis', url: 'redis://a:1', prefix: 'p' });
    assert.deepEqual(resolveTarget({ redisPrefix: 'q' }, { RTMP_GOAWAY_REDIS_URL: 'redis://b:1' }), { kind: 'redis', url: 'redis://b:1', prefix: 'q' });
    assert.deepEqual(resolveTarget({}, { RTMP_GOAWAY_ADMIN: '10.0.0.1:9000' }), { kind: 'admin', base: 'http://10.0.0.1:9000' });
    assert.deepEqual(resolveTarget({}, {}), { kind: 'admin', base: 'http://127.0.0.1:9935' });
  });
});

describe('cli: serve shorthands', () => {
  const base = { backend: ['b1=127.0.0.1:1936'] };

  test('--redis is --redis-url and --sidecar is --sidecar-enabled', () => {
    const c = serveConfig({ ...base, redis: 'redis://127.0.0.1:6379', sidecar: true }, {});
    assert.equal(c.redis.url, 'redis://127.0.0.1:6379');
    assert.equal(c.sidecar.enabled, true);
    assert.throws(() => serveConfig({ ...base, redis: 'redis://a:1', redisUrl: 'redis://b:1' }, {}), /either --redis or --redis-url/);
  });

  test('REDIS_URL is the last fallback', () => {
    assert.equal(serveConfig(base, { REDIS_URL: 'redis://fallback:1' }).redis.url, 'redis://fallback:1');
    assert.equal(serveConfig(base, { REDIS_URL: 'redis://fallback:1', RTMP_GOAWAY_REDIS_URL: 'redis://own:1' }).redis.url, 'redis://own:1');
    assert.equal(serveConfig(base, {}).redis.url, undefined);
  });

  test('the CLI has serve, drain, undrain and status, with --redis on the control commands', () => {
    const cli = buildCli();
    const names = cli.commands.map((c) => c.name());
    for (const n of ['serve', 'drain', 'undrain', 'status']) assert.ok(names.includes(n), n);
    const drain = cli.commands.find((c) => c.name() === 'drain')!;
    const flags = drain.options.map((o) => o.long);
    for (const f of ['--deadline', '--wait', '--redis', '--admin', '--reason']) assert.ok(flags.includes(f), f);
  });
});

describe('cli: why a session remained', () => {
  const s = { capability: 'none', goAwaySentAt: null, parseFallback: null, state: 'publishing' };
  test('one reason per case', () => {
    assert.match(whyRemained(s), /announced neither Go Away nor E-RTMP/);
    assert.match(whyRemained({ ...s, capability: 'goaway', goAwaySentAt: '2026-01-01T00:00:00.000Z' }), /Go Away was sent at 2026/);
    assert.match(whyRemained({ ...s, capability: 'goaway' }), /could not be sent yet/);
    assert.match(whyRemained({ ...s, capability: 'erpc' }), /E-RTMP/);
    assert.match(whyRemained({ ...s, capability: 'unknown', state: 'handshake' }), /connect was not seen/);
    assert.match(whyRemained({ ...s, parseFallback: 'bad-amf' }), /stopped parsing \(bad-amf\)/);
    // A player is told nothing on a drain (whatever its client announced): it leaves with its stream.
    assert.match(whyRemained({ ...s, capability: 'goaway', role: 'player' }), /is a player .*player-stream-moved/);
    assert.doesNotMatch(whyRemained({ ...s, role: 'player' }), /migrates it/);
  });
});
