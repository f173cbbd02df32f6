/**
 * In-process control bus: the default when no Redis is configured. The "fleet" is this replica:
 * commands published through the admin API come back to it like bus messages would, the desired
 * state lives in memory, and the registry is the last heartbeat's report.
 */
import type { BusHandlers, ControlBus, FleetView, PublishOutcome, ReplicaRecord, SessionRecord } from './bus.js';
import { type ControlCommand, type DesiredDrain, desiredFromCommand } from './commands.js';

export class LocalBus implements ControlBus {
  readonly kind = 'local' as const;
  private handlers: BusHandlers | null = null;
  private readonly desired = new Map<string, DesiredDrain>();
  private last: { replica: ReplicaRecord; sessions: SessionRecord[] } | null = null;
  private stopped = false;

  get connected(): boolean {
    return !this.stopped;
  }

  async start(handlers: BusHandlers): Promise<void> {
    this.handlers = handlers;
    handlers.connection(true);
    handlers.sync([...this.desired.values()]);
  }

  async publish(cmd: ControlCommand): Promise<PublishOutcome> {
    if (cmd.action === 'drain') this.desired.set(cmd.backend, desiredFromCommand(cmd, Date.now()));
    else this.desired.delete(cmd.backend);
    const h = this.handlers;
    // Delivered asynchronously, as a real bus would: never re-enters the publisher.
    if (h !== null && !this.stopped) queueMicrotask(() => h.command(cmd));
    return { published: true, receivers: h === null ? 0 : 1 };
  }

  async report(replica: ReplicaRecord, sessions: SessionRecord[]): Promise<void> {
    this.last = { replica, sessions };
  }

  async fleet(): Promise<FleetView> {
    return {
      source: 'local',
      readAt: new Date().toISOString(),
      replicas: this.last === null ? [] : [this.last.replica],
      sessions: this.last === null ? [] : this.last.sessions,
      desired: [...this.desired.values()],
    };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.handlers = null;
  }
}
