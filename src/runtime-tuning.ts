/**
 * The Node runtime settings the proxy runs with (docs/performance.md, "Runtime settings"):
 * - `GLIBC_TUNABLES=glibc.malloc.trim_threshold=134217728`: glibc keeps freed heap instead of
 *   returning it after every young-generation collection of socket buffers (otherwise ~13 page
 *   faults per 64 KiB read, a third of the CPU in bulk);
 * - `--initial-old-space-size=64`: a floor under the old generation's limit, so a quiet spell
 *   does not leave V8 running a full mark-compact every ~70 ms once traffic returns (refused in
 *   NODE_OPTIONS: it goes on node's command line);
 * - `--max-semi-space-size=2`: a burst of connections does not leave 16 MB of young generation
 *   committed (RSS per idle session 28 → 8 KiB).
 * glibc reads its tunables and V8 its heap flags at process start, so they cannot be applied from
 * inside a running process: bin/rtmp-goaway-proxy.js starts node with them (see there). This
 * module holds the one definition, the check, and what the proxy reports at start-up.
 */

export const TUNED_GLIBC_TUNABLES = 'glibc.malloc.trim_threshold=134217728';
export const TUNED_NODE_FLAGS: readonly string[] = ['--initial-old-space-size=64', '--max-semi-space-size=2'];
/** Set to anything but "" or "0": the entry point starts node as it was started, without the settings. */
export const NO_TUNE_ENV = 'RTMP_GOAWAY_NO_TUNE';

/** What is missing for the tuned runtime: node flags to add and the GLIBC_TUNABLES value to set (null: leave as is). */
export interface MissingTuning {
  nodeFlags: string[];
  glibcTunables: string | null;
}

export function tuningOptedOut(env: NodeJS.ProcessEnv): boolean {
  const v = env[NO_TUNE_ENV];
  return v !== undefined && v !== '' && v !== '0';
}

/** The flag's name: `--max-semi-space-size` of `--max-semi-space-size=2` (V8 accepts `_` for `-`). */
const flagName = (f: string): string => f.split('=')[0]!.replace(/_/g, '-');

/** Node flags in effect from the command line and NODE_OPTIONS (which may hold some of them). */
function flagsInEffect(execArgv: readonly string[], env: NodeJS.ProcessEnv): string[] {
  const fromEnv = (env['NODE_OPTIONS'] ?? '').split(/\s+/).filter((s) => s.startsWith('--'));
  return [...fromEnv, ...execArgv.filter((s) => s.startsWith('--'))];
}

/**
 * The settings this process lacks, or null when it has them all or the operator opted out. A
 * setting the operator chose (any GLIBC_TUNABLES, any value of one of the flags) counts as set.
 */
export function missingTuning(execArgv: readonly string[], env: NodeJS.ProcessEnv): MissingTuning | null {
  if (tuningOptedOut(env)) return null;
  const have = new Set(flagsInEffect(execArgv, env).map(flagName));
  const nodeFlags = TUNED_NODE_FLAGS.filter((f) => !have.has(flagName(f)));
  const glibcTunables = env['GLIBC_TUNABLES'] === undefined ? TUNED_GLIBC_TUNABLES : null;
  return nodeFlags.length === 0 && glibcTunables === null ? null : { nodeFlags, glibcTunables };
}

/**
 * For the start-up log line: whether this process runs with the settings, what it runs with, and
 * its pid (the entry point may have restarted node: this is the process that serves).
 */
export function runtimeReport(
  execArgv: readonly string[] = process.execArgv,
  env: NodeJS.ProcessEnv = process.env,
): { pid: number; tuned: boolean; nodeFlags: string[]; glibcTunables: string | null } {
  const names = new Set(TUNED_NODE_FLAGS.map(flagName));
  return {
    pid: process.pid,
    tuned: !tuningOptedOut(env) && missingTuning(execArgv, env) === null,
    nodeFlags: flagsInEffect(execArgv, env).filter((f) => names.has(flagName(f))),
    glibcTunables: env['GLIBC_TUNABLES'] ?? null,
  };
}
