/**
 * What a decoder configuration says about a stream: picture size and profile from an
 * AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3) or HEVCDecoderConfigurationRecord
 * (§8.3.3) and the sequence parameter set inside it (H.264 §7.3.2.1.1, H.265 §7.3.2.2), or from
 * an AV1CodecConfigurationRecord and its sequence header OBU (AV1 ISOBMFF binding §2.3, AV1
 * §5.5.1); sample
 * rate and channels from an AAC AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1), an Opus ID
 * header (RFC 7845 §5.1) or an MP3 frame header.
 *
 * The bytes come straight from a publisher. Every reader here is pure, throws nothing, allocates
 * only its small result, and does work bounded by a fixed cap (not by what a length field
 * claims): a truncated or malformed configuration gives null ("unknown").
 */

export interface PictureInfo {
  width: number;
  height: number;
  /** ffprobe's profile name ("High", "Main" …), null when not one it names. */
  profile: string | null;
  /** The level as coded: H.264 level_idc ×10 (31 = 3.1), H.265 ×30 (93 = 3.1), AV1 seq_level_idx. */
  level: number;
}

export interface SoundInfo {
  sampleRate: number | null;
  channels: number | null;
  /** ffprobe's profile name ("LC", "HE-AAC" …) where the configuration says it. */
  profile: string | null;
}

/** Largest picture side believed (H.264 and H.265 levels top out at 8192 × 4320 or 16888 wide). */
const MAX_SIDE = 16384;
/** A configuration record carrying more parameter-set entries than this is not looked into further. */
const MAX_PARAMETER_SETS = 32;

/**
 * MSB-first bit reader over a NAL unit's bytes that drops emulation-prevention bytes (a 0x03
 * after two 0x00, H.264/H.265 §7.4.1) as it goes, so no unescaped copy is made. Reading past
 * the end, or an Exp-Golomb code longer than 32 bits, sets `bad` and yields zeros from then on:
 * every loop over the reader therefore ends, and the caller checks `bad` once at the end.
 */
class BitReader {
  bad = false;
  private cur = 0;
  private left = 0;
  private zeros = 0;

  constructor(
    private readonly b: Uint8Array,
    private pos: number,
    private readonly end: number,
    private readonly unescape: boolean,
  ) {}

  private load(): boolean {
    if (this.pos >= this.end) {
      this.bad = true;
      return false;
    }
    let v = this.b[this.pos++]!;
    if (this.unescape) {
      if (this.zeros >= 2 && v === 3) {
        this.zeros = 0;
        if (this.pos >= this.end) {
          this.bad = true;
          return false;
        }
        v = this.b[this.pos++]!;
      }
      this.zeros = v === 0 ? this.zeros + 1 : 0;
    }
    this.cur = v;
    this.left = 8;
    return true;
  }

  bit(): number {
    if (this.left === 0 && (this.bad || !this.load())) return 0;
    this.left--;
    return (this.cur >> this.left) & 1;
  }

  /** Up to 32 bits, unsigned. */
  bits(n: number): number {
    let v = 0;
    for (let i = 0; i < n; i++) v = v * 2 + this.bit();
    return v;
  }

  skip(n: number): void {
    for (let i = 0; i < n && !this.bad; i++) this.bit();
  }

  /** ue(v): Exp-Golomb, at most 32 leading zeros. */
  ue(): number {
    let lz = 0;
    while (this.bit() === 0) {
      if (this.bad || ++lz > 32) {
        this.bad = true;
        return 0;
      }
    }
    return lz === 0 ? 0 : 2 ** lz - 1 + this.bits(lz);
  }

  /** se(v). */
  se(): number {
    const k = this.ue();
    return k % 2 === 1 ? (k + 1) / 2 : -k / 2;
  }
}

function u16(b: Uint8Array, at: number): number {
  return (b[at]! << 8) | b[at + 1]!;
}

// ── H.264 ─────────────────────────────────────────────────────────────────────────────────────

/** profile_idc values whose SPS carries chroma_format_idc, bit depths and scaling lists. */
const AVC_HIGH_PROFILES = new Set([100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135]);

function avcProfileName(profileIdc: number, constraints: number): string | null {
  switch (profileIdc) {
    case 66:
      return constraints & 0x40 ? 'Constrained Baseline' : 'Baseline';
    case 77:
      return 'Main';
    case 88:
      return 'Extended';
    case 100:
      return 'High';
    case 110:
      return 'High 10';
    case 122:
      return 'High 4:2:2';
    case 244:
      return 'High 4:4:4 Predictive';
    case 44:
      return 'CAVLC 4:4:4';
    default:
      return null;
  }
}

/** Skips scaling_list(size) (H.264 §7.3.2.1.1.1): at most 64 se(v) reads. */
function skipScalingList(r: BitReader, size: number): void {
  let last = 8;
  let next = 8;
  for (let j = 0; j < size && !r.bad; j++) {
    if (next !== 0) next = (last + r.se() + 256) % 256;
    if (next !== 0) last = next;
  }
}

/** An H.264 SPS NAL unit (`b[at..end)`, header byte included) → picture size and profile. */
export function readAvcSps(b: Uint8Array, at: number, end: number): PictureInfo | null {
  if (end - at < 4 || (b[at]! & 0x1f) !== 7) return null;
  const r = new BitReader(b, at + 1, end, true);
  const profileIdc = r.bits(8);
  const constraints = r.bits(8);
  const level = r.bits(8);
  r.ue(); // seq_parameter_set_id
  let chromaFormatIdc = 1;
  let separateColourPlane = 0;
  if (AVC_HIGH_PROFILES.has(profileIdc)) {
    chromaFormatIdc = r.ue();
    if (chromaFormatIdc > 3) return null;
    if (chromaFormatIdc === 3) separateColourPlane = r.bit();
    r.ue(); // bit_depth_luma_minus8
    r.ue(); // bit_depth_chroma_minus8
    r.bit(); // qpprime_y_zero_transform_bypass_flag
    if (r.bit()) {
      // seq_scaling_matrix_present_flag: 8 lists (12 for 4:4:4), 6 of 4×4 then 8×8.
      const lists = chromaFormatIdc === 3 ? 12 : 8;
      for (let i = 0; i < lists && !r.bad; i++) if (r.bit()) skipScalingList(r, i < 6 ? 16 : 64);
    }
  }
  r.ue(); // log2_max_frame_num_minus4
  const pocType = r.ue();
  if (pocType === 0) {
    r.ue(); // log2_max_pic_order_cnt_lsb_minus4
  } else if (pocType === 1) {
    r.bit(); // delta_pic_order_always_zero_flag
    r.se(); // offset_for_non_ref_pic
    r.se(); // offset_for_top_to_bottom_field
    const cycle = r.ue();
    if (cycle > 255) return null; // §7.4.2.1.1: 0..255
    for (let i = 0; i < cycle && !r.bad; i++) r.se();
  } else if (pocType !== 2) {
    return null;
  }
  r.ue(); // max_num_ref_frames
  r.bit(); // gaps_in_frame_num_value_allowed_flag
  const widthMbs = r.ue() + 1;
  const heightMapUnits = r.ue() + 1;
  const frameMbsOnly = r.bit();
  if (!frameMbsOnly) r.bit(); // mb_adaptive_frame_field_flag
  r.bit(); // direct_8x8_inference_flag
  let cropX = 0;
  let cropY = 0;
  if (r.bit()) {
    // frame_cropping_flag: offsets in chroma sample units (§7.4.2.1.1, Table 6-1).
    const left = r.ue();
    const right = r.ue();
    const top = r.ue();
    const bottom = r.ue();
    const chromaArrayType = separateColourPlane ? 0 : chromaFormatIdc;
    const subWidthC = chromaArrayType === 1 || chromaArrayType === 2 ? 2 : 1;
    const subHeightC = chromaArrayType === 1 ? 2 : 1;
    cropX = subWidthC * (left + right);
    cropY = subHeightC * (2 - frameMbsOnly) * (top + bottom);
  }
  if (r.bad) return null;
  const width = widthMbs * 16 - cropX;
  const height = (2 - frameMbsOnly) * heightMapUnits * 16 - cropY;
  if (!(width > 0 && width <= MAX_SIDE && height > 0 && height <= MAX_SIDE)) return null;
  return { width, height, profile: avcProfileName(profileIdc, constraints), level };
}

/** An AVCDecoderConfigurationRecord at `b[at..end)` → what its first SPS says. */
export function readAvcConfig(b: Uint8Array, at: number, end: number): PictureInfo | null {
  end = Math.min(end, b.length);
  if (end - at < 8 || b[at] !== 1) return null;
  const numSps = b[at + 5]! & 0x1f;
  if (numSps === 0) return null;
  const len = u16(b, at + 6);
  const start = at + 8;
  if (start + len > end) return null;
  return readAvcSps(b, start, start + len);
}

// ── H.265 ─────────────────────────────────────────────────────────────────────────────────────

function hevcProfileName(profileIdc: number): string | null {
  switch (profileIdc) {
    case 1:
      return 'Main';
    case 2:
      return 'Main 10';
    case 3:
      return 'Main Still Picture';
    case 4:
      return 'Rext';
    default:
      return null;
  }
}

/** An H.265 SPS NAL unit (`b[at..end)`, 2-byte header included) → picture size and profile. */
export function readHevcSps(b: Uint8Array, at: number, end: number): PictureInfo | null {
  if (end - at < 15 || ((b[at]! >> 1) & 0x3f) !== 33) return null;
  const r = new BitReader(b, at + 2, end, true);
  r.bits(4); // sps_video_parameter_set_id
  const maxSubLayersMinus1 = r.bits(3);
  r.bit(); // sps_temporal_id_nesting_flag
  // profile_tier_level(1, maxSubLayersMinus1) (§7.3.3): general part = 2+1+5+32+4+43+1 bits, then level.
  r.bits(3); // general_profile_space, general_tier_flag
  const profileIdc = r.bits(5);
  r.skip(32 + 4 + 43 + 1);
  const level = r.bits(8);
  let subProfile = 0;
  let subLevel = 0;
  for (let i = 0; i < maxSubLayersMinus1; i++) {
    subProfile += r.bit();
    subLevel += r.bit();
  }
  if (maxSubLayersMinus1 > 0) r.skip(2 * (8 - maxSubLayersMinus1));
  r.skip(88 * subProfile + 8 * subLevel);
  r.ue(); // sps_seq_parameter_set_id
  const chromaFormatIdc = r.ue();
  if (chromaFormatIdc > 3) return null;
  const separateColourPlane = chromaFormatIdc === 3 ? r.bit() : 0;
  const picWidth = r.ue();
  const picHeight = r.ue();
  let cropX = 0;
  let cropY = 0;
  if (r.bit()) {
    // conformance_window_flag: offsets in chroma sample units (§7.4.3.2.1).
    const left = r.ue();
    const right = r.ue();
    const top = r.ue();
    const bottom = r.ue();
    const chromaArrayType = separateColourPlane ? 0 : chromaFormatIdc;
    cropX = (chromaArrayType === 1 || chromaArrayType === 2 ? 2 : 1) * (left + right);
    cropY = (chromaArrayType === 1 ? 2 : 1) * (top + bottom);
  }
  if (r.bad) return null;
  const width = picWidth - cropX;
  const height = picHeight - cropY;
  if (!(width > 0 && width <= MAX_SIDE && height > 0 && height <= MAX_SIDE)) return null;
  return { width, height, profile: hevcProfileName(profileIdc), level };
}

/** An HEVCDecoderConfigurationRecord at `b[at..end)` → what its first SPS says. */
export function readHevcConfig(b: Uint8Array, at: number, end: number): PictureInfo | null {
  end = Math.min(end, b.length);
  if (end - at < 23 || b[at] !== 1) return null;
  const numArrays = b[at + 22]!;
  let pos = at + 23;
  let seen = 0;
  for (let i = 0; i < numArrays; i++) {
    if (pos + 3 > end) return null;
    const nalType = b[pos]! & 0x3f;
    const count = u16(b, pos + 1);
    pos += 3;
    for (let j = 0; j < count; j++) {
      if (++seen > MAX_PARAMETER_SETS || pos + 2 > end) return null;
      const len = u16(b, pos);
      const start = pos + 2;
      if (start + len > end) return null;
      if (nalType === 33) return readHevcSps(b, start, start + len);
      pos = start + len;
    }
  }
  return null;
}

// ── AV1 ───────────────────────────────────────────────────────────────────────────────────────

const AV1_PROFILES = ['Main', 'High', 'Professional'];
/** OBUs looked at in the record's configOBUs before giving up. */
const MAX_CONFIG_OBUS = 8;

/** A sequence header OBU's payload (AV1 §5.5.1) → the largest frame size and the profile. */
export function readAv1SequenceHeader(b: Uint8Array, at: number, end: number): PictureInfo | null {
  const r = new BitReader(b, at, Math.min(end, b.length), false);
  const profile = r.bits(3);
  r.bit(); // still_picture
  let level: number;
  if (r.bit()) {
    // reduced_still_picture_header
    level = r.bits(5);
  } else {
    let decoderModelInfo = 0;
    let bufferDelayLength = 0;
    if (r.bit()) {
      // timing_info_present_flag: timing_info(), then decoder_model_info_present_flag.
      r.skip(64);
      if (r.bit()) r.ue(); // equal_picture_interval → num_ticks_per_picture_minus_1, uvlc() = ue(v)
      decoderModelInfo = r.bit();
      if (decoderModelInfo) {
        bufferDelayLength = r.bits(5) + 1;
        r.skip(32 + 5 + 5);
      }
    }
    const initialDisplayDelay = r.bit();
    const operatingPoints = r.bits(5) + 1;
    level = 0;
    for (let i = 0; i < operatingPoints && !r.bad; i++) {
      r.skip(12); // operating_point_idc
      const seqLevelIdx = r.bits(5);
      if (i === 0) level = seqLevelIdx;
      if (seqLevelIdx > 7) r.bit(); // seq_tier
      if (decoderModelInfo && r.bit()) r.skip(2 * bufferDelayLength + 1);
      if (initialDisplayDelay && r.bit()) r.skip(4);
    }
  }
  const widthBits = r.bits(4) + 1;
  const heightBits = r.bits(4) + 1;
  const width = r.bits(widthBits) + 1;
  const height = r.bits(heightBits) + 1;
  if (r.bad || width > MAX_SIDE || height > MAX_SIDE) return null;
  return { width, height, profile: AV1_PROFILES[profile] ?? null, level };
}

/** An AV1CodecConfigurationRecord (av1C) at `b[at..end)` → what its sequence header OBU says. */
export function readAv1Config(b: Uint8Array, at: number, end: number): PictureInfo | null {
  end = Math.min(end, b.length);
  if (end - at < 5 || b[at] !== 0x81) return null; // marker 1, version 1
  let pos = at + 4;
  for (let i = 0; i < MAX_CONFIG_OBUS && pos < end; i++) {
    const header = b[pos++]!;
    const type = (header >> 3) & 0x0f;
    if (header & 0x04) pos++; // obu_extension_flag
    let size = end - pos;
    if (header & 0x02) {
      // obu_has_size_field: leb128, at most 8 bytes.
      size = 0;
      let k = 0;
      for (;;) {
        if (pos >= end || k === 8) return null;
        const byte = b[pos++]!;
        size += (byte & 0x7f) * 2 ** (7 * k++);
        if (!(byte & 0x80)) break;
      }
    }
    if (pos + size > end) return null;
    if (type === 1) return readAv1SequenceHeader(b, pos, pos + size);
    pos += size;
  }
  return null;
}

// ── audio ─────────────────────────────────────────────────────────────────────────────────────

/** samplingFrequencyIndex → Hz (ISO/IEC 14496-3 Table 1.18); 13 and 14 are reserved. */
const AAC_RATES = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350];
/** channelConfiguration → channels (Table 1.19 and its later additions); 0 = in the PCE, unknown here. */
const AAC_CHANNELS = [0, 1, 2, 3, 4, 5, 6, 8, 0, 0, 0, 7, 8, 24, 8, 0];

function aacProfileName(objectType: number): string | null {
  switch (objectType) {
    case 1:
      return 'Main';
    case 2:
      return 'LC';
    case 3:
      return 'SSR';
    case 4:
      return 'LTP';
    case 5:
      return 'HE-AAC';
    case 29:
      return 'HE-AACv2';
    case 23:
      return 'LD';
    case 39:
      return 'ELD';
    default:
      return null;
  }
}

function aacRate(r: BitReader): number | null {
  const index = r.bits(4);
  if (index === 15) return r.bits(24) || null;
  return AAC_RATES[index] ?? null;
}

/** An AudioSpecificConfig at `b[at..end)` → sample rate (of the output, for explicit SBR) and channels. */
export function readAudioSpecificConfig(b: Uint8Array, at: number, end: number): SoundInfo | null {
  end = Math.min(end, b.length);
  if (end - at < 2) return null;
  const r = new BitReader(b, at, end, false);
  let objectType = r.bits(5);
  if (objectType === 31) objectType = 32 + r.bits(6);
  let sampleRate = aacRate(r);
  const channelConfig = r.bits(4);
  let channels: number | null = AAC_CHANNELS[channelConfig] || null;
  if (objectType === 5 || objectType === 29) {
    // Explicit SBR (§1.6.5.1): the extension rate is the decoded output rate; PS decodes to stereo.
    const ext = aacRate(r);
    if (ext !== null) sampleRate = ext;
    if (objectType === 29 && channels === 1) channels = 2;
  }
  if (r.bad) return null;
  return { sampleRate, channels, profile: aacProfileName(objectType) };
}

/** An Opus ID header ("OpusHead", RFC 7845 §5.1) → channels; Opus always decodes at 48 kHz. */
export function readOpusHead(b: Uint8Array, at: number, end: number): SoundInfo | null {
  end = Math.min(end, b.length);
  if (end - at < 19) return null;
  const magic = 'OpusHead';
  for (let i = 0; i < magic.length; i++) if (b[at + i] !== magic.charCodeAt(i)) return null;
  const channels = b[at + 9]!;
  return channels === 0 ? null : { sampleRate: 48000, channels, profile: null };
}

/** MPEG-1/2/2.5 sample rates by version (index 0 = 2.5, 2 = MPEG-2, 3 = MPEG-1) and rate index. */
const MP3_RATES = [[11025, 12000, 8000], null, [22050, 24000, 16000], [44100, 48000, 32000]] as const;

/** True when `b[at..at+4)` is an MPEG audio frame header with a valid sample rate. */
function isMp3Header(b: Uint8Array, at: number, end: number): boolean {
  if (end - at < 4 || at + 4 > b.length) return false;
  return b[at] === 0xff && (b[at + 1]! & 0xe0) === 0xe0 && ((b[at + 1]! >> 3) & 3) !== 1 && ((b[at + 2]! >> 2) & 3) !== 3;
}

/** Sample rate of the MPEG audio frame header at `b[at..at+4)`, 0 when there is none. Allocation-free. */
export function mp3SampleRate(b: Uint8Array, at: number, end: number): number {
  if (!isMp3Header(b, at, end)) return 0;
  return MP3_RATES[(b[at + 1]! >> 3) & 3]![(b[at + 2]! >> 2) & 3]!;
}

/** Channels of the MPEG audio frame header at `b[at..at+4)` (mode 3 = mono), 0 when there is none. */
export function mp3Channels(b: Uint8Array, at: number, end: number): number {
  if (!isMp3Header(b, at, end)) return 0;
  return b[at + 3]! >> 6 === 3 ? 1 : 2;
}
