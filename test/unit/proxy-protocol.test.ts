import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, test } from 'node:test';
import { MAX_PROXY_HEADER, MAX_V1_HEADER, encodeProxyV1, encodeProxyV2, parseProxyHeader, unmapIPv4 } from '../../src/net/proxy-protocol.js';

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const SIG = '0d0a0d0a000d0a515549540a';

describe('PROXY protocol v1', () => {
  test('TCP4 line, followed by RTMP bytes', () => {
    const buf = Buffer.concat([Buffer.from('PROXY TCP4 192.0.2.10 198.51.100.1 56324 1935\r\n'), Buffer.of(3, 1, 2)]);
    const r = parseProxyHeader(buf);
    assert.equal(r.kind, 'ok');
    if (r.kind !== 'ok') return;
    assert.equal(r.length, buf.length - 3);
    assert.deepEqual(r.header, {
      version: 1,
      command: 'proxy',
      family: 'tcp4',
      source: { address: '192.0.2.10', port: 56324 },
      destination: { address: '198.51.100.1', port: 1935 },
    });
  });

  test('TCP6 line and the longest legal line (107 bytes)', () => {
    const r = parseProxyHeader(Buffer.from('PROXY TCP6 2001:db8::1 2001:db8::2 65535 1935\r\n'));
    assert.equal(r.kind, 'ok');
    if (r.kind === 'ok') assert.deepEqual(r.header.source, { address: '2001:db8::1', port: 65535 });
    const a = 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff';
    assert.equal(parseProxyHeader(Buffer.from(`PROXY TCP6 ${a} ${a} 65535 65535\r\n`)).kind, 'ok');
    const longest = Buffer.from(`PROXY UNKNOWN ${a} ${a} 65535 65535\r\n`);
    assert.equal(longest.length, MAX_V1_HEADER);
    assert.equal(parseProxyHeader(longest).kind, 'ok');
  });

  test('UNKNOWN (with and without trailing text) means "use the socket address"', () => {
    for (const line of ['PROXY UNKNOWN\r\n', 'PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n']) {
      const r = parseProxyHeader(Buffer.from(line));
      assert.equal(r.kind, 'ok');
      if (r.kind === 'ok') {
        assert.equal(r.header.command, 'local');
        assert.equal(r.header.source, null);
        assert.equal(r.length, line.length);
      }
    }
  });

  test('every prefix of a valid line is incomplete, never invalid', () => {
    const line = Buffer.from('PROXY TCP4 10.1.2.3 10.0.0.1 40000 1935\r\n');
    for (let n = 1; n < line.length; n++) assert.equal(parseProxyHeader(line.subarray(0, n)).kind, 'incomplete', `prefix ${n}`);
  });

  test('bad lines are invalid', () => {
    for (const line of [
      'PROXY TCP4 10.1.2.3 10.0.0.1 40000\r\n',
      'PROXY TCP4 10.1.2.300 10.0.0.1 40000 1935\r\n',
      'PROXY TCP4 ::1 10.0.0.1 40000 1935\r\n',
      'PROXY TCP6 10.1.2.3 ::1 40000 1935\r\n',
      'PROXY TCP4 10.1.2.3 10.0.0.1 65536 1935\r\n',
      'PROXY TCP4 10.1.2.3 10.0.0.1 040000 1935\r\n',
      'PROXY TCP4  10.1.2.3 10.0.0.1 4 1935\r\n',
      'PROXY UDP4 10.1.2.3 10.0.0.1 40000 1935\r\n',
      'PROXY TCP4 10.1.2.3 10.0.0.1 40000 1935\n',
      'PROXY TCP4 10.1.2.3\r10.0.0.1 40000 1935\r\n',
      'PROXY TCP4 10.1.2.3 10.0.0.1 40000 1935\u0000\r\n',
    ]) {
      assert.equal(parseProxyHeader(Buffer.from(line, 'latin1')).kind, 'invalid', JSON.stringify(line));
    }
    // No CRLF within 107 bytes.
    assert.equal(parseProxyHeader(Buffer.from(`PROXY TCP4 ${'1'.repeat(200)}`)).kind, 'invalid');
  });

  test('not a header: RTMP C0, HTTP, TLS ClientHello, "PROXZ"', () => {
    assert.deepEqual(parseProxyHeader(Buffer.of(3, 0, 0, 0)), { kind: 'none' });
    assert.deepEqual(parseProxyHeader(Buffer.from('GET / HTTP/1.1\r\n')), { kind: 'none' });
    assert.deepEqual(parseProxyHeader(Buffer.of(0x16, 0x03, 0x01)), { kind: 'none' });
    assert.deepEqual(parseProxyHeader(Buffer.from('PROXZ')), { kind: 'none' });
    assert.deepEqual(parseProxyHeader(Buffer.from('\r\nGET')), { kind: 'none' });
    assert.deepEqual(parseProxyHeader(Buffer.from('P')), { kind: 'incomplete' });
  });
});

describe('PROXY protocol v2', () => {
  // HAProxy `send-proxy-v2`, 203.0.113.7:51000 → 192.0.2.1:1935, no TLV.
  const v4 = hex(`${SIG} 21 11 000c cb007107 c0000201 c738 078f`);
  // 2001:db8::7:51000 → 2001:db8::1:1935 plus a 7-byte CRC32C TLV (type 0x03).
  const v6 = hex(`${SIG} 21 21 002b 20010db8000000000000000000000007 20010db8000000000000000000000001 c738 078f 03 0004 deadbeef`);

  test('TCP over IPv4', () => {
    const r = parseProxyHeader(Buffer.concat([v4, Buffer.of(3)]));
    assert.equal(r.kind, 'ok');
    if (r.kind !== 'ok') return;
    assert.equal(r.length, 28);
    assert.deepEqual(r.header.source, { address: '203.0.113.7', port: 51000 });
    assert.deepEqual(r.header.destination, { address: '192.0.2.1', port: 1935 });
  });

  test('TCP over IPv6 with a TLV (skipped by length)', () => {
    const r = parseProxyHeader(Buffer.concat([v6, Buffer.of(3, 9, 9)]));
    assert.equal(r.kind, 'ok');
    if (r.kind !== 'ok') return;
    assert.equal(r.length, 16 + 43);
    assert.equal(r.header.family, 'tcp6');
    assert.deepEqual(r.header.source, { address: '2001:db8::7', port: 51000 });
  });

  test('LOCAL (balancer health check) and UNSPEC / UDP: use the socket address', () => {
    for (const b of [
      hex(`${SIG} 20 00 0000`),
      hex(`${SIG} 20 11 000c 0000000000000000 00000000`),
      hex(`${SIG} 21 00 0000`),
      hex(`${SIG} 21 12 000c cb007107c0000201c738078f`),
    ]) {
      const r = parseProxyHeader(b);
      assert.equal(r.kind, 'ok');
      if (r.kind === 'ok') {
        assert.equal(r.header.source, null);
        assert.equal(r.length, b.length);
      }
    }
  });

  test('every prefix is incomplete', () => {
    for (const b of [v4, v6]) for (let n = 1; n < b.length; n++) assert.equal(parseProxyHeader(b.subarray(0, n)).kind, 'incomplete', `prefix ${n}`);
  });

  test('bad version, command, family, short address block, over 232 bytes ⇒ invalid', () => {
    for (const b of [
      hex(`${SIG} 11 11 000c cb007107c0000201c738078f`),
      hex(`${SIG} 22 11 000c cb007107c0000201c738078f`),
      hex(`${SIG} 21 41 000c cb007107c0000201c738078f`),
      hex(`${SIG} 21 13 000c cb007107c0000201c738078f`),
      hex(`${SIG} 21 11 0008 cb007107c0000201`),
      hex(`${SIG} 21 21 000c cb007107c0000201c738078f`),
      Buffer.concat([hex(`${SIG} 21 11 00d9`), Buffer.alloc(20)]),
    ]) {
      assert.equal(parseProxyHeader(b).kind, 'invalid', b.subarray(12, 16).toString('hex'));
    }
    // The limit is known from the first 16 bytes: no need to wait for 64 KiB.
    assert.equal(parseProxyHeader(hex(`${SIG} 21 11 ffff`)).kind, 'invalid');
  });
});

describe('building headers (round trip)', () => {
  test('v1 and v2, IPv4, IPv6, mixed (IPv4-mapped), non-IP', () => {
    const cases = [
      [
        { address: '203.0.113.7', port: 51000 },
        { address: '192.0.2.1', port: 1935 },
      ],
      [
        { address: '::ffff:203.0.113.7', port: 51000 },
        { address: '::ffff:127.0.0.1', port: 1935 },
      ],
      [
        { address: '2001:db8::7', port: 1 },
        { address: '::1', port: 65535 },
      ],
      [
        { address: '203.0.113.7', port: 2 },
        { address: 'fe80::1', port: 3 },
      ],
    ] as const;
    for (const [src, dst] of cases) {
      for (const enc of [encodeProxyV1, encodeProxyV2]) {
        const r = parseProxyHeader(enc(src, dst));
        assert.equal(r.kind, 'ok', `${enc.name} ${src.address}`);
        if (r.kind !== 'ok') continue;
        assert.equal(r.header.command, 'proxy');
        const fam = r.header.family;
        const s = r.header.source!;
        if (fam === 'tcp4') assert.equal(s.address, unmapIPv4(src.address));
        else assert.equal(unmapIPv4(s.address), unmapIPv4(src.address));
        assert.equal(s.port, src.port);
        assert.equal(r.header.destination!.port, dst.port);
      }
    }
    assert.equal(
      encodeProxyV1({ address: '203.0.113.7', port: 2 }, { address: 'fe80::1', port: 3 }).toString(),
      'PROXY TCP6 ::ffff:203.0.113.7 fe80::1 2 3\r\n',
    );
    assert.equal(encodeProxyV1({ address: 'unix', port: 0 }, { address: '::1', port: 1 }).toString(), 'PROXY UNKNOWN\r\n');
    assert.equal(encodeProxyV2({ address: 'unix', port: 0 }, { address: '::1', port: 1 }).toString('hex'), `${SIG}20000000`);
  });

  test('fuzz: random and mutated inputs never throw, never claim more than 232 bytes', () => {
    const seeds = [
      Buffer.from('PROXY TCP4 10.1.2.3 10.0.0.1 40000 1935\r\n'),
      Buffer.from('PROXY TCP6 2001:db8::1 2001:db8::2 65535 1935\r\n'),
      hex(`${SIG} 21 11 000c cb007107 c0000201 c738 078f`),
      hex(`${SIG} 21 21 0024 20010db8000000000000000000000007 20010db8000000000000000000000001 c738 078f`),
    ];
    const n = Number(process.env['FUZZ_ITERATIONS'] ?? 0) || 20_000;
    let ok = 0;
    for (let i = 0; i < n; i++) {
      let b: Buffer;
      if (i % 4 === 0) b = randomBytes(1 + (i % MAX_PROXY_HEADER));
      else {
        b = Buffer.from(seeds[i % seeds.length]!);
        for (let k = 0; k < 1 + (i % 3); k++) b[(i * 7919 + k * 104729) % b.length] = (i * 31 + k) & 0xff;
        b = b.subarray(0, 1 + ((i * 13) % b.length));
      }
      const r = parseProxyHeader(b);
      if (r.kind === 'ok') {
        ok++;
        assert.ok(r.length <= MAX_PROXY_HEADER && r.length <= b.length);
      }
    }
    assert.ok(ok > 0);
  });
});
