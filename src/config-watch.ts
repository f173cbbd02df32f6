/**
 * Watches the YAML config file of a running proxy and says when its content changed.
 *
 * A Kubernetes ConfigMap volume never rewrites the file in place: the kubelet writes a new
 * timestamped directory and swaps the `..data` symlink the file points through, so the file's
 * own inode is never modified. The directory is watched instead (any event there re-checks the
 * file, following symlinks), with a bounded poll as the fallback where events are lost or
 * unsupported (network filesystems, inotify limits). Bursts of events are debounced into one
 * check; a check that finds the same content (same size and SHA-256) reports nothing.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { MAX_CONFIG_FILE_BYTES } from './config.js';

/** How often the file is checked when no event came (events can be lost or unsupported). */
export const CONFIG_POLL_MS = 10_000;

export interface ConfigWatchOptions {
  file: string;
  /** Called once per change of the file's content (or of its readability). */
  onChange(): void;
  log: Logger;
  /** Quiet time after the last event before the file is checked. Default 250 ms. */
  debounceMs?: number;
  /** Fallback check interval. Default CONFIG_POLL_MS. */
  pollMs?: number;
}

/** What identifies a version of the file; bounded: a file over MAX_CONFIG_FILE_BYTES is identified by its size and times only. */
function fingerprint(file: string): string {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    return `error:${(e as NodeJS.ErrnoException).code ?? 'unknown'}`;
  }
  if (!st.isFile() || st.size > MAX_CONFIG_FILE_BYTES) return `stat:${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
  try {
    return `sha256:${createHash('sha256').update(fs.readFileSync(file)).digest('hex')}`;
  } catch (e) {
    return `error:${(e as NodeJS.ErrnoException).code ?? 'unknown'}`;
  }
}

export class ConfigFileWatcher {
  private readonly debounceMs: number;
  private readonly pollMs: number;
  private watcher: fs.FSWatcher | null = null;
  private poll: NodeJS.Timeout | null = null;
  private debounce: NodeJS.Timeout | null = null;
  /** Stat of the file at the last check: the poll reads the content only when it moved. */
  private lastStat = '';
  private last = '';

  constructor(private readonly opts: ConfigWatchOptions) {
    this.debounceMs = opts.debounceMs ?? 250;
    this.pollMs = opts.pollMs ?? CONFIG_POLL_MS;
  }

  start(): void {
    this.last = fingerprint(this.opts.file);
    this.lastStat = this.statKey();
    const dir = path.dirname(path.resolve(this.opts.file));
    try {
      this.watcher = fs.watch(dir, { persistent: false }, () => this.schedule());
      this.watcher.on('error', (err) => {
        this.opts.log.warn({ dir, err: err.message, pollMs: this.pollMs }, 'config watch failed: checking the file by polling only');
        this.watcher?.close();
        this.watcher = null;
      });
    } catch (err) {
      this.opts.log.warn({ dir, err: (err as Error).message, pollMs: this.pollMs }, 'config watch unavailable: checking the file by polling only');
    }
    this.poll = setInterval(() => {
      if (this.statKey() !== this.lastStat) this.schedule();
    }, this.pollMs);
    this.poll.unref();
    this.opts.log.info(
      { file: this.opts.file, watch: this.watcher !== null, pollMs: this.pollMs },
      'watching the config file: changes are applied like SIGHUP',
    );
  }

  stop(): void {
    this.watcher?.close();
    this.watcher = null;
    if (this.poll !== null) clearInterval(this.poll);
    if (this.debounce !== null) clearTimeout(this.debounce);
    this.poll = this.debounce = null;
  }

  private statKey(): string {
    try {
      const st = fs.statSync(this.opts.file);
      return `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;
    } catch (e) {
      return `error:${(e as NodeJS.ErrnoException).code ?? 'unknown'}`;
    }
  }

  private schedule(): void {
    if (this.debounce !== null) clearTimeout(this.debounce);
    this.debounce = setTimeout(() => this.check(), this.debounceMs);
    this.debounce.unref();
  }

  private check(): void {
    this.debounce = null;
    this.lastStat = this.statKey();
    const now = fingerprint(this.opts.file);
    if (now === this.last) return;
    this.last = now;
    this.opts.onChange();
  }
}
