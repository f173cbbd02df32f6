/**
 * Keeps `npm run bench` (test/bench/, issue 8) from rotting: runs its smoke version — every
 * middle that is installed, tiny sizes, one repetition, byte-compare at the sink — and checks
 * that it measured something real. No timing thresholds: this machine's numbers swing too much.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { BenchResult } from '../bench/lib/report.js';
import { projectRoot } from '../helpers/peers.js';

function runSmoke(out: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/bench/bench.ts', '--smoke', '--quiet', '--out', out], {
      cwd: projectRoot,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 150_000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

const positive = (x: number | null | undefined, what: string): void => {
  assert.ok(typeof x === 'number' && Number.isFinite(x) && x > 0, `${what} should be a finite positive number, got ${x}`);
};

test('bench smoke: every middle forwards every byte and every figure is a real measurement', { timeout: 180_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'bench-smoke-'));
  try {
    const out = join(dir, 'smoke.json');
    const r = await runSmoke(out);
    assert.equal(r.code, 0, `bench --smoke exited ${r.code}\n${r.stderr}\n${r.stdout}`);
    const result = JSON.parse(readFileSync(out, 'utf8')) as BenchResult;
    assert.deepEqual(result.problems, []);
    assert.equal(result.verify, true, 'the smoke run byte-compares at the sink');
    for (const m of ['direct', 'node-relay', 'proxy'] as const) assert.ok(result.middles.includes(m), `middle ${m} measured`);
    assert.equal(result.runs.length, result.middles.length * (result.scale['reps'] as number));

    for (const run of result.runs) {
      const what = `${run.middle}`;
      // Bulk: every byte the publishers sent reached the sink, identical (verify), at a real rate.
      assert.ok(run.bulk !== null, `${what}: bulk measured`);
      assert.equal(run.bulk.complete, true, `${what}: bulk delivered byte-exact`);
      positive(run.bulk.bytesSent, `${what} bulk bytes`);
      positive(run.bulk.gbps, `${what} bulk Gbps`);
      // Latency: a ping-pong through the middle.
      positive(run.latency.p50, `${what} ping p50`);
      assert.ok(run.latency.p99 >= run.latency.p50, `${what}: p99 ≥ p50`);
      // Idle sessions all came up (handshake … publish answered through the middle).
      assert.equal(run.idle.sessions, result.scale['idleSessions'] as number, `${what}: all idle sessions established`);
      // Paced publishers delivered everything they sent.
      assert.ok(run.paced.length > 0, `${what}: paced measured`);
      for (const p of run.paced) {
        assert.equal(p.complete, true, `${what} paced ${p.publishers}: delivered byte-exact`);
        assert.equal(p.dropped, 0, `${what} paced ${p.publishers}: no publisher dropped`);
        positive(p.deliveredGbps, `${what} paced delivered Gbps`);
      }
      if (run.middle === 'direct') continue;
      // A middle is a process of its own: its CPU and memory were read from /proc.
      positive(run.bulk.cpuPerGbit, `${what} CPU-s/Gbit`);
      positive(run.rssIdle, `${what} idle RSS`);
      assert.ok(run.idle.rssAfter !== null && Number.isFinite(run.idle.rssAfter), `${what}: RSS with sessions read`);
    }

    // Go Away fan-out: every capable session through the proxy read a type 32 after the drain command.
    assert.ok(result.fanout.length > 0, 'fan-out measured');
    for (const f of result.fanout) {
      assert.equal(f.received, f.sessions, `fan-out ${f.trigger}: every session received Go Away`);
      assert.equal(f.sessions, (result.scale['fanoutSizes'] as number[])[0]);
      positive(f.lastMs, `fan-out ${f.trigger} last`);
      assert.ok(f.firstMs! <= f.lastMs!, 'first ≤ last');
    }

    // The report: one Markdown table with a column per middle.
    assert.match(r.stdout, /^\| \| direct \| Node pipe relay \| this proxy/m);
    assert.match(r.stdout, /Bulk throughput/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
