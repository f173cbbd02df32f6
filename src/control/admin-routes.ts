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
 *   POST /api/rebalance                  body {"dryRun", "by", "maxInFlight", "minAgeMs", "reason", "quota"}: this replica's plan
 *                                        (or, with quota, its share of a fleet plan), moves unless dryRun
 *   GET  /api/rebalance                  the current (or last) rebalance of this replica
 *   GET  /ui, /ui/console.js, /ui/console.css, /api/events   the live console (console/console-routes.ts)
 */
import type http from 'node:http';
import type { Registry } from 'prom-client';
import { LastRoutableBackendError, UnknownBackendError } from '../balancer/pool.js';
import { REBALANCE_BY, type RebalanceBy } from '../balancer/rebalance-plan.js';
import type { DrainOptions } from '../balancer/types.js';
import { HttpError, readBody, requestPath, send } from './admin-server.js';
import { type RebalanceQuota, parseQuotas } from './rebalance-command.js';
import { isConsolePath } from './console/console-paths.js';
import { type ConsoleOptions, ConsoleRoutes } from './console/console-routes.js';

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
  /** Absent: the rebalance routes answer 404 (a server that does not rebalance). */
  rebalance?(opts: AdminRebalanceOptions): Promise<AdminAnswer>;
  rebalanceStatus?(): Promise<AdminAnswer>;
}

export interface AdminRebalanceOptions {
  dryRun?: boolean;
  by?: RebalanceBy;
  /** This replica's share of a fleet plan (a cluster primary's plan over its workers): at most `count` from → to. */
  quota?: RebalanceQuota[];
  maxInFlight?: number;
  minAgeMs?: number;
  reason?: string;
}

/** A request body that is a JSON object, or empty (`{}`); anything else is a 400 that shows `example`. */
function jsonObjectBody(body: string, example: string): Record<string, unknown> {
  if (body.trim() === '') return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    parsed = null;
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new HttpError(400, `body must be a JSON object like ${example}`);
  return parsed as Record<string, unknown>;
}

/**
 * Parses `{"dryRun": true, "by": "bitrate", "maxInFlight": 4, "minAgeMs": 10000, "reason": "…",
 * "quota": [{from, to, count, ids?}]}` (every field optional; no others).
 */
export function rebalanceOptions(body: string): AdminRebalanceOptions {
  const obj = jsonObjectBody(body, '{"dryRun":true,"maxInFlight":4}');
  const opts: AdminRebalanceOptions = {};
  for (const [k, v] of Object.entries(obj)) {
    if (k === 'dryRun') {
      if (typeof v !== 'boolean') throw new HttpError(400, 'dryRun must be true or false');
      opts.dryRun = v;
    } else if (k === 'maxInFlight') {
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 1 || v > 10_000)
        throw new HttpError(400, 'maxInFlight must be an integer between 1 and 10000');
      opts.maxInFlight = v;
    } else if (k === 'minAgeMs') {
      if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > 2 ** 31 - 1)
        throw new HttpError(400, 'minAgeMs must be a number of milliseconds ≥ 0');
      opts.minAgeMs = v;
    } else if (k === 'reason') {
      if (typeof v !== 'string' || v.length > 200) throw new HttpError(400, 'reason must be a string of at most 200 characters');
      opts.reason = v;
    } else if (k === 'by') {
      if (!(REBALANCE_BY as readonly unknown[]).includes(v)) throw new HttpError(400, `by must be one of ${REBALANCE_BY.join(', ')}`);
      opts.by = v as RebalanceBy;
    } else if (k === 'quota') {
      const quota = parseQuotas(v);
      if (typeof quota === 'string') throw new HttpError(400, `quota: ${quota}`);
      opts.quota = quota;
    } else throw new HttpError(400, `unknown field "${k}" (known: dryRun, by, maxInFlight, minAgeMs, reason, quota)`);
  }
  return opts;
}

/** Parses `{"deadlineMs": 30000, "reason": "…", "force": true}`; `?deadlineMs=`, `?reason=` and `?force=1` work too, for curl one-liners. */
export function drainOptions(body: string, query: URLSearchParams): AdminDrainOptions {
  const obj = jsonObjectBody(body, '{"deadlineMs":30000,"reason":"deploy"}');
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
export function adminRoutes(api: AdminApi, consoleOpts: ConsoleOptions = {}): (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void> {
  const ui = new ConsoleRoutes(api, consoleOpts);
  return async (req, res) => {
    try {
      const { path } = requestPath(req);
      if (isConsolePath(path)) return await ui.serve(req, res, path);
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
  if (path === '/api/rebalance' && api.rebalance !== undefined && api.rebalanceStatus !== undefined) {
    if (method === 'GET') return answer(res, await api.rebalanceStatus());
    if (method !== 'POST') throw new HttpError(405, `use POST or GET for ${path}`);
    return answer(res, await api.rebalance(rebalanceOptions(await readBody(req))));
  }
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
