import { spawnSync } from 'node:child_process';

export interface ProbedPacket {
  type: 'video' | 'audio';
  /** Decode timestamp in ms (FLV's time base is 1/1000). */
  dts: number;
  size: number;
  keyframe: boolean;
}

/** Every audio/video packet ffprobe reads from a media file, in file order. */
export function ffprobePackets(ffprobe: string, file: string): ProbedPacket[] {
  const r = spawnSync(ffprobe, ['-v', 'error', '-show_entries', 'packet=codec_type,dts,size,flags', '-of', 'json', file], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  if (r.status !== 0) throw new Error(`ffprobe ${file} failed (${r.status}): ${r.stderr}`);
  const json = JSON.parse(r.stdout) as { packets?: { codec_type: string; dts?: number; size: string; flags: string }[] };
  return (json.packets ?? [])
    .filter((p) => p.codec_type === 'video' || p.codec_type === 'audio')
    .map((p) => ({ type: p.codec_type as 'video' | 'audio', dts: Number(p.dts), size: Number(p.size), keyframe: p.flags.startsWith('K') }));
}

export function ffprobeCounts(ffprobe: string, file: string): { video: number; audio: number } {
  const p = ffprobePackets(ffprobe, file);
  return { video: p.filter((x) => x.type === 'video').length, audio: p.filter((x) => x.type === 'audio').length };
}
