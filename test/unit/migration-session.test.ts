// The migration state machine of a Session, end to end on loopback with a scripted client (the
// project's RtmpPublisher sending synthetic media) and scripted backends: every failure point
// of the new backend (refused, handshake error, connect/publish rejected, silence, death before
// and at the switch), retries on another backend, the switch timeout and the drain deadline —
// and in every failure before the switch, the old backend still gets every frame. After each
// test, with its client and backends gone, the session must have ended by itself
// (TestProxy.settled); `scripts/run-tests.mjs stress` runs this file with the event loop
// stalled (test/helpers/stress.ts).
import assert from 'node:assert/strict';
import net from 'node:net';
import { afterEach, describe, test } from 'node:test';
import { RtmpPublisher } from '../../src/client/rtmp-client.js';
import { stressFromEnv } from '../helpers/stress.js';
import { type TestProxy, eventually, startTestProxy } from '../helpers/proxy.js';
import { type RecordingConnection, RecordingRtmpServer, type ServerScript, hashBody } from '../helpers/recording-rtmp-server.js';
import { type MediaMessage, SyntheticMedia } from '../helpers/synthetic-media.js';

interface ApiSession {
  id: string;
  backend: string;
  state: string;
  migrations: number;
}

interface Rig {
  tp: TestProxy;
  servers: Record<string, RecordingRtmpServer>;
  pub: RtmpPublisher;
  media: SyntheticMedia;
  sent: MediaMessage[];
  send(n: number): void;
  close(): Promise<void>;
}

stressFromEnv();

const rigs: Rig[] = [];
afterEach(async () => {
  for (const r of rigs.splice(0)) await r.close();
});

/** b1 takes the session; the others are migration targets with their scripts (null = a closed port). */
async function rig(targets: Record<string, ServerScript | null>, flags: Record<string, unknown> = {}, gop = 10): Promise<Rig> {
  const servers: Record<string, RecordingRtmpServer> = { b1: new RecordingRtmpServer({ chunkSize: 4096 }) };
  const ports: Record<string, number> = { b1: await servers['b1']!.listen() };
  for (const [name, script] of Object.entries(targets)) {
    if (script === null) {
      const s = net.createServer();
      await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
      ports[name] = (s.address() as net.AddressInfo).port;
      await new Promise<void>((r) => s.close(() => r()));
      continue;
    }
    servers[name] = new RecordingRtmpServer({ chunkSize: 4096, ...script });
    ports[name] = await servers[name]!.listen();
  }
  const tp = await startTestProxy(ports, {
    healthEnabled: 'false',
    drainDeadlineMs: '30s',
    migrationTimeoutMs: '500ms',
    migrationSwitchTimeoutMs: '5s',
    ...flags,
  });
  const pub = new RtmpPublisher(tp.url('live', 'k'), { chunkSize: 4096 });
  pub.on('error', () => {});
  await pub.publish();
  const media = new SyntheticMedia({ gop, seed: 5 });
  const sent: MediaMessage[] = [];
  for (const c of media.config()) pub.sendMedia(c.typeId, 0, c.payload);
  const r: Rig = {
    tp,
    servers,
    pub,
    media,
    sent,
    send(n) {
      for (let i = 0; i < n; i++) {
        const m = media.next();
        pub.sendMedia(m.typeId, m.timestamp, m.payload);
        sent.push(m);
      }
    },
    async close() {
      pub.destroy();
      for (const s of Object.values(servers)) await s.close();
      try {
        await tp.settled();
      } finally {
        await tp.stop();
      }
    },
  };
  rigs.push(r);
  r.send(5);
  const s = await eventually(async () => (await tp.api<ApiSession[]>('/api/sessions')).find((x) => x.state === 'publishing'), 'publishing');
  assert.equal(s.backend, 'b1');
  return r;
}

const frames = (c: RecordingConnection) => c.messages.filter((m) => m.kind === 'keyframe' || m.kind === 'video' || m.kind === 'audio').map((m) => m.hash);

async function metric(tp: TestProxy, re: RegExp): Promise<number> {
  const m = re.exec(await (await tp.admin('/metrics')).text());
  return m === null ? 0 : Number(m[1]);
}

/** Keeps publishing (3 messages every 10 ms) until `done`. */
async function sendUntil(r: Rig, done: () => Promise<boolean> | boolean, what: string, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    r.send(3);
    await new Promise((res) => setTimeout(res, 10));
  }
}

async function drainB1(r: Rig): Promise<Record<string, number>> {
  return (await r.tp.api<{ outcomes: Record<string, number> }>('/api/backends/b1/drain?force=1', { method: 'POST' })).outcomes;
}

/** After a failed migration the session is still on b1, publishing, and b1 has every frame. */
async function stillOnB1(r: Rig): Promise<void> {
  r.send(20);
  const b1 = r.servers['b1']!.publishersOf('k')[0]!;
  await eventually(() => frames(b1).length === r.sent.length, 'every frame at b1');
  assert.deepEqual(
    frames(b1),
    r.sent.map((m) => m.hash),
  );
  const s = (await r.tp.api<ApiSession[]>('/api/sessions'))[0]!;
  assert.equal(s.backend, 'b1');
  assert.equal(s.migrations, 0);
  assert.equal(r.pub.socket?.destroyed, false, 'the client is still connected');
}

describe('migration failure points', () => {
  test('target refuses the TCP connection: migration fails, the session stays on b1, lossless', async () => {
    const r = await rig({ b2: null });
    assert.deepEqual(await drainB1(r), { migrating: 1 });
    await eventually(async () => (await metric(r.tp, /rtmp_goaway_migrations_total\{result="failed",reason="refused"\} (\d+)/)) === 1, 'failed: refused');
    assert.equal(await metric(r.tp, /rtmp_goaway_migration_attempts_failed_total\{backend="b2",reason="refused"\} (\d+)/), 1);
    await stillOnB1(r);
  });

  test('handshake error on one target, then success on the next', async () => {
    const r = await rig({ b2: { handshake: 'bad-version' }, b3: {} });
    await drainB1(r);
    await sendUntil(r, async () => (await r.tp.api<ApiSession[]>('/api/sessions'))[0]?.backend === 'b3', 'switched to b3');
    r.send(10);
    await r.pub.unpublish();
    const a = r.servers['b1']!.publishersOf('k')[0]!;
    const b = r.servers['b3']!.publishersOf('k')[0]!;
    await eventually(() => a.closed && b.closed, 'closed');
    assert.deepEqual(
      [...frames(a), ...frames(b)],
      r.sent.map((m) => m.hash),
    );
    assert.equal(await metric(r.tp, /rtmp_goaway_migration_attempts_failed_total\{backend="b2",reason="handshake"\} (\d+)/), 1);
    assert.equal(await metric(r.tp, /rtmp_goaway_migrations_total\{result="ok",reason="ok"\} (\d+)/), 1);
  });

  for (const [what, script, reason] of [
    ['connect rejected', { connect: 'reject' }, 'connect-rejected'],
    ['publish rejected (BadName)', { publish: 'reject' }, 'publish-rejected'],
    ['publish never answered', { publish: 'ignore' }, 'publish-timeout'],
    ['connect never answered', { connect: 'ignore' }, 'publish-timeout'],
    ['handshake never answered (connection closed)', { handshake: 'close' }, 'backend-closed'],
  ] as const) {
    test(`${what}: failed (${reason}), the session stays on b1, lossless`, async () => {
      const r = await rig({ b2: script });
      await drainB1(r);
      r.send(10);
      const re = new RegExp(`rtmp_goaway_migrations_total\\{result="failed",reason="${reason}"\\} (\\d+)`);
      await eventually(async () => (await metric(r.tp, re)) === 1, `failed: ${reason}`);
      await stillOnB1(r);
    });
  }

  test('target dies after publishing, before the keyframe: disarmed, held bytes flushed, stays on b1', async () => {
    const r = await rig({ b2: { dieAfterPublishMs: 150 } }, {}, 100_000);
    await drainB1(r);
    const t0 = Date.now();
    while (Date.now() - t0 < 400) {
      r.send(3);
      await new Promise((res) => setTimeout(res, 10));
    }
    await eventually(
      async () => (await metric(r.tp, /rtmp_goaway_migrations_total\{result="failed",reason="backend-closed"\} (\d+)/)) === 1,
      'failed: backend-closed',
    );
    await stillOnB1(r);
  });

  test('no keyframe within migration.switchTimeoutMs: abandoned, stays on b1, lossless', async () => {
    const r = await rig({ b2: {} }, { migrationSwitchTimeoutMs: '300ms' }, 100_000);
    await drainB1(r);
    const t0 = Date.now();
    while (Date.now() - t0 < 500) {
      r.send(3);
      await new Promise((res) => setTimeout(res, 10));
    }
    await eventually(async () => (await metric(r.tp, /rtmp_goaway_migrations_total\{result="failed",reason="switch-timeout"\} (\d+)/)) === 1, 'switch timeout');
    await stillOnB1(r);
    const b2 = r.servers['b2']!.publishersOf('k')[0]!;
    await eventually(() => b2.closed, 'the abandoned target connection is closed');
    assert.equal(frames(b2).length, 0);
  });

  test('the drain deadline while the migration waits for a keyframe closes the session', async () => {
    const r = await rig({ b2: {} }, { drainDeadlineMs: '300ms' }, 100_000);
    await drainB1(r);
    r.send(5);
    await eventually(() => r.pub.socket?.destroyed, 'closed at the deadline');
    await eventually(async () => (await metric(r.tp, /rtmp_goaway_migrations_total\{result="failed",reason="drain-deadline"\} (\d+)/)) === 1, 'counted');
    const b2 = r.servers['b2']!.publishersOf('k')[0]!;
    await eventually(() => b2.closed, 'the target connection is closed too');
  });

  test('target dies at the switch (on the replayed headers): the session ends, the old backend was unpublished cleanly', async () => {
    // A loaded machine may take long to publish on b2: the migration timeout is not what this tests.
    const r = await rig({ b2: { dieAfterMedia: 1 } }, { migrationTimeoutMs: '20s' });
    let closed = false;
    r.pub.on('close', () => (closed = true));
    await drainB1(r);
    await sendUntil(r, () => closed, 'the client connection ends', 30_000);
    const b1 = r.servers['b1']!.publishersOf('k')[0]!;
    await eventually(() => b1.closed, 'b1 closed');
    assert.deepEqual(
      b1.commands.slice(-2).map((c) => c.name),
      ['FCUnpublish', 'deleteStream'],
    );
    const hashes = frames(b1);
    assert.deepEqual(
      hashes,
      r.sent.slice(0, hashes.length).map((m) => m.hash),
      'b1 has a prefix of the frames, up to the keyframe',
    );
    const end = await eventually(() => r.tp.logs.find((l) => l['msg'] === 'session end'), 'session end');
    assert.match(String(end['reason']), /^backend-/);
  });

  test('target stalls after the switch, then dies while the client is paused for it: the session still ends', async () => {
    // The proxy stops reading the client while the new backend does not read (backpressure). When
    // that backend dies the client gets FIN and leaves: the proxy must still see it leave.
    const r = await rig({ b2: { stallAfterMedia: 5 } }, { limitsIdleTimeoutMs: '10m' });
    await drainB1(r);
    await sendUntil(r, async () => (await r.tp.api<ApiSession[]>('/api/sessions'))[0]?.migrations === 1, 'switched to b2');
    const b2 = await eventually(() => r.servers['b2']!.publishersOf('k')[0], 'published on b2');
    const sock = r.pub.socket!;
    const body = Buffer.alloc(256 * 1024, 5);
    body[0] = 0x27; // AVC inter frame
    let ts = 1_000_000;
    // Write until the client's own queue grows: b2, then the proxy, stopped reading (256 MiB at most).
    for (let i = 0; i < 1024 && sock.writableLength < 1 << 20; i++) {
      r.pub.sendMedia(9, (ts += 33), body);
      await new Promise((res) => setImmediate(res));
    }
    assert.ok(sock.writableLength >= 1 << 20, 'the client is throttled');
    const finFromProxy = new Promise((res) => sock.once('end', res));
    b2.socket.destroy();
    await finFromProxy;
    r.pub.destroy();
    const end = await eventually(() => r.tp.logs.find((l) => l['msg'] === 'session end'), 'session end');
    assert.match(String(end['reason']), /^backend-/);
  });

  test('an audio-only publisher (no video, so no keyframe) switches at an audio message, lossless', async () => {
    const r = await rig({ b2: {} });
    // A second publisher on b1 (b2 takes no new session meanwhile) that never sends video.
    await r.tp.api('/api/backends/b2/drain?force=1', { method: 'POST' });
    const pub = new RtmpPublisher(r.tp.url('live', 'radio'), { chunkSize: 4096 });
    pub.on('error', () => {});
    await pub.publish();
    await r.tp.api('/api/backends/b2/undrain', { method: 'POST' });
    pub.sendMedia(8, 0, Buffer.from([0xaf, 0, 0x12, 0x10]));
    const sent: string[] = [];
    let ts = 0;
    const sendAudio = (n: number): void => {
      for (let i = 0; i < n; i++) {
        const body = Buffer.alloc(200, i & 0xff);
        body[0] = 0xaf;
        body[1] = 1;
        body.writeUInt32BE(ts, 2);
        pub.sendMedia(8, ts, body);
        sent.push(hashBody(body));
        ts += 21;
      }
    };
    sendAudio(20);
    await drainB1(r);
    const until = Date.now() + 5000;
    while ((await r.tp.api<ApiSession[]>('/api/sessions')).filter((x) => x.migrations === 1).length < 2 && Date.now() < until) {
      sendAudio(3);
      r.send(3);
      await new Promise((res) => setTimeout(res, 10));
    }
    sendAudio(20);
    await pub.unpublish();
    const a = r.servers['b1']!.publishersOf('radio')[0]!;
    const b = r.servers['b2']!.publishersOf('radio')[0]!;
    await eventually(() => a.closed && b.closed, 'closed');
    assert.deepEqual([...frames(a), ...frames(b)], sent);
    assert.ok(frames(b).length > 0);
    assert.deepEqual(
      b.messages.slice(0, 1).map((m) => m.kind),
      ['audio-config'],
      'the AAC sequence header first',
    );
    pub.destroy();
  });

  test('no other backend at all: not migrating (waiting), closed at the deadline', async () => {
    const r = await rig({}, { drainDeadlineMs: '300ms' });
    assert.deepEqual(await drainB1(r), { waiting: 1 });
    await eventually(() => r.pub.socket?.destroyed, 'closed at the deadline');
    assert.equal(await metric(r.tp, /rtmp_goaway_migrations_total\{result="failed",reason="no-backend"\} (\d+)/), 1);
  });

  test('drain.nonCapable deadline-close and ignore', async () => {
    const r = await rig({ b2: {} }, { drainNonCapable: 'deadline-close', drainDeadlineMs: '200ms' });
    assert.deepEqual(await drainB1(r), { waiting: 1 });
    await eventually(() => r.pub.socket?.destroyed, 'closed at the deadline');
    const q = await rig({ b2: {} }, { drainNonCapable: 'ignore', drainDeadlineMs: '200ms' });
    assert.deepEqual(await drainB1(q), { ignored: 1 });
    await new Promise((res) => setTimeout(res, 400));
    await stillOnB1(q);
  });
});
