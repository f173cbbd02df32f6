// When a session's backend is chosen (routeStage): with players routed to their stream, a session
// is late-bound at its stream key whenever the pool has more than one backend that could carry it
// in its life — one down or draining now included (a rolling restart takes each backend down in
// turn; a player must be able to follow its stream to it later). One backend: pass-through.
import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { BackendPool } from '../../src/balancer/pool.js';
import { Router } from '../../src/balancer/routing.js';
import { createDrainStrategy } from '../../src/proxy/drain-strategy.js';
import { routeStage } from '../../src/proxy/session/session.js';
import { StreamDirectory } from '../../src/proxy/stream-directory.js';

const streams = new StreamDirectory(() => [], 'me');

/** A pool with health checks whose probe fails for the backends named in `down`. */
async function pool(t: TestContext, names: string[], down: string[] = []): Promise<BackendPool> {
  const p = new BackendPool(
    names.map((name, i) => ({ name, host: '127.0.0.1', port: 20000 + i })),
    {
      defaultDrainDeadlineMs: 1000,
      health: { intervalMs: 60_000, timeoutMs: 100, rise: 1, fall: 1, enabled: true },
      strategy: createDrainStrategy({ nonCapable: 'deadline-close', erpc: false }),
      probe: async (b) => {
        if (down.includes(b.name)) throw new Error('refused');
      },
    },
  );
  t.after(() => p.stop());
  await p.checkNow();
  for (const name of down) assert.equal(p.get(name)?.health, 'down', `${name} is down`);
  return p;
}

test('players routed by stream: late-bound at the key with two backends, one of them down or draining', async (t) => {
  const both = await pool(t, ['b1', 'b2']);
  assert.equal(routeStage(null, { streams }, both), 'publish');
  const oneDown = await pool(t, ['b1', 'b2'], ['b2']);
  assert.equal(routeStage(null, { streams }, oneDown), 'publish', 'b2 is down now but may come back: a player must be able to follow to it');
  const draining = await pool(t, ['b1', 'b2']);
  draining.drain('b1');
  assert.equal(routeStage(null, { streams }, draining), 'publish');
});

test('one backend (a sidecar), or one left after a removal: pass-through; without stream routing the rules decide', async (t) => {
  assert.equal(routeStage(null, { streams }, await pool(t, ['b1'])), 'accept');
  const removing = await pool(t, ['b1', 'b2']);
  removing.setBackends([{ name: 'b1', host: '127.0.0.1', port: 20000 }]);
  assert.equal(routeStage(null, { streams }, removing), 'accept', 'a backend being removed will not carry the session');
  const two = await pool(t, ['b1', 'b2']);
  assert.equal(routeStage(null, { streams: null }, two), 'accept');
  const byKey = Router.compile({ groups: { all: { backends: ['*'] } }, rules: [{ group: 'all', sticky: true }] });
  assert.equal(byKey.needs, 'publish', 'a sticky rule needs the key');
  assert.equal(routeStage(byKey, { streams: null }, two), 'publish');
});
