// Limits through real sockets, each alongside good publishers that must lose no frame: per-IP
// session and connect-rate limits (bad clients from 127.0.0.2/3, good ones from 127.0.0.1),
// slowloris and half-open peers closed by the timeouts, and a 500-connection garbage flood next
// to 20 real publishers (bounded in count and time; loopback only; RSS and counts reported).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { RtmpPublisher } from '../../src/client/rtmp-client.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { type FakeConnection, FakeRtmpServer } from '../helpers/fake-rtmp-server.js';
import { type TestProxy, eventually, startTestProxy } from '../helpers/proxy.js';

function connectFrom(port: number, localAddress: string, bytes: Buffer | null = null): Promise<net.Socket> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress }, () => {
      if (bytes !== null) s.write(bytes);
      resolve(s);
    });
    s.on('error', () => {});
    s.on('data', () => {});
  });
}

const closed = (s: net.Socket) => (s.destroyed ? Promise.resolve() : new Promise<void>((r) => s.once('close', () => r())));

async function metric(tp: TestProxy, name: string, labels: string): Promise<number> {
  const text = await (await tp.admin('/metrics')).text();
  const m = new RegExp(`${name}\\{${labels}\\} (\\d+)`).exec(text);
  return m === null ? 0 : Number(m[1]);
}

const c0c1 = (): Buffer => {
  const b = randomBytes(1537);
  b[0] = 3;
  return b;
};

/** A publisher that keeps sending a frame every `everyMs` until stopped; `check()` asserts the backend got every one. */
async function steadyPublisher(tp: TestProxy, fake: FakeRtmpServer, key: string, everyMs = 25) {
  const p = new RtmpPublisher(tp.url('live', key), { supportsGoAway: true, chunkSize: 4096 });
  await p.publish();
  const conn: FakeConnection = fake.connections.at(-1)!;
  let sent = 0;
  const timer = setInterval(() => {
    p.sendMedia(MessageType.Video, sent * 33, Buffer.alloc(1200, sent & 0xff));
    sent++;
  }, everyMs);
  timer.unref();
  return {
    p,
    conn,
    get sent() {
      return sent;
    },
    async stopAndCheck(): Promise<number> {
      clearInterval(timer);
      await eventually(() => conn.media === sent, `${key}: ${sent} frames at the backend (have ${conn.media})`, 10_000);
      assert.equal(conn.parseError, null);
      assert.ok(!p.socket!.destroyed, `${key} was closed`);
      p.destroy();
      return sent;
    },
  };
}

describe('per-IP limits', () => {
  let fake: FakeRtmpServer;
  let tp: TestProxy;

  before(async () => {
    fake = new FakeRtmpServer();
    await fake.listen();
    tp = await startTestProxy(
      { fake: fake.port },
      { healthEnabled: 'false', limitsMaxSessionsPerIp: '3', limitsConnectRatePerIp: '5', limitsConnectBurstPerIp: '8', limitsHandshakeTimeoutMs: '5s' },
    );
  });
  after(async () => {
    await tp.stop();
    await fake.close();
  });

  test('sessions per IP: the 4th from 127.0.0.2 is refused, 127.0.0.1 is not affected, a freed slot is reusable', async () => {
    const good = await steadyPublisher(tp, fake, 'good-ip');
    const n0 = await metric(tp, 'rtmp_goaway_sessions_rejected_total', 'reason="per-ip-sessions"');
    const held = await Promise.all([0, 1, 2].map(() => connectFrom(tp.proxy.address.port, '127.0.0.2', c0c1())));
    await eventually(() => tp.proxy.server.sessions.size === 4, '3 sessions from 127.0.0.2 + the good one');
    const fourth = await connectFrom(tp.proxy.address.port, '127.0.0.2', c0c1());
    await closed(fourth);
    assert.equal(await metric(tp, 'rtmp_goaway_sessions_rejected_total', 'reason="per-ip-sessions"'), n0 + 1);
    assert.ok(tp.logs.some((l) => l['msg'] === 'connection refused' && l['reason'] === 'per-ip-sessions' && l['ip'] === '127.0.0.2'));
    held[0]!.destroy();
    await eventually(() => tp.proxy.server.sessions.size === 3, 'slot freed');
    const again = await connectFrom(tp.proxy.address.port, '127.0.0.2', c0c1());
    await eventually(() => tp.proxy.server.sessions.size === 4, 'freed slot reused');
    for (const s of [...held, again]) s.destroy();
    await good.stopAndCheck();
  });

  test('connect rate per IP: a burst of 30 from 127.0.0.3 gets the bucket (8), the rest refused; 127.0.0.1 unaffected', async () => {
    const tp2 = await startTestProxy({ fake: fake.port }, { healthEnabled: 'false', limitsConnectRatePerIp: '5', limitsConnectBurstPerIp: '8' });
    try {
      const n0 = await metric(tp2, 'rtmp_goaway_sessions_rejected_total', 'reason="per-ip-rate"');
      const t0 = Date.now();
      const socks = await Promise.all(Array.from({ length: 30 }, () => connectFrom(tp2.proxy.address.port, '127.0.0.3')));
      // Every connection is either a session or refused (the accepts are processed after the connects resolve).
      await eventually(
        async () => tp2.proxy.server.sessions.size + (await metric(tp2, 'rtmp_goaway_sessions_rejected_total', 'reason="per-ip-rate"')) - n0 === 30,
        'all 30 connections handled',
      );
      // Every admission happened within [t0, now]: the bucket can have refilled by at most 5/s over that window.
      const elapsedMs = Date.now() - t0;
      const refused = (await metric(tp2, 'rtmp_goaway_sessions_rejected_total', 'reason="per-ip-rate"')) - n0;
      // The burst (8) is admitted, plus at most what refilled while connecting (5/s).
      const refilled = Math.floor((elapsedMs / 1000) * 5);
      assert.ok(refused <= 30 - 8 && refused >= 30 - 8 - refilled, `refused ${refused} (refill ≤ ${refilled} in ${elapsedMs} ms)`);
      const good = await steadyPublisher(tp2, fake, 'good-rate');
      await eventually(() => good.sent >= 8, 'the good publisher sends while the burst is held');
      for (const s of socks) s.destroy();
      await good.stopAndCheck();
    } finally {
      await tp2.stop();
    }
  });
});

describe('slowloris and half-open peers', () => {
  test('closed by the handshake / idle timeouts while a good publisher loses no frame', async () => {
    const fake = new FakeRtmpServer();
    await fake.listen();
    const tp = await startTestProxy({ fake: fake.port }, { healthEnabled: 'false', limitsHandshakeTimeoutMs: '1s', limitsIdleTimeoutMs: '1500ms' });
    try {
      const good = await steadyPublisher(tp, fake, 'good-slow');
      // Slowloris: one handshake byte every 100 ms (well inside the idle timeout): only the handshake timeout ends it.
      const slow = await connectFrom(tp.proxy.address.port, '127.0.0.1');
      const hs = c0c1();
      let i = 0;
      const drip = setInterval(() => {
        if (!slow.destroyed) slow.write(hs.subarray(i, ++i));
      }, 100);
      // Half-open: a publisher that completes publish, then goes silent and stops reading.
      const silent = new RtmpPublisher(tp.url('live', 'silent'), { supportsGoAway: true });
      await silent.publish();
      silent.socket!.pause();
      const t0 = Date.now();
      const closedSlow = closed(slow).then(() => Date.now() - t0);
      const closedSilent = closed(silent.socket!).then(() => Date.now() - t0);
      const [slowMs, silentMs] = await Promise.all([closedSlow, closedSilent]);
      clearInterval(drip);
      // Timers never fire early, so the lower bounds hold on any machine; the upper ones only guard
      // against a timeout that never fires (a loaded event loop may add seconds).
      assert.ok(slowMs >= 800 && slowMs < 1000 + 15_000, `slowloris closed after ${slowMs} ms`);
      assert.ok(silentMs >= 1200 && silentMs < 1500 + 15_000, `half-open closed after ${silentMs} ms`);
      const ends = () => tp.logs.filter((l) => l['msg'] === 'session end').map((l) => l['reason']);
      await eventually(() => ends().length === 2, 'both session end lines');
      assert.ok(ends().includes('handshake-timeout'), ends().join());
      assert.ok(ends().includes('client-idle') || ends().includes('backend-idle'), ends().join());
      // A loaded machine runs the publisher's timer late: wait for its frames rather than expect a rate.
      await eventually(() => good.sent > 40, `good publisher sent ${good.sent}`);
      const sent = await good.stopAndCheck();
      assert.ok(sent > 40, `good publisher sent ${sent}`);
      silent.destroy();
    } finally {
      await tp.stop();
      await fake.close();
    }
  });
});

describe('garbage flood', () => {
  test('500 garbage connections alongside 20 real publishers: every frame delivered, flood gone within the timeouts', async () => {
    const fake = new FakeRtmpServer();
    await fake.listen();
    // The timeouts must outlast the proxy accepting the whole flood (its accepts lag the client
    // connects by a second or more on a loaded machine), else the first ones end before the last
    // ones start and the flood is not concurrent. Every flood connection lacks a `connect`: the
    // handshake deadline ends them all, blind-forwarded ones included.
    const HANDSHAKE_MS = 4000;
    const IDLE_MS = 5000;
    const tp = await startTestProxy(
      { fake: fake.port },
      { healthEnabled: 'false', logLevel: 'error', limitsHandshakeTimeoutMs: `${HANDSHAKE_MS}ms`, limitsIdleTimeoutMs: `${IDLE_MS}ms` },
    );
    const FLOOD = 500;
    const PUBLISHERS = 20;
    try {
      const pubs = [];
      for (let i = 0; i < PUBLISHERS; i++) pubs.push(await steadyPublisher(tp, fake, `flood-pub-${i}`, 40));
      global.gc?.();
      const rss0 = process.memoryUsage().rss;
      let rssMax = rss0;
      let peakSessions = 0;
      const sampler = setInterval(() => {
        rssMax = Math.max(rssMax, process.memoryUsage().rss);
        peakSessions = Math.max(peakSessions, tp.proxy.server.sessions.size);
      }, 20);
      const t0 = Date.now();
      // Thirds: an HTTP-ish scanner (blind-forwarded, then idle), an RTMP handshake followed by
      // random chunk bytes (parse fallback or close, then idle), and silence (handshake timeout).
      const kinds = [
        () => Buffer.concat([Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), randomBytes(2048)]),
        () => Buffer.concat([c0c1(), randomBytes(1536), randomBytes(4096)]),
        () => null,
      ];
      const flood: net.Socket[] = [];
      for (let i = 0; i < FLOOD; i += 50) {
        flood.push(...(await Promise.all(Array.from({ length: 50 }, (_, k) => connectFrom(tp.proxy.address.port, '127.0.0.1', kinds[(i + k) % 3]!())))));
      }
      const connectedMs = Date.now() - t0;
      await eventually(() => tp.proxy.server.sessions.size === PUBLISHERS, `flood sessions closed (left ${tp.proxy.server.sessions.size})`, 60_000);
      const goneMs = Date.now() - t0;
      clearInterval(sampler);
      // The proxy ended every flood socket (none of them closed itself).
      await eventually(() => flood.every((s) => s.destroyed || s.readableEnded), 'every flood socket ended by the proxy', 5000);
      let frames = 0;
      for (const p of pubs) frames += await p.stopAndCheck();
      const rssMb = (n: number) => Math.round(n / 1024 / 1024);
      console.log(
        `# flood: ${FLOOD} garbage connections in ${connectedMs} ms (peak ${peakSessions} sessions), all gone after ${goneMs} ms; ` +
          `${PUBLISHERS} publishers delivered all ${frames} frames; RSS ${rssMb(rss0)} → peak ${rssMb(rssMax)} MiB (+${rssMb(rssMax - rss0)})`,
      );
      assert.ok(peakSessions >= PUBLISHERS + FLOOD * 0.8, `the flood was concurrent (peak ${peakSessions} sessions)`);
      // A guard against a timeout that never fires: the idle sweep period and a loaded event loop may add seconds.
      assert.ok(goneMs < connectedMs + IDLE_MS + 20_000, `flood gone after ${goneMs} ms`);
      assert.ok(rssMax - rss0 < 200 * 1024 * 1024, `RSS grew by ${rssMb(rssMax - rss0)} MiB`);
      for (const s of flood) s.destroy();
    } finally {
      await tp.stop();
      await fake.close();
    }
  });
});
