// 50 concurrent ffmpeg-like publishers (the reference publisher with Go Away disabled: neither
// Go Away nor E-RTMP) all on one nginx-rtmp backend, drained in one go: the proxy migrates all
// 50 (at most migration.maxInFlight at a time) to the other backend, each at a keyframe; no
// publisher notices and every stream is recorded without a lost or duplicated frame.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { type FlvTag, parseFlv } from '../../src/client/flv.js';
import { type PublishReport, ReferencePublisher } from '../../src/client/reference-publisher.js';
import { compareRecordings, describeComparison, mediaFrames } from '../../src/demo/verify.js';
import { closedRecordings } from '../helpers/nginx.js';
import { eventually } from '../helpers/proxy.js';
import { type ApiBackend, type ApiSession, DRAIN_VIA, type E2eEnv, SAMPLE_FLV, startE2e } from './env.js';

const PUBLISHERS = 50;

async function* tagsOf(tags: readonly FlvTag[]): AsyncGenerator<FlvTag> {
  for (const t of tags) yield t;
}

const pct = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
};

describe('e2e: 50 publishers without Go Away migrated in one drain', () => {
  let env: E2eEnv | null = null;
  const publishers: ReferencePublisher[] = [];
  after(async () => {
    for (const p of publishers) p.abort();
    await env?.stop();
  });

  test('all 50 move to the other backend at a keyframe without noticing; every stream is recorded without loss', async (t) => {
    env = await startE2e(t, { drainDeadline: '30s' });
    if (env === null) return;
    const proxy = env.proxy;
    // Everyone on b1: b2 takes no new sessions while they connect.
    await env.drain('b2');
    const tags = parseFlv(readFileSync(SAMPLE_FLV)).tags;
    const source = mediaFrames(tags);
    const keys = Array.from({ length: PUBLISHERS }, (_, i) => `mig${process.pid}x${String(i).padStart(2, '0')}`);
    const runs = new Map<string, Promise<PublishReport>>();
    for (const key of keys) {
      const p = new ReferencePublisher(tagsOf(tags), proxy.url('live', key), { goAway: false, speed: 1 });
      publishers.push(p);
      runs.set(key, p.run());
    }
    const sessions = await eventually(
      async () => {
        const s = (await proxy.api<ApiSession[]>('/api/sessions')).filter((x) => x.state === 'publishing');
        return s.length === PUBLISHERS ? s : null;
      },
      `${PUBLISHERS} publishing sessions`,
      20_000,
    );
    assert.ok(sessions.every((s) => s.backend === 'b1' && s.capability === 'none'));
    await proxy.api('/api/backends/b2/undrain', { method: 'POST' });
    await eventually(async () => (await proxy.api<ApiBackend[]>('/api/backends')).find((b) => b.name === 'b2')?.state === 'up', 'b2 up again');

    await eventually(() => publishers.every((p) => p.progress().mediaMs >= 1500), 'every publisher 1.5 s in', 20_000);
    const drainedAt = Date.now();
    await env.drain('b1');

    const reports = new Map<string, PublishReport>();
    for (const [key, run] of runs) reports.set(key, await run);
    for (const key of keys) {
      const r = reports.get(key)!;
      assert.equal(r.ok, true, `${key}: ${r.error ?? ''}`);
      assert.deepEqual(
        r.connections.map((c) => c.endReason),
        ['end-of-input'],
        `${key}: one connection, never interrupted`,
      );
    }
    const switched = proxy.logs.filter((l) => l['msg'] === 'migration switched');
    assert.equal(switched.length, PUBLISHERS, 'every session migrated');
    assert.ok(switched.every((l) => l['from'] === 'b1' && l['to'] === 'b2'));

    let lost = 0;
    for (const key of keys) {
      const files = [...(await closedRecordings(env.backends.b1, key, 1)), ...(await closedRecordings(env.backends.b2, key, 1))];
      const cmp = compareRecordings(source, files);
      assert.ok(cmp.zeroLoss, `${key}:\n${describeComparison(cmp)}`);
      lost += cmp.missing.length;
    }
    const switchMs = switched.map((l) => Number(l['switchMs']));
    const readyMs = switched.map((l) => Number(l['readyMs']));
    const metrics = await (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text();
    assert.match(metrics, new RegExp(`rtmp_goaway_migrations_total\\{result="ok",reason="ok"\\} ${PUBLISHERS}`));
    assert.doesNotMatch(metrics, /rtmp_goaway_migrations_total\{result="failed"/);
    t.diagnostic(
      `${PUBLISHERS} publishers migrated b1 → b2 in one drain (via ${DRAIN_VIA}), ${source.filter((f) => f.type === 'video').length} video + ${source.filter((f) => f.type === 'audio').length} audio frames each; frames lost ${lost}; ` +
        `last switch ${Math.max(...switched.map((l) => Number(l['time']))) - drainedAt} ms after the drain`,
    );
    const gapSum = Number(/rtmp_goaway_migration_gap_seconds_sum (\S+)/.exec(metrics)?.[1]);
    const gapCount = Number(/rtmp_goaway_migration_gap_seconds_count (\S+)/.exec(metrics)?.[1]);
    const gapMax = /rtmp_goaway_migration_gap_seconds_bucket\{le="([^"]+)"\} (\d+)/g;
    let le = 'n/a';
    for (const m of metrics.matchAll(gapMax))
      if (Number(m[2]) === gapCount) {
        le = m[1]!;
        break;
      }
    t.diagnostic(`at the switch (last byte to b1 → keyframe written to b2): mean ${((gapSum / gapCount) * 1000).toFixed(2)} ms, all ≤ ${le} s`);
    t.diagnostic(
      `switch latency (drain → switch): p50 ${pct(switchMs, 50)} ms, p99 ${pct(switchMs, 99)} ms, max ${Math.max(...switchMs)} ms; new backend ready: p50 ${pct(readyMs, 50)} ms, p99 ${pct(readyMs, 99)} ms`,
    );
  });
});
