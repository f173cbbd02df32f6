import type { MediaSummary } from '../rtmp/media-telemetry.js';

/** `1.5 Mb/s`, `96 kb/s`. */
export function bitrateText(bits: number): string {
  return bits >= 1_000_000 ? `${(bits / 1_000_000).toFixed(1)} Mb/s` : `${Math.round(bits / 1000)} kb/s`;
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)}s`;

/**
 * A publisher's media in one short line: `hevc(hvc1) 1280x720 30fps 2.1 Mb/s gop 2.0s + aac 48kHz 2ch`.
 * The fields come from a client or from the fleet registry: the caller escapes the result (safeText).
 */
export function mediaText(m: MediaSummary | null | undefined): string {
  if (m === null || m === undefined) return '-';
  const video: string[] = [];
  if (m.videoCodec !== null || m.videoFourcc !== null) video.push(m.videoFourcc !== null ? `${m.videoCodec ?? '?'}(${m.videoFourcc})` : m.videoCodec!);
  if (m.width !== null && m.height !== null) video.push(`${m.width}x${m.height}`);
  if (m.fps !== null) video.push(`${Math.round(m.fps * 100) / 100}fps`);
  if (m.videoBitrate !== null) video.push(bitrateText(m.videoBitrate));
  if (m.keyframeIntervalMs !== null) video.push(`gop ${seconds(m.keyframeIntervalMs)}`);
  const audio: string[] = [];
  if (m.audioCodec !== null || m.audioFourcc !== null) audio.push(m.audioCodec ?? m.audioFourcc!);
  if (m.sampleRate !== null) audio.push(`${Math.round(m.sampleRate / 100) / 10}kHz`);
  if (m.channels !== null) audio.push(`${m.channels}ch`);
  if (m.audioBitrate !== null) audio.push(bitrateText(m.audioBitrate));
  const parts = [video.join(' '), audio.join(' ')].filter((p) => p.length > 0);
  return parts.length === 0 ? '-' : parts.join(' + ');
}

/** When a session waiting to move at its next keyframe moves: `next keyframe in ~1.2s (gop 2.0s)`, or null when not known. */
export function keyframeEtaText(m: Pick<MediaSummary, 'nextKeyframeInMs' | 'keyframeIntervalMs'> | null | undefined): string | null {
  if (m === null || m === undefined || m.nextKeyframeInMs === null) return null;
  return `next keyframe in ~${seconds(m.nextKeyframeInMs)}${m.keyframeIntervalMs !== null ? ` (gop ${seconds(m.keyframeIntervalMs)})` : ''}`;
}
