/**
 * The control bus: how drain/undrain commands reach every replica of the fleet, where the desired
 * state lives, and where replicas report their live sessions (the fleet registry).
 *
 * Two implementations with this one interface, so src/app.ts has a single code path:
 *  - RedisBus (src/control/redis-bus.ts): pub/sub channel + desired-state hash + registry keys,
 *    used when `redis.url` is set;
 *  - LocalBus (src/control/local-bus.ts): in-process, the default; the admin API and signals are
 *    then the only control and the "fleet" is this replica.
 */
import type { BackendState } from '../balancer/types.js';
import type { MediaSummary } from '../rtmp/media-telemetry.js';
import type { ControlCommand, DesiredDrain } from './commands.js';
import type { RebalanceMessage } from './rebalance-command.js';

/** One replica's presence record (refreshed every heartbeat, expires with `redis.sessionTtlMs`). */
export interface ReplicaRecord {
  replicaId: string;
  /** ISO time the replica started. */
  startedAt: string;
  /** ISO time of this heartbeat. */
  heartbeatAt: string;
  listen: string;
  admin: string | null;
  /** Sidecar shutdown in progress (Go Away sent, listener closed). */
  shuttingDown: boolean;
  backends: {
    name: string;
    state: BackendState;
    sessions: number;
    drainReason: string | null;
    /** Epoch ms. */
    drainDeadlineAt: number | null;
  }[];
}

/** One live session as the fleet registry shows it. */
export interface SessionRecord {
  id: string;
  replica: string;
  backend: string | null;
  app: string | null;
  /** `goaway`, `erpc`, `none` or `unknown` (connect not parsed). */
  capability: string;
  state: string;
  /** ISO times. */
  startedAt: string;
  goAwaySentAt: string | null;
  client: string;
  /** Redacted unless `log.streamKeys`. */
  streamKey: string | null;
  parseFallback: string | null;
  /** The routing rule that placed it and how (`live: sticky`); absent or null without routing rules. */
  route?: string | null;
  /** What the client publishes; absent or null before its first media message (validated when read back: readMediaSummary). */
  media?: MediaSummary | null;
  /** `publisher` or `player`; absent or null before the session published or played (or from an older replica). */
  role?: 'publisher' | 'player' | null;
  /** The stream's comparable name (net/redact.ts `streamRef`): players are routed to the backend of its publisher. */
  streamRef?: string | null;
}

export interface FleetView {
  source: 'redis' | 'local';
  /** ISO time the view was read. */
  readAt: string;
  replicas: ReplicaRecord[];
  sessions: SessionRecord[];
  desired: DesiredDrain[];
}

export interface PublishOutcome {
  /** False when the bus is disconnected: the command is queued and published on reconnect. */
  published: boolean;
  /** Subscribers that received it (Redis PUBLISH reply); 1 for the local bus. */
  receivers: number;
  error?: string;
}

export interface BusHandlers {
  /**
   * A valid command from the bus (possibly this replica's own, recognisable by `id`). Returns
   * whether this replica has the backend (the command applied, or was its own).
   */
  command(cmd: ControlCommand): boolean;
  /** A valid rebalance message (rebalance-command.ts); absent = this replica does not rebalance from the bus. */
  rebalance?(msg: RebalanceMessage): void;
  /** A message that is not a valid command; log and count, never fatal. */
  malformed(text: string, error: string): void;
  /** The full desired state, after every (re)connect; the replica converges to it. */
  sync(desired: DesiredDrain[]): void;
  /** Connection state changes (Redis); the local bus reports `true` once. */
  connection(connected: boolean): void;
}

export interface ControlBus {
  readonly kind: 'local' | 'redis';
  /** Connected and in sync with the desired state. */
  readonly connected: boolean;
  /**
   * Subscribes and, when the backing store is reachable, reads the desired state before resolving
   * (bounded wait): a replica never starts routing against a stale drain state. Never rejects
   * because the store is down: forwarding does not depend on the bus.
   */
  start(handlers: BusHandlers): Promise<void>;
  /** Persists the desired state and delivers the command to every replica (this one included). */
  publish(cmd: ControlCommand): Promise<PublishOutcome>;
  /** Writes this replica's presence and sessions (one batch per heartbeat). Skipped while disconnected. */
  report(replica: ReplicaRecord, sessions: SessionRecord[]): Promise<void>;
  /** Every live replica, its sessions, and the desired state. */
  fleet(): Promise<FleetView>;
  /** Unsubscribes; `cleanup` (default true) also deletes this replica's registry records. */
  stop(opts?: { cleanup?: boolean }): Promise<void>;
}
