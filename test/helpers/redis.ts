import { type ChildProcess, spawn } from 'node:child_process';
import net from 'node:net';
import { Redis } from 'ioredis';
import { stopChild, tempDir } from './peers.js';

/** A free TCP port on 127.0.0.1 (bind to 0, read, close). `redis-server --port 0` does not work. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export interface TestRedis {
  port: number;
  url: string;
  /** Data directory (dump.rdb is loaded from here at start). */
  dir: string;
  child: ChildProcess;
  /** A client for assertions and raw PUBLISH; closed by stop(). */
  client: Redis;
  /** Stops the server (no save) and its client; the data directory stays until `remove()`. */
  stop(): Promise<void>;
  /** stop() + deletes the data directory. */
  remove(): Promise<void>;
}

/**
 * Starts `redis-server` on a free (or the given) port, without persistence, in a temp dir (or
 * `dir`, whose dump.rdb it loads), and waits for PING.
 */
export async function startRedis(exe: string, opts: { port?: number; dir?: string } = {}): Promise<TestRedis> {
  const port = opts.port ?? (await freePort());
  const own = opts.dir === undefined ? tempDir('redis') : null;
  const dir = opts.dir ?? own!.path;
  const child = spawn(exe, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--dbfilename', 'dump.rdb'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-4000)));
  child.stderr?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-4000)));
  const url = `redis://127.0.0.1:${port}`;
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
  client.on('error', () => undefined);
  const until = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server exited (${child.exitCode}):\n${output}`);
    try {
      await client.connect();
      if ((await client.ping()) === 'PONG') break;
    } catch {
      client.disconnect();
    }
    if (Date.now() > until) {
      child.kill('SIGKILL');
      throw new Error(`redis-server did not answer PING on port ${port}:\n${output}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    client.disconnect();
    await stopChild(child);
  };
  return {
    port,
    url,
    dir,
    child,
    client,
    stop,
    async remove() {
      await stop();
      own?.remove();
    },
  };
}
