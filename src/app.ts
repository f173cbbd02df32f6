import type http from 'node:http';
import type net from 'node:net';
import { pino, type Logger } from 'pino';
import { DnsDiscovery, mergeBackends } from './balancer/discovery.js';
import { BackendPool } from './balancer/pool.js';
import type { BackendConfig, SetBackendsResult } from './balancer/types.js';
import { type Config, parseHostPort } from './config.js';
import { AdminAccess } from './control/admin-access.js';
import { createAdminServer } from './control/admin-http.js';
import { listenAdmin } from './control/admin-server.js';
import type { ControlBus, FleetView, ReplicaRecord } from './control/bus.js';
import { ControlPlane, controlCommand } from './control/control-plane.js';
import { Rebalancer } from './proxy/rebalancer.js';
import { AutoRebalance } from './auto-rebalance.js';
import { LocalBus } from './control/local-bus.js';
import { ProxyMetrics } from './control/metrics.js';
import { RateLimitedLog } from './net/rate-limited-log.js';
import { RedisBus } from './control/redis-bus.js';
import { RegistryHeartbeat, sessionRecord } from './control/registry.js';
import { CidrSet } from './net/cidr.js';
import type { StrategySession } from './proxy/drain-strategy.js';
import { ProcessBudget } from './proxy/buffer-budget.js';
import { MigrationCoordinator } from './proxy/migration/coordinator.js';
import { Router, type RoutingSpec } from './balancer/routing.js';
import { IdleSweep, idleSweepIntervalMs } from './proxy/idle-sweep.js';
import { ProxyServer } from './proxy/server.js';
import type { SessionSettings } from './proxy/session/session.js';
import { loadTlsContext } from './net/tls.js';
import { type ConfigDiff, diffConfig, mergeReloadable } from './reload.js';
import { admissionOf, discoveryOf, drainStrategyOf, sessionSettingsOf } from './component-settings.js';
import { VERSION } from './version.js';
import { runtimeReport } from './runtime-tuning.js';
import { StreamDirectory } from './proxy/stream-directory.js';

/** A running proxy: listener, pool, metrics, control bus, registry heartbeat and admin API, wired from one Config. */
export interface RunningProxy {
  config: Config;
  log: Logger;
  pool: BackendPool<StrategySession>;
  server: ProxyServer;
  metrics: ProxyMetrics;
  /** Redis bus when `redis.url` is set, in-process bus otherwise. */
  bus: ControlBus;
  replicaId: string;
  /** Address the RTMP listener is bound to (port resolved when 0 was asked). */
  address: net.AddressInfo;
  /** Address of the admin HTTP server, null when disabled. */
  adminAddress: net.AddressInfo | null;
  /** DNS discovery of backends (`discovery.dnsName`), null when not configured. */
  discovery: DnsDiscovery | null;
  /** Address of the RTMPS listener, null when disabled. */
  tlsAddress: net.AddressInfo | null;
  /** Re-reads `tls.cert`/`tls.key` (SIGHUP, with the backends); throws when they do not load (the old ones stay). */
  reloadTls(): void;
  /** Drain and undrain (here and across the fleet), the fleet's desired state (control-plane.ts). */
  control: ControlPlane;
  /**
   * New backend list (sessions stay; removed backends drain) and, when given, new routing rules
   * (for sessions that arrive from now on); re-reads the RTMPS certificate; re-applies the fleet's
   * desired state.
   */
  reloadBackends(backends: BackendConfig[], routing?: RoutingSpec | null): SetBackendsResult;
  /**
   * Configuration reload (SIGHUP, watched config file; see reload.ts): applies the reloadable
   * settings of `next` (backends and routing as reloadBackends; limits and drain settings for
   * sessions and drains from now on) and reports the others that differ as ignored. Throws when
   * `next` cannot be applied (nothing changed then).
   */
  reload(next: Config): SetBackendsResult & ConfigDiff;
  /** Every replica and session of the fleet (this replica only with the local bus). */
  fleet(): Promise<FleetView>;
  /** Writes this replica's registry record soon (e.g. after `shuttingDown` changed). */
  flushRegistry(): void;
  /** Set by sidecar shutdown: /readyz turns 503 at once. */
  shuttingDown: boolean;
  /** Stops accepting, closes every session, stops timers, the bus and the admin server. Idempotent. */
  stop(reason?: string): Promise<void>;
}

/** `serve` exit code when a listener (RTMP, RTMPS or admin) could not be opened. */
export const EXIT_LISTEN_FAILED = 4;

/** Which listener could not be opened, where, and why (`serve` exits EXIT_LISTEN_FAILED with this one line). */
export class ListenError extends Error {
  constructor(
    readonly listener: 'RTMP' | 'RTMPS' | 'admin',
    readonly address: string,
    override readonly cause: NodeJS.ErrnoException,
  ) {
    super(`cannot open the ${listener} listener on ${address}: ${ListenError.why(cause)}`);
    this.name = 'ListenError';
  }

  private static why(err: NodeJS.ErrnoException): string {
    switch (err.code) {
      case 'EADDRINUSE':
        return 'address already in use (EADDRINUSE): another process listens there';
      case 'EACCES':
      case 'EPERM':
        return `permission denied (${err.code}): ports below 1024 need CAP_NET_BIND_SERVICE`;
      case 'EADDRNOTAVAIL':
        return 'address not available on this host (EADDRNOTAVAIL)';
      default:
        return err.code !== undefined ? `${err.message} (${err.code})` : err.message;
    }
  }
}

export function createLogger(config: Pick<Config, 'log'>, destination?: pino.DestinationStream): Logger {
  return pino({ level: config.log.level, base: { app: 'rtmp-goaway-proxy' } }, destination);
}

/** Registry heartbeat interval while a drain is in progress, so `drain --wait` sees sessions leave. */
const FAST_HEARTBEAT_MS = 1_000;

const hostPort = (a: net.AddressInfo | null): string | null => (a === null ? null : `${a.address}:${a.port}`);

/**
 * Wires a proxy from one Config: pool, RTMP server, metrics, control bus, control plane, registry
 * heartbeat, discovery, admin API; then opens the listeners. When anything fails on the way, what
 * was started is stopped (one path: `stop`) before the error is thrown.
 * `worker`: this process is worker N of a cluster (its admin API is internal, served to the primary).
 */
export async function startProxy(config: Config, log: Logger = createLogger(config), opts: { worker?: number } = {}): Promise<RunningProxy> {
  const replicaId = config.replicaId;
  /** What a reload or a sidecar shutdown changes (RunningProxy.config, .shuttingDown). */
  const live = { config, shuttingDown: false };
  let migration: MigrationCoordinator | null = null;
  const processBudget = new ProcessBudget(config.limits.processBufferBytes);
  // Its sources are read at scrape time only, after server, pool, bus and discovery exist.
  const metrics = new ProxyMetrics(
    {
      activeSessions: () => server.activeByBackendAndCapability(),
      activePlayers: () => server.activePlayers(),
      bytesTotal: () => server.bytesTotal(),
      forgetBackend: (name) => server.forgetBackend(name),
      backends: () => pool.list().map((b) => ({ name: b.name, up: b.health === 'up', draining: b.draining, sessions: b.sessions, maxSessions: b.maxSessions })),
      busConnected: () => (bus.connected ? 1 : 0),
      discovery: () =>
        discovery === null
          ? null
          : {
              source: discovery.source,
              rounds: discovery.rounds,
              failures: discovery.failures,
              backends: discovery.current?.length ?? 0,
              lastSuccessAt: discovery.lastSuccessAt,
            },
      migrations: () => ({ inFlight: migration?.inFlight ?? 0, queued: migration?.queued ?? 0 }),
      buffered: () => ({ held: processBudget.held, limit: processBudget.limit }),
      media: () => [...server.sessions.values()].flatMap((s) => s.snapshot().media ?? []),
    },
    { version: VERSION, limits: config.limits },
  );
  /** The migration coordinator, created by the first configuration that asks for migrations. */
  const migrationFor = (c: Config): MigrationCoordinator | null => {
    if (c.drain.nonCapable === 'migrate' && migration === null) {
      migration = new MigrationCoordinator({ ...c.migration, connectTimeoutMs: c.limits.connectTimeoutMs });
    }
    return migration;
  };
  const pool = new BackendPool(config.backends, {
    defaultDrainDeadlineMs: config.drain.deadlineMs,
    health: config.health,
    logger: log,
    strategy: drainStrategyOf(config),
    closeSpreadMs: config.drain.closeSpreadMs,
  });
  /** Backends from the configuration (replaced on reload); discovered ones are merged in by applyBackends. */
  let staticBackends: BackendConfig[] = config.backends;
  const discovery = discoveryOf(config, log);
  /** Static + discovered backends into the pool: gone ones drain, new discovered ones join once healthy. */
  function applyBackends(): SetBackendsResult {
    const merged = mergeBackends(staticBackends, discovery?.current ? [discovery.current] : []);
    for (const c of merged.conflicts) {
      log.warn({ backend: c.name, source: c.source }, 'discovered backend ignored: a configured backend has the same name');
    }
    return pool.setBackends(merged.backends, { pendingHealth: merged.discoveredNames });
  }
  /** Where streams' publishers are (this replica's sessions, the fleet registry): players are routed there. */
  const streams = new StreamDirectory(() => server.sessions.values(), replicaId);
  /** One rate limit for the peer-caused log lines of every session (reloads keep it). */
  const peerLog = new RateLimitedLog(log);
  /** Settings of the sessions that start from now on; a reload replaces the object (live sessions keep theirs). */
  const settingsOf = (c: Config, router: Router | null): SessionSettings =>
    sessionSettingsOf(c, { peerLog, metrics, migration: migrationFor(c), router, streams, processBudget });
  let sessionSettings = settingsOf(config, config.routing === null ? null : Router.compile(config.routing));
  const { host, port } = parseHostPort(config.listen);
  const server = new ProxyServer(
    {
      host,
      port,
      maxSessions: config.limits.maxSessions,
      acceptProxyProtocol: config.acceptProxyProtocol,
      acceptProxyProtocolFrom: CidrSet.parse(config.acceptProxyProtocolFrom.split(',').filter((c) => c !== '')).set,
      backendProxyProtocol: config.backendProxyProtocol,
      admission: admissionOf(config),
      session: sessionSettings,
    },
    pool,
    log,
  );
  const idleSweep = new IdleSweep(() => server.sessions.values(), idleSweepIntervalMs([config.limits.idleTimeoutMs, config.limits.backendIdleTimeoutMs]));
  const bus: ControlBus =
    config.redis.url !== undefined
      ? new RedisBus({ url: config.redis.url, prefix: config.redis.prefix, replicaId, sessionTtlMs: config.redis.sessionTtlMs, log })
      : new LocalBus();
  server.setMetrics(metrics);
  pool.on('drain-complete', (e) => metrics.drainDuration.observe({ backend: e.name }, e.durationMs / 1000));
  pool.on('deadline-close', (e) => metrics.deadlineCloses.inc({ backend: e.name }, e.closed));
  pool.on('health-check', (e) => metrics.healthCheckDuration.observe({ backend: e.name, result: e.ok ? 'ok' : 'failed' }, e.durationMs / 1000));
  pool.on('backend-added', (name) => metrics.backendAdded(name));
  pool.on('backend-removed', (name) => void metrics.backendRemoved(name));
  pool.on('backend-state', (e) => log.info({ backend: e.name, from: e.from, to: e.to }, 'backend state'));

  const startedAt = new Date().toISOString();
  /** Set as each listener opens. */
  let rtmpAddress: net.AddressInfo | null = null;
  let tlsAddress: net.AddressInfo | null = null;
  let adminAddress: net.AddressInfo | null = null;
  let admin: http.Server | null = null;

  const heartbeat = new RegistryHeartbeat({
    intervalMs: config.redis.heartbeatMs,
    fastIntervalMs: FAST_HEARTBEAT_MS,
    fast: () => live.shuttingDown || pool.list().some((b) => b.draining && b.sessions > 0),
    flush: async () => {
      await bus.report(
        replicaRecord(),
        [...server.sessions.values()].map((s) => sessionRecord(s.snapshot(), replicaId)),
      );
      // The other replicas' publishers, for players routed by stream.
      if (bus.kind === 'redis' && live.config.players.routing === 'stream') streams.setFleet((await bus.fleet()).sessions);
    },
    log,
  });
  function replicaRecord(): ReplicaRecord {
    return {
      replicaId,
      startedAt,
      heartbeatAt: new Date().toISOString(),
      listen: hostPort(rtmpAddress) ?? config.listen,
      admin: hostPort(adminAddress),
      shuttingDown: live.shuttingDown,
      backends: pool.list().map((b) => ({
        name: b.name,
        state: b.state,
        sessions: b.sessions,
        drainReason: b.drainReason ?? null,
        drainDeadlineAt: b.drainDeadlineAt ?? null,
      })),
    };
  }

  const rebalancer = new Rebalancer(
    pool,
    () => server.sessions.values(),
    () => live.config.rebalance,
    () => live.config.erpc.offer,
    metrics.rebalanceMoves,
    log.child({ component: 'rebalance' }),
  );
  const autoRebalance = new AutoRebalance(pool, {
    settings: () => live.config.rebalance,
    plan: () => rebalancer.planNow(),
    running: () => rebalancer.status().running,
    run: (why) => control.rebalance({ reason: why }, 'api'),
    runs: metrics.rebalanceAuto,
    log: log.child({ component: 'rebalance' }),
  });
  const control = new ControlPlane({
    pool,
    bus,
    log,
    replicaId,
    counters: metrics,
    rebalancer,
    defaultDeadlineMs: () => live.config.drain.deadlineMs,
    changed: () => heartbeat.flushSoon(),
  });

  let stopping: Promise<void> | undefined;
  /** Stops whatever runs; safe at any point of the start (the one cleanup path). Idempotent. */
  const stop = (reason: string): Promise<void> => (stopping ??= stopAll(reason));
  async function stopAll(reason: string): Promise<void> {
    discovery?.stop();
    idleSweep.stop();
    autoRebalance.stop();
    rebalancer.stop();
    await heartbeat.stop();
    await Promise.all([server.stopAccepting(), (server.closeAll(reason), server.whenEmpty())]);
    pool.stop();
    await bus.stop({ cleanup: true });
    control.stop();
    const a = admin;
    if (a?.listening) {
      const closed = new Promise<void>((r) => a.close(() => r()));
      // A console's event stream never ends by itself: end every admin connection now.
      a.closeAllConnections();
      await closed;
    }
  }

  /** Opens everything in order; throws ListenError when a listener cannot be opened. */
  async function open(): Promise<net.AddressInfo> {
    await control.start();
    if (discovery !== null) {
      discovery.on('update', (list) => {
        try {
          const result = applyBackends();
          log.info({ source: discovery.source, backends: list.length, ...result }, 'discovered backends applied');
        } catch (err) {
          log.error({ err, source: discovery.source }, 'could not apply discovered backends');
          return;
        }
        control.converge('discovery');
        heartbeat.flushSoon();
      });
      // First resolution before listening (bounded by the resolver's timeout); failures keep static backends only.
      await discovery.refresh();
    }
    const address = await server.listen().catch((err: NodeJS.ErrnoException) => {
      throw new ListenError('RTMP', config.listen, err);
    });
    rtmpAddress = address;
    idleSweep.start();
    if (config.tls.listen !== '') {
      const t = parseHostPort(config.tls.listen);
      const context = loadTlsContext(config.tls.cert, config.tls.key);
      tlsAddress = await server.listenTls(t.host, t.port, context).catch((err: NodeJS.ErrnoException) => {
        throw new ListenError('RTMPS', config.tls.listen, err);
      });
    }
    pool.start();
    discovery?.start(false);
    heartbeat.start();
    if (config.admin !== '') {
      admin = createAdminServer(
        {
          backends: () => pool.list(),
          sessions: () => [...server.sessions.values()].map((s) => s.snapshot()),
          async drain(name, o) {
            const out = await control.control(controlCommand('drain', name, o), 'admin', { force: o.force === true });
            return { ...out.result, fleet: out.fleet };
          },
          async undrain(name) {
            return (await control.control(controlCommand('undrain', name), 'admin')).result;
          },
          rebalance: (o) => control.rebalance(o, 'admin'),
          rebalanceStatus: () => control.rebalanceStatus(),
          notReadyReason: () => {
            if (live.shuttingDown) return 'shutting down';
            if (!server.listening) return 'listener closed';
            if (pool.hasProvenRoutable) return null;
            if (pool.allRoutableDraining) return 'all backends draining';
            return pool.list().some((b) => b.health === 'up' && !b.draining) ? 'waiting for the first health check to find a backend up' : 'no healthy backend';
          },
        },
        metrics,
        log.child({ component: 'admin' }),
        { access: new AdminAccess(parseHostPort(config.admin).host, config.adminToken, config.admin) },
      );
      adminAddress = await listenAdmin(admin, parseHostPort(config.admin), log).catch((err: NodeJS.ErrnoException) => {
        throw new ListenError('admin', config.admin, err);
      });
    }
    return address;
  }

  let address: net.AddressInfo;
  try {
    address = await open();
  } catch (err) {
    await stop('startup-failed');
    throw err;
  }

  const proxy: RunningProxy = {
    get config() {
      return live.config;
    },
    set config(c) {
      live.config = c;
    },
    get shuttingDown() {
      return live.shuttingDown;
    },
    set shuttingDown(v) {
      live.shuttingDown = v;
    },
    log,
    pool,
    server,
    metrics,
    bus,
    replicaId,
    address,
    adminAddress,
    discovery,
    tlsAddress,
    control,
    reloadTls() {
      if (config.tls.listen === '') return;
      server.setTlsContext(loadTlsContext(config.tls.cert, config.tls.key));
      log.info({ cert: config.tls.cert }, 'TLS certificate reloaded');
    },
    reloadBackends(backends, routing) {
      // Compiled first: invalid rules throw before anything changes.
      if (routing !== undefined) {
        sessionSettings = { ...sessionSettings, router: routing === null ? null : Router.compile(routing) };
        server.setLimits({ maxSessions: live.config.limits.maxSessions, admission: admissionOf(live.config), session: sessionSettings });
      }
      // SIGHUP also renews the RTMPS certificate; a bad file keeps the old one.
      try {
        proxy.reloadTls();
      } catch (err) {
        log.error({ err: (err as Error).message }, 'TLS certificate reload failed: keeping the current one');
      }
      staticBackends = backends;
      const result = applyBackends();
      control.converge('reload');
      heartbeat.flushSoon();
      return result;
    },
    reload(next) {
      const diff = diffConfig(live.config, next);
      // Compiled before anything changes: invalid rules throw here.
      const router = next.routing === null ? null : Router.compile(next.routing);
      const merged = mergeReloadable(live.config, next);
      pool.setDrainSettings({ defaultDrainDeadlineMs: merged.drain.deadlineMs, closeSpreadMs: merged.drain.closeSpreadMs, strategy: drainStrategyOf(merged) });
      live.config = merged;
      sessionSettings = settingsOf(merged, router);
      server.setLimits({ maxSessions: merged.limits.maxSessions, admission: admissionOf(merged), session: sessionSettings });
      idleSweep.setIntervalMs(idleSweepIntervalMs([merged.limits.idleTimeoutMs, merged.limits.backendIdleTimeoutMs]));
      metrics.setLimits(merged.limits);
      const result = proxy.reloadBackends(next.backends);
      return { ...result, ...diff };
    },
    fleet: () => bus.fleet(),
    flushRegistry: () => heartbeat.flushSoon(),
    stop: (reason = 'shutdown') => stop(reason),
  };
  log.info(
    {
      listen: hostPort(address),
      // A worker's admin API is for its primary only: named so no one takes it for the proxy's.
      ...(opts.worker === undefined ? { admin: hostPort(adminAddress) } : { worker: opts.worker, workerAdmin: hostPort(adminAddress) }),
      tls: hostPort(tlsAddress),
      acceptProxyProtocol: config.acceptProxyProtocol,
      ...(config.acceptProxyProtocol === 'off' ? {} : { acceptProxyProtocolFrom: config.acceptProxyProtocolFrom }),
      backendProxyProtocol: config.backendProxyProtocol,
      backends: pool.list().map((b) => `${b.name}=${b.host}:${b.port}`),
      discovery: discovery === null ? null : `${discovery.type} ${discovery.name}`,
      replicaId,
      bus: bus.kind,
      // Whether node runs with the runtime settings bin/ applies (src/runtime-tuning.ts).
      runtime: runtimeReport(),
    },
    opts.worker === undefined ? 'proxy listening' : 'worker listening',
  );
  return proxy;
}
