import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { hostname } from 'node:os';
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import cluster from 'node:cluster';
import { EXIT_LISTEN_FAILED, ListenError, createLogger, startProxy } from './app.js';
import { type WorkerListenFailed, type WorkerReady, isReloadRequest, runPrimary, workerConfig } from './cluster.js';
import { ConfigFileWatcher } from './config-watch.js';
import { ConfigReloader } from './reload.js';
import { registerPublishCommand } from './publish-command.js';
import { registerRebalanceCommand } from './rebalance-cli.js';
import { registerDemoCommand } from './demo/command.js';
import { type Config, ConfigError, addConfigOptions, configFileOf, loadConfig, durationArg, readTokenFile, redactConfig } from './config.js';
import type { ReplicaRecord, SessionRecord } from './control/bus.js';
import type { MediaSummary } from './rtmp/media-telemetry.js';
import { BACKEND_NAME_RE, type ControlCommand, type DesiredDrain } from './control/commands.js';
import { busKeys, connectOnce, publishCommand, readDesired, redactRedisUrl } from './control/redis-bus.js';
import { readRegistry } from './control/registry.js';
import { installSignalHandlers } from './sidecar.js';
import { ProgressLine, writeEtas } from './progress-line.js';
import { safeText } from './terminal-text.js';
import { mediaText } from './control/media-text.js';
import { VERSION } from './version.js';

/** A configuration or usage error: unknown flag or command, bad value, invalid config file or environment. */
export const EXIT_CONFIG_ERROR = 2;
/** `drain --wait` ended at the deadline with sessions still on the backend. */
export const EXIT_SESSIONS_REMAINED = 3;
/** What replicas use when a drain names no deadline (`drain.deadlineMs` default). */
const DEFAULT_DRAIN_DEADLINE_MS = 30_000;
const POLL_MS = 250;
const FINAL_LOOK_MARGIN_MS = 50;

function backendArg(v: string): string {
  if (!BACKEND_NAME_RE.test(v)) throw new InvalidArgumentError(`backend names match ${BACKEND_NAME_RE}`);
  return v;
}

/** Admin API base URL from `--admin` (host:port or URL) or RTMP_GOAWAY_ADMIN. */
function adminUrl(v: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const raw = v ?? env['RTMP_GOAWAY_ADMIN'] ?? '127.0.0.1:9935';
  const withScheme = /^https?:\/\//.test(raw) ? raw : `http://${raw.replace(/^(0\.0\.0\.0|\[::\]):/, '127.0.0.1:')}`;
  return withScheme.replace(/\/+$/, '');
}

/** One admin API of one proxy, with the token it wants (if any). */
interface AdminApi {
  base: string;
  token?: string;
}

async function adminRequest(api: AdminApi, method: string, path: string, body?: unknown): Promise<unknown> {
  let res: Response;
  try {
    // A POST always carries a JSON object: the admin API refuses other content types (415).
    const payload = method === 'POST' ? JSON.stringify(body ?? {}) : null;
    const headers: Record<string, string> = payload === null ? {} : { 'content-type': 'application/json' };
    if (api.token !== undefined) headers['authorization'] = `Bearer ${api.token}`;
    res = await fetch(`${api.base}${path}`, { method, headers, body: payload, signal: AbortSignal.timeout(10_000) });
  } catch (err) {
    throw new Error(`cannot reach the admin API at ${api.base}: ${(err as Error).message}`);
  }
  const text = await res.text();
  let json: unknown = null;
  try {
    json = text === '' ? null : JSON.parse(text);
  } catch {
    if (res.ok) throw new Error(`${method} ${path}: the admin API answered something that is not JSON`);
  }
  if (!res.ok) {
    const e = json !== null && typeof json === 'object' ? (json as { error?: unknown; hint?: unknown }) : {};
    const detail = typeof e.error === 'string' ? `${e.error}${typeof e.hint === 'string' ? ` (${e.hint})` : ''}` : JSON.stringify(json ?? text.slice(0, 200));
    throw new Error(`${method} ${path}: HTTP ${res.status}: ${detail}`);
  }
  return json;
}

/**
 * The admin token the CLI sends, from the variables the proxy reads for `adminToken` and
 * `adminTokenFile` (or `--admin-token-file`): run next to the proxy, the CLI has its token.
 */
function adminToken(file: string | undefined, env: NodeJS.ProcessEnv): string | undefined {
  const path = file ?? (env['RTMP_GOAWAY_ADMIN_TOKEN_FILE'] || undefined);
  if (path !== undefined) {
    try {
      return readTokenFile(path);
    } catch (e) {
      throw new ConfigError(`admin token file (${file !== undefined ? '--admin-token-file' : 'env RTMP_GOAWAY_ADMIN_TOKEN_FILE'}): ${(e as Error).message}`);
    }
  }
  const token = env['RTMP_GOAWAY_ADMIN_TOKEN']?.trim();
  return token ? token : undefined;
}

// ───────────────────────────── control target ─────────────────────────────

export type ControlTarget = { kind: 'redis'; url: string; prefix: string } | ({ kind: 'admin' } & AdminApi);

interface TargetFlags {
  redis?: string;
  redisPrefix?: string;
  admin?: string;
  adminTokenFile?: string;
  config?: string;
}

/**
 * Where drain/undrain/status go: `--redis URL` (the whole fleet), `--admin URL` (one replica),
 * else the proxy's YAML file given with `--config` (its `redis.url` and `redis.prefix`, else its
 * `admin` address), else REDIS_URL / RTMP_GOAWAY_REDIS_URL from the environment, else the admin
 * API (RTMP_GOAWAY_ADMIN or 127.0.0.1:9935). The admin token: `--admin-token-file`,
 * RTMP_GOAWAY_ADMIN_TOKEN_FILE or RTMP_GOAWAY_ADMIN_TOKEN, else the `--config` file's own.
 * Throws ConfigError for an invalid file.
 */
export function resolveTarget(o: TargetFlags, env: NodeJS.ProcessEnv = process.env): ControlTarget {
  if (o.redis !== undefined && o.admin !== undefined) throw new InvalidArgumentError('use either --redis or --admin, not both');
  /** The admin API with its token: --admin-token-file / the CLI's environment, else the proxy file's token. */
  const admin = (base: string, fileToken = ''): ControlTarget => {
    const token = adminToken(o.adminTokenFile, env) ?? (fileToken === '' ? undefined : fileToken);
    return token === undefined ? { kind: 'admin', base } : { kind: 'admin', base, token };
  };
  if (o.redis === undefined && o.admin === undefined && o.config !== undefined) {
    // The file alone: the CLI's environment holds its own variables (RTMP_GOAWAY_ADMIN), not the proxy's.
    const c = loadConfig({ file: o.config, env: {} });
    if (c.redis.url !== undefined) return { kind: 'redis', url: c.redis.url, prefix: o.redisPrefix ?? c.redis.prefix };
    if (c.admin === '') throw new ConfigError(`${o.config} sets neither redis.url nor an admin address: pass --redis or --admin`);
    return admin(adminUrl(c.admin, env), c.adminToken);
  }
  const prefix = o.redisPrefix ?? env['RTMP_GOAWAY_REDIS_PREFIX'] ?? 'rtmp-goaway';
  if (o.redis !== undefined) return { kind: 'redis', url: o.redis, prefix };
  if (o.admin !== undefined) return admin(adminUrl(o.admin, env));
  const fromEnv = env['REDIS_URL'] || env['RTMP_GOAWAY_REDIS_URL'];
  if (fromEnv) return { kind: 'redis', url: fromEnv, prefix };
  return admin(adminUrl(undefined, env));
}

function addTargetOptions(cmd: Command): Command {
  return cmd
    .option('--redis <url>', 'Redis of the fleet: command every replica (env REDIS_URL or RTMP_GOAWAY_REDIS_URL)')
    .option('--redis-prefix <prefix>', 'prefix of the Redis keys and channel (env RTMP_GOAWAY_REDIS_PREFIX)', undefined)
    .option('--admin <url>', 'admin API of one proxy (host:port or URL; env RTMP_GOAWAY_ADMIN)')
    .option(
      '--admin-token-file <path>',
      'file holding the admin token sent to --admin (env RTMP_GOAWAY_ADMIN_TOKEN_FILE; or the token itself in RTMP_GOAWAY_ADMIN_TOKEN)',
    )
    .option('--config <path>', "the proxy's YAML config file: use its redis.url and redis.prefix, else its admin address");
}

async function withRedis<T>(t: { url: string }, fn: (r: Redis) => Promise<T>): Promise<T> {
  const redis = await connectOnce(t.url);
  try {
    return await fn(redis);
  } finally {
    redis.disconnect();
  }
}

// ───────────────────────────── fleet view ─────────────────────────────

/** One session as the CLI shows it (registry record, or an admin API session of one replica). */
type CliSession = Pick<SessionRecord, 'id' | 'backend' | 'app' | 'capability' | 'state' | 'goAwaySentAt' | 'client' | 'parseFallback' | 'media' | 'role'> & {
  replica: string;
};

interface FleetStatus {
  source: 'redis';
  readAt: string;
  desired: DesiredDrain[];
  replicas: ReplicaRecord[];
  backends: { name: string; desired: 'drain' | 'serve'; sessions: number; states: Record<string, string> }[];
  sessions: SessionRecord[];
}

async function readFleet(redis: Redis, prefix: string): Promise<FleetStatus> {
  const keys = busKeys(prefix);
  const [reg, d] = await Promise.all([readRegistry(redis, keys), readDesired(redis, keys)]);
  const drained = new Set(d.desired.map((x) => x.backend));
  const backends = new Map<string, FleetStatus['backends'][number]>();
  const entry = (name: string) => {
    let b = backends.get(name);
    if (b === undefined) {
      b = { name, desired: drained.has(name) ? 'drain' : 'serve', sessions: 0, states: {} };
      backends.set(name, b);
    }
    return b;
  };
  for (const r of reg.replicas) {
    for (const b of r.backends) {
      const e = entry(b.name);
      e.states[r.replicaId] = b.state;
      e.sessions += b.sessions;
    }
  }
  for (const name of drained) entry(name);
  return {
    source: 'redis',
    readAt: new Date().toISOString(),
    desired: d.desired,
    replicas: reg.replicas,
    backends: [...backends.values()].sort((a, b) => a.name.localeCompare(b.name)),
    sessions: reg.sessions,
  };
}

function ago(iso: string, now = Date.now()): string {
  const ms = Math.max(0, now - Date.parse(iso));
  return ms < 10_000 ? `${(ms / 1000).toFixed(1)}s ago` : `${Math.round(ms / 1000)}s ago`;
}

/** Left-aligned column of client- or fleet-supplied text, escaped first (terminal-text.ts). */
const col = (v: unknown, width: number): string => safeText(v).padEnd(width);

function printFleet(f: FleetStatus, url: string): void {
  console.log(`fleet at ${safeText(redactRedisUrl(url))}: ${f.replicas.length} replica(s), ${f.sessions.length} session(s)`);
  for (const d of f.desired) {
    const bits = [`since ${new Date(d.at).toISOString()}`];
    if (d.deadlineMs !== undefined) bits.push(`deadline ${d.deadlineMs} ms`);
    if (d.reason !== undefined) bits.push(`reason ${JSON.stringify(d.reason)}`);
    if (d.origin !== undefined) bits.push(`by ${d.origin}`);
    console.log(`desired: ${safeText(d.backend)} drained (${safeText(bits.join(', '))})`);
  }
  console.log('\nBACKEND            DESIRED  SESSIONS  STATE PER REPLICA');
  for (const b of f.backends) {
    const states =
      Object.entries(b.states)
        .map(([r, s]) => `${r}=${s}`)
        .join(' ') || '(no live replica has it)';
    console.log(`${col(b.name, 18)} ${col(b.desired, 8)} ${col(b.sessions, 9)} ${safeText(states)}`);
  }
  console.log('\nREPLICA                  LAST SEEN   STATE     SESSIONS  LISTEN');
  for (const r of f.replicas) {
    const n = f.sessions.filter((s) => s.replica === r.replicaId).length;
    console.log(`${col(r.replicaId, 24)} ${col(ago(r.heartbeatAt), 11)} ${col(r.shuttingDown ? 'stopping' : 'serving', 9)} ${col(n, 9)} ${safeText(r.listen)}`);
  }
  if (f.sessions.length > 0) {
    console.log('\nSESSION          REPLICA                  BACKEND        APP            ROLE       CAPABILITY  STATE       STARTED                   MEDIA');
    for (const s of f.sessions) {
      console.log(
        `${col(s.id, 16)} ${col(s.replica, 24)} ${col(s.backend, 14)} ${col(s.app, 14)} ${col(s.role ?? '-', 10)} ${col(s.capability, 11)} ${col(s.state, 11)} ${col(s.startedAt, 25)} ${safeText(mediaText(s.media))}`,
      );
    }
  }
}

// ───────────────────────────── drain --wait ─────────────────────────────

/** Why a session is still on a draining backend, in operator words. */
export function whyRemained(s: Pick<CliSession, 'capability' | 'goAwaySentAt' | 'parseFallback' | 'state'> & { role?: CliSession['role'] }): string {
  // Nothing is sent to a player on a drain: the proxy moves it to its stream elsewhere.
  if (s.role === 'player')
    return (
      'it is a player (nothing is sent to players on a drain): the proxy moves it to a backend carrying its stream at the first keyframe there, ' +
      'waiting while the stream is only here; it is closed (player-stream-moved) when no backend has the stream within players.followTimeoutMs of it leaving here, ' +
      'and a pass-through player (one healthy backend when it arrived) stays while its stream is here, or until the deadline'
    );
  if (s.parseFallback !== null) return `its RTMP stream stopped parsing (${s.parseFallback}), so it cannot be sent Go Away; it only leaves when closed`;
  switch (s.capability) {
    case 'goaway':
      return s.goAwaySentAt !== null
        ? `Go Away was sent at ${s.goAwaySentAt} but the publisher has not reconnected yet`
        : 'it supports Go Away but the message could not be sent yet';
    case 'erpc':
      return 'it announced E-RTMP reconnect (capsEx): a ReconnectRequest was sent but it has not reconnected yet';
    case 'none':
      return 'the publisher announced neither Go Away nor E-RTMP reconnect: the proxy migrates it at its next keyframe (drain.nonCapable migrate), or closes it at the deadline (deadline-close)';
    default:
      return `its RTMP connect was not seen yet (state ${s.state}): it cannot be told to go away`;
  }
}

interface WaitSource {
  /** Sessions on the backend now. */
  sessions(): Promise<CliSession[]>;
  /** Epoch ms of the drain deadline if replicas report one. */
  deadlineAt(): Promise<number | null>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Polls until the backend holds no session (0) or the deadline passes (EXIT_SESSIONS_REMAINED). */
async function waitEmpty(backend: string, source: WaitSource, fixedDeadlineAt: number | null, started: number): Promise<number> {
  const err = process.stderr;
  const progress = new ProgressLine(`draining ${backend} [{bar}] {left} session(s) left of {total} | deadline in {secs}s`, err);
  let total = 0;
  let deadlineAt = fixedDeadlineAt ?? started + DEFAULT_DRAIN_DEADLINE_MS;
  let last: CliSession[] = [];
  let lastError: string | null;
  const etas = new Map<string, string>();
  try {
    for (;;) {
      try {
        if (fixedDeadlineAt === null) {
          const d = await source.deadlineAt();
          if (d !== null) deadlineAt = d;
        }
        last = await source.sessions();
        lastError = null;
      } catch (e) {
        lastError = (e as Error).message;
      }
      const left = last.length;
      total = Math.max(total, left);
      const secs = Math.max(0, Math.ceil((deadlineAt - Date.now()) / 1000));
      const line = `draining ${backend}: ${left} session(s) left of ${total}${lastError !== null ? ` (read failed: ${safeText(lastError)})` : ''}`;
      progress.update(total - left, total, { left, secs }, line, `, deadline in ${secs}s`);
      writeEtas(err, last, etas, progress.drawing);
      if (left === 0 && lastError === null) {
        progress.stop();
        err.write(`${backend} holds no session: drained in ${((Date.now() - started) / 1000).toFixed(1)}s\n`);
        return 0;
      }
      // The last look is taken just before the deadline: what the proxies close at the deadline
      // did not leave on its own, and is reported.
      const lastLookAt = deadlineAt - FINAL_LOOK_MARGIN_MS;
      if (Date.now() >= lastLookAt) break;
      await sleep(Math.min(POLL_MS, Math.max(1, lastLookAt - Date.now())));
    }
  } finally {
    progress.stop();
  }
  if (lastError !== null && last.length === 0) {
    err.write(`could not read the sessions on ${backend} before the deadline: ${safeText(lastError)}\n`);
    return 1;
  }
  err.write(`${backend} still held ${last.length} session(s) at the deadline:\n`);
  for (const s of last) {
    err.write(
      `  ${safeText(s.id)} on replica ${safeText(s.replica)} (client ${safeText(s.client)}, app ${safeText(s.app)}, role ${safeText(s.role ?? 'unknown')}, capability ${safeText(s.capability)}, state ${safeText(s.state)}): ${safeText(whyRemained(s))}\n`,
    );
  }
  return EXIT_SESSIONS_REMAINED;
}

function redisWaitSource(redis: Redis, prefix: string, backend: string): WaitSource {
  const keys = busKeys(prefix);
  return {
    async sessions() {
      const reg = await readRegistry(redis, keys);
      return reg.sessions.filter((s) => s.backend === backend);
    },
    async deadlineAt() {
      const reg = await readRegistry(redis, keys);
      let max: number | null = null;
      for (const r of reg.replicas) {
        for (const b of r.backends) if (b.name === backend && b.drainDeadlineAt !== null) max = Math.max(max ?? 0, b.drainDeadlineAt);
      }
      return max;
    },
  };
}

function adminWaitSource(api: AdminApi, backend: string): WaitSource {
  return {
    async sessions() {
      const list = (await adminRequest(api, 'GET', `/api/sessions?backend=${encodeURIComponent(backend)}`)) as Omit<CliSession, 'replica'>[];
      return list.map((s) => ({ ...s, replica: api.base }));
    },
    async deadlineAt() {
      const list = (await adminRequest(api, 'GET', '/api/backends')) as { name: string; drainDeadlineAt?: number }[];
      return list.find((b) => b.name === backend)?.drainDeadlineAt ?? null;
    },
  };
}

function cliCommand(action: 'drain' | 'undrain', backend: string, o: { deadline?: number; reason?: string }): ControlCommand {
  const cmd: ControlCommand = { action, backend, id: randomUUID(), at: Date.now(), origin: `cli@${hostname()}` };
  if (action === 'drain' && o.deadline !== undefined) cmd.deadlineMs = o.deadline;
  if (o.reason !== undefined) cmd.reason = o.reason;
  return cmd;
}

/** Edit distance (insert, delete, substitute, swap two neighbours): how far a typo is from a name. */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/** Characters a typist takes for one another (`bl` for `b1`, `bO` for `b0`). */
const LOOKALIKE: Record<string, string> = { l: '1', i: '1', '|': '1', o: '0' };
const unconfuse = (s: string): string => [...s.toLowerCase()].map((c) => LOOKALIKE[c] ?? c).join('');

/** The known names closest to `name` (at most two edits away; look-alike characters count half), the best ones only. */
export function closestNames(name: string, known: Iterable<string>): string[] {
  const limit = Math.min(2, Math.max(1, name.length - 1));
  const scored = [...new Set(known)]
    .map((k) => ({ k, d: unconfuse(name) === unconfuse(k) ? 0.5 : editDistance(name.toLowerCase(), k.toLowerCase()) }))
    .filter((x) => x.d <= limit);
  const best = Math.min(...scored.map((x) => x.d));
  return scored
    .filter((x) => x.d === best)
    .map((x) => x.k)
    .sort();
}

/**
 * Why a drain must not be published without `--force`, from the live replicas' registry records,
 * or null when it may: no live replica has the backend (a typo would sit in the desired state and
 * drain nothing, while the script that asked goes on as if the real backend were empty), or the
 * backend is the last one taking new sessions on some replica.
 */
export function drainRefusal(backend: string, replicas: readonly Pick<ReplicaRecord, 'replicaId' | 'backends'>[], hash: string): string | null {
  const having = replicas.filter((r) => r.backends.some((b) => b.name === backend));
  if (having.length === 0) {
    const known = replicas.flatMap((r) => r.backends.map((b) => b.name));
    const close = closestNames(backend, known);
    return [
      `no live replica has a backend named "${backend}" (${replicas.length} replica(s) live${known.length > 0 ? `, backends: ${[...new Set(known)].sort().join(', ')}` : ''}).`,
      close.length > 0 ? ` Did you mean ${close.join(' or ')}?` : '',
      ` Nothing was published; --force keeps the drain in ${hash} for replicas that get this backend later.`,
    ].join('');
  }
  const stranded = having.filter((r) => r.backends.every((b) => (b.name === backend ? b.state === 'up' : b.state !== 'up'))).map((r) => r.replicaId);
  if (stranded.length > 0) {
    return `refusing to drain "${backend}": it is the last backend taking new sessions on replica(s) ${stranded.join(', ')}; nothing was published. --force drains it anyway`;
  }
  return null;
}

/** Publishes through Redis; a drain is checked against the fleet registry first unless forced (drainRefusal). */
async function publishViaRedis(redis: Redis, prefix: string, cmd: ControlCommand, force = false): Promise<Record<string, unknown>> {
  const keys = busKeys(prefix);
  const before = await readRegistry(redis, keys);
  if (cmd.action === 'drain' && !force) {
    const why = drainRefusal(cmd.backend, before.replicas, keys.backends);
    if (why !== null) throw new Error(why);
  }
  const receivers = await publishCommand(redis, keys, cmd);
  const knowing = before.replicas.filter((r) => r.backends.some((b) => b.name === cmd.backend)).map((r) => r.replicaId);
  if (knowing.length === 0) {
    process.stderr.write(
      `warning: no live replica reports a backend named ${cmd.backend} (${before.replicas.length} replica(s) live)${cmd.action === 'drain' ? `; the drain is kept in ${keys.backends} (--force)` : ''}\n`,
    );
  }
  return { command: cmd, published: true, receivers, channel: keys.channel, hash: keys.backends, replicas: knowing };
}

// ───────────────────────────── serve ─────────────────────────────

/** `serve` flags → Config: `--redis` and `--sidecar` are shorthands; REDIS_URL is the last fallback. */
export function serveConfig(flags: Record<string, unknown>, env: NodeJS.ProcessEnv): Config {
  const f: Record<string, unknown> = { ...flags };
  if (flags['redis'] !== undefined) {
    if (flags['redisUrl'] !== undefined) throw new ConfigError('use either --redis or --redis-url, not both');
    f['redisUrl'] = flags['redis'];
  }
  if (flags['sidecar'] === true && flags['sidecarEnabled'] === undefined) f['sidecarEnabled'] = true;
  const config = loadConfig({ flags: f, env });
  if (config.redis.url === undefined && env['REDIS_URL']) return loadConfig({ flags: f, env: { ...env, RTMP_GOAWAY_REDIS_URL: env['REDIS_URL'] } });
  return config;
}

export function buildCli(): Command {
  const program = new Command('rtmp-goaway-proxy')
    .description('RTMP-aware TCP proxy: drains ingest servers without losing a frame (RTMP Go Away)')
    .version(VERSION)
    // Usage errors are one line (with commander's "did you mean"), not the help: main() exits 2.
    .exitOverride((err) => {
      throw Object.assign(err, { printed: true });
    })
    .configureOutput({ outputError: (str, write) => write(`rtmp-goaway-proxy: ${oneLineUsageError(str)}\n`) });

  addConfigOptions(
    program
      .command('serve')
      .description('run the proxy (settings: flags > env RTMP_GOAWAY_* > --config YAML > defaults; see docs/configuration.md)')
      .option('--redis <url>', 'shorthand for --redis-url (env REDIS_URL is used when no other source sets redis.url)')
      .option('--sidecar', 'shorthand for --sidecar-enabled: on SIGTERM send Go Away to every session and wait for them to leave'),
  ).action(async (flags: Record<string, unknown>) => {
    const config = serveConfig(flags, process.env);
    if (config.backends.length === 0 && config.discovery.dnsName === '') {
      throw new ConfigError([
        'no backend configured: pass --backend name=host:port (repeatable), RTMP_GOAWAY_BACKENDS, backends: in --config, or discovery.dnsName; `npm start` runs a self-contained demo instead',
      ]);
    }
    if (cluster.isPrimary && config.workers !== 1) {
      // Cluster mode: this process forks the workers and serves their combined admin API.
      const log = createLogger(config).child({ role: 'primary' });
      await runPrimary(config, log, { configFile: configFileOf(flags, process.env) });
      process.exit(0);
    }
    const workerId = cluster.isWorker ? cluster.worker!.id : undefined;
    const proxyConfig = workerId === undefined ? config : workerConfig(config, workerId);
    const base = createLogger(proxyConfig);
    const proxy = await startProxy(proxyConfig, workerId === undefined ? base : base.child({ worker: workerId }), { worker: workerId });
    if (workerId !== undefined) {
      const ready: WorkerReady = {
        kind: 'rtmp-goaway-worker-ready',
        listen: `${proxy.address.address}:${proxy.address.port}`,
        adminPort: proxy.adminAddress!.port,
      };
      process.send!(ready);
    }
    proxy.log.debug({ config: redactConfig(proxyConfig) }, 'configuration');
    const file = configFileOf(flags, process.env);
    const reloader = new ConfigReloader(proxy, () => {
      if (file === undefined) proxy.log.warn('reload without a config file: re-reading flags and environment only');
      const next = serveConfig(flags, process.env);
      return workerId === undefined ? next : workerConfig(next, workerId);
    });
    installSignalHandlers(proxy, {
      // A worker gets SIGTERM from its primary; a terminal's Ctrl-C reaches it too, and is left to the primary.
      interrupt: workerId === undefined,
      sidecar: config.sidecar.enabled,
      gracePeriodMs: config.sidecar.gracePeriodMs,
      reload: () => reloader.reload('signal'),
    });
    // The config file is watched once per pod: here, or by the cluster primary, which tells each worker.
    if (workerId !== undefined) process.on('message', (m: unknown) => isReloadRequest(m) && reloader.reload('file'));
    else if (file !== undefined) new ConfigFileWatcher({ file, log: proxy.log, onChange: () => reloader.reload('file') }).start();
  });

  addTargetOptions(
    program
      .command('drain <backend>')
      .description('stop routing new sessions to <backend> and tell its publishers to go away (every replica with --redis)')
      .option('--deadline <duration>', "close sessions still on the backend after this long (default: each replica's drain.deadlineMs)", durationArg)
      .option('--reason <text>', 'free text recorded with the drain')
      .option('--force', 'drain even when no live replica has the backend (--redis), or when it is the last backend taking new sessions')
      .option('--wait', `show the sessions left on the backend until none is left (exit 0) or the deadline passes (exit ${EXIT_SESSIONS_REMAINED})`),
  ).action(async (backendName: string, o: TargetFlags & { deadline?: number; reason?: string; wait?: boolean; force?: boolean }) => {
    const backend = backendArg(backendName);
    const target = resolveTarget(o);
    const started = Date.now();
    const fixedDeadline = o.deadline !== undefined ? started + o.deadline : null;
    if (target.kind === 'redis') {
      await withRedis(target, async (redis) => {
        const out = await publishViaRedis(redis, target.prefix, cliCommand('drain', backend, o), o.force === true);
        console.log(JSON.stringify(out, null, 2));
        if (o.wait) process.exitCode = await waitEmpty(backend, redisWaitSource(redis, target.prefix, backend), fixedDeadline, started);
      });
      return;
    }
    const body: Record<string, unknown> = {};
    if (o.deadline !== undefined) body['deadlineMs'] = o.deadline;
    if (o.reason !== undefined) body['reason'] = o.reason;
    if (o.force === true) body['force'] = true;
    const r = (await adminRequest(target, 'POST', `/api/backends/${encodeURIComponent(backend)}/drain`, body)) as { deadlineAt?: number };
    console.log(JSON.stringify(r, null, 2));
    if (o.wait) process.exitCode = await waitEmpty(backend, adminWaitSource(target, backend), r.deadlineAt ?? fixedDeadline, started);
  });

  addTargetOptions(
    program
      .command('undrain <backend>')
      .description('let <backend> take new sessions again (every replica with --redis); health checks still apply')
      .option('--reason <text>', 'free text recorded with the undrain'),
  ).action(async (backendName: string, o: TargetFlags & { reason?: string }) => {
    const backend = backendArg(backendName);
    const target = resolveTarget(o);
    if (target.kind === 'redis') {
      const out = await withRedis(target, (redis) => publishViaRedis(redis, target.prefix, cliCommand('undrain', backend, o)));
      console.log(JSON.stringify(out, null, 2));
      return;
    }
    const r = await adminRequest(target, 'POST', `/api/backends/${encodeURIComponent(backend)}/undrain`);
    console.log(JSON.stringify(r, null, 2));
  });

  addTargetOptions(
    program
      .command('status')
      .description('backends and sessions: of the whole fleet with --redis (session registry), of one proxy with --admin')
      .option('--json', 'print JSON'),
  ).action(async (o: TargetFlags & { json?: boolean }) => {
    const target = resolveTarget(o);
    if (target.kind === 'redis') {
      const fleet = await withRedis(target, (redis) => readFleet(redis, target.prefix));
      if (o.json) console.log(JSON.stringify(fleet, null, 2));
      else printFleet(fleet, target.url);
      return;
    }
    const [backends, sessions] = (await Promise.all([adminRequest(target, 'GET', '/api/backends'), adminRequest(target, 'GET', '/api/sessions')])) as [
      { name: string; host: string; port: number; state: string; sessions: number; source?: string }[],
      {
        id: string;
        backend: string | null;
        app: string | null;
        streamKey: string | null;
        capability: string;
        state: string;
        bytesIn: number;
        media?: MediaSummary | null;
        role?: string | null;
      }[],
    ];
    if (o.json) {
      console.log(JSON.stringify({ backends, sessions }, null, 2));
      return;
    }
    console.log('BACKEND            ADDRESS                STATE      SESSIONS  SOURCE');
    for (const b of backends)
      console.log(`${col(b.name, 18)} ${col(`${b.host}:${b.port}`, 22)} ${col(b.state, 10)} ${col(b.sessions, 9)} ${safeText(b.source ?? 'static')}`);
    console.log(`\n${sessions.length} session(s)`);
    for (const s of sessions) {
      console.log(
        `  ${safeText(s.id)}  ${safeText(s.backend)}  ${safeText(s.app)}/${safeText(s.streamKey)}  ${safeText(s.role ?? '-')}  ${safeText(s.capability)}  ${safeText(s.state)}  ${safeText(s.bytesIn)} B in  ${safeText(mediaText(s.media))}`,
      );
    }
  });

  registerRebalanceCommand<TargetFlags>(program, { addTargetOptions, resolveTarget, adminRequest, withRedis });
  registerPublishCommand(program);
  registerDemoCommand(program);
  return program;
}

/** Commander's `error: unknown option '--bakend'\n(Did you mean --backend?)` as one line, pointing at --help. */
export function oneLineUsageError(text: string): string {
  const parts = text
    .trim()
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
  const line = parts.map((l) => l.replace(/^\(Did you mean (.*)\)$/, '(did you mean $1)')).join(' ');
  return `${line} (see --help)`;
}

export async function main(argv: string[]): Promise<void> {
  try {
    await buildCli().parseAsync(argv);
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and --version end here with exit 0; anything else is a usage error.
      if (err.exitCode === 0) return;
      if (!(err as CommanderError & { printed?: boolean }).printed) console.error(`rtmp-goaway-proxy: error: ${err.message}`);
      process.exitCode = EXIT_CONFIG_ERROR;
      return;
    }
    if (err instanceof ConfigError) {
      for (const issue of err.issues) console.error(`rtmp-goaway-proxy: configuration error: ${issue}`);
      process.exitCode = EXIT_CONFIG_ERROR;
      return;
    }
    if (err instanceof ListenError) {
      if (cluster.isWorker) {
        // Its primary says it once for every worker, and exits.
        const m: WorkerListenFailed = {
          kind: 'rtmp-goaway-worker-listen-failed',
          listener: err.listener,
          address: err.address,
          code: err.cause.code,
          message: err.cause.message,
        };
        process.send!(m, () => process.exit(EXIT_LISTEN_FAILED));
        return;
      }
      console.error(`rtmp-goaway-proxy: ${err.message}`);
      process.exitCode = EXIT_LISTEN_FAILED;
      return;
    }
    console.error(`rtmp-goaway-proxy: ${safeText((err as Error).message)}`);
    process.exitCode = 1;
    // A worker's IPC channel would keep it alive: its primary replaces it.
    if (cluster.isWorker) process.exit(1);
  }
}
