/**
 * What was sent vs what the backends recorded, frame by frame (the demo's frame check and the
 * end-to-end tests' zero-loss assertion).
 *
 * nginx-rtmp `record` rebases every file's timestamps to its first message (docs/protocol.md#backend-servers), so a
 * recorded frame is identified by its type and payload hash, and each file's timestamp offset is
 * found from its first video frame (a keyframe: unique content). Then every recorded frame must
 * be a source frame at `recorded ts + offset`, each source frame must appear exactly once in the
 * union of the files, and each file must hold one contiguous run of the source (no gap inside,
 * the runs tiling the source end to end).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type FlvTag, type TagKind, classifyTag, isMediaFrame, parseFlv } from '../client/flv.js';

export interface Frame {
  type: 'video' | 'audio';
  ts: number;
  hash: string;
  keyframe: boolean;
}

/** The media frame a tag carries, or null for metadata, sequence headers and other data. */
export function frameOf(t: FlvTag, kind: TagKind = classifyTag(t)): Frame | null {
  if (!isMediaFrame(kind)) return null;
  return { type: t.type === 9 ? 'video' : 'audio', ts: t.timestamp, hash: createHash('sha1').update(t.data).digest('hex'), keyframe: kind === 'keyframe' };
}

export function mediaFrames(tags: readonly FlvTag[]): Frame[] {
  const out: Frame[] = [];
  for (const t of tags) {
    const f = frameOf(t);
    if (f !== null) out.push(f);
  }
  return out;
}

export function readRecording(path: string): { frames: Frame[]; truncated: boolean } {
  const { tags, truncated } = parseFlv(readFileSync(path));
  return { frames: mediaFrames(tags), truncated };
}

export interface FileMatch {
  path: string;
  video: number;
  audio: number;
  /** Source timestamp = recorded timestamp + offset (null when the file could not be placed). */
  offset: number | null;
  /** Index range [from, to) of the source frames this file holds. */
  from: number;
  to: number;
  /** The file's frames are one contiguous run of the source. */
  contiguous: boolean;
  truncated: boolean;
}

export interface Comparison {
  files: FileMatch[];
  sent: { video: number; audio: number };
  received: { video: number; audio: number };
  missing: Frame[];
  duplicated: Frame[];
  /** Recorded frames that match no source frame at their (shifted) timestamp. */
  unexpected: Frame[];
  /** Files sorted by source position tile [0, n) with no gap or overlap. */
  tiled: boolean;
  zeroLoss: boolean;
}

const keyOf = (f: { type: string; ts: number; hash: string }): string => `${f.type}:${f.ts}:${f.hash}`;

export function compareRecordings(source: readonly Frame[], paths: readonly string[]): Comparison {
  const index = new Map<string, number>();
  source.forEach((f, i) => index.set(keyOf(f), i));
  const seen = new Uint32Array(source.length);
  const files: FileMatch[] = [];
  const duplicated: Frame[] = [];
  const unexpected: Frame[] = [];
  for (const path of paths) {
    const { frames, truncated } = readRecording(path);
    const firstVideo = frames.find((f) => f.type === 'video');
    const candidates = firstVideo === undefined ? [] : source.filter((s) => s.type === 'video' && s.hash === firstVideo.hash);
    const offset = candidates.length === 1 ? candidates[0]!.ts - firstVideo!.ts : null;
    const positions: number[] = [];
    for (const f of frames) {
      const i = offset === null ? undefined : index.get(keyOf({ ...f, ts: f.ts + offset }));
      if (i === undefined) {
        unexpected.push(f);
        continue;
      }
      if (seen[i]! > 0) duplicated.push(source[i]!);
      seen[i]!++;
      positions.push(i);
    }
    const sorted = [...positions].sort((a, b) => a - b);
    const from = sorted[0] ?? 0;
    const to = (sorted.at(-1) ?? -1) + 1;
    files.push({
      path,
      video: frames.filter((f) => f.type === 'video').length,
      audio: frames.filter((f) => f.type === 'audio').length,
      offset,
      from,
      to,
      contiguous: new Set(positions).size === positions.length && to - from === positions.length,
      truncated,
    });
  }
  const missing = source.filter((_, i) => seen[i] === 0);
  const byPos = [...files].filter((f) => f.to > f.from).sort((a, b) => a.from - b.from);
  let tiled = byPos.length > 0 && byPos[0]!.from === 0 && byPos.at(-1)!.to === source.length;
  for (let k = 1; k < byPos.length; k++) if (byPos[k]!.from !== byPos[k - 1]!.to) tiled = false;
  const count = (fs: readonly { type: string }[], t: string): number => fs.filter((f) => f.type === t).length;
  const received = { video: files.reduce((a, f) => a + f.video, 0), audio: files.reduce((a, f) => a + f.audio, 0) };
  return {
    files,
    sent: { video: count(source, 'video'), audio: count(source, 'audio') },
    received,
    missing,
    duplicated,
    unexpected,
    tiled,
    zeroLoss: missing.length === 0 && duplicated.length === 0 && unexpected.length === 0 && tiled && files.every((f) => f.contiguous && !f.truncated),
  };
}

/** A short human summary for assertion messages and test diagnostics. */
export function describeComparison(c: Comparison): string {
  const files = c.files.map(
    (f) =>
      `${f.path.split('/').slice(-3).join('/')}: ${f.video} video + ${f.audio} audio, source[${f.from}, ${f.to}), offset ${f.offset}${f.contiguous ? '' : ' NOT CONTIGUOUS'}${f.truncated ? ' TRUNCATED' : ''}`,
  );
  return [
    `sent ${c.sent.video} video + ${c.sent.audio} audio; recorded ${c.received.video} + ${c.received.audio}`,
    ...files,
    `missing ${c.missing.length}, duplicated ${c.duplicated.length}, unexpected ${c.unexpected.length}, tiled ${c.tiled}`,
    ...c.missing.slice(0, 5).map((f) => `  missing ${f.type} @${f.ts}`),
    ...c.duplicated.slice(0, 5).map((f) => `  duplicated ${f.type} @${f.ts}`),
  ].join('\n');
}
