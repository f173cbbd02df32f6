/**
 * `npm start`: the whole story on one machine, with nothing configured.
 *
 * Two embedded RTMP backends (nginx-rtmp when installed, node-media-server otherwise), the proxy
 * in this process with its in-process control bus, and the reference Go Away publisher fed by a
 * generated test stream (ffmpeg testsrc + tone; the committed sample FLV when ffmpeg is absent).
 * A few seconds in, the publisher's backend is drained; the story tells where the stream moved,
 * how long the switch took, and checks the frames the backends recorded against the frames sent.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { createReadStream, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { type RunningProxy, startProxy } from '../app.js';
import { readFlvTags } from '../client/flv.js';
import { type ConnectionReport, type PublishReport, ReferencePublisher } from '../client/reference-publisher.js';
import { loadConfig } from '../config.js';
import { type EmbeddedBackend, findExecutable, findNginxRtmp, startNginxRtmp, startNodeMediaServer } from './backends.js';
import { type Comparison, type Frame, compareRecordings, frameOf } from './verify.js';

export type BackendChoice = 'auto' | 'nginx' | 'node-media-server';
export type SourceChoice = 'auto' | 'ffmpeg' | 'sample';

export interface DemoOptions {
  backends: BackendChoice;
  source: SourceChoice;
  /** Drain the publisher's backend once this much media has been sent (ms). */
  drainAfterMs: number;
  /** Length of the generated stream (ffmpeg source), seconds. */
  seconds: number;
  /** Keep the proxy and backends running after the story, until SIGINT/SIGTERM. */
  keep: boolean;
  /** Print a final JSON summary line (for scripts and tests). */
  json: boolean;
}

export interface DemoSummary {
  ok: boolean;
  backendKind: string;
  source: string;
  from: string | null;
  to: string | null;
  sent: { video: number; audio: number };
  received: { video: number; audio: number };
  perBackend: Record<string, { video: number; audio: number }>;
  goAwayToCloseMs: number | null;
  reconnectMs: number | null;
  zeroLoss: boolean;
}

export const SAMPLE_FLV = fileURLToPath(new URL('../../test/fixtures/sample.flv', import.meta.url));

const DEMO_KEY = 'demo';

/** ffmpeg with lavfi, libx264 and aac, or null. */
function usableFfmpeg(): string | null {
  const exe = findExecutable('ffmpeg');
  if (exe === null) return null;
  const r = spawnSync(exe, ['-hide_banner', '-encoders'], { encoding: 'utf8', timeout: 10_000 });
  return r.status === 0 && /libx264/.test(r.stdout) && /\baac\b/.test(r.stdout) ? exe : null;
}

/** The same stream as scripts/make-sample-flv.sh, generated live on stdout. */
function ffmpegTestStream(exe: string, seconds: number): ChildProcess {
  return spawn(
    exe,
    [
      ...['-hide_banner', '-loglevel', 'error', '-nostdin'],
      ...['-f', 'lavfi', '-i', 'testsrc=size=320x180:rate=10', '-f', 'lavfi', '-i', 'sine=frequency=440:beep_factor=4:sample_rate=22050'],
      ...['-t', String(seconds), '-map', '0:v', '-map', '1:a'],
      ...[
        '-c:v',
        'libx264',
        '-preset',
        'veryfast',
        '-profile:v',
        'baseline',
        '-pix_fmt',
        'yuv420p',
        '-g',
        '10',
        '-keyint_min',
        '10',
        '-sc_threshold',
        '0',
        '-bf',
        '0',
        '-b:v',
        '120k',
      ],
      ...['-c:a', 'aac', '-b:a', '32k', '-ac', '1', '-f', 'flv', '-'],
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
}

class Story {
  private progressShown = false;
  private t0 = Date.now();
  constructor(private readonly out: NodeJS.WriteStream) {}

  get tty(): boolean {
    return this.out.isTTY === true;
  }

  line(s = ''): void {
    this.clearProgress();
    this.out.write(`${s}\n`);
  }

  /** Times of the story count from here (the stream's start). */
  startClock(): void {
    this.t0 = Date.now();
  }

  /** A timed event of the story: "  3.0 s  …". */
  at(s: string): void {
    this.line(`  ${((Date.now() - this.t0) / 1000).toFixed(1).padStart(5)} s  ${s}`);
  }

  progress(s: string): void {
    if (!this.tty) return;
    this.out.write(`\r\x1b[K${s}`);
    this.progressShown = true;
  }

  clearProgress(): void {
    if (this.progressShown) this.out.write('\r\x1b[K');
    this.progressShown = false;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Runs the demo; resolves with its summary (ok = zero frames lost). */
export async function runDemo(opts: DemoOptions, out: NodeJS.WriteStream = process.stdout): Promise<DemoSummary> {
  const story = new Story(out);
  const dir = mkdtempSync(join(tmpdir(), 'rtmp-goaway-demo-'));
  const cleanup: (() => Promise<void> | void)[] = [() => rmSync(dir, { recursive: true, force: true })];
  const stopAll = async (): Promise<void> => {
    for (const f of cleanup.splice(0).reverse()) await Promise.resolve(f()).catch(() => undefined);
  };
  let ffmpeg: ChildProcess | null = null;
  let publisher: ReferencePublisher | null = null;
  const onSignal = (): void => {
    publisher?.abort();
    ffmpeg?.kill('SIGTERM');
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    story.line('rtmp-goaway-proxy demo: drain an ingest server under a live publisher, lose no frame');
    story.line();

    // ── backends ──
    const nginx = opts.backends === 'node-media-server' ? null : findNginxRtmp();
    if (opts.backends === 'nginx' && nginx === null)
      throw new Error('--backends nginx: nginx with the RTMP module is not installed (apt-get install nginx libnginx-mod-rtmp)');
    const backends: Record<'b1' | 'b2', EmbeddedBackend> = {} as Record<'b1' | 'b2', EmbeddedBackend>;
    for (const name of ['b1', 'b2'] as const) {
      const bdir = join(dir, name);
      const b = nginx !== null ? await startNginxRtmp({ dir: bdir, exe: nginx.exe, module: nginx.module }) : await startNodeMediaServer({ dir: bdir });
      cleanup.push(() => b.stop());
      backends[name] = b;
      story.line(`  backend ${name}   ${b.kind} on 127.0.0.1:${b.port}, recording every publish to FLV`);
    }
    const backendKind = backends.b1.kind;

    // ── proxy (in-process control bus: no redis.url) ──
    const config = loadConfig({
      flags: {
        listen: '127.0.0.1:0',
        admin: '127.0.0.1:0',
        backend: [`b1=127.0.0.1:${backends.b1.port}`, `b2=127.0.0.1:${backends.b2.port}`],
        healthIntervalMs: '1s',
        healthTimeoutMs: '500ms',
        drainDeadlineMs: '30s',
        logLevel: 'info',
      },
      env: {},
    });
    const logFile = join(dir, 'proxy.log');
    const proxy: RunningProxy = await startProxy(config, pino({ level: config.log.level }, pino.destination({ dest: logFile, sync: false, mkdir: true })));
    cleanup.push(() => proxy.stop('demo-end'));
    const url = `rtmp://127.0.0.1:${proxy.address.port}/live/${DEMO_KEY}`;
    story.line(
      `  proxy        rtmp://127.0.0.1:${proxy.address.port}/live → b1, b2 (least connections), admin http://127.0.0.1:${proxy.adminAddress!.port}, in-process control bus`,
    );
    // Both backends pass a health probe before the publisher starts.
    for (let i = 0; i < 100 && !proxy.pool.list().every((b) => b.health === 'up'); i++) await sleep(50);

    // ── source ──
    const ff = opts.source === 'sample' ? null : usableFfmpeg();
    if (opts.source === 'ffmpeg' && ff === null) throw new Error('--source ffmpeg: ffmpeg with libx264 and aac is not installed');
    let input: NodeJS.ReadableStream;
    let sourceName: string;
    if (ff !== null) {
      ffmpeg = ffmpegTestStream(ff, opts.seconds);
      ffmpeg.stderr?.resume();
      input = ffmpeg.stdout!;
      sourceName = `ffmpeg testsrc 320x180 10 fps + 440 Hz tone, ${opts.seconds} s, a keyframe every second`;
      const child = ffmpeg;
      cleanup.push(() => void child.kill('SIGKILL'));
    } else {
      if (!existsSync(SAMPLE_FLV)) throw new Error(`ffmpeg is not installed and the sample ${SAMPLE_FLV} is missing`);
      input = createReadStream(SAMPLE_FLV);
      sourceName = `the committed sample test/fixtures/sample.flv${opts.source === 'auto' ? ' (ffmpeg not found)' : ''}: 320x180 10 fps + tone, 8 s, a keyframe every second`;
    }
    story.line(`  publisher    reference Go Away publisher (announces supportsGoAway) → ${url}`);
    story.line(`  stream       ${sourceName}`);
    story.line();

    // ── the story ──
    const sent: Frame[] = [];
    const pub = new ReferencePublisher(readFlvTags(input), url, { speed: 1 });
    publisher = pub;
    const whereIs = new Map<number, string>();
    const backendOfNewestSession = (): string | null => {
      const live = [...proxy.server.sessions.values()].filter((s) => s.state !== 'closed');
      return live.at(-1)?.backendName ?? null;
    };
    let from: string | null = null;
    let to: string | null = null;
    let drainedAt = 0;
    pub.on('frame', ({ item }) => {
      if (item.replay) return;
      const f = frameOf(item.tag, item.kind);
      if (f !== null) sent.push(f);
    });
    pub.on('connected', (c: ConnectionReport) => {
      const b = backendOfNewestSession() ?? '?';
      whereIs.set(c.index, b);
      if (c.index === 1) {
        from = b;
        story.at(`publisher connected through the proxy, which routed it to ${b}`);
      } else {
        to = b;
        story.at(
          `reconnected to the same URL ${c.reconnectMs} ms later: the proxy routed it to ${b}; metadata and sequence headers re-sent, timestamps carry on`,
        );
      }
    });
    pub.on('goaway', () => story.at('publisher got Go Away: it keeps sending until the next keyframe'));
    pub.on('closed', (c: ConnectionReport) => {
      if (c.endReason === 'go-away') {
        story.at(
          `keyframe reached ${c.closingAt! - c.goAwayAt!} ms later: publisher closed its connection to ${whereIs.get(c.index)} (no FCUnpublish) after ${c.video} video + ${c.audio} audio frames`,
        );
      } else if (c.endReason === 'end-of-input') {
        story.at(`end of stream: ${c.video} video + ${c.audio} audio frames sent on ${whereIs.get(c.index)}`);
      } else story.at(`connection ${c.index} ended: ${c.endReason}`);
    });
    const progressTimer = setInterval(() => {
      const p = pub.progress();
      story.progress(
        `          ▶ on ${whereIs.get(p.connection) ?? '…'} · media ${(p.mediaMs / 1000).toFixed(1)} s · ${p.video} video + ${p.audio} audio frames sent${p.goingAway ? ' · finishing the GOP' : ''}`,
      );
    }, 200);
    let finished = false;
    const drainer = (async () => {
      while (!finished && pub.progress().mediaMs < opts.drainAfterMs) await sleep(50);
      const b = whereIs.get(1);
      if (finished || b === undefined) return;
      drainedAt = Date.now();
      story.at(`draining ${b}, as before a deploy: the proxy stops routing to it and sends RTMP Go Away (type 32) to its publishers`);
      proxy.control.drain(b, { reason: 'demo', force: true });
    })();
    let report: PublishReport;
    story.startClock();
    try {
      report = await pub.run();
    } finally {
      finished = true;
      clearInterval(progressTimer);
      story.clearProgress();
    }
    await drainer;
    if (report.error !== null) throw new Error(`publisher failed: ${report.error}`);

    // ── frame check: what the backends recorded vs what was sent ──
    const files: string[] = [];
    const perBackend: Record<string, { video: number; audio: number }> = {};
    for (const [index, b] of [...whereIs.entries()].sort((a, b2) => a[0] - b2[0])) {
      const backend = backends[b as 'b1' | 'b2'];
      if (backend === undefined) continue;
      const until = Date.now() + 10_000;
      const expected = [...whereIs.values()].filter((x) => x === b).length;
      while (Date.now() < until && (backend.recordings(DEMO_KEY).length < expected || backend.openRecordings().length > 0)) await sleep(50);
      const recs = backend.recordings(DEMO_KEY);
      const file = recs[[...whereIs.entries()].filter(([i, x]) => x === b && i <= index).length - 1];
      if (file !== undefined) files.push(file);
    }
    const cmp: Comparison = compareRecordings(sent, files);
    cmp.files.forEach((f, i) => {
      const b = whereIs.get(i + 1) ?? `file ${i + 1}`;
      perBackend[b] = { video: f.video, audio: f.audio };
    });
    const [c1, c2] = report.connections;
    const perConn = report.connections.map((c) => `${whereIs.get(c.index)}: ${c.video} + ${c.audio}`).join(', ');
    const perRec = Object.entries(perBackend)
      .map(([b, n]) => `${b}: ${n.video} + ${n.audio}`)
      .join(', ');
    story.line();
    story.line(`  frames   sent      ${cmp.sent.video} video + ${cmp.sent.audio} audio   (${perConn})`);
    story.line(`           received  ${cmp.received.video} video + ${cmp.received.audio} audio   (${perRec}, read back from the backends' recordings)`);
    story.line(
      cmp.zeroLoss
        ? '           ✔ zero frames lost: every frame recorded exactly once, byte for byte, timestamps continuous across the switch'
        : `           ✘ frames lost or duplicated: missing ${cmp.missing.length}, duplicated ${cmp.duplicated.length}, unexpected ${cmp.unexpected.length}`,
    );
    if (c2 !== undefined && c1 !== undefined) {
      story.line(
        `  switch   ${from} → ${to}: Go Away → close ${c1.closingAt! - c1.goAwayAt!} ms (finishing the GOP), close → publishing on ${to} ${c2.reconnectMs} ms; ` +
          `drain → stream on ${to} ${c2.publishedAt - drainedAt} ms`,
      );
    } else story.line('  switch   none: the stream ended before the drain');
    const summary: DemoSummary = {
      ok: cmp.zeroLoss && c2 !== undefined,
      backendKind,
      source: ff !== null ? 'ffmpeg' : 'sample',
      from,
      to,
      sent: cmp.sent,
      received: cmp.received,
      perBackend,
      goAwayToCloseMs: c1?.goAwayAt != null && c1.closingAt != null ? c1.closingAt - c1.goAwayAt : null,
      reconnectMs: c2?.reconnectMs ?? null,
      zeroLoss: cmp.zeroLoss,
    };

    if (opts.keep) {
      story.line();
      story.line(
        `  still serving (--keep): publish to rtmp://127.0.0.1:${proxy.address.port}/live/<key>; ${from} stays drained ` +
          `(curl -XPOST -H 'content-type: application/json' http://127.0.0.1:${proxy.adminAddress!.port}/api/backends/${from}/undrain); proxy log: ${logFile}. Ctrl-C to stop.`,
      );
      if (opts.json) out.write(`${JSON.stringify(summary)}\n`);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      });
    } else if (opts.json) out.write(`${JSON.stringify(summary)}\n`);
    return summary;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await stopAll();
  }
}
