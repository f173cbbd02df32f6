// The CLI as an operator meets it (a real child process): every configuration or usage error is
// one line on stderr and exit 2 (with "did you mean" for a misspelt flag); a listener that cannot
// be opened says which one and why, and exits 4; `status --config` finds the proxy from its file.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { FakeRtmpServer } from '../helpers/fake-rtmp-server.js';
import { tempDir } from '../helpers/peers.js';
import { type TestProxy, startTestProxy } from '../helpers/proxy.js';
import { runCli } from '../helpers/redis.js';

const lines = (s: string) => s.split('\n').filter((l) => l.trim() !== '');

describe('cli: configuration errors are one line and exit 2', () => {
  test('a misspelt flag suggests the right one', async () => {
    const r = await runCli(['serve', '--bakend', 'a=127.0.0.1:1935']);
    assert.equal(r.code, 2);
    assert.deepEqual(lines(r.stderr), ["rtmp-goaway-proxy: error: unknown option '--bakend' (did you mean --backend?) (see --help)"]);
    assert.equal(r.stdout, '', 'no help dumped');
  });

  test('a bad value names the setting; a bad argument of a control command too', async () => {
    const r = await runCli(['serve', '--backend', 'a=127.0.0.1:1935', '--drain-deadline-ms', 'soon']);
    assert.equal(r.code, 2);
    assert.equal(lines(r.stderr).length, 1, r.stderr);
    assert.match(r.stderr, /^rtmp-goaway-proxy: configuration error: invalid setting drain\.deadlineMs \(from flag --drain-deadline-ms\): expected a duration/);
    const d = await runCli(['drain', 'not a name', '--admin', '127.0.0.1:1']);
    assert.equal(d.code, 2);
    assert.deepEqual(lines(d.stderr).length, 1, d.stderr);
    assert.match(d.stderr, /backend names match/);
    const u = await runCli(['stauts']);
    assert.equal(u.code, 2);
    assert.match(u.stderr, /^rtmp-goaway-proxy: error: unknown command 'stauts' \(did you mean status\?\)/);
  });

  test('--help and --version still exit 0', async () => {
    const h = await runCli(['serve', '--help']);
    assert.equal(h.code, 0);
    assert.match(h.stdout, /--backend <name=host:port>/);
    const v = await runCli(['--version']);
    assert.equal(v.code, 0);
  });
});

describe('cli: a listener that cannot be opened', () => {
  const busy = net.createServer();
  let port = 0;
  before(async () => {
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
    port = (busy.address() as net.AddressInfo).port;
  });
  after(() => new Promise<void>((r) => busy.close(() => r())));

  for (const [flag, name] of [
    ['--listen', 'RTMP'],
    ['--admin', 'admin'],
  ] as const) {
    test(`${name}: one line naming it and why, exit 4`, async () => {
      const args = [
        'serve',
        '--backend',
        'a=127.0.0.1:1935',
        '--health-enabled',
        'false',
        '--listen',
        '127.0.0.1:0',
        '--admin',
        '127.0.0.1:0',
        flag,
        `127.0.0.1:${port}`,
      ];
      const r = await runCli(args);
      assert.equal(r.code, 4, r.stderr);
      assert.deepEqual(lines(r.stderr), [
        `rtmp-goaway-proxy: cannot open the ${name} listener on 127.0.0.1:${port}: address already in use (EADDRINUSE): another process listens there`,
      ]);
      assert.doesNotMatch(r.stdout, /"msg":"listener error"/, 'no warn line besides the error');
    });
  }

  test('cluster mode: the primary says it once for its workers and exits 4 (no restart loop)', async () => {
    const r = await runCli([
      'serve',
      '--workers',
      '2',
      '--backend',
      'a=127.0.0.1:1935',
      '--health-enabled',
      'false',
      '--admin',
      '127.0.0.1:0',
      '--listen',
      `127.0.0.1:${port}`,
    ]);
    assert.equal(r.code, 4, r.stderr);
    assert.deepEqual(lines(r.stderr), [
      `rtmp-goaway-proxy: cannot open the RTMP listener on 127.0.0.1:${port}: address already in use (EADDRINUSE): another process listens there`,
    ]);
  });
});

describe('cli: status --config reads the proxy address from its file', () => {
  const backend = new FakeRtmpServer();
  const dir = tempDir('status-config');
  let tp: TestProxy;
  before(async () => {
    await backend.listen();
    tp = await startTestProxy({ only: backend.port }, { healthEnabled: false });
  });
  after(async () => {
    await tp.stop();
    await backend.close();
    dir.remove();
  });

  test('the admin address of the file; an invalid file is a configuration error', async () => {
    const file = join(dir.path, 'proxy.yaml');
    writeFileSync(file, `admin: 0.0.0.0:${tp.proxy.adminAddress!.port}\nbackends: [ "only=127.0.0.1:${backend.port}" ]\n`);
    const r = await runCli(['status', '--json', '--config', file]);
    assert.equal(r.code, 0, r.stderr);
    const body = JSON.parse(r.stdout) as { backends: { name: string }[] };
    assert.deepEqual(
      body.backends.map((b) => b.name),
      ['only'],
    );
    writeFileSync(file, 'admin: [\n');
    const bad = await runCli(['status', '--config', file]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^rtmp-goaway-proxy: configuration error: invalid YAML in config file/);
  });
});
