import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';

const here = dirname(fileURLToPath(import.meta.url));
export const projectRoot = join(here, '..', '..');

/** In CI a missing peer is a failure, never a silent skip (README "Tests"). */
export const IN_CI = process.env['CI'] === 'true';

/** Path of an executable on PATH or in the usual sbin directories (nginx, redis-server live there), or null. */
export function findExecutable(name: string): string | null {
  const dirs = (process.env['PATH'] ?? '').split(':').concat(['/usr/sbin', '/usr/local/sbin', '/sbin']);
  for (const d of dirs) {
    const p = join(d, name);
    if (spawnSync('test', ['-x', p]).status === 0) return p;
  }
  return null;
}

/**
 * Returns the executable, or skips the test when it is missing outside CI. In CI the missing
 * peer throws, so the run fails.
 */
export function requirePeer(t: TestContext, name: string): string | null {
  const p = findExecutable(name);
  if (p !== null) return p;
  const msg = `${name} is not installed (apt-get install ${name === 'redis-server' ? 'redis-server' : name}; .ci/run installs it)`;
  if (IN_CI) throw new Error(`CI=true and a required peer is missing: ${msg}`);
  t.skip(msg);
  return null;
}

export function tempDir(prefix: string): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), `rgp-${prefix}-`));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

/** Waits until a child prints a line matching `re` on stdout or stderr; rejects if it exits first or after `timeoutMs`. */
export function waitForLine(child: ChildProcess, re: RegExp, timeoutMs = 15_000): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d: Buffer): void => {
      buf += d.toString();
      const m = re.exec(buf);
      if (m) {
        cleanup();
        resolve(m);
      }
      if (buf.length > 1 << 20) buf = buf.slice(-4096);
    };
    const onExit = (code: number | null): void => {
      cleanup();
      reject(new Error(`process exited (${code}) before printing ${re}; output:\n${buf.slice(-2000)}`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out waiting for ${re}; output:\n${buf.slice(-2000)}`));
    }, timeoutMs);
    const cleanup = (): void => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', onExit);
  });
}

export interface RunningPeer {
  port: number;
  child: ChildProcess;
  stop(): Promise<void>;
}

export async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    const t = setTimeout(() => child.kill('SIGKILL'), 3000);
    child.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** A node-media-server RTMP backend in its own process on an ephemeral port. */
export async function startNodeMediaServer(): Promise<RunningPeer> {
  const dir = tempDir('nms');
  const child = spawn(process.execPath, [join(here, 'nms-child.cjs')], { cwd: dir.path, stdio: ['ignore', 'pipe', 'pipe'] });
  const m = await waitForLine(child, /PORT (\d+)\n/);
  child.stdout?.resume();
  child.stderr?.resume();
  return {
    port: Number(m[1]),
    child,
    async stop() {
      await stopChild(child);
      dir.remove();
    },
  };
}
