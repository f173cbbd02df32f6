/**
 * Generates test/fixtures/hevc-ertmp.flv and hevc-ertmp.expected.json: an HEVC stream as an
 * E-RTMP publisher sends it (docs/protocol.md, media tag heads), for the media telemetry tests.
 *
 * Debian's ffmpeg encodes 15 frames of lavfi testsrc (640x360, 25 fps, 4:2:0, a keyframe every 5
 * frames, no B-frames, libx265) into an MP4; ffprobe then gives the HEVCDecoderConfigurationRecord
 * (the hvcC, as the stream's extradata) and every packet (length-prefixed NAL units, exactly what
 * an E-RTMP CodedFrames body carries). Each becomes an FLV tag whose body is the RTMP video
 * message: `0x90 'hvc1' hvcC` (keyframe SequenceStart), then per frame `0x80 | frameType << 4 |
 * packetType` `'hvc1'` and the data: keyframes as CodedFrames (packet type 1, a 24-bit
 * composition time offset of 0), inter frames as CodedFramesX (3, no offset). FFmpeg 5.1 cannot
 * write E-RTMP itself.
 *
 * The expected values are ffprobe's view of the MP4: codec, profile, size, frame rate, packets,
 * keyframe times and the bitrate as scripts/probe-capture-media.ts defines it.
 *
 * Usage (repository root): node --import tsx scripts/make-hevc-ertmp-fixture.ts
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type FlvTag, encodeFlv } from '../src/client/flv.js';
import { probeFile } from './probe-capture-media.js';

const outDir = new URL('../test/fixtures/', import.meta.url);

function run(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} failed (${r.status}): ${r.stderr}`);
  return r.stdout;
}

/** ffprobe's `-show_data` hex dump ("00000000: 0104 0800 ...  ascii") → bytes. */
function fromHexDump(dump: string): Buffer {
  const hex = dump
    .split('\n')
    .map((line) => /^[0-9a-f]{8}: ((?:[0-9a-f]{2,4} ?){1,8})/.exec(line)?.[1] ?? '')
    .join('')
    .replace(/ /g, '');
  return Buffer.from(hex, 'hex');
}

const tmp = mkdtempSync(join(tmpdir(), 'hevc-fixture-'));
try {
  const mp4 = join(tmp, 'source.mp4');
  run('ffmpeg', [
    '-hide_banner',
    '-loglevel',
    'error',
    '-y',
    '-f',
    'lavfi',
    '-i',
    'testsrc=size=640x360:rate=25',
    '-frames:v',
    '15',
    '-pix_fmt',
    'yuv420p',
    '-c:v',
    'libx265',
    '-preset',
    'ultrafast',
    '-x265-params',
    'keyint=5:min-keyint=5:scenecut=0:bframes=0:crf=40:info=0:log-level=error',
    '-tag:v',
    'hvc1',
    '-map_metadata',
    '-1',
    '-fflags',
    '+bitexact',
    '-flags:v',
    '+bitexact',
    mp4,
  ]);
  const streams = JSON.parse(run('ffprobe', ['-v', 'error', '-show_streams', '-show_data', '-of', 'json', mp4])) as { streams: { extradata: string }[] };
  const hvcc = fromHexDump(streams.streams[0]!.extradata);
  const packets = JSON.parse(run('ffprobe', ['-v', 'error', '-show_packets', '-show_data', '-of', 'json', mp4])) as {
    packets: { dts_time: string; flags: string; data: string; size: string }[];
  };
  const fourcc = Buffer.from('hvc1', 'latin1');
  const tags: FlvTag[] = [{ type: 9, timestamp: 0, data: Buffer.concat([Buffer.from([0x90]), fourcc, hvcc]) }];
  for (const p of packets.packets) {
    const data = fromHexDump(p.data);
    if (data.length !== Number(p.size)) throw new Error(`hex dump gave ${data.length} bytes, ffprobe says ${p.size}`);
    const key = p.flags.startsWith('K');
    const head = key ? Buffer.from([0x80 | (1 << 4) | 1, ...fourcc, 0, 0, 0]) : Buffer.from([0x80 | (2 << 4) | 3, ...fourcc]);
    tags.push({ type: 9, timestamp: Math.round(Number(p.dts_time) * 1000), data: Buffer.concat([head, data]) });
  }
  const flv = encodeFlv(tags, { audio: false, video: true });
  writeFileSync(new URL('hevc-ertmp.flv', outDir), flv);
  const expected = probeFile(mp4);
  writeFileSync(new URL('hevc-ertmp.expected.json', outDir), `${JSON.stringify(expected, null, 2)}\n`);
  console.log(`hevc-ertmp.flv: ${flv.length} bytes, ${tags.length} tags, hvcC ${hvcc.length} bytes`);
  console.log(JSON.stringify(expected));
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
