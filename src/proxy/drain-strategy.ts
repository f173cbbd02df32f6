import type { DrainableSession, DrainOutcome, DrainStrategy } from '../balancer/types.js';

/** What a session offers to be asked to reconnect by itself (Go Away, E-RTMP ReconnectRequest). */
export interface ReconnectableSession extends DrainableSession {
  /** 'unknown' until `connect` was parsed; then 'goaway' > 'erpc' > 'none'. */
  readonly capability: 'goaway' | 'erpc' | 'none' | 'unknown';
  /** Inject E-RTMP NetConnection.Connect.ReconnectRequest; false if it could not be queued. Idempotent. */
  reconnectRequest(): boolean;
}

/** What the proxy's sessions offer the drain strategy. */
export interface StrategySession extends ReconnectableSession {
  /**
   * Start (or queue) a proxy-side migration off `backend`: 'migrating' when started or queued,
   * 'waiting' when the session cannot migrate (yet): not publishing, unparseable stream, …
   */
  migrate(backend: string): 'migrating' | 'waiting';
  /** `drain.nonCapable: ignore`: the drain deadline does not close this session. */
  exemptFromDeadline(): void;
  /** `player` once the client played a stream (`play`, `play2`, `FCSubscribe`). */
  readonly role: 'publisher' | 'player' | null;
  /** A player on a draining backend: moved by the proxy to a backend carrying its stream (a pass-through one stays while its stream is there). */
  drainPlayer(): 'player';
}

/**
 * The answer of `askToReconnect`: the session was told (`go-away`, `reconnect-request`), it
 * announced a way but the message could not be queued (`not-queued`), its `connect` is not parsed
 * yet (`unknown`), or it announced no way the proxy offers (`not-capable`).
 */
export type ReconnectAsk = 'go-away' | 'reconnect-request' | 'not-queued' | 'unknown' | 'not-capable';

/**
 * Asks a session to reconnect by itself: Go Away where the client announced it (preferred when it
 * announced both), else the E-RTMP ReconnectRequest where it announced capsEx Reconnect and `erpc`
 * (erpc.offer) is on (docs/protocol.md#go-away, docs/protocol.md#e-rtmp-reconnect). Both messages
 * are idempotent: a session told before answers as told again.
 */
export function askToReconnect(session: ReconnectableSession, erpc: boolean): ReconnectAsk {
  if (session.supportsGoAway) return session.goAway() ? 'go-away' : 'not-queued';
  if (session.capability === 'unknown') return 'unknown';
  if (session.capability === 'erpc' && erpc) return session.reconnectRequest() ? 'reconnect-request' : 'not-queued';
  return 'not-capable';
}

export type NonCapablePolicy = 'deadline-close' | 'ignore' | 'migrate';

export interface DrainStrategyOptions {
  nonCapable: NonCapablePolicy;
  /** Send E-RTMP ReconnectRequest to clients that announced capsEx Reconnect (erpc.offer). */
  erpc: boolean;
}

/**
 * What a drain does to each session (docs/architecture.md#what-a-drain-does-to-a-session):
 *  - a player ⇒ nothing is sent; the proxy moves it to a backend carrying its stream, switching
 *    at a keyframe (closed, `player-stream-moved`, when none does once the stream left) → outcome `player`;
 *  - told to reconnect by itself (askToReconnect) ⇒ `go-away` or `reconnect-request`;
 *  - neither: `drain.nonCapable` — `migrate` ⇒ proxy-side migration → `migrating` (or `waiting`
 *    when it cannot start yet: the pool re-applies the strategy when the session publishes);
 *    `ignore` ⇒ `ignored` (stays past the deadline); `deadline-close` ⇒ `waiting`.
 * A session whose `connect` is not parsed yet, or whose message could not be queued, is `waiting`;
 * the strategy is re-applied then.
 */
export function createDrainStrategy(opts: DrainStrategyOptions): DrainStrategy<StrategySession> {
  return {
    begin(session, backend): DrainOutcome {
      // Go Away and ReconnectRequest are for publishers: a player is sent nothing, the proxy moves it.
      if (session.role === 'player') return session.drainPlayer();
      const asked = askToReconnect(session, opts.erpc);
      switch (asked) {
        case 'go-away':
        case 'reconnect-request':
          return asked;
        case 'not-queued':
        case 'unknown':
          return 'waiting';
        case 'not-capable':
          break;
      }
      switch (opts.nonCapable) {
        case 'migrate':
          return session.migrate(backend);
        case 'ignore':
          session.exemptFromDeadline();
          return 'ignored';
        case 'deadline-close':
          return 'waiting';
      }
    },
  };
}
