// Byte-exact forwarding of real publishers' captures (OBS 29, the FFmpeg Go Away fork, stock
// FFmpeg 5.1) through the proxy, both directions, in randomly sized writes — and what the proxy
// learned from them on the way.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { projectRoot } from '../helpers/peers.js';
import { type TestProxy, eventually, startTestProxy } from '../helpers/proxy.js';

/** A backend that records what it receives and plays a captured server stream back once the client's C0+C1 are in. */
class ReplayBackend {
  readonly received: Buffer[][] = [];
  private readonly server: net.Server;
  port = 0;
  constructor(private readonly s2c: () => Buffer) {
    this.server = net.createServer((sock) => {
      const got: Buffer[] = [];
      this.received.push(got);
      let n = 0;
      let answered = false;
      sock.on('error', () => {});
      sock.on('data', (b: Buffer) => {
        got.push(b);
        n += b.length;
        if (!answered && n >= 1537) {
          answered = true;
          writeInPieces(sock, this.s2c(), 7);
        }
      });
    });
  }
  async listen(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', () => r()));
    this.port = (this.server.address() as net.AddressInfo).port;
  }
  close(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
}

/** Deterministic pseudo-random piece sizes (1 byte to 9 KiB) so every run splits the same way. */
function writeInPieces(sock: net.Socket, data: Buffer, seed: number): void {
  let x = seed;
  for (let off = 0; off < data.length;) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    const n = x % 5 === 0 ? 1 + (x % 17) : 1 + (x % 9216);
    sock.write(data.subarray(off, off + n));
    off += n;
  }
}

const captures = [
  { name: 'obs29-publish', goAway: true, key: 'obs', flashVer: /^FMLE\/3\.0/ },
  { name: 'ffmpeg-goaway-fork-publish', goAway: true, key: 'fork', flashVer: /^FMLE\/3\.0/ },
  { name: 'ffmpeg51-publish', goAway: false, key: 'stock', flashVer: /^FMLE\/3\.0/ },
];

describe('captured publishers are forwarded byte-exact', () => {
  for (const cap of captures) {
    describe(cap.name, () => {
      const c2s = readFileSync(join(projectRoot, 'test/fixtures', `${cap.name}.c2s.bin`));
      const s2c = readFileSync(join(projectRoot, 'test/fixtures', `${cap.name}.s2c.bin`));
      let backend: ReplayBackend;
      let tp: TestProxy;
      before(async () => {
        backend = new ReplayBackend(() => s2c);
        await backend.listen();
        tp = await startTestProxy({ replay: backend.port }, { healthEnabled: 'false', logStreamKeys: 'true' });
      });
      after(async () => {
        await tp.stop();
        await backend.close();
      });

      test('C→S and S→C bytes arrive unchanged, and connect/publish are sniffed', async () => {
        const client = net.connect(tp.proxy.address.port, '127.0.0.1');
        const fromServer: Buffer[] = [];
        client.on('data', (b: Buffer) => fromServer.push(b));
        await new Promise<void>((r) => client.once('connect', () => r()));
        writeInPieces(client, c2s, 3);
        await eventually(
          () => Buffer.concat(fromServer).length >= s2c.length && backend.received[0] !== undefined && Buffer.concat(backend.received[0]).length >= c2s.length,
          'both directions delivered',
        );
        assert.ok(Buffer.concat(backend.received[0]!).equals(c2s), 'backend received the exact client bytes');
        assert.ok(Buffer.concat(fromServer).equals(s2c), 'client received the exact server bytes');

        const [s] =
          await tp.api<{ app: string; streamKey: string; goAway: boolean; state: string; bytesIn: number; bytesOut: number; parseFallback: string | null }[]>(
            '/api/sessions',
          );
        assert.equal(s!.app, 'live');
        assert.equal(s!.streamKey, cap.key);
        assert.equal(s!.goAway, cap.goAway);
        assert.equal(s!.state, 'publishing', 'NetStream.Publish.Start was seen in the server stream');
        assert.equal(s!.bytesIn, c2s.length);
        assert.equal(s!.bytesOut, s2c.length);
        assert.equal(s!.parseFallback, null);
        client.destroy();
        await eventually(() => tp.proxy.server.sessions.size === 0, 'session closed');
        const end = tp.logs.find((l) => l['msg'] === 'session end')!;
        assert.equal(end['streamKey'], cap.key, 'log.streamKeys=true logs the key in clear');
        assert.equal(end['bytesIn'], c2s.length);
      });
    });
  }
});
