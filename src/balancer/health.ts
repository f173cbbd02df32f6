/**
 * Active health probe: `tcpProbe` (the `HealthProbe` signature) settles within `timeoutMs` (plus
 * event-loop latency) and always destroys its socket and clears its timer before settling.
 */
import net from 'node:net';
import type { BackendConfig, HealthProbe } from './types.js';

export class ProbeTimeoutError extends Error {
  constructor(backend: BackendConfig, timeoutMs: number, what: string) {
    super(`${what} to ${backend.name} (${backend.host}:${backend.port}) timed out after ${timeoutMs} ms`);
    this.name = 'ProbeTimeoutError';
  }
}

type Finish = (err?: Error) => void;

/**
 * Connect, arm the timeout, and hand a one-shot `finish` to `onConnect`.
 * `finish` destroys the socket, clears the timer and settles the promise exactly once.
 */
function probeSocket(b: BackendConfig, timeoutMs: number, what: string, onConnect: (socket: net.Socket, finish: Finish) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    const socket = net.connect({ host: b.host, port: b.port });
    const finish: Finish = (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeAllListeners('data');
      socket.destroy();
      if (err) reject(err);
      else resolve();
    };
    const timer = setTimeout(() => finish(new ProbeTimeoutError(b, timeoutMs, what)), timeoutMs);
    // Keep an error listener for the socket's whole life: a late error after destroy must not crash.
    socket.on('error', (err) => finish(err));
    socket.once('connect', () => onConnect(socket, finish));
  });
}

/** TCP connect, then immediate destroy. Rejects on connect error or timeout. */
export const tcpProbe: HealthProbe = (b, timeoutMs) => probeSocket(b, timeoutMs, 'TCP connect', (_socket, finish) => finish());
