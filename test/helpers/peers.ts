import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestContext } from 'node:test';
import { findExecutable, startNodeMediaServer as startNms, stopProcess } from '../../src/demo/backends.js';

export { findExecutable };

const here = dirname(fileURLToPath(import.meta.url));
export const projectRoot = join(here, '..', '..');

/** In CI a missing peer is a failure, never a silent skip (README "Tests"). */
export const IN_CI = process.env['CI'] === 'true';

/** Debian packages of the peers whose package is not named after the executable. */
const PACKAGES: Record<string, string> = { 'gst-launch-1.0': 'gstreamer1.0-tools gstreamer1.0-plugins-bad' };

/**
 * Returns the executable, or skips the test when it is missing outside CI. In CI the missing
 * peer throws, so the run fails.
 */
export function requirePeer(t: TestContext, name: string): string | null {
  const p = findExecutable(name);
  if (p !== null) return p;
  const msg = `${name} is not installed (apt-get install ${PACKAGES[name] ?? name}; .ci/run installs it)`;
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

/** SIGTERM, then SIGKILL after 3 s; resolves when the process is gone. */
export function stopChild(child: ChildProcess): Promise<void> {
  return stopProcess(child, 'SIGTERM', 3000);
}

/** A node-media-server RTMP backend in its own process on an ephemeral port (the demo's launcher). */
export async function startNodeMediaServer(): Promise<RunningPeer> {
  const dir = tempDir('nms');
  const b = await startNms({ dir: dir.path });
  return {
    port: b.port,
    child: b.child,
    async stop() {
      await b.stop();
      dir.remove();
    },
  };
}
