// Client-controlled memory through real sockets: the hostile connect of issue 14 (nested empty
// objects, ~256 KiB) and clients that leave command messages unfinished on many chunk streams.
// Each is refused, counted and held to its budget while a live publisher next to it loses no frame.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import { RtmpPublisher } from '../../src/client/rtmp-client.js';
import type { ProcessBudget } from '../../src/proxy/buffer-budget.js';
import { ChunkWriter } from '../../src/rtmp/chunk-writer.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { type FakeConnection, FakeRtmpServer } from '../helpers/fake-rtmp-server.js';
import { hostileConnect, incompleteCommands } from '../helpers/hostile-amf.js';
import { type TestProxy, eventually, startTestProxy } from '../helpers/proxy.js';

function handshakeBytes(): Buffer {
  const b = randomBytes(1 + 1536 + 1536);
  b[0] = 3;
  return b;
}

async function rawClient(port: number): Promise<net.Socket> {
  const s = net.connect(port, '127.0.0.1');
  s.on('error', () => {});
  s.on('data', () => {});
  await new Promise<void>((r) => s.once('connect', () => r()));
  return s;
}

const closed = (s: net.Socket): Promise<void> => (s.destroyed ? Promise.resolve() : new Promise((r) => s.once('close', () => r())));

async function metric(tp: TestProxy, re: RegExp): Promise<number> {
  const text = await (await tp.admin('/metrics')).text();
  const m = re.exec(text);
  return m === null ? 0 : Number(m[1]);
}

/** Writes `parts` one by one, each after the previous left the socket (separate reads at the proxy, mostly). */
async function writeEach(s: net.Socket, parts: Buffer[]): Promise<void> {
  for (const p of parts) {
    if (s.destroyed) return;
    await new Promise<void>((r) => s.write(p, () => r()));
  }
}

/**
 * C0+C1, then C2 once S0+S1 came back, as a client does: the proxy opens the backend at C0+C1,
 * and bytes sent before it answered would wait for that connection (counted against the budget).
 */
async function handshake(s: net.Socket): Promise<void> {
  const hs = handshakeBytes();
  let got = 0;
  const answered = new Promise<void>((resolve) => {
    const on = (b: Buffer): void => {
      got += b.length;
      if (got < 1537) return;
      s.off('data', on);
      resolve();
    };
    s.on('data', on);
  });
  s.write(hs.subarray(0, 1537));
  await answered;
  await writeEach(s, [hs.subarray(1537)]);
}

function processBudget(tp: TestProxy): ProcessBudget {
  const any = [...tp.proxy.server.sessions.values()][0];
  assert.ok(any !== undefined, 'a live session');
  return any.budget.process;
}

/** A publisher that sends frames while the test runs; `check()` asserts the backend got every one. */
async function livePublisher(tp: TestProxy, fake: FakeRtmpServer, key: string) {
  const p = new RtmpPublisher(tp.url('live', key), { supportsGoAway: true, chunkSize: 4096 });
  await p.publish();
  const conn: FakeConnection = fake.connections.at(-1)!;
  let sent = 0;
  const send = (n: number): void => {
    for (let i = 0; i < n; i++) p.sendMedia(MessageType.Video, sent * 33, Buffer.alloc(3000, sent++ & 0xff));
  };
  return {
    send,
    async check(): Promise<void> {
      send(5);
      await eventually(() => conn.media === sent, `${key}: ${sent} frames at the backend (have ${conn.media})`);
      assert.equal(conn.parseError, null);
      assert.ok(!p.socket!.destroyed, `${key} was closed`);
    },
    destroy: () => p.destroy(),
  };
}

describe('the hostile connect of issue 14 (onParseError: close)', () => {
  let fake: FakeRtmpServer;
  let tp: TestProxy;

  before(async () => {
    fake = new FakeRtmpServer();
    await fake.listen();
    tp = await startTestProxy({ fake: fake.port }, { healthEnabled: 'false', onParseError: 'close' });
  });
  after(async () => {
    await tp.stop();
    await fake.close();
  });

  test('each is refused as bad-amf and closed, counted; the live publisher next to them loses nothing', async () => {
    const live = await livePublisher(tp, fake, 'live1');
    const w = new ChunkWriter();
    w.chunkSize = 4096;
    const body = hostileConnect();
    const bytes = Buffer.concat([
      handshakeBytes(),
      w.write({ csid: 2, timestamp: 0, typeId: MessageType.SetChunkSize, streamId: 0, payload: Buffer.from([0, 0, 16, 0]) }),
      w.write({ csid: 3, timestamp: 0, typeId: MessageType.CommandAmf0, streamId: 0, payload: body }),
    ]);
    const before = await metric(tp, /rtmp_goaway_parse_fallbacks_total\{direction="c2s",reason="bad-amf"\} (\d+)/);
    const clients = await Promise.all(Array.from({ length: 21 }, () => rawClient(tp.proxy.address.port)));
    for (const s of clients) s.write(bytes);
    live.send(10);
    await Promise.all(clients.map(closed));
    assert.equal(await metric(tp, /rtmp_goaway_parse_fallbacks_total\{direction="c2s",reason="bad-amf"\} (\d+)/), before + 21);
    await eventually(
      () => tp.logs.filter((l) => l['msg'] === 'session end' && l['reason'] === 'parse-error:bad-amf').length === 21,
      '21 sessions ended for bad-amf',
    );
    await live.check();
    live.destroy();
  });
});

describe('unfinished commands on many chunk streams: one budget per session (onParseError: close)', () => {
  let fake: FakeRtmpServer;
  let tp: TestProxy;

  before(async () => {
    fake = new FakeRtmpServer();
    await fake.listen();
    tp = await startTestProxy(
      { fake: fake.port },
      {
        healthEnabled: 'false',
        limitsSessionBufferBytes: '512k',
        onParseError: 'close',
        // 20 clients pushing 5 MiB each through one process on a loaded machine: the backend connects must not time out.
        limitsConnectTimeoutMs: '30s',
      },
    );
  });
  after(async () => {
    await tp.stop();
    await fake.close();
  });

  test("the issue's reproduction (20 sessions × 28 incomplete 256 KiB commands) hits each session's budget: closed, counted, nothing held", async () => {
    const live = await livePublisher(tp, fake, 'live2');
    const proc = processBudget(tp);
    const clients = await Promise.all(Array.from({ length: 20 }, () => rawClient(tp.proxy.address.port)));
    const writes = clients.map((s) => writeEach(s, [handshakeBytes(), ...incompleteCommands()]));
    live.send(10);
    await Promise.all(clients.map(closed));
    await Promise.all(writes);
    const ends = tp.logs.filter((l) => l['msg'] === 'session end').map((l) => l['reason']);
    assert.equal(await metric(tp, /rtmp_goaway_buffer_budget_exceeded_total\{budget="session",outcome="closed"\} (\d+)/), 20, JSON.stringify(ends));
    await eventually(
      () => tp.logs.filter((l) => l['msg'] === 'session end' && l['reason'] === 'parse-error:buffer-budget').length === 20,
      '20 sessions ended for buffer-budget',
    );
    // Each held at most its budget; all of it is given back.
    assert.ok(proc.peak <= 20 * 512 * 1024, `peak ${proc.peak}`);
    assert.equal(proc.held, 0);
    assert.ok(tp.logs.filter((l) => l['msg'] === 'session over its buffer budget').length < 20, 'the log line is rate limited');
    await live.check();
    live.destroy();
  });
});

describe('the process budget bounds all sessions together; the others go on', () => {
  let fake: FakeRtmpServer;
  let tp: TestProxy;

  before(async () => {
    fake = new FakeRtmpServer();
    await fake.listen();
    tp = await startTestProxy({ fake: fake.port }, { healthEnabled: 'false', limitsSessionBufferBytes: '512k', limitsProcessBufferBytes: '1m' });
  });
  after(async () => {
    await tp.stop();
    await fake.close();
  });

  test('8 sessions each within their own budget but 2 MiB together: the process holds ≤ 1 MiB, the late ones fall back, new publishers still work', async () => {
    const live = await livePublisher(tp, fake, 'live3');
    const proc = processBudget(tp);
    const clients = await Promise.all(Array.from({ length: 8 }, () => rawClient(tp.proxy.address.port)));
    // One unfinished 256 KiB command each (192 KiB sent): 256 KiB held per session, under 512 KiB.
    await Promise.all(
      clients.map(async (s) => {
        await handshake(s);
        await writeEach(s, incompleteCommands({ csids: 1 }));
      }),
    );
    // Settled: every hostile session holds its 192 KiB or more, or fell back (the fake backend then
    // closes it: what it gets is no RTMP it knows).
    const fallbacks = /rtmp_goaway_buffer_budget_exceeded_total\{budget="process",outcome="fallback"\} (\d+)/;
    const holding = (): number => [...tp.proxy.server.sessions.values()].filter((x) => x.fallback === null && x.budget.held >= 192 * 1024).length;
    await eventually(async () => holding() + (await metric(tp, fallbacks)) === 8, 'the 8 sessions settled');
    const fellBack = await metric(tp, fallbacks);
    // 8 × 192 KiB is 1.5 MiB: at least 3 had no room.
    assert.ok(fellBack >= 3 && fellBack < 8, `${fellBack} fell back`);
    assert.equal(await metric(tp, /rtmp_goaway_buffer_budget_exceeded_total\{budget="session",[^}]*\} (\d+)/), 0);
    assert.ok(proc.peak <= 1024 * 1024, `peak ${proc.peak}`);
    assert.ok(proc.held >= (8 - fellBack) * 192 * 1024 && proc.held <= 1024 * 1024, `held ${proc.held}`);
    assert.equal(await metric(tp, /rtmp_goaway_buffered_bytes (\d+)/), proc.held);
    // The process is full, yet a new publisher connects and publishes (its commands never wait), and the live one goes on.
    const late = await livePublisher(tp, fake, 'late');
    await late.check();
    await live.check();
    // Closing the holders gives their bytes back.
    for (const s of clients) s.destroy();
    await eventually(() => proc.held === 0, `held ${proc.held} after the holders left`);
    late.destroy();
    live.destroy();
  });
});
