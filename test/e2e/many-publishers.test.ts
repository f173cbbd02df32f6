// 20 concurrent reference publishers through the proxy, spread over two nginx-rtmp backends; one
// backend is drained through the control plane mid-stream. Every publisher must end with zero
// frames lost: for each stream key, the recordings on both backends hold exactly the source.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { type FlvTag, parseFlv } from '../../src/client/flv.js';
import { type PublishReport, ReferencePublisher } from '../../src/client/reference-publisher.js';
import { closedRecordings } from '../helpers/nginx.js';
import { eventually } from '../helpers/proxy.js';
import { type ApiSession, DRAIN_VIA, type E2eEnv, SAMPLE_FLV, startE2e } from './env.js';
import { compareRecordings, describeComparison, mediaFrames } from '../../src/demo/verify.js';

const PUBLISHERS = 20;

async function* tagsOf(tags: readonly FlvTag[]): AsyncGenerator<FlvTag> {
  for (const t of tags) yield t;
}

describe('e2e: 20 concurrent Go Away publishers, one backend drained', () => {
  let env: E2eEnv | null = null;
  const publishers: ReferencePublisher[] = [];
  after(async () => {
    for (const p of publishers) p.abort();
    await env?.stop();
  });

  test('every publisher on the drained backend moves over and every stream is recorded without a lost frame', async (t) => {
    env = await startE2e(t);
    if (env === null) return;
    const tags = parseFlv(readFileSync(SAMPLE_FLV)).tags;
    const source = mediaFrames(tags);
    const keys = Array.from({ length: PUBLISHERS }, (_, i) => `many${process.pid}x${String(i).padStart(2, '0')}`);
    const runs = new Map<string, Promise<PublishReport>>();
    for (const key of keys) {
      const p = new ReferencePublisher(tagsOf(tags), env.proxy.url('live', key), { speed: 1 });
      publishers.push(p);
      runs.set(key, p.run());
    }

    const sessions = await eventually(
      async () => {
        const s = (await env!.proxy.api<ApiSession[]>('/api/sessions')).filter((x) => x.state === 'publishing');
        return s.length === PUBLISHERS ? s : null;
      },
      `${PUBLISHERS} publishing sessions`,
      20_000,
    );
    const onB1 = sessions.filter((s) => s.backend === 'b1').map((s) => s.streamKey!);
    const onB2 = sessions.filter((s) => s.backend === 'b2').map((s) => s.streamKey!);
    assert.ok(onB1.length > 0 && onB2.length > 0, `spread over both backends (b1 ${onB1.length}, b2 ${onB2.length})`);
    const drained = onB1.length >= onB2.length ? 'b1' : 'b2';
    const moving = new Set(drained === 'b1' ? onB1 : onB2);
    const other = drained === 'b1' ? 'b2' : 'b1';

    // Drain about 2 s into the 8 s streams.
    await eventually(() => publishers.every((p) => p.progress().mediaMs >= 2000), 'every publisher 2 s in', 20_000);
    await env.drain(drained);

    const reports = new Map<string, PublishReport>();
    for (const [key, run] of runs) reports.set(key, await run);

    const lines: string[] = [];
    const switches: number[] = [];
    const gops: number[] = [];
    for (const key of keys) {
      const r = reports.get(key)!;
      assert.equal(r.ok, true, `${key}: ${r.error ?? JSON.stringify(r.dropped)}`);
      const moved = moving.has(key);
      assert.deepEqual(
        r.connections.map((c) => c.endReason),
        moved ? ['go-away', 'end-of-input'] : ['end-of-input'],
        `${key} (${moved ? `on ${drained}` : `on ${other}`})`,
      );
      const files = moved
        ? [...(await closedRecordings(env.backends[drained], key, 1)), ...(await closedRecordings(env.backends[other], key, 1))]
        : await closedRecordings(env.backends[other], key, 1);
      const cmp = compareRecordings(source, files);
      assert.ok(cmp.zeroLoss, `${key}:\n${describeComparison(cmp)}`);
      assert.deepEqual(
        r.connections.map((c) => [c.video, c.audio]),
        cmp.files.map((f) => [f.video, f.audio]),
        `${key}: publisher and recordings agree per connection`,
      );
      if (moved) {
        const [c1, c2] = r.connections;
        switches.push(c2!.reconnectMs!);
        gops.push(c1!.closingAt! - c1!.goAwayAt!);
        lines.push(
          `${key}: ${drained} ${cmp.files[0]!.video}+${cmp.files[0]!.audio} → ${other} ${cmp.files[1]!.video}+${cmp.files[1]!.audio}, reconnect ${c2!.reconnectMs} ms`,
        );
      }
    }
    const stats = (xs: number[]): string =>
      `min ${Math.min(...xs)} / median ${[...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]} / max ${Math.max(...xs)} ms`;
    t.diagnostic(
      `${PUBLISHERS} publishers, ${moving.size} moved from ${drained} (drained via ${DRAIN_VIA}) to ${other}, each ${source.filter((f) => f.type === 'video').length} video + ${source.filter((f) => f.type === 'audio').length} audio frames, zero lost`,
    );
    t.diagnostic(`Go Away → close (rest of GOP): ${stats(gops)}; close → publishing again: ${stats(switches)}`);
    for (const l of lines) t.diagnostic(l);
  });
});
