/**
 * Runs this proxy as its own process for the benchmark (so /proc/PID/stat CPU is its alone):
 * the same `startProxy(loadConfig(...))` as the CLI's `serve`, one backend, health probes off,
 * log level warn. Prints {"port", "adminPort", "pid"} once listening; exits on SIGTERM/SIGINT
 * (through process.exit, so `node --cpu-prof` writes its profile).
 *
 * Usage: node --import tsx test/bench/proxy-runner.ts <backendPort> [redisUrl]
 */
import { startProxy } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';

const backendPort = Number(process.argv[2]);
const redisUrl = process.argv[3];
const flags: Record<string, unknown> = {
  listen: '127.0.0.1:0',
  admin: '127.0.0.1:0',
  backend: [`b1=127.0.0.1:${backendPort}`],
  healthEnabled: 'false',
  logLevel: 'warn',
  // Idle fan-out sessions sit silent for a while; keep them (the default 60 s would too, this is headroom).
  limitsIdleTimeoutMs: '10m',
  limitsHandshakeTimeoutMs: '60s',
  limitsMaxSessions: '100000',
};
if (redisUrl !== undefined && redisUrl !== '') flags['redisUrl'] = redisUrl;
const config = loadConfig({ flags, env: {} });
const proxy = await startProxy(config);
process.stdout.write(JSON.stringify({ port: proxy.address.port, adminPort: proxy.adminAddress?.port ?? null, pid: process.pid }) + '\n');
const exit = (): void => process.exit(0);
process.on('SIGTERM', exit);
process.on('SIGINT', exit);
