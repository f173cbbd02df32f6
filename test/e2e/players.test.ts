// Players through the proxy, with real clients: a publisher (stock ffmpeg, or the reference Go Away
// publisher) streams `live/<key>` through the proxy in front of two nginx-rtmp, and an ffmpeg
// player, rtmpdump and GStreamer `rtmp2src` play it through the proxy. Each lands on the
// publisher's backend at once (least connections alone would put it on the other one). Then each
// kind of move: the publisher's backend drains and the proxy migrates the publisher; it drains
// and the publisher, told to go away, reconnects; the player's own backend drains while the
// publisher is on the other one (nginx `push` makes the stream playable on both). Every time each
// player follows its stream on its own connection: no disconnect, no gap in its video timestamps
// longer than one GOP, no more than a GOP of the frames sent while it played missing; the stall
// each saw is printed. A player whose stream is gone from everywhere is closed at once with the
// reason, not left frozen until the drain deadline; with sticky routing, a player that starts
// before the publisher meets it on the key's backend.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, test, type TestContext } from 'node:test';
import { type FlvTag, classifyTag, isMediaFrame, parseFlv } from '../../src/client/flv.js';
import { type EndReason, ReferencePublisher, type ReferencePublisherOptions } from '../../src/client/reference-publisher.js';
import { ffprobePackets } from '../helpers/ffprobe.js';
import { IN_CI, requirePeer, tempDir } from '../helpers/peers.js';
import { eventually } from '../helpers/proxy.js';
import { type ApiSession, type E2eEnv, SAMPLE_FLV, collect, startE2e } from './env.js';

/** The sample's keyframe interval and frame interval (test/fixtures/sample.flv: 10 fps, one keyframe a second). */
const GOP_MS = 1000;
const FRAME_MS = 100;
const GOP_FRAMES = GOP_MS / FRAME_MS;

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
/**
 * ffmpeg publishing the sample in a loop, in real time, until stopped. `sentBy(t)`: video frames
 * it had written by epoch ms `t`, from its progress reports (every 0.1 s; the last one at its end).
 */
function publishLoop(ffmpeg: string, url: string): ReturnType<typeof collect> & { child: ChildProcess; sentBy(t: number): number } {
  const child = spawn(
    ffmpeg,
    [
      ...['-hide_banner', '-nostdin', '-loglevel', 'warning', '-progress', 'pipe:1', '-stats_period', '0.1'],
      ...['-re', '-stream_loop', '-1', '-i', SAMPLE_FLV, '-c', 'copy', '-f', 'flv', url],
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const progress: { at: number; frames: number }[] = [];
  let partial = '';
  child.stdout.on('data', (d: Buffer) => {
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop()!;
    for (const line of lines) {
      const m = /^frame=(\d+)/.exec(line.trim());
      if (m) progress.push({ at: Date.now(), frames: Number(m[1]) });
    }
  });
  const sentBy = (t: number): number => progress.filter((p) => p.at <= t).at(-1)?.frames ?? 0;
  return { ...collect(child), child, sentBy };
}

type PlayerKind = 'ffmpeg' | 'rtmpdump' | 'rtmp2src';

/** One player writing what it receives to `out` (FLV) as it comes, until the connection ends. */
function play(kind: PlayerKind, peers: Peers, url: string, out: string): ReturnType<typeof collect> & { child: ChildProcess } {
  const [exe, args] =
    kind === 'ffmpeg'
      ? [peers.ffmpeg, ['-hide_banner', '-nostdin', '-loglevel', 'warning', '-i', url, '-c', 'copy', '-flush_packets', '1', '-f', 'flv', out]]
      : kind === 'rtmpdump'
        ? [peers.rtmpdump, ['-q', '--live', '-r', url, '-o', out]]
        : [peers.gst, ['-q', 'rtmp2src', `location=${url}`, '!', 'filesink', 'buffer-mode=unbuffered', `location=${out}`]];
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

/** What a player's own file says: its video frames, and its largest gap between two video timestamps (the stall is that minus a frame interval). */
function timeline(ffprobe: string, file: string): { frames: number; maxGapMs: number; stallMs: number } {
  const dts = ffprobePackets(ffprobe, file)
    .filter((x) => x.type === 'video')
    .map((x) => x.dts);
  let max = 0;
  for (let i = 1; i < dts.length; i++) max = Math.max(max, dts[i]! - dts[i - 1]!);
  return { frames: dts.length, maxGapMs: max, stallMs: Math.max(0, max - FRAME_MS) };
}

/**
 * The sample, looped until `stop()`: a stream as long as the test needs. Later rounds carry the
 * media only (the configuration was sent once), with timestamps going on.
 */
function loopedSample(): { tags(): AsyncGenerator<FlvTag>; stop(): void } {
  const tags = parseFlv(readFileSync(SAMPLE_FLV)).tags;
  const video = tags.filter((x) => x.type === 9 && isMediaFrame(classifyTag(x))).map((x) => x.timestamp);
  const period = video.at(-1)! - video[0]! + (video[1]! - video[0]!);
  let stopped = false;
  return {
    async *tags() {
      for (let round = 0; !stopped; round++) {
        for (const tag of tags) {
          if (stopped) return;
          if (round > 0 && !isMediaFrame(classifyTag(tag))) continue;
          yield { ...tag, timestamp: tag.timestamp + round * period };
        }
      }
    },
    stop: () => {
      stopped = true;
    },
  };
}

/** The reference Go Away publisher on the looped sample; `sentSince(t)`: video frames it wrote from epoch ms `t` on. */
function referencePublisher(
  url: string,
  options: ConstructorParameters<typeof ReferencePublisher>[2] = {},
): {
  publisher: ReferencePublisher;
  run: ReturnType<ReferencePublisher['run']>;
  stop(): void;
  sentSince(t: number): number;
} {
  const source = loopedSample();
  const publisher = new ReferencePublisher(source.tags(), url, { speed: 1, ...options });
  const sentAt: number[] = [];
  publisher.on('frame', ({ item }) => {
    if (item.kind === 'keyframe' || item.kind === 'video') sentAt.push(Date.now());
  });
  return { publisher, run: publisher.run(), stop: () => source.stop(), sentSince: (t) => sentAt.filter((x) => x >= t).length };
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
      // Frames ffmpeg wrote before all three played (its progress, read while the event loop is free:
      // no ffprobe has blocked it yet, so each report was stamped when it came).
      const sentBefore = pub.sentBy(Date.now());
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
      // The publisher ends (ffmpeg flushes and reports its last count): every frame it wrote while
      // the players played must reach each of them but one GOP (which also covers their connect).
      pub.child.kill('SIGINT');
      await pub.exited;
      const sent = pub.sentBy(Infinity) - sentBefore;
      assert.ok(sent > 0, 'ffmpeg reported its progress');
      const want = sent - GOP_FRAMES;
      for (const pl of players)
        await eventually(
          () => videoFrames(peers.ffprobe, pl.out) >= want || null,
          `${pl.kind} has the ${sent} frames sent while it played but one GOP`,
          30_000,
        );
      const playerIds = live.map((s) => s.id);
      assert.deepEqual(
        env.proxy.logs.filter((l) => l['msg'] === 'session end' && playerIds.includes(String(l['session']))),
        [],
        'no player was disconnected when its publisher ended',
      );
      for (const pl of players) pl.run.child.kill('SIGINT');
      for (const pl of players) await pl.run.exited;
      // Each player's own received timestamps: the largest gap is the stall it saw at the switch.
      const gaps = players.map((pl) => ({ kind: pl.kind, ...timeline(peers.ffprobe, pl.out) }));
      for (const g of gaps) {
        assert.ok(g.maxGapMs <= GOP_MS, `${g.kind}: a gap of ${g.maxGapMs} ms in its video timestamps (GOP ${GOP_MS} ms)`);
        assert.ok(g.frames >= want, `${g.kind}: ${g.frames} video frames, ${sent} sent while it played`);
      }
      t.diagnostic(
        `proxy-side migration ${from} → ${to} (proxy: ${switched.map((e) => `stall ${String(e['stallMs'])} ms`).join(', ')}); ` +
          gaps
            .map((g) => `${g.kind} stall ${g.stallMs} ms (largest video timestamp gap ${g.maxGapMs} ms; ${g.frames} frames, ${sent} sent while it played)`)
            .join('; '),
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

const KINDS: PlayerKind[] = ['ffmpeg', 'rtmpdump', 'rtmp2src'];

interface Watched {
  kind: PlayerKind;
  out: string;
  run: ReturnType<typeof play>;
}

function startPlayers(peers: Peers, url: string, dir: string, name: string): Watched[] {
  return KINDS.map((k) => {
    const out = join(dir, `${name}-${k}.flv`);
    return { kind: k, out, run: play(k, peers, url, out) };
  });
}

/** `count` 'player switched' lines in the proxy's log (the proxy's recent log printed when they do not come). */
async function switches(env: E2eEnv, count: number): Promise<Record<string, unknown>[]> {
  return eventually(
    () => {
      const e = env.proxy.logs.filter((l) => l['msg'] === 'player switched');
      return e.length === count ? e : null;
    },
    `${count} players switched`,
    30_000,
  ).catch((e: unknown) => {
    console.error(JSON.stringify(env.proxy.logs.slice(-60), null, 0));
    throw e;
  });
}

/** Each player has video; the mark from which every frame sent must reach it (but a GOP): then, and how many frames each had. */
async function playingMark(peers: Peers, players: Watched[]): Promise<{ at: number; had: Map<PlayerKind, number> }> {
  for (const pl of players) await eventually(() => videoFrames(peers.ffprobe, pl.out) >= 30 || null, `${pl.kind} received video`, 30_000);
  const at = Date.now();
  return { at, had: new Map(players.map((pl) => [pl.kind, videoFrames(peers.ffprobe, pl.out)])) };
}

/**
 * After a move: each player goes on playing, on its connection, until it has every frame the
 * publisher wrote since `mark` but one GOP; then its own timestamps show no gap longer than a
 * GOP. Returns what each file says (the stall it saw), for the diagnostic.
 */
async function keptPlaying(
  env: E2eEnv,
  peers: Peers,
  players: Watched[],
  ids: string[],
  pub: ReturnType<typeof referencePublisher>,
  mark: { at: number; had: Map<PlayerKind, number> },
): Promise<string> {
  // The publisher ends: every frame it wrote is on its way.
  pub.stop();
  const report = await pub.run;
  assert.equal(report.ok, true, report.error ?? '');
  const sent = pub.sentSince(mark.at);
  const want = (pl: Watched): number => mark.had.get(pl.kind)! + sent - GOP_FRAMES;
  for (const pl of players)
    await eventually(
      () => videoFrames(peers.ffprobe, pl.out) >= want(pl) || null,
      `${pl.kind} has the ${sent} frames sent while it played but one GOP`,
      30_000,
    );
  const ended = env.proxy.logs.filter((l) => l['msg'] === 'session end' && ids.includes(String(l['session'])));
  assert.deepEqual(ended, [], 'no player was disconnected');
  for (const pl of players) pl.run.child.kill('SIGINT');
  for (const pl of players) await pl.run.exited;
  const lines: string[] = [];
  for (const pl of players) {
    const tl = timeline(peers.ffprobe, pl.out);
    assert.ok(tl.frames >= want(pl), `${pl.kind}: ${tl.frames} video frames, ${sent} sent while it played`);
    assert.ok(tl.maxGapMs <= GOP_MS, `${pl.kind}: a gap of ${tl.maxGapMs} ms in its video timestamps (GOP ${GOP_MS} ms)`);
    lines.push(`${pl.kind} stall ${tl.stallMs} ms (largest video timestamp gap ${tl.maxGapMs} ms; ${tl.frames} frames, ${sent} sent while playing)`);
  }
  return lines.join('; ');
}

/** Publishers that reconnect when told: the reference publisher announcing Go Away, or only E-RTMP Reconnect. */
const RECONNECTING: readonly { name: string; capability: string; endReason: EndReason; options: ReferencePublisherOptions }[] = [
  { name: 'Go Away', capability: 'goaway', endReason: 'go-away', options: {} },
  { name: 'E-RTMP', capability: 'erpc', endReason: 'reconnect-request', options: { goAway: false, erpc: true } },
];

for (const kind of RECONNECTING)
  describe(`e2e: players follow a ${kind.name} publisher that reconnects to the other backend`, () => {
    let env: E2eEnv | null = null;
    let pub: ReturnType<typeof referencePublisher> | null = null;
    const dir = tempDir(`players-${kind.capability}`);
    after(async () => {
      pub?.publisher.abort();
      await env?.stop();
      dir.remove();
    });

    test(`the publisher’s backend drains: told to reconnect (${kind.name}), the publisher reconnects; each player follows on its connection`, async (t) => {
      const peers = requirePeers(t);
      if (peers === null) return;
      env = await startE2e(t, { drainDeadline: '120s', proxyFlags: ['--limits-idle-timeout-ms', '3s'] });
      if (env === null) return;
      const key = `${kind.capability}-${process.pid}`;
      const url = env.proxy.url('live', key);
      pub = referencePublisher(url, kind.options);
      const p = await eventually(async () => (await sessions(env!)).find((s) => s.streamKey === key && s.state === 'publishing'), 'the publisher publishing');
      assert.equal(p.capability, kind.capability);
      const from = p.backend!;
      const to = from === 'b1' ? 'b2' : 'b1';
      const players = startPlayers(peers, url, dir.path, kind.capability);
      const playing = await eventually(async () => {
        const ps = (await sessions(env!)).filter((s) => s.streamKey === key && s.role === 'player' && s.state === 'playing');
        return ps.length === KINDS.length ? ps : null;
      }, 'three players playing');
      for (const s of playing) assert.equal(s.backend, from, `player ${s.id} is on the publisher's backend`);
      const mark = await playingMark(peers, players);

      await env.drain(from);
      const switched = await switches(env, KINDS.length);
      for (const e of switched) assert.deepEqual([e['from'], e['to']], [from, to], JSON.stringify(e));
      const moved = await eventually(() => (pub!.publisher.connections.length === 2 ? pub!.publisher.connections : null), 'the publisher reconnected');
      assert.equal(moved[0]!.endReason, kind.endReason, `the publisher left when told (${kind.name})`);
      const now = await eventually(async () => (await sessions(env!)).find((s) => s.streamKey === key && s.state === 'publishing'), 'publishing again');
      assert.equal(now.backend, to);
      for (const pl of players) {
        const n = videoFrames(peers.ffprobe, pl.out);
        await eventually(() => videoFrames(peers.ffprobe, pl.out) >= n + 30 || null, `${pl.kind} plays after the switch`, 30_000);
      }
      const live = (await sessions(env)).filter((s) => s.streamKey === key && s.role === 'player');
      assert.deepEqual(
        live.map((s) => s.backend),
        KINDS.map(() => to),
        'every player on the publisher’s new backend, on its connection',
      );
      const result = await keptPlaying(
        env,
        peers,
        players,
        playing.map((s) => s.id),
        pub,
        mark,
      );
      t.diagnostic(
        `${kind.name} reconnect ${from} → ${to} (reconnect ${moved[1]!.reconnectMs} ms; proxy: ${switched.map((e) => `stall ${String(e['stallMs'])} ms`).join(', ')}); ${result}`,
      );
    });
  });

describe('e2e: a player whose own backend drains while its publisher is on the other one moves too', () => {
  let env: E2eEnv | null = null;
  let pub: ReturnType<typeof referencePublisher> | null = null;
  const dir = tempDir('players-own-drain');
  after(async () => {
    pub?.publisher.abort();
    await env?.stop();
    dir.remove();
  });

  test('b2 pushes the stream to b1, where the players are; b1 drains: the proxy moves each player to b2 at a keyframe, on its connection', async (t) => {
    const peers = requirePeers(t);
    if (peers === null) return;
    env = await startE2e(t, { drainDeadline: '120s', b2PushesToB1: true, proxyFlags: ['--limits-idle-timeout-ms', '3s'] });
    if (env === null) return;
    const key = `own-${process.pid}`;
    const url = env.proxy.url('live', key);
    // The players come first, while b2 takes no new session: they wait on b1 for a stream not published yet.
    await env.drain('b2');
    const players = startPlayers(peers, url, dir.path, 'own');
    const waiting = await eventually(async () => {
      const ps = (await sessions(env!)).filter((s) => s.streamKey === key && s.role === 'player' && s.backend !== null);
      return ps.length === KINDS.length ? ps : null;
    }, 'three players routed');
    for (const s of waiting) assert.equal(s.backend, 'b1');
    await env.proxy.api('/api/backends/b2/undrain', { method: 'POST' });
    // Least connections: the publisher goes to b2 (b1 has the players); b2 pushes its stream to b1.
    pub = referencePublisher(url);
    const p = await eventually(async () => (await sessions(env!)).find((s) => s.streamKey === key && s.state === 'publishing'), 'the publisher publishing');
    assert.equal(p.backend, 'b2');
    await eventually(
      async () => (await sessions(env!)).filter((s) => s.streamKey === key && s.role === 'player' && s.state === 'playing').length === 3,
      'three players playing',
    );
    const mark = await playingMark(peers, players);

    await env.drain('b1');
    const switched = await switches(env, KINDS.length);
    for (const e of switched) assert.deepEqual([e['from'], e['to']], ['b1', 'b2'], JSON.stringify(e));
    for (const pl of players) {
      const n = videoFrames(peers.ffprobe, pl.out);
      await eventually(() => videoFrames(peers.ffprobe, pl.out) >= n + 30 || null, `${pl.kind} plays after the switch`, 30_000);
    }
    // b1 has no session of the proxy left, long before its deadline: the players did not wait for it.
    await eventually(
      async () => (await env!.proxy.api<{ name: string; sessions: number }[]>('/api/backends')).find((b) => b.name === 'b1')?.sessions === 0,
      'b1 empty',
    );
    const live = (await sessions(env)).filter((s) => s.streamKey === key && s.role === 'player');
    assert.deepEqual(
      live.map((s) => s.backend),
      KINDS.map(() => 'b2'),
    );
    const result = await keptPlaying(
      env,
      peers,
      players,
      waiting.map((s) => s.id),
      pub,
      mark,
    );
    t.diagnostic(`player's backend drained b1 → b2 (proxy: ${switched.map((e) => `stall ${String(e['stallMs'])} ms`).join(', ')}); ${result}`);
  });
});
