import { randomUUID } from 'node:crypto';
import type http from 'node:http';
import type net from 'node:net';
import { pino, type Logger } from 'pino';
import { DnsDiscovery, mergeBackends } from './balancer/discovery.js';
import { BackendPool, LastRoutableBackendError, UnknownBackendError } from './balancer/pool.js';
import type { BackendConfig, DrainOptions, DrainResult, SetBackendsResult } from './balancer/types.js';
import { type Config, parseHostPort } from './config.js';
import { AdminAccess } from './control/admin-access.js';
import { createAdminServer } from './control/admin-http.js';
import type { ControlBus, FleetView, PublishOutcome, ReplicaRecord } from './control/bus.js';
import { type ControlCommand, type DesiredDrain, desiredFromCommand, planConvergence } from './control/commands.js';
import { LocalBus } from './control/local-bus.js';
import { ProxyMetrics } from './control/metrics.js';
import { RateLimitedLog } from './net/rate-limited-log.js';
import { RedisBus } from './control/redis-bus.js';
import { RegistryHeartbeat, sessionRecord } from './control/registry.js';
import { CidrSet } from './net/cidr.js';
import { createDrainStrategy } from './proxy/drain-strategy.js';
import { ProcessBudget } from './proxy/buffer-budget.js';
import { MigrationCoordinator } from './proxy/migration.js';
import { Router, type RoutingSpec } from './balancer/routing.js';
import { IdleSweep, idleSweepIntervalMs } from './proxy/idle-sweep.js';
import { ProxyServer } from './proxy/server.js';
import type { SessionSettings } from './proxy/session/session.js';
import { loadTlsContext } from './net/tls.js';
import { type ConfigDiff, diffConfig, mergeReloadable } from './reload.js';
import { VERSION } from './version.js';
import { runtimeReport } from './runtime-tuning.js';
import { StreamDirectory } from './proxy/stream-directory.js';

/** Where a control command came from (the `source` label of `rtmp_goaway_control_messages_total`). */
export type ControlSource = 'admin' | 'bus' | 'signal' | 'api';

/** What `RunningProxy.control` did: the local effect, and whether the fleet was told. */
export interface ControlOutcome {
  command: ControlCommand;
  /** Drain: the pool's DrainResult on this replica; undrain: whether the backend was draining. */
  result: DrainResult | boolean;
  fleet: PublishOutcome & { bus: 'local' | 'redis' };
}

/** A running proxy: listener, pool, metrics, control bus, registry heartbeat and admin API, wired from one Config. */
export interface RunningProxy {
  config: Config;
  log: Logger;
  pool: BackendPool;
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
  /**
   * Drains `name` on this replica at once and publishes the drain to the fleet (in the background;
   * `control()` waits for it). Throws UnknownBackendError, and LastRoutableBackendError unless `force`.
   */
  drain(name: string, opts?: DrainOptions & { force?: boolean }): DrainResult;
  /** Undrains here at once and publishes the undrain to the fleet. Throws UnknownBackendError. */
  undrain(name: string): boolean;
  /**
   * Applies a command here at once, then publishes it to the fleet and persists it (Redis). A drain
   * that would leave this replica no routable backend throws LastRoutableBackendError unless `force`.
   */
  control(cmd: ControlCommand, source?: ControlSource, opts?: { force?: boolean }): Promise<ControlOutcome>;
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

function listenHttp(server: http.Server, hostPort: string, log: Logger): Promise<net.AddressInfo> {
  const { host, port } = parseHostPort(hostPort);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      // Once listening, an accept error (EMFILE while out of descriptors) must not crash the process.
      const limited = new RateLimitedLog(log, { burst: 1, perSecond: 1 / 5 });
      server.on('error', (err: NodeJS.ErrnoException) => {
        limited.write(`admin-listener:${err.code ?? ''}`, { err: err.message, code: err.code }, 'admin listener error (logged at most every 5 s)');
      });
      resolve(server.address() as net.AddressInfo);
    });
  });
}

/** Own command ids remembered until they come back from the bus (bounded). */
const MAX_OWN_IDS = 1_000;
/** Registry heartbeat interval while a drain is in progress, so `drain --wait` sees sessions leave. */
const FAST_HEARTBEAT_MS = 1_000;

/** `worker`: this process is worker N of a cluster (its admin API is internal, served to the primary). */
export async function startProxy(config: Config, log: Logger = createLogger(config), opts: { worker?: number } = {}): Promise<RunningProxy> {
  const replicaId = config.replicaId;
  let migration: MigrationCoordinator | null = null;
  const processBudget = new ProcessBudget(config.limits.processBufferBytes);
  // Its sources are read at scrape time only, after server, pool, bus and discovery exist.
  const metrics = new ProxyMetrics({
    activeSessions: () => server.activeByBackendAndCapability(),
    activePlayers: () => server.activePlayers(),
    bytesTotal: () => server.bytesTotal(),
    forgetBackend: (name) => server.forgetBackend(name),
    backends: () => pool.list().map((b) => ({ name: b.name, up: b.health === 'up', draining: b.draining, sessions: b.sessions, maxSessions: b.maxSessions })),
    busConnected: () => (bus.connected ? 1 : 0),
    discovery: () =>
      discovery === null
        ? null
        : { source: discovery.source, rounds: discovery.rounds, failures: discovery.failures, backends: discovery.current?.length ?? 0, lastSuccessAt: discovery.lastSuccessAt },
    migrations: () => ({ inFlight: migration?.inFlight ?? 0, queued: migration?.queued ?? 0 }),
    buffered: () => ({ held: processBudget.held, limit: processBudget.limit }),
  }, { version: VERSION, limits: config.limits });
  if (config.drain.nonCapable === 'migrate') {
    migration = new MigrationCoordinator({ ...config.migration, connectTimeoutMs: config.limits.connectTimeoutMs }, metrics);
  }
  const pool = new BackendPool(config.backends, {
    defaultDrainDeadlineMs: config.drain.deadlineMs,
    health: config.health,
    logger: log,
    strategy: createDrainStrategy({ nonCapable: config.drain.nonCapable, erpc: config.erpc.offer }),
    closeSpreadMs: config.drain.closeSpreadMs,
  });
  /** Backends from the configuration (replaced on reload); discovered ones are merged in by applyBackends. */
  let staticBackends: BackendConfig[] = config.backends;
  const discovery =
    config.discovery.dnsName === ''
      ? null
      : new DnsDiscovery({
          name: config.discovery.dnsName,
          type: config.discovery.recordType,
          port: config.discovery.port,
          intervalMs: config.discovery.intervalMs,
          jitterMs: config.discovery.jitterMs,
          timeoutMs: Math.min(config.discovery.intervalMs, 2_000),
          ...(config.discovery.servers !== '' ? { servers: config.discovery.servers.split(',') } : {}),
          maxSessions: config.discovery.maxSessions,
          sessionsPerWeight: config.discovery.sessionsPerWeight,
          log,
        });
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
  const sessionSettingsOf = (c: Config, router: Router | null): SessionSettings => ({
    handshakeTimeoutMs: c.limits.handshakeTimeoutMs,
    idleTimeoutMs: c.limits.idleTimeoutMs,
    backendIdleTimeoutMs: c.limits.backendIdleTimeoutMs,
    connectTimeoutMs: c.limits.connectTimeoutMs,
    maxPendingBytes: c.limits.maxPendingBytes,
    onParseError: c.onParseError,
    logStreamKeys: c.log.streamKeys,
    peerLog,
    chunkLimits: {
      maxChunkSize: c.limits.maxChunkSize,
      minChunkSize: c.limits.minChunkSize,
      maxMessageSize: c.limits.maxMessageSize,
      maxCollectedSize: c.limits.maxCommandSize,
      maxChunkStreams: c.limits.maxChunkStreams,
    },
    amfLimits: {
      maxDepth: c.limits.amfMaxDepth,
      maxItems: c.limits.amfMaxItems,
      maxTotalValues: c.limits.amfMaxItems,
      maxStringBytes: c.limits.amfMaxStringBytes,
      maxTotalStringBytes: c.limits.amfMaxStringBytes,
    },
    erpc: { offer: c.erpc.offer, tcUrl: c.erpc.tcUrl },
    metrics,
    migration,
    router,
    streams: c.players.routing === 'stream' ? streams : null,
    sessionBufferBytes: c.limits.sessionBufferBytes,
    // One process budget across reloads: a new limit applies to every session's next take.
    processBudget: Object.assign(processBudget, { limit: c.limits.processBufferBytes }),
  });
  const admissionOf = (c: Config) => ({
    maxSessionsPerIp: c.limits.maxSessionsPerIp,
    connectRatePerIp: c.limits.connectRatePerIp,
    connectBurstPerIp: c.limits.connectBurstPerIp,
  });
  let sessionSettings = sessionSettingsOf(config, config.routing === null ? null : Router.compile(config.routing));
  const idleSweep = new IdleSweep(() => server.sessions.values(), idleSweepIntervalMs([config.limits.idleTimeoutMs, config.limits.backendIdleTimeoutMs]));
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
  const bus: ControlBus =
    config.redis.url !== undefined
      ? new RedisBus({ url: config.redis.url, prefix: config.redis.prefix, replicaId, sessionTtlMs: config.redis.sessionTtlMs, log })
      : new LocalBus();
  server.setMetrics(metrics);
  pool.on('drain-complete', (e) => {
    metrics.drainDuration.observe({ backend: e.name }, e.durationMs / 1000);
    log.info({ backend: e.name, durationMs: e.durationMs }, 'drain complete: no session left on backend');
  });
  pool.on('deadline-close', (e) => metrics.deadlineCloses.inc({ backend: e.name }, e.closed));
  pool.on('health-check', (e) => metrics.healthCheckDuration.observe({ backend: e.name, result: e.ok ? 'ok' : 'failed' }, e.durationMs / 1000));
  pool.on('backend-added', (name) => metrics.backendAdded(name));
  pool.on('backend-removed', (name) => void metrics.backendRemoved(name));
  pool.on('backend-state', (e) => log.info({ backend: e.name, from: e.from, to: e.to }, 'backend state'));

  const startedAt = new Date().toISOString();
  /** The fleet's desired state as last known (sync + every command): re-applied after a reload. */
  let desired = new Map<string, DesiredDrain>();
  const ownIds = new Set<string>();
  let address: net.AddressInfo | null = null;
  let admin: http.Server | null = null;

  const heartbeat = new RegistryHeartbeat({
    intervalMs: config.redis.heartbeatMs,
    fastIntervalMs: FAST_HEARTBEAT_MS,
    fast: () => proxy.shuttingDown || pool.list().some((b) => b.draining && b.sessions > 0),
    flush: async () => {
      await bus.report(replicaRecord(), [...server.sessions.values()].map((s) => sessionRecord(s.snapshot(), replicaId)));
      // The other replicas' publishers, for players routed by stream.
      if (bus.kind === 'redis' && config.players.routing === 'stream') streams.setFleet((await bus.fleet()).sessions);
    },
    log,
  });

  function replicaRecord(): ReplicaRecord {
    return {
      replicaId,
      startedAt,
      heartbeatAt: new Date().toISOString(),
      listen: address === null ? config.listen : `${address.address}:${address.port}`,
      admin: proxy.adminAddress === null ? null : `${proxy.adminAddress.address}:${proxy.adminAddress.port}`,
      shuttingDown: proxy.shuttingDown,
      backends: pool.list().map((b) => ({
        name: b.name,
        state: b.state,
        sessions: b.sessions,
        drainReason: b.drainReason ?? null,
        drainDeadlineAt: b.drainDeadlineAt ?? null,
      })),
    };
  }

  function remember(cmd: ControlCommand): void {
    if (cmd.action === 'drain') desired.set(cmd.backend, desiredFromCommand(cmd, Date.now()));
    else desired.delete(cmd.backend);
  }

  /**
   * The one place a command changes the pool. Throws UnknownBackendError; LastRoutableBackendError
   * for a drain given here (admin API, CLI through it, programmatic) that would leave no backend to
   * route to, unless forced. Commands from the bus and the desired state are applied as they are:
   * their issuer checked them (the CLI against the fleet registry), and the fleet must converge.
   */
  function apply(cmd: ControlCommand, source: ControlSource, force = source === 'bus'): DrainResult | boolean {
    if (cmd.action === 'drain') {
      if (!force && pool.isLastRoutable(cmd.backend)) {
        metrics.controlMessages.inc({ source, result: 'rejected' });
        log.warn({ backend: cmd.backend, source, origin: cmd.origin }, 'drain refused: last routable backend (not forced)');
        throw new LastRoutableBackendError(cmd.backend);
      }
      const opts: DrainOptions = {};
      if (cmd.deadlineMs !== undefined) opts.deadlineMs = cmd.deadlineMs;
      if (cmd.reason !== undefined) opts.reason = cmd.reason;
      const result = pool.drain(cmd.backend, opts);
      metrics.drains.inc({ backend: cmd.backend, action: 'drain' });
      log.info({ ...result, reason: cmd.reason, source, origin: cmd.origin }, 'drain');
      heartbeat.flushSoon();
      return result;
    }
    const changed = pool.undrain(cmd.backend);
    metrics.drains.inc({ backend: cmd.backend, action: 'undrain' });
    log.info({ backend: cmd.backend, changed, reason: cmd.reason, source, origin: cmd.origin }, 'undrain');
    heartbeat.flushSoon();
    return changed;
  }

  /** Brings the pool to the desired state (after a (re)connect or a reload). */
  function converge(why: string): void {
    const steps = planConvergence(pool.list(), [...desired.values()], Date.now(), proxy.config.drain.deadlineMs);
    for (const step of steps) {
      log.info({ ...step, why }, 'converging to the fleet desired state');
      try {
        if (step.action === 'drain') {
          const cmd: ControlCommand = { action: 'drain', backend: step.backend, deadlineMs: step.deadlineMs };
          if (step.reason !== undefined) cmd.reason = step.reason;
          apply(cmd, 'bus');
        } else apply({ action: 'undrain', backend: step.backend }, 'bus');
      } catch (err) {
        log.error({ err, step }, 'could not converge a backend');
      }
    }
  }

  function newCommand(action: 'drain' | 'undrain', backend: string, opts: DrainOptions = {}): ControlCommand {
    const cmd: ControlCommand = { action, backend, id: randomUUID(), at: Date.now(), origin: replicaId };
    if (opts.deadlineMs !== undefined) cmd.deadlineMs = opts.deadlineMs;
    if (opts.reason !== undefined) cmd.reason = opts.reason;
    return cmd;
  }

  async function toFleet(cmd: ControlCommand): Promise<ControlOutcome['fleet']> {
    remember(cmd);
    if (cmd.id !== undefined) {
      if (ownIds.size >= MAX_OWN_IDS) ownIds.delete(ownIds.values().next().value!);
      ownIds.add(cmd.id);
    }
    let outcome: PublishOutcome;
    try {
      outcome = await bus.publish(cmd);
    } catch (err) {
      outcome = { published: false, receivers: 0, error: (err as Error).message };
    }
    if (!outcome.published) log.warn({ action: cmd.action, backend: cmd.backend, err: outcome.error }, 'command applied on this replica only for now');
    return { ...outcome, bus: bus.kind };
  }

  const proxy: RunningProxy = {
    config,
    log,
    pool,
    server,
    metrics,
    bus,
    replicaId,
    address: null as unknown as net.AddressInfo,
    adminAddress: null,
    discovery,
    tlsAddress: null,
    reloadTls() {
      if (config.tls.listen === '') return;
      server.setTlsContext(loadTlsContext(config.tls.cert, config.tls.key));
      log.info({ cert: config.tls.cert }, 'TLS certificate reloaded');
    },
    shuttingDown: false,
    drain(name, opts = {}) {
      const cmd = newCommand('drain', name, opts);
      const result = apply(cmd, 'api', opts.force === true) as DrainResult;
      void toFleet(cmd);
      return result;
    },
    undrain(name) {
      const cmd = newCommand('undrain', name);
      const changed = apply(cmd, 'api') as boolean;
      void toFleet(cmd);
      return changed;
    },
    async control(c, source = 'api', opts = {}) {
      const cmd: ControlCommand = { ...c, id: c.id ?? randomUUID(), at: c.at ?? Date.now(), origin: c.origin ?? replicaId };
      const result = apply(cmd, source, source === 'bus' || opts.force === true);
      const fleet = await toFleet(cmd);
      return { command: cmd, result, fleet };
    },
    reloadBackends(backends, routing) {
      // Compiled first: invalid rules throw before anything changes.
      if (routing !== undefined) {
        sessionSettings = { ...sessionSettings, router: routing === null ? null : Router.compile(routing) };
        server.setLimits({ maxSessions: proxy.config.limits.maxSessions, admission: admissionOf(proxy.config), session: sessionSettings });
      }
      // SIGHUP also renews the RTMPS certificate; a bad file keeps the old one.
      try {
        proxy.reloadTls();
      } catch (err) {
        log.error({ err: (err as Error).message }, 'TLS certificate reload failed: keeping the current one');
      }
      staticBackends = backends;
      const result = applyBackends();
      converge('reload');
      heartbeat.flushSoon();
      return result;
    },
    reload(next) {
      const diff = diffConfig(proxy.config, next);
      // Compiled before anything changes: invalid rules throw here.
      const router = next.routing === null ? null : Router.compile(next.routing);
      const merged = mergeReloadable(proxy.config, next);
      if (merged.drain.nonCapable === 'migrate' && migration === null) {
        migration = new MigrationCoordinator({ ...merged.migration, connectTimeoutMs: merged.limits.connectTimeoutMs }, metrics);
      }
      pool.setDrainSettings({
        defaultDrainDeadlineMs: merged.drain.deadlineMs,
        closeSpreadMs: merged.drain.closeSpreadMs,
        strategy: createDrainStrategy({ nonCapable: merged.drain.nonCapable, erpc: merged.erpc.offer }),
      });
      proxy.config = merged;
      sessionSettings = sessionSettingsOf(merged, router);
      server.setLimits({ maxSessions: merged.limits.maxSessions, admission: admissionOf(merged), session: sessionSettings });
      idleSweep.setIntervalMs(idleSweepIntervalMs([merged.limits.idleTimeoutMs, merged.limits.backendIdleTimeoutMs]));
      metrics.setLimits(merged.limits);
      const result = proxy.reloadBackends(next.backends);
      return { ...result, ...diff };
    },
    fleet: () => bus.fleet(),
    flushRegistry: () => heartbeat.flushSoon(),
    stop: (reason = 'shutdown') => (stopping ??= doStop(reason)),
  };
  let stopping: Promise<void> | undefined;
  async function doStop(reason: string): Promise<void> {
    discovery?.stop();
    idleSweep.stop();
    await heartbeat.stop();
    await Promise.all([server.stopAccepting(), (server.closeAll(reason), server.whenEmpty())]);
    pool.stop();
    await bus.stop({ cleanup: true });
    if (admin !== null) await new Promise<void>((r) => admin!.close(() => r()));
  }

  /** Anyone who can PUBLISH on the channel controls the rate of these lines: limited. */
  const busLog = new RateLimitedLog(log);
  await bus.start({
    command(cmd) {
      if (cmd.id !== undefined && ownIds.delete(cmd.id)) return true;
      if (cmd.action === 'undrain') remember(cmd);
      try {
        apply(cmd, 'bus');
        // Only backends this replica has: a flood of made-up names must not grow memory.
        if (cmd.action === 'drain') remember(cmd);
        metrics.controlMessages.inc({ source: 'bus', result: 'ok' });
        return true;
      } catch (err) {
        // Never fatal: a bad command is logged and counted.
        metrics.controlMessages.inc({ source: 'bus', result: 'rejected' });
        if (err instanceof UnknownBackendError) {
          busLog.write('unknown-backend', { action: cmd.action, backend: cmd.backend, origin: cmd.origin }, 'bus command for a backend this replica does not have: ignored');
        } else log.error({ err, action: cmd.action, backend: cmd.backend }, 'bus command failed');
        return false;
      }
    },
    malformed(text, error) {
      metrics.controlMessages.inc({ source: 'bus', result: 'malformed' });
      busLog.write('malformed', { message: text.length > 200 ? `${text.slice(0, 200)}…` : text, error }, 'malformed control message ignored');
    },
    sync(list) {
      desired = new Map(list.map((d) => [d.backend, d]));
      converge('sync');
      heartbeat.flushSoon();
    },
    connection(connected) {
      if (connected) log.info({ bus: bus.kind }, 'control bus connected');
      else log.warn({ bus: bus.kind }, 'control bus disconnected: forwarding continues, commands from the fleet resume on reconnect');
    },
  });

  if (discovery !== null) {
    discovery.on('update', (list) => {
      try {
        const result = applyBackends();
        log.info({ source: discovery.source, backends: list.length, ...result }, 'discovered backends applied');
      } catch (err) {
        log.error({ err, source: discovery.source }, 'could not apply discovered backends');
        return;
      }
      converge('discovery');
      heartbeat.flushSoon();
    });
    // First resolution before listening (bounded by the resolver's timeout); failures keep static backends only.
    await discovery.refresh();
  }

  try {
    address = await server.listen();
  } catch (err) {
    await heartbeat.stop();
    await bus.stop({ cleanup: true });
    throw new ListenError('RTMP', config.listen, err as NodeJS.ErrnoException);
  }
  proxy.address = address;
  idleSweep.start();
  if (config.tls.listen !== '') {
    try {
      const t = parseHostPort(config.tls.listen);
      const context = loadTlsContext(config.tls.cert, config.tls.key);
      proxy.tlsAddress = await server.listenTls(t.host, t.port, context).catch((err: NodeJS.ErrnoException) => {
        throw new ListenError('RTMPS', config.tls.listen, err);
      });
    } catch (err) {
      await server.stopAccepting();
      await heartbeat.stop();
      await bus.stop({ cleanup: true });
      throw err;
    }
  }
  pool.start();
  discovery?.start(false);
  heartbeat.start();

  if (config.admin !== '') {
    admin = createAdminServer(
      {
        backends: () => pool.list(),
        sessions: () => [...server.sessions.values()].map((s) => s.snapshot()),
        async drain(name, opts) {
          const cmd = newCommand('drain', name, opts);
          const out = await proxy.control(cmd, 'admin', { force: opts.force === true });
          const body = { ...(out.result as DrainResult), fleet: out.fleet };
          return body;
        },
        async undrain(name) {
          const out = await proxy.control(newCommand('undrain', name), 'admin');
          return out.result as boolean;
        },
        notReadyReason: () => {
          if (proxy.shuttingDown) return 'shutting down';
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
    try {
      proxy.adminAddress = await listenHttp(admin, config.admin, log);
    } catch (err) {
      admin = null;
      await proxy.stop('startup-failed');
      throw new ListenError('admin', config.admin, err as NodeJS.ErrnoException);
    }
  }
  const adminAt = proxy.adminAddress ? `${proxy.adminAddress.address}:${proxy.adminAddress.port}` : null;
  log.info(
    {
      listen: `${address.address}:${address.port}`,
      // A worker's admin API is for its primary only: named so no one takes it for the proxy's.
      ...(opts.worker === undefined ? { admin: adminAt } : { worker: opts.worker, workerAdmin: adminAt }),
      tls: proxy.tlsAddress ? `${proxy.tlsAddress.address}:${proxy.tlsAddress.port}` : null,
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
