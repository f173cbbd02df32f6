/**
 * Process signals of `serve`, and sidecar shutdown (README "Sidecar mode").
 *
 *  - SIGTERM / SIGINT, sidecar mode: Go Away to every capable session, `/readyz` 503 at once, the
 *    listener closed (new connections are refused), then wait until no session is left or the
 *    grace period ends, close what remains (spread over the last drain.closeSpreadMs of the grace
 *    period) and exit 0.
 *  - SIGTERM / SIGINT, otherwise: close every session and exit 0.
 *  - a second SIGTERM or SIGINT during either: exit 1 at once.
 *  - SIGHUP: reload the configuration (config file + env + flags, same precedence as at start;
 *    reload.ts) without dropping sessions; removed backends drain, the fleet's desired state is
 *    re-applied. A change of the watched config file (config-watch.ts) takes the same path.
 */
import type { RunningProxy } from './app.js';
import { spreadOver } from './balancer/spread.js';
import { askToReconnect } from './proxy/drain-strategy.js';

/** How often sessions that only announced Go Away support after SIGTERM are looked for. */
const SWEEP_MS = 200;

export interface SidecarShutdownResult {
  /** `empty`: every session left in time; `grace`: the grace period ended first. */
  ended: 'empty' | 'grace';
  /** Sessions closed by the proxy when the grace period ended. */
  closed: number;
}

/**
 * Tells every session on this replica that can reconnect by itself to do so (askToReconnect: Go
 * Away, else E-RTMP ReconnectRequest). A sidecar's only backend is going away with the pod, so
 * there is nowhere to migrate the others to: they stay until the grace period ends.
 * Returns how many were told (now or before).
 */
export function tellAllToReconnect(proxy: RunningProxy): number {
  let told = 0;
  for (const s of proxy.server.sessions.values()) {
    const asked = askToReconnect(s, proxy.config.erpc.offer);
    if (asked === 'go-away' || asked === 'reconnect-request') told++;
  }
  return told;
}

/**
 * Sidecar shutdown, without exiting (the caller exits). Resolves once every session is gone and
 * the proxy is stopped.
 */
export async function sidecarShutdown(proxy: RunningProxy, gracePeriodMs: number): Promise<SidecarShutdownResult> {
  const { server, log } = proxy;
  proxy.shuttingDown = true;
  proxy.flushRegistry();
  const closing = server.stopAccepting();
  const told = tellAllToReconnect(proxy);
  log.info(
    { sessions: server.sessions.size, goAwaySent: told, gracePeriodMs },
    'sidecar shutdown: /readyz 503, listener closed, Go Away / ReconnectRequest sent; waiting for sessions to leave',
  );
  // A session whose `connect` is parsed after SIGTERM is told as soon as it announces support.
  const sweep = setInterval(() => tellAllToReconnect(proxy), SWEEP_MS);
  sweep.unref();
  // Storm-free closes (drain.closeSpreadMs): the last part of the grace period closes what is
  // left one session at a time, so those clients do not all reconnect in the same instant.
  const spreadMs = Math.min(proxy.config.drain.closeSpreadMs, gracePeriodMs);
  let graceTimer: NodeJS.Timeout | undefined;
  const grace = new Promise<'grace'>((resolve) => {
    graceTimer = setTimeout(() => resolve('grace'), gracePeriodMs - spreadMs);
  });
  const ended = await Promise.race([server.whenEmpty().then(() => 'empty' as const), grace]);
  clearInterval(sweep);
  clearTimeout(graceTimer);
  const left = [...server.sessions.values()];
  const remaining = left.map((s) => ({ session: s.id, backend: s.backendName, capability: s.capability, goAwaySent: s.goAwaySentAt !== null }));
  if (ended === 'empty') log.info('sidecar shutdown: every session left');
  else log.warn({ remaining, spreadMs }, 'sidecar shutdown: grace period over, closing the remaining sessions');
  if (ended === 'grace' && spreadMs > 0 && left.length > 1) {
    await new Promise<void>((resolve) => {
      spreadOver(
        left,
        spreadMs,
        (s) => (s.state === 'closed' ? false : (s.close('sidecar-grace'), true)),
        () => resolve(),
      );
    });
  }
  await proxy.stop(ended === 'grace' ? 'sidecar-grace' : 'shutdown');
  await closing;
  return { ended, closed: ended === 'grace' ? remaining.length : 0 };
}

export interface SignalOptions {
  sidecar: boolean;
  gracePeriodMs: number;
  /** Handle SIGINT (default true); a cluster worker leaves it to its primary. */
  interrupt?: boolean;
  /** Re-reads and applies the configuration (ConfigReloader.reload): whether it was applied. */
  reload(): boolean;
  /** Defaults to process.exit. */
  exit?(code: number): void;
  /** Defaults to process (tests pass an EventEmitter). */
  target?: NodeJS.EventEmitter;
}

/** Installs SIGTERM/SIGINT/SIGHUP handlers for a running proxy; returns a function removing them. */
export function installSignalHandlers(proxy: RunningProxy, opts: SignalOptions): () => void {
  const target = opts.target ?? process;
  const exit = opts.exit ?? ((code: number) => process.exit(code));
  const { log } = proxy;
  let stopping = false;

  const onStop = (signal: string): void => {
    if (stopping) {
      log.warn({ signal }, 'second signal: exiting now');
      exit(1);
      return;
    }
    stopping = true;
    proxy.metrics.controlMessages.inc({ source: 'signal', result: 'ok' });
    const done = opts.sidecar
      ? sidecarShutdown(proxy, opts.gracePeriodMs).then((r) => log.info({ signal, ...r }, 'stopped'))
      : (log.info({ signal }, 'stopping'), proxy.stop(signal.toLowerCase()));
    done.then(
      () => exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        exit(1);
      },
    );
  };

  const onHup = (): void => {
    if (stopping) return;
    proxy.metrics.controlMessages.inc({ source: 'signal', result: opts.reload() ? 'ok' : 'rejected' });
  };

  const term = (): void => onStop('SIGTERM');
  const int = (): void => onStop('SIGINT');
  const ignore = (): void => {};
  target.on('SIGTERM', term);
  if (opts.interrupt === false) target.on('SIGINT', ignore);
  else target.on('SIGINT', int);
  target.on('SIGHUP', onHup);
  return () => {
    target.off('SIGTERM', term);
    target.off('SIGINT', int);
    target.off('SIGINT', ignore);
    target.off('SIGHUP', onHup);
  };
}
