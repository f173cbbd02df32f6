// When a listener cannot be opened, startProxy stops what it started before throwing: a caller
// that handles the error (a test, a supervisor retrying) is left with no listener and no timer.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { Writable } from 'node:stream';
import { describe, test } from 'node:test';
import { pino } from 'pino';
import { ListenError, startProxy } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';

/**
 * Active handles and timers by kind, once the handles closed so far are gone (a closed handle
 * leaves the list in the loop's close phase, after its close event).
 */
async function resources(): Promise<Map<string, number>> {
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  const counts = new Map<string, number>();
  for (const r of process.getActiveResourcesInfo()) counts.set(r, (counts.get(r) ?? 0) + 1);
  return counts;
}

async function occupiedPort(): Promise<{ port: number; close: () => Promise<void> }> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { port: (server.address() as net.AddressInfo).port, close: () => new Promise((r) => server.close(() => r())) };
}

async function failedStart(flags: Record<string, unknown>): Promise<{ err: unknown; logs: Record<string, unknown>[] }> {
  const config = loadConfig({ flags: { listen: '127.0.0.1:0', backend: ['b1=127.0.0.1:1'], healthEnabled: 'false', ...flags }, env: {} });
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') logs.push(JSON.parse(line) as Record<string, unknown>);
      cb();
    },
  });
  try {
    await startProxy(config, pino({ level: 'info' }, sink));
  } catch (err) {
    return { err, logs };
  }
  assert.fail('startProxy should have failed');
}

describe('startProxy: a listener that cannot open', () => {
  for (const { name, flags, check } of [
    {
      name: 'admin port taken',
      flags: (p: number) => ({ admin: `127.0.0.1:${p}` }),
      check: (e: unknown) => e instanceof ListenError && e.listener === 'admin',
    },
    {
      name: 'RTMPS certificate missing',
      flags: () => ({ tlsListen: '127.0.0.1:0', tlsCert: '/nonexistent/cert.pem', tlsKey: '/nonexistent/key.pem' }),
      check: (e: unknown) => e instanceof Error && !(e instanceof ListenError),
    },
    { name: 'RTMP port taken', flags: (p: number) => ({ listen: `127.0.0.1:${p}` }), check: (e: unknown) => e instanceof ListenError && e.listener === 'RTMP' },
  ]) {
    test(`${name}: the error is thrown after everything started is stopped`, async () => {
      const taken = await occupiedPort();
      try {
        const before = await resources();
        const { err, logs } = await failedStart(flags(taken.port));
        assert.ok(check(err), `unexpected error: ${String(err)}`);
        const after = await resources();
        for (const kind of ['TCPServerWrap', 'Timeout']) assert.equal(after.get(kind) ?? 0, before.get(kind) ?? 0, `${kind} left behind`);
        assert.ok(!logs.some((l) => l['msg'] === 'proxy listening'));
      } finally {
        await taken.close();
      }
    });
  }
});
