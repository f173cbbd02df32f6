/**
 * The progress the CLI's `--wait` options show on stderr (`drain --wait`, `rebalance --wait`): a
 * cli-progress bar on a terminal, else one line each time the text changes (logs, CI).
 */
import { createRequire } from 'node:module';
import type * as CliProgress from 'cli-progress';
import { keyframeEtaText } from './control/media-text.js';
import type { MediaSummary } from './rtmp/media-telemetry.js';
import { safeText } from './terminal-text.js';

/** What `writeEtas` reads of a session (a fleet registry record, or an /api/sessions entry). */
export interface EtaSession {
  id: string;
  app: string | null;
  capability: string;
  state: string;
  media?: MediaSummary | null;
}

/**
 * Sessions that move at their next keyframe (proxy-side migration) and when that keyframe is
 * expected, from the keyframe interval the proxies measure: a line per session when its estimate
 * (to the tenth of a second) changes. Above a progress bar, the line clears the bar first.
 */
export function writeEtas(err: { write(text: string): unknown }, sessions: readonly EtaSession[], shown: Map<string, string>, bar: boolean): void {
  for (const s of sessions) {
    const eta = s.capability === 'none' || s.state === 'migrating' ? keyframeEtaText(s.media) : null;
    if (eta === null || shown.get(s.id) === eta) continue;
    shown.set(s.id, eta);
    err.write(`${bar ? '\r\x1b[K' : ''}  ${safeText(s.id)} (${safeText(s.app)}): ${safeText(eta)}\n`);
  }
}

export class ProgressLine {
  private bar: CliProgress.SingleBar | null = null;
  private lastLine = '';

  /**
   * `format`: the bar's cli-progress format (`{bar}` and the payload's fields), on a terminal.
   */
  constructor(
    private readonly format: string,
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {}

  /**
   * `done` of `total`, with the payload of the bar's format; without a terminal, `line` is written
   * when it differs from the last one written, followed by `suffix` (a countdown that changes every
   * second does not repeat the line).
   */
  update(done: number, total: number, payload: Record<string, string | number>, line: string, suffix = ''): void {
    if (this.stream.isTTY === true) {
      if (this.bar === null) {
        // Loaded here: only a wait on a terminal draws a progress bar.
        const cliProgress = createRequire(import.meta.url)('cli-progress') as typeof CliProgress;
        this.bar = new cliProgress.SingleBar(
          { format: this.format, stream: this.stream, hideCursor: true, clearOnComplete: false },
          cliProgress.Presets.shades_classic,
        );
        this.bar.start(Math.max(total, 1), 0, payload);
      }
      this.bar.setTotal(Math.max(total, 1));
      this.bar.update(done, payload);
      return;
    }
    if (line !== this.lastLine) this.stream.write(`${line}${suffix}\n`);
    this.lastLine = line;
  }

  /** True while a bar is on the terminal: lines written above it must clear it first. */
  get drawing(): boolean {
    return this.bar !== null;
  }

  stop(): void {
    this.bar?.stop();
    this.bar = null;
  }
}
