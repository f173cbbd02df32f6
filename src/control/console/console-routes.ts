/**
 * The live console of the admin server: `/ui` (an HTML shell), its two static files, and
 * `/api/events`, a server-sent-events stream of {backends, sessions, rebalance} snapshots once a
 * second (`rebalance`: the bounded view of console-rebalance.ts, null where nothing rebalances).
 *
 *   GET /ui, /ui/console.js, /ui/console.css   open like the probes (admin-access.ts): they carry
 *                                              no data, only the page that asks for the token
 *   GET /api/events                            guarded like every /api route (token, Origin, Host)
 *
 * The page reads the stream with fetch (EventSource cannot send the Authorization header) and
 * drains, undrains and rebalances through the ordinary POST routes. The number of open streams is
 * bounded and counted.
 */
import { readFileSync } from 'node:fs';
import type http from 'node:http';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Counter, Gauge, type Registry } from 'prom-client';
import { HttpError } from '../admin-server.js';
import type { AdminApi } from '../admin-routes.js';
import { CONSOLE_ASSETS, CONSOLE_EVENTS } from './console-paths.js';
import { type ConsoleRebalance, consoleRebalance } from './console-rebalance.js';

const STATIC_DIR = join(dirname(fileURLToPath(import.meta.url)), 'static');

/** The page's own files only: no inline script or style, no other origin, no framing. */
const CSP =
  "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

export interface ConsoleOptions {
  /** Event streams open at once; the next one is answered 503. */
  maxClients?: number;
  /** Milliseconds between two snapshots on a stream. */
  intervalMs?: number;
  /** Where the console's metrics go (the proxy's registry); none for a server without one. */
  registry?: Registry;
}

export const CONSOLE_DEFAULTS = { maxClients: 8, intervalMs: 1000 } as const;

const CLIENTS = 'rtmp_goaway_admin_console_clients';
const STREAMS = 'rtmp_goaway_admin_console_streams_total';

export class ConsoleRoutes {
  private clients = 0;
  private readonly files = new Map<string, Buffer>();
  private readonly maxClients: number;
  private readonly intervalMs: number;
  private readonly gauge: Gauge | null;
  private readonly streams: Counter<'result'> | null;

  constructor(
    private readonly api: AdminApi,
    opts: ConsoleOptions = {},
  ) {
    this.maxClients = opts.maxClients ?? CONSOLE_DEFAULTS.maxClients;
    this.intervalMs = opts.intervalMs ?? CONSOLE_DEFAULTS.intervalMs;
    const r = opts.registry;
    // One set per registry: a second console on the same registry shares them.
    this.gauge =
      r === undefined
        ? null
        : ((r.getSingleMetric(CLIENTS) as Gauge | undefined) ??
          new Gauge({ name: CLIENTS, help: 'Console event streams open now (/api/events).', registers: [r] }));
    this.streams =
      r === undefined
        ? null
        : ((r.getSingleMetric(STREAMS) as Counter<'result'> | undefined) ??
          new Counter({
            name: STREAMS,
            help: 'Console event streams asked for: opened, or refused because too many were open.',
            labelNames: ['result'] as const,
            registers: [r],
          }));
  }

  async serve(req: http.IncomingMessage, res: http.ServerResponse, path: string): Promise<void> {
    if (req.method !== 'GET') throw new HttpError(405, `use GET for ${path}`);
    if (path === CONSOLE_EVENTS) return this.stream(req, res);
    const type = CONSOLE_ASSETS[path]!;
    res.writeHead(200, { 'content-type': type, 'cache-control': 'no-cache', 'content-security-policy': CSP, 'x-content-type-options': 'nosniff' });
    res.end(this.file(path === '/ui' ? 'index.html' : path.slice('/ui/'.length)));
  }

  /** Read once, from the folder next to this module (src/ when run from source, dist/ when built). */
  private file(name: string): Buffer {
    let b = this.files.get(name);
    if (b === undefined) {
      b = readFileSync(join(STATIC_DIR, name));
      this.files.set(name, b);
    }
    return b;
  }

  /** The rebalance status as GET /api/rebalance answers it, cut down for the page; null where nothing rebalances. */
  private async rebalance(): Promise<ConsoleRebalance | null> {
    if (this.api.rebalanceStatus === undefined) return null;
    const a = await this.api.rebalanceStatus();
    if (a.status !== 200) return null;
    if ('json' in a) return consoleRebalance(a.json);
    try {
      return consoleRebalance(JSON.parse(a.text));
    } catch {
      return null;
    }
  }

  private async stream(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    if (this.clients >= this.maxClients) {
      this.streams?.inc({ result: 'refused' });
      throw new HttpError(503, `too many console streams open (${this.maxClients}); close a console tab`);
    }
    this.streams?.inc({ result: 'opened' });
    this.clients++;
    this.gauge?.set(this.clients);
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
    let timer: NodeJS.Timeout | null = null;
    let closed = false;
    const stop = (): void => {
      if (closed) return;
      closed = true;
      if (timer !== null) clearTimeout(timer);
      this.clients--;
      this.gauge?.set(this.clients);
    };
    res.once('close', stop);
    req.socket.setTimeout(0);
    const tick = async (): Promise<void> => {
      if (closed) return;
      try {
        const [backends, sessions, rebalance] = await Promise.all([this.api.backends(), this.api.sessions(null), this.rebalance()]);
        if (closed) return;
        // A slow reader: skip this snapshot rather than buffer them (the next one supersedes it).
        if (res.writableNeedDrain) return schedule();
        res.write(`event: snapshot\ndata: ${JSON.stringify({ at: Date.now(), backends, sessions, rebalance })}\n\n`);
      } catch (err) {
        if (closed) return;
        res.write(`event: failure\ndata: ${JSON.stringify({ error: (err as Error).message })}\n\n`);
      }
      schedule();
    };
    const schedule = (): void => {
      if (!closed) timer = setTimeout(() => void tick(), this.intervalMs);
    };
    await tick();
  }
}
