import { canTakeSession } from '../../balancer/eligibility.js';
import type net from 'node:net';
import type { ChunkReader, MessageInfo } from '../../rtmp/chunk-reader.js';
import { ChunkWriter } from '../../rtmp/chunk-writer.js';
import { MAX_MESSAGE_SIZE } from '../../rtmp/constants.js';
import { ProtocolError } from '../../rtmp/errors.js';
import { type MigrationCoordinator, type MigrationTicket } from '../migration/coordinator.js';
import { type PublishPlan, unpublishCommands } from '../../rtmp/publisher-protocol.js';
import { type UpstreamEnd, UpstreamConnection } from '../migration/upstream-connection.js';
import { SwitchSplitter, isSwitchMessage, keyframeSwitch } from '../migration/switch-splitter.js';
import { collectEverything } from '../../rtmp/chunk-reader.js';
import { migrationCollectPolicy } from '../migration/media-cache.js';
import { choose } from './backend-connector.js';
import { upstreamCloseReason } from './close-reason.js';
import { Relay, relayServerMessage } from './relay.js';
import { PASS } from './phase.js';
import type { Session } from './session.js';

/** Why a session cannot migrate now. */
export type CannotMigrate = 'not-publishing' | 'unparsed-stream' | 'no-cache' | 'cache-overflow' | 'no-backend-connection';

/** Why a migration (or one attempt of it) failed: the `reason` label of the migration metrics. */
export type MigrationFailure =
  | CannotMigrate
  | UpstreamEnd
  | 'publish-timeout'
  | 'switch-timeout'
  | 'no-backend'
  | 'client-parse-error'
  | 'c2s-parse-error'
  | 's2c-parse-error'
  | 'client-ended'
  | 'session-ended'
  | 'session-closed'
  | 'drain-deadline';

/** One proxy-side migration of the session, from its start to its switch or failure. */
interface MigrationRun {
  from: string;
  startedAt: number;
  tried: Set<string>;
  ticket: MigrationTicket | null;
  /** The target being opened (or published and waiting for the switch). */
  attempt: UpstreamConnection | null;
  readyAt: number | null;
  readyTimer: NodeJS.Timeout | null;
  switchTimer: NodeJS.Timeout | null;
  /** Relaying already: switch at the next keyframe message. */
  armedInRelay: boolean;
  lastReason: MigrationFailure | null;
}

/** The `armed` phase: client bytes through the splitter until the switch point. */
export class Armed {
  readonly kind = 'armed';

  constructor(
    readonly splitter: SwitchSplitter,
    readonly controller: MigrationController,
  ) {}

  clientData(buf: Buffer): void {
    this.controller.armedData(this.splitter, buf);
  }
}

/**
 * Proxy-side migration of one session (drain.nonCapable: migrate; see ../migration/ for the
 * protocol parts): queued for a slot (migration.maxInFlight), then a healthy backend is opened
 * and published to; the session is armed (pass → armed) and switches at the client's next
 * keyframe (armed → relay, or relay → relay to yet another backend). Created with the session's
 * first migration; keeps the connections a switch left behind until they end.
 */
export class MigrationController {
  private run: MigrationRun | null = null;
  /** Connections left behind by a switch, ending; created with the first. */
  private retired: Set<{ destroy(): void }> | null = null;
  private refusedCounted = false;

  constructor(
    private readonly s: Session,
    private readonly coordinator: MigrationCoordinator,
  ) {}

  get running(): boolean {
    return this.run !== null;
  }

  /** Starts (or queues) a migration off `backend`; 'waiting' when the session cannot migrate (yet). */
  migrate(backend: string): 'migrating' | 'waiting' {
    const s = this.s;
    if (this.run !== null) return 'migrating';
    const ready = this.readiness();
    if (typeof ready === 'string') {
      s.log.info({ session: s.id, backend, why: ready }, 'cannot migrate this session');
      if (ready !== 'not-publishing' && !this.refusedCounted) {
        this.refusedCounted = true;
        s.settings.metrics?.migrations.inc({ result: 'failed', reason: ready });
      }
      return 'waiting';
    }
    if (!this.hasTarget(backend)) {
      s.log.warn({ session: s.id, backend }, 'no backend to migrate this session to: the drain deadline applies');
      s.settings.metrics?.migrations.inc({ result: 'failed', reason: 'no-backend' });
      return 'waiting';
    }
    const run: MigrationRun = {
      from: backend,
      startedAt: Date.now(),
      tried: new Set([backend]),
      ticket: null,
      attempt: null,
      readyAt: null,
      readyTimer: null,
      switchTimer: null,
      armedInRelay: false,
      lastReason: null,
    };
    this.run = run;
    const c = this.coordinator;
    s.settings.metrics?.migrationsStarted.inc({ backend });
    s.log.info({ session: s.id, backend, queued: c.inFlight >= c.settings.maxInFlight }, 'migration started');
    run.ticket = c.acquire(() => this.nextAttempt(run));
    return 'migrating';
  }

  /** The migration running now (if any) is given up: the session stays where it is. */
  abandon(reason: MigrationFailure): void {
    if (this.run !== null) this.fail(this.run, reason);
  }

  /** The session ended: nothing of the migration outlives it. */
  sessionEnded(): void {
    this.abandon('session-ended');
    if (this.retired !== null) for (const r of this.retired) r.destroy();
    this.retired = null;
  }

  /** `armed`: client bytes through the splitter; those before the switch point to the old backend. */
  armedData(splitter: SwitchSplitter, buf: Buffer): void {
    const s = this.s;
    let old: Buffer | null;
    try {
      old = splitter.push(buf);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      const rest = splitter.unforwarded;
      if (splitter.switched) {
        // Already relaying: nothing to fall back to.
        if (rest !== null && rest.length > 0) s.pair.backend?.write(rest);
        this.finishSwitch(splitter, null);
        s.end(`parse-error:${err.code}`);
        return;
      }
      this.abandon('client-parse-error');
      if (rest !== null && rest.length > 0) s.pair.backend?.write(rest);
      s.traffic.parseFailed('c2s', err);
      return;
    }
    if (splitter.switched) this.finishSwitch(splitter, old);
    else if (old !== null) s.pair.toBackend(old);
    const phase = s.phase;
    if (phase.kind === 'relay') phase.ackClient();
  }

  /** A retired backend socket closed. */
  retiredClosed(sock: net.Socket): void {
    this.retired?.delete(sock);
  }

  /** What to replay on a new backend, or why the session cannot migrate now. */
  private readiness(): PublishPlan | CannotMigrate {
    const s = this.s;
    const f = s.view.facts;
    if (!f.publishing || f.unpublished) return 'not-publishing';
    if (f.connectReplay === null || f.streamKey === null || f.publishReplay === null || f.streamId === null) return 'not-publishing';
    if (s.c2sReader === null || s.fallback !== null || s.out.s2c.failure !== null) return 'unparsed-stream';
    if (s.cache === null) return 'no-cache';
    if (s.cache.overflow) return 'cache-overflow';
    if ((s.phase.kind === 'pass' && s.pair.backend === null) || s.phase.kind === 'drop') return 'no-backend-connection';
    return { connect: f.connectReplay, publishArgs: f.publishReplay, streamKey: f.streamKey, chunkSize: this.coordinator.settings.chunkSize };
  }

  /** Some other backend could take this session now (healthy, not draining, below its cap). */
  private hasTarget(exclude: string): boolean {
    const s = this.s;
    if (s.router !== null) return choose(s, new Set([exclude])).target !== null;
    return s.pool.list().some((b) => b.name !== exclude && canTakeSession(b));
  }

  /** Opens the next migration target (another healthy backend), or gives up. */
  private nextAttempt(run: MigrationRun): void {
    const s = this.s;
    if (run !== this.run || s.finished) return;
    const settings = this.coordinator.settings;
    const plan = this.readiness();
    if (typeof plan === 'string') {
      this.fail(run, plan);
      return;
    }
    const { target } = choose(s, run.tried);
    if (target === null) {
      this.fail(run, run.lastReason ?? 'no-backend');
      return;
    }
    run.tried.add(target.name);
    const up: UpstreamConnection = new UpstreamConnection(
      target,
      plan,
      {
        published: () => this.attemptPublished(run, up),
        failed: (reason, detail) => this.attemptFailed(run, up, reason, detail),
        message: (info, payload) => relayServerMessage(s, up, info, payload),
        closed: (reason) => {
          if (up === s.pair.relayed) this.upstreamClosed(reason);
          else if (this.run !== null && this.run.attempt === up) this.attemptFailed(this.run, up, reason, 'the backend closed the connection');
          else this.retired?.delete(up);
        },
        drain: () => {
          if (up === s.pair.relayed) s.pair.client.resume();
        },
      },
      {
        connectTimeoutMs: settings.connectTimeoutMs,
        idleTimeoutMs: s.settings.idleTimeoutMs,
        chunkLimits: s.settings.chunkLimits,
        amfLimits: s.settings.amfLimits,
        preamble: s.origin.preamble ?? null,
        budget: s.budget,
        dial: s.settings.dial,
      },
    );
    run.attempt = up;
    run.readyTimer = setTimeout(
      () => this.attemptFailed(run, up, 'publish-timeout', `no NetStream.Publish.Start within ${settings.timeoutMs} ms`),
      settings.timeoutMs,
    );
    run.readyTimer.unref();
    s.log.debug({ session: s.id, from: run.from, to: target.name }, 'migration attempt');
  }

  private attemptPublished(run: MigrationRun, up: UpstreamConnection): void {
    const s = this.s;
    if (run !== this.run || run.attempt !== up) return;
    if (run.readyTimer !== null) clearTimeout(run.readyTimer);
    run.readyTimer = null;
    run.readyAt = Date.now();
    s.settings.metrics?.migrationReadySeconds.observe((run.readyAt - run.startedAt) / 1000);
    s.pool.reportConnectSuccess(up.target.name);
    s.log.debug({ session: s.id, to: up.target.name, readyMs: run.readyAt - run.startedAt }, 'migration target publishing; waiting for a keyframe');
    if (s.phase.kind === 'pass') this.arm(run, up);
    else run.armedInRelay = true;
    run.switchTimer = setTimeout(() => this.fail(run, 'switch-timeout'), this.coordinator.settings.switchTimeoutMs);
    run.switchTimer.unref();
  }

  /** pass → armed: every client message is collected, and the switch point searched. */
  private arm(run: MigrationRun, up: UpstreamConnection): void {
    const s = this.s;
    const reader = s.c2sReader;
    if (reader === null) return; // readiness() saw it; a parse fallback since then failed the run
    const splitter = new SwitchSplitter(
      reader,
      keyframeSwitch(reader, () => s.view.facts.videoMessages === 0),
      () => this.beginRelay(run, up, splitter, reader),
    );
    const maxMessageSize = s.settings.chunkLimits.maxMessageSize ?? MAX_MESSAGE_SIZE;
    reader.setCollectPolicy(collectEverything, maxMessageSize);
    // From now on whole media messages are assembled: room for one of the largest on top.
    s.budget.limit = (s.settings.sessionBufferBytes ?? Infinity) + maxMessageSize;
    reader.watchMessageStarts(splitter);
    s.phase = new Armed(splitter, this);
  }

  /** armed → pass, after a failed attempt: held bytes go to the old backend. */
  private disarm(run: MigrationRun): void {
    const s = this.s;
    run.armedInRelay = false;
    const ph = s.phase;
    if (ph.kind !== 'armed') return;
    const held = ph.splitter.release();
    s.phase = PASS;
    s.c2sReader?.watchMessageStarts(null);
    s.c2sReader?.setCollectPolicy(migrationCollectPolicy);
    s.budget.limit = s.settings.sessionBufferBytes ?? Infinity;
    if (held !== null) s.pair.toBackend(held);
  }

  /** The switch point was found (inside the reader's feed): from now on client messages go to the new backend. */
  private beginRelay(run: MigrationRun, up: UpstreamConnection, splitter: SwitchSplitter, reader: ChunkReader): void {
    const s = this.s;
    this.clearTimers(run);
    run.attempt = null;
    s.phase = new Relay(s, reader, up);
    s.pair.relayed = up;
    up.startForwarding();
    reader.watchMessageStarts(null);
    this.replayConfig(up, splitter.switchTimestamp);
  }

  /** After the feed that found the switch point: the old backend gets the bytes before it, then a clean unpublish. */
  private finishSwitch(splitter: SwitchSplitter, old: Buffer | null): void {
    const s = this.s;
    const oldSock = s.pair.backend;
    s.pair.backend = null;
    if (oldSock !== null) {
      (this.retired ??= new Set()).add(oldSock);
      if (old !== null) oldSock.write(old);
      const w = new ChunkWriter();
      w.chunkSize = splitter.chunkSizeAtSwitch;
      const f = s.view.facts;
      for (const m of unpublishCommands(f.streamKey, f.streamId)) oldSock.write(w.write(m));
      oldSock.end();
      setTimeout(() => oldSock.destroy(), 5000).unref();
    }
    // The old backend's client-bound stream ends at its next message boundary (now, normally).
    s.out.seal();
    const run = this.run;
    const ph = s.phase;
    if (run !== null && ph.kind === 'relay') this.complete(run, ph.upstream);
  }

  /** Relaying with a migration armed: a keyframe message switches to the new backend. */
  switchInRelay(relay: Relay, info: MessageInfo): void {
    const s = this.s;
    const run = this.run;
    if (run === null || !run.armedInRelay || run.attempt === null || !isSwitchMessage(info, s.view.facts.videoMessages === 0)) return;
    const up = run.attempt;
    const old = relay.upstream;
    this.clearTimers(run);
    run.attempt = null;
    run.armedInRelay = false;
    (this.retired ??= new Set()).add(old);
    old.end(true);
    up.startForwarding();
    relay.upstream = up;
    s.pair.relayed = up;
    this.replayConfig(up, info.timestamp);
    relay.switchedAt = Date.now();
    // A pause for the old connection's backpressure would wait for a `drain` nobody listens to any more.
    if (!up.socket.writableNeedDrain) s.pair.client.resume();
    this.complete(run, up);
  }

  /** Sends the cached metadata and decoder configuration to a new backend, before the keyframe. */
  private replayConfig(up: UpstreamConnection, keyframeTimestamp: number): void {
    const s = this.s;
    // Not after any frame that follows: audio may trail video a little (nginx-rtmp `record`
    // cuts timestamps below its epoch to 0).
    const a = s.view.facts.lastAudioTimestamp;
    const ts = a !== null && a < keyframeTimestamp && keyframeTimestamp - a < 10_000 ? a : keyframeTimestamp;
    for (const m of s.cache?.replay() ?? []) up.send({ csid: m.csid, timestamp: ts, typeId: m.typeId, streamId: up.protocol.streamId, payload: m.payload });
  }

  private complete(run: MigrationRun, up: UpstreamConnection): void {
    const s = this.s;
    const now = Date.now();
    run.ticket?.release();
    this.run = null;
    s.migrations++;
    s.settings.metrics?.migrations.inc({ result: 'ok', reason: 'ok' });
    s.settings.metrics?.migrationSwitchSeconds.observe((now - run.startedAt) / 1000);
    s.log.info(
      {
        session: s.id,
        from: run.from,
        to: up.target.name,
        switchMs: now - run.startedAt,
        readyMs: run.readyAt === null ? null : run.readyAt - run.startedAt,
        attempts: run.tried.size - 1,
      },
      'migration switched',
    );
    // The pool counts the session on its new backend (and a drain of that one reaches it).
    s.detach?.();
    s.detach = null;
    s.backendName = up.target.name;
    try {
      s.detach = s.pool.attach(up.target.name, s);
    } catch (err) {
      s.log.warn({ session: s.id, backend: up.target.name, err: (err as Error).message }, 'migrated session not attached to its new backend');
    }
  }

  private clearTimers(run: MigrationRun): void {
    if (run.readyTimer !== null) clearTimeout(run.readyTimer);
    if (run.switchTimer !== null) clearTimeout(run.switchTimer);
    run.readyTimer = null;
    run.switchTimer = null;
  }

  /** An attempt failed (before the switch): try another backend. After the switch: the session's backend is gone. */
  private attemptFailed(run: MigrationRun, up: UpstreamConnection, reason: UpstreamEnd | 'publish-timeout', detail: string): void {
    const s = this.s;
    if (up === s.pair.relayed) {
      if (reason !== 'publish-timeout') this.upstreamClosed(reason);
      return;
    }
    if (run !== this.run || run.attempt !== up) return;
    this.clearTimers(run);
    up.destroy();
    run.attempt = null;
    run.lastReason = reason;
    s.settings.metrics?.migrationAttemptsFailed.inc({ backend: up.target.name, reason });
    if (reason === 'refused' || reason === 'connect-timeout') s.pool.reportConnectFailure(up.target.name, new Error(detail));
    s.log.warn({ session: s.id, to: up.target.name, reason, detail }, 'migration attempt failed');
    this.disarm(run);
    if (s.finished) return;
    this.nextAttempt(run);
  }

  /** The migration is given up: the session stays where it is (the drain deadline applies). */
  private fail(run: MigrationRun, reason: MigrationFailure): void {
    const s = this.s;
    if (run !== this.run) return;
    this.clearTimers(run);
    run.attempt?.destroy();
    run.attempt = null;
    this.disarm(run);
    run.ticket?.release();
    this.run = null;
    s.settings.metrics?.migrations.inc({ result: 'failed', reason });
    s.log.warn({ session: s.id, from: run.from, reason, tried: [...run.tried].slice(1), elapsedMs: Date.now() - run.startedAt }, 'migration failed');
  }

  /** The connection the session relays to ended (after a switch). */
  private upstreamClosed(reason: UpstreamEnd): void {
    const s = this.s;
    const p = s.pair;
    if (p.backendClosed) return;
    p.backendClosed = true;
    // The backend going first (not after the client's own end) is the reason the session ends.
    if (s.closeReason === null && !p.clientClosed && !p.clientEnded) s.closeReason = upstreamCloseReason(reason);
    s.backendGone();
  }
}
