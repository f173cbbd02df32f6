// `serve` as a child process: sidecar SIGTERM shutdown, second signal, SIGHUP reload of the
// backend list from the YAML file.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RtmpPublisher } from '../../src/client/rtmp-client.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { FakeRtmpServer } from '../helpers/fake-rtmp-server.js';
import { tempDir } from '../helpers/peers.js';
import { eventually } from '../helpers/proxy.js';
import { type ServeChild, spawnServe } from '../helpers/redis.js';

function connectOutcome(port: number): Promise<'connected' | string> {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
  });
}

async function getJson<T>(child: ServeChild, path: string): Promise<{ status: number; body: T }> {
  const r = await fetch(`http://127.0.0.1:${child.adminPort}${path}`);
  return { status: r.status, body: (await r.json()) as T };
}

function logged(child: ServeChild, msg: string): Record<string, unknown> | undefined {
  return child.logs().find((l) => l['msg'] === msg);
}

describe('sidecar mode', () => {
  const backend = new FakeRtmpServer();
  const dir = tempDir('sidecar');
  const children: ServeChild[] = [];
  const pubs: RtmpPublisher[] = [];

  before(async () => {
    await backend.listen();
  });
  after(async () => {
    for (const p of pubs) p.destroy();
    for (const c of children) await c.kill();
    await backend.close();
    dir.remove();
  });

  async function serveSidecar(grace: string): Promise<ServeChild> {
    const c = await spawnServe(['--backend', `b1=127.0.0.1:${backend.port}`, '--no-health-enabled', '--sidecar', '--sidecar-grace-period-ms', grace]);
    children.push(c);
    await eventually(async () => (await getJson(c, '/readyz')).status === 200, 'ready');
    return c;
  }

  async function publisher(c: ServeChild, key: string, supportsGoAway: boolean): Promise<RtmpPublisher> {
    const pub = new RtmpPublisher(`rtmp://127.0.0.1:${c.port}/live/${key}`, { supportsGoAway });
    pubs.push(pub);
    await pub.publish();
    return pub;
  }

  test('SIGTERM: Go Away to the capable publisher, /readyz 503, new connections refused, exit 0 once it left', async () => {
    const c = await serveSidecar('20s');
    const pub = await publisher(c, 'capable', true);
    const wentAway = new Promise<void>((r) => pub.once('goaway', () => r()));

    c.child.kill('SIGTERM');
    await wentAway;
    assert.ok(pub.received.some((m) => m.typeId === MessageType.GoAway));
    const ready = await getJson<{ reason: string }>(c, '/readyz');
    assert.equal(ready.status, 503, 'not ready while waiting for sessions to leave');
    assert.equal(ready.body.reason, 'shutting down');
    assert.equal(await connectOutcome(c.port), 'ECONNREFUSED', 'the listener is closed');
    assert.equal(c.child.exitCode, null, 'still waiting for the session');

    await pub.end(); // what a Go Away client does: it closes and reconnects elsewhere
    const exit = await c.exited();
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.ok(logged(c, 'sidecar shutdown: every session left'), c.output());
  });

  test('SIGTERM: a publisher without Go Away is closed when the grace period ends, exit 0', async () => {
    const c = await serveSidecar('1s');
    const pub = await publisher(c, 'plain', false);
    c.child.kill('SIGTERM');
    const exit = await c.exited();
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.equal(pub.goAwayReceived, false);
    await eventually(() => pub.socket?.destroyed, 'the publisher was disconnected');
    const over = logged(c, 'sidecar shutdown: grace period over, closing the remaining sessions');
    assert.ok(over, c.output());
    assert.equal((over['remaining'] as { capability: string }[])[0]?.capability, 'none');
    assert.ok(c.logs().some((l) => l['msg'] === 'session end' && l['reason'] === 'sidecar-grace'));
  });

  test('a second SIGTERM exits at once', async () => {
    const c = await serveSidecar('60s');
    await publisher(c, 'stays', false);
    c.child.kill('SIGTERM');
    await eventually(
      () => logged(c, 'sidecar shutdown: /readyz 503, listener closed, Go Away / ReconnectRequest sent; waiting for sessions to leave'),
      'shutdown started',
    );
    c.child.kill('SIGTERM');
    const exit = await c.exited(5_000);
    assert.equal(exit.code, 1);
    assert.ok(logged(c, 'second signal: exiting now'));
  });

  test('SIGINT during a sidecar shutdown exits at once too', async () => {
    const c = await serveSidecar('60s');
    await publisher(c, 'stays-int', false);
    c.child.kill('SIGTERM');
    await eventually(
      () => logged(c, 'sidecar shutdown: /readyz 503, listener closed, Go Away / ReconnectRequest sent; waiting for sessions to leave'),
      'shutdown started',
    );
    c.child.kill('SIGINT');
    assert.equal((await c.exited(5_000)).code, 1);
  });
});

describe('SIGHUP reloads the backend list', () => {
  const a = new FakeRtmpServer();
  const b = new FakeRtmpServer();
  const dir = tempDir('sighup');
  const file = join(dir.path, 'proxy.yaml');
  let child: ServeChild | null = null;
  const pubs: RtmpPublisher[] = [];

  before(async () => {
    await a.listen();
    await b.listen();
  });
  after(async () => {
    for (const p of pubs) p.destroy();
    await child?.kill();
    await a.close();
    await b.close();
    dir.remove();
  });

  const yaml = (backends: Record<string, number>) =>
    `health: { enabled: false }\ndrain: { deadlineMs: 60s, nonCapable: deadline-close }\nbackends:\n${Object.entries(backends)
      .map(([name, port]) => `  - { name: ${name}, host: 127.0.0.1, port: ${port} }\n`)
      .join('')}`;

  interface Backend {
    name: string;
    state: string;
    draining: boolean;
    removing: boolean;
    sessions: number;
  }

  async function backends(): Promise<Backend[]> {
    return (await getJson<Backend[]>(child!, '/api/backends')).body;
  }

  async function hup(msg: string): Promise<void> {
    const n = child!.logs().filter((l) => l['msg'] === msg).length;
    child!.child.kill('SIGHUP');
    await eventually(() => child!.logs().filter((l) => l['msg'] === msg).length > n, msg);
  }

  test('backends are added and removed without dropping the live session; a bad file changes nothing', async () => {
    writeFileSync(file, yaml({ a: a.port }));
    child = await spawnServe(['--config', file]);
    const pub = new RtmpPublisher(`rtmp://127.0.0.1:${child.port}/live/hup`);
    pubs.push(pub);
    await pub.publish();
    const conn = a.connections.at(-1)!;

    // Replace a by b: a drains (its session stays until the 60 s deadline), b takes new sessions.
    writeFileSync(file, yaml({ b: b.port }));
    await hup('configuration reloaded');
    let list = await backends();
    assert.deepEqual(
      list.map((x) => [x.name, x.state, x.removing]),
      [
        ['a', 'draining', true],
        ['b', 'up', false],
      ],
    );
    const before = conn.media;
    for (let i = 0; i < 10; i++) pub.sendMedia(MessageType.Audio, i * 20, Buffer.from([0xaf, 1, 2, 3]));
    await eventually(() => conn.media >= before + 10, 'the live session still forwards to a');
    assert.equal(pub.socket?.destroyed, false);
    const next = new RtmpPublisher(`rtmp://127.0.0.1:${child.port}/live/after-hup`);
    pubs.push(next);
    await next.publish();
    assert.equal(b.connections.length, 1, 'the new session went to b');

    // A broken file is refused and nothing changes.
    writeFileSync(file, 'backends: [ { name: "x y", port: nope } ]\n');
    await hup('configuration reload refused: nothing changed');
    list = await backends();
    assert.deepEqual(
      list.map((x) => x.name),
      ['a', 'b'],
    );

    // Re-adding a cancels its removal (and the drain the removal started).
    writeFileSync(file, yaml({ a: a.port, b: b.port }));
    await hup('configuration reloaded');
    list = await backends();
    assert.deepEqual(
      list.map((x) => [x.name, x.state, x.removing]),
      [
        ['a', 'up', false],
        ['b', 'up', false],
      ],
    );
    assert.equal(pub.socket?.destroyed, false, 'never dropped');

    const metrics = await (await fetch(`http://127.0.0.1:${child.adminPort}/metrics`)).text();
    assert.match(metrics, /rtmp_goaway_control_messages_total\{source="signal",result="ok"\} 2/);
    assert.match(metrics, /rtmp_goaway_control_messages_total\{source="signal",result="rejected"\} 1/);

    // Not in sidecar mode: SIGTERM closes the sessions and exits 0.
    child.child.kill('SIGTERM');
    assert.deepEqual(await child.exited(), { code: 0, signal: null });
    await eventually(() => pub.socket?.destroyed, 'closed at shutdown');
  });
});
