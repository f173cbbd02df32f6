// The SIGTERM path the Kubernetes manifests rely on, end to end in one "pod": nginx started with
// the image's loopback configuration (deploy/nginx-rtmp/sidecar.conf) and `rtmp-goaway-proxy serve`
// driven only by the environment the rendered sidecar Deployment gives its proxy container.
//
// The shutdown itself (Go Away, /readyz 503, listener closed, exit 0, grace period, second signal)
// is covered with flags by test/integration/sidecar.test.ts; this test adds what the manifests
// contribute: their RTMP_GOAWAY_* environment turns that path on, the probes' endpoint reports it,
// it fits in the pod's terminationGracePeriodSeconds, and the sidecar nginx records the stream.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { RtmpPublisher } from '../../src/client/rtmp-client.js';
import { MessageType } from '../../src/rtmp/constants.js';
import { IN_CI, requirePeer, stopChild, tempDir } from '../helpers/peers.js';
import { eventually } from '../helpers/proxy.js';
import { type ServeChild, freePort, spawnServe } from '../helpers/redis.js';
import { find, kustomize, podSpec, preStopSeconds, proxyConfig, proxyContainer, proxyRuntime, requireTool, root } from './helpers.js';

const RTMP_MODULE = '/usr/lib/nginx/modules/ngx_rtmp_module.so';

/** The image's nginx configuration, moved to a temp dir: paths and the loopback port rewritten. */
function nginxConfig(dir: string, port: number): string {
  // In the image nginx runs as uid 10001 throughout; run as root here, its workers drop to an
  // unprivileged user that must reach the record_path.
  chmodSync(dir, 0o755);
  mkdirSync(join(dir, 'rec'), { mode: 0o777 });
  chmodSync(join(dir, 'rec'), 0o777);
  for (const f of ['sidecar.conf', 'rtmp-server.conf']) {
    const text = readFileSync(join(root, 'deploy', 'nginx-rtmp', f), 'utf8')
      .replaceAll('/etc/nginx-rtmp/', `${dir}/`)
      .replaceAll('/var/rec', join(dir, 'rec'))
      .replaceAll('/tmp/nginx.pid', join(dir, 'nginx.pid'))
      .replace('listen 127.0.0.1:1936;', `listen 127.0.0.1:${port};`);
    writeFileSync(join(dir, f), text);
  }
  return join(dir, 'sidecar.conf');
}

function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = (): void => {
      const s = net.connect({ host: '127.0.0.1', port });
      s.once('connect', () => {
        s.destroy();
        resolve();
      });
      s.once('error', () => {
        if (Date.now() > until) reject(new Error(`nothing listens on 127.0.0.1:${port}`));
        else setTimeout(attempt, 50);
      });
    };
    attempt();
  });
}

describe('SIGTERM in a sidecar pod, as the manifests configure it', () => {
  const dir = tempDir('sigterm-pod');
  let nginx: ChildProcess | undefined;
  let proxy: ServeChild | undefined;
  const pubs: RtmpPublisher[] = [];
  after(async () => {
    for (const p of pubs) p.destroy();
    await proxy?.kill();
    if (nginx) await stopChild(nginx);
    dir.remove();
  });

  test('Go Away to the publisher, /readyz 503, exit 0 within the pod budget; nginx recorded the stream', async (t) => {
    const kubectl = requireTool(t, 'kubectl');
    const nginxExe = requirePeer(t, 'nginx');
    if (kubectl === null || nginxExe === null) return;
    if (!existsSync(RTMP_MODULE)) {
      if (IN_CI) throw new Error(`CI=true and ${RTMP_MODULE} is missing (apt-get install libnginx-mod-rtmp)`);
      t.skip('libnginx-mod-rtmp is not installed');
      return;
    }

    const objs = kustomize(kubectl, 'deploy/k8s/sidecar');
    const spec = podSpec(find(objs, 'Deployment', 'rtmp-ingest')[0]!);
    const container = proxyContainer(spec)!;
    const { config } = proxyConfig(container, objs, spec);
    const [backend] = config.backends;
    assert.ok(backend);

    // nginx on a free loopback port instead of 1936; the proxy's backend follows.
    const nginxPort = await freePort();
    nginx = spawn(nginxExe, ['-e', 'stderr', '-c', nginxConfig(dir.path, nginxPort)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let nginxLog = '';
    nginx.stderr!.on('data', (d: Buffer) => (nginxLog += d.toString()));
    await waitForPort(nginxPort).catch((e: Error) => {
      throw new Error(`${e.message}\n${nginxLog}`);
    });

    // The pod's files (config.yaml, the admin token) under a temp dir, its environment pointing at them.
    const pod = proxyRuntime(spec, container, objs, join(dir.path, 'pod'));
    const proxyEnv: Record<string, string> = { ...pod.env, RTMP_GOAWAY_REPLICA_ID: 'sidecar-pod-0' };
    proxyEnv['RTMP_GOAWAY_BACKENDS'] = `${backend.name}=127.0.0.1:${nginxPort}`;
    // Nothing but the manifest's config file and environment: no --sidecar flag. (spawnServe binds listen/admin to free ports.)
    proxy = await spawnServe(['--config', pod.configFile!], { env: proxyEnv });
    const readyz = async () => (await fetch(`http://127.0.0.1:${proxy!.adminPort}/readyz`)).status;
    await eventually(async () => (await readyz()) === 200, '/readyz 200 once nginx answers the health probe', 15_000);

    const pub = new RtmpPublisher(`rtmp://127.0.0.1:${proxy.port}/live/pod-stream`, { supportsGoAway: true });
    pubs.push(pub);
    await pub.publish();
    // nginx-rtmp records H.264 only after the AVC sequence header: send one, then key frames.
    const avcHeader = Buffer.from([
      0x17, 0x00, 0, 0, 0, 0x01, 0x42, 0xc0, 0x1e, 0xff, 0xe1, 0x00, 0x04, 0x67, 0x42, 0xc0, 0x1e, 0x01, 0x00, 0x04, 0x68, 0xce, 0x3c, 0x80,
    ]);
    pub.sendMedia(MessageType.Video, 0, avcHeader);
    pub.sendMedia(MessageType.Audio, 0, Buffer.from([0xaf, 0x00, 0x12, 0x10]));
    const frame = Buffer.alloc(4000, 0x11);
    frame.set([0x17, 0x01, 0, 0, 0, 0, 0, 0x0f, 0x9b, 0x65]);
    for (let i = 0; i < 40; i++) {
      pub.sendMedia(MessageType.Video, i * 33, frame);
      pub.sendMedia(MessageType.Audio, i * 33, Buffer.from([0xaf, 0x01, 0x21, 0x10, 0x04]));
    }
    const recordings = () => readdirSync(join(dir.path, 'rec')).filter((f) => f.startsWith('pod-stream') && f.endsWith('.flv'));
    await eventually(
      () => recordings().some((f) => statSync(join(dir.path, 'rec', f)).size > 100_000),
      'nginx records the stream under the record_path',
      10_000,
    ).catch((e: Error) => {
      throw new Error(
        `${e.message}; files: ${readdirSync(join(dir.path, 'rec'))
          .map((f) => `${f} ${statSync(join(dir.path, 'rec', f)).size}`)
          .join(', ')}\n${nginxLog.slice(-2000)}`,
      );
    });

    const wentAway = new Promise<void>((r) => pub.once('goaway', () => r()));
    const t0 = Date.now();
    proxy.child.kill('SIGTERM');
    await wentAway;
    assert.equal(await readyz(), 503, 'the readiness probe fails while the pod drains');
    await pub.end(); // a Go Away publisher leaves and reconnects elsewhere
    const exit = await proxy.exited(config.sidecar.gracePeriodMs + 5_000);
    const took = (Date.now() - t0) / 1000;
    assert.deepEqual(exit, { code: 0, signal: null }, proxy.output().slice(-2000));
    const budget = (spec.terminationGracePeriodSeconds ?? 30) - preStopSeconds(container);
    assert.ok(took < budget, `shutdown took ${took} s, the pod allows ${budget} s after preStop`);
    assert.ok(nginx.exitCode === null, 'nginx is still serving after the proxy exited');
  });
});
