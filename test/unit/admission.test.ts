import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Admission, limitKey } from '../../src/proxy/admission.js';

describe('per-IP admission', () => {
  test('limit keys: IPv4, IPv4-mapped, IPv6 by /64', () => {
    assert.equal(limitKey('203.0.113.7'), '203.0.113.7');
    assert.equal(limitKey('::ffff:203.0.113.7'), '203.0.113.7');
    assert.equal(limitKey('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64');
    assert.equal(limitKey('2001:db8:1:2::9'), '2001:db8:1:2::/64');
    assert.equal(limitKey('2001:0db8:0001:0002::'), '2001:db8:1:2::/64');
    assert.equal(limitKey('2001:db8::1'), '2001:db8:0:0::/64');
    assert.equal(limitKey('::1'), '0:0:0:0::/64');
    assert.equal(limitKey('fe80::1%eth0'), 'fe80:0:0:0::/64');
  });

  test('concurrent sessions per IP; release frees the slot; other IPs unaffected', () => {
    const a = new Admission({ maxSessionsPerIp: 2, connectRatePerIp: 0, connectBurstPerIp: 1 });
    assert.equal(a.admit('1.1.1.1'), null);
    assert.equal(a.admit('1.1.1.1'), null);
    assert.equal(a.admit('1.1.1.1'), 'per-ip-sessions');
    assert.equal(a.admit('2.2.2.2'), null);
    a.release('1.1.1.1');
    assert.equal(a.admit('1.1.1.1'), null);
    a.release('1.1.1.1');
    a.release('1.1.1.1');
    a.release('2.2.2.2');
    assert.equal(a.tracked, 0, 'nothing kept without a rate limit');
  });

  test('token bucket: burst, then the rate; refused attempts cost nothing; idle IPs forgotten', () => {
    let now = 0;
    const a = new Admission({ maxSessionsPerIp: 0, connectRatePerIp: 2, connectBurstPerIp: 3 }, () => now);
    for (let i = 0; i < 3; i++) assert.equal(a.admit('1.1.1.1'), null);
    assert.equal(a.admit('1.1.1.1'), 'per-ip-rate');
    for (let i = 0; i < 100; i++) a.admit('1.1.1.1');
    now += 500; // one token back
    assert.equal(a.admit('1.1.1.1'), null);
    assert.equal(a.admit('1.1.1.1'), 'per-ip-rate');
    for (let i = 0; i < 4; i++) a.release('1.1.1.1');
    a.sweep();
    assert.equal(a.tracked, 1, 'bucket not full yet');
    now += 10_000;
    a.sweep();
    assert.equal(a.tracked, 0);
    a.stop();
  });

  test('disabled when every limit is 0', () => {
    assert.equal(new Admission({ maxSessionsPerIp: 0, connectRatePerIp: 0, connectBurstPerIp: 5 }).enabled, false);
  });
});
