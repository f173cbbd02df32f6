/**
 * Configuration reload of a running proxy (SIGHUP, or a change of the watched config file): the
 * one path both take. The new configuration is resolved exactly as at start (defaults < file <
 * environment < flags) and validated whole; an invalid one changes nothing.
 *
 * What a reload applies is `RELOADABLE` (backends, routing rules, limits, drain settings); any
 * other setting that differs from the running one needs a restart, and is reported as ignored
 * (by name only: values may be secrets).
 */
import type { Logger } from 'pino';
import type { SetBackendsResult } from './balancer/types.js';
import { type Config, ConfigError, settingDocs } from './config.js';
import { RateLimitedLog } from './net/rate-limited-log.js';

/** Top-level settings a reload applies; the others are read once at start. */
export const RELOADABLE = ['backends', 'routing', 'limits', 'drain', 'rebalance'] as const;

/** What triggered a reload (`trigger` label of `rtmp_goaway_config_reloads_total`). */
export type ReloadTrigger = 'signal' | 'file';

export interface ConfigDiff {
  /** Settings (dotted paths) that differ and are applied. */
  applied: string[];
  /** Settings that differ but need a restart: the running value stays. */
  ignored: string[];
}

let settingPaths: string[] | undefined;

function valueAt(c: Config, path: string): string {
  let cur: unknown = c;
  for (const seg of path.split('.')) cur = cur === null || typeof cur !== 'object' ? undefined : (cur as Record<string, unknown>)[seg];
  return JSON.stringify(cur) ?? 'undefined';
}

/** Which settings differ between the running configuration and `next`, split by whether a reload applies them. */
export function diffConfig(current: Config, next: Config): ConfigDiff {
  settingPaths ??= settingDocs().map((d) => d.path);
  const out: ConfigDiff = { applied: [], ignored: [] };
  for (const path of settingPaths) {
    if (valueAt(current, path) === valueAt(next, path)) continue;
    const top = path.split('.')[0]!;
    ((RELOADABLE as readonly string[]).includes(top) ? out.applied : out.ignored).push(path);
  }
  return out;
}

/** The running configuration with the reloadable settings of `next`. */
export function mergeReloadable(current: Config, next: Config): Config {
  return { ...current, backends: next.backends, routing: next.routing, limits: next.limits, drain: next.drain, rebalance: next.rebalance };
}

/** What the proxy does with a new configuration (RunningProxy.reload). */
export interface ReloadTarget {
  readonly config: Config;
  readonly log: Logger;
  reload(next: Config): SetBackendsResult & ConfigDiff;
  readonly metrics: {
    configReloaded(trigger: ReloadTrigger, result: 'ok' | 'invalid', restartRequired?: number): void;
  };
}

/** An invalid configuration is logged at most once per this interval (with how many were refused). */
export const INVALID_RELOAD_LOG_INTERVAL_MS = 10_000;

/**
 * Reloads `target` from `load()` (which resolves the whole configuration and throws ConfigError
 * when it is invalid). Every attempt is counted; an invalid one is logged on one line, at most
 * once per INVALID_RELOAD_LOG_INTERVAL_MS (the next line says how many were not logged).
 * Returns whether the configuration was applied.
 */
export class ConfigReloader {
  private readonly refusals: RateLimitedLog;

  constructor(
    private readonly target: ReloadTarget,
    private readonly load: () => Config,
  ) {
    this.refusals = new RateLimitedLog(target.log, { burst: 1, perSecond: 1000 / INVALID_RELOAD_LOG_INTERVAL_MS, level: 'error' });
  }

  reload(trigger: ReloadTrigger): boolean {
    const { log } = this.target;
    let next: Config;
    let r: SetBackendsResult & ConfigDiff;
    try {
      next = this.load();
      if (next.backends.length === 0 && this.target.config.discovery.dnsName === '') throw new ConfigError('the new configuration has no backend');
      // Checks everything before it changes anything: a throw here left the running configuration as it was.
      r = this.target.reload(next);
    } catch (err) {
      this.target.metrics.configReloaded(trigger, 'invalid');
      const issues = err instanceof ConfigError ? err.issues : [(err as Error).message];
      this.refusals.write('refused', { trigger, error: issues.join('; ') }, 'configuration reload refused: nothing changed');
      return false;
    }
    this.target.metrics.configReloaded(trigger, 'ok', r.ignored.length);
    log.info(
      {
        trigger,
        applied: r.applied,
        added: r.added,
        updated: r.updated,
        removed: r.removed,
        removing: r.removing,
        backends: next.backends.map((b) => `${b.name}=${b.host}:${b.port}`),
        routingRules: next.routing?.rules.length ?? 0,
      },
      'configuration reloaded',
    );
    if (r.ignored.length > 0)
      log.warn({ trigger, ignored: r.ignored }, 'configuration reload: these settings changed but need a restart; the running values stay');
    return true;
  }
}
