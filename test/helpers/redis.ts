import { type ChildProcess, spawn } from 'node:child_process';
import { Redis } from 'ioredis';
import { freePort } from '../../src/demo/backends.js';
import { projectRoot, stopChild, tempDir } from './peers.js';

export { freePort };

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

// ─────────────── the real CLI as a child process (status, drain --wait, serve) ───────────────

/** `bin/` runs dist/; tests run the TypeScript entry through tsx. */
const CLI_ENTRY = 'import("./src/cli.ts").then((m) => m.main(["node", "rtmp-goaway-proxy", ...process.argv.slice(1)]))';

export function cliArgs(args: string[]): string[] {
  return ['--import', 'tsx', '-e', CLI_ENTRY, '--', ...args];
}

/** Env for CLI children: no RTMP_GOAWAY_* / REDIS_URL from the caller's environment. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('RTMP_GOAWAY_') && k !== 'REDIS_URL') env[k] = v;
  return { ...env, ...extra };
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `rtmp-goaway-proxy <args>` to completion (killed after `timeoutMs`). */
export function runCli(args: string[], opts: { timeoutMs?: number; env?: Record<string, string> } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, cliArgs(args), { cwd: projectRoot, env: cleanEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

export interface ServeChild {
  child: ChildProcess;
  /** RTMP and admin ports, from the "proxy listening" log line. */
  port: number;
  adminPort: number;
  /** Everything the child wrote so far (stdout + stderr). */
  output(): string;
  /** JSON log lines so far. */
  logs(): Record<string, unknown>[];
  /** Resolves with the exit code (or rejects after `timeoutMs`). */
  exited(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGKILL if still running. */
  kill(): Promise<void>;
}

/** Spawns `rtmp-goaway-proxy serve <args>` (listen/admin on port 0 unless given) and waits until it listens. */
export async function spawnServe(args: string[], opts: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<ServeChild> {
  const all = ['serve', '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0', ...args];
  const child = spawn(process.execPath, cliArgs(all), { cwd: projectRoot, env: cleanEnv(opts.env), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  // Always drained, so a chatty child never blocks on a full pipe.
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  const until = Date.now() + (opts.timeoutMs ?? 20_000);
  let m: RegExpExecArray | null;
  const re = /"listen":"127\.0\.0\.1:(\d+)","admin":"127\.0\.0\.1:(\d+)"/;
  while ((m = re.exec(out)) === null) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new Error(`serve exited (${child.exitCode ?? child.signalCode}) before listening:\n${out.slice(-3000)}`);
    if (Date.now() > until) {
      child.kill('SIGKILL');
      throw new Error(`serve did not start listening:\n${out.slice(-3000)}`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  return {
    child,
    port: Number(m[1]),
    adminPort: Number(m[2]),
    output: () => out,
    logs: () =>
      out
        .split('\n')
        .filter((l) => l.startsWith('{'))
        .flatMap((l) => {
          try {
            return [JSON.parse(l) as Record<string, unknown>];
          } catch {
            return [];
          }
        }),
    async exited(timeoutMs = 15_000) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`serve did not exit within ${timeoutMs} ms:\n${out.slice(-3000)}`)), timeoutMs);
      });
      try {
        return await Promise.race([exit, timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
    async kill() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exit;
      }
    },
  };
}
