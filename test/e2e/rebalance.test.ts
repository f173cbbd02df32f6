// A scale-out filled losslessly: 12 publishers (6 stock ffmpeg, 6 reference Go Away publishers)
// spread over two nginx-rtmp backends, a third added by a configuration reload (SIGHUP), then
// `rebalance --wait`: it ends with 4/4/4 (ffmpeg migrated by the proxy to the backend the plan
// chose, Go Away publishers reconnecting onto it through the reservation), and every stream is
// recorded across its backends without a lost or duplicated frame.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { type FlvTag, parseFlv } from '../../src/client/flv.js';
import { type PublishReport, ReferencePublisher } from '../../src/client/reference-publisher.js';
import { compareRecordings, describeComparison, mediaFrames } from '../../src/demo/verify.js';
import { type NginxBackend, closedRecordings, requireNginxRtmp, startNginxBackend } from '../helpers/nginx.js';
import { requirePeer, tempDir } from '../helpers/peers.js';
import { eventually } from '../helpers/proxy.js';
import { type ApiBackend, type ApiSession, type ProxyChild, SAMPLE_FLV, collect, spawnCli, startProxyChild } from './env.js';

const PUBLISHERS = 12;
/** Half speed: the 8 s sample lasts 16 s, room for the reload and the moves on a loaded machine. */
const SPEED = 0.5;

async function* tagsOf(tags: readonly FlvTag[]): AsyncGenerator<FlvTag> {
  for (const t of tags) yield t;
}

describe('e2e: rebalance after a scale-out', () => {
  const cleanup: (() => Promise<void>)[] = [];
  const publishers: ReferencePublisher[] = [];
  after(async () => {
    for (const p of publishers) p.abort();
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
  });

  test('12 publishers on b1 and b2, b3 added, rebalance --wait ends 4/4/4, every stream recorded without a lost or duplicated frame', async (t) => {
    const nginx = requireNginxRtmp(t);
    const ffmpeg = requirePeer(t, 'ffmpeg');
    if (nginx === null || ffmpeg === null) return;
    const b: Record<string, NginxBackend> = {};
    for (const name of ['b1', 'b2', 'b3']) {
      b[name] = await startNginxBackend(nginx);
      const backend = b[name];
      cleanup.push(() => backend.remove());
    }
    const dir = tempDir('rebalance');
    cleanup.push(() => Promise.resolve(dir.remove()));
    const file = join(dir.path, 'proxy.yaml');
    const yaml = (names: string[]): string =>
      'health: { intervalMs: 1s, timeoutMs: 500ms }\n' +
      'drain: { deadlineMs: 30s, nonCapable: migrate }\n' +
      'rebalance: { minAgeMs: 0, maxInFlight: 4, moveTimeoutMs: 20s }\n' +
      `backends:\n${names.map((n) => `  - "${n}=127.0.0.1:${b[n]!.port}"`).join('\n')}\n`;
    writeFileSync(file, yaml(['b1', 'b2']));
    const proxy: ProxyChild = await startProxyChild({}, ['--config', file]);
    cleanup.push(() => proxy.stop());
    await eventually(async () => (await proxy.api<ApiBackend[]>('/api/backends')).every((x) => x.state === 'up'), 'b1 and b2 up');

    const tags = parseFlv(readFileSync(SAMPLE_FLV)).tags;
    const source = mediaFrames(tags);
    const keys = Array.from({ length: PUBLISHERS }, (_, i) => `rb${process.pid}x${String(i).padStart(2, '0')}`);
    const ffmpegRuns = new Map<string, ReturnType<typeof collect>>();
    const refRuns = new Map<string, Promise<PublishReport>>();
    for (const [i, key] of keys.entries()) {
      if (i % 2 === 0) {
        const args = [
          '-hide_banner',
          '-nostdin',
          '-loglevel',
          'error',
          '-readrate',
          String(SPEED),
          '-i',
          SAMPLE_FLV,
          '-c',
          'copy',
          '-f',
          'flv',
          proxy.url('live', key),
        ];
        ffmpegRuns.set(key, collect(spawn(ffmpeg, args, { stdio: ['ignore', 'pipe', 'pipe'] })));
      } else {
        const p = new ReferencePublisher(tagsOf(tags), proxy.url('live', key), { speed: SPEED });
        publishers.push(p);
        refRuns.set(key, p.run());
      }
      // One at a time, so least connections spreads them evenly over b1 and b2.
      await eventually(async () => (await proxy.api<ApiSession[]>('/api/sessions')).some((s) => s.streamKey === key && s.backend !== null), `${key} routed`);
    }
    const before = await eventually(
      async () => {
        const s = (await proxy.api<ApiSession[]>('/api/sessions')).filter((x) => x.state === 'publishing');
        return s.length === PUBLISHERS ? s : null;
      },
      `${PUBLISHERS} publishing sessions`,
      20_000,
    );
    const count = (list: readonly { backend: string | null }[], name: string): number => list.filter((s) => s.backend === name).length;
    assert.deepEqual([count(before, 'b1'), count(before, 'b2')], [6, 6], 'spread over b1 and b2');

    // Scale-out: b3 added by a configuration reload.
    writeFileSync(file, yaml(['b1', 'b2', 'b3']));
    proxy.child.kill('SIGHUP');
    await eventually(async () => (await proxy.api<ApiBackend[]>('/api/backends')).find((x) => x.name === 'b3')?.state === 'up', 'b3 added and up');

    const dry = collect(spawnCli(['rebalance', '--admin', `127.0.0.1:${proxy.adminPort}`, '--dry-run', '--min-age', '0s']));
    const dryOut = await dry.exited;
    assert.equal(dryOut.code, 0, dryOut.stderr);
    const dryPlan = (JSON.parse(dryOut.stdout) as { plan: { targets: Record<string, number>; moves: unknown[] } }).plan;
    assert.deepEqual(dryPlan.targets, { b1: 4, b2: 4, b3: 4 });
    assert.equal(dryPlan.moves.length, 4, 'the fewest moves: two from each of b1 and b2');
    // A line per move with how and when it is expected: the ffmpeg publishers (b1) at their next
    // keyframe, predicted from the GOP the proxy measures; the Go Away ones (b2) when they reconnect.
    const moveLines = dryOut.stderr.split('\n').filter((l) => / -> b3: /.test(l));
    assert.equal(moveLines.filter((l) => /migrated at its next keyframe: next keyframe in ~\d+\.\ds \(gop \d+\.\ds\)$/.test(l)).length, 2, dryOut.stderr);
    assert.equal(moveLines.filter((l) => /told to reconnect: moves when it reconnects$/.test(l)).length, 2, dryOut.stderr);
    assert.equal(count(await proxy.api<ApiSession[]>('/api/sessions'), 'b3'), 0, '--dry-run moved nothing');

    const run = collect(spawnCli(['rebalance', '--admin', `127.0.0.1:${proxy.adminPort}`, '--wait', '--min-age', '0s', '--timeout', '60s', '--reason', 'e2e']));
    const out = await run.exited;
    assert.equal(out.code, 0, `rebalance --wait:\n${out.stderr}`);
    assert.match(out.stderr, /balanced: b1=4 b2=4 b3=4/);
    // While they waited for their keyframe, --wait said when it was expected (as drain --wait does).
    assert.match(out.stderr, /^ {2}\S+ \(live\): next keyframe in ~\d+\.\ds \(gop \d+\.\ds\)$/m);
    const backends = await proxy.api<ApiBackend[]>('/api/backends');
    assert.deepEqual(
      backends.map((x) => [x.name, x.sessions]),
      [
        ['b1', 4],
        ['b2', 4],
        ['b3', 4],
      ],
    );

    // Every publisher runs to its end; each stream's recordings hold exactly the source.
    for (const [key, r] of ffmpegRuns) {
      const { code, stderr } = await r.exited;
      assert.equal(code, 0, `ffmpeg ${key} ran to the end without noticing:\n${stderr.slice(-1500)}`);
    }
    const reports = new Map<string, PublishReport>();
    for (const [key, r] of refRuns) reports.set(key, await r);
    const lines: string[] = [];
    let moved = 0;
    for (const key of keys) {
      const report = reports.get(key);
      if (report !== undefined) assert.equal(report.ok, true, `${key}: ${report.error ?? JSON.stringify(report.dropped)}`);
      const files: string[] = [];
      const where: string[] = [];
      for (const [name, backend] of Object.entries(b)) {
        const n = backend.recordings(key).length;
        if (n === 0) continue;
        files.push(...(await closedRecordings(backend, key, n)));
        where.push(`${name}×${n}`);
      }
      const cmp = compareRecordings(source, files);
      assert.ok(cmp.zeroLoss, `${key}:\n${describeComparison(cmp)}`);
      assert.equal(cmp.duplicated.length, 0, `${key}: no duplicated frame`);
      if (files.length > 1) moved++;
      lines.push(`${key} (${report === undefined ? 'ffmpeg' : 'go-away'}): ${where.join(' + ')}, ${cmp.received.video}v+${cmp.received.audio}a = source`);
    }
    assert.equal(moved, 4, 'four streams moved, each recorded on two backends');
    const metrics = await (await fetch(`http://127.0.0.1:${proxy.adminPort}/metrics`)).text();
    const ok = [...metrics.matchAll(/rtmp_goaway_rebalance_moves_total\{result="(moved|migrated)"\} (\d+)/g)].reduce((a, m) => a + Number(m[2]), 0);
    assert.equal(ok, 4, 'four moves counted');
    t.diagnostic(`rebalance --dry-run:\n${moveLines.join('\n')}`);
    t.diagnostic(`rebalance --wait:\n${out.stderr.trim()}`);
    for (const l of lines) t.diagnostic(l);
  });
});
