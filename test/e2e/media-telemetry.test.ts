// Per-stream media telemetry through the proxy, with real peers: what /api/sessions (and the
// fleet registry, and `status`) report of a publisher matches ffprobe's view of its source, for
// stock ffmpeg publishing H.264/AAC (a lavfi test pattern of known size and rate) and for an
// E-RTMP publisher sending HEVC under its FourCC (hvc1; the fixture, replayed by the reference
// publisher; ffprobe's view of it is test/fixtures/hevc-ertmp.expected.json).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test, type TestContext } from 'node:test';
import { type FlvTag, parseFlv } from '../../src/client/flv.js';
import { ReferencePublisher } from '../../src/client/reference-publisher.js';
import { readRegistry, registryKeys } from '../../src/control/registry.js';
import type { MediaSummary } from '../../src/rtmp/media-telemetry.js';
import { ffprobePackets } from '../helpers/ffprobe.js';
import { requirePeer, tempDir } from '../helpers/peers.js';
import { eventually } from '../helpers/proxy.js';
import { runCli } from '../helpers/redis.js';
import { FIXTURE_DIR } from '../helpers/rtmp-fixtures.js';
import { type ApiSession, type E2eEnv, collect, startE2e } from './env.js';

type Session = ApiSession & { media: MediaSummary | null };

interface Probed {
  codec: string;
  width: number;
  height: number;
  fps: number;
  audioCodec: string;
  sampleRate: number;
  channels: number;
  /** bits/s: packet bytes over the stream's duration. */
  videoBitrate: number;
  audioBitrate: number;
  keyframeIntervalMs: number;
}

function probe(ffprobe: string, file: string): Probed {
  const r = spawnSync(
    ffprobe,
    ['-v', 'error', '-show_entries', 'stream=codec_type,codec_name,width,height,r_frame_rate,sample_rate,channels', '-of', 'json', file],
    {
      encoding: 'utf8',
    },
  );
  assert.equal(r.status, 0, r.stderr);
  const streams = (JSON.parse(r.stdout) as { streams: Record<string, string | number>[] }).streams;
  const v = streams.find((s) => s['codec_type'] === 'video')!;
  const a = streams.find((s) => s['codec_type'] === 'audio')!;
  const [num, den] = String(v['r_frame_rate']).split('/').map(Number) as [number, number];
  const packets = ffprobePackets(ffprobe, file);
  const rate = (type: 'video' | 'audio'): number => {
    const p = packets.filter((x) => x.type === type);
    const span = p.at(-1)!.dts - p[0]!.dts;
    // n packets cover n - 1 intervals: the last one's bytes are outside the span.
    return ((p.slice(0, -1).reduce((s, x) => s + x.size, 0) * 8000) / span) | 0;
  };
  const keys = packets.filter((x) => x.type === 'video' && x.keyframe).map((x) => x.dts);
  return {
    codec: String(v['codec_name']),
    width: Number(v['width']),
    height: Number(v['height']),
    fps: num / den,
    audioCodec: String(a['codec_name']),
    sampleRate: Number(a['sample_rate']),
    channels: Number(a['channels']),
    videoBitrate: rate('video'),
    audioBitrate: rate('audio'),
    keyframeIntervalMs: keys[1]! - keys[0]!,
  };
}

const within = (actual: number | null, expected: number, relative: number): boolean => actual !== null && Math.abs(actual - expected) <= expected * relative;

describe('e2e: media telemetry in /api/sessions, the registry and status', () => {
  let env: E2eEnv | null = null;
  const dir = tempDir('media-telemetry');
  after(async () => {
    await env?.stop();
    dir.remove();
  });

  async function setup(t: TestContext): Promise<{ ffmpeg: string; ffprobe: string } | null> {
    const ffmpeg = requirePeer(t, 'ffmpeg');
    const ffprobe = requirePeer(t, 'ffprobe');
    if (ffmpeg === null || ffprobe === null) return null;
    env ??= await startE2e(t);
    return env === null ? null : { ffmpeg, ffprobe };
  }

  const sessionOf = async (key: string): Promise<Session | undefined> => (await env!.proxy.api<Session[]>('/api/sessions')).find((s) => s.streamKey === key);

  test('stock ffmpeg, H.264 426x240 at 25 fps + AAC 48 kHz stereo: codec, size, fps, bitrates and GOP as ffprobe sees the source', async (t) => {
    const peers = await setup(t);
    if (peers === null) return;
    const src = join(dir.path, 'testsrc.flv');
    const gen = spawnSync(
      peers.ffmpeg,
      [
        ...[
          '-hide_banner',
          '-nostdin',
          '-loglevel',
          'error',
          '-f',
          'lavfi',
          '-i',
          'testsrc=size=426x240:rate=25',
          '-f',
          'lavfi',
          '-i',
          'sine=frequency=440:sample_rate=48000',
        ],
        ...['-t', '12', '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '25', '-b:v', '600k', '-maxrate', '600k', '-bufsize', '300k'],
        ...['-c:a', 'aac', '-b:a', '96k', '-ac', '2', '-f', 'flv', src],
      ],
      { encoding: 'utf8' },
    );
    assert.equal(gen.status, 0, gen.stderr);
    const want = probe(peers.ffprobe, src);
    assert.deepEqual([want.codec, want.width, want.height, want.fps, want.audioCodec, want.sampleRate, want.channels], ['h264', 426, 240, 25, 'aac', 48000, 2]);

    const key = `tele${process.pid}`;
    const pub = collect(
      spawn(peers.ffmpeg, ['-hide_banner', '-nostdin', '-loglevel', 'error', '-re', '-i', src, '-c', 'copy', '-f', 'flv', env!.proxy.url('live', key)], {
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    let seen: MediaSummary | null = null;
    // Each read of /api/sessions is a sample of the moving window: poll until the rates settle.
    await eventually(
      async () => {
        seen = (await sessionOf(key))?.media ?? null;
        const m = seen;
        return (
          m !== null &&
          m.keyframeIntervalMs !== null &&
          within(m.fps, want.fps, 0.03) &&
          within(m.videoBitrate, want.videoBitrate, 0.25) &&
          within(m.audioBitrate, want.audioBitrate, 0.15)
        );
      },
      '/api/sessions reports the rates of the source',
      20_000,
    ).catch((e: unknown) => assert.fail(`${(e as Error).message}: ${JSON.stringify(seen)} vs ${JSON.stringify(want)}`));
    const m = seen!;
    assert.deepEqual(
      [m.videoCodec, m.videoFourcc, m.width, m.height, m.audioCodec, m.sampleRate, m.channels, m.keyframeIntervalMs],
      [want.codec, null, want.width, want.height, want.audioCodec, want.sampleRate, want.channels, want.keyframeIntervalMs],
    );
    assert.ok(m.nextKeyframeInMs !== null && m.nextKeyframeInMs <= want.keyframeIntervalMs);
    assert.equal(m.bitrate, m.videoBitrate! + m.audioBitrate!);

    // `status` prints it; the fleet registry carries it (validated when read back).
    const admin = `http://127.0.0.1:${env!.proxy.adminPort}`;
    const status = await runCli(['status', '--admin', admin]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, new RegExp(`${key} .* h264 426x240 25fps [0-9.]+ (k|M)b/s gop 1\\.0s \\+ aac 48kHz 2ch`));
    if (env!.redis !== null) {
      const rec = await eventually(
        async () => (await readRegistry(env!.redis!.client, registryKeys('rtmp-goaway'))).sessions.find((s) => s.media?.width === 426),
        'the registry record carries the media',
      );
      assert.deepEqual([rec.media!.videoCodec, rec.media!.height, rec.media!.audioCodec], ['h264', 240, 'aac']);
    }
    const done = await pub.exited;
    assert.equal(done.code, 0, done.stderr);
  });

  test('E-RTMP HEVC (hvc1) from the reference publisher: codec, FourCC, size, fps, bitrate and GOP as ffprobe sees the source', async (t) => {
    const peers = await setup(t);
    if (peers === null) return;
    const want = (
      JSON.parse(readFileSync(`${FIXTURE_DIR}hevc-ertmp.expected.json`, 'utf8')) as {
        video: { codec_name: string; profile: string; width: number; height: number; r_frame_rate: string; bitrate: number; keyframes: number[] };
      }
    ).video;
    const tags = parseFlv(readFileSync(`${FIXTURE_DIR}hevc-ertmp.flv`)).tags;
    // Every tag, then the connection stays open until the test has looked.
    let open!: () => void;
    const gate = new Promise<void>((r) => (open = r));
    let sent = false;
    async function* source(): AsyncGenerator<FlvTag> {
      yield* tags;
      sent = true;
      await gate;
    }
    const key = `hevc${process.pid}`;
    const pub = new ReferencePublisher(source(), env!.proxy.url('live', key), { speed: 0 });
    const running = pub.run();
    let seen: MediaSummary | null = null;
    try {
      await eventually(async () => {
        seen = (await sessionOf(key))?.media ?? null;
        return sent && seen !== null && seen.fps !== null && seen.keyframeIntervalMs !== null && pub.progress().video >= tags.length - 1;
      }, 'the HEVC publisher in /api/sessions');
    } finally {
      open();
    }
    const m = seen!;
    const [num, den] = want.r_frame_rate.split('/').map(Number) as [number, number];
    assert.deepEqual(
      [m.videoCodec, m.videoFourcc, m.videoProfile, m.width, m.height, m.fps, m.keyframeIntervalMs],
      [want.codec_name, 'hvc1', want.profile, want.width, want.height, num / den, want.keyframes[1]! - want.keyframes[0]!],
    );
    // The 15 frames are small: the E-RTMP headers and the SequenceStart add about 3% to ffprobe's packet bytes.
    assert.ok(within(m.videoBitrate, want.bitrate, 0.05), `bitrate ${m.videoBitrate} vs ffprobe ${want.bitrate}`);
    assert.equal(m.audioCodec, null);
    const report = await running;
    assert.equal(report.ok, true, report.error ?? '');
  });
});
