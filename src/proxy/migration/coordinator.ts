/**
 * Proxy-side migration: moving a publish from a draining backend to a healthy one
 * inside the proxy, for publishers that support neither Go Away nor E-RTMP reconnect.
 *
 *   1. open a connection to a healthy backend and act as the client there: plain handshake, Set
 *      Chunk Size, the session's own `connect` replayed (same app/tcUrl/flashVer …),
 *      `releaseStream`, `FCPublish`, `createStream`, `publish` with the same key
 *      (rtmp/publisher-protocol.ts) — until `NetStream.Publish.Start`;
 *   2. arm the client→server path: at the client's next video keyframe (SwitchSplitter finds
 *      the first byte of that message's first chunk header), bytes before it go to the old
 *      backend untouched, followed by FCUnpublish + deleteStream; from the keyframe on, every
 *      client message is re-chunked for the new backend, preceded by the cached metadata and
 *      sequence headers (MediaCache);
 *   3. from then on the proxy terminates RTMP on both sides for that session (the session's
 *      relay mode): it answers the new backend's pings, acknowledges what the client sent, and
 *      forwards later server messages with the stream id mapped back.
 *
 * This folder holds the parts that do not need the session's sockets: the cache of what is
 * replayed (media-cache.ts), the switch point (switch-splitter.ts), the in-flight limiter (this
 * file) and the new backend's connection (upstream-connection.ts, speaking
 * rtmp/publisher-protocol.ts). The switching itself lives in session/migration-controller.ts.
 */

export interface MigrationSettings {
  maxInFlight: number;
  /** The new backend must reach NetStream.Publish.Start within this. */
  timeoutMs: number;
  /** Once armed, the switch must happen (a keyframe) within this. */
  switchTimeoutMs: number;
  /** Per session, bytes of cached metadata + sequence headers. */
  maxCachedBytes: number;
  /** Chunk size towards a backend the proxy publishes to. */
  chunkSize: number;
  connectTimeoutMs: number;
}

export interface MigrationTicket {
  /** Gives the slot back (or leaves the queue). Idempotent. */
  release(): void;
}

/**
 * At most `maxInFlight` migrations run at once per replica; the others wait in FIFO order. A
 * session holds a slot from the start of its first attempt to its switch or its failure.
 */
export class MigrationCoordinator {
  inFlight = 0;
  private readonly queue: { start: () => void; ticket: { released: boolean } }[] = [];

  constructor(readonly settings: MigrationSettings) {}

  get queued(): number {
    return this.queue.length;
  }

  /** Runs `start` soon (a microtask) if a slot is free, else when one frees up. */
  acquire(start: () => void): MigrationTicket {
    const state = { released: false, running: false };
    const ticket: MigrationTicket = {
      release: () => {
        if (state.released) return;
        state.released = true;
        if (state.running) {
          this.inFlight--;
          this.next();
        } else {
          const i = this.queue.findIndex((q) => q.ticket === state);
          if (i >= 0) this.queue.splice(i, 1);
        }
      },
    };
    const run = (): void => {
      state.running = true;
      this.inFlight++;
      // Never inside the caller's stack (a drain iterating the pool's sessions).
      queueMicrotask(() => {
        if (!state.released) start();
      });
    };
    if (this.inFlight < this.settings.maxInFlight) run();
    else this.queue.push({ start: run, ticket: state });
    return ticket;
  }

  private next(): void {
    while (this.inFlight < this.settings.maxInFlight && this.queue.length > 0) {
      const q = this.queue.shift()!;
      if (!q.ticket.released) q.start();
    }
  }
}
