import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, test } from 'node:test';
import { pino } from 'pino';
import { type Config, ConfigError, MAX_CONFIG_FILE_BYTES, loadConfig } from '../../src/config.js';
import { ConfigReloader, type ReloadTarget, diffConfig, mergeReloadable } from '../../src/reload.js';

const base = (flags: Record<string, unknown> = {}): Config => loadConfig({ flags: { backend: ['a=127.0.0.1:1935'], ...flags }, env: {} });

describe('reload: what a new configuration changes', () => {
  test('backends, routing, limits and drain settings are applied; the others are reported by name', () => {
    const cur = base();
    const next = base({
      backend: ['b=127.0.0.1:1936'],
      limitsMaxSessions: '5',
      drainDeadlineMs: '5s',
      listen: '0.0.0.0:1936',
      adminToken: 'secret',
      workers: '2',
    });
    const d = diffConfig(cur, next);
    assert.deepEqual(d.applied.sort(), ['backends', 'drain.deadlineMs', 'limits.maxSessions']);
    assert.deepEqual(d.ignored.sort(), ['adminToken', 'listen', 'workers']);
    const m = mergeReloadable(cur, next);
    assert.equal(m.listen, cur.listen);
    assert.equal(m.adminToken, cur.adminToken);
    assert.equal(m.limits.maxSessions, 5);
    assert.deepEqual(m.backends, next.backends);
    assert.deepEqual(diffConfig(cur, base()), { applied: [], ignored: [] });
  });

  test('a config file larger than the bound is refused unread', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rgp-reload-'));
    after(() => fs.rmSync(dir, { recursive: true, force: true }));
    const big = path.join(dir, 'big.yaml');
    fs.writeFileSync(big, `# ${'x'.repeat(MAX_CONFIG_FILE_BYTES)}\n`);
    assert.throws(
      () => loadConfig({ file: big, env: {} }),
      (e: unknown) => e instanceof ConfigError && /more than the 1048576 allowed/.test(e.message),
    );
  });
});

describe('reload: ConfigReloader', () => {
  function target(config: Config) {
    const lines: Record<string, unknown>[] = [];
    const counted: string[] = [];
    const applied: Config[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _e, cb) {
        for (const l of chunk.toString().split('\n')) if (l.trim() !== '') lines.push(JSON.parse(l) as Record<string, unknown>);
        cb();
      },
    });
    const t: ReloadTarget = {
      config,
      log: pino({ level: 'info' }, sink),
      reload(next) {
        applied.push(next);
        return { added: [], updated: [], removed: [], removing: [], ...diffConfig(config, next) };
      },
      metrics: { configReloaded: (trigger, result, n) => counted.push(`${trigger}:${result}:${n ?? '-'}`) },
    };
    return { t, lines, counted, applied };
  }

  test('a valid configuration is applied and counted, with the settings that need a restart', () => {
    const { t, lines, counted, applied } = target(base());
    const next = base({ backend: ['b=127.0.0.1:1936'], listen: '0.0.0.0:2000' });
    assert.equal(new ConfigReloader(t, () => next).reload('file'), true);
    assert.equal(applied.length, 1);
    assert.deepEqual(counted, ['file:ok:1']);
    assert.deepEqual(lines.find((l) => l['msg'] === 'configuration reloaded')!['applied'], ['backends']);
    assert.deepEqual(lines.find((l) => /need a restart/.test(String(l['msg'])))!['ignored'], ['listen']);
  });

  test('invalid configurations change nothing, are all counted, and logged one line at most per interval', () => {
    const { t, lines, counted, applied } = target(base());
    const r = new ConfigReloader(t, () => {
      throw new ConfigError(['invalid setting drain.deadlineMs (from file x:2): expected a duration', 'unknown setting foo']);
    });
    for (let i = 0; i < 5; i++) assert.equal(r.reload('file'), false);
    assert.equal(applied.length, 0);
    assert.deepEqual(counted, Array(5).fill('file:invalid:-'));
    const refused = lines.filter((l) => l['msg'] === 'configuration reload refused: nothing changed' && l['summary'] === undefined);
    assert.equal(refused.length, 1);
    assert.match(String(refused[0]!['error']), /drain\.deadlineMs.*; unknown setting foo/);
  });

  test('a configuration without any backend is refused; a target that throws changes nothing and is counted', () => {
    const { t, counted } = target(base());
    assert.equal(new ConfigReloader(t, () => base({ backend: [] })).reload('signal'), false);
    const throwing = {
      ...t,
      reload: () => {
        throw new Error('unknown group nope');
      },
    };
    assert.equal(new ConfigReloader(throwing, () => base()).reload('signal'), false);
    assert.deepEqual(counted, ['signal:invalid:-', 'signal:invalid:-']);
  });
});
