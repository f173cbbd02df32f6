/**
 * The HTTP server both admin APIs run on (the proxy's, admin-http.ts, and the cluster primary's,
 * cluster.ts): bounded requests, JSON answers, the access policy of admin-access.ts applied
 * before any route, and one log line per mutation naming its caller.
 */
import http from 'node:http';
import type net from 'node:net';
import type { Logger } from 'pino';
import { type AdminAccess, type AdminRefusalReason } from './admin-access.js';
import { RateLimitedLog } from '../net/rate-limited-log.js';

/** Request bodies are tiny JSON objects; anything bigger is refused rather than buffered. */
const MAX_BODY = 16 * 1024;
/** Paths in log lines are cut here (a backend name is at most 63 characters). */
const MAX_LOGGED_PATH = 200;

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** A JSON answer. */
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

/** The path of a request URL without query and trailing slashes (`/api/backends/b1/drain`). */
export function requestPath(req: http.IncomingMessage): { url: URL; path: string } {
  const url = new URL(req.url ?? '/', 'http://admin');
  return { url, path: url.pathname.replace(/\/+$/, '') || '/' };
}

export interface AdminServerOptions {
  access: AdminAccess;
  log: Logger;
  /** Counts a refused request (e.g. `rtmp_goaway_control_messages_total{source="admin",result="rejected"}`). */
  refused?: (reason: AdminRefusalReason) => void;
}

/**
 * An admin HTTP server: each request passes `access` first (refusals answered with their one-line
 * reason, counted, logged rate-limited: anyone who reaches the port can cause them), then goes to
 * `route`. Every POST that passed is logged with the caller's address and its HTTP outcome.
 * `route` throws HttpError for an error answer; anything else is a 500, logged.
 */
export function createAdminHttpServer(opts: AdminServerOptions, route: (req: http.IncomingMessage, res: http.ServerResponse) => Promise<void>): http.Server {
  const { access, log } = opts;
  const refusals = new RateLimitedLog(log);
  const server = http.createServer((req, res) => {
    const method = req.method ?? 'GET';
    const { path } = requestPath(req);
    const caller = `${req.socket.remoteAddress ?? '?'}:${req.socket.remotePort ?? 0}`;
    const shownPath = path.length > MAX_LOGGED_PATH ? `${path.slice(0, MAX_LOGGED_PATH)}…` : path;
    const refusal = access.check({ method, path, headers: req.headers });
    if (refusal !== null) {
      opts.refused?.(refusal.reason);
      refusals.write(
        `refused:${refusal.reason}`,
        { remote: caller, method, path: shownPath, status: refusal.status, reason: refusal.reason },
        'admin request refused',
      );
      if (refusal.status === 401) res.setHeader('www-authenticate', 'Bearer realm="rtmp-goaway-proxy"');
      // The body of a refused request is not read: the connection closes after the answer.
      res.setHeader('connection', 'close');
      send(res, refusal.status, { error: refusal.message });
      return;
    }
    if (method === 'POST') {
      // `close` also comes when the caller went away before the answer (status null then).
      res.once('close', () => log.info({ remote: caller, method, path: shownPath, status: res.headersSent ? res.statusCode : null }, 'admin mutation'));
    }
    route(req, res).catch((err: unknown) => {
      if (err instanceof HttpError) return send(res, err.status, { error: err.message });
      log.error({ err }, 'admin request failed');
      if (!res.headersSent) send(res, 500, { error: 'internal error' });
    });
  });
  // Bound slow clients: the admin port must not be a way to hold sockets forever.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  server.keepAliveTimeout = 5_000;
  server.once('listening', () => {
    const warning = access.closedWarning;
    if (warning !== null) log.warn(warning);
  });
  server.once('close', () => refusals.stop());
  return server;
}

/**
 * Opens an admin server; rejects with the listen error. Once listening, an accept
 * error (EMFILE while out of descriptors) must not crash the process: logged at most every 5 s.
 */
export function listenAdmin(server: http.Server, at: { host: string; port: number }, log: Logger): Promise<net.AddressInfo> {
  const { host, port } = at;
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    // exclusive: a cluster worker gets a port of its own (by default workers share one, handed round-robin by the
    // primary, which then could not reach a given worker's admin API); no effect outside a cluster worker.
    server.listen({ host, port, exclusive: true }, () => {
      server.off('error', reject);
      const limited = new RateLimitedLog(log, { burst: 1, perSecond: 1 / 5 });
      server.on('error', (err: NodeJS.ErrnoException) => {
        limited.write(`admin-listener:${err.code ?? ''}`, { err: err.message, code: err.code }, 'admin listener error (logged at most every 5 s)');
      });
      server.once('close', () => limited.stop());
      resolve(server.address() as net.AddressInfo);
    });
  });
}
