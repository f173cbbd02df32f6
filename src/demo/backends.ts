/**
 * Embedded RTMP ingest backends for the demo and the end-to-end tests, each in its own process,
 * on 127.0.0.1 and a free port, recording every publish to FLV in its own directory:
 *
 *  - nginx-rtmp (Debian `nginx` + `libnginx-mod-rtmp`): foreground, single process (so it runs as
 *    the invoking user and needs no root), `record all` + `record_unique on`, config, pid and logs
 *    in a temp directory;
 *  - node-media-server (the npm package, a devDependency): one per process (it is a singleton),
 *    recording through its record server.
 *
 * A recording is complete once the backend has closed it: nginx-rtmp closes the file when the
 * publish ends, node-media-server when its record session stops. `openRecordings()` tells.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export type BackendKind = 'nginx-rtmp' | 'node-media-server';

export interface EmbeddedBackend {
  kind: BackendKind;
  host: string;
  port: number;
  /** Where recordings go (nginx: `<key>-<unix seconds>.flv`; node-media-server: `<app>/<key>/<ms>.flv`). */
  recordDir: string;
  child: ChildProcess;
  /** Every `.flv` recording below recordDir whose name starts with the stream key. */
  recordings(streamKey?: string): string[];
  /** Recordings the backend still has open (being written). */
  openRecordings(): string[];
  /** Last lines the process wrote (for error messages). */
  output(): string;
  stop(): Promise<void>;
}

export const NGINX_RTMP_MODULE_PATHS = [
  '/usr/lib/nginx/modules/ngx_rtmp_module.so',
  '/usr/lib64/nginx/modules/ngx_rtmp_module.so',
  '/usr/local/lib/nginx/modules/ngx_rtmp_module.so',
];

/** Path of an executable on PATH or in the sbin directories (nginx lives there), or null. */
export function findExecutable(name: string): string | null {
  const dirs = (process.env['PATH'] ?? '').split(':').concat(['/usr/sbin', '/usr/local/sbin', '/sbin']);
  for (const d of dirs) {
    if (d === '') continue;
    const p = join(d, name);
    try {
      if (statSync(p).isFile() && spawnSync('test', ['-x', p]).status === 0) return p;
    } catch {
      /* not here */
    }
  }
  return null;
}

/** nginx and its RTMP module, when both are installed. */
export function findNginxRtmp(): { exe: string; module: string } | null {
  const exe = findExecutable('nginx');
  const module = NGINX_RTMP_MODULE_PATHS.find((p) => existsSync(p));
  return exe !== null && module !== undefined ? { exe, module } : null;
}

/** A free TCP port on 127.0.0.1 (bind to 0, read it, close). */
export function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolvePort(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((done) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      done(true);
    });
    s.once('error', () => done(false));
  });
}

const exited = (c: ChildProcess): boolean => c.exitCode !== null || c.signalCode !== null;

/** Sends `signal`, then SIGKILL after `graceMs`; resolves when the process is gone. */
export function stopProcess(child: ChildProcess, signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<void> {
  if (exited(child)) return Promise.resolve();
  return new Promise((done) => {
    const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(t);
      done();
    });
    child.kill(signal);
  });
}

/** Calls `onLine` for every complete line a child process writes on `stream`. */
export function onLines(stream: NodeJS.ReadableStream | null | undefined, onLine: (line: string) => void): void {
  let buf = '';
  stream?.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      onLine(line);
    }
  });
}

function tail(lines: string[], s: string): void {
  lines.push(...s.split('\n').filter((l) => l !== ''));
  if (lines.length > 50) lines.splice(0, lines.length - 50);
}

function listFlv(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    let entries: string[];
    try {
      entries = readdirSync(d);
    } catch {
      return;
    }
    for (const e of entries.sort()) {
      const p = join(d, e);
      let st;
      try {
        st = statSync(p);
      } catch {
        continue;
      }
      if (st.isDirectory()) walk(p);
      else if (e.endsWith('.flv')) out.push(p);
    }
  };
  walk(dir);
  return out;
}

/** Files below `dir` that process `pid` holds open (Linux /proc); null where /proc is not available. */
function openFilesUnder(pid: number, dir: string): string[] | null {
  const fdDir = `/proc/${pid}/fd`;
  let fds: string[];
  try {
    fds = readdirSync(fdDir);
  } catch {
    return existsSync('/proc/self/fd') ? [] : null; // process gone: nothing open
  }
  const prefix = resolve(dir) + '/';
  const open: string[] = [];
  for (const fd of fds) {
    try {
      const target = readlinkSync(join(fdDir, fd));
      if (target.startsWith(prefix)) open.push(target);
    } catch {
      /* closed meanwhile */
    }
  }
  return open;
}

/** nginx.conf for one RTMP backend (see the module comment). */
export function nginxRtmpConfig(o: { module: string; dir: string; port: number; recordDir: string; chunkSize?: number; live?: readonly string[] }): string {
  return [
    `load_module ${o.module};`,
    'daemon off;',
    // One process: it runs as the invoking user (no `user`, no privilege drop), so the record
    // directory only has to be writable by us; nothing to reap on stop.
    'master_process off;',
    `pid ${o.dir}/nginx.pid;`,
    `error_log ${o.dir}/error.log info;`,
    'events { worker_connections 1024; }',
    'rtmp {',
    `  access_log off;`,
    '  server {',
    `    listen 127.0.0.1:${o.port};`,
    `    chunk_size ${o.chunkSize ?? 4096};`,
    '    application live {',
    '      live on;',
    '      record all;',
    `      record_path ${o.recordDir};`,
    '      record_unique on;',
    ...(o.live ?? []).map((d) => `      ${d};`),
    '    }',
    '  }',
    '}',
    '',
  ].join('\n');
}

/**
 * Starts nginx-rtmp in `dir` (config, logs, recordings in `dir/rec`) and waits until it accepts.
 * `port` pins the port (a backend restarted where the proxy expects it); default: a free one.
 */
export async function startNginxRtmp(opts: {
  dir: string;
  exe?: string;
  module?: string;
  timeoutMs?: number;
  port?: number;
  /** More directives of the `live` application (e.g. `push rtmp://…`), without their `;`. */
  live?: readonly string[];
}): Promise<EmbeddedBackend> {
  const found = opts.exe !== undefined && opts.module !== undefined ? { exe: opts.exe, module: opts.module } : findNginxRtmp();
  if (found === null) throw new Error('nginx with the RTMP module is not installed (apt-get install nginx libnginx-mod-rtmp)');
  const recordDir = join(opts.dir, 'rec');
  mkdirSync(recordDir, { recursive: true });
  let lastError = '';
  // A free port can be lost to another process between freePort() and nginx's bind: try another.
  // A pinned port may still be held for a moment by the previous process: try it again.
  for (let attempt = 0; attempt < (opts.port === undefined ? 3 : 10); attempt++) {
    const port = opts.port ?? (await freePort());
    const conf = join(opts.dir, 'nginx.conf');
    writeFileSync(conf, nginxRtmpConfig({ module: found.module, dir: opts.dir, port, recordDir, ...(opts.live ? { live: opts.live } : {}) }));
    const child = spawn(found.exe, ['-e', join(opts.dir, 'error.log'), '-p', opts.dir, '-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
    const lines: string[] = [];
    child.stdout?.on('data', (d: Buffer) => tail(lines, d.toString()));
    child.stderr?.on('data', (d: Buffer) => tail(lines, d.toString()));
    child.on('error', (err) => tail(lines, `spawn error: ${err.message}`));
    const output = (): string => {
      let log = '';
      try {
        log = readFileSync(join(opts.dir, 'error.log'), 'utf8').split('\n').slice(-20).join('\n');
      } catch {
        /* none yet */
      }
      return [...lines, log].join('\n');
    };
    const until = Date.now() + (opts.timeoutMs ?? 10_000);
    let up = false;
    while (!exited(child) && Date.now() < until) {
      if (await canConnect(port)) {
        up = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 30));
    }
    if (!up) {
      lastError = output();
      await stopProcess(child, 'SIGKILL');
      if (/Address already in use/.test(lastError)) {
        if (opts.port !== undefined) await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      throw new Error(`nginx-rtmp did not start on 127.0.0.1:${port}:\n${lastError}`);
    }
    return {
      kind: 'nginx-rtmp',
      host: '127.0.0.1',
      port,
      recordDir,
      child,
      recordings: (key) => listFlv(recordDir).filter((p) => key === undefined || p.slice(recordDir.length + 1).startsWith(`${key}-`)),
      openRecordings: () => openFilesUnder(child.pid ?? -1, recordDir) ?? [],
      output,
      // SIGQUIT: graceful shutdown (recordings were already closed when their publish ended).
      stop: () => stopProcess(child, 'SIGQUIT'),
    };
  }
  throw new Error(`nginx-rtmp could not bind ${opts.port === undefined ? 'a free port' : `127.0.0.1:${opts.port}`}:\n${lastError}`);
}

/** The child script running one node-media-server (compiled next to this file, or run through tsx). */
function nmsScript(): string {
  const ts = fileURLToPath(new URL('./nms-backend.ts', import.meta.url));
  const js = fileURLToPath(new URL('./nms-backend.js', import.meta.url));
  return import.meta.url.endsWith('.ts') && existsSync(ts) ? ts : js;
}

/** Starts node-media-server in a child process recording to `dir/rec`; resolves once it listens. */
export async function startNodeMediaServer(opts: { dir: string; timeoutMs?: number }): Promise<EmbeddedBackend> {
  const recordDir = join(opts.dir, 'rec');
  mkdirSync(recordDir, { recursive: true });
  // Same cwd and execArgv as this process, so `--import tsx` (tests) resolves as it did here.
  const child = spawn(process.execPath, [...process.execArgv, nmsScript(), recordDir, join(opts.dir, 'store')], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  const open = new Set<string>();
  let port = 0;
  const ready = new Promise<void>((resolveReady, reject) => {
    const timer = setTimeout(() => reject(new Error(`node-media-server did not start:\n${lines.join('\n')}`)), opts.timeoutMs ?? 15_000);
    onLines(child.stdout, (line) => {
      tail(lines, line);
      const m = /^(PORT|RECORD_START|RECORD_DONE) (.*)$/.exec(line);
      if (m === null) return;
      if (m[1] === 'PORT') {
        port = Number(m[2]);
        clearTimeout(timer);
        resolveReady();
      } else if (m[1] === 'RECORD_START') open.add(m[2]!);
      else open.delete(m[2]!);
    });
    child.stderr?.on('data', (d: Buffer) => tail(lines, d.toString()));
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`node-media-server exited (${code}):\n${lines.join('\n')}`));
    });
  });
  try {
    await ready;
  } catch (err) {
    await stopProcess(child, 'SIGKILL');
    throw err;
  }
  return {
    kind: 'node-media-server',
    host: '127.0.0.1',
    port,
    recordDir,
    child,
    // node-media-server writes <recordDir>/<app>/<key>/<epoch ms>.flv
    recordings: (key) => listFlv(recordDir).filter((p) => key === undefined || p.split('/').at(-2) === key),
    openRecordings: () => [...open],
    output: () => lines.join('\n'),
    stop: () => stopProcess(child, 'SIGTERM'),
  };
}
