/**
 * Prints ffprobe's view of the media in the publisher captures (test/fixtures/*.c2s.bin): the
 * expected values of test/unit/media-telemetry.test.ts. Each capture's client messages are
 * rebuilt into an FLV file (the metadata as a plain `onMetaData` script tag) and probed.
 * Bitrates are computed from ffprobe's packets the way the tracker defines them: bytes of every
 * packet over (last dts − first dts + one frame interval).
 *
 * Usage (repository root): node --import tsx scripts/probe-capture-media.ts
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type FlvTag, encodeFlv } from '../src/client/flv.js';
import { PUBLISHERS, chunkBytes, collectAll, loadCapture, recordMessages } from '../test/helpers/rtmp-fixtures.js';

const SET_DATA_FRAME = Buffer.from('02000d40736574446174614672616d65', 'hex');

function ffprobeJson(args: string[]): unknown {
  const r = spawnSync('ffprobe', ['-v', 'error', '-of', 'json', ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`ffprobe failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as unknown;
}

interface Packet {
  codec_type: string;
  dts_time: string;
  size: string;
  flags: string;
}

/** ffprobe's streams of `file`, with packet counts, bytes, keyframe times (ms) and the bitrate defined as above. */
export function probeFile(file: string): Record<string, unknown> {
  const streams = (
    ffprobeJson(['-show_entries', 'stream=codec_type,codec_name,profile,level,width,height,r_frame_rate,avg_frame_rate,sample_rate,channels', file]) as {
      streams: Record<string, unknown>[];
    }
  ).streams;
  const packets = (ffprobeJson(['-show_entries', 'packet=codec_type,dts_time,size,flags', file]) as { packets: Packet[] }).packets;
  const out: Record<string, unknown> = {};
  for (const s of streams) {
    const kind = s['codec_type'] as string;
    const ps = packets.filter((p) => p.codec_type === kind);
    const ms = (p: Packet): number => Math.round(Number(p.dts_time) * 1000);
    const first = ms(ps[0]!);
    const last = ms(ps.at(-1)!);
    const bytes = ps.reduce((a, p) => a + Number(p.size), 0);
    const frameMs = (last - first) / Math.max(1, ps.length - 1);
    const keyframes = ps.filter((p) => p.flags.startsWith('K')).map(ms);
    out[kind] = {
      ...s,
      packets: ps.length,
      bytes,
      bitrate: Math.round((bytes * 8 * 1000) / (last - first + frameMs)),
      ...(kind === 'video' ? { keyframes } : {}),
    };
  }
  return out;
}

if (process.argv[1]?.endsWith('probe-capture-media.ts')) {
  const dir = mkdtempSync(join(tmpdir(), 'probe-capture-'));
  try {
    for (const p of PUBLISHERS) {
      const { messages } = recordMessages([chunkBytes(loadCapture(p, 'c2s'))], { collect: collectAll });
      const tags: FlvTag[] = [];
      for (const m of messages) {
        if (m.typeId !== 8 && m.typeId !== 9 && m.typeId !== 18) continue;
        let data = Buffer.from(m.payload!, 'hex');
        if (m.typeId === 18 && data.subarray(0, SET_DATA_FRAME.length).equals(SET_DATA_FRAME)) data = data.subarray(SET_DATA_FRAME.length);
        tags.push({ type: m.typeId, timestamp: m.timestamp, data });
      }
      const file = join(dir, `${p}.flv`);
      writeFileSync(file, encodeFlv(tags));
      console.log(p, JSON.stringify(probeFile(file)));
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
