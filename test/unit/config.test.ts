import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import {
  ConfigError,
  ConfigSchema,
  addConfigOptions,
  loadConfig,
  parseDuration,
  parseHostPort,
  parseSize,
  redactConfig,
  settingDocs,
  type Config,
} from '../../src/config.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rtmp-goaway-config-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

let fileNo = 0;
function yamlFile(text: string): string {
  const f = path.join(tmp, `config-${++fileNo}.yaml`);
  fs.writeFileSync(f, text);
  return f;
}

/** Run loadConfig expecting a ConfigError; return its issues. */
function issuesOf(fn: () => unknown): string[] {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${String(e)}`);
    assert.ok(Array.isArray(e.issues) && e.issues.length > 0);
    return e.issues;
  }
  assert.fail('expected a ConfigError');
}

/** Every leaf path of a plain object (arrays are leaves). */
function leafPaths(obj: unknown, prefix = ''): string[] {
  if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) return [prefix];
  return Object.entries(obj).flatMap(([k, v]) => leafPaths(v, prefix ? `${prefix}.${k}` : k));
}

describe('defaults', () => {
  test('empty inputs give the documented defaults', () => {
    const c = loadConfig({ env: {} });
    assert.equal(c.listen, '0.0.0.0:1935');
    assert.equal(c.admin, '127.0.0.1:9935');
    assert.deepEqual(c.backends, []);
    assert.deepEqual(c.health, { enabled: true, intervalMs: 5000, timeoutMs: 2000, rise: 2, fall: 3 });
    assert.deepEqual(c.drain, { deadlineMs: 30_000, closeSpreadMs: 0, nonCapable: 'migrate' });
    assert.deepEqual(c.limits, {
      handshakeTimeoutMs: 10_000,
      idleTimeoutMs: 60_000,
      backendIdleTimeoutMs: 0,
      connectTimeoutMs: 3000,
      maxSessions: 10_000,
      maxSessionsPerIp: 0,
      connectRatePerIp: 0,
      connectBurstPerIp: 20,
      maxPendingBytes: 65_536,
      maxChunkSize: 16 * 1024 * 1024,
      minChunkSize: 32,
      maxMessageSize: 16_777_215,
      maxCommandSize: 262_144,
      maxChunkStreams: 64,
      sessionBufferBytes: 512 * 1024,
      processBufferBytes: 64 * 1024 * 1024,
      amfMaxDepth: 16,
      amfMaxItems: 1024,
      amfMaxStringBytes: 65_536,
    });
    assert.equal(c.onParseError, 'forward');
    assert.equal(c.adminToken, '');
    assert.equal(c.acceptProxyProtocol, 'off');
    assert.equal(c.backendProxyProtocol, 'off');
    assert.deepEqual(c.tls, { listen: '', cert: '', key: '' });
    assert.deepEqual(c.log, { level: 'info', streamKeys: false });
    assert.deepEqual(c.sidecar, { enabled: false, gracePeriodMs: 25_000 });
    assert.equal(c.redis.url, undefined);
    assert.equal(c.redis.prefix, 'rtmp-goaway');
    assert.equal(c.redis.heartbeatMs, 5000);
    assert.equal(c.redis.sessionTtlMs, 15_000);
    assert.equal(c.replicaId, `${os.hostname()}-${process.pid}`);
    assert.equal(c.workers, 1, 'one process unless asked');
    assert.equal(c.routing, null, 'no routing rules: every backend, least connections');
  });

  test('ConfigSchema.parse({}) equals loadConfig with no inputs', () => {
    assert.deepEqual(ConfigSchema.parse({}), loadConfig({ env: {} }));
  });

  test('env defaults to process.env', () => {
    const saved = process.env.RTMP_GOAWAY_HEALTH_RISE;
    process.env.RTMP_GOAWAY_HEALTH_RISE = '7';
    try {
      assert.equal(loadConfig({}).health.rise, 7);
    } finally {
      if (saved === undefined) delete process.env.RTMP_GOAWAY_HEALTH_RISE;
      else process.env.RTMP_GOAWAY_HEALTH_RISE = saved;
    }
  });
});

describe('YAML file', () => {
  test('values from the file, with units, nested groups and backend forms', () => {
    const file = yamlFile(`
listen: "[::]:1935"
admin: ""
backends:
  - name: ingest-a
    host: 10.0.0.11
    port: 1935
    maxSessions: 100
  - host: 10.0.0.12
    port: 1935
  - "c=[::1]:1936"
health:
  intervalMs: 10s
  timeoutMs: 1500
  enabled: false
drain:
  deadlineMs: 2m
  nonCapable: migrate
limits:
  maxPendingBytes: 128k
  maxChunkSize: 1m
onParseError: close
log: { level: debug, streamKeys: true }
redis:
  url: redis://127.0.0.1:6379/0
replicaId: proxy-1
`);
    const c = loadConfig({ file, env: {} });
    assert.equal(c.listen, '[::]:1935');
    assert.equal(c.admin, '');
    assert.deepEqual(c.backends, [
      { name: 'ingest-a', host: '10.0.0.11', port: 1935, maxSessions: 100 },
      { name: 'b2', host: '10.0.0.12', port: 1935 },
      { name: 'c', host: '::1', port: 1936 },
    ]);
    assert.deepEqual(c.health, { enabled: false, intervalMs: 10_000, timeoutMs: 1500, rise: 2, fall: 3 });
    assert.deepEqual(c.drain, { deadlineMs: 120_000, closeSpreadMs: 0, nonCapable: 'migrate' });
    assert.equal(c.limits.maxPendingBytes, 131_072);
    assert.equal(c.limits.maxChunkSize, 1_048_576);
    assert.equal(c.limits.idleTimeoutMs, 60_000, 'unset keys keep their defaults');
    assert.equal(c.onParseError, 'close');
    assert.deepEqual(c.log, { level: 'debug', streamKeys: true });
    assert.equal(c.redis.url, 'redis://127.0.0.1:6379/0');
    assert.equal(c.replicaId, 'proxy-1');
  });

  test('file named by flags.config or RTMP_GOAWAY_CONFIG; opts.file wins', () => {
    const a = yamlFile('health: { rise: 4 }\n');
    const b = yamlFile('health: { rise: 5 }\n');
    assert.equal(loadConfig({ env: { RTMP_GOAWAY_CONFIG: a } }).health.rise, 4);
    assert.equal(loadConfig({ flags: { config: b }, env: { RTMP_GOAWAY_CONFIG: a } }).health.rise, 5);
    assert.equal(loadConfig({ file: a, flags: { config: b }, env: {} }).health.rise, 4);
  });

  test('empty file and empty values mean defaults', () => {
    assert.deepEqual(loadConfig({ file: yamlFile(''), env: {} }), loadConfig({ env: {} }));
    assert.deepEqual(loadConfig({ file: yamlFile('health:\n  # intervalMs: 1s\nbackends:\nlisten:\n'), env: {} }), loadConfig({ env: {} }));
  });

  test('unknown keys are rejected with their path, file line and a suggestion', () => {
    const file = yamlFile('health:\n  intervl: 5s\nhelth:\n  rise: 1\nbackends:\n  - { name: a, host: h, prt: 1 }\n');
    const issues = issuesOf(() => loadConfig({ file, env: {} }));
    assert.ok(issues.includes(`unknown setting health.intervl (from file ${file}:2) (did you mean health.intervalMs?)`), issues.join('\n'));
    assert.ok(issues.includes(`unknown setting helth (from file ${file}:3) (did you mean health?)`), issues.join('\n'));
    assert.ok(
      issues.some((i) => i.startsWith(`unknown setting backends[0].prt (from file ${file}:6)`)),
      issues.join('\n'),
    );
  });

  test('a snake_case or kebab-case key is unknown, with the camelCase suggestion', () => {
    const file = yamlFile('limits:\n  max_sessions: 5\n');
    const issues = issuesOf(() => loadConfig({ file, env: {} }));
    assert.deepEqual(issues, [`unknown setting limits.max_sessions (from file ${file}:2) (did you mean limits.maxSessions?)`]);
  });

  test('invalid values name the setting and the file line', () => {
    const file = yamlFile('listen: 0.0.0.0:1935\nhealth:\n  intervalMs: soon\n');
    const issues = issuesOf(() => loadConfig({ file, env: {} }));
    assert.deepEqual(issues, [`invalid setting health.intervalMs (from file ${file}:3): expected a duration like 500ms, 5s, 1m, got "soon"`]);
  });

  test('a group that is not a mapping is rejected', () => {
    const file = yamlFile('health: 5\n');
    const [issue] = issuesOf(() => loadConfig({ file, env: {} }));
    assert.match(issue!, /^invalid setting health \(from file .*:1\): expected a mapping of settings, got 5$/);
  });

  test('missing file, bad YAML and non-mapping top level are ConfigErrors', () => {
    const missing = path.join(tmp, 'nope.yaml');
    assert.deepEqual(
      issuesOf(() => loadConfig({ flags: { config: missing }, env: {} })),
      [`cannot read config file ${missing} (from flag --config): no such file`],
    );
    assert.match(issuesOf(() => loadConfig({ file: yamlFile('health: [\n'), env: {} }))[0]!, /^invalid YAML in config file /);
    assert.match(issuesOf(() => loadConfig({ file: yamlFile('a: 1\na: 2\n'), env: {} }))[0]!, /^invalid YAML in config file /);
    assert.match(issuesOf(() => loadConfig({ file: yamlFile('- 1\n'), env: {} }))[0]!, /expected a mapping of settings at the top level/);
  });
});

describe('precedence', () => {
  const file = () => yamlFile('listen: "10.0.0.1:1935"\nhealth:\n  intervalMs: 10s\n  rise: 4\nbackends:\n  - a=1.1.1.1:1935\n');

  test('env overrides the file', () => {
    const c = loadConfig({
      file: file(),
      env: { RTMP_GOAWAY_HEALTH_INTERVAL_MS: '20s', RTMP_GOAWAY_BACKENDS: 'x=2.2.2.2:1936,y=3.3.3.3:1937' },
    });
    assert.equal(c.listen, '10.0.0.1:1935', 'file value kept');
    assert.equal(c.health.intervalMs, 20_000, 'env beats file');
    assert.equal(c.health.rise, 4, 'sibling from file kept');
    assert.deepEqual(
      c.backends.map((b) => b.name),
      ['x', 'y'],
      'env replaces the whole backend list',
    );
  });

  test('flags override env', () => {
    const c = loadConfig({
      file: file(),
      env: { RTMP_GOAWAY_HEALTH_INTERVAL_MS: '20s', RTMP_GOAWAY_LISTEN: '10.0.0.2:1935', RTMP_GOAWAY_BACKENDS: 'x=2.2.2.2:1936' },
      flags: { healthIntervalMs: '30s', backend: ['z=4.4.4.4:1938'], somethingElse: true },
    });
    assert.equal(c.health.intervalMs, 30_000);
    assert.equal(c.listen, '10.0.0.2:1935');
    assert.deepEqual(c.backends, [{ name: 'z', host: '4.4.4.4', port: 1938 }]);
  });

  test('flags may carry typed values (numbers, booleans)', () => {
    const c = loadConfig({ env: {}, flags: { healthRise: 9, healthEnabled: false, logStreamKeys: true, limitsMaxSessions: '5' } });
    assert.equal(c.health.rise, 9);
    assert.equal(c.health.enabled, false);
    assert.equal(c.log.streamKeys, true);
    assert.equal(c.limits.maxSessions, 5);
  });

  test('empty env vars are ignored, except admin (disables) and redis.url (unset)', () => {
    const file = yamlFile('redis: { url: "redis://h:6379" }\n');
    const c = loadConfig({ file, env: { RTMP_GOAWAY_HEALTH_INTERVAL_MS: '', RTMP_GOAWAY_ADMIN: '', RTMP_GOAWAY_REDIS_URL: '' } });
    assert.equal(c.health.intervalMs, 5000);
    assert.equal(c.admin, '');
    assert.equal(c.redis.url, undefined);
  });

  test('booleans from env', () => {
    for (const [v, want] of [
      ['true', true],
      ['1', true],
      ['yes', true],
      ['false', false],
      ['0', false],
      ['off', false],
    ] as const) {
      assert.equal(loadConfig({ env: { RTMP_GOAWAY_SIDECAR_ENABLED: v } }).sidecar.enabled, want, v);
    }
    assert.deepEqual(
      issuesOf(() => loadConfig({ env: { RTMP_GOAWAY_SIDECAR_ENABLED: 'maybe' } })),
      ['invalid setting sidecar.enabled (from env RTMP_GOAWAY_SIDECAR_ENABLED): expected true or false, got "maybe"'],
    );
  });
});

describe('error messages name the source', () => {
  test('env', () => {
    assert.deepEqual(
      issuesOf(() => loadConfig({ env: { RTMP_GOAWAY_HEALTH_INTERVAL_MS: 'abc' } })),
      ['invalid setting health.intervalMs (from env RTMP_GOAWAY_HEALTH_INTERVAL_MS): expected a duration like 500ms, 5s, 1m, got "abc"'],
    );
    const e = (() => {
      try {
        loadConfig({ env: { RTMP_GOAWAY_HEALTH_INTERVAL_MS: 'abc' } });
      } catch (err) {
        return err as ConfigError;
      }
      return undefined;
    })();
    assert.ok(e instanceof Error && e.name === 'ConfigError');
    assert.equal(e.message, 'invalid setting health.intervalMs (from env RTMP_GOAWAY_HEALTH_INTERVAL_MS): expected a duration like 500ms, 5s, 1m, got "abc"');
  });

  test('flag', () => {
    assert.deepEqual(
      issuesOf(() => loadConfig({ env: {}, flags: { limitsMaxPendingBytes: 'lots' } })),
      ['invalid setting limits.maxPendingBytes (from flag --limits-max-pending-bytes): expected a size like 4096, 64k, 4m, 1g, got "lots"'],
    );
    assert.deepEqual(
      issuesOf(() => loadConfig({ env: {}, flags: { logLevel: 'loud' } })),
      ['invalid setting log.level (from flag --log-level): expected one of trace, debug, info, warn, error, fatal, silent, got "loud"'],
    );
  });

  test('several problems are all reported', () => {
    const issues = issuesOf(() => loadConfig({ env: { RTMP_GOAWAY_HEALTH_RISE: '0', RTMP_GOAWAY_DRAIN_NON_CAPABLE: 'pray' }, flags: { listen: 'nope' } }));
    assert.equal(issues.length, 3, issues.join('\n'));
    assert.ok(issues.includes('invalid setting health.rise (from env RTMP_GOAWAY_HEALTH_RISE): must be at least 1, got 0'));
    assert.ok(
      issues.some((i) =>
        i.startsWith('invalid setting drain.nonCapable (from env RTMP_GOAWAY_DRAIN_NON_CAPABLE): expected one of deadline-close, ignore, migrate'),
      ),
    );
    assert.ok(issues.some((i) => i.startsWith('invalid setting listen (from flag --listen): expected host:port')));
    try {
      loadConfig({ env: { RTMP_GOAWAY_HEALTH_RISE: '0', RTMP_GOAWAY_DRAIN_NON_CAPABLE: 'pray' }, flags: { listen: 'nope' } });
    } catch (e) {
      assert.match((e as Error).message, /^3 configuration errors:\n {2}- /);
    }
  });

  test('cross-setting checks name both sources', () => {
    assert.deepEqual(
      issuesOf(() => loadConfig({ env: {}, flags: { healthIntervalMs: '1s' } })),
      ['invalid setting health.timeoutMs (from default): must be less than health.intervalMs (from flag --health-interval-ms: 1s), got 2s'],
    );
    assert.deepEqual(
      issuesOf(() => loadConfig({ env: { RTMP_GOAWAY_REDIS_SESSION_TTL_MS: '5s' } })),
      ['invalid setting redis.sessionTtlMs (from env RTMP_GOAWAY_REDIS_SESSION_TTL_MS): must be greater than redis.heartbeatMs (from default: 5s), got 5s'],
    );
    assert.equal(issuesOf(() => loadConfig({ env: { RTMP_GOAWAY_LIMITS_MIN_CHUNK_SIZE: '32m' } })).length, 1);
    assert.equal(issuesOf(() => loadConfig({ env: { RTMP_GOAWAY_LIMITS_MAX_COMMAND_SIZE: '16m', RTMP_GOAWAY_LIMITS_SESSION_BUFFER_BYTES: '32m' } })).length, 1);
    // The buffer budgets: a session must be able to hold its largest command, the process one session.
    assert.deepEqual(
      issuesOf(() => loadConfig({ env: { RTMP_GOAWAY_LIMITS_SESSION_BUFFER_BYTES: '128k' } })),
      [
        'invalid setting limits.sessionBufferBytes (from env RTMP_GOAWAY_LIMITS_SESSION_BUFFER_BYTES): must be at least limits.maxCommandSize (from default: 262144), got 131072',
      ],
    );
    assert.deepEqual(
      issuesOf(() => loadConfig({ flags: { limitsProcessBufferBytes: '256k' } })),
      [
        'invalid setting limits.processBufferBytes (from flag --limits-process-buffer-bytes): must be at least limits.sessionBufferBytes (from default: 524288), got 262144',
      ],
    );
  });

  test('unknown RTMP_GOAWAY_* env vars are rejected with a suggestion', () => {
    assert.deepEqual(
      issuesOf(() => loadConfig({ env: { RTMP_GOAWAY_HEALTH_INTERVAL: '5s', OTHER_VAR: 'x' } })),
      ['unknown environment variable RTMP_GOAWAY_HEALTH_INTERVAL (did you mean RTMP_GOAWAY_HEALTH_INTERVAL_MS?)'],
    );
  });

  test('out-of-range values', () => {
    assert.match(issuesOf(() => loadConfig({ env: { RTMP_GOAWAY_LIMITS_MAX_MESSAGE_SIZE: '16m' } }))[0]!, /must be at most 16777215, got 16777216/);
    assert.match(issuesOf(() => loadConfig({ env: { RTMP_GOAWAY_LIMITS_CONNECT_TIMEOUT_MS: '0' } }))[0]!, /must be at least 1ms, got 0ms/);
    assert.match(issuesOf(() => loadConfig({ env: { RTMP_GOAWAY_HEALTH_RISE: '1.5' } }))[0]!, /expected an integer, got "1.5"/);
    assert.equal(loadConfig({ env: { RTMP_GOAWAY_DRAIN_DEADLINE_MS: '0' } }).drain.deadlineMs, 0, 'drain deadline may be 0');
    assert.match(issuesOf(() => loadConfig({ env: { RTMP_GOAWAY_REDIS_URL: 'http://x' } }))[0]!, /^invalid setting redis.url .*redis:\/\/ or rediss:\/\//);
    assert.match(issuesOf(() => loadConfig({ env: { RTMP_GOAWAY_REPLICA_ID: 'a b' } }))[0]!, /^invalid setting replicaId .*whitespace/);
  });
});

describe('parseDuration / parseSize', () => {
  test('durations', () => {
    assert.equal(parseDuration(250), 250);
    assert.equal(parseDuration('250'), 250);
    assert.equal(parseDuration('250ms'), 250);
    assert.equal(parseDuration('5s'), 5000);
    assert.equal(parseDuration('1.5s'), 1500);
    assert.equal(parseDuration('2m'), 120_000);
    assert.equal(parseDuration('1h'), 3_600_000);
    assert.equal(parseDuration(' 5S '), 5000);
    assert.equal(parseDuration(0), 0);
  });

  test('bad durations', () => {
    for (const bad of ['abc', '', '5x', '-1s', '1 2s', 's', '1e3', '5sec'] as const) {
      assert.throws(
        () => parseDuration(bad),
        (e: unknown) => e instanceof ConfigError && e.message === `expected a duration like 500ms, 5s, 1m, got ${JSON.stringify(bad)}`,
        bad,
      );
    }
    for (const bad of [-1, Number.NaN, Number.POSITIVE_INFINITY]) assert.throws(() => parseDuration(bad), ConfigError);
  });

  test('sizes', () => {
    assert.equal(parseSize(4096), 4096);
    assert.equal(parseSize('4096'), 4096);
    assert.equal(parseSize('512b'), 512);
    assert.equal(parseSize('64k'), 65_536);
    assert.equal(parseSize('64K'), 65_536);
    assert.equal(parseSize('64kb'), 65_536);
    assert.equal(parseSize('64KiB'), 65_536);
    assert.equal(parseSize('4m'), 4 * 1024 * 1024);
    assert.equal(parseSize('1g'), 1024 ** 3);
    assert.equal(parseSize('1.5k'), 1536);
  });

  test('bad sizes', () => {
    for (const bad of ['lots', '', '64q', '-1k', 'k', '1kk'] as const) {
      assert.throws(
        () => parseSize(bad),
        (e: unknown) => e instanceof ConfigError && e.message === `expected a size like 4096, 64k, 4m, 1g, got ${JSON.stringify(bad)}`,
        bad,
      );
    }
    assert.throws(() => parseSize(-5), ConfigError);
  });
});

describe('host:port and backends', () => {
  test('parseHostPort', () => {
    assert.deepEqual(parseHostPort('127.0.0.1:1936'), { host: '127.0.0.1', port: 1936 });
    assert.deepEqual(parseHostPort('ingest.example.com:1935'), { host: 'ingest.example.com', port: 1935 });
    assert.deepEqual(parseHostPort('[::1]:1936'), { host: '::1', port: 1936 });
    assert.deepEqual(parseHostPort('[::]:1935'), { host: '::', port: 1935 });
    assert.deepEqual(parseHostPort('127.0.0.1:0'), { host: '127.0.0.1', port: 0 });
    for (const bad of ['127.0.0.1', ':1935', '::1:1936', 'h:65536', 'h:port', 'h:', '[::1]', '[::1]1936', '[host]:1', 'a b:1']) {
      assert.throws(() => parseHostPort(bad), ConfigError, bad);
    }
  });

  test('name=host:port, bare host:port and IPv6 from env', () => {
    const c = loadConfig({ env: { RTMP_GOAWAY_BACKENDS: 'b1=127.0.0.1:1936, 127.0.0.1:1937 ,v6=[::1]:1938,[::1]:1939' } });
    assert.deepEqual(c.backends, [
      { name: 'b1', host: '127.0.0.1', port: 1936 },
      { name: 'b2', host: '127.0.0.1', port: 1937 },
      { name: 'v6', host: '::1', port: 1938 },
      { name: 'b4', host: '::1', port: 1939 },
    ]);
  });

  test('repeated --backend values from flags', () => {
    const c = loadConfig({ env: {}, flags: { backend: ['a=10.0.0.1:1935', '[::1]:1936'] } });
    assert.deepEqual(c.backends, [
      { name: 'a', host: '10.0.0.1', port: 1935 },
      { name: 'b2', host: '::1', port: 1936 },
    ]);
  });

  test('duplicate names are rejected', () => {
    assert.deepEqual(
      issuesOf(() => loadConfig({ env: {}, flags: { backend: ['a=h:1', 'a=h:2'] } })),
      ['invalid setting backends[1].name (from flag --backend): duplicate backend name "a" (also used by backends[0])'],
    );
    // An implicit name can collide too.
    assert.equal(issuesOf(() => loadConfig({ env: { RTMP_GOAWAY_BACKENDS: 'b2=h:1,h:2' } })).length, 1);
  });

  test('bad ports and names are rejected', () => {
    assert.deepEqual(
      issuesOf(() => loadConfig({ env: { RTMP_GOAWAY_BACKENDS: 'a=h:0' } })),
      ['invalid setting backends[0].port (from env RTMP_GOAWAY_BACKENDS): must be at least 1, got 0'],
    );
    assert.match(
      issuesOf(() => loadConfig({ env: { RTMP_GOAWAY_BACKENDS: 'a=h:70000' } }))[0]!,
      /^invalid setting backends\[0\] \(from env RTMP_GOAWAY_BACKENDS\): expected host:port.*port must be 0\.\.65535/,
    );
    assert.match(issuesOf(() => loadConfig({ env: { RTMP_GOAWAY_BACKENDS: 'a=h' } }))[0]!, /^invalid setting backends\[0\] .*missing port/);
    assert.match(issuesOf(() => loadConfig({ env: { RTMP_GOAWAY_BACKENDS: 'bad name=h:1' } }))[0]!, /^invalid setting backends\[0\]\.name .*must match/);
    const file = yamlFile('backends:\n  - { name: a, host: h, port: 99999 }\n');
    assert.deepEqual(
      issuesOf(() => loadConfig({ file, env: {} })),
      [`invalid setting backends[0].port (from file ${file}:2): must be at most 65535, got 99999`],
    );
    assert.match(issuesOf(() => loadConfig({ file: yamlFile('backends: 5\n'), env: {} }))[0]!, /^invalid setting backends .*expected a list of backends/);
  });

  test('listen/admin validation; admin may be empty', () => {
    assert.equal(loadConfig({ env: {}, flags: { admin: '' } }).admin, '');
    assert.equal(loadConfig({ env: {}, flags: { listen: '[::]:1935' } }).listen, '[::]:1935');
    assert.match(issuesOf(() => loadConfig({ env: {}, flags: { listen: '' } }))[0]!, /^invalid setting listen \(from flag --listen\): expected host:port/);
  });
});

describe('settingDocs', () => {
  test('covers every leaf of the resolved config, and nothing else', () => {
    // redis.url is optional (absent from the defaults): set it so every leaf is present.
    const full = loadConfig({ env: { RTMP_GOAWAY_REDIS_URL: 'redis://h:6379' } });
    const leaves = leafPaths(full).sort();
    const docs = settingDocs();
    assert.deepEqual(docs.map((d) => d.path).sort(), leaves);
  });

  test('names follow the path: env UPPER_SNAKE, flag kebab; rows are complete', () => {
    const docs = settingDocs();
    const byPath = new Map(docs.map((d) => [d.path, d]));
    assert.deepEqual(
      { ...byPath.get('health.intervalMs') },
      {
        path: 'health.intervalMs',
        env: 'RTMP_GOAWAY_HEALTH_INTERVAL_MS',
        flag: '--health-interval-ms',
        type: 'duration',
        default: '5s',
        description: 'Time between health probes of each backend.',
      },
    );
    assert.equal(byPath.get('backends')!.flag, '--backend');
    assert.equal(byPath.get('backends')!.env, 'RTMP_GOAWAY_BACKENDS');
    assert.equal(byPath.get('limits.amfMaxDepth')!.env, 'RTMP_GOAWAY_LIMITS_AMF_MAX_DEPTH');
    assert.equal(byPath.get('onParseError')!.flag, '--on-parse-error');
    assert.equal(byPath.get('limits.maxPendingBytes')!.default, '64k');
    assert.equal(byPath.get('replicaId')!.default, '<hostname>-<pid>');
    assert.match(byPath.get('drain.nonCapable')!.description, /`migrate` moves the publish/);
    for (const d of docs) {
      assert.ok(d.description.length > 10, `${d.path} has a description`);
      assert.ok(d.type && d.default, `${d.path} has type and default`);
      if (d.path !== 'backends') {
        assert.equal(
          d.env,
          'RTMP_GOAWAY_' +
            d.path
              .replace(/\./g, '_')
              .replace(/([a-z])([A-Z])/g, '$1_$2')
              .toUpperCase(),
        );
        assert.equal(
          d.flag,
          '--' +
            d.path
              .replace(/\./g, '-')
              .replace(/([a-z])([A-Z])/g, '$1-$2')
              .toLowerCase(),
        );
      }
    }
    assert.equal(new Set(docs.map((d) => d.env)).size, docs.length, 'env names unique');
    assert.equal(new Set(docs.map((d) => d.flag)).size, docs.length, 'flags unique');
  });

  test('every documented env var is accepted by loadConfig', () => {
    const full = loadConfig({ env: { RTMP_GOAWAY_REDIS_URL: 'redis://h:6379' } });
    const env: Record<string, string> = {};
    for (const d of settingDocs()) {
      const v = d.path.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], full);
      env[d.env] = Array.isArray(v) ? '' : String(v);
    }
    env.RTMP_GOAWAY_BACKENDS = 'a=h:1';
    const c = loadConfig({ env });
    assert.deepEqual({ ...c, backends: [] }, full);
  });
});

describe('commander integration', () => {
  test('addConfigOptions + parseAsync produces the expected Config', async () => {
    const cmd = addConfigOptions(new Command('rtmp-goaway-proxy').exitOverride());
    await cmd.parseAsync(
      [
        '--listen',
        '127.0.0.1:0',
        '--admin',
        '',
        '--backend',
        'b1=127.0.0.1:1936',
        '--backend',
        '[::1]:1937',
        '--health-interval-ms',
        '3s',
        '--no-health-enabled',
        '--log-stream-keys',
        '--sidecar-enabled',
        'false',
        '--drain-non-capable',
        'ignore',
        '--limits-max-pending-bytes',
        '1m',
        '--redis-url',
        'redis://:pw@127.0.0.1:6379/0',
        '--replica-id',
        'r1',
      ],
      { from: 'user' },
    );
    const c: Config = loadConfig({ flags: cmd.opts(), env: { RTMP_GOAWAY_HEALTH_RISE: '6', RTMP_GOAWAY_HEALTH_INTERVAL_MS: '9s' } });
    const want: Config = ConfigSchema.parse({
      listen: '127.0.0.1:0',
      admin: '',
      backends: [
        { name: 'b1', host: '127.0.0.1', port: 1936 },
        { name: 'b2', host: '::1', port: 1937 },
      ],
      health: { enabled: false, intervalMs: 3000, rise: 6 },
      drain: { nonCapable: 'ignore' },
      limits: { maxPendingBytes: 1_048_576 },
      log: { streamKeys: true },
      sidecar: { enabled: false },
      redis: { url: 'redis://:pw@127.0.0.1:6379/0' },
      replicaId: 'r1',
    });
    assert.deepEqual(c, want);
  });

  test('no commander-side defaults: unset flags leave env/file values alone', async () => {
    const cmd = addConfigOptions(new Command('x').exitOverride());
    await cmd.parseAsync([], { from: 'user' });
    assert.deepEqual(cmd.opts(), {});
    const file = yamlFile('log: { level: warn, streamKeys: true }\nhealth: { enabled: false }\n');
    const cmd2 = addConfigOptions(new Command('x').exitOverride());
    await cmd2.parseAsync(['--config', file], { from: 'user' });
    const c = loadConfig({ flags: cmd2.opts(), env: {} });
    assert.equal(c.log.level, 'warn');
    assert.equal(c.log.streamKeys, true);
    assert.equal(c.health.enabled, false);
  });

  test('one option per setting, plus --config and --no-<bool>', () => {
    const cmd = addConfigOptions(new Command('x'));
    const longs = cmd.options.map((o) => o.long);
    for (const d of settingDocs()) assert.ok(longs.includes(d.flag), d.flag);
    assert.ok(longs.includes('--config'));
    assert.ok(longs.includes('--no-health-enabled'));
    const bools = settingDocs().filter((d) => d.type === 'boolean').length;
    assert.equal(cmd.options.length, settingDocs().length + 1 + bools);
  });
});

describe('redactConfig', () => {
  test('hides the redis password and leaves the input alone', () => {
    const c = loadConfig({ env: { RTMP_GOAWAY_REDIS_URL: 'redis://user:s3cret@10.0.0.5:6379/0' } });
    const r = redactConfig(c);
    assert.equal(r.redis.url, 'redis://user:***@10.0.0.5:6379/0');
    assert.ok(!JSON.stringify(r).includes('s3cret'));
    assert.equal(c.redis.url, 'redis://user:s3cret@10.0.0.5:6379/0');
    assert.deepEqual({ ...r, redis: { ...r.redis, url: c.redis.url } }, c);
    const noPw = loadConfig({ env: { RTMP_GOAWAY_REDIS_URL: 'redis://10.0.0.5:6379' } });
    assert.equal(redactConfig(noPw).redis.url, 'redis://10.0.0.5:6379');
    assert.deepEqual(redactConfig(loadConfig({ env: {} })), loadConfig({ env: {} }));
  });

  test('invalid redis URL errors do not leak the password', () => {
    const [issue] = issuesOf(() => loadConfig({ env: { RTMP_GOAWAY_REDIS_URL: 'http://u:hunter2@h:1' } }));
    assert.ok(!issue!.includes('hunter2'), issue);
  });
});

describe('PROXY protocol sources', () => {
  const B = { RTMP_GOAWAY_BACKENDS: 'a=127.0.0.1:1' };

  test('acceptProxyProtocol other than off without acceptProxyProtocolFrom is an error naming both settings and the opt-in', () => {
    for (const mode of ['optional', 'required']) {
      const issues = issuesOf(() => loadConfig({ env: { ...B, RTMP_GOAWAY_ACCEPT_PROXY_PROTOCOL: mode } }));
      assert.equal(issues.length, 1);
      assert.match(
        issues[0]!,
        new RegExp(
          `^invalid setting acceptProxyProtocolFrom \\(from default\\): is required when acceptProxyProtocol \\(from env RTMP_GOAWAY_ACCEPT_PROXY_PROTOCOL: ${mode}\\) is on`,
        ),
      );
      assert.match(issues[0]!, /0\.0\.0\.0\/0,::\/0/);
    }
    assert.equal(loadConfig({ env: B }).acceptProxyProtocolFrom, '', 'off needs no list');
  });

  test('CIDR lists from env, flags and YAML lists; bad entries are named', () => {
    const c = loadConfig({
      env: { ...B, RTMP_GOAWAY_ACCEPT_PROXY_PROTOCOL: 'required', RTMP_GOAWAY_ACCEPT_PROXY_PROTOCOL_FROM: ' 10.0.0.0/8 , fd00::/8,192.0.2.7' },
    });
    assert.equal(c.acceptProxyProtocolFrom, '10.0.0.0/8,fd00::/8,192.0.2.7');
    const y = loadConfig({ env: B, file: yamlFile('acceptProxyProtocol: optional\nacceptProxyProtocolFrom: [0.0.0.0/0, "::/0"]\n') });
    assert.equal(y.acceptProxyProtocolFrom, '0.0.0.0/0,::/0');
    const issues = issuesOf(() =>
      loadConfig({ env: B, flags: { acceptProxyProtocol: 'optional', acceptProxyProtocolFrom: '10.0.0.0/33,lb.example,10.0.0.0/8' } }),
    );
    assert.equal(issues.length, 1);
    assert.match(
      issues[0]!,
      /^invalid setting acceptProxyProtocolFrom \(from flag --accept-proxy-protocol-from\): expected CIDR subnets .*got "10\.0\.0\.0\/33", "lb\.example"$/,
    );
  });
});

describe('admin token', () => {
  const B = { RTMP_GOAWAY_BACKENDS: 'a=127.0.0.1:1' };
  const tokenFile = (content: string | Buffer): string => {
    const f = path.join(tmp, `token-${++fileNo}`);
    fs.writeFileSync(f, content);
    return f;
  };

  test('adminTokenFile: read once, trimmed, into adminToken (redacted)', () => {
    const c = loadConfig({ env: { ...B, RTMP_GOAWAY_ADMIN_TOKEN_FILE: tokenFile('\n  s3cr3t-t0ken\r\n') } });
    assert.equal(c.adminToken, 's3cr3t-t0ken');
    assert.equal(redactConfig(c).adminToken, '***');
  });

  test('unreadable, empty, oversized or malformed token files are errors that never show the content', () => {
    const cases: [string, RegExp][] = [
      [path.join(tmp, 'no-such-token'), /cannot read .*no-such-token: no such file/],
      [tmp, /cannot read /],
      [tokenFile(' \n\t'), /is empty/],
      [tokenFile(Buffer.alloc(4097, 0x61)), /larger than 4096 bytes/],
      [tokenFile('two words\n'), /one word of visible ASCII/],
    ];
    for (const [file, why] of cases) {
      const issues = issuesOf(() => loadConfig({ env: B, flags: { adminTokenFile: file } }));
      assert.equal(issues.length, 1, issues.join());
      assert.match(issues[0]!, /^invalid setting adminTokenFile \(from flag --admin-token-file\): /);
      assert.match(issues[0]!, why);
      assert.doesNotMatch(issues[0]!, /two words|aaaa/);
    }
    assert.equal(loadConfig({ env: B, flags: { adminTokenFile: tokenFile(Buffer.alloc(4096, 0x61)) } }).adminToken.length, 4096, '4 KiB is allowed');
  });

  test('adminToken and adminTokenFile together, or a token with spaces, are errors', () => {
    const both = issuesOf(() => loadConfig({ env: { ...B, RTMP_GOAWAY_ADMIN_TOKEN: 'abc', RTMP_GOAWAY_ADMIN_TOKEN_FILE: tokenFile('def') } }));
    assert.match(both.join(), /adminTokenFile .*cannot be used together with adminToken \(from env RTMP_GOAWAY_ADMIN_TOKEN/);
    const spaced = issuesOf(() => loadConfig({ env: { ...B, RTMP_GOAWAY_ADMIN_TOKEN: 'my secret' } }));
    assert.match(spaced.join(), /^invalid setting adminToken \(from env RTMP_GOAWAY_ADMIN_TOKEN\): must be one word/);
    assert.doesNotMatch(spaced.join(), /my secret/);
  });
});

describe('docs/configuration.md', () => {
  test('is up to date with scripts/gen-config-docs.ts', () => {
    const generated = execFileSync(process.execPath, ['--import', 'tsx', 'scripts/gen-config-docs.ts'], { cwd: ROOT, encoding: 'utf8' });
    const committed = fs.readFileSync(path.join(ROOT, 'docs/configuration.md'), 'utf8');
    assert.equal(committed, generated, 'docs/configuration.md is stale: run `node --import tsx scripts/gen-config-docs.ts > docs/configuration.md`');
    for (const d of settingDocs()) assert.ok(generated.includes(`| \`${d.path}\` |`), d.path);
  });

  test('its YAML example loads', () => {
    const md = fs.readFileSync(path.join(ROOT, 'docs/configuration.md'), 'utf8');
    const example = /```yaml\n([\s\S]*?)```/.exec(md)?.[1];
    assert.ok(example);
    const c = loadConfig({ file: yamlFile(example), env: {} });
    assert.equal(c.backends.length, 2);
  });
});

// Kubernetes injects <SERVICE>_SERVICE_HOST / _PORT… for every Service in the namespace; a
// Service named rtmp-goaway-proxy must not make the proxy refuse to start.
test('Kubernetes service-link variables are not taken for unknown settings; typos still are', () => {
  const env = {
    RTMP_GOAWAY_PROXY_SERVICE_HOST: '10.0.0.1',
    RTMP_GOAWAY_PROXY_SERVICE_PORT: '1935',
    RTMP_GOAWAY_PROXY_SERVICE_PORT_RTMP: '1935',
    RTMP_GOAWAY_PROXY_PORT: 'tcp://10.0.0.1:1935',
    RTMP_GOAWAY_PROXY_PORT_1935_TCP: 'tcp://10.0.0.1:1935',
    RTMP_GOAWAY_PROXY_PORT_1935_TCP_ADDR: '10.0.0.1',
    RTMP_GOAWAY_PROXY_PORT_1935_TCP_PORT: '1935',
    RTMP_GOAWAY_PROXY_PORT_1935_TCP_PROTO: 'tcp',
  };
  assert.equal(loadConfig({ env }).listen, '0.0.0.0:1935');
  assert.throws(() => loadConfig({ env: { RTMP_GOAWAY_LISTN: '0.0.0.0:1' } }), /unknown environment variable RTMP_GOAWAY_LISTN/);
});

test('rebalance.auto.spreadRatio: a decimal number, 0 (off) or from 1.1; rebalance.by: sessions or bitrate', () => {
  assert.equal(loadConfig({ env: {} }).rebalance.auto.spreadRatio, 0);
  assert.equal(loadConfig({ env: { RTMP_GOAWAY_REBALANCE_AUTO_SPREAD_RATIO: '1.5' } }).rebalance.auto.spreadRatio, 1.5);
  assert.equal(loadConfig({ env: { RTMP_GOAWAY_REBALANCE_AUTO_SPREAD_RATIO: '0' } }).rebalance.auto.spreadRatio, 0);
  assert.equal(loadConfig({ file: yamlFile('rebalance: { auto: { spreadRatio: 2 } }\n'), env: {} }).rebalance.auto.spreadRatio, 2);
  for (const bad of ['1.05', 'abc', '-1', '1e3', '101'])
    assert.throws(() => loadConfig({ env: { RTMP_GOAWAY_REBALANCE_AUTO_SPREAD_RATIO: bad } }), /rebalance\.auto\.spreadRatio/, bad);
  assert.equal(loadConfig({ env: { RTMP_GOAWAY_REBALANCE_BY: 'bitrate' } }).rebalance.by, 'bitrate');
  assert.throws(() => loadConfig({ env: { RTMP_GOAWAY_REBALANCE_BY: 'cpu' } }), /expected one of sessions, bitrate/);
});
