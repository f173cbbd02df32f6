import type { Armed } from './migration-controller.js';
import type { Relay } from './relay.js';

/**
 * How client bytes travel, one phase at a time (what a phase needs lives on it):
 *  - `pass`: as they arrive, in the original Buffers (the hot path);
 *  - `armed`: a migration target is publishing; still raw to the old backend, but the tail of
 *    each buffer that could be the start of the switch message is held back (Armed, in
 *    migration-controller.ts);
 *  - `relay`: after a migration switch the proxy terminates RTMP both ways (relay.ts);
 *  - `drop`: the backend side is gone: the client is read to its end, its bytes dropped and not
 *    counted.
 * Whether the proxy answers the client itself before a backend is chosen (late binding, a
 * refusal) is the session's front door (front-door.ts), not a phase: a late-bound session is in
 * `pass` once routed, and may migrate like any other.
 */
export type Phase = PassPhase | Armed | Relay | DropPhase;

export interface PassPhase {
  readonly kind: 'pass';
}
export interface DropPhase {
  readonly kind: 'drop';
}

/** The phases without state are shared by every session. */
export const PASS: PassPhase = Object.freeze({ kind: 'pass' });
export const DROP: DropPhase = Object.freeze({ kind: 'drop' });
