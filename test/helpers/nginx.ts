import { existsSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { type EmbeddedBackend, NGINX_RTMP_MODULE_PATHS, startNginxRtmp } from '../../src/demo/backends.js';
import { eventually } from './proxy.js';
import { IN_CI, requirePeer, tempDir } from './peers.js';

export interface NginxBackend extends EmbeddedBackend {
  /** stop() and delete the temp directory (config, logs, recordings). */
  remove(): Promise<void>;
}

/**
 * nginx and its RTMP module (Debian `libnginx-mod-rtmp`), or null after `t.skip` outside CI.
 * In CI (CI=true) a missing one fails the test, like every other peer.
 */
export function requireNginxRtmp(t: TestContext): { exe: string; module: string } | null {
  const exe = requirePeer(t, 'nginx');
  if (exe === null) return null;
  const module = NGINX_RTMP_MODULE_PATHS.find((p) => existsSync(p));
  if (module !== undefined) return { exe, module };
  const msg = 'the nginx RTMP module is not installed (apt-get install libnginx-mod-rtmp; .ci/run installs it)';
  if (IN_CI) throw new Error(`CI=true and a required peer is missing: ${msg}`);
  t.skip(msg);
  return null;
}

/** An nginx-rtmp backend (`record all`, `record_unique on`, and `live` directives given) in a temp dir on a free port. */
export async function startNginxBackend(peer: { exe: string; module: string }, live: readonly string[] = []): Promise<NginxBackend> {
  const dir = tempDir('nginx');
  try {
    const b = await startNginxRtmp({ dir: dir.path, exe: peer.exe, module: peer.module, live });
    return {
      ...b,
      async remove() {
        await b.stop();
        dir.remove();
      },
    };
  } catch (err) {
    dir.remove();
    throw err;
  }
}

/**
 * Waits until `backend` has `count` recordings of `streamKey` and none of them is still open
 * (nginx-rtmp closes a recording when its publish ends), so every frame it received is on disk.
 */
export async function closedRecordings(backend: EmbeddedBackend, streamKey: string, count: number, timeoutMs = 15_000): Promise<string[]> {
  return eventually(
    () => {
      const files = backend.recordings(streamKey);
      if (files.length !== count) return null;
      const open = new Set(backend.openRecordings());
      return files.every((f) => !open.has(f)) ? files : null;
    },
    `${count} closed recording(s) of ${streamKey} on ${backend.kind}:${backend.port} (have ${backend.recordings(streamKey).length}; output:\n${backend.output().slice(-1500)})`,
    timeoutMs,
  );
}
