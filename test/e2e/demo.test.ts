// `npm start` (the `demo` command): the story runs to the end, the stream moves to the other
// backend, and the frames the backends recorded are the frames sent.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { DemoSummary } from '../../src/demo/demo.js';
import { waitForLine } from '../helpers/peers.js';
import { collect, spawnCli } from './env.js';

function check(summary: DemoSummary, output: string): void {
  assert.equal(summary.ok, true, output);
  assert.equal(summary.zeroLoss, true);
  assert.ok(summary.from !== null && summary.to !== null && summary.from !== summary.to, `moved from ${summary.from} to ${summary.to}`);
  assert.deepEqual(summary.received, summary.sent);
  assert.ok(summary.sent.video > 0 && summary.sent.audio > 0);
  assert.match(output, /draining b\d.*Go Away \(type 32\)/);
  assert.match(output, /reconnected to the same URL \d+ ms later: the proxy routed it to b\d/);
  assert.match(output, /✔ zero frames lost/);
}

describe('e2e: the demo (npm start)', () => {
  test('default: embedded backends, generated stream, drain, zero frames lost, exit 0', async (t) => {
    const run = collect(spawnCli(['demo', '--json']));
    const { code, stdout, stderr } = await run.exited;
    assert.equal(code, 0, `${stdout}\n${stderr}`);
    const summary = JSON.parse(stdout.trim().split('\n').at(-1)!) as DemoSummary;
    check(summary, stdout);
    t.diagnostic(
      `demo (${summary.backendKind}, ${summary.source}): ${summary.from} → ${summary.to}, sent ${summary.sent.video}+${summary.sent.audio}, received ${summary.received.video}+${summary.received.audio}, Go Away → close ${summary.goAwayToCloseMs} ms, reconnect ${summary.reconnectMs} ms`,
    );
  });

  test('fresh machine (node-media-server, the committed sample) with --keep: keeps serving until SIGINT', async (t) => {
    const child = spawnCli(['demo', '--backends', 'node-media-server', '--source', 'sample', '--keep', '--json']);
    const run = collect(child);
    const m = await waitForLine(child, /admin (http:\/\/127\.0\.0\.1:\d+)[\s\S]*still serving[\s\S]*\n(\{.*\})\n/, 60_000);
    const summary = JSON.parse(m[2]!) as DemoSummary;
    assert.equal(summary.backendKind, 'node-media-server');
    assert.equal(summary.source, 'sample');
    check(summary, run.stdout());
    // Still serving: the drained backend stays drained, the other takes sessions.
    const backends = (await (await fetch(`${m[1]}/api/backends`)).json()) as { name: string; state: string }[];
    assert.deepEqual(
      backends.map((b) => [b.name, b.state]).sort(),
      [
        [summary.from, 'draining'],
        [summary.to, 'up'],
      ].sort(),
    );
    assert.equal((await fetch(`${m[1]}/readyz`)).status, 200);
    child.kill('SIGINT');
    const { code } = await run.exited;
    assert.equal(code, 0);
    t.diagnostic(
      `demo --keep (node-media-server, sample): ${summary.from} → ${summary.to}, sent ${summary.sent.video}+${summary.sent.audio}, received ${summary.received.video}+${summary.received.audio}, reconnect ${summary.reconnectMs} ms`,
    );
  });
});
