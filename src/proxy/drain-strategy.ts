import type { DrainableSession, DrainStrategy } from '../balancer/types.js';

/** What the proxy's sessions offer the drain strategy beyond DrainableSession. */
export interface StrategySession extends DrainableSession {
  /** 'unknown' until `connect` was parsed; then 'goaway' > 'erpc' > 'none'. */
  readonly capability: 'goaway' | 'erpc' | 'none' | 'unknown';
  /** Inject E-RTMP NetConnection.Connect.ReconnectRequest; false if it could not be queued. */
  reconnectRequest(): boolean;
  /**
   * Start (or queue) a proxy-side migration off `backend`: 'migrating' when started or queued,
   * 'waiting' when the session cannot migrate (yet): not publishing, unparseable stream, …
   */
  migrate(backend: string): 'migrating' | 'waiting';
  /** `drain.nonCapable: ignore`: the drain deadline does not close this session. */
  exemptFromDeadline(): void;
  /** `player` once the client played a stream (`play`, `play2`, `FCSubscribe`). */
  readonly role: 'publisher' | 'player' | null;
  /** A player on a draining backend: it stays while its stream is there, and is closed at once when it is gone. */
  drainPlayer(): 'player';
}

export type NonCapablePolicy = 'deadline-close' | 'ignore' | 'migrate';

export interface DrainStrategyOptions {
  nonCapable: NonCapablePolicy;
  /** Send E-RTMP ReconnectRequest to clients that announced capsEx Reconnect (erpc.offer). */
  erpc: boolean;
}

function isStrategySession(s: DrainableSession): s is StrategySession {
  return typeof (s as Partial<StrategySession>).migrate === 'function';
}

/**
 * What a drain does to each session (docs/architecture.md#what-a-drain-does-to-a-session):
 *  - a player ⇒ nothing is sent; it stays while its stream is published there and is closed
 *    (`player-stream-moved`) as soon as the stream goes → outcome `player`;
 *  - announced Go Away ⇒ type 32 (preferred when a client announced both) → outcome `go-away`;
 *  - announced E-RTMP capsEx Reconnect and `erpc.offer` ⇒ ReconnectRequest → `reconnect-request`;
 *  - neither: `drain.nonCapable` — `migrate` ⇒ proxy-side migration → `migrating` (or `waiting`
 *    when it cannot start yet: the pool re-applies the strategy when the session publishes);
 *    `ignore` ⇒ `ignored` (stays past the deadline); `deadline-close` ⇒ `waiting`.
 * A session whose `connect` is not parsed yet is `waiting`; the strategy is re-applied then.
 */
export function createDrainStrategy(opts: DrainStrategyOptions): DrainStrategy {
  return {
    begin(session, backend) {
      // Go Away and ReconnectRequest are for publishers: a player is sent nothing, it leaves with its stream.
      if (isStrategySession(session) && session.role === 'player') return session.drainPlayer();
      if (session.supportsGoAway) return session.goAway() ? 'go-away' : 'waiting';
      if (!isStrategySession(session)) return 'waiting';
      const cap = session.capability;
      if (cap === 'unknown') return 'waiting';
      if (cap === 'erpc' && opts.erpc) return session.reconnectRequest() ? 'reconnect-request' : 'waiting';
      switch (opts.nonCapable) {
        case 'migrate':
          return session.migrate(backend);
        case 'ignore':
          session.exemptFromDeadline();
          return 'ignored';
        default:
          return 'waiting';
      }
    },
  };
}
