/**
 * Control bus over Redis (ioredis), used when `redis.url` is set.
 *
 *   <prefix>:control    pub/sub channel of commands (JSON or plain text, see commands.ts)
 *   <prefix>:backends   hash, backend name → JSON drain command: the desired state. A field is
 *                       set by a drain and deleted by an undrain. A command issued through this
 *                       project (CLI, admin API: it carries an `id`) is written by its issuer only,
 *                       with its PUBLISH (MULTI). A command without an `id` (a bare
 *                       `redis-cli PUBLISH`) is written by each replica that has the backend, so
 *                       it is remembered; one naming a backend no replica has is not, and the
 *                       hash holds at most the fleet's backend names (plus drains the CLI forced).
 *   registry keys       see registry.ts
 *
 * Two connections: a subscriber and a command connection. Neither queues commands while
 * disconnected (enableOfflineQueue: false): forwarding never waits for Redis. Reconnection retries
 * forever with a bounded, logged backoff; after every (re)connect the bus re-subscribes, publishes
 * commands given to this replica while Redis was unreachable, then reads the hash and hands the
 * full desired state to the replica (`sync`). Messages that arrive during that read are applied
 * after it, in order.
 */
import { createRequire } from 'node:module';
import type { Redis, RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import type { BusHandlers, ControlBus, FleetView, PublishOutcome, ReplicaRecord, SessionRecord } from './bus.js';
import { type ControlCommand, type DesiredDrain, desiredFromCommand, encodeControlMessage, parseControlMessage } from './commands.js';
import { RateLimitedLog } from '../net/rate-limited-log.js';
import { type RegistryKeys, readRegistry, registryKeys, removeReplica, writeReport } from './registry.js';

/**
 * ioredis is loaded with the first Redis connection: a proxy without `redis.url` never loads it
 * (about 10 MiB of resident memory at start-up).
 */
const load = createRequire(import.meta.url);
const RedisClient = (): typeof Redis => (load('ioredis') as typeof import('ioredis')).Redis;

export interface BusKeys extends RegistryKeys {
  channel: string;
  backends: string;
}

export function busKeys(prefix: string): BusKeys {
  return { channel: `${prefix}:control`, backends: `${prefix}:backends`, ...registryKeys(prefix) };
}

function checkExec(res: [Error | null, unknown][] | null): unknown[] {
  if (res === null) throw new Error('redis transaction aborted');
  for (const [err] of res) if (err !== null) throw err;
  return res.map(([, v]) => v);
}

/** Persists a command in the desired-state hash (drain: HSET, undrain: HDEL). */
export async function persistCommand(redis: Redis, keys: BusKeys, cmd: ControlCommand): Promise<void> {
  if (cmd.action === 'drain') await redis.hset(keys.backends, cmd.backend, encodeControlMessage(cmd));
  else await redis.hdel(keys.backends, cmd.backend);
}

/** Persists and publishes atomically; returns how many subscribers received it. */
export async function publishCommand(redis: Redis, keys: BusKeys, cmd: ControlCommand): Promise<number> {
  const text = encodeControlMessage(cmd);
  const m = redis.multi();
  if (cmd.action === 'drain') m.hset(keys.backends, cmd.backend, text);
  else m.hdel(keys.backends, cmd.backend);
  m.publish(keys.channel, text);
  const out = checkExec(await m.exec());
  return Number(out[1]);
}

/** The desired state: every drain in the hash. Invalid fields are returned apart (and ignored). */
export async function readDesired(
  redis: Redis,
  keys: BusKeys,
  now = Date.now(),
): Promise<{ desired: DesiredDrain[]; invalid: { field: string; error: string }[] }> {
  const all = await redis.hgetall(keys.backends);
  const desired: DesiredDrain[] = [];
  const invalid: { field: string; error: string }[] = [];
  for (const [field, value] of Object.entries(all)) {
    const r = parseControlMessage(value);
    if (!r.ok) invalid.push({ field, error: r.error });
    else if (r.command.backend !== field) invalid.push({ field, error: `value names backend ${r.command.backend}` });
    else if (r.command.action === 'drain') desired.push(desiredFromCommand(r.command, now));
  }
  desired.sort((a, b) => a.backend.localeCompare(b.backend));
  return { desired, invalid };
}

/** `redis://user:***@host:port/db` for logs. */
export function redactRedisUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return url.replace(/\/\/([^/@:]*):[^/@]*@/, '//$1:***@');
  }
}

export interface RedisBusOptions {
  url: string;
  prefix: string;
  replicaId: string;
  /** TTL of this replica's registry records. */
  sessionTtlMs: number;
  log: Logger;
  /** How long `start()` waits for the first sync when Redis is slow (it never fails). Default 3 s. */
  startTimeoutMs?: number;
  /** Longest delay between reconnection attempts. Default 5 s. */
  maxRetryDelayMs?: number;
}

type Role = 'subscriber' | 'command';

/** Messages received during a resync are kept (in order) up to this many characters in all (1 MiB of text at most); the hash read after covers the rest. */
export const MAX_QUEUED_CHARS = 1024 * 1024;

export class RedisBus implements ControlBus {
  readonly kind = 'redis' as const;
  readonly keys: BusKeys;
  private readonly sub: Redis;
  private readonly cmd: Redis;
  private readonly log: Logger;
  /** Lines a flood of messages on the channel can cause. */
  private readonly persistLog: RateLimitedLog;
  private handlers: BusHandlers | null = null;
  private subscribed = false;
  private synced = false;
  private syncing = false;
  private isConnected = false;
  private stopped = false;
  private queue: string[] = [];
  private queuedChars = 0;
  /** Commands published while disconnected, by backend (the latest wins), sent on reconnect. */
  private readonly pending = new Map<string, ControlCommand>();
  private readonly lastError: Record<Role, string | null> = { subscriber: null, command: null };
  private retryTimer: NodeJS.Timeout | null = null;
  private firstAttempt: (() => void) | null = null;

  constructor(private readonly opts: RedisBusOptions) {
    this.keys = busKeys(opts.prefix);
    this.log = opts.log.child({ component: 'redis-bus' });
    this.persistLog = new RateLimitedLog(this.log);
    const base: RedisOptions = {
      lazyConnect: true,
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      connectTimeout: 5_000,
    };
    this.sub = new (RedisClient())(opts.url, { ...base, autoResubscribe: false, retryStrategy: (n) => this.retryDelay('subscriber', n) });
    this.cmd = new (RedisClient())(opts.url, { ...base, retryStrategy: (n) => this.retryDelay('command', n) });
    for (const [role, conn] of [
      ['subscriber', this.sub],
      ['command', this.cmd],
    ] as const) {
      conn.on('ready', () => this.onReady(role));
      conn.on('close', () => this.onDown(role));
      conn.on('error', (err: Error) => {
        if (err.message !== this.lastError[role]) this.log.warn({ role, err: err.message }, 'redis connection error');
        this.lastError[role] = err.message;
        this.firstAttempt?.();
      });
    }
    this.sub.on('message', (channel: string, message: string) => this.onMessage(channel, message));
  }

  get connected(): boolean {
    return this.isConnected;
  }

  async start(handlers: BusHandlers): Promise<void> {
    this.handlers = handlers;
    this.log.info({ url: redactRedisUrl(this.opts.url), channel: this.keys.channel, hash: this.keys.backends }, 'connecting to redis');
    const settled = new Promise<void>((resolve) => {
      const timer = setTimeout(() => done(), this.opts.startTimeoutMs ?? 3_000);
      timer.unref();
      const done = (): void => {
        clearTimeout(timer);
        this.firstAttempt = null;
        resolve();
      };
      this.firstAttempt = done;
    });
    this.sub.connect().catch(() => undefined);
    this.cmd.connect().catch(() => undefined);
    await settled;
    if (!this.isConnected) this.log.warn('redis not reachable at start: forwarding with the local state, will resync when it connects');
  }

  async publish(cmd: ControlCommand): Promise<PublishOutcome> {
    if (!this.isConnected || this.cmd.status !== 'ready') {
      this.pending.set(cmd.backend, cmd);
      return { published: false, receivers: 0, error: 'redis is not connected: applied on this replica, published to the fleet when the connection is back' };
    }
    try {
      const receivers = await publishCommand(this.cmd, this.keys, cmd);
      return { published: true, receivers };
    } catch (err) {
      this.pending.set(cmd.backend, cmd);
      return {
        published: false,
        receivers: 0,
        error: `${(err as Error).message}: applied on this replica, published to the fleet when the connection is back`,
      };
    }
  }

  async report(replica: ReplicaRecord, sessions: SessionRecord[]): Promise<void> {
    if (this.stopped || this.cmd.status !== 'ready') return;
    await writeReport(this.cmd, this.keys, replica, sessions, this.opts.sessionTtlMs);
  }

  async fleet(): Promise<FleetView> {
    if (this.cmd.status !== 'ready') throw new Error('redis is not connected');
    const [reg, d] = await Promise.all([readRegistry(this.cmd, this.keys), readDesired(this.cmd, this.keys)]);
    return { source: 'redis', readAt: new Date().toISOString(), replicas: reg.replicas, sessions: reg.sessions, desired: d.desired };
  }

  async stop(opts: { cleanup?: boolean } = {}): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.retryTimer !== null) clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if ((opts.cleanup ?? true) && this.cmd.status === 'ready') {
      await removeReplica(this.cmd, this.keys, this.opts.replicaId).catch((err: Error) =>
        this.log.warn({ err: err.message }, 'could not remove registry records'),
      );
    }
    this.handlers = null;
    this.setConnected(false);
    this.sub.disconnect();
    this.cmd.disconnect();
  }

  // ─────────────────────────── internals ───────────────────────────

  private retryDelay(role: Role, attempt: number): number | null {
    if (this.stopped) return null;
    const max = this.opts.maxRetryDelayMs ?? 5_000;
    const delay = Math.min(max, 100 * 2 ** Math.min(attempt - 1, 16));
    if (attempt <= 3 || attempt % 10 === 0) this.log.warn({ role, attempt, delayMs: delay }, 'redis unreachable, reconnecting');
    this.firstAttempt?.();
    return delay;
  }

  private onReady(role: Role): void {
    if (this.stopped) return;
    if (this.lastError[role] !== null) this.log.info({ role }, 'redis connection back');
    this.lastError[role] = null;
    if (role === 'subscriber') {
      this.sub.subscribe(this.keys.channel).then(
        () => {
          this.subscribed = true;
          void this.maybeSync();
        },
        (err: Error) => this.log.warn({ err: err.message }, 'redis subscribe failed'),
      );
    } else void this.maybeSync();
  }

  private onDown(role: Role): void {
    if (role === 'subscriber') this.subscribed = false;
    this.synced = false;
    if (!this.stopped) this.setConnected(false);
  }

  private setConnected(v: boolean): void {
    if (v === this.isConnected) return;
    this.isConnected = v;
    this.handlers?.connection(v);
  }

  private async maybeSync(): Promise<void> {
    if (this.stopped || this.syncing || this.synced || !this.subscribed || this.cmd.status !== 'ready') return;
    this.syncing = true;
    try {
      for (const [backend, cmd] of [...this.pending]) {
        const receivers = await publishCommand(this.cmd, this.keys, cmd);
        if (this.pending.get(backend) === cmd) this.pending.delete(backend);
        this.log.info({ action: cmd.action, backend, receivers }, 'published a command given while redis was unreachable');
      }
      const { desired, invalid } = await readDesired(this.cmd, this.keys);
      for (const i of invalid) this.log.warn({ hash: this.keys.backends, ...i }, 'ignoring an invalid desired-state entry');
      if (this.stopped) return;
      this.synced = true;
      this.log.info({ drained: desired.map((d) => d.backend) }, 'synchronised with the desired state in redis');
      this.handlers?.sync(desired);
      this.setConnected(true);
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'resync from redis failed, retrying');
      if (this.retryTimer === null && !this.stopped) {
        this.retryTimer = setTimeout(() => {
          this.retryTimer = null;
          void this.maybeSync();
        }, 1_000);
        this.retryTimer.unref();
      }
    } finally {
      this.syncing = false;
      const queued = this.queue;
      this.queue = [];
      this.queuedChars = 0;
      for (const text of queued) this.handleMessage(text);
      if (this.synced) this.firstAttempt?.();
    }
  }

  private onMessage(channel: string, text: string): void {
    if (channel !== this.keys.channel || this.stopped) return;
    if (this.syncing) {
      if (this.queuedChars + text.length <= MAX_QUEUED_CHARS) {
        this.queue.push(text);
        this.queuedChars += text.length;
      } else this.persistLog.write('resync-overflow', {}, 'too many messages during resync, dropping one (the next resync reads the hash)');
      return;
    }
    this.handleMessage(text);
  }

  private handleMessage(text: string): void {
    const h = this.handlers;
    if (h === null) return;
    const r = parseControlMessage(text);
    if (!r.ok) {
      h.malformed(text, r.error);
      return;
    }
    const cmd = r.command;
    const known = h.command(cmd);
    // A bare `redis-cli PUBLISH` (no id) has no issuer that wrote it: the replicas that have the
    // backend remember it for the fleet. Anything else was written by its issuer.
    if (cmd.id === undefined && known && this.cmd.status === 'ready') {
      const stored: ControlCommand = cmd.at === undefined ? { ...cmd, at: Date.now() } : cmd;
      persistCommand(this.cmd, this.keys, stored).catch((err: Error) =>
        this.persistLog.write('persist', { err: err.message, backend: cmd.backend }, 'could not persist a received command'),
      );
    }
  }
}

/** A short-lived connection for the CLI: fails fast instead of retrying forever. */
export async function connectOnce(url: string, timeoutMs = 5_000): Promise<Redis> {
  const redis = new (RedisClient())(url, {
    lazyConnect: true,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    connectTimeout: timeoutMs,
    retryStrategy: () => null,
  });
  redis.on('error', () => undefined);
  try {
    await redis.connect();
  } catch (err) {
    redis.disconnect();
    throw new Error(`cannot reach redis at ${redactRedisUrl(url)}: ${(err as Error).message}`);
  }
  return redis;
}
