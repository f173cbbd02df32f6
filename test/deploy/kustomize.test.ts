// deploy/k8s: every kustomization renders with `kubectl kustomize` (no cluster), every rendered
// object validates against the Kubernetes schemas (kubernetes-models, strict fields), and the
// things a lossless rolling update relies on hold (see checkProxyPod in ./helpers.ts).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import net from 'node:net';
import { join, relative } from 'node:path';
import { describe, test } from 'node:test';
import YAML from 'yaml';
import {
  type Container,
  type K8sObject,
  checkContainerHardening,
  type PodSpec,
  checkProxyPod,
  checkSelectors,
  checkSelfDrainingPod,
  find,
  kustomize,
  podLabels,
  podSpec,
  proxyConfig,
  proxyContainer,
  requireTool,
  root,
  validateK8s,
} from './helpers.js';

const K8S = join(root, 'deploy', 'k8s');
const pkgVersion = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;

interface Kustomization {
  dir: string;
  kind: string;
  resources: string[];
  components: string[];
}

function kustomizations(): Kustomization[] {
  const out: Kustomization[] = [];
  const walk = (dir: string): void => {
    for (const e of readdirSync(dir).sort()) {
      const p = join(dir, e);
      if (statSync(p).isDirectory()) walk(p);
      else if (e === 'kustomization.yaml') {
        const k = YAML.parse(readFileSync(p, 'utf8')) as { kind?: string; resources?: string[]; components?: string[] };
        out.push({ dir: relative(root, dir), kind: k.kind ?? 'Kustomization', resources: k.resources ?? [], components: k.components ?? [] });
      }
    }
  };
  walk(K8S);
  return out;
}

const all = kustomizations();
const buildable = all.filter((k) => k.kind === 'Kustomization');

const workloads = (objs: K8sObject[]) => objs.filter((o) => o.kind === 'Deployment' || o.kind === 'StatefulSet');

describe('deploy/k8s (kustomize)', () => {
  test('layout: a sidecar base, an L4 base, overlays, and every component used by an overlay', () => {
    const dirs = buildable.map((k) => k.dir);
    for (const d of ['deploy/k8s/sidecar', 'deploy/k8s/l4']) assert.ok(dirs.includes(d), `${d} is missing`);
    assert.ok(
      dirs.some((d) => d.startsWith('deploy/k8s/overlays/')),
      'no overlay',
    );
    for (const c of all.filter((k) => k.kind === 'Component')) {
      const users = buildable.filter((k) => k.components.some((ref) => join(k.dir, ref) === c.dir));
      assert.ok(users.length > 0, `component ${c.dir} is not used by any overlay, so it is never rendered`);
    }
  });

  for (const k of buildable) {
    test(`${k.dir}: renders, validates against the Kubernetes schemas, and keeps the drain invariants`, async (t) => {
      const kubectl = requireTool(t, 'kubectl');
      if (kubectl === null) return;
      const objs = kustomize(kubectl, k.dir);
      assert.ok(objs.length > 0, 'rendered nothing');
      const problems = await validateK8s(objs);
      assert.deepEqual(problems, [], `schema problems:\n${problems.join('\n')}`);

      const names = new Set<string>();
      for (const o of objs) {
        const id = `${o.kind}/${o.metadata.namespace ?? ''}/${o.metadata.name}`;
        assert.ok(!names.has(id), `duplicate ${id}`);
        names.add(id);
      }

      for (const w of workloads(objs)) {
        const spec = podSpec(w);
        const what = `${k.dir} ${w.kind}/${w.metadata.name}`;
        for (const c of spec.containers) {
          assert.match(c.image, /:[\w.-]+$/, `${what} ${c.name}: image ${c.image} has no explicit tag`);
          assert.doesNotMatch(c.image, /:latest$/, `${what} ${c.name}: :latest`);
          if (/^rtmp-goaway-proxy(-nginx-rtmp)?:/.test(c.image))
            assert.equal(c.image.split(':')[1], pkgVersion, `${what}: image tag is not the package version`);
          checkContainerHardening(c, `${what} container ${c.name}`);
        }
        assert.equal(spec.enableServiceLinks, false, `${what}: enableServiceLinks`);
        if (proxyContainer(spec)) {
          checkProxyPod(spec, objs, what);
          checkSelectors(objs, w, what);
          const strategy = (w['spec'] as { strategy?: { rollingUpdate?: { maxUnavailable?: number } } }).strategy;
          assert.equal(strategy?.rollingUpdate?.maxUnavailable, 0, `${what}: a rolling update must start the new pod before draining an old one`);
        }
      }

      for (const sm of find(objs, 'ServiceMonitor')) {
        const spec = sm['spec'] as { selector: { matchLabels: Record<string, string> }; endpoints: { port: string; path?: string }[] };
        const svcs = find(objs, 'Service').filter((s) => Object.entries(spec.selector.matchLabels).every(([a, b]) => s.metadata.labels?.[a] === b));
        assert.equal(svcs.length, 1, `ServiceMonitor ${sm.metadata.name} should select one Service`);
        const svc = svcs[0]!['spec'] as { selector: Record<string, string>; ports: { name: string; targetPort: string }[] };
        for (const ep of spec.endpoints) {
          assert.equal(ep.path ?? '/metrics', '/metrics');
          const port = svc.ports.find((p) => p.name === ep.port);
          assert.ok(port, `ServiceMonitor endpoint port ${ep.port} is not a port of the Service`);
          assert.equal(port.targetPort, 'admin');
        }
        const scraped = workloads(objs).filter((w) => Object.entries(svc.selector).every(([a, b]) => podLabels(w)[a] === b));
        assert.ok(scraped.length > 0, 'the metrics Service selects no pod');
        for (const w of scraped) assert.ok(proxyContainer(podSpec(w)), `the metrics Service selects ${w.metadata.name}, which runs no proxy`);
      }
    });
  }

  test('sidecar: nginx is reachable only through the proxy, and stops after it', async (t) => {
    const kubectl = requireTool(t, 'kubectl');
    if (kubectl === null) return;
    const objs = kustomize(kubectl, 'deploy/k8s/sidecar');
    const [dep] = find(objs, 'Deployment', 'rtmp-ingest');
    assert.ok(dep);
    const spec = podSpec(dep);
    const proxy = proxyContainer(spec)!;
    const nginx = spec.containers.find((c) => c.name === 'nginx-rtmp')!;
    const { config } = proxyConfig(proxy, objs, spec);

    // nginx runs the image's loopback configuration, and the proxy's only backend is that address.
    const confPath = nginx.args?.[nginx.args.indexOf('-c') + 1];
    assert.equal(confPath, '/etc/nginx-rtmp/sidecar.conf');
    const conf = readFileSync(join(root, 'deploy', 'nginx-rtmp', 'sidecar.conf'), 'utf8');
    const listen = /^\s*listen\s+([^;\s]+);/m.exec(conf)?.[1];
    assert.equal(listen, '127.0.0.1:1936', 'sidecar.conf must listen on loopback only');
    assert.deepEqual(
      config.backends.map((b) => `${b.host}:${b.port}`),
      [listen],
    );
    assert.ok(!nginx.ports?.length, 'nginx must not declare a pod port');

    // The public Service lands on the proxy.
    const [svc] = find(objs, 'Service', 'rtmp-ingest');
    const target = (svc!['spec'] as { ports: { targetPort: string }[] }).ports[0]!.targetPort;
    assert.ok(
      proxy.ports?.some((p) => p.name === target),
      `Service targets ${target}, not the proxy`,
    );

    // nginx's preStop waits on the proxy's admin port.
    const adminPort = Number(/:(\d+)$/.exec(config.admin)![1]);
    assert.match(nginx.lifecycle!.preStop!.exec!.command.join(' '), new RegExp(`/dev/tcp/127\\.0\\.0\\.1/${adminPort}\\b`));
  });

  test("sidecar: nginx's preStop command waits while the proxy's admin port accepts, and returns once it closes", async (t) => {
    const kubectl = requireTool(t, 'kubectl');
    if (kubectl === null) return;
    const objs = kustomize(kubectl, 'deploy/k8s/sidecar');
    const nginx: Container = podSpec(find(objs, 'Deployment', 'rtmp-ingest')[0]!).containers.find((c) => c.name === 'nginx-rtmp')!;
    const [shell, ...args] = nginx.lifecycle!.preStop!.exec!.command;
    const server = net.createServer((s) => s.destroy());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    const script = args.map((a) => a.replace('/dev/tcp/127.0.0.1/9935', `/dev/tcp/127.0.0.1/${port}`));
    const started = Date.now();
    const child = spawn(shell!, script, { stdio: 'ignore' });
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(child.exitCode, null, 'the hook returned while the proxy was still up');
    server.close();
    const code = await exited;
    assert.equal(code, 0);
    const took = Date.now() - started;
    assert.ok(took < 5000, `the hook took ${took} ms after the port closed`);
  });

  test('L4 tier: Redis URL only from a Secret, backends name the ingest pool pods', async (t) => {
    const kubectl = requireTool(t, 'kubectl');
    if (kubectl === null) return;
    const objs = kustomize(kubectl, 'deploy/k8s/overlays/l4-demo');
    const [dep] = find(objs, 'Deployment', 'rtmp-goaway-proxy');
    assert.ok(dep);
    const proxy = proxyContainer(podSpec(dep))!;
    const redisEnv = proxy.env?.find((e) => e.name === 'RTMP_GOAWAY_REDIS_URL');
    const ref = (redisEnv?.valueFrom as { secretKeyRef?: { name: string; key: string } } | undefined)?.secretKeyRef;
    assert.ok(ref, 'RTMP_GOAWAY_REDIS_URL must come from a secretKeyRef (it may carry a password)');
    for (const cm of find(objs, 'ConfigMap')) assert.ok(!('RTMP_GOAWAY_REDIS_URL' in ((cm['data'] ?? {}) as object)), 'Redis URL in a ConfigMap');
    const secret = find(objs, 'Secret', ref.name)[0];
    assert.ok(secret, `the demo renders the Secret ${ref.name}`);
    const { config } = proxyConfig(proxy, objs, podSpec(dep));
    assert.equal(config.redis.url, 'redis://redis:6379/0');
    assert.ok(find(objs, 'Service', 'redis').length === 1);

    const [sts] = find(objs, 'StatefulSet', 'ingest');
    assert.ok(sts);
    const s = sts['spec'] as { serviceName: string; replicas: number };
    const headless = find(objs, 'Service', s.serviceName)[0]!['spec'] as { clusterIP?: string };
    assert.equal(headless.clusterIP, 'None', 'the ingest Service must be headless for per-pod names');
    const want = Array.from({ length: s.replicas }, (_, i) => `${sts.metadata.name}-${i}.${s.serviceName}:1935`);
    assert.deepEqual(
      config.backends.map((b) => `${b.host}:${b.port}`),
      want,
    );
    assert.deepEqual(
      config.backends.map((b) => b.name),
      want.map((w) => w.split('.')[0]),
    );

    // Each ingest pod drains itself by its own name, which is its backend name here.
    const { drainer, deadlineS, nameVar } = checkSelfDrainingPod(podSpec(sts), 'ingest StatefulSet');
    const nameEnv = drainer.env!.find((e) => e.name === nameVar)!;
    assert.deepEqual(nameEnv.valueFrom, { fieldRef: { fieldPath: 'metadata.name' } }, 'the drain names the pod, which is its backend name in config.yaml');
    assert.ok(deadlineS * 1000 <= config.drain.deadlineMs, "the preStop deadline is within the proxies' drain deadline");
  });

  test('the ingest pod checks are not vacuous', async (t) => {
    const kubectl = requireTool(t, 'kubectl');
    if (kubectl === null) return;
    const sts = find(kustomize(kubectl, 'deploy/k8s/overlays/l4-demo'), 'StatefulSet', 'ingest')[0]!;
    const cases: [string, (s: PodSpec) => void, RegExp][] = [
      ['short grace', (s) => (s.terminationGracePeriodSeconds = 60), /terminationGracePeriodSeconds 60/],
      ['no drain', (s) => delete s.containers.find((c) => c.name === 'drain')!.lifecycle, /preStop does not run/],
      [
        'no wait',
        (s) =>
          (s.containers.find((c) => c.name === 'drain')!.lifecycle!.preStop!.exec!.command[2] =
            'rtmp-goaway-proxy drain "$BACKEND" --deadline 120s; touch /run/drain/done'),
        /preStop does not run/,
      ],
      ['nginx does not wait', (s) => (s.containers.find((c) => c.name === 'nginx-rtmp')!.lifecycle!.preStop!.exec!.command = ['sleep', '5']), /does not wait/],
    ];
    for (const [name, mutate, want] of cases) {
      const s = structuredClone(podSpec(sts));
      mutate(s);
      assert.throws(() => checkSelfDrainingPod(s, name), want, name);
    }
  });

  test('the pod checks are not vacuous: each broken invariant is caught', async (t) => {
    const kubectl = requireTool(t, 'kubectl');
    if (kubectl === null) return;
    const objs = kustomize(kubectl, 'deploy/k8s/sidecar');
    const dep = find(objs, 'Deployment', 'rtmp-ingest')[0]!;
    const fresh = () => structuredClone(podSpec(dep));
    const proxyOf = (s: ReturnType<typeof fresh>) => proxyContainer(s)!;
    checkProxyPod(fresh(), objs, 'unchanged');
    /** The rendering with the proxy's config.yaml edited. */
    const withConfig = (edit: (c: Record<string, unknown>) => void): K8sObject[] =>
      objs.map((o) => {
        if (o.kind !== 'ConfigMap' || !(o['data'] as Record<string, string>)['config.yaml']) return o;
        const c = YAML.parse((o['data'] as Record<string, string>)['config.yaml']!) as Record<string, unknown>;
        edit(c);
        return { ...o, data: { 'config.yaml': YAML.stringify(c) } };
      });
    const cases: [string, (s: ReturnType<typeof fresh>) => void, RegExp, K8sObject[]?][] = [
      ['short grace', (s) => (s.terminationGracePeriodSeconds = 30), /terminationGracePeriodSeconds 30 </],
      ['no preStop', (s) => delete proxyOf(s).lifecycle, /no preStop/],
      ['readiness on /healthz', (s) => (proxyOf(s).readinessProbe!.httpGet!.path = '/healthz'), /readiness must be \/readyz/],
      ['readiness on the rtmp port', (s) => (proxyOf(s).readinessProbe!.httpGet!.port = 'rtmp'), /not the admin port/],
      ['service links', (s) => (s.enableServiceLinks = true), /enableServiceLinks/],
      ['admin on loopback', () => {}, /binds loopback/, withConfig((c) => (c['admin'] = '127.0.0.1:9935'))],
      ['sidecar mode off', () => {}, /sidecar.enabled must be true/, withConfig((c) => (c['sidecar'] = { enabled: false }))],
      ['unknown setting', (s) => proxyOf(s).env!.push({ name: 'RTMP_GOAWAY_SIDECAR_GRACE_MS', value: '25s' }), /not a setting of docs\/configuration.md/],
      ['bad value', () => {}, /would refuse this configuration/, withConfig((c) => (c['sidecar'] = { enabled: true, gracePeriodMs: '25 seconds' }))],
      ['no config file', (s) => (proxyOf(s).args = ['serve']), /without --config/],
      [
        'config file by subPath',
        (s) =>
          Object.assign(
            proxyOf(s).volumeMounts!.find((m) => m.name === 'config')!,
            { mountPath: '/etc/rtmp-goaway-proxy/config/config.yaml', subPath: 'config.yaml' },
          ),
        /not on a mounted volume|subPath/,
      ],
      [
        'backends in the environment',
        (s) => proxyOf(s).env!.push({ name: 'RTMP_GOAWAY_BACKENDS', value: 'local=127.0.0.1:1936' }),
        /shadows the watched config file/,
      ],
      [
        'admin token in the pod spec',
        (s) => {
          const p = proxyOf(s);
          p.env = p.env!.filter((e) => e.name !== 'RTMP_GOAWAY_ADMIN_TOKEN_FILE');
          p.env.push({ name: 'RTMP_GOAWAY_ADMIN_TOKEN', value: 'in-clear-0123456789abcdef' });
        },
        /mounted Secret file, not in the pod spec/,
      ],
      ['no admin token', (s) => (proxyOf(s).env = proxyOf(s).env!.filter((e) => e.name !== 'RTMP_GOAWAY_ADMIN_TOKEN_FILE')), /no admin token/],
      [
        'nginx stops first',
        (s) => (s.containers.find((c) => c.name === 'nginx-rtmp')!.lifecycle!.preStop!.exec!.command = ['sleep', '10']),
        /nginx-rtmp stops after 10 s/,
      ],
      ['root filesystem writable', (s) => (proxyOf(s).securityContext!['readOnlyRootFilesystem'] = false), /readOnlyRootFilesystem/],
      ['capabilities kept', (s) => (proxyOf(s).securityContext!['capabilities'] = { drop: ['NET_RAW'] }), /capabilities.drop/],
      ['runs as root', (s) => (s.containers[1]!.securityContext!['runAsUser'] = 0), /runAsUser/],
      ['no memory limit', (s) => delete proxyOf(s).resources!.limits, /memory limit/],
    ];
    for (const [name, mutate, want, rendered] of cases) {
      const s = fresh();
      mutate(s);
      assert.throws(() => checkProxyPod(s, rendered ?? objs, name), want, name);
    }
  });

  test('the validator is not vacuous: an unknown field, a wrong type, a missing field and an unknown kind are reported', async () => {
    const deployment = (container: Record<string, unknown>, name: string): K8sObject => ({
      apiVersion: 'apps/v1',
      kind: 'Deployment',
      metadata: { name },
      spec: {
        selector: { matchLabels: { a: 'b' } },
        template: { metadata: { labels: { a: 'b' } }, spec: { containers: [{ name: 'c', image: 'i:1', ...container }] } },
      },
    });
    const typo = deployment({ readinesProbe: { httpGet: { path: '/readyz', port: 9935 } } }, 'typo');
    const wrongType = deployment({ ports: [{ containerPort: '1935' }] }, 'wrong-type');
    const noSelector: K8sObject = { apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'no-selector' }, spec: { template: {} } };
    const misplaced: K8sObject = { apiVersion: 'policy/v1', kind: 'PodDisruptionBudget', metadata: { name: 'pdb' }, spec: { maxUnavailable: 1, selectr: {} } };
    const unknownKind: K8sObject = { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } };
    const ok = deployment({}, 'fine');
    const problems = await validateK8s([typo, wrongType, noSelector, misplaced, unknownKind, ok]);
    const text = problems.join('\n');
    assert.match(text, /Deployment\/typo: .*'"readinesProbe"' does not exist in type 'IContainer'/);
    assert.match(text, /Deployment\/wrong-type: .*containerPort must be integer/);
    assert.match(text, /Deployment\/no-selector: .*must have required property selector/);
    assert.match(text, /PodDisruptionBudget\/pdb: .*'"selectr"' does not exist/);
    assert.match(text, /Widget\/w: no schema/);
    assert.doesNotMatch(text, /Deployment\/fine/);
  });
});
