import { timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { Logger } from 'pino';
import { LastRoutableBackendError, UnknownBackendError } from '../balancer/pool.js';
import type { BackendSnapshot, DrainOptions, DrainResult } from '../balancer/types.js';
import type { SessionSnapshot } from '../proxy/session.js';
import type { ProxyMetrics } from './metrics.js';
import { RateLimitedLog } from './rate-limited-log.js';

/** What the admin API needs from the running proxy. */
export interface AdminTarget {
  backends(): BackendSnapshot[];
  sessions(): SessionSnapshot[];
  /** `force`: drain even the last backend that can take new sessions (else LastRoutableBackendError). */
  drain(name: string, opts: AdminDrainOptions): Promise<DrainResult> | DrainResult;
  undrain(name: string): Promise<boolean> | boolean;
  /** null when ready, else why not (shown in the 503 body). */
  notReadyReason(): string | null;
}

export type AdminDrainOptions = DrainOptions & { force?: boolean };

/** Request bodies are tiny JSON objects; anything bigger is refused rather than buffered. */
const MAX_BODY = 16 * 1024;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** A JSON answer (also used by the cluster primary's admin API). */
export function send(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2) + '\n';
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' });
  res.end(text);
}

/** A request body, bounded (MAX_BODY). */
export function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    req.on('data', (b: Buffer) => {
      size += b.length;
      if (size > MAX_BODY) {
        reject(new HttpError(413, `body larger than ${MAX_BODY} bytes`));
        req.destroy();
        return;
      }
      parts.push(b);
    });
    req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    req.on('error', reject);
  });
}

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
  /** Bearer token of the mutating endpoints; empty or absent = none. */
  token?: string;
}

/** Constant-time comparison of `Authorization: Bearer <token>` with the configured token. */
function authorized(req: http.IncomingMessage, token: string): boolean {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
  if (m === null) return false;
  const given = Buffer.from(m[1]!);
  const want = Buffer.from(token);
  return given.length === want.length && timingSafeEqual(given, want);
}

/**
 * Admin HTTP: /healthz (process alive), /readyz (can take publishers), /metrics (Prometheus),
 * /api/backends, /api/sessions, POST /api/backends/:name/drain and /undrain.
 */
export function createAdminServer(target: AdminTarget, metrics: ProxyMetrics, log: Logger, opts: AdminOptions = {}): http.Server {
  const token = opts.token ?? '';
  /** Anyone who reaches the port controls the rate of refused requests: their lines are limited. */
  const peerLog = new RateLimitedLog(log);
  const server = http.createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (err instanceof HttpError) return send(res, err.status, { error: err.message });
      if (err instanceof UnknownBackendError) return send(res, 404, { error: err.message });
      if (err instanceof LastRoutableBackendError) return send(res, 409, { error: err.message, backend: err.backend, hint: 'to drain it anyway: "force": true in the body or ?force=1 (CLI: --force)' });
      log.error({ err }, 'admin request failed');
      if (!res.headersSent) send(res, 500, { error: 'internal error' });
    });
  });
  // Bound slow clients: the admin port must not be a way to hold sockets forever.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.keepAliveTimeout = 5_000;

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://admin');
    const path = url.pathname.replace(/\/+$/, '') || '/';
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
      if (token !== '' && !authorized(req, token)) {
        metrics.controlMessages.inc({ source: 'admin', result: 'rejected' });
        peerLog.write('unauthorized', { method, path, remote: req.socket.remoteAddress }, 'admin request without a valid bearer token refused');
        res.setHeader('www-authenticate', 'Bearer realm="rtmp-goaway-proxy"');
        throw new HttpError(401, 'a valid "Authorization: Bearer <token>" header is required (admin token)');
      }
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

  return server;
}
