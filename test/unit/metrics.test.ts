import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { MAX_RETIRED_BACKENDS, type MetricsSources, ProxyMetrics } from '../../src/control/metrics.js';

function sources(over: Partial<MetricsSources> = {}): MetricsSources {
  return {
    activeSessions: () => [],
    bytesTotal: () => [],
    backends: () => [],
    busConnected: () => 1,
    ...over,
  };
}

const sample = (text: string, series: string): number | undefined => {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
};

describe('metrics', () => {
  test('sessions_active reads 0 for every configured backend and capability, the live count where there are sessions', async () => {
    const m = new ProxyMetrics(
      sources({
        backends: () => [
          { name: 'a', up: true, draining: false, sessions: 1 },
          { name: 'b', up: true, draining: true, sessions: 0, maxSessions: 7 },
        ],
        activeSessions: () => [{ backend: 'a', capability: 'goaway', count: 1 }],
      }),
      { defaultMetrics: false },
    );
    const text = await m.registry.metrics();
    assert.equal(sample(text, 'rtmp_goaway_sessions_active{backend="a",capability="goaway"}'), 1);
    for (const cap of ['goaway', 'erpc', 'none', 'unknown']) assert.equal(sample(text, `rtmp_goaway_sessions_active{backend="b",capability="${cap}"}`), 0);
    assert.equal(sample(text, 'rtmp_goaway_backend_session_limit{backend="b"}'), 7);
    assert.equal(sample(text, 'rtmp_goaway_backend_session_limit{backend="a"}'), 0);
  });

  test('bytes_total by backend and direction; build_info; session limits; Node metrics under their standard names', async () => {
    const m = new ProxyMetrics(
      sources({
        bytesTotal: () => [
          { backend: 'a', c2s: 10, s2c: 3 },
          { backend: 'none', c2s: 1, s2c: 0 },
        ],
      }),
      {
        version: '9.9.9',
        limits: { maxSessions: 100, maxSessionsPerIp: 2, connectRatePerIp: 5, connectBurstPerIp: 20 },
      },
    );
    let text = await m.registry.metrics();
    assert.equal(sample(text, 'rtmp_goaway_bytes_total{backend="a",direction="c2s"}'), 10);
    assert.equal(sample(text, 'rtmp_goaway_bytes_total{backend="none",direction="c2s"}'), 1);
    assert.equal(sample(text, `rtmp_goaway_build_info{version="9.9.9",node="${process.version}"}`), 1);
    assert.equal(sample(text, 'rtmp_goaway_session_limit{limit="max-sessions"}'), 100);
    assert.equal(sample(text, 'rtmp_goaway_session_limit{limit="per-ip-sessions"}'), 2);
    assert.match(text, /^process_cpu_seconds_total /m);
    assert.match(text, /^nodejs_eventloop_lag_p99_seconds /m);
    assert.doesNotMatch(text, /^rtmp_goaway_(process|nodejs)_/m);
    m.setLimits({ maxSessions: 50, maxSessionsPerIp: 0, connectRatePerIp: 0, connectBurstPerIp: 20 });
    text = await m.registry.metrics();
    assert.equal(sample(text, 'rtmp_goaway_session_limit{limit="max-sessions"}'), 50);
  });

  test('goaway_sent_total names the connect property, not a "key"', async () => {
    const m = new ProxyMetrics(sources(), { defaultMetrics: false });
    m.goAwaySent.inc({ backend: 'a', connect_flag: 'supportsGoAway' });
    assert.equal(sample(await m.registry.metrics(), 'rtmp_goaway_goaway_sent_total{backend="a",connect_flag="supportsGoAway"}'), 1);
  });

  test('config reload metrics: counted by trigger and result; the success time moves only on success', async () => {
    const m = new ProxyMetrics(sources(), { defaultMetrics: false });
    let text = await m.registry.metrics();
    const started = sample(text, 'rtmp_goaway_config_last_reload_success_timestamp_seconds')!;
    assert.ok(started > 0);
    assert.equal(sample(text, 'rtmp_goaway_config_last_reload_successful'), 1);
    m.configReloaded('file', 'invalid');
    text = await m.registry.metrics();
    assert.equal(sample(text, 'rtmp_goaway_config_reloads_total{trigger="file",result="invalid"}'), 1);
    assert.equal(sample(text, 'rtmp_goaway_config_last_reload_successful'), 0);
    assert.equal(sample(text, 'rtmp_goaway_config_last_reload_success_timestamp_seconds'), started);
    m.configReloaded('signal', 'ok', 2);
    text = await m.registry.metrics();
    assert.equal(sample(text, 'rtmp_goaway_config_last_reload_successful'), 1);
    assert.equal(sample(text, 'rtmp_goaway_config_restart_required'), 2);
  });

  test('removed backends keep their series until MAX_RETIRED_BACKENDS newer ones left; then the oldest are dropped', async () => {
    const forgotten: string[] = [];
    const m = new ProxyMetrics(sources({ forgetBackend: (n) => forgotten.push(n) }), { defaultMetrics: false });
    const n = MAX_RETIRED_BACKENDS + 2;
    for (let i = 0; i < n; i++) {
      m.sessionsClosed.inc({ backend: `b${i}`, reason: 'client-closed' });
      m.drainDuration.observe({ backend: `b${i}` }, 1);
    }
    await m.backendRemoved('b0');
    m.backendAdded('b0'); // re-added: kept
    for (let i = 1; i < n; i++) await m.backendRemoved(`b${i}`);
    const text = await m.registry.metrics();
    assert.deepEqual(forgotten, ['b1']);
    assert.equal(sample(text, 'rtmp_goaway_sessions_closed_total{backend="b1",reason="client-closed"}'), undefined);
    assert.equal(sample(text, 'rtmp_goaway_drain_duration_seconds_count{backend="b1"}'), undefined);
    assert.equal(sample(text, 'rtmp_goaway_sessions_closed_total{backend="b0",reason="client-closed"}'), 1);
    assert.equal(sample(text, 'rtmp_goaway_sessions_closed_total{backend="b2",reason="client-closed"}'), 1);
  });
});
