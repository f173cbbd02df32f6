import { Writable } from 'node:stream';
import { pino } from 'pino';
import { type RunningProxy, startProxy } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';

export interface TestProxy {
  proxy: RunningProxy;
  url(app: string, key: string): string;
  /** A raw request to the admin API (what any HTTP client may send). */
  admin(path: string, init?: RequestInit): Promise<Response>;
  /** A request as the CLI sends it (a POST says Content-Type: application/json); throws unless 2xx. */
  api<T>(path: string, init?: RequestInit): Promise<T>;
  /** Structured log lines the proxy wrote (for assertions on session start/end lines). */
  logs: Record<string, unknown>[];
  stop(): Promise<void>;
}

/** `init` as a well-behaved client sends it: a POST carries `Content-Type: application/json` (the admin API refuses others). */
export function asJsonClient(init: RequestInit = {}): RequestInit {
  if ((init.method ?? 'GET').toUpperCase() !== 'POST') return init;
  const headers = new Headers(init.headers);
  if (!headers.has('content-type')) headers.set('content-type', 'application/json');
  return { ...init, headers };
}

/** Starts the proxy in-process on ephemeral ports with the given backends and extra flags. */
export async function startTestProxy(backends: Record<string, number>, flags: Record<string, unknown> = {}): Promise<TestProxy> {
  const config = loadConfig({
    flags: {
      listen: '127.0.0.1:0',
      admin: '127.0.0.1:0',
      backend: Object.entries(backends).map(([name, port]) => `${name}=127.0.0.1:${port}`),
      logLevel: 'debug',
      ...flags,
    },
    env: {},
  });
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  const log = pino({ level: config.log.level }, sink);
  const proxy = await startProxy(config, log);
  const base = `http://127.0.0.1:${proxy.adminAddress!.port}`;
  return {
    proxy,
    logs,
    url: (app, key) => `rtmp://127.0.0.1:${proxy.address.port}/${app}/${key}`,
    admin: (path, init) => fetch(base + path, init),
    async api<T>(path: string, init?: RequestInit): Promise<T> {
      const r = await fetch(base + path, asJsonClient(init));
      if (!r.ok) throw new Error(`${path}: HTTP ${r.status} ${await r.text()}`);
      return (await r.json()) as T;
    },
    stop: () => proxy.stop('test-end'),
  };
}

/** Polls `check` until it returns a truthy value (bounded: the test fails instead of hanging). */
export async function eventually<T>(check: () => T | Promise<T>, what: string, timeoutMs = 30_000): Promise<NonNullable<T>> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<T>;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
