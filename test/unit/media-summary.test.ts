// A session's media summary where it leaves the proxy: read back from the fleet registry (another
// replica's, or anyone's, JSON: untrusted), printed by `status` / `drain --wait`, and aggregated
// into metrics without a per-session label.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { writeEtas } from '../../src/progress-line.js';
import { keyframeEtaText, mediaText } from '../../src/control/media-text.js';
import { type MetricsSources, ProxyMetrics } from '../../src/control/metrics.js';
import { readMediaSummary } from '../../src/control/registry.js';
import type { MediaSummary } from '../../src/rtmp/media-telemetry.js';
import { safeText } from '../../src/terminal-text.js';

const HEVC: MediaSummary = {
  videoCodec: 'hevc',
  videoFourcc: 'hvc1',
  videoProfile: 'Main',
  width: 1280,
  height: 720,
  fps: 29.97,
  videoBitrate: 2_500_000,
  audioCodec: 'aac',
  audioFourcc: null,
  sampleRate: 48000,
  channels: 2,
  audioBitrate: 128_000,
  bitrate: 2_628_000,
  keyframeIntervalMs: 2000,
  keyframeAgeMs: 800,
  nextKeyframeInMs: 1200,
};

describe('registry: a record’s media is validated when read back', () => {
  it('a valid summary is kept as it is', () => {
    assert.deepEqual(readMediaSummary(JSON.parse(JSON.stringify(HEVC))), HEVC);
  });

  it('wrong types, implausible numbers, long or unprintable strings, extra fields: null', () => {
    const bad = {
      ...HEVC,
      videoCodec: 'x'.repeat(33),
      videoFourcc: 'hv\u001b1',
      videoProfile: 7,
      width: -1,
      height: 1e9,
      fps: 'NaN',
      videoBitrate: null,
      channels: 2.5e3,
      extra: { deep: [1, 2, 3] },
    };
    const m = readMediaSummary(bad)!;
    assert.deepEqual(
      [m.videoCodec, m.videoFourcc, m.videoProfile, m.width, m.height, m.fps, m.videoBitrate, m.channels],
      [null, null, null, null, null, null, null, null],
    );
    assert.equal(m.audioCodec, 'aac');
    assert.equal('extra' in m, false, 'only the known fields are kept');
    for (const v of [null, undefined, 'h264', 42, [HEVC]]) assert.equal(readMediaSummary(v), null);
  });

  it('property: whatever JSON is there, the result has the known fields only, each null or of its type and bounded', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.dictionary(fc.constantFrom(...Object.keys(HEVC)), fc.jsonValue()), (any, partial) => {
        for (const v of [any, partial]) {
          const m = readMediaSummary(v);
          if (m === null) continue;
          assert.deepEqual(Object.keys(m).sort(), Object.keys(HEVC).sort());
          for (const [k, x] of Object.entries(m)) {
            if (x === null) continue;
            if (typeof HEVC[k as keyof MediaSummary] === 'string' || k === 'audioFourcc')
              assert.ok(typeof x === 'string' && x.length <= 32 && /^[\x20-\x7e]+$/.test(x), k);
            else assert.ok(typeof x === 'number' && Number.isFinite(x) && x >= 0, k);
          }
        }
      }),
    );
  });
});

describe('status and drain --wait text', () => {
  it('one line per publisher; unknown parts left out', () => {
    assert.equal(mediaText(HEVC), 'hevc(hvc1) 1280x720 29.97fps 2.5 Mb/s gop 2.0s + aac 48kHz 2ch 128 kb/s');
    assert.equal(
      mediaText({
        ...HEVC,
        videoFourcc: null,
        width: null,
        fps: null,
        keyframeIntervalMs: null,
        audioCodec: null,
        sampleRate: null,
        channels: null,
        audioBitrate: null,
      }),
      'hevc 2.5 Mb/s',
    );
    assert.equal(mediaText(null), '-');
    assert.equal(keyframeEtaText(HEVC), 'next keyframe in ~1.2s (gop 2.0s)');
    assert.equal(keyframeEtaText({ ...HEVC, nextKeyframeInMs: null }), null);
  });

  it('printed through safeText, a hostile codec name cannot reach the terminal as control bytes', () => {
    const line = safeText(mediaText({ ...HEVC, videoCodec: '\u001b[2J', videoFourcc: 'x\r\ny' }));
    assert.ok(
      [...line].every((c) => c.charCodeAt(0) >= 0x20 && c.charCodeAt(0) !== 0x7f),
      line,
    );
  });
});

describe('drain --wait: when each session waiting for its keyframe moves', () => {
  it('a line per migrating session when its estimate changes; none for sessions told to reconnect or without a GOP yet', () => {
    const out: string[] = [];
    const err = { write: (text: string) => out.push(text) };
    const base = { backend: 'b1', app: 'live', goAwaySentAt: null, client: '1.2.3.4:5', parseFallback: null, replica: 'r1', state: 'publishing' };
    const shown = new Map<string, string>();
    const sessions = [
      { ...base, id: 's1', capability: 'none', media: HEVC },
      { ...base, id: 's2', capability: 'goaway', media: HEVC },
      { ...base, id: 's3', capability: 'none', media: { ...HEVC, nextKeyframeInMs: null } },
      { ...base, id: 's4', capability: 'none', media: null },
    ];
    writeEtas(err, sessions, shown, false);
    assert.deepEqual(out, ['  s1 (live): next keyframe in ~1.2s (gop 2.0s)\n']);
    writeEtas(err, sessions, shown, false);
    assert.equal(out.length, 1, 'unchanged: not repeated');
    sessions[0]!.media = { ...HEVC, nextKeyframeInMs: 300 };
    writeEtas(err, sessions, shown, true);
    assert.deepEqual(out.slice(1), ['\r\x1b[K  s1 (live): next keyframe in ~0.3s (gop 2.0s)\n'], 'over a progress bar, the line is cleared first');
  });
});

describe('metrics: publishers by codec and bitrate histograms, no per-session label', () => {
  it('aggregates the live publishers', async () => {
    const sources: MetricsSources = {
      activeSessions: () => [],
      bytesTotal: () => [],
      backends: () => [],
      busConnected: () => 1,
      media: () => [
        HEVC,
        { ...HEVC, videoCodec: 'h264', videoFourcc: null, bitrate: 900_000, keyframeIntervalMs: 4000 },
        { ...HEVC, videoCodec: 'nonsense', audioCodec: null, audioBitrate: null },
      ],
    };
    const text = await new ProxyMetrics(sources, { defaultMetrics: false }).registry.metrics();
    const value = (series: string): number | undefined => {
      const line = text.split('\n').find((l) => l.startsWith(`${series} `));
      return line === undefined ? undefined : Number(line.slice(series.length + 1));
    };
    assert.equal(value('rtmp_goaway_publishers_by_codec{kind="video",codec="hevc"}'), 1);
    assert.equal(value('rtmp_goaway_publishers_by_codec{kind="video",codec="h264"}'), 1);
    assert.equal(value('rtmp_goaway_publishers_by_codec{kind="video",codec="other"}'), 1, 'a name outside the known set is no new label value');
    assert.equal(value('rtmp_goaway_publishers_by_codec{kind="audio",codec="aac"}'), 2);
    assert.equal(value('rtmp_goaway_publish_bitrate_bits_bucket{le="1000000"}'), 1);
    assert.equal(value('rtmp_goaway_publish_bitrate_bits_count'), 3);
    assert.equal(value('rtmp_goaway_publish_keyframe_interval_seconds_bucket{le="2"}'), 2);
    assert.doesNotMatch(text, /^rtmp_goaway_publish\w*\{[^}]*\b(session|id|client|app)=/m);
  });
});
