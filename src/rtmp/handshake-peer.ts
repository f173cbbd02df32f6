import { randomBytes } from 'node:crypto';
import { HANDSHAKE_PACKET_SIZE, HANDSHAKE_TOTAL, RTMP_VERSION_ENCRYPTED, RTMP_VERSION_PLAIN } from './constants.js';
import { ProtocolError } from './errors.js';

/**
 * The two ends of the plain RTMP handshake (spec §5.2), for when the proxy takes part in it
 * instead of forwarding it: late binding (the proxy answers the client before it knows the
 * backend) and proxy-side connections to a backend (migration, late binding).
 *
 * Plain handshake: C1/S1 = time (4) + zero (4) + 1528 random bytes; C2 echoes S1, S2 echoes C1.
 * Clients that send a digest ("complex") C1 accept a plain S1 (zero version field): FFmpeg checks
 * the server digest only when playing with a server version ≥ 3, librtmp (OBS) only warns when S2
 * does not match, nginx-rtmp and node-media-server answer plain C1s plainly (docs/protocol.md#handshake).
 */

/** C1 or S1: zero time, zero version, random rest. */
export function plainHandshakePacket(): Buffer {
  const p = Buffer.alloc(HANDSHAKE_PACKET_SIZE);
  randomBytes(HANDSHAKE_PACKET_SIZE - 8).copy(p, 8);
  return p;
}

function checkVersion(v: number, who: string): void {
  if (v === RTMP_VERSION_ENCRYPTED) throw new ProtocolError('rtmpe', `${who} handshake version 6 (RTMPE): encrypted, cannot take part`);
  if (v !== RTMP_VERSION_PLAIN) throw new ProtocolError('bad-version', `unknown RTMP handshake version ${v} from the ${who}`);
}

/**
 * One end of the handshake, fed the other end's bytes. The server end answers S0+S1+S2 once C0+C1
 * are in; the client end (whose C0+C1 is `hello()`) answers C2 once S0+S1 are in. The peer's
 * third packet is counted and dropped. Holds at most one packet (1536 bytes).
 */
export class HandshakeEnd {
  private seen = 0;
  /** The peer's C1 or S1. */
  private readonly peerPacket = Buffer.alloc(HANDSHAKE_PACKET_SIZE);

  constructor(readonly role: 'server' | 'client') {}

  get done(): boolean {
    return this.seen >= HANDSHAKE_TOTAL;
  }

  /** C0+C1 (client end). */
  hello(): Buffer {
    return Buffer.concat([Buffer.of(RTMP_VERSION_PLAIN), plainHandshakePacket()]);
  }

  /**
   * Consumes handshake bytes of `buf` from `start`. Returns the offset of the first byte after
   * the handshake (buf.length when it needs more) and what to send back, when this push completed
   * the peer's first packet. Throws ProtocolError on RTMPE or an unknown version.
   */
  push(buf: Buffer, start = 0): { next: number; reply: Buffer | null } {
    if (this.done || start >= buf.length) return { next: start, reply: null };
    if (this.seen === 0) checkVersion(buf[start]!, this.role === 'server' ? 'client' : 'server');
    const take = Math.min(HANDSHAKE_TOTAL - this.seen, buf.length - start);
    // The peer's first packet occupies offsets 1..1536 of its handshake.
    const from = Math.max(this.seen, 1);
    const to = Math.min(this.seen + take, 1 + HANDSHAKE_PACKET_SIZE);
    if (to > from) buf.copy(this.peerPacket, from - 1, start + (from - this.seen), start + (to - this.seen));
    const hadPacket = this.seen >= 1 + HANDSHAKE_PACKET_SIZE;
    this.seen += take;
    let reply: Buffer | null = null;
    if (!hadPacket && this.seen >= 1 + HANDSHAKE_PACKET_SIZE) {
      // S2 echoes C1, C2 echoes S1 (spec §5.2.4).
      reply = this.role === 'server' ? Buffer.concat([Buffer.of(RTMP_VERSION_PLAIN), plainHandshakePacket(), this.peerPacket]) : Buffer.from(this.peerPacket);
    }
    return { next: start + take, reply };
  }
}
