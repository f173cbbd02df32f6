/**
 * The `rebalance` command (docs/operations.md#rebalancing): through one proxy's admin API
 * (`POST /api/rebalance`, that replica's plan), or through Redis for the whole fleet (the plan over
 * the fleet registry, split by replica: control/rebalance-command.ts `planFleet`). `--dry-run`
 * prints the plan; `--wait` shows the sessions left to move until every backend holds its target.
 */
import { randomUUID } from 'node:crypto';
import { hostname } from 'node:os';
import { type Command, InvalidArgumentError } from 'commander';
import type { Redis } from 'ioredis';
import { REBALANCE_BY, type RebalanceBy, sessionLoads } from './balancer/rebalance-plan.js';
import { durationArg } from './config.js';
import { MAX_CONTROL_MESSAGE_LENGTH } from './control/commands.js';
import { bitrateText, keyframeEtaText } from './control/media-text.js';
import { type RebalanceMessage, planFleet } from './control/rebalance-command.js';
import { busKeys, publishRebalance } from './control/redis-bus.js';
import { readRegistry } from './control/registry.js';
import type { MediaSummary } from './rtmp/media-telemetry.js';
import { type EtaSession, ProgressLine, writeEtas } from './progress-line.js';
import { safeText } from './terminal-text.js';

/** `rebalance --wait` timed out with backends still off their target. */
export const EXIT_NOT_BALANCED = 3;
/** What a replica uses when no `--min-age` is given (`rebalance.minAgeMs` default): the fleet plan needs one too. */
const DEFAULT_MIN_AGE_MS = 10_000;
const DEFAULT_WAIT_MS = 5 * 60_000;
const POLL_MS = 250;

type AdminTarget = { kind: 'admin'; base: string; token?: string };
type Target = { kind: 'redis'; url: string; prefix: string } | AdminTarget;

/** What the command borrows from cli.ts (one way to reach a proxy). */
export interface RebalanceCliDeps<F> {
  addTargetOptions(cmd: Command): Command;
  resolveTarget(o: F): Target;
  adminRequest(api: AdminTarget, method: string, path: string, body?: unknown): Promise<unknown>;
  withRedis<T>(t: { url: string }, fn: (r: Redis) => Promise<T>): Promise<T>;
}

interface RebalanceFlags {
  dryRun?: boolean;
  by?: RebalanceBy;
  wait?: boolean;
  maxInFlight?: number;
  minAge?: number;
  reason?: string;
  timeout?: number;
}

/** Load over each backend's target beyond `tolerance` (one session's load, by bitrate), summed: what is left to move. */
export function leftToMove(loads: Record<string, number>, targets: Record<string, number>, tolerance = 0): number {
  let left = 0;
  for (const [name, t] of Object.entries(targets)) left += Math.max(0, (loads[name] ?? 0) - t - tolerance);
  return left;
}

/** What a session record or /api/sessions entry tells the wait. */
type WaitSession = EtaSession & { backend: string | null; role?: string | null; media?: MediaSummary | null };

/** The load on each backend as the plan counts it (players follow their publisher: not counted). */
export function backendLoads(sessions: readonly WaitSession[], by: RebalanceBy): Record<string, number> {
  const planned = sessions.filter((s): s is WaitSession & { backend: string } => s.backend !== null && s.role !== 'player');
  const load = by === 'bitrate' ? sessionLoads(planned.map((s) => s.media?.bitrate ?? null)) : planned.map(() => 1);
  const out: Record<string, number> = {};
  planned.forEach((s, i) => (out[s.backend] = (out[s.backend] ?? 0) + load[i]!));
  return out;
}

const amountText = (by: RebalanceBy, v: number): string => (by === 'bitrate' ? bitrateText(v) : String(v));
const loadsText = (by: RebalanceBy, c: Record<string, number>): string =>
  Object.entries(c)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([n, v]) => `${n}=${amountText(by, v)}`)
    .join(' ');
const leftText = (by: RebalanceBy, left: number): string => (by === 'bitrate' ? `${bitrateText(left)} over target` : `${left} session(s) left to move`);

/** A planned move as the plan output shows it. */
export interface MoveLine {
  session: string;
  from: string;
  to: string;
  how: 'reconnect' | 'migrate';
  nextKeyframeInMs: number | null;
  keyframeIntervalMs: number | null;
}

/** One line per planned move: how it moves and when it is expected once it starts (the keyframe ETA of `drain --wait`). */
export function moveLines(moves: readonly MoveLine[]): string[] {
  return moves.map((m) => {
    const when =
      m.how === 'reconnect'
        ? 'told to reconnect: moves when it reconnects'
        : `migrated at its next keyframe: ${keyframeEtaText({ nextKeyframeInMs: m.nextKeyframeInMs, keyframeIntervalMs: m.keyframeIntervalMs }) ?? 'keyframe interval not measured yet'}`;
    return `  ${safeText(m.session)} ${safeText(m.from)} -> ${safeText(m.to)}: ${when}\n`;
  });
}

function byArg(v: string): RebalanceBy {
  if (!(REBALANCE_BY as readonly string[]).includes(v)) throw new InvalidArgumentError(`expected ${REBALANCE_BY.join(' or ')}`);
  return v as RebalanceBy;
}

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1 || n > 10_000) throw new InvalidArgumentError('expected an integer between 1 and 10000');
  return n;
}

interface WaitView {
  /** The sessions now (the load per backend, and those migrating at their next keyframe), and whether a move is still under way. */
  read(): Promise<{ sessions: WaitSession[]; moving: boolean }>;
}

/** What `--wait` compares the backends to: the plan's targets, in the unit of `by`. */
interface WaitGoal {
  by: RebalanceBy;
  targets: Record<string, number>;
  tolerance: number;
}

/**
 * Polls until every backend holds at most its target (by bitrate: plus one session's load) and no
 * move is under way (0), or the timeout (EXIT_NOT_BALANCED). Sessions migrating at their next
 * keyframe get a line with when it is expected, as in `drain --wait`.
 */
async function waitBalanced(goal: WaitGoal, view: WaitView, timeoutMs: number): Promise<number> {
  const err = process.stderr;
  const { by, targets, tolerance } = goal;
  const started = Date.now();
  const progress = new ProgressLine(`rebalancing [{bar}] {left} | {counts}`, err);
  const etas = new Map<string, string>();
  let first: number | null = null;
  let loads: Record<string, number> = {};
  try {
    for (;;) {
      let readError: string | null = null;
      let moving = true;
      let migrating: WaitSession[] = [];
      try {
        const r = await view.read();
        moving = r.moving;
        loads = backendLoads(r.sessions, by);
        migrating = r.sessions.filter((x) => x.state === 'migrating');
      } catch (e) {
        readError = (e as Error).message;
      }
      const left = leftToMove(loads, targets, tolerance);
      // What was left at the first look is the whole bar.
      first ??= left;
      const all = Math.max(first, left);
      const line = `rebalancing: ${leftText(by, left)} (${loadsText(by, loads)})${readError !== null ? ` (read failed: ${safeText(readError)})` : ''}`;
      progress.update(all - left, all, { left: leftText(by, left), counts: loadsText(by, loads) }, line);
      writeEtas(err, migrating, etas, progress.drawing);
      if (readError === null && left === 0 && !moving) {
        progress.stop();
        err.write(`balanced: ${loadsText(by, loads)} (targets ${loadsText(by, targets)}) in ${((Date.now() - started) / 1000).toFixed(1)}s\n`);
        return 0;
      }
      if (Date.now() - started >= timeoutMs) break;
      await new Promise<void>((r) => setTimeout(r, POLL_MS));
    }
  } finally {
    progress.stop();
  }
  err.write(`not balanced after ${Math.round(timeoutMs / 1000)}s: ${loadsText(by, loads)} (targets ${loadsText(by, targets)})\n`);
  return EXIT_NOT_BALANCED;
}

export function registerRebalanceCommand<F extends object>(program: Command, deps: RebalanceCliDeps<F>): void {
  deps
    .addTargetOptions(
      program
        .command('rebalance')
        .description(
          'move sessions from over-loaded backends to under-loaded ones (weighted like routing), without losing a frame (every replica with --redis)',
        )
        .option('--dry-run', 'print the plan (with when each move is expected), move nothing')
        .option('--by <what>', `balance ${REBALANCE_BY.join(' or ')} per backend (default: rebalance.by; sessions for the fleet plan)`, byArg)
        .option(
          '--wait',
          `show what is left to move, and when each session migrating at its next keyframe moves, until every backend holds its target (exit 0) or --timeout passes (exit ${EXIT_NOT_BALANCED})`,
        )
        .option('--max-in-flight <n>', 'moves at once per replica (default: rebalance.maxInFlight)', positiveInt)
        .option(
          '--min-age <duration>',
          `leave sessions younger than this (default: rebalance.minAgeMs; ${DEFAULT_MIN_AGE_MS / 1000}s for the fleet plan)`,
          durationArg,
        )
        .option('--reason <text>', 'free text logged with the rebalance')
        .option('--timeout <duration>', `how long --wait waits (default ${DEFAULT_WAIT_MS / 60_000}m)`, durationArg),
    )
    .action(async (o: F & RebalanceFlags) => {
      const target = deps.resolveTarget(o);
      const timeoutMs = o.timeout ?? DEFAULT_WAIT_MS;
      if (target.kind === 'redis') {
        await deps.withRedis(target, async (redis) => {
          const keys = busKeys(target.prefix);
          const reg = await readRegistry(redis, keys);
          const plan = planFleet(reg.replicas, reg.sessions, { minAgeMs: o.minAge ?? DEFAULT_MIN_AGE_MS, now: Date.now(), by: o.by ?? 'sessions' });
          const msg: RebalanceMessage = { action: 'rebalance', moves: plan.moves, id: randomUUID(), at: Date.now(), origin: `cli@${hostname()}` };
          if (o.by !== undefined) msg.by = o.by;
          if (o.maxInFlight !== undefined) msg.maxInFlight = o.maxInFlight;
          if (o.minAge !== undefined) msg.minAgeMs = o.minAge;
          if (o.reason !== undefined) msg.reason = o.reason;
          if (JSON.stringify(msg).length > MAX_CONTROL_MESSAGE_LENGTH && plan.by === 'bitrate') {
            // Without the session ids each replica moves the oldest of the backend: the counts hold, the bitrates roughly.
            for (const list of Object.values(plan.moves)) for (const q of list) delete q.ids;
            process.stderr.write('the plan names too many sessions for one control message: each replica moves its oldest sessions of each backend instead\n');
          }
          if (JSON.stringify(msg).length > MAX_CONTROL_MESSAGE_LENGTH) {
            throw new Error(
              `the plan (${plan.planned} moves over ${Object.keys(plan.moves).length} replicas) does not fit in one control message: run rebalance again after this one`,
            );
          }
          const receivers = o.dryRun === true || plan.planned === 0 ? 0 : await publishRebalance(redis, keys, msg);
          console.log(JSON.stringify({ dryRun: o.dryRun === true, ...plan, published: receivers > 0, receivers, channel: keys.channel }, null, 2));
          for (const l of moveLines(plan.estimates)) process.stderr.write(l);
          if (o.wait && o.dryRun !== true) {
            process.exitCode = await waitBalanced(
              plan,
              {
                async read() {
                  const r = await readRegistry(redis, keys);
                  return { sessions: r.sessions, moving: r.sessions.some((s) => s.state === 'going-away' || s.state === 'migrating') };
                },
              },
              timeoutMs,
            );
          }
        });
        return;
      }
      const body: Record<string, unknown> = {};
      if (o.dryRun === true) body['dryRun'] = true;
      if (o.by !== undefined) body['by'] = o.by;
      if (o.maxInFlight !== undefined) body['maxInFlight'] = o.maxInFlight;
      if (o.minAge !== undefined) body['minAgeMs'] = o.minAge;
      if (o.reason !== undefined) body['reason'] = o.reason;
      const r = (await deps.adminRequest(target, 'POST', '/api/rebalance', body)) as { plan: (WaitGoal & { moves: MoveLine[] }) | null };
      console.log(JSON.stringify(r, null, 2));
      if (r.plan !== null) for (const l of moveLines(r.plan.moves)) process.stderr.write(l);
      if (o.wait && o.dryRun !== true && r.plan !== null) {
        process.exitCode = await waitBalanced(
          r.plan,
          {
            async read() {
              const [sessions, status] = (await Promise.all([
                deps.adminRequest(target, 'GET', '/api/sessions'),
                deps.adminRequest(target, 'GET', '/api/rebalance'),
              ])) as [WaitSession[], { running: boolean }];
              return { sessions, moving: status.running };
            },
          },
          timeoutMs,
        );
      }
    });
}
