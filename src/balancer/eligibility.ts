/**
 * Which backend may take a new session: the one rule behind `BackendPool.pick`, `BackendPool.place`,
 * the last-routable check of a drain, readiness, and a session's search for a migration target.
 */
import type { BackendSnapshot, HealthState } from './types.js';

/** The facts the rule looks at (a pool entry or a BackendSnapshot). */
export interface RoutableFacts {
  readonly health: HealthState;
  readonly draining: boolean;
  readonly removing: boolean;
}

/** Accepts new sessions at all: healthy, not draining, not being removed by a reload (its cap aside). */
export function isRoutable(b: RoutableFacts): boolean {
  return b.health === 'up' && !b.draining && !b.removing;
}

/** Below its `maxSessions` cap (no cap: always). */
export function hasRoom(sessions: number, maxSessions: number | undefined): boolean {
  return maxSessions === undefined || sessions < maxSessions;
}

/** Can take one more session now: routable and below its cap. */
export function canTakeSession(b: Pick<BackendSnapshot, 'health' | 'draining' | 'removing' | 'sessions' | 'maxSessions'>): boolean {
  return isRoutable(b) && hasRoom(b.sessions, b.maxSessions);
}
