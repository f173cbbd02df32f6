/** Process plumbing for the benchmark: /proc accounting, child processes, a tiny IPC RPC. */
import { type ChildProcess, execFileSync, fork, spawn, type SpawnOptions } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

/** Clock ticks per second of /proc/PID/stat times (USER_HZ; 100 on every Linux that matters). */
export const CLK_TCK = Number(process.env['BENCH_CLK_TCK'] ?? 100);

/** CPU seconds (user + system) the process has used, from /proc/PID/stat fields 14 and 15. */
export function cpuSeconds(pid: number, tid?: number): number {
  const stat = readFileSync(tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`, 'latin1');
  // The command name (field 2) is in parentheses and may contain spaces: split after the last ')'.
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  return (utime + stime) / CLK_TCK;
}

/**
 * CPU seconds all tasks of the machine spent in user and system mode since boot, from /proc/stat
 * (irq and softirq time — loopback TCP is mostly softirq — is left out, as it is from
 * /proc/PID/stat task times).
 */
export function machineBusySeconds(): number {
  const line = readFileSync('/proc/stat', 'latin1').split('\n', 1)[0]!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal …
  return (f[0]! + f[1]! + f[2]!) / CLK_TCK;
}

/** Minor page faults of the process so far (/proc/PID/stat field 10). */
export function minorFaults(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[7]);
}

/** Read syscalls and bytes read by the process so far (/proc/PID/io; null when not readable). */
export function readCalls(pid: number): { calls: number; bytes: number } | null {
  try {
    const io = readFileSync(`/proc/${pid}/io`, 'latin1');
    const calls = /^syscr: (\d+)/m.exec(io);
    const bytes = /^rchar: (\d+)/m.exec(io);
    return calls === null || bytes === null ? null : { calls: Number(calls[1]), bytes: Number(bytes[1]) };
  } catch {
    return null;
  }
}

/** CPU seconds of the main thread (the thread whose id is the pid) and of all other threads (GC helpers, libuv pool, …). */
export function threadCpuSeconds(pid: number): { main: number; others: number } {
  let main = 0;
  let others = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let s: number;
    try {
      s = cpuSeconds(pid, Number(tid));
    } catch {
      continue; // the thread ended meanwhile
    }
    if (Number(tid) === pid) main = s;
    else others += s;
  }
  return { main, others };
}

/** `pid` and every process below it (a cluster primary and its workers), from the ppid in /proc/<pid>/stat. */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${d}/stat`, 'latin1');
    } catch {
      continue; // gone meanwhile
    }
    const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
    const list = children.get(ppid);
    if (list === undefined) children.set(ppid, [Number(d)]);
    else list.push(Number(d));
  }
  const out: number[] = [];
  const visit = (p: number): void => {
    out.push(p);
    for (const c of children.get(p) ?? []) visit(c);
  };
  visit(pid);
  return out;
}

/** Sums `f` over a middle's process tree (one process for every middle but the cluster). */
export function treeSum(pid: number, f: (pid: number) => number): number {
  let n = 0;
  for (const p of processTree(pid)) {
    try {
      n += f(p);
    } catch {
      // the process ended meanwhile
    }
  }
  return n;
}

/** Resident set size in bytes (VmRSS of /proc/PID/status). */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'latin1');
  const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
  if (m === null) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

export function nowNs(): bigint {
  return process.hrtime.bigint();
}

/** Monotonic time in seconds: CLOCK_MONOTONIC is system-wide, so values compare across processes. */
export function nowSec(): number {
  return Number(process.hrtime.bigint()) / 1e9;
}

/** Sets the CPU affinity of every thread of `pid` (taskset -a). Returns false when taskset is missing or fails. */
export function pin(pid: number, cpus: string): boolean {
  try {
    execFileSync('taskset', ['-a', '-cp', cpus, String(pid)], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A child started with spawn that announces readiness with one JSON line on stdout. */
export interface Started<T> {
  child: ChildProcess;
  pid: number;
  ready: T;
  /** stderr (and non-JSON stdout) seen so far, for error messages. */
  output(): string;
  stop(): Promise<void>;
}

export async function spawnReady<T>(
  cmd: string,
  args: string[],
  opts: SpawnOptions & { readyTimeoutMs?: number; parseReady?: (line: string) => T | null } = {},
): Promise<Started<T>> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  let out = '';
  const parse = opts.parseReady ?? ((line: string) => (line.startsWith('{') ? (JSON.parse(line) as T) : null));
  const ready = await new Promise<T>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(
      () => reject(new Error(`${cmd} ${args.join(' ')}: not ready within ${opts.readyTimeoutMs ?? 15_000} ms\n${out}`)),
      opts.readyTimeoutMs ?? 15_000,
    );
    let done = false;
    child.stdout!.on('data', (b: Buffer) => {
      if (done) return;
      buf += b.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i).trim();
        buf = buf.slice(i + 1);
        let v: T | null;
        try {
          v = parse(line);
        } catch {
          v = null;
        }
        if (v !== null) {
          done = true;
          clearTimeout(timer);
          resolve(v);
          return;
        }
        out += line + '\n';
      }
    });
    child.stderr!.on('data', (b: Buffer) => {
      out += b.toString();
      if (out.length > 20_000) out = out.slice(-20_000);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      if (!done) reject(new Error(`${cmd} ${args.join(' ')} exited (${code ?? signal}) before it was ready:\n${out}`));
    });
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
  // Keep draining the pipes (a chatty child must never block on a full pipe), keeping the tail.
  child.stdout!.on('data', (b: Buffer) => {
    out = (out + b.toString()).slice(-20_000);
  });
  return {
    child,
    pid: child.pid!,
    ready,
    output: () => out,
    stop: () => stopChild(child),
  };
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has exited. */
export function stopChild(child: ChildProcess, graceMs = 3000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

// ---------------------------------------------------------------------------------------------
// RPC over the fork() IPC channel: {id, cmd, args} → {id, ok, result | error}
// ---------------------------------------------------------------------------------------------

interface Request {
  rpc: number;
  cmd: string;
  args: unknown;
}
interface Reply {
  rpc: number;
  ok: boolean;
  result?: unknown;
  error?: string;
}

export class RpcChild {
  private next = 1;
  private readonly waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private exited: string | null = null;
  stderr = '';

  constructor(readonly child: ChildProcess) {
    child.on('message', (m: Reply) => {
      const w = this.waiting.get(m.rpc);
      if (w === undefined) return;
      this.waiting.delete(m.rpc);
      if (m.ok) w.resolve(m.result);
      else w.reject(new Error(m.error));
    });
    child.stderr?.on('data', (b: Buffer) => {
      this.stderr = (this.stderr + b.toString()).slice(-20_000);
    });
    child.on('exit', (code, signal) => {
      this.exited = `exited (${code ?? signal})`;
      for (const w of this.waiting.values()) w.reject(new Error(`child ${child.pid} ${this.exited}: ${this.stderr}`));
      this.waiting.clear();
    });
  }

  get pid(): number {
    return this.child.pid!;
  }

  call<T>(cmd: string, args: unknown = {}, timeoutMs = 120_000): Promise<T> {
    if (this.exited !== null) return Promise.reject(new Error(`child ${this.pid} ${this.exited}: ${this.stderr}`));
    const rpc = this.next++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(rpc);
        reject(new Error(`${cmd}: no answer from child ${this.pid} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.set(rpc, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.child.send({ rpc, cmd, args } satisfies Request);
    });
  }

  stop(): Promise<void> {
    return stopChild(this.child);
  }
}

/** Starts a TypeScript module of test/bench as an RPC child (node --import tsx). */
export function forkRpc(modulePath: string, args: string[] = [], execArgv: string[] = []): RpcChild {
  const child = fork(modulePath, args, { execArgv: ['--import', 'tsx', ...execArgv], stdio: ['ignore', 'inherit', 'pipe', 'ipc'] });
  return new RpcChild(child);
}

/** In a child: serve RPC calls with `handlers`. */
export function serveRpc(handlers: Record<string, (args: never) => unknown>): void {
  process.on('message', (m: Request) => {
    const h = handlers[m.cmd];
    const reply = (r: Omit<Reply, 'rpc'>): void => {
      process.send!({ rpc: m.rpc, ...r });
    };
    if (h === undefined) return reply({ ok: false, error: `unknown command ${m.cmd}` });
    Promise.resolve()
      .then(() => h(m.args as never))
      .then(
        (result) => reply({ ok: true, result }),
        (err: unknown) => reply({ ok: false, error: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
      );
  });
  process.on('disconnect', () => process.exit(0));
}
