import type { Session } from './session.js';
import type { SessionSnapshot } from './types.js';

/** The `session end` line: what the session was and did, once, when both sockets are gone. */
export function logEnd(s: Session): void {
  const f = s.view.facts;
  s.log.info(
    {
      session: s.id,
      client: s.clientAddress,
      backend: s.backendName,
      rtmpApp: s.shown.appOrUrl(f.connect?.app ?? null),
      streamKey: s.streamKeyForDisplay(),
      capability: s.capability,
      role: f.role,
      bytesIn: s.bytesIn,
      bytesOut: s.bytesOut,
      videoMessages: f.videoMessages,
      audioMessages: f.audioMessages,
      durationMs: Date.now() - s.startedAt,
      reason: s.closeReason,
      goAwaySent: s.goAwaySentAt !== null,
      reconnectRequestSent: s.reconnectRequestSentAt !== null,
      migrations: s.migrations,
      parseFallback: s.fallback?.code ?? null,
    },
    'session end',
  );
}

/** JSON view of a session for /api/sessions and the fleet registry. */
export function snapshotOf(s: Session): SessionSnapshot {
  const c = s.view.facts.connect;
  return {
    id: s.id,
    client: s.clientAddress,
    backend: s.backendName,
    app: s.shown.appOrUrl(c?.app ?? null),
    streamKey: s.streamKeyForDisplay(),
    goAway: c?.supportsGoAway ?? false,
    capsEx: c?.capsEx ?? null,
    capability: s.capability,
    state: s.state,
    bytesIn: s.bytesIn,
    bytesOut: s.bytesOut,
    startedAt: new Date(s.startedAt).toISOString(),
    goAwaySentAt: s.goAwaySentAt === null ? null : new Date(s.goAwaySentAt).toISOString(),
    reconnectRequestSentAt: s.reconnectRequestSentAt === null ? null : new Date(s.reconnectRequestSentAt).toISOString(),
    parseFallback: s.fallback?.code ?? null,
    migrations: s.migrations,
    route: s.routeLabel(),
    media: s.traffic.media(),
    role: s.view.facts.role,
    streamRef: s.streamRef,
  };
}
