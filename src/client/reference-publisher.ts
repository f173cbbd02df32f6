/**
 * Reference RTMP Go Away publisher (docs/protocol.md#client-reconnect, behaving like the reference FFmpeg patch):
 *
 *  - announces `supportsGoAway: true` (and E-RTMP `capsEx` Reconnect when asked) in `connect`;
 *  - on type 32 (or an E-RTMP `NetConnection.Connect.ReconnectRequest`) keeps sending until the
 *    next video keyframe, then closes TCP **without** FCUnpublish/deleteStream;
 *  - reconnects to the same URL (retrying with backoff, bounded), repeats connect … publish,
 *    re-sends `@setDataFrame onMetaData` and the AVC/AAC sequence headers, and continues from
 *    that keyframe with the source's timestamps, which keep running;
 *  - never drops a frame it has read: what could not be sent yet waits in the queue.
 *
 * The decisions live in `GoAwayState`, a pure state machine (no sockets, no timers) with its own
 * unit tests; `ReferencePublisher` is the thin asynchronous driver around `RtmpPublisher`.
 */
import { EventEmitter } from 'node:events';
import { RtmpPublisher, parseRtmpUrl } from './rtmp-client.js';
import { type FlvTag, type TagKind, FLV_TAG_AUDIO, FLV_TAG_VIDEO, classifyTag, isMediaFrame, setDataFrameBody } from './flv.js';
import { CAPS_EX_RECONNECT, readStatusCode } from '../rtmp/messages.js';
import { MessageType } from '../rtmp/constants.js';

// ── the state machine ─────────────────────────────────────────────────────────────────────────

export type EndReason = 'go-away' | 'reconnect-request' | 'end-of-input' | 'connection-lost' | 'aborted' | 'failed';

/** Frame accounting of one RTMP connection. Media counts exclude decoder configuration and metadata. */
export interface ConnectionStats {
  /** 1-based. */
  index: number;
  video: number;
  keyframes: number;
  audio: number;
  data: number;
  /** Metadata and sequence headers sent (from the source or replayed after a reconnect). */
  config: number;
  /** Of `config`, the ones replayed at the start of this connection. */
  replayed: number;
  /** Timestamp of the first / last media frame sent on this connection. */
  firstTimestamp: number | null;
  lastTimestamp: number | null;
  /** Why this connection ended; null while it is open. */
  endReason: EndReason | null;
}

export interface SendItem {
  tag: FlvTag;
  kind: TagKind;
  /** Replayed configuration (metadata / sequence header) at the start of a new connection. */
  replay: boolean;
}

/** What the driver must do next. */
export type Action =
  | { type: 'connect' }
  | { type: 'send'; item: SendItem }
  /** Going away and the next frame is a keyframe: close this connection (no FCUnpublish). */
  | { type: 'close'; reason: 'go-away' | 'reconnect-request' }
  /** Nothing queued: read more from the source (or finish when it has ended). */
  | { type: 'read' }
  /** Source ended and everything was sent. */
  | { type: 'finish' };

export interface Totals {
  video: number;
  audio: number;
  data: number;
  config: number;
}

const emptyTotals = (): Totals => ({ video: 0, audio: 0, data: 0, config: 0 });

function countInto(t: Totals, kind: TagKind): void {
  if (kind === 'keyframe' || kind === 'video') t.video++;
  else if (kind === 'audio') t.audio++;
  else if (kind === 'data' || kind === 'sequence-end') t.data++;
  else t.config++;
}

/**
 * Pure Go Away logic. Feed it the source's tags (`enqueue`), ask `next()` what to do, and report
 * what happened (`sent`, `connected`, `goAway`, `closed`, `lost`).
 */
export class GoAwayState {
  readonly connections: ConnectionStats[] = [];
  /** Tags read from the source, by kind. */
  readonly read: Totals = emptyTotals();
  /** Media frames and config written to a connection (replays counted in `config`). */
  readonly sent: Totals = emptyTotals();
  /** Frames skipped after a connection was lost (the new connection must start at a keyframe). */
  readonly dropped: Totals = emptyTotals();

  private readonly queue: SendItem[] = [];
  private replayQueue: SendItem[] = [];
  private metadata: FlvTag | null = null;
  private videoConfig: FlvTag | null = null;
  private audioConfig: FlvTag | null = null;
  private current: ConnectionStats | null = null;
  private leaving: 'go-away' | 'reconnect-request' | null = null;
  private ended = false;
  private hasVideo = false;
  /** After a lost connection: frames before the next keyframe cannot be decoded on the new one. */
  private needKeyframe = false;

  /** A tag read from the source, in source order. */
  enqueue(tag: FlvTag): void {
    const kind = classifyTag(tag);
    if (tag.type === FLV_TAG_VIDEO) this.hasVideo = true;
    countInto(this.read, kind);
    this.queue.push({ tag, kind, replay: false });
  }

  /** The source has no more tags. */
  endOfInput(): void {
    this.ended = true;
  }

  get inputEnded(): boolean {
    return this.ended;
  }

  /** Tags read but not sent yet (nothing here is ever dropped by a Go Away). */
  get queued(): number {
    return this.queue.length;
  }

  get connection(): ConnectionStats | null {
    return this.current;
  }

  /** Go Away (or reconnect request) received on the current connection and not acted on yet. */
  get goingAway(): 'go-away' | 'reconnect-request' | null {
    return this.leaving;
  }

  next(): Action {
    if (this.current === null) {
      if (this.queue.length === 0) return this.ended ? { type: 'finish' } : { type: 'read' };
      return { type: 'connect' };
    }
    if (this.replayQueue.length > 0) return { type: 'send', item: this.replayQueue[0]! };
    for (;;) {
      const head = this.queue[0];
      if (head === undefined) return this.ended ? { type: 'finish' } : { type: 'read' };
      if (this.needKeyframe && this.hasVideo && (head.kind === 'video' || head.kind === 'audio' || head.kind === 'data' || head.kind === 'sequence-end')) {
        // Only after a lost connection: these cannot be decoded without the keyframe before them.
        countInto(this.dropped, head.kind);
        this.queue.shift();
        continue;
      }
      if (head.kind === 'keyframe') this.needKeyframe = false;
      if (this.leaving !== null && this.isSwitchPoint(head)) return { type: 'close', reason: this.leaving };
      return { type: 'send', item: head };
    }
  }

  /**
   * A clean place to move to the next connection: a video keyframe, or (audio-only source) any
   * audio frame. At least one media frame must have gone out on this connection since it began,
   * so a reconnect always makes progress.
   */
  private isSwitchPoint(item: SendItem): boolean {
    const c = this.current!;
    const progressed = c.video + c.audio > 0;
    if (!progressed) return false;
    if (this.hasVideo) return item.kind === 'keyframe';
    return item.kind === 'audio';
  }

  /** The item returned by `next()` was written to the connection. */
  markSent(item: SendItem): void {
    const c = this.current;
    if (c === null) throw new Error('markSent() without a connection');
    if (item.replay) {
      if (this.replayQueue[0] !== item) throw new Error('markSent() out of order (replay)');
      this.replayQueue.shift();
      c.replayed++;
    } else {
      if (this.queue[0] !== item) throw new Error('markSent() out of order');
      this.queue.shift();
      this.remember(item);
    }
    countInto(this.sent, item.kind);
    switch (item.kind) {
      case 'keyframe':
        c.keyframes++;
        c.video++;
        break;
      case 'video':
        c.video++;
        break;
      case 'audio':
        c.audio++;
        break;
      case 'data':
      case 'sequence-end':
        c.data++;
        break;
      default:
        c.config++;
    }
    if (isMediaFrame(item.kind)) {
      if (c.firstTimestamp === null) c.firstTimestamp = item.tag.timestamp;
      c.lastTimestamp = item.tag.timestamp;
    }
  }

  /** The last configuration seen in source order is what the frames after it need. */
  private remember(item: SendItem): void {
    if (item.kind === 'metadata') this.metadata = item.tag;
    else if (item.kind === 'video-config') this.videoConfig = item.tag;
    else if (item.kind === 'audio-config') this.audioConfig = item.tag;
  }

  /**
   * A new connection is publishing. Returns its stats; on a reconnect, the metadata and
   * sequence headers are queued for replay, stamped with the timestamp of the frame they
   * precede so the new connection's timeline starts where the old one stopped.
   */
  connected(): ConnectionStats {
    if (this.current !== null) throw new Error('connected() while a connection is open');
    const c: ConnectionStats = {
      index: this.connections.length + 1,
      video: 0,
      keyframes: 0,
      audio: 0,
      data: 0,
      config: 0,
      replayed: 0,
      firstTimestamp: null,
      lastTimestamp: null,
      endReason: null,
    };
    this.connections.push(c);
    this.current = c;
    this.leaving = null;
    const at = this.queue[0]?.tag.timestamp ?? this.lastSentTimestamp() ?? 0;
    this.replayQueue = [];
    for (const [tag, kind] of [
      [this.metadata, 'metadata'],
      [this.videoConfig, 'video-config'],
      [this.audioConfig, 'audio-config'],
    ] as const) {
      if (tag !== null) this.replayQueue.push({ tag: { type: tag.type, timestamp: at, data: tag.data }, kind, replay: true });
    }
    return c;
  }

  private lastSentTimestamp(): number | null {
    for (let i = this.connections.length - 1; i >= 0; i--) {
      const t = this.connections[i]!.lastTimestamp;
      if (t !== null) return t;
    }
    return null;
  }

  /** Type 32 (or E-RTMP reconnect request) on the current connection. Idempotent. */
  goAway(reason: 'go-away' | 'reconnect-request' = 'go-away'): void {
    if (this.current !== null && this.leaving === null) this.leaving = reason;
  }

  /** The current connection was closed by us (`close` action, end of input, abort). */
  closed(reason: EndReason): ConnectionStats | null {
    const c = this.current;
    if (c === null) return null;
    c.endReason = reason;
    this.current = null;
    this.leaving = null;
    this.replayQueue = [];
    return c;
  }

  /**
   * The current connection broke without us closing it. Frames already written may not have
   * arrived; the next connection must start at a keyframe, so frames before it are dropped
   * (and counted in `dropped`). A Go Away switch never comes here.
   */
  lost(): ConnectionStats | null {
    const c = this.closed('connection-lost');
    if (c !== null && this.hasVideo && this.queue[0]?.kind !== 'keyframe') this.needKeyframe = true;
    return c;
  }
}

// ── the driver ────────────────────────────────────────────────────────────────────────────────

export interface ReferencePublisherOptions {
  /** Announce `supportsGoAway: true` (default true). */
  goAway?: boolean;
  /** Key used to announce Go Away: the spec's `supportsGoAway` (default) or the early patch's `goaway`. */
  goAwayKey?: 'supportsGoAway' | 'goaway';
  /** Announce E-RTMP `capsEx` Reconnect and honour `NetConnection.Connect.ReconnectRequest`. */
  erpc?: boolean;
  /** Playback speed: 1 = real time (default), 2 = twice as fast, 0 = as fast as possible. */
  speed?: number;
  /** Set Chunk Size sent before connect (default 4096, like OBS and FFmpeg). */
  chunkSize?: number;
  /** Bound of one reconnect (all its attempts), like FFmpeg's `rtmp_reconnect_time` (default 10 s). */
  reconnectTimeoutMs?: number;
  /** First retry delay; doubles up to `maxBackoffMs` (defaults 100 ms and 2 s). */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** Timeout of one connect … publish exchange (default 5 s). */
  publishTimeoutMs?: number;
  /** Clock, for tests. */
  now?: () => number;
}

export interface ConnectionReport extends ConnectionStats {
  url: string;
  /** Epoch ms: TCP connect began (first attempt), NetStream.Publish.Start, Go Away received, close started, socket closed. */
  connectStartedAt: number;
  publishedAt: number;
  goAwayAt: number | null;
  closingAt: number | null;
  closedAt: number | null;
  /** Attempts it took to get this connection publishing. */
  attempts: number;
  /** For a reconnect: ms from the previous connection's close to this one publishing. */
  reconnectMs: number | null;
  /** Wall clock of the first and last media frame written on this connection. */
  firstFrameAt: number | null;
  lastFrameAt: number | null;
  bytesSent: number;
}

export interface PublishReport {
  url: string;
  ok: boolean;
  error: string | null;
  connections: ConnectionReport[];
  read: Totals;
  sent: Totals;
  dropped: Totals;
  /** Tags read but never sent (only when publishing failed). */
  unsent: number;
  startedAt: number;
  endedAt: number;
  /** Media duration sent, from the first to the last media timestamp (ms). */
  mediaMs: number;
}

export interface ProgressInfo {
  connection: number;
  /** Media time sent (ms since the first frame). */
  mediaMs: number;
  wallMs: number;
  video: number;
  audio: number;
  goingAway: boolean;
}

export interface ReferencePublisherEvents {
  connected: [ConnectionReport];
  goaway: [ConnectionReport, 'go-away' | 'reconnect-request'];
  closed: [ConnectionReport];
  retry: [{ attempt: number; delayMs: number; error: Error }];
  /** A frame (media, data or config) was written; `connection` is 1-based. */
  frame: [{ connection: number; item: SendItem }];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Sums per-connection media counts. */
export function totalMedia(connections: readonly ConnectionStats[]): { video: number; audio: number } {
  return connections.reduce((a, c) => ({ video: a.video + c.video, audio: a.audio + c.audio }), { video: 0, audio: 0 });
}

/**
 * Publishes an FLV tag source to an RTMP URL with Go Away support. `run()` resolves with the
 * report once the source has ended and everything was sent (or publishing failed for good).
 */
export class ReferencePublisher extends EventEmitter<ReferencePublisherEvents> {
  readonly state = new GoAwayState();
  readonly url: string;
  /** Where connections go: the URL given, unless an E-RTMP reconnect request named another tcUrl. */
  private currentUrl: string;
  private readonly streamKey: string;
  private readonly opts: Required<Omit<ReferencePublisherOptions, 'goAwayKey'>> & { goAwayKey: 'supportsGoAway' | 'goaway' };
  private client: RtmpPublisher | null = null;
  private report: ConnectionReport | null = null;
  private readonly reports: ConnectionReport[] = [];
  private wake: (() => void) | null = null;
  private aborted = false;
  private firstTs: number | null = null;
  private wallAtFirst = 0;
  private lastClosedAt: number | null = null;
  private startedAt = 0;

  constructor(
    private readonly source: AsyncIterable<FlvTag>,
    url: string,
    options: ReferencePublisherOptions = {},
  ) {
    super();
    this.url = url;
    this.currentUrl = url;
    this.streamKey = parseRtmpUrl(url).streamKey;
    this.opts = {
      goAway: options.goAway ?? true,
      goAwayKey: options.goAwayKey ?? 'supportsGoAway',
      erpc: options.erpc ?? false,
      speed: options.speed ?? 1,
      chunkSize: options.chunkSize ?? 4096,
      reconnectTimeoutMs: options.reconnectTimeoutMs ?? 10_000,
      initialBackoffMs: options.initialBackoffMs ?? 100,
      maxBackoffMs: options.maxBackoffMs ?? 2000,
      publishTimeoutMs: options.publishTimeoutMs ?? 5000,
      now: options.now ?? Date.now,
    };
    if (!(this.opts.speed >= 0) || !Number.isFinite(this.opts.speed)) throw new RangeError(`speed must be a number ≥ 0, got ${options.speed}`);
  }

  /** Connections so far (the open one included). */
  get connections(): readonly ConnectionReport[] {
    return this.reports;
  }

  progress(): ProgressInfo {
    const c = this.report;
    const all = totalMedia(this.reports);
    const last = this.reports.reduce<number | null>((a, r) => r.lastTimestamp ?? a, null);
    return {
      connection: c?.index ?? this.reports.length,
      mediaMs: last === null || this.firstTs === null ? 0 : last - this.firstTs,
      wallMs: this.startedAt === 0 ? 0 : this.opts.now() - this.startedAt,
      video: all.video,
      audio: all.audio,
      goingAway: this.state.goingAway !== null,
    };
  }

  /** Stops publishing: the current connection is closed cleanly and `run()` resolves (not ok). */
  abort(): void {
    this.aborted = true;
    this.wakeUp();
  }

  async run(): Promise<PublishReport> {
    this.startedAt = this.opts.now();
    const it = this.source[Symbol.asyncIterator]();
    let error: Error | null = null;
    try {
      for (;;) {
        if (this.aborted) throw new Error('aborted');
        const action = this.state.next();
        if (action.type === 'finish') break;
        if (action.type === 'read') {
          const r = await it.next();
          if (r.done) this.state.endOfInput();
          else this.state.enqueue(r.value);
          continue;
        }
        if (action.type === 'connect') {
          await this.connect();
          continue;
        }
        if (action.type === 'close') {
          await this.closeConnection(action.reason);
          continue;
        }
        // send: pace media by its timestamp, waking early when a Go Away changes the plan
        const item = action.item;
        if (!item.replay) {
          const due = this.dueAt(item.tag.timestamp);
          const wait = due - this.opts.now();
          if (wait > 1) {
            await this.sleepUnlessWoken(wait);
            continue; // re-evaluate: the plan may have changed while waiting
          }
        }
        await this.write(item);
      }
      if (this.client !== null) await this.closeConnection('end-of-input', true);
    } catch (err) {
      error = err as Error;
      if (this.client !== null) {
        // Aborted, or the source failed (bad FLV, producer died): end the publish cleanly.
        const c = this.client;
        this.client = null;
        const stats = this.state.closed(this.aborted ? 'aborted' : 'failed');
        await c.unpublish().catch(() => undefined);
        this.finishReport(stats);
      }
      await it.return?.(undefined);
    }
    const sentMedia = this.reports.filter((r) => r.firstTimestamp !== null);
    const first = sentMedia[0]?.firstTimestamp ?? null;
    const last = sentMedia.at(-1)?.lastTimestamp ?? null;
    return {
      url: this.url,
      ok: error === null && this.state.queued === 0 && this.state.dropped.video + this.state.dropped.audio === 0,
      error: error === null ? null : error.message,
      connections: this.reports,
      read: { ...this.state.read },
      sent: { ...this.state.sent },
      dropped: { ...this.state.dropped },
      unsent: this.state.queued,
      startedAt: this.startedAt,
      endedAt: this.opts.now(),
      mediaMs: first === null || last === null ? 0 : last - first,
    };
  }

  /** Wall time at which a frame with this timestamp is due (real time × speed, from the first frame). */
  private dueAt(ts: number): number {
    if (this.firstTs === null) {
      this.firstTs = ts;
      this.wallAtFirst = this.opts.now();
    }
    if (this.opts.speed === 0) return 0;
    return this.wallAtFirst + (ts - this.firstTs) / this.opts.speed;
  }

  private sleepUnlessWoken(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(done, ms);
      function done(): void {
        clearTimeout(t);
        resolve();
      }
      this.wake = done;
    }).then(() => {
      this.wake = null;
    });
  }

  private wakeUp(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private async write(item: SendItem): Promise<void> {
    const client = this.client!;
    const report = this.report!;
    const isMeta = item.kind === 'metadata';
    const typeId = item.tag.type === FLV_TAG_AUDIO ? MessageType.Audio : item.tag.type === FLV_TAG_VIDEO ? MessageType.Video : MessageType.DataAmf0;
    const body = isMeta ? setDataFrameBody(item.tag.data) : item.tag.data;
    const ok = client.sendMedia(typeId, item.tag.timestamp, body);
    this.state.markSent(item);
    this.syncReport();
    report.bytesSent += body.length;
    if (isMediaFrame(item.kind)) {
      const now = this.opts.now();
      report.firstFrameAt ??= now;
      report.lastFrameAt = now;
    }
    this.emit('frame', { connection: report.index, item });
    if (!ok) await this.drained(client);
  }

  private drained(client: RtmpPublisher): Promise<void> {
    const s = client.socket;
    if (s === null || s.destroyed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        s.off('drain', done);
        s.off('close', done);
        resolve();
      };
      s.once('drain', done);
      s.once('close', done);
    });
  }

  /** Copies the state machine's counters of the current connection into its report. */
  private syncReport(): void {
    const c = this.state.connection;
    if (c !== null && this.report !== null) Object.assign(this.report, c);
  }

  private finishReport(stats: ConnectionStats | null): void {
    if (stats === null || this.report === null) return;
    Object.assign(this.report, stats);
    this.report.closedAt ??= this.opts.now();
    this.lastClosedAt = this.report.closedAt;
    const r = this.report;
    this.report = null;
    this.emit('closed', r);
  }

  /** Connects and publishes, retrying with exponential backoff until `reconnectTimeoutMs`. */
  private async connect(): Promise<void> {
    const started = this.opts.now();
    const deadline = started + this.opts.reconnectTimeoutMs;
    let delay = this.opts.initialBackoffMs;
    for (let attempt = 1; ; attempt++) {
      if (this.aborted) throw new Error('aborted');
      const client = new RtmpPublisher(this.targetUrl(), {
        supportsGoAway: this.opts.goAway,
        goAwayKey: this.opts.goAwayKey,
        capsEx: this.opts.erpc ? CAPS_EX_RECONNECT : undefined,
        chunkSize: this.opts.chunkSize,
        flashVer: 'FMLE/3.0 (compatible; rtmp-goaway-proxy reference publisher)',
        timeoutMs: Math.max(1, Math.min(this.opts.publishTimeoutMs, deadline - this.opts.now())),
      });
      client.on('error', () => undefined); // surfaced through publish() or 'close'
      try {
        await client.publish();
      } catch (err) {
        client.destroy();
        const now = this.opts.now();
        if (now + delay > deadline) {
          throw new Error(`could not publish to ${this.url} within ${this.opts.reconnectTimeoutMs} ms (${attempt} attempts): ${(err as Error).message}`);
        }
        this.emit('retry', { attempt, delayMs: delay, error: err as Error });
        await sleep(delay);
        delay = Math.min(delay * 2, this.opts.maxBackoffMs);
        continue;
      }
      this.attach(client, started, attempt);
      return;
    }
  }

  private targetUrl(): string {
    return this.currentUrl;
  }

  private attach(client: RtmpPublisher, connectStartedAt: number, attempts: number): void {
    const stats = this.state.connected();
    const now = this.opts.now();
    const report: ConnectionReport = {
      ...stats,
      url: this.targetUrl(),
      connectStartedAt,
      publishedAt: now,
      goAwayAt: null,
      closingAt: null,
      closedAt: null,
      attempts,
      reconnectMs: this.lastClosedAt === null ? null : now - this.lastClosedAt,
      firstFrameAt: null,
      lastFrameAt: null,
      bytesSent: 0,
    };
    this.client = client;
    this.report = report;
    this.reports.push(report);
    client.on('goaway', () => this.onGoAway(client, 'go-away'));
    client.on('command', (cmd) => {
      if (!this.opts.erpc || cmd.name !== 'onStatus' || readStatusCode(cmd) !== 'NetConnection.Connect.ReconnectRequest') return;
      const info = cmd.args[0] as Record<string, unknown> | undefined;
      const tcUrl = info !== undefined && typeof info['tcUrl'] === 'string' ? info['tcUrl'] : null;
      if (tcUrl !== null) {
        // tcUrl names server and application; the stream key stays ours (E-RTMP v2 reconnect).
        const next = `${tcUrl.replace(/\/+$/, '')}/${encodeURIComponent(this.streamKey)}`;
        try {
          parseRtmpUrl(next);
          this.currentUrl = next;
        } catch {
          /* not an rtmp:// URL: keep the same one */
        }
      }
      this.onGoAway(client, 'reconnect-request');
    });
    client.on('close', () => {
      if (this.client !== client) return; // closed by us
      // The server or the network closed it: reconnect, resuming at the next keyframe.
      this.client = null;
      if (this.report !== null) this.report.closedAt = this.opts.now();
      this.finishReport(this.state.lost());
      this.wakeUp();
    });
    this.emit('connected', report);
  }

  private onGoAway(client: RtmpPublisher, reason: 'go-away' | 'reconnect-request'): void {
    if (this.client !== client || this.state.goingAway !== null) return;
    this.state.goAway(reason);
    if (this.report !== null) {
      this.report.goAwayAt = this.opts.now();
      this.emit('goaway', this.report, reason);
    }
    this.wakeUp();
  }

  /**
   * Go Away / reconnect request: TCP close without FCUnpublish/deleteStream (docs/protocol.md#client-reconnect).
   * End of input: the clean FCUnpublish + deleteStream + close of a publisher that stops.
   * Either way the socket's queued bytes are flushed before the FIN, so nothing written is lost.
   */
  private async closeConnection(reason: EndReason, clean = false): Promise<void> {
    const client = this.client;
    if (client === null) return;
    this.client = null;
    if (this.report !== null) this.report.closingAt = this.opts.now();
    const stats = this.state.closed(reason);
    if (clean) await client.unpublish();
    else await client.end();
    if (this.report !== null) this.report.closedAt = this.opts.now();
    this.finishReport(stats);
  }
}
