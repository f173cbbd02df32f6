import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { AdminAccess, isLoopbackHost } from '../../src/control/admin-access.js';

const get = (path: string, headers: Record<string, string> = {}) => ({ method: 'GET', path, headers });
const post = (path: string, headers: Record<string, string> = {}) => ({ method: 'POST', path, headers: { 'content-type': 'application/json', ...headers } });

describe('AdminAccess', () => {
  test('loopback names', () => {
    for (const h of ['localhost', 'LocalHost', '127.0.0.1', '127.9.8.7', '::1', '[::1]', '0:0:0:0:0:0:0:1', '::ffff:127.0.0.1'])
      assert.equal(isLoopbackHost(h), true, h);
    for (const h of ['0.0.0.0', '::', '[::]', '10.0.0.1', 'localhost.evil.example', 'evil.example', '128.0.0.1', '::2', ''])
      assert.equal(isLoopbackHost(h), false, h);
  });

  test('loopback, no token: Host decides, then Origin, then the JSON POST', () => {
    const a = new AdminAccess('127.0.0.1', '');
    assert.equal(a.closedWarning, null);
    assert.equal(a.check(get('/api/sessions', { host: 'localhost:9935' })), null);
    assert.equal(a.check(get('/api/sessions'))?.reason, 'host', 'no Host at all');
    assert.equal(a.check(get('/metrics', { host: 'rebind.example:9935' }))?.reason, 'host');
    assert.equal(a.check(get('/api/sessions', { host: '127.0.0.1:9935@evil' }))?.reason, 'host');
    assert.equal(a.check(post('/api/backends/b/drain', { host: '127.0.0.1:9935', origin: 'http://127.0.0.1:9935' })), null);
    assert.equal(a.check(post('/api/backends/b/drain', { host: '127.0.0.1:9935', origin: 'http://localhost:9935' }))?.reason, 'origin');
    assert.equal(a.check(post('/api/backends/b/drain', { host: '127.0.0.1:80', origin: 'http://127.0.0.1' })), null, 'default port');
    assert.equal(a.check({ method: 'POST', path: '/x', headers: { host: 'localhost', 'content-type': 'application/jsonx' } })?.status, 415);
  });

  test('non-loopback: no token closes everything but the probes; a token opens it', () => {
    const closed = new AdminAccess('0.0.0.0', '', '0.0.0.0:9935');
    assert.match(closed.closedWarning ?? '', /0\.0\.0\.0:9935/);
    for (const p of ['/healthz', '/readyz', '/metrics']) assert.equal(closed.check(get(p, { host: 'pod:9935' })), null, p);
    assert.equal(closed.check(get('/api/sessions', { host: 'pod:9935' }))?.status, 403);
    assert.equal(closed.check(post('/metrics', { host: 'pod:9935' }))?.status, 403, 'a POST is never a probe');
    const open = new AdminAccess('::', 'tok');
    assert.equal(open.check(get('/api/sessions', { host: 'pod:9935', authorization: 'Bearer tok' })), null);
    assert.equal(open.check(get('/api/sessions', { host: 'pod:9935', authorization: 'Bearer tok2' }))?.status, 401);
  });

  test('only the exact token authorizes (property)', () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[!-~]{1,64}$/), fc.string({ maxLength: 80 }), (token, other) => {
        const a = new AdminAccess('0.0.0.0', token);
        assert.equal(a.authorized(`Bearer ${token}`), true);
        assert.equal(a.authorized(`Bearer ${other}`), other.trim() === token && /^\S+$/.test(other.trim()));
      }),
    );
  });
});
