import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { HANDSHAKE_TOTAL } from '../../src/rtmp/constants.js';
import { ProtocolError, type ProtocolErrorCode } from '../../src/rtmp/errors.js';
import { HandshakeSkipper } from '../../src/rtmp/handshake.js';
import { allCaptures, plainHandshake, pseudoRandomBytes, splitAt } from '../helpers/rtmp-fixtures.js';

function throwsProtocol(fn: () => unknown, code: ProtocolErrorCode): void {
  assert.throws(fn, (err: unknown) => err instanceof ProtocolError && err.code === code);
}

/** Feeds pieces; returns the absolute offset of the first byte after the handshake (or null). */
function firstChunkOffset(pieces: Buffer[]): number | null {
  const hs = new HandshakeSkipper();
  let base = 0;
  for (const p of pieces) {
    const off = hs.consume(p);
    assert.ok(off >= 0 && off <= p.length);
    if (off < p.length) return base + off;
    base += p.length;
  }
  return null;
}

describe('HandshakeSkipper', () => {
  // RTMP spec §5.2: C0 (1) + C1 (1536) + C2 (1536) = 3073 bytes, then chunks.
  it('consumes exactly 3073 bytes and reports the version', () => {
    assert.equal(HANDSHAKE_TOTAL, 3073);
    const hs = new HandshakeSkipper();
    assert.equal(hs.done, false);
    assert.equal(hs.version, null);
    const buf = Buffer.concat([plainHandshake(), Buffer.from([0x02, 0xaa])]);
    assert.equal(hs.consume(buf), 3073);
    assert.equal(hs.done, true);
    assert.equal(hs.version, 3);
    // once done, nothing more is consumed
    assert.equal(hs.consume(buf, 3073), 3073);
    assert.equal(hs.consume(Buffer.from([1, 2, 3])), 0);
  });

  // A proxy sees the handshake in whatever pieces TCP delivers.
  it('byte by byte: each byte consumed until exactly 3073, then none', () => {
    const hs = new HandshakeSkipper();
    const buf = plainHandshake(9);
    for (let i = 0; i < buf.length; i++) {
      assert.equal(hs.done, false);
      assert.equal(hs.consume(buf.subarray(i, i + 1)), 1);
    }
    assert.equal(hs.done, true);
    assert.equal(hs.consume(Buffer.of(0x03)), 0);
  });

  // Split anywhere, the first chunk byte is found at offset 3073.
  it('any split finds the first chunk byte at offset 3073', () => {
    const buf = Buffer.concat([plainHandshake(3), pseudoRandomBytes(200, 1)]);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: buf.length }), { maxLength: 20 }), (cuts) => {
        assert.equal(firstChunkOffset(splitAt(buf, cuts)), 3073);
      }),
      { numRuns: 300 },
    );
  });

  // consume(buf, start): the handshake may start mid-buffer (bytes before it belong to the caller).
  it('honours the start offset, and an empty range consumes nothing', () => {
    const hs = new HandshakeSkipper();
    assert.equal(hs.consume(Buffer.alloc(0)), 0);
    assert.equal(hs.consume(Buffer.of(1, 2), 2), 2);
    assert.equal(hs.version, null, 'no byte seen yet');
    const buf = Buffer.concat([Buffer.of(0xff, 0xff), plainHandshake(), Buffer.of(7)]);
    assert.equal(hs.consume(buf, 2), 2 + 3073);
    assert.equal(hs.version, 3);
  });

  // Only C0 is checked: C1/C2 content (plain or digest handshake) is irrelevant.
  it('C1/C2 content is not inspected (a digest handshake has the same sizes)', () => {
    const buf = Buffer.alloc(3073, 0x06);
    buf[0] = 3;
    const hs = new HandshakeSkipper();
    assert.equal(hs.consume(buf), 3073);
  });

  // docs/protocol.md#handshake: C0 = 6 announces RTMPE; its chunks are encrypted.
  it("C0 = 6 → ProtocolError 'rtmpe'", () => {
    const buf = plainHandshake();
    buf[0] = 6;
    const hs = new HandshakeSkipper();
    throwsProtocol(() => hs.consume(buf), 'rtmpe');
    assert.equal(hs.version, 6);
  });

  // Not RTMP at all, e.g. an HTTP request ("GET ...", 0x47) on the RTMP port.
  it("C0 = 0x47 → ProtocolError 'bad-version'", () => {
    throwsProtocol(() => new HandshakeSkipper().consume(Buffer.from('GET / HTTP/1.1\r\n')), 'bad-version');
  });

  // Any version byte other than 3 and 6 is refused, also when it arrives alone or mid-buffer.
  it("every C0 other than 3 and 6 → 'bad-version'", () => {
    for (let v = 0; v < 256; v++) {
      if (v === 3 || v === 6) continue;
      throwsProtocol(() => new HandshakeSkipper().consume(Buffer.of(v)), 'bad-version');
      throwsProtocol(() => new HandshakeSkipper().consume(Buffer.of(3, v), 1), 'bad-version');
    }
  });

  // The captures: every direction starts with a plain version-3 handshake.
  it('every fixture capture starts with C0/S0 = 3 and its chunks at 3073', () => {
    for (const c of allCaptures()) {
      const hs = new HandshakeSkipper();
      assert.equal(hs.consume(c.bytes), 3073, c.name);
      assert.equal(hs.version, 3, c.name);
      // the first chunk after the handshake is a fmt 0 header on csid 2 or 3
      assert.ok([0x02, 0x03].includes(c.bytes[3073]!), c.name);
    }
  });
});
