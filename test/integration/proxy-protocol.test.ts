// PROXY protocol through real sockets: v1/v2 from a front balancer (a test balancer writing the
// header, and HAProxy `send-proxy-v2` when installed), required/optional/missing/invalid/slow
// headers, and v1 into a real nginx-rtmp (`listen … proxy_protocol`) whose access log must show
// the original client address.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RtmpPublisher } from '../../src/client/rtmp-client.js';
import { freePort, stopProcess } from '../../src/demo/backends.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { type ProxyEndpoint, encodeProxyV1, encodeProxyV2 } from '../../src/net/proxy-protocol.js';
import type { SessionSnapshot } from '../../src/proxy/session/session.js';
import { FakeRtmpServer } from '../helpers/fake-rtmp-server.js';
import { requireNginxRtmp } from '../helpers/nginx.js';
import { requirePeer, tempDir } from '../helpers/peers.js';
import { type TestProxy, eventually, startTestProxy } from '../helpers/proxy.js';
import { runCli } from '../helpers/redis.js';

/**
 * A front "load balancer": prepends `header(client)` to each connection it forwards to `target`,
 * from `from` (the balancer's address as the proxy sees it; any 127.0.0.0/8 address works on Linux).
 */
async function frontBalancer(target: number, header: (c: net.Socket) => Buffer, from = '127.0.0.1'): Promise<{ port: number; close(): Promise<void> }> {
  const socks = new Set<net.Socket>();
  const server = net.createServer((c) => {
    const up = net.connect({ port: target, host: '127.0.0.1', localAddress: from });
    socks.add(c).add(up);
    up.write(header(c));
    c.pipe(up);
    up.pipe(c);
    const end = () => {
      c.destroy();
      up.destroy();
      socks.delete(c);
      socks.delete(up);
    };
    c.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => {
      for (const s of socks) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

/** Where the test balancers connect from: the only source whose PROXY header the proxy believes. */
const BALANCER = '127.0.0.1/32';
/** A client connecting directly, not through a balancer. */
const STRANGER = '127.0.0.2';
const FAKE_CLIENT: ProxyEndpoint = { address: '203.0.113.7', port: 51000 };
const FRONTEND: ProxyEndpoint = { address: '192.0.2.1', port: 1935 };

async function rejected(tp: TestProxy, reason: string): Promise<number> {
  const text = await (await tp.admin('/metrics')).text();
  const m = new RegExp(`rtmp_goaway_sessions_rejected_total\\{reason="${reason}"\\} (\\d+)`).exec(text);
  return m === null ? 0 : Number(m[1]);
}

function rawClient(port: number, bytes: Buffer, from = '127.0.0.1'): Promise<net.Socket> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress: from }, () => {
      s.write(bytes);
      resolve(s);
    });
    s.on('error', () => {});
  });
}

const closed = (s: net.Socket) => (s.destroyed ? Promise.resolve() : new Promise<void>((r) => s.once('close', () => r())));

async function publishFrames(url: string, fake: FakeRtmpServer, frames: number): Promise<RtmpPublisher> {
  const p = new RtmpPublisher(url, { supportsGoAway: true, chunkSize: 4096 });
  await p.publish();
  // The newest connection that published: a readiness probe through a front proxy opens
  // backend connections too, and may land after ours.
  const conn = await eventually(() => fake.connections.findLast((c) => c.commands.includes('publish')), 'the publishing backend connection');
  for (let i = 0; i < frames; i++) p.sendMedia(MessageType.Video, i * 33, Buffer.alloc(1500, i));
  await eventually(
    () => conn.media === frames,
    `${frames} frames at the backend (have ${conn.media} of ${fake.connections.length} connections: ${fake.connections.map((c) => c.media).join()})`,
    10_000,
  );
  return p;
}

describe('accepting PROXY protocol (required)', () => {
  let fake: FakeRtmpServer;
  let tp: TestProxy;

  before(async () => {
    fake = new FakeRtmpServer();
    await fake.listen();
    tp = await startTestProxy(
      { fake: fake.port },
      { healthEnabled: 'false', acceptProxyProtocol: 'required', acceptProxyProtocolFrom: BALANCER, limitsHandshakeTimeoutMs: '500ms' },
    );
  });
  after(async () => {
    await tp.stop();
    await fake.close();
  });

  for (const [name, enc] of [
    ['v1', encodeProxyV1],
    ['v2', encodeProxyV2],
  ] as const) {
    test(`${name} header from a front balancer: the session's client is the original address (API, logs)`, async () => {
      const lb = await frontBalancer(tp.proxy.address.port, () => enc(FAKE_CLIENT, FRONTEND));
      try {
        const p = await publishFrames(`rtmp://127.0.0.1:${lb.port}/live/pp-${name}`, fake, 10);
        const sessions = await tp.api<SessionSnapshot[]>('/api/sessions');
        const s = sessions.find((x) => x.streamKey !== null && x.state === 'publishing');
        assert.ok(s, JSON.stringify(sessions));
        assert.equal(s.client, '203.0.113.7:51000');
        assert.ok(tp.logs.some((l) => l['msg'] === 'session start' && l['client'] === '203.0.113.7:51000'));
        p.destroy();
        await eventually(async () => (await tp.api<SessionSnapshot[]>('/api/sessions')).length === 0, 'session gone');
      } finally {
        await lb.close();
      }
    });
  }

  test('the header split over many tiny writes is reassembled', async () => {
    const header = encodeProxyV2({ address: '2001:db8::7', port: 4242 }, { address: '2001:db8::1', port: 1935 });
    const before = fake.connections.length;
    const s = await rawClient(tp.proxy.address.port, Buffer.alloc(0));
    for (const b of header) {
      s.write(Buffer.of(b));
      await new Promise((r) => setTimeout(r, 2));
    }
    s.write(Buffer.alloc(1537, 3)); // C0+C1: the backend is opened once they are in
    await eventually(() => fake.connections.length > before, 'a backend connection for the split header');
    await eventually(async () => (await tp.api<SessionSnapshot[]>('/api/sessions')).some((x) => x.client === '2001:db8::7:4242'), 'IPv6 client in the API');
    s.destroy();
  });

  test('a header, then silence: no backend connection, closed at the handshake deadline', async () => {
    const conns = fake.connections.length;
    const s = await rawClient(tp.proxy.address.port, Buffer.from(encodeProxyV2({ address: '198.51.100.9', port: 7000 }, FRONTEND)));
    await closed(s);
    const end = await eventually(() => tp.logs.find((l) => l['msg'] === 'session end' && l['client'] === '198.51.100.9:7000'), 'session end');
    assert.equal(end['reason'], 'handshake-timeout');
    assert.equal(fake.connections.length, conns, 'no backend connection before C0+C1');
  });

  test('no header ⇒ refused at once (proxy-protocol-missing), no backend connection', async () => {
    const n0 = await rejected(tp, 'proxy-protocol-missing');
    const conns = fake.connections.length;
    const s = await rawClient(tp.proxy.address.port, Buffer.alloc(1537, 3));
    await closed(s);
    assert.equal(await rejected(tp, 'proxy-protocol-missing'), n0 + 1);
    assert.equal(fake.connections.length, conns);
  });

  test('invalid header ⇒ refused (proxy-protocol-invalid); oversized v2 length refused from its first 16 bytes', async () => {
    const n0 = await rejected(tp, 'proxy-protocol-invalid');
    const a = await rawClient(tp.proxy.address.port, Buffer.from('PROXY TCP4 300.1.1.1 10.0.0.1 1 2\r\n'));
    const big = Buffer.from(encodeProxyV2(FAKE_CLIENT, FRONTEND).subarray(0, 16));
    big.writeUInt16BE(0xffff, 14);
    const b = await rawClient(tp.proxy.address.port, big);
    const c = await rawClient(tp.proxy.address.port, Buffer.from(`PROXY TCP4 ${'9'.repeat(150)}`));
    await Promise.all([closed(a), closed(b), closed(c)]);
    assert.equal(await rejected(tp, 'proxy-protocol-invalid'), n0 + 3);
  });

  test('a header that never completes ⇒ closed by the handshake timeout (proxy-protocol-timeout)', async () => {
    const n0 = await rejected(tp, 'proxy-protocol-timeout');
    const t0 = Date.now();
    const s = await rawClient(tp.proxy.address.port, Buffer.from('PROXY TCP4 10.0.0.'));
    await closed(s);
    const took = Date.now() - t0;
    assert.ok(took >= 400 && took < 3000, `closed after ${took} ms`);
    assert.equal(await rejected(tp, 'proxy-protocol-timeout'), n0 + 1);
  });
});

describe('accepting PROXY protocol (optional)', () => {
  test('with and without a header both work; LOCAL (health check) uses the socket address', async () => {
    const fake = new FakeRtmpServer();
    await fake.listen();
    const tp = await startTestProxy({ fake: fake.port }, { healthEnabled: 'false', acceptProxyProtocol: 'optional', acceptProxyProtocolFrom: BALANCER });
    const lb = await frontBalancer(tp.proxy.address.port, () => encodeProxyV1(FAKE_CLIENT, FRONTEND));
    const local = await frontBalancer(tp.proxy.address.port, () => Buffer.from('0d0a0d0a000d0a515549540a20000000', 'hex'));
    try {
      const direct = await publishFrames(tp.url('live', 'direct'), fake, 5);
      const via = await publishFrames(`rtmp://127.0.0.1:${lb.port}/live/via`, fake, 5);
      const viaLocal = await publishFrames(`rtmp://127.0.0.1:${local.port}/live/local`, fake, 5);
      const clients = (await tp.api<SessionSnapshot[]>('/api/sessions')).map((s) => s.client).sort();
      assert.equal(clients.length, 3);
      assert.ok(clients.includes('203.0.113.7:51000'), clients.join());
      assert.ok(clients.includes(`127.0.0.1:${direct.socket!.localPort}`), clients.join());
      assert.equal(clients.filter((c) => c.startsWith('127.0.0.1:')).length, 2);
      for (const p of [direct, via, viaLocal]) p.destroy();
    } finally {
      await lb.close();
      await local.close();
      await tp.stop();
      await fake.close();
    }
  });
});

describe('PROXY protocol only from acceptProxyProtocolFrom', () => {
  test('required: a source not in the list is refused at once, header or not (proxy-protocol-untrusted), no backend connection', async () => {
    const fake = new FakeRtmpServer();
    await fake.listen();
    const tp = await startTestProxy({ fake: fake.port }, { healthEnabled: 'false', acceptProxyProtocol: 'required', acceptProxyProtocolFrom: BALANCER });
    try {
      const spoofed = await rawClient(tp.proxy.address.port, Buffer.concat([encodeProxyV1(FAKE_CLIENT, FRONTEND), Buffer.alloc(1537, 3)]), STRANGER);
      const plain = await rawClient(tp.proxy.address.port, Buffer.alloc(1537, 3), STRANGER);
      await eventually(async () => (await rejected(tp, 'proxy-protocol-untrusted')) === 2, 'both refused as untrusted');
      await Promise.all([closed(spoofed), closed(plain)]);
      assert.equal(fake.connections.length, 0);
      assert.ok(
        tp.logs.some((l) => l['reason'] === 'proxy-protocol-untrusted' && String(l['client']).startsWith(`${STRANGER}:`)),
        'the refusal names the real source',
      );
    } finally {
      await tp.stop();
      await fake.close();
    }
  });

  test('optional + limits.maxSessionsPerIp 2: spoofed headers from a stranger neither bypass the limit nor lock out the address they name; strangers are served as themselves', async () => {
    const fake = new FakeRtmpServer();
    await fake.listen();
    const tp = await startTestProxy(
      { fake: fake.port },
      {
        healthEnabled: 'false',
        acceptProxyProtocol: 'optional',
        acceptProxyProtocolFrom: BALANCER,
        limitsMaxSessionsPerIp: '2',
        limitsHandshakeTimeoutMs: '60s',
      },
    );
    const relays: Awaited<ReturnType<typeof frontBalancer>>[] = [];
    const pubs: RtmpPublisher[] = [];
    try {
      // Ten connections, each claiming another address, then the start of an RTMP handshake: held open.
      const spoofs = await Promise.all(
        Array.from({ length: 10 }, (_, i) =>
          rawClient(
            tp.proxy.address.port,
            Buffer.concat([encodeProxyV1({ address: `203.0.113.${i + 1}`, port: 40000 + i }, FRONTEND), Buffer.of(3)]),
            STRANGER,
          ),
        ),
      );
      // Two more naming the victim's own address (127.0.0.3), to fill its per-IP slots.
      const VICTIM = '127.0.0.3';
      spoofs.push(
        ...(await Promise.all(
          [0, 1].map((i) =>
            rawClient(tp.proxy.address.port, Buffer.concat([encodeProxyV2({ address: VICTIM, port: 50000 + i }, FRONTEND), Buffer.of(3)]), STRANGER),
          ),
        )),
      );
      await eventually(async () => (await rejected(tp, 'proxy-protocol-untrusted')) === 12, 'the twelve spoofed headers refused');
      await Promise.all(spoofs.map(closed));
      assert.equal(fake.connections.length, 0, 'no backend connection for a spoofed header');
      assert.equal(tp.proxy.server.sessions.size, 0);
      // The victim, connecting directly (no header: a plain RTMP client), gets both of its slots.
      const victim = await frontBalancer(tp.proxy.address.port, () => Buffer.alloc(0), VICTIM);
      relays.push(victim);
      for (const key of ['v1', 'v2']) {
        const p = new RtmpPublisher(`rtmp://127.0.0.1:${victim.port}/live/${key}`, { supportsGoAway: true });
        pubs.push(p);
        await p.publish();
      }
      const clients = (await tp.api<SessionSnapshot[]>('/api/sessions')).map((x) => x.client);
      assert.equal(clients.length, 2);
      assert.ok(
        clients.every((c) => c.startsWith(`${VICTIM}:`)),
        clients.join(),
      );
      // The stranger's own address is what the limit counts: a third plain session is refused.
      const stranger = await frontBalancer(tp.proxy.address.port, () => Buffer.alloc(0), STRANGER);
      relays.push(stranger);
      for (const key of ['s1', 's2']) {
        const p = new RtmpPublisher(`rtmp://127.0.0.1:${stranger.port}/live/${key}`, { supportsGoAway: true });
        pubs.push(p);
        await p.publish();
      }
      const third = new RtmpPublisher(`rtmp://127.0.0.1:${stranger.port}/live/s3`, { supportsGoAway: true, timeoutMs: 5000 });
      pubs.push(third);
      third.on('error', () => {});
      await assert.rejects(third.publish());
      assert.equal(await rejected(tp, 'per-ip-sessions'), 1);
    } finally {
      for (const p of pubs) p.destroy();
      for (const r of relays) await r.close();
      await tp.stop();
      await fake.close();
    }
  });

  test('acceptProxyProtocol without acceptProxyProtocolFrom: serve exits 2 naming both settings', async () => {
    const r = await runCli(['serve', '--backend', 'a=127.0.0.1:1', '--accept-proxy-protocol', 'optional']);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /configuration error/);
    assert.match(r.stderr, /acceptProxyProtocolFrom .*is required when acceptProxyProtocol \(from flag --accept-proxy-protocol: optional\)/);
    assert.match(r.stderr, /0\.0\.0\.0\/0,::\/0/);
  });
});

describe('HAProxy send-proxy-v2 in front of the proxy', () => {
  test("the session sees the publisher's own port, not HAProxy's", async (t) => {
    const haproxy = requirePeer(t, 'haproxy');
    if (haproxy === null) return;
    const fake = new FakeRtmpServer();
    await fake.listen();
    const tp = await startTestProxy({ fake: fake.port }, { healthEnabled: 'false', acceptProxyProtocol: 'required', acceptProxyProtocolFrom: BALANCER });
    const dir = tempDir('haproxy');
    const port = await freePort();
    const cfg = join(dir.path, 'haproxy.cfg');
    writeFileSync(
      cfg,
      [
        'global',
        '  log stderr format raw local0 info',
        'defaults',
        '  mode tcp',
        '  timeout connect 2s',
        '  timeout client 30s',
        '  timeout server 30s',
        'frontend rtmp',
        `  bind 127.0.0.1:${port}`,
        '  default_backend proxy',
        'backend proxy',
        `  server p1 127.0.0.1:${tp.proxy.address.port} send-proxy-v2`,
        '',
      ].join('\n'),
    );
    const child = spawn(haproxy, ['-db', '-f', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await eventually(
        () =>
          new Promise<boolean>((r) => {
            const s = net.connect(port, '127.0.0.1', () => {
              s.destroy();
              r(true);
            });
            s.on('error', () => r(false));
          }),
        `haproxy listening (${out})`,
        10_000,
      );
      const p = await publishFrames(`rtmp://127.0.0.1:${port}/live/haproxy`, fake, 10);
      const sessions = await tp.api<SessionSnapshot[]>('/api/sessions');
      const s = sessions.find((x) => x.state === 'publishing');
      assert.equal(s?.client, `127.0.0.1:${p.socket!.localPort}`, `${JSON.stringify(sessions)} haproxy: ${out}`);
      p.destroy();
    } finally {
      await stopProcess(child, 'SIGTERM');
      dir.remove();
      await tp.stop();
      await fake.close();
    }
  });
});

describe('PROXY protocol v1 to nginx-rtmp', () => {
  test('nginx-rtmp with `listen … proxy_protocol` logs the original client in $remote_addr', async (t) => {
    const peer = requireNginxRtmp(t);
    if (peer === null) return;
    const dir = tempDir('nginx-pp');
    const port = await freePort();
    const conf = join(dir.path, 'nginx.conf');
    writeFileSync(
      conf,
      [
        `load_module ${peer.module};`,
        'daemon off;',
        'master_process off;',
        `pid ${dir.path}/nginx.pid;`,
        `error_log ${dir.path}/error.log info;`,
        'events { worker_connections 64; }',
        'rtmp {',
        "  log_format pp '$remote_addr $command $app $name';",
        `  access_log ${dir.path}/access.log pp;`,
        '  server {',
        `    listen 127.0.0.1:${port} proxy_protocol;`,
        '    application live { live on; }',
        '  }',
        '}',
        '',
      ].join('\n'),
    );
    const child = spawn(peer.exe, ['-e', join(dir.path, 'error.log'), '-p', dir.path, '-c', conf], { stdio: 'ignore' });
    let tp: TestProxy | null = null;
    let lb: Awaited<ReturnType<typeof frontBalancer>> | null = null;
    try {
      await eventually(
        () =>
          new Promise<boolean>((r) => {
            const s = net.connect(port, '127.0.0.1', () => {
              s.destroy();
              r(true);
            });
            s.on('error', () => r(false));
          }),
        'nginx listening',
        10_000,
      );
      tp = await startTestProxy(
        { nginx: port },
        { healthEnabled: 'false', acceptProxyProtocol: 'required', acceptProxyProtocolFrom: BALANCER, backendProxyProtocol: 'v1' },
      );
      lb = await frontBalancer(tp.proxy.address.port, () => encodeProxyV2(FAKE_CLIENT, FRONTEND));
      const p = new RtmpPublisher(`rtmp://127.0.0.1:${lb.port}/live/ppkey`, { supportsGoAway: true, chunkSize: 4096 });
      await p.publish();
      for (let i = 0; i < 20; i++) p.sendMedia(MessageType.Video, i * 33, Buffer.alloc(800, i));
      await p.unpublish();
      p.destroy();
      const line = await eventually(
        () => {
          try {
            return readFileSync(join(dir.path, 'access.log'), 'utf8')
              .split('\n')
              .find((l) => / publish live ppkey$/i.test(l));
          } catch {
            return undefined;
          }
        },
        'the access log line of the publish',
        10_000,
      );
      assert.match(line, /^203\.0\.113\.7 publish live ppkey$/i);
      // nginx's own log: every command of the session is attributed to the original client.
      assert.match(readFileSync(join(dir.path, 'error.log'), 'utf8'), /publish: name='ppkey'.*client: 203\.0\.113\.7/);
    } finally {
      await lb?.close();
      await tp?.stop();
      await stopProcess(child, 'SIGQUIT');
      dir.remove();
    }
  });
});
