/**
 * Active health probes. Both functions have the `HealthProbe` signature, settle within `timeoutMs`
 * (plus event-loop latency) and always destroy their socket and clear their timer before settling.
 */
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import type { BackendConfig, HealthProbe } from './types.js';

/**
 * Out of file descriptors (per process or system-wide): our limit, not the peer's fault. A probe
 * or a connect failing this way says nothing about the backend.
 */
export function isFdExhausted(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === 'EMFILE' || code === 'ENFILE';
}

/** RTMP spec §5.2 (kept local so this module does not depend on the RTMP codec). */
const RTMP_VERSION = 3;
const HANDSHAKE_PACKET_SIZE = 1536;

export class ProbeTimeoutError extends Error {
  constructor(backend: BackendConfig, timeoutMs: number, what: string) {
    super(`${what} to ${backend.name} (${backend.host}:${backend.port}) timed out after ${timeoutMs} ms`);
    this.name = 'ProbeTimeoutError';
  }
}

type Finish = (err?: Error) => void;

/**
 * Shared plumbing: connect, arm the timeout, and hand a one-shot `finish` to `onConnect`.
 * `finish` destroys the socket, clears the timer and settles the promise exactly once.
 */
function probeSocket(
  b: BackendConfig,
  timeoutMs: number,
  what: string,
  onConnect: (socket: net.Socket, finish: Finish) => void,
): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    let timer: NodeJS.Timeout | undefined;
    const socket = net.connect({ host: b.host, port: b.port });
    const finish: Finish = (err) => {
      if (settled) return;
      settled = true;
      if (timer) clearTimeout(timer);
      socket.removeAllListeners('data');
      socket.destroy();
      if (err) reject(err);
      else resolve();
    };
    timer = setTimeout(() => finish(new ProbeTimeoutError(b, timeoutMs, what)), timeoutMs);
    // Keep an error listener for the socket's whole life: a late error after destroy must not crash.
    socket.on('error', (err) => finish(err));
    socket.once('connect', () => onConnect(socket, finish));
  });
}

/** TCP connect, then immediate destroy. Rejects on connect error or timeout. */
export const tcpProbe: HealthProbe = (b, timeoutMs) =>
  probeSocket(b, timeoutMs, 'TCP connect', (_socket, finish) => finish());

/**
 * Sends C0+C1 and expects S0 = 3 followed by a full 1536-byte S1 within `timeoutMs`, then closes
 * (no C2: the server just sees an aborted handshake). Catches backends whose port is open but whose
 * RTMP worker is wedged, at the cost of a handshake-failure log line per probe on some servers.
 */
export const rtmpHandshakeProbe: HealthProbe = (b, timeoutMs) =>
  probeSocket(b, timeoutMs, 'RTMP handshake', (socket, finish) => {
    const c1 = randomBytes(HANDSHAKE_PACKET_SIZE);
    c1.writeUInt32BE(0, 0); // time
    c1.writeUInt32BE(0, 4); // zero
    socket.write(Buffer.concat([Buffer.from([RTMP_VERSION]), c1]));
    let received = 0;
    socket.on('data', (chunk: Buffer) => {
      if (received === 0 && chunk.length > 0 && chunk[0] !== RTMP_VERSION) {
        finish(new Error(`${b.name}: unexpected RTMP version ${chunk[0]} in S0`));
        return;
      }
      received += chunk.length;
      if (received >= 1 + HANDSHAKE_PACKET_SIZE) finish();
    });
    socket.once('end', () =>
      finish(new Error(`${b.name}: connection closed after ${received} of ${1 + HANDSHAKE_PACKET_SIZE} handshake bytes`)),
    );
    socket.once('close', () => finish(new Error(`${b.name}: connection closed during handshake`)));
  });
