/**
 * The routes of the admin API, one table for both servers that serve it: the proxy's
 * (admin-http.ts) and the cluster primary's (cluster.ts), which answers from its workers. Each
 * says how to answer through `AdminApi`; paths, methods, request parsing and error answers are here.
 *
 *   GET  /healthz                        process alive
 *   GET  /readyz                         can take publishers (503 with the reason otherwise)
 *   GET  /metrics[?format=json]          Prometheus text; JSON for a primary summing its workers
 *   GET  /api/backends
 *   GET  /api/sessions[?backend=<name>]
 *   POST /api/backends/<name>/drain      body {"deadlineMs", "reason", "force"} (or the same in the query)
 *   POST /api/backends/<name>/undrain
 */
import type http from 'node:http';
import type { Registry } from 'prom-client';
import { LastRoutableBackendError, UnknownBackendError } from '../balancer/pool.js';
import type { DrainOptions } from '../balancer/types.js';
import { HttpError, readBody, requestPath, send } from './admin-server.js';

export type AdminDrainOptions = DrainOptions & { force?: boolean };

/** An answer to a drain or undrain: a JSON value, or JSON text passed on as it is (a worker's). */
export type AdminAnswer = { status: number; headers?: Record<string, string> } & ({ json: unknown } | { text: string });

export type Readiness = { ready: true; detail?: Record<string, unknown> } | { ready: false; reason: string };

/** What a server answers with; UnknownBackendError and LastRoutableBackendError thrown here become 404 and 409. */
export interface AdminApi {
  /** Shown next to `status: ok` on /healthz. */
  health(): Record<string, unknown>;
  readiness(): Readiness | Promise<Readiness>;
  /** The metrics to render. */
  metrics(): Registry | Promise<Registry>;
  backends(): unknown[] | Promise<unknown[]>;
  /** Sessions, on `backend` only when given. */
  sessions(backend: string | null): unknown[] | Promise<unknown[]>;
  drain(name: string, opts: AdminDrainOptions): Promise<AdminAnswer>;
  undrain(name: string): Promise<AdminAnswer>;
}

/** Parses `{"deadlineMs": 30000, "reason": "…", "force": true}`; `?deadlineMs=`, `?reason=` and `?force=1` work too, for curl one-liners. */
export function drainOptions(body: string, query: URLSearchParams): AdminDrainOptions {
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

const COMMAND_PATH = /^\/api\/backends\/([^/]+)\/(drain|undrain)$/;

/** The admin API's request handler over `api` (for createAdminHttpServer). */
export function adminRoutes(api: AdminApi): (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void> {
  return async (req, res) => {
    try {
      await route(api, req, res);
    } catch (err) {
      if (err instanceof UnknownBackendError) throw new HttpError(404, err.message);
      if (err instanceof LastRoutableBackendError) {
        return send(res, 409, { error: err.message, backend: err.backend, hint: 'to drain it anyway: "force": true in the body or ?force=1 (CLI: --force)' });
      }
      throw err;
    }
  };
}

async function route(api: AdminApi, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const { url, path } = requestPath(req);
  const method = req.method ?? 'GET';
  if (method === 'GET' && path === '/healthz') return send(res, 200, { status: 'ok', ...api.health() });
  if (method === 'GET' && path === '/readyz') {
    const r = await api.readiness();
    return r.ready ? send(res, 200, { status: 'ready', ...r.detail }) : send(res, 503, { status: 'not ready', reason: r.reason });
  }
  if (method === 'GET' && path === '/metrics') {
    const registry = await api.metrics();
    // JSON for a cluster primary, which sums its workers' metrics (prom-client AggregatorRegistry).
    if (url.searchParams.get('format') === 'json') return send(res, 200, await registry.getMetricsAsJSON());
    const text = await registry.metrics();
    res.writeHead(200, { 'content-type': registry.contentType });
    res.end(text);
    return;
  }
  if (method === 'GET' && path === '/api/backends') return send(res, 200, await api.backends());
  if (method === 'GET' && path === '/api/sessions') return send(res, 200, await api.sessions(url.searchParams.get('backend')));
  const m = COMMAND_PATH.exec(path);
  if (m !== null) {
    if (method !== 'POST') throw new HttpError(405, `use POST for ${path}`);
    const name = decodeURIComponent(m[1]!);
    const body = await readBody(req);
    return answer(res, m[2] === 'drain' ? await api.drain(name, drainOptions(body, url.searchParams)) : await api.undrain(name));
  }
  throw new HttpError(404, `no route for ${method} ${path}`);
}

function answer(res: http.ServerResponse, a: AdminAnswer): void {
  if ('json' in a) {
    for (const [k, v] of Object.entries(a.headers ?? {})) res.setHeader(k, v);
    return send(res, a.status, a.json);
  }
  res.writeHead(a.status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', ...a.headers });
  res.end(a.text);
}
