// Zero loss, end to end: `rtmp-goaway-proxy publish` (the reference Go Away publisher) streams the
// committed sample through `rtmp-goaway-proxy serve` to one of two nginx-rtmp backends; its
// backend is drained through the control plane mid-stream; the publisher must move to the other
// backend and the two recordings together must hold exactly the frames of the source.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, describe, test } from 'node:test';
import { parseFlv } from '../../src/client/flv.js';
import type { PublishReport } from '../../src/client/reference-publisher.js';
import { ffprobeCounts, ffprobePackets } from '../helpers/ffprobe.js';
import { closedRecordings } from '../helpers/nginx.js';
import { requirePeer, waitForLine } from '../helpers/peers.js';
import { eventually } from '../helpers/proxy.js';
import { type ApiSession, DRAIN_VIA, type E2eEnv, SAMPLE_FLV, collect, spawnCli, startE2e } from './env.js';
import { compareRecordings, describeComparison, mediaFrames } from '../../src/demo/verify.js';

describe('e2e: reference publisher + proxy + two nginx-rtmp + redis, drain mid-stream', () => {
  let env: E2eEnv | null = null;
  after(async () => {
    await env?.stop();
  });

  test('the publisher is told to go away, moves to the other backend, and the recordings hold exactly the frames sent', async (t) => {
    const ffprobe = requirePeer(t, 'ffprobe');
    if (ffprobe === null) return;
    env = await startE2e(t);
    if (env === null) return;
    const key = `zeroloss${process.pid}`;
    const pub = spawnCli(['publish', SAMPLE_FLV, env.proxy.url('live', key), '--json', '--progress']);
    const out = collect(pub);

    const first = await eventually(
      async () => (await env!.proxy.api<ApiSession[]>('/api/sessions')).find((s) => s.state === 'publishing' && s.streamKey === key),
      'the publisher publishing through the proxy',
    );
    assert.equal(first.capability, 'goaway', 'the proxy saw supportsGoAway in connect');
    const from = first.backend as 'b1' | 'b2';
    const to = from === 'b1' ? 'b2' : 'b1';
    // Drain about 2 s into the 8 s stream (progress lines are printed once a second).
    await waitForLine(pub, /▶ media [2-9]\.\d\d s/, 20_000);
    await env.drain(from);

    const { code, stdout, stderr } = await out.exited;
    assert.equal(code, 0, `publisher exit code; output:\n${stderr}`);
    const report = JSON.parse(stdout.trim().split('\n').at(-1)!) as PublishReport;
    assert.equal(report.ok, true, report.error ?? '');
    assert.deepEqual(
      report.connections.map((c) => c.endReason),
      ['go-away', 'end-of-input'],
      'one switch, triggered by Go Away',
    );
    assert.match(stderr, /Go Away \(type 32\) received/);

    // The proxy routed the reconnect (same URL) to the other backend.
    const ends = await eventually(() => {
      const e = env!.proxy.logs.filter((l) => l['msg'] === 'session end' && l['streamKey'] === key);
      return e.length === 2 ? e : null;
    }, 'two session end lines');
    assert.deepEqual(
      ends.map((e) => [e['backend'], e['reason']]),
      [
        [from, 'client-went-away'],
        [to, 'client-closed'],
      ],
    );

    // Recordings: one per backend, both closed.
    const [fileFrom] = await closedRecordings(env.backends[from], key, 1);
    const [fileTo] = await closedRecordings(env.backends[to], key, 1);
    const source = mediaFrames(parseFlv(readFileSync(SAMPLE_FLV)).tags);
    const cmp = compareRecordings(source, [fileFrom!, fileTo!]);
    for (const line of describeComparison(cmp).split('\n')) t.diagnostic(line);
    assert.ok(cmp.zeroLoss, describeComparison(cmp));
    assert.deepEqual(cmp.received, cmp.sent);
    assert.ok(
      cmp.files.every((f) => f.video > 0),
      'both backends got part of the stream',
    );

    // The publisher's own accounting agrees with the recordings, connection by connection.
    assert.deepEqual(
      report.connections.map((c) => [c.video, c.audio]),
      cmp.files.map((f) => [f.video, f.audio]),
    );
    assert.deepEqual(
      cmp.files.map((f) => f.offset),
      report.connections.map((c) => c.firstTimestamp),
      'each recording starts at the connection’s first timestamp (nginx rebases to 0)',
    );

    // ffprobe's view: packet counts and the set of (type, timestamp) of both recordings, shifted
    // back by each connection's first timestamp, equal the source's — no gap, no duplicate.
    const want = ffprobePackets(ffprobe, SAMPLE_FLV).map((p) => `${p.type}@${p.dts}`);
    const got = [fileFrom!, fileTo!].flatMap((f, i) => ffprobePackets(ffprobe, f).map((p) => `${p.type}@${p.dts + report.connections[i]!.firstTimestamp!}`));
    assert.equal(got.length, want.length, 'ffprobe packet count: recordings vs source');
    assert.equal(new Set(got).size, got.length, 'no duplicate timestamp');
    assert.deepEqual([...got].sort(), [...want].sort(), 'same set of video and audio timestamps');
    const counts = [fileFrom!, fileTo!].map((f) => ffprobeCounts(ffprobe, f));
    const src = ffprobeCounts(ffprobe, SAMPLE_FLV);

    const [c1, c2] = report.connections;
    t.diagnostic(
      `drained ${from} via ${DRAIN_VIA}; frames sent ${report.sent.video} video + ${report.sent.audio} audio; ` +
        `${from}: ${counts[0]!.video}+${counts[0]!.audio}, ${to}: ${counts[1]!.video}+${counts[1]!.audio} (ffprobe; source ${src.video}+${src.audio}); ` +
        `Go Away → close ${c1!.closingAt! - c1!.goAwayAt!} ms (rest of the GOP), close → publishing on ${to} ${c2!.reconnectMs} ms, ` +
        `last frame on ${from} → first on ${to} ${c2!.firstFrameAt! - c1!.lastFrameAt!} ms`,
    );
  });
});
