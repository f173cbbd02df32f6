/**
 * The end-to-end environment: real processes started by the tests — two nginx-rtmp backends
 * (recording every publish), a redis-server, the proxy (`rtmp-goaway-proxy serve`, a child
 * process) — and the one place that decides how a backend is drained.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { Redis } from 'ioredis';
import { freePort, onLines, stopProcess } from '../../src/demo/backends.js';
import { type NginxBackend, requireNginxRtmp, startNginxBackend } from '../helpers/nginx.js';
import { projectRoot, requirePeer, tempDir, waitForLine } from '../helpers/peers.js';
import { asJsonClient, eventually } from '../helpers/proxy.js';

export const SAMPLE_FLV = join(projectRoot, 'test/fixtures/sample.flv');
const CLI = join(projectRoot, 'test/e2e/cli.ts');

/**
 * ── SWITCH POINT: how the e2e tests drain a backend ───────────────────────────────────────────
 * Issue 5 drains "via Redis", the fleet control plane of issue 4: when src/control/redis-bus.ts
 * exists the proxy runs with --redis-url and the tests PUBLISH a JSON drain command on
 * `rtmp-goaway:control`; without it they POST to the proxy's admin API. Nothing else changes.
 */
export const DRAIN_VIA: 'redis' | 'admin' = existsSync(join(projectRoot, 'src/control/redis-bus.ts')) ? 'redis' : 'admin';
export const CONTROL_CHANNEL = 'rtmp-goaway:control';

/** Spawns the CLI (from source) with the given arguments. */
export function spawnCli(args: string[], opts: { env?: NodeJS.ProcessEnv } = {}): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', CLI, ...args], {
    cwd: projectRoot,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env },
  });
}

/** Collects a child's stdout/stderr and resolves with its exit code and output. */
export function collect(child: ChildProcess): { exited: Promise<{ code: number | null; stdout: string; stderr: string }>; stdout(): string; stderr(): string } {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    child.once('exit', (code) => {
      // Let the pipes drain before reporting.
      setImmediate(() => resolve({ code, stdout, stderr }));
    });
  });
  return { exited, stdout: () => stdout, stderr: () => stderr };
}

export interface ProxyChild {
  child: ChildProcess;
  port: number;
  adminPort: number;
  url(app: string, key: string): string;
  api<T>(path: string, init?: RequestInit): Promise<T>;
  /** JSON log lines the proxy wrote so far. */
  logs: Record<string, unknown>[];
  stop(): Promise<void>;
}

/** `rtmp-goaway-proxy serve` in a child process, on ephemeral ports; `adminToken` guards its admin API (and `api` sends it). */
export async function startProxyChild(backends: Record<string, number>, flags: string[] = [], adminToken?: string): Promise<ProxyChild> {
  const args = ['serve', '--listen', '127.0.0.1:0', '--admin', '127.0.0.1:0', '--log-level', 'info', '--log-stream-keys', 'true', ...flags];
  for (const [name, port] of Object.entries(backends)) args.push('--backend', `${name}=127.0.0.1:${port}`);
  const env: NodeJS.ProcessEnv = { RTMP_GOAWAY_REPLICA_ID: `e2e-${process.pid}` };
  if (adminToken !== undefined) env['RTMP_GOAWAY_ADMIN_TOKEN'] = adminToken;
  const child = spawnCli(args, { env });
  const logs: Record<string, unknown>[] = [];
  onLines(child.stdout, (line) => {
    try {
      logs.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      /* not JSON */
    }
  });
  const m = await waitForLine(child, /"listen":"127\.0\.0\.1:(\d+)","admin":"127\.0\.0\.1:(\d+)"[^\n]*"msg":"proxy listening"/, 20_000);
  const port = Number(m[1]);
  const adminPort = Number(m[2]);
  const base = `http://127.0.0.1:${adminPort}`;
  return {
    child,
    port,
    adminPort,
    logs,
    url: (app, key) => `rtmp://127.0.0.1:${port}/${app}/${key}`,
    async api<T>(path: string, init?: RequestInit): Promise<T> {
      const headers = new Headers(init?.headers);
      if (adminToken !== undefined) headers.set('authorization', `Bearer ${adminToken}`);
      const r = await fetch(base + path, asJsonClient({ ...init, headers }));
      if (!r.ok) throw new Error(`${path}: HTTP ${r.status} ${await r.text()}`);
      return (await r.json()) as T;
    },
    stop: () => stopProcess(child, 'SIGTERM', 10_000),
  };
}

export interface TestRedisServer {
  url: string;
  client: Redis;
  stop(): Promise<void>;
}

export async function startRedisServer(exe: string): Promise<TestRedisServer> {
  const dir = tempDir('redis');
  const port = await freePort();
  const child = spawn(exe, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir.path], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  await waitForLine(child, /Ready to accept connections/, 15_000);
  child.stdout?.resume();
  child.stderr?.resume();
  const url = `redis://127.0.0.1:${port}`;
  const client = new Redis(url, { maxRetriesPerRequest: 1 });
  client.on('error', () => undefined);
  return {
    url,
    client,
    async stop() {
      client.disconnect();
      await stopProcess(child);
      dir.remove();
    },
  };
}

export interface ApiSession {
  id: string;
  backend: string | null;
  streamKey: string | null;
  state: string;
  capability: string;
  bytesIn: number;
}

export interface ApiBackend {
  name: string;
  state: string;
  sessions: number;
}

export interface E2eEnv {
  backends: Record<'b1' | 'b2', NginxBackend>;
  redis: TestRedisServer | null;
  proxy: ProxyChild;
  /** Drains a backend through the control plane (see DRAIN_VIA) and waits until the proxy applied it. */
  drain(backend: string, opts?: { deadlineMs?: number }): Promise<void>;
  stop(): Promise<void>;
}

export interface E2eOptions {
  /** Default drain deadline of the proxy (`--drain-deadline-ms`). */
  drainDeadline?: string;
  /** Put something (a TCP tap) between the proxy and each backend: returns the port the proxy should use. */
  route?: (name: 'b1' | 'b2', backend: NginxBackend) => Promise<number>;
  /** More `serve` flags (e.g. `--drain-non-capable deadline-close`). */
  proxyFlags?: string[];
  /** The admin API's token (RTMP_GOAWAY_ADMIN_TOKEN); none by default (loopback). */
  adminToken?: string;
  /** b2 pushes every stream published on it to b1 (nginx-rtmp `push`): b1 carries b2's streams too. */
  b2PushesToB1?: boolean;
}

/**
 * Two nginx-rtmp backends, redis-server (when draining via Redis) and the proxy. Returns null when
 * a peer is missing outside CI (the test was skipped); in CI a missing peer fails the test.
 */
export async function startE2e(t: TestContext, opts: E2eOptions = {}): Promise<E2eEnv | null> {
  const nginx = requireNginxRtmp(t);
  if (nginx === null) return null;
  const redisExe = DRAIN_VIA === 'redis' ? requirePeer(t, 'redis-server') : null;
  if (DRAIN_VIA === 'redis' && redisExe === null) return null;
  const started: { stop(): Promise<void> }[] = [];
  const stopAll = async (): Promise<void> => {
    for (const s of started.reverse()) await s.stop().catch(() => undefined);
  };
  try {
    const b1 = await startNginxBackend(nginx);
    started.push({ stop: () => b1.remove() });
    const b2 = await startNginxBackend(nginx, opts.b2PushesToB1 === true ? [`push rtmp://127.0.0.1:${b1.port}/live`] : []);
    started.push({ stop: () => b2.remove() });
    const redis = redisExe === null ? null : await startRedisServer(redisExe);
    if (redis !== null) started.push(redis);
    const ports = {
      b1: opts.route ? await opts.route('b1', b1) : b1.port,
      b2: opts.route ? await opts.route('b2', b2) : b2.port,
    };
    const flags = ['--drain-deadline-ms', opts.drainDeadline ?? '20s', '--health-interval-ms', '1s', '--health-timeout-ms', '500ms'];
    if (redis !== null) flags.push('--redis-url', redis.url);
    flags.push(...(opts.proxyFlags ?? []));
    const proxy = await startProxyChild(ports, flags, opts.adminToken);
    started.push(proxy);
    if (redis !== null) {
      // The proxy subscribes to the control channel once connected to Redis.
      await eventually(async () => {
        const r = (await redis.client.pubsub('NUMSUB', CONTROL_CHANNEL)) as [string, number];
        return Number(r[1]) >= 1;
      }, `the proxy subscribed to ${CONTROL_CHANNEL}`);
    }
    await eventually(async () => {
      const bs = await proxy.api<ApiBackend[]>('/api/backends');
      return bs.length === 2 && bs.every((b) => b.state === 'up');
    }, 'both backends up');
    return {
      backends: { b1, b2 },
      redis,
      proxy,
      async drain(backend, o = {}) {
        if (redis !== null) {
          const cmd: Record<string, unknown> = { action: 'drain', backend, reason: 'e2e' };
          if (o.deadlineMs !== undefined) cmd['deadlineMs'] = o.deadlineMs;
          const receivers = await redis.client.publish(CONTROL_CHANNEL, JSON.stringify(cmd));
          if (receivers < 1) throw new Error(`PUBLISH ${CONTROL_CHANNEL} reached no subscriber`);
        } else {
          await proxy.api(`/api/backends/${backend}/drain`, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ ...o, force: true }),
          });
        }
        await eventually(
          async () => (await proxy.api<ApiBackend[]>('/api/backends')).find((b) => b.name === backend)?.state === 'draining',
          `${backend} draining (via ${DRAIN_VIA})`,
        );
      },
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}
