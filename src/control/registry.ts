/**
 * Fleet session registry: every replica writes its presence and live sessions to Redis once per
 * heartbeat (one MULTI batch, never per session event), under keys that expire after
 * `redis.sessionTtlMs`, so `status` and `drain --wait` see the whole fleet and a replica that
 * crashed disappears on its own.
 *
 * Layout (prefix `rtmp-goaway` by default):
 *   <prefix>:replicas            sorted set: replica id → epoch ms of its last heartbeat (an index;
 *                                 members whose record expired are removed by readers)
 *   <prefix>:replica:<id>         string, JSON ReplicaRecord, PX ttl
 *   <prefix>:sessions:<id>        hash, session id → JSON SessionRecord, PEXPIRE ttl
 */
import type { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { SessionSnapshot } from '../proxy/session/session.js';
import type { MediaSummary } from '../rtmp/media-telemetry.js';
import type { ReplicaRecord, SessionRecord } from './bus.js';

export interface RegistryKeys {
  replicas: string;
  replica(id: string): string;
  sessions(id: string): string;
}

export function registryKeys(prefix: string): RegistryKeys {
  return {
    replicas: `${prefix}:replicas`,
    replica: (id) => `${prefix}:replica:${id}`,
    sessions: (id) => `${prefix}:sessions:${id}`,
  };
}

export function sessionRecord(s: SessionSnapshot, replica: string): SessionRecord {
  return {
    id: s.id,
    replica,
    backend: s.backend,
    app: s.app,
    capability: s.capability,
    state: s.state,
    startedAt: s.startedAt,
    goAwaySentAt: s.goAwaySentAt,
    client: s.client,
    streamKey: s.streamKey,
    parseFallback: s.parseFallback,
    route: s.route,
    media: s.media,
    role: s.role,
    streamRef: s.streamRef,
  };
}

const MEDIA_NUMBERS = {
  width: 65_535,
  height: 65_535,
  fps: 10_000,
  videoBitrate: 1e12,
  sampleRate: 10_000_000,
  channels: 255,
  audioBitrate: 1e12,
  bitrate: 1e12,
  keyframeIntervalMs: 1e9,
  keyframeAgeMs: 1e12,
  nextKeyframeInMs: 1e9,
} as const satisfies Partial<Record<keyof MediaSummary, number>>;
const MEDIA_STRINGS = ['videoCodec', 'videoFourcc', 'videoProfile', 'audioCodec', 'audioFourcc'] as const satisfies readonly (keyof MediaSummary)[];
/** Longest codec name or profile kept from a record. */
const MAX_MEDIA_STRING = 32;

/**
 * A session record's `media` as read back from Redis (untrusted: another replica, or whoever can
 * write there): each field kept only when it has the right type and a plausible value (strings:
 * printable ASCII, at most MAX_MEDIA_STRING characters); anything else is null.
 */
export function readMediaSummary(v: unknown): MediaSummary | null {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return null;
  const o = v as Record<string, unknown>;
  const out = {} as Record<keyof MediaSummary, string | number | null>;
  for (const [k, max] of Object.entries(MEDIA_NUMBERS)) {
    const x = o[k];
    out[k as keyof MediaSummary] = typeof x === 'number' && Number.isFinite(x) && x >= 0 && x <= max ? x : null;
  }
  for (const k of MEDIA_STRINGS) {
    const x = o[k];
    out[k] = typeof x === 'string' && x.length > 0 && x.length <= MAX_MEDIA_STRING && /^[\x20-\x7e]+$/.test(x) ? x : null;
  }
  return out as unknown as MediaSummary;
}

/** Replaces this replica's records in one MULTI: presence, sessions, index; all with the TTL. */
export async function writeReport(redis: Redis, keys: RegistryKeys, replica: ReplicaRecord, sessions: SessionRecord[], ttlMs: number): Promise<void> {
  const id = replica.replicaId;
  const m = redis.multi();
  m.del(keys.sessions(id));
  if (sessions.length > 0) m.hset(keys.sessions(id), Object.fromEntries(sessions.map((s) => [s.id, JSON.stringify(s)])));
  m.pexpire(keys.sessions(id), ttlMs);
  m.set(keys.replica(id), JSON.stringify(replica), 'PX', ttlMs);
  m.zadd(keys.replicas, Date.now(), id);
  const res = await m.exec();
  const failed = res?.find(([err]) => err !== null);
  if (failed) throw failed[0]!;
}

/** Deletes this replica's records (clean shutdown). */
export async function removeReplica(redis: Redis, keys: RegistryKeys, replicaId: string): Promise<void> {
  await redis.multi().del(keys.sessions(replicaId), keys.replica(replicaId)).zrem(keys.replicas, replicaId).exec();
}

function parseJson<T>(text: string | null | undefined): T | null {
  if (typeof text !== 'string') return null;
  try {
    const v: unknown = JSON.parse(text);
    return v !== null && typeof v === 'object' ? (v as T) : null;
  } catch {
    return null;
  }
}

/** Every live replica and its sessions. Index members whose record has expired are pruned. */
export async function readRegistry(redis: Redis, keys: RegistryKeys): Promise<{ replicas: ReplicaRecord[]; sessions: SessionRecord[] }> {
  const ids = await redis.zrange(keys.replicas, 0, -1);
  if (ids.length === 0) return { replicas: [], sessions: [] };
  const p = redis.pipeline();
  for (const id of ids) {
    p.get(keys.replica(id));
    p.hgetall(keys.sessions(id));
  }
  const res = (await p.exec()) ?? [];
  const replicas: ReplicaRecord[] = [];
  const sessions: SessionRecord[] = [];
  const gone: string[] = [];
  ids.forEach((id, i) => {
    const [e1, rec] = res[2 * i] ?? [null, null];
    const [e2, hash] = res[2 * i + 1] ?? [null, {}];
    if (e1 !== null || e2 !== null) throw (e1 ?? e2)!;
    const replica = parseJson<ReplicaRecord>(rec as string | null);
    if (replica === null) {
      gone.push(id);
      return;
    }
    replicas.push(replica);
    for (const v of Object.values((hash ?? {}) as Record<string, string>)) {
      const s = parseJson<SessionRecord>(v);
      if (s === null) continue;
      s.media = readMediaSummary(s.media);
      sessions.push(s);
    }
  });
  if (gone.length > 0) await redis.zrem(keys.replicas, ...gone).catch(() => undefined);
  replicas.sort((a, b) => a.replicaId.localeCompare(b.replicaId));
  sessions.sort((a, b) => a.startedAt.localeCompare(b.startedAt) || a.id.localeCompare(b.id));
  return { replicas, sessions };
}

export interface HeartbeatOptions {
  /** Normal interval (`redis.heartbeatMs`). */
  intervalMs: number;
  /** Interval while `fast()` is true (a drain is in progress), so `drain --wait` sees sessions leave promptly. */
  fastIntervalMs: number;
  fast(): boolean;
  /** Builds and writes one report; errors are logged, never thrown out of the timer. */
  flush(): Promise<void>;
  log: Logger;
}

/**
 * The registry heartbeat: one flush per interval (a single batch), at most one in flight; a
 * `flushSoon()` while one is in flight runs one more right after it. Timers are unref'd.
 */
export class RegistryHeartbeat {
  private timer: NodeJS.Timeout | null = null;
  private inflight: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  private lastError: string | null = null;

  constructor(private readonly opts: HeartbeatOptions) {}

  start(): void {
    this.schedule(0);
  }

  /** Write a report soon (after a command was applied, at shutdown…). */
  flushSoon(): void {
    if (this.stopped) return;
    if (this.inflight !== null) this.again = true;
    else this.schedule(0);
  }

  /** Runs one flush now and waits for it. */
  async flushNow(): Promise<void> {
    if (this.inflight !== null) await this.inflight;
    await this.run();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    if (this.inflight !== null) await this.inflight;
  }

  private schedule(delay: number): void {
    if (this.stopped) return;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.run();
    }, delay);
    this.timer.unref();
  }

  private run(): Promise<void> {
    const p = this.opts
      .flush()
      .then(
        () => {
          if (this.lastError !== null) this.opts.log.info('registry heartbeat written again');
          this.lastError = null;
        },
        (err: unknown) => {
          const msg = (err as Error)?.message ?? String(err);
          if (msg !== this.lastError) this.opts.log.warn({ err: msg }, 'registry heartbeat failed');
          this.lastError = msg;
        },
      )
      .finally(() => {
        if (this.inflight === p) this.inflight = null;
        if (this.stopped) return;
        if (this.again) {
          this.again = false;
          this.schedule(0);
        } else {
          this.schedule(this.opts.fast() ? Math.min(this.opts.fastIntervalMs, this.opts.intervalMs) : this.opts.intervalMs);
        }
      });
    this.inflight = p;
    return p;
  }
}
