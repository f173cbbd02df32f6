import type { ProtocolErrorCode } from '../../rtmp/errors.js';
import type { UpstreamEnd } from '../migration/upstream-connection.js';

/** No backend could take the session: it is refused (at `connect` when the proxy answers, else by a close). */
export type RefusalReason = 'no-backend' | 'no-route' | 'all-backends-failed';

/**
 * Why a session ended: the `reason` of its `session end` log line, of the sessions-closed metric
 * and of /api/sessions. The texts are an interface (dashboards and tests read them).
 */
export type CloseReason =
  | 'client-closed'
  | 'client-went-away'
  | 'client-error'
  | 'client-idle'
  | 'handshake-timeout'
  | 'backend-closed'
  | 'backend-error'
  | 'backend-idle'
  | 'backend-stalled'
  | 'backend-handshake-failed'
  | 'backend-rejected'
  | 'backend-stream-id-mismatch'
  | `backend-${Exclude<UpstreamEnd, `backend-${string}`>}`
  | RefusalReason
  | 'fd-exhausted'
  | 'buffer-budget'
  | 'relay-uncollected-message'
  | 'migration-s2c-desync'
  | 'drain-deadline'
  /** A player's stream left its draining backend (its publisher moved) and the player could not follow. */
  | 'player-stream-moved'
  | `parse-error:${ProtocolErrorCode}`
  | RequestedClose;

/** A reason given by the caller of `Session.close` (the drain deadline, a shutdown, the sidecar): its text is the caller's. */
export type RequestedClose = string & { readonly requested: unique symbol };

export function requestedClose(reason: string): RequestedClose {
  return reason as RequestedClose;
}

/** The reason of a relayed connection's end after the switch: named as the backend's. */
export function upstreamCloseReason(reason: UpstreamEnd): CloseReason {
  return reason === 'backend-idle' || reason === 'backend-error' || reason === 'backend-closed' ? reason : `backend-${reason}`;
}
