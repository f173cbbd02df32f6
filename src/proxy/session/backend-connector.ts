import type net from 'node:net';
import { isFdExhausted } from '../../net/fd-exhausted.js';
import type { BackendConfig } from '../../balancer/types.js';
import { dialTcp } from '../dial.js';
import type { Placement } from '../../balancer/routing.js';
import type { RefusalReason } from './close-reason.js';
import { FrontDoor } from './front-door.js';
import type { Session } from './session.js';

/**
 * The next backend to try, not in `exclude`: by the routing rules when configured (a migration
 * stays in the session's group, a sticky key goes to its next preferred backend), else least
 * connections over every backend.
 */
export function choose(s: Session, exclude: ReadonlySet<string>): { target: BackendConfig | null; placement: Placement | null } {
  const stream = playerStream(s, exclude);
  if (stream !== null) return { target: stream, placement: null };
  const router = s.router;
  if (router === null) return { target: s.pool.pick(exclude), placement: null };
  const f = s.view.facts;
  return s.pool.place(router, { app: f.connect?.app ?? null, streamKey: f.streamKey, clientIp: s.clientIp }, exclude);
}

/**
 * A player's backend: the one carrying its stream's publisher (this replica's sessions, then the
 * fleet registry). Null when the session is not a player routed by stream, or no publisher is
 * known: it is then placed by the rules the publisher will get (sticky on the key, when
 * configured, so they meet), else balanced.
 */
function playerStream(s: Session, exclude: ReadonlySet<string>): BackendConfig | null {
  const streams = s.settings.streams;
  const ref = s.streamRef;
  if (streams == null || s.view.facts.role !== 'player' || ref === null) return null;
  const found = streams.publisherOf(ref, s.pool, exclude, s);
  s.playerRoute = found?.source ?? 'rule';
  if (found === null) return null;
  const b = s.pool.get(found.backend)!;
  return { name: b.name, host: b.host, port: b.port };
}

/**
 * Opens the session's backend connection: the chosen backend, and on a refused or timed-out
 * connect the next one (each failure reported to the pool). No backend at all: a command waiting
 * for its route is rejected; a client that just arrived is refused at its `connect` (FrontDoor);
 * otherwise the session closes with the reason.
 */
export function connectBackend(s: Session, tried: Set<string>): void {
  const pair = s.pair;
  if (s.finished || pair.clientClosed) return;
  const { target, placement } = choose(s, tried);
  s.placement = placement;
  if (target === null) {
    const p = placement;
    const reason: RefusalReason =
      tried.size > 0 ? 'all-backends-failed' : p !== null && p.backend === null && p.reason === 'no-rule' ? 'no-route' : 'no-backend';
    if (s.late && s.front !== null && s.front.rejectRoute(reason)) return;
    if (tried.size === 0 && !s.late && s.front === null && s.c2sReader !== null && !pair.clientClosed) refuse(s, reason);
    else s.end(reason);
    return;
  }
  tried.add(target.name);
  const sock = (s.settings.dial ?? dialTcp)(target);
  if (s.origin.preamble) sock.write(s.origin.preamble);
  pair.backendClosed = false;
  const timer = setTimeout(() => sock.destroy(new Error(`connect timeout after ${s.settings.connectTimeoutMs} ms`)), s.settings.connectTimeoutMs);
  timer.unref();
  const onConnectError = (err: Error): void => {
    clearTimeout(timer);
    pair.backendClosed = true;
    s.hooks.connectFailed(s, target.name, err);
    if (isFdExhausted(err)) {
      // Out of file descriptors: our limit, not the backend's — it stays up, this session ends.
      s.end('fd-exhausted');
      return;
    }
    s.pool.reportConnectFailure(target.name, err);
    connectBackend(s, tried);
  };
  sock.once('error', onConnectError);
  sock.once('connect', () => {
    clearTimeout(timer);
    sock.off('error', onConnectError);
    if (s.finished || pair.clientClosed) {
      sock.destroy();
      // The client left while this connect was in flight: nothing else will finish the session.
      pair.backendClosed = true;
      s.maybeFinish();
      return;
    }
    s.pool.reportConnectSuccess(target.name);
    attach(s, sock, target);
  });
}

function attach(s: Session, sock: net.Socket, target: BackendConfig): void {
  s.pair.attachBackend(sock);
  s.backendName = target.name;
  s.detach = s.pool.attach(target.name, s);
  const p = s.placement;
  if (p !== null && p.backend !== null) s.settings.metrics?.routed.inc({ rule: p.rule.label, how: p.how });
  if (s.playerRoute !== null) s.settings.metrics?.playersRouted.inc({ how: s.playerRoute });
  s.hooks.routed(s);
  // Late binding: our own handshake first; the client's bytes follow once it is done (FrontDoor.backendData).
  if (s.front !== null) s.front.backendAttached(sock);
  else s.pair.flushPending(sock);
  s.pair.client.resume();
}

/**
 * Admission (every backend draining, down or full when the client arrived): the proxy answers
 * the handshake, then refuses the `connect` with the reason.
 */
function refuse(s: Session, reason: RefusalReason): void {
  const front = new FrontDoor(s, reason);
  s.front = front;
  s.out.own();
  // The client's bytes before the current read (the start of C0+C1) were held for a backend.
  for (const b of s.pair.dropPending()) if (front.answerHandshake(b) < 0) return;
}
