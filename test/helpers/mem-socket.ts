import type net from 'node:net';
import { Duplex } from 'node:stream';

/**
 * One end of an in-memory connection, shaped like the net.Socket a Session uses: bytes written
 * on one end arrive on the other in a later turn of the event loop (never inside the writer's
 * call, as with TCP), in order; `end` is a half-close (the peer sees 'end', allowHalfOpen);
 * `destroy` closes both ends. Every byte written and received is kept for byte-exact checks.
 */
export class MemSocket extends Duplex {
  peer!: MemSocket;
  readonly remoteAddress: string;
  readonly remotePort: number;
  /** Everything written by this end (in write order). */
  readonly written: Buffer[] = [];
  /** Everything that arrived at this end. */
  readonly received: Buffer[] = [];

  constructor(address = '127.0.0.1', port = 50000, allowHalfOpen = true, highWaterMark = 64 * 1024) {
    super({ allowHalfOpen, writableHighWaterMark: highWaterMark });
    this.remoteAddress = address;
    this.remotePort = port;
  }

  override _read(): void {}

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.written.push(chunk);
    setImmediate(() => {
      if (!this.peer.destroyed) {
        this.peer.received.push(chunk);
        this.peer.push(chunk);
      }
      cb();
    });
  }

  override _final(cb: (err?: Error | null) => void): void {
    setImmediate(() => {
      if (!this.peer.destroyed) this.peer.push(null);
      cb();
    });
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    // The other end sees its connection go, as with a reset: after what is already in flight.
    setImmediate(() => {
      if (!this.peer.destroyed) this.peer.destroy();
    });
    cb(err);
  }

  setNoDelay(): this {
    return this;
  }

  /** Socket idle timeouts are not simulated. */
  setTimeout(): this {
    return this;
  }

  get writtenBytes(): Buffer {
    return Buffer.concat(this.written);
  }

  get receivedBytes(): Buffer {
    return Buffer.concat(this.received);
  }

  /** As a net.Socket for the code under test (the members it uses are the ones above and Duplex's). */
  get asSocket(): net.Socket {
    return this as unknown as net.Socket;
  }
}

/**
 * Two connected ends: [the one given to the code under test, the one the test drives]. The first
 * is half-open (as the proxy's sockets); the second ends its side when the other does (as a
 * client's `net.connect` or a server's accepted socket do by default).
 */
export function memPair(highWaterMark?: number): [MemSocket, MemSocket] {
  const a = new MemSocket('127.0.0.1', 50000, true, highWaterMark);
  const b = new MemSocket('127.0.0.1', 1935, false, highWaterMark);
  a.peer = b;
  b.peer = a;
  return [a, b];
}

/**
 * Backends reachable by name without a network: `dial` (a Session's SessionSettings.dial) hands
 * the far end of a new pair to the backend's `accept`, and emits 'connect' on the near end in a
 * later turn; a name without a backend is refused (ECONNREFUSED), as a closed port is.
 */
export class MemNetwork {
  readonly dialed: string[] = [];
  private readonly backends = new Map<string, (socket: net.Socket) => void>();

  listen(name: string, accept: (socket: net.Socket) => void): void {
    this.backends.set(name, accept);
  }

  unlisten(name: string): void {
    this.backends.delete(name);
  }

  readonly dial = (target: { name: string }): net.Socket => {
    this.dialed.push(target.name);
    const [near, far] = memPair();
    const accept = this.backends.get(target.name);
    setImmediate(() => {
      if (accept === undefined) {
        near.destroy(Object.assign(new Error(`connect ECONNREFUSED (${target.name})`), { code: 'ECONNREFUSED' }));
        return;
      }
      accept(far.asSocket);
      near.emit('connect');
    });
    return near.asSocket;
  };
}
