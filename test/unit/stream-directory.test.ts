// StreamDirectory: where a player is routed — its stream's publisher on this replica, else in the
// fleet registry, preferring a backend that is not draining; never a down backend or one excluded.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BackendPool } from '../../src/balancer/pool.js';
import { streamRef } from '../../src/net/redact.js';
import { type DirectorySession, StreamDirectory } from '../../src/proxy/stream-directory.js';

const REF = streamRef('live', 'k?token=1')!;

function pool(): BackendPool {
  return new BackendPool(
    ['b1', 'b2', 'b3'].map((name, i) => ({ name, host: '127.0.0.1', port: 20000 + i })),
    {
      defaultDrainDeadlineMs: 600_000,
      health: { intervalMs: 60_000, timeoutMs: 1000, rise: 1, fall: 1, enabled: false },
      strategy: { begin: () => 'waiting' },
    },
  );
}

function publisher(
  backend: string,
  startedAt: number,
  over: Partial<{ publishing: boolean; role: 'publisher' | 'player'; ref: string }> = {},
): DirectorySession {
  return {
    backendName: backend,
    streamRef: over.ref ?? REF,
    startedAt,
    finished: false,
    view: { facts: { role: over.role ?? 'publisher', publishing: over.publishing ?? true, unpublished: false } },
  };
}

test('stream ref: app and key without their queries, hashed; null without both', () => {
  assert.equal(streamRef('live?x=1', 'k?token=2'), REF);
  assert.notEqual(streamRef('other', 'k'), streamRef('live', 'k'));
  assert.equal(streamRef(null, 'k'), null);
  assert.match(REF, /^[0-9a-f]{16}$/);
});

test('a local publisher wins; the newest one not draining; players and other streams do not count', () => {
  const p = pool();
  const local: DirectorySession[] = [publisher('b1', 1), publisher('b3', 2, { role: 'player' }), publisher('b3', 3, { ref: 'ffffffffffffffff' })];
  const d = new StreamDirectory(() => local, 'me');
  assert.deepEqual(d.publisherOf(REF, p, new Set()), { backend: 'b1', source: 'local' });
  local.push(publisher('b2', 5));
  assert.deepEqual(d.publisherOf(REF, p, new Set()), { backend: 'b2', source: 'local' }, 'a reconnected publisher replaces the old one');
  p.drain('b2');
  assert.deepEqual(d.publisherOf(REF, p, new Set()), { backend: 'b1', source: 'local' }, 'not the draining backend while another has it');
  assert.deepEqual(d.publisherOf(REF, p, new Set(['b1'])), { backend: 'b2', source: 'local' }, 'a draining backend that has the stream beats none');
  assert.equal(d.publisherOf(REF, p, new Set(['b1', 'b2'])), null);
  assert.deepEqual(d.publisherOf(REF, p, new Set(), local[0]), { backend: 'b2', source: 'local' }, 'except: a session never finds itself');
  p.stop();
});

test('not publishing yet: no answer; the fleet answers for other replicas, never for this one, never a closed record', () => {
  const p = pool();
  const d = new StreamDirectory(() => [publisher('b1', 1, { publishing: false })], 'me');
  assert.equal(d.publisherOf(REF, p, new Set()), null);
  const rec = { backend: 'b3', role: 'publisher' as const, streamRef: REF, state: 'publishing', startedAt: '2026-01-01T00:00:00.000Z' };
  d.setFleet([
    { ...rec, replica: 'me', backend: 'b2' },
    { ...rec, replica: 'other', state: 'closed', backend: 'b2' },
    { ...rec, replica: 'other' },
  ]);
  assert.deepEqual(d.publisherOf(REF, p, new Set()), { backend: 'b3', source: 'fleet' });
  assert.equal(d.publisherOf(REF, p, new Set(['b3'])), null);
  d.setFleet([{ ...rec, replica: 'other', role: 'player' }]);
  assert.equal(d.publisherOf(REF, p, new Set()), null, 'a fleet player is no publisher');
  p.stop();
});
