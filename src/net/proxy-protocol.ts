/**
 * PROXY protocol (HAProxy, https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt), v1 text
 * and v2 binary: parse the header a front load balancer puts before the client's first byte, and
 * build the header the proxy sends to a backend (nginx-rtmp: `listen … proxy_protocol`, v1 only).
 *
 * Pure and bounded: `parseProxyHeader` looks at no more than `MAX_PROXY_HEADER` bytes and says
 * whether the buffer holds a complete header, the start of one, something else, or garbage.
 * (proxy-protocol-js was considered: it cannot tell a partial header from a bad one, parses a v2
 * header without honouring its length field, and has no v1 `UNKNOWN`; so this ~200-line parser.)
 */
import net from 'node:net';

/** A v1 line is at most 107 bytes including CRLF (spec §2.1). */
export const MAX_V1_HEADER = 107;
/** 16-byte v2 preamble + the largest address block (2 × 108-byte AF_UNIX paths): 232 bytes, TLVs included. */
export const MAX_V2_HEADER = 16 + 216;
export const MAX_PROXY_HEADER = MAX_V2_HEADER;

export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_SIGNATURE = Buffer.from('PROXY ', 'latin1');

export interface ProxyEndpoint {
  address: string;
  port: number;
}

export interface ProxyHeader {
  version: 1 | 2;
  /** `local`: health check or connection of the balancer itself (v2 LOCAL, v1 UNKNOWN): use the socket's address. */
  command: 'proxy' | 'local';
  family: 'tcp4' | 'tcp6' | 'unix' | 'unknown';
  /** The original client, when the header carries an inet address. */
  source: ProxyEndpoint | null;
  /** The address the client connected to (the balancer's frontend). */
  destination: ProxyEndpoint | null;
}

export type ProxyParseResult =
  /** Not a PROXY header at all (the first bytes differ from both signatures). */
  | { kind: 'none' }
  /** The start of a header: wait for more bytes. */
  | { kind: 'incomplete' }
  | { kind: 'invalid'; reason: string }
  /** `length`: header bytes; whatever follows belongs to the client's stream. */
  | { kind: 'ok'; header: ProxyHeader; length: number };

/** True when `buf` (possibly short) agrees with `sig` on their common prefix. */
function prefixMatches(buf: Buffer, sig: Buffer): boolean {
  const n = Math.min(buf.length, sig.length);
  for (let i = 0; i < n; i++) if (buf[i] !== sig[i]) return false;
  return true;
}

const PORT_RE = /^(0|[1-9][0-9]{0,4})$/;

function port(s: string): number | null {
  if (!PORT_RE.test(s)) return null;
  const n = Number(s);
  return n <= 65535 ? n : null;
}

function parseV1(buf: Buffer): ProxyParseResult {
  const limit = Math.min(buf.length, MAX_V1_HEADER);
  let end = -1;
  for (let i = V1_SIGNATURE.length; i < limit - 1; i++) {
    if (buf[i] === 0x0d) {
      if (buf[i + 1] !== 0x0a) return { kind: 'invalid', reason: 'v1: CR without LF' };
      end = i;
      break;
    }
    if (buf[i] === 0x0a) return { kind: 'invalid', reason: 'v1: LF without CR' };
    if (buf[i]! < 0x20 || buf[i]! > 0x7e) return { kind: 'invalid', reason: 'v1: non-printable byte' };
  }
  if (end < 0) {
    if (buf.length >= MAX_V1_HEADER) return { kind: 'invalid', reason: `v1: no CRLF within ${MAX_V1_HEADER} bytes` };
    // The last byte may be a lone CR, or the line simply is not complete yet.
    const last = buf[buf.length - 1];
    if (buf.length > V1_SIGNATURE.length && last !== 0x0d && (last! < 0x20 || last! > 0x7e)) return { kind: 'invalid', reason: 'v1: non-printable byte' };
    return { kind: 'incomplete' };
  }
  const line = buf.toString('latin1', 0, end);
  const length = end + 2;
  const parts = line.split(' ');
  if (parts[1] === 'UNKNOWN') {
    // "PROXY UNKNOWN" may be followed by anything up to the CRLF, which receivers ignore.
    return { kind: 'ok', length, header: { version: 1, command: 'local', family: 'unknown', source: null, destination: null } };
  }
  if (parts.length !== 6 || (parts[1] !== 'TCP4' && parts[1] !== 'TCP6'))
    return { kind: 'invalid', reason: 'v1: expected "PROXY TCP4|TCP6 src dst sport dport"' };
  const v4 = parts[1] === 'TCP4';
  const [, , src, dst, sp, dp] = parts as [string, string, string, string, string, string];
  const okAddr = (a: string) => (v4 ? net.isIPv4(a) : net.isIPv6(a) && !a.includes('%'));
  if (!okAddr(src) || !okAddr(dst)) return { kind: 'invalid', reason: `v1: bad ${v4 ? 'IPv4' : 'IPv6'} address` };
  const sport = port(sp);
  const dport = port(dp);
  if (sport === null || dport === null) return { kind: 'invalid', reason: 'v1: bad port' };
  return {
    kind: 'ok',
    length,
    header: { version: 1, command: 'proxy', family: v4 ? 'tcp4' : 'tcp6', source: { address: src, port: sport }, destination: { address: dst, port: dport } },
  };
}

function ipv6(buf: Buffer, at: number): string {
  // IPv4-mapped (::ffff:a.b.c.d) in the dotted form Node itself uses for such peers.
  if (buf.readUInt32BE(at) === 0 && buf.readUInt32BE(at + 4) === 0 && buf.readUInt32BE(at + 8) === 0xffff) {
    return `::ffff:${buf[at + 12]}.${buf[at + 13]}.${buf[at + 14]}.${buf[at + 15]}`;
  }
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) groups.push(buf.readUInt16BE(at + i * 2).toString(16));
  // Canonical text (RFC 5952 zero compression) through the URL parser's normaliser.
  return new URL(`http://[${groups.join(':')}]/`).hostname.slice(1, -1);
}

function parseV2(buf: Buffer): ProxyParseResult {
  if (buf.length < 16) return { kind: 'incomplete' };
  const verCmd = buf[12]!;
  if (verCmd >> 4 !== 2) return { kind: 'invalid', reason: `v2: version ${verCmd >> 4}` };
  const cmd = verCmd & 0x0f;
  if (cmd > 1) return { kind: 'invalid', reason: `v2: command ${cmd}` };
  const famProto = buf[13]!;
  const len = buf.readUInt16BE(14);
  const length = 16 + len;
  if (length > MAX_V2_HEADER) return { kind: 'invalid', reason: `v2: header of ${length} bytes exceeds ${MAX_V2_HEADER}` };
  if (buf.length < length) return { kind: 'incomplete' };
  const local: ProxyHeader = { version: 2, command: 'local', family: 'unknown', source: null, destination: null };
  // LOCAL: the receiver must use the real connection endpoints and ignore the address block.
  if (cmd === 0) return { kind: 'ok', length, header: local };
  const family = famProto >> 4;
  const proto = famProto & 0x0f;
  if (family > 3 || proto > 2) return { kind: 'invalid', reason: `v2: address family/protocol 0x${famProto.toString(16)}` };
  // UNSPEC or UDP: the spec says to accept the connection and use the real endpoints.
  if (family === 0 || proto !== 1) return { kind: 'ok', length, header: { ...local, command: 'proxy' } };
  if (family === 1) {
    if (len < 12) return { kind: 'invalid', reason: 'v2: IPv4 address block shorter than 12 bytes' };
    const a = (at: number) => `${buf[at]}.${buf[at + 1]}.${buf[at + 2]}.${buf[at + 3]}`;
    return {
      kind: 'ok',
      length,
      header: {
        version: 2,
        command: 'proxy',
        family: 'tcp4',
        source: { address: a(16), port: buf.readUInt16BE(24) },
        destination: { address: a(20), port: buf.readUInt16BE(26) },
      },
    };
  }
  if (family === 2) {
    if (len < 36) return { kind: 'invalid', reason: 'v2: IPv6 address block shorter than 36 bytes' };
    return {
      kind: 'ok',
      length,
      header: {
        version: 2,
        command: 'proxy',
        family: 'tcp6',
        source: { address: ipv6(buf, 16), port: buf.readUInt16BE(48) },
        destination: { address: ipv6(buf, 32), port: buf.readUInt16BE(50) },
      },
    };
  }
  if (len < 216) return { kind: 'invalid', reason: 'v2: UNIX address block shorter than 216 bytes' };
  return { kind: 'ok', length, header: { version: 2, command: 'proxy', family: 'unix', source: null, destination: null } };
}

/**
 * Parses the PROXY header at the start of `buf` (the bytes received so far). Never reads beyond
 * `MAX_PROXY_HEADER` bytes; a buffer that cannot become a valid header is `invalid` at once.
 */
export function parseProxyHeader(buf: Buffer): ProxyParseResult {
  if (buf.length === 0) return { kind: 'incomplete' };
  if (buf[0] === 0x50) {
    if (!prefixMatches(buf, V1_SIGNATURE)) return { kind: 'none' };
    return buf.length < V1_SIGNATURE.length ? { kind: 'incomplete' } : parseV1(buf);
  }
  if (buf[0] === 0x0d) {
    if (!prefixMatches(buf, V2_SIGNATURE)) return { kind: 'none' };
    return parseV2(buf);
  }
  return { kind: 'none' };
}

// ─── building ──────────────────────────────────────────────────────────────────────────────────

/** `::ffff:1.2.3.4` → `1.2.3.4`; anything else unchanged. */
export function unmapIPv4(address: string): string {
  return address.startsWith('::ffff:') && net.isIPv4(address.slice(7)) ? address.slice(7) : address;
}

/** Both endpoints in one family (v1 and v2 carry one): IPv4 when both are, else IPv6 (IPv4 mapped). Null when either is not an IP. */
function sameFamily(src: ProxyEndpoint, dst: ProxyEndpoint): { v4: boolean; src: string; dst: string } | null {
  const s = unmapIPv4(src.address);
  const d = unmapIPv4(dst.address);
  const sv = net.isIP(s);
  const dv = net.isIP(d);
  if (sv === 0 || dv === 0 || s.includes('%') || d.includes('%')) return null;
  if (sv === 4 && dv === 4) return { v4: true, src: s, dst: d };
  return { v4: false, src: sv === 4 ? `::ffff:${s}` : s, dst: dv === 4 ? `::ffff:${d}` : d };
}

/** `PROXY TCP4 src dst sport dport\r\n` (or `PROXY UNKNOWN\r\n` when an address is not IP). */
export function encodeProxyV1(src: ProxyEndpoint, dst: ProxyEndpoint): Buffer {
  const f = sameFamily(src, dst);
  if (f === null) return Buffer.from('PROXY UNKNOWN\r\n', 'latin1');
  return Buffer.from(`PROXY ${f.v4 ? 'TCP4' : 'TCP6'} ${f.src} ${f.dst} ${src.port} ${dst.port}\r\n`, 'latin1');
}

function ipv6Bytes(address: string, out: Buffer, at: number): void {
  // Expand "::" and an embedded IPv4 tail into 8 groups.
  let a = address;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (v4 !== null) {
    const o = v4[1]!.split('.').map(Number);
    a = `${a.slice(0, v4.index)}${((o[0]! << 8) | o[1]!).toString(16)}:${((o[2]! << 8) | o[3]!).toString(16)}`;
  }
  const [head, tail] = a.includes('::') ? (a.split('::') as [string, string]) : [a, null];
  const h = head === '' ? [] : head.split(':');
  const t = tail === null || tail === '' ? [] : tail.split(':');
  const groups = tail === null ? h : [...h, ...new Array<string>(8 - h.length - t.length).fill('0'), ...t];
  for (let i = 0; i < 8; i++) out.writeUInt16BE(parseInt(groups[i] ?? '0', 16), at + i * 2);
}

/** The binary v2 header, PROXY command over TCP (LOCAL when an address is not IP). */
export function encodeProxyV2(src: ProxyEndpoint, dst: ProxyEndpoint): Buffer {
  const f = sameFamily(src, dst);
  if (f === null) {
    const b = Buffer.alloc(16);
    V2_SIGNATURE.copy(b);
    b[12] = 0x20;
    return b;
  }
  const len = f.v4 ? 12 : 36;
  const b = Buffer.alloc(16 + len);
  V2_SIGNATURE.copy(b);
  b[12] = 0x21;
  b[13] = f.v4 ? 0x11 : 0x21;
  b.writeUInt16BE(len, 14);
  if (f.v4) {
    f.src.split('.').forEach((o, i) => (b[16 + i] = Number(o)));
    f.dst.split('.').forEach((o, i) => (b[20 + i] = Number(o)));
    b.writeUInt16BE(src.port, 24);
    b.writeUInt16BE(dst.port, 26);
  } else {
    ipv6Bytes(f.src, b, 16);
    ipv6Bytes(f.dst, b, 32);
    b.writeUInt16BE(src.port, 48);
    b.writeUInt16BE(dst.port, 50);
  }
  return b;
}

export type BackendProxyProtocol = 'off' | 'v1' | 'v2';

export function encodeProxyHeader(version: BackendProxyProtocol, src: ProxyEndpoint, dst: ProxyEndpoint): Buffer | null {
  if (version === 'v1') return encodeProxyV1(src, dst);
  if (version === 'v2') return encodeProxyV2(src, dst);
  return null;
}
