// Players through the proxy, with real clients: stock ffmpeg publishes `live/<key>` through the
// proxy in front of two nginx-rtmp, and an ffmpeg player, rtmpdump and GStreamer `rtmp2src` play
// it through the proxy. Each must land on the publisher's backend at once (least connections
// alone would put it on the other one) and receive the stream. When the publisher's backend
// drains (the publisher is migrated by the proxy), a player cannot follow its stream: it is closed
// at once with reason `player-stream-moved`, not left frozen until the drain deadline. With sticky
// routing, a player that starts before the publisher meets it on the key's backend.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test, type TestContext } from 'node:test';
import { ffprobePackets } from '../helpers/ffprobe.js';
import { IN_CI, requirePeer, tempDir } from '../helpers/peers.js';
import { eventually } from '../helpers/proxy.js';
import { type ApiSession, type E2eEnv, SAMPLE_FLV, collect, startE2e } from './env.js';

/** The sample's keyframe interval (test/fixtures/sample.flv: one keyframe a second). */
const GOP_MS = 1000;

type PlayerSession = ApiSession & { role: string | null; route: string | null };

interface Peers {
  ffmpeg: string;
  ffprobe: string;
  rtmpdump: string;
  gst: string;
}

/** GStreamer's rtmp2src lives in gstreamer1.0-plugins-bad: gst-launch-1.0 alone is not enough. */
function requireRtmp2src(t: TestContext): string | null {
  const gst = requirePeer(t, 'gst-launch-1.0');
  if (gst === null) return null;
  const inspect = spawnSync('gst-inspect-1.0', ['rtmp2src'], { encoding: 'utf8' });
  if (inspect.status === 0) return gst;
  const msg = 'GStreamer rtmp2src is not installed (apt-get install gstreamer1.0-plugins-bad; .ci/run installs it)';
  if (IN_CI) throw new Error(`CI=true and a required peer is missing: ${msg}`);
  t.skip(msg);
  return null;
}

function requirePeers(t: TestContext): Peers | null {
  const ffmpeg = requirePeer(t, 'ffmpeg');
  const ffprobe = requirePeer(t, 'ffprobe');
  const rtmpdump = requirePeer(t, 'rtmpdump');
  const gst = requireRtmp2src(t);
  return ffmpeg === null || ffprobe === null || rtmpdump === null || gst === null ? null : { ffmpeg, ffprobe, rtmpdump, gst };
}

/** ffmpeg publishing the sample in a loop, in real time, until killed. */
function publishLoop(ffmpeg: string, url: string): ReturnType<typeof collect> & { child: ChildProcess } {
  const child = spawn(
    ffmpeg,
    ['-hide_banner', '-nostdin', '-loglevel', 'warning', '-re', '-stream_loop', '-1', '-i', SAMPLE_FLV, '-c', 'copy', '-f', 'flv', url],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  return { ...collect(child), child };
}

type PlayerKind = 'ffmpeg' | 'rtmpdump' | 'rtmp2src';

/** One player writing what it receives to `out` (FLV), until the connection ends. */
function play(kind: PlayerKind, peers: Peers, url: string, out: string): ReturnType<typeof collect> & { child: ChildProcess } {
  const [exe, args] =
    kind === 'ffmpeg'
      ? [peers.ffmpeg, ['-hide_banner', '-nostdin', '-loglevel', 'warning', '-i', url, '-c', 'copy', '-f', 'flv', out]]
      : kind === 'rtmpdump'
        ? [peers.rtmpdump, ['-q', '--live', '-r', url, '-o', out]]
        : [peers.gst, ['-q', 'rtmp2src', `location=${url}`, '!', 'filesink', `location=${out}`]];
  const child = spawn(exe, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  return { ...collect(child), child };
}

/** Video frames in what a player wrote so far (a file still being written may not parse yet: 0). */
function videoFrames(ffprobe: string, file: string): number {
  if (!existsSync(file) || statSync(file).size === 0) return 0;
  try {
    return ffprobePackets(ffprobe, file).filter((p) => p.type === 'video').length;
  } catch {
    return 0;
  }
}

async function sessions(env: E2eEnv): Promise<PlayerSession[]> {
  return env.proxy.api<PlayerSession[]>('/api/sessions');
}

describe('e2e: players through the proxy (ffmpeg, rtmpdump, GStreamer rtmp2src) in front of two nginx-rtmp', () => {
  let env: E2eEnv | null = null;
  const dir = tempDir('players');
  after(async () => {
    await env?.stop();
    dir.remove();
  });

  test('each player lands on the publisher’s backend at once; when it drains (publisher migrated) each follows its stream, on its connection', async (t) => {
    const peers = requirePeers(t);
    if (peers === null) return;
    // A drain deadline far beyond the test: a player closed by it would be the freeze this test rules out.
    // A client idle timeout shorter than the test: players say nothing for long stretches, yet are alive.
    env = await startE2e(t, { drainDeadline: '120s', proxyFlags: ['--migration-switch-timeout-ms', '10s', '--limits-idle-timeout-ms', '3s'] });
    if (env === null) return;
    const key = `pl-${process.pid}`;
    const url = env.proxy.url('live', key);
    const pub = publishLoop(peers.ffmpeg, url);
    try {
      const p = await eventually(async () => (await sessions(env!)).find((s) => s.streamKey === key && s.state === 'publishing'), 'ffmpeg publishing');
      assert.equal(p.role, 'publisher');
      const from = p.backend!;
      const kinds: PlayerKind[] = ['ffmpeg', 'rtmpdump', 'rtmp2src'];
      const players = kinds.map((k) => ({ kind: k, out: join(dir.path, `${k}.flv`), run: play(k, peers, url, join(dir.path, `${k}.flv`)) }));
      const playing = await eventually(async () => {
        const ps = (await sessions(env!)).filter((s) => s.streamKey === key && s.role === 'player' && s.state === 'playing');
        return ps.length === kinds.length ? ps : null;
      }, 'three players playing');
      for (const s of playing) {
        assert.equal(s.backend, from, `player ${s.id} is on the publisher's backend`);
        assert.equal(s.route, 'stream: local');
      }
      // Each receives the stream, for longer than the client idle timeout: 60 frames at 10 fps.
      for (const pl of players) await eventually(() => videoFrames(peers.ffprobe, pl.out) >= 60 || null, `${pl.kind} received video`, 30_000);

      const before = Object.fromEntries(players.map((pl) => [pl.kind, videoFrames(peers.ffprobe, pl.out)]));
      await env.drain(from);
      const switched = await eventually(
        () => {
          const e = env!.proxy.logs.filter((l) => l['msg'] === 'player switched');
          return e.length === kinds.length ? e : null;
        },
        'the three players switched',
        30_000,
      ).catch((e: unknown) => {
        console.error(JSON.stringify(env!.proxy.logs.slice(-60), null, 0));
        throw e;
      });
      const to = from === 'b1' ? 'b2' : 'b1';
      for (const e of switched) assert.equal(e['to'], to, JSON.stringify(e));
      // They go on playing from the other backend, on the same connection: 30 more frames each.
      for (const pl of players)
        await eventually(() => videoFrames(peers.ffprobe, pl.out) >= before[pl.kind]! + 30 || null, `${pl.kind} plays after the switch`, 30_000);
      const live = (await sessions(env)).filter((s) => s.streamKey === key && s.role === 'player');
      assert.equal(live.length, kinds.length, 'no player was disconnected');
      for (const s of live) assert.equal(s.backend, to);
      assert.equal(env.proxy.logs.filter((l) => l['msg'] === 'session end' && l['streamKey'] === key).length, 0, 'no session of the stream ended');
      const metrics = await (await fetch(`http://127.0.0.1:${env.proxy.adminPort}/metrics`)).text();
      assert.match(metrics, /rtmp_goaway_player_switches_total\{result="switched"\} 3/);
      assert.match(metrics, /rtmp_goaway_players_routed_total\{how="local"\} 3/);
      // The drained backend is empty well before its deadline: the publisher migrated, the players followed.
      await eventually(
        async () => (await env!.proxy.api<{ name: string; sessions: number }[]>('/api/backends')).find((b) => b.name === from)?.sessions === 0,
        `${from} empty`,
      );
      for (const pl of players) pl.run.child.kill('SIGINT');
      for (const pl of players) await pl.run.exited;
      // Each player's own received timestamps: the largest gap is the stall it saw at the switch.
      const gaps = players.map((pl) => {
        const dts = ffprobePackets(peers.ffprobe, pl.out)
          .filter((x) => x.type === 'video')
          .map((x) => x.dts);
        let max = 0;
        for (let i = 1; i < dts.length; i++) max = Math.max(max, dts[i]! - dts[i - 1]!);
        return { kind: pl.kind, frames: dts.length, maxGapMs: max };
      });
      for (const g of gaps) assert.ok(g.maxGapMs <= 2 * GOP_MS, `${g.kind}: a gap of ${g.maxGapMs} ms in its video timestamps (GOP ${GOP_MS} ms)`);
      t.diagnostic(
        `players followed the migrated publisher ${from} → ${to} (${switched.map((e) => `stall ${String(e['stallMs'])} ms`).join(', ')}); ` +
          gaps.map((g) => `${g.kind} ${g.frames} video frames, largest timestamp gap ${g.maxGapMs} ms`).join('; '),
      );
      await env.proxy.api(`/api/backends/${from}/undrain`, { method: 'POST' });
    } finally {
      pub.child.kill('SIGKILL');
      await pub.exited;
    }
  });
});

describe('e2e: with sticky routing a player started before its publisher meets it', () => {
  let env: E2eEnv | null = null;
  const dir = tempDir('players-sticky');
  after(async () => {
    await env?.stop();
    dir.remove();
  });

  test('the player waits on the key’s backend and plays as soon as ffmpeg publishes', async (t) => {
    const peers = requirePeers(t);
    if (peers === null) return;
    const routing = { groups: { all: { backends: ['b1', 'b2'] } }, rules: [{ name: 'sticky', group: 'all', sticky: true }] };
    env = await startE2e(t, { proxyFlags: ['--routing', JSON.stringify(routing)] });
    if (env === null) return;
    const key = `early-${process.pid}`;
    const url = env.proxy.url('live', key);
    const out = join(dir.path, 'early.flv');
    const player = play('ffmpeg', peers, url, out);
    const waiting = await eventually(
      async () => (await sessions(env!)).find((s) => s.streamKey === key && s.role === 'player' && s.backend !== null),
      'the player routed',
    );
    assert.equal(waiting.route, 'sticky: sticky');
    const pub = publishLoop(peers.ffmpeg, url);
    try {
      const p = await eventually(async () => (await sessions(env!)).find((s) => s.streamKey === key && s.state === 'publishing'), 'ffmpeg publishing');
      assert.equal(p.backend, waiting.backend, 'publisher and player on the key’s backend');
      await eventually(() => videoFrames(peers.ffprobe, out) >= 10 || null, 'the early player received video', 30_000);
      t.diagnostic(`player and publisher met on ${p.backend}`);
    } finally {
      player.child.kill('SIGTERM');
      await player.exited;
      pub.child.kill('SIGKILL');
      await pub.exited;
    }
  });
});

describe('e2e: a player whose stream is gone from everywhere is closed at once with the reason', () => {
  let env: E2eEnv | null = null;
  const dir = tempDir('players-gone');
  after(async () => {
    await env?.stop();
    dir.remove();
  });

  test('the publisher ends on a draining backend: the player is closed (player-stream-moved) after players.followTimeoutMs, not at the drain deadline', async (t) => {
    const peers = requirePeers(t);
    if (peers === null) return;
    // The publisher stays on the draining backend (deadline-close) until it stops; the deadline is far away.
    env = await startE2e(t, { drainDeadline: '120s', proxyFlags: ['--drain-non-capable', 'deadline-close', '--players-follow-timeout-ms', '1s'] });
    if (env === null) return;
    const key = `gone-${process.pid}`;
    const url = env.proxy.url('live', key);
    const pub = publishLoop(peers.ffmpeg, url);
    const out = join(dir.path, 'gone.flv');
    let player: ReturnType<typeof play> | null = null;
    try {
      const p = await eventually(async () => (await sessions(env!)).find((s) => s.streamKey === key && s.state === 'publishing'), 'publishing');
      player = play('ffmpeg', peers, url, out);
      const ps = await eventually(
        async () => (await sessions(env!)).find((s) => s.streamKey === key && s.role === 'player' && s.state === 'playing'),
        'playing',
      );
      assert.equal(ps.backend, p.backend);
      await eventually(() => videoFrames(peers.ffprobe, out) >= 10 || null, 'the player received video', 30_000);
      await env.drain(p.backend!);
      pub.child.kill('SIGKILL');
      await pub.exited;
      const end = await eventually(() => env!.proxy.logs.find((l) => l['msg'] === 'session end' && l['session'] === ps.id), 'the player closed', 30_000);
      assert.equal(end['reason'], 'player-stream-moved');
      await player.exited;
      const metrics = await (await fetch(`http://127.0.0.1:${env.proxy.adminPort}/metrics`)).text();
      assert.match(metrics, /rtmp_goaway_player_switches_total\{result="closed"\} 1/);
      t.diagnostic(`player closed ${String(end['reason'])} after ${String(end['durationMs'])} ms of life; the drain deadline was 120 s`);
      await env.proxy.api(`/api/backends/${p.backend!}/undrain`, { method: 'POST' });
    } finally {
      player?.child.kill('SIGKILL');
      pub.child.kill('SIGKILL');
    }
  });
});
