import type net from 'node:net';
import type { SessionBudget } from '../buffer-budget.js';

/** What the pair reports to its session (no RTMP here: bytes and socket events only). */
export interface PairOwner {
  clientData(buf: Buffer): void;
  clientEnd(): void;
  clientError(err: Error): void;
  /** The client socket closed (the pair already destroyed the backend side). */
  clientClosed(): void;
  backendData(buf: Buffer): void;
  /** The backend sent FIN (the pair already ended the client side). */
  backendEnd(): void;
  backendError(err: Error): void;
  backendClosed(): void;
  /** A backend connection left behind by a migration switch, still talking or closing. */
  retiredData(buf: Buffer): void;
  retiredClosed(sock: net.Socket): void;
}

/** The relay's connection, when the session relays: it takes part in the client's backpressure. */
interface Relayed {
  readonly socket: net.Socket;
  destroy(): void;
}

/**
 * The pair a socket belongs to. The sockets' listeners are SocketPair's static methods (Node
 * calls them with the socket as `this`): no closures per session (11 of them, with their
 * contexts, were ~0.7 KiB of heap per session).
 */
const PAIR = Symbol('pair');
/** A socket the pair listens to: it carries its pair from before its first listener. */
type OwnedSocket = net.Socket & { [PAIR]: SocketPair };

/**
 * Both sockets of a session: the client's and the backend's (or, relaying, the relay's).
 * Backpressure: a `write` that returns false pauses the other side until `drain`. Half-close is
 * propagated (allowHalfOpen on both sockets); byte counts and the idle accounting of both
 * directions; the client bytes that arrive before a backend is connected (`hold`).
 */
export class SocketPair {
  backend: net.Socket | null = null;
  /** Set while the session relays (after a migration): the connection it publishes to. */
  relayed: Relayed | null = null;
  bytesIn = 0;
  bytesOut = 0;
  clientClosed = false;
  /** The client sent FIN. */
  clientEnded = false;
  backendClosed = true;
  /** Client bytes that arrived before the backend connection was up. */
  private pending: Buffer[] = [];
  pendingBytes = 0;
  /** Idle sweep: the byte count last seen in each direction and since when it has not moved. */
  private readonly idleIn = { bytes: 0, at: 0 };
  private readonly idleOut = { bytes: 0, at: 0 };
  /** Client-bound byte count at the last idle check that found a receiving client taking bytes. */
  private deliveredBytes = 0;

  constructor(
    readonly client: net.Socket,
    private readonly owner: PairOwner,
    private readonly budget: SessionBudget,
  ) {}

  // ── listeners (`this` is the socket; see PAIR) ──
  private static clientData(this: OwnedSocket, buf: Buffer): void {
    this[PAIR].owner.clientData(buf);
  }
  private static clientEnd(this: OwnedSocket): void {
    const p = this[PAIR];
    p.clientEnded = true;
    p.owner.clientEnd();
  }
  private static clientError(this: OwnedSocket, err: Error): void {
    this[PAIR].owner.clientError(err);
  }
  private static clientDrain(this: OwnedSocket): void {
    const p = this[PAIR];
    p.backend?.resume();
    p.relayed?.socket.resume();
  }
  private static clientClose(this: OwnedSocket): void {
    const p = this[PAIR];
    p.clientClosed = true;
    p.backend?.destroy();
    if (p.relayed !== null) {
      p.relayed.destroy();
      p.backendClosed = true;
    }
    p.owner.clientClosed();
  }
  private static backendData(this: OwnedSocket, buf: Buffer): void {
    const p = this[PAIR];
    if (this === p.backend) p.owner.backendData(buf);
    else p.owner.retiredData(buf);
  }
  private static backendEnd(this: OwnedSocket): void {
    const p = this[PAIR];
    if (this !== p.backend) return;
    p.owner.backendEnd();
    p.client.end();
  }
  private static backendError(this: OwnedSocket, err: Error): void {
    const p = this[PAIR];
    if (this === p.backend) p.owner.backendError(err);
  }
  private static backendClose(this: OwnedSocket): void {
    const p = this[PAIR];
    if (this !== p.backend) p.owner.retiredClosed(this);
    else p.owner.backendClosed();
  }
  private static backendDrain(this: OwnedSocket): void {
    const p = this[PAIR];
    if (this === p.backend) p.client.resume();
  }

  /** Listens to the client; idle accounting starts at `now`. */
  start(now: number): void {
    const c = Object.assign(this.client, { [PAIR]: this });
    c.setNoDelay(true);
    this.idleIn.at = this.idleOut.at = now;
    c.on('data', SocketPair.clientData);
    c.on('end', SocketPair.clientEnd);
    c.on('error', SocketPair.clientError);
    c.on('drain', SocketPair.clientDrain);
    c.on('close', SocketPair.clientClose);
  }

  /** The backend connection is up: listened to (every listener checks it is still the pair's backend: a migration retires it). */
  attachBackend(sock: net.Socket): void {
    this.backend = sock;
    const owned = Object.assign(sock, { [PAIR]: this });
    owned.setNoDelay(true);
    owned.on('data', SocketPair.backendData);
    owned.on('end', SocketPair.backendEnd);
    owned.on('error', SocketPair.backendError);
    owned.on('close', SocketPair.backendClose);
    owned.on('drain', SocketPair.backendDrain);
  }

  /** Client-bound bytes, counted; the server side is paused while the client does not keep up. */
  writeToClient(out: Buffer[]): void {
    let ok = true;
    for (const b of out) {
      this.bytesOut += b.length;
      ok = this.client.write(b) && ok;
    }
    if (!ok) {
      this.backend?.pause();
      this.relayed?.socket.pause();
    }
  }

  /** Client bytes to the backend; the client is paused while the backend does not keep up. */
  toBackend(buf: Buffer): void {
    if (this.backend !== null && !this.backend.write(buf)) this.client.pause();
  }

  /** Keeps client bytes until a backend is connected; false when the buffer budget refuses them. */
  hold(buf: Buffer): boolean {
    if (!this.budget.take(buf.length)) return false;
    this.pending.push(buf);
    this.pendingBytes += buf.length;
    return true;
  }

  /** The held bytes to `sock`, then the client's FIN if it came meanwhile. */
  flushPending(sock: net.Socket): void {
    for (const buf of this.pending) sock.write(buf);
    this.dropPending();
    if (this.clientEnded) sock.end();
  }

  /** Forgets the held bytes; returns them. */
  dropPending(): Buffer[] {
    const held = this.pending;
    this.budget.give(this.pendingBytes);
    this.pending = [];
    this.pendingBytes = 0;
    return held;
  }

  /**
   * Idle timeouts, per direction: no new byte from the client for `clientMs`, or from the
   * backend for `backendMs` (0 = off). When the client is silent because the proxy paused it
   * (the backend stopped reading: a blackholed backend), the backend is named.
   */
  idle(now: number, clientMs: number, backendMs: number, clientReceives = false): 'client-idle' | 'backend-stalled' | 'backend-idle' | null {
    const inn = this.idleIn;
    if (inn.bytes !== this.bytesIn) {
      inn.bytes = this.bytesIn;
      inn.at = now;
    } else if (clientReceives && this.bytesOut !== this.deliveredBytes && !this.client.writableNeedDrain) {
      // A player may send nothing for minutes (an acknowledgement per window of a low-bitrate
      // stream): a client taking what it is sent is alive.
      this.deliveredBytes = this.bytesOut;
      inn.at = now;
    } else if (now - inn.at >= clientMs) {
      const stalled = this.client.isPaused() && ((this.backend?.writableLength ?? 0) > 0 || (this.relayed?.socket.writableLength ?? 0) > 0);
      return stalled ? 'backend-stalled' : 'client-idle';
    }
    if (backendMs <= 0) return null;
    const out = this.idleOut;
    if (out.bytes !== this.bytesOut) {
      out.bytes = this.bytesOut;
      out.at = now;
    } else if (now - out.at >= backendMs) {
      return 'backend-idle';
    }
    return null;
  }

  /** Bytes this process holds for the session in userland: socket write queues and the pre-connect buffer. */
  get bufferedBytes(): number {
    return this.pendingBytes + this.client.writableLength + (this.backend?.writableLength ?? 0) + (this.relayed?.socket.writableLength ?? 0);
  }
}
