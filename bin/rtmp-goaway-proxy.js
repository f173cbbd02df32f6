#!/bin/sh
":" /*
# This file is a shell script and a JavaScript module at once (for JavaScript, the line above is a
# string and this is a comment). The proxy runs with runtime settings that glibc and V8 read only
# at process start (src/runtime-tuning.ts, docs/performance.md): started as a program
# (`./bin/rtmp-goaway-proxy`, npm/npx, the container image), this shell half puts them on node's
# command line and replaces itself with node (`exec`): one process, same PID, signals go
# straight to node, on every Node version. RTMP_GOAWAY_NO_TUNE=1 leaves node as it is.
# Settings already present (GLIBC_TUNABLES, one of the flags in NODE_OPTIONS) are kept.
# test/unit/runtime-tuning.test.ts keeps these values equal to src/runtime-tuning.ts.
case "${RTMP_GOAWAY_NO_TUNE:-0}" in
0)
  export GLIBC_TUNABLES="${GLIBC_TUNABLES-glibc.malloc.trim_threshold=134217728}"
  case " ${NODE_OPTIONS-} " in
  *" --max-semi-space-size"* | *" --max_semi_space_size"*) exec node --initial-old-space-size=64 "$0" "$@" ;;
  *) exec node --initial-old-space-size=64 --max-semi-space-size=2 "$0" "$@" ;;
  esac ;;
esac
exec node "$0" "$@"
*/
// The JavaScript half: runs the compiled CLI (dist/, built by `npm ci` through `prepare`). Started
// as `node bin/rtmp-goaway-proxy.js` without the settings, it restarts node with them first:
// process.execve (Node ≥ 22.15) replaces this process; on older Node a child runs the proxy, with
// signals passed on and its exit status returned (one more node process, ~7 MiB of private memory).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { isatty } from 'node:tty';
import { fileURLToPath } from 'node:url';

const dist = (name) => new URL(`../dist/${name}`, import.meta.url);
if (!existsSync(fileURLToPath(dist('cli.js')))) {
  console.error('rtmp-goaway-proxy: dist/ is missing; run `npm ci` (or `npm run build`) first');
  process.exit(1);
}
const { missingTuning } = await import(dist('runtime-tuning.js').href);
const missing = missingTuning(process.execArgv, process.env);
if (missing === null) {
  const { main } = await import(dist('cli.js').href);
  await main(process.argv);
} else {
  const args = [...missing.nodeFlags, ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)];
  const env = missing.glibcTunables === null ? process.env : { ...process.env, GLIBC_TUNABLES: missing.glibcTunables };
  if (typeof process.execve === 'function') process.execve(process.execPath, [process.execPath, ...args], env);
  const child = spawn(process.execPath, args, { stdio: 'inherit', env });
  // A terminal's Ctrl-C reaches the child itself (same process group): passing it on too would be
  // a second SIGINT, which stops a draining proxy at once. Other signals are for this process only.
  const forwarded = ['SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR2', 'SIGWINCH', ...(isatty(0) ? [] : ['SIGINT'])];
  for (const sig of forwarded) process.on(sig, () => child.kill(sig));
  if (isatty(0)) process.on('SIGINT', () => {});
  child.once('error', (err) => {
    console.error(`rtmp-goaway-proxy: could not start node: ${err.message}`);
    process.exit(1);
  });
  child.once('exit', (code, signal) => {
    if (signal === null) process.exit(code ?? 1);
    // Die of the same signal, as the child did.
    process.removeAllListeners(signal);
    process.kill(process.pid, signal);
    setTimeout(() => process.exit(1), 1000);
  });
}
