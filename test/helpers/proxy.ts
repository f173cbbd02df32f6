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
  /**
   * Once every peer is gone (the test destroyed its clients and closed its backends): each
   * session must end by itself, reporting its end, and the pool counts must fall to 0. Throws
   * with what is left otherwise (a session whose end would never be accounted).
   */
  settled(timeoutMs?: number): Promise<void>;
  /** Stops the proxy; then checks that no session is left in the registry nor counted on a backend. */
  stop(): Promise<void>;
}

/** `init` as a well-behaved client sends it: a POST carries `Content-Type: application/json` (the admin API refuses others). */
export function asJsonClient(init: RequestInit = {}): RequestInit {
  if ((init.method ?? 'GET').toUpperCase() !== 'POST') return init;
  const headers = new Headers(init.headers);
  if (!headers.has('content-type')) headers.set('content-type', 'application/json');
  return { ...init, headers };
}

/** Sessions still registered or counted by the pool, and connections still opening; empty when none. */
function leftovers(proxy: RunningProxy): string[] {
  const out: string[] = [];
  for (const s of proxy.server.sessions.values())
    out.push(`session ${s.id} (${s.state}, backend ${s.backendName ?? 'none'}, reason ${s.closeReason ?? 'none'}) still registered`);
  for (const b of proxy.pool.list()) if (b.sessions > 0) out.push(`backend ${b.name} still counts ${b.sessions} session(s)`);
  if (proxy.server.openingCount > 0) out.push(`${proxy.server.openingCount} connection(s) still opening`);
  return out;
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
    async settled(timeoutMs = 10_000) {
      const ends = () => logs.filter((l) => l['msg'] === 'session end').length;
      try {
        await eventually(() => leftovers(proxy).length === 0, 'every session to end by itself', timeoutMs);
      } catch {
        throw new Error(`sessions left after every peer closed (${ends()} session end lines): ${leftovers(proxy).join('; ')}`);
      }
    },
    async stop() {
      await proxy.stop('test-end');
      const left = leftovers(proxy);
      if (left.length > 0) throw new Error(`after stop: ${left.join('; ')}`);
    },
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
