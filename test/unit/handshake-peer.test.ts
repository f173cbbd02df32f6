// The proxy's own ends of the RTMP handshake (late binding, connections it opens to backends):
// real captures of OBS 29 and FFmpeg as input, every split of the bytes, both roles.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { HANDSHAKE_PACKET_SIZE, HANDSHAKE_TOTAL } from '../../src/rtmp/constants.js';
import { ProtocolError } from '../../src/rtmp/errors.js';
import { HandshakeEnd } from '../../src/rtmp/handshake-peer.js';
import { loadCapture, PUBLISHERS, plainHandshake, splitAt } from '../helpers/rtmp-fixtures.js';

/** Feeds pieces; returns the replies and the absolute offset of the first byte after the handshake. */
function run(end: HandshakeEnd, pieces: Buffer[]): { replies: Buffer[]; after: number | null } {
  const replies: Buffer[] = [];
  let base = 0;
  let after: number | null = null;
  for (const p of pieces) {
    const r = end.push(p);
    if (r.reply !== null) replies.push(r.reply);
    assert.ok(r.next >= 0 && r.next <= p.length);
    if (after === null && end.done) after = base + r.next;
    base += p.length;
  }
  return { replies, after };
}

describe('HandshakeEnd (server role)', () => {
  for (const publisher of PUBLISHERS) {
    it(`answers ${publisher}'s C0+C1 with S0+S1+S2 where S2 echoes C1, and stops at the first chunk`, () => {
      const c = loadCapture(publisher, 'c2s');
      const { replies, after } = run(new HandshakeEnd('server'), [c.bytes]);
      assert.equal(replies.length, 1);
      const s = replies[0]!;
      assert.equal(s.length, HANDSHAKE_TOTAL);
      assert.equal(s[0], 3);
      // S1: zero time and zero version (plain handshake), so clients do not look for a digest.
      assert.equal(s.readUInt32BE(1), 0);
      assert.equal(s.readUInt32BE(5), 0);
      assert.deepEqual(s.subarray(1 + HANDSHAKE_PACKET_SIZE), c.bytes.subarray(1, 1 + HANDSHAKE_PACKET_SIZE));
      assert.equal(after, c.chunkStart);
    });
  }

  it('gives the same S2 and end offset however the bytes are split (property)', () => {
    const input = Buffer.concat([plainHandshake(7), Buffer.from('chunk bytes')]);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: input.length }), { maxLength: 12 }), (cuts) => {
        const { replies, after } = run(new HandshakeEnd('server'), splitAt(input, cuts));
        assert.equal(replies.length, 1);
        assert.deepEqual(replies[0]!.subarray(1 + HANDSHAKE_PACKET_SIZE), input.subarray(1, 1 + HANDSHAKE_PACKET_SIZE));
        assert.equal(after, HANDSHAKE_TOTAL);
      }),
      { numRuns: 2000 },
    );
  });

  it('refuses RTMPE and unknown versions', () => {
    for (const [v, code] of [
      [6, 'rtmpe'],
      [0x16, 'bad-version'],
    ] as const) {
      assert.throws(
        () => new HandshakeEnd('server').push(Buffer.of(v, 1, 2, 3)),
        (e: unknown) => e instanceof ProtocolError && e.code === code,
      );
    }
  });
});

describe('HandshakeEnd (client role)', () => {
  it('says C0+C1 (plain), answers S0+S1 with C2 = S1, and finds the first chunk after S2 in a real server capture', () => {
    const end = new HandshakeEnd('client');
    const hello = end.hello();
    assert.equal(hello.length, 1 + HANDSHAKE_PACKET_SIZE);
    assert.equal(hello[0], 3);
    assert.equal(hello.readUInt32BE(5), 0);
    const s = loadCapture('obs29-publish', 's2c');
    const { replies, after } = run(end, splitAt(s.bytes, [1, 700, 1537, 2000]));
    assert.equal(replies.length, 1);
    assert.deepEqual(replies[0], s.bytes.subarray(1, 1 + HANDSHAKE_PACKET_SIZE));
    assert.equal(after, s.chunkStart);
  });

  it('the two ends complete a handshake with each other', () => {
    const client = new HandshakeEnd('client');
    const server = new HandshakeEnd('server');
    const c0c1 = client.hello();
    const s012 = server.push(c0c1).reply!;
    const c2 = client.push(s012).reply!;
    assert.ok(client.done);
    assert.equal(server.push(c2).next, c2.length);
    assert.ok(server.done);
    // Each side's second packet echoes the other's first.
    assert.deepEqual(s012.subarray(1 + HANDSHAKE_PACKET_SIZE), c0c1.subarray(1));
    assert.deepEqual(c2, s012.subarray(1, 1 + HANDSHAKE_PACKET_SIZE));
  });
});
