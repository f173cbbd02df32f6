// Fuzzing the three parsers that read untrusted bytes: the handshake skipper, the chunk reader and
// the AMF0 decoder. At least 100,000 generated inputs per run (CI); FUZZ_SCALE=N multiplies every
// count, e.g. `FUZZ_SCALE=20 node --import tsx --test test/unit/fuzz.test.ts` for ~2 million.
// What must hold for any input: only the parser's own error type escapes, nothing collected exceeds
// the configured limits, and the reader's counters stay consistent with what it was fed.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { Amf0Error, amf0Object, decodeAmf0, encodeAmf0 } from '../../src/rtmp/amf0.js';
import { ChunkReader, type ChunkReaderLimits } from '../../src/rtmp/chunk-reader.js';
import { HANDSHAKE_TOTAL } from '../../src/rtmp/constants.js';
import { ProtocolError } from '../../src/rtmp/errors.js';
import { HandshakeSkipper } from '../../src/rtmp/handshake.js';
import { projectRoot } from '../helpers/peers.js';

const SCALE = Math.max(1, Number(process.env['FUZZ_SCALE'] ?? 1));
const runs = (n: number): number => Math.round(n * SCALE);
let total = 0;

const LIMITS: ChunkReaderLimits = { maxChunkSize: 65536, minChunkSize: 32, maxMessageSize: 1 << 20, maxCollectedSize: 4096, maxChunkStreams: 16 };

/** Feeds `bytes` (in `pieces` parts) to a fresh reader that collects everything; checks the invariants. */
function fuzzReader(bytes: Uint8Array, cuts: number[]): void {
  total++;
  let collectedMax = 0;
  const r = new ChunkReader(
    {
      message: (info, payload) => {
        assert.ok(info.length <= LIMITS.maxMessageSize);
        assert.ok(info.head.length <= 8 && info.head.length <= info.length);
        if (payload !== null) collectedMax = Math.max(collectedMax, payload.length);
      },
    },
    () => true,
    LIMITS,
  );
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  let fed = 0;
  try {
    let prev = 0;
    for (const c of [...cuts.map((x) => x % (buf.length + 1)).sort((a, b) => a - b), buf.length]) {
      r.feed(buf.subarray(prev, c));
      fed = c;
      prev = c;
    }
  } catch (err) {
    if (!(err instanceof ProtocolError)) throw err;
    return;
  }
  assert.equal(r.bytesRead, fed);
  assert.ok(collectedMax <= LIMITS.maxCollectedSize, `collected ${collectedMax} > ${LIMITS.maxCollectedSize}`);
  assert.ok(r.chunkSize >= LIMITS.minChunkSize && r.chunkSize <= LIMITS.maxChunkSize);
  assert.ok(r.pendingHeaderBytes <= 18);
}

describe(`fuzz (scale ${SCALE})`, () => {
  test('handshake skipper: random first bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 1, maxLength: 40 }), fc.nat({ max: 4000 }), (head, extra) => {
        total++;
        const hs = new HandshakeSkipper();
        const buf = Buffer.concat([Buffer.from(head), Buffer.alloc(extra)]);
        try {
          const next = hs.consume(buf, 0);
          assert.equal(head[0], 3);
          assert.equal(next, Math.min(buf.length, HANDSHAKE_TOTAL));
          assert.equal(hs.done, buf.length >= HANDSHAKE_TOTAL);
        } catch (err) {
          if (!(err instanceof ProtocolError)) throw err;
          assert.ok(err.code === 'rtmpe' ? head[0] === 6 : err.code === 'bad-version' && head[0] !== 3);
        }
      }),
      { numRuns: runs(10_000) },
    );
  });

  test('chunk reader: random bytes in random pieces', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), fc.array(fc.nat(), { maxLength: 4 }), fuzzReader), { numRuns: runs(30_000) });
  });

  test('chunk reader: header-shaped random streams (valid basic headers, wild fields)', () => {
    const chunk = fc.tuple(
      fc.integer({ min: 0, max: 3 }),
      fc.integer({ min: 2, max: 9 }),
      fc.uint8Array({ minLength: 11, maxLength: 11 }),
      fc.uint8Array({ maxLength: 300 }),
    );
    fc.assert(
      fc.property(fc.array(chunk, { maxLength: 12 }), fc.array(fc.nat(), { maxLength: 3 }), (chunks, cuts) => {
        const parts = chunks.map(([fmt, csid, hdr, body]) =>
          Buffer.concat([Buffer.of((fmt << 6) | csid), Buffer.from(hdr.subarray(0, [11, 7, 3, 0][fmt])), Buffer.from(body)]),
        );
        fuzzReader(Buffer.concat(parts), cuts);
      }),
      { numRuns: runs(20_000) },
    );
  });

  test('chunk reader: byte flips in a real OBS 29 publish', () => {
    const obs = readFileSync(join(projectRoot, 'test/fixtures/obs29-publish.c2s.bin')).subarray(HANDSHAKE_TOTAL, HANDSHAKE_TOTAL + 6000);
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat({ max: obs.length - 1 }), fc.nat({ max: 255 })), { minLength: 1, maxLength: 4 }),
        fc.array(fc.nat(), { maxLength: 2 }),
        (flips, cuts) => {
          const b = Buffer.from(obs);
          for (const [at, v] of flips) b[at] = v;
          fuzzReader(b, cuts);
        },
      ),
      { numRuns: runs(10_000) },
    );
  });

  test('AMF0: random bytes decode or fail with Amf0Error only', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), (bytes) => {
        total++;
        try {
          const values = decodeAmf0(bytes, { maxDepth: 8, maxItems: 64, maxStringBytes: 1024, maxValues: 16 });
          assert.ok(values.length <= 16);
          // Whatever decodes re-encodes and decodes to the same values.
          assert.deepEqual(decodeAmf0(encodeAmf0(values)), values);
        } catch (err) {
          if (!(err instanceof Amf0Error)) throw err;
        }
      }),
      { numRuns: runs(20_000) },
    );
  });

  test('AMF0: byte flips in a real connect command', () => {
    const connect = encodeAmf0([
      'connect',
      1,
      amf0Object({ app: 'live', type: 'nonprivate', flashVer: 'FMLE/3.0', tcUrl: 'rtmp://127.0.0.1/live', supportsGoAway: true, capsEx: 1 }),
    ]);
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat({ max: connect.length - 1 }), fc.nat({ max: 255 })), { minLength: 1, maxLength: 3 }), (flips) => {
        total++;
        const b = Buffer.from(connect);
        for (const [at, v] of flips) b[at] = v;
        try {
          decodeAmf0(b, { maxDepth: 8, maxItems: 64, maxStringBytes: 1024, maxValues: 16 });
        } catch (err) {
          if (!(err instanceof Amf0Error)) throw err;
        }
      }),
      { numRuns: runs(10_000) },
    );
  });

  test('at least 100,000 generated inputs ran', () => {
    assert.ok(total >= 100_000 * SCALE, `only ${total} inputs`);
  });
});
