// Routing rules through real sockets: the proxy answers the handshake (and, for stream-key rules,
// connect and createStream) itself, picks the backend by app or key, then hands the client's own
// bytes to it. Backends are the scriptable recording server (any app, every message hashed).
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { RtmpPublisher } from '../../src/client/rtmp-client.js';
import { isAmf0Object } from '../../src/rtmp/amf0.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { type Command, RECONNECT_REQUEST_CODE, readStatusCode } from '../../src/rtmp/messages.js';
import { type TestProxy, eventually, startTestProxy } from '../helpers/proxy.js';
import { RecordingRtmpServer, hashBody } from '../helpers/recording-rtmp-server.js';

interface ApiSession {
  id: string;
  backend: string | null;
  app: string | null;
  state: string;
  route: string | null;
}

/** An AVC-looking video body (keyframe or not) and an AAC-looking audio body, distinct per index. */
function video(i: number, keyframe: boolean): Buffer {
  const b = Buffer.alloc(1500 + (i % 7) * 300, i & 0xff);
  b[0] = keyframe ? 0x17 : 0x27;
  b[1] = 1;
  return b;
}
function audio(i: number): Buffer {
  return Buffer.from([0xaf, 0x01, i & 0xff, (i >> 8) & 0xff, 7, 7]);
}

/** Publishes media messages [from, from+count) (keyframe every 10th video); returns the hashes sent. */
async function sendMedia(pub: RtmpPublisher, from: number, count: number): Promise<string[]> {
  const sent: string[] = [];
  for (let i = from; i < from + count; i++) {
    const v = video(i, i % 10 === 0);
    const a = audio(i);
    pub.sendMedia(MessageType.Video, i * 40, v);
    pub.sendMedia(MessageType.Audio, i * 40 + 5, a);
    sent.push(hashBody(v), hashBody(a));
  }
  await new Promise((r) => setImmediate(r));
  return sent;
}

function mediaHashes(server: RecordingRtmpServer, key: string): string[] {
  return server.publishersOf(key).flatMap((c) => c.messages.filter((m) => m.typeId === MessageType.Video || m.typeId === MessageType.Audio).map((m) => m.hash));
}

/** Connects and publishes; resolves with the `_error` the proxy sent instead, if it did. */
async function publishOrRejection(pub: RtmpPublisher): Promise<Command | null> {
  let rejected: Command | null = null;
  pub.on('command', (cmd) => {
    if (cmd.name === '_error') rejected = cmd;
  });
  pub.on('error', () => {});
  try {
    await pub.publish();
    return null;
  } catch (err) {
    if (rejected !== null) return rejected;
    throw err;
  }
}

function statusInfo(cmd: Command): Record<string, unknown> {
  const info = cmd.args[0];
  assert.ok(isAmf0Object(info ?? null), 'the _error carries an info object');
  return info as Record<string, unknown>;
}

async function metric(tp: TestProxy, name: string, labels: string): Promise<number> {
  const text = await (await tp.admin('/metrics')).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`) && l.includes(labels));
  return line === undefined ? 0 : Number(line.split(' ').at(-1));
}

describe('routing by app: two backend groups', () => {
  const servers: Record<string, RecordingRtmpServer> = {};
  let tp: TestProxy;
  const pubs: RtmpPublisher[] = [];

  before(async () => {
    for (const n of ['live1', 'live2', 'dvr1']) {
      servers[n] = new RecordingRtmpServer({ chunkSize: 4096 });
      await servers[n].listen();
    }
    tp = await startTestProxy(Object.fromEntries(Object.entries(servers).map(([n, s]) => [n, s.port])), {
      routing: {
        groups: { live: { backends: ['live*'] }, dvr: { backends: ['dvr1'] } },
        rules: [
          { name: 'recordings', match: { app: ['record', 'dvr'] }, group: 'dvr' },
          { name: 'live', match: { app: 'live' }, group: 'live' },
        ],
      },
      healthEnabled: false,
      drainDeadlineMs: '10s',
    });
  });
  after(async () => {
    for (const p of pubs) p.destroy();
    await tp?.stop();
    for (const s of Object.values(servers)) await s.close();
  });

  test('each app reaches its group; media arrives byte-exact; /api/sessions says which rule placed it', async () => {
    const rec = new RtmpPublisher(tp.url('record', 'r1'), { supportsGoAway: true, chunkSize: 4096 });
    const l1 = new RtmpPublisher(tp.url('live', 'l1'), { supportsGoAway: true });
    const l2 = new RtmpPublisher(tp.url('live', 'l2'), { compressHeaders: true });
    pubs.push(rec, l1, l2);
    await rec.publish();
    await l1.publish();
    await l2.publish();
    const sent = { r1: await sendMedia(rec, 0, 40), l1: await sendMedia(l1, 0, 40), l2: await sendMedia(l2, 0, 40) };
    await eventually(() => mediaHashes(servers['dvr1']!, 'r1').length === sent.r1.length, 'r1 media on dvr1');
    assert.deepEqual(mediaHashes(servers['dvr1']!, 'r1'), sent.r1);
    const liveOf = (key: string) => ['live1', 'live2'].filter((n) => servers[n]!.publishersOf(key).length > 0);
    await eventually(() => mediaHashes(servers[liveOf('l1')[0] ?? 'live1']!, 'l1').length === sent.l1.length, 'l1 media');
    await eventually(() => mediaHashes(servers[liveOf('l2')[0] ?? 'live1']!, 'l2').length === sent.l2.length, 'l2 media');
    assert.deepEqual(liveOf('l1').length, 1);
    assert.deepEqual(liveOf('l2').length, 1);
    assert.notEqual(liveOf('l1')[0], liveOf('l2')[0], 'least connections spreads the live group');
    assert.deepEqual(mediaHashes(servers[liveOf('l1')[0]!]!, 'l1'), sent.l1);
    assert.deepEqual(mediaHashes(servers[liveOf('l2')[0]!]!, 'l2'), sent.l2);
    // The backend saw the client's own connect (its Go Away flag included) and publish.
    const conn = servers['dvr1']!.publishersOf('r1')[0]!;
    assert.equal(conn.connectObject?.['supportsGoAway'], true);
    assert.equal(conn.app, 'record');
    const sessions = await tp.api<ApiSession[]>('/api/sessions');
    const bySrv = new Map(sessions.map((s) => [s.backend, s]));
    assert.equal(bySrv.get('dvr1')?.route, 'recordings: least-connections');
    assert.equal(bySrv.get(liveOf('l1')[0]!)?.route, 'live: least-connections');
    assert.equal(await metric(tp, 'rtmp_goaway_sessions_routed_total', 'rule="recordings",how="least-connections"'), 1);
    assert.equal(await metric(tp, 'rtmp_goaway_sessions_routed_total', 'rule="live",how="least-connections"'), 2);
  });

  test('a drain sends Go Away to a late-bound capable session; the next session avoids the drained backend', async () => {
    const pub = new RtmpPublisher(tp.url('record', 'r2'), { supportsGoAway: true });
    pubs.push(pub);
    await pub.publish();
    await sendMedia(pub, 0, 10);
    const goaway = new Promise<void>((r) => pub.once('goaway', () => r()));
    const res = await tp.admin('/api/backends/dvr1/drain', {
      method: 'POST',
      body: JSON.stringify({ deadlineMs: 10_000 }),
      headers: { 'content-type': 'application/json' },
    });
    assert.equal(res.status, 200, await res.text());
    await goaway;
    // The client still reads a well-formed stream after the Go Away (the proxy's own writer).
    assert.equal(pub.received.filter((m) => m.typeId === MessageType.GoAway).length, 1);
    const later = new RtmpPublisher(tp.url('record', 'r3'));
    pubs.push(later);
    const err = await publishOrRejection(later);
    assert.ok(err !== null, 'the only dvr backend is draining: the session is rejected');
    const info = statusInfo(err);
    assert.equal(info['code'], 'NetConnection.Connect.Rejected');
    assert.match(String(info['description']), /group dvr/);
    await tp.api('/api/backends/dvr1/undrain', { method: 'POST' });
  });

  test('a reload (SIGHUP) replaces the rules for new sessions; invalid rules are refused and change nothing', async () => {
    const backends = tp.proxy.config.backends;
    assert.throws(() => tp.proxy.reloadBackends(backends, { groups: {}, rules: [{ group: 'nope' }] }), /unknown group/);
    tp.proxy.reloadBackends(backends, {
      groups: { all: { backends: ['live2'] } },
      rules: [{ name: 'reloaded', match: { app: 'reloaded-app' }, group: 'all' }],
    });
    try {
      const pub = new RtmpPublisher(tp.url('reloaded-app', 'after-reload'));
      pubs.push(pub);
      await pub.publish();
      await eventually(() => servers['live2']!.publishersOf('after-reload').length === 1, 'the reloaded rule placed it');
    } finally {
      tp.proxy.reloadBackends(backends, tp.proxy.config.routing);
    }
  });

  test('bad input before routing (not RTMP, RTMPE) is closed and counted; no backend is opened for it', async () => {
    const net = await import('node:net');
    const before = await metric(tp, 'rtmp_goaway_parse_fallbacks_total', 'reason="bad-version"');
    const connsBefore = Object.values(servers).reduce((n, s) => n + s.connections.length, 0);
    for (const first of [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), Buffer.concat([Buffer.of(6), Buffer.alloc(1536, 1)])]) {
      const sock = net.connect(tp.proxy.address.port, '127.0.0.1');
      sock.on('error', () => {});
      await new Promise<void>((r) => sock.once('connect', () => r()));
      sock.write(first);
      await new Promise<void>((r) => sock.once('close', () => r()));
    }
    await eventually(async () => (await metric(tp, 'rtmp_goaway_parse_fallbacks_total', 'reason="bad-version"')) === before + 1, 'counted');
    assert.equal(
      Object.values(servers).reduce((n, s) => n + s.connections.length, 0),
      connsBefore,
      'no backend connection',
    );
  });

  test('an app no rule matches gets _error NetConnection.Connect.Rejected and is closed, counted', async () => {
    const before = await metric(tp, 'rtmp_goaway_sessions_rejected_total', 'reason="no-route"');
    const pub = new RtmpPublisher(tp.url('other', 'x'));
    pubs.push(pub);
    const closed = new Promise<void>((r) => pub.once('close', () => r()));
    const err = await publishOrRejection(pub);
    assert.ok(err !== null, 'rejected with _error');
    assert.equal(err.transactionId, 1, 'the answer to connect');
    const info = statusInfo(err);
    assert.equal(info['level'], 'error');
    assert.equal(info['code'], 'NetConnection.Connect.Rejected');
    assert.match(String(info['description']), /No route for this stream \(app "other"/);
    await closed;
    await eventually(async () => (await metric(tp, 'rtmp_goaway_sessions_rejected_total', 'reason="no-route"')) === before + 1, 'the rejection counted');
    for (const s of Object.values(servers)) assert.equal(s.connections.filter((c) => c.app === 'other').length, 0, 'no backend saw it');
  });
});

describe('routing by stream key: the proxy answers connect and createStream, then replays nothing', () => {
  const names = ['k1', 'k2', 'k3'];
  const servers: Record<string, RecordingRtmpServer> = {};
  let tp: TestProxy;
  const pubs: RtmpPublisher[] = [];

  before(async () => {
    for (const n of names) {
      servers[n] = new RecordingRtmpServer({ chunkSize: 4096, compress: true, pingEveryMs: 200 });
      await servers[n].listen();
    }
    tp = await startTestProxy(Object.fromEntries(names.map((n) => [n, servers[n]!.port])), {
      routing: JSON.stringify({
        groups: { vip: { backends: ['k1'] }, all: { backends: ['k*'] } },
        rules: [
          { name: 'vip', match: { keyPrefix: 'vip-' }, group: 'vip' },
          { name: 'sticky', group: 'all', sticky: true },
        ],
      }),
      healthEnabled: false,
      drainDeadlineMs: '20s',
      migrationSwitchTimeoutMs: '10s',
    });
  });
  after(async () => {
    for (const p of pubs) p.destroy();
    await tp?.stop();
    for (const s of Object.values(servers)) await s.close();
  });

  function backendOf(key: string): string[] {
    return names.filter((n) => servers[n]!.publishersOf(key).length > 0);
  }

  test('a key prefix picks the group; the backend gets the client bytes unchanged; pings reach the client and pongs the backend', async () => {
    const pub = new RtmpPublisher(tp.url('live', 'vip-alpha?token=1'), { supportsGoAway: true, capsEx: 1, chunkSize: 4096, compressHeaders: true });
    pubs.push(pub);
    await pub.publish();
    assert.equal(pub.streamId, 1);
    const sent = await sendMedia(pub, 0, 60);
    await eventually(() => mediaHashes(servers['k1']!, 'vip-alpha?token=1').length === sent.length, 'media on k1');
    assert.deepEqual(mediaHashes(servers['k1']!, 'vip-alpha?token=1'), sent);
    const conn = servers['k1']!.publishersOf('vip-alpha?token=1')[0]!;
    assert.equal(conn.connectObject?.['capsEx'], 1, 'the client connect object, as sent');
    await eventually(() => conn.pongs.length >= 2, 'the client answered the backend pings through the proxy');
    // The proxy's own connect _result offered E-RTMP Reconnect to this capsEx client.
    const result = pub.received.find((m) => m.typeId === MessageType.CommandAmf0 && m.payload !== null && m.payload.includes('NetConnection.Connect.Success'));
    assert.ok(result?.payload?.includes('capsEx'), 'capsEx in the proxy-made connect _result');
    // Acknowledgements: the client counts the proxy's bytes; the backend receives its own count back.
    const s = (await tp.api<ApiSession[]>('/api/sessions')).find((x) => x.backend === 'k1');
    assert.equal(s?.route, 'vip: least-connections');
  });

  test('E-RTMP client without Go Away: ReconnectRequest on drain through the proxy-written stream', async () => {
    const pub = new RtmpPublisher(tp.url('live', 'vip-erpc'), { capsEx: 1 });
    pubs.push(pub);
    await pub.publish();
    await sendMedia(pub, 0, 5);
    const got = new Promise<string>((resolve) =>
      pub.on('command', (cmd) => {
        if (cmd.name === 'onStatus' && readStatusCode(cmd) === RECONNECT_REQUEST_CODE) resolve(RECONNECT_REQUEST_CODE);
      }),
    );
    await tp.admin('/api/backends/k1/drain', { method: 'POST', body: JSON.stringify({ deadlineMs: 20_000 }), headers: { 'content-type': 'application/json' } });
    assert.equal(await got, RECONNECT_REQUEST_CODE);
    await tp.api('/api/backends/k1/undrain', { method: 'POST' });
  });

  test('a late-bound publisher without Go Away is migrated losslessly when its backend drains', async () => {
    // Find a key the sticky rule puts on k2 (deterministic: rendezvous hashing).
    const pub = new RtmpPublisher(tp.url('live', 'mig-1'), { compressHeaders: true });
    pubs.push(pub);
    await pub.publish();
    const [from] = backendOf('mig-1');
    assert.ok(from !== undefined);
    const sent = await sendMedia(pub, 0, 25);
    await eventually(() => mediaHashes(servers[from]!, 'mig-1').length === sent.length, 'first media');
    await tp.admin(`/api/backends/${from}/drain`, {
      method: 'POST',
      body: JSON.stringify({ deadlineMs: 20_000 }),
      headers: { 'content-type': 'application/json' },
    });
    const to = await eventually(
      async () => {
        const s = (await tp.api<ApiSession[]>('/api/sessions')).find((x) => x.state !== 'closed' && x.backend !== from && x.app === 'live');
        return s?.backend ?? null;
      },
      'the migration target is publishing',
      20_000,
    ).catch(() => null);
    // Keep sending until the switch (at a keyframe) has happened.
    let i = 25;
    const all = [...sent];
    while (backendOf('mig-1').length < 2 && i < 400) {
      all.push(...(await sendMedia(pub, i, 5)));
      i += 5;
      await new Promise((r) => setTimeout(r, 20));
    }
    all.push(...(await sendMedia(pub, i, 20)));
    const other = backendOf('mig-1').find((n) => n !== from)!;
    assert.ok(other !== undefined, `migrated off ${from} (target ${String(to)})`);
    await eventually(
      () => mediaHashes(servers[from]!, 'mig-1').length + mediaHashes(servers[other]!, 'mig-1').length >= all.length,
      'every frame on one of the two',
    );
    const union = [...mediaHashes(servers[from]!, 'mig-1'), ...mediaHashes(servers[other]!, 'mig-1')];
    assert.deepEqual(union, all, 'zero loss, no duplicate, in order');
    await tp.api(`/api/backends/${from}/undrain`, { method: 'POST' });
  });

  test('stickiness: 100 keys spread over the group and come back to the same backend; a drain moves only its keys', async (t) => {
    const keys = Array.from({ length: 100 }, (_, i) => `stick-${i}`);
    const placeAll = async (): Promise<Map<string, string>> => {
      const out = new Map<string, string>();
      for (let i = 0; i < keys.length; i += 10) {
        await Promise.all(
          keys.slice(i, i + 10).map(async (key) => {
            const before = new Map(names.map((n) => [n, servers[n]!.publishersOf(key).length]));
            const pub = new RtmpPublisher(tp.url('live', key));
            await pub.publish();
            await pub.end();
            const where = names.find((n) => servers[n]!.publishersOf(key).length > before.get(n)!);
            assert.ok(where !== undefined, `${key} published somewhere`);
            out.set(key, where);
          }),
        );
      }
      return out;
    };
    const first = await placeAll();
    const counts = new Map(names.map((n) => [n, [...first.values()].filter((v) => v === n).length]));
    t.diagnostic(`spread of 100 keys over ${names.length} backends: ${[...counts].map(([n, c]) => `${n}=${c}`).join(' ')}`);
    for (const c of counts.values()) assert.ok(c >= 15, `every backend takes a fair share (${[...counts].join(' ')})`);
    const again = await placeAll();
    assert.deepEqual(Object.fromEntries(again), Object.fromEntries(first), 'every key reconnects to the same backend');
    await tp.admin('/api/backends/k2/drain', { method: 'POST', body: JSON.stringify({ deadlineMs: 20_000 }), headers: { 'content-type': 'application/json' } });
    const drained = await placeAll();
    for (const key of keys) {
      if (first.get(key) === 'k2') assert.notEqual(drained.get(key), 'k2', `${key} moved off the drained backend`);
      else assert.equal(drained.get(key), first.get(key), `${key} stayed`);
    }
    await tp.api('/api/backends/k2/undrain', { method: 'POST' });
  });
});
