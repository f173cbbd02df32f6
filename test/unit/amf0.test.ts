/**
 * AMF0 codec tests. Section numbers refer to Adobe's "Action Message Format -- AMF 0" (2006).
 * Byte fixtures are written by hand from the spec, so they check the codec against the format,
 * not against itself.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import {
  AMF0_UNSUPPORTED,
  Amf0Date,
  Amf0EcmaArray,
  Amf0Error,
  Amf0Reference,
  Amf0TypedObject,
  Amf0Unsupported,
  Amf0Xml,
  DEFAULT_AMF0_LIMITS,
  amf0Budget,
  amf0Object,
  decodeAmf0,
  decodeAmf0Value,
  encodeAmf0,
  encodeAmf0Value,
  isAmf0Object,
  type Amf0ErrorCode,
  type Amf0Value,
} from '../../src/rtmp/amf0.js';
import { hostileConnect } from '../helpers/hostile-amf.js';

/** "03 00 0e" -> bytes; whitespace is ignored. */
const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

function throwsAmf0(fn: () => unknown, code: Amf0ErrorCode): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof Amf0Error, `expected Amf0Error, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    return true;
  });
}

/** Runs `fn`; passes if it returns or throws an Amf0Error, fails on anything else. */
function onlyAmf0Errors(fn: () => void): void {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof Amf0Error)) throw new Error(`threw a non-Amf0Error: ${String(e)}`, { cause: e });
  }
}

// Hand-written encodings, one or more per marker (§2.1). Each is checked both ways.
const fixtures: { name: string; bytes: string; value: Amf0Value }[] = [
  { name: 'number 1 (§2.2)', bytes: '00 3f f0 00 00 00 00 00 00', value: 1 },
  { name: 'number 1935 (§2.2)', bytes: '00 40 9e 3c 00 00 00 00 00', value: 1935 },
  { name: 'number -0 (§2.2)', bytes: '00 80 00 00 00 00 00 00 00', value: -0 },
  { name: 'number NaN (§2.2)', bytes: '00 7f f8 00 00 00 00 00 00', value: NaN },
  { name: 'number Infinity (§2.2)', bytes: '00 7f f0 00 00 00 00 00 00', value: Infinity },
  { name: 'boolean true (§2.3)', bytes: '01 01', value: true },
  { name: 'boolean false (§2.3)', bytes: '01 00', value: false },
  { name: 'string "live" (§2.4)', bytes: '02 00 04 6c 69 76 65', value: 'live' },
  { name: 'empty string (§2.4)', bytes: '02 00 00', value: '' },
  { name: 'string, UTF-8 length in bytes (§1.3)', bytes: '02 00 09 c3 a9 e2 82 ac f0 9f 98 80', value: 'é€😀' },
  {
    name: 'object {app:"live"} (§2.5)',
    bytes: '03 00 03 61 70 70 02 00 04 6c 69 76 65 00 00 09',
    value: amf0Object({ app: 'live' }),
  },
  {
    // The fragment OBS puts in its connect command object (facebookarchive Go Away spec).
    name: 'object {supportsGoAway:true} (§2.5)',
    bytes: '03 00 0e 73 75 70 70 6f 72 74 73 47 6f 41 77 61 79 01 01 00 00 09',
    value: amf0Object({ supportsGoAway: true }),
  },
  { name: 'empty object (§2.5)', bytes: '03 00 00 09', value: amf0Object({}) },
  { name: 'object with an empty key (§2.5)', bytes: '03 00 00 05 00 00 09', value: amf0Object({ '': null }) },
  { name: 'null (§2.7)', bytes: '05', value: null },
  { name: 'undefined (§2.8)', bytes: '06', value: undefined },
  { name: 'reference 2 (§2.9)', bytes: '07 00 02', value: new Amf0Reference(2) },
  {
    name: 'ECMA array {duration:5} (§2.10)',
    bytes: '08 00 00 00 01 00 08 64 75 72 61 74 69 6f 6e 00 40 14 00 00 00 00 00 00 00 00 09',
    value: new Amf0EcmaArray(amf0Object({ duration: 5 })),
  },
  {
    name: 'strict array [1, "app", null] (§2.12)',
    bytes: '0a 00 00 00 03 00 3f f0 00 00 00 00 00 00 02 00 03 61 70 70 05',
    value: [1, 'app', null],
  },
  { name: 'empty strict array (§2.12)', bytes: '0a 00 00 00 00', value: [] },
  {
    name: 'date 2^40 ms, timezone -60 (§2.13)',
    bytes: '0b 42 70 00 00 00 00 00 00 ff c4',
    value: new Amf0Date(2 ** 40, -60),
  },
  { name: 'unsupported (§2.15)', bytes: '0d', value: new Amf0Unsupported() },
  { name: 'XML document "<a/>" (§2.17)', bytes: '0f 00 00 00 04 3c 61 2f 3e', value: new Amf0Xml('<a/>') },
  {
    name: 'typed object Foo {x:0.5} (§2.18)',
    bytes: '10 00 03 46 6f 6f 00 01 78 00 3f e0 00 00 00 00 00 00 00 00 09',
    value: new Amf0TypedObject('Foo', amf0Object({ x: 0.5 })),
  },
];

const connectCommand = (): Amf0Value[] => [
  'connect',
  1,
  amf0Object({
    app: 'live',
    type: 'nonprivate',
    flashVer: 'FMLE/3.0 (compatible; FMSc/1.0)',
    swfUrl: 'rtmp://127.0.0.1:1935/live',
    tcUrl: 'rtmp://127.0.0.1:1935/live',
    supportsGoAway: true,
    capsEx: 1,
  }),
];

/** Body of the first type-18/20 message starting with `name`, from a capture (test/fixtures/README.md). */
function capturedMessage(file: string, name: string): Buffer {
  const data = readFileSync(new URL(`../fixtures/${file}`, import.meta.url));
  const start = data.indexOf(Buffer.concat([hex('02'), Buffer.from([0, name.length]), Buffer.from(name)]));
  assert.ok(start >= 12, `${name} not found in ${file}`);
  // Preceded by a type-0 chunk header: 1-byte basic header, then timestamp(3) length(3) type(1)
  // stream(4) (RTMP spec §5.3.1.2.1). The captures use chunk size 4096, so the body is contiguous.
  const length = data.readUIntBE(start - 8, 3);
  return data.subarray(start, start + length);
}

/** Amf0Value trees of bounded depth, including the awkward keys and every marker the encoder emits. */
const amf0ValueArb: fc.Arbitrary<Amf0Value> = fc.letrec<{ value: Amf0Value; entries: Record<string, Amf0Value> }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', maxDepth: 4 },
    fc.double(),
    fc.boolean(),
    fc.string({ unit: 'binary', maxLength: 12 }),
    fc.constant(null),
    fc.constant(undefined),
    fc.integer({ min: 0, max: 0xffff }).map((i) => new Amf0Reference(i)),
    fc.tuple(fc.double(), fc.integer({ min: -0x8000, max: 0x7fff })).map(([ms, tz]) => new Amf0Date(ms, tz)),
    fc.string({ unit: 'binary', maxLength: 12 }).map((s) => new Amf0Xml(s)),
    fc.constant(AMF0_UNSUPPORTED),
    tie('entries').map((e) => amf0Object(e)),
    tie('entries').map((e) => new Amf0EcmaArray(amf0Object(e))),
    fc.tuple(fc.string({ maxLength: 6 }), tie('entries')).map(([name, e]) => new Amf0TypedObject(name, amf0Object(e))),
    fc.array(tie('value'), { maxLength: 4 }),
  ),
  entries: fc.dictionary(fc.oneof(fc.string({ unit: 'binary', maxLength: 8 }), fc.constantFrom('__proto__', 'constructor', '')), tie('value'), { maxKeys: 4 }),
})).value;

describe('AMF0 byte fixtures (hand-written from the spec)', () => {
  for (const f of fixtures) {
    it(f.name, () => {
      const bytes = hex(f.bytes);
      assert.deepEqual(decodeAmf0(bytes), [f.value]);
      assert.deepEqual(decodeAmf0Value(bytes, 0), { value: f.value, next: bytes.length });
      assert.deepEqual(encodeAmf0Value(f.value), bytes);
    });
  }

  it('ECMA array: the declared count is ignored, entries run to 00 00 09 (§2.10)', () => {
    // Count says 0 but two entries follow, as some FLV/FMLE muxers write it.
    const bytes = hex('08 00 00 00 00 00 01 61 01 01 00 01 62 05 00 00 09');
    assert.deepEqual(decodeAmf0(bytes), [new Amf0EcmaArray(amf0Object({ a: true, b: null }))]);
    // Re-encoding writes the true count.
    assert.deepEqual(encodeAmf0(decodeAmf0(bytes)), hex('08 00 00 00 02 00 01 61 01 01 00 01 62 05 00 00 09'));
  });

  it('long string marker decodes, and short values re-encode as 0x02 (§2.14)', () => {
    assert.deepEqual(decodeAmf0(hex('0c 00 00 00 03 61 62 63')), ['abc']);
    assert.deepEqual(encodeAmf0Value('abc'), hex('02 00 03 61 62 63'));
  });

  it('encoder picks 0x02 up to 65535 UTF-8 bytes, 0x0C beyond (§2.4, §2.14)', () => {
    const max = 'a'.repeat(0xffff);
    assert.deepEqual(encodeAmf0Value(max).subarray(0, 3), hex('02 ff ff'));
    // 32768 two-byte characters: short in UTF-16 code units, 65536 bytes in UTF-8.
    const long = 'é'.repeat(0x8000);
    const enc = encodeAmf0Value(long);
    assert.deepEqual(enc.subarray(0, 5), hex('0c 00 01 00 00'));
    assert.equal(enc.length, 5 + 0x10000);
    assert.deepEqual(decodeAmf0(enc), [long]);
  });

  it('boolean: any non-zero byte is true (§2.3)', () => {
    assert.deepEqual(decodeAmf0(hex('01 02')), [true]);
  });

  it('decodeAmf0Value returns the offset after the value', () => {
    const bytes = hex('05 02 00 02 68 69 06');
    assert.deepEqual(decodeAmf0Value(bytes, 1), { value: 'hi', next: 6 });
    assert.deepEqual(decodeAmf0Value(bytes, 6), { value: undefined, next: 7 });
    // A Uint8Array view into a larger buffer works the same as a Buffer.
    const view = new Uint8Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length), 1, 5);
    assert.deepEqual(decodeAmf0(view), ['hi']);
  });

  it('decodeAmf0 on an empty buffer yields no values', () => {
    assert.deepEqual(decodeAmf0(new Uint8Array(0)), []);
  });
});

describe('AMF0 round trips', () => {
  it('connect command: deep-equal, byte-exact, key order kept', () => {
    const values = connectCommand();
    const bytes = encodeAmf0(values);
    // "connect" string, transaction id 1, then the command object (RTMP spec §7.2.1.1).
    assert.deepEqual(bytes.subarray(0, 19), hex('02 00 07 63 6f 6e 6e 65 63 74 00 3f f0 00 00 00 00 00 00'));
    assert.ok(bytes.includes(hex('00 0e 73 75 70 70 6f 72 74 73 47 6f 41 77 61 79 01 01')));
    const decoded = decodeAmf0(bytes);
    assert.deepEqual(decoded, values);
    assert.ok(isAmf0Object(decoded[2]));
    assert.deepEqual(Object.keys(decoded[2] as object), Object.keys(values[2] as object));
    assert.deepEqual(encodeAmf0(decoded), bytes);
  });

  it('plain {} objects encode like null-prototype ones', () => {
    const plain: Amf0Value = { app: 'live', n: 1 };
    assert.deepEqual(encodeAmf0Value(plain), encodeAmf0Value(amf0Object({ app: 'live', n: 1 })));
  });

  for (const [file, name] of [
    ['obs29-publish.c2s.bin', 'connect'],
    ['obs29-publish.c2s.bin', '@setDataFrame'],
    ['obs29-publish.s2c.bin', '_result'],
  ] as const) {
    it(`real capture: ${file} ${name} re-encodes byte-exact`, () => {
      const body = capturedMessage(file, name);
      const values = decodeAmf0(body);
      assert.equal(values[0], name);
      assert.deepEqual(encodeAmf0(values), body);
      if (name === 'connect') {
        const cmd = values[2];
        assert.ok(isAmf0Object(cmd));
        assert.equal(cmd.supportsGoAway, true);
        assert.equal(cmd.app, 'live');
      }
      if (name === '@setDataFrame') assert.ok(values[2] instanceof Amf0EcmaArray);
    });
  }

  it('property: decode(encode(vs)) deep-equals vs and re-encodes byte-exact', () => {
    fc.assert(
      fc.property(fc.array(amf0ValueArb, { maxLength: 6 }), (values) => {
        const bytes = encodeAmf0(values);
        const decoded = decodeAmf0(bytes);
        assert.deepEqual(decoded, values);
        assert.deepEqual(encodeAmf0(decoded), bytes);
      }),
      { numRuns: 300 },
    );
  });
});

describe('AMF0 rejects hostile input with Amf0Error only', () => {
  it('every strict prefix of a value is "truncated"', () => {
    const samples: Amf0Value[] = [...fixtures.map((f) => f.value), ...connectCommand()];
    for (const v of samples) {
      const bytes = encodeAmf0Value(v);
      for (let n = 0; n < bytes.length; n++) {
        throwsAmf0(() => decodeAmf0Value(bytes.subarray(0, n), 0), 'truncated');
      }
    }
  });

  it('every prefix of a command either decodes the leading values or is "truncated"', () => {
    const values = connectCommand();
    const bytes = encodeAmf0(values);
    for (let n = 0; n <= bytes.length; n++) {
      try {
        const got = decodeAmf0(bytes.subarray(0, n));
        assert.deepEqual(got, values.slice(0, got.length));
        assert.deepEqual(encodeAmf0(got), bytes.subarray(0, n));
      } catch (e) {
        assert.ok(e instanceof Amf0Error && e.code === 'truncated', `prefix ${n}: ${String(e)}`);
      }
    }
  });

  it('property: every strict prefix of an arbitrary value is "truncated"', () => {
    fc.assert(
      fc.property(amf0ValueArb, (v) => {
        const bytes = encodeAmf0Value(v);
        for (let n = 0; n < bytes.length; n++) {
          throwsAmf0(() => decodeAmf0Value(bytes.subarray(0, n), 0), 'truncated');
        }
      }),
      { numRuns: 100 },
    );
  });

  it('depth bomb: 1000 nested objects is "depth", not a stack overflow', () => {
    // Each level: object marker, key "a" (§2.5); the bytes end before any object end.
    const bomb = Buffer.concat(Array.from({ length: 1000 }, () => hex('03 00 01 61')));
    throwsAmf0(() => decodeAmf0(bomb), 'depth');
    // Same for strict arrays of one element (§2.12), and even with a huge caller limit.
    const arrays = Buffer.concat(Array.from({ length: 100_000 }, () => hex('0a 00 00 00 01')));
    throwsAmf0(() => decodeAmf0(arrays), 'depth');
    throwsAmf0(() => decodeAmf0(arrays, { maxDepth: Infinity }), 'depth');
  });

  it('maxDepth counts nested containers of every kind', () => {
    const nest = (levels: number): Amf0Value => {
      let v: Amf0Value = 1;
      for (let i = 0; i < levels; i++) {
        const k = i % 4;
        v = k === 0 ? amf0Object({ a: v }) : k === 1 ? [v] : k === 2 ? new Amf0EcmaArray(amf0Object({ e: v })) : new Amf0TypedObject('T', amf0Object({ t: v }));
      }
      return v;
    };
    const limit = DEFAULT_AMF0_LIMITS.maxDepth;
    assert.deepEqual(decodeAmf0(encodeAmf0Value(nest(limit))), [nest(limit)]);
    throwsAmf0(() => decodeAmf0(encodeAmf0Value(nest(limit + 1))), 'depth');
    throwsAmf0(() => decodeAmf0(encodeAmf0Value(nest(3)), { maxDepth: 2 }), 'depth');
  });

  it('huge declared strict-array count fails fast, without allocating', () => {
    const bytes = hex('0a ff ff ff ff 05 05');
    throwsAmf0(() => decodeAmf0(bytes), 'too-many-items');
    // With no item limit, the count is still checked against the bytes left.
    throwsAmf0(() => decodeAmf0(bytes, { maxItems: Infinity, maxTotalValues: Infinity }), 'truncated');
  });

  it('huge declared long-string / XML length fails fast', () => {
    throwsAmf0(() => decodeAmf0(hex('0c ff ff ff ff 61 62')), 'string-too-long');
    throwsAmf0(() => decodeAmf0(hex('0f ff ff ff ff 3c')), 'string-too-long');
    throwsAmf0(() => decodeAmf0(hex('0c 00 10 00 00 61'), { maxStringBytes: Infinity, maxTotalStringBytes: Infinity }), 'truncated');
    throwsAmf0(() => decodeAmf0(hex('02 00 05 68 65 6c 6c 6f'), { maxStringBytes: 4 }), 'string-too-long');
  });

  it('item and value limits', () => {
    const many = amf0Object(Object.fromEntries(Array.from({ length: 1025 }, (_, i) => [`k${i}`, null])));
    throwsAmf0(() => decodeAmf0(encodeAmf0Value(many)), 'too-many-items');
    throwsAmf0(() => decodeAmf0(encodeAmf0Value(new Amf0EcmaArray(many))), 'too-many-items');
    assert.equal(decodeAmf0(Buffer.alloc(64, 0x05)).length, 64);
    throwsAmf0(() => decodeAmf0(Buffer.alloc(65, 0x05)), 'too-many-items');
  });

  it('unknown markers: 0x04 MovieClip, 0x0E RecordSet (reserved, §2.1) and above 0x11', () => {
    for (const m of [0x04, 0x0e, 0x12, 0xff]) throwsAmf0(() => decodeAmf0(Buffer.of(m)), 'unknown-marker');
  });

  it('0x11 switch to AMF3 (§3.1) is "amf3-unsupported"', () => {
    throwsAmf0(() => decodeAmf0(hex('02 00 01 61 11 02')), 'amf3-unsupported');
  });

  it('object-end marker outside an object is "invalid" (§2.11)', () => {
    throwsAmf0(() => decodeAmf0(hex('05 09')), 'invalid');
    throwsAmf0(() => decodeAmf0(hex('0a 00 00 00 01 09')), 'invalid');
    throwsAmf0(() => decodeAmf0(hex('03 00 01 61 09')), 'invalid');
  });

  it('bad arguments are "invalid"', () => {
    throwsAmf0(() => decodeAmf0Value(hex('05'), 2), 'invalid');
    throwsAmf0(() => decodeAmf0Value(hex('05'), -1), 'invalid');
    throwsAmf0(() => decodeAmf0Value(hex('05'), 0.5), 'invalid');
    throwsAmf0(() => decodeAmf0('05' as unknown as Uint8Array), 'invalid');
    throwsAmf0(() => decodeAmf0(hex('05'), { maxDepth: NaN }), 'invalid');
  });

  it('"__proto__" key is an own data property and pollutes nothing', () => {
    // {"__proto__": {"polluted": true}} (§2.5)
    const bytes = hex('03 00 09 5f 5f 70 72 6f 74 6f 5f 5f 03 00 08 70 6f 6c 6c 75 74 65 64 01 01 00 00 09 00 00 09');
    const [obj] = decodeAmf0(bytes);
    assert.ok(isAmf0Object(obj));
    assert.equal(Object.getPrototypeOf(obj), null);
    assert.ok(Object.hasOwn(obj, '__proto__'));
    assert.deepEqual(Object.keys(obj), ['__proto__']);
    assert.equal((obj['__proto__'] as Record<string, unknown>).polluted, true);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.ok(!('polluted' in Object.prototype));
    assert.deepEqual(encodeAmf0([obj]), bytes);
    // Same inside ECMA arrays and typed objects.
    const ecma = decodeAmf0(Buffer.concat([hex('08 00 00 00 01'), bytes.subarray(1)]))[0] as Amf0EcmaArray;
    assert.ok(Object.hasOwn(ecma.entries, '__proto__'));
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  it('fuzz: 2000 random byte arrays throw nothing but Amf0Error; accepted input re-decodes stably', () => {
    // Bias towards real markers and small lengths so the fuzzer gets past the first byte.
    const byte = fc.oneof(fc.integer({ min: 0, max: 0x12 }), fc.integer({ min: 0, max: 0xff }));
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), fc.array(byte, { maxLength: 64 }), (raw, biased) => {
        for (const input of [raw, Uint8Array.from(biased)]) {
          let decoded: Amf0Value[] | undefined;
          onlyAmf0Errors(() => {
            decoded = decodeAmf0(input);
          });
          onlyAmf0Errors(() => decodeAmf0Value(input, 0, { maxDepth: 2, maxItems: 2, maxStringBytes: 3 }));
          if (decoded !== undefined) assert.deepEqual(decodeAmf0(encodeAmf0(decoded)), decoded);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('fuzz: single-byte corruptions of a real command throw nothing but Amf0Error', () => {
    const bytes = encodeAmf0(connectCommand());
    fc.assert(
      fc.property(fc.nat({ max: bytes.length - 1 }), fc.integer({ min: 0, max: 0xff }), (i, b) => {
        const mutated = Buffer.from(bytes);
        mutated[i] = b;
        onlyAmf0Errors(() => decodeAmf0(mutated));
      }),
      { numRuns: 500 },
    );
  });
});

describe('AMF0 encoder rejects what AMF0 cannot carry', () => {
  it('object keys over 65535 UTF-8 bytes (§2.5 UTF-8 has a U16 length)', () => {
    throwsAmf0(() => encodeAmf0Value(amf0Object({ ['k'.repeat(0x10000)]: 1 })), 'invalid');
    throwsAmf0(() => encodeAmf0Value(new Amf0TypedObject('C'.repeat(0x10000), amf0Object({}))), 'invalid');
    assert.equal(encodeAmf0Value(amf0Object({ ['k'.repeat(0xffff)]: 1 })).length, 1 + 2 + 0xffff + 9 + 3);
  });

  it('values outside the Amf0Value model, bad class fields and cycles', () => {
    const bad: unknown[] = [1n, Symbol('s'), () => 1, new Map(), new Date(0), Buffer.of(1)];
    for (const v of bad) throwsAmf0(() => encodeAmf0Value(v as Amf0Value), 'invalid');
    throwsAmf0(() => encodeAmf0Value(new Amf0Date(0, 0x8000)), 'invalid');
    throwsAmf0(() => encodeAmf0Value(new Amf0Date(0, 1.5)), 'invalid');
    throwsAmf0(() => encodeAmf0Value(new Amf0Reference(0x10000)), 'invalid');
    const loop = amf0Object({});
    loop.self = [loop];
    throwsAmf0(() => encodeAmf0Value(loop), 'invalid');
    throwsAmf0(() => encodeAmf0(null as unknown as Amf0Value[]), 'invalid');
  });

  it('shared (non-circular) subtrees encode twice, no references emitted', () => {
    const shared = amf0Object({ a: 1 });
    const bytes = encodeAmf0([shared, [shared, shared]]);
    assert.deepEqual(decodeAmf0(bytes), [shared, [shared, shared]]);
  });

  it('isAmf0Object only accepts anonymous objects', () => {
    assert.ok(isAmf0Object(amf0Object({})));
    assert.ok(isAmf0Object({}));
    for (const v of [null, undefined, 1, 'x', [], new Amf0EcmaArray(amf0Object({})), new Amf0Date(0), AMF0_UNSUPPORTED]) {
      assert.ok(!isAmf0Object(v), String(v));
    }
  });
});

describe('AMF0 decode budget: one per message, not per container', () => {
  /** Values in a decoded tree, counted as the decoder counts them (every value at any depth). */
  const countValues = (v: Amf0Value): number => {
    if (Array.isArray(v)) return 1 + v.reduce<number>((n, x) => n + countValues(x), 0);
    if (v instanceof Amf0EcmaArray || v instanceof Amf0TypedObject) return 1 + Object.values(v.entries).reduce<number>((n, x) => n + countValues(x), 0);
    if (isAmf0Object(v)) return 1 + Object.values(v).reduce<number>((n, x) => n + countValues(x), 0);
    return 1;
  };

  it('the hostile connect (strict arrays of 1,024 empty objects, ~256 KiB) stops after the budget of values', () => {
    const body = hostileConnect();
    assert.ok(body.length > 200 * 1024, `${body.length} bytes`);
    for (const maxTotalValues of [1024, DEFAULT_AMF0_LIMITS.maxTotalValues]) {
      const budget = amf0Budget({ maxTotalValues });
      throwsAmf0(() => decodeAmf0(body, { maxTotalValues }, budget), 'over-budget');
      // Work is counted in values decoded, not time: never more than the budget.
      assert.ok(budget.values >= 0 && maxTotalValues - budget.values <= maxTotalValues);
    }
    // Each container alone is within maxItems: only the message budget refuses it.
    assert.ok(decodeAmf0(body, { maxTotalValues: Infinity }).length === 3);
  });

  it('strings and keys share one byte budget per message', () => {
    const two = encodeAmf0(['a'.repeat(600), amf0Object({ ['k'.repeat(300)]: 'v'.repeat(200) })]);
    throwsAmf0(() => decodeAmf0(two, { maxTotalStringBytes: 1000 }), 'over-budget');
    assert.equal(decodeAmf0(two, { maxTotalStringBytes: 1100 }).length, 2);
  });

  it('calls sharing a budget object take from one budget', () => {
    const budget = amf0Budget({ maxTotalValues: 3 });
    const bytes = encodeAmf0(['x', 1, 2, 3]);
    const a = decodeAmf0Value(bytes, 0, undefined, budget);
    assert.equal(budget.values, 2);
    throwsAmf0(() => decodeAmf0(bytes, undefined, budget, a.next), 'over-budget');
  });

  // Any shape, any budget: the values decoded never exceed it, and an accepted tree is exactly as
  // large as what the budget was charged.
  it('property: decoding never exceeds its budget, whatever the nesting', () => {
    const { value } = fc.letrec((tie) => ({
      value: fc.oneof(
        { depthSize: 'small', withCrossShrink: true },
        fc.constant(null),
        fc.integer().map((n): Amf0Value => n),
        fc.string({ maxLength: 8 }).map((s): Amf0Value => s),
        fc.array(tie('value'), { maxLength: 6 }).map((a): Amf0Value => a as Amf0Value[]),
        fc.dictionary(fc.string({ maxLength: 4 }), tie('value'), { maxKeys: 6 }).map((d): Amf0Value => amf0Object(d as Record<string, Amf0Value>)),
        fc
          .dictionary(fc.string({ maxLength: 4 }), tie('value'), { maxKeys: 4 })
          .map((d): Amf0Value => new Amf0EcmaArray(amf0Object(d as Record<string, Amf0Value>))),
      ),
    }));
    fc.assert(
      fc.property(value, fc.integer({ min: 0, max: 200 }), (v, max) => {
        const bytes = encodeAmf0Value(v);
        const budget = amf0Budget({ maxTotalValues: max, maxDepth: Infinity, maxItems: Infinity });
        let ok = false;
        try {
          decodeAmf0(bytes, { maxDepth: Infinity, maxItems: Infinity }, budget);
          ok = true;
        } catch (e) {
          if (!(e instanceof Amf0Error)) throw e;
        }
        const used = max - budget.values;
        assert.ok(used >= 0 && used <= max, `used ${used} of ${max}`);
        const total = countValues(v);
        assert.equal(ok, total <= max, `${total} values, budget ${max}`);
        if (ok) assert.equal(used, total);
      }),
      { numRuns: 500 },
    );
  });
});
