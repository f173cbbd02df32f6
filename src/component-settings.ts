/**
 * What each part of the proxy is given from a Config (at start and on every reload): pure
 * mappings, so that src/app.ts only wires.
 */
import type { Logger } from 'pino';
import { DnsDiscovery } from './balancer/discovery.js';
import type { DrainStrategy } from './balancer/types.js';
import type { Config } from './config.js';
import type { ProcessBudget } from './proxy/buffer-budget.js';
import { createDrainStrategy, type StrategySession } from './proxy/drain-strategy.js';
import type { SessionSettings } from './proxy/session/session.js';

/** Settings of the sessions that start from now on, from `c` and what every session shares across reloads. */
export function sessionSettingsOf(
  c: Config,
  shared: Pick<SessionSettings, 'peerLog' | 'metrics' | 'migration' | 'router' | 'streams'> & { processBudget: ProcessBudget },
): SessionSettings {
  return {
    handshakeTimeoutMs: c.limits.handshakeTimeoutMs,
    idleTimeoutMs: c.limits.idleTimeoutMs,
    backendIdleTimeoutMs: c.limits.backendIdleTimeoutMs,
    connectTimeoutMs: c.limits.connectTimeoutMs,
    maxPendingBytes: c.limits.maxPendingBytes,
    onParseError: c.onParseError,
    logStreamKeys: c.log.streamKeys,
    peerLog: shared.peerLog,
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
    metrics: shared.metrics,
    migration: shared.migration,
    router: shared.router,
    streams: c.players.routing === 'stream' ? shared.streams : null,
    playerFollowTimeoutMs: c.players.followTimeoutMs,
    sessionBufferBytes: c.limits.sessionBufferBytes,
    // One process budget across reloads: a new limit applies to every session's next take.
    processBudget: Object.assign(shared.processBudget, { limit: c.limits.processBufferBytes }),
  };
}

export function admissionOf(c: Config): { maxSessionsPerIp: number; connectRatePerIp: number; connectBurstPerIp: number } {
  return {
    maxSessionsPerIp: c.limits.maxSessionsPerIp,
    connectRatePerIp: c.limits.connectRatePerIp,
    connectBurstPerIp: c.limits.connectBurstPerIp,
  };
}

export function drainStrategyOf(c: Config): DrainStrategy<StrategySession> {
  return createDrainStrategy({ nonCapable: c.drain.nonCapable, erpc: c.erpc.offer });
}

export function discoveryOf(c: Config, log: Logger): DnsDiscovery | null {
  if (c.discovery.dnsName === '') return null;
  return new DnsDiscovery({
    name: c.discovery.dnsName,
    type: c.discovery.recordType,
    port: c.discovery.port,
    intervalMs: c.discovery.intervalMs,
    jitterMs: c.discovery.jitterMs,
    timeoutMs: Math.min(c.discovery.intervalMs, 2_000),
    ...(c.discovery.servers !== '' ? { servers: c.discovery.servers.split(',') } : {}),
    maxSessions: c.discovery.maxSessions,
    sessionsPerWeight: c.discovery.sessionsPerWeight,
    log,
  });
}
