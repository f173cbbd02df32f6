/**
 * The middles the benchmark puts between publishers and the sink, each in its own process so its
 * CPU (/proc/PID/stat) and RSS are its alone: nothing (direct), a plain Node `pipe` relay, this
 * proxy, HAProxy in TCP mode (one thread) and nginx `stream` (one process), the last two when
 * installed.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { TUNED_GLIBC_TUNABLES, TUNED_NODE_FLAGS } from '../../../src/runtime-tuning.js';
import { type Started, sleep, spawnReady, stopChild } from './proc.js';

const BENCH_DIR = fileURLToPath(new URL('..', import.meta.url));
export const PROJECT_ROOT = fileURLToPath(new URL('../../..', import.meta.url));

export type MiddleName =
  'direct' | 'node-relay' | 'node-relay-untuned' | 'proxy' | 'proxy-goaway' | 'proxy-b' | 'proxy-tls' | 'proxy-cluster' | 'haproxy' | 'nginx';

/** The proxy's middles: this proxy started through bin/ (or another tree's: proxy-b). */
export const isProxy = (m: MiddleName): boolean => m.startsWith('proxy');

export interface RunningMiddle {
  name: MiddleName;
  /** A Node process that runs a full GC on SIGWINCH (so RSS can be read without garbage). */
  gcOnSignal?: boolean;
  /** Where publishers connect. */
  port: number;
  /** Publishers connect with TLS (RTMPS; the middle's certificate is self-signed). */
  tls?: boolean;
  /** The middle's process (null for direct). */
  pid: number | null;
  /** Several processes (cluster primary + workers): CPU and RSS are summed over the tree below `pid`. */
  tree?: boolean;
  adminPort: number | null;
  stop(): Promise<void>;
  /** Last output of the process, for error messages. */
  output(): string;
}

export interface MiddleOptions {
  /** Which code the proxy runs: the compiled dist/ (as shipped) or src/ through tsx. */
  proxyCode?: 'dist' | 'src';
  /** Makes SIGUSR2 start/stop a CPU profile written there (proxy-hooks.mjs). */
  profileFile?: string;
  /** Extra node flags: on the Node relay's command line; in the proxy's NODE_OPTIONS (bin/ starts node). */
  nodeArgs?: string[];
  /**
   * The proxy's runtime: `tuned` = as bin/ starts it (it applies the settings itself), `default` =
   * with RTMP_GOAWAY_NO_TUNE=1. From src/ (no bin/) `tuned` passes RUNTIME_TUNED explicitly.
   */
  proxyRuntime?: 'tuned' | 'default';
  /** Work tree whose proxy 'proxy-b' runs (A/B comparisons in one interleaved run). */
  proxyBRoot?: string;
  /** redis:// URL handed to the proxy (fan-out over Redis). */
  redisUrl?: string;
  /** Extra environment of the Node middles (node-relay, proxy, proxy-b, proxy-tls), e.g. GLIBC_TUNABLES. */
  env?: Record<string, string>;
}

/**
 * Runtime settings of the Node relay (`--runtime tuned`, the default), the same the proxy's entry
 * point applies (src/runtime-tuning.ts; why: docs/performance.md, "Runtime settings").
 */
export const RUNTIME_TUNED: { env: Record<string, string>; nodeArgs: string[] } = {
  env: { GLIBC_TUNABLES: TUNED_GLIBC_TUNABLES },
  nodeArgs: [...TUNED_NODE_FLAGS],
};
/** Makes the proxy run SIGWINCH → full GC and SIGUSR2 → CPU profile (see there). */
const PROXY_HOOKS = join(BENCH_DIR, 'proxy-hooks.mjs');

let tlsFiles: { dir: string; cert: string; key: string } | null = null;

/** A self-signed P-256 certificate for the proxy-tls middle (made once per bench run with openssl). */
export function benchTlsFiles(): { cert: string; key: string } {
  if (tlsFiles !== null) return tlsFiles;
  const dir = mkdtempSync(join(tmpdir(), 'bench-tls-'));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=bench', '-keyout', key, '-out', cert],
    { stdio: 'ignore' },
  );
  tlsFiles = { dir, cert, key };
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return tlsFiles;
}

/** openssl is there to make the proxy-tls middle's certificate. */
export function opensslAvailable(): boolean {
  return spawnSync('openssl', ['version'], { stdio: 'ignore' }).status === 0;
}

export const HAPROXY = ['/usr/sbin/haproxy', '/usr/local/sbin/haproxy'].find((p) => existsSync(p)) ?? null;
export const NGINX = ['/usr/sbin/nginx', '/usr/local/sbin/nginx'].find((p) => existsSync(p)) ?? null;
/** Where Debian's libnginx-mod-stream puts the module; a build with stream compiled in needs none. */
const NGINX_STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';

export function haproxyVersion(): string | null {
  if (HAPROXY === null) return null;
  try {
    return /version (\S+)/.exec(execFileSync(HAPROXY, ['-v'], { encoding: 'utf8' }))?.[1] ?? 'unknown';
  } catch {
    return null;
  }
}

/** nginx version when nginx can run a `stream` block (module compiled in, or the Debian module installed), else null. */
export function nginxStreamVersion(): string | null {
  if (NGINX === null) return null;
  const v = nginxVersionText();
  if (!/--with-stream(\s|$)/.test(v) && !existsSync(NGINX_STREAM_MODULE)) return null;
  return /nginx\/(\S+)/.exec(v)?.[1] ?? 'unknown';
}

/** `nginx -V` output (it prints to stderr). */
function nginxVersionText(): string {
  const r = spawnSync(NGINX!, ['-V'], { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`;
}

/** Soft limit on open files of this process (children inherit it). */
export function openFileLimit(): number {
  try {
    const m = /Max open files\s+(\d+|unlimited)/.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m === null || m[1] === 'unlimited' ? 1_048_576 : Number(m[1]);
  } catch {
    return 1024;
  }
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function waitListening(port: number, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ port, host: '127.0.0.1' });
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > until) throw new Error(`nothing listening on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await sleep(30);
  }
}

function wrap(name: MiddleName, s: Started<{ port: number; adminPort?: number | null; tlsPort?: number | null }>, cleanup?: () => void): RunningMiddle {
  const tls = name === 'proxy-tls';
  if (tls && typeof s.ready.tlsPort !== 'number') throw new Error(`${name}: the proxy reported no TLS port`);
  return {
    name,
    gcOnSignal: true,
    port: tls ? s.ready.tlsPort! : s.ready.port,
    tls,
    pid: s.pid,
    adminPort: s.ready.adminPort ?? null,
    output: s.output,
    async stop() {
      await s.stop();
      cleanup?.();
    },
  };
}

export async function startMiddle(name: MiddleName, backendPort: number, opts: MiddleOptions = {}): Promise<RunningMiddle> {
  switch (name) {
    case 'direct':
      return { name, port: backendPort, pid: null, adminPort: null, stop: async () => {}, output: () => '' };
    case 'node-relay':
    case 'node-relay-untuned':
      return wrap(
        name,
        await spawnReady(process.execPath, ['--expose-gc', ...(opts.nodeArgs ?? []), join(BENCH_DIR, 'node-relay.mjs'), String(backendPort)], {
          env: { ...process.env, ...opts.env },
        }),
      );
    case 'proxy':
    case 'proxy-goaway':
    case 'proxy-b':
    case 'proxy-tls':
    case 'proxy-cluster': {
      // `serve` as the README starts it: bin/rtmp-goaway-proxy serve --listen … --backend … --admin …
      // (cluster: --workers 2, CPU and RSS summed over the primary and its workers; RTMPS: the TLS
      // listener too). Nothing else is set: health probes, log level and limits are the defaults.
      if (name === 'proxy-b' && opts.proxyBRoot === undefined) throw new Error('proxy-b needs --proxy-b DIR');
      const root = name === 'proxy-b' ? opts.proxyBRoot! : PROJECT_ROOT;
      const code = opts.proxyCode ?? 'src';
      const port = await freePort();
      const adminPort = await freePort();
      const tls = name === 'proxy-tls' ? benchTlsFiles() : null;
      const tlsPort = tls === null ? null : await freePort();
      const serveArgs = [
        'serve',
        '--listen',
        `127.0.0.1:${port}`,
        '--backend',
        `b1=127.0.0.1:${backendPort}`,
        '--admin',
        `127.0.0.1:${adminPort}`,
        ...(name === 'proxy-cluster' ? ['--workers', '2'] : []),
        ...(tls === null ? [] : ['--tls-listen', `127.0.0.1:${tlsPort}`, '--tls-cert', tls.cert, '--tls-key', tls.key]),
        ...(opts.redisUrl !== undefined ? ['--redis-url', opts.redisUrl] : []),
      ];
      const tuned = (opts.proxyRuntime ?? 'tuned') === 'tuned';
      // From src/ there is no bin/ to apply the runtime settings: the same ones are passed here.
      const cmd =
        code === 'dist'
          ? [join(root, 'bin/rtmp-goaway-proxy.js'), ...serveArgs]
          : [
              process.execPath,
              ...(tuned ? RUNTIME_TUNED.nodeArgs : []),
              '--import',
              'tsx',
              '-e',
              `import(${JSON.stringify(join(root, 'src/cli.ts'))}).then((m) => m.main(["node", "rtmp-goaway-proxy", ...process.argv.slice(1)]))`,
              '--',
              ...serveArgs,
            ];
      const nodeOptions = [process.env['NODE_OPTIONS'] ?? '', '--expose-gc', '--import', pathToFileURL(PROXY_HOOKS).href, ...(opts.nodeArgs ?? [])]
        .join(' ')
        .trim();
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        ...opts.env,
        ...(tuned ? (code === 'src' ? RUNTIME_TUNED.env : {}) : { RTMP_GOAWAY_NO_TUNE: '1' }),
        NODE_OPTIONS: nodeOptions,
        BENCH_PROFILE_FILE: opts.profileFile ?? '',
      };
      const dir = mkdtempSync(join(tmpdir(), 'bench-proxy-'));
      // The proxy (the cluster's primary once both workers listen) opens its admin port last.
      const m = await startByPort(name, cmd[0]!, cmd.slice(1), adminPort, dir, { cwd: root, env });
      return { ...m, port: tlsPort ?? port, tls: tls !== null, adminPort, gcOnSignal: name !== 'proxy-cluster', tree: name === 'proxy-cluster' };
    }
    case 'haproxy': {
      if (HAPROXY === null) throw new Error('haproxy is not installed');
      const dir = mkdtempSync(join(tmpdir(), 'bench-haproxy-'));
      const port = await freePort();
      const cfg = join(dir, 'haproxy.cfg');
      // HAProxy refuses to start when maxconn needs more descriptors than it may open.
      const maxconn = Math.max(100, Math.min(40_000, Math.floor((openFileLimit() - 100) / 2)));
      writeFileSync(
        cfg,
        [
          'global',
          `  maxconn ${maxconn}`,
          '  nbthread 1',
          'defaults',
          '  mode tcp',
          '  timeout connect 5s',
          '  timeout client 10m',
          '  timeout server 10m',
          'listen bench',
          `  bind 127.0.0.1:${port}`,
          `  maxconn ${maxconn}`,
          `  server b1 127.0.0.1:${backendPort}`,
          '',
        ].join('\n'),
      );
      return startByPort(name, HAPROXY, ['-db', '-f', cfg], port, dir);
    }
    case 'nginx': {
      if (NGINX === null) throw new Error('nginx is not installed');
      const dir = mkdtempSync(join(tmpdir(), 'bench-nginx-'));
      const port = await freePort();
      const builtIn = /--with-stream(\s|$)/.test(nginxVersionText());
      writeFileSync(
        join(dir, 'nginx.conf'),
        [
          builtIn ? '' : `load_module ${NGINX_STREAM_MODULE};`,
          // One process (no master) so its /proc/PID/stat is the whole middle.
          'daemon off;',
          'master_process off;',
          'worker_processes 1;',
          'worker_rlimit_nofile 65536;',
          `error_log ${dir}/error.log warn;`,
          `pid ${dir}/nginx.pid;`,
          'events { worker_connections 40000; }',
          'stream {',
          '  server {',
          `    listen 127.0.0.1:${port} backlog=4096;`,
          `    proxy_pass 127.0.0.1:${backendPort};`,
          '    proxy_timeout 10m;',
          // Pass a publisher's FIN on and keep the other direction open, as the proxy and HAProxy
          // do; without it nginx closes both sockets at the first EOF and can lose queued bytes.
          '    proxy_half_close on;',
          '  }',
          '}',
          '',
        ].join('\n'),
      );
      return startByPort(name, NGINX, ['-p', dir, '-e', `${dir}/error.log`, '-c', join(dir, 'nginx.conf')], port, dir);
    }
  }
}

/** For servers that print no ready line: spawn, then wait until the port accepts. */
async function startByPort(
  name: MiddleName,
  cmd: string,
  args: string[],
  port: number,
  dir: string,
  spawnOpts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<RunningMiddle> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...spawnOpts });
  let out = '';
  child.stdout.on('data', (b: Buffer) => (out = (out + b.toString()).slice(-10_000)));
  child.stderr.on('data', (b: Buffer) => (out = (out + b.toString()).slice(-10_000)));
  let exited = false;
  child.once('exit', () => (exited = true));
  try {
    await waitListening(port);
  } catch (err) {
    child.kill('SIGKILL');
    throw new Error(`${name}: ${(err as Error).message}\n${out}`);
  }
  if (exited) throw new Error(`${name} exited:\n${out}`);
  return {
    name,
    port,
    pid: child.pid!,
    adminPort: null,
    output: () => out,
    async stop() {
      await stopChild(child);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
