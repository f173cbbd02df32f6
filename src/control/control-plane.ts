/**
 * The control plane of one replica: where drain and undrain commands change the pool, whoever
 * gives them (admin API, the fleet bus, a signal, a program), and how this replica keeps to the
 * fleet's desired state.
 *
 *  - A command given here (admin, signal, api) is applied at once, then published on the bus so
 *    the other replicas apply it too, and persisted as desired state (Redis). Its id is remembered
 *    so that the copy the bus delivers back is not applied twice (echo suppression).
 *  - A command from the bus is applied as it is: its issuer checked it (the CLI against the fleet
 *    registry), and the fleet must converge. Commands for backends this replica does not have are
 *    counted and ignored, and not remembered (a flood of made-up names must not grow memory).
 *  - After every (re)connect the bus delivers the whole desired state, and after a reload or a
 *    discovery round the pool may hold new backends: `converge` drains and undrains until the pool
 *    matches it (planConvergence).
 *  - Fail-safe: a drain given here that would leave no backend able to take a new session is
 *    refused (LastRoutableBackendError) unless forced.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import { LastRoutableBackendError, UnknownBackendError } from '../balancer/pool.js';
import type { BackendSnapshot, DrainOptions, DrainResult } from '../balancer/types.js';
import type { BusHandlers, ControlBus, PublishOutcome } from './bus.js';
import { type ControlAction, type ControlCommand, type DesiredDrain, desiredFromCommand, planConvergence } from './commands.js';
import { RateLimitedLog } from '../net/rate-limited-log.js';
import type { RebalanceRequest, RebalanceStatus } from '../proxy/rebalancer.js';
import type { RebalanceMessage } from './rebalance-command.js';

/** Where a command came from (the `source` label of `rtmp_goaway_control_messages_total`). */
export type ControlSource = 'admin' | 'bus' | 'signal' | 'api';

/** The `result` label of `rtmp_goaway_control_messages_total`. */
export type ControlMessageResult = 'ok' | 'rejected' | 'malformed';

/** What the control plane needs from the pool. */
export interface ControlledPool {
  list(): BackendSnapshot[];
  /** Throws UnknownBackendError. */
  isLastRoutable(name: string): boolean;
  /** Throws UnknownBackendError. */
  drain(name: string, opts?: DrainOptions): DrainResult;
  /** Throws UnknownBackendError. */
  undrain(name: string): boolean;
}

/** The counters the control plane moves (ProxyMetrics has them). */
export interface ControlCounters {
  controlMessages: { inc(labels: { source: ControlSource; result: ControlMessageResult }): void };
  drains: { inc(labels: { backend: string; action: ControlAction }): void };
}

/** Whether the fleet was told, and over which bus. */
export interface FleetDelivery extends PublishOutcome {
  bus: ControlBus['kind'];
}

/** A command whose action the type knows. */
export type ActionCommand<A extends ControlAction> = ControlCommand & { action: A };

/** What `control` did with a drain: the pool's result here, and whether the fleet was told. */
export interface DrainControlOutcome {
  action: 'drain';
  command: ActionCommand<'drain'>;
  result: DrainResult;
  fleet: FleetDelivery;
}

/** What `control` did with an undrain: whether the backend was draining here, and whether the fleet was told. */
export interface UndrainControlOutcome {
  action: 'undrain';
  command: ActionCommand<'undrain'>;
  result: boolean;
  fleet: FleetDelivery;
}

export type ControlOutcome = DrainControlOutcome | UndrainControlOutcome;

/** A new command (`control` gives it its id, time and origin). */
export function controlCommand<A extends ControlAction>(action: A, backend: string, opts: DrainOptions = {}): ActionCommand<A> {
  const cmd: ActionCommand<A> = { action, backend };
  if (opts.deadlineMs !== undefined) cmd.deadlineMs = opts.deadlineMs;
  if (opts.reason !== undefined) cmd.reason = opts.reason;
  return cmd;
}

/** A drain given here: the pool's options, and `force` past the last-routable refusal. */
export type ControlDrainOptions = DrainOptions & { force?: boolean };

export interface ControlPlaneOptions {
  pool: ControlledPool;
  bus: ControlBus;
  log: Logger;
  replicaId: string;
  counters: ControlCounters;
  /** `drain.deadlineMs` as configured now (a reload changes it): for desired drains without one. */
  defaultDeadlineMs(): number;
  /** The drain state changed: the registry should show it soon. */
  changed(): void;
  /** Moves sessions between this replica's backends (proxy/rebalancer.ts); absent = rebalance commands are refused. */
  rebalancer?: { start(req: RebalanceRequest): RebalanceStatus; status(): RebalanceStatus };
  /** Injectable for tests. */
  now?: () => number;
}

/** Own command ids remembered until they come back from the bus (bounded). */
const MAX_OWN_IDS = 1_000;

export class ControlPlane {
  private readonly pool: ControlledPool;
  private readonly bus: ControlBus;
  private readonly log: Logger;
  /** Anyone who can PUBLISH on the channel controls the rate of these lines: limited. */
  private readonly busLog: RateLimitedLog;
  private readonly now: () => number;
  /** The fleet's desired state as last known (sync + every command): re-applied by `converge`. */
  private desiredState = new Map<string, DesiredDrain>();
  /** Ids of commands published from here, until the bus delivers them back (oldest dropped first). */
  private readonly ownIds = new Set<string>();

  constructor(private readonly opts: ControlPlaneOptions) {
    this.pool = opts.pool;
    this.bus = opts.bus;
    this.log = opts.log;
    this.busLog = new RateLimitedLog(opts.log);
    this.now = opts.now ?? Date.now;
  }

  /** The fleet's desired drains as this replica knows them. */
  get desired(): DesiredDrain[] {
    return [...this.desiredState.values()];
  }

  /** Subscribes to the bus; resolves once the desired state is read and applied (see ControlBus.start). */
  start(): Promise<void> {
    return this.bus.start(this.busHandlers());
  }

  /** Stops the rate-limited logging (the bus is stopped by its owner). */
  stop(): void {
    this.busLog.stop();
  }

  /**
   * Drains `name` here at once and publishes the drain to the fleet in the background (`control`
   * waits for it). Throws UnknownBackendError, and LastRoutableBackendError unless `force`.
   */
  drain(name: string, opts: ControlDrainOptions = {}, source: ControlSource = 'api'): DrainResult {
    const cmd = this.newCommand('drain', name, opts);
    const result = this.applyDrain(cmd, source, opts.force === true);
    void this.toFleet(cmd);
    return result;
  }

  /** Undrains `name` here at once and publishes the undrain to the fleet in the background. Throws UnknownBackendError. */
  undrain(name: string, source: ControlSource = 'api'): boolean {
    const cmd = this.newCommand('undrain', name);
    const changed = this.applyUndrain(cmd, source);
    void this.toFleet(cmd);
    return changed;
  }

  /**
   * Applies a command here at once, then publishes it to the fleet (and persists it, Redis) and
   * resolves once the bus answered. Missing `id`, `at`, `origin` are filled in. A drain that would
   * leave this replica no routable backend throws LastRoutableBackendError unless forced (always
   * forced from the bus). Counted under its source, except programmatic calls (`api`).
   */
  control(given: ActionCommand<'drain'>, source?: ControlSource, opts?: { force?: boolean }): Promise<DrainControlOutcome>;
  control(given: ActionCommand<'undrain'>, source?: ControlSource, opts?: { force?: boolean }): Promise<UndrainControlOutcome>;
  control(given: ControlCommand, source?: ControlSource, opts?: { force?: boolean }): Promise<ControlOutcome>;
  async control(given: ControlCommand, source: ControlSource = 'api', opts: { force?: boolean } = {}): Promise<ControlOutcome> {
    const full = { ...given, id: given.id ?? randomUUID(), at: given.at ?? this.now(), origin: given.origin ?? this.opts.replicaId };
    const force = source === 'bus' || opts.force === true;
    let outcome: ControlOutcome;
    if (full.action === 'drain') {
      const command = { ...full, action: 'drain' as const };
      const result = this.applyDrain(command, source, force);
      outcome = { action: 'drain', command, result, fleet: await this.toFleet(command) };
    } else {
      const command = { ...full, action: 'undrain' as const };
      const result = this.applyUndrain(command, source);
      outcome = { action: 'undrain', command, result, fleet: await this.toFleet(command) };
    }
    if (source !== 'api') this.opts.counters.controlMessages.inc({ source, result: 'ok' });
    return outcome;
  }

  /**
   * Rebalances this replica's sessions (its own plan, or its share of a fleet plan: `req.quota`).
   * Throws when this replica has no rebalancer.
   */
  rebalance(req: RebalanceRequest, source: ControlSource = 'api'): RebalanceStatus {
    const r = this.opts.rebalancer;
    if (r === undefined) throw new Error('this replica does not rebalance');
    const status = r.start(req);
    if (source !== 'api') this.opts.counters.controlMessages.inc({ source, result: 'ok' });
    return status;
  }

  /** The current (or last) rebalance of this replica; null when it has no rebalancer. */
  rebalanceStatus(): RebalanceStatus | null {
    return this.opts.rebalancer?.status() ?? null;
  }

  /** Brings the pool to the desired state (after a (re)connect of the bus, a reload, a discovery round). */
  converge(why: string): void {
    const steps = planConvergence(this.pool.list(), this.desired, this.now(), this.opts.defaultDeadlineMs());
    for (const step of steps) {
      this.log.info({ ...step, why }, 'converging to the fleet desired state');
      try {
        if (step.action === 'drain') {
          const cmd: ControlCommand = { action: 'drain', backend: step.backend, deadlineMs: step.deadlineMs };
          if (step.reason !== undefined) cmd.reason = step.reason;
          this.applyDrain(cmd, 'bus', true);
        } else this.applyUndrain({ action: 'undrain', backend: step.backend }, 'bus');
      } catch (err) {
        this.log.error({ err, step }, 'could not converge a backend');
      }
    }
  }

  /** The fleet side: commands of other replicas (and this one's echoes), desired state, connection. */
  private busHandlers(): BusHandlers {
    return {
      command: (cmd) => {
        if (cmd.id !== undefined && this.ownIds.delete(cmd.id)) return true;
        // An undrain is forgotten whatever happens here: the desired state must not keep a drain the fleet lifted.
        if (cmd.action === 'undrain') this.remember(cmd);
        try {
          this.apply(cmd, 'bus', true);
          // Only backends this replica has: a flood of made-up names must not grow memory.
          if (cmd.action === 'drain') this.remember(cmd);
          this.opts.counters.controlMessages.inc({ source: 'bus', result: 'ok' });
          return true;
        } catch (err) {
          // Never fatal: a bad command is logged and counted.
          this.opts.counters.controlMessages.inc({ source: 'bus', result: 'rejected' });
          if (err instanceof UnknownBackendError) {
            this.busLog.write(
              'unknown-backend',
              { action: cmd.action, backend: cmd.backend, origin: cmd.origin },
              'bus command for a backend this replica does not have: ignored',
            );
          } else this.log.error({ err, action: cmd.action, backend: cmd.backend }, 'bus command failed');
          return false;
        }
      },
      rebalance: (msg) => this.rebalanceFromBus(msg),
      malformed: (text, error) => {
        this.opts.counters.controlMessages.inc({ source: 'bus', result: 'malformed' });
        this.busLog.write('malformed', { message: text.length > 200 ? `${text.slice(0, 200)}…` : text, error }, 'malformed control message ignored');
      },
      sync: (list) => {
        this.desiredState = new Map(list.map((d) => [d.backend, d]));
        this.converge('sync');
        this.opts.changed();
      },
      connection: (connected) => {
        if (connected) this.log.info({ bus: this.bus.kind }, 'control bus connected');
        else this.log.warn({ bus: this.bus.kind }, 'control bus disconnected: forwarding continues, commands from the fleet resume on reconnect');
      },
    };
  }

  /** This replica's share of a fleet rebalance (none when the message names other replicas only). */
  private rebalanceFromBus(msg: RebalanceMessage): void {
    const req: RebalanceRequest = {};
    if (msg.moves !== undefined) {
      const mine = msg.moves[this.opts.replicaId];
      if (mine === undefined) return;
      req.quota = mine;
    }
    if (msg.by !== undefined) req.by = msg.by;
    if (msg.maxInFlight !== undefined) req.maxInFlight = msg.maxInFlight;
    if (msg.minAgeMs !== undefined) req.minAgeMs = msg.minAgeMs;
    if (msg.reason !== undefined) req.reason = msg.reason;
    try {
      const status = this.rebalance(req, 'bus');
      this.log.info({ origin: msg.origin, id: msg.id, planned: status.planned }, 'rebalance from the fleet bus');
    } catch (err) {
      this.opts.counters.controlMessages.inc({ source: 'bus', result: 'rejected' });
      this.busLog.write('rebalance', { err: (err as Error).message, origin: msg.origin }, 'rebalance from the bus not applied');
    }
  }

  private apply(cmd: ControlCommand, source: ControlSource, force: boolean): DrainResult | boolean {
    return cmd.action === 'drain' ? this.applyDrain(cmd, source, force) : this.applyUndrain(cmd, source);
  }

  /** The one place a drain changes the pool. Throws UnknownBackendError, LastRoutableBackendError unless `force`. */
  private applyDrain(cmd: ControlCommand, source: ControlSource, force: boolean): DrainResult {
    if (!force && this.pool.isLastRoutable(cmd.backend)) {
      this.opts.counters.controlMessages.inc({ source, result: 'rejected' });
      this.log.warn({ backend: cmd.backend, source, origin: cmd.origin }, 'drain refused: last routable backend (not forced)');
      throw new LastRoutableBackendError(cmd.backend);
    }
    const opts: DrainOptions = {};
    if (cmd.deadlineMs !== undefined) opts.deadlineMs = cmd.deadlineMs;
    if (cmd.reason !== undefined) opts.reason = cmd.reason;
    const result = this.pool.drain(cmd.backend, opts);
    this.opts.counters.drains.inc({ backend: cmd.backend, action: 'drain' });
    this.log.info({ ...result, reason: cmd.reason, source, origin: cmd.origin }, 'drain');
    this.opts.changed();
    return result;
  }

  /** The one place an undrain changes the pool. Throws UnknownBackendError. */
  private applyUndrain(cmd: ControlCommand, source: ControlSource): boolean {
    const changed = this.pool.undrain(cmd.backend);
    this.opts.counters.drains.inc({ backend: cmd.backend, action: 'undrain' });
    this.log.info({ backend: cmd.backend, changed, reason: cmd.reason, source, origin: cmd.origin }, 'undrain');
    this.opts.changed();
    return changed;
  }

  private remember(cmd: ControlCommand): void {
    if (cmd.action === 'drain') this.desiredState.set(cmd.backend, desiredFromCommand(cmd, this.now()));
    else this.desiredState.delete(cmd.backend);
  }

  private newCommand(action: ControlAction, backend: string, opts: DrainOptions = {}): ControlCommand {
    return { ...controlCommand(action, backend, opts), id: randomUUID(), at: this.now(), origin: this.opts.replicaId };
  }

  /** Publishes a command applied here; never rejects (a bus that is down is an outcome). */
  private async toFleet(cmd: ControlCommand): Promise<FleetDelivery> {
    this.remember(cmd);
    if (cmd.id !== undefined) {
      if (this.ownIds.size >= MAX_OWN_IDS) this.ownIds.delete(this.ownIds.values().next().value!);
      this.ownIds.add(cmd.id);
    }
    let outcome: PublishOutcome;
    try {
      outcome = await this.bus.publish(cmd);
    } catch (err) {
      outcome = { published: false, receivers: 0, error: (err as Error).message };
    }
    if (!outcome.published) this.log.warn({ action: cmd.action, backend: cmd.backend, err: outcome.error }, 'command applied on this replica only for now');
    return { ...outcome, bus: this.bus.kind };
  }
}
