import { amf0Object } from '../../src/rtmp/amf0.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { encodeAmf0 } from '../../src/rtmp/amf0.js';
import { hashBody } from './recording-rtmp-server.js';

/**
 * Deterministic FLV-like media for tests: AVC video (keyframe every `gop` frames) and AAC audio,
 * in timestamp order as a publisher sends them, every body unique (so a receiver's hashes tell
 * exactly which frames arrived), plus the decoder configuration a publisher sends first.
 */
export interface MediaMessage {
  typeId: number;
  timestamp: number;
  payload: Buffer;
  kind: 'keyframe' | 'video' | 'audio';
  hash: string;
}

export interface SyntheticMediaOptions {
  gop?: number;
  fps?: number;
  keyframeSize?: number;
  frameSize?: number;
  audio?: boolean;
  /** Distinguishes the bodies of several streams. */
  seed?: number;
  /** First timestamp (ms). */
  start?: number;
}

export class SyntheticMedia {
  readonly gop: number;
  private readonly fps: number;
  private readonly keyframeSize: number;
  private readonly frameSize: number;
  private readonly audio: boolean;
  private readonly seed: number;
  private readonly start: number;
  private v = 0;
  private a = 0;

  constructor(opts: SyntheticMediaOptions = {}) {
    this.gop = opts.gop ?? 30;
    this.fps = opts.fps ?? 30;
    this.keyframeSize = opts.keyframeSize ?? 6000;
    this.frameSize = opts.frameSize ?? 900;
    this.audio = opts.audio ?? true;
    this.seed = opts.seed ?? 1;
    this.start = opts.start ?? 0;
  }

  /** `@setDataFrame onMetaData`, AVC sequence header, AAC sequence header (bodies). */
  config(): { typeId: number; payload: Buffer }[] {
    const meta = encodeAmf0(['@setDataFrame', 'onMetaData', amf0Object({ width: 640, height: 360, framerate: this.fps, videocodecid: 7, audiocodecid: 10 })]);
    const avc = Buffer.from([0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, this.seed & 0xff]);
    const aac = Buffer.from([0xaf, 0, 0x11, 0x90]);
    return [
      { typeId: MessageType.DataAmf0, payload: meta },
      { typeId: MessageType.Video, payload: avc },
      { typeId: MessageType.Audio, payload: aac },
    ];
  }

  private videoTs(i: number): number {
    return this.start + Math.round((i * 1000) / this.fps);
  }

  private audioTs(i: number): number {
    return this.start + Math.round((i * 1024 * 1000) / 48_000);
  }

  /** The next message in timestamp order (video first on ties). */
  next(): MediaMessage {
    if (!this.audio || this.videoTs(this.v) <= this.audioTs(this.a)) {
      const i = this.v++;
      const key = i % this.gop === 0;
      const body = Buffer.alloc(key ? this.keyframeSize : this.frameSize, (i * 7 + this.seed) & 0xff);
      body[0] = key ? 0x17 : 0x27;
      body[1] = 1;
      body.writeUInt32BE(i, 5);
      body.writeUInt32BE(this.seed, 9);
      return { typeId: MessageType.Video, timestamp: this.videoTs(i), payload: body, kind: key ? 'keyframe' : 'video', hash: hashBody(body) };
    }
    const i = this.a++;
    const body = Buffer.alloc(180, (i * 3 + this.seed) & 0xff);
    body[0] = 0xaf;
    body[1] = 1;
    body.writeUInt32BE(i, 2);
    body.writeUInt32BE(this.seed, 6);
    return { typeId: MessageType.Audio, timestamp: this.audioTs(i), payload: body, kind: 'audio', hash: hashBody(body) };
  }
}
