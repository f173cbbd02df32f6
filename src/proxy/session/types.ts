import type { Amf0Limits } from '../../rtmp/amf0.js';
import type { SessionRole } from '../../rtmp/session-view.js';
import type { ChunkReaderLimits } from '../../rtmp/chunk-reader.js';
import type { MediaSummary } from '../../rtmp/media-telemetry.js';
import type { ProtocolError } from '../../rtmp/errors.js';
import type { RateLimitedLog } from '../../net/rate-limited-log.js';
import type { ProcessBudget } from '../buffer-budget.js';
import type { Dial } from '../dial.js';
import type { ProxyObserver } from '../observer.js';
import type { MigrationCoordinator } from '../migration/coordinator.js';
import type { StreamDirectory } from '../stream-directory.js';
import type { Router } from '../../balancer/routing.js';
import type { Session } from './session.js';

export type SessionState = 'connecting' | 'handshake' | 'connected' | 'publishing' | 'playing' | 'going-away' | 'migrating' | 'closed';
export type Capability = 'goaway' | 'erpc' | 'none' | 'unknown';

export interface SessionSettings {
  handshakeTimeoutMs: number;
  /** No byte from the client for this long closes the session (checked by the proxy's idle sweep). */
  idleTimeoutMs: number;
  /** No byte from the backend for this long closes the session; 0 or absent = off. */
  backendIdleTimeoutMs?: number;
  connectTimeoutMs: number;
  maxPendingBytes: number;
  onParseError: 'forward' | 'close';
  /** Stream keys and query strings of the app and tcUrl in clear in logs, the API and the registry (`log.streamKeys`). */
  logStreamKeys: boolean;
  /** Warnings a peer can cause per connection or message go through this (rate-limited). */
  peerLog: RateLimitedLog;
  chunkLimits: Partial<ChunkReaderLimits>;
  amfLimits: Partial<Amf0Limits>;
  /** E-RTMP reconnect (docs/protocol.md#e-rtmp-reconnect); absent = not offered. */
  erpc?: { offer: boolean; tcUrl: string };
  /** Counters of E-RTMP and migration events. */
  metrics?: ProxyObserver;
  /** Proxy-side migration (drain.nonCapable: migrate); absent = off. */
  migration?: MigrationCoordinator | null;
  /** Routing rules (routing.ts); absent = least connections over every backend. */
  router?: Router | null;
  /** Bytes a session may hold between reads (limits.sessionBufferBytes); absent = no limit. */
  sessionBufferBytes?: number;
  /** The process's buffer budget every session draws from (limits.processBufferBytes); absent = one without a limit per session. */
  processBudget?: ProcessBudget;
  /**
   * Players are routed to their stream's publisher (`players.routing: stream`): with more than one
   * usable backend a session is late-bound at the stream key, so a `play` is routed knowing it.
   * Absent or null = off (players are balanced like publishers).
   */
  streams?: StreamDirectory | null;
  /** How long a player waits for its stream on another backend before it is closed (players.followTimeoutMs); absent = 15 s. */
  playerFollowTimeoutMs?: number;
  /** How backend connections are opened; absent = TCP (dial.ts). */
  dial?: Dial;
}

export interface SessionHooks {
  /** Routed to a backend (the pool attach happened). */
  routed(session: Session): void;
  /** Both sockets are gone; called exactly once. */
  closed(session: Session): void;
  goAwayWritten(session: Session): void;
  parseFallback(session: Session, direction: 'c2s' | 's2c', err: ProtocolError): void;
  connectFailed(session: Session, backend: string, err: Error): void;
}

/** Where a connection really comes from, when the listener knows better than the socket (PROXY protocol, TLS). */
export interface SessionOrigin {
  /** `address:port` of the client (the PROXY protocol source); default: the socket's peer. */
  clientAddress?: string;
  /** Written first on every backend connection of the session (the backend PROXY protocol header). */
  preamble?: Buffer | null;
  /**
   * When the listener accepted the connection (before its PROXY header or TLS handshake): the
   * handshake deadline counts from it. Default: the session's start.
   */
  acceptedAt?: number;
}

/** JSON view of a session for /api/sessions and the fleet registry. */
export interface SessionSnapshot {
  id: string;
  client: string;
  backend: string | null;
  app: string | null;
  streamKey: string | null;
  goAway: boolean;
  capsEx: number | null;
  capability: Capability;
  state: SessionState;
  bytesIn: number;
  bytesOut: number;
  startedAt: string;
  goAwaySentAt: string | null;
  /** When the E-RTMP ReconnectRequest was written. */
  reconnectRequestSentAt: string | null;
  parseFallback: string | null;
  /** Proxy-side migrations this session went through (its media now flows through the proxy's own RTMP). */
  migrations: number;
  /** The routing rule that placed the session and how (`live: sticky`), null without routing rules. */
  route: string | null;
  /** What the client publishes (codecs, size, rates, keyframes), null before its first audio or video message. */
  media: MediaSummary | null;
  /** `publisher` or `player` once it published or played; null before. */
  role: SessionRole | null;
  /** The stream's comparable name (net/redact.ts streamRef): where players find its publisher across the fleet. */
  streamRef: string | null;
}
