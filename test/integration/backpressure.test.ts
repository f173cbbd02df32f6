// Socket-level behaviour of a session: backpressure bounds what the proxy buffers, half-close
// travels both ways, and an error on one side ends the other. Once a test's peers are gone every
// session must have ended by itself (TestProxy.settled); `scripts/run-tests.mjs stress` runs
// this file with the event loop stalled (test/helpers/stress.ts).
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, test } from 'node:test';
import { stressFromEnv } from '../helpers/stress.js';
import { type TestProxy, eventually, startTestProxy } from '../helpers/proxy.js';

stressFromEnv();

/** A backend whose sockets the test controls. */
async function rawBackend(): Promise<{ port: number; sockets: net.Socket[]; close(): Promise<void> }> {
  const sockets: net.Socket[] = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    sockets.push(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as net.AddressInfo).port,
    sockets,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => (server.listening ? server.close(() => r()) : r()));
    },
  };
}

async function withProxy(fn: (tp: TestProxy, backend: Awaited<ReturnType<typeof rawBackend>>) => Promise<void>): Promise<void> {
  const backend = await rawBackend();
  // Raw bytes that never make a `connect`: the handshake deadline is not what these tests are about.
  const tp = await startTestProxy({ raw: backend.port }, { healthEnabled: 'false', limitsHandshakeTimeoutMs: '10m' });
  try {
    await fn(tp, backend);
    await backend.close();
    await tp.settled();
  } finally {
    await tp.stop();
    await backend.close();
  }
}

describe('session sockets', () => {
  test('a backend that stops reading pauses the publisher: the proxy buffers a bounded amount', async () => {
    await withProxy(async (tp, backend) => {
      const client = net.connect({ port: tp.proxy.address.port, host: '127.0.0.1', allowHalfOpen: true });
      client.on('error', () => {});
      await new Promise<void>((r) => client.once('connect', () => r()));
      const block = Buffer.alloc(1 << 20, 3); // 3 = handshake version byte, then filler
      // C0+C1 and more: the proxy opens the backend once they are in.
      client.write(block);
      let written = block.length;
      const b = await eventually(() => backend.sockets[0], 'backend connection');
      b.pause(); // never reads: its kernel buffers fill, then the proxy's write queue
      // Write until the client itself is throttled (its own queue grows): 64 MiB at most.
      while (written < 64 << 20 && client.writableLength < 8 << 20) {
        client.write(block);
        written += block.length;
        await new Promise((r) => setImmediate(r));
      }
      const session = await eventually(() => [...tp.proxy.server.sessions.values()][0], 'session');
      // Let the pipeline settle, then look at what the proxy holds in userland.
      await eventually(() => client.writableLength > 0, 'client throttled by TCP');
      await new Promise((r) => setTimeout(r, 200));
      assert.ok(session.bufferedBytes < 4 << 20, `proxy buffers ${session.bufferedBytes} bytes for a stalled backend`);
      // Reading again drains everything, byte count intact.
      let got = 0;
      b.on('data', (d: Buffer) => (got += d.length));
      b.resume();
      await eventually(() => got === written, `all ${written} bytes delivered after resume`);
      client.destroy();
    });
  });

  test('half-close: the publisher FIN reaches the backend, the backend can still answer, then its FIN comes back', async () => {
    await withProxy(async (tp, backend) => {
      const client = net.connect({ port: tp.proxy.address.port, host: '127.0.0.1', allowHalfOpen: true });
      client.on('error', () => {});
      const fromServer: Buffer[] = [];
      let clientSawEnd = false;
      client.on('data', (d: Buffer) => fromServer.push(d));
      client.on('end', () => (clientSawEnd = true));
      await new Promise<void>((r) => client.once('connect', () => r()));
      // C0+C1 then FIN at once: the FIN follows them once the backend connection is open.
      const hello = Buffer.alloc(1537, 1);
      hello[0] = 3;
      client.end(hello);
      const b = await eventually(() => backend.sockets[0], 'backend connection');
      let backendSawEnd = false;
      const got: Buffer[] = [];
      b.on('data', (d: Buffer) => got.push(d));
      b.on('end', () => (backendSawEnd = true));
      await eventually(() => backendSawEnd, 'FIN forwarded to the backend');
      assert.ok(Buffer.concat(got).equals(hello));
      b.end(Buffer.from('late answer'));
      await eventually(() => clientSawEnd, 'FIN forwarded to the client');
      assert.equal(Buffer.concat(fromServer).toString(), 'late answer');
      await eventually(() => tp.proxy.server.sessions.size === 0, 'session gone');
    });
  });

  test('a backend reset closes the publisher connection', async () => {
    await withProxy(async (tp, backend) => {
      const client = net.connect({ port: tp.proxy.address.port, host: '127.0.0.1' });
      client.on('error', () => {});
      await new Promise<void>((r) => client.once('connect', () => r()));
      client.write(Buffer.alloc(1537, 3)); // C0+C1
      const b = await eventually(() => backend.sockets[0], 'backend connection');
      b.resetAndDestroy();
      await eventually(() => client.destroyed || client.readableEnded, 'client closed after backend reset');
      await eventually(() => tp.proxy.server.sessions.size === 0, 'session gone');
    });
  });

  test('no backend reachable: the publisher is closed and the refusal counted', async () => {
    const dead = net.createServer();
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', () => r()));
    const port = (dead.address() as net.AddressInfo).port;
    await new Promise<void>((r) => dead.close(() => r()));
    const tp = await startTestProxy({ gone: port }, { healthEnabled: 'false' });
    try {
      const client = net.connect({ port: tp.proxy.address.port, host: '127.0.0.1' }, () => client.write(Buffer.alloc(1537, 3)));
      client.on('error', () => {});
      await new Promise<void>((r) => client.once('close', () => r()));
      const text = await (await tp.admin('/metrics')).text();
      assert.match(text, /rtmp_goaway_backend_connect_failures_total\{backend="gone"\} 1/);
      assert.match(text, /rtmp_goaway_sessions_rejected_total\{reason="all-backends-failed"\} 1/);
    } finally {
      await tp.stop();
    }
  });
});
