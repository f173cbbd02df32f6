// Every example works, proven with real traffic: each values file under helm/*/ci/ and each
// kustomization under deploy/k8s that runs the proxy is rendered, and its proxy container is run
// as the kubelet would run it: the image's entrypoint and ENV (Dockerfile), the container's args
// and environment, its mounted ConfigMap/Secret files (config.yaml, the admin token, the TLS
// certificate — a self-signed one from openssl where the example mounts an operator's Secret) —
// as a real process from dist/ (bin/rtmp-goaway-proxy.js). In front of it, the traffic shape the
// example promises: HAProxy `send-proxy-v2` where its Service makes the load balancer send PROXY
// protocol (or the proxy requires it), RTMPS where it has a TLS listener. ffmpeg publishes through
// it to a real nginx-rtmp, and the stream must arrive there (recorded, frames counted by ffprobe).
//
// Only addresses are changed: listeners on free loopback ports, the backends (or the DNS
// discovery) replaced by the local nginx, the Redis URL by a local redis-server, the trusted
// PROXY sources by loopback. Everything else runs as rendered.
import assert from 'node:assert/strict';
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { DockerfileParser } from 'dockerfile-ast';
import YAML from 'yaml';
import { freePort, stopProcess } from '../../src/demo/backends.js';
import { settingDocs } from '../../src/config.js';
import { ffprobeCounts } from '../helpers/ffprobe.js';
import { type NginxBackend, closedRecordings, requireNginxRtmp, startNginxBackend } from '../helpers/nginx.js';
import { requirePeer, tempDir } from '../helpers/peers.js';
import { eventually } from '../helpers/proxy.js';
import { type TestRedis, startRedis } from '../helpers/redis.js';
import {
  type Container,
  type K8sObject,
  type PodSpec,
  find,
  hostPath,
  kustomize,
  parseStream,
  podSpec,
  proxyContainer,
  proxyRuntime,
  requireTool,
  resolveEnv,
  root,
  run,
} from './helpers.js';

const CHART = join(root, 'helm', 'rtmp-goaway-proxy');
const SAMPLE_FLV = join(root, 'test', 'fixtures', 'sample.flv');
const BIN = join(root, 'bin', 'rtmp-goaway-proxy.js');

// ───────────────────────────── rendering ─────────────────────────────

function helmTemplate(helm: string, args: string[]): K8sObject[] {
  const home = join(tempDirRoot(), 'helm-home');
  const env = {
    ...process.env,
    HELM_CACHE_HOME: join(home, 'cache'),
    HELM_CONFIG_HOME: join(home, 'config'),
    HELM_DATA_HOME: join(home, 'data'),
    KUBECONFIG: join(home, 'none'),
  };
  return parseStream(run(helm, ['template', 'rel', CHART, '--namespace', 'media', ...args], { env }), `helm template ${args.join(' ')}`);
}

let scratch: { path: string; remove(): void } | undefined;
function tempDirRoot(): string {
  scratch ??= tempDir('examples');
  return scratch.path;
}

/** Examples: [name, how to render]. */
function examples(): [string, (tools: { helm: string; kubectl: string }) => K8sObject[]][] {
  const out: [string, (tools: { helm: string; kubectl: string }) => K8sObject[]][] = [];
  for (const f of readdirSync(join(CHART, 'ci'))
    .filter((f) => f.endsWith('.yaml'))
    .sort())
    out.push([`helm ci/${f}`, ({ helm }) => helmTemplate(helm, ['-f', join(CHART, 'ci', f)])]);
  const walk = (dir: string): void => {
    for (const e of readdirSync(join(root, dir)).sort()) {
      const p = join(dir, e);
      if (e === 'kustomization.yaml') {
        const k = YAML.parse(readFileSync(join(root, p), 'utf8')) as { kind?: string };
        if ((k.kind ?? 'Kustomization') === 'Kustomization') out.push([`kustomize ${dir}`, ({ kubectl }) => kustomize(kubectl, dir)]);
      } else if (!e.includes('.')) walk(p);
    }
  };
  walk('deploy/k8s');
  return out;
}

// ───────────────────────────── what the example promises ─────────────────────────────

/** Service annotations with which cloud load balancers prepend a PROXY protocol header. */
function lbSendsProxyProtocol(objs: K8sObject[], spec: PodSpec): boolean {
  const labels =
    (find(objs, 'Deployment').find((d) => podSpec(d) === spec)?.['spec'] as { template: { metadata: { labels: Record<string, string> } } } | undefined)
      ?.template.metadata.labels ?? {};
  return find(objs, 'Service').some((s) => {
    const sel = (s['spec'] as { selector?: Record<string, string> }).selector ?? {};
    if (!Object.entries(sel).every(([k, v]) => labels[k] === v)) return false;
    return Object.entries(s.metadata.annotations ?? {}).some(([k, v]) => /proxy-?protocol/i.test(k) && !/^(false|0|off|no)$/i.test(v));
  });
}

/** The image's ENV (Dockerfile, final stage) and what its entrypoint runs after tini (`/app/bin/…`). */
function imageRuntime(): { env: Record<string, string>; entrypoint: string } {
  const df = DockerfileParser.parse(readFileSync(join(root, 'Dockerfile'), 'utf8'));
  const env: Record<string, string> = {};
  for (const i of df.getInstructions()) {
    if (i.getKeyword() !== 'ENV') continue;
    for (const p of (i as unknown as { getProperties(): { getName(): string; getValue(): string }[] }).getProperties()) env[p.getName()] = p.getValue();
  }
  const entry = df
    .getInstructions()
    .filter((i) => i.getKeyword() === 'ENTRYPOINT')
    .at(-1)!;
  const argv = JSON.parse(entry.getArgumentsContent()!) as string[];
  const program = argv.slice(argv.indexOf('--') + 1);
  assert.deepEqual(program, ['/app/bin/rtmp-goaway-proxy.js'], 'the image runs the entry point itself (it applies the runtime settings)');
  return { env, entrypoint: BIN };
}

function mib(q: string): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|k|M|G)?$/.exec(q);
  assert.ok(m, `cannot read the quantity ${q}`);
  const unit = { Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, k: 1e3, M: 1e6, G: 1e9 }[m[2] ?? ''] ?? 1;
  return (Number(m[1]) * unit) / 1024 ** 2;
}

/** The heap the pod's NODE_OPTIONS asks for fits the container's memory limit. */
function checkHeap(c: Container, nodeOptions: string, what: string): void {
  const heap = /--max-old-space-size=(\d+)/.exec(nodeOptions);
  const limit = c.resources?.limits?.['memory'];
  if (heap && limit) assert.ok(Number(heap[1]) <= 0.75 * mib(limit), `${what}: a ${heap[1]} MiB heap does not fit the ${limit} memory limit (at most 75 %)`);
}

/** The runtime the proxy reports in its listening line runs with the settings of src/runtime-tuning.ts. */
function checkTuned(out: string, what: string): void {
  const line = out.split('\n').find((l) => l.includes('"runtime":'));
  assert.ok(line, `${what}: no runtime report in the listening line`);
  const runtime = (JSON.parse(line) as { runtime: { tuned: boolean; nodeFlags: string[] } }).runtime;
  assert.equal(runtime.tuned, true, `${what}: the proxy runs without the runtime settings (${JSON.stringify(runtime)})`);
  assert.ok(runtime.nodeFlags.includes('--max-semi-space-size=2'), `${what}: ${JSON.stringify(runtime.nodeFlags)} lacks --max-semi-space-size=2`);
}

// ───────────────────────────── peers ─────────────────────────────

function makeCert(openssl: string, dir: string): { crt: Buffer; key: Buffer } {
  execFileSync(
    openssl,
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-days',
      '1',
      '-subj',
      '/CN=rtmps.example',
      '-keyout',
      join(dir, 'key.pem'),
      '-out',
      join(dir, 'crt.pem'),
    ],
    { stdio: 'ignore' },
  );
  return { crt: readFileSync(join(dir, 'crt.pem')), key: readFileSync(join(dir, 'key.pem')) };
}

async function listening(port: number, what: () => string): Promise<void> {
  await eventually(
    () =>
      new Promise<boolean>((r) => {
        const s = net.connect(port, '127.0.0.1', () => {
          s.destroy();
          r(true);
        });
        s.on('error', () => r(false));
      }),
    `${what()} listening on ${port}`,
    15_000,
  );
}

/** HAProxy in TCP mode sending PROXY protocol v2 to each target; returns its front ports. */
async function haproxyFront(exe: string, dir: string, targets: number[]): Promise<{ ports: number[]; child: ChildProcess; output(): string }> {
  const ports = await Promise.all(targets.map(() => freePort()));
  const cfg = [
    'global',
    '  log stderr format raw local0 info',
    'defaults',
    '  mode tcp',
    '  timeout connect 2s',
    '  timeout client 30s',
    '  timeout server 30s',
  ];
  targets.forEach((t, i) => cfg.push(`listen lb${i}`, `  bind 127.0.0.1:${ports[i]}`, `  server proxy 127.0.0.1:${t} send-proxy-v2`));
  writeFileSync(join(dir, 'haproxy.cfg'), `${cfg.join('\n')}\n`);
  const child = spawn(exe, ['-db', '-f', join(dir, 'haproxy.cfg')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  for (const p of ports) await listening(p, () => `haproxy (${out})`);
  return { ports, child, output: () => out };
}

interface Peers {
  nginx: NginxBackend;
  redis: TestRedis;
  openssl: string;
  haproxy: string;
  ffmpeg: string;
  ffprobe: string;
}

// ───────────────────────────── one example, end to end ─────────────────────────────

interface RunResult {
  /** Per URL published: ffmpeg's exit code and the frames nginx recorded. */
  published: { url: string; code: number | null; video: number; output: string }[];
  proxyOutput: string;
}

async function runExample(objs: K8sObject[], what: string, peers: Peers, opts: { editConfig?: (c: Record<string, unknown>) => void } = {}): Promise<RunResult> {
  const dep = find(objs, 'Deployment').find((d) => proxyContainer(podSpec(d)) !== undefined);
  assert.ok(dep, `${what}: no Deployment runs the proxy`);
  const spec = podSpec(dep);
  const container = proxyContainer(spec)!;
  const dir = tempDir('example');
  const children: ChildProcess[] = [];
  try {
    const cert = makeCert(peers.openssl, dir.path);
    // Secrets the operator creates (the TLS certificate) get the self-signed one.
    const pod = proxyRuntime(spec, container, objs, join(dir.path, 'pod'), () => ({
      'tls.crt': cert.crt,
      'tls.key': cert.key,
      token: 'operator-made-admin-token-0123456789',
    }));
    assert.ok(pod.configFile, `${what}: the proxy runs without a config file`);
    // Paths to mounted files (tls.cert, tls.key) point at their copies.
    const remap = (v: unknown): unknown =>
      typeof v === 'string'
        ? hostPath(pod.mounts, v)
        : Array.isArray(v)
          ? v.map(remap)
          : v && typeof v === 'object'
            ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, remap(x)]))
            : v;
    const config = remap(YAML.parse(readFileSync(pod.configFile, 'utf8'))) as Record<string, unknown>;

    // Addresses only: free loopback ports, the local nginx, the local redis, loopback as the trusted balancer.
    const firstName =
      (config['backends'] as unknown[] | undefined)?.map((b) => (typeof b === 'string' ? b.split('=')[0] : (b as { name: string }).name))[0] ?? 'ingest-0';
    config['backends'] = [{ name: firstName, host: '127.0.0.1', port: peers.nginx.port }];
    if (config['discovery']) delete (config['discovery'] as Record<string, unknown>)['dnsName'];
    if ('acceptProxyProtocolFrom' in config) config['acceptProxyProtocolFrom'] = '127.0.0.0/8';
    const tls = config['tls'] as { listen?: string } | undefined;
    const tlsPort = tls?.listen ? await freePort() : undefined;
    if (tls?.listen) tls.listen = `127.0.0.1:${tlsPort}`;
    opts.editConfig?.(config);
    writeFileSync(pod.configFile, YAML.stringify(config));

    const image = imageRuntime();
    const podEnv = resolveEnv(container, objs, () => 'placeholder');
    const env: Record<string, string> = {
      PATH: process.env['PATH'] ?? '',
      ...image.env,
      ...Object.fromEntries(Object.entries(podEnv).filter(([k]) => !k.startsWith('RTMP_GOAWAY_'))),
      ...pod.env,
    };
    if (env['RTMP_GOAWAY_REDIS_URL'] !== undefined) env['RTMP_GOAWAY_REDIS_URL'] = peers.redis.url;
    env['RTMP_GOAWAY_REPLICA_ID'] = `example-${process.pid}`;
    checkHeap(container, env['NODE_OPTIONS'] ?? '', what);

    const args = [
      ...(container.args ?? []).map((a) => (a === configArg(container) ? pod.configFile! : a)),
      '--listen',
      '127.0.0.1:0',
      '--admin',
      '127.0.0.1:0',
    ];
    const proxy = spawn(image.entrypoint, args, { cwd: root, env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(proxy);
    let out = '';
    proxy.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    proxy.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const [, port, adminPort] = await eventually(
      () => {
        assert.equal(proxy.exitCode, null, `${what}: the proxy exited:\n${out}`);
        return /"listen":"127\.0\.0\.1:(\d+)","admin":"127\.0\.0\.1:(\d+)"/.exec(out);
      },
      `${what}: the proxy listening`,
      20_000,
    );
    checkTuned(out, what);
    await eventually(
      async () => (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status === 200,
      `${what}: /readyz 200 with nginx as its backend (${out.slice(-1500)})`,
      20_000,
    );

    // The traffic shape the example promises.
    const targets = [Number(port), ...(tlsPort ? [tlsPort] : [])];
    let fronts = targets;
    const proxyProtocol = lbSendsProxyProtocol(objs, spec) || config['acceptProxyProtocol'] === 'required';
    if (proxyProtocol) {
      const lb = await haproxyFront(peers.haproxy, dir.path, targets);
      children.push(lb.child);
      fronts = lb.ports;
    }
    const urls = [`rtmp://127.0.0.1:${fronts[0]}/live`, ...(tlsPort ? [`rtmps://127.0.0.1:${fronts[1]}/live`] : [])];
    const published: RunResult['published'] = [];
    for (const [i, base] of urls.entries()) {
      const key = `ex-${what.replace(/[^a-z0-9]+/gi, '-')}-${i}-${Date.now()}`;
      const ff = spawn(
        peers.ffmpeg,
        ['-hide_banner', '-nostdin', '-loglevel', 'warning', '-re', '-t', '2', '-i', SAMPLE_FLV, '-c', 'copy', '-f', 'flv', `${base}/${key}`],
        { stdio: ['ignore', 'ignore', 'pipe'] },
      );
      let ffOut = '';
      ff.stderr!.on('data', (d: Buffer) => (ffOut += d.toString()));
      const code = await new Promise<number | null>((r) => ff.once('exit', (c) => r(c)));
      let video = 0;
      if (code === 0) {
        const [file] = await closedRecordings(peers.nginx, key, 1);
        video = ffprobeCounts(peers.ffprobe, file!).video;
      }
      published.push({ url: base, code, video, output: ffOut });
    }
    return { published, proxyOutput: out };
  } finally {
    for (const c of children.reverse()) await stopProcess(c, 'SIGKILL');
    dir.remove();
  }
}

function configArg(c: Container): string | undefined {
  const a = c.args ?? [];
  return a[a.indexOf('--config') + 1];
}

// ───────────────────────────── the tests ─────────────────────────────

describe('every example runs: rendered, then a real proxy with the traffic it promises, ffmpeg → nginx-rtmp', () => {
  let peers: Peers | undefined;
  let tools: { helm: string; kubectl: string } | undefined;
  let setupError: Error | undefined;
  before(async () => {
    if (!existsSync(join(root, 'dist', 'cli.js'))) setupError = new Error('dist/ is missing: run `npm run build` (bin/ runs dist/)');
  });
  after(async () => {
    await peers?.nginx.remove();
    await peers?.redis.remove();
    scratch?.remove();
  });

  /** Peers and tools, or null after t.skip outside CI (a missing one fails in CI). */
  async function setup(t: Parameters<typeof requirePeer>[0]): Promise<{ peers: Peers; tools: { helm: string; kubectl: string } } | null> {
    if (setupError) throw setupError;
    if (!tools) {
      const helm = requireTool(t, 'helm');
      const kubectl = requireTool(t, 'kubectl');
      if (helm === null || kubectl === null) return null;
      tools = { helm, kubectl };
    }
    if (!peers) {
      const nginxPeer = requireNginxRtmp(t);
      const redisExe = requirePeer(t, 'redis-server');
      const openssl = requirePeer(t, 'openssl');
      const haproxy = requirePeer(t, 'haproxy');
      const ffmpeg = requirePeer(t, 'ffmpeg');
      const ffprobe = requirePeer(t, 'ffprobe');
      if (!nginxPeer || !redisExe || !openssl || !haproxy || !ffmpeg || !ffprobe) return null;
      peers = { nginx: await startNginxBackend(nginxPeer), redis: await startRedis(redisExe), openssl, haproxy, ffmpeg, ffprobe };
    }
    return { peers, tools };
  }

  for (const [name, render] of examples()) {
    test(`${name}: every publisher's stream arrives through the proxy as configured`, async (t) => {
      const s = await setup(t);
      if (s === null) return;
      const objs = render(s.tools);
      if (!find(objs, 'Deployment').some((d) => proxyContainer(podSpec(d)))) return; // a kustomization without the proxy
      const r = await runExample(objs, name, s.peers);
      for (const p of r.published) {
        assert.equal(p.code, 0, `${name}: ffmpeg → ${p.url} exited ${p.code}: ${p.output}\nproxy: ${r.proxyOutput.slice(-2000)}`);
        assert.ok(p.video > 10, `${name}: ${p.url}: nginx recorded ${p.video} video frames`);
      }
    });
  }

  test('the run is not vacuous: a proxy that does not read the PROXY header its load balancer sends loses every publisher', async (t) => {
    const s = await setup(t);
    if (s === null) return;
    const objs = helmTemplate(s.tools.helm, ['-f', join(CHART, 'ci', 'l4-values.yaml')]);
    const r = await runExample(objs, 'l4 without acceptProxyProtocol', s.peers, {
      editConfig: (c) => {
        c['acceptProxyProtocol'] = 'off';
        delete c['acceptProxyProtocolFrom'];
      },
    });
    assert.ok(r.published.length >= 1);
    for (const p of r.published) assert.notEqual(p.code, 0, `ffmpeg → ${p.url} should fail: the proxy reads the PROXY header as RTMP`);
  });

  test('the chart refuses ci/l4-values.yaml as it was (PROXY at the load balancer only, NODE_OPTIONS replaced, TLS without a listener)', (t) => {
    const helm = requireTool(t, 'helm');
    if (helm === null) return;
    let msg = '';
    try {
      helmTemplate(helm, ['-f', join(root, 'test', 'deploy', 'fixtures', 'l4-values-before-fix.yaml')]);
    } catch (e) {
      msg = (e as Error).message;
    }
    assert.match(msg, /config\.acceptProxyProtocol must be one of the following: "optional", "required"/);
    assert.match(msg, /extraEnv\.0: Must not validate the schema/);
    assert.match(msg, /config: tls is required/);
  });

  test('the chart refuses a heap that does not fit the memory limit', (t) => {
    const helm = requireTool(t, 'helm');
    if (helm === null) return;
    const fails = (args: string[]): string => {
      try {
        helmTemplate(helm, args);
      } catch (e) {
        return (e as Error).message;
      }
      return assert.fail(`helm template ${args.join(' ')} should fail`);
    };
    assert.match(
      fails(['--set', 'nodeOptions=--max-semi-space-size=2 --max-old-space-size=384']),
      /--max-old-space-size=384 \(MiB\) does not fit resources.limits.memory 256Mi/,
    );
    assert.match(fails(['--set', 'nodeOptions=--max-semi-space-size=2 --max-old-space-size=200']), /does not fit/);
    assert.doesNotThrow(() => helmTemplate(helm, ['--set', 'nodeOptions=--max-semi-space-size=2 --max-old-space-size=192']));
    // The entry point adds the runtime settings: options of the operator's own need not repeat them.
    assert.doesNotThrow(() => helmTemplate(helm, ['--set', 'nodeOptions=--max-old-space-size=128']));
    // The same check on what the test runs, whatever rendered it.
    assert.throws(() => checkHeap({ name: 'p', image: 'i', resources: { limits: { memory: '256Mi' } } }, '--max-old-space-size=384', 'x'), /does not fit/);
    assert.throws(() => checkTuned('{"msg":"proxy listening","runtime":{"tuned":false,"nodeFlags":[]}}\n', 'x'), /without the runtime settings/);
    assert.ok(settingDocs().length > 0);
  });
});
