import type http from 'node:http';
import type { Logger } from 'pino';
import { LastRoutableBackendError, UnknownBackendError } from '../balancer/pool.js';
import type { BackendSnapshot, DrainOptions, DrainResult } from '../balancer/types.js';
import type { SessionSnapshot } from '../proxy/session/session.js';
import type { AdminAccess } from './admin-access.js';
import { HttpError, createAdminHttpServer, readBody, requestPath, send } from './admin-server.js';
import type { ProxyMetrics } from './metrics.js';

/** What the admin API needs from the running proxy. */
export interface AdminTarget {
  backends(): BackendSnapshot[];
  sessions(): SessionSnapshot[];
  drain(name: string, opts: AdminDrainOptions): Promise<DrainResult> | DrainResult;
  undrain(name: string): Promise<boolean> | boolean;
  /** null when ready, else why not (shown in the 503 body). */
  notReadyReason(): string | null;
}

export type AdminDrainOptions = DrainOptions & { force?: boolean };

/** Parses `{"deadlineMs": 30000, "reason": "…", "force": true}`; `?deadlineMs=`, `?reason=` and `?force=1` work too, for curl one-liners. */
function drainOptions(body: string, query: URLSearchParams): AdminDrainOptions {
  let obj: Record<string, unknown> = {};
  if (body.trim() !== '') {
    try {
      const parsed: unknown = JSON.parse(body);
      if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
      obj = parsed as Record<string, unknown>;
    } catch {
      throw new HttpError(400, 'body must be a JSON object like {"deadlineMs":30000,"reason":"deploy"}');
    }
  }
  const opts: AdminDrainOptions = {};
  const d = obj['deadlineMs'] ?? (query.has('deadlineMs') ? Number(query.get('deadlineMs')) : undefined);
  if (d !== undefined) {
    if (typeof d !== 'number' || !Number.isFinite(d) || d < 0 || d > 2 ** 31 - 1) throw new HttpError(400, 'deadlineMs must be a number of milliseconds ≥ 0');
    opts.deadlineMs = d;
  }
  const r = obj['reason'] ?? query.get('reason') ?? undefined;
  if (r !== undefined) {
    if (typeof r !== 'string' || r.length > 200) throw new HttpError(400, 'reason must be a string of at most 200 characters');
    opts.reason = r;
  }
  const f = obj['force'] ?? (query.has('force') ? ['1', 'true', ''].includes(query.get('force')!) : undefined);
  if (f !== undefined) {
    if (typeof f !== 'boolean') throw new HttpError(400, 'force must be true or false');
    if (f) opts.force = true;
  }
  return opts;
}

export interface AdminOptions {
  /** Who may use the API: address kind, token (admin-access.ts). */
  access: AdminAccess;
}

/**
 * Admin HTTP: /healthz (process alive), /readyz (can take publishers), /metrics (Prometheus),
 * /api/backends, /api/sessions, POST /api/backends/:name/drain and /undrain; behind the access
 * policy of admin-access.ts (createAdminHttpServer).
 */
export function createAdminServer(target: AdminTarget, metrics: ProxyMetrics, log: Logger, opts: AdminOptions): http.Server {
  return createAdminHttpServer({ access: opts.access, log, refused: () => metrics.controlMessages.inc({ source: 'admin', result: 'rejected' }) }, async (req, res) => {
    try {
      await handle(req, res);
    } catch (err) {
      if (err instanceof UnknownBackendError) throw new HttpError(404, err.message);
      if (err instanceof LastRoutableBackendError) {
        return send(res, 409, { error: err.message, backend: err.backend, hint: 'to drain it anyway: "force": true in the body or ?force=1 (CLI: --force)' });
      }
      throw err;
    }
  });

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const { url, path } = requestPath(req);
    const method = req.method ?? 'GET';
    if (method === 'GET' && path === '/healthz') return send(res, 200, { status: 'ok' });
    if (method === 'GET' && path === '/readyz') {
      const why = target.notReadyReason();
      return why === null ? send(res, 200, { status: 'ready' }) : send(res, 503, { status: 'not ready', reason: why });
    }
    if (method === 'GET' && path === '/metrics') {
      // JSON for a cluster primary, which sums its workers' metrics (prom-client AggregatorRegistry).
      if (url.searchParams.get('format') === 'json') return send(res, 200, await metrics.registry.getMetricsAsJSON());
      const text = await metrics.registry.metrics();
      res.writeHead(200, { 'content-type': metrics.registry.contentType });
      res.end(text);
      return;
    }
    if (method === 'GET' && path === '/api/backends') return send(res, 200, target.backends());
    if (method === 'GET' && path === '/api/sessions') {
      const backend = url.searchParams.get('backend');
      const all = target.sessions();
      return send(res, 200, backend === null ? all : all.filter((s) => s.backend === backend));
    }
    const m = /^\/api\/backends\/([^/]+)\/(drain|undrain)$/.exec(path);
    if (m !== null) {
      if (method !== 'POST') throw new HttpError(405, `use POST for ${path}`);
      const name = decodeURIComponent(m[1]!);
      if (m[2] === 'drain') {
        const opts = drainOptions(await readBody(req), url.searchParams);
        const result = await target.drain(name, opts);
        metrics.controlMessages.inc({ source: 'admin', result: 'ok' });
        return send(res, 200, result);
      }
      await readBody(req);
      const changed = await target.undrain(name);
      metrics.controlMessages.inc({ source: 'admin', result: 'ok' });
      return send(res, 200, { backend: name, undrained: changed });
    }
    throw new HttpError(404, `no route for ${method} ${path}`);
  }
}
