import { HANDSHAKE_TOTAL, RTMP_VERSION_ENCRYPTED, RTMP_VERSION_PLAIN } from './constants.js';
import { ProtocolError } from './errors.js';

/**
 * Counts one direction's handshake bytes so the chunk reader starts exactly after them.
 *
 * A transparent proxy forwards the handshake untouched (RTMP spec §5.2): C0+C1+C2 from the
 * client and S0+S1+S2 from the server are 1 + 1536 + 1536 bytes each, whether the peers use the
 * plain or the digest ("complex") handshake, so counting is enough. Only the version byte is
 * checked: 6 announces RTMPE, whose chunks are encrypted (docs/protocol.md#handshake).
 */
export class HandshakeSkipper {
  private seen = 0;
  /** Version byte (C0/S0) once seen. */
  version: number | null = null;

  get done(): boolean {
    return this.seen >= HANDSHAKE_TOTAL;
  }

  /**
   * Consumes handshake bytes from `buf` starting at `start`; returns the offset of the first
   * byte after the handshake (== buf.length when the handshake is not finished yet).
   * Throws ProtocolError for RTMPE or an unknown version.
   */
  consume(buf: Uint8Array, start = 0): number {
    if (this.done || start >= buf.length) return start;
    if (this.seen === 0) {
      const v = buf[start]!;
      this.version = v;
      if (v === RTMP_VERSION_ENCRYPTED) {
        throw new ProtocolError('rtmpe', 'RTMPE handshake (version 6): encrypted, cannot parse');
      }
      if (v !== RTMP_VERSION_PLAIN) {
        throw new ProtocolError('bad-version', `unknown RTMP handshake version ${v}`);
      }
    }
    const take = Math.min(HANDSHAKE_TOTAL - this.seen, buf.length - start);
    this.seen += take;
    return start + take;
  }
}
