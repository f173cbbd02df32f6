import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { CidrSet } from '../../src/net/cidr.js';

describe('CidrSet', () => {
  test('subnets and bare addresses; IPv4-mapped sources count as IPv4', () => {
    const { set, invalid } = CidrSet.parse(['10.0.0.0/8', ' 192.0.2.7 ', '2001:db8::/32']);
    assert.deepEqual(invalid, []);
    assert.deepEqual(set.text, ['10.0.0.0/8', '192.0.2.7', '2001:db8::/32']);
    for (const ip of ['10.1.2.3', '::ffff:10.1.2.3', '192.0.2.7', '2001:db8:1::5']) assert.equal(set.has(ip), true, ip);
    for (const ip of ['11.0.0.1', '192.0.2.8', '2001:db9::1', '::1', 'not-an-ip', '', null, undefined]) assert.equal(set.has(ip), false, String(ip));
  });

  test('0.0.0.0/0,::/0 is everyone; an empty set is no one', () => {
    const all = CidrSet.parse(['0.0.0.0/0', '::/0']).set;
    for (const ip of ['1.2.3.4', '::ffff:1.2.3.4', '2001:db8::1', '::1']) assert.equal(all.has(ip), true, ip);
    const none = CidrSet.parse([]).set;
    assert.equal(none.empty, true);
    assert.equal(none.has('127.0.0.1'), false);
  });

  test('anything else is reported, not guessed', () => {
    const bad = ['10.0.0.0/33', '::/129', '10.0.0.0/8/8', '10.0.0.0/', '10.0.0.0/x', 'lb.example', '10.0.0.0/-1', '300.0.0.0/8'];
    const { set, invalid } = CidrSet.parse(bad);
    assert.deepEqual(invalid, bad);
    assert.equal(set.empty, true);
  });
});
