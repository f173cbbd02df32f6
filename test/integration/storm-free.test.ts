// Storm-free forced closes through real sockets: 200 publishers that cannot be told to reconnect
// are closed by a drain deadline (drain.nonCapable: deadline-close) spread over drain.closeSpreadMs,
// and a sidecar shutdown spreads the closes of what is left at the end of its grace period.
// Measured at the clients: the order of the closes and their span, never a wall-clock bound.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RtmpPublisher } from '../../src/client/rtmp-client.js';
import { sidecarShutdown } from '../../src/sidecar.js';
import { type TestProxy, eventually, startTestProxy } from '../helpers/proxy.js';
import { RecordingRtmpServer } from '../helpers/recording-rtmp-server.js';

/** Opens `n` publishers, in order (batches of 20), and records when each one's socket closes. */
async function openPublishers(tp: TestProxy, prefix: string, n: number): Promise<{ pubs: RtmpPublisher[]; closedAt: (number | null)[] }> {
  const pubs: RtmpPublisher[] = [];
  const closedAt: (number | null)[] = Array.from({ length: n }, () => null);
  for (let i = 0; i < n; i += 20) {
    const batch = Array.from({ length: Math.min(20, n - i) }, (_, k) => {
      const pub = new RtmpPublisher(tp.url('live', `${prefix}-${i + k}`), { timeoutMs: 30_000 });
      pub.on('error', () => {});
      pub.on('close', () => (closedAt[i + k] = performance.now()));
      pubs.push(pub);
      return pub;
    });
    // Sequential within the batch, so the proxy attaches them in index order.
    for (const p of batch) await p.publish();
  }
  return { pubs, closedAt };
}

/** Spearman-like check: fraction of adjacent pairs (by close time) whose indexes increase. */
function orderedFraction(closedAt: number[]): number {
  const byTime = closedAt.map((t, i) => ({ t, i })).sort((a, b) => a.t - b.t);
  let up = 0;
  for (let k = 1; k < byTime.length; k++) if (byTime[k]!.i > byTime[k - 1]!.i) up++;
  return up / (byTime.length - 1);
}

describe('storm-free forced closes', () => {
  let backend: RecordingRtmpServer;
  before(async () => {
    backend = new RecordingRtmpServer();
    await backend.listen();
  });
  after(async () => backend.close());

  test('a drain deadline closes 200 sessions one by one over drain.closeSpreadMs, in order', async (t) => {
    const windowMs = 3000;
    const tp = await startTestProxy(
      { b1: backend.port },
      { drainNonCapable: 'deadline-close', drainCloseSpreadMs: windowMs, healthEnabled: false, logLevel: 'info', limitsMaxSessions: 1000 },
    );
    const { pubs, closedAt } = await openPublishers(tp, 'spread', 200);
    try {
      const res = await tp.admin('/api/backends/b1/drain', {
        method: 'POST',
        body: JSON.stringify({ deadlineMs: 200, force: true }),
        headers: { 'content-type': 'application/json' },
      });
      assert.equal(res.status, 200);
      const all = await eventually(() => (closedAt.every((c) => c !== null) ? (closedAt as number[]) : null), 'every session closed', 60_000);
      const first = Math.min(...all);
      const span = Math.max(...all) - first;
      const tenths = Array.from(
        { length: 10 },
        (_, d) => all.filter((c) => c - first >= (d * span) / 10 && c - first < ((d + 1) * span) / 10 + (d === 9 ? 1 : 0)).length,
      );
      const ordered = orderedFraction(all);
      t.diagnostic(
        `200 closes over ${span.toFixed(0)} ms (window ${windowMs} ms); per tenth of the span: ${tenths.join(' ')}; ${(ordered * 100).toFixed(1)}% of neighbours in connection order`,
      );
      // The schedule puts close i at ≥ i × window / 200: the span cannot be much shorter than the window.
      assert.ok(span >= windowMs * 0.5, `closes spread over ${span.toFixed(0)} ms, not at once`);
      assert.ok(ordered >= 0.8, 'closed in the order the sessions were attached');
      const ends = tp.logs.filter((l) => l['msg'] === 'session end' && l['reason'] === 'drain-deadline');
      assert.equal(ends.length, 200, 'each closed by the deadline, logged with its reason');
    } finally {
      for (const p of pubs) p.destroy();
      await tp.stop();
    }
  });

  test('sidecar shutdown: the sessions left at the end of the grace period are closed over its last closeSpreadMs', async (t) => {
    const windowMs = 1500;
    const tp = await startTestProxy({ b1: backend.port }, { drainCloseSpreadMs: windowMs, healthEnabled: false, logLevel: 'info' });
    const { pubs, closedAt } = await openPublishers(tp, 'sidecar', 30);
    try {
      const result = await sidecarShutdown(tp.proxy, 2000);
      assert.equal(result.ended, 'grace');
      assert.equal(result.closed, 30);
      const all = await eventually(() => (closedAt.every((c) => c !== null) ? (closedAt as number[]) : null), 'every session closed');
      const span = Math.max(...all) - Math.min(...all);
      t.diagnostic(`30 closes over ${span.toFixed(0)} ms (window ${windowMs} ms)`);
      assert.ok(span >= windowMs * 0.5, `closes spread over ${span.toFixed(0)} ms`);
      assert.ok(orderedFraction(all) >= 0.8);
      assert.equal(tp.logs.filter((l) => l['msg'] === 'session end' && l['reason'] === 'sidecar-grace').length, 30);
    } finally {
      for (const p of pubs) p.destroy();
      await tp.stop().catch(() => {});
    }
  });
});
