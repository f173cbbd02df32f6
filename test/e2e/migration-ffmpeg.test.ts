// Stock Debian ffmpeg (no Go Away, no E-RTMP) publishing through the proxy; its backend is
// drained mid-stream and the proxy migrates the publish to another backend at a keyframe.
// ffmpeg never notices (it runs to the end, exit code 0) and the union of the two recordings
// holds exactly the frames ffmpeg sent: same count, same timestamps (ffprobe), no duplicate at
// the switch. Once to a second nginx-rtmp, once to node-media-server.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, describe, test, type TestContext } from 'node:test';
import { parseFlv } from '../../src/client/flv.js';
import { type EmbeddedBackend, startNodeMediaServer } from '../../src/demo/backends.js';
import { compareRecordings, describeComparison, mediaFrames } from '../../src/demo/verify.js';
import { ffprobePackets } from '../helpers/ffprobe.js';
import { type NginxBackend, closedRecordings, requireNginxRtmp, startNginxBackend } from '../helpers/nginx.js';
import { requirePeer, tempDir } from '../helpers/peers.js';
import { eventually } from '../helpers/proxy.js';
import { type ApiSession, type E2eEnv, type ProxyChild, SAMPLE_FLV, collect, startE2e, startProxyChild } from './env.js';

interface Peers {
  ffmpeg: string;
  ffprobe: string;
}

function peers(t: TestContext): Peers | null {
  const ffmpeg = requirePeer(t, 'ffmpeg');
  const ffprobe = requirePeer(t, 'ffprobe');
  return ffmpeg === null || ffprobe === null ? null : { ffmpeg, ffprobe };
}

/** ffmpeg -re -i sample.flv -c copy -f flv <url>: the 8 s sample (1 s GOP) in real time, unchanged. */
function ffmpegPublish(ffmpeg: string, url: string): ReturnType<typeof collect> {
  return collect(
    spawn(ffmpeg, ['-hide_banner', '-nostdin', '-loglevel', 'info', '-re', '-i', SAMPLE_FLV, '-c', 'copy', '-f', 'flv', url], {
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
}

/**
 * The ffprobe view of "exactly the frames sent": per stream type, the multiset of source
 * timestamps equals the union of the recordings' timestamps, each shifted by the file's offset.
 */
function assertFfprobeUnion(ffprobe: string, files: string[], offsets: (number | null)[]): { video: number; audio: number } {
  const src = ffprobePackets(ffprobe, SAMPLE_FLV);
  const got = files.flatMap((f, i) => ffprobePackets(ffprobe, f).map((p) => ({ ...p, dts: p.dts + (offsets[i] ?? NaN) })));
  for (const type of ['video', 'audio'] as const) {
    const a = src
      .filter((p) => p.type === type)
      .map((p) => p.dts)
      .sort((x, y) => x - y);
    const b = got
      .filter((p) => p.type === type)
      .map((p) => p.dts)
      .sort((x, y) => x - y);
    assert.equal(b.length, a.length, `${type}: ffprobe packet count of the recordings = source`);
    assert.deepEqual(b, a, `${type}: ffprobe timestamps of the recordings (shifted) = source`);
  }
  return { video: got.filter((p) => p.type === 'video').length, audio: got.filter((p) => p.type === 'audio').length };
}

interface Outcome {
  code: number | null;
  switchMs: number;
  readyMs: number;
  lost: number;
}

/** Publishes with ffmpeg, drains its backend ~2.5 s in, checks everything; returns the measurements. */
async function migrateFfmpeg(
  t: TestContext,
  p: Peers,
  proxy: ProxyChild,
  backends: Record<string, EmbeddedBackend>,
  drain: (name: string) => Promise<void>,
  key: string,
): Promise<Outcome> {
  const run = ffmpegPublish(p.ffmpeg, proxy.url('live', key));
  const session = await eventually(
    async () => (await proxy.api<ApiSession[]>('/api/sessions')).find((s) => s.streamKey === key && s.state === 'publishing'),
    'ffmpeg publishing',
    15_000,
  );
  assert.equal(session.capability, 'none', 'stock ffmpeg announces neither Go Away nor capsEx');
  const from = session.backend!;
  const to = Object.keys(backends).find((n) => n !== from)!;
  await new Promise((r) => setTimeout(r, 2500));
  await drain(from);

  const { code, stderr } = await run.exited;
  assert.equal(code, 0, `ffmpeg ran to the end of its input without noticing:\n${stderr.slice(-1500)}`);
  assert.doesNotMatch(stderr, /error|broken pipe|unknown packet/i);
  const switched = await eventually(() => proxy.logs.find((l) => l['msg'] === 'migration switched' && l['from'] === from), 'migration switched logged');
  assert.equal(switched['to'], to);
  const end = await eventually(() => proxy.logs.find((l) => l['msg'] === 'session end' && l['streamKey'] === key), 'session end logged');
  assert.equal(end['migrations'], 1);
  assert.equal(end['reason'], 'client-closed', 'ffmpeg ended its publish itself');
  assert.equal(end['backend'], to);

  const files = [...(await closedRecordings(backends[from]!, key, 1)), ...(await closedRecordings(backends[to]!, key, 1))];
  const source = mediaFrames(parseFlv(readFileSync(SAMPLE_FLV)).tags);
  const cmp = compareRecordings(source, files);
  assert.ok(cmp.zeroLoss, describeComparison(cmp));
  assert.equal(cmp.duplicated.length, 0, 'no duplicate at the switch');
  assert.ok(
    cmp.files.every((f) => f.video > 0),
    'both backends recorded a part',
  );
  const counts = assertFfprobeUnion(
    p.ffprobe,
    files,
    cmp.files.map((f) => f.offset),
  );
  t.diagnostic(
    `ffmpeg ${from} → ${to} (${backends[to]!.kind}): switch ${switched['switchMs']} ms after the drain (new backend ready in ${switched['readyMs']} ms), ` +
      `ffmpeg exit ${code}; recordings ${cmp.files.map((f) => `${f.video}v+${f.audio}a`).join(' + ')} = source ${counts.video}v+${counts.audio}a, lost ${cmp.missing.length}`,
  );
  return { code, switchMs: Number(switched['switchMs']), readyMs: Number(switched['readyMs']), lost: cmp.missing.length };
}

describe('e2e: stock ffmpeg migrated by the proxy at a keyframe', () => {
  const cleanup: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
  });

  test('nginx-rtmp → nginx-rtmp: ffmpeg never notices, the two recordings hold exactly what it sent', async (t) => {
    const p = peers(t);
    if (p === null) return;
    const env: E2eEnv | null = await startE2e(t);
    if (env === null) return;
    cleanup.push(() => env.stop());
    const out = await migrateFfmpeg(t, p, env.proxy, env.backends, (name) => env.drain(name), `ffmig${process.pid}`);
    assert.equal(out.lost, 0);
    const metrics = await (await fetch(`http://127.0.0.1:${env.proxy.adminPort}/metrics`)).text();
    assert.match(metrics, /rtmp_goaway_migrations_total\{result="ok",reason="ok"\} 1/);
    assert.match(metrics, /rtmp_goaway_migration_switch_seconds_count 1/);
  });

  test('nginx-rtmp → node-media-server: the same, with node-media-server as the new backend', async (t) => {
    const p = peers(t);
    if (p === null) return;
    const nginx = requireNginxRtmp(t);
    if (nginx === null) return;
    const b1: NginxBackend = await startNginxBackend(nginx);
    cleanup.push(() => b1.remove());
    const dir = tempDir('nms-mig');
    const b2 = await startNodeMediaServer({ dir: dir.path });
    cleanup.push(async () => {
      await b2.stop();
      dir.remove();
    });
    const proxy = await startProxyChild({ b1: b1.port, b2: b2.port }, [
      '--drain-deadline-ms',
      '20s',
      '--health-interval-ms',
      '1s',
      '--health-timeout-ms',
      '500ms',
    ]);
    cleanup.push(() => proxy.stop());
    await eventually(async () => (await proxy.api<{ state: string }[]>('/api/backends')).every((b) => b.state === 'up'), 'backends up');
    // The first session goes to b1 (least connections, then round robin from the first backend).
    const drain = async (name: string): Promise<void> => {
      await proxy.api(`/api/backends/${name}/drain`, { method: 'POST' });
    };
    const out = await migrateFfmpeg(t, p, proxy, { b1, b2 }, drain, `ffnms${process.pid}`);
    assert.equal(out.lost, 0);
  });
});
