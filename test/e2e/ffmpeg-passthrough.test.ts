// A publisher without Go Away (Debian's ffmpeg) through the proxy to nginx-rtmp: the proxy must
// be byte-transparent both ways (checked by TCP taps in front of the proxy and of each backend),
// the recording must hold every frame of the source, and on a drain ffmpeg must not be sent
// type 32 (its server→client bytes stay identical) but be closed at the drain deadline.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { after, describe, test, type TestContext } from 'node:test';
import { parseFlv } from '../../src/client/flv.js';
import { HANDSHAKE_TOTAL } from '../../src/rtmp/constants.js';
import { ffprobeCounts } from '../helpers/ffprobe.js';
import { closedRecordings } from '../helpers/nginx.js';
import { requirePeer } from '../helpers/peers.js';
import { eventually } from '../helpers/proxy.js';
import { type ApiSession, DRAIN_VIA, type E2eEnv, SAMPLE_FLV, collect, startE2e } from './env.js';
import { compareRecordings, describeComparison, mediaFrames } from '../../src/demo/verify.js';
import { TcpTap } from './tcp-tap.js';

interface Peers {
  ffmpeg: string;
  ffprobe: string;
}

describe('e2e: ffmpeg (no Go Away) through the proxy to nginx-rtmp', () => {
  let env: E2eEnv | null = null;
  const taps: Record<string, TcpTap> = {};
  let front: TcpTap | null = null;

  /** Peers and the shared environment, started by the first test that runs. */
  async function setup(t: TestContext): Promise<Peers | null> {
    const ffmpeg = requirePeer(t, 'ffmpeg');
    const ffprobe = requirePeer(t, 'ffprobe');
    if (ffmpeg === null || ffprobe === null) return null;
    if (env === null) {
      env = await startE2e(t, {
        // This file checks the deadline-close policy; proxy-side migration is test/e2e/migration-ffmpeg.test.ts.
        // Plain pass-through (players balanced, no late binding): the bytes are compared as they were sent.
        proxyFlags: ['--drain-non-capable', 'deadline-close', '--players-routing', 'balance'],
        route: async (name, backend) => {
          taps[name] = new TcpTap(backend.port);
          return taps[name].listen();
        },
      });
      if (env === null) return null;
      front = new TcpTap(env.proxy.port);
      await front.listen();
    }
    return { ffmpeg, ffprobe };
  }

  after(async () => {
    await front?.close();
    await env?.stop();
    for (const tap of Object.values(taps)) await tap.close();
  });

  /** ffmpeg -re -i sample.flv -c copy -f flv <url>: publishes the sample in real time, unchanged. */
  function ffmpegPublish(ffmpeg: string, url: string): ReturnType<typeof collect> {
    return collect(
      spawn(ffmpeg, ['-hide_banner', '-nostdin', '-loglevel', 'verbose', '-re', '-i', SAMPLE_FLV, '-c', 'copy', '-f', 'flv', url], {
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
  }

  /**
   * The backend-side tap connection carrying the session that published `key` (FFmpeg's C1 is
   * not random — fixed PRNG seed — so the handshake cannot tell sessions apart; the key can).
   */
  function backendSide(key: string): { name: string; bytes: { c2s: Buffer; s2c: Buffer }; closed: boolean } {
    const hits = Object.entries(taps).flatMap(([name, tap]) =>
      tap.connections
        .filter((c) => c.clientBytes().includes(key))
        .map((c) => ({ name, bytes: { c2s: c.clientBytes(), s2c: c.serverBytes() }, closed: c.closed })),
    );
    assert.equal(hits.length, 1, 'exactly one backend connection carries the session');
    return hits[0]!;
  }

  test('forwarded byte-exact both ways; the recording holds every frame of the source', async (t) => {
    const peers = await setup(t);
    if (peers === null || env === null) return;
    const key = `ffexact${process.pid}`;
    const run = ffmpegPublish(peers.ffmpeg, `rtmp://127.0.0.1:${front!.port}/live/${key}`);
    const { code, stderr } = await run.exited;
    assert.equal(code, 0, stderr.slice(-2000));
    await eventually(() => front!.connections.at(-1)!.closed, 'the client-side connection closed');

    const client = front!.connections.at(-1)!;
    const side = await eventually(() => {
      const s = backendSide(key);
      return s.closed ? s : null;
    }, 'the backend-side connection closed');
    const backendConn = side.bytes;
    assert.ok(client.clientBytes().length > HANDSHAKE_TOTAL + 100_000, 'the whole stream went through');
    assert.ok(client.clientBytes().equals(backendConn.c2s), `client→server bytes identical (${client.clientBytes().length} vs ${backendConn.c2s.length})`);
    assert.ok(client.serverBytes().equals(backendConn.s2c), `server→client bytes identical (${client.serverBytes().length} vs ${backendConn.s2c.length})`);

    const backend = env.backends[side.name as 'b1' | 'b2'];
    const [file] = await closedRecordings(backend, key, 1);
    const src = ffprobeCounts(peers.ffprobe, SAMPLE_FLV);
    const rec = ffprobeCounts(peers.ffprobe, file!);
    assert.deepEqual(rec, src, 'ffprobe frame counts: recording vs source');
    const cmp = compareRecordings(mediaFrames(parseFlv(readFileSync(SAMPLE_FLV)).tags), [file!]);
    assert.ok(cmp.zeroLoss, describeComparison(cmp));
    t.diagnostic(
      `ffmpeg via ${side.name}: ${client.clientBytes().length} B up, ${client.serverBytes().length} B down, byte-exact; recording ${rec.video} video + ${rec.audio} audio = source ${src.video} + ${src.audio}`,
    );
  });

  test('on drain it is not sent type 32 and is closed at the drain deadline', async (t) => {
    const peers = await setup(t);
    if (peers === null || env === null) return;
    const key = `ffdrain${process.pid}`;
    const before = front!.connections.length;
    const run = ffmpegPublish(peers.ffmpeg, `rtmp://127.0.0.1:${front!.port}/live/${key}`);
    const session = await eventually(
      async () => (await env!.proxy.api<ApiSession[]>('/api/sessions')).find((s) => s.streamKey === key && s.state === 'publishing'),
      'ffmpeg publishing',
    );
    assert.equal(session.capability, 'none', 'Debian ffmpeg does not announce Go Away');
    const deadlineMs = 1500;
    const drainedAt = Date.now();
    await env.drain(session.backend!, { deadlineMs });

    const { code, stderr } = await run.exited;
    const end = await eventually(() => env!.proxy.logs.find((l) => l['msg'] === 'session end' && l['streamKey'] === key), 'session end logged');
    assert.equal(end['reason'], 'drain-deadline');
    assert.equal(end['goAwaySent'], false);
    assert.notEqual(code, 0, 'ffmpeg lost its connection before the end of its input');
    // FFmpeg logs an unknown message type at verbose level ("Unknown packet type received 0x20").
    assert.doesNotMatch(stderr, /unknown packet type[^\n]*0x20\b/i, 'ffmpeg never saw a type-32 message');

    // Nothing was injected: the client received exactly the backend's bytes.
    const client = front!.connections[before]!;
    await eventually(() => client.closed, 'client-side connection closed');
    const side = await eventually(() => {
      const s = backendSide(key);
      return s.closed ? s : null;
    }, 'the backend-side connection closed');
    assert.ok(client.clientBytes().subarray(0, side.bytes.c2s.length).equals(side.bytes.c2s), 'client→server bytes forwarded unchanged (up to the close)');
    assert.ok(client.serverBytes().equals(side.bytes.s2c), 'server→client bytes identical: no Go Away injected');
    const metrics = await (await fetch(`http://127.0.0.1:${env.proxy.adminPort}/metrics`)).text();
    assert.doesNotMatch(metrics, /rtmp_goaway_goaway_sent_total\{[^}]*\} [1-9]/, 'no Go Away sent at all');
    t.diagnostic(
      `ffmpeg drained from ${session.backend} via ${DRAIN_VIA}: closed by the proxy ${Date.now() - drainedAt} ms after the drain (deadline ${deadlineMs} ms), ffmpeg exit ${code}`,
    );
  });
});
