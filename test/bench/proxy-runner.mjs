// Runs this proxy as its own process for the benchmark (so /proc/PID/stat CPU is its alone):
// the same `startProxy(loadConfig(...))` as the CLI's `serve`, one backend, health probes off,
// log level warn. Prints {"port", "adminPort", "pid"} once listening; exits on SIGTERM/SIGINT.
//
// Usage: node [--import tsx] test/bench/proxy-runner.mjs <backendPort> [redisUrl]
//   BENCH_PROXY_CODE=dist  runs the compiled dist/ (as `bin/rtmp-goaway-proxy.js serve` does);
//   otherwise src/ through tsx (then node needs --import tsx).
//   BENCH_PROXY_ROOT=DIR   runs the proxy of another work tree (its src/ or dist/).
//   BENCH_TLS_CERT=C BENCH_TLS_KEY=K  also opens the RTMPS listener (--tls-listen) with that
//                          certificate; its port is printed as "tlsPort".
//   BENCH_PROFILE_FILE=F   SIGUSR2 starts the V8 CPU profiler, the next SIGUSR2 writes the
//                          profile to F and prints {"profile": F}: a profile of the measured
//                          window only, without start-up.
import { writeFileSync } from 'node:fs';
import inspector from 'node:inspector';
import { pathToFileURL } from 'node:url';

const code = process.env.BENCH_PROXY_CODE === 'dist' ? 'dist' : 'src';
const ext = code === 'dist' ? 'js' : 'ts';
// BENCH_PROXY_ROOT: another work tree of the project (A/B of a change, `--proxy-b`).
const root = process.env.BENCH_PROXY_ROOT ? pathToFileURL(`${process.env.BENCH_PROXY_ROOT.replace(/\/+$/, '')}/`) : new URL('../../', import.meta.url);
const { startProxy } = await import(new URL(`${code}/app.${ext}`, root).href);
const { loadConfig } = await import(new URL(`${code}/config.${ext}`, root).href);

const backendPort = Number(process.argv[2]);
const redisUrl = process.argv[3];
const flags = {
  listen: '127.0.0.1:0',
  admin: '127.0.0.1:0',
  backend: [`b1=127.0.0.1:${backendPort}`],
  healthEnabled: 'false',
  logLevel: 'warn',
  // Idle fan-out sessions sit silent for a while; keep them (the 60 s default would too: headroom).
  limitsIdleTimeoutMs: '10m',
  limitsHandshakeTimeoutMs: '60s',
  limitsMaxSessions: '100000',
};
if (redisUrl !== undefined && redisUrl !== '') flags.redisUrl = redisUrl;
if (process.env.BENCH_TLS_CERT) {
  flags.tlsListen = '127.0.0.1:0';
  flags.tlsCert = process.env.BENCH_TLS_CERT;
  flags.tlsKey = process.env.BENCH_TLS_KEY;
}
const proxy = await startProxy(loadConfig({ flags, env: {} }));
process.stdout.write(JSON.stringify({ port: proxy.address.port, tlsPort: proxy.tlsAddress?.port ?? null, adminPort: proxy.adminAddress?.port ?? null, pid: process.pid, code }) + '\n');

const profileFile = process.env.BENCH_PROFILE_FILE;
if (profileFile) {
  let session = null;
  process.on('SIGUSR2', () => {
    if (session === null) {
      session = new inspector.Session();
      session.connect();
      session.post('Profiler.enable', () => session.post('Profiler.setSamplingInterval', { interval: 200 }, () => session.post('Profiler.start')));
      return;
    }
    const s = session;
    session = null;
    s.post('Profiler.stop', (err, result) => {
      if (!err) writeFileSync(profileFile, JSON.stringify(result.profile));
      s.disconnect();
      process.stdout.write(JSON.stringify({ profile: err ? null : profileFile, error: err?.message ?? null }) + '\n');
    });
  });
}

// The bench sends SIGWINCH to read RSS after a full GC too (node runs with --expose-gc).
process.on('SIGWINCH', () => globalThis.gc?.());

const exit = () => process.exit(0);
process.on('SIGTERM', exit);
process.on('SIGINT', exit);
