/**
 * Cluster mode (`workers` > 1): one Node process is one core, so a pod with more cores runs a
 * primary and N workers (node:cluster). The workers share the RTMP listener (the primary accepts
 * and hands connections round-robin); each runs the whole proxy with its own admin API on a
 * loopback port it reports to the primary. The primary serves the one admin API operators use,
 * so drains and what the API shows stay coherent across workers:
 *
 *  - POST drain / undrain go to every worker (each applies it to its own sessions; with Redis,
 *    each worker is also a replica `<replicaId>-w<n>` and gets fleet commands itself);
 *  - /api/sessions is every worker's sessions; /api/backends sums the session counts;
 *  - POST /api/rebalance plans over every worker's sessions and sends each its share, GET sums
 *    their runs (cluster-rebalance.ts);
 *  - /metrics sums the workers' metrics (prom-client AggregatorRegistry; gauges such as
 *    backend_up say how to combine);
 *  - /readyz is ready while one worker is and no shutdown started.
 *
 * Signals: SIGTERM / SIGINT are passed to every worker as SIGTERM (each runs its own sidecar drain
 * or close), the primary exits 0 once they all have; a second one kills them. SIGHUP is passed on.
 * The config file is watched here, once for the pod: a change is passed to every worker as a
 * reload request (each reloads it as on SIGHUP, and counts it).
 * A worker that dies is replaced (after 1 s, not while stopping).
 */
import cluster, { type Worker } from 'node:cluster';
import os from 'node:os';
import type { Logger } from 'pino';
import { AggregatorRegistry } from 'prom-client';
import { EXIT_LISTEN_FAILED, ListenError } from './app.js';
import { type Config, parseHostPort } from './config.js';
import { ConfigFileWatcher } from './config-watch.js';
import { AdminAccess } from './control/admin-access.js';
import { type AdminAnswer, type AdminApi, adminRoutes } from './control/admin-routes.js';
import { createAdminHttpServer, listenAdmin } from './control/admin-server.js';
import { ClusterRebalance } from './cluster-rebalance.js';

/** What a worker tells its primary once it listens. */
export interface WorkerReady {
  kind: 'rtmp-goaway-worker-ready';
  listen: string;
  adminPort: number;
}

export function isWorkerReady(m: unknown): m is WorkerReady {
  return typeof m === 'object' && m !== null && (m as WorkerReady).kind === 'rtmp-goaway-worker-ready';
}

/** What a worker tells its primary before it exits EXIT_LISTEN_FAILED: the primary says it once, for all. */
export interface WorkerListenFailed {
  kind: 'rtmp-goaway-worker-listen-failed';
  listener: ListenError['listener'];
  address: string;
  code: string | undefined;
  message: string;
}

export function isWorkerListenFailed(m: unknown): m is WorkerListenFailed {
  return typeof m === 'object' && m !== null && (m as WorkerListenFailed).kind === 'rtmp-goaway-worker-listen-failed';
}

/** What the primary tells each worker when the watched config file changed. */
export interface ReloadRequest {
  kind: 'rtmp-goaway-reload';
}

export function isReloadRequest(m: unknown): m is ReloadRequest {
  return typeof m === 'object' && m !== null && (m as ReloadRequest).kind === 'rtmp-goaway-reload';
}

/** How many workers `workers` asks for (0 = one per CPU). */
export function workerCount(config: Config): number {
  return config.workers === 0 ? os.availableParallelism() : config.workers;
}

/** A worker's configuration: an internal admin API on loopback, its own replica id. */
export function workerConfig(config: Config, id: number): Config {
  return { ...config, admin: '127.0.0.1:0', replicaId: `${config.replicaId}-w${id}`, workers: 1 };
}

interface WorkerEntry {
  worker: Worker;
  id: number;
  adminPort: number | null;
}

/** A worker's answer. */
interface Answer {
  status: number;
  body: string;
}

/** What `/metrics?format=json` answers (prom-client `getMetricsAsJSON`). */
type MetricsJson = Parameters<typeof AggregatorRegistry.aggregate>[0][number];

/**
 * Runs the primary: forks the workers, serves the combined admin API, passes signals on.
 * Resolves when the primary has stopped (after its workers); the caller exits.
 */
export async function runPrimary(config: Config, log: Logger, opts: { configFile?: string | undefined } = {}): Promise<void> {
  const n = workerCount(config);
  let listenFailed: ListenError | null = null;
  const entries = new Map<number, WorkerEntry>();
  let stopping = false;
  let listen = '';

  const fork = (): void => {
    const worker = cluster.fork();
    entries.set(worker.id, { worker, id: worker.id, adminPort: null });
    worker.on('message', (m: unknown) => {
      if (isWorkerListenFailed(m)) {
        listenFailed ??= new ListenError(m.listener, m.address, Object.assign(new Error(m.message), { code: m.code }));
        return;
      }
      if (!isWorkerReady(m)) return;
      const e = entries.get(worker.id);
      if (e === undefined) return;
      e.adminPort = m.adminPort;
      listen = m.listen;
      readyWaiters.splice(0).forEach((w) => w());
    });
  };
  const readyWaiters: (() => void)[] = [];
  const ready = (): WorkerEntry[] => [...entries.values()].filter((e) => e.adminPort !== null && e.worker.isConnected());

  cluster.on('exit', (worker, code, signal) => {
    entries.delete(worker.id);
    if (code === EXIT_LISTEN_FAILED && !started) {
      // Another worker would fail the same way: the primary stops, saying why once.
      listenFailed ??= new ListenError('RTMP', config.listen, Object.assign(new Error('a worker could not open it'), { code: undefined }));
      readyWaiters.splice(0).forEach((w) => w());
      return;
    }
    if (stopping) {
      if (entries.size === 0) exitWaiters.splice(0).forEach((w) => w());
      return;
    }
    log.error({ worker: worker.id, code, signal }, 'worker died: starting another in 1 s');
    setTimeout(() => {
      if (!stopping) fork();
    }, 1000).unref();
  });
  const exitWaiters: (() => void)[] = [];

  let started = false;
  for (let i = 0; i < n; i++) fork();
  // Until every worker listens (bounded: a worker that cannot start exits, and is replaced).
  const startedBy = Date.now() + 60_000;
  while (ready().length < n) {
    if (listenFailed !== null) {
      stopping = true;
      for (const e of entries.values()) e.worker.process.kill('SIGKILL');
      // Set by the workers' message handlers, which TypeScript's narrowing does not follow.
      throw listenFailed as ListenError;
    }
    if (Date.now() > startedBy) throw new Error(`only ${ready().length} of ${n} workers started within 60 s`);
    await new Promise<void>((r) => {
      readyWaiters.push(r);
      setTimeout(r, 500).unref();
    });
  }

  started = true;

  /**
   * The same request to every worker's internal admin API. The primary has checked its caller;
   * towards the workers (same policy, loopback, same token) it presents the token itself.
   */
  const workerHeaders: Record<string, string> = config.adminToken === '' ? {} : { authorization: `Bearer ${config.adminToken}` };
  async function ask(e: WorkerEntry, path: string, init: RequestInit = {}): Promise<Answer> {
    try {
      const headers = { ...workerHeaders, ...(init.headers as Record<string, string> | undefined) };
      const r = await fetch(`http://127.0.0.1:${e.adminPort}${path}`, { ...init, headers, signal: AbortSignal.timeout(5000) });
      return { status: r.status, body: await r.text() };
    } catch (err) {
      return { status: 502, body: JSON.stringify({ error: `worker ${e.id}: ${(err as Error).message}` }) };
    }
  }
  async function each(path: string, init: RequestInit = {}): Promise<Answer[]> {
    return Promise.all(ready().map((e) => ask(e, path, init)));
  }

  /** JSON bodies of the workers that answered 200. */
  const okBodies = <T>(answers: Answer[]): T[] => answers.filter((a) => a.status === 200).map((a) => JSON.parse(a.body) as T);
  /** A command to every worker: the first failure's answer, else the first worker's. */
  async function command(path: string, body: unknown): Promise<AdminAnswer> {
    const answers = await each(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const pick = answers.find((a) => a.status < 200 || a.status >= 300) ?? answers[0];
    if (pick === undefined) return { status: 503, json: { error: 'no worker' } };
    log.info({ path, workers: answers.length, status: pick.status }, 'admin command sent to every worker');
    return { status: pick.status, text: pick.body, headers: { 'x-rtmp-goaway-workers': String(answers.length) } };
  }
  // Planned over every worker's sessions (each worker is a replica of the plan, named w<id>), with the settings the pod started with.
  const rebalance = new ClusterRebalance(
    {
      workers: () => ready().map((e) => `w${e.id}`),
      ask: (worker, path, body) => {
        const e = ready().find((x) => `w${x.id}` === worker);
        if (e === undefined) return Promise.resolve({ status: 502, body: JSON.stringify({ error: `worker ${worker} is gone` }) });
        return body === undefined
          ? ask(e, path)
          : ask(e, path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
      },
    },
    { by: config.rebalance.by, minAgeMs: config.rebalance.minAgeMs },
    log.child({ component: 'rebalance' }),
  );
  const api: AdminApi = {
    health: () => ({ workers: ready().length }),
    async readiness() {
      if (stopping) return { ready: false, reason: 'shutting down' };
      const answers = await each('/readyz');
      const ok = answers.filter((a) => a.status === 200).length;
      return ok > 0
        ? { ready: true, detail: { workers: `${ok}/${n}` } }
        : { ready: false, reason: answers.map((a) => a.body.trim()).join('; ') || 'no worker' };
    },
    metrics: async () => AggregatorRegistry.aggregate(okBodies<MetricsJson>(await each('/metrics?format=json'))),
    async sessions(backend) {
      const query = backend === null ? '' : `?backend=${encodeURIComponent(backend)}`;
      return okBodies<unknown[]>(await each(`/api/sessions${query}`)).flat();
    },
    async backends() {
      const merged = new Map<string, { name: string; sessions: number }>();
      for (const list of okBodies<{ name: string; sessions: number }[]>(await each('/api/backends'))) {
        for (const b of list) {
          const prev = merged.get(b.name);
          if (prev === undefined) merged.set(b.name, { ...b });
          else prev.sessions += b.sessions;
        }
      }
      return [...merged.values()];
    },
    drain: (name, opts) => command(`/api/backends/${encodeURIComponent(name)}/drain`, opts),
    undrain: (name) => command(`/api/backends/${encodeURIComponent(name)}/undrain`, {}),
    rebalance: (o) => rebalance.start(o),
    rebalanceStatus: async () => ({ status: 200, json: await rebalance.status() }),
  };
  const adminHost = config.admin === '' ? '127.0.0.1' : parseHostPort(config.admin).host;
  const admin = createAdminHttpServer({ access: new AdminAccess(adminHost, config.adminToken, config.admin), log }, adminRoutes(api));

  let adminAt: string | null = null;
  if (config.admin !== '') {
    const a = await listenAdmin(admin, parseHostPort(config.admin), log).catch((err: NodeJS.ErrnoException) => {
      stopping = true;
      for (const e of entries.values()) e.worker.process.kill('SIGTERM');
      throw new ListenError('admin', config.admin, err);
    });
    adminAt = `${a.address}:${a.port}`;
  }
  log.info({ listen, admin: adminAt, workers: n, pid: process.pid }, 'proxy listening');
  const watcher =
    opts.configFile === undefined
      ? null
      : new ConfigFileWatcher({
          file: opts.configFile,
          log,
          onChange: () => {
            const request: ReloadRequest = { kind: 'rtmp-goaway-reload' };
            log.info({ workers: ready().length }, 'config file changed: reload sent to every worker');
            for (const e of ready()) e.worker.send(request);
          },
        });
  watcher?.start();

  await new Promise<void>((resolve) => {
    let signals = 0;
    const stop = (signal: string): void => {
      signals++;
      if (signals > 1) {
        log.warn({ signal }, 'second signal: killing the workers');
        for (const e of entries.values()) e.worker.process.kill('SIGKILL');
        resolve();
        return;
      }
      stopping = true;
      log.info({ signal, workers: entries.size }, 'stopping: SIGTERM to every worker');
      for (const e of entries.values()) e.worker.process.kill('SIGTERM');
      if (entries.size === 0) resolve();
      else exitWaiters.push(resolve);
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => {
      log.info({ workers: entries.size }, 'SIGHUP passed to every worker');
      for (const e of entries.values()) e.worker.process.kill('SIGHUP');
    });
  });
  watcher?.stop();
  const closed = new Promise<void>((r) => admin.close(() => r()));
  // A console's event stream never ends by itself: end every admin connection now.
  admin.closeAllConnections();
  await closed;
  log.info('stopped');
}
