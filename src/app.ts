import type http from 'node:http';
import type net from 'node:net';
import { pino, type Logger } from 'pino';
import { BackendPool } from './balancer/pool.js';
import type { DrainOptions, DrainResult } from './balancer/types.js';
import { type Config, parseHostPort } from './config.js';
import { createAdminServer } from './control/admin-http.js';
import { ProxyMetrics } from './control/metrics.js';
import { ProxyServer } from './proxy/server.js';

/** A running proxy: listener, pool, metrics and admin API, wired from one Config. */
export interface RunningProxy {
  config: Config;
  log: Logger;
  pool: BackendPool;
  server: ProxyServer;
  metrics: ProxyMetrics;
  /** Address the RTMP listener is bound to (port resolved when 0 was asked). */
  address: net.AddressInfo;
  /** Address of the admin HTTP server, null when disabled. */
  adminAddress: net.AddressInfo | null;
  drain(name: string, opts?: DrainOptions): DrainResult;
  undrain(name: string): boolean;
  /** Set by sidecar shutdown: /readyz turns 503 at once. */
  shuttingDown: boolean;
  /** Stops accepting, closes every session, stops timers and the admin server. */
  stop(reason?: string): Promise<void>;
}

export function createLogger(config: Pick<Config, 'log'>, destination?: pino.DestinationStream): Logger {
  return pino({ level: config.log.level, base: { app: 'rtmp-goaway-proxy' } }, destination);
}

function listenHttp(server: http.Server, hostPort: string): Promise<net.AddressInfo> {
  const { host, port } = parseHostPort(hostPort);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      resolve(server.address() as net.AddressInfo);
    });
  });
}

export async function startProxy(config: Config, log: Logger = createLogger(config)): Promise<RunningProxy> {
  const pool = new BackendPool(config.backends, {
    defaultDrainDeadlineMs: config.drain.deadlineMs,
    health: config.health,
    logger: log,
  });
  const { host, port } = parseHostPort(config.listen);
  const server = new ProxyServer(
    {
      host,
      port,
      maxSessions: config.limits.maxSessions,
      session: {
        handshakeTimeoutMs: config.limits.handshakeTimeoutMs,
        idleTimeoutMs: config.limits.idleTimeoutMs,
        connectTimeoutMs: config.limits.connectTimeoutMs,
        maxPendingBytes: config.limits.maxPendingBytes,
        onParseError: config.onParseError,
        logStreamKeys: config.log.streamKeys,
        chunkLimits: {
          maxChunkSize: config.limits.maxChunkSize,
          minChunkSize: config.limits.minChunkSize,
          maxMessageSize: config.limits.maxMessageSize,
          maxCollectedSize: config.limits.maxCommandSize,
          maxChunkStreams: config.limits.maxChunkStreams,
        },
        amfLimits: { maxDepth: config.limits.amfMaxDepth, maxItems: config.limits.amfMaxItems },
      },
    },
    pool,
    log,
  );
  const metrics = new ProxyMetrics({
    activeSessions: () => server.activeByBackendAndCapability(),
    bytesTotal: () => server.bytesTotal(),
    backends: () => pool.list().map((b) => ({ name: b.name, up: b.health === 'up', draining: b.draining, sessions: b.sessions })),
    busConnected: () => 1,
  });
  server.setMetrics(metrics);
  pool.on('drain-complete', (e) => {
    metrics.drainDuration.observe({ backend: e.name }, e.durationMs / 1000);
    log.info({ backend: e.name, durationMs: e.durationMs }, 'drain complete: no session left on backend');
  });
  pool.on('deadline-close', (e) => metrics.deadlineCloses.inc({ backend: e.name }, e.closed));
  pool.on('backend-state', (e) => log.info({ backend: e.name, from: e.from, to: e.to }, 'backend state'));

  const address = await server.listen();
  pool.start();

  const proxy: RunningProxy = {
    config,
    log,
    pool,
    server,
    metrics,
    address,
    adminAddress: null,
    shuttingDown: false,
    drain(name, opts = {}) {
      const result = pool.drain(name, opts);
      metrics.drains.inc({ backend: name, action: 'drain' });
      log.info({ ...result, reason: opts.reason }, 'drain');
      return result;
    },
    undrain(name) {
      const changed = pool.undrain(name);
      metrics.drains.inc({ backend: name, action: 'undrain' });
      log.info({ backend: name, changed }, 'undrain');
      return changed;
    },
    async stop(reason = 'shutdown') {
      await Promise.all([server.stopAccepting(), (server.closeAll(reason), server.whenEmpty())]);
      pool.stop();
      if (admin !== null) await new Promise<void>((r) => admin!.close(() => r()));
    },
  };

  let admin: http.Server | null = null;
  if (config.admin !== '') {
    admin = createAdminServer(
      {
        backends: () => pool.list(),
        sessions: () => [...server.sessions.values()].map((s) => s.snapshot()),
        drain: (name, opts) => proxy.drain(name, opts),
        undrain: (name) => proxy.undrain(name),
        notReadyReason: () => {
          if (proxy.shuttingDown) return 'shutting down';
          if (!server.listening) return 'listener closed';
          const usable = pool.list().some((b) => b.health === 'up' && !b.draining);
          return usable ? null : 'no healthy backend';
        },
      },
      metrics,
      log.child({ component: 'admin' }),
    );
    proxy.adminAddress = await listenHttp(admin, config.admin);
  }
  log.info({ listen: `${address.address}:${address.port}`, admin: proxy.adminAddress ? `${proxy.adminAddress.address}:${proxy.adminAddress.port}` : null, backends: config.backends.map((b) => `${b.name}=${b.host}:${b.port}`) }, 'proxy listening');
  return proxy;
}
