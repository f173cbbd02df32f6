// Faults through real sockets and real peers: an nginx-rtmp backend SIGKILLed under a streaming
// publisher, then restarted on the same port; backends that reset or blackhole a session; Redis
// SIGKILLed and restarted under a publisher. Each fault closes only the sessions it touches,
// promptly and counted; health checks and the control bus recover on their own.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type net from 'node:net';
import { describe, test } from 'node:test';
import { classifyTag, isMediaFrame, parseFlv } from '../../src/client/flv.js';
import { RtmpPublisher } from '../../src/client/rtmp-client.js';
import { type EmbeddedBackend, startNginxRtmp } from '../../src/demo/backends.js';
import { type FakeConnection, FakeRtmpServer } from '../helpers/fake-rtmp-server.js';
import { closedRecordings, requireNginxRtmp } from '../helpers/nginx.js';
import { requirePeer, tempDir } from '../helpers/peers.js';
import { type TestProxy, eventually, startTestProxy } from '../helpers/proxy.js';
import { type TestRedis, startRedis } from '../helpers/redis.js';
import { SyntheticMedia } from '../helpers/synthetic-media.js';

interface ApiBackend {
  name: string;
  state: string;
}

/** Sum of `rtmp_goaway_sessions_closed_total` over the reasons `reason` matches. */
async function closedWith(tp: TestProxy, reason: RegExp): Promise<number> {
  const text = await (await tp.admin('/metrics')).text();
  let n = 0;
  for (const m of text.matchAll(/^rtmp_goaway_sessions_closed_total\{backend="[^"]*",reason="([^"]+)"\} (\d+)$/gm)) if (reason.test(m[1]!)) n += Number(m[2]);
  return n;
}

async function stateOf(tp: TestProxy, name: string): Promise<string | undefined> {
  return (await tp.api<ApiBackend[]>('/api/backends')).find((b) => b.name === name)?.state;
}

/** `session end` reasons the proxy logged. */
const endReasons = (tp: TestProxy): string[] => tp.logs.filter((l) => l['msg'] === 'session end').map((l) => String(l['reason']));

/** Resolves when the socket is closed (whoever closed it), with the time it happened. */
function whenClosed(pub: RtmpPublisher): Promise<number> {
  const s = pub.socket!;
  return s.destroyed && s.closed ? Promise.resolve(Date.now()) : new Promise((r) => s.once('close', () => r(Date.now())));
}

/** Resolves on the socket's 'drain' or 'close', or after `ms` (the caller re-checks). */
function drainOrClose(s: net.Socket, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      s.off('drain', done);
      s.off('close', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    s.once('drain', done);
    s.once('close', done);
  });
}

/** Metadata and sequence headers (two media messages), then `count` frames of `media`. */
function sendFrames(pub: RtmpPublisher, media: SyntheticMedia, count: number, config = true): void {
  if (config) for (const m of media.config()) pub.sendMedia(m.typeId, 0, m.payload);
  for (let i = 0; i < count; i++) {
    const m = media.next();
    pub.sendMedia(m.typeId, m.timestamp, m.payload);
  }
}

/** A publisher sending its sequence headers, then a video frame every `everyMs` until `stop()`; `sent()`: media messages so far. */
function stream(pub: RtmpPublisher, everyMs = 20): { sent(): number; stop(): void } {
  const media = new SyntheticMedia({ gop: 25, fps: 25, audio: false });
  sendFrames(pub, media, 0);
  let n = 2;
  const timer = setInterval(() => {
    if (pub.socket === null || pub.socket.destroyed) return;
    sendFrames(pub, media, 1, false);
    n++;
  }, everyMs);
  return { sent: () => n, stop: () => clearInterval(timer) };
}

/** Health checks every 200 ms, down after 2 failures, up after 1 success. */
const FAST_HEALTH = { healthIntervalMs: '200ms', healthTimeoutMs: '150ms', healthFall: '2', healthRise: '1' };

describe('an nginx-rtmp backend killed and restarted', () => {
  test('SIGKILL mid-stream: the client is closed and counted, b1 goes down; restarted on its port, it takes new publishers once up', async (t) => {
    const nginx = requireNginxRtmp(t);
    if (nginx === null) return;
    const dir = tempDir('faults-nginx');
    const b2 = new FakeRtmpServer();
    let b1: EmbeddedBackend | null = null;
    let tp: TestProxy | null = null;
    const pubs: RtmpPublisher[] = [];
    try {
      b1 = await startNginxRtmp({ dir: dir.path, exe: nginx.exe, module: nginx.module });
      const port = b1.port;
      await b2.listen();
      tp = await startTestProxy({ b1: port, b2: b2.port }, FAST_HEALTH);
      const pub = new RtmpPublisher(tp.url('live', 'killed'), { supportsGoAway: true, chunkSize: 4096 });
      pub.on('error', () => {});
      pubs.push(pub);
      await pub.publish();
      assert.equal((await tp.api<{ backend: string }[]>('/api/sessions'))[0]?.backend, 'b1', 'the first publisher on b1');
      const media = stream(pub);
      await eventually(() => media.sent() >= 25, 'streaming');
      const closedBefore = await closedWith(tp, /^backend-/);
      const closed = whenClosed(pub);
      const killedAt = Date.now();
      b1.child.kill('SIGKILL');
      const closedAt = await closed;
      media.stop();
      console.log(`# publisher closed by the proxy ${closedAt - killedAt} ms after the backend's SIGKILL`);
      // backend-closed (nginx-rtmp had read everything: FIN) or backend-error (RST).
      await eventually(async () => (await closedWith(tp!, /^backend-/)) === closedBefore + 1, 'the session end counted with a backend-* reason');
      console.log(`# session end reason: ${endReasons(tp).at(-1)}`);
      await eventually(async () => (await stateOf(tp!, 'b1')) === 'down', 'b1 down in /api/backends');
      const downAt = Date.now();
      await b1.stop();
      // Meanwhile new publishers go to b2.
      const meanwhile = new RtmpPublisher(tp.url('live', 'meanwhile'), { supportsGoAway: true });
      pubs.push(meanwhile);
      await meanwhile.publish();
      const publishedOnB2 = (): number => b2.connections.filter((c) => c.commands.includes('publish')).length; // health probes connect too
      assert.equal(publishedOnB2(), 1, 'a publisher arriving while b1 is down lands on b2');

      // Restarted where the proxy expects it: health checks bring it back, the next publisher goes
      // there (least connections: b2 has one).
      b1 = await startNginxRtmp({ dir: dir.path, exe: nginx.exe, module: nginx.module, port });
      const restartedAt = Date.now();
      await eventually(async () => (await stateOf(tp!, 'b1')) === 'up', 'b1 up again in /api/backends');
      console.log(`# b1 down in /api/backends ${downAt - killedAt} ms after the SIGKILL, up ${Date.now() - restartedAt} ms after its restart`);
      const again = new RtmpPublisher(tp.url('live', 'restarted'), { supportsGoAway: true, chunkSize: 4096 });
      pubs.push(again);
      await again.publish();
      const FRAMES = 50;
      sendFrames(again, new SyntheticMedia({ gop: 25, fps: 25, audio: false, seed: 2 }), FRAMES);
      await again.unpublish();
      const [file] = await closedRecordings(b1, 'restarted', 1);
      const frames = parseFlv(readFileSync(file!)).tags.filter((tag) => isMediaFrame(classifyTag(tag))).length;
      assert.equal(frames, FRAMES, 'every frame recorded by the restarted backend');
      assert.equal(publishedOnB2(), 1, 'nothing else went to b2');
    } finally {
      for (const p of pubs) p.destroy();
      await tp?.stop();
      await b1?.stop();
      await b2.close();
      dir.remove();
    }
  });
});

describe('a backend that resets or blackholes a session', () => {
  test('reset: the client is closed (backend-error); blackhole: closed by the idle timeout (backend-stalled); a bystander on the same backend loses nothing', async () => {
    const fake = new FakeRtmpServer();
    await fake.listen();
    const tp = await startTestProxy({ fake: fake.port }, { healthEnabled: 'false', limitsIdleTimeoutMs: '1s' });
    const pubs: RtmpPublisher[] = [];
    const publisher = async (key: string): Promise<{ pub: RtmpPublisher; conn: FakeConnection }> => {
      const pub = new RtmpPublisher(tp.url('live', key), { supportsGoAway: true, chunkSize: 4096 });
      pub.on('error', () => {});
      pubs.push(pub);
      await pub.publish();
      return { pub, conn: fake.connections.at(-1)! };
    };
    try {
      const bystander = await publisher('bystander');
      const steady = stream(bystander.pub);

      // Reset mid-stream: RST from the backend.
      const reset = await publisher('reset');
      const resetMedia = stream(reset.pub);
      await eventually(() => reset.conn.media >= 10, 'the reset victim streaming');
      const errors0 = await closedWith(tp, /^backend-error$/);
      const resetClosed = whenClosed(reset.pub);
      reset.conn.socket.resetAndDestroy();
      await resetClosed;
      resetMedia.stop();
      await eventually(async () => (await closedWith(tp, /^backend-error$/)) === errors0 + 1, 'the reset counted as backend-error');

      // Blackhole: the backend stops reading (and never sends). The publisher writes as fast as it
      // may; the proxy's backpressure stops reading it, nothing moves, the idle timeout ends it.
      const hole = await publisher('blackhole');
      hole.conn.socket.pause();
      const stalled0 = await closedWith(tp, /^backend-stalled$/);
      const holeClosed = whenClosed(hole.pub);
      let gone = false;
      void holeClosed.then(() => (gone = true));
      const media = new SyntheticMedia({ gop: 25, keyframeSize: 64 * 1024, frameSize: 64 * 1024, audio: false });
      const until = Date.now() + 30_000;
      while (!gone) {
        if (Date.now() > until) throw new Error('timed out waiting for the blackholed session to be closed');
        const m = media.next();
        if (!hole.pub.sendMedia(m.typeId, m.timestamp, m.payload)) await drainOrClose(hole.pub.socket!, 1000);
      }
      await eventually(async () => (await closedWith(tp, /^backend-stalled$/)) === stalled0 + 1, 'the blackholed session counted as backend-stalled');
      console.log(
        `# blackhole: ${hole.pub.socket!.bytesWritten} bytes written by the publisher, ${hole.conn.bytesReceived} read by the backend before it stopped; session end: ${endReasons(tp).at(-1)}`,
      );

      // Only those two sessions ended.
      steady.stop();
      await eventually(() => bystander.conn.media === steady.sent(), `the bystander's frames all at the backend (${bystander.conn.media}/${steady.sent()})`);
      assert.ok(!bystander.pub.socket!.destroyed);
      assert.equal(tp.proxy.server.sessions.size, 1);
    } finally {
      for (const p of pubs) p.destroy();
      await tp.stop();
      await fake.close();
    }
  });
});

describe('Redis killed and restarted under a publisher', () => {
  test('SIGKILL: forwarding goes on byte for byte, bus_connected 0 then 1, a drain published after the restart reaches the publisher', async (t) => {
    const exe = requirePeer(t, 'redis-server');
    if (exe === null) return;
    const prefix = 'rgp-faults';
    const fake = new FakeRtmpServer();
    await fake.listen();
    let redis: TestRedis = await startRedis(exe);
    const port = redis.port;
    const tp = await startTestProxy(
      { b1: fake.port },
      { redisUrl: redis.url, redisPrefix: prefix, replicaId: 'faults', redisHeartbeatMs: '200ms', healthEnabled: 'false' },
    );
    const pub = new RtmpPublisher(tp.url('live', 'through-redis-outage'), { supportsGoAway: true, chunkSize: 4096 });
    const busConnected = async (): Promise<number> => Number(/^rtmp_goaway_bus_connected (\d+)$/m.exec(await (await tp.admin('/metrics')).text())?.[1]);
    try {
      const wentAway = new Promise<void>((r) => pub.once('goaway', () => r()));
      await pub.publish();
      const conn = fake.connections.at(-1)!;
      const media = stream(pub);
      assert.equal(await busConnected(), 1);

      redis.child.kill('SIGKILL');
      await redis.remove();
      await eventually(async () => (await busConnected()) === 0, 'rtmp_goaway_bus_connected 0');
      const atKill = media.sent();
      await eventually(() => conn.media >= atKill + 25, 'frames forwarded while Redis is down');

      redis = await startRedis(exe, { port });
      await eventually(async () => (await busConnected()) === 1, 'rtmp_goaway_bus_connected 1 after the restart');
      // The replica re-subscribes on reconnect: publish until it hears (a repeated drain is harmless).
      await eventually(async () => (await redis.client.publish(`${prefix}:control`, 'drain b1 1m after the restart')) === 1, 'the replica subscribed again');
      await wentAway;
      media.stop();
      await eventually(() => conn.media === media.sent(), `every frame at the backend (${conn.media}/${media.sent()})`);
      await eventually(() => conn.bytesReceived === pub.socket!.bytesWritten, 'every byte at the backend');
      assert.equal(conn.parseError, null);
      assert.ok(!pub.socket!.destroyed, 'the publisher was never closed');
      assert.equal(fake.connections.length, 1, 'no reconnect: one backend connection throughout');
    } finally {
      pub.destroy();
      await tp.stop();
      await fake.close();
      await redis.remove();
    }
  });
});
