// Late binding with a real client: Debian's ffmpeg publishes through the proxy with stream-key
// routing rules, so the proxy answers ffmpeg's handshake, connect and createStream itself, then
// hands ffmpeg's own bytes to the nginx-rtmp backend the key maps to. The recording must hold every
// frame of the source; a key no rule matches must make ffmpeg fail with the proxy's reason; a drain
// must migrate the late-bound ffmpeg without losing a frame.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, describe, test, type TestContext } from 'node:test';
import { parseFlv } from '../../src/client/flv.js';
import { compareRecordings, describeComparison, mediaFrames } from '../../src/demo/verify.js';
import { ffprobeCounts } from '../helpers/ffprobe.js';
import { closedRecordings } from '../helpers/nginx.js';
import { requirePeer } from '../helpers/peers.js';
import { eventually } from '../helpers/proxy.js';
import { type ApiSession, type E2eEnv, SAMPLE_FLV, collect, startE2e } from './env.js';

const ROUTING = {
  groups: { first: { backends: ['b1'] }, all: { backends: ['b1', 'b2'] } },
  rules: [
    { name: 'pinned', match: { keyPrefix: 'pin-' }, group: 'first' },
    { name: 'sticky', match: { keyPrefix: 'st-' }, group: 'all', sticky: true },
  ],
};

describe('e2e: ffmpeg through stream-key routing (late binding) to nginx-rtmp', () => {
  let env: E2eEnv | null = null;
  async function setup(t: TestContext): Promise<{ ffmpeg: string; ffprobe: string } | null> {
    const ffmpeg = requirePeer(t, 'ffmpeg');
    const ffprobe = requirePeer(t, 'ffprobe');
    if (ffmpeg === null || ffprobe === null) return null;
    env ??= await startE2e(t, { proxyFlags: ['--routing', JSON.stringify(ROUTING), '--migration-switch-timeout-ms', '10s'] });
    return env === null ? null : { ffmpeg, ffprobe };
  }
  after(async () => env?.stop());

  function ffmpegPublish(ffmpeg: string, url: string): ReturnType<typeof collect> {
    return collect(
      spawn(ffmpeg, ['-hide_banner', '-nostdin', '-loglevel', 'verbose', '-re', '-i', SAMPLE_FLV, '-c', 'copy', '-f', 'flv', url], {
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
  }

  test('a pinned key reaches its backend; the recording holds every frame of the source', async (t) => {
    const peers = await setup(t);
    if (peers === null || env === null) return;
    const key = `pin-${process.pid}`;
    const { code, stderr } = await ffmpegPublish(peers.ffmpeg, env.proxy.url('live', key)).exited;
    assert.equal(code, 0, stderr.slice(-2000));
    const [file] = await closedRecordings(env.backends.b1, key, 1);
    assert.equal(env.backends.b2.recordings(key).length, 0);
    const src = ffprobeCounts(peers.ffprobe, SAMPLE_FLV);
    const rec = ffprobeCounts(peers.ffprobe, file!);
    assert.deepEqual(rec, src, 'ffprobe frame counts: recording vs source');
    const cmp = compareRecordings(mediaFrames(parseFlv(readFileSync(SAMPLE_FLV)).tags), [file!]);
    assert.ok(cmp.zeroLoss, describeComparison(cmp));
    const end = env.proxy.logs.find((l) => l['msg'] === 'session end' && l['streamKey'] === key);
    t.diagnostic(
      `ffmpeg routed by key to b1: recording ${rec.video} video + ${rec.audio} audio = source; session end ${JSON.stringify({ reason: end?.['reason'], bytesIn: end?.['bytesIn'] })}`,
    );
  });

  test("a key no rule matches: ffmpeg fails with the proxy's NetConnection.Connect.Rejected reason; no backend sees it", async (t) => {
    const peers = await setup(t);
    if (peers === null || env === null) return;
    const key = `nomatch-${process.pid}`;
    const { code, stderr } = await ffmpegPublish(peers.ffmpeg, env.proxy.url('live', key)).exited;
    assert.notEqual(code, 0);
    assert.match(stderr, /No route for this stream/);
    t.diagnostic(
      `ffmpeg exit ${code}: ${stderr
        .split('\n')
        .find((l) => l.includes('No route'))
        ?.trim()}`,
    );
    assert.equal(env.backends.b1.recordings(key).length + env.backends.b2.recordings(key).length, 0);
  });

  test('a sticky key: the late-bound ffmpeg is migrated when its backend drains, zero frames lost', async (t) => {
    const peers = await setup(t);
    if (peers === null || env === null) return;
    const key = `st-${process.pid}`;
    const run = ffmpegPublish(peers.ffmpeg, env.proxy.url('live', key));
    const s = await eventually(
      async () => (await env!.proxy.api<(ApiSession & { route: string })[]>('/api/sessions')).find((x) => x.streamKey === key && x.state === 'publishing'),
      'ffmpeg publishing',
    );
    assert.equal(s.route, 'sticky: sticky');
    const from = s.backend as 'b1' | 'b2';
    const to = from === 'b1' ? 'b2' : 'b1';
    await new Promise((r) => setTimeout(r, 2000));
    await env.drain(from);
    const { code, stderr } = await run.exited;
    assert.equal(code, 0, stderr.slice(-2000));
    const files = [...(await closedRecordings(env.backends[from], key, 1)), ...(await closedRecordings(env.backends[to], key, 1))];
    const cmp = compareRecordings(mediaFrames(parseFlv(readFileSync(SAMPLE_FLV)).tags), files);
    assert.ok(cmp.zeroLoss, describeComparison(cmp));
    t.diagnostic(
      `late-bound ffmpeg migrated ${from} → ${to}: ${cmp.received.video} video + ${cmp.received.audio} audio received of ${cmp.sent.video} + ${cmp.sent.audio}`,
    );
    await env.proxy.api(`/api/backends/${from}/undrain`, { method: 'POST' });
  });
});
