/**
 * Who may use the admin API: the one policy of the proxy's admin server and of the cluster
 * primary's (both run it through admin-server.ts). Pure: a request's method, path and headers in,
 * a refusal or null out.
 *
 *  - Probes (`GET /healthz`, `/readyz`, `/metrics`) are open: the kubelet and Prometheus carry no
 *    token. Everything else (`/api/*`, every `POST`, unknown paths) is guarded.
 *  - On a loopback admin address the `Host` header must name loopback (`localhost`,
 *    `127.0.0.0/8`, `[::1]`, any port: `ssh -L` and `kubectl port-forward` change it): a
 *    DNS-rebinding page reaches 127.0.0.1 under its own name, and is refused here, probes included.
 *  - An `Origin` header (browsers send one on every cross-origin request and every POST) must be
 *    the admin's own origin: a page elsewhere cannot drain through a visitor's browser.
 *  - On any other admin address there must be a token: without one the guarded routes answer 403
 *    with how to set it. With a token, every guarded request needs `Authorization: Bearer <token>`,
 *    reads included (`/api/sessions` lists client addresses and apps), compared in constant time.
 *  - A `POST` must say `Content-Type: application/json`: an HTML form or a `no-cors` fetch cannot,
 *    so no cross-site "simple request" reaches a mutation even where Origin is missing.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import net from 'node:net';

/** Why a request was refused (the `reason` of its log line). */
export type AdminRefusalReason = 'host' | 'origin' | 'no-token' | 'token' | 'content-type';

export interface AdminRefusal {
  status: 401 | 403 | 415;
  reason: AdminRefusalReason;
  /** One line for the caller: what is wrong and how to fix it. */
  message: string;
}

/** The parts of a request the policy looks at. */
export interface AdminRequestView {
  method: string;
  /** Path without the query string and trailing slashes. */
  path: string;
  headers: { host?: string | undefined; origin?: string | undefined; authorization?: string | undefined; 'content-type'?: string | undefined };
}

const PROBES = new Set(['/healthz', '/readyz', '/metrics']);

/** A probe: open whatever the token, so that the kubelet and Prometheus need none. */
export function isProbe(method: string, path: string): boolean {
  return method === 'GET' && PROBES.has(path);
}

/** `localhost`, 127.0.0.0/8, `::1` (bracketed or not, in any spelling). */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost') return true;
  const v4 = h.startsWith('::ffff:') && net.isIPv4(h.slice(7)) ? h.slice(7) : h;
  if (net.isIPv4(v4)) return v4.startsWith('127.');
  return net.isIPv6(h) && new URL(`http://[${h}]/`).hostname === '[::1]';
}

/** `host[:port]` of a Host header or an origin, lower-cased, with an explicit port (80 when absent); null when unparsable. */
function authority(hostHeader: string, scheme = 'http'): { hostname: string; port: string } | null {
  try {
    const u = new URL(`${scheme}://${hostHeader}`);
    if (u.username !== '' || u.password !== '' || u.pathname !== '/' || u.search !== '' || u.hash !== '') return null;
    return { hostname: u.hostname, port: u.port === '' ? (scheme === 'https' ? '443' : '80') : u.port };
  } catch {
    return null;
  }
}

/** SHA-256 of a token: equal-length digests make the comparison constant-time whatever was sent. */
const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

export class AdminAccess {
  /** The admin binds a loopback address: no token needed, but Host must be loopback. */
  readonly loopback: boolean;
  private readonly tokenDigest: Buffer | null;

  /**
   * @param host the address the admin API binds (`127.0.0.1`, `0.0.0.0`, `::`, a pod IP…)
   * @param token the bearer token; empty = none
   * @param shownAs how the admin address is named in messages (`0.0.0.0:9935`)
   */
  constructor(
    host: string,
    token: string,
    private readonly shownAs: string = host,
  ) {
    this.loopback = isLoopbackHost(host);
    this.tokenDigest = token === '' ? null : digest(token);
  }

  get hasToken(): boolean {
    return this.tokenDigest !== null;
  }

  /** Set when the API is closed for lack of a token (logged once at start). */
  get closedWarning(): string | null {
    return this.loopback || this.hasToken ? null : this.noTokenMessage();
  }

  /** null: the request may go on to its route; else why not. */
  check(req: AdminRequestView): AdminRefusal | null {
    const probe = isProbe(req.method, req.path);
    if (this.loopback && !loopbackHostHeader(req.headers.host)) {
      return {
        status: 403,
        reason: 'host',
        message: 'Host must be localhost, 127.0.0.1 or [::1]: this admin API listens on loopback only (DNS rebinding protection)',
      };
    }
    if (probe) return null;
    const origin = req.headers.origin;
    if (origin !== undefined && !this.ownOrigin(origin, req.headers.host)) {
      return { status: 403, reason: 'origin', message: "cross-origin requests are refused: the Origin header must be the admin API's own" };
    }
    if (this.tokenDigest === null) {
      if (!this.loopback) return { status: 403, reason: 'no-token', message: this.noTokenMessage() };
    } else if (!this.authorized(req.headers.authorization)) {
      return {
        status: 401,
        reason: 'token',
        message: 'a valid "Authorization: Bearer <token>" header is required (the admin token: adminToken or adminTokenFile)',
      };
    }
    if (req.method === 'POST' && !isJson(req.headers['content-type'])) {
      return { status: 415, reason: 'content-type', message: 'POST needs "Content-Type: application/json" (a JSON object body, {} for none)' };
    }
    return null;
  }

  /** Constant-time comparison of `Authorization: Bearer <token>` with the configured token. */
  authorized(header: string | undefined): boolean {
    if (this.tokenDigest === null) return true;
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(header ?? '');
    const given = digest(m === null ? '' : m[1]!);
    return timingSafeEqual(given, this.tokenDigest) && m !== null;
  }

  private noTokenMessage(): string {
    return (
      `the admin API listens on ${this.shownAs}, not on loopback, and has no token: /api and POST are refused. ` +
      'Set adminTokenFile (--admin-token-file, RTMP_GOAWAY_ADMIN_TOKEN_FILE: a file such as a mounted Secret) or adminToken (RTMP_GOAWAY_ADMIN_TOKEN), or bind admin to 127.0.0.1 (docs/security.md)'
    );
  }

  /** The Origin names the host the request was sent to (http or https), e.g. a page the admin API served. */
  private ownOrigin(origin: string, host: string | undefined): boolean {
    if (host === undefined) return false;
    const m = /^(https?):\/\/([^/]+)$/i.exec(origin.trim());
    if (m === null) return false; // `null` (sandboxed pages, file:), other schemes, paths
    const o = authority(m[2]!, m[1]!.toLowerCase());
    const h = authority(host, m[1]!.toLowerCase());
    return o !== null && h !== null && o.hostname === h.hostname && o.port === h.port;
  }
}

function loopbackHostHeader(host: string | undefined): boolean {
  const a = host === undefined ? null : authority(host);
  return a !== null && isLoopbackHost(a.hostname);
}

function isJson(contentType: string | undefined): boolean {
  return (contentType ?? '').split(';')[0]!.trim().toLowerCase() === 'application/json';
}
