import net from 'node:net';
import type { BackendConfig } from '../balancer/types.js';

/** Opens a TCP connection to a backend (half-open allowed: half-close is propagated). Sessions take another one in tests (in-memory sockets). */
export type Dial = (target: BackendConfig) => net.Socket;

export const dialTcp: Dial = (target) => net.connect({ host: target.host, port: target.port, allowHalfOpen: true });
