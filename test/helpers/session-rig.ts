import { pino } from 'pino';
import { BackendPool } from '../../src/balancer/pool.js';
import { RateLimitedLog } from '../../src/net/rate-limited-log.js';
import { ProxyMetrics } from '../../src/control/metrics.js';
import { type NonCapablePolicy, createDrainStrategy } from '../../src/proxy/drain-strategy.js';
import { MigrationCoordinator } from '../../src/proxy/migration/coordinator.js';
import { type RoutingSpec, Router } from '../../src/balancer/routing.js';
import { type SessionHooks, type SessionSettings, Session } from '../../src/proxy/session/session.js';
import { readCreateStreamResult } from '../../src/rtmp/messages.js';
import { MemNetwork, type MemSocket, memPair } from './mem-socket.js';
import { RecordingRtmpServer, type RecordingConnection, type ServerScript } from './recording-rtmp-server.js';
import { ScriptedClient } from './scripted-client.js';

export interface SessionRigOptions {
  backends?: string[];
  scripts?: Record<string, ServerScript>;
  router?: RoutingSpec;
  migration?: boolean;
  erpc?: boolean;
  nonCapable?: NonCapablePolicy;
}

/**
 * One Session built directly (no listener, no loopback): its client is a ScriptedClient on an
 * in-memory socket, its backends RecordingRtmpServers reached through a MemNetwork, its pool a
 * real BackendPool (health checks off) with the proxy's drain strategy.
 */
export interface SessionRig {
  session: Session;
  client: ScriptedClient;
  /** The test's end of the client connection. */
  clientSocket: MemSocket;
  network: MemNetwork;
  servers: Record<string, RecordingRtmpServer>;
  pool: BackendPool;
  metrics: ProxyMetrics;
  /** Resolves when the session called its `closed` hook. */
  closed: Promise<Session>;
  /** The backend connection `name` accepted (the first by default). */
  conn(name: string, i?: number): RecordingConnection | undefined;
  stop(): void;
}

export function sessionRig(opts: SessionRigOptions = {}): SessionRig {
  const names = opts.backends ?? ['b1'];
  const network = new MemNetwork();
  const servers: Record<string, RecordingRtmpServer> = {};
  for (const name of names) {
    const srv = new RecordingRtmpServer({ chunkSize: 4096, ...(opts.scripts?.[name] ?? {}) });
    servers[name] = srv;
    network.listen(name, (s) => srv.adopt(s));
  }
  const pool = new BackendPool(
    names.map((name, i) => ({ name, host: '127.0.0.1', port: 10000 + i })),
    {
      defaultDrainDeadlineMs: 600_000,
      health: { intervalMs: 60_000, timeoutMs: 1000, rise: 1, fall: 1000, enabled: false },
      strategy: createDrainStrategy({ nonCapable: opts.nonCapable ?? 'deadline-close', erpc: opts.erpc ?? false }),
    },
  );
  const log = pino({ level: 'silent' });
  const peerLog = new RateLimitedLog(log);
  const metrics = new ProxyMetrics({ activeSessions: () => [], bytesTotal: () => [], backends: () => [], busConnected: () => 1 }, { defaultMetrics: false });
  const settings: SessionSettings = {
    handshakeTimeoutMs: 600_000,
    idleTimeoutMs: 600_000,
    connectTimeoutMs: 600_000,
    maxPendingBytes: 1 << 20,
    onParseError: 'forward',
    logStreamKeys: false,
    peerLog,
    chunkLimits: {},
    amfLimits: {},
    metrics,
    migration: opts.migration
      ? new MigrationCoordinator({
          maxInFlight: 1,
          timeoutMs: 600_000,
          switchTimeoutMs: 600_000,
          maxCachedBytes: 1 << 20,
          chunkSize: 4096,
          connectTimeoutMs: 600_000,
        })
      : null,
    router: opts.router ? Router.compile(opts.router) : null,
    dial: network.dial,
  };
  if (opts.erpc) settings.erpc = { offer: true, tcUrl: 'rtmp://elsewhere.example/live' };
  const [near, far] = memPair();
  let onClosed: (s: Session) => void = () => {};
  const closed = new Promise<Session>((r) => (onClosed = r));
  const hooks: SessionHooks = { routed() {}, closed: (s) => onClosed(s), goAwayWritten() {}, parseFallback() {}, connectFailed() {} };
  const session = new Session(near.asSocket, pool, settings, hooks, log);
  session.start();
  const client = new ScriptedClient(far);
  return {
    session,
    client,
    clientSocket: far,
    network,
    servers,
    pool,
    metrics,
    closed,
    conn: (name, i = 0) => servers[name]?.connections[i],
    stop() {
      session.close('test-end');
      peerLog.stop();
      pool.stop();
    },
  };
}

/** Handshake, connect, releaseStream/FCPublish/createStream, publish; resolves with the stream id once the client was told Publish.Start. */
export async function publish(client: ScriptedClient, key: string, connectExtra: Record<string, number | boolean | string> = {}): Promise<number> {
  await client.handshake();
  client.setChunkSize(4096);
  client.connect('live', connectExtra);
  await client.waitFor((m) => m.command?.name === '_result' && m.command.transactionId === 1);
  client.prepare(key);
  const created = await client.waitFor((m) => m.command?.name === '_result' && m.command.transactionId === 4);
  const sid = readCreateStreamResult(created.command!);
  if (sid === null) throw new Error('createStream: no stream id');
  client.publish(sid, key);
  await client.waitCommand('onStatus', 'NetStream.Publish.Start');
  return sid;
}

/** Resolves once `check` holds; checked after every turn of the event loop (no timer, no sleep). */
export async function until(check: () => boolean, what: string, maxTurns = 100_000): Promise<void> {
  for (let i = 0; i < maxTurns; i++) {
    if (check()) return;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error(`never happened: ${what}`);
}
