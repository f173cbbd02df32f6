// `serve --config <file>` as a child process with the file mounted the way a Kubernetes ConfigMap
// volume mounts it (proxy.yaml → ..data/proxy.yaml, ..data → a timestamped directory, updated by
// swapping the ..data symlink): the proxy applies a new file by itself, like SIGHUP. A new backend
// takes new sessions, a removed one drains, a live session keeps forwarding byte-exact; an
// invalid file changes nothing and is counted; settings that need a restart are reported.
import assert from 'node:assert/strict';
import { mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import type net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { RtmpPublisher } from '../../src/client/rtmp-client.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { FakeRtmpServer } from '../helpers/fake-rtmp-server.js';
import { tempDir } from '../helpers/peers.js';
import { eventually } from '../helpers/proxy.js';
import { type ServeChild, spawnServe } from '../helpers/redis.js';

/** A directory laid out as the kubelet lays out a ConfigMap volume, updated the way it does (atomic symlink swap). */
class ConfigMapVolume {
  private version = 0;
  constructor(readonly dir: string) {}

  get file(): string {
    return join(this.dir, 'proxy.yaml');
  }

  write(text: string): void {
    const old = this.version === 0 ? null : `..v${this.version}`;
    const next = `..v${++this.version}`;
    mkdirSync(join(this.dir, next));
    writeFileSync(join(this.dir, next, 'proxy.yaml'), text);
    symlinkSync(next, join(this.dir, '..data_tmp'));
    renameSync(join(this.dir, '..data_tmp'), join(this.dir, '..data'));
    if (old === null) symlinkSync(join('..data', 'proxy.yaml'), this.file);
    else rmSync(join(this.dir, old), { recursive: true });
  }
}

async function metricsText(child: ServeChild): Promise<string> {
  return (await fetch(`http://127.0.0.1:${child.adminPort}/metrics`)).text();
}

/** Value of one sample (labels written exactly as prom-client writes them), 0 when absent. */
function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? 0 : Number(line.slice(series.length + 1));
}

interface Backend {
  name: string;
  state: string;
  removing: boolean;
  sessions: number;
}

describe('the watched config file (ConfigMap volume) is applied without a restart', () => {
  const a = new FakeRtmpServer();
  const b = new FakeRtmpServer();
  const dir = tempDir('cfgmap');
  const volume = new ConfigMapVolume(dir.path);
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

  const yaml = (backends: Record<string, number>, extra = '') =>
    `health: { enabled: false }\ndrain: { deadlineMs: 60s, nonCapable: deadline-close }\n${extra}backends:\n${Object.entries(backends)
      .map(([name, port]) => `  - { name: ${name}, host: 127.0.0.1, port: ${port} }\n`)
      .join('')}`;

  const backends = async (): Promise<Backend[]> => (await (await fetch(`http://127.0.0.1:${child!.adminPort}/api/backends`)).json()) as Backend[];

  test('new backend used, removed one drained, live session byte-exact; invalid file refused and counted', async () => {
    volume.write(yaml({ a: a.port }));
    child = await spawnServe(['--config', volume.file]);
    await eventually(() => child!.logs().some((l) => l['msg'] === 'watching the config file: changes are applied like SIGHUP'), 'the watch started');

    const pub = new RtmpPublisher(`rtmp://127.0.0.1:${child.port}/live/watched`);
    pubs.push(pub);
    await pub.publish();
    const conn = a.connections.at(-1)!;
    // Everything the publisher writes from here on must reach backend a unchanged, reload or not.
    const mark = Buffer.concat(conn.raw).length;
    const sent: Buffer[] = [];
    const sock = pub.socket as net.Socket;
    const write = sock.write.bind(sock) as (chunk: Buffer, ...rest: unknown[]) => boolean;
    (sock as unknown as { write: (chunk: Buffer, ...rest: unknown[]) => boolean }).write = (chunk, ...rest) => {
      sent.push(Buffer.from(chunk));
      return write(chunk, ...rest);
    };
    let ts = 0;
    const media = (n: number): void => {
      for (let i = 0; i < n; i++, ts += 20) pub.sendMedia(MessageType.Audio, ts, Buffer.from([0xaf, 1, ts & 0xff, (ts >> 8) & 0xff, i]));
    };
    media(20);

    // Replace a by b and change a setting that needs a restart.
    const swappedAt = Date.now();
    volume.write(yaml({ b: b.port }, 'migration: { maxInFlight: 3 }\n'));
    await eventually(
      async () => sample(await metricsText(child!), 'rtmp_goaway_config_reloads_total{trigger="file",result="ok"}') === 1,
      'the file reload counted',
    );
    console.log(`# ConfigMap swap applied and counted within ${Date.now() - swappedAt} ms (debounce 250 ms)`);
    const reloaded = await eventually(() => child!.logs().find((l) => l['msg'] === 'configuration reloaded'), 'the reload logged');
    assert.deepEqual(reloaded['removing'], ['a']);
    assert.deepEqual(reloaded['added'], ['b']);
    const ignored = await eventually(
      () => child!.logs().find((l) => l['msg'] === 'configuration reload: these settings changed but need a restart; the running values stay'),
      'the ignored settings logged',
    );
    assert.deepEqual(ignored['ignored'], ['migration.maxInFlight']);
    assert.equal(sample(await metricsText(child), 'rtmp_goaway_config_restart_required'), 1);
    assert.deepEqual(
      (await backends()).map((x) => [x.name, x.state, x.removing, x.sessions]),
      [
        ['a', 'draining', true, 1],
        ['b', 'up', false, 0],
      ],
    );

    // New sessions go to b; the live one still forwards to a, byte for byte.
    const next = new RtmpPublisher(`rtmp://127.0.0.1:${child.port}/live/after-reload`);
    pubs.push(next);
    await next.publish();
    assert.equal(b.connections.length, 1, 'the new session went to b');
    media(20);
    const expected = Buffer.concat(sent);
    await eventually(() => Buffer.concat(conn.raw).length - mark >= expected.length, 'the live session delivered every byte to a');
    assert.ok(Buffer.concat(conn.raw).subarray(mark).equals(expected), 'backend a received exactly what the publisher sent');
    assert.equal(pub.socket?.destroyed, false, 'never dropped');

    // An invalid file (YAML error), then one with a bad value: nothing changes, both counted.
    const lastSuccess = sample(await metricsText(child), 'rtmp_goaway_config_last_reload_success_timestamp_seconds');
    volume.write('backends: [ { name: a, port: 1\n');
    await eventually(
      async () => sample(await metricsText(child!), 'rtmp_goaway_config_reloads_total{trigger="file",result="invalid"}') === 1,
      'the YAML error counted',
    );
    volume.write(yaml({ a: a.port }).replace('deadlineMs: 60s', 'deadlineMs: soon'));
    await eventually(
      async () => sample(await metricsText(child!), 'rtmp_goaway_config_reloads_total{trigger="file",result="invalid"}') === 2,
      'the bad value counted',
    );
    const text = await metricsText(child);
    assert.equal(sample(text, 'rtmp_goaway_config_last_reload_successful'), 0);
    assert.equal(sample(text, 'rtmp_goaway_config_last_reload_success_timestamp_seconds'), lastSuccess);
    assert.deepEqual(
      (await backends()).map((x) => [x.name, x.state]),
      [
        ['a', 'draining'],
        ['b', 'up'],
      ],
    );
    // One log line for the first refusal; the second, within the interval, is only counted.
    const refused = await eventually(() => {
      // A summary line of the refusals not logged may follow later (summary: true).
      const lines = child!.logs().filter((l) => l['msg'] === 'configuration reload refused: nothing changed' && l['summary'] === undefined);
      return lines.length > 0 ? lines : null;
    }, 'the refusal logged');
    assert.equal(refused.length, 1);
    assert.match(String(refused[0]!['error']), /invalid YAML/);

    // A valid file again: a comes back (its removal is cancelled), the live session never moved.
    volume.write(yaml({ a: a.port, b: b.port }));
    await eventually(
      async () => sample(await metricsText(child!), 'rtmp_goaway_config_reloads_total{trigger="file",result="ok"}') === 2,
      'the second file reload counted',
    );
    assert.deepEqual(
      (await backends()).map((x) => [x.name, x.state, x.removing]),
      [
        ['a', 'up', false],
        ['b', 'up', false],
      ],
    );
    assert.equal(sample(await metricsText(child), 'rtmp_goaway_config_last_reload_successful'), 1);
    assert.equal(a.connections.length, 1, 'the live session was never reconnected');
    assert.equal(pub.socket?.destroyed, false, 'never dropped');
  });
});

describe('cluster mode: the primary watches the file and every worker reloads once', () => {
  const a = new FakeRtmpServer();
  const b = new FakeRtmpServer();
  const dir = tempDir('cfgmap-cluster');
  const volume = new ConfigMapVolume(dir.path);
  let child: ServeChild | null = null;

  before(async () => {
    await a.listen();
    await b.listen();
  });
  after(async () => {
    await child?.kill();
    await a.close();
    await b.close();
    dir.remove();
  });

  test('serve --workers 2: one change, two worker reloads, the backend list changed on both', async () => {
    volume.write(`health: { enabled: false }\nbackends: [ "a=127.0.0.1:${a.port}" ]\n`);
    child = await spawnServe(['--config', volume.file, '--workers', '2']);
    await eventually(() => child!.logs().some((l) => l['msg'] === 'watching the config file: changes are applied like SIGHUP'), 'the primary watches');
    volume.write(`health: { enabled: false }\nbackends: [ "a=127.0.0.1:${a.port}", "b=127.0.0.1:${b.port}" ]\n`);
    await eventually(
      async () => sample(await metricsText(child!), 'rtmp_goaway_config_reloads_total{trigger="file",result="ok"}') === 2,
      'both workers reloaded',
    );
    await eventually(() => child!.logs().filter((l) => l['msg'] === 'configuration reloaded').length === 2, 'both workers logged their reload');
    assert.equal(child.logs().filter((l) => l['msg'] === 'config file changed: reload sent to every worker').length, 1);
    assert.equal(child.logs().filter((l) => l['msg'] === 'watching the config file: changes are applied like SIGHUP').length, 1, 'one watch per pod');
    const text = await metricsText(child);
    // Each worker reports b (0 sessions, summed) once it has it.
    assert.equal(sample(text, 'rtmp_goaway_backend_up{backend="b"}'), 1);
  });
});
