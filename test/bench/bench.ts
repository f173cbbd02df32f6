/**
 * `npm run bench` — issue 8's side-by-side benchmark of the middles between RTMP publishers and
 * an ingest server: direct, a plain Node `pipe` relay, this proxy, HAProxy (TCP mode, one thread)
 * and nginx `stream` (one process), the last two when installed.
 *
 * Processes: this orchestrator, the load generator (loadgen.ts), the sink (sink.ts) and one middle
 * at a time, each its own process so /proc/PID/stat CPU and RSS are attributable. Repetitions are
 * interleaved (each repetition runs every middle, in a rotated order) and reported as median
 * (min–max). Absolute numbers swing between runs on shared cores: compare within one run.
 *
 * Per middle and repetition, in this order (cleanest memory first):
 *   1. RSS at idle, then RSS per session with N idle publishers (handshake … publish, then silent);
 *   2. added latency: an 18-byte RTMP message ping-ponged through the middle (sink echoes);
 *   3. bulk: 4 publishers as fast as TCP goes; Gbps at the sink, CPU-s/Gbit of the middle;
 *      every byte is counted (and, with --verify, compared) at the sink;
 *   4. paced: N publishers at 6 Mbps each (100, 500, 1,000); delivered rate and middle CPU%.
 * Then, for the proxy only, Go Away fan-out: N idle capable sessions, drain command (admin POST;
 * Redis PUBLISH when the proxy has a Redis bus), time until the last client has read type 32.
 *
 * Flags: --smoke (tiny sizes, a few seconds), --out FILE (JSON), --middles a,b,…, --reps N,
 * --phases idle,latency,bulk,paced, --verify (byte-compare at the sink), --no-paced, --no-fanout,
 * --proxy-code dist|src, --proxy-b DIR (a second proxy column from another work tree: A/B),
 * --profile DIR (one bulk window of the proxy — or, with --middles node-relay, the relay; with
 * --phases paced the proxy's 500 × 6 Mbps paced window — under the V8 CPU profiler; prints the
 * hottest functions at their src/*.ts lines),
 * --pin none|split and --latency-pin one|none (CPU affinity), --proxy-args "FLAGS" / --proxy-b-args
 * "FLAGS" (node flags of the proxy / proxy-b process, e.g. --max-semi-space-size=32), --runtime
 * tuned|default and --proxy-b-runtime tuned|default (glibc malloc and V8 heap settings of the
 * Node middles, RUNTIME_TUNED in lib/middles.ts; tuned by default), --proxy-b-env "K=V …" (extra
 * environment of proxy-b, e.g. GLIBC_TUNABLES). The full run adds `proxy-tls` (the proxy's RTMPS listener:
 * the generator connects with TLS) when openssl is installed. See docs/performance.md.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import {
  HAPROXY,
  RUNTIME_TUNED,
  type MiddleName,
  type RunningMiddle,
  NGINX,
  PROJECT_ROOT,
  haproxyVersion,
  isProxy,
  nginxStreamVersion,
  openFileLimit,
  opensslAvailable,
  startMiddle,
} from './lib/middles.js';
import {
  type RpcChild,
  cpuSeconds,
  forkRpc,
  machineBusySeconds,
  minorFaults,
  nowSec,
  pin,
  processTree,
  readCalls,
  rssBytes,
  sleep,
  spawnReady,
  threadCpuSeconds,
  treeSum,
} from './lib/proc.js';
import { NOMINAL_BPS, type PublisherKind, parsePublisherKinds, publishStream } from './lib/stream.js';
import { renderReport, type BenchResult, type RunResult, type FanoutResult } from './lib/report.js';
import { summarizeProfiles } from './lib/cpuprofile.js';
import { ensureDist } from '../helpers/build.js';

const { values: argv } = parseArgs({
  options: {
    smoke: { type: 'boolean', default: false },
    out: { type: 'string' },
    middles: { type: 'string' },
    reps: { type: 'string' },
    verify: { type: 'boolean', default: false },
    'no-paced': { type: 'boolean', default: false },
    'no-fanout': { type: 'boolean', default: false },
    profile: { type: 'string' },
    quiet: { type: 'boolean', default: false },
    pin: { type: 'string', default: 'none' },
    phases: { type: 'string', default: 'idle,latency,bulk,paced' },
    'latency-pin': { type: 'string', default: 'one' },
    'proxy-code': { type: 'string' },
    'proxy-b': { type: 'string' },
    'proxy-args': { type: 'string' },
    'proxy-b-args': { type: 'string' },
    runtime: { type: 'string', default: 'tuned' },
    'proxy-b-runtime': { type: 'string' },
    'proxy-b-env': { type: 'string' },
    publishers: { type: 'string', default: 'plain' },
  },
});

interface Scale {
  reps: number;
  bulkConns: number;
  bulkWarmupMs: number;
  bulkMeasureMs: number;
  pingWarmup: number;
  pingCount: number;
  pacedLevels: number[];
  pacedWarmupMs: number;
  pacedMeasureMs: number;
  idleSessions: number;
  idleSettleMs: number;
  fanoutSizes: number[];
  fanoutReps: number;
}

const FULL: Scale = {
  reps: 3,
  bulkConns: 4,
  bulkWarmupMs: 1000,
  bulkMeasureMs: 3000,
  pingWarmup: 300,
  pingCount: 3000,
  pacedLevels: [200, 500, 1000],
  pacedWarmupMs: 1000,
  pacedMeasureMs: 2500,
  idleSessions: 1000,
  idleSettleMs: 1000,
  fanoutSizes: [1000, 5000],
  fanoutReps: 3,
};

const SMOKE: Scale = {
  reps: 1,
  bulkConns: 4,
  bulkWarmupMs: 150,
  bulkMeasureMs: 400,
  pingWarmup: 20,
  pingCount: 100,
  pacedLevels: [10],
  pacedWarmupMs: 200,
  pacedMeasureMs: 400,
  idleSessions: 20,
  idleSettleMs: 100,
  fanoutSizes: [20],
  fanoutReps: 1,
};

const smoke = argv.smoke!;
const scale: Scale = { ...(smoke ? SMOKE : FULL) };
if (argv.reps !== undefined) scale.reps = Math.max(1, Number(argv.reps));
const verify = argv.verify! || smoke;
/** The smoke run uses src/ through tsx (no build step in the test suite); the full bench the compiled dist/, as shipped. */
const proxyCode: 'dist' | 'src' = argv['proxy-code'] === 'src' || argv['proxy-code'] === 'dist' ? argv['proxy-code'] : smoke ? 'src' : 'dist';
/** Extra node flags for the proxy / proxy-b processes (e.g. "--max-semi-space-size=32"), space-separated. */
const splitArgs = (s: string | undefined): string[] => (s === undefined ? [] : s.split(/\s+/).filter((a) => a !== ''));
const proxyArgsOnly = splitArgs(argv['proxy-args']);
const proxyBArgsOnly = argv['proxy-b-args'] === undefined ? proxyArgsOnly : splitArgs(argv['proxy-b-args']);
/**
 * Runtime settings of the Node relay (RUNTIME_TUNED in lib/middles.ts) and the proxies: `tuned` (as bin/ starts the proxy) or `default`
 * (plain node; the proxy with RTMP_GOAWAY_NO_TUNE=1).
 */
const runtimeMode = (mode: string | undefined): 'tuned' | 'default' => {
  if (mode !== 'tuned' && mode !== 'default') throw new Error(`--runtime tuned|default, not ${mode}`);
  return mode;
};
const proxyRuntime = runtimeMode(argv.runtime);
const proxyBRuntime = runtimeMode(argv['proxy-b-runtime'] ?? argv.runtime);
/** `--proxy-b-env "K=V K2=V2"`: environment of the proxy-b process only (e.g. GLIBC_TUNABLES for an A/B). */
const proxyBEnv: Record<string, string> = Object.fromEntries(
  splitArgs(argv['proxy-b-env']).map((kv) => {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new Error(`--proxy-b-env: expected K=V, got ${kv}`);
    return [kv.slice(0, eq), kv.slice(eq + 1)];
  }),
);
const relayRuntime = proxyRuntime === 'tuned' ? RUNTIME_TUNED : { env: {}, nodeArgs: [] };
/** What the publishers' `connect` announces (a comma-separated list is a mix by connection id); proxy-goaway always has Go Away publishers. */
const publishers = parsePublisherKinds(argv.publishers!);
const publishersOf = (m: MiddleName): PublisherKind[] => (m === 'proxy-goaway' ? ['goaway'] : publishers);
const log = (msg: string): void => {
  if (!argv.quiet) process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
};

function availableMiddles(): MiddleName[] {
  // The relay with and without the runtime settings; the proxy as shipped, with the publishers of
  // --publishers and with publishers that announce Go Away.
  const all: MiddleName[] = ['direct', 'node-relay', 'node-relay-untuned', 'proxy', 'proxy-goaway'];
  if (HAPROXY !== null && haproxyVersion() !== null) all.push('haproxy');
  else log('haproxy not installed: skipped');
  if (NGINX !== null && nginxStreamVersion() !== null) all.push('nginx');
  else log('nginx with the stream module not installed: skipped (apt-get install libnginx-mod-stream)');
  /** After the last proxy column so far: proxy columns stay together. */
  const afterProxies = (): number => all.reduce((at, m, i) => (isProxy(m) ? i + 1 : at), 0);
  if (argv['proxy-b'] !== undefined) all.splice(afterProxies(), 0, 'proxy-b');
  // RTMPS costs a TLS load generator too: in the full run (and on request), not in the smoke run.
  if (opensslAvailable()) all.splice(afterProxies(), 0, 'proxy-tls');
  else log('openssl not installed: proxy-tls (RTMPS) skipped');
  // Cluster mode (`serve --workers 2`): in the full run, after the single-process proxy.
  all.splice(afterProxies(), 0, 'proxy-cluster');
  if (argv.middles === undefined) return smoke ? all.filter((m) => m !== 'proxy-tls' && m !== 'proxy-cluster' && m !== 'node-relay-untuned') : all;
  const wanted = argv.middles.split(',').map((s) => s.trim()) as MiddleName[];
  for (const w of wanted) if (!all.includes(w)) throw new Error(`middle ${w} is not available (have: ${all.join(', ')})`);
  return wanted;
}

// -----------------------------------------------------------------------------------------------

let nextId = 1;
const allocIds = (n: number): number => {
  const lo = nextId;
  nextId += n;
  return lo;
};

interface SinkSnapshot {
  t: number;
  total: number;
  seen: number;
  ended: number;
  closed: number;
  mismatches: { id: number; at: number }[];
  per: number[] | null;
  connections: number;
}

const problems: string[] = [];

/**
 * Waits until the sink has received, per connection, exactly the bytes the generator sent (and,
 * with verify, the same bytes). Connections the generator saw fail (reset by an overloaded
 * middle, say) are excluded and counted as dropped: bytes in flight on a reset connection are
 * legitimately lost. Anything else short or different is a problem (the bench exits 1).
 */
async function waitDelivered(
  sink: RpcChild,
  lo: number,
  sent: { written: Record<number, number>; failedIds: number[] },
  what: string,
  timeoutMs = 20_000,
): Promise<{ complete: boolean; dropped: number }> {
  const failed = new Set(sent.failedIds);
  const ids = Object.keys(sent.written)
    .map(Number)
    .filter((id) => !failed.has(id));
  const hi = Math.max(lo, ...Object.keys(sent.written).map(Number)) + 1;
  const until = Date.now() + timeoutMs;
  let snap: SinkSnapshot;
  let ok = true;
  for (;;) {
    snap = await sink.call<SinkSnapshot>('snapshot', { lo, hi, perConn: true });
    const short = ids.filter((id) => snap.per![id - lo] !== sent.written[id]);
    if (short.length === 0) break;
    if (Date.now() > until) {
      const id = short[0]!;
      problems.push(
        `${what}: ${short.length} of ${ids.length} connections not delivered byte-exact (conn ${id}: sent ${sent.written[id]}, sink got ${snap.per![id - lo]})`,
      );
      ok = false;
      break;
    }
    await sleep(20);
  }
  const bad = snap.mismatches.filter((m) => !failed.has(m.id));
  if (bad.length > 0) {
    problems.push(`${what}: ${bad.length} connections delivered different bytes (conn ${bad[0]!.id}, first at stream offset ${bad[0]!.at})`);
    ok = false;
  }
  if (failed.size > 0) log(`${what}: ${failed.size} connection(s) dropped (socket error at the publisher)`);
  await sink.call('forget', { lo, hi });
  return { complete: ok, dropped: failed.size };
}

/** The middle's CPU seconds; for the cluster, of the primary and its workers together. */
const cpuOfMiddle = (m: RunningMiddle): number | null => (m.pid === null ? null : m.tree ? treeSum(m.pid, (p) => cpuSeconds(p)) : cpuSeconds(m.pid));
/** The middle's RSS in bytes (summed over the cluster's processes). */
const rssOfMiddle = (m: RunningMiddle): number | null => (m.pid === null ? null : m.tree ? treeSum(m.pid, rssBytes) : rssBytes(m.pid));
const threadsOfMiddle = (m: RunningMiddle): { main: number; others: number } | null => {
  if (m.pid === null) return null;
  if (!m.tree) return threadCpuSeconds(m.pid);
  const all = processTree(m.pid).map((p) => {
    try {
      return threadCpuSeconds(p);
    } catch {
      return { main: 0, others: 0 };
    }
  });
  return { main: all.reduce((n, t) => n + t.main, 0), others: all.reduce((n, t) => n + t.others, 0) };
};
const faultsOfMiddle = (m: RunningMiddle): number | null => (m.pid === null ? null : m.tree ? treeSum(m.pid, minorFaults) : minorFaults(m.pid));
const readsOfMiddle = (m: RunningMiddle): { calls: number; bytes: number } | null => {
  if (m.pid === null) return null;
  if (!m.tree) return readCalls(m.pid);
  return { calls: treeSum(m.pid, (p) => readCalls(p)?.calls ?? 0), bytes: treeSum(m.pid, (p) => readCalls(p)?.bytes ?? 0) };
};

/** RSS after a full GC, for Node middles (null for others). */
async function rssAfterGc(m: RunningMiddle): Promise<number | null> {
  if (m.pid === null || !m.gcOnSignal) return null;
  process.kill(m.pid, 'SIGWINCH');
  await sleep(smoke ? 100 : 400);
  return rssBytes(m.pid);
}

async function measureIdle(gen: RpcChild, sink: RpcChild, m: RunningMiddle, n: number): Promise<RunResult['idle']> {
  const before = rssOfMiddle(m);
  const beforeGc = await rssAfterGc(m);
  const lo = allocIds(n);
  const r = await gen.call<{ opened: number; failed: number; firstError: string | null; seconds: number }>('idleOpen', {
    port: m.port,
    tls: m.tls === true,
    n,
    idBase: lo,
    parallel: 100,
    publishers: publishersOf(m.name),
  });
  if (r.failed > 0) problems.push(`${m.name} idle: ${r.failed} of ${n} sessions failed: ${r.firstError}`);
  await sleep(scale.idleSettleMs);
  const after = rssOfMiddle(m);
  const afterGc = await rssAfterGc(m);
  await gen.call('idleClose');
  await sink.call('forget', { lo, hi: lo + n });
  const per = (a: number | null, b: number | null): number | null => (a === null || b === null || r.opened === 0 ? null : (b - a) / r.opened);
  return {
    sessions: r.opened,
    setupSeconds: r.seconds,
    rssBefore: before,
    rssAfter: after,
    rssPerSession: per(before, after),
    rssPerSessionAfterGc: per(beforeGc, afterGc),
  };
}

async function measureBulk(
  gen: RpcChild,
  sink: RpcChild,
  m: RunningMiddle,
  procs: { gen: number; sink: number },
  hooks: { start?(): void; end?(): void } = {},
): Promise<NonNullable<RunResult['bulk']>> {
  const lo = allocIds(scale.bulkConns);
  await gen.call('bulkStart', { port: m.port, tls: m.tls === true, conns: scale.bulkConns, idBase: lo, publishers: publishersOf(m.name) });
  await sleep(scale.bulkWarmupMs);
  hooks.start?.();
  const s0 = await sink.call<SinkSnapshot>('snapshot', { lo, hi: lo + scale.bulkConns });
  const c0 = cpuOfMiddle(m);
  const t0 = threadsOfMiddle(m);
  const f0 = faultsOfMiddle(m);
  const r0 = readsOfMiddle(m);
  const g0 = cpuSeconds(procs.gen);
  const k0 = cpuSeconds(procs.sink);
  const o0 = cpuSeconds(process.pid);
  const b0 = machineBusySeconds();
  await sleep(scale.bulkMeasureMs);
  const s1 = await sink.call<SinkSnapshot>('snapshot', { lo, hi: lo + scale.bulkConns });
  const c1 = cpuOfMiddle(m);
  const t1 = threadsOfMiddle(m);
  const f1 = faultsOfMiddle(m);
  const r1 = readsOfMiddle(m);
  const g1 = cpuSeconds(procs.gen);
  const k1 = cpuSeconds(procs.sink);
  const o1 = cpuSeconds(process.pid);
  const b1 = machineBusySeconds();
  hooks.end?.();
  const stopped = await gen.call<{ written: Record<number, number>; errors: string[]; failedIds: number[] }>('bulkStop');
  // Nothing excuses a lost bulk connection: four publishers are no overload.
  for (const e of stopped.errors) problems.push(`${m.name} bulk: ${e}`);
  const delivered = await waitDelivered(sink, lo, stopped, `${m.name} bulk`);
  const seconds = s1.t - s0.t;
  const gbit = ((s1.total - s0.total) * 8) / 1e9;
  return {
    connections: scale.bulkConns,
    seconds,
    gbps: gbit / seconds,
    cpuSeconds: c1 === null ? null : c1 - c0!,
    cpuPerGbit: c1 === null ? null : (c1 - c0!) / gbit,
    cpuPercent: c1 === null ? null : ((c1 - c0!) / seconds) * 100,
    mainThreadCpuPercent: t1 === null ? null : ((t1.main - t0!.main) / seconds) * 100,
    otherThreadsCpuPercent: t1 === null ? null : ((t1.others - t0!.others) / seconds) * 100,
    loadgenCpuPercent: ((g1 - g0) / seconds) * 100,
    sinkCpuPercent: ((k1 - k0) / seconds) * 100,
    backgroundCpuPercent: Math.max(0, ((b1 - b0 - (g1 - g0) - (k1 - k0) - (o1 - o0) - (c1 === null ? 0 : c1 - c0!)) / seconds) * 100),
    bytesSent: Object.values(stopped.written).reduce((a, b) => a + b, 0),
    complete: delivered.complete,
    ...readStats(f0, f1, r0, r1),
  };
}

/** Per read syscall of the middle during a window: bytes, and minor page faults (the malloc trim symptom, docs/performance.md). */
function readStats(
  f0: number | null,
  f1: number | null,
  r0: { calls: number; bytes: number } | null,
  r1: { calls: number; bytes: number } | null,
): { bytesPerRead: number | null; minorFaultsPerRead: number | null } {
  if (r0 === null || r1 === null || r1.calls <= r0.calls) return { bytesPerRead: null, minorFaultsPerRead: null };
  const reads = r1.calls - r0.calls;
  return { bytesPerRead: (r1.bytes - r0.bytes) / reads, minorFaultsPerRead: f0 === null || f1 === null ? null : (f1 - f0) / reads };
}

async function measurePaced(
  gen: RpcChild,
  sink: RpcChild,
  m: RunningMiddle,
  n: number,
  hooks: { start?(): void; end?(): void } = {},
): Promise<RunResult['paced'][number]> {
  const lo = allocIds(n);
  const t0 = nowSec();
  await gen.call('pacedStart', { port: m.port, tls: m.tls === true, n, idBase: lo, bitsPerSec: NOMINAL_BPS, parallel: 64, publishers: publishersOf(m.name) });
  const setup = nowSec() - t0;
  await sleep(scale.pacedWarmupMs);
  hooks.start?.();
  const s0 = await sink.call<SinkSnapshot>('snapshot', { lo, hi: lo + n, perConn: true });
  const c0 = cpuOfMiddle(m);
  await sleep(scale.pacedMeasureMs);
  const s1 = await sink.call<SinkSnapshot>('snapshot', { lo, hi: lo + n, perConn: true });
  const c1 = cpuOfMiddle(m);
  hooks.end?.();
  const stopped = await gen.call<{ written: Record<number, number>; errors: string[]; failedIds: number[]; skipped: number }>('pacedStop');
  if (stopped.errors.length > 0) log(`${m.name} paced ${n}: ${stopped.errors.length} publisher socket error(s), e.g. ${stopped.errors[0]}`);
  const delivered = await waitDelivered(sink, lo, stopped, `${m.name} paced ${n}`);
  const seconds = s1.t - s0.t;
  const perConnBps = s1.per!.map((b, i) => ((b - s0.per![i]!) * 8) / seconds).sort((a, b) => a - b);
  const deliveredBps = ((s1.total - s0.total) * 8) / seconds;
  const offeredBps = n * NOMINAL_BPS;
  const p5 = perConnBps[Math.floor(perConnBps.length * 0.05)]! / NOMINAL_BPS;
  const ratio = deliveredBps / offeredBps;
  return {
    publishers: n,
    setupSeconds: setup,
    offeredGbps: offeredBps / 1e9,
    deliveredGbps: deliveredBps / 1e9,
    deliveredRatio: ratio,
    p5PublisherRatio: p5,
    sustained: ratio >= 0.95 && p5 >= 0.9 && delivered.dropped === 0,
    cpuPercent: c1 === null ? null : ((c1 - c0!) / seconds) * 100,
    complete: delivered.complete,
    dropped: delivered.dropped,
  };
}

async function measureLatency(gen: RpcChild, m: RunningMiddle): Promise<RunResult['latency']> {
  return gen.call('ping', { port: m.port, tls: m.tls === true, id: allocIds(1), count: scale.pingCount, warmup: scale.pingWarmup });
}

// --- Redis (optional) -----------------------------------------------------------------------

const REDIS_BUS_SOURCE = join(PROJECT_ROOT, 'src/control/redis-bus.ts');
const REDIS_SERVER = ['/usr/bin/redis-server', '/usr/local/bin/redis-server', '/usr/sbin/redis-server'].find((p) => existsSync(p)) ?? null;

/** A minimal RESP client: enough for PUBLISH and PUBSUB NUMSUB. */
class Resp {
  private buf = '';
  private waiters: ((line: string) => void)[] = [];
  private constructor(private readonly sock: net.Socket) {
    sock.setNoDelay(true);
    sock.on('data', (b: Buffer) => {
      this.buf += b.toString('latin1');
      this.pump();
    });
  }
  static connect(port: number): Promise<Resp> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host: '127.0.0.1' }, () => resolve(new Resp(s)));
      s.once('error', reject);
    });
  }
  private pump(): void {
    // Replies used here: integers (:N), [bulk, integer] arrays (PUBSUB NUMSUB), +OK, -ERR.
    while (this.waiters.length > 0) {
      const m = /^(?::(-?\d+)\r\n|\*2\r\n\$\d+\r\n[^\r]*\r\n:(-?\d+)\r\n|\+([^\r]*)\r\n|-([^\r]*)\r\n)/.exec(this.buf);
      if (m === null) return;
      this.buf = this.buf.slice(m[0].length);
      this.waiters.shift()!(m[1] ?? m[2] ?? m[3] ?? `ERR ${m[4]}`);
    }
  }
  command(...args: string[]): Promise<string> {
    const wire = `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;
    return new Promise((resolve) => {
      this.waiters.push(resolve);
      this.sock.write(wire);
    });
  }
  close(): void {
    this.sock.destroy();
  }
}

async function startRedis(): Promise<{ port: number; stop(): Promise<void> } | null> {
  if (REDIS_SERVER === null) return null;
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  const started = await spawnReady<boolean>(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    parseReady: (line) => (/Ready to accept connections/.test(line) ? true : null),
  });
  return { port, stop: () => started.stop() };
}

// --- fan-out --------------------------------------------------------------------------------

interface GoAwayStatus {
  sessions: number;
  received: number;
  first: number | null;
  last: number | null;
  median: number | null;
  closed: number;
}

async function measureFanout(
  gen: RpcChild,
  sink: RpcChild,
  n: number,
  trigger: 'admin' | 'redis',
  rep: number,
  redisPort: number | null,
): Promise<FanoutResult | null> {
  if (trigger === 'redis') {
    // The Redis bus persists drains as desired state: start every measurement from a clean one.
    const r = await Resp.connect(redisPort!);
    await r.command('FLUSHALL');
    r.close();
  }
  const { port: sinkPort } = await sink.call<{ port: number }>('listen', {});
  const redisUrl = trigger === 'redis' ? `redis://127.0.0.1:${redisPort}/0` : undefined;
  const m = await startMiddle('proxy', sinkPort, { proxyCode, nodeArgs: proxyArgsOnly, proxyRuntime, ...(redisUrl === undefined ? {} : { redisUrl }) });
  let resp: Resp | null = null;
  try {
    if (trigger === 'redis') {
      resp = await Resp.connect(redisPort!);
      const until = Date.now() + 5000;
      while (Number(await resp.command('PUBSUB', 'NUMSUB', 'rtmp-goaway:control')) < 1) {
        if (Date.now() > until) {
          log('fan-out over Redis: the proxy did not subscribe to rtmp-goaway:control within 5 s; skipped');
          return null;
        }
        await sleep(50);
      }
    }
    const base = `http://127.0.0.1:${m.adminPort}`;
    await (await fetch(`${base}/healthz`)).text(); // warm the HTTP client
    const lo = allocIds(n);
    const opened = await gen.call<{ opened: number; failed: number; firstError: string | null; seconds: number }>('idleOpen', {
      port: m.port,
      n,
      idBase: lo,
      parallel: 200,
      timeoutMs: 30_000,
      publishers: ['goaway'],
    });
    if (opened.failed > 0) problems.push(`fan-out ${n}: ${opened.failed} sessions failed to open: ${opened.firstError}`);
    await sleep(smoke ? 100 : 500);
    const rssAtN = rssBytes(m.pid!);
    const wall0 = Date.now();
    const t0 = nowSec();
    let commandSeconds: number;
    if (trigger === 'admin') {
      const r = await fetch(`${base}/api/backends/b1/drain`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ deadlineMs: 600_000, reason: 'bench', force: true }),
      });
      await r.text();
      if (!r.ok) throw new Error(`drain: HTTP ${r.status}`);
      commandSeconds = nowSec() - t0;
    } else {
      const receivers = Number(await resp!.command('PUBLISH', 'rtmp-goaway:control', 'drain b1 10m bench'));
      commandSeconds = nowSec() - t0;
      if (receivers < 1) problems.push('fan-out over Redis: PUBLISH reached no subscriber');
    }
    let st: GoAwayStatus;
    const until = Date.now() + 20_000;
    for (;;) {
      st = await gen.call<GoAwayStatus>('goAwayStatus');
      if (st.received >= opened.opened || Date.now() > until) break;
      await sleep(20);
    }
    if (st.received < opened.opened) problems.push(`fan-out ${n} (${trigger}): only ${st.received} of ${opened.opened} sessions received Go Away within 20 s`);
    // The proxy's own record of when it wrote each Go Away (ms resolution, wall clock).
    let lastWrittenMs: number | null = null;
    try {
      const sessions = (await (await fetch(`${base}/api/sessions`)).json()) as { goAwaySentAt: string | null }[];
      const sent = sessions.map((s) => (s.goAwaySentAt === null ? NaN : Date.parse(s.goAwaySentAt))).filter((x) => Number.isFinite(x));
      if (sent.length > 0) lastWrittenMs = Math.max(...sent) - wall0;
    } catch {
      lastWrittenMs = null;
    }
    await gen.call('idleClose');
    await sink.call('forget', { lo, hi: lo + n });
    return {
      rep,
      trigger,
      sessions: opened.opened,
      setupSeconds: opened.seconds,
      received: st.received,
      commandMs: commandSeconds * 1000,
      firstMs: st.first === null ? null : (st.first - t0) * 1000,
      medianMs: st.median === null ? null : (st.median - t0) * 1000,
      lastMs: st.last === null ? null : (st.last - t0) * 1000,
      lastWrittenMs,
      rssBytes: rssAtN,
    };
  } finally {
    resp?.close();
    await m.stop();
    await sink.call('closeServer', { port: sinkPort });
  }
}

// --- profile --------------------------------------------------------------------------------

async function profileProxy(gen: RpcChild, sink: RpcChild, dir: string, middle: MiddleName): Promise<void> {
  mkdirSync(dir, { recursive: true });
  if (middle === 'node-relay') {
    // The relay has no profiling switch: profile its whole life (start-up is a few ms of it).
    const { port } = await sink.call<{ port: number }>('listen', {});
    const m = await startMiddle('node-relay', port, {
      nodeArgs: [...relayRuntime.nodeArgs, '--cpu-prof', `--cpu-prof-dir=${dir}`, '--cpu-prof-interval=200'],
      env: relayRuntime.env,
    });
    const bulk = await measureBulk(gen, sink, m, { gen: gen.pid, sink: sink.pid });
    await m.stop();
    await sink.call('closeServer', { port });
    log(`node-relay bulk under the profiler: ${bulk.gbps.toFixed(2)} Gbps, ${bulk.cpuPerGbit?.toFixed(3)} CPU-s/Gbit`);
    process.stdout.write(summarizeProfiles(dir, PROJECT_ROOT) + '\n');
    return;
  }
  const file = join(dir, `proxy-bulk-${new Date().toISOString().replace(/[:.]/g, '-')}.cpuprofile`);
  const { port } = await sink.call<{ port: number }>('listen', {});
  const m = await startMiddle('proxy', port, { proxyCode, profileFile: file, nodeArgs: proxyArgsOnly, proxyRuntime });
  // `--phases paced` profiles the paced window of the middle level (500 × 6 Mbps) instead of bulk.
  const paced = argv.phases === 'paced';
  const level = scale.pacedLevels[Math.floor(scale.pacedLevels.length / 2)]!;
  log(`profiling the proxy (pid ${m.pid}, ${proxyCode}) over one ${paced ? `paced ${level} × 6 Mbps` : 'bulk'} window → ${file}`);
  const hooks = { start: () => process.kill(m.pid!, 'SIGUSR2'), end: () => process.kill(m.pid!, 'SIGUSR2') };
  if (paced) {
    const p = await measurePaced(gen, sink, m, level, hooks);
    log(`paced ${level} under the profiler: ${(p.deliveredRatio * 100).toFixed(1)} % delivered, CPU ${p.cpuPercent?.toFixed(0)} %`);
  }
  const bulk = paced ? null : await measureBulk(gen, sink, m, { gen: gen.pid, sink: sink.pid }, hooks);
  const until = Date.now() + 10_000;
  while (!existsSync(file) && Date.now() < until) await sleep(50);
  await sleep(200);
  await m.stop();
  await sink.call('closeServer', { port });
  if (bulk !== null)
    log(
      `bulk under the profiler: ${bulk.gbps.toFixed(2)} Gbps, ${bulk.cpuPerGbit?.toFixed(3)} CPU-s/Gbit, background load ${bulk.backgroundCpuPercent?.toFixed(0)} %`,
    );
  if (!existsSync(file)) throw new Error(`no profile written to ${file}:\n${m.output()}`);
  process.stdout.write(summarizeProfiles(file, PROJECT_ROOT) + '\n');
}

// --- main -----------------------------------------------------------------------------------

async function main(): Promise<void> {
  const started = nowSec();
  const middles = availableMiddles();
  const stream = publishStream();
  const fdLimit = openFileLimit();
  if (!smoke) {
    const needed = Math.max(...scale.fanoutSizes) * 2 + 200;
    if (fdLimit < needed) {
      log(
        `open-file limit ${fdLimit} is below the ${needed} the ${Math.max(...scale.fanoutSizes)}-session fan-out needs (run through npm run bench, which raises it): fan-out sizes capped`,
      );
      scale.fanoutSizes = scale.fanoutSizes.map((s) => Math.min(s, Math.floor((fdLimit - 200) / 2)));
    }
  }
  if (proxyCode === 'dist' && (middles.some((m) => m.startsWith('proxy')) || argv.profile !== undefined)) ensureDist(PROJECT_ROOT, log);
  if (proxyCode === 'dist' && middles.includes('proxy-b')) ensureDist(resolve(argv['proxy-b']!), log);
  log(`middles: ${middles.join(', ')}; ${scale.reps} repetitions; proxy runs ${proxyCode}/${verify ? '; byte-compare at the sink' : ''}`);
  const gen = forkRpc(join(import.meta.dirname, 'loadgen.ts'));
  const sink = forkRpc(join(import.meta.dirname, 'sink.ts'));
  const procs = { gen: gen.pid, sink: sink.pid };
  const ncpu = os.cpus().length;
  const pinMode = argv.pin;
  const latencyPin = argv['latency-pin'];
  const phases = new Set(argv.phases!.split(','));
  if (pinMode === 'split') {
    pin(gen.pid, '0');
    pin(sink.pid, '0');
  }
  const runs: RunResult[] = [];
  const fanout: FanoutResult[] = [];
  try {
    await sink.call('setVerify', { verify });
    if (argv.profile !== undefined) {
      await profileProxy(gen, sink, resolve(argv.profile), argv.middles === 'node-relay' ? 'node-relay' : 'proxy');
      return;
    }
    for (let rep = 0; rep < scale.reps; rep++) {
      const order = middles.map((_, i) => middles[(i + rep) % middles.length]!);
      for (const name of order) {
        const { port: sinkPort } = await sink.call<{ port: number }>('listen', {});
        const nodeArgs = name === 'proxy-b' ? proxyBArgsOnly : isProxy(name) ? proxyArgsOnly : name === 'node-relay' ? relayRuntime.nodeArgs : [];
        const env = name === 'node-relay' ? relayRuntime.env : name === 'proxy-b' ? proxyBEnv : {};
        const m = await startMiddle(name, sinkPort, {
          proxyCode,
          nodeArgs,
          env,
          proxyRuntime: name === 'proxy-b' ? proxyBRuntime : proxyRuntime,
          ...(argv['proxy-b'] === undefined ? {} : { proxyBRoot: resolve(argv['proxy-b']) }),
        });
        if (pinMode === 'split' && m.pid !== null) pin(m.pid, String(ncpu - 1));
        try {
          await sleep(smoke ? 50 : 300);
          const rssIdle = rssOfMiddle(m);
          log(`rep ${rep + 1}/${scale.reps} ${name}: idle ${scale.idleSessions} sessions`);
          const idle = phases.has('idle')
            ? await measureIdle(gen, sink, m, scale.idleSessions)
            : { sessions: 0, setupSeconds: 0, rssBefore: null, rssAfter: null, rssPerSession: null, rssPerSessionAfterGc: null };
          if (latencyPin === 'one') for (const pid of [gen.pid, sink.pid, m.pid]) if (pid !== null) pin(pid, '0');
          const latency = phases.has('latency') ? await measureLatency(gen, m) : { count: 0, p50: NaN, p99: NaN, min: NaN, max: NaN };
          if (latencyPin === 'one') for (const pid of [gen.pid, sink.pid, m.pid]) if (pid !== null) pin(pid, `0-${ncpu - 1}`);
          log(`rep ${rep + 1}/${scale.reps} ${name}: ping p50 ${latency.p50.toFixed(0)} µs; bulk`);
          const bulk = phases.has('bulk') ? await measureBulk(gen, sink, m, procs) : null;
          if (bulk !== null)
            log(
              `rep ${rep + 1}/${scale.reps} ${name}: bulk ${bulk.gbps.toFixed(2)} Gbps${bulk.cpuPerGbit === null ? '' : `, ${bulk.cpuPerGbit.toFixed(3)} CPU-s/Gbit`}`,
            );
          const paced: RunResult['paced'] = [];
          // RTMPS: bulk, latency and idle only (1,000 TLS publishers would measure the TLS load generator).
          if (phases.has('paced') && !argv['no-paced'] && name !== 'proxy-tls') {
            for (const n of scale.pacedLevels) {
              const p = await measurePaced(gen, sink, m, n);
              paced.push(p);
              log(
                `rep ${rep + 1}/${scale.reps} ${name}: paced ${n} × 6 Mbps: ${(p.deliveredRatio * 100).toFixed(1)} % delivered${p.cpuPercent === null ? '' : `, CPU ${p.cpuPercent.toFixed(0)} %`}`,
              );
            }
          }
          runs.push({ rep, middle: name, rssIdle, idle, latency, bulk, paced });
        } catch (err) {
          throw new Error(`${name}: ${(err as Error).message}\n${m.output().slice(-2000)}`);
        } finally {
          await m.stop();
          await sink.call('closeServer', { port: sinkPort });
        }
      }
    }
    if (!argv['no-fanout'] && middles.includes('proxy')) {
      const triggers: ('admin' | 'redis')[] = ['admin'];
      let redis: Awaited<ReturnType<typeof startRedis>> = null;
      if (existsSync(REDIS_BUS_SOURCE)) {
        redis = await startRedis();
        if (redis !== null) triggers.push('redis');
        else log('redis-server not installed: fan-out over Redis skipped');
      } else {
        log('src/control/redis-bus.ts not present yet: fan-out measured with the admin POST only');
      }
      try {
        for (let rep = 0; rep < scale.fanoutReps; rep++) {
          for (const trigger of triggers) {
            for (const n of scale.fanoutSizes) {
              const r = await measureFanout(gen, sink, n, trigger, rep, redis?.port ?? null);
              if (r === null) continue;
              fanout.push(r);
              log(
                `fan-out rep ${rep + 1} ${trigger} ${n}: last Go Away read ${r.lastMs?.toFixed(1)} ms after the command (set-up ${r.setupSeconds.toFixed(1)} s)`,
              );
            }
          }
        }
      } finally {
        await redis?.stop();
      }
    }
  } finally {
    await Promise.all([gen.stop(), sink.stop()]);
  }

  const result: BenchResult = {
    date: new Date().toISOString(),
    command: smoke ? 'npm run bench:smoke' : 'npm run bench',
    argv: process.argv.slice(2),
    machine: {
      cpu: os.cpus()[0]?.model ?? 'unknown',
      cores: os.cpus().length,
      memoryGiB: Math.round(os.totalmem() / 2 ** 30),
      kernel: os.release(),
      node: process.version,
      haproxy: middles.includes('haproxy') ? haproxyVersion() : null,
      nginx: middles.includes('nginx') ? nginxStreamVersion() : null,
    },
    stream: {
      capture: 'ffmpeg-goaway-fork-publish.c2s.bin',
      preambleBytes: stream.preamble.length,
      blockBytes: stream.block.length,
      blockMessages: stream.blockMessages,
      nominalBps: NOMINAL_BPS,
    },
    scale: { ...scale },
    verify,
    proxyCode,
    pin: { throughput: argv.pin!, latency: argv['latency-pin']! },
    runtime: { middles: argv.runtime!, proxyB: argv['proxy-b-runtime'] ?? argv.runtime!, tuned: RUNTIME_TUNED },
    publishers,
    middles,
    runs,
    fanout,
    problems,
    seconds: nowSec() - started,
  };
  const out = argv.out ?? join(PROJECT_ROOT, 'bench-results', `bench-${result.date.replace(/[:.]/g, '-')}${smoke ? '-smoke' : ''}.json`);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, JSON.stringify(result, null, 2) + '\n');
  process.stdout.write(renderReport(result) + '\n');
  log(`JSON written to ${out}; ${result.seconds.toFixed(0)} s`);
  if (problems.length > 0) {
    for (const p of problems) process.stderr.write(`PROBLEM: ${p}\n`);
    process.exitCode = 1;
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
});
