// RTMPS: TLS ends at the proxy (self-signed certificate made with openssl in a temp dir), backends
// get plain RTMP. Stock ffmpeg publishes rtmps:// and is migrated on drain like on the plain
// listener; a Go Away publisher over TLS gets Go Away; SIGHUP-style reload swaps the certificate
// for new connections while the old session keeps going; a failed TLS handshake is counted.
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { join } from 'node:path';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import tls from 'node:tls';
import { RtmpPublisher } from '../../src/client/rtmp-client.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { projectRoot, requirePeer, tempDir } from '../helpers/peers.js';
import { type TestProxy, eventually, startTestProxy } from '../helpers/proxy.js';
import { RecordingRtmpServer } from '../helpers/recording-rtmp-server.js';

const SAMPLE_FLV = join(projectRoot, 'test/fixtures/sample.flv');

function makeCert(openssl: string, dir: string, cn: string): void {
  execFileSync(
    openssl,
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '1',
      '-subj',
      `/CN=${cn}`,
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'cert.pem'),
    ],
    { stdio: 'ignore' },
  );
}

/** The certificate's subject CN a new TLS connection to `port` is shown. */
function servedCn(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false }, () => {
      const c = s.getPeerX509Certificate();
      s.destroy();
      resolve(c === undefined ? '' : (new X509Certificate(c.raw).subject.match(/CN=(.*)/)?.[1] ?? ''));
    });
    s.on('error', reject);
  });
}

/** Plain TCP in, TLS out: lets the test's plain RtmpPublisher speak RTMPS to the proxy. */
async function tlsBridge(tlsPort: number): Promise<{ port: number; close(): Promise<void> }> {
  const socks = new Set<net.Socket>();
  const server = net.createServer((c) => {
    const t = tls.connect({ port: tlsPort, host: '127.0.0.1', rejectUnauthorized: false });
    socks.add(c).add(t);
    c.pipe(t);
    t.pipe(c);
    const end = () => {
      c.destroy();
      t.destroy();
    };
    c.on('error', end).on('close', end);
    t.on('error', end).on('close', end);
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

async function rejected(tp: TestProxy, reason: string): Promise<number> {
  const text = await (await tp.admin('/metrics')).text();
  const m = new RegExp(`rtmp_goaway_sessions_rejected_total\\{reason="${reason}"\\} (\\d+)`).exec(text);
  return m === null ? 0 : Number(m[1]);
}

describe('RTMPS listener', () => {
  let b1: RecordingRtmpServer;
  let b2: RecordingRtmpServer;
  let tp: TestProxy | null = null;
  let dir: ReturnType<typeof tempDir>;
  let openssl: string | null = null;

  before(async () => {
    b1 = new RecordingRtmpServer();
    b2 = new RecordingRtmpServer();
    await b1.listen();
    await b2.listen();
    dir = tempDir('rtmps');
  });
  after(async () => {
    await tp?.stop();
    await b1.close();
    await b2.close();
    dir.remove();
  });

  async function proxy(t: { skip(msg: string): void }): Promise<TestProxy | null> {
    if (tp !== null) return tp;
    openssl ??= requirePeer(t as never, 'openssl');
    if (openssl === null) return null;
    makeCert(openssl, dir.path, 'first');
    tp = await startTestProxy(
      { b1: b1.port, b2: b2.port },
      {
        healthEnabled: 'false',
        tlsListen: '127.0.0.1:0',
        tlsCert: join(dir.path, 'cert.pem'),
        tlsKey: join(dir.path, 'key.pem'),
        drainDeadlineMs: '20s',
        limitsHandshakeTimeoutMs: '2s',
      },
    );
    return tp;
  }

  test('a Go Away publisher over TLS: plain RTMP at the backend, Go Away on drain', async (t) => {
    const p0 = await proxy(t);
    if (p0 === null) return;
    const bridge = await tlsBridge(p0.proxy.tlsAddress!.port);
    try {
      const pub = new RtmpPublisher(`rtmp://127.0.0.1:${bridge.port}/live/tls-goaway`, { supportsGoAway: true, chunkSize: 4096 });
      await pub.publish();
      for (let i = 0; i < 30; i++) pub.sendMedia(MessageType.Video, i * 33, Buffer.alloc(3000, i));
      const conn = await eventually(
        () => [...b1.publishersOf('tls-goaway'), ...b2.publishersOf('tls-goaway')].find((c) => c.messages.length >= 30),
        '30 messages at a backend',
      );
      const backend = b1.publishersOf('tls-goaway').includes(conn) ? 'b1' : 'b2';
      const sessions = await p0.api<{ client: string; capability: string }[]>('/api/sessions');
      assert.equal(sessions[0]?.capability, 'goaway');
      await p0.api(`/api/backends/${backend}/drain`, { method: 'POST' });
      await eventually(() => pub.goAwayReceived, 'Go Away over TLS');
      await p0.api(`/api/backends/${backend}/undrain`, { method: 'POST' });
      pub.destroy();
    } finally {
      await bridge.close();
    }
  });

  test('ffmpeg rtmps:// (no Go Away) is migrated on drain like on the plain listener, exits 0', async (t) => {
    const ffmpeg = requirePeer(t, 'ffmpeg');
    if (ffmpeg === null) return;
    const p0 = await proxy(t);
    if (p0 === null) return;
    const child = spawn(
      ffmpeg,
      [
        '-hide_banner',
        '-nostdin',
        '-loglevel',
        'warning',
        '-re',
        '-t',
        '5',
        '-i',
        SAMPLE_FLV,
        '-c',
        'copy',
        '-f',
        'flv',
        `rtmps://127.0.0.1:${p0.proxy.tlsAddress!.port}/live/ff-tls`,
      ],
      {
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let out = '';
    child.stderr.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    try {
      const media = (b: RecordingRtmpServer) =>
        b.publishersOf('ff-tls').reduce((n, c) => n + c.messages.filter((m) => m.kind === 'video' || m.kind === 'audio').length, 0);
      const first = await eventually(() => (media(b1) > 20 ? 'b1' : media(b2) > 20 ? 'b2' : null), `ffmpeg media at a backend (${out})`, 15_000);
      const other = first === 'b1' ? b2 : b1;
      await p0.api(`/api/backends/${first}/drain`, { method: 'POST' });
      await eventually(() => media(other) > 20, `ffmpeg media on the other backend after the migration (${out})`, 15_000);
      assert.equal(await exited, 0, out);
      await p0.api(`/api/backends/${first}/undrain`, { method: 'POST' });
      assert.ok(
        p0.logs.some((l) => l['msg'] === 'session end' && (l['migrations'] as number) >= 1),
        'the TLS session ended after a migration',
      );
    } finally {
      child.kill('SIGKILL');
    }
  });

  test('certificate reload: new connections get the new certificate; a bad one keeps the old; a failed TLS handshake is counted', async (t) => {
    const p0 = await proxy(t);
    if (p0 === null || openssl === null) return;
    const port = p0.proxy.tlsAddress!.port;
    assert.equal(await servedCn(port), 'first');
    makeCert(openssl, dir.path, 'second');
    p0.proxy.reloadTls();
    assert.equal(await servedCn(port), 'second');
    // reloadBackends (SIGHUP) reloads too, and survives a certificate that does not load.
    const { writeFileSync } = await import('node:fs');
    writeFileSync(join(dir.path, 'cert.pem'), 'not a certificate');
    p0.proxy.reloadBackends(p0.proxy.config.backends);
    assert.ok(p0.logs.some((l) => l['msg'] === 'TLS certificate reload failed: keeping the current one'));
    assert.equal(await servedCn(port), 'second');

    const n0 = await rejected(p0, 'tls-handshake-failed');
    const s = net.connect(port, '127.0.0.1', () => s.write(Buffer.alloc(1537, 3))); // plain RTMP to the TLS port
    s.on('error', () => {});
    s.on('data', () => {});
    const t0 = Date.now();
    await new Promise((r) => s.once('close', r));
    assert.ok(Date.now() - t0 < 1000, 'closed at once, not by the handshake timeout');
    assert.equal(await rejected(p0, 'tls-handshake-failed'), n0 + 1);
    // Clients that leave after the handshake are not reported as timeouts.
    assert.equal(await rejected(p0, 'tls-handshake-timeout'), 0);
  });

  test('a client that completes TLS, then sends nothing: no backend connection, closed at the handshake deadline', async (t) => {
    const p0 = await proxy(t);
    if (p0 === null) return;
    const backendConnections = () => b1.connections.length + b2.connections.length;
    const before = backendConnections();
    const known = new Set(p0.proxy.server.sessions.keys());
    const s = tls.connect({ port: p0.proxy.tlsAddress!.port, host: '127.0.0.1', rejectUnauthorized: false });
    s.on('error', () => {});
    const gone = new Promise((r) => s.once('close', r));
    const id = await eventually(() => [...p0.proxy.server.sessions.keys()].find((k) => !known.has(k)), 'a session after the TLS handshake');
    await gone;
    const end = await eventually(() => p0.logs.find((l) => l['msg'] === 'session end' && l['session'] === id), 'session end');
    assert.equal(end['reason'], 'handshake-timeout');
    assert.equal(backendConnections(), before, 'no backend connection before C0+C1');
  });

  test('a client that leaves in the middle of its TLS handshake is released at once, not at the handshake timeout', async (t) => {
    const p0 = await proxy(t);
    if (p0 === null) return;
    const port = p0.proxy.tlsAddress!.port;
    const timeouts = await rejected(p0, 'tls-handshake-timeout');
    const s = net.connect(port, '127.0.0.1', () => s.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc]))); // half a ClientHello
    s.on('error', () => {});
    await eventually(() => p0.proxy.server.openingCount === 1, 'the handshake in progress');
    s.destroy();
    await eventually(() => p0.proxy.server.openingCount === 0, 'released when the client left');
    assert.equal(await rejected(p0, 'tls-handshake-timeout'), timeouts, 'not left to the handshake timeout');
  });
});
