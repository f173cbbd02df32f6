/**
 * `rtmp-goaway-proxy publish <file.flv|-> <rtmp://host:port/app/key>`: the reference Go Away
 * publisher on the command line (see reference-publisher.ts for the behaviour).
 */
import { createReadStream, statSync } from 'node:fs';
import { type Command, InvalidArgumentError, Option } from 'commander';
import { durationArg } from './config.js';
import { redactStreamKey } from './net/redact.js';
import { safeText } from './terminal-text.js';
import { readFlvTags } from './client/flv.js';
import { type ConnectionReport, type ProgressInfo, type PublishReport, ReferencePublisher } from './client/reference-publisher.js';
import { parseRtmpUrl } from './client/rtmp-client.js';
import { DEFAULT_CHUNK_SIZE, MAX_SPEC_CHUNK_SIZE } from './rtmp/constants.js';

const secs = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;

/** The URL as it may be printed: the stream key (a credential) redacted. */
export function displayUrl(url: string): string {
  try {
    const u = parseRtmpUrl(url);
    return `rtmp://${u.host.includes(':') ? `[${u.host}]` : u.host}:${u.port}/${u.app}/${redactStreamKey(u.streamKey)}`;
  } catch {
    return url;
  }
}

export function describeConnected(c: ConnectionReport): string {
  const setup = c.publishedAt - c.connectStartedAt;
  const tries = c.attempts === 1 ? '1 attempt' : `${c.attempts} attempts`;
  if (c.reconnectMs === null) return `[conn ${c.index}] publishing (connect + publish took ${setup} ms)`;
  return `[conn ${c.index}] publishing again ${c.reconnectMs} ms after the previous connection closed (${tries})`;
}

export function describeClosed(c: ConnectionReport, firstTs: number): string {
  const range = c.firstTimestamp === null ? 'no media' : `media ${secs(c.firstTimestamp - firstTs)} – ${secs(c.lastTimestamp! - firstTs)}`;
  const frames = `${c.video} video + ${c.audio} audio frames`;
  const replay = c.replayed > 0 ? `, ${c.replayed} config replayed` : '';
  const why =
    c.endReason === 'go-away' || c.endReason === 'reconnect-request'
      ? `closed at the next keyframe, ${c.closingAt !== null && c.goAwayAt !== null ? c.closingAt - c.goAwayAt : '?'} ms after the ${c.endReason === 'go-away' ? 'Go Away' : 'reconnect request'} (no FCUnpublish)`
      : c.endReason === 'end-of-input'
        ? 'ended: end of input (FCUnpublish + deleteStream)'
        : `ended: ${c.endReason}`;
  return `[conn ${c.index}] ${why}: ${frames}${replay}, ${range}`;
}

export function describeProgress(p: ProgressInfo): string {
  const rate = p.wallMs > 0 ? `${(p.mediaMs / p.wallMs).toFixed(2)}x` : '-';
  return `[conn ${p.connection}] ▶ media ${secs(p.mediaMs)} · ${p.video} video · ${p.audio} audio · ${rate}${p.goingAway ? ' · going away at the next keyframe' : ''}`;
}

export function describeReport(r: PublishReport): string {
  const lost = r.dropped.video + r.dropped.audio;
  const verdict = r.ok ? 'zero frames lost' : r.error !== null ? `FAILED: ${r.error}` : `${lost} frames dropped`;
  return (
    `done: read ${r.read.video} video + ${r.read.audio} audio frames, sent ${r.sent.video} + ${r.sent.audio} over ` +
    `${r.connections.length} connection${r.connections.length === 1 ? '' : 's'}, dropped ${r.dropped.video} + ${r.dropped.audio}, unsent ${r.unsent} — ${verdict}`
  );
}

function speedArg(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new InvalidArgumentError('expected a number ≥ 0 (1 = real time, 0 = as fast as possible)');
  return n;
}

function intArg(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < DEFAULT_CHUNK_SIZE || n > MAX_SPEC_CHUNK_SIZE) throw new InvalidArgumentError(`expected an integer ≥ ${DEFAULT_CHUNK_SIZE}`);
  return n;
}

interface PublishFlags {
  speed: number;
  goaway: boolean;
  goawayKey: 'supportsGoAway' | 'goaway';
  erpc?: boolean;
  chunkSize: number;
  reconnectTimeout: number;
  progress?: boolean;
  json?: boolean;
}

export function registerPublishCommand(program: Command): void {
  program
    .command('publish <input> <url>')
    .description(
      'reference RTMP Go Away publisher: publish an FLV file (or - for stdin) to rtmp://host:port/app/key in real time; ' +
        'on Go Away (type 32) finish the GOP, reconnect to the same URL and continue from the keyframe without losing a frame',
    )
    .option('--speed <n>', 'playback speed: 1 = real time, 2 = twice as fast, 0 = as fast as possible', speedArg, 1)
    .option('--no-goaway', 'do not announce supportsGoAway (behave like a publisher without Go Away)')
    .addOption(new Option('--goaway-key <key>', 'connect key announcing Go Away').choices(['supportsGoAway', 'goaway']).default('supportsGoAway'))
    .option('--erpc', 'also announce E-RTMP capsEx Reconnect and honour NetConnection.Connect.ReconnectRequest')
    .option('--chunk-size <bytes>', 'Set Chunk Size sent before connect', intArg, 4096)
    .option('--reconnect-timeout <duration>', 'give up when a reconnect (all its retries) takes longer', durationArg, 10_000)
    .option('--progress', 'print a live progress line')
    .option('--json', 'print the final report as JSON on stdout (the other lines go to stderr)')
    .action(async (input: string, url: string, o: PublishFlags) => {
      const out = o.json ? process.stderr : process.stdout;
      // Lines can quote what the server sent (status descriptions, errors): escaped for the terminal.
      const say = (line: string): void => void out.write(`${safeText(line)}\n`);
      parseRtmpUrl(url); // fail early on a bad URL
      if (input !== '-') {
        try {
          statSync(input);
        } catch {
          throw new Error(`cannot read ${input}: no such file`);
        }
      }
      const bytes = input === '-' ? process.stdin : createReadStream(input);
      const pub = new ReferencePublisher(readFlvTags(bytes), url, {
        speed: o.speed,
        goAway: o.goaway,
        goAwayKey: o.goawayKey,
        erpc: o.erpc === true,
        chunkSize: o.chunkSize,
        reconnectTimeoutMs: o.reconnectTimeout,
      });
      const announces = [o.goaway ? o.goawayKey : null, o.erpc ? 'capsEx Reconnect' : null].filter((x) => x !== null);
      say(
        `publish ${input === '-' ? 'stdin' : input} → ${displayUrl(url)} (announces ${announces.length > 0 ? announces.join(' + ') : 'no Go Away support'}, speed ${o.speed === 0 ? 'max' : `${o.speed}x`})`,
      );

      const tty = o.progress === true && out.isTTY === true;
      let progressShown = false;
      const clearProgress = (): void => {
        if (tty && progressShown) out.write('\r\x1b[K');
        progressShown = false;
      };
      const line = (s: string): void => {
        clearProgress();
        say(s);
      };
      let firstTs: number | null = null;
      pub.on('frame', ({ item }) => {
        if (firstTs === null && (item.kind === 'keyframe' || item.kind === 'video' || item.kind === 'audio')) firstTs = item.tag.timestamp;
      });
      pub.on('connected', (c) => line(describeConnected(c)));
      pub.on('goaway', (c, reason) => {
        const p = pub.progress();
        line(
          `[conn ${c.index}] ${reason === 'go-away' ? 'Go Away (type 32)' : 'E-RTMP reconnect request'} received at media ${secs(p.mediaMs)}: sending on until the next keyframe`,
        );
      });
      pub.on('closed', (c) => line(describeClosed(c, firstTs ?? 0)));
      pub.on('retry', (r) => line(`  reconnect attempt ${r.attempt} failed (${r.error.message}); retrying in ${r.delayMs} ms`));

      let timer: NodeJS.Timeout | null = null;
      if (o.progress) {
        timer = setInterval(
          () => {
            const s = describeProgress(pub.progress());
            if (tty) {
              out.write(`\r\x1b[K${s}`);
              progressShown = true;
            } else say(s);
          },
          tty ? 200 : 1000,
        );
      }
      const onSignal = (): void => pub.abort();
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
      let report: PublishReport;
      try {
        report = await pub.run();
      } finally {
        if (timer !== null) clearInterval(timer);
        clearProgress();
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
      say(describeReport(report));
      if (o.json) process.stdout.write(`${JSON.stringify(report)}\n`);
      if (!report.ok) process.exitCode = 1;
      if (input === '-') process.stdin.destroy();
    });
}
