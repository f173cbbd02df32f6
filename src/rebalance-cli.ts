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
import { parseDuration } from './config.js';
import { MAX_CONTROL_MESSAGE_LENGTH } from './control/commands.js';
import { type RebalanceMessage, planFleet } from './control/rebalance-command.js';
import { busKeys, publishRebalance } from './control/redis-bus.js';
import { readRegistry } from './control/registry.js';
import { ProgressLine } from './progress-line.js';
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
  wait?: boolean;
  maxInFlight?: number;
  minAge?: number;
  reason?: string;
  timeout?: number;
}

/** Sessions over their backend's target, summed: what is left to move. */
export function leftToMove(counts: Record<string, number>, targets: Record<string, number>): number {
  let left = 0;
  for (const [name, t] of Object.entries(targets)) left += Math.max(0, (counts[name] ?? 0) - t);
  return left;
}

const countsText = (c: Record<string, number>): string =>
  Object.entries(c)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([n, v]) => `${n}=${v}`)
    .join(' ');

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1 || n > 10_000) throw new InvalidArgumentError('expected an integer between 1 and 10000');
  return n;
}

function durationArg(v: string): number {
  try {
    return parseDuration(v);
  } catch {
    throw new InvalidArgumentError('expected a duration like 500ms, 30s or 2m');
  }
}

interface WaitView {
  /** Sessions per backend now, and whether a move is still under way. */
  read(): Promise<{ counts: Record<string, number>; moving: boolean }>;
}

/** Polls until every backend holds at most its target and no move is under way (0), or the timeout (EXIT_NOT_BALANCED). */
async function waitBalanced(targets: Record<string, number>, view: WaitView, timeoutMs: number): Promise<number> {
  const err = process.stderr;
  const started = Date.now();
  const progress = new ProgressLine('rebalancing [{bar}] {left} session(s) left to move | {counts}', err);
  let first: number | null = null;
  let counts: Record<string, number> = {};
  try {
    for (;;) {
      let readError: string | null = null;
      let moving = true;
      try {
        ({ counts, moving } = await view.read());
      } catch (e) {
        readError = (e as Error).message;
      }
      const left = leftToMove(counts, targets);
      // What was left at the first look is the whole bar.
      first ??= left;
      const all = Math.max(first, left);
      const line = `rebalancing: ${left} session(s) left to move (${countsText(counts)})${readError !== null ? ` (read failed: ${safeText(readError)})` : ''}`;
      progress.update(all - left, all, { left, counts: countsText(counts) }, line);
      if (readError === null && left === 0 && !moving) {
        progress.stop();
        err.write(`balanced: ${countsText(counts)} (targets ${countsText(targets)}) in ${((Date.now() - started) / 1000).toFixed(1)}s\n`);
        return 0;
      }
      if (Date.now() - started >= timeoutMs) break;
      await new Promise<void>((r) => setTimeout(r, POLL_MS));
    }
  } finally {
    progress.stop();
  }
  err.write(`not balanced after ${Math.round(timeoutMs / 1000)}s: ${countsText(counts)} (targets ${countsText(targets)})\n`);
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
        .option('--dry-run', 'print the plan, move nothing')
        .option('--wait', `show the sessions left to move until every backend holds its target (exit 0) or --timeout passes (exit ${EXIT_NOT_BALANCED})`)
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
          const plan = planFleet(reg.replicas, reg.sessions, { minAgeMs: o.minAge ?? DEFAULT_MIN_AGE_MS, now: Date.now() });
          const msg: RebalanceMessage = { action: 'rebalance', moves: plan.moves, id: randomUUID(), at: Date.now(), origin: `cli@${hostname()}` };
          if (o.maxInFlight !== undefined) msg.maxInFlight = o.maxInFlight;
          if (o.minAge !== undefined) msg.minAgeMs = o.minAge;
          if (o.reason !== undefined) msg.reason = o.reason;
          if (JSON.stringify(msg).length > MAX_CONTROL_MESSAGE_LENGTH) {
            throw new Error(
              `the plan (${plan.planned} moves over ${Object.keys(plan.moves).length} replicas) does not fit in one control message: run rebalance again after this one`,
            );
          }
          const receivers = o.dryRun === true || plan.planned === 0 ? 0 : await publishRebalance(redis, keys, msg);
          console.log(JSON.stringify({ dryRun: o.dryRun === true, ...plan, published: receivers > 0, receivers, channel: keys.channel }, null, 2));
          if (o.wait && o.dryRun !== true) {
            process.exitCode = await waitBalanced(
              plan.targets,
              {
                async read() {
                  const r = await readRegistry(redis, keys);
                  const counts: Record<string, number> = {};
                  for (const rep of r.replicas) for (const b of rep.backends) counts[b.name] = (counts[b.name] ?? 0) + b.sessions;
                  return { counts, moving: r.sessions.some((s) => s.state === 'going-away' || s.state === 'migrating') };
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
      if (o.maxInFlight !== undefined) body['maxInFlight'] = o.maxInFlight;
      if (o.minAge !== undefined) body['minAgeMs'] = o.minAge;
      if (o.reason !== undefined) body['reason'] = o.reason;
      const r = (await deps.adminRequest(target, 'POST', '/api/rebalance', body)) as { plan: { targets: Record<string, number> } | null };
      console.log(JSON.stringify(r, null, 2));
      if (o.wait && o.dryRun !== true && r.plan !== null) {
        process.exitCode = await waitBalanced(
          r.plan.targets,
          {
            async read() {
              const [backends, status] = (await Promise.all([
                deps.adminRequest(target, 'GET', '/api/backends'),
                deps.adminRequest(target, 'GET', '/api/rebalance'),
              ])) as [{ name: string; sessions: number }[], { running: boolean }];
              return { counts: Object.fromEntries(backends.map((b) => [b.name, b.sessions])), moving: status.running };
            },
          },
          timeoutMs,
        );
      }
    });
}
